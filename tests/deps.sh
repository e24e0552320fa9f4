#!/usr/bin/env bash
# Installs what immerge needs to build and test, when it is missing. Idempotent; quiet when all is there.
set -euo pipefail
pkgs=(pkg-config libavformat-dev libavcodec-dev libavfilter-dev libswresample-dev libavutil-dev libcjson-dev libssl-dev libcurl4-openssl-dev libopencore-amrnb-dev libsqlite3-dev libpq-dev postgresql
      libcmocka-dev ffmpeg mpg123 faad sox espeak-ng jq time valgrind openssl curl sqlite3
      clang libclang-rt-14-dev pgbouncer python3-prometheus-client)
# Node.js runs the storage tests' servers; a machine may have its own newer one.
command -v node > /dev/null && command -v npm > /dev/null || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# The test servers' signature oracles (ali-oss, aws4, @alicloud/mns) and s3rver, pinned
# by tests/oss/package-lock.json.
oss="$(cd "$(dirname "$0")" && pwd)/oss"
if [ ! -d "$oss/node_modules/ali-oss" ] || [ ! -d "$oss/node_modules/aws4" ] || [ ! -d "$oss/node_modules/s3rver" ] ||
   [ ! -d "$oss/node_modules/@alicloud/mns" ]; then
  echo "deps: npm ci in tests/oss" >&2
  (cd "$oss" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
