#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Browser tests of the web pages: headless Chromium (Debian's /usr/bin/chromium, driven by
# playwright-core) plays a TV and a phone against `qrlogin serve` (built with QRL_TEST_HOOKS).
# Usage: tests/browser/run.sh PATH-TO-qrlogin
# Installs the pinned dependencies (npm ci) when node_modules is missing or does not match
# package-lock.json, then runs the node:test suite. Exits non-zero on any failure.
# QRL_SCREENSHOTS=1 also writes the screenshots of every page into docs/screenshots/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ $# -ne 1 ]; then
  echo "usage: $0 PATH-TO-qrlogin" >&2
  exit 2
fi
if [ ! -x "$1" ] || [ -d "$1" ]; then
  echo "browser: '$1' is not an executable file" >&2
  exit 2
fi
bin=$(realpath "$1")

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "browser: '$tool' not found (scripts/deps.sh installs nodejs and npm)" >&2
    exit 1
  fi
done
chromium=${QRL_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "browser: no Chromium at $chromium (scripts/deps.sh installs the chromium package)" >&2
  exit 1
fi

cd "$here"

# node_modules is current when it was installed by `npm ci` from this exact lockfile.
stamp=node_modules/.qrlogin-lock.sha256
want=$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npmlog=$(mktemp)
  trap 'rm -f "$npmlog"' EXIT
  if ! npm ci --no-audit --no-fund --loglevel=error >"$npmlog" 2>&1; then
    echo "browser: npm ci failed:" >&2
    cat "$npmlog" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
fi

QRLOGIN_BIN="$bin" QRL_CHROMIUM="$chromium" exec node --test --test-concurrency=1 \
  --test-reporter=spec browser.test.mjs
