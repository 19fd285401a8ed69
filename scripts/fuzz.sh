#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets (fuzz/fuzz_*.c) with clang, ASan and UBSan in build/fuzz, and runs
# each for SECONDS (default 25) from its seed corpus (fuzz/corpus/NAME), or only the TARGETs
# named. Fails on the first crash, leak, sanitizer report or broken check; the input that did it
# is left in build/fuzz (crash-*, leak-*, timeout-*, oom-*) and the log's tail is printed.
# Installs missing packages first. fuzz/README.md says what each target checks and how to
# reproduce and minimise a failure.
#   ./scripts/fuzz.sh [SECONDS [TARGET...]]     e.g. ./scripts/fuzz.sh 3600 fuzz_server
# The default keeps the pass of scripts/test.sh near four minutes: seven targets of 25 s, and
# the build.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/fuzz.sh [SECONDS [TARGET...]]" >&2
    exit 2
}
secs="${1:-25}"
# 0 would be libFuzzer's "no limit".
case "$secs" in '' | *[!0-9]* | 0) usage ;; esac
shift $(($# > 0 ? 1 : 0))
targets=()
if [ $# -gt 0 ]; then
    for t in "$@"; do
        [ -f "fuzz/$t.c" ] || { echo "fuzz: no target $t (fuzz/$t.c)" >&2; usage; }
        targets+=("$t")
    done
else
    for src in fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi
./scripts/deps.sh
command -v clang >/dev/null || { echo "fuzz: clang not found after scripts/deps.sh" >&2; exit 1; }

echo "== building build/fuzz (clang, libFuzzer, ASan + UBSan)"
cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DQRL_FUZZ=ON -DQRL_BUILD_TESTS=OFF -DQRL_WERROR=ON >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target "${targets[@]}"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
for t in "${targets[@]}"; do
    work="build/fuzz/corpus-$t"
    mkdir -p "$work"
    echo "== fuzzing $t for ${secs}s"
    # New inputs go to the first directory (build/fuzz), the seeds are only read.
    if ! (cd build/fuzz && "./$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "corpus-$t" "../../fuzz/corpus/$t" >"$t.log" 2>&1); then
        tail -60 "build/fuzz/$t.log" >&2
        echo "fuzz: $t failed; the input is in build/fuzz (see $t.log and fuzz/README.md)" >&2
        exit 1
    fi
    grep -E "stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" \
        "build/fuzz/$t.log" | sed "s/^/   $t: /"
done
echo "== fuzzing passed"
