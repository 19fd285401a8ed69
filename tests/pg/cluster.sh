#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A throwaway PostgreSQL cluster for the tests (tests/pg/README).
#
#   tests/pg/cluster.sh start DIR     initdb a new cluster in DIR, start it on 127.0.0.1 on a free
#                                     port, wait until it accepts connections, print its libpq URI
#                                     (postgresql://postgres@127.0.0.1:PORT/postgres) on stdout
#                                     and into DIR/uri
#   tests/pg/cluster.sh stop DIR      stop it and remove DIR, with any cluster a test
#                                     started inside it (DIR/own/*, tests/pg/it_pg.h)
#   tests/pg/cluster.sh restart DIR   stop it (fast mode) and start it again on the same port
#   tests/pg/cluster.sh down DIR      stop it (fast mode), keeping DIR: the database is away
#   tests/pg/cluster.sh up DIR        start a cluster that is down again, on the same port
#
# The cluster is for tests only: trust authentication, reachable on 127.0.0.1 and through a unix
# socket in DIR, nothing else. It keeps fsync and synchronous commit on, because the durability
# tests rely on a committed answer surviving a crash, and small memory settings, because several
# test servers share it on small machines.
#
# PostgreSQL refuses to run as root: run as root, the script makes DIR owned by the `postgres`
# user and runs the server as that user (runuser); run as anyone else, it runs as that user.
# The binaries come from the newest /usr/lib/postgresql/N/bin, or from $QRL_PG_BINDIR.
#
# Any failure prints what went wrong (with the end of the server log when there is one) on
# stderr and exits non-zero; nothing is ever skipped. stdout carries only the URI.
set -euo pipefail

# A start that does not accept connections within this many seconds is a failure.
START_TIMEOUT=60
# How many ports to try when the one picked at random turns out to be taken.
PORT_TRIES=20
# The file whose presence says DIR is one of our clusters (stop only ever removes those).
MARKER=.qrl-pg-cluster

die() {
  echo "pg/cluster.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start|stop|restart|down|up DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
cmd="$1"
dir="$2"
[ -n "$dir" ] || usage

find_bindir() {
  if [ -n "${QRL_PG_BINDIR:-}" ]; then
    [ -x "$QRL_PG_BINDIR/pg_ctl" ] || die "QRL_PG_BINDIR=$QRL_PG_BINDIR has no pg_ctl"
    echo "$QRL_PG_BINDIR"
    return
  fi
  local best=""
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ ! -x "$d/pg_ctl" ] || [ ! -x "$d/initdb" ]; then continue; fi
    best="$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n 1)"
  done
  [ -n "$best" ] || die "no PostgreSQL server found in /usr/lib/postgresql/*/bin (install the" \
    "postgresql package: scripts/deps.sh)"
  echo "$best"
}

bindir="$(find_bindir)"

# Runs a command as the cluster's owner.
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root, but there is no postgres user to run" \
    "PostgreSQL as (install the postgresql package: scripts/deps.sh)"
  as_owner() { runuser -u postgres -- env LC_ALL=C "$@"; }
  owner=postgres
else
  as_owner() { env LC_ALL=C "$@"; }
  owner="$(id -un)"
fi

# The directory, made absolute (the unix socket path and pg_ctl -D need it).
case "$dir" in
  /*) ;;
  *) dir="$PWD/$dir" ;;
esac
dir="${dir%/}"
data="$dir/data"
log="$dir/server.log"

# Unix socket paths are limited to 107 bytes (sun_path); ours is DIR/.s.PGSQL.PORT.
[ ${#dir} -le 90 ] || die "DIR is too long for a unix socket path (${#dir} > 90 bytes): $dir"

log_tail() {
  if [ -f "$log" ]; then
    echo "pg/cluster.sh: last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
  fi
}

is_running() {
  [ -f "$data/postmaster.pid" ] && as_owner "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1
}

# Starts the cluster in DIR on port $1. Returns 0 when it accepts connections, 3 when the port
# was taken (the caller may try another), and exits on any other failure.
start_on() {
  local port="$1" before=0
  [ -f "$log" ] && before="$(wc -c <"$log")"
  echo "$port" >"$dir/port"
  chown "$owner" "$dir/port"
  # -w waits until the server accepts connections (it runs pg_isready-like checks itself).
  if as_owner "$bindir/pg_ctl" start -D "$data" -l "$log" -w -t "$START_TIMEOUT" -s \
    -o "-p $port" >&2; then
    as_owner "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres -t 10 ||
      { log_tail; die "the cluster in $dir started but does not answer on 127.0.0.1:$port"; }
    return 0
  fi
  # Only what this attempt logged counts (the log is kept across restarts).
  if tail -c "+$((before + 1))" "$log" 2>/dev/null |
    grep -q -e "could not bind" -e "Address already in use" -e "could not create any TCP/IP" &&
    ! is_running; then
    return 3
  fi
  log_tail
  die "the cluster in $dir did not start on port $port"
}

# Prints the URI, and keeps it in DIR/uri for the tests (tests/pg/it_pg.h).
print_uri() {
  local uri
  uri="postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
  echo "$uri" >"$dir/uri.tmp"
  chmod 0644 "$dir/uri.tmp"
  mv "$dir/uri.tmp" "$dir/uri"
  echo "$uri"
}

cmd_start() {
  # What a stop long ago left to remove in the background and did not finish (a reboot).
  local old
  for old in "$(dirname "$dir")/.$(basename "$dir").removing."*; do
    if [ -d "$old" ]; then setsid rm -rf "$old" </dev/null >/dev/null 2>&1 & fi
  done
  if [ -e "$dir" ]; then
    if [ -f "$dir/$MARKER" ]; then
      # A cluster left behind by an interrupted run: it is ours and throwaway, so replace it.
      echo "pg/cluster.sh: replacing the old test cluster in $dir" >&2
      cmd_stop
    elif [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
      die "$dir exists and is not an empty directory nor a test cluster; refusing to use it"
    fi
  fi
  mkdir -p "$dir"
  touch "$dir/$MARKER"
  chown "$owner" "$dir"
  chmod 0700 "$dir"
  as_owner test -w "$dir" || die "$owner cannot write to $dir (is a parent directory closed to" \
    "it?)"

  as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C \
    >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    die "initdb failed in $data"
  }

  cat >>"$data/postgresql.conf" <<EOF

# tests/pg/cluster.sh: a throwaway test cluster.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
# No checkpoint during a test run: every commit is durable in the WAL all the same, and a
# checkpoint syncing the databases of many tests to a slow disk holds up whatever waits for it
# (stopping the cluster, in the end) for tens of seconds. The WAL of a whole run stays far
# below max_wal_size.
checkpoint_timeout = 1d
max_wal_size = 8GB
shared_buffers = 16MB
# A test server opens up to 18 connections (a pool of 16, a listener, a probe), two nodes twice
# that, and ctest -j runs as many test programs as there are cores.
max_connections = 400
dynamic_shared_memory_type = posix
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] '
EOF

  local try port rc
  for ((try = 0; try < PORT_TRIES; try++)); do
    port=$((20000 + RANDOM % 40000))
    # QRL_PG_PORT: the first port to try (to test the retry, or to pin a port by hand).
    if [ "$try" -eq 0 ] && [ -n "${QRL_PG_PORT:-}" ]; then port="$QRL_PG_PORT"; fi
    rc=0
    start_on "$port" || rc=$?
    if [ "$rc" -eq 0 ]; then
      print_uri
      return 0
    fi
    echo "pg/cluster.sh: port $port is taken, trying another" >&2
  done
  log_tail
  die "no free port found after $PORT_TRIES tries"
}

cmd_down() {
  [ -f "$dir/$MARKER" ] || die "$dir is not a test cluster (no $MARKER)"
  if is_running; then
    as_owner "$bindir/pg_ctl" stop -D "$data" -m fast -w -t "$START_TIMEOUT" -s >&2 ||
      { log_tail; die "the cluster in $dir did not stop"; }
  fi
}

cmd_up() {
  [ -f "$dir/$MARKER" ] || die "$dir is not a test cluster (no $MARKER)"
  [ -f "$dir/port" ] || die "$dir has no port file"
  is_running && die "the cluster in $dir is already running"
  local port rc=0
  port="$(cat "$dir/port")"
  start_on "$port" || rc=$?
  if [ "$rc" -ne 0 ]; then
    log_tail
    die "port $port was taken while the cluster in $dir was down"
  fi
}

cmd_stop() {
  if [ ! -e "$dir" ]; then
    echo "pg/cluster.sh: no cluster in $dir, nothing to stop" >&2
    return 0
  fi
  [ -f "$dir/$MARKER" ] || die "$dir is not a test cluster (no $MARKER); not removing it"
  # Clusters of tests that restart their database (they stop them themselves, unless killed).
  local own
  for own in "$dir"/own/*; do
    if [ -f "$own/$MARKER" ]; then
      "$0" stop "$own" || die "could not stop the test's own cluster in $own"
    fi
  done
  local t0=$SECONDS
  if [ -f "$data/postmaster.pid" ]; then
    # Immediate mode: the files are removed next, so the shutdown checkpoint of fast mode would
    # only sync every database the tests made to a disk about to forget them (tens of seconds
    # after a whole test run). pg_ctl fails when the server is already gone (a stale pid
    # file): only a running one is a failure.
    if ! as_owner "$bindir/pg_ctl" stop -D "$data" -m immediate -w -t "$START_TIMEOUT" -s >&2 &&
      is_running; then
      log_tail
      die "the cluster in $dir did not stop"
    fi
  fi
  # DIR goes at once; its files go in the background. After a whole test run they are some
  # 15,000 files, and deleting them waits for the kernel to finish writing them out: ten
  # seconds or more on a busy machine, for nothing anyone waits on.
  local trash
  trash="$(dirname "$dir")/.$(basename "$dir").removing.$$"
  mv "$dir" "$trash" || die "cannot move $dir out of the way"
  setsid rm -rf "$trash" </dev/null >/dev/null 2>&1 &
  echo "pg/cluster.sh: stopped and removed $dir in $((SECONDS - t0)) s" >&2
}

case "$cmd" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart)
    cmd_down
    cmd_up
    ;;
  down) cmd_down ;;
  up) cmd_up ;;
  *) usage ;;
esac
