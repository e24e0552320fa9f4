#!/usr/bin/env bash
# Installs what immerge needs to build and test, when it is missing. Idempotent; quiet when all is there.
set -euo pipefail
pkgs=(pkg-config libavformat-dev libavcodec-dev libswresample-dev libavutil-dev libcjson-dev libssl-dev libcurl4-openssl-dev
      libcmocka-dev ffmpeg mpg123 faad sox espeak-ng jq time valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
