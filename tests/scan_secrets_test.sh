#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The secret scanner must be able to fail: a canary, a prefixed secret, a test password or the
# tests' introspection secret planted in a binary file is found (exit 1, the file named), a
# clean directory passes (exit 0), and an empty one is an error (exit 2), never a pass.
set -uo pipefail
scan="$(dirname "$0")/scan_secrets.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

expect() { # want-status, label, dir
    local out status
    out=$("$scan" "$3" 2>&1)
    status=$?
    if [ "$status" -ne "$1" ]; then
        echo "FAIL: $2: exit $status, expected $1; output:" >&2
        echo "$out" >&2
        fails=1
    fi
    printf '%s\n' "$out"
}

mkdir "$tmp/empty"
expect 2 "an empty directory" "$tmp/empty" >/dev/null

mkdir "$tmp/clean"
head -c 65536 /dev/urandom >"$tmp/clean/qrlogin.db"
printf 'qrlogin: POST token 200 qrl_[redacted]\n' >"$tmp/clean/server.log"
expect 0 "a clean directory" "$tmp/clean" >/dev/null

for kind in canary prefixed password introspection; do
    mkdir "$tmp/$kind"
    cp "$tmp/clean/qrlogin.db" "$tmp/$kind/"
    case $kind in
    canary) secret='qrl_dc_AAAAAAAAAAAAQRLCANARYtst' ;;
    prefixed) secret='qrl_rt_AZaz09-_AZaz09-_AZaz09-_AZaz09-_AZaz09-_AZaz' ;;
    password) secret='correct horse battery staple' ;;
    introspection) secret='it-introspection-secret-4f1c2a9e' ;;
    esac
    # In the middle of binary data, with a NUL on each side, as in a database page.
    { head -c 3000 /dev/urandom; printf '\0%s\0' "$secret"; head -c 3000 /dev/urandom; } \
        >"$tmp/$kind/qrlogin.db-wal"
    out=$(expect 1 "a planted $kind" "$tmp/$kind")
    if ! grep -q -F "$tmp/$kind/qrlogin.db-wal" <<<"$out"; then
        echo "FAIL: the planted $kind's file is not named; output:" >&2
        echo "$out" >&2
        fails=1
    fi
    if grep -q -F "$tmp/$kind/qrlogin.db:" <<<"$out"; then
        echo "FAIL: a clean file is named for the planted $kind" >&2
        fails=1
    fi
done

[ "$fails" -eq 0 ] && echo "scan_secrets_test: the scanner finds what is planted"
exit "$fails"
