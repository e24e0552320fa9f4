#!/usr/bin/env bash
# End-to-end tests: run build/immerge on generated media and check what it wrote with tools we did
# not write (ffprobe/ffmpeg, mpg123, faad, cmp), by exact sample counts where the format allows.
#   tests/e2e/run.sh BIN            all tests
#   IMMERGE_E2E_QUICK=1 ... BIN     skip the slow memory test (used for the sanitizer build)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

# run NAME REQUEST-JSON [immerge args...]: runs the task; sets rc, out (stdout), errout (stderr)
run() {
  local name=$1 req=$2; shift 2
  printf '%s' "$req" > "$work/$name.json"
  out=$("$bin" run --quiet --oss-root "$root" "$@" "$work/$name.json" 2> "$work/$name.err")
  rc=$?
  errout=$(cat "$work/$name.err")
}
nothing_written() { # no output and no temporary file anywhere under the output folder
  local left; left=$(find "$b/output" -type f ! -name 'keep.*' | head -3)
  [ -z "$left" ] && ok "$1: nothing left behind" || not_ok "$1: nothing left behind" "$left"
}

"$top/testdata/gen-media.sh" "$root" --formats || { echo "Bail out! fixtures"; exit 1; }
src_hash=$(sha256sum "$b"/audio/seg*.mp3)
n1=$(samples "$b/audio/seg1.mp3"); n2=$(samples "$b/audio/seg2.mp3"); n3=$(samples "$b/audio/seg3.mp3")

# ---- the seed's first example: three MP3s -> AAC 96 kbit/s 44.1 kHz stereo (ADTS) -------------
test_example_aac() {
  run ex-aac "$(cat "$top/testdata/example-aac.json")"
  local f="$b/output/concat.aac" want=$((n1 + n2 + $(rescale "$n3" 44100 22050)))
  [ "$rc" = 0 ] && [ "$(jqo .Status)" = Succeeded ] && [[ "$(jqo .TaskId)" == MediaConvert-* ]] \
    && ok "example aac: task succeeded" || not_ok "example aac: task succeeded" "rc=$rc $errout"
  [ "$(jqo '.Targets[0].URI')" = "oss://test-bucket/output/concat.aac" ] && [ -f "$f" ] \
    && ok "example aac: {autoext} -> concat.aac" || not_ok "example aac: {autoext} -> concat.aac"
  local fmt codec sr ch
  fmt=$(ffprobe -v error -show_entries format=format_name -of csv=p=0 "$f")
  codec=$(probe "$f" codec_name); sr=$(probe "$f" sample_rate); ch=$(probe "$f" channels)
  [ "$fmt/$codec/$sr/$ch" = "aac/aac/44100/2" ] && ok "example aac: ADTS AAC 44100 Hz stereo" \
    || not_ok "example aac: ADTS AAC 44100 Hz stereo" "$fmt/$codec/$sr/$ch"
  [ "$(jqo '.Targets[0].Samples')" = "$want" ] && ok "example aac: $want samples reported" \
    || not_ok "example aac: samples reported" "$(jqo '.Targets[0].Samples') != $want"
  # ADTS has no gapless info: a decoder returns the encoder's 1024 priming samples and pads the
  # last frame, so the decoded length is want + 1024 rounded up to whole frames.
  local dec faadn; dec=$(samples "$f")
  faadn=$(( ($(faad -q -w "$f" | wc -c) - 44) / 4 ))
  [ "$dec" = $(( (want + 1024 + 1023) / 1024 * 1024 )) ] && ok "example aac: ffmpeg decodes $dec" \
    || not_ok "example aac: ffmpeg decode length" "$dec for $want"
  [ "$faadn" -ge $((want - 1024)) ] && [ "$faadn" -le $((want + 1024)) ] \
    && ok "example aac: faad decodes $faadn (want $want +- 1 frame)" \
    || not_ok "example aac: faad decode length" "$faadn for $want"
  local kbps=$(( $(stat -c %s "$f") * 8 * 44100 / want / 1000 ))
  [ "$kbps" -ge 86 ] && [ "$kbps" -le 106 ] && ok "example aac: $kbps kbit/s (96 +-10%)" \
    || not_ok "example aac: bitrate" "$kbps kbit/s"
}

# ---- the seed's second example: two MP3s -> MP3 128 kbit/s ------------------------------------
test_example_mp3() {
  run ex-mp3 "$(cat "$top/testdata/example-mp3.json")"
  local f="$b/output/concat.mp3" want=$((n1 + n2))
  [ "$rc" = 0 ] && [ -f "$f" ] && ok "example mp3: concat.mp3 written" \
    || not_ok "example mp3: concat.mp3 written" "rc=$rc $errout"
  local got="$(probe "$f" codec_name)/$(probe "$f" sample_rate)/$(probe "$f" channels)"
  [ "$got" = "mp3/44100/2" ] && ok "example mp3: mp3 44100 Hz stereo (from the primary)" \
    || not_ok "example mp3: format" "$got"
  local m f2; m=$(( $(mpg123 -q -s "$f" | wc -c) / 4 )); f2=$(samples "$f")
  [ "$(abs $((m - want)))" -le 44 ] && ok "example mp3: mpg123 decodes $m of $want (within 1 ms)" \
    || not_ok "example mp3: mpg123 length" "$m for $want"
  [ "$(abs $((f2 - want)))" -le 44 ] && ok "example mp3: ffmpeg decodes $f2 of $want (within 1 ms)" \
    || not_ok "example mp3: ffmpeg length" "$f2 for $want"
  local kbps=$(( $(stat -c %s "$f") * 8 * 44100 / want / 1000 ))
  [ "$kbps" -ge 115 ] && [ "$kbps" -le 141 ] && ok "example mp3: $kbps kbit/s (128 +-10%)" \
    || not_ok "example mp3: bitrate" "$kbps kbit/s"
}

# ---- lossless: pieces of one signal merged back are the signal, bit for bit -------------------
lossless_request() { # lossless_request BITS-FIELD SOURCES-JSON
  printf '{"ProjectName":"p","Sources":%s,"Targets":[{"URI":"oss://test-bucket/output/round.{autoext}","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac"%s}}}]}' "$2" "$1"
}
test_lossless() { # test_lossless NAME SAMPLE-FMT PCM-CODEC BITS-FIELD
  local name=$1 sfmt=$2 pcm=$3 bits=$4 d="$b/lossless"
  mkdir -p "$d"
  ff -f lavfi -i "anoisesrc=d=3:a=0.3:r=44100:seed=3" -f lavfi -i "sine=f=523:d=3:sample_rate=44100" \
     -filter_complex "[0][1]amerge=inputs=2" -c:a "$pcm" "$d/orig-$name.wav"
  # (Not named cut: a function defined here stays defined for every test after it.)
  piece() { ff -i "$d/orig-$name.wav" -af "atrim=start_sample=$1:end_sample=$2,asetpts=N/SR/TB" "${@:3}"; }
  piece 0 52919 -c:a "$pcm" "$d/p1-$name.wav"
  piece 52919 88200 -c:a flac -sample_fmt "$sfmt" "$d/p2-$name.flac"
  piece 88200 132300 -c:a alac -sample_fmt "${sfmt}p" "$d/p3-$name.m4a"
  run "lossless-$name" "$(lossless_request "$bits" "[{\"URI\":\"oss://test-bucket/lossless/p1-$name.wav\"},{\"URI\":\"oss://test-bucket/lossless/p2-$name.flac\"},{\"URI\":\"oss://test-bucket/lossless/p3-$name.m4a\"}]")"
  local raw=s16le; [ "$sfmt" = s32 ] && raw=s32le
  ff -i "$d/orig-$name.wav" -f "$raw" "$work/a.raw"; ff -i "$b/output/round.flac" -f "$raw" "$work/b.raw"
  [ "$rc" = 0 ] && cmp -s "$work/a.raw" "$work/b.raw" \
    && ok "lossless $name: WAV+FLAC+ALAC pieces merge to FLAC bit-exact ($(( $(stat -c %s "$work/a.raw") )) bytes)" \
    || not_ok "lossless $name: bit-exact round trip" "rc=$rc $(cmp "$work/a.raw" "$work/b.raw" 2>&1 | head -1)"
  # The same cut made by the request's own clipping, one source file used three times.
  run "clip-$name" "$(lossless_request "$bits" "[{\"URI\":\"oss://test-bucket/lossless/orig-$name.wav\",\"Duration\":1.2},{\"URI\":\"oss://test-bucket/lossless/orig-$name.wav\",\"StartTime\":1.2,\"Duration\":0.8},{\"URI\":\"oss://test-bucket/lossless/orig-$name.wav\",\"StartTime\":2.0}]")"
  ff -i "$b/output/round.flac" -f "$raw" "$work/c.raw"
  [ "$rc" = 0 ] && cmp -s "$work/a.raw" "$work/c.raw" \
    && ok "lossless $name: StartTime/Duration clips rejoin bit-exact" \
    || not_ok "lossless $name: clips rejoin bit-exact" "rc=$rc $(cmp "$work/a.raw" "$work/c.raw" 2>&1 | head -1)"
  [ "$(probe "$b/output/round.flac" bits_per_raw_sample)" = "${bits_want}" ] \
    && ok "lossless $name: FLAC is ${bits_want}-bit" \
    || not_ok "lossless $name: FLAC bit depth" "$(probe "$b/output/round.flac" bits_per_raw_sample)"
  rm -f "$b/output/round.flac"
}

test_clip_mp3() { # a clip of a lossy source is exactly Duration long
  run clip-mp3 '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/seg1.mp3","StartTime":0.5,"Duration":1.25},{"URI":"oss://test-bucket/audio/seg2.mp3","StartTime":2}],"Targets":[{"URI":"oss://test-bucket/output/clip.flac","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac"}}}]}'
  local want=$((55125 + n2 - 88200)) got; got=$(samples "$b/output/clip.flac")
  [ "$rc" = 0 ] && [ "$got" = "$want" ] && ok "clip: 1.25 s of seg1 + seg2 from 2 s = $want samples" \
    || not_ok "clip: exact clip length" "rc=$rc got $got want $want"
  rm -f "$b/output/clip.flac"
}

# StartTime/Duration at the edges: past the end and empty clips are refused (naming the field); a
# Duration past the end stops at the end; a clip covering the whole file is the whole file.
test_clip_edges() {
  local t='"Targets":[{"URI":"oss://test-bucket/output/edge.flac","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac"}}}]'
  run edge-past "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/seg1.mp3\",\"StartTime\":100},{\"URI\":\"oss://test-bucket/audio/seg2.mp3\"}],$t}"
  expect_error "clip edges: StartTime past the end is refused" 2 InvalidArgument "Sources[0].StartTime"
  run edge-near "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/seg2.mp3\"},{\"URI\":\"oss://test-bucket/audio/seg1.mp3\",\"StartTime\":$(awk -v n="$n1" 'BEGIN { printf "%.6f", n / 44100 + 0.001 }')}],$t}"
  expect_error "clip edges: StartTime just past the end (found while decoding) is refused" 2 InvalidArgument "Sources[1].StartTime"
  run edge-tiny "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/seg1.mp3\",\"Duration\":0.00001}],$t}"
  expect_error "clip edges: a Duration shorter than one sample is refused" 2 InvalidArgument "Sources[0].Duration"
  [ ! -e "$b/output/edge.flac" ] && ok "clip edges: a refused clip writes nothing" || not_ok "clip edges wrote edge.flac"
  run edge-long "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/seg1.mp3\",\"StartTime\":1,\"Duration\":1000}],$t}"
  [ "$rc" = 0 ] && [ "$(samples "$b/output/edge.flac")" = $((n1 - 44100)) ] && ok "clip edges: Duration past the end stops at the end ($((n1 - 44100)) samples)" \
    || not_ok "clip edges: long Duration" "rc=$rc $(samples "$b/output/edge.flac" 2>/dev/null)"
  run edge-all "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/seg1.mp3\",\"StartTime\":0,\"Duration\":$(awk -v n="$n1" 'BEGIN { printf "%.6f", n / 44100 }')}],$t}"
  [ "$rc" = 0 ] && [ "$(samples "$b/output/edge.flac")" = "$n1" ] && ok "clip edges: a clip covering the whole file is the whole file ($n1)" \
    || not_ok "clip edges: whole file" "rc=$rc $(samples "$b/output/edge.flac" 2>/dev/null)"
  rm -f "$b/output/edge.flac"
}

# ---- every input format the service lists, resampled to 48 kHz stereo --------------------------
test_formats() {
  local f key n r want got dec
  for f in "$b"/formats/*.* "$b/formats/hls/list.m3u8"; do
    key=${f#"$b/"}
    run fmt "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/$key\"}],\"Targets\":[{\"URI\":\"oss://test-bucket/output/fmt.{autoext}\",\"Container\":\"flac\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"flac\",\"SampleRate\":48000,\"Channel\":2}}}]}"
    n=$(samples "$f"); r=$(rate_of "$f"); want=$(rescale "$n" 48000 "$r")
    got=$(jqo '.Targets[0].Samples' 2>/dev/null); dec=$(samples "$b/output/fmt.flac" 2>/dev/null)
    if [ "$rc" = 0 ] && [ "$got" = "$want" ] && [ "$dec" = "$want" ] \
       && [ "$(probe "$b/output/fmt.flac" channels)" = 2 ]; then
      ok "input $key ($(probe "$f" codec_name), $r Hz, $(probe "$f" channels) ch): $want samples"
    else
      not_ok "input $key" "rc=$rc reported=$got decoded=$dec want=$want $(jqo .Message 2>/dev/null)"
    fi
    rm -f "$b/output/fmt.flac"
  done
}

# ---- bad requests and failing tasks: the service's error shape, and nothing written ------------
good_target='"Targets":[{"URI":"oss://test-bucket/output/bad.{autoext}","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":128000}}}]'
seg='{"URI":"oss://test-bucket/audio/seg1.mp3"}'
target_with() { printf '"Targets":[{"URI":"oss://test-bucket/output/bad.{autoext}","Container":"%s","Audio":{"TranscodeAudio":%s}}]' "$1" "$2"; }

test_errors() {
  rm -f "$b"/output/*
  run e-json '{"ProjectName": "p", "Sources": [' ;             expect_error "malformed JSON" 2 InvalidJSON
  run e-project "{\"Sources\":[$seg],$good_target}";           expect_error "missing ProjectName" 2 InvalidArgument ProjectName
  run e-nosrc "{\"ProjectName\":\"p\",\"Sources\":[],$good_target}"; expect_error "empty Sources" 2 InvalidArgument Sources
  local twelve; twelve=$(printf "$seg,%.0s" $(seq 11))$seg
  run e-12 "{\"ProjectName\":\"p\",\"Sources\":[$twelve],$good_target}"; expect_error "12 sources" 2 LimitExceededError Sources
  run e-align "{\"ProjectName\":\"p\",\"Sources\":[$seg],\"AlignmentIndex\":1,$good_target}"; expect_error "AlignmentIndex out of range" 2 InvalidArgument AlignmentIndex
  run e-copy "{\"ProjectName\":\"p\",\"Sources\":[$seg],$(target_with mp3 '{"Codec":"copy"}')}"; expect_error "Codec copy refused" 2 InvalidArgument Codec
  run e-nocodec "{\"ProjectName\":\"p\",\"Sources\":[$seg],\"Targets\":[{\"URI\":\"oss://test-bucket/output/x.mp3\",\"Container\":\"mp3\"}]}"; expect_error "no Audio: copy cannot merge" 2 InvalidArgument Codec
  run e-rate "{\"ProjectName\":\"p\",\"Sources\":[$seg],$(target_with aac '{"Codec":"aac","SampleRate":44000}')}"; expect_error "SampleRate not in the list" 2 InvalidArgument SampleRate
  run e-mp3rate "{\"ProjectName\":\"p\",\"Sources\":[$seg],$(target_with mp3 '{"Codec":"mp3","SampleRate":96000}')}"; expect_error "MP3 at 96 kHz" 2 InvalidArgument SampleRate
  run e-ch "{\"ProjectName\":\"p\",\"Sources\":[$seg],$(target_with mp3 '{"Codec":"mp3","Channel":6}')}"; expect_error "MP3 with 6 channels" 2 InvalidArgument Channel
  run e-br "{\"ProjectName\":\"p\",\"Sources\":[$seg],$(target_with mp3 '{"Codec":"mp3","Bitrate":500}')}"; expect_error "Bitrate below 1000" 2 InvalidArgument Bitrate
  run e-cont "{\"ProjectName\":\"p\",\"Sources\":[$seg],$(target_with mp3 '{"Codec":"aac"}')}"; expect_error "aac in an mp3 container" 2 InvalidArgument Codec
  run e-bits "{\"ProjectName\":\"p\",\"Sources\":[$seg],$(target_with mp3 '{"Codec":"mp3","BitsPerSample":24}')}"; expect_error "BitsPerSample on mp3" 2 InvalidArgument BitsPerSample
  run e-dots "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/../etc/passwd\"}],$good_target}"; expect_error "source URI with .." 2 InvalidArgument "Sources[0].URI"
  run e-tdots "{\"ProjectName\":\"p\",\"Sources\":[$seg],\"Targets\":[{\"URI\":\"oss://test-bucket/output/../../x.mp3\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}"; expect_error "target URI with .." 2 InvalidArgument "Targets[0].URI"
  run e-self "{\"ProjectName\":\"p\",\"Sources\":[$seg],\"Targets\":[{\"URI\":\"oss://test-bucket/audio/seg1.mp3\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}"; expect_error "target overwriting a source" 2 InvalidArgument "Targets[0].URI"
  run e-96k "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/formats/in_s24.wav\"}],$(target_with mp3 '{"Codec":"mp3"}')}"; expect_error "96 kHz primary into MP3 without SampleRate" 2 InvalidArgument SampleRate
  nothing_written "bad requests"

  run e-missing "{\"ProjectName\":\"p\",\"Sources\":[$seg,{\"URI\":\"oss://test-bucket/audio/nope.mp3\"}],$good_target}"
  expect_error "missing source" 1 ResourceNotFound nope.mp3
  [ "$(jqo .Status)" = Failed ] && [[ "$(jqo .TaskId)" == MediaConvert-* ]] && ok "missing source: task reported Failed" \
    || not_ok "missing source: task reported Failed"
  head -c 20000 /dev/urandom > "$b/audio/noise.mp3"
  run e-corrupt "{\"ProjectName\":\"p\",\"Sources\":[$seg,{\"URI\":\"oss://test-bucket/audio/noise.mp3\"}],$good_target}"
  expect_error "corrupt source" 1 InvalidMedia noise.mp3
  mkdir -p "$work/outside"; cp "$b/audio/seg1.mp3" "$work/outside/secret.mp3"
  ln -sf "$work/outside/secret.mp3" "$b/audio/link.mp3"
  run e-link "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/link.mp3\"}],$good_target}"
  expect_error "symlink leading out of the root" 1 Forbidden link.mp3
  run e-bucket "{\"ProjectName\":\"p\",\"Sources\":[$seg],\"Targets\":[{\"URI\":\"oss://no-such-bucket/x.mp3\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}"
  expect_error "target bucket missing" 1 ResourceNotFound no-such-bucket
  [ ! -e "$root/no-such-bucket" ] && ok "target bucket missing: no bucket created" || not_ok "no bucket created"
  echo "the user's earlier output" > "$b/output/keep.mp3"
  run e-keep "{\"ProjectName\":\"p\",\"Sources\":[$seg,{\"URI\":\"oss://test-bucket/audio/noise.mp3\"}],\"Targets\":[{\"URI\":\"oss://test-bucket/output/keep.mp3\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}"
  [ "$rc" = 1 ] && [ "$(cat "$b/output/keep.mp3")" = "the user's earlier output" ] \
    && ok "failed task keeps an existing target intact" || not_ok "failed task keeps an existing target intact" "rc=$rc"
  nothing_written "failing tasks"
  rm -f "$b/output/keep.mp3"
  [ "$src_hash" = "$(sha256sum "$b"/audio/seg*.mp3)" ] && ok "sources unchanged by all runs" \
    || not_ok "sources unchanged by all runs"
  out=$("$bin" 2>/dev/null); rc=$?; expect_error "no arguments: usage" 2 InvalidArgument
  out=$("$bin" run --no-such-option x.json 2>/dev/null); rc=$?; expect_error "unknown option: usage" 2 InvalidArgument
}

test_cli() {
  out=$(IMMERGE_OSS_ROOT="$root" "$bin" run - < "$top/testdata/example-mp3.json" 2>/dev/null); rc=$?
  [ "$rc" = 0 ] && [ "$(jqo .Status)" = Succeeded ] && ok "request from stdin, root from IMMERGE_OSS_ROOT" \
    || not_ok "stdin + IMMERGE_OSS_ROOT" "rc=$rc"
  out=$("$bin" run --oss-root "$root" --progress "$top/testdata/example-mp3.json" 2> "$work/progress.err"); rc=$?
  printf '%s' "$out" | jq -e . > /dev/null && grep -q '100%' "$work/progress.err" \
    && ok "stdout is only JSON; --progress goes to stderr" || not_ok "stdout JSON / progress on stderr"
  local tgt="$work/local-out.mp3"
  out=$("$bin" run --quiet /dev/stdin <<< "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"file://$b/audio/seg1.mp3\"},{\"URI\":\"$b/audio/seg2.mp3\"}],\"Targets\":[{\"URI\":\"$tgt\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}"); rc=$?
  [ "$rc" = 0 ] && [ "$(samples "$tgt")" -gt 0 ] && ok "file:// and plain paths, container from the extension" \
    || not_ok "local paths" "rc=$rc $(jqo .Message 2>/dev/null)"
  # --version names the libraries as loaded: FFmpeg's match what ffprobe (the same packages) says.
  out=$("$bin" --version); rc=$?
  local want ours
  want=$(ffprobe -version | sed -n 's/^\(libav[a-z]*\|libswresample\) *\([0-9]*\)\. *\([0-9]*\)\. *\([0-9]*\) .*/\1 \2.\3.\4/p' | grep -v libavdevice | sort | paste -sd' ')
  ours=$(sed -n 2p <<< "$out" | tr ' ' '\n' | paste - - | sed 's/\t/ /' | grep -E '^lib' | sort | paste -sd' ')
  [ "$rc" = 0 ] && [ "$(head -1 <<< "$out" | cut -d' ' -f1-2)" = "immerge $(cat "$top/VERSION")" ] && [ -n "$want" ] && [ "$ours" = "$want" ] \
    && grep -q '^libcurl ' <<< "$out" && grep -q '^SQLite .*, libpq ' <<< "$out" \
    && ok "--version: immerge $(cat "$top/VERSION"), and FFmpeg's libraries as ffprobe names them ($want), libcurl, SQLite, libpq" \
    || not_ok "--version" "rc=$rc want [$want] ours [$ours] $out"
}

# Audio.Stream picks among the source's audio streams; DisableAudio drops a source.
test_stream_and_disable() {
  ff -f lavfi -i "sine=f=300:d=1:sample_rate=44100" -f lavfi -i "sine=f=600:d=2:sample_rate=44100" \
     -map 0 -map 1 -c:a flac "$b/audio/two-tracks.mkv"
  local t='"Targets":[{"URI":"oss://test-bucket/output/pick.flac","Container":"flac","Audio":{"Stream":[%s],"TranscodeAudio":{"Codec":"flac"}}}]'
  run stream0 "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/two-tracks.mkv\"}],$(printf "$t" 0)}"
  local a; a=$(samples "$b/output/pick.flac")
  run stream1 "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/two-tracks.mkv\"}],$(printf "$t" '7,1')}"
  local c; c=$(samples "$b/output/pick.flac")
  [ "$a" = 44100 ] && [ "$c" = 88200 ] && ok "Audio.Stream [0] takes the first track, [7,1] skips 7 and takes the second" \
    || not_ok "Audio.Stream selection" "first=$a second=$c"
  run disable "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/audio/two-tracks.mkv\"},{\"URI\":\"oss://test-bucket/audio/seg2.mp3\",\"DisableAudio\":true}],$(printf "$t" 0)}"
  [ "$rc" = 0 ] && [ "$(samples "$b/output/pick.flac")" = 44100 ] && ok "Sources[].DisableAudio contributes nothing" \
    || not_ok "Sources[].DisableAudio" "rc=$rc"
  rm -f "$b/output/pick.flac" "$b/audio/two-tracks.mkv"
}

# Several targets come from one decode; they appear together or not at all.
test_multi_target() {
  local two='"Targets":[{"URI":"oss://test-bucket/output/multi.{autoext}","Container":"aac","Audio":{"TranscodeAudio":{"Codec":"aac","Bitrate":64000}}},{"URI":"oss://test-bucket/output/multi.{autoext}","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac","SampleRate":48000,"Channel":1}}}]'
  run multi "{\"ProjectName\":\"p\",\"Sources\":[$seg,{\"URI\":\"oss://test-bucket/audio/seg3.mp3\"}],$two}"
  local want=$(rescale "$n1" 48000 44100) want3=$(rescale "$n3" 48000 22050)
  [ "$rc" = 0 ] && [ "$(samples "$b/output/multi.flac")" = $((want + want3)) ] \
    && [ "$(probe "$b/output/multi.flac" channels)" = 1 ] && [ "$(probe "$b/output/multi.aac" codec_name)" = aac ] \
    && ok "two targets (AAC + FLAC 48 kHz mono) from one request: $((want + want3)) samples" \
    || not_ok "two targets from one request" "rc=$rc $(jqo .Message 2>/dev/null)"
  rm -f "$b"/output/multi.*
  run multi-fail "{\"ProjectName\":\"p\",\"Sources\":[$seg],\"Targets\":[{\"URI\":\"oss://test-bucket/output/first.mp3\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}},{\"URI\":\"oss://no-such-bucket/second.mp3\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]}"
  [ "$rc" = 1 ] && [ ! -e "$b/output/first.mp3" ] && ok "one target failing fails the task and writes no target" \
    || not_ok "one failing target leaves none" "rc=$rc"
}

# A playlist whose segments leave its bucket is refused, not followed; a missing segment fails.
# A playlist without #EXT-X-ENDLIST looks live to FFmpeg: it must still merge all it lists, at
# once (before, FFmpeg started near its end and waited minutes for new segments).
test_playlist_live() {
  mkdir -p "$b/live"
  cp "$b/formats/hls/"*.ts "$b/live/"
  grep -v ENDLIST "$b/formats/hls/list.m3u8" > "$b/live/list.m3u8"
  local t0=$SECONDS want; want=$(samples "$b/formats/hls/list.m3u8")
  run live "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/live/list.m3u8\"}],\"Targets\":[{\"URI\":\"oss://test-bucket/output/live.flac\",\"Container\":\"flac\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"flac\"}}}]}"
  [ "$rc" = 0 ] && [ "$(samples "$b/output/live.flac")" = "$want" ] && [ $((SECONDS - t0)) -lt 15 ] \
    && ok "a playlist without ENDLIST: all $want samples, in $((SECONDS - t0)) s" \
    || not_ok "live playlist" "rc=$rc $(samples "$b/output/live.flac" 2>/dev/null)/$want in $((SECONDS - t0)) s"
  rm -rf "$b/live" "$b/output/live.flac"
}

test_playlist_escape() {
  mkdir -p "$root/other-bucket" "$b/evil"
  cp "$b/formats/hls/part0.ts" "$root/other-bucket/part0.ts"
  printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n../../../other-bucket/part0.ts\n#EXT-X-ENDLIST\n' > "$b/evil/list.m3u8"
  run escape "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/evil/list.m3u8\"}],$good_target}"
  expect_error "playlist segment outside its bucket is refused" 1 Forbidden other-bucket
  cp -r "$b/formats/hls" "$b/holey"; rm "$b/holey/part1.ts"
  run holey "{\"ProjectName\":\"p\",\"Sources\":[{\"URI\":\"oss://test-bucket/holey/list.m3u8\"}],$good_target}"
  expect_error "playlist with a missing segment fails, not silently shorter" 1 ResourceNotFound part1.ts
}

# Memory must not grow with input length: 1 minute and 60 minutes of input peak at about the same.
# Also: a long task interrupted by SIGINT.
test_memory() {
  ff -f lavfi -i "sine=f=300:d=60:sample_rate=8000" -c:a flac "$b/audio/1min.flac"
  ff -f lavfi -i "sine=f=300:d=3600:sample_rate=8000" -c:a flac "$b/audio/60min.flac"
  local kb=()
  for s in 1min 60min; do
    printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/%s.flac"}],"Targets":[{"URI":"oss://test-bucket/output/mem.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":32000}}}]}' "$s" > "$work/mem.json"
    kb+=("$( { /usr/bin/time -f %M "$bin" run --quiet --oss-root "$root" "$work/mem.json" > /dev/null; } 2>&1 | tail -1)")
  done
  [ $(( kb[1] - kb[0] )) -lt 8192 ] && ok "memory: peak RSS ${kb[0]} KiB for 1 min, ${kb[1]} KiB for 60 min" \
    || not_ok "memory bounded" "${kb[0]} KiB vs ${kb[1]} KiB"
  # Interrupted mid-merge: status Cancelled, exit 1, and no temporary file left behind.
  rm -f "$b"/output/*
  "$bin" run --quiet --oss-root "$root" "$work/mem.json" > "$work/cancel.out" &
  local pid=$!; sleep 0.5; kill -INT "$pid"; wait "$pid"; rc=$?; out=$(cat "$work/cancel.out")
  expect_error "SIGINT cancels the task" 1 Cancelled
  nothing_written "cancelled task"
  rm -f "$b/output/mem.mp3" "$b/audio/"*min.flac
}

test_example_aac
test_example_mp3
bits_want=16 test_lossless s16 s16 pcm_s16le ''
bits_want=24 test_lossless s24 s32 pcm_s24le ''
bits_want=24 test_lossless s16to24 s16 pcm_s16le ',"BitsPerSample":24'
test_clip_mp3
test_clip_edges
test_formats
test_errors
test_cli
test_stream_and_disable
test_multi_target
test_playlist_escape
test_playlist_live
[ -z "${IMMERGE_E2E_QUICK:-}" ] && test_memory

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
