#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A release build carries none of the test hooks: builds `qrlogin` without QRL_TEST_HOOKS in
# BUILD_DIR (kept between runs, so a second run only rebuilds what changed) and checks its
# symbols (nm) and strings: no crash point (lib/crash.h: QRL_CRASH_AT, qrl__crash_point, the
# points' names), no secret canary (lib/secret.c), no allocation-failure counter, writer hold or
# test clock route. The test suite itself is always built with the hooks, so only a separate
# build can show this.
#   tests/release_check.sh SOURCE_DIR BUILD_DIR
set -euo pipefail

src="$1"
build="$2"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQRL_TEST_HOOKS=OFF \
      -DQRL_BUILD_TESTS=OFF -DQRL_SANITIZE=OFF -DQRL_FUZZ=OFF >/dev/null
cmake --build "$build" --target qrlogin -j"$(nproc)" >/dev/null
bin="$build/qrlogin"

fail=0
symbols=$(nm "$bin")
for sym in qrl__crash_point qrl__alloc_fail_nth qrl__sqlite_test_hold qrl__sqlite_wal_syncs; do
    if grep -q -w -e "$sym" <<<"$symbols"; then
        echo "release_check: $bin defines the test-only symbol $sym" >&2
        fail=1
    fi
done
text=$(strings -a "$bin")
for s in QRL_CRASH_AT 'crash point' approve.committed sqlite.before_fdatasync QRLCANARYtst \
         /_test/clock; do
    if grep -q -F -e "$s" <<<"$text"; then
        echo "release_check: $bin contains the test-only string \"$s\"" >&2
        fail=1
    fi
done
# The check must be able to see what it looks for: the symbols are there when debug
# information names them (RelWithDebInfo), and a production function is.
if ! grep -q -w qrl_store_sqlite_open <<<"$symbols"; then
    echo "release_check: nm shows no qrl_store_sqlite_open: the check cannot see symbols" >&2
    fail=1
fi
[ "$fail" -eq 0 ] && echo "release_check: $bin has no test hooks"
exit "$fail"
