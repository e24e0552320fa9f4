#!/usr/bin/env bash
# ImmergeExtensions: immerge's own additions to the request, each off unless asked. Each is
# checked with tools we did not write: sox (levels in windows), the ffmpeg CLI (decoding, EBU R128
# loudness), cmp (what an extension must leave alone, it leaves bit for bit).
#   tests/e2e/extensions.sh BIN
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

"$top/testdata/gen-media.sh" "$root" || { echo "Bail out! fixtures"; exit 1; }
# Steady tones make every window's level predictable: 440 Hz at -6 dBFS, 3 s, and one 20 dB
# quieter, 4 s.
sox -n -r 44100 -c 2 -b 16 "$b/audio/tone.wav" synth 3 sine 440 vol 0.5
sox -n -r 44100 -c 2 -b 16 "$b/audio/quiet.wav" synth 4 sine 440 vol 0.05
srcs='[{"URI":"oss://test-bucket/audio/tone.wav"},{"URI":"oss://test-bucket/audio/tone.wav"}]'

# req NAME SOURCES TARGETS-JSON [EXTENSIONS-JSON]: writes $work/NAME.json
req() {
  printf '{"ProjectName":"p","Sources":%s,"Targets":%s%s}' "$2" "$3" "${4:+,\"ImmergeExtensions\":$4}" > "$work/$1.json"
}
flac() { printf '{"URI":"oss://test-bucket/output/%s.{autoext}","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac"%s}}}' "$1" "${2:-}"; }
run() { out=$("$bin" run --quiet --oss-root "$root" "$@" 2> "$work/err"); rc=$?; }
# rms FILE FROM LEN: RMS level in dB over [FROM, FROM + LEN) s
rms() { sox "$1" -n trim "$2" "$3" stats 2>&1 | awk '/RMS lev dB/ { print $4 }'; }
near() { [ "$(echo "d = $1 - ($2); d <= $3 && d >= -$3" | bc -l)" = 1 ]; }
lufs() { ffmpeg -nostdin -hide_banner -i "$1" -af ebur128 -f null - 2>&1 | awk '/^ *I:/ { v = $2 } END { print v }'; }
pcm() { ff -i "$1" -ss "$2" -t "$3" -f s16le "$4"; }

# ---- FadeIn / FadeOut ----------------------------------------------------------------------------
req plain "$srcs" "[$(flac plain)]"
run "$work/plain.json"
req fades "$srcs" "[$(flac fades)]" '{"FadeIn":1,"FadeOut":0.5}'
run "$work/fades.json"
f="$b/output/fades.flac"; p="$b/output/plain.flac"
[ "$rc" = 0 ] && [ "$(jqo '.Targets[0].Samples')" = 264600 ] && [ "$(samples "$f")" = "$(samples "$p")" ] \
  && ok "fades: the length is unchanged (264600 samples)" || not_ok "fades: length" "rc=$rc $(cat "$work/err")"
# A linear fade over 1 s: the first 0.1 s is at 0..0.1 (RMS -24.8 dB below the tone), 0.5-0.6 s
# at 0.5..0.6 (-5.2 dB); the last 0.1 s of a 0.5 s fade-out at 0.2..0 (-18.8 dB).
base=$(rms "$p" 2 1); a=$(rms "$f" 0 0.1); m=$(rms "$f" 0.5 0.1); z=$(rms "$f" 5.9 0.1)
near "$a - $base" -24.77 0.3 && near "$m - $base" -5.18 0.2 && near "$z - $base" -18.75 0.3 \
  && ok "fades: linear ramps measure $(echo "$a - $base" | bc) / $(echo "$m - $base" | bc) / $(echo "$z - $base" | bc) dB (want -24.8 / -5.2 / -18.8)" \
  || not_ok "fades: levels" "base $base: $a $m $z"
pcm "$f" 1 4.5 "$work/mid-fades.raw"; pcm "$p" 1 4.5 "$work/mid-plain.raw"
cmp -s "$work/mid-fades.raw" "$work/mid-plain.raw" && ok "fades: between the fades, bit for bit the plain merge" \
  || not_ok "fades: middle untouched"
req sine "$srcs" "[$(flac sine)]" '{"FadeIn":1,"FadeCurve":"sine"}'
run "$work/sine.json"
m=$(rms "$b/output/sine.flac" 0.5 0.1)
near "$m - $base" -2.38 0.2 && ok "fades: FadeCurve sine: 0.5-0.6 s at $(echo "$m - $base" | bc) dB (want -2.4)" || not_ok "fades: sine" "$m vs $base"
# A chunked MP3 target fades out in its last chunk: the end is as quiet, the length the same.
ff -f lavfi -i "sine=f=440:d=70:sample_rate=44100" -ac 2 "$b/audio/long.wav"
for mode in "--no-chunking" "--chunks 2"; do
  req long '[{"URI":"oss://test-bucket/audio/long.wav"}]' '[{"URI":"oss://test-bucket/output/long.{autoext}","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":128000}}}]' '{"FadeIn":2,"FadeOut":2}'
  run $mode "$work/long.json"
  [ "$mode" = "--chunks 2" ] && seams=$(jqo '.Targets[0].Seams | length')
  mpg123 -q -w "$work/long-${mode// /}.wav" "$b/output/long.mp3" 2> /dev/null
done
l1=$(soxi -s "$work/long---no-chunking.wav"); l2=$(soxi -s "$work/long---chunks2.wav")
e1=$(rms "$work/long---no-chunking.wav" 69.9 0.1); e2=$(rms "$work/long---chunks2.wav" 69.9 0.1)
lvl=$(rms "$work/long---chunks2.wav" 30 1)
# The last 0.1 s of a 2 s linear fade is at 0.05..0 of the level: -30.8 dB.
[ "$l1" = "$l2" ] && [ "$seams" = 1 ] && near "$e1" "$e2" 1 && near "$e2 - $lvl" -30.8 1.5 \
  && ok "fades: MP3 in 2 chunks fades out as one encoder does (last 0.1 s at $(echo "$e2 - $lvl" | bc) dB, $l2 samples)" \
  || not_ok "fades: chunked" "lengths $l1/$l2, ends $e1/$e2, level $lvl"

# Forced into chunks shorter than FadeOut + 10 s, the target keeps fewer: the fade stays whole.
req short '[{"URI":"oss://test-bucket/audio/long.wav","Duration":30}]' '[{"URI":"oss://test-bucket/output/short.{autoext}","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]' '{"FadeOut":20}'
run --chunks 2 "$work/short.json"
mpg123 -q -w "$work/short.wav" "$b/output/short.mp3" 2> /dev/null
s1=$(rms "$work/short.wav" 10.5 0.5); s2=$(rms "$work/short.wav" 29 0.5)
[ "$(jqo '.Targets[0].Seams // [] | length')" = 0 ] && [ "$(echo "$s2 < $s1 - 10" | bc -l)" = 1 ] \
  && ok "fades: --chunks 2 with a 20 s FadeOut of a 30 s merge stays one encoder, fading ($s1 -> $s2 dB)" \
  || not_ok "fades: chunks vs fade" "seams $(jqo -c .Targets[0].Seams) $s1 $s2"

# ---- Loudness ------------------------------------------------------------------------------------
mixed='[{"URI":"oss://test-bucket/audio/tone.wav"},{"URI":"oss://test-bucket/audio/quiet.wav"}]'
two="[$(flac loud),{\"URI\":\"oss://test-bucket/output/loud.{autoext}\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\",\"Channel\":1}}}]"
for target in -23 -16; do
  req loud "$mixed" "$two" "{\"Loudness\":{\"Target\":$target}}"
  run "$work/loud.json"
  a=$(lufs "$b/output/loud.flac"); m=$(lufs "$b/output/loud.mp3")
  [ "$rc" = 0 ] && near "$a" "$target" 0.3 && near "$m" "$target" 0.3 \
    && ok "loudness: Target $target: the stereo FLAC measures $a LUFS, the mono MP3 $m (ffmpeg's ebur128), gains $(jqo '[.ImmergeReport.Loudness[].GainDb] | join(" / ")') dB" \
    || not_ok "loudness: Target $target" "rc=$rc flac $a mp3 $m $(cat "$work/err") $(printf '%s' "$out" | jq -c .ImmergeReport.Loudness)"
done
# Reaching -5 LUFS would lift the peak past MaxPeak -6 dBFS: the gain stops there.
req peak "$srcs" "[$(flac peak)]" '{"Loudness":{"Target":-5,"MaxPeak":-6}}'
run "$work/peak.json"
pk=$(sox "$b/output/peak.flac" -n stats 2>&1 | awk '/Pk lev dB/ { print $4 }')
[ "$(jqo '.ImmergeReport.Loudness[0].LimitedByMaxPeak')" = true ] && [ "$(echo "$pk <= -5.99" | bc -l)" = 1 ] \
  && ok "loudness: limited by MaxPeak: peak $pk dBFS, $(jqo '.ImmergeReport.Loudness[0].GainDb') dB" \
  || not_ok "loudness: MaxPeak" "peak $pk $(printf '%s' "$out" | jq -c .ImmergeReport.Loudness)"

# ---- Chapters and TagsFrom ----------------------------------------------------------------------
# seg2 gets a title tag (its chapter's name) and seg1/seg2 an artist each (TagsFrom's test).
ff -i "$b/audio/seg1.mp3" -c copy -metadata artist=First "$b/audio/first.mp3"
ff -i "$b/audio/seg2.mp3" -c copy -metadata title=Chorus -metadata artist=Second "$b/audio/second.mp3"
three='[{"URI":"oss://test-bucket/audio/first.mp3"},{"URI":"oss://test-bucket/audio/second.mp3"},{"URI":"oss://test-bucket/audio/seg3.mp3"}]'
targets=""
for c in "mp3 mp3" "mp4 aac" "mkv opus" "mov aac" "oga vorbis" "opus opus" "flac flac"; do
  set -- $c
  targets+="${targets:+,}{\"URI\":\"oss://test-bucket/output/chapters.{autoext}\",\"Container\":\"$1\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"$2\",\"SampleRate\":48000,\"Channel\":2}}}"
done
printf '{"ProjectName":"p","AlignmentIndex":1,"Sources":%s,"Targets":[%s],"ImmergeExtensions":{"Chapters":true,"TagsFrom":0}}' "$three" "$targets" > "$work/chapters.json"
run "$work/chapters.json"
j1=$(jqo '.ImmergeReport.Joins[0].TargetSamples[0]'); j2=$(jqo '.ImmergeReport.Joins[1].TargetSamples[0]')
for c in mp3 mp4 mkv mov oga opus flac; do
  want=$(awk -v a="$j1" -v b="$j2" 'BEGIN { printf "%.3f %.3f", a / 48000, b / 48000 }')
  set -- $want
  starts=$(ffprobe -v error -show_chapters -show_entries chapter=start_time -of csv=p=0 "$b/output/chapters.$c" | awk '{ printf "%.3f ", $1 }')
  titles=$(ffprobe -v error -show_chapters -of json "$b/output/chapters.$c" | jq -r '[.chapters[].tags.title] | join(" ")')
  [ "$rc" = 0 ] && [ "$starts" = "0.000 $1 $2 " ] && [ "$titles" = "first Chorus seg3" ] \
    && ok "chapters: $c has 3 chapters at the joins (0, $1, $2 s), named by title tag or file" \
    || not_ok "chapters: $c" "rc=$rc starts '$starts' titles '$titles' want 0.000 $1 $2 ($(cat "$work/err"))"
done
artist=$(ffprobe -v error -show_entries format_tags=artist -of csv=p=0 "$b/output/chapters.mp3")
printf '{"ProjectName":"p","AlignmentIndex":1,"Sources":%s,"Targets":[{"URI":"oss://test-bucket/output/tags.{autoext}","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]}' "$three" > "$work/tags.json"
run "$work/tags.json"
default=$(ffprobe -v error -show_entries format_tags=artist -of csv=p=0 "$b/output/tags.mp3")
[ "$artist" = First ] && [ "$default" = Second ] && ok "TagsFrom 0: the output's tags are Sources[0]'s (artist $artist), not the AlignmentIndex source's ($default)" \
  || not_ok "TagsFrom" "with: '$artist', without: '$default'"
req nochap "$srcs" '[{"URI":"oss://test-bucket/output/nochap.{autoext}","Container":"aac","Audio":{"TranscodeAudio":{"Codec":"aac"}}}]' '{"Chapters":true}'
run "$work/nochap.json"
[ "$rc" = 2 ] && [ "$(jqo .Code)" = InvalidArgument ] && [[ "$(jqo .Message)" == *"cannot carry"* ]] \
  && ok "chapters: refused for a container that cannot carry them (ADTS AAC)" || not_ok "chapters: refused" "rc=$rc $(jqo .Message)"

# ---- TrimSilence --------------------------------------------------------------------------------
# Two 1 s tones padded with silence, all under a hiss at -66 dBFS. Above -50 dBFS is exactly the
# tone but its first sample (sin 0 = 0): sox cuts that out of each source by sample count, and the
# FLAC merge must be those two pieces, bit for bit.
for s in "a 440 0.5 0.7 22050 30870" "b 660 1.2 0.3 52920 13230"; do
  set -- $s
  sox -n -r 44100 -c 2 -b 16 "$work/$1-tone.wav" synth 1 sine "$2" vol 0.5
  sox "$work/$1-tone.wav" "$work/$1-pad.wav" pad "$3" "$4"
  sox -n -r 44100 -c 2 -b 16 "$work/$1-hiss.wav" synth "$(echo "$3 + 1 + $4" | bc)" whitenoise vol 0.0005
  sox -m "$work/$1-pad.wav" "$work/$1-hiss.wav" "$b/audio/padded-$1.wav"
  sox "$b/audio/padded-$1.wav" "$work/$1-trim.wav" trim "$(($5 + 1))s" 44099s
done
sox "$work/a-trim.wav" "$work/b-trim.wav" "$work/trimmed.wav"
req trim '[{"URI":"oss://test-bucket/audio/padded-a.wav"},{"URI":"oss://test-bucket/audio/padded-b.wav"}]' "[$(flac trim)]" '{"TrimSilence":{"Threshold":-50}}'
run "$work/trim.json"
ff -i "$b/output/trim.flac" -f s16le "$work/trim-ours.raw"; ff -i "$work/trimmed.wav" -f s16le "$work/trim-sox.raw"
want=$(( $(soxi -s "$work/a-trim.wav") + $(soxi -s "$work/b-trim.wav") ))
[ "$rc" = 0 ] && [ "$(jqo '.Targets[0].Samples')" = "$want" ] && cmp -s "$work/trim-ours.raw" "$work/trim-sox.raw" \
  && ok "TrimSilence: each source's silent edges dropped: bit for bit the parts above -50 dBFS ($want samples)" \
  || not_ok "TrimSilence" "rc=$rc $(jqo '.Targets[0].Samples') vs $want $(cat "$work/err")"
got=$(jqo '[.ImmergeReport.Sources[] | "\(.SilenceTrimmed.Start)/\(.SilenceTrimmed.End)"] | join(" ")')
[ "$got" = "22051/30870 52921/13230" ] && ok "TrimSilence: the report says what each edge lost ($got)" || not_ok "TrimSilence: report" "$got"
req keep '[{"URI":"oss://test-bucket/audio/padded-a.wav"}]' "[$(flac keep)]" '{"TrimSilence":{"Threshold":-50,"Keep":0.25}}'
run "$work/keep.json"
[ "$(jqo '.Targets[0].Samples')" = $(( $(soxi -s "$work/a-trim.wav") + 2 * 11025 )) ] \
  && ok "TrimSilence: Keep 0.25 keeps a quarter second of silence at each edge" || not_ok "TrimSilence: Keep" "$(jqo '.Targets[0].Samples')"

# The chunk before the seam re-reads the sources itself: it must trim them the same way.
sox "$b/audio/long.wav" "$b/audio/long-padded.wav" pad 3 2
for mode in "--no-chunking" "--chunks 2"; do
  req ltrim '[{"URI":"oss://test-bucket/audio/long-padded.wav"}]' '[{"URI":"oss://test-bucket/output/ltrim.{autoext}","Container":"mp4","Audio":{"TranscodeAudio":{"Codec":"aac"}}}]' '{"TrimSilence":{}}'
  run $mode "$work/ltrim.json"
  eval "n_${mode//[- ]/}=\$(jqo '.Targets[0].Samples')"
  ff -i "$b/output/ltrim.mp4" -f s16le "$work/ltrim${mode// /}.raw"
done
lvl=$(sox -t s16 -r 44100 -c 2 "$work/ltrim--chunks2.raw" -n trim 0 0.05 stats 2>&1 | awk '/RMS lev dB/ { print $4 }')
[ "$n_nochunking" = "$n_chunks2" ] && [ "$n_chunks2" -lt $((71 * 44100)) ] && [ "$(echo "$lvl > -30" | bc -l)" = 1 ] \
  && ok "TrimSilence: in 2 chunks as with one encoder ($n_chunks2 samples, starting at once at $lvl dB)" \
  || not_ok "TrimSilence: chunked" "$n_nochunking / $n_chunks2, first 50 ms at $lvl dB"

# ---- CoverFrom -----------------------------------------------------------------------------------
# seg1 with a PNG attached as its cover: each output carries that picture, byte for byte.
ff -f lavfi -i testsrc=size=64x64:d=1 -frames:v 1 "$work/cover.png"
ff -i "$b/audio/seg1.mp3" -i "$work/cover.png" -map 0 -map 1 -c copy -disposition:v attached_pic "$b/audio/covered.mp3"
for c in "mp3 mp3" "mp4 aac" "flac flac"; do
  set -- $c
  printf '{"ProjectName":"p","AlignmentIndex":1,"Sources":[{"URI":"oss://test-bucket/audio/covered.mp3"},{"URI":"oss://test-bucket/audio/seg2.mp3"}],"Targets":[{"URI":"oss://test-bucket/output/cover.{autoext}","Container":"%s","Audio":{"TranscodeAudio":{"Codec":"%s"}}}],"ImmergeExtensions":{"CoverFrom":0}}' "$1" "$2" > "$work/cover.json"
  run "$work/cover.json"
  rm -f "$work/got.png"
  ff -i "$b/output/cover.$1" -map 0:v -c copy -f image2 "$work/got.png"
  disp=$(ffprobe -v error -select_streams v -show_entries stream_disposition=attached_pic -of csv=p=0 "$b/output/cover.$1")
  [ "$rc" = 0 ] && cmp -s "$work/got.png" "$work/cover.png" && [ "$disp" = 1 ] && [ "$(samples "$b/output/cover.$1")" -ge "$(jqo '.Targets[0].Samples')" ] \
    && ok "CoverFrom: $1 carries Sources[0]'s picture byte for byte, as cover art" || not_ok "CoverFrom: $1" "rc=$rc disp '$disp' $(cat "$work/err")"
done
printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/seg2.mp3"}],"Targets":[{"URI":"oss://test-bucket/output/nocover.{autoext}","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3"}}}],"ImmergeExtensions":{"CoverFrom":0}}' > "$work/nocover.json"
run "$work/nocover.json"
[ "$rc" = 1 ] && [ "$(jqo .Code)" = InvalidMedia ] && [ ! -e "$b/output/nocover.mp3" ] \
  && ok "CoverFrom: a source without a picture fails the task (InvalidMedia), nothing written" || not_ok "CoverFrom: none" "rc=$rc $(jqo .Code)"

# ---- Crossfade -----------------------------------------------------------------------------------
# 2 s at 440 Hz, then 2 s at 660 Hz, overlapping by 0.5 s: against the ffmpeg CLI's acrossfade
# with the same curves (tri is linear, qsin the quarter sine), the FLAC differs by rounding only.
sox -n -r 44100 -c 2 -b 16 "$b/audio/xa.wav" synth 2 sine 440 vol 0.5
sox -n -r 44100 -c 2 -b 16 "$b/audio/xb.wav" synth 2 sine 660 vol 0.5
xsrcs='[{"URI":"oss://test-bucket/audio/xa.wav"},{"URI":"oss://test-bucket/audio/xb.wav"}]'
for curve in "linear tri" "sine qsin"; do
  set -- $curve
  req xfade "$xsrcs" "[$(flac "xfade-$1"),{\"URI\":\"oss://test-bucket/output/xfade-$1.{autoext}\",\"Container\":\"mp3\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"mp3\"}}}]" "{\"Crossfade\":{\"Duration\":0.5,\"Curve\":\"$1\"}}"
  run --chunks 2 "$work/xfade.json"
  ff -i "$b/audio/xa.wav" -i "$b/audio/xb.wav" -filter_complex "acrossfade=d=0.5:c1=$2:c2=$2" -c:a pcm_s16le "$work/xref.wav"
  diff=$(sox -m -v 1 "$b/output/xfade-$1.flac" -v -1 "$work/xref.wav" -n stats 2>&1 | awk '/Pk lev dB/ { print $4 }')
  [ "$rc" = 0 ] && [ "$(jqo '[.Targets[].Samples] | join(" ")')" = "154350 154350" ] && [ "$(samples "$b/output/xfade-$1.flac")" = 154350 ] \
    && [ "$(echo "$diff < -80" | bc -l)" = 1 ] && [ "$(jqo '.ImmergeReport.Joins[0].TargetSamples[0]')" = 66150 ] \
    && [ "$(jqo '[.Targets[].Seams // [] | length] | add')" = 0 ] \
    && ok "Crossfade $1: 4 s - 0.5 s = 154350 samples in both targets, the join at 66150, within $diff dB of ffmpeg's acrossfade ($2), one encoder" \
    || not_ok "Crossfade $1" "rc=$rc $(jqo -c '[.Targets[].Samples, .ImmergeReport.Joins[0].TargetSamples, .Message]' 2>/dev/null) diff $diff"
done
sox -n -r 44100 -c 2 -b 16 "$b/audio/blip.wav" synth 0.3 sine 880 vol 0.5
req short "[{\"URI\":\"oss://test-bucket/audio/xa.wav\"},{\"URI\":\"oss://test-bucket/audio/blip.wav\"}]" "[$(flac blip)]" '{"Crossfade":{"Duration":0.5}}'
run "$work/short.json"
[ "$rc" = 2 ] && [ "$(jqo .Code)" = InvalidArgument ] && [[ "$(jqo .Message)" == *"shorter than the crossfade"* ]] && [ ! -e "$b/output/blip.flac" ] \
  && ok "Crossfade: a source shorter than it fails (InvalidArgument), nothing written" || not_ok "Crossfade: short source" "rc=$rc $(jqo .Message)"

# ---- MaxSources ----------------------------------------------------------------------------------
# 30 short tones of different lengths: refused as the service would, merged when MaxSources says
# so, exactly as long as they are (soxi), with no more than 40 file descriptors.
many="" want=0
for i in $(seq 0 29); do
  sox -n -r 44100 -c 1 -b 16 "$b/audio/many$i.wav" synth "0.$((i % 9 + 1))" sine $((200 + i * 20)) vol 0.3
  many+="${many:+,}{\"URI\":\"oss://test-bucket/audio/many$i.wav\"}"
  want=$((want + $(soxi -s "$b/audio/many$i.wav")))
done
req many "[$many]" "[$(flac many)]"
run "$work/many.json"
[ "$rc" = 2 ] && [ "$(jqo .Code)" = LimitExceededError ] && ok "MaxSources: 30 sources without it: LimitExceededError, as the service" \
  || not_ok "MaxSources: refused" "rc=$rc $(jqo .Code)"
req many "[$many]" "[$(flac many)]" '{"MaxSources":30}'
out=$(ulimit -n 40; "$bin" run --quiet --oss-root "$root" "$work/many.json" 2> "$work/err"); rc=$?
[ "$rc" = 0 ] && [ "$(jqo '.Targets[0].Samples')" = "$want" ] && [ "$(samples "$b/output/many.flac")" = "$want" ] \
  && [ "$(jqo '.ImmergeReport.Joins | length')" = 29 ] \
  && ok "MaxSources 30: merged, $want samples (the sum of the sources), 29 joins, within 40 file descriptors" \
  || not_ok "MaxSources: merged" "rc=$rc $(jqo '.Targets[0].Samples') vs $want $(cat "$work/err")"

# ---- what the request may say --------------------------------------------------------------------
for bad in '{"FadeIn":31}' '{"FadeOut":-1}' '{"FadeCurve":"cubic"}' '{"Fadein":1}' \
           '{"Loudness":{}}' '{"Loudness":{"Target":-23,"Peak":-1}}' '{"Loudness":{"Target":-23,"MaxPeak":3}}' '[]' \
           '{"TagsFrom":2}' '{"Chapters":1}' '{"TrimSilence":{"Threshold":-10}}' '{"TrimSilence":{"Keep":9}}' \
           '{"MaxSources":257}' '{"CoverFrom":-1}' '{"CoverFrom":5}' '{"Crossfade":{}}' \
           '{"Crossfade":{"Duration":11}}' '{"Crossfade":{"Duration":1,"Shape":"x"}}'; do
  req bad "$srcs" "[$(flac bad)]" "$bad"
  run "$work/bad.json"
  rc_bad=$rc; code=$(jqo .Code)
  [ "$rc_bad" = 2 ] && [ "$code" = InvalidArgument ] || { not_ok "extensions: $bad refused" "rc=$rc_bad $code $(jqo .Message)"; continue; }
  msgs+="$(jqo .Message | cut -c1-60); "
done
[ -n "${msgs:-}" ] && [ "$fail" = 0 ] && ok "extensions: 18 wrong settings refused with InvalidArgument, exit 2, nothing written" || true
[ ! -e "$b/output/bad.flac" ] || not_ok "extensions: a refused request wrote nothing"
# Without ImmergeExtensions nothing changes: the plain merge is the service's.
req none "$srcs" "[$(flac none)]"
run "$work/none.json"
cmp -s "$b/output/none.flac" "$b/output/plain.flac" && [ "$(printf '%s' "$out" | jq '.ImmergeReport | has("Loudness")')" = false ] \
  && ok "extensions: off unless asked (byte for byte the plain merge)" || not_ok "extensions: off unless asked"

echo "# extensions: $pass passed, $fail failed"
[ "$fail" = 0 ]
