#!/usr/bin/env bash
# Runs the seed's two examples on generated sources: README's first command (`make example`).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
root="$top/build/example-root"
[ -f "$root/test-bucket/audio/seg3.mp3" ] || "$top/testdata/gen-media.sh" "$root"
for req in example-aac example-mp3; do
  echo "== immerge run --oss-root build/example-root testdata/$req.json" >&2
  "$top/build/immerge" run --oss-root "$root" "$top/testdata/$req.json"
done
echo "== outputs in $root/test-bucket/output:" >&2
ls -l "$root/test-bucket/output" >&2
