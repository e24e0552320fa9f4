#!/usr/bin/env bash
# Security suite: `immerge serve` attacked as a caller would, through real HTTP, with keys (the
# official client's signed calls) and without (curl, and the headers a browser sends). A caller
# may name only the storage the operator configured: no file outside the root is read, written or
# revealed, no shell-sensitive file is touched, no connection goes to a host the operator did not
# name, and a web page cannot drive a keyless server. Every refusal is the service's JSON error.
# SECURITY.md lists each case.
#   tests/e2e/security.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

"$top/testdata/gen-media.sh" "$root" > /dev/null || { echo "Bail out! fixtures"; exit 1; }
[ -d "$top/tests/oss/node_modules/@alicloud/openapi-client" ] || { echo "Bail out! run tests/deps.sh"; exit 1; }
AK=LTAI5tSecurityKey SK=security-secret-41c7

# What the server must never reach: a folder beside the root, and a home with a shell profile.
outside="$work/outside" home="$work/home" allowed="$work/allowed"
mkdir -p "$outside" "$home" "$allowed/in" "$allowed/out"
cp "$b/audio/seg1.mp3" "$outside/secret.mp3"
cp "$b/audio/seg2.mp3" "$allowed/in/talk.mp3"
printf '# the operator'"'"'s shell profile\nexport PATH=/usr/bin:/bin\n' > "$home/.bashrc"
cp "$home/.bashrc" "$home/.profile"
ln -s "$outside" "$allowed/in/escape"   # a link the operator did not mean as a way out
snapshot() { (cd "$1" && find . -printf '%p %s %T@\n' | sort | md5sum); }
home_before=$(snapshot "$home") outside_before=$(snapshot "$outside")
marker="$work/pwned" # what UserData's command would create, were it ever run by a shell
userdata="\$(id > $marker)"

# Listeners that count every connection made to them: the address a caller would have the server
# reach (trap), and the endpoint of the remote store the operator configured (store_trap). No
# connection may reach either: none of the calls below names an object of that store.
start_trap() { # LOG: sets port
  start_server "$1" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
print("listening on 127.0.0.1:%d" % s.getsockname()[1], flush=True)
while True:
    c, a = s.accept(); print("connection from", a, flush=True); c.close()
'
}
trap_log="$work/trap.log" store_log="$work/store-trap.log"
start_trap "$trap_log"; trap_url="http://127.0.0.1:$port"
start_trap "$store_log"; store_url="http://127.0.0.1:$port"

# serve_as NAME [options]: a server (on the suite's root unless the options name a store) with
# HOME pointing at the fake home.
serve_as() {
  local name=$1 store=(--oss-root "$root"); shift
  [[ " $* " == *" --oss-endpoint "* ]] && store=()
  start_server "$work/$name.log" env HOME="$home" "$bin" serve --listen 127.0.0.1:0 --workers 1 \
    "${store[@]}" --tasks "$work/$name-tasks" "$@"
  eval "ep_$name=127.0.0.1:$port"
}
serve_as signed --access-key-id "$AK" --access-key-secret "$SK"
serve_as open
serve_as allow --access-key-id "$AK" --access-key-secret "$SK" --allow-local-paths "$allowed/in" \
  --allow-local-paths "$allowed/out"
# A server on a remote store: its local paths are refused as the local store's are.
serve_as remote --access-key-id "$AK" --access-key-secret "$SK" --oss-endpoint "$store_url" --oss-signature s3v4
unset OSS_ENDPOINT IMMERGE_OSS_ROOT

seg='oss://test-bucket/audio/seg1.mp3'
mp3='"Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":64000}}'
# request SOURCE-URI TARGET-URI [MORE-JSON]: the call's parameters as a JSON object
request() { printf '{"ProjectName":"sec","Sources":[{"URI":"%s"}],"Targets":[{"URI":"%s",%s}]%s}' "$1" "$2" "$mp3" "${3:-}"; }

# signed EP PARAMS: the official client's CreateMediaConvertTask; sets out, code, msg, http
signed() {
  out=$(node "$top/tests/oss/openapi-call.js" "$1" "$AK" "$SK" CreateMediaConvertTask "$2")
  code=$(jqo '.error.code // "ok"') msg=$(jqo '.error.message // ""') http=$(jqo '.error.statusCode // .status')
}
# keyless EP PARAMS [CURL-ARGS...]: a form POST by curl; sets out, code, msg, http
keyless() {
  local ep=$1 params=$2; shift 2
  local args=() k
  for k in $(jq -r 'keys[]' <<< "$params"); do
    args+=(--data-urlencode "$k=$(jq -cr --arg k "$k" '.[$k] | if type == "string" then . else tojson end' <<< "$params")")
  done
  out=$(curl -s -w '\n%{http_code}' "$@" -X POST "http://$ep/" --data-urlencode Action=CreateMediaConvertTask "${args[@]}")
  http=$(printf '%s' "$out" | tail -1); out=$(printf '%s' "$out" | head -n -1)
  code=$(jqo '.Code // (if .TaskId then "ok" else "-" end)' 2>/dev/null || echo "-") msg=$(jqo '.Message // ""' 2>/dev/null)
}
# refused NAME WANT-HTTP WANT-CODE TEXT: the last call was refused in the service's JSON shape
refused() {
  if [ "$http" = "$2" ] && [ "$code" = "$3" ] && [[ "$msg" == *"$4"* ]]; then ok "$1"
  else not_ok "$1" "HTTP $http Code $code: $msg"; fi
}
both() { # NAME PARAMS TEXT: refused InvalidArgument naming TEXT, signed and keyless
  signed "$ep_signed" "$2"; refused "$1 (signed, official client)" 400 InvalidArgument "$3"
  keyless "$ep_open" "$2"; refused "$1 (keyless, curl)" 400 InvalidArgument "$3"
}

# ---- 1. reading a file outside the root ------------------------------------------------------------
both "a file:// source outside the root is refused by name" \
  "$(request "file://$outside/secret.mp3" oss://test-bucket/output/leak1.mp3)" "Sources[0].URI"
both "an absolute path as a source is refused by name" \
  "$(request "$outside/secret.mp3" oss://test-bucket/output/leak2.mp3)" "Sources[0].URI"
both "a relative path as a source is refused by name" \
  "$(request "../outside/secret.mp3" oss://test-bucket/output/leak3.mp3)" "Sources[0].URI"
both "a local source behind a good one is refused, naming Sources[1]" \
  "$(printf '{"ProjectName":"sec","Sources":[{"URI":"%s"},{"URI":"file://%s"}],"Targets":[{"URI":"oss://test-bucket/output/leak4.mp3",%s}]}' "$seg" "$outside/secret.mp3" "$mp3")" "Sources[1].URI"
# The answer must not tell whether a file exists: /etc/shadow (there, unreadable to others) and a
# path that does not exist get the same answer but for the path.
# (The client adds the answer's RequestId to its message: that differs by design.)
signed "$ep_signed" "$(request file:///etc/shadow oss://test-bucket/output/o.mp3)"; a="${code}|${msg//\/etc\/shadow/P}"
signed "$ep_signed" "$(request file:///no/such/file oss://test-bucket/output/o.mp3)"; z="${code}|${msg//\/no\/such\/file/P}"
a=$(sed 's/request id: [0-9A-F-]*//' <<< "$a") z=$(sed 's/request id: [0-9A-F-]*//' <<< "$z")
[ "$a" = "$z" ] && [[ "$a" == InvalidArgument* ]] && ok "file:///etc/shadow and a missing file get the same answer: nothing is learnt of either" \
  || not_ok "existence oracle" "$a / $z"
sleep 1
[ -z "$(find "$b/output" -name 'leak*')" ] && ok "no output was made of a file outside the root" || not_ok "leak outputs" "$(find "$b/output" -name 'leak*')"

# ---- 2. writing outside the root -------------------------------------------------------------------
both "a file:// target outside the root is refused by name" "$(request "$seg" "file://$outside/written.mp3")" "Targets[0].URI"
both "a plain path target is refused by name" "$(request "$seg" "$outside/written2.mp3")" "Targets[0].URI"
both "a template resolving to a local path is refused by name" "$(request "$seg" "$outside/{barename}.{autoext}")" "Targets[0].URI"

# ---- 3. the task JSON into a shell profile -----------------------------------------------------------
both "ExtendedMessageURI file://\$HOME/.bashrc is refused by name" \
  "$(request "$seg" oss://test-bucket/output/n1.mp3 ",\"UserData\":\"$userdata\",\"Notification\":{\"ExtendedMessageURI\":\"file://$home/.bashrc\"}")" \
  "Notification.ExtendedMessageURI"
both "ExtendedMessageURI as a plain path is refused by name" \
  "$(request "$seg" oss://test-bucket/output/n2.mp3 ",\"Notification\":{\"ExtendedMessageURI\":\"$home/.profile\"}")" \
  "Notification.ExtendedMessageURI"
both "ExtendedMessageURI naming a source (which would overwrite it) is refused by name" \
  "$(request "$seg" oss://test-bucket/output/n3.mp3 ",\"Notification\":{\"ExtendedMessageURI\":\"$seg\"}")" \
  "Notification.ExtendedMessageURI"
# In the store it is honoured, as the service writes it: the task's JSON is data in an object.
signed "$ep_signed" "$(request "$seg" oss://test-bucket/output/n4.mp3 ",\"UserData\":\"$userdata\",\"Notification\":{\"ExtendedMessageURI\":\"oss://test-bucket/notes/n4.json\"}")"
for _ in $(seq 100); do [ -f "$b/notes/n4.json" ] && break; sleep 0.1; done
[ "$code" = ok ] && [ "$(jq -r .UserData "$b/notes/n4.json" 2>/dev/null)" = "$userdata" ] \
  && ok "an ExtendedMessageURI in the store gets the task JSON there, UserData as data" || not_ok "extended in store" "$code $msg"

# ---- notification sinks: only the operator's ------------------------------------------------------
both "Notification.MNS.Endpoint naming another host is refused by name" \
  "$(request "$seg" oss://test-bucket/output/m1.mp3 ",\"Notification\":{\"MNS\":{\"TopicName\":\"t\",\"Endpoint\":\"$trap_url\"}}")" \
  "Notification.MNS.Endpoint"
both "the legacy NotifyEndpoint naming another host is refused by name" \
  "$(request "$seg" oss://test-bucket/output/m2.mp3 ",\"NotifyTopicName\":\"t\",\"NotifyEndpoint\":\"$trap_url\"")" "NotifyEndpoint"
both "Notification.RocketMQ (no sink the operator can configure) is refused by name" \
  "$(request "$seg" oss://test-bucket/output/m3.mp3 ",\"Notification\":{\"RocketMQ\":{\"Endpoint\":\"$trap_url\",\"TopicName\":\"t\",\"InstanceId\":\"i\"}}")" \
  "Notification.RocketMQ"
both "an MNS topic on a server without --mns-endpoint is refused, naming the field and the option" \
  "$(request "$seg" oss://test-bucket/output/m4.mp3 ',"Notification":{"MNS":{"TopicName":"done"}}')" "--mns-endpoint"
# A playlist in the store that lists a segment on another host.
printf '#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n%s/seg.ts\n#EXT-X-ENDLIST\n' "$trap_url" > "$b/audio/remote.m3u8"
signed "$ep_signed" "$(request oss://test-bucket/audio/remote.m3u8 oss://test-bucket/output/p1.mp3)"
sleep 2
both "a source URL of another host is refused by name" "$(request "$trap_url/x.mp3" oss://test-bucket/output/u1.mp3)" "Sources[0].URI"
signed "$ep_remote" "$(request "file://$outside/secret.mp3" oss://test-bucket/output/r1.mp3)"
refused "with a remote store, a file:// source is refused by name too" 400 InvalidArgument "Sources[0].URI"
signed "$ep_remote" "$(request "$seg" "file://$outside/r2.mp3")"
refused "with a remote store, a file:// target is refused by name too" 400 InvalidArgument "Targets[0].URI"
[ "$(cat "$trap_log" "$store_log" | grep -c '^connection')" = 0 ] && ok "no connection reached a host the operator did not configure (sources, playlist segments, MNS endpoints, RocketMQ)" \
  || not_ok "SSRF" "$(cat "$trap_log" "$store_log" | grep -c '^connection') connections"

# ---- 4. a web page driving the keyless server --------------------------------------------------------
good=$(request "$seg" oss://test-bucket/output/web-ok.mp3)
keyless "$ep_open" "$good"
[ "$http" = 200 ] && [ "$code" = ok ] && ok "keyless: a call from this host's own client is served (the control)" || not_ok "keyless control" "HTTP $http $out"
keyless "$ep_open" "$(request "$seg" oss://test-bucket/output/web1.mp3)" -H "Host: attacker.example:${ep_open##*:}"
refused "keyless: a foreign Host (DNS rebinding) is refused" 403 Forbidden "Host"
keyless "$ep_open" "$(request "$seg" oss://test-bucket/output/web2.mp3)" -H "Origin: http://attacker.example"
refused "keyless: a call carrying Origin (a web page's) is refused" 403 Forbidden "Origin"
keyless "$ep_open" "$(request "$seg" oss://test-bucket/output/web3.mp3)" -H "Sec-Fetch-Site: cross-site"
refused "keyless: Sec-Fetch-Site: cross-site is refused" 403 Forbidden "Sec-Fetch-Site"
keyless "$ep_open" "$(request "$seg" oss://test-bucket/output/web4.mp3)" -H "Sec-Fetch-Site: same-site"
refused "keyless: Sec-Fetch-Site: same-site (another port of this host) is refused" 403 Forbidden "Sec-Fetch-Site"
q=$(jq -rn --arg s "[{\"URI\":\"$seg\"}]" --arg t "[{\"URI\":\"oss://test-bucket/output/web5.mp3\",$mp3}]" \
  '"Action=CreateMediaConvertTask&ProjectName=sec&Sources=\($s | @uri)&Targets=\($t | @uri)"')
out=$(curl -s -w '\n%{http_code}' "http://$ep_open/?$q"); http=$(printf '%s' "$out" | tail -1); out=$(printf '%s' "$out" | head -n -1)
code=$(jqo .Code) msg=$(jqo .Message)
refused "keyless: CreateMediaConvertTask by GET (a link, an <img>) is refused" 405 MethodNotAllowed "POST"
out=$(curl -s -w '\n%{http_code}' -H "Host: rebound.attacker.example" "http://$ep_open/?Action=ListTasks&ProjectName=sec")
http=$(printf '%s' "$out" | tail -1); out=$(printf '%s' "$out" | head -n -1); code=$(jqo .Code) msg=$(jqo .Message)
refused "keyless: ListTasks under a rebound name is refused (the records stay unread)" 403 Forbidden "Host"
out=$(curl -s -w '\n%{http_code}' "http://localhost:${ep_open##*:}/?Action=ListTasks&ProjectName=sec")
http=$(printf '%s' "$out" | tail -1)
[ "$http" = 200 ] && ok "keyless: Host localhost:PORT is this host's, and answered" || not_ok "localhost host" "HTTP $http"
sleep 1
created=$("$bin" list-tasks --tasks "$work/open-tasks" --project sec | jq -r '[.Tasks[].Targets[0].URI // empty] | join(" ")')
[ -z "$(ls "$b/output" | grep '^web[0-9]')" ] && [[ "$created" != *web[0-9]* ]] \
  && ok "keyless: none of the refused calls made a task or an output" || not_ok "web calls made tasks" "$created"
# With keys, what a browser cannot make (a signature) is what is trusted: a signed GET still works.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
url=$(node -e '
  const U = require(process.argv[1] + "/node_modules/@alicloud/openapi-util").default;
  const q = {Action: "ListTasks", Version: "2020-09-30", AccessKeyId: process.argv[2], SignatureMethod: "HMAC-SHA1",
             SignatureVersion: "1.0", SignatureNonce: "sec-" + Date.now(), Timestamp: process.argv[4], Format: "JSON", ProjectName: "sec"};
  q.Signature = U.getRPCSignature(q, "GET", process.argv[3]);
  process.stdout.write(Object.entries(q).map(([k, v]) => k + "=" + encodeURIComponent(v)).join("&"));
' "$top/tests/oss" "$AK" "$SK" "$now")
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ep_signed/?$url")" = 200 ] \
  && ok "with keys, a signed GET ListTasks is answered (keys, not headers, are what is trusted)" || not_ok "signed GET"

# ---- --allow-local-paths: the operator's folders, and nothing beside them ------------------------------
signed "$ep_allow" "$(request "file://$allowed/in/talk.mp3" "file://$allowed/out/merged.mp3")"
id=$(jqo .body.TaskId)
for _ in $(seq 100); do [ -f "$allowed/out/merged.mp3" ] && break; sleep 0.1; done
[ "$code" = ok ] && [ "$(samples "$allowed/out/merged.mp3")" = "$(samples "$allowed/in/talk.mp3")" ] \
  && ok "--allow-local-paths: a source and a target in the allowed folders are merged (samples equal)" || not_ok "allowed paths" "$code $msg"
signed "$ep_allow" "$(request "$allowed/in/talk.mp3" "$allowed/out/plain.mp3")"
[ "$code" = ok ] && ok "--allow-local-paths: plain absolute paths in them too" || not_ok "allowed plain" "$code $msg"
signed "$ep_allow" "$(request "file://$allowed/in/../../outside/secret.mp3" oss://test-bucket/output/a1.mp3)"
refused "--allow-local-paths: '..' out of an allowed folder is refused by name" 400 InvalidArgument "Sources[0].URI"
signed "$ep_allow" "$(request "file://$outside/secret.mp3" oss://test-bucket/output/a2.mp3)"
refused "--allow-local-paths: a folder beside the allowed ones is refused by name" 400 InvalidArgument "Sources[0].URI"
signed "$ep_allow" "$(request "file://${allowed}/inside-not/x.mp3" oss://test-bucket/output/a3.mp3)"
refused "--allow-local-paths: a name that only starts like an allowed folder is refused" 400 InvalidArgument "Sources[0].URI"
signed "$ep_allow" "$(request "in/talk.mp3" oss://test-bucket/output/a4.mp3)"
refused "--allow-local-paths: a relative path is refused by name" 400 InvalidArgument "Sources[0].URI"
signed "$ep_allow" "$(request "file://$allowed/in/escape/secret.mp3" oss://test-bucket/output/a5.mp3)"
id=$(jqo .body.TaskId)
for _ in $(seq 100); do
  st=$(node "$top/tests/oss/openapi-call.js" "$ep_allow" "$AK" "$SK" GetTask "{\"ProjectName\":\"sec\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id\"}" | jq -r '.body.Status + " " + .body.Code')
  [[ "$st" == Failed* ]] && break; sleep 0.1
done
[ "$st" = "Failed Forbidden" ] && [ ! -e "$b/output/a5.mp3" ] \
  && ok "--allow-local-paths: a symbolic link inside an allowed folder does not lead out (Failed Forbidden)" || not_ok "symlink escape" "$st"

# ---- `run` keeps local paths: its request is the operator's own ----------------------------------------
mkdir -p "$work/own"; request "file://$outside/secret.mp3" "$work/own/merged.mp3" > "$work/own.json"
out=$("$bin" run --quiet "$work/own.json"); rc=$?
[ "$rc" = 0 ] && [ "$(samples "$work/own/merged.mp3")" = "$(samples "$outside/secret.mp3")" ] \
  && ok "run: the operator's own request still reads and writes local paths" || not_ok "run local paths" "$out"

# ---- nothing was touched ------------------------------------------------------------------------------
[ "$(snapshot "$home")" = "$home_before" ] && ok "the home folder (.bashrc, .profile) is untouched" || not_ok "home touched" "$(ls -la "$home")"
[ "$(snapshot "$outside")" = "$outside_before" ] && ok "the folder outside the root is untouched" || not_ok "outside touched" "$(ls -la "$outside")"
# The operator's next shell reads the profile: had the task JSON gone there, UserData would run.
env -i HOME="$home" PATH=/usr/bin:/bin bash --rcfile "$home/.bashrc" -i -c true < /dev/null > /dev/null 2>&1
[ ! -e "$marker" ] && ok "an interactive shell started on that home runs nothing of UserData's" || not_ok "UserData ran" "$(cat "$marker")"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
