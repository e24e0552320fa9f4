#!/usr/bin/env bash
# Hostile input suite: media and requests built to break a merge. Each case either merges what is
# valid, by the rule docs/request.md states, or fails the task with a clear Code, within bounded time and
# memory, leaving no output and no temporary file behind and every source unchanged.
#   tests/e2e/hostile.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

"$top/testdata/gen-media.sh" "$root" > /dev/null || { echo "Bail out! fixtures"; exit 1; }
a="$b/audio"; mkdir -p "$a/hostile" "$b/output"
h="$a/hostile"
n1=$(samples "$a/seg1.mp3")

# merge NAME SOURCE-URI [immerge options...]: one source to MP3; sets rc, out, secs, kib
merge() {
  local name=$1 src=$2; shift 2
  printf '{"ProjectName":"p","Sources":[{"URI":"%s"}],"Targets":[{"URI":"oss://test-bucket/output/%s.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","SampleRate":44100,"Channel":2}}}]}' \
    "$src" "$name" > "$work/$name.json"
  local t0; t0=$(date +%s.%N)
  out=$( { /usr/bin/time -f '%M' -o "$work/$name.kib" "$bin" run --quiet --oss-root "$root" "$@" "$work/$name.json" 2> "$work/$name.err"; } ); rc=$?
  secs=$(echo "$(date +%s.%N) - $t0" | bc); kib=$(tail -1 "$work/$name.kib")
}
# Bounds are for the normal build; AddressSanitizer's shadow memory and quarantine take more.
# Its quarantine (freed memory held back to catch use after free) defaults to 256 MiB: a task that
# decodes fast (ten hours of silence in 2 s) fills it whatever its own footprint, so the suite
# keeps it at 16 MiB, where the bounds still say something about immerge.
mem_scale=1; grep -q __asan_init "$bin" && mem_scale=4
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
# N deterministic pseudo-random bytes (AES-CTR over zeros, seeded by $2), so every run meets the
# same input.
noise() { head -c "$1" /dev/zero | openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "${2:-1}")" -iv 0 2> /dev/null; }
bounded() { [ "$(echo "$secs < $1" | bc)" = 1 ] && [ "$kib" -lt $(( $2 * 1024 * mem_scale )) ]; }
nothing_left() { [ -z "$(ls -A "$b/output")" ]; }

# Fails as the service would, quickly, in little memory, leaving nothing.
refused() { # NAME RC CODE TEXT SECONDS MIB
  local name=$1 want_rc=$2 code=$3 text=$4 s=$5 m=$6
  if ! bounded "$s" "$m"; then not_ok "$name" "took ${secs}s and ${kib} KiB (bounds ${s}s, ${m} MiB)"
  elif ! nothing_left; then not_ok "$name" "left $(ls -A "$b/output")"
  else expect_error "$name ($(printf '%.1f' "$secs") s, $((kib / 1024)) MiB)" "$want_rc" "$code" "$text"; fi
  rm -rf "${b:?}/output"/* "${b:?}/output"/.??* 2>/dev/null
}

# --- damaged and mislabelled media ---
head -c 36000 "$a/seg1.mp3" > "$h/truncated.mp3"
merge truncated oss://test-bucket/audio/hostile/truncated.mp3
got=$(jqo '.Sources[0].Samples'); dec=$(samples "$b/output/truncated.mp3")
[ "$rc" = 0 ] && [ "$got" -gt 0 ] && [ "$got" -lt "$n1" ] && [ "$dec" = "$(jqo '.Targets[0].Samples')" ] \
  && ok "truncated MP3: what decodes is merged ($got of $n1 samples), and says so in Sources[0].Samples" \
  || not_ok "truncated MP3" "rc=$rc got=$got dec=$dec $(jqo .Message)"
rm -f "$b/output"/*

ff -i "$a/seg1.mp3" -c:a aac -movflags +faststart "$h/whole.m4a"
head -c 2000 "$h/whole.m4a" > "$h/truncated.m4a"
merge truncated-m4a oss://test-bucket/audio/hostile/truncated.m4a
refused "M4A cut inside its header" 1 InvalidMedia truncated.m4a 10 128

cp "$a/seg1.mp3" "$h/really-mp3.wav"
merge wrong-ext oss://test-bucket/audio/hostile/really-mp3.wav
[ "$rc" = 0 ] && [ "$(jqo '.Sources[0].Samples')" = "$n1" ] \
  && ok "an MP3 named .wav: the content decides, all $n1 samples merged" || not_ok "wrong extension" "rc=$rc $(jqo .Message)"
rm -f "$b/output"/*

# A playlist without #EXT-X-ENDLIST whose segments claim 2 minutes each: FFmpeg would take it for
# a live one and, having read it all, wait minutes for it to grow (fuzzing found one of 167 s).
mkdir -p "$h/live"
ff -f lavfi -i "sine=f=440:d=4:sample_rate=44100" -c:a aac -f hls -hls_time 2 -hls_list_size 0 \
   -hls_flags omit_endlist -hls_segment_filename "$h/live/s%d.ts" "$h/live/list.m3u8"
sed -i 's/^#EXT-X-TARGETDURATION:.*/#EXT-X-TARGETDURATION:120/; s/^#EXTINF:[0-9.]*,/#EXTINF:120.0,/' "$h/live/list.m3u8"
merge live oss://test-bucket/audio/hostile/live/list.m3u8
{ cat "$h/live/list.m3u8"; echo '#EXT-X-ENDLIST'; } > "$h/live/vod.m3u8"
want=$(samples "$h/live/vod.m3u8") # the ffmpeg CLI, once the list says it is complete
[ "$rc" = 0 ] && bounded 20 128 && ! grep -q ENDLIST "$h/live/list.m3u8" \
  && [ "$(jqo '.Sources[0].Samples')" = "$want" ] \
  && ok "a playlist without ENDLIST: every segment merged ($(jqo '.Sources[0].Samples') samples) in $(printf '%.1f' "$secs") s, no wait for it to grow" \
  || not_ok "playlist without ENDLIST" "rc=$rc ${secs}s $(jqo '.Sources[0].Samples') vs $want $(jqo .Message)"
rm -f "$b/output"/*

: > "$h/empty.mp3"
merge empty oss://test-bucket/audio/hostile/empty.mp3
refused "zero-length object" 1 InvalidMedia empty.mp3 10 128

# Random bytes can hold what looks like MP3 frames: the rule is that what decodes is merged, and
# a source where nothing does is InvalidMedia. Two seeds, whichever way each goes.
for seed in 1 2; do
  noise 300000 "$seed" > "$h/noise$seed.mp3"
  merge random oss://test-bucket/audio/hostile/noise$seed.mp3
  if [ "$rc" = 0 ]; then
    [ "$(samples "$b/output/random.mp3")" = "$(jqo '.Targets[0].Samples')" ] && bounded 20 128 \
      && ok "300 KB of random bytes (seed $seed): the frames that decode are merged ($(jqo '.Sources[0].Samples') samples)" \
      || not_ok "random bytes (seed $seed)" "decoded $(samples "$b/output/random.mp3") vs $(jqo '.Targets[0].Samples')"
    rm -f "$b/output"/*
  else
    refused "300 KB of random bytes (seed $seed): nothing decodes" 1 InvalidMedia "noise$seed.mp3" 20 128
  fi
done

# Sun AU: 32-bit channel count and rate, set to 2^31 - 1 each.
{ printf '.snd'; printf '\x00\x00\x00\x18\xff\xff\xff\xff\x00\x00\x00\x03\x7f\xff\xff\xff\x7f\xff\xff\xff'; head -c 4096 /dev/zero; } > "$h/huge-header.au"
merge huge-au oss://test-bucket/audio/hostile/huge-header.au
refused "AU header claiming 2^31-1 channels at 2^31-1 Hz" 1 InvalidMedia huge-header.au 10 128

# WAV: 65535 channels (the field's maximum) and a 4294967295 Hz rate.
{ printf 'RIFF\x24\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\x10\x00data\x00\x10\x00\x00'; head -c 4096 /dev/zero; } > "$h/huge-header.wav"
merge huge-wav oss://test-bucket/audio/hostile/huge-header.wav
refused "WAV header claiming 65535 channels at 4294967295 Hz" 1 InvalidMedia huge-header.wav 10 128

# A decoder error mid-stream: 4 KB of garbage in the middle of the MP3. Corrupt frames are skipped
# the way the ffmpeg CLI skips them; the rest is merged.
cp "$a/seg1.mp3" "$h/corrupt.mp3"
noise 4096 3 | dd of="$h/corrupt.mp3" bs=1 seek=30000 count=4096 conv=notrunc status=none
merge corrupt oss://test-bucket/audio/hostile/corrupt.mp3
got=$(jqo '.Sources[0].Samples')
[ "$rc" = 0 ] && [ "$got" -gt $((n1 / 2)) ] && [ "$(samples "$b/output/corrupt.mp3")" = "$(jqo '.Targets[0].Samples')" ] \
  && ok "4 KB of garbage mid-MP3: the damaged frames are skipped, $got of $n1 samples merged" \
  || not_ok "corrupt mid-stream" "rc=$rc got=$got $(jqo .Message)"
rm -f "$b/output"/*

# A 32 MB ID3v2 tag (a picture) before the audio: merged, tags not carried, memory bounded.
noise $((32 << 20)) 4 > "$work/cover.jpg"
ff -i "$a/seg1.mp3" -i "$work/cover.jpg" -map 0:a -map 1 -c copy -id3v2_version 3 \
   -metadata:s:v title=cover -disposition:v attached_pic "$h/huge-id3.mp3" 2> /dev/null \
   || { printf 'ID3\x03\x00\x00\x10\x00\x00\x00'; head -c $((32 << 20)) /dev/zero; cat "$a/seg1.mp3"; } > "$h/huge-id3.mp3"
merge huge-id3 oss://test-bucket/audio/hostile/huge-id3.mp3
[ "$rc" = 0 ] && [ "$(jqo '.Sources[0].Samples')" = "$n1" ] && bounded 30 160 \
  && ok "MP3 behind a $(( $(stat -c %s "$h/huge-id3.mp3") >> 20 )) MB ID3 tag: all $n1 samples, peak RSS $((kib / 1024)) MiB" \
  || not_ok "huge ID3" "rc=$rc ${secs}s ${kib} KiB $(jqo .Message)"
rm -f "$b/output"/*

# --- playlists ---
mkdir -p "$h/loop"
printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nlist.m3u8\n#EXT-X-ENDLIST\n' > "$h/loop/list.m3u8"
merge loop oss://test-bucket/audio/hostile/loop/list.m3u8
refused "a playlist that lists itself" 1 InvalidMedia list.m3u8 20 128

printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n/etc/passwd.ts\n#EXTINF:1.0,\nfile:///etc/passwd.ts\n#EXT-X-ENDLIST\n' > "$h/loop/abs.m3u8"
merge abs-playlist oss://test-bucket/audio/hostile/loop/abs.m3u8
refused "a playlist naming /etc/passwd.ts and file:///etc/passwd.ts" 1 Forbidden "leaves the playlist's bucket" 20 128

# --- limits ---
ff -f lavfi -i "anullsrc=r=8000:cl=mono" -t 36000 -c:a flac "$h/ten-hours.flac"
merge ten-hours oss://test-bucket/audio/hostile/ten-hours.flac --max-duration 3600
refused "10 hours of silence with --max-duration 3600: refused before any work" 2 LimitExceededError "3600" 5 128
merge ten-hours-timeout oss://test-bucket/audio/hostile/ten-hours.flac --timeout 2
refused "10 hours of silence with --timeout 2" 1 TaskTimeout "2 s" 6 128
st=$("$bin" list-tasks --status Failed | jq -r '.Tasks[-1] | .Code')
[ "$st" = TaskTimeout ] && ok "the task record says TaskTimeout" || not_ok "record of the timeout" "$st"

# A WAV written to a pipe has no length in its header: the limit is met while decoding.
ff -f lavfi -i "sine=f=440:d=20:sample_rate=44100" -f wav pipe:1 > "$h/streamed.wav"
merge streamed oss://test-bucket/audio/hostile/streamed.wav --max-duration 5
refused "a WAV of unknown length past --max-duration 5: stopped while decoding" 2 LimitExceededError "5 s" 10 128

# --- the disk fills up (a file-size limit stands in for a full disk: writes fail with EFBIG) ---
mkdir -p "$work/tmp"
printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/seg1.mp3"},{"URI":"oss://test-bucket/audio/seg2.mp3"},{"URI":"oss://test-bucket/audio/seg1.mp3"}],"Targets":[{"URI":"oss://test-bucket/output/full.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":320000}}}]}' > "$work/full.json"
full() { # KIB [immerge options...] [REQUEST]: runs full.json, or REQUEST, under a file-size limit
  local k=$1; shift
  local req="$work/full.json"; [ "${!#}" != "${!#%.json}" ] && { req=${!#}; set -- "${@:1:$#-1}"; }
  ( ulimit -f "$k"; exec "$bin" run --quiet --temp-dir "$work/tmp" --oss-root "$root" "$@" "$req" > "$work/full.out" 2> "$work/full.err" ); rc=$?
  out=$(cat "$work/full.out"); secs=0; kib=0
}
full 64 --no-chunking
refused "the output hits a 64 KB file-size limit (disk full)" 1 StorageError "full.mp3" 10 128
# A later chunk's packets wait in --temp-dir: where no temporary file can be made there, the task
# fails before any encoding. (Which file fills first mid-run is a race: the output leads.)
ff -f lavfi -i "sine=f=440:d=90:sample_rate=44100" -ac 2 -c:a flac "$h/ninety.flac"
printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/hostile/ninety.flac"}],"Targets":[{"URI":"oss://test-bucket/output/chunked.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]}' > "$work/chunked.json"
out=$("$bin" run --quiet --chunks 2 --temp-dir "$work/no-such-dir" --oss-root "$root" "$work/chunked.json" 2> /dev/null); rc=$?; secs=0; kib=0
refused "chunks with an unusable --temp-dir" 1 StorageError "temporary file" 10 128
full 200 --chunks 2 "$work/chunked.json"
[ -z "$(ls -A "$work/tmp")" ] && refused "90 s in 2 chunks against a 200 KB file-size limit" 1 StorageError "File too large" 10 128 \
  || not_ok "chunked disk full" "left $(ls -A "$work/tmp")"

# --- paths and URIs ---
printf 'secret' > "$root/outside.txt"
for uri in 'oss://test-bucket/%2e%2e/outside.txt' 'oss://test-bucket/audio/%2E%2E%2F%2E%2E%2Foutside.txt'; do
  merge pct "$uri"
  refused "percent-encoded traversal stays a literal key: $uri" 1 ResourceNotFound "$uri" 10 128
done
merge nul 'oss://test-bucket/audio/seg1.mp3\u0000/../../outside.txt'
refused "a NUL (\\u0000) inside a URI, which would cut it short" 2 InvalidArgument "NUL" 5 128
long=$(printf 'k%.0s' $(seq 1100))
merge long "oss://test-bucket/audio/$long.mp3"
refused "a 1,100-byte key (OSS allows 1,023)" 2 InvalidArgument "Sources[0].URI" 5 128
merge slashes 'oss://test-bucket//audio//seg1.mp3'
refused "empty key segments" 2 InvalidArgument "Sources[0].URI" 5 128
ln -sf /etc "$b/audio/etc-link"
merge link-dir 'oss://test-bucket/audio/etc-link/hostname'
refused "a symlinked folder leading out of the root" 1 Forbidden "etc-link" 5 128
rm -f "$b/audio/etc-link"

# No source was changed by any of it.
[ "$(sha256sum "$a"/seg*.mp3 | sha256sum)" = "$(cd "$top" && sha256sum "$a"/seg*.mp3 | sha256sum)" ] \
  && [ "$(cat "$root/outside.txt")" = secret ] && ok "sources and files outside the root unchanged" \
  || not_ok "sources unchanged"

echo "# hostile: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
