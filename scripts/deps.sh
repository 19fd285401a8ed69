#!/usr/bin/env bash
# Installs the Debian packages qrlogin needs to build and test. Idempotent: when every package
# is already installed it changes nothing and does not touch the network.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config curl
  libsqlite3-dev libsodium-dev libmicrohttpd-dev libjansson-dev
  libcurl4-openssl-dev libcmocka-dev
  libqrencode-dev libpng-dev libzbar-dev zbar-tools librsvg2-bin
  libfido2-dev libcbor-dev libssl-dev
  clang libclang-rt-14-dev
  nodejs npm
  chromium
)

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
