#!/bin/sh
# SPDX-License-Identifier: MIT
# The client SDK as an app developer gets it, by the steps of docs/sdk.md: install the build
# into a temporary prefix P (`cmake --install BUILD --prefix P`), build examples/ against the
# installed copy with `PKG_CONFIG_PATH=P/lib/pkgconfig make -C examples`, check that the program
# links to the installed library, then sign the example in against a live server, playing the
# phone with curl(1).
#
# usage: tests/sdk/install_example.sh BUILD_DIR
# env:   QRLOGIN_BIN  the qrlogin binary for the live part (default BUILD_DIR/qrlogin)
#        QRL_IT_KEEP  keep the temporary directory
set -eu

build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
bin=${QRLOGIN_BIN:-$build/qrlogin}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qrl-sdk-install-XXXXXX")
server_pid=
tv_pid=

cleanup() {
    if [ -n "$tv_pid" ]; then kill "$tv_pid" 2>/dev/null || true; fi
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [ -n "${QRL_IT_KEEP:-}" ]; then
        echo "install_example: keeping $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT INT TERM

fail() {
    echo "install_example: FAIL: $*" >&2
    for f in "$tmp"/*.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
    done
    exit 1
}

# --- install and build against the installed copy --------------------------------------------
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 ||
    fail "cmake --install"
pc="$tmp/prefix/lib/pkgconfig/qrlogin-client.pc"
[ -f "$pc" ] || fail "lib/pkgconfig/qrlogin-client.pc was not installed"
for h in client.h error.h; do
    [ -f "$tmp/prefix/include/qrlogin/$h" ] || fail "include/qrlogin/$h was not installed"
done

# The prefix was chosen only at install time: the .pc file must find it by itself, with no
# --define-prefix, exactly as docs/sdk.md has the reader run it.
incdir=$(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --variable=includedir qrlogin-client)
[ -f "$incdir/qrlogin/client.h" ] || fail "the .pc file's includedir ($incdir) has no qrlogin/client.h"
cp -R "$src/examples" "$tmp/examples"
rm -f "$tmp/examples/tv_login"
(cd "$tmp" && PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" make -C examples \
    CFLAGS="-O2 -g -Wall -Wextra -Werror") >"$tmp/make.log" 2>&1 || fail "make -C examples"
tv="$tmp/examples/tv_login"
[ -x "$tv" ] || fail "examples/tv_login was not built"
ldd "$tv" | grep -q "$tmp/prefix/.*libqrlogin-client.so" ||
    fail "tv_login does not load the installed libqrlogin-client: $(ldd "$tv" | grep qrlogin)"
if nm -D --defined-only "$(dirname "$pc")/../libqrlogin-client.so" 2>/dev/null |
    grep -E ' T qrl_' | grep -v ' T qrl_client_' >"$tmp/exports.log"; then
    echo "install_example: note: the SDK also exports $(wc -l <"$tmp/exports.log") non-SDK" \
        "symbols (see docs/sdk.md, Packaging)" >&2
fi

# A sanitizer build of the library needs its runtime loaded into an uninstrumented program.
ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}verify_asan_link_order=0:detect_leaks=0
export ASAN_OPTIONS
"$tv" --help >/dev/null 2>&1 || fail "tv_login --help"

# --- sign the installed example in against a real server ---------------------------------------
[ -x "$bin" ] || fail "no qrlogin binary at $bin (set QRLOGIN_BIN)"
db="$tmp/qrlogin.db"
pw="correct horse battery staple"
printf '%s\n' "$pw" |
    "$bin" account add alice --db "$db" --password-stdin >"$tmp/account.log" 2>&1 ||
    fail "account add"
"$bin" serve --listen 127.0.0.1:0 --db "$db" >"$tmp/server.log" 2>&1 &
server_pid=$!
wait_for() { # FILE PATTERN SECONDS
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le $(($3 * 10)) ] || return 1
        sleep 0.1
    done
}
wait_for "$tmp/server.log" "listening on" 30 || fail "server did not start"
base=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$tmp/server.log" | head -n 1)

# The server from the environment, as the example's usage and docs/sdk.md describe.
QRLOGIN_SERVER="$base" "$tv" >"$tmp/tv.log" 2>&1 &
tv_pid=$!
wait_for "$tmp/tv.log" "Code: " 30 || fail "tv_login showed no code"
# The SDK names its key, so the link carries the key's short form ("?k=", 8 characters).
grep -Eq "Link: $base/s\?k=[A-Za-z0-9_-]{8}#qrl_ss_" "$tmp/tv.log" || fail "tv_login showed no QR link"
secret=$(sed -n 's/^Link: .*#\(qrl_ss_[A-Za-z0-9_-]*\).*/\1/p' "$tmp/tv.log" | head -n 1)
code=$(sed -n 's/^ *Code: \([A-Z-]*\).*/\1/p' "$tmp/tv.log" | head -n 1)

curl -sf -H 'Content-Type: application/json' -d "{\"username\":\"alice\",\"password\":\"$pw\"}" \
    "$base/v1/sessions" >"$tmp/session.log" || fail "phone sign-in"
session=$(sed -n 's/.*"session_token" *: *"\(qrl_st_[^"]*\)".*/\1/p' "$tmp/session.log")
[ -n "$session" ] || fail "no session token in the sign-in answer"
curl -sf -H "Authorization: Bearer $session" "$base/v1/login-requests/$secret" >"$tmp/view.log" ||
    fail "phone view"
wait_for "$tmp/tv.log" "Confirm on your phone" 10 || fail "tv_login did not report the scan"
curl -sf -H "Authorization: Bearer $session" -H 'Content-Type: application/json' \
    -d "{\"user_code\":\"$code\",\"password\":\"$pw\"}" \
    "$base/v1/login-requests/$secret/approve" >"$tmp/approve.log" || fail "phone approve"

i=0
while kill -0 "$tv_pid" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "tv_login did not finish after approval"
    sleep 0.1
done
wait "$tv_pid" || fail "tv_login exited with $?"
tv_pid=
grep -q "Signed in. The access token expires in 3600 seconds" "$tmp/tv.log" ||
    fail "tv_login did not report the sign-in"
echo "install_example: OK ($base)"
