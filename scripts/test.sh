#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds and runs every test: unit, integration (real server on 127.0.0.1, on SQLite and again
# on a throwaway PostgreSQL cluster), browser, the OAuth interop suite (openid-client under
# Node) in a warnings-as-errors build; the C tests again in an AddressSanitizer +
# UndefinedBehaviorSanitizer build; then every fuzz target for 25 s each
# (scripts/fuzz.sh; QRL_FUZZ_SECONDS changes it). After each ctest run, what the test servers
# left behind (databases, WALs, logs) is scanned for secrets in plain text
# (tests/scan_secrets.sh). Installs missing packages first.
#   QRL_TEST_QUICK=1 ./scripts/test.sh   skips the sanitizer and fuzzing passes (local only)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
jobs="$(nproc)"

# run_suite DIR "CTEST ARGS" CMAKE ARGS...
run_suite() {
    local dir="$1" select="$2"; shift 2
    echo "== building $dir ($*)"
    cmake -S . -B "$dir" -DQRL_TEST_HOOKS=ON -DQRL_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
    echo "== testing $dir"
    rm -rf "$dir/artifacts"
    # shellcheck disable=SC2086 # $select is a list of ctest arguments
    (cd "$dir" && ctest --output-on-failure -j"$jobs" $select)
    ./tests/scan_secrets.sh "$dir/artifacts"
}

run_suite build/test "" -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${QRL_TEST_QUICK:-0}" != "1" ]; then
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    # Under the sanitizers: every C test, the PostgreSQL store's own unit test included; not
    # the second run of the integration tests on PostgreSQL, the browser pages or the interop
    # suite, which drive the same C code as the tests that do run and would add minutes.
    run_suite build/asan "-E ^(integration-pg|pg|browser|interop)/" \
        -DCMAKE_BUILD_TYPE=Debug -DQRL_SANITIZE=ON
    ./scripts/fuzz.sh "${QRL_FUZZ_SECONDS:-25}"
fi
echo "== all tests passed"
