#!/usr/bin/env bash
# Quick start: installs what is missing, builds qrlogin, and runs the server on the embedded
# SQLite default (./qrlogin.db) with a demo account whose credentials it prints.
# Extra arguments go to `qrlogin serve` (see `qrlogin serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DQRL_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null
exec ./build/release/qrlogin serve --demo "$@"
