#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets (fuzz/fuzz_*.c) with clang, ASan and UBSan in build/fuzz, and runs
# each for SECONDS (default 30) from its seed corpus (fuzz/corpus/NAME). Fails on the first
# crash, leak, sanitizer report or broken check; the input that did it is left in build/fuzz
# (crash-*, leak-*, timeout-*) and printed. Installs missing packages first.
#   ./scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-30}"
case "$secs" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac
./scripts/deps.sh
command -v clang >/dev/null || { echo "fuzz: clang not found after scripts/deps.sh" >&2; exit 1; }

echo "== building build/fuzz (clang, libFuzzer, ASan + UBSan)"
cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DQRL_FUZZ=ON -DQRL_BUILD_TESTS=OFF -DQRL_WERROR=ON >/dev/null
targets=()
for src in fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
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
        echo "fuzz: $t failed; the input is in build/fuzz (see $t.log)" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|stat::new_units_added" "build/fuzz/$t.log" |
        sed "s/^/   $t: /"
done
echo "== fuzzing passed"
