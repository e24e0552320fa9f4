#!/usr/bin/env bash
# Target suite, table-driven: every container x codec pair the service allows, merged from two
# sources (44.1 kHz stereo + 22.05 kHz mono) and checked with ffprobe (container, codec, rate,
# channels) and an ffmpeg decode (length); every refused combination's Code and field; Quality on
# each codec's scale; the *Option semantics; channel up/down-mixing.
#   tests/e2e/targets.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

"$top/testdata/gen-media.sh" "$root" > /dev/null || { echo "Bail out! fixtures"; exit 1; }
ff -f lavfi -i "sine=f=440:d=2:sample_rate=48000" -filter_complex "aformat=channel_layouts=5.1" \
   -c:a ac3 -b:a 384k "$b/audio/surround.ac3"
n1=$(samples "$b/audio/seg1.mp3"); n3=$(samples "$b/audio/seg3.mp3")
want=$(( $(rescale "$n1" 48000 44100) + $(rescale "$n3" 48000 22050) ))
two='{"URI":"oss://test-bucket/audio/seg1.mp3"},{"URI":"oss://test-bucket/audio/seg3.mp3"}'

# target NAME CONTAINER TRANSCODE-JSON [SOURCES-JSON]: runs a one-target merge; sets rc, out, f
target() {
  local name=$1 container=$2 ta=$3 srcs=${4:-$two}
  printf '{"ProjectName":"p","Sources":[%s],"Targets":[{"URI":"oss://test-bucket/output/%s.{autoext}","Container":"%s","Audio":{"TranscodeAudio":%s}}]}' \
    "$srcs" "$name" "$container" "$ta" > "$work/$name.json"
  out=$("$bin" run --quiet --oss-root "$root" "$work/$name.json" 2> "$work/$name.err"); rc=$?
  f="$b/output/$name.$container"
}

# The decoded length against the merged samples. Containers with gapless info (LAME/Xing, Ogg
# granules, FLAC, Matroska's CodecDelay for Opus) give it exactly; MP4/MOV's edit list removes the
# encoder's priming; the rest cannot say where priming and padding are, so a decoder returns them:
# at most the codec's delay plus one frame (2048 samples), never fewer than were merged.
# "lo hi" of (decoded - Samples), per container:codec.
declare -A slack=(
  [mp3:mp3]="0 0" [flac:flac]="0 0" [oga:vorbis]="0 0" [oga:flac]="0 0" [oga:opus]="0 0"
  [opus:opus]="0 0" [ac3:ac3]="0 0" [mp4:flac]="0 0" [mkv:flac]="0 0" [mkv:opus]="0 0"
  [mkv:ac3]="0 0" [asf:ac3]="0 0" [avi:ac3]="0 0" [ts:ac3]="0 0"
  [mp4:ac3]="-256 -256" [mov:ac3]="-256 -256"
)
declare -A format=([mp3]=mp3 [aac]=aac [flac]=flac [oga]=ogg [ac3]=ac3 [opus]=ogg
  [mp4]=mov,mp4,m4a,3gp,3g2,mj2 [mov]=mov,mp4,m4a,3gp,3g2,mj2 [mkv]=matroska,webm [asf]=asf
  [avi]=avi [ts]=mpegts [flv]=flv)

test_matrix() {
  local pair c k got fmt dec n lo hi
  for pair in mp3:mp3 aac:aac flac:flac oga:vorbis oga:flac oga:opus ac3:ac3 opus:opus \
              mp4:aac mp4:mp3 mp4:ac3 mp4:opus mp4:flac mkv:aac mkv:mp3 mkv:flac mkv:vorbis \
              mkv:opus mkv:ac3 mov:aac mov:mp3 mov:ac3 asf:mp3 asf:aac asf:ac3 avi:mp3 avi:aac \
              avi:ac3 ts:aac ts:mp3 ts:ac3 ts:opus flv:mp3 flv:aac; do
    c=${pair%:*} k=${pair#*:}
    local br=',"Bitrate":96000'; [ "$k" = flac ] && br=''
    target "m-$k" "$c" "{\"Codec\":\"$k\",\"SampleRate\":48000,\"Channel\":2$br}"
    got=$(probe "$f" codec_name,sample_rate,channels | cut -d, -f1-3)
    # The bitrate the file declares, else its audio packets' bytes over its length (Ogg, Matroska
    # and MPEG-TS declare none; the file size would count the container too).
    local rate_got; rate_got=$(probe "$f" bit_rate)
    [[ "$rate_got" =~ ^[0-9]+$ ]] || rate_got=$(ffprobe -v error -select_streams a:0 -show_entries packet=size \
      -of csv=p=0 "$f" | awk -v n="$want" '{ s += $1 } END { printf "%d", s * 8 * 48000 / n }')
    fmt=$(ffprobe -v error -show_entries format=format_name -of default=nw=1:nk=1 "$f" 2>/dev/null)
    n=$(jqo '.Targets[0].Samples'); dec=$(samples "$f")
    read -r lo hi <<< "${slack[$pair]:-0 2048}"
    # AC-3 frames are always 1536 samples: the merge is padded to whole frames.
    local merged=$want; [ "$k" = ac3 ] && merged=$(( (want + 1535) / 1536 * 1536 ))
    if [ "$rc" != 0 ]; then not_ok "$pair" "rc=$rc $(jqo .Message)"
    elif [ "$got" != "$k,48000,2" ] || [ "$fmt" != "${format[$c]}" ]; then not_ok "$pair" "ffprobe: $got in $fmt"
    elif [ "$n" != "$merged" ]; then not_ok "$pair" "Samples $n, merged $merged"
    elif [ $((dec - n)) -lt "$lo" ] || [ $((dec - n)) -gt "$hi" ]; then not_ok "$pair" "decoded $dec for $n samples"
    elif [ -n "$br" ] && { [ "$rate_got" -lt 72000 ] || [ "$rate_got" -gt 120000 ]; }; then not_ok "$pair" "bitrate $rate_got for 96000"
    else ok "$pair: $fmt, $k 48000 Hz stereo${br:+ ~$((rate_got / 1000)) kbit/s}, $n samples (decoded $dec)"; fi
    rm -f "$f"
  done
  # AMR-NB (8 kHz mono) through libopencore-amrnb, in MOV: whole 160-sample frames, decoded exactly.
  target m-amr mov '{"Codec":"amr","SampleRate":8000,"Channel":1,"Bitrate":7000}'
  local amr_want=$(( ($(rescale "$n1" 8000 44100) + $(rescale "$n3" 8000 22050) + 159) / 160 * 160 ))
  [ "$rc" = 0 ] && [ "$(probe "$f" codec_name,sample_rate,channels | cut -d, -f1-3)" = "amr_nb,8000,1" ] \
    && [ "$(samples "$f")" = "$amr_want" ] && [ "$(jqo '.Targets[0].Bitrate')" = 6700 ] \
    && ok "mov:amr: AMR-NB 8000 Hz mono, mode 6.7 kbit/s for 7000 asked, $amr_want samples" \
    || not_ok "mov:amr" "rc=$rc $(jqo .Message) $(probe "$f" codec_name,sample_rate,channels 2>/dev/null) $(samples "$f" 2>/dev/null)/$amr_want $(jqo '.Targets[0].Bitrate')"
  # {autoext} and a URI without an extension both take the container's extension.
  printf '{"ProjectName":"p","Sources":[%s],"Targets":[{"URI":"oss://test-bucket/output/noext","Container":"oga","Audio":{"TranscodeAudio":{"Codec":"vorbis"}}}]}' "$two" > "$work/noext.json"
  out=$("$bin" run --quiet --oss-root "$root" "$work/noext.json" 2>/dev/null); rc=$?
  [ "$rc" = 0 ] && [ -f "$b/output/noext.oga" ] && [ "$(jqo '.Targets[0].URI')" = oss://test-bucket/output/noext.oga ] \
    && ok "a URI without an extension gets the container's (.oga)" || not_ok "no extension" "$(jqo '.Targets[0].URI')"
}

test_refused() {
  local spec name c ta field
  # name | container | TranscodeAudio | the field the message must name
  while IFS='|' read -r name c ta field; do
    target "$name" "$c" "$ta"
    expect_error "refused: $name" 2 InvalidArgument "$field"
    [ -z "$(ls "$b/output" | grep "^$name")" ] || not_ok "refused $name wrote something"
  done <<'EOF'
aac in mp3|mp3|{"Codec":"aac"}|Targets[0].Audio.TranscodeAudio.Codec
flac in flv|flv|{"Codec":"flac"}|Targets[0].Audio.TranscodeAudio.Codec
flac in mov|mov|{"Codec":"flac"}|Targets[0].Audio.TranscodeAudio.Codec
vorbis in opus|opus|{"Codec":"vorbis"}|Targets[0].Audio.TranscodeAudio.Codec
anything in mxf|mxf|{"Codec":"aac"}|Targets[0].Audio.TranscodeAudio.Codec
copy|mp3|{"Codec":"copy"}|Targets[0].Audio.TranscodeAudio.Codec
mp3 at 96 kHz|mp3|{"Codec":"mp3","SampleRate":96000}|Targets[0].Audio.TranscodeAudio.SampleRate
opus at 44.1 kHz|opus|{"Codec":"opus","SampleRate":44100}|Targets[0].Audio.TranscodeAudio.SampleRate
ac3 at 22.05 kHz|ac3|{"Codec":"ac3","SampleRate":22050}|Targets[0].Audio.TranscodeAudio.SampleRate
a rate the service does not list|flac|{"Codec":"flac","SampleRate":44000}|Targets[0].Audio.TranscodeAudio.SampleRate
mp3 with 6 channels|mp3|{"Codec":"mp3","Channel":6}|Targets[0].Audio.TranscodeAudio.Channel
9 channels|flac|{"Codec":"flac","Channel":9}|Targets[0].Audio.TranscodeAudio.Channel
BitsPerSample on mp3|mp3|{"Codec":"mp3","BitsPerSample":16}|Targets[0].Audio.TranscodeAudio.BitsPerSample
Quality with Bitrate|mp3|{"Codec":"mp3","Quality":50,"Bitrate":128000}|Targets[0].Audio.TranscodeAudio.Quality
Quality over 100|aac|{"Codec":"aac","Quality":101}|Targets[0].Audio.TranscodeAudio.Quality
Bitrate under 1000|aac|{"Codec":"aac","Bitrate":999}|Targets[0].Audio.TranscodeAudio.Bitrate
AMR-WB (16 kHz)|mov|{"Codec":"amr","SampleRate":16000,"Channel":1}|Targets[0].Audio.TranscodeAudio.SampleRate
AMR in stereo|mov|{"Codec":"amr","SampleRate":8000,"Channel":2}|Targets[0].Audio.TranscodeAudio.Channel
AMR from a 44.1 kHz primary without SampleRate|mov|{"Codec":"amr"}|Targets[0].Audio.TranscodeAudio.SampleRate
EOF
}

# Quality 0..100 onto each encoder's scale: a higher Quality gives more bits (for FLAC, lossless,
# a higher compression level and so fewer bytes), and the task reports Quality, not Bitrate.
test_quality() {
  local c k lo_size hi_size
  for ck in mp3:mp3 aac:aac oga:vorbis opus:opus ac3:ac3 flac:flac; do
    c=${ck%:*} k=${ck#*:}
    target "q10-$k" "$c" "{\"Codec\":\"$k\",\"Quality\":10,\"SampleRate\":48000}"; lo_size=$(stat -c %s "$f" 2>/dev/null)
    local q10=$out
    target "q90-$k" "$c" "{\"Codec\":\"$k\",\"Quality\":90,\"SampleRate\":48000}"; hi_size=$(stat -c %s "$f" 2>/dev/null)
    local reported; reported=$(jqo '.Targets[0].Quality')
    if [ "$rc" != 0 ] || [ "$reported" != 90 ]; then not_ok "Quality $k" "rc=$rc Quality=$reported $(jqo .Message)"
    elif [ "$k" = flac ]; then
      [ "$hi_size" -le "$lo_size" ] && [ "$(samples "$f")" = "$want" ] \
        && ok "Quality on flac: compression level, $lo_size -> $hi_size bytes, still $want samples" \
        || not_ok "Quality flac" "$lo_size -> $hi_size"
    else
      [ "$hi_size" -gt $((lo_size * 3 / 2)) ] && ok "Quality on $k: 10 -> 90 grows the output $lo_size -> $hi_size bytes" \
        || not_ok "Quality $k" "$lo_size -> $hi_size bytes"
    fi
    case $k in mp3|aac|vorbis)
      [ "$(printf '%s' "$q10" | jq -r '.Targets[0].Bitrate // "none"')" = none ] && ok "Quality on $k is VBR: no Bitrate reported" \
        || not_ok "VBR $k" "$(printf '%s' "$q10" | jq -c '.Targets[0]')";;
    esac
  done
}

test_options() {
  # The primary (AlignmentIndex 0) is seg1: 44.1 kHz stereo at 128 kbit/s.
  target sr-adaptive flac '{"Codec":"flac","SampleRate":96000,"SampleRateOption":"adaptive"}'
  [ "$rc" = 0 ] && [ "$(rate_of "$f")" = 44100 ] && ok "SampleRateOption adaptive: 96000 asked, the primary's 44100 used" \
    || not_ok "SampleRate adaptive" "rc=$rc $(rate_of "$f" 2>/dev/null)"
  target sr-adaptive-opus opus '{"Codec":"opus","SampleRate":48000,"SampleRateOption":"adaptive"}'
  [ "$rc" = 0 ] && [ "$(jqo '.Targets[0].SampleRate')" = 24000 ] \
    && ok "SampleRateOption adaptive on opus: the highest Opus rate under the primary's 44100 (24000)" \
    || not_ok "SampleRate adaptive opus" "rc=$rc $(jqo '.Targets[0].SampleRate')"
  target sr-fixed flac '{"Codec":"flac","SampleRate":96000}'
  [ "$rc" = 0 ] && [ "$(rate_of "$f")" = 96000 ] && ok "SampleRateOption fixed (default): 96000 as asked" \
    || not_ok "SampleRate fixed" "rc=$rc"
  target sr-fall flac '{"Codec":"flac","SampleRate":96000,"SampleRateOption":"fall"}'
  expect_error "SampleRateOption fall: refused when the primary's rate is lower" 2 InvalidArgument "SampleRate"
  target br-adaptive mp3 '{"Codec":"mp3","Bitrate":256000,"BitrateOption":"adaptive"}'
  [ "$rc" = 0 ] && [ "$(jqo '.Targets[0].Bitrate')" = 128000 ] && ok "BitrateOption adaptive: 256000 asked, the primary's 128000 used" \
    || not_ok "Bitrate adaptive" "rc=$rc $(jqo '.Targets[0].Bitrate')"
  target br-fall mp3 '{"Codec":"mp3","Bitrate":256000,"BitrateOption":"fall"}'
  expect_error "BitrateOption fall: refused when the primary's bitrate is lower" 2 InvalidArgument "Bitrate"
  target br-lower mp3 '{"Codec":"mp3","Bitrate":64000,"BitrateOption":"fall"}'
  [ "$rc" = 0 ] && [ "$(probe "$f" bit_rate)" = 64000 ] && ok "BitrateOption fall: a bitrate under the primary's is used as asked" \
    || not_ok "Bitrate fall lower" "rc=$rc $(probe "$f" bit_rate 2>/dev/null)"
}

test_channels() {
  local s51='{"URI":"oss://test-bucket/audio/surround.ac3"}'
  local n51; n51=$(samples "$b/audio/surround.ac3")
  target down flac '{"Codec":"flac","Channel":2}' "$s51"
  [ "$rc" = 0 ] && [ "$(probe "$f" channels,channel_layout)" = "2,stereo" ] && [ "$(samples "$f")" = "$n51" ] \
    && ok "5.1 -> stereo downmix: 2 channels, $n51 samples" || not_ok "downmix" "rc=$rc $(probe "$f" channels,channel_layout 2>/dev/null) $(samples "$f")/$n51"
  # The downmix keeps the centre (where the tone is): not silent.
  local vol; vol=$(ffmpeg -nostdin -i "$f" -af volumedetect -f null - 2>&1 | sed -n 's/.*mean_volume: \(-*[0-9]*\).*/\1/p')
  [ -n "$vol" ] && [ "$vol" -gt -40 ] && ok "5.1 -> stereo keeps the signal (mean $vol dB)" || not_ok "downmix level" "$vol dB"
  target up flac '{"Codec":"flac","Channel":2}' '{"URI":"oss://test-bucket/audio/seg3.mp3"}'
  local l r
  l=$(ffmpeg -nostdin -v error -i "$f" -af "pan=mono|c0=c0" -f s16le - | md5sum); r=$(ffmpeg -nostdin -v error -i "$f" -af "pan=mono|c0=c1" -f s16le - | md5sum)
  [ "$rc" = 0 ] && [ "$(probe "$f" channels)" = 2 ] && [ "$l" = "$r" ] && ok "mono -> stereo: the voice in both channels, identical" \
    || not_ok "upmix" "rc=$rc"
  target sixout ac3 '{"Codec":"ac3","Channel":6,"SampleRate":48000}' "$s51"
  [ "$rc" = 0 ] && [ "$(probe "$f" channels)" = 6 ] && ok "5.1 kept as 5.1 in AC-3" || not_ok "5.1 ac3" "rc=$rc"
}

# Speed 0.5..1: longer by exactly 1/Speed, same pitch (a 440 Hz tone's zero-crossing rate stays).
test_speed() {
  ff -f lavfi -i "sine=f=440:d=3:sample_rate=44100" -c:a flac "$b/audio/tone.flac"
  local tone='{"URI":"oss://test-bucket/audio/tone.flac"},{"URI":"oss://test-bucket/audio/tone.flac"}'
  local sp want zcr
  for sp in 0.75 0.5; do
    printf '{"ProjectName":"p","Sources":[%s],"Targets":[{"URI":"oss://test-bucket/output/speed.flac","Container":"flac","Speed":%s,"Audio":{"TranscodeAudio":{"Codec":"flac"}}},{"URI":"oss://test-bucket/output/speed.mp3","Container":"mp3","Speed":%s,"Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]}' \
      "$tone" "$sp" "$sp" > "$work/speed.json"
    out=$("$bin" run --quiet --oss-root "$root" "$work/speed.json" 2>/dev/null); rc=$?
    want=$(awk -v s="$sp" 'BEGIN { printf "%d", 264600 / s + 0.5 }')
    zcr=$(ffmpeg -nostdin -i "$b/output/speed.flac" -af astats -f null - 2>&1 | sed -n 's/.*Zero crossings rate: \([0-9.]*\).*/\1/p' | head -1)
    [ "$rc" = 0 ] && [ "$(samples "$b/output/speed.flac")" = "$want" ] && [ "$(samples "$b/output/speed.mp3")" = "$want" ] \
      && ok "Speed $sp: 264600 samples become exactly $want (FLAC and MP3 targets from one decode)" \
      || not_ok "Speed $sp length" "rc=$rc $(jqo .Message) $(samples "$b/output/speed.flac" 2>/dev/null)/$want"
    awk -v z="$zcr" 'BEGIN { exit !(z > 0.01975 && z < 0.02016) }' && ok "Speed $sp keeps the pitch (zero-crossing rate $zcr for 440 Hz)" \
      || not_ok "Speed $sp pitch" "zero-crossing rate $zcr, 440 Hz gives 0.019955"
  done
  for sp in 0.4 1.1; do
    target "speed-bad" flac "{\"Codec\":\"flac\"}"
    sed -i "s/\"Container\"/\"Speed\":$sp,\"Container\"/" "$work/speed-bad.json"
    out=$("$bin" run --quiet --oss-root "$root" "$work/speed-bad.json" 2>/dev/null); rc=$?
    expect_error "Speed $sp is refused" 2 InvalidArgument "Targets[0].Speed"
  done
}

# Audio.Stream with FilterAudio.Mixing: a source with two tracks (200 Hz stereo 44.1 kHz for 2 s,
# 5 kHz mono 48 kHz for 3 s). Which tones an output holds is read through steep filters.
level() { ffmpeg -nostdin -i "$1" -af "$2,volumedetect" -f null - 2>&1 | sed -n 's/.*mean_volume: \(-*[0-9]*\).*/\1/p'; }
test_mixing() {
  ff -f lavfi -i "sine=f=200:d=2:sample_rate=44100" -f lavfi -i "sine=f=5000:d=3:sample_rate=48000" \
     -map 0 -map 1 -ac:0 2 -c:a flac "$b/audio/two.mkv"
  local low="lowpass=f=1000,lowpass=f=1000,lowpass=f=1000" high="highpass=f=2000,highpass=f=2000,highpass=f=2000"
  local src='{"URI":"oss://test-bucket/audio/two.mkv"}' lo hi sel
  while IFS='|' read -r name sel want_lo want_hi n rate; do
    printf '{"ProjectName":"p","Sources":[%s],"Targets":[{"URI":"oss://test-bucket/output/mix.flac","Container":"flac","Audio":{%s"TranscodeAudio":{"Codec":"flac"}}}]}' "$src" "$sel" > "$work/mix.json"
    out=$("$bin" run --quiet --oss-root "$root" "$work/mix.json" 2>/dev/null); rc=$?
    lo=$(level "$b/output/mix.flac" "$low"); hi=$(level "$b/output/mix.flac" "$high")
    local has_lo=no has_hi=no; [ "${lo:--99}" -gt -45 ] && has_lo=yes; [ "${hi:--99}" -gt -45 ] && has_hi=yes
    [ "$rc" = 0 ] && [ "$has_lo/$has_hi" = "$want_lo/$want_hi" ] && [ "$(samples "$b/output/mix.flac")" = "$n" ] \
      && [ "$(rate_of "$b/output/mix.flac")" = "$rate" ] \
      && ok "$name: 200 Hz $want_lo, 5 kHz $want_hi, $n samples at $rate Hz" \
      || not_ok "$name" "rc=$rc $(jqo .Message) lo=$lo hi=$hi $(samples "$b/output/mix.flac") $(rate_of "$b/output/mix.flac")"
  done <<'EOF'
Stream [1], no mixing: the second track only|"Stream":[1],|no|yes|144000|48000
Stream [0,1] without Mixing: the first that exists|"Stream":[0,1],|yes|no|88200|44100
Mixing all (Stream [101]): both, as long as the longer, at the first track's rate|"Stream":[101],"FilterAudio":{"Mixing":true},|yes|yes|132300|44100
Mixing [1,0]: both, at the first listed track's rate|"Stream":[1,0],"FilterAudio":{"Mixing":true},|yes|yes|144000|48000
Mixing without Stream: the first track alone|"FilterAudio":{"Mixing":true},|yes|no|88200|44100
EOF
}

# The primary (AlignmentIndex) source's title/artist/album go into the output unless StripMetadata.
test_metadata() {
  ff -f lavfi -i "sine=f=440:d=1:sample_rate=44100" -metadata title="Lecture One" -metadata artist="Prof. Ada" \
     -metadata album="Course 101" -c:a libmp3lame "$b/audio/tagged.mp3"
  local strip c k tags want
  for strip in false true; do
    for ck in mp3:mp3 flac:flac mp4:aac oga:vorbis; do
      c=${ck%:*} k=${ck#*:}
      printf '{"ProjectName":"p","Sources":[%s,{"URI":"oss://test-bucket/audio/tagged.mp3"}],"AlignmentIndex":1,"Targets":[{"URI":"oss://test-bucket/output/tag.{autoext}","Container":"%s","StripMetadata":%s,"Audio":{"TranscodeAudio":{"Codec":"%s"}}}]}' \
        '{"URI":"oss://test-bucket/audio/seg1.mp3"}' "$c" "$strip" "$k" > "$work/tag.json"
      out=$("$bin" run --quiet --oss-root "$root" "$work/tag.json" 2>/dev/null); rc=$?
      tags=$(ffprobe -v error -show_entries format_tags=title,artist,album:stream_tags=title,artist,album -of compact=p=0 "$b/output/tag.$c" | tr -d '\n ')
      want="tag:title=LectureOne|tag:artist=Prof.Ada|tag:album=Course101"; [ "$strip" = true ] && want=""
      [ "$rc" = 0 ] && [ "$tags" = "$want" ] && ok "StripMetadata $strip, $c: ${want:-no tags}" || not_ok "metadata $strip $c" "rc=$rc '$tags'"
    done
  done
}

# Segment (HLS): a playlist and its numbered segments in the playlist's folder, visible only on
# success; a task that fails after writing segments removes them.
test_segment() {
  local c k seg ext n dec count
  local three='{"URI":"oss://test-bucket/audio/seg1.mp3"},{"URI":"oss://test-bucket/audio/seg2.mp3"},{"URI":"oss://test-bucket/audio/seg3.mp3"}'
  local merged=$(( $(rescale "$n1" 48000 44100) + $(rescale "$(samples "$b/audio/seg2.mp3")" 48000 44100) + $(rescale "$n3" 48000 22050) ))
  for c in ts mp4; do
    ext=ts; [ "$c" = mp4 ] && ext=m4s
    rm -rf "$b/output/hls"
    printf '{"ProjectName":"p","Sources":[%s],"Targets":[{"URI":"oss://test-bucket/output/hls/list.{autoext}","Container":"%s","Segment":{"Format":"hls","Duration":3,"StartNumber":5},"Audio":{"TranscodeAudio":{"Codec":"aac","SampleRate":48000}}}]}' "$three" "$c" > "$work/hls.json"
    out=$("$bin" run --quiet --oss-root "$root" "$work/hls.json" 2>/dev/null); rc=$?
    local pl="$b/output/hls/list.m3u8"
    count=$(grep -c "^list-[0-9]*\.$ext\$" "$pl" 2>/dev/null); dec=$(samples "$pl" 2>/dev/null)
    if [ "$rc" = 0 ] && [ "$(jqo '.Targets[0].URI')" = oss://test-bucket/output/hls/list.m3u8 ] && [ "$count" = 4 ] \
       && [ -f "$b/output/hls/list-5.$ext" ] && [ -f "$b/output/hls/list-8.$ext" ] && grep -q "EXT-X-MEDIA-SEQUENCE:5" "$pl" \
       && grep -q "EXT-X-ENDLIST" "$pl" && [ $((dec - merged)) -ge 0 ] && [ $((dec - merged)) -le 2048 ]; then
      ok "Segment hls in $c: list.m3u8 + list-5..8.$ext (3 s each from StartNumber 5), decodes to $dec for $merged merged"
    else
      not_ok "Segment hls $c" "rc=$rc $(jqo .Message) segments=$count dec=$dec/$merged $(ls "$b/output/hls" 2>&1 | tr '\n' ' ')"
    fi
    [ "$c" = mp4 ] && { grep -q 'EXT-X-MAP:URI="list-init.mp4"' "$pl" && [ -f "$b/output/hls/list-init.mp4" ] \
      && ok "Segment hls in mp4: fMP4 with its init segment" || not_ok "fmp4 init" "$(cat "$pl")"; }
  done
  # A later source breaks mid-decode (its playlist misses a segment): the segments of the first
  # are gone again, and no playlist appears.
  mkdir -p "$b/audio/broken"
  ff -f lavfi -i "sine=f=330:d=4:sample_rate=44100" -f hls -hls_time 1 -hls_list_size 0 \
     -hls_segment_filename "$b/audio/broken/p%d.ts" "$b/audio/broken/list.m3u8"
  rm -f "$b/audio/broken/p2.ts"
  rm -rf "$b/output/hls"
  printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/seg1.mp3"},{"URI":"oss://test-bucket/audio/broken/list.m3u8"}],"Targets":[{"URI":"oss://test-bucket/output/hls/list.m3u8","Container":"ts","Segment":{"Duration":1},"Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]}' > "$work/hls-bad.json"
  out=$("$bin" run --quiet --oss-root "$root" "$work/hls-bad.json" 2>/dev/null); rc=$?
  expect_error "Segment: a task failing after 4 s of segments" 1 ResourceNotFound "p2.ts"
  local left; left=$(find "$b/output/hls" -type f 2>/dev/null | head -3)
  [ -z "$left" ] && ok "Segment: the failed task's segments are removed, no playlist" || not_ok "segments left" "$left"
  while IFS='|' read -r name c seg field; do
    printf '{"ProjectName":"p","Sources":[%s],"Targets":[{"URI":"oss://test-bucket/output/s.{autoext}","Container":"%s","Segment":%s,"Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]}' "$two" "$c" "$seg" > "$work/segbad.json"
    out=$("$bin" run --quiet --oss-root "$root" "$work/segbad.json" 2>/dev/null); rc=$?
    expect_error "refused: $name" 2 InvalidArgument "$field"
  done <<'EOF'
Segment on an mp3 container|mp3|{"Format":"hls"}|Targets[0].Container
Segment Format dash|ts|{"Format":"dash"}|Targets[0].Segment.Format
Segment Format smooth|ts|{"Format":"smooth"}|Targets[0].Segment.Format
Segment Duration 0|ts|{"Duration":0}|Targets[0].Segment.Duration
Segment StartNumber -1|ts|{"StartNumber":-1}|Targets[0].Segment.StartNumber
EOF
}

test_matrix
test_segment
test_metadata
test_mixing
test_speed
test_refused
test_quality
test_options
test_channels

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
