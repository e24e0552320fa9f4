#!/usr/bin/env bash
# tests/valgrind/run.sh [VALGRIND OPTIONS] PROGRAM ARGS...: valgrind as every check here runs it:
# quiet, the full leak check, definite and indirect leaks errors, exit 99 on any error. On a CPU
# that does not report rdtscp, no-rdtscp.c is built (once, into build/valgrind/) and preloaded, or
# nothing that loads libavcodec could start under valgrind (see that file).
set -e
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! grep -qw rdtscp /proc/cpuinfo; then
  shim=$here/../../build/valgrind/no-rdtscp.so
  if [ ! -e "$shim" ] || [ "$here/no-rdtscp.c" -nt "$shim" ]; then
    mkdir -p "$(dirname "$shim")"
    tmp=$(mktemp "$shim.XXXXXX") # built aside and moved, so that parallel suites never load half a file
    ${CC:-cc} -shared -fPIC -O2 -Wall -Wextra -Werror -o "$tmp" "$here/no-rdtscp.c"
    mv -f "$tmp" "$shim"
  fi
  export LD_PRELOAD=$shim${LD_PRELOAD:+:$LD_PRELOAD}
fi
exec valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 "$@"
