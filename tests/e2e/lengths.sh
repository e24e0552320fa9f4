#!/usr/bin/env bash
# Length suite: the decoded length of every output against the Samples the task reports, at odd
# lengths. MP3's LAME tag across every remainder of a frame (mpg123 and the ffmpeg CLI decoding),
# in MPEG-1 and MPEG-2 frames and in chunks; then every container x codec pair at three odd
# lengths, against README's table (exact, or what the container cannot say).
#   tests/e2e/lengths.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"
mkdir -p "$b/len"

# tone N RATE CHANNELS: an N-sample WAV source at oss://test-bucket/len/in.wav
tone() { ff -f lavfi -i "sine=f=440:sample_rate=$2" -ac "$3" -af "atrim=end_sample=$1" -c:a pcm_s16le "$b/len/in.wav"; }
# merge CONTAINER CODEC RATE CHANNELS [run options]: prints the reported Samples; output at $b/len/out.*
merge() {
  local container=$1 codec=$2 rate=$3 ch=$4; shift 4
  rm -f "$b"/len/out.*
  printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/len/in.wav"}],"Targets":[{"URI":"oss://test-bucket/len/out.{autoext}","Container":"%s","Audio":{"TranscodeAudio":{"Codec":"%s","SampleRate":%s,"Channel":%s}}}]}' \
    "$container" "$codec" "$rate" "$ch" > "$work/len.json"
  "$bin" run --quiet --oss-root "$root" "$@" "$work/len.json" | jq -r '.Targets[0].Samples'
}
mpg123_samples() { mpg123 -q -m -s "$1" 2>/dev/null | wc -c | awk '{print $1 / 2}'; }

# mp3_exact RATE CHANNELS "N..." [run options]: the N that an MP3 merge does not give exactly
# (Samples, mpg123 and the ffmpeg CLI), as " N:Samples/mpg123/ffmpeg"; nothing when all do.
mp3_exact() {
  local rate=$1 ch=$2 lengths=$3 n got m f; shift 3
  for n in $lengths; do
    tone "$n" "$rate" "$ch"
    got=$(merge mp3 mp3 "$rate" "$ch" "$@"); m=$(mpg123_samples "$b"/len/out.mp3); f=$(samples "$b"/len/out.mp3)
    [ "$got" = "$n" ] && [ "$m" = "$n" ] && [ "$f" = "$n" ] || printf ' %s:%s/%s/%s' "$n" "$got" "$m" "$f"
  done
}

test_mp3_remainders() {
  local bad
  bad=$(mp3_exact 44100 2 "$(seq 1152 1202)")
  [ -z "$bad" ] && ok "MP3 128k stereo 44.1 kHz, N = 1152 + r for r in 0..50: Samples, mpg123 and ffmpeg all give N" \
    || not_ok "MP3 remainders (N:Samples/mpg123/ffmpeg)" "$bad"
  bad=$(mp3_exact 22050 1 "$(for r in 0 1 23 46 47 48 575; do echo $((576 * 4 + r)); done)")
  [ -z "$bad" ] && ok "MP3 MPEG-2 (576-sample frames) 22.05 kHz mono, N = 2304 + r for r in 0,1,23,46,47,48,575: exact" \
    || not_ok "MPEG-2 remainders" "$bad"
  bad=$(mp3_exact 44100 2 "$((1152 * 400 + 17)) $((1152 * 400 + 1152))" --chunks 2)
  [ -z "$bad" ] && ok "MP3 in 2 chunks, N = 1152*400 + 17 and + 1152: exact" || not_ok "chunked MP3 lengths" "$bad"
}

# Every pair of README's table: exact, ac3-in-mp4 less its 256-sample delay, or up to 2048 more
# (2304 for MP3: priming and padding the container has no field for).
test_every_codec() {
  local pairs="mp3:mp3:exact aac:aac:more flac:flac:exact oga:vorbis:exact oga:flac:exact oga:opus:exact
    opus:opus:exact ac3:ac3:exact mp4:aac:more mp4:mp3:more mp4:ac3:less256 mp4:opus:more mp4:flac:exact
    mkv:aac:more mkv:mp3:more mkv:flac:exact mkv:vorbis:more mkv:opus:exact mkv:ac3:exact
    mov:aac:more mov:mp3:more mov:ac3:less256 mov:amr:exact asf:mp3:more asf:aac:more asf:ac3:exact
    avi:mp3:more avi:aac:more avi:ac3:exact ts:aac:more ts:mp3:more ts:ac3:exact ts:opus:more
    flv:mp3:more flv:aac:more"
  local p container codec rule rate ch n got dec out bad="" checked=0 more=""
  for p in $pairs; do
    IFS=: read -r container codec rule <<< "$p"
    rate=44100 ch=2
    case $codec in opus) rate=48000 ;; amr) rate=8000 ch=1 ;; esac
    for n in 1153 44111 100003; do
      tone "$n" "$rate" "$ch"
      got=$(merge "$container" "$codec" "$rate" "$ch")
      out=$(ls "$b"/len/out.* 2>/dev/null | head -1)
      # FFmpeg 5.1's own Ogg Vorbis decoding drops 128 samples of some short streams (of the
      # ffmpeg CLI's own output too); libvorbisfile, through sox, reads the granules as written.
      if [ "$container/$codec" = oga/vorbis ]; then dec=$(sox "$out" -t s16 -c 1 - | wc -c | awk '{print $1 / 2}')
      else dec=$([ -n "$out" ] && samples "$out" || echo none); fi
      local most=2048; [ "$codec" = mp3 ] && most=2304 # MP3: 1105 of priming, up to 1199 of padding
      checked=$((checked + 1))
      case $rule in
        exact)   [ "$dec" = "$got" ] && [ "$got" -ge "$n" ] || bad+=" $container/$codec@$n:$got/$dec" ;;
        less256) [ "$dec" = $((got - 256)) ] || bad+=" $container/$codec@$n:$got/$dec" ;;
        more)    [ "$dec" != none ] && [ "$dec" -ge "$got" ] && [ "$dec" -le $((got + most)) ] && [ "$got" = "$n" ] \
                   && more+=" $container/$codec+$((dec - got))" || bad+=" $container/$codec@$n:$got/$dec" ;;
      esac
    done
  done
  [ -z "$bad" ] && ok "every container x codec pair at 1153, 44111 and 100003 samples ($checked outputs): decoded as README's table says" \
    || not_ok "codec sweep (pair@N:Samples/decoded)" "$bad"
  echo "# lengths: what decoders add where the container cannot say:$(echo "$more" | tr ' ' '\n' | sort -u | paste -sd' ' | sed 's/^/ /')"
}

test_mp3_remainders
test_every_codec
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
