#!/usr/bin/env bash
# Generates the media fixtures into ROOT (the folder --oss-root points at), deterministically, with
# the ffmpeg CLI and espeak-ng. Nothing here is committed as binary.
#   gen-media.sh ROOT            the bundled examples' sources (ROOT/test-bucket/audio/...)
#   gen-media.sh ROOT --formats  also one short file per input format the service lists
#   gen-media.sh ROOT --features also a two-track source for testdata/features.json and a 40 s
#                                one for testdata/chunks.json
set -euo pipefail
root=${1:?usage: gen-media.sh ROOT [--formats]}
mode=${2:-}
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
audio="$root/test-bucket/audio"
mkdir -p "$audio" "$root/test-bucket/output"

speech() { # speech(text, out.wav): espeak-ng's 22.05 kHz mono voice
  espeak-ng -v en-us -s 160 -w "$2" "$1"
}

examples() {
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  speech "Welcome to the first lecture segment. Today we merge audio offline." "$tmp/a.wav"
  speech "This is the third segment, recorded in mono at a lower sample rate." "$tmp/c.wav"
  # seg1: speech upsampled to 44.1 kHz stereo; seg2 (the primary): a music-like chord, 44.1 kHz
  # stereo at 128 kbit/s; seg3: speech kept at 22.05 kHz mono.
  ff -i "$tmp/a.wav" -ar 44100 -ac 2 -c:a libmp3lame -b:a 128k "$audio/seg1.mp3"
  ff -f lavfi -i "sine=f=220:d=2.5:sample_rate=44100" -f lavfi -i "sine=f=277:d=2.5:sample_rate=44100" \
     -f lavfi -i "sine=f=330:d=2.5:sample_rate=44100" \
     -filter_complex "[0][1][2]amerge=inputs=3,pan=stereo|c0=0.3*c0+0.3*c1|c1=0.3*c1+0.3*c2" \
     -c:a libmp3lame -b:a 128k "$audio/seg2.mp3"
  ff -i "$tmp/c.wav" -ar 22050 -ac 1 -c:a libmp3lame -b:a 64k "$audio/seg3.mp3"
}

# One second of a stereo (or N-channel) test signal at RATE, encoded by the remaining arguments.
tone() { local rate=$1 ch=$2 out=$3; shift 3
  ff -f lavfi -i "sine=f=440:d=1:sample_rate=$rate" -f lavfi -i "anoisesrc=d=1:a=0.05:r=$rate:seed=7" \
     -filter_complex "[0][1]amix=inputs=2:normalize=0,aformat=channel_layouts=$(layout "$ch")" "$@" "$out"
}
layout() { case $1 in 1) echo mono;; 2) echo stereo;; 6) echo 5.1;; esac; }

formats() {
  local d="$root/test-bucket/formats"; mkdir -p "$d"
  tone 44100 2 "$d/in.aac"     -c:a aac -b:a 96k
  tone 48000 2 "$d/in.mp3"     -c:a libmp3lame -b:a 128k
  tone 8000  1 "$d/in_u8.wav"  -c:a pcm_u8
  tone 16000 2 "$d/in_s16.wav" -c:a pcm_s16le
  tone 96000 2 "$d/in_s24.wav" -c:a pcm_s24le
  tone 48000 1 "$d/in_s32.wav" -c:a pcm_s32le
  tone 44100 2 "$d/in_f32.wav" -c:a pcm_f32le
  tone 88200 2 "$d/in.flac"    -c:a flac
  tone 44100 2 "$d/in.wma"     -c:a wmav2 -b:a 128k
  tone 48000 6 "$d/in.ac3"     -c:a ac3 -b:a 384k
  tone 48000 2 "$d/in.opus"    -c:a libopus -b:a 96k
  # Containers with video: audio first into a temp, then muxed with a tiny video track.
  local t; t=$(mktemp -d)
  tone 44100 2 "$t/a.wav" -c:a pcm_s16le
  tone 48000 2 "$t/a48.wav" -c:a pcm_s16le
  tone 22050 2 "$t/a22.wav" -c:a pcm_s16le
  withvideo() { local in=$1 out=$2; shift 2; ff -f lavfi -i "testsrc=size=64x48:rate=5:d=1" -i "$in" \
                  -map 0:v -map 1:a "$@" "$out"; }
  withvideo "$t/a.wav"   "$d/in.mp4"  -c:v mpeg4 -c:a aac -b:a 96k
  withvideo "$t/a48.wav" "$d/in.ts"   -c:v mpeg2video -c:a aac -b:a 96k
  withvideo "$t/a48.wav" "$d/in.mkv"  -c:v mpeg4 -c:a libvorbis
  withvideo "$t/a.wav"   "$d/in.mov"  -c:v mpeg4 -c:a aac -b:a 96k
  withvideo "$t/a.wav"   "$d/in.avi"  -c:v mpeg4 -c:a libmp3lame -b:a 128k
  withvideo "$t/a22.wav" "$d/in.flv"  -c:v flv1 -c:a libmp3lame -b:a 64k
  withvideo "$t/a48.wav" "$d/in.webm" -c:v libvpx -c:a libopus -b:a 96k
  withvideo "$t/a.wav"   "$d/in.wmv"  -c:v wmv2 -c:a wmav2 -b:a 128k
  withvideo "$t/a48.wav" "$d/in.rm"   -c:v rv10 -c:a ac3 -b:a 192k
  withvideo "$t/a48.wav" "$d/in.vob"  -c:v mpeg2video -c:a mp2 -b:a 192k -f vob
  mkdir -p "$d/hls"
  ff -f lavfi -i "sine=f=440:d=3:sample_rate=48000" -ac 2 -c:a aac -b:a 96k -f hls -hls_time 1 \
     -hls_playlist_type vod -hls_segment_filename "$d/hls/part%d.ts" "$d/hls/list.m3u8"
  rm -rf "$t"
}

# Two audio tracks of different rates and lengths in one file, for Stream/Mixing; a tone in
# noise long enough to be encoded in two chunks.
features() {
  ff -f lavfi -i "sine=f=200:d=2:sample_rate=44100" -f lavfi -i "sine=f=5000:d=3:sample_rate=48000" \
     -map 0 -map 1 -ac:0 2 -c:a flac "$audio/two-tracks.mkv"
  ff -f lavfi -i "sine=f=330:d=40:sample_rate=22050" -f lavfi -i "anoisesrc=d=40:a=0.05:r=22050" \
     -filter_complex amix=inputs=2 -c:a flac "$audio/forty-seconds.flac"
}

examples
[ "$mode" = --formats ] && formats
[ "$mode" = --features ] && features
exit 0
