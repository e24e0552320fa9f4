#!/usr/bin/env bash
# Length suite: the decoded length of every output against the Samples the task reports, at odd
# lengths. MP3's LAME tag across every remainder of a frame (mpg123 and the ffmpeg CLI decoding),
# in MPEG-1 and MPEG-2 frames and in chunks; then every container x codec pair at three odd
# lengths, against the table of docs/request.md (exact, or what the container cannot say); then sources whose
# sample rate changes mid-stream (a chained Ogg, a FLAC stream, MP3s joined end to end) clipped
# across their changes, against the ffmpeg CLI's decoded timeline and its decode of the same time
# range.
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

# Every pair of the table of docs/request.md: exact, ac3-in-mp4 less its 256-sample delay, or up to 2048 more
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
  [ -z "$bad" ] && ok "every container x codec pair at 1153, 44111 and 100003 samples ($checked outputs): decoded as the table of docs/request.md says" \
    || not_ok "codec sweep (pair@N:Samples/decoded)" "$bad"
  echo "# lengths: what decoders add where the container cannot say:$(echo "$more" | tr ' ' '\n' | sort -u | paste -sd' ' | sed 's/^/ /')"
}

# MP4 and MOV say how long they are in their edit list, which a decoder that honours it (Apple's)
# plays. Read from the file's boxes (tests/e2e/mp4-edits.py, not through a decoder): the movie's
# timescale is the sample rate, and the edit's duration is exactly the Samples reported, for every
# codec either carries, at three odd lengths and one chunked one. One exception, as the table of
# docs/request.md says: AC3, whose Samples are whole frames, is edited to them less its 256 of delay. AAC in
# MP4 also carries the iTunes gapless item (iTunSMPB), which players of the iTunes era read instead.
test_mp4_edit_lists() {
  local p container codec rate ch n got facts ts dur bad="" checked=0 smpb_checked=0
  for p in mp4:aac mp4:mp3 mp4:ac3 mp4:opus mp4:flac mov:aac mov:mp3 mov:ac3 mov:amr; do
    IFS=: read -r container codec <<< "$p"
    rate=44100 ch=2
    case $codec in opus) rate=48000 ;; amr) rate=8000 ch=1 ;; esac
    for n in 1153 44111 100003 chunked; do
      local opts=()
      if [ "$n" = chunked ]; then
        case $codec in aac|mp3) n=$((1024 * 1152 / 4 + 17)); opts=(--chunks 2) ;; *) continue ;; esac
      fi
      tone "$n" "$rate" "$ch"
      got=$(merge "$container" "$codec" "$rate" "$ch" "${opts[@]}")
      facts=$(python3 "$here/mp4-edits.py" "$(ls "$b"/len/out.* | head -1)" 2>&1)
      ts=$(jq -r .movie_timescale <<< "$facts" 2>/dev/null); dur=$(jq -r '.edits[-1].duration' <<< "$facts" 2>/dev/null)
      checked=$((checked + 1))
      local want=$got
      [ "$codec" = ac3 ] && want=$((got - 256))
      # Samples are N, but for AC3 and AMR (whole frames: AC3 has no way to say less, and AMR-NB
      # frames are 160 samples) and Opus (at 48 kHz: N resampled).
      [ "$ts" = "$rate" ] && [ "$dur" = "$want" ] && { [ "$got" = "$n" ] || [[ "$codec" =~ ^(ac3|amr|opus)$ ]]; } \
        || bad+=" $container/$codec@$n:Samples=$got,timescale=$ts,edit=$dur"
      # AAC in MP4 also carries Apple's gapless item: its priming is the edit's start, its length
      # the Samples, and priming + length + padding fill the packets exactly. Nothing else has one.
      local smpb want_smpb=none
      smpb=$(jq -r '.iTunSMPB // "none"' <<< "$facts" 2>/dev/null)
      if [ "$container/$codec" = mp4/aac ]; then
        want_smpb=$(python3 -c 'import json, sys
f, n = json.loads(sys.argv[1]), int(sys.argv[2])
d = f["edits"][-1]["media_time"]
p = f["stts_count"] * 1024 - d - n  # less than a packet, or there is a packet of padding only
print(" ".join(["%08X" % 0, "%08X" % d, "%08X" % p, "%016X" % n] + ["%08X" % 0] * 8) if 0 <= p < 1024 else "padding %d" % p)' "$facts" "$got")
        smpb_checked=$((smpb_checked + 1))
      fi
      [ "$smpb" = "$want_smpb" ] || bad+=" $container/$codec@$n:iTunSMPB=[$smpb],want=[$want_smpb]"
    done
  done
  [ -z "$bad" ] && ok "MP4 and MOV: the movie timescale is the sample rate and the edit list says exactly the Samples, read from the boxes ($checked outputs, every codec, N = 1153, 44111, 100003 and a chunked length); AAC in MP4 carries iTunSMPB with the same priming and length, its padding filling the last packet ($smpb_checked outputs)" \
    || not_ok "MP4/MOV edit lists (pair@N)" "$bad"
}

# cli_runs FILE: the ffmpeg CLI's decoded timeline of FILE (its ashowinfo filter sees every frame at
# its decoded rate): a "RATE SAMPLES" line per run of one rate.
cli_runs() {
  ffmpeg -nostdin -hide_banner -i "$1" -af ashowinfo -f null - 2>&1 |
    sed -n 's/.*rate:\([0-9]*\) nb_samples:\([0-9]*\).*/\1 \2/p' |
    awk '{ if ($1 != r) { if (r) print r, n; r = $1; n = 0 } n += $2 } END { print r, n }'
}
# clip_length START DURATION RATE < RUNS: docs/request.md's rule for a clip of those runs, at an output RATE:
# StartTime is the nearest sample of the run holding it, the end Duration later (in that run, that
# many whole samples), each run's part converted as round(samples x RATE / its rate). Prints the
# clip's length and where its first sample lies in the whole file converted so, both at RATE.
clip_length() {
  awk -v S="$1" -v D="$2" -v R="$3" '
    function rnd(x) { return int(x + 0.5) }
    function conv(n, r) { return int((2 * n * R + r) / (2 * r)) }
    { r = $1; n = $2
      if (!started) { a = rnd((S - t0) * r); if (a < 0) a = 0
        if (a >= n) { t0 += n / r; before += conv(n, r); next }
        started = 1; first = before + conv(a, r); endt = t0 + a / r + D; e = D > 0 ? a + rnd(D * r) : n
      } else { a = 0; e = D > 0 ? rnd((endt - t0) * r) : n }
      b = e < n ? e : n
      if (b > a && !done) total += conv(b - a, r)
      if (D > 0 && e <= n) done = 1
      t0 += n / r }
    END { print total + 0, first + 0 }'
}
# snr A B: B's level over that of A - B, in dB (sox); "inf" when they are the same.
snr() {
  local d r; d=$(sox -m -v 1 "$1" -v -1 "$2" -n stat 2>&1 | awk '/RMS +amplitude/ {print $3}')
  r=$(sox "$2" -n stat 2>&1 | awk '/RMS +amplitude/ {print $3}')
  awk -v d="$d" -v r="$r" 'BEGIN { if (d == 0) print "inf"; else printf "%.0f\n", 20 * log(r / d) / log(10) }'
}

test_rate_changes() {
  local d="$b/rates" t; mkdir -p "$d"; t=$(mktemp -d "$work/rates.XXXX")
  # The issue's chained Ogg: 4 s of Vorbis at 44.1 kHz, then 4 s at 22.05 kHz.
  ff -f lavfi -i sine=440:sample_rate=44100:duration=4 -ac 2 -c:a libvorbis "$t/p1.ogg"
  ff -f lavfi -i sine=660:sample_rate=22050:duration=4 -ac 2 -c:a libvorbis "$t/p2.ogg"
  cat "$t/p1.ogg" "$t/p2.ogg" > "$d/chain.ogg"
  # A FLAC stream at 32, 24, 16 and then 48 kHz (as the FLAC testbench's "changing samplerate").
  local parts="" p rate n f
  for p in 32000:65536:330 24000:36864:440 16000:32768:550 48000:70000:660; do
    IFS=: read -r rate n f <<< "$p"
    ff -f lavfi -i "sine=f=$f:sample_rate=$rate" -af "atrim=end_sample=$n" -ac 2 -c:a flac -frame_size 4096 "$t/r$rate.flac"
    parts+=" $t/r$rate.flac"
  done
  python3 "$here/flac-join.py" "$d/rates.flac" $parts
  # MP3 files joined end to end: 44.1 kHz, then 22.05 kHz with its own ID3 tag and LAME header.
  ff -f lavfi -i sine=440:sample_rate=44100:duration=3 -ac 2 -c:a libmp3lame -b:a 128k "$t/m1.mp3"
  ff -f lavfi -i sine=660:sample_rate=22050:duration=3 -ac 2 -c:a libmp3lame -b:a 64k "$t/m2.mp3"
  cat "$t/m1.mp3" "$t/m2.mp3" > "$d/joined.mp3"
  ff -f lavfi -i sine=220:sample_rate=44100 -af atrim=end_sample=11025 -ac 2 -c:a pcm_s16le "$d/tail.wav"

  # The ffmpeg CLI's decode of each file, the reference for its time ranges, at a rate where the
  # CLI drops nothing: it loses its resampler's few buffered samples at each rate change it
  # resamples across, so the Ogg and the MP3s are taken whole at their first rate (only the second
  # run is resampled), the FLAC stream at 48 kHz part by part (as flac-join.py took them), joined.
  ff -i "$d/chain.ogg" -c:a pcm_s16le "$t/chain.ogg.wav"
  ff -i "$d/joined.mp3" -c:a pcm_s16le "$t/joined.mp3.wav"
  for p in $parts; do ff -i "$p" -ar 48000 -c:a pcm_s16le "$p.wav"; done
  sox $(for p in $parts; do echo "$p.wav"; done) "$t/rates.flac.wav"

  local file clip s dur ref runs w1 w22 out plan got1 got22 dec1 dec22 tail1 tail22 a q bad="" cases=0 runs_seen=""
  tail22=$(rescale 11025 22050 44100)
  for clip in chain.ogg:44100:3:3 chain.ogg:44100:5:1 chain.ogg:44100:0.5:0 chain.ogg:44100:4.02:0.5 \
              rates.flac:48000:1:2 rates.flac:48000:2.5:3 rates.flac:48000:5.5:0 rates.flac:48000:0.5:6 \
              joined.mp3:44100:2:2 joined.mp3:44100:4:1 joined.mp3:44100:0:0; do
    IFS=: read -r file ref s dur <<< "$clip"
    runs=$(cli_runs "$d/$file"); tail1=$(rescale 11025 "$ref" 44100)
    read -r w1 a < <(clip_length "$s" "$dur" "$ref" <<< "$runs"); read -r w22 _ < <(clip_length "$s" "$dur" 22050 <<< "$runs")
    printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/rates/%s","StartTime":%s,"Duration":%s},{"URI":"oss://test-bucket/rates/tail.wav"}],"Targets":[{"URI":"oss://test-bucket/rates/o1.{autoext}","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac","SampleRate":%s,"BitsPerSample":16}}},{"URI":"oss://test-bucket/rates/o22.{autoext}","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac","SampleRate":22050}}}]}' \
      "$file" "$s" "$dur" "$ref" > "$work/rc.json"
    out=$("$bin" run --quiet --oss-root "$root" "$work/rc.json"); plan=$("$bin" plan --oss-root "$root" "$work/rc.json" 2> /dev/null)
    got1=$(jqo '.Targets[0].Samples'); got22=$(jqo '.Targets[1].Samples')
    dec1=$(samples "$d/o1.flac"); dec22=$(samples "$d/o22.flac")
    # Our clip against the CLI's decode of the same time range (from the same first sample).
    sox "$t/$file.wav" "$t/ref.wav" trim "${a}s" "${w1}s"; sox "$d/o1.flac" "$t/ours.wav" trim 0s "${w1}s"
    q=$(snr "$t/ours.wav" "$t/ref.wav")
    cases=$((cases + 1))
    [ "$got1" = $((w1 + tail1)) ] && [ "$got22" = $((w22 + tail22)) ] && [ "$dec1" = "$got1" ] && [ "$dec22" = "$got22" ] \
      && [ "$(printf '%s' "$plan" | jq -c '[.Targets[] | .PredictedSamples, .PredictionExact]')" = "[$got1,true,$got22,true]" ] \
      && [ "$(jqo '.ImmergeReport.Joins[0].TargetSamples | join(",")')" = "$w1,$w22" ] \
      && { [ "$q" = inf ] || [ "$q" -ge 50 ]; } \
      || bad+=" $clip:want($w1+$tail1,$w22+$tail22)/got($got1,$got22)/decoded($dec1,$dec22)/plan$(printf '%s' "$plan" | jq -c '[.Targets[] | .PredictedSamples, .PredictionExact]')/join$(jqo '.ImmergeReport.Joins[0].TargetSamples | join(",")')/snr$q${out:+/$(jqo .Code)}"
    runs_seen+=" $file@$s+$dur:$(jqo '.ImmergeReport.Sources[0].SampleRateRuns // [] | length')/${q}dB"
  done
  [ -z "$bad" ] && ok "rate changes mid-stream: $cases clips of a chained Ogg, a 4-rate FLAC and joined MP3s are as long as the CLI's timeline says (at two rates), decode to that, plan and the join report agree, and match the CLI's decode of the range (SNR >= 50 dB)" \
    || not_ok "rate changes (clip:want/got/decoded/plan/join/snr)" "$bad"
  echo "# lengths: runs of one rate in each clip, and its SNR against the CLI:$runs_seen"
  # The issue's refused case, and a StartTime past the decoded end, judged on the decoded timeline.
  printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/rates/chain.ogg","StartTime":9}],"Targets":[{"URI":"oss://test-bucket/rates/o1.{autoext}","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac","SampleRate":48000}}}]}' > "$work/rc.json"
  out=$("$bin" run --quiet --oss-root "$root" "$work/rc.json"); rc=$?
  expect_error "rate changes: StartTime past the decoded end (8.023 s) of a chained Ogg is refused" 2 InvalidArgument "decodes to 8.023 s"
}

test_mp3_remainders
test_every_codec
test_mp4_edit_lists
test_rate_changes
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
