#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the country database the --geoip tests use: ip-location-db's geo-whois-asn-country
# file (MaxMind DB format, from the regional internet registries' data; package.json pins it),
# with `npm ci` when node_modules is missing or does not match package-lock.json. Prints the
# path of the .mmdb file on standard output. ctest runs it first (the fixture geoip_db in
# tests/CMakeLists.txt); the browser suite runs it when the file is missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
db="$here/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb"

if ! command -v npm >/dev/null 2>&1; then
  echo "geoip: 'npm' not found (scripts/deps.sh installs it)" >&2
  exit 1
fi
cd "$here"
# node_modules is current when it was installed by `npm ci` from this exact lockfile.
stamp=node_modules/.qrlogin-lock.sha256
want=$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -s "$db" ]; then
  npmlog=$(mktemp)
  trap 'rm -f "$npmlog"' EXIT
  if ! npm ci --no-audit --no-fund --loglevel=error >"$npmlog" 2>&1; then
    echo "geoip: npm ci failed:" >&2
    cat "$npmlog" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
fi
if [ ! -s "$db" ]; then
  echo "geoip: the package holds no $db" >&2
  exit 1
fi
echo "$db"
