#!/usr/bin/env bash
# What immerge tells beyond the service: `immerge plan` (what a run would do, without encoding),
# the join report in every task result (ImmergeReport), `immerge compare`, and the progress line.
# Each verdict comes from tools we did not write: ffprobe/ffmpeg (sample counts, packet counts,
# ebur128 loudness), sox (signals with known joins), jq.
#   tests/e2e/report.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

"$top/testdata/gen-media.sh" "$root" --formats || { echo "Bail out! fixtures"; exit 1; }
n1=$(samples "$b/audio/seg1.mp3"); n2=$(samples "$b/audio/seg2.mp3"); n3=$(samples "$b/audio/seg3.mp3")
ex="$top/testdata/example-aac.json"

# ---- plan ----------------------------------------------------------------------------------------
out=$("$bin" plan --oss-root "$root" "$ex" 2> "$work/plan.err"); rc=$?
[ "$rc" = 0 ] && printf '%s' "$out" | jq -e . > /dev/null && ok "plan: exit 0, JSON on stdout" \
  || not_ok "plan: exit 0, JSON" "rc=$rc $(cat "$work/plan.err")"
[ -z "$(find "$b/output" -type f)" ] && ok "plan: writes nothing" || not_ok "plan: writes nothing" "$(find "$b/output" -type f)"
got=$(jqo '[.Sources[] | "\(.Format)/\(.Codec)/\(.SampleRate)/\(.Channel)/\(.Clip.Samples)"] | join(" ")')
want="mp3/mp3float/44100/2/$n1 mp3/mp3float/44100/2/$n2 mp3/mp3float/22050/1/$n3"
[ "$got" = "$want" ] && ok "plan: each source's format, rate, channels and clip in samples (as ffmpeg decodes: $n1 $n2 $n3)" \
  || not_ok "plan: sources" "$got, wanted $want"
got=$(jqo '.Targets[0] | "\(.URI) \(.Encoder) \(.SampleRate.Value)/\(.SampleRate.From) \(.Channel.Value)/\(.Channel.From) \(.Bitrate.Value)/\(.Bitrate.From)"')
[ "$got" = "oss://test-bucket/output/concat.aac aac 44100/request 2/request 96000/request" ] \
  && ok "plan: the target's resolved URI, encoder and parameters from the request" || not_ok "plan: target" "$got"
predicted=$(jqo '.Targets[0].PredictedSamples')
run_out=$("$bin" run --quiet --oss-root "$root" "$ex"); merged=$(printf '%s' "$run_out" | jq -r '.Targets[0].Samples')
[ "$predicted" = "$merged" ] && [ "$merged" = $((n1 + n2 + $(rescale "$n3" 44100 22050))) ] \
  && ok "plan: predicted $predicted samples, exactly what the run merged" || not_ok "plan: prediction" "predicted $predicted, merged $merged"

# Left-out fields come from the AlignmentIndex source; an adaptive rate above it comes down.
printf '{"ProjectName":"p","AlignmentIndex":2,"Sources":[{"URI":"oss://test-bucket/audio/seg1.mp3","StartTime":0.5,"Duration":1},{"URI":"oss://test-bucket/audio/seg2.mp3"},{"URI":"oss://test-bucket/audio/seg3.mp3"}],"Targets":[{"URI":"oss://test-bucket/output/a.{autoext}","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3"}}},{"URI":"oss://test-bucket/output/b.{autoext}","Container":"mp4","Audio":{"TranscodeAudio":{"Codec":"aac","SampleRate":48000,"SampleRateOption":"adaptive","Bitrate":320000,"BitrateOption":"adaptive"}}}]}' > "$work/derive.json"
out=$("$bin" plan --oss-root "$root" "$work/derive.json")
got=$(jqo '.Targets[0] | "\(.URI) \(.SampleRate.Value) \(.SampleRate.From) \(.Channel.Value) \(.Channel.From)"')
[ "$got" = "oss://test-bucket/output/a.mp3 22050 AlignmentIndex source 1 AlignmentIndex source" ] \
  && ok "plan: left-out SampleRate and Channel from the AlignmentIndex source" || not_ok "plan: derived" "$got"
br=$(probe "$b/audio/seg3.mp3" bit_rate)
got=$(jqo '.Targets[1] | "\(.URI) \(.SampleRate.Value) \(.Bitrate.Value)"'); from=$(jqo '.Targets[1].SampleRate.From + " | " + .Targets[1].Bitrate.From')
[ "$got" = "oss://test-bucket/output/b.mp4 22050 $br" ] && [[ "$from" == *adaptive* ]] \
  && ok "plan: *Option adaptive outcomes (22050 Hz, $br bit/s: $from)" || not_ok "plan: adaptive" "$got ($from; source $br)"
start=$(jqo '.Sources[0].Clip.StartSample'); clip=$(jqo '.Sources[0].Clip.Samples')
run_out=$("$bin" run --quiet --oss-root "$root" "$work/derive.json")
[ "$start/$clip" = "22050/44100" ] && [ "$clip" = "$(printf '%s' "$run_out" | jq -r '.Sources[0].Samples')" ] \
  && [ "$(jqo '.Targets[0].PredictedSamples')" = "$(printf '%s' "$run_out" | jq -r '.Targets[0].Samples')" ] \
  && [ "$(jqo '.Targets[1].PredictedSamples')" = "$(printf '%s' "$run_out" | jq -r '.Targets[1].Samples')" ] \
  && ok "plan: a clip's samples and both targets' lengths as the run made them" \
  || not_ok "plan: clip" "$start/$clip; run $(printf '%s' "$run_out" | jq -c '[.Sources[0].Samples, .Targets[].Samples]'), plan $(printf '%s' "$out" | jq -c '[.Targets[].PredictedSamples]')"
# Every input format: where the plan calls its prediction exact, the run makes exactly that many.
exact=0 estimated=0 wrong=""
for f in "$b"/formats/in*; do
  printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/formats/%s"}],"Targets":[{"URI":"oss://test-bucket/output/f.{autoext}","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac","SampleRate":44100}}}]}' "${f##*/}" > "$work/f.json"
  p=$("$bin" plan --oss-root "$root" "$work/f.json"); r=$("$bin" run --quiet --oss-root "$root" "$work/f.json")
  pe=$(printf '%s' "$p" | jq -r '.Targets[0].PredictionExact'); ps=$(printf '%s' "$p" | jq -r '.Targets[0].PredictedSamples')
  rs=$(printf '%s' "$r" | jq -r '.Targets[0].Samples')
  if [ "$pe" = true ]; then exact=$((exact + 1)); [ "$ps" = "$rs" ] || wrong+=" ${f##*/}:$ps/$rs"
  else estimated=$((estimated + 1)); fi
done
[ -z "$wrong" ] && [ "$exact" -ge 12 ] && ok "plan: $exact input formats predicted exactly (and so made), $estimated estimated" \
  || not_ok "plan: exact predictions" "wrong:$wrong (exact $exact)"
out=$("$bin" plan --chunks 2 --oss-root "$root" "$ex")
[ "$(jqo '.Targets[0].Chunks')" = 2 ] && ok "plan: --chunks 2 shows 2 chunks" || not_ok "plan: chunks" "$(jqo '.Targets[0].Chunks')"
printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/none.mp3"}],"Targets":[{"URI":"oss://test-bucket/output/x.{autoext}","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]}' > "$work/missing.json"
out=$("$bin" plan --oss-root "$root" "$work/missing.json" 2> /dev/null); rc=$?
expect_error "plan: a missing source fails as run would (ResourceNotFound, exit 1)" 1 ResourceNotFound
out=$(printf '{"ProjectName":' | "$bin" plan --oss-root "$root" - 2> /dev/null); rc=$?
expect_error "plan: malformed JSON (exit 2)" 2 InvalidJSON

# ---- the join report -----------------------------------------------------------------------------
out=$("$bin" run --quiet --oss-root "$root" "$ex")
got=$(jqo '[.ImmergeReport.Sources[].Samples] | join(" ")')
[ "$got" = "$n1 $n2 $n3" ] && ok "report: samples taken per source ($got)" || not_ok "report: samples" "$got"
# LAME's delay and padding, from the file itself: packets * 1152 = delay + samples + padding, and
# ffprobe's start_time is the delay.
all=1
for i in 1 2 3; do
  f="$b/audio/seg$i.mp3"; r=$(rate_of "$f")
  pk=$(ffprobe -v error -select_streams a:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$f")
  delay=$(ffprobe -v error -show_entries stream=start_time -of csv=p=0 "$f" | awk -v r="$r" '{ printf "%d", $1 * r + 0.5 }')
  ts=$(jqo ".ImmergeReport.Sources[$((i - 1))].TrimmedStart"); te=$(jqo ".ImmergeReport.Sources[$((i - 1))].TrimmedEnd")
  n=$(samples "$f"); per=$([ "$r" = 22050 ] && echo 576 || echo 1152)
  [ "$ts" = "$delay" ] && [ $((pk * per)) = $((ts + n + te)) ] || { all=0; not_ok "report: seg$i delay/padding" "trimmed $ts+$te, ffprobe delay $delay, $pk packets of $per, $n samples"; }
done
[ $all = 1 ] && ok "report: each source's trimmed encoder delay and padding add up with its packets (ffprobe)"
got=$(jqo '[.ImmergeReport.Joins[] | "\(.After)-\(.Before)@\(.TargetSamples[0])"] | join(" ")')
[ "$got" = "0-1@$n1 1-2@$((n1 + n2))" ] && ok "report: each join's position in the output ($got)" || not_ok "report: join positions" "$got"
out_rec=$("$bin" get-task "$(jqo .TaskId)")
[ "$(printf '%s' "$out_rec" | jq -c .ImmergeReport)" = "$(printf '%s' "$out" | jq -c .ImmergeReport)" ] \
  && ok "report: kept in the task record (get-task)" || not_ok "report: in the record"

# ... and in the completion message's content (the task JSON, as a string).
"$bin" run --quiet --oss-root "$root" --notify-file "$work/messages.jsonl" "$ex" > /dev/null
got=$(tail -1 "$work/messages.jsonl" | jq -r '.content | fromjson | .ImmergeReport.Joins | length')
[ "$got" = 2 ] && ok "report: in the notification's content (2 joins)" || not_ok "report: in the notification" "$got"

# A click shows up as a number: the same 100 Hz tone cut in two at a crest (sample 44210),
# rejoined (seamless), against its second half inverted (a jump of twice the amplitude).
sox -n -r 44100 -c 1 -b 16 "$work/tone.wav" synth 2 sine 100 vol 0.5
sox "$work/tone.wav" "$b/audio/first.wav" trim 0 44210s
sox "$work/tone.wav" "$b/audio/second.wav" trim 44210s
sox "$work/tone.wav" "$b/audio/flipped.wav" trim 44210s vol -1
for pair in "second smooth" "flipped click"; do
  set -- $pair
  printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/first.wav"},{"URI":"oss://test-bucket/audio/%s.wav"}],"Targets":[{"URI":"oss://test-bucket/output/%s.{autoext}","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac"}}}]}' "$1" "$2" > "$work/$2.json"
  out=$("$bin" run --quiet --oss-root "$root" "$work/$2.json")
  eval "$2=\$(jqo '.ImmergeReport.Joins[0].JumpToStep')"
  eval "jump_$2=\$(jqo '.ImmergeReport.Joins[0].Jump')"
done
[ "$(echo "$smooth < 2 && $click > 50" | bc -l)" = 1 ] && [ "$(echo "$jump_click > 0.9" | bc -l)" = 1 ] \
  && ok "report: a seamless join measures JumpToStep $smooth, a polarity flip $click (jump $jump_click)" \
  || not_ok "report: click measure" "smooth $smooth, click $click (jump $jump_click)"

# ---- compare -------------------------------------------------------------------------------------
tone="$work/tone.wav"
out=$("$bin" compare "$tone" "$tone"); rc=$?
[ "$rc" = 0 ] && [ "$(jqo .Identical)" = true ] && [ "$(jqo .A.Samples)" = 88200 ] && [ "$(jqo .Snr)" = null ] \
  && ok "compare: a file against itself is identical (exit 0)" || not_ok "compare: itself" "rc=$rc $out"
sox "$tone" "$work/late.wav" pad 100s 0
out=$("$bin" compare "$tone" "$work/late.wav"); rc=$?
[ "$rc" = 1 ] && [ "$(jqo .OffsetSamples)" = 100 ] && [ "$(jqo .LengthDifference)" = 100 ] \
  && ok "compare: B 100 samples late is found by cross-correlation, and fails the default tolerances (exit 1)" \
  || not_ok "compare: offset" "rc=$rc $(printf '%s' "$out" | jq -c '[.OffsetSamples,.LengthDifference,.Mismatches]')"
# Once aligned, B is A sample for sample: no noise at all (Snr null).
out=$("$bin" compare --max-offset 100 --max-length-diff 100 "$tone" "$work/late.wav"); rc=$?
[ "$rc" = 0 ] && [ "$(jqo .Snr)" = null ] && [ "$(jqo .ComparedSamples)" = 88200 ] \
  && ok "compare: within --max-offset 100 it matches, and aligned it is sample for sample the same" \
  || not_ok "compare: aligned" "rc=$rc $(printf '%s' "$out" | jq -c '[.Mismatches, .Snr, .ComparedSamples]')"
# Periodic signals: two sines of whole cycles per second repeat every second, so within the
# search window a copy matches one period away exactly as well as at its true delay. The issue's
# file (the sines and pink noise) against itself is identical; copies delayed by sox are found at
# their delay (the excerpt's leading silence tells it from one period off), at 44.1 and 48 kHz.
bad="" found=""
for r in 44100 48000; do
  ff -f lavfi -i "sine=f=440:d=7:sample_rate=$r" -f lavfi -i "sine=f=663:d=7:sample_rate=$r" \
     -f lavfi -i "anoisesrc=d=7:c=pink:r=$r:a=0.2:seed=3" -filter_complex "[0][1][2]amix=inputs=3" -c:a flac "$work/noisy.flac"
  ff -f lavfi -i "sine=f=440:d=7:sample_rate=$r" -f lavfi -i "sine=f=663:d=7:sample_rate=$r" \
     -filter_complex "[0][1]amix=inputs=2" -c:a flac "$work/sines.flac"
  out=$("$bin" compare "$work/noisy.flac" "$work/noisy.flac")
  [ "$(jqo '[.Identical, .OffsetSamples] | join(",")')" = true,0 ] || bad+=" itself@$r:$(jqo '[.Identical, .OffsetSamples] | join(",")')"
  for f in sines noisy; do
    for delay in 100 5000 30000 44000; do
      sox "$work/$f.flac" "$work/delayed.flac" pad "${delay}s" 0
      out=$("$bin" compare "$work/$f.flac" "$work/delayed.flac")
      [ "$(jqo '[.OffsetSamples, .Snr] | join(",")')" = "$delay," ] && found+=" $f@$r+$delay" \
        || bad+=" $f@$r+$delay:$(jqo '[.OffsetSamples, .Correlation, .Snr] | join(",")')"
    done
  done
done
[ -z "$bad" ] && ok "compare: periodic signals: the issue's file is identical to itself, and 16 delayed copies are found at their true delay, sample for sample the same once aligned" \
  || not_ok "compare: periodic signals (case:offset,correlation,snr)" "$bad"
sox "$tone" "$work/quiet.wav" vol 0.5
out=$("$bin" compare "$tone" "$work/quiet.wav"); rc=$?
lufs() { ffmpeg -nostdin -hide_banner -i "$1" -af ebur128 -f null - 2>&1 | awk '/I:/ { v = $2 } END { print v }'; }
want=$(echo "$(lufs "$work/quiet.wav") - $(lufs "$tone")" | bc -l)
got=$(jqo .LoudnessDifference)
[ "$rc" = 1 ] && [ "$(echo "d = $got - $want; d < 0.1 && d > -0.1" | bc -l)" = 1 ] \
  && ok "compare: -6 dB measures $got LU (the ffmpeg CLI's ebur128: $want), a mismatch" || not_ok "compare: loudness" "rc=$rc got $got want $want"
peak=$(jqo '.B.Channels[0].PeakDb'); speak=$(sox "$work/quiet.wav" -n stats 2>&1 | awk '/Pk lev dB/ { print $4 }')
[ "$(echo "d = $peak - $speak; d < 0.05 && d > -0.05" | bc -l)" = 1 ] && ok "compare: peak $peak dB (sox: $speak)" || not_ok "compare: peak" "$peak vs sox $speak"
out=$("$bin" compare "$tone" "$work/nothing.wav" 2> /dev/null); rc=$?
[ "$rc" = 2 ] && [ "$(jqo .Code)" = ResourceNotFound ] && ok "compare: a missing file is an error (exit 2)" || not_ok "compare: missing" "rc=$rc $out"

# Ours against the ffmpeg CLI's AAC for the same merge (the example, resampled and concatenated):
# the same length, no offset, and close in loudness.
ff -i "$b/audio/seg1.mp3" -i "$b/audio/seg2.mp3" -i "$b/audio/seg3.mp3" -filter_complex \
  "[0:a]aresample=44100,aformat=sample_fmts=fltp:channel_layouts=stereo[a0];[1:a]aresample=44100,aformat=sample_fmts=fltp:channel_layouts=stereo[a1];[2:a]aresample=44100,aformat=sample_fmts=fltp:channel_layouts=stereo[a2];[a0][a1][a2]concat=n=3:v=0:a=1[out]" \
  -map "[out]" -c:a aac -b:a 96k "$work/ffmpeg.aac"
out=$("$bin" compare --oss-root "$root" --min-snr 10 --max-loudness-diff 0.5 oss://test-bucket/output/concat.aac "$work/ffmpeg.aac"); rc=$?
[ "$rc" = 0 ] && [ "$(jqo .OffsetSamples)" = 0 ] && [ "$(jqo .LengthDifference)" = 0 ] \
  && ok "compare: our AAC against the ffmpeg CLI's: same length, offset 0, SNR $(jqo .Snr) dB, loudness $(jqo .LoudnessDifference) LU apart" \
  || not_ok "compare: ours vs ffmpeg" "rc=$rc $(printf '%s' "$out" | jq -c '[.LengthDifference,.OffsetSamples,.Snr,.LoudnessDifference,.Mismatches]')"

# ---- progress ------------------------------------------------------------------------------------
"$bin" run --progress json --oss-root "$root" "$ex" > /dev/null 2> "$work/progress.err"
lines=$(grep -c '^{' "$work/progress.err")
last=$(grep '^{' "$work/progress.err" | tail -1)
# InputSeconds is the containers' word (MP3 durations include LAME's delay and padding).
total=$(echo "($n1 + $n2) / 44100 + $n3 / 22050" | bc -l)
if [ "$lines" -ge 1 ] && grep '^{' "$work/progress.err" | jq -e . > /dev/null \
   && [ "$(printf '%s' "$last" | jq -r .Progress)" = 100 ] \
   && [ "$(printf '%s' "$last" | jq -r "(.InputSeconds - $total) | fabs < 0.5")" = true ] \
   && [ "$(printf '%s' "$last" | jq -r '.Speed > 0 and .ElapsedSeconds > 0')" = true ] \
   && grep '^{' "$work/progress.err" | jq -s -e '[.[].Progress] | . == sort' > /dev/null; then
  ok "progress json: $lines JSON lines, rising to 100, InputSeconds $(printf '%s' "$last" | jq .InputSeconds), Speed $(printf '%s' "$last" | jq .Speed)x"
else not_ok "progress json" "$(head -c 600 "$work/progress.err")"; fi
script -qec "$bin run --oss-root $root $ex > /dev/null" /dev/null > "$work/tty.out" 2>&1
if grep -q $'\r' "$work/tty.out" && grep -q 'immerge: 100%' "$work/tty.out" && grep -q 'x real time' "$work/tty.out"; then
  ok "progress: on a terminal, one line redrawn: $(tr '\r' '\n' < "$work/tty.out" | grep 100% | sed 's/\x1b\[K//' | head -1)"
else not_ok "progress on a terminal" "$(cat -v "$work/tty.out" | head -3)"; fi
"$bin" run --oss-root "$root" "$ex" > /dev/null 2> "$work/piped.err"
[ ! -s "$work/piped.err" ] && ok "progress: quiet when stderr is not a terminal" || not_ok "progress: piped" "$(head -3 "$work/piped.err")"

echo "# report: $pass passed, $fail failed"
[ "$fail" = 0 ]
