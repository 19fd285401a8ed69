#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What PostgreSQL alone does per second on this machine, pinned as bench/run.sh --db postgres pins
# it (CPU 0; pgbench on CPU 1), with the bench's settings: the ceiling under the PostgreSQL
# columns of docs/benchmarks.md. Three pgbench scripts, 16 clients, prepared statements, over
# TCP on 127.0.0.1 as the nodes connect:
#   select   one row by primary key (pgbench -S): a read, the least a statement costs;
#   update   one row updated in place, synchronous_commit off: what a poll's bookkeeping costs;
#   durable  the same update with synchronous_commit on: what an approval or a redemption waits
#            for (one WAL flush per commit, shared between concurrent commits).
# Each is run PG_CEILING_ROUNDS times (3), taking turns, PG_CEILING_SECONDS each (10); the
# output is one line per run and the medians. Needs the postgresql package (scripts/deps.sh
# installs it for the tests). Runs as root or as any user (tests/pg/cluster.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${PG_CEILING_ROUNDS:-3}
SECONDS_EACH=${PG_CEILING_SECONDS:-10}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qrl-pg-ceiling.XXXXXX")
# The cluster's directory lies inside, and its server may run as another user (postgres).
chmod 755 "$WORK"
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/pgbench" ] || { echo "pg_ceiling: pgbench not found (apt-get install postgresql)" >&2; exit 1; }

cleanup() { "$ROOT/tests/pg/cluster.sh" stop "$WORK/pg" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

URI=$(taskset -c 0 "$ROOT/tests/pg/cluster.sh" start "$WORK/pg")
for q in "shared_buffers = '256MB'" "max_wal_size = '2GB'" "checkpoint_timeout = '5min'" \
  "max_connections = 300" "synchronous_commit = on" "fsync = on" "full_page_writes = on"; do
  psql -X -q "$URI" -c "ALTER SYSTEM SET $q"
done
taskset -c 0 "$ROOT/tests/pg/cluster.sh" restart "$WORK/pg" >/dev/null
"$BIN/pgbench" -i -q -s 10 "$URI" >/dev/null 2>&1

cat >"$WORK/update.sql" <<'EOF'
\set aid random(1, 1000000)
UPDATE pgbench_accounts SET filler = filler WHERE aid = :aid;
EOF

declare -A RES
# run NAME SYNCHRONOUS_COMMIT PGBENCH-ARGS...: one statement per transaction, the commit mode
# set for the session (PGOPTIONS) rather than by a statement of its own.
run() {
  local name=$1 sync=$2
  shift 2
  local tps
  tps=$(PGOPTIONS="-c synchronous_commit=$sync" taskset -c 1 "$BIN/pgbench" -n -M prepared -c 16 -j 2 -T "$SECONDS_EACH" "$@" "$URI" \
    2>/dev/null | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1)
  echo "pg_ceiling: $name: ${tps:-?} transactions/s (load average $(cut -d' ' -f1 /proc/loadavg))"
  RES[$name]+="${tps:-0} "
}
for _ in $(seq "$ROUNDS"); do
  run select on -S
  run update off -f "$WORK/update.sql"
  run durable on -f "$WORK/update.sql"
done
for name in select update durable; do
  # shellcheck disable=SC2086 # a list of numbers
  echo "pg_ceiling: $name median $(printf '%s\n' ${RES[$name]} | sort -g |
    awk '{a[NR]=$1} END { print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2 }')/s"
done
