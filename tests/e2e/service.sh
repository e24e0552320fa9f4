#!/usr/bin/env bash
# Service-surface suite: task records (get-task, list-tasks, crash recovery) and completion
# notifications, checked against receivers on 127.0.0.1 that this script starts.
#   tests/e2e/service.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

"$top/testdata/gen-media.sh" "$root" > /dev/null || { echo "Bail out! fixtures"; exit 1; }
ex_aac="$top/testdata/example-aac.json" ex_mp3="$top/testdata/example-mp3.json"
runq() { "$bin" run --quiet --oss-root "$root" "$@"; }

test_records() {
  local id1 id2 id3 t
  id1=$(runq "$ex_aac" | jq -r .TaskId)
  id2=$(runq "$ex_mp3" | jq -r .TaskId)
  sed 's#audio/seg2.mp3#audio/missing.mp3#' "$ex_mp3" > "$work/missing.json"
  id3=$(runq "$work/missing.json" 2>/dev/null | jq -r .TaskId)
  out=$("$bin" get-task --request-definition "$id1"); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo .TaskId)" = "$id1" ] && [ "$(jqo .Status)" = Succeeded ] && [ "$(jqo .Progress)" = 100 ] \
    && [ "$(jqo '.Targets[0].URI')" = oss://test-bucket/output/concat.aac ] && [ "$(jqo .TaskRequestDefinition | jq -r .ProjectName)" = test-project ] \
    && ok "get-task: the task as GetTask shows it (Status, Progress, Targets, TaskRequestDefinition)" || not_ok "get-task" "rc=$rc $out"
  out=$("$bin" get-task "$id3"); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo .Status)" = Failed ] && [ "$(jqo .Code)" = ResourceNotFound ] \
    && ok "get-task: a failed task keeps its Code and Message" || not_ok "get-task failed task" "$out"
  out=$("$bin" get-task MediaConvert-nope 2>/dev/null); rc=$?
  expect_error "get-task: an unknown TaskId is ResourceNotFound" 2 ResourceNotFound "MediaConvert-nope"
  out=$("$bin" list-tasks); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo '[.Tasks[].TaskId] | join(",")')" = "$id1,$id2,$id3" ] && [ "$(jqo '.NextToken // "absent"')" = absent ] \
    && [ "$(jqo '.Tasks[0].TaskRequestDefinition // "absent"')" = absent ] && [ "$(jqo .MaxResults)" = 100 ] \
    && ok "list-tasks: all three in submission order, MaxResults 100, no NextToken, no request definitions" || not_ok "list-tasks" "$out"
  out=$("$bin" list-tasks --status Failed); [ "$(jqo '[.Tasks[].TaskId] | join(",")')" = "$id3" ] \
    && ok "list-tasks --status Failed: only the failed one" || not_ok "list --status" "$out"
  out=$("$bin" list-tasks --max 2); t=$(jqo .NextToken)
  local page2; page2=$("$bin" list-tasks --max 2 --next-token "$t" | jq -r '[.Tasks[].TaskId] | join(",")')
  [ "$(jqo '.Tasks | length')" = 2 ] && [ -n "$t" ] && [ "$page2" = "$id3" ] \
    && ok "list-tasks --max 2: two, then the third with NextToken" || not_ok "pagination" "$out / $page2"
  jq '.Tags = {"course": "101", "kind": "lecture"} | .ProjectName = "other"' "$ex_mp3" > "$work/tagged.json"
  local id4; id4=$(runq "$work/tagged.json" | jq -r .TaskId)
  out=$("$bin" list-tasks --tag course=101); [ "$(jqo '[.Tasks[].TaskId] | join(",")')" = "$id4" ] \
    && ok "list-tasks --tag course=101: the tagged task only" || not_ok "list --tag" "$out"
  out=$("$bin" list-tasks --project other); [ "$(jqo '[.Tasks[].TaskId] | join(",")')" = "$id4" ] && [ "$(jqo .ProjectName)" = other ] \
    && ok "list-tasks --project other: that project's only" || not_ok "list --project" "$out"
  out=$("$bin" list-tasks --next-token bogus 2>/dev/null); rc=$?
  expect_error "list-tasks: a NextToken we never gave is refused" 2 InvalidArgument "NextToken"
}

test_running_and_crash() {
  ff -f lavfi -i "sine=f=440:d=1800:sample_rate=44100" -ac 2 -c:a flac "$b/audio/long.flac"
  printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/long.flac"}],"Targets":[{"URI":"oss://test-bucket/output/long.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":64000}}}]}' > "$work/long.json"
  "$bin" run --quiet --oss-root "$root" "$work/long.json" > "$work/long.out" &
  local pid=$! id="" progress=0
  for _ in $(seq 50); do
    sleep 0.2
    out=$("$bin" list-tasks --status Running); id=$(jqo '.Tasks[0].TaskId // ""'); progress=$(jqo '.Tasks[0].Progress // 0')
    [ -n "$id" ] && [ "$progress" -gt 0 ] && break
  done
  [ -n "$id" ] && [ "$progress" -gt 0 ] && ok "a running task is listed Running with Progress $progress" || not_ok "running task" "$out"
  kill -9 "$pid"; wait "$pid" 2>/dev/null
  out=$("$bin" get-task "$id"); rc=$?
  [ "$(jqo .Status)" = Failed ] && [ "$(jqo .Code)" = TaskInterrupted ] && [[ "$(jqo .Message)" == *"pid $pid"* ]] && [ -n "$(jqo .EndTime)" ] \
    && ok "after kill -9 the task is Failed, Code TaskInterrupted, naming pid $pid" || not_ok "crash recovery" "$out"
  [ -z "$(find "$b/output" -name '*long*')" ] && ok "the killed task left no output, not even a temporary file" \
    || not_ok "killed task output" "$(find "$b/output" -name '*long*')"
  rm -f "$b/audio/long.flac"
}


test_notifications() {
  local AK=LTAI5tNotifyTestKey SK=notify-secret-3f9a TOKEN=sts-notify-token
  [ -d "$top/tests/oss/node_modules/@alicloud/mns" ] || { echo "Bail out! run tests/deps.sh"; exit 1; }
  start_server "$work/recv.log" node "$top/tests/oss/notify-receiver.js" --ak "$AK" --sk "$SK" --topic immerge-done
  local recv="http://127.0.0.1:$port" msgs
  export OSS_ACCESS_KEY_ID=$AK OSS_ACCESS_KEY_SECRET=$SK OSS_SESSION_TOKEN=$TOKEN
  jq '.Notification = {"MNS": {"TopicName": "immerge-done"}, "ExtendedMessageURI": "oss://test-bucket/notes/done.json"} | .UserData = "lecture-7"' \
    "$ex_mp3" > "$work/notify.json"
  out=$(runq --mns-endpoint "$recv" --account-id 1234567890 --region cn-hangzhou --notify-url "$recv/hook" \
    --notify-file "$work/messages.jsonl" "$work/notify.json"); rc=$?
  local id; id=$(jqo .TaskId)
  [ "$rc" = 0 ] && [ "$(jqo '[.Notifications[].Status] | unique | join(",")')" = Delivered ] && [ "$(jqo '.Notifications | length')" = 4 ] \
    && [ "$(jqo '.Notifications[] | select(.Destination == "MNS") | .MessageId')" = MSG-1 ] \
    && ok "MNS, ExtendedMessageURI, URL and file: all four Delivered, MNS MessageId recorded" || not_ok "notify all" "rc=$rc $(jqo .Notifications)"
  msgs=$(curl -s "$recv/__messages")
  local m; m=$(printf '%s' "$msgs" | jq -c '.[] | select(.kind == "mns") | .body | fromjson')
  local content; content=$(printf '%s' "$m" | jq -r .content)
  if [ "$(printf '%s' "$m" | jq -r .source)" = acs.imm ] && [ "$(printf '%s' "$m" | jq -r .type)" = imm:Task:MediaConvert ] \
     && [ "$(printf '%s' "$m" | jq -r .subject)" = "acs:imm:cn-hangzhou:1234567890:test-project/imm:Task:MediaConvert" ] \
     && [[ "$(printf '%s' "$m" | jq -r .time)" =~ ^1[0-9]{12}$ ]] && [ "$(printf '%s' "$m" | jq -r .id)" = "$(jqo .EventId)" ] \
     && [ "$(printf '%s' "$content" | jq -r .TaskId)" = "$id" ] && [ "$(printf '%s' "$content" | jq -r .Status)" = Succeeded ] \
     && [ "$(printf '%s' "$content" | jq -r .UserData)" = lecture-7 ] && [ "$(printf '%s' "$content" | jq -r '.Targets[0].URI')" = oss://test-bucket/output/concat.mp3 ] \
     && [ "$(printf '%s' "$msgs" | jq -r '.[] | select(.kind == "mns") | .token')" = "$TOKEN" ]; then
    ok "MNS: the envelope (id, source, type, subject, epoch-ms time) and content (TaskId, Status, UserData, Targets), signature checked by @alicloud/mns, STS token sent"
  else
    not_ok "MNS message" "$m"
  fi
  [ "$(printf '%s' "$msgs" | jq -r '[.[] | select(.kind == "hook") | .parsed and (.type == "application/json")] | all')" = true ] \
    && [ "$(printf '%s' "$msgs" | jq '[.[] | select(.kind == "hook")] | length')" = 1 ] \
    && ok "--notify-url: one JSON POST" || not_ok "notify-url" "$msgs"
  [ "$(jq -r .TaskId "$b/notes/done.json" 2>/dev/null)" = "$id" ] && [ "$(jq -r '.Targets[0].Samples' "$b/notes/done.json")" -gt 0 ] \
    && ok "ExtendedMessageURI: the full task JSON at oss://test-bucket/notes/done.json" || not_ok "extended" "$(ls "$b/notes" 2>&1)"
  [ "$("$bin" get-task "$id" | jq -r '.Notifications | length')" = 4 ] && ok "the record keeps the delivery outcomes" || not_ok "record outcomes"
  local missing; missing=$(printf '%s' "$content" | jq -r '[("ProjectName","DatasetName","RequestId","StartTime","EndTime","UserData","TaskType","TaskId","Status","Code","Message","EventSourceId","Sources","Targets") as $k | select(has($k) | not) | $k] | join(",")')
  [ -z "$missing" ] && [ "$(printf '%s' "$content" | jq -r '[.Sources[].URI, .Targets[].URI] | length')" = 3 ] \
    && ok "the message content has every field the spec lists (Sources[].URI, Targets[].URI included)" || not_ok "content fields" "missing: $missing"

  # Concurrent runs append whole lines to the same file.
  local p1 p2 p3
  runq --notify-file "$work/messages.jsonl" "$ex_mp3" > /dev/null & p1=$!
  runq --notify-file "$work/messages.jsonl" "$ex_aac" > /dev/null & p2=$!
  runq --notify-file "$work/messages.jsonl" "$ex_mp3" > /dev/null & p3=$!
  wait $p1 $p2 $p3
  [ "$(wc -l < "$work/messages.jsonl")" = 4 ] && jq -e -s 'map(.content | fromjson | .Status) | length == 4' "$work/messages.jsonl" > /dev/null \
    && ok "--notify-file: 4 messages from 4 runs (3 at once), each a whole JSON line" || not_ok "notify-file lines" "$(cat "$work/messages.jsonl")"

  curl -s -X POST "$recv/__faults" -d '{"status":503,"count":2}'
  out=$(runq --mns-endpoint "$recv" "$work/notify.json"); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo '.Notifications[] | select(.Destination == "MNS") | .Status')" = Delivered ] \
    && ok "MNS: 503 twice, then delivered on the third attempt" || not_ok "MNS retry" "$(jqo .Notifications)"

  out=$(OSS_ACCESS_KEY_SECRET=wrong "$bin" run --oss-root "$root" --mns-endpoint "$recv" "$work/notify.json" 2> "$work/warn.err"); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo .Status)" = Succeeded ] && [ "$(jqo '.Notifications[] | select(.Destination == "MNS") | .Status')" = Failed ] \
    && [[ "$(jqo '.Notifications[] | select(.Destination == "MNS") | .Message')" == *SignatureDoesNotMatch* ]] && grep -q "not delivered" "$work/warn.err" \
    && ok "MNS refusing the signature: the task still Succeeded (exit 0), the failure recorded and warned" || not_ok "MNS refused" "rc=$rc $(jqo .Notifications)"

  jq '.Notification = {"MNS": {"TopicName": "no-such-topic"}, "RocketMQ": {"TopicName": "x"}}' "$ex_mp3" > "$work/bad-topic.json"
  out=$(runq --mns-endpoint "$recv" "$work/bad-topic.json"); rc=$?
  [ "$rc" = 0 ] && [[ "$(jqo '.Notifications[0].Message')" == *TopicNotExist* ]] && [ "$(jqo '.Notifications[1].Destination')" = RocketMQ ] \
    && [ "$(jqo '.Notifications[1].Status')" = Failed ] && ok "an unknown topic and RocketMQ: recorded as Failed, task Succeeded" || not_ok "bad topic" "$(jqo .Notifications)"
  out=$(runq "$work/notify.json" 2>/dev/null); rc=$?
  [ "$rc" = 0 ] && [[ "$(jqo '.Notifications[0].Message')" == *"no MNS endpoint"* ]] \
    && ok "a topic without --mns-endpoint: recorded as not delivered, saying why" || not_ok "no endpoint" "$(jqo .Notifications)"

  sed 's#audio/seg2.mp3#audio/missing.mp3#' "$ex_mp3" > "$work/fail.json"
  rm -f "$work/fail.jsonl"
  out=$(runq --notify-file "$work/fail.jsonl" "$work/fail.json" 2>/dev/null); rc=$?
  [ "$rc" = 1 ] && [ "$(jq -r '.content | fromjson | .Status + " " + .Code' "$work/fail.jsonl")" = "Failed ResourceNotFound" ] \
    && ok "a failed task is announced too, with its Code" || not_ok "failed task message" "$(cat "$work/fail.jsonl")"
  unset OSS_ACCESS_KEY_ID OSS_ACCESS_KEY_SECRET OSS_SESSION_TOKEN
}

# `immerge serve` called by Alibaba's own OpenAPI client (ACS3-HMAC-SHA256), and by hand-signed
# RPC calls whose signatures come from the official @alicloud/openapi-util.
call() { node "$top/tests/oss/openapi-call.js" "$@"; }
rpc_signed() { # ENDPOINT AK SK NONCE TIMESTAMP ACTION [K=V...]: a curl of an RPC-signed GET
  local ep=$1 ak=$2 sk=$3 nonce=$4 ts=$5 action=$6; shift 6
  local url; url=$(node -e '
    const U = require(process.argv[1] + "/node_modules/@alicloud/openapi-util").default;
    const [ak, sk, nonce, ts, action, ...kv] = process.argv.slice(2);
    const q = {Action: action, Version: "2020-09-30", AccessKeyId: ak, SignatureMethod: "HMAC-SHA1",
               SignatureVersion: "1.0", SignatureNonce: nonce, Timestamp: ts, Format: "JSON"};
    for (const p of kv) { const i = p.indexOf("="); q[p.slice(0, i)] = p.slice(i + 1); }
    q.Signature = U.getRPCSignature(q, "GET", sk);
    process.stdout.write(Object.entries(q).map(([k, v]) => k + "=" + encodeURIComponent(v)).join("&"));
  ' "$top/tests/oss" "$ak" "$sk" "$nonce" "$ts" "$action" "$@")
  curl -s -w '\n%{http_code}' "http://$ep/?$url"
}

test_serve() {
  local AK=LTAI5tServeKey SK=serve-secret-8c1d ep id t0 t1 status
  start_server "$work/serve.log" "$bin" serve --listen 127.0.0.1:0 --workers 2 --queue 64 \
    --access-key-id "$AK" --access-key-secret "$SK" --oss-root "$root" --state "$work/serve-state"
  ep="127.0.0.1:$port"; local spid=${pids[-1]}
  local params; params=$(jq -c '{ProjectName, Sources, Targets, AlignmentIndex}' "$ex_aac")
  rm -f "$b/output/concat.aac"
  t0=$(date +%s.%N)
  out=$(call "$ep" "$AK" "$SK" CreateMediaConvertTask "$params"); id=$(jqo .body.TaskId)
  for _ in $(seq 300); do
    status=$(call "$ep" "$AK" "$SK" GetTask "{\"ProjectName\":\"test-project\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id\"}" | jq -r .body.Status)
    [ "$status" = Succeeded ] || [ "$status" = Failed ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  local n1 n2 n3 want; n1=$(samples "$b/audio/seg1.mp3"); n2=$(samples "$b/audio/seg2.mp3"); n3=$(samples "$b/audio/seg3.mp3")
  want=$((n1 + n2 + $(rescale "$n3" 44100 22050)))
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  [[ "$id" == MediaConvert-* ]] && [ "$status" = Succeeded ] \
    && [ "$(call "$ep" "$AK" "$SK" GetTask "{\"ProjectName\":\"test-project\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id\"}" | jq -r '.body.Targets[0].Samples')" = "$want" ] \
    && [ "$(probe "$b/output/concat.aac" codec_name,sample_rate,channels)" = "aac,44100,2" ] \
    && ok "serve: @alicloud/openapi-client creates the AAC example, polls GetTask to Succeeded in $secs s; $want samples, ffprobe aac 44100 stereo" \
    || not_ok "serve with the official client" "id=$id status=$status $out"
  echo "# serve: submission to Succeeded for the seed's example: $secs s"

  out=$(call "$ep" "$AK" wrong-secret GetTask "{\"ProjectName\":\"test-project\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$id\"}")
  [ "$(jqo .error.code)" = SignatureDoesNotMatch ] && [ "$(jqo .error.statusCode)" = 400 ] \
    && [[ "$(jqo .error.message)" == *"Specified signature is not matched with our calculation."* ]] \
    && ok "serve: a wrong secret is refused as the gateway does (400 SignatureDoesNotMatch, its message)" || not_ok "wrong secret" "$out"
  out=$(curl -s -w '\n%{http_code}' "http://$ep/?Action=GetTask&ProjectName=test-project&TaskType=MediaConvert&TaskId=$id")
  [ "$(printf '%s' "$out" | tail -1)" = 400 ] && [ "$(printf '%s' "$out" | head -n -1 | jq -r .Code)" = MissingSignature ] \
    && ok "serve: an unsigned call is refused (400 MissingSignature)" || not_ok "unsigned" "$out"
  local now nonce; now=$(date -u +%Y-%m-%dT%H:%M:%SZ); nonce="n-$RANDOM-$RANDOM"
  out=$(rpc_signed "$ep" "$AK" "$SK" "$nonce" "$now" GetTask "ProjectName=test-project" "TaskType=MediaConvert" "TaskId=$id")
  [ "$(printf '%s' "$out" | tail -1)" = 200 ] && [ "$(printf '%s' "$out" | head -n -1 | jq -r .TaskId)" = "$id" ] \
    && ok "serve: an RPC-signed call (HMAC-SHA1, signed by @alicloud/openapi-util) is answered" || not_ok "rpc signed" "$out"
  out=$(rpc_signed "$ep" "$AK" "$SK" "$nonce" "$now" GetTask "ProjectName=test-project" "TaskType=MediaConvert" "TaskId=$id")
  [ "$(printf '%s' "$out" | tail -1)" = 400 ] && [ "$(printf '%s' "$out" | head -n -1 | jq -r .Code)" = SignatureNonceUsed ] \
    && ok "serve: the same call replayed is refused (SignatureNonceUsed)" || not_ok "replay" "$out"
  out=$(rpc_signed "$ep" "$AK" "$SK" "n-old-$RANDOM" "$(date -u -d '-20 min' +%Y-%m-%dT%H:%M:%SZ)" GetTask "ProjectName=test-project" "TaskType=MediaConvert" "TaskId=$id")
  [ "$(printf '%s' "$out" | head -n -1 | jq -r .Code)" = InvalidTimeStamp.Expired ] \
    && ok "serve: a call 20 minutes old is refused (InvalidTimeStamp.Expired)" || not_ok "stale" "$out"
  out=$(call "$ep" "$AK" "$SK" CreateMediaConvertTask '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/seg1.mp3"}],"Targets":[{"URI":"oss://test-bucket/output/x.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"aac"}}}]}')
  [ "$(jqo .error.statusCode)" = 400 ] && [ "$(jqo .error.code)" = InvalidArgument ] && [[ "$(jqo .error.message)" == *"Targets[0].Audio.TranscodeAudio.Codec"* ]] \
    && ok "serve: an invalid request is answered 400 InvalidArgument naming the field" || not_ok "invalid request" "$out"

  # Load: two long tasks occupy both workers, then 50 more arrive at once: all are accepted and
  # finish, none is lost, and GetTask answers at once while they wait.
  # Long enough (30 min of input) that both workers are still busy when the 50th call is answered.
  ff -f lavfi -i "sine=f=440:d=1800:sample_rate=44100" -ac 2 -c:a flac "$b/audio/half-hour.flac"
  local long='{"ProjectName":"test-project","Sources":[{"URI":"oss://test-bucket/audio/half-hour.flac"}],"Targets":[{"URI":"oss://test-bucket/output/load/long-%d.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":64000}}}]}'
  call "$ep" "$AK" "$SK" CreateMediaConvertTask "$(printf "$long" 1)" > /dev/null
  call "$ep" "$AK" "$SK" CreateMediaConvertTask "$(printf "$long" 2)" > /dev/null
  local ids=() callers=() k mp3
  for k in $(seq 50); do
    mp3=$(jq -c --arg k "$k" '{ProjectName, Sources, Targets} | .Targets[0].URI = "oss://test-bucket/output/load/\($k).{autoext}"' "$ex_mp3")
    call "$ep" "$AK" "$SK" CreateMediaConvertTask "$mp3" > "$work/load-$k.json" &
    callers+=($!)
  done
  wait "${callers[@]}"
  for k in $(seq 50); do ids+=("$(jq -r .body.TaskId "$work/load-$k.json")"); done
  local t_get; t_get=$( { /usr/bin/time -f %e node "$top/tests/oss/openapi-call.js" "$ep" "$AK" "$SK" GetTask "{\"ProjectName\":\"test-project\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"${ids[49]}\"}" > "$work/get-during.json"; } 2>&1 | tail -1)
  local during; during=$(jq -r '"\(.body.Status) \(.body.Progress) \(.body.ImmergeStatus)"' "$work/get-during.json")
  local waiting_start; waiting_start=$(jq -r '.body.StartTime // "none"' "$work/get-during.json")
  for _ in $(seq 900); do
    [ "$("$bin" list-tasks --state "$work/serve-state" --status Succeeded --project test-project | jq '.Tasks | length')" -ge 53 ] && break
    sleep 0.1
  done
  local done_n accepted; done_n=$(ls "$b/output/load" 2>/dev/null | wc -l)
  accepted=$(printf '%s\n' "${ids[@]}" | grep -c '^MediaConvert-')
  local started; started=$("$bin" get-task --state "$work/serve-state" "${ids[49]}" | jq -r .StartTime)
  [ "$accepted" = 50 ] && [ "$done_n" = 52 ] && [ "$during" = "Running 0 Queued" ] && [ "$waiting_start" != none ] \
    && [[ "$started" > "$waiting_start" ]] \
    && ok "serve load: 2 long + 50 tasks at once on 2 workers: all accepted, 52 outputs; GetTask answered in ${t_get} s while the last one waited, reported Running with Progress 0 and its creation as StartTime, which became its start when it ran" \
    || not_ok "load" "accepted=$accepted outputs=$done_n during=$during StartTime waiting $waiting_start, then $started"
  kill -TERM "$spid"; wait "$spid" 2>/dev/null

  # A small queue refuses what does not fit; SIGTERM drains: running tasks finish, queued ones
  # are recorded NotStarted. (One encoder per task: the first must still run when SIGTERM comes.)
  start_server "$work/serve2.log" "$bin" serve --listen 127.0.0.1:0 --workers 1 --queue 2 \
    --no-chunking --oss-root "$root" --state "$work/serve-state"
  ep="127.0.0.1:$port"; spid=${pids[-1]}
  local slow='{"ProjectName":"drain","Sources":[{"URI":"oss://test-bucket/audio/half-hour.flac"}],"Targets":[{"URI":"oss://test-bucket/output/drain-%d.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":64000}}}]}'
  local codes=() body
  for k in 1 2 3 4 5; do
    body=$(printf "$slow" "$k" | jq -c .)
    codes+=("$(curl -s -o "$work/q-$k.json" -w '%{http_code}' -X POST "http://$ep/" --data-urlencode "Action=CreateMediaConvertTask" \
      --data-urlencode "ProjectName=drain" --data-urlencode "Sources=$(jq -c .Sources <<< "$body")" --data-urlencode "Targets=$(jq -c .Targets <<< "$body")")")
    sleep 0.2
  done
  [ "${codes[*]}" = "200 200 200 429 429" ] && [ "$(jq -r .Code "$work/q-4.json")" = Throttling ] \
    && ok "serve: with 1 worker and a queue of 2, the 4th and 5th calls get 429 Throttling" || not_ok "queue bound" "${codes[*]}"
  sleep 0.5
  kill -TERM "$spid"; wait "$spid"; local rc=$?
  local st; st=$("$bin" list-tasks --state "$work/serve-state" --project drain | jq -r '[.Tasks[] | .Status + "/" + .Code] | join(" ")')
  [ "$rc" = 0 ] && [ "$st" = "Succeeded/ Failed/NotStarted Failed/NotStarted" ] \
    && [ -f "$b/output/drain-1.mp3" ] && [ ! -f "$b/output/drain-2.mp3" ] \
    && ok "serve: SIGTERM drains: the running task finishes, the 2 queued ones are reported Failed/NotStarted, the 2 refused ones not at all, exit 0" \
    || not_ok "drain" "rc=$rc $st"

  # Killed mid-task, then restarted: the records stay consistent.
  start_server "$work/serve3.log" "$bin" serve --listen 127.0.0.1:0 --workers 1 --oss-root "$root" --state "$work/serve-state"
  ep="127.0.0.1:$port"; spid=${pids[-1]}
  body=$(printf "$slow" 9 | jq -c .)
  local killed; killed=$(curl -s -X POST "http://$ep/" --data-urlencode "Action=CreateMediaConvertTask" --data-urlencode "ProjectName=drain" \
    --data-urlencode "Sources=$(jq -c .Sources <<< "$body")" --data-urlencode "Targets=$(jq -c .Targets <<< "$body")" | jq -r .TaskId)
  body=$(printf "$slow" 10 | jq -c .)
  local queued9; queued9=$(curl -s -X POST "http://$ep/" --data-urlencode "Action=CreateMediaConvertTask" --data-urlencode "ProjectName=drain" \
    --data-urlencode "Sources=$(jq -c .Sources <<< "$body")" --data-urlencode "Targets=$(jq -c .Targets <<< "$body")" | jq -r .TaskId)
  for _ in $(seq 50); do  # the first is running once its record says so
    [ "$("$bin" get-task --state "$work/serve-state" "$killed" | jq -r ".ImmergeStatus // .Status")" = Running ] && break
    sleep 0.1
  done
  kill -9 "$spid"; wait "$spid" 2>/dev/null
  start_server "$work/serve4.log" "$bin" serve --listen 127.0.0.1:0 --oss-root "$root" --state "$work/serve-state"
  out=$(curl -s "http://127.0.0.1:$port/?Action=GetTask&ProjectName=test-project&TaskType=MediaConvert&TaskId=$id")
  local k9; k9=$(curl -s "http://127.0.0.1:$port/?Action=GetTask&ProjectName=drain&TaskType=MediaConvert&TaskId=$killed" | jq -r '.Status + "/" + .Code')
  local q9; q9=$(curl -s "http://127.0.0.1:$port/?Action=GetTask&ProjectName=drain&TaskType=MediaConvert&TaskId=$queued9" | jq -r '.Status + "/" + .Code')
  [ "$(jqo .Status)" = Succeeded ] && [ "$k9" = Failed/TaskInterrupted ] && [ "$q9" = Failed/NotStarted ] \
    && [ ! -e "$b/output/drain-9.mp3" ] && [ ! -e "$b/output/drain-10.mp3" ] \
    && ok "serve: killed mid-task and restarted: earlier tasks answered, the running one Failed/TaskInterrupted, the queued one Failed/NotStarted (never run), no output" \
    || not_ok "restart" "$(jqo .Status) / $k9 / $q9"
  kill -TERM "${pids[-1]}"
  out=$("$bin" serve --listen 0.0.0.0:0 --oss-root "$root" --state "$work/serve-state" 2>/dev/null); rc=$?
  expect_error "serve: without keys, listening beyond loopback is refused" 2 InvalidArgument "loopback"
  rm -f "$b/audio/half-hour.flac"
}

# The SQLite records keep the same outbox: a server killed while its task's message is on its way
# (the receiver holds the POST unanswered: never acknowledged), then started again on the same
# records, sends it at once (its recorder is dead), exactly once.
test_serve_outbox() {
  start_server "$work/recv-outbox.log" node "$top/tests/oss/notify-receiver.js" --ak unused --sk unused
  local hook="http://127.0.0.1:$port"
  curl -s -f -X POST -d '{"hold": 1, "seconds": 60}' "$hook/__faults"
  start_server "$work/serve-ob1.log" "$bin" serve --listen 127.0.0.1:0 --workers 1 --oss-root "$root" \
    --state "$work/outbox-state" --notify-url "$hook/hook"
  local ep="127.0.0.1:$port" spid=${pids[-1]} id status=""
  id=$(curl -s -X POST "http://$ep/" --data-urlencode "Action=CreateMediaConvertTask" --data-urlencode "ProjectName=outbox" \
    --data-urlencode "Sources=$(jq -c .Sources "$ex_aac")" --data-urlencode "Targets=$(jq -c '.Targets | .[0].URI = "oss://test-bucket/output/outbox.{autoext}" | .[0:1]' "$ex_aac")" | jq -r .TaskId)
  for _ in $(seq 300); do
    status=$("$bin" get-task --state "$work/outbox-state" "$id" | jq -r .Status)
    [ "$status" = Succeeded ] && [ "$(curl -s "$hook/__held" | jq length)" = 1 ] && break; sleep 0.1
  done
  kill -9 "$spid"; wait "$spid" 2>/dev/null
  local before; before=$(curl -s "$hook/__messages" | jq length)
  start_server "$work/serve-ob2.log" "$bin" serve --listen 127.0.0.1:0 --workers 1 --oss-root "$root" \
    --state "$work/outbox-state" --notify-url "$hook/hook"
  local n=0
  for _ in $(seq 100); do n=$(curl -s "$hook/__messages" | jq length); [ "$n" -ge 1 ] && break; sleep 0.1; done
  sleep 3
  n=$(curl -s "$hook/__messages" | jq length)
  local got; got=$(curl -s "$hook/__messages" | jq -r 'if length > 0 then .[0].body | fromjson | .content | fromjson | .TaskId else "" end')
  [ "$status" = Succeeded ] && [ "$before" = 0 ] && [ "$n" = 1 ] && [ "$got" = "$id" ] \
    && ok "serve on SQLite killed while sending a task's message: restarted on the same records, it sends it, once" \
    || not_ok "SQLite outbox" "status=$status before=$before after=$n task=$got"
  kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null
  rm -f "$b/output/outbox.aac"
}

# The server under valgrind: signed calls, two tasks on two workers, a refused call, a drain with
# a task still running. Zero errors and no definite leaks. (Not for the sanitizer build.)
test_serve_valgrind() {
  local AK=LTAI5tVgKey SK=vg-secret-2b7e
  start_server "$work/vg-serve.log" "$top/tests/valgrind/run.sh" --log-file="$work/vg.log" "$bin" serve --listen 127.0.0.1:0 --workers 2 \
    --access-key-id "$AK" --access-key-secret "$SK" --oss-root "$root" --state "$work/vg-state"
  local ep="127.0.0.1:$port" vpid=${pids[-1]} a b2
  a=$(call "$ep" "$AK" "$SK" CreateMediaConvertTask "$(jq -c '{ProjectName, Sources, Targets, AlignmentIndex}' "$ex_aac")" | jq -r .body.TaskId)
  b2=$(call "$ep" "$AK" "$SK" CreateMediaConvertTask "$(jq -c '{ProjectName, Sources, Targets}' "$ex_mp3")" | jq -r .body.TaskId)
  call "$ep" "$AK" bad ListTasks '{}' > /dev/null
  for _ in $(seq 300); do
    [ "$(call "$ep" "$AK" "$SK" GetTask "{\"ProjectName\":\"test-project\",\"TaskType\":\"MediaConvert\",\"TaskId\":\"$b2\"}" | jq -r .body.Status)" = Succeeded ] && break
    sleep 0.2
  done
  kill -TERM "$vpid"; wait "$vpid"; local rc=$?
  [ "$rc" = 0 ] && [[ "$a" == MediaConvert-* ]] && ok "valgrind: clean over serve (signed calls, 2 workers, a refusal, a drain)" \
    || { not_ok "valgrind serve" "rc=$rc"; grep -v '^--[0-9]*-- ' "$work/vg.log" | head -30; }
}

# Soak: 200 tasks, one after another in waves of 50, through one serve process (2 workers): every
# one succeeds, and its resident memory after the last wave is within 8 MiB of after the first.
test_soak() {
  start_server "$work/soak.log" "$bin" serve --listen 127.0.0.1:0 --workers 2 --queue 64 \
    --oss-root "$root" --state "$work/soak-state"
  local ep="127.0.0.1:$port" spid=${pids[-1]} wave k rss=() srcs
  srcs=$(jq -c .Sources "$ex_aac")
  for wave in 0 1 2 3; do
    for k in $(seq $((wave * 50)) $((wave * 50 + 49))); do
      curl -s -o /dev/null -X POST "http://$ep/" --data-urlencode "Action=CreateMediaConvertTask" \
        --data-urlencode "ProjectName=soak" --data-urlencode "Sources=$srcs" \
        --data-urlencode "Targets=[{\"URI\":\"oss://test-bucket/output/soak/$k.aac\",\"Container\":\"aac\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"aac\",\"Bitrate\":64000}}}]"
    done
    for _ in $(seq 600); do
      [ "$("$bin" list-tasks --state "$work/soak-state" --project soak --status Succeeded --max 100 | jq '.Tasks | length')" -ge $(( (wave + 1) * 50 > 100 ? 100 : (wave + 1) * 50 )) ] \
        && [ "$(ls "$b/output/soak" 2>/dev/null | wc -l)" -ge $(( (wave + 1) * 50 )) ] && break
      sleep 0.1
    done
    rss+=("$(awk '/VmRSS/ { print $2 }' "/proc/$spid/status")")
  done
  local n; n=$(ls "$b/output/soak" | wc -l)
  local failed; failed=$("$bin" list-tasks --state "$work/soak-state" --project soak --status Failed | jq '.Tasks | length')
  [ "$n" = 200 ] && [ "$failed" = 0 ] && [ $((rss[3] - rss[0])) -lt 8192 ] \
    && ok "soak: 200 tasks through one serve process, all Succeeded; RSS after each 50: ${rss[*]} KiB" \
    || not_ok "soak" "outputs=$n failed=$failed RSS ${rss[*]} KiB"
  echo "# soak: serve RSS after 50, 100, 150, 200 tasks: ${rss[*]} KiB"
  kill -TERM "$spid"; wait "$spid" 2>/dev/null
  rm -rf "$b/output/soak"
}

# Retention on SQLite: finished tasks are deleted --retain-days after their end, when the records
# are opened (and hourly by a server), reading only what goes: the purge's statement searches an
# index of the end times, not the table.
test_retention() {
  local db="$work/retain.db" old new
  runq --tasks "$db" "$ex_mp3" > /dev/null
  old=$(date -u -d '8 days ago' +%Y-%m-%dT%H:%M:%S.000Z); new=$(date -u -d '1 day ago' +%Y-%m-%dT%H:%M:%S.000Z)
  sqlite3 "$db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
    INSERT INTO tasks (task_id, project, status, start_time, json) SELECT 'MediaConvert-r' || i, project, 'Succeeded',
    start_time, json_set(json, '\$.TaskId', 'MediaConvert-r' || i, '\$.EndTime', CASE WHEN i <= 5000 THEN '$old' ELSE '$new' END)
    FROM tasks, n" || { not_ok "retention fixture" "sqlite3 failed"; return; }
  out=$("$bin" list-tasks --tasks "$db" --max 1); rc=$?
  local left gone_old plan
  left=$(sqlite3 "$db" "SELECT count(*) FROM tasks")
  gone_old=$(sqlite3 "$db" "SELECT count(*) FROM tasks WHERE json_extract(json, '\$.EndTime') < '$new'")
  plan=$(sqlite3 "$db" "EXPLAIN QUERY PLAN SELECT seq FROM tasks WHERE status NOT IN ('Running', 'Queued') AND json_extract(json, '\$.EndTime') < '$new' LIMIT 1000")
  [ "$rc" = 0 ] && [ "$left" = 15001 ] && [ "$gone_old" = 0 ] && echo "$plan" | grep -q "USING INDEX tasks_ended" \
    && ok "retention on SQLite (--retain-days 7): the 5000 tasks that ended 8 days ago deleted on open, the 15001 younger kept, found through the end-time index" \
    || not_ok "retention on SQLite" "rc=$rc left=$left old left=$gone_old plan: $plan"
}

test_records
test_retention
test_running_and_crash
test_notifications
test_serve
test_serve_outbox
[[ "$bin" == */asan/* ]] || test_serve_valgrind
[[ "$bin" == */asan/* ]] || test_soak  # memory is measured on the normal build

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
