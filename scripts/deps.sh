#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages qrlogin needs. Idempotent: when every package is already
# installed it changes nothing and does not touch the network.
#
#   scripts/deps.sh           everything to build and test (scripts/test.sh)
#   scripts/deps.sh --serve   only what building and running the server needs (scripts/serve.sh)
set -euo pipefail

# To build qrlogin (server, CLI, client SDK) and run it.
SERVE_PKGS=(
  build-essential cmake pkg-config
  libsqlite3-dev libsodium-dev libmicrohttpd-dev libjansson-dev
  libcurl4-openssl-dev
  libqrencode-dev libpng-dev libzbar-dev
  libfido2-dev libcbor-dev libssl-dev
  libmaxminddb-dev
  libpq-dev
)
# On top of those, to run every test, the fuzzers and the browser and interop suites.
TEST_PKGS=(
  curl
  libcmocka-dev
  zbar-tools librsvg2-bin
  clang libclang-rt-14-dev
  nodejs npm
  chromium
  # tests/install: systemd-analyze verify and systemd-sysusers for the unit, groff and man for
  # the manual page.
  systemd groff-base man-db
  # tests/pg: a throwaway PostgreSQL cluster for the PostgreSQL store's tests.
  postgresql
  # mmdblookup: what the country database of tests/geoip says of an address, to pick the
  # addresses the country tests use.
  mmdb-bin
)

case "${1:-}" in
  --serve) PKGS=("${SERVE_PKGS[@]}") ;;
  "") PKGS=("${SERVE_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  *)
    echo "usage: $0 [--serve]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${PKGS[@]}"; do
  # nodejs/npm may come from outside Debian's packages on some machines; a working binary counts.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
