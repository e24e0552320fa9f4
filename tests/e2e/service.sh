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

test_records
test_running_and_crash

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
