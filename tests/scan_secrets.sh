#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Looks for secrets at rest: every file under DIR (what test servers left behind: databases,
# their -wal and -shm, logs; tests/integration/harness.c keeps them under $QRL_ARTIFACT_DIR) is
# searched, as bytes, for
#   - the canary that every secret of a test build carries (lib/secret.c, CANARY_TEXT),
#   - a secret prefix followed by a secret's body (qrl_dc_, qrl_ss_, qrl_at_, qrl_rt_, qrl_st_
#     and at least 40 base64url characters: a secret of any age, canary or not),
#   - the plain secrets the integration tests hand the server (tests/integration/harness.h:
#     IT_PASSWORD, stored only as Argon2id; IT_INTROSPECTION_SECRET, kept only in memory).
# The store keeps only hashes of secrets and Argon2id strings of passwords, and the logs mask
# secrets, so any hit is a secret written in plain text. Exits 1 listing the files and what was
# found in each, 0 when nothing was found, 2 when DIR is missing or empty (nothing was kept, so
# nothing was checked: that must not pass for clean).
#   tests/scan_secrets.sh build/test/artifacts
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir="$1"
if [ ! -d "$dir" ] || [ -z "$(find "$dir" -type f -print -quit)" ]; then
    echo "scan_secrets: $dir holds no files: no test server kept its database and log" \
         "(is QRL_ARTIFACT_DIR set for the tests?)" >&2
    exit 2
fi

canary='QRLCANARYtst'
prefixed='qrl_(dc|ss|at|rt|st)_[A-Za-z0-9_-]{40,}'
known=('correct horse battery staple' 'it-introspection-secret-4f1c2a9e')

found=0
report() { # file, what
    echo "scan_secrets: $1: $2" >&2
    found=1
}

files=$(find "$dir" -type f | sort)
nfiles=$(printf '%s\n' "$files" | wc -l)
while IFS= read -r f; do
    # -a: a database page or a WAL frame is binary; a secret inside it is still plain text.
    if grep -a -q -F -e "$canary" -- "$f"; then
        report "$f" "the secret canary $canary (a test build's secret in plain text)"
    fi
    # (No pipe into head: a grep killed by SIGPIPE would fail the test and hide the hit.)
    hit=$(grep -a -o -E -m 1 -e "$prefixed" -- "$f" || true)
    if [ -n "$hit" ]; then
        report "$f" "a secret: ${hit:0:16}..."
    fi
    for k in "${known[@]}"; do
        if grep -a -q -F -e "$k" -- "$f"; then
            report "$f" "a test secret in plain text: ${k:0:8}..."
        fi
    done
done <<<"$files"

if [ "$found" -ne 0 ]; then
    echo "scan_secrets: secrets in plain text under $dir (files above)" >&2
    exit 1
fi
echo "scan_secrets: $nfiles files under $dir, no secret in plain text"
