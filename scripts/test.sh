#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds and runs every test: unit, integration (real server on 127.0.0.1), and the OAuth
# interop suite (openid-client under Node), twice: a warnings-as-errors build, then an
# AddressSanitizer + UndefinedBehaviorSanitizer build; then every fuzz target for 25 s each
# (scripts/fuzz.sh; QRL_FUZZ_SECONDS changes it). After each ctest run, what the test servers
# left behind (databases, WALs, logs) is scanned for secrets in plain text
# (tests/scan_secrets.sh). Installs missing packages first.
#   QRL_TEST_QUICK=1 ./scripts/test.sh   skips the sanitizer and fuzzing passes (local only)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
jobs="$(nproc)"

run_suite() {
    local dir="$1"; shift
    echo "== building $dir ($*)"
    cmake -S . -B "$dir" -DQRL_TEST_HOOKS=ON -DQRL_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
    echo "== testing $dir"
    rm -rf "$dir/artifacts"
    (cd "$dir" && ctest --output-on-failure -j"$jobs")
    ./tests/scan_secrets.sh "$dir/artifacts"
}

run_suite build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${QRL_TEST_QUICK:-0}" != "1" ]; then
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    run_suite build/asan -DCMAKE_BUILD_TYPE=Debug -DQRL_SANITIZE=ON
    ./scripts/fuzz.sh "${QRL_FUZZ_SECONDS:-25}"
fi
echo "== all tests passed"
