#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Quick start: installs what building and serving need (scripts/deps.sh --serve), builds
# qrlogin, and runs the server on the embedded SQLite default (./qrlogin.db) with a demo
# account whose credentials it prints.
#
# The demo password is kept in ./qrlogin.db.demo-password (mode 0600) and stays the same
# across restarts, so a phone that signed in once keeps working; `./scripts/serve.sh
# --demo-reset` makes a new one. Extra arguments go to `qrlogin serve` (see
# `qrlogin serve --help`), for example --listen 0.0.0.0:8080 --public-url https://login.example.com.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh --serve
echo "serve: building into build/release ..." >&2
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DQRL_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)" >/dev/null
echo "serve: starting (stop it with Ctrl-C); the qrlogin command is ./build/release/qrlogin" >&2
exec ./build/release/qrlogin serve --demo "$@"
