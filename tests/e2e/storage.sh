#!/usr/bin/env bash
# Storage end-to-end tests: immerge against real servers on 127.0.0.1 that this script starts and
# stops: tests/oss/mock-oss.js (OSS semantics; every signature checked by ali-oss's own signing
# code, or aws4's for AWS SigV4) and s3rver (an S3-compatible server; it checks no signature).
# Outputs are compared byte for byte with the same merge from a local folder, and decoded by
# ffmpeg/mpg123 for exact sample counts.
#   tests/e2e/storage.sh BIN            all tests
#   IMMERGE_E2E_QUICK=1 ... BIN         skip the slow ones (large objects, valgrind)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" "$@"

AK=LTAI5tImmergeTestKey SK=immerge-test-secret-5b7c0f TOKEN=sts-token-for-immerge-tests
srv="$work/oss"          # the mock's disk: srv/test-bucket/...
b="$srv/test-bucket"
ref="$work/ref"          # the same sources in a local folder, for reference outputs
nodemods="$top/tests/oss/node_modules"
[ -d "$nodemods/ali-oss" ] && [ -d "$nodemods/aws4" ] && [ -d "$nodemods/s3rver" ] || { echo "Bail out! run tests/deps.sh (npm packages)"; exit 1; }


"$top/testdata/gen-media.sh" "$srv" > /dev/null || { echo "Bail out! fixtures"; exit 1; }
"$top/testdata/gen-media.sh" "$ref" > /dev/null
rm -rf "$ref/test-bucket/output"; mkdir -p "$ref/test-bucket/output"
start_server "$work/mock.log" node "$top/tests/oss/mock-oss.js" --dir "$srv" --ak "$AK" --sk "$SK" \
  --region cn-hangzhou --token "$TOKEN"
mock="http://127.0.0.1:$port"
export OSS_ACCESS_KEY_ID=$AK OSS_ACCESS_KEY_SECRET=$SK OSS_SESSION_TOKEN=$TOKEN OSS_REGION=cn-hangzhou
unset OSS_ENDPOINT IMMERGE_OSS_ROOT ALIBABA_CLOUD_ACCESS_KEY_ID ALIBABA_CLOUD_ACCESS_KEY_SECRET
export HOME="$work/home"; mkdir -p "$HOME"   # no ~/.ossutilconfig unless a test writes one

stats()  { curl -s "$mock/__stats" | jq -r "$1"; }
faults() { curl -s -X POST "$mock/__faults" -d "$1"; }
reset()  { curl -s -X POST "$mock/__reset"; rm -rf "$b/output"; mkdir -p "$b/output"; }
# remote NAME REQUEST-FILE [immerge args...]: runs against the mock; sets rc, out, errout
remote() {
  local name=$1 req=$2; shift 2
  out=$("$bin" run --quiet --oss-endpoint "$mock" "$@" "$req" 2> "$work/$name.err"); rc=$?
  errout=$(cat "$work/$name.err")
}
# local_ref REQUEST-FILE: the same merge from the local folder, for byte comparison
local_ref() { "$bin" run --quiet --oss-root "$ref" "$1" > /dev/null; }
no_object() { # nothing at the target, no temporary object, no open multipart upload
  local left; left=$(find "$b/output" -type f | head -3)
  [ -z "$left" ] && [ "$(stats .openUploads)" = 0 ] && ok "$1: no object and no open upload left" \
    || not_ok "$1: nothing left behind" "files: $left, open uploads: $(stats .openUploads)"
}
same_as_ref() { # OUTPUT-KEY: the remote output is byte-identical to the local merge's
  cmp -s "$b/output/$1" "$ref/test-bucket/output/$1" && ok "$2: identical to the local-folder merge" \
    || not_ok "$2: identical to the local-folder merge" "$(cmp "$b/output/$1" "$ref/test-bucket/output/$1" 2>&1)"
}
sizes_read_once() { # every source fetched exactly once: bytes served == object sizes
  local name=$1 bad="" line="" key got want; shift
  for key in "$@"; do
    got=$(stats ".bytesServed[\"test-bucket/audio/$key\"] // 0"); want=$(stat -c %s "$b/audio/$key")
    line+="$key $got/$want "
    [ "$got" = "$want" ] || bad=1
  done
  [ -z "$bad" ] && ok "$name: bytes read = object sizes (${line% })" || not_ok "$name: each source read once" "$line"
}
src_hash=$(sha256sum "$b"/audio/seg*.mp3)
n1=$(samples "$b/audio/seg1.mp3"); n2=$(samples "$b/audio/seg2.mp3"); n3=$(samples "$b/audio/seg3.mp3")
ex_aac="$top/testdata/example-aac.json" ex_mp3="$top/testdata/example-mp3.json"
local_ref "$ex_aac"; local_ref "$ex_mp3"

test_oss_v4_example() {
  reset
  remote v4 "$ex_aac"
  [ "$rc" = 0 ] && [ "$(jqo .Status)" = Succeeded ] && ok "OSS V4: the AAC example succeeds" \
    || not_ok "OSS V4 example" "rc=$rc $(jqo .Code) $(jqo .Message)"
  local f="$b/output/concat.aac" want=$((n1 + n2 + $(rescale "$n3" 44100 22050)))
  [ "$(jqo '.Targets[0].Samples')" = "$want" ] && [ "$(probe "$f" codec_name,sample_rate,channels)" = "aac,44100,2" ] \
    && ok "OSS V4: ffprobe sees AAC 44100 Hz stereo, $want samples" \
    || not_ok "OSS V4 output" "$(probe "$f" codec_name,sample_rate,channels) $(jqo '.Targets[0].Samples')/$want"
  same_as_ref concat.aac "OSS V4"
  [ "$(stats .authFailed)" = 0 ] && [ "$(stats .authChecked)" -ge 7 ] && [ "$(stats .lastAuth.scheme)" = OSS4-HMAC-SHA256 ] \
    && ok "OSS V4: ali-oss accepted all $(stats .authChecked) signatures" \
    || not_ok "OSS V4 signatures" "$(curl -s "$mock/__stats")"
  sizes_read_once "OSS V4" seg1.mp3 seg2.mp3 seg3.mp3
  [ "$(stats '.requests.PutObject')" = 1 ] && ok "OSS V4: one PutObject for a small output" \
    || not_ok "OSS V4 PutObject" "$(stats .requests)"
}

test_oss_v1_example() {
  reset
  remote v1 "$ex_mp3" --oss-signature v1
  local f="$b/output/concat.mp3" got
  got=$(mpg123 -q -s "$f" 2>/dev/null | wc -c)
  [ "$rc" = 0 ] && [ $((got / 4)) = $((n1 + n2)) ] && ok "OSS V1: the MP3 example: mpg123 decodes $((n1 + n2)) samples" \
    || not_ok "OSS V1 example" "rc=$rc $(jqo .Message) mpg123 $((got / 4))"
  same_as_ref concat.mp3 "OSS V1"
  [ "$(stats .authFailed)" = 0 ] && [ "$(stats .lastAuth.scheme)" = OSS ] \
    && ok "OSS V1: ali-oss accepted all $(stats .authChecked) signatures" || not_ok "OSS V1 signatures" "$(curl -s "$mock/__stats")"
  sizes_read_once "OSS V1" seg1.mp3 seg2.mp3
}

test_multipart() {
  reset
  remote mp "$ex_aac" --oss-part-size 100K
  [ "$rc" = 0 ] && [ "$(stats .requests.UploadPart)" = 2 ] && [ "$(stats .requests.CompleteMultipartUpload)" = 1 ] \
    && ok "multipart: a 127 KiB output in 100 KiB parts (2 parts, completed)" || not_ok "multipart" "rc=$rc $(stats .requests) $(jqo .Message)"
  same_as_ref concat.aac "multipart"
}

test_s3v4_signatures() {
  reset
  remote s3v4 "$ex_aac" --oss-signature s3v4 --oss-part-size 100K
  [ "$rc" = 0 ] && [ "$(stats .authFailed)" = 0 ] && [ "$(stats .lastAuth.scheme)" = AWS4-HMAC-SHA256 ] \
    && [ "$(stats .requests.CompleteMultipartUpload)" = 1 ] \
    && ok "AWS SigV4: example with a multipart upload, all $(stats .authChecked) signatures accepted by aws4" \
    || not_ok "AWS SigV4 against the mock" "rc=$rc $(jqo .Message) $(curl -s "$mock/__stats")"
  same_as_ref concat.aac "AWS SigV4"
  out=$(OSS_ACCESS_KEY_SECRET=not-the-secret "$bin" run --quiet --oss-endpoint "$mock" --oss-signature s3v4 "$ex_aac" 2>/dev/null); rc=$?
  expect_error "AWS SigV4 with a wrong secret: aws4 disagrees, Forbidden" 1 Forbidden SignatureDoesNotMatch
}

test_virtual_hosted() {
  reset
  out=$("$bin" run --quiet --oss-endpoint "http://localhost:${mock##*:}" --oss-addressing virtual "$ex_aac" 2>&1); rc=$?
  [ "$rc" = 0 ] && [ "$(stats .authFailed)" = 0 ] && ok "virtual-hosted addressing (bucket.localhost) works and signs /bucket/key" \
    || not_ok "virtual-hosted" "rc=$rc $(jqo .Message)"
}

test_odd_keys() {
  # Keys that URL encoding and signing treat differently: space, '+', '%', '=', '&', UTF-8.
  cp "$b/audio/seg1.mp3" "$b/audio/seg 1+%41=&é.mp3"
  cat > "$work/odd.json" <<'EOF'
{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/seg 1+%41=&é.mp3"}],
 "Targets":[{"URI":"oss://test-bucket/output/out put+é.{autoext}","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":64000}}}]}
EOF
  local sig
  for sig in v4 v1 s3v4; do
    reset
    remote "odd-$sig" "$work/odd.json" --oss-signature "$sig"
    [ "$rc" = 0 ] && [ -f "$b/output/out put+é.mp3" ] && [ "$(stats .authFailed)" = 0 ] \
      && ok "$sig: keys with space, +, %, =, & and UTF-8 are encoded and signed right" \
      || not_ok "odd keys $sig" "rc=$rc $(jqo .Message)"
  done
  rm -f "$b/audio/seg 1+%41=&é.mp3"
}

test_faults() {
  reset; faults '[{"op":"GetObject","kind":"status","status":500,"count":2},{"op":"PutObject","kind":"status","status":503,"count":1}]'
  remote f500 "$ex_aac"
  [ "$rc" = 0 ] && [ "$(stats .requests.GetObject)" = 5 ] && [ "$(stats .requests.PutObject)" = 2 ] \
    && ok "faults: 500 twice on GET and 503 on PUT are retried; the task succeeds" || not_ok "500 then 200" "rc=$rc $(stats .requests) $(jqo .Message)"
  same_as_ref concat.aac "after 5xx retries"

  reset; faults '[{"op":"GetObject","kind":"reset","after":1000,"count":2}]'
  remote freset "$ex_aac"
  [ "$rc" = 0 ] && [ "$(stats .requests.GetObject)" = 5 ] && ok "faults: connection closed mid-download twice; retried, succeeds" \
    || not_ok "reset mid-download" "rc=$rc $(stats .requests) $(jqo .Message)"
  same_as_ref concat.aac "after broken downloads"

  reset; faults '[{"op":"GetObject","kind":"slow","delayMs":12000,"count":1}]'
  local t0=$SECONDS
  remote fslow "$ex_aac" --oss-timeout 1
  [ "$rc" = 0 ] && [ "$(stats .requests.GetObject)" = 4 ] && [ $((SECONDS - t0)) -lt 10 ] \
    && ok "faults: a 12 s stall is abandoned after --oss-timeout 1 and retried (done in under 10 s)" || not_ok "slow answer" "rc=$rc $(stats .requests) $((SECONDS - t0)) s"
  same_as_ref concat.aac "after a stalled answer"

  reset; faults '[{"op":"GetObject","kind":"reset","after":100,"count":-1}]'
  remote fdead "$ex_aac" --oss-retries 2
  expect_error "faults: a source that always breaks fails the task after 3 attempts" 1 StorageError "oss://test-bucket/audio/seg1.mp3"
  [[ "$(jqo .Message)" == *"3 attempts"* ]] && ok "faults: the message counts the attempts" || not_ok "attempt count" "$(jqo .Message)"
  no_object "broken source"
  local rec; rec=$("$bin" get-task "$(jqo .TaskId)" | jq -r '[.Status, .Code, (.Message | test("3 attempts"))] | join("/")')
  [ "$rec" = "Failed/StorageError/true" ] && ok "faults: the task record says what happened ($rec)" || not_ok "record of a fault" "$rec"

  # The disk fills while the output is written to its temporary file (a file-size limit stands in
  # for a full disk): nothing is uploaded, nothing is left in --temp-dir, the record says why.
  reset; mkdir -p "$work/tmp"
  out=$( ( ulimit -f 64; exec "$bin" run --quiet --oss-endpoint "$mock" --temp-dir "$work/tmp" "$ex_aac" ) 2> /dev/null ); rc=$?
  expect_error "faults: the disk fills while writing the temporary output" 1 StorageError "File too large"
  [ "$(stats '.requests.PutObject // 0')" = 0 ] && [ "$(stats '.requests.InitiateMultipartUpload // 0')" = 0 ] \
    && [ -z "$(ls -A "$work/tmp")" ] && ok "faults: after a full disk nothing was uploaded and no temporary file is left" \
    || not_ok "full disk" "$(stats .requests) $(ls -A "$work/tmp")"
  no_object "full disk"

  reset; faults '[{"op":"UploadPart","kind":"status","status":500,"count":-1}]'
  remote fpart "$ex_aac" --oss-part-size 100K --oss-retries 1
  expect_error "faults: a part that always fails fails the task" 1 StorageError "UploadPart"
  [ "$(stats .requests.AbortMultipartUpload)" = 1 ] && ok "faults: the multipart upload is aborted" || not_ok "abort" "$(stats .requests)"
  no_object "failed upload"

  reset; faults '[{"op":"CompleteMultipartUpload","kind":"status","status":400,"code":"InvalidPart","count":1}]'
  remote fcomplete "$ex_aac" --oss-part-size 100K
  expect_error "faults: a refused completion fails the task" 1 StorageError "InvalidPart"
  no_object "refused completion"

  reset
  local t1=$SECONDS
  out=$("$bin" run --quiet --oss-endpoint http://127.0.0.1:1 --oss-retries 2 "$ex_aac" 2>/dev/null); rc=$?
  expect_error "unreachable endpoint: StorageError naming the URI" 1 StorageError "oss://test-bucket/audio/seg1.mp3"
  [ $((SECONDS - t1)) -lt 10 ] && ok "unreachable endpoint: gives up within the retry budget" || not_ok "retry budget" "$((SECONDS - t1)) s"
}

test_refusals() {
  reset
  out=$(OSS_ACCESS_KEY_SECRET=wrong-secret-e4d2 "$bin" run --verbose --oss-endpoint "$mock" "$ex_aac" 2> "$work/wrong.err"); rc=$?
  expect_error "wrong secret: Forbidden, with the store's reason" 1 Forbidden SignatureDoesNotMatch
  ! grep -q -e wrong-secret-e4d2 -e "$SK" -e "$TOKEN" <(printf '%s' "$out") "$work/wrong.err" \
    && ok "secrets and the token appear nowhere in stdout or stderr (--verbose)" || not_ok "secret leaked"
  out=$(OSS_SESSION_TOKEN= "$bin" run --quiet --oss-endpoint "$mock" "$ex_aac" 2>/dev/null); rc=$?
  expect_error "missing STS token: Forbidden" 1 Forbidden InvalidSecurityToken
  sed 's#audio/seg2.mp3#audio/nothere.mp3#' "$ex_aac" > "$work/missing.json"
  remote missing "$work/missing.json"
  expect_error "missing source: ResourceNotFound naming it" 1 ResourceNotFound "oss://test-bucket/audio/nothere.mp3"
  sed 's#oss://test-bucket/output#oss://no-such-bucket/output#' "$ex_aac" > "$work/nobucket.json"
  remote nobucket "$work/nobucket.json"
  expect_error "target bucket missing: ResourceNotFound (NoSuchBucket)" 1 ResourceNotFound NoSuchBucket
  no_object "missing target bucket"
  [ "$src_hash" = "$(sha256sum "$b"/audio/seg*.mp3)" ] && ok "sources unchanged after every run above" \
    || not_ok "sources changed"
}

test_tls_refused() {
  # An HTTPS endpoint whose certificate nobody vouches for: refused at once, not retried.
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/tls.key" -out "$work/tls.crt" -days 1 \
    -subj /CN=127.0.0.1 2>/dev/null
  start_server "$work/tls.log" node -e '
    const s = require("https").createServer({key: require("fs").readFileSync(process.argv[1]),
      cert: require("fs").readFileSync(process.argv[2])}, (q, r) => r.end());
    s.listen(0, "127.0.0.1", () => console.log("listening on " + s.address().port));' "$work/tls.key" "$work/tls.crt"
  out=$("$bin" run --quiet --oss-endpoint "https://127.0.0.1:$port" "$ex_aac" 2>/dev/null); rc=$?
  expect_error "TLS: an untrusted certificate fails the task at once, saying so" 1 StorageError "certificate"
  [[ "$(jqo .Message)" != *attempts* ]] && ok "TLS: a certificate problem is not retried" || not_ok "TLS retried" "$(jqo .Message)"
}

test_config_sources() {
  reset
  out=$(env -u OSS_ACCESS_KEY_ID -u OSS_ACCESS_KEY_SECRET -u OSS_SESSION_TOKEN \
    ALIBABA_CLOUD_ACCESS_KEY_ID=$AK ALIBABA_CLOUD_ACCESS_KEY_SECRET=$SK ALIBABA_CLOUD_SECURITY_TOKEN=$TOKEN \
    OSS_ENDPOINT="$mock" "$bin" run --quiet "$ex_aac" 2>/dev/null); rc=$?
  [ "$rc" = 0 ] && ok "config: OSS_ENDPOINT and ALIBABA_CLOUD_* credentials" || not_ok "ALIBABA_CLOUD_*" "$(jqo .Message)"
  printf '[Credentials]\nlanguage=EN\nendpoint=%s\naccessKeyID=%s\naccessKeySecret=%s\nstsToken=%s\n' \
    "$mock" "$AK" "$SK" "$TOKEN" > "$HOME/.ossutilconfig"
  out=$(env -u OSS_ACCESS_KEY_ID -u OSS_ACCESS_KEY_SECRET -u OSS_SESSION_TOKEN "$bin" run --quiet "$ex_aac" 2>/dev/null); rc=$?
  [ "$rc" = 0 ] && ok "config: ~/.ossutilconfig (ossutil 1.x [Credentials]) gives endpoint and keys" || not_ok "ossutil config" "$(jqo .Message)"
  printf '[default]\naccessKeyId = %s\naccessKeySecret = %s\nsecurityToken = %s\nregion = cn-hangzhou\nendpoint = %s\n' \
    "$AK" "$SK" "$TOKEN" "$mock" > "$work/ossutil2.conf"
  out=$(env -u OSS_ACCESS_KEY_ID -u OSS_ACCESS_KEY_SECRET -u OSS_SESSION_TOKEN -u OSS_REGION "$bin" run --quiet \
    --oss-config "$work/ossutil2.conf" "$ex_aac" 2>/dev/null); rc=$?
  [ "$rc" = 0 ] && ok "config: --oss-config with an ossutil 2.x [default] profile" || not_ok "ossutil 2 config" "$(jqo .Message)"
  rm -f "$HOME/.ossutilconfig"
  out=$(IMMERGE_OSS_ROOT="$ref" OSS_ENDPOINT="$mock" "$bin" run --quiet "$ex_aac" 2>/dev/null); rc=$?
  expect_error "config: a root and an endpoint from the environment is refused" 2 InvalidArgument "IMMERGE_OSS_ROOT"
  out=$("$bin" run --quiet --oss-root "$ref" --oss-endpoint "$mock" "$ex_aac" 2>/dev/null); rc=$?
  expect_error "config: --oss-root with --oss-endpoint is refused" 2 InvalidArgument "not both"
  out=$("$bin" run --quiet --oss-endpoint "$mock" --oss-signature v3 "$ex_aac" 2>/dev/null); rc=$?
  expect_error "config: --oss-signature v3 is refused" 2 InvalidArgument "--oss-signature"
  out=$("$bin" run --quiet --oss-endpoint "$mock" --oss-part-size 10K "$ex_aac" 2>/dev/null); rc=$?
  expect_error "config: a part size under 100 KiB is refused" 2 InvalidArgument "--oss-part-size"
  out=$(env -u OSS_REGION "$bin" run --quiet --oss-endpoint "$mock" "$ex_aac" 2>/dev/null); rc=$?
  expect_error "config: V4 without a region says how to give one" 2 InvalidArgument "--oss-region"
}

test_seek_and_playlist() {
  reset
  # An M4A with its index (moov) at the end: the demuxer must seek to the end and back.
  ff -f lavfi -i "sine=frequency=330:sample_rate=44100:duration=3" -c:a aac -b:a 64k "$b/audio/tail.m4a"
  mkdir -p "$b/audio/hls"
  ff -f lavfi -i "sine=frequency=550:sample_rate=48000:duration=2" -f hls -hls_time 0.5 -hls_list_size 0 \
     -hls_segment_filename "$b/audio/hls/s%03d.ts" -c:a aac -b:a 64k "$b/audio/hls/list.m3u8"
  cat > "$work/seek.json" <<'EOF'
{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/tail.m4a"},{"URI":"oss://test-bucket/audio/hls/list.m3u8"}],
 "Targets":[{"URI":"oss://test-bucket/output/seek.flac","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac","SampleRate":44100}}}]}
EOF
  mkdir -p "$ref/test-bucket/audio/hls"; cp "$b/audio/tail.m4a" "$ref/test-bucket/audio/"; cp "$b/audio/hls/"* "$ref/test-bucket/audio/hls/"
  local_ref "$work/seek.json"
  remote seek "$work/seek.json"
  local m4a hls; m4a=$(samples "$b/audio/tail.m4a"); hls=$(samples "$b/audio/hls/list.m3u8")
  local want=$((m4a + $(rescale "$hls" 44100 48000)))
  [ "$rc" = 0 ] && [ "$(samples "$b/output/seek.flac")" = "$want" ] \
    && ok "M4A with its index at the end + an HLS playlist of 4 segments: $want samples" \
    || not_ok "seek + playlist" "rc=$rc $(jqo .Message) $(samples "$b/output/seek.flac" 2>/dev/null)/$want"
  same_as_ref seek.flac "seek + playlist"
  local served size; served=$(stats '.bytesServed["test-bucket/audio/tail.m4a"]'); size=$(stat -c %s "$b/audio/tail.m4a")
  [ "$served" = "$size" ] && ok "M4A read once despite seeking: $served of $size bytes" || not_ok "m4a read once" "$served/$size"
}

test_segmented() {
  reset
  mkdir -p "$b/audio/broken"
  ff -f lavfi -i "sine=f=330:d=4:sample_rate=44100" -f hls -hls_time 1 -hls_list_size 0 \
     -hls_segment_filename "$b/audio/broken/p%d.ts" "$b/audio/broken/list.m3u8"
  printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/seg1.mp3"},{"URI":"oss://test-bucket/audio/broken/list.m3u8"}],"Targets":[{"URI":"oss://test-bucket/output/hls/list.m3u8","Container":"ts","Segment":{"Duration":1},"Audio":{"TranscodeAudio":{"Codec":"mp3"}}}]}' > "$work/hls.json"
  remote hls "$work/hls.json"
  local n; n=$(find "$b/output/hls" -name 'list-*.ts' | wc -l)
  [ "$rc" = 0 ] && [ -f "$b/output/hls/list.m3u8" ] && [ "$n" -ge 8 ] && [ "$(stats .requests.PutObject)" = $((n + 1)) ] \
    && ok "Segment over OSS: the playlist and $n segments, one PutObject each" || not_ok "segmented over OSS" "rc=$rc $(jqo .Message) $n $(stats .requests)"
  reset
  rm -f "$b/audio/broken/p2.ts"
  remote hls-bad "$work/hls.json"
  local deleted; deleted=$(stats '.requests.DeleteObject // 0')
  expect_error "Segment over OSS: a source failing mid-task fails it" 1 ResourceNotFound "p2.ts"
  [ "$deleted" -ge 3 ] && [ "$deleted" = "$(stats '.requests.PutObject')" ] && [ -z "$(find "$b/output" -type f)" ] \
    && ok "Segment over OSS: the $deleted segments already uploaded are deleted again, no playlist" \
    || not_ok "segments cleaned over OSS" "deleted=$deleted $(stats .requests) $(find "$b/output" -type f | head -3)"
  rm -rf "$b/audio/broken"
}

test_large_multipart() { # not in the quick run: 10 MB through the sanitizer build is slow
  reset
  # 60 s of noise, independent in each channel so FLAC cannot share them: an output of ~10.8 MB,
  # over the default 8 MiB part size.
  ff -f lavfi -i "anoisesrc=d=60:c=white:a=0.9:r=44100:seed=7" -f lavfi -i "anoisesrc=d=60:c=white:a=0.9:r=44100:seed=8" \
     -filter_complex amerge=inputs=2 -c:a pcm_s16le "$b/audio/noise.wav"
  cat > "$work/big.json" <<'EOF'
{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/noise.wav"}],
 "Targets":[{"URI":"oss://test-bucket/output/big.flac","Container":"flac","Audio":{"TranscodeAudio":{"Codec":"flac"}}}]}
EOF
  remote big "$work/big.json"
  local parts; parts=$(stats .requests.UploadPart)
  local a b2; a=$(ffmpeg -v error -i "$b/audio/noise.wav" -f s16le - | md5sum); b2=$(ffmpeg -v error -i "$b/output/big.flac" -f s16le - | md5sum)
  [ "$rc" = 0 ] && [ "$parts" = 2 ] && [ "$a" = "$b2" ] \
    && ok "large output: $(stat -c %s "$b/output/big.flac") bytes in 2 parts of 8 MiB, decodes bit-exact to the source" \
    || not_ok "large multipart" "rc=$rc parts=$parts $(jqo .Message)"
  sizes_read_once "large source" noise.wav
  rm -f "$b/audio/noise.wav"
}

test_memory_streams() {
  reset
  # A 200 MB source is read through a few MiB of windows: peak RSS stays near a small run's. With
  # one encoder it is read exactly once; encoded in two chunks (the default for a long target),
  # the first chunk's part is read a second time, by the thread that encodes it (engine/task/chunk.c).
  ff -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=1200" -ac 2 -c:a pcm_s24le "$b/audio/long.wav"
  ff -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10" -ac 2 -c:a pcm_s24le "$b/audio/short.wav"
  local kb=() s opt
  for s in short long long; do
    opt=--no-chunking; [ ${#kb[@]} = 2 ] && opt=--chunks=2
    printf '{"ProjectName":"p","Sources":[{"URI":"oss://test-bucket/audio/%s.wav"}],"Targets":[{"URI":"oss://test-bucket/output/%s.mp3","Container":"mp3","Audio":{"TranscodeAudio":{"Codec":"mp3","Bitrate":32000,"SampleRate":8000,"Channel":1}}}]}' "$s" "$s" > "$work/$s.json"
    [ ${#kb[@]} = 2 ] && { sizes_read_once "large WAV, one encoder" long.wav; curl -s -X POST "$mock/__reset" > /dev/null; }
    kb+=("$( { /usr/bin/time -f %M "$bin" run --quiet $opt --oss-endpoint "$mock" "$work/$s.json" > /dev/null; } 2>&1 | tail -1)")
  done
  local size; size=$(stat -c %s "$b/audio/long.wav")
  [ $((kb[1] - kb[0])) -lt 8192 ] && ok "memory: peak RSS ${kb[0]} KiB for a 10 s source, ${kb[1]} KiB for a $((size >> 20)) MiB one" \
    || not_ok "memory bounded over HTTP" "${kb[0]} vs ${kb[1]} KiB"
  local got; got=$(stats '.bytesServed["test-bucket/audio/long.wav"] // 0')
  [ $((kb[2] - kb[1])) -lt 12288 ] && [ "$got" -gt "$size" ] && [ "$got" -lt $((size * 16 / 10)) ] \
    && ok "memory: ${kb[2]} KiB encoded in 2 chunks (a second reader and encoder); $got bytes read of $size" \
    || not_ok "chunked over HTTP" "${kb[2]} vs ${kb[1]} KiB; read $got of $size"
  rm -f "$b/audio/long.wav" "$b/audio/short.wav"
}

test_valgrind() {
  reset
  "$top/tests/valgrind/run.sh" --log-file="$work/vg.log" "$bin" run --quiet --oss-endpoint "$mock" --oss-part-size 100K "$ex_aac" > /dev/null; rc=$?
  [ "$rc" = 0 ] && ok "valgrind: clean over a remote merge with a multipart upload" \
    || { not_ok "valgrind remote" "rc=$rc"; grep -v '^--[0-9]*-- ' "$work/vg.log" | head -30; }
}

test_s3rver() {
  local dir="$work/s3"; mkdir -p "$dir"
  start_server "$work/s3rver.log" "$nodemods/.bin/s3rver" -d "$dir" -a 127.0.0.1 -p 0 -s --configure-bucket test-bucket
  local s3="http://127.0.0.1:$port" k
  for k in seg1 seg2 seg3; do curl -s -f -o /dev/null -T "$b/audio/$k.mp3" "$s3/test-bucket/audio/$k.mp3"; done
  for parts in "" 100K; do
    out=$(OSS_ACCESS_KEY_ID=S3RVER OSS_ACCESS_KEY_SECRET=S3RVER "$bin" run --quiet --oss-endpoint "$s3" \
      --oss-signature s3v4 ${parts:+--oss-part-size $parts} "$ex_aac" 2>/dev/null); rc=$?
    curl -s -f -o "$work/s3-out.aac" "$s3/test-bucket/output/concat.aac"
    cmp -s "$work/s3-out.aac" "$ref/test-bucket/output/concat.aac" && [ "$rc" = 0 ] \
      && ok "S3 mode (s3rver, AWS SigV4${parts:+, multipart $parts parts}): example in and out of a bucket, identical output" \
      || not_ok "s3rver${parts:+ multipart}" "rc=$rc $(jqo .Message)"
    curl -s -X DELETE "$s3/test-bucket/output/concat.aac"
  done
}

test_oss_v4_example
test_oss_v1_example
test_multipart
test_s3v4_signatures
test_virtual_hosted
test_odd_keys
test_faults
test_refusals
test_tls_refused
test_config_sources
test_seek_and_playlist
test_segmented
test_s3rver
if [ -z "${IMMERGE_E2E_QUICK:-}" ]; then
  test_large_multipart
  test_memory_streams
  test_valgrind
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
