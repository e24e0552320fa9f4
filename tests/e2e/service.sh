#!/usr/bin/env bash
# Service-surface suite: task records (get-task, list-tasks, crash recovery) and completion
# notifications, checked against receivers on 127.0.0.1 that this script starts.
#   tests/e2e/service.sh BIN
set -uo pipefail
bin=$(realpath "${1:?usage: service.sh path/to/immerge}")
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/immerge-service.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
root="$work/root"
b="$root/test-bucket"
. "$here/lib.sh"

"$top/testdata/gen-media.sh" "$root" > /dev/null || { echo "Bail out! fixtures"; exit 1; }
ex_aac="$top/testdata/example-aac.json" ex_mp3="$top/testdata/example-mp3.json"
runq() { "$bin" run --quiet --oss-root "$root" "$@"; }

test_records() {
  local id1 id2 id3 t
  id1=$(runq "$ex_aac" | jq -r .TaskId)
  id2=$(runq "$ex_mp3" | jq -r .TaskId)
  sed 's#audio/seg2.mp3#audio/missing.mp3#' "$ex_mp3" > "$work/missing.json"
  id3=$(runq "$work/missing.json" 2>/dev/null | jq -r .TaskId)
  out=$("$bin" get-task "$id1"); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo .TaskId)" = "$id1" ] && [ "$(jqo .Status)" = Succeeded ] && [ "$(jqo .Progress)" = 100 ] \
    && [ "$(jqo '.Targets[0].URI')" = oss://test-bucket/output/concat.aac ] && [ "$(jqo .TaskRequestDefinition | jq -r .ProjectName)" = test-project ] \
    && ok "get-task: the task as GetTask shows it (Status, Progress, Targets, TaskRequestDefinition)" || not_ok "get-task" "rc=$rc $out"
  out=$("$bin" get-task "$id3"); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo .Status)" = Failed ] && [ "$(jqo .Code)" = ResourceNotFound ] \
    && ok "get-task: a failed task keeps its Code and Message" || not_ok "get-task failed task" "$out"
  out=$("$bin" get-task MediaConvert-nope 2>/dev/null); rc=$?
  expect_error "get-task: an unknown TaskId is ResourceNotFound" 2 ResourceNotFound "MediaConvert-nope"
  out=$("$bin" list-tasks); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo '[.Tasks[].TaskId] | join(",")')" = "$id1,$id2,$id3" ] && [ "$(jqo .NextToken)" = "" ] \
    && [ "$(jqo '.Tasks[0].TaskRequestDefinition // "absent"')" = absent ] \
    && ok "list-tasks: all three in submission order, no NextToken, no request definitions" || not_ok "list-tasks" "$out"
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

test_records
test_running_and_crash
test_notifications

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
