#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What an operator gets from `cmake --install BUILD --prefix P`, used from P alone: the binary
# runs and knows its version; the installed example configuration checks out with --check-config
# and starts a server that answers discovery; a broken file is refused with FILE:LINE; a flag
# beats its environment variable, which beats the file; secrets are never printed; the
# pkg-config file points into P; the manual page renders without a warning and documents every
# option of `qrlogin serve`; the systemd unit passes `systemd-analyze verify`, runs P's binary
# and keeps its hardening, and its sysusers file makes the user it runs as.
#
# usage: tests/install/test_install.sh BUILD_DIR
# env:   QRL_PROJECT_VERSION  the version `qrlogin --version` must print (CMake passes it)
#        QRL_IT_KEEP          keep the temporary directory
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qrl-install-XXXXXX")
P="$tmp/prefix"
server_pid=

cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [ -n "${QRL_IT_KEEP:-}" ]; then
        echo "test_install: keeping $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT INT TERM

fail() {
    echo "test_install: FAIL: $*" >&2
    for f in "$tmp"/*.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
    done
    exit 1
}

# Only what each step sets: no configuration from the caller's environment.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^QRLOGIN_' || true)

# --- install ----------------------------------------------------------------------------------
cmake --install "$build" --prefix "$P" >"$tmp/install.log" 2>&1 || fail "cmake --install"
bin="$P/bin/qrlogin"
example="$P/share/doc/qrlogin/qrlogin.conf.example"
man1="$P/share/man/man1/qrlogin.1"
unit="$P/lib/systemd/system/qrlogin.service"
for f in "$bin" "$example" "$man1" "$unit" "$P/lib/sysusers.d/qrlogin.conf" \
    "$P/lib/pkgconfig/qrlogin-client.pc"; do
    [ -e "$f" ] || fail "${f#"$P"/} was not installed"
done

# A sanitizer build's binary reports leaks at exit; that is the sanitizer suite's business.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}verify_asan_link_order=0"

# --- the binary -------------------------------------------------------------------------------
version=$("$bin" --version) || fail "qrlogin --version"
[ "$version" = "qrlogin ${QRL_PROJECT_VERSION:?}" ] ||
    fail "qrlogin --version printed '$version', want 'qrlogin $QRL_PROJECT_VERSION'"

# --- the installed example, made real: a database in a temporary directory --------------------
mkdir "$tmp/data"
conf="$tmp/qrlogin.conf"
cp "$example" "$conf"
printf 'listen = 127.0.0.1:0\ndb = %s\n' "$tmp/data/qrlogin.db" >>"$conf"
chmod 0600 "$conf"
db_line=$(grep -c '' "$conf")
"$bin" serve --check-config --config "$conf" >"$tmp/check.out" 2>"$tmp/check.log" ||
    fail "--check-config of the installed example exited with $?"
grep -qx "db = $tmp/data/qrlogin.db *# from $conf:$db_line" "$tmp/check.out" ||
    fail "--check-config does not show db from $conf:$db_line: $(cat "$tmp/check.out")"
[ ! -e "$tmp/data/qrlogin.db" ] || fail "--check-config created the database"
[ ! -s "$tmp/check.log" ] || fail "--check-config wrote to stderr: $(cat "$tmp/check.log")"

# The example and the manual page name every setting of `qrlogin serve --help`.
"$bin" serve --help >"$tmp/help.out" || fail "qrlogin serve --help"
opts=$(sed -n 's/^  --\([a-z][a-z-]*\).*/\1/p' "$tmp/help.out")
[ "$(echo "$opts" | wc -l)" -ge 10 ] || fail "found too few options in serve --help: $opts"
groff -man -Tascii -P-cbou "$man1" >"$tmp/man.txt" 2>/dev/null || fail "groff cannot render"
for o in $opts; do
    case "$o" in config | check-config | help) ;;
    *) grep -q "^#$o = " "$example" || fail "the example configuration lacks '#$o = ...'" ;;
    esac
    grep -q -- "--$o\b" "$tmp/man.txt" || fail "the manual page does not document --$o"
done

# --- a broken file is refused with FILE:LINE and the key, exit status 2 ------------------------
expect_refused() { # FILE WHAT-STDERR-MUST-HOLD
    local st=0
    "$bin" serve --check-config --config "$1" >/dev/null 2>"$tmp/refused.log" || st=$?
    [ "$st" -eq 2 ] || fail "$1 exited with $st, want 2 ($(cat "$tmp/refused.log"))"
    grep -qF -- "$2" "$tmp/refused.log" || fail "no '$2' in: $(cat "$tmp/refused.log")"
}
printf '# a comment\n\nlisten = 127.0.0.1:0\nlissten = 127.0.0.1:1\n' >"$tmp/bad.conf"
expect_refused "$tmp/bad.conf" "$tmp/bad.conf:4: lissten: unknown key"
printf 'request-ttl = 600\nrequest-ttl = 60\n' >"$tmp/bad.conf"
expect_refused "$tmp/bad.conf" "$tmp/bad.conf:2: request-ttl: set twice (first on line 1)"
printf 'db = %s\nrequest-ttl = 5\n' "$tmp/data/q.db" >"$tmp/bad.conf"
expect_refused "$tmp/bad.conf" "$tmp/bad.conf:2: request-ttl must be a whole number of seconds"
printf 'access-log\n' >"$tmp/bad.conf"
expect_refused "$tmp/bad.conf" "$tmp/bad.conf:1: access-log: no '='"
printf 'access-log = sometimes\n' >"$tmp/bad.conf"
expect_refused "$tmp/bad.conf" "$tmp/bad.conf:1: access-log is a flag"
printf 'listen = localhost:8080\n' >"$tmp/bad.conf"
expect_refused "$tmp/bad.conf" "$tmp/bad.conf:1: listen must be a numeric address"
printf 'db = %s\n' "$tmp/no-such-dir/q.db" >"$tmp/bad.conf"
expect_refused "$tmp/bad.conf" "the directory $tmp/no-such-dir does not exist"
expect_refused "$tmp/missing.conf" "cannot read the configuration file $tmp/missing.conf"

# --- precedence, seen through --check-config: flag > environment > file > default -------------
secret="s3cret#with=signs"
printf 'listen = 127.0.0.1:1111\ndb = %s\nintrospection-secret = %s\nthreads = 8\n' \
    "$tmp/data/q.db" "$secret" >"$tmp/prec.conf"
chmod 0600 "$tmp/prec.conf"
check() { "$bin" serve --check-config "$@" 2>"$tmp/prec.log" || fail "--check-config $*"; }
want() { # OUTPUT LINE-REGEX
    grep -qx -- "$2" <<<"$1" || fail "no line '$2' in: $1"
}
out=$(check --config "$tmp/prec.conf")
want "$out" "listen = 127.0.0.1:1111 *# from $tmp/prec.conf:1"
want "$out" "threads = 8 *# from $tmp/prec.conf:4"
want "$out" "request-ttl = (default)"
out=$(QRLOGIN_LISTEN=127.0.0.1:2222 check --config "$tmp/prec.conf")
want "$out" "listen = 127.0.0.1:2222 *# from QRLOGIN_LISTEN"
want "$out" "threads = 8 *# from $tmp/prec.conf:4"
out=$(QRLOGIN_LISTEN=127.0.0.1:2222 check --config "$tmp/prec.conf" --listen 127.0.0.1:3333)
want "$out" "listen = 127.0.0.1:3333 *# from --listen"
# The file chosen by QRLOGIN_CONFIG, and --config none for no file at all.
out=$(QRLOGIN_CONFIG="$tmp/prec.conf" check)
want "$out" "listen = 127.0.0.1:1111 *# from $tmp/prec.conf:1"
out=$(QRLOGIN_CONFIG="$tmp/prec.conf" check --config none --db "$tmp/data/q.db")
want "$out" "listen = (default)"
# The secret is never printed, from any source; a secret file readable by all is warned about.
out=$(QRLOGIN_INTROSPECTION_SECRET="env-$secret" check --config "$tmp/prec.conf")
want "$out" "introspection-secret = (set) *# from QRLOGIN_INTROSPECTION_SECRET"
if grep -qF "$secret" <<<"$out"; then fail "--check-config printed the secret"; fi
[ ! -s "$tmp/prec.log" ] || fail "a 0600 file was warned about: $(cat "$tmp/prec.log")"
chmod 0644 "$tmp/prec.conf"
check --config "$tmp/prec.conf" >/dev/null
grep -q "warning: $tmp/prec.conf holds a secret and every user of this machine may read it" \
    "$tmp/prec.log" || fail "no warning about a secret readable by all: $(cat "$tmp/prec.log")"

# --- the installed server, started with the installed example ---------------------------------
"$bin" serve --config "$conf" >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
    grep -q "listening on" "$tmp/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
    sleep 0.1
done
base=$(sed -n 's/^qrlogin: listening on \(http:[^ ]*\)$/\1/p' "$tmp/server.log" | head -n 1)
[ -n "$base" ] || fail "the server did not say where it listens"
curl -sf "$base/.well-known/oauth-authorization-server" >"$tmp/discovery.log" ||
    fail "GET /.well-known/oauth-authorization-server"
grep -q "\"issuer\": *\"$base\"" "$tmp/discovery.log" || fail "discovery names another issuer"
[ -f "$tmp/data/qrlogin.db" ] || fail "the server did not use the configured database"
kill -TERM "$server_pid"
st=0
wait "$server_pid" || st=$?
server_pid=
[ "$st" -eq 0 ] || fail "the server exited with $st after SIGTERM"

# --- pkg-config: the installed .pc points into P -----------------------------------------------
cflags=$(PKG_CONFIG_PATH="$P/lib/pkgconfig" pkg-config --cflags qrlogin-client)
libs=$(PKG_CONFIG_PATH="$P/lib/pkgconfig" pkg-config --libs qrlogin-client)
incdir=${cflags#-I}
incdir=${incdir%% *}
libdir=${libs#-L}
libdir=${libdir%% *}
[ "$(cd "$incdir" && pwd -P)" = "$(cd "$P/include" && pwd -P)" ] ||
    fail "pkg-config --cflags gives '$cflags', not -I $P/include"
[ "$(cd "$libdir" && pwd -P)" = "$(cd "$P/lib" && pwd -P)" ] ||
    fail "pkg-config --libs gives '$libs', not -L $P/lib"

# --- the manual page: renders without a warning, with the binary's version ---------------------
groff -man -Tutf8 -ww -rCHECKSTYLE=3 -z "$man1" 2>"$tmp/groff.log" || fail "groff failed"
[ ! -s "$tmp/groff.log" ] || fail "groff warns about the manual page"
grep -q "^\.TH QRLOGIN 1 .*\"$version\"" "$man1" || fail "the manual page's .TH is not '$version'"
man -l "$man1" >/dev/null 2>"$tmp/man.log" || fail "man -l"
[ ! -s "$tmp/man.log" ] || fail "man -l warns"

# --- the systemd unit ---------------------------------------------------------------------------
command -v systemd-analyze >/dev/null ||
    fail "systemd-analyze is missing (scripts/deps.sh installs the systemd package)"
grep -qx "ExecStart=$bin serve --config /etc/qrlogin/qrlogin.conf" "$unit" ||
    fail "the unit does not run $bin: $(grep ExecStart "$unit")"
for d in ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes PrivateTmp=yes \
    PrivateDevices=yes ProtectKernelTunables=yes ProtectKernelModules=yes ProtectKernelLogs=yes \
    ProtectControlGroups=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
    RestrictNamespaces=yes LockPersonality=yes MemoryDenyWriteExecute=yes \
    SystemCallFilter=@system-service CapabilityBoundingSet= UMask=0077 Restart=on-failure \
    User=qrlogin StateDirectory=qrlogin; do
    grep -qx "$d" "$unit" || fail "the unit lacks $d"
done
# verify also opens Documentation=man:qrlogin(1), so the installed page must be found.
MANPATH="$P/share/man:" systemd-analyze verify "$unit" >"$tmp/verify.log" 2>&1 ||
    fail "systemd-analyze verify"
[ ! -s "$tmp/verify.log" ] || fail "systemd-analyze verify warns"
# The unit's user, made by the installed sysusers file in a scratch root.
mkdir -p "$tmp/sysroot/etc"
systemd-sysusers --root="$tmp/sysroot" "$P/lib/sysusers.d/qrlogin.conf" >"$tmp/sysusers.log" 2>&1 ||
    fail "systemd-sysusers"
grep -q '^qrlogin:x:[0-9]*:[0-9]*:.*:/var/lib/qrlogin:' "$tmp/sysroot/etc/passwd" ||
    fail "the sysusers file does not make the user qrlogin"

echo "test_install: OK ($P)"
