# lib.sh - what the end-to-end suites share. A suite starts with
#   set -uo pipefail; here=$(cd "$(dirname "$0")" && pwd); . "$here/lib.sh" "$@"
# which sets bin (the immerge under test, the suite's first argument), top, a scratch folder work
# (removed on exit, with every server the suite started: their pids go in `pids`; a failed suite keeps
# its *.log files), root and b (a local store and its test bucket), and the pass/fail counters.
# Verdicts use tools we did not write: ffmpeg/ffprobe, mpg123, faad, cmp.
[ $# -ge 1 ] && [ -x "$1" ] || { echo "usage: $(basename "$0") path/to/immerge" >&2; exit 2; }
bin=$(realpath "$1")
top=$(cd "$here/../.." && pwd)
work=$(mktemp -d "/tmp/immerge-$(basename "$0" .sh).XXXXXX")
pids=()
on_exit=() # commands run on exit, before the servers are killed (a database to stop)
cleanup() {
  local c; for c in "${on_exit[@]}"; do eval "$c" > /dev/null 2>&1; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null
  # A failed suite keeps its server logs, and shows what a sanitizer said, because a CI log is often
  # all there is to go on.
  if [ "$fail" -gt 0 ]; then
    local kept; kept=$(mktemp -d "/tmp/immerge-kept-$(basename "$0" .sh).XXXXXX")
    find "$work" -maxdepth 2 -name '*.log' -exec cp {} "$kept/" \; 2>/dev/null
    echo "# $fail failed: server logs kept in $kept" >&2
    grep -l -E 'Sanitizer|runtime error|Segmentation' "$kept"/*.log 2>/dev/null | while read -r f; do
      echo "# --- $f" >&2; grep -A 40 -E 'Sanitizer|runtime error' "$f" | head -80 >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
root="$work/root"
b="$root/test-bucket"
pass=0 fail=0

ok()     { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1${2:+: $2}"; }
ff()     { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

# Samples per channel of FILE's first audio stream, decoded by the ffmpeg CLI at its own rate.
samples() { ffmpeg -nostdin -v error -i "$1" -map 0:a:0 -ac 1 -f s16le - | wc -c | awk '{print $1 / 2}'; }
rate_of() { ffprobe -v error -select_streams a:0 -show_entries stream=sample_rate -of csv=p=0 "$1" | head -1; }
probe()   { ffprobe -v error -select_streams a:0 -show_entries "stream=$2" -of csv=p=0 "$1" | head -1; }
# round(n * to / from), as the engine defines a resampled source's length
rescale() { echo $(( ($1 * $2 * 2 + $3) / ($3 * 2) )); }
abs()     { local v=$1; echo $(( v < 0 ? -v : v )); }

jqo() { printf '%s' "$out" | jq -r "$1"; }

# expect NAME RC CODE [TEXT-IN-MESSAGE]: the run failed as the service would say
expect_error() {
  local name=$1 want_rc=$2 code=$3 text=${4:-}
  local got_code msg; got_code=$(jqo .Code 2>/dev/null); msg=$(jqo .Message 2>/dev/null)
  if [ "$rc" != "$want_rc" ]; then not_ok "$name" "exit $rc, wanted $want_rc ($msg)"
  elif [ "$got_code" != "$code" ]; then not_ok "$name" "Code $got_code, wanted $code ($msg)"
  elif [ -n "$text" ] && [[ "$msg" != *"$text"* ]]; then not_ok "$name" "message lacks '$text': $msg"
  else ok "$name"; fi
}


# Task records go to the suite's own folder, not the user's.
export IMMERGE_STATE="$work/state"

# start_server LOG CMD...: starts a server in the background (its pid joins the suite's `pids`,
# which the suite kills on exit), waits for its "listening on [127.0.0.1:]PORT" line; sets port.
start_server() {
  local log=$1; shift
  "$@" > "$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on \(127\.0\.0\.1:\)\{0,1\}\([0-9][0-9]*\).*/\2/p' "$log" | head -1)
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "Bail out! server did not start: $*"; cat "$log"; exit 1
}

# start_postgres: a PostgreSQL server of Debian's packages for this suite alone: initdb into a
# scratch folder (as `nobody` when we are root: postgres refuses to run as root), listening on
# 127.0.0.1 at a free high port, stopped on exit. Sets pg_url (postgres://immerge@127.0.0.1:PORT/
# immerge), and pg_ctl_as (`pg_ctl_as -o "$pg_opts" start`, `pg_ctl_as -m fast stop`) and psql_db
# to drive it.
start_postgres() {
  local bindir; bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$bindir/initdb" ] || { echo "Bail out! no PostgreSQL server (run tests/deps.sh)"; exit 1; }
  pg_dir=$(mktemp -d /tmp/immerge-pg.XXXXXX)
  pg_as=()
  if [ "$(id -u)" = 0 ]; then chown nobody "$pg_dir"; pg_as=(runuser -u nobody --); fi
  "${pg_as[@]}" "$bindir/initdb" -D "$pg_dir/data" -U immerge -A trust -E UTF8 --no-instructions \
    > "$pg_dir/initdb.log" 2>&1 || { echo "Bail out! initdb"; cat "$pg_dir/initdb.log"; exit 1; }
  pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  pg_bin=$bindir
  pg_ctl_as() { "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w "$@"; }
  pg_opts="-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c shared_preload_libraries=pg_stat_statements"
  pg_ctl_as -o "$pg_opts" start > /dev/null || { echo "Bail out! postgres"; cat "$pg_dir/log"; exit 1; }
  on_exit+=("pg_ctl_as -m immediate stop; rm -rf '$pg_dir'")
  "$bindir/createdb" -h 127.0.0.1 -p "$pg_port" -U immerge immerge || { echo "Bail out! createdb"; exit 1; }
  pg_url="postgres://immerge@127.0.0.1:$pg_port/immerge"
  psql_db() { psql -X -q -At -h 127.0.0.1 -p "$pg_port" -U immerge immerge "$@"; }
}
