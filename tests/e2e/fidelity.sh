#!/usr/bin/env bash
# Drop-in fidelity: what code written for the service sends is honoured, or refused by name with
# InvalidArgument, never dropped; and the answers have the service's shape. Requests go through
# `immerge run` and through `immerge serve` called with Alibaba's own OpenAPI client.
#   tests/e2e/fidelity.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

mkdir -p "$b/audio" "$b/output"
ff -f lavfi -i "sine=440:d=1:sample_rate=44100" -ac 2 "$b/audio/talk.one.wav"
ff -f lavfi -i "sine=660:d=1:sample_rate=44100" -ac 2 "$b/audio/two.wav"
ff -f lavfi -i "testsrc=d=1:size=64x48:rate=10" -f lavfi -i "sine=440:d=1" -shortest -c:v mpeg4 -c:a aac "$b/audio/clip.mp4"

run() { # NAME REQUEST-JSON: sets rc, out
  printf '%s' "$2" > "$work/$1.json"
  out=$("$bin" run --quiet --oss-root "$root" "$work/$1.json" 2> "$work/$1.err"); rc=$?
}
src='{"URI":"oss://test-bucket/audio/talk.one.wav"}' src2='{"URI":"oss://test-bucket/audio/two.wav"}'
mp3='"Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":64000}}'
req() { printf '{"ProjectName":"p","Sources":[%s],"Targets":[{"URI":"oss://test-bucket/output/%s",%s}]%s}' "$1" "$2" "$3" "${4:-}"; }

# ---- requests: unknown and miscased keys, video features, Attached, TargetGroups -----------------
run miscased "$(req "$src" x.mp3 '"Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","bitrate":32000}}')"
expect_error "a miscased Audio key is refused with its path and spelling" 2 InvalidArgument "Targets[0].Audio.TranscodeAudio.bitrate is not a field of TranscodeAudio; field names are case-sensitive: Bitrate"
run unknown-root "$(req "$src" x.mp3 "$mp3" ',"Priority":5')"
expect_error "an unknown top-level key is refused by name" 2 InvalidArgument "Priority is not a field of CreateMediaConvertTask"
run unknown-source "$(req '{"URI":"oss://test-bucket/audio/two.wav","Start":1}' x.mp3 "$mp3")"
expect_error "an unknown source key is refused by name" 2 InvalidArgument "Sources[0].Start"
for f in 'Video:{"Codec":"h264"}' 'Image:{"Snapshots":[{"URI":"oss://test-bucket/s.jpg"}]}' 'Subtitle:{"DisableSubtitle":false}' 'AttachedPicture:{"Stream":[0]}' 'Data:{"Stream":[-1]}'; do
  k=${f%%:*} v=${f#*:}
  run "video-$k" "$(req "$src" x.mp3 "$mp3,\"$k\":$v")"
  expect_error "Targets[].$k is refused by name" 2 InvalidArgument "Targets[0].$k asks for"
done
run subtitles "$(req '{"URI":"oss://test-bucket/audio/two.wav","Subtitles":[{"URI":"oss://test-bucket/a.srt"}]}' x.mp3 "$mp3")"
expect_error "Sources[].Subtitles is refused by name" 2 InvalidArgument "Sources[0].Subtitles asks for"
run empty-video "$(req "$src" empty.mp3 "$mp3,\"Video\":{},\"AttachedPicture\":{\"Stream\":[]}")"
[ "$rc" = 0 ] && ok "an empty Video and AttachedPicture ask for nothing and are accepted" || not_ok "empty video fields" "$out"
run attached "$(req "$src,{\"URI\":\"oss://test-bucket/audio/two.wav\",\"Attached\":true}" x.mp3 "$mp3")"
expect_error "Attached on a second source is refused (it would be appended instead)" 2 InvalidArgument "Sources[1].Attached is true"
printf '{"ProjectName":"p","Sources":[%s],"TargetGroups":[{"URI":"oss://test-bucket/output/master.m3u8","Targets":[{"URI":"oss://test-bucket/output/v1.m3u8","Container":"ts"}]}]}' "$src" > "$work/groups.json"
out=$("$bin" run --quiet --oss-root "$root" "$work/groups.json" 2>/dev/null); rc=$?
expect_error "TargetGroups without Targets: refused naming TargetGroups, not 'Targets is required'" 2 InvalidArgument "TargetGroups (HLS packaging groups"

# ---- Codec copy: the rule and its message ------------------------------------------------------
run copy-one "$(req "$src" x.mp3 '"Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"copy"}}')"
expect_error "copy with one source: immerge always re-encodes, it says" 2 InvalidArgument "immerge does not do (it always re-encodes)"
run copy-two "$(req "$src,$src2" x.mp3 '"Container":"mp3"')"
expect_error "no Audio with two sources: a stream copy cannot merge, it says" 2 InvalidArgument "an absent Audio means a stream copy, which cannot merge several sources"

# ---- a video source into a video container -------------------------------------------------------
run video-mp4 "$(req '{"URI":"oss://test-bucket/audio/clip.mp4"}' v.mp4 '"Container":"mp4","Audio":{"TranscodeAudio":{"Codec":"aac"}}')"
expect_error "a source with video into mp4 is refused: the service would make a video" 2 InvalidArgument "DisableVideo"
run video-mp4-ok "$(req '{"URI":"oss://test-bucket/audio/clip.mp4","DisableVideo":true}' v.mp4 '"Container":"mp4","Audio":{"TranscodeAudio":{"Codec":"aac"}}')"
streams=$(ffprobe -v error -show_entries stream=codec_type -of csv=p=0 "$b/output/v.mp4" 2>/dev/null | sort -u | tr '\n' ' ')
[ "$rc" = 0 ] && [ "$streams" = "audio " ] && ok "with DisableVideo the mp4 is made, audio only" || not_ok "DisableVideo mp4" "rc=$rc streams=$streams"
rm -f "$b/output/v.mp4"
run video-off-target "$(req '{"URI":"oss://test-bucket/audio/clip.mp4"}' v.mp4 '"Container":"mp4","Audio":{"TranscodeAudio":{"Codec":"aac"}},"Video":{"DisableVideo":true},"Subtitle":{"DisableSubtitle":true}')"
streams=$(ffprobe -v error -show_entries stream=codec_type -of csv=p=0 "$b/output/v.mp4" 2>/dev/null | sort -u | tr '\n' ' ')
[ "$rc" = 0 ] && [ "$streams" = "audio " ] \
  && ok "Targets[].Video.DisableVideo and Subtitle.DisableSubtitle (true) ask for the audio-only output: accepted, the mp4 made audio only" \
  || not_ok "target DisableVideo/DisableSubtitle" "rc=$rc streams=$streams $out"
run video-on-target "$(req "$src" x.mp3 "$mp3,\"Video\":{\"DisableVideo\":false}")"
expect_error "Targets[].Video with DisableVideo false still asks for video: refused by name" 2 InvalidArgument "Targets[0].Video asks for"
run video-mp3 "$(req '{"URI":"oss://test-bucket/audio/clip.mp4"}' v.mp3 "$mp3")"
[ "$rc" = 0 ] && ok "a source with video into an audio container (mp3) needs nothing more" || not_ok "video into mp3" "$out"

# ---- TargetURI templates, Tags of any type --------------------------------------------------------
tags=',"Tags":{"course":101,"live":true,"who":"ann"}'
run template "$(req "$src" '{tags.course}/{dirname}/{barename}-{t_year}-{tags.live}{{x}}.{autoext}' "$mp3" "$tags")"
year=$(date -u +%Y) want="oss://test-bucket/output/101/audio/talk.one-$year-true{x}.mp3"
[ "$rc" = 0 ] && [ "$(jqo '.Targets[0].URI')" = "$want" ] && [ -f "$b/output/101/audio/talk.one-$year-true{x}.mp3" ] \
  && [ "$(jqo '.Tags.course')" = 101 ] && [ "$(jqo '.Tags.live')" = true ] \
  && ok "templates: {tags.*} {dirname} {barename} {t_year} {{ }} {autoext} resolved; Tags keep their types" \
  || not_ok "templates" "rc=$rc $(jqo '.Targets[0].URI') $(jqo .Message)"
run template-basename "$(req "$src" 'b/{bucket}-{basename}-{ext}-{index}-{streamindex}' "$mp3")"
[ "$(jqo '.Targets[0].URI')" = "oss://test-bucket/output/b/test-bucket-talk.one.wav-wav-1-0" ] \
  && ok "templates: {bucket} {basename} {ext} {index} {streamindex}" || not_ok "templates 2" "$(jqo '.Targets[0].URI') $(jqo .Message)"
run template-unknown "$(req "$src" '{nosuch}.mp3' "$mp3")"
expect_error "an unknown {variable} is refused by name" 2 InvalidArgument "{nosuch}"
run template-year "$(req "$src" '{year}.mp3' "$mp3")"
expect_error "{year} (the source's upload time) is refused, pointing at {t_year}" 2 InvalidArgument "{t_year}"
run template-tag "$(req "$src" '{tags.none}.mp3' "$mp3" "$tags")"
expect_error "{tags.KEY} of a missing tag is refused" 2 InvalidArgument "Tags has no none"
run template-brace "$(req "$src" 'a{b.mp3' "$mp3")"
expect_error "an unmatched brace is refused" 2 InvalidArgument "unmatched"
out=$("$bin" list-tasks --tag course=101); [ "$(jqo '.Tasks | length')" -ge 1 ] && [ "$(jqo '.Tasks[0].Tags.course')" = 101 ] \
  && ok "list-tasks --tag course=101 finds a task whose tag is the number 101" || not_ok "numeric tag selector" "$out"

echo "# fidelity (requests): $pass passed, $fail failed"
pass_req=$pass fail_req=$fail

# ---- the service over HTTP, through Alibaba's own OpenAPI client ---------------------------------
AK=LTAI5tFidelityKey SK=fidelity-secret
[ -d "$top/tests/oss/node_modules/@alicloud/openapi-client" ] || { echo "Bail out! run tests/deps.sh"; exit 1; }
start_server "$work/serve.log" "$bin" serve --listen 127.0.0.1:0 --workers 1 --oss-root "$root" --tasks "$work/tasks" \
  --access-key-id "$AK" --access-key-secret "$SK"
ep="127.0.0.1:$port"
call() { node "$top/tests/oss/openapi-call.js" "$ep" "$AK" "$SK" "$@"; }
tq='[{"URI":"oss://test-bucket/output/h{tags.n}.{autoext}",'"$mp3"'}]'
out=$(call CreateMediaConvertTask "{\"ProjectName\":\"p\",\"Sources\":[$src],\"Targets\":$tq,\"Tags\":{\"n\":1}}"); id1=$(jqo .body.TaskId)
sleep 0.2
out=$(call CreateMediaConvertTask "{\"ProjectName\":\"p\",\"Sources\":[$src2],\"Targets\":$(printf '%s' "$tq" | sed 's/tags.n/tags.n}x{tags.n/'),\"Tags\":{\"n\":2}}"); id2=$(jqo .body.TaskId)
for _ in $(seq 100); do
  st=$(call GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id2\"}" | jq -r .body.Status)
  [ "$st" = Succeeded ] && break; sleep 0.1
done
out=$(call GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id1\"}")
[ "$(jqo .body.Status)" = Succeeded ] && [ "$(jqo '.body.TaskRequestDefinition // "absent"')" = absent ] && [ -f "$b/output/h1.mp3" ] \
  && ok "GetTask: no TaskRequestDefinition unless asked; the template resolved over HTTP" || not_ok "GetTask default" "$out"
out=$(call GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id1\",\"RequestDefinition\":true}")
[ "$(jqo .body.TaskRequestDefinition | jq -r .ProjectName)" = p ] && ok "GetTask RequestDefinition=true: the request is there" || not_ok "GetTask RequestDefinition" "$out"
out=$(call GetTask "{\"ProjectName\":\"p\",\"TaskId\":\"$id1\",\"TaskType\":\"MediaConvert\"}")
[ "$(jqo .body.TaskId)" = "$id1" ] && ok "GetTask TaskType=MediaConvert finds it" || not_ok "GetTask TaskType ours" "$out"
out=$(call GetTask "{\"ProjectName\":\"p\",\"TaskId\":\"$id1\",\"TaskType\":\"VideoLabelClassification\"}")
[ "$(jqo .error.code)" = ResourceNotFound ] && [ "$(jqo .error.statusCode)" = 400 ] \
  && ok "GetTask as another TaskType: ResourceNotFound, HTTP 400 as the service's error table says" || not_ok "GetTask other type" "$out"
out=$(call ListTasks '{"ProjectName":"p","MaxResults":1}')
t=$(jqo .body.NextToken)
[ "$(jq -c .body.MaxResults <<< "$out")" = '"1"' ] && [ "$(jqo '.body.Tasks[0].TaskId')" = "$id1" ] && [ -n "$t" ] && [ "$t" != null ] \
  && ok "ListTasks MaxResults=1: MaxResults in the answer (a string, as the SDKs model it), a NextToken since more remain" || not_ok "ListTasks page 1" "$out"
out=$(call ListTasks "{\"ProjectName\":\"p\",\"MaxResults\":1,\"NextToken\":\"$t\"}")
[ "$(jqo '.body.Tasks[0].TaskId')" = "$id2" ] && [ "$(jqo '.body.NextToken // "absent"')" = absent ] \
  && ok "ListTasks page 2: the last task, and no NextToken" || not_ok "ListTasks page 2" "$out"
out=$(call ListTasks '{"ProjectName":"p","Sort":"StartTime","Order":"desc","RequestDefinition":true}')
[ "$(jqo '[.body.Tasks[].TaskId] | join(",")')" = "$id2,$id1" ] && [ "$(jqo '.body.Tasks[0].TaskRequestDefinition' | jq -r .ProjectName)" = p ] \
  && ok "ListTasks Sort=StartTime Order=desc RequestDefinition=true: newest first, with requests" || not_ok "ListTasks sort" "$out"
out=$(call ListTasks '{"ProjectName":"p","Sort":"StartTime","Order":"desc","MaxResults":1}'); t=$(jqo .body.NextToken)
out=$(call ListTasks "{\"ProjectName\":\"p\",\"Sort\":\"StartTime\",\"Order\":\"desc\",\"MaxResults\":1,\"NextToken\":\"$t\"}")
[ "$(jqo '.body.Tasks[0].TaskId')" = "$id1" ] && ok "ListTasks sorted pages: the token goes on in that order" || not_ok "ListTasks sorted pages" "$out"
start2=$(call GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id2\"}" | jq -r .body.StartTime)
out=$(call ListTasks "{\"ProjectName\":\"p\",\"StartTimeRange\":{\"Start\":\"$start2\"}}")
[ "$(jqo '[.body.Tasks[].TaskId] | join(",")')" = "$id2" ] && ok "ListTasks StartTimeRange from the second task's start: that one only" || not_ok "StartTimeRange" "$out"
out=$(call ListTasks '{"ProjectName":"p","EndTimeRange":{"End":"2001-01-01T00:00:00Z"}}')
[ "$(jqo '.body.Tasks | length')" = 0 ] && ok "ListTasks EndTimeRange in 2000: none" || not_ok "EndTimeRange" "$out"
out=$(call ListTasks '{"ProjectName":"p","TaskTypes":["VideoLabelClassification"]}')
a=$(jqo '.body.Tasks | length'); out=$(call ListTasks '{"ProjectName":"p","TaskTypes":["MediaConvert"]}')
[ "$a" = 0 ] && [ "$(jqo '.body.Tasks | length')" = 2 ] && ok "ListTasks TaskTypes: another type finds none, MediaConvert both" || not_ok "TaskTypes" "$a / $out"
out=$(call ListTasks '{"ProjectName":"p","Order":"sideways"}')
[ "$(jqo .error.code)" = InvalidArgument ] && [[ "$(jqo .error.message)" == *Order* ]] && ok "ListTasks: a bad Order is refused by name" || not_ok "bad Order" "$out"

# What the SDK marks required is required, as the service has it: GetTask's ProjectName, TaskType
# and TaskId, ListTasks' ProjectName (without, it would list every project).
out=$(call GetTask "{\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id1\"}")
no_project=$(jq -r '"\(.error.statusCode) \(.error.code) \(.error.message)"' <<< "$out")
out=$(call GetTask "{\"ProjectName\":\"p\",\"TaskId\":\"$id1\"}")
no_type=$(jq -r '"\(.error.statusCode) \(.error.code) \(.error.message)"' <<< "$out")
out=$(call ListTasks '{"MaxResults":1}')
no_list_project=$(jq -r '"\(.error.statusCode) \(.error.code) \(.error.message)"' <<< "$out")
[[ "$no_project" == "400 InvalidArgument "*"The parameter ProjectName is required but not provided."* ]] \
  && [[ "$no_type" == "400 InvalidArgument "*"The parameter TaskType is required but not provided."* ]] \
  && [[ "$no_list_project" == "400 InvalidArgument "*"The parameter ProjectName is required but not provided."* ]] \
  && ok "GetTask without ProjectName or TaskType, ListTasks without ProjectName: 400 InvalidArgument naming the parameter" \
  || not_ok "required parameters" "GetTask: $no_project / $no_type; ListTasks: $no_list_project"

# A long request: 11 sources with long UTF-8 names, every parameter in the query as the SDK sends.
dir=$(printf 'ü%.0s' $(seq 125)); long="$dir/$dir/$dir/$dir"
mkdir -p "$b/audio/$long" && cp "$b/audio/two.wav" "$b/audio/$long/x.wav"
srcs=$(for i in $(seq 11); do printf '{"URI":"oss://test-bucket/audio/%s/x.wav"}' "$long"; [ "$i" -lt 11 ] && printf ,; done)
out=$(call CreateMediaConvertTask "{\"ProjectName\":\"p\",\"Sources\":[$srcs],\"Targets\":[{\"URI\":\"oss://test-bucket/output/long.mp3\",$mp3}]}")
len=$(printf '%s' "[$srcs]" | jq -sRr @uri | wc -c)
id3=$(jqo .body.TaskId)
for _ in $(seq 100); do [ "$(call GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id3\"}" | jq -r .body.Status)" = Succeeded ] && break; sleep 0.2; done
n=$(samples "$b/output/long.mp3" 2>/dev/null)
[ "$len" -gt 32768 ] && [ -n "$n" ] && [ "$n" -ge $((11 * 44100)) ] \
  && ok "a $len-byte Sources in the query (over 32 KiB) is taken and merged ($n samples)" \
  || not_ok "long query" "len=$len n=$n $out"

# The edges of HTTP, byte for byte (tests/e2e/http-edges.py): whatever the server refuses itself
# is answered in the service's JSON error shape, never a library's HTML; what is a call is served.
port_signed=$port
start_server "$work/serve-open.log" "$bin" serve --listen 127.0.0.1:0 --workers 1 --oss-root "$root" --tasks "$work/tasks-open"
edges=$(python3 "$here/http-edges.py" "$port")
want="request-line-9MiB 414 RequestLineTooLong
headers-9MiB 431 RequestHeaderFieldsTooLarge
not-http 400 MalformedRequest
http-2.0 505 HttpVersionNotSupported
folded-header 400 MalformedRequest
body-over-1MiB 413 RequestTooLarge
bad-content-length 400 MalformedRequest
body-cut-short 400 MalformedRequest
bad-chunk 400 MalformedRequest
gzip-coding 501 NotImplemented
nul-in-query 400 MalformedRequest
nul-in-form 400 MalformedRequest
put 405 MethodNotAllowed
chunked-form 200 ok
http-1.0 200 ok
lf-lines 200 ok
absolute-target 200 ok
absolute-no-path 200 ok
pipelined 400+200 ResourceNotFound+ok
expect-100 200 ok
no-host 400 MalformedRequest
two-hosts 400 MalformedRequest
foreign-host 403 Forbidden
http-1.0-no-host 403 Forbidden
absolute-foreign 403 Forbidden"
got=$(printf '%s\n' "$edges" | awk '{ print $1, $2, $3 }')
slow=$(printf '%s\n' "$edges" | awk '$4 > 2 { print $1 }')
[ "$got" = "$want" ] && [ -z "$slow" ] \
  && ok "HTTP edges: a 9 MiB request line (414), 9 MiB of headers (431), malformed calls, HTTP/2.0, a body over 1 MiB, NUL bytes, a missing or doubled Host: each in the service's JSON shape, never HTML; a keyless server's other names refused (403); chunked bodies, HTTP/1.0, pipelined calls and Expect: 100-continue served at once" \
  || not_ok "HTTP edges (want | got)" "$(diff <(echo "$want") <(echo "$got") | tr '\n' ' ') slow: $slow"
port=$port_signed

# Signatures: the gateway's codes, statuses and messages; ACS3-HMAC-SM3 taken.
out=$(node "$top/tests/oss/openapi-call.js" "$ep" "$AK" wrong-secret GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id1\"}")
[ "$(jqo .error.code)" = SignatureDoesNotMatch ] && [ "$(jqo .error.statusCode)" = 400 ] \
  && [[ "$(jqo .error.message)" == *"Specified signature is not matched with our calculation."* ]] \
  && ok "a wrong secret: 400 SignatureDoesNotMatch, the gateway's message" || not_ok "wrong secret" "$out"
out=$(node "$top/tests/oss/openapi-call.js" "$ep" LTAI5tNoSuchKey "$SK" GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id1\"}")
[ "$(jqo .error.code)" = InvalidAccessKeyId.NotFound ] && [ "$(jqo .error.statusCode)" = 404 ] \
  && [[ "$(jqo .error.message)" == *"Specified access key is not found."* ]] \
  && ok "an unknown AccessKeyId: 404 InvalidAccessKeyId.NotFound, the gateway's message" || not_ok "unknown key" "$out"
out=$(OPENAPI_SIGNATURE_ALGORITHM=ACS3-HMAC-SM3 call GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id1\"}")
[ "$(jqo .body.TaskId)" = "$id1" ] && ok "the SDK's ACS3-HMAC-SM3 signature is taken" || not_ok "SM3" "$out"
out=$(OPENAPI_SIGNATURE_ALGORITHM=ACS3-HMAC-SM3 node "$top/tests/oss/openapi-call.js" "$ep" "$AK" wrong-secret GetTask "{\"ProjectName\":\"p\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id1\"}")
[ "$(jqo .error.code)" = SignatureDoesNotMatch ] && ok "an SM3 signature with a wrong secret is SignatureDoesNotMatch" || not_ok "SM3 wrong" "$out"

# ---- every field of the SDK's models, through serve ----------------------------------------------
# tests/oss/sdk-fields.js sends each of the 199 leaves of CreateMediaConvertTaskRequest (as the
# official SDK's models have them, tests/sdk/) on its own and fails on any that is accepted and
# changes nothing (the answer, the objects written, the MNS messages sent) unless probes.json
# names it inert with its reason; a refusal must be InvalidArgument naming the field.
sdk=$b/sdk/src
mkdir -p "$sdk"
ff -f lavfi -i "sine=440:d=1:sample_rate=44100" -ac 2 -metadata title=Talk "$sdk/a.wav"
ff -f lavfi -i "sine=660:d=1:sample_rate=22050" -ac 1 "$sdk/b.wav"
ff -f lavfi -i "testsrc=d=1:size=64x48:rate=10" -f lavfi -i "sine=440:d=1" -shortest -c:v mpeg4 -c:a aac "$sdk/clip.mp4"
ff -f lavfi -i "sine=440:d=1" -c:a libmp3lame -b:a 32k "$sdk/low.mp3"
ff -f lavfi -i "sine=440:d=1" -f lavfi -i "sine=880:d=1" -map 0 -map 1 -c:a flac "$sdk/two-streams.mka"
start_server "$work/sdk-recv.log" node "$top/tests/oss/notify-receiver.js" --ak "$AK" --sk "$SK" --topic sdk-done
recv="http://127.0.0.1:$port"
OSS_ACCESS_KEY_ID=$AK OSS_ACCESS_KEY_SECRET=$SK start_server "$work/serve-sdk.log" "$bin" serve --listen 127.0.0.1:0 \
  --workers 1 --oss-root "$root" --tasks "$work/tasks-sdk" --access-key-id "$AK" --access-key-secret "$SK" --mns-endpoint "$recv"
node "$top/tests/oss/sdk-fields.js" "127.0.0.1:$port" "$AK" "$SK" "$b" "$recv" \
  "$top/tests/sdk/imm-20200930-create-media-convert-task.json" "$top/tests/sdk/probes.json" > "$work/sdk-fields.jsonl"; rc=$?
summary=$(tail -1 "$work/sdk-fields.jsonl")
[ "$rc" = 0 ] && [ "$(jq -r .failed <<< "$summary")" = 0 ] && [ "$(jq -r .fields <<< "$summary")" -ge 199 ] \
  && ok "every field of the SDK's CreateMediaConvertTaskRequest through serve: $(jq -r '"\(.fields) fields: \(.counts.honoured) honoured, \(.counts.refused) refused by name, \(.counts.inert) inert as docs/request.md says"' <<< "$summary"), none dropped" \
  || not_ok "SDK fields (the failing ones)" "rc=$rc $(jq -c 'select(.outcome == "dropped" or .outcome == "unnamed" or .outcome == "unstable-base")' "$work/sdk-fields.jsonl" 2>/dev/null | head -20) $summary"
# The same judge must fail a drop: told nothing is inert, it reports exactly the inert leaves.
jq '.inert = {}' "$top/tests/sdk/probes.json" > "$work/probes-none-inert.json"
node "$top/tests/oss/sdk-fields.js" "127.0.0.1:$port" "$AK" "$SK" "$b" "$recv" \
  "$top/tests/sdk/imm-20200930-create-media-convert-task.json" "$work/probes-none-inert.json" \
  '^(CredentialConfig|Targets\[\]\.Subtitle\.DisableSubtitle|Targets\[\]\.Audio\.TranscodeAudio\.Bitrate$)' > "$work/sdk-drops.jsonl"; rc=$?
drops=$(jq -r 'select(.outcome == "dropped") | .field' "$work/sdk-drops.jsonl" | sort | tr '\n' ' ')
want_drops=$(jq -r '.inert | keys[]' "$top/tests/sdk/probes.json" | sort | tr '\n' ' ')
[ "$rc" = 1 ] && [ "$drops" = "$want_drops" ] && [ "$(jq -r 'select(.field == "Targets[].Audio.TranscodeAudio.Bitrate") | .outcome' "$work/sdk-drops.jsonl")" = honoured ] \
  && ok "the SDK-field judge fails a field accepted without effect: with no field declared inert, it reports the 6 inert ones dropped (and Bitrate still honoured)" \
  || not_ok "SDK-field judge (want dropped | got)" "rc=$rc want: $want_drops got: $drops"
# And on a server without --mns-endpoint, Notification.MNS.TopicName is refused by name.
node "$top/tests/oss/sdk-fields.js" "$ep" "$AK" "$SK" "$b" "$recv" "$top/tests/sdk/imm-20200930-create-media-convert-task.json" \
  "$top/tests/sdk/probes.json" '^Notification\.MNS\.TopicName$' > "$work/sdk-mns.jsonl"; rc=$?
mns=$(jq -r 'select(.field) | "\(.outcome) \(.detail)"' "$work/sdk-mns.jsonl")
[ "$rc" = 0 ] && [[ "$mns" == "refused "*"Notification.MNS.TopicName"*"--mns-endpoint"* ]] \
  && ok "on a server without --mns-endpoint the judge finds Notification.MNS.TopicName refused, naming the field and the option" \
  || not_ok "SDK field MNS without endpoint" "rc=$rc $mns"
echo "# fidelity: SDK fields honoured: $(jq -r 'select(.outcome == "honoured") | .field' "$work/sdk-fields.jsonl" | tr '\n' ' ')"

echo "# fidelity: $pass passed, $fail failed"
[ "$fail" = 0 ]
