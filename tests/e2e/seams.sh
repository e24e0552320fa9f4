#!/usr/bin/env bash
# Seam suite: a target encoded in chunks on several cores must sound like one encoder's output.
# Each case merges a music-like signal (a chord with a slow tremolo, plucked notes twice a second,
# a little noise) once with one encoder (--no-chunking) and once in chunks (--chunks N), decodes
# both with tools we did not write (mpg123 for MP3, ffmpeg for AAC), and measures with sox the SNR
# against the merged timeline (a FLAC target of the same request: the sources after clipping,
# resampling and Speed) in +-50 ms around each seam and in every 5 s window after it: the chunked
# output's must be within 0.5 dB of the single encoder's, and both must have the same length.
#   tests/e2e/seams.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

mkdir -p "$b/audio" "$b/output"
music() { # music SECONDS RATE LAYOUT OUT
  local d=$1 r=$2
  ff -f lavfi -i "sine=f=220:d=$d:sample_rate=$r" -f lavfi -i "sine=f=277:d=$d:sample_rate=$r" \
     -f lavfi -i "sine=f=330:d=$d:sample_rate=$r" -f lavfi -i "anoisesrc=d=$d:a=0.02:r=$r:seed=7" \
     -f lavfi -i "aevalsrc=0.6*sin(2*PI*660*t)*exp(-12*mod(t\,0.5)):d=$d:s=$r" \
     -filter_complex "[0][1][2][3][4]amix=inputs=5:normalize=0,tremolo=f=0.3:d=0.5,volume=0.45,aformat=sample_fmts=s16:channel_layouts=$3" \
     -c:a pcm_s16le "$4"
}
music 60 44100 stereo "$b/audio/music.wav"
music 60 22050 mono "$b/audio/music22.wav"

# snr ORIG DECODED FROM LENGTH: dB of DECODED against ORIG over [FROM, FROM + LENGTH) seconds
snr() {
  local sig; sig=$(sox "$1" -n trim "$3" "$4" stats 2>&1 | awk '/RMS lev dB/ { print $4 }')
  sox -m -v 1 "$1" -v -1 "$2" -t wav - 2>/dev/null | sox -t wav - -n trim "$3" "$4" stats 2>&1 \
    | awk -v s="$sig" '/RMS lev dB/ { printf "%.2f\n", s - $4 }'
}

decode() { # decode FILE WAV
  case "$1" in
    *.mp3) mpg123 -q -w "$2" "$1" 2> "$2.log" && [ ! -s "$2.log" ] ;;
    *) ff -i "$1" -c:a pcm_s16le "$2" ;;
  esac
}

# seams NAME SOURCES-JSON CONTAINER CODEC BITRATE CHUNKS [TARGET-FIELDS-JSON [length-only]]
seams() {
  local name=$1 srcs=$2 container=$3 codec=$4 br=$5 n=$6 extra=${7:-} rate ref
  ref="$work/$name-ref.wav"
  for mode in single chunked; do
    local opt=--no-chunking; [ $mode = chunked ] && opt="--chunks $n"
    printf '{"ProjectName":"p","Sources":%s,"Targets":[{"URI":"oss://test-bucket/output/%s-%s.{autoext}","Container":"%s"%s,"Audio":{"TranscodeAudio":{"Codec":"%s","Bitrate":%s}}},{"URI":"oss://test-bucket/output/%s-%s.flac","Container":"flac"%s,"Audio":{"TranscodeAudio":{"Codec":"flac"}}}]}' \
      "$srcs" "$name" "$mode" "$container" "$extra" "$codec" "$br" "$name" "$mode" "$extra" > "$work/$name-$mode.json"
    out=$("$bin" run --quiet $opt --oss-root "$root" "$work/$name-$mode.json" 2> "$work/$name.err")
    eval "${mode}_out=\$out"
    if ! decode "$b/output/$name-$mode.$container" "$work/$name-$mode.wav"; then
      not_ok "$name: $mode output decodes cleanly" "$(cat "$work/$name.err" "$work/$name-$mode.wav.log" 2>/dev/null | head -3)"
      return
    fi
  done
  ff -i "$b/output/$name-single.flac" -c:a pcm_s16le "$ref"
  rate=$(soxi -r "$ref")
  local seam_list; seam_list=$(printf '%s' "$chunked_out" | jq -r '.Targets[0].Seams // [] | .[]')
  local nseams; nseams=$(printf '%s\n' "$seam_list" | grep -c .)
  [ "$nseams" = $((n - 1)) ] && ok "$name: $n chunks, seams at samples $(echo $seam_list)" \
    || { not_ok "$name: $n chunks" "seams: '$seam_list' ($(printf '%s' "$chunked_out" | jq -c '[.Code,.Message]'))"; return; }
  local ls lc want
  ls=$(soxi -s "$work/$name-single.wav"); lc=$(soxi -s "$work/$name-chunked.wav")
  want=$(printf '%s' "$chunked_out" | jq -r '.Targets[0].Samples')
  [ "$ls" = "$lc" ] && [ "$want" = "$(printf '%s' "$single_out" | jq -r '.Targets[0].Samples')" ] \
    && ok "$name: the same length chunked and not ($lc decoded, $want merged)" \
    || not_ok "$name: same length" "decoded single $ls chunked $lc; Samples $want"
  [ "${8:-}" = length-only ] && return
  local worst=0 report="" s from a c d end
  end=$(echo "$lc / $rate - 5" | bc -l)
  for s in $seam_list; do
    from=$(echo "$s / $rate" | bc -l)
    # +-50 ms around the seam, then 5 s windows after it
    for w in "$(echo "$from - 0.05" | bc -l) 0.1" $(for k in 0 5 10 15 20; do
               t=$(echo "$from + $k" | bc -l); [ "$(echo "$t <= $end" | bc)" = 1 ] && echo "$t,5"; done); do
      set -- ${w/,/ }
      a=$(snr "$ref" "$work/$name-single.wav" "$1" "$2")
      c=$(snr "$ref" "$work/$name-chunked.wav" "$1" "$2")
      d=$(echo "$c - $a" | bc -l)
      report+=" $(printf '%.1f+%s:%s/%s' "$1" "$2" "$a" "$c")"
      [ "$(echo "${d#-} > ${worst#-}" | bc)" = 1 ] && worst=$d
    done
  done
  [ "$(echo "${worst#-} <= 0.5" | bc)" = 1 ] \
    && ok "$name: SNR within 0.5 dB of one encoder's at every seam and after (worst $(printf '%+.2f' "$worst") dB; s+len:single/chunked$report)" \
    || not_ok "$name: SNR at the seams" "worst $worst dB;$report"
}

one='[{"URI":"oss://test-bucket/audio/music.wav"}]'
seams aac-96k "$one" mp4 aac 96000 2
seams aac-3-chunks "$one" mp4 aac 128000 3
seams mp3-128k "$one" mp3 mp3 128000 2
seams mp3-64k "$one" mp3 mp3 64000 2
seams mp3-3-chunks "$one" mp3 mp3 96000 3
seams mp3-mpeg2-mono '[{"URI":"oss://test-bucket/audio/music22.wav"}]' mp3 mp3 32000 2
# Three clipped sources at two rates and channel counts: the chunk before the seam re-reads them
# all from the start on its own thread and must land on the same samples.
three='[{"URI":"oss://test-bucket/audio/music.wav","Duration":25},{"URI":"oss://test-bucket/audio/music22.wav","StartTime":10,"Duration":20},{"URI":"oss://test-bucket/audio/music.wav","StartTime":30}]'
seams aac-3-sources "$three" mp4 aac 128000 2
seams mp3-3-sources "$three" mp3 mp3 128000 2
# Speed 0.9 (atempo): the length is the same chunked or not. (Time-stretching has no single right
# answer, and atempo's on FLAC's integer samples differs from AAC's float ones, so the FLAC target
# is no reference for SNR here.)
seams aac-speed "$three" mp4 aac 128000 2 ',"Speed":0.9' length-only

# Two split targets in one request, fed by the same readers: each output is byte for byte what
# the same target alone gives.
both=""
for t in "aac mp4" "mp3 mp3"; do
  set -- $t
  tj=$(printf '{"URI":"oss://test-bucket/output/shared-%s.{autoext}","Container":"%s","Audio":{"TranscodeAudio":{"Codec":"%s"}}}' "$1" "$2" "$1")
  both+="${both:+,}$tj"
  printf '{"ProjectName":"p","Sources":%s,"Targets":[%s]}' "$three" "$tj" > "$work/alone-$1.json"
  "$bin" run --quiet --chunks 2 --oss-root "$root" "$work/alone-$1.json" > /dev/null 2>&1
  mv "$b/output/shared-$1.$2" "$work/alone-$1.$2"
done
printf '{"ProjectName":"p","Sources":%s,"Targets":[%s]}' "$three" "$both" > "$work/shared.json"
out=$("$bin" run --quiet --chunks 2 --oss-root "$root" "$work/shared.json" 2>&1)
cmp -s "$work/alone-aac.mp4" "$b/output/shared-aac.mp4" && cmp -s "$work/alone-mp3.mp3" "$b/output/shared-mp3.mp3" \
  && [ "$(jqo '.Targets | map(.Seams | length) | add')" = 2 ] \
  && ok "AAC and MP3 in 2 chunks each in one request: both byte for byte as when alone" \
  || not_ok "two split targets" "$(jqo .Message) $(cmp "$work/alone-aac.mp4" "$b/output/shared-aac.mp4"; cmp "$work/alone-mp3.mp3" "$b/output/shared-mp3.mp3")"

# A segmented (HLS) target encoded in chunks: every segment in the playlist, the same length.
for mode in single chunked; do
  opt=--no-chunking; [ $mode = chunked ] && opt="--chunks 2"
  printf '{"ProjectName":"p","Sources":%s,"Targets":[{"URI":"oss://test-bucket/output/hls-%s/list.m3u8","Container":"ts","Segment":{"Duration":5},"Audio":{"TranscodeAudio":{"Codec":"aac","Bitrate":96000}}}]}' "$one" "$mode" > "$work/hls-$mode.json"
  out=$("$bin" run --quiet $opt --oss-root "$root" "$work/hls-$mode.json" 2> "$work/hls.err")
  eval "hls_$mode=\$(samples \"\$b/output/hls-$mode/list.m3u8\")"
done
seam=$(printf '%s' "$out" | jq -r '.Targets[0].Seams[0] // empty')
[ -n "$seam" ] && [ "$hls_single" = "$hls_chunked" ] && [ "$hls_single" -ge 2646000 ] \
  && ok "HLS in 2 chunks (seam at $seam): $(ls "$b/output/hls-chunked" | grep -c '\.ts$') segments, $hls_chunked samples as with one encoder" \
  || not_ok "HLS in chunks" "seam '$seam', $hls_single vs $hls_chunked samples: $(jqo .Message)"

# Cancelled while the chunks encode: nothing written, no temporary file left behind.
ff -stream_loop 9 -i "$b/audio/music.wav" -c:a pcm_s16le "$b/audio/ten-min.wav"
mkdir -p "$work/tmp"
printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/ten-min.wav"}],"Targets":[{"URI":"oss://test-bucket/output/cancel.m4a","Container":"mp4","Audio":{"TranscodeAudio":{"Codec":"aac"}}},{"URI":"oss://test-bucket/output/cancel.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]}' > "$work/cancel.json"
"$bin" run --quiet --temp-dir "$work/tmp" --oss-root "$root" "$work/cancel.json" > "$work/cancel.out" 2>&1 &
sleep 1.5; kill -INT $!; wait $!; rc=$?; out=$(cat "$work/cancel.out")
[ "$rc" = 1 ] && [ "$(jqo .Status)" = Cancelled ] && [ ! -e "$b/output/cancel.m4a" ] && [ ! -e "$b/output/cancel.mp3" ] \
  && [ -z "$(ls -A "$work/tmp")" ] && [ -z "$(ls -A "$b/output" | grep '^\.')" ] \
  && ok "SIGINT while two targets encode in chunks: Cancelled, no output, no temporary file" \
  || not_ok "cancel while chunked" "rc=$rc $(jqo .Status) $(ls -A "$b/output" "$work/tmp" | tr '\n' ' ')"

echo "# seams: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
