#!/usr/bin/env bash
# make bench: immerge against the ffmpeg CLI doing the same merge, on the same machine, in the
# same run, alternating, BENCH_REPS times (default 5); prints the median wall time, CPU time
# (user + system) and peak RSS of each, and the ratios immerge/ffmpeg.
#
# Workload (deterministic, generated once into build/bench/): three 10-minute sources, an MP3
# (44.1 kHz stereo), an AAC in M4A (48 kHz stereo) and a WAV (22.05 kHz mono), music-like (a
# chord with a slow tremolo plus a little noise). Cases: AAC 96k; MP3 128k; AAC and MP3 targets in
# one request (one ffmpeg command with two outputs); 11 one-minute sources to AAC; one 3-hour
# merge to MP3 (memory).
#   tests/bench/bench.sh BIN
#   BENCH_CASES="aac mp3" BENCH_REPS=5 tests/bench/bench.sh BIN    only those cases, 5 runs each
set -uo pipefail
bin=$(realpath "${1:?usage: bench.sh path/to/immerge}")
top=$(cd "$(dirname "$0")/../.." && pwd)
reps=${BENCH_REPS:-5}
dir="$top/build/bench"
root="$dir/root"; a="$root/bench/audio"; out="$root/bench/out"
mkdir -p "$a" "$out"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

music() { # music DURATION RATE CHANNELS SEED -> a WAV on stdout's path $5
  local d=$1 r=$2 c=$3 seed=$4 o=$5
  ff -f lavfi -i "sine=f=220:d=$d:sample_rate=$r" -f lavfi -i "sine=f=277:d=$d:sample_rate=$r" \
     -f lavfi -i "sine=f=330:d=$d:sample_rate=$r" -f lavfi -i "anoisesrc=d=$d:a=0.02:r=$r:seed=$seed" \
     -filter_complex "[0][1][2][3]amix=inputs=4:normalize=0,tremolo=f=0.3:d=0.5,volume=0.5,aformat=channel_layouts=$([ "$c" = 1 ] && echo mono || echo stereo)" "$o"
}

if [ ! -f "$dir/.ready" ]; then
  echo "bench: generating the workload in $dir (once)" >&2
  tmp=$(mktemp -d)
  music 600 44100 2 1 "$tmp/a.wav" && ff -i "$tmp/a.wav" -c:a libmp3lame -b:a 192k "$a/src1.mp3"
  music 600 48000 2 2 "$tmp/b.wav" && ff -i "$tmp/b.wav" -c:a aac -b:a 192k "$a/src2.m4a"
  music 600 22050 1 3 "$a/src3.wav"
  music 60 44100 2 4 "$tmp/s.wav" && ff -i "$tmp/s.wav" -c:a libmp3lame -b:a 128k "$a/short.mp3"
  music 3600 44100 2 5 "$tmp/h.wav" && ff -i "$tmp/h.wav" -c:a flac "$a/hour.flac"
  rm -rf "$tmp"
  touch "$dir/.ready"
fi

# The ffmpeg CLI's merge: each input resampled to the target format, then concat.
concat_graph() { # N RATE LAYOUT
  local n=$1 rate=$2 layout=$3 g="" i
  for i in $(seq 0 $((n - 1))); do g+="[$i:a]aresample=$rate,aformat=sample_fmts=fltp:channel_layouts=$layout[a$i];"; done
  for i in $(seq 0 $((n - 1))); do g+="[a$i]"; done
  echo "${g}concat=n=$n:v=0:a=1[out]"
}
src3=("$a/src1.mp3" "$a/src2.m4a" "$a/src3.wav")
inputs() { local f; for f in "$@"; do printf -- '-i\n%s\n' "$f"; done; }
sources_json() { local f s=""; for f in "$@"; do s+="${s:+,}{\"URI\":\"oss://bench/audio/${f##*/}\"}"; done; echo "$s"; }
target_json() { # NAME CONTAINER CODEC BITRATE
  echo "{\"URI\":\"oss://bench/out/$1.{autoext}\",\"Container\":\"$2\",\"Audio\":{\"TranscodeAudio\":{\"Codec\":\"$3\",\"Bitrate\":$4,\"SampleRate\":44100,\"Channel\":2}}}"
}

# measure LABEL CMD...: appends "wall cpu rss_kib" to $dir/LABEL.times
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$dir/time.tmp" "$@" > /dev/null 2> "$dir/$label.err" \
    || { echo "bench: $label failed:" >&2; cat "$dir/$label.err" >&2; exit 1; }
  awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$dir/time.tmp" >> "$dir/$label.times"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{ print $c }' "$dir/$1.times" | median; }

run_case() { # NAME REQUEST-JSON FFMPEG-ARGS...
  local name=$1 req=$2; shift 2
  [ -z "${BENCH_CASES:-}" ] || [[ " $BENCH_CASES " == *" $name "* ]] || return 0
  printf '%s' "$req" > "$dir/$name.json"
  rm -f "$dir/$name-immerge.times" "$dir/$name-ffmpeg.times"
  for _ in $(seq "$reps"); do
    measure "$name-immerge" "$bin" run --quiet --state "$dir/state" --oss-root "$root" "$dir/$name.json"
    measure "$name-ffmpeg" ffmpeg -nostdin -hide_banner -loglevel error -y "$@"
  done
  local iw ic ir fw fc fr
  iw=$(col "$name-immerge" 1); ic=$(col "$name-immerge" 2); ir=$(col "$name-immerge" 3)
  fw=$(col "$name-ffmpeg" 1); fc=$(col "$name-ffmpeg" 2); fr=$(col "$name-ffmpeg" 3)
  printf '%-14s %8.2f %8.2f %8.1f | %8.2f %8.2f %8.1f | %6.2f %6.2f %6.2f\n' "$name" \
    "$iw" "$ic" "$(awk -v k="$ir" 'BEGIN { print k / 1024 }')" "$fw" "$fc" "$(awk -v k="$fr" 'BEGIN { print k / 1024 }')" \
    "$(awk -v x="$iw" -v y="$fw" 'BEGIN { print x / y }')" "$(awk -v x="$ic" -v y="$fc" 'BEGIN { print x / y }')" \
    "$(awk -v x="$ir" -v y="$fr" 'BEGIN { print x / y }')"
}

echo "immerge vs the ffmpeg CLI, median of $reps alternating runs each ($(nproc) cores)"
printf '%-14s %8s %8s %8s | %8s %8s %8s | %6s %6s %6s\n' case "wall s" "cpu s" "RSS MiB" "wall s" "cpu s" "RSS MiB" wall cpu RSS
printf '%-14s %26s | %26s | %20s\n' "" "immerge" "ffmpeg CLI" "immerge / ffmpeg"
S=$(sources_json "${src3[@]}")
mapfile -t IN < <(inputs "${src3[@]}")
G=$(concat_graph 3 44100 stereo)
run_case aac "{\"ProjectName\":\"bench\",\"Sources\":[$S],\"Targets\":[$(target_json aac aac aac 96000)]}" \
  "${IN[@]}" -filter_complex "$G" -map "[out]" -c:a aac -b:a 96k "$out/ff-aac.aac"
run_case mp3 "{\"ProjectName\":\"bench\",\"Sources\":[$S],\"Targets\":[$(target_json mp3 mp3 mp3 128000)]}" \
  "${IN[@]}" -filter_complex "$G" -map "[out]" -c:a libmp3lame -b:a 128k "$out/ff-mp3.mp3"
run_case aac+mp3 "{\"ProjectName\":\"bench\",\"Sources\":[$S],\"Targets\":[$(target_json both-aac aac aac 96000),$(target_json both-mp3 mp3 mp3 128000)]}" \
  "${IN[@]}" -filter_complex "$G;[out]asplit=2[o1][o2]" -map "[o1]" -c:a aac -b:a 96k "$out/ff-both.aac" \
  -map "[o2]" -c:a libmp3lame -b:a 128k "$out/ff-both.mp3"
short=(); for _ in $(seq 11); do short+=("$a/short.mp3"); done
mapfile -t IN11 < <(inputs "${short[@]}")
run_case 11-short "{\"ProjectName\":\"bench\",\"Sources\":[$(sources_json "${short[@]}")],\"Targets\":[$(target_json short aac aac 96000)]}" \
  "${IN11[@]}" -filter_complex "$(concat_graph 11 44100 stereo)" -map "[out]" -c:a aac -b:a 96k "$out/ff-short.aac"
hours=("$a/hour.flac" "$a/hour.flac" "$a/hour.flac")
mapfile -t IN3H < <(inputs "${hours[@]}")
reps=1 run_case 3-hours "{\"ProjectName\":\"bench\",\"Sources\":[$(sources_json "${hours[@]}")],\"Targets\":[$(target_json hours mp3 mp3 64000)]}" \
  "${IN3H[@]}" -filter_complex "$(concat_graph 3 44100 stereo)" -map "[out]" -c:a libmp3lame -b:a 64k "$out/ff-hours.mp3"
