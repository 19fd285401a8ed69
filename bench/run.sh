#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The qrlogin benchmark suite, in one command: installs the Debian packages it needs (only those
# missing), builds a Release qrlogin in build/bench plus the bench programs (ceiling, loadgen),
# runs every scenario and prints one table. Method (bench/README.md has the why):
# - the server under test is pinned to CPU 0 (taskset -c 0), the load generator to CPU 1;
# - every scenario starts a fresh server on a fresh database in build/bench/run/ (on disk, so
#   every write is as durable as in production); bulk setup data (tens of thousands of pending
#   login requests) is made through the real HTTP API by a setup server whose database lives on
#   /dev/shm, then copied to disk for the measured server;
# - loopback only (127.0.0.1, and 127.0.0.2... as extra client source addresses);
# - throughput: one warm-up run, then BENCH_RUNS timed runs; the table shows the median. The
#   three throughput scenarios (device authorization, pending poll, full flows) take turns, run
#   by run, each on its own server kept up meanwhile, so that a slow period of the shared
#   machine falls on a run or two of each rather than on every run of one;
# - the same wrk scripts are run against bench/ceiling.c, a trivial libmicrohttpd responder with
#   qrlogin's daemon flags, kept running next to every scenario: each timed run follows a
#   ceiling run with the same script, and each throughput is also shown as the median fraction;
# - every loop is bounded in count and in time; the whole suite takes about 6 minutes.
# With --db postgres it runs the same scenarios against the PostgreSQL store instead, on one node
# and on two nodes sharing one database, side by side with SQLite in the same turns (see
# "PostgreSQL" below and bench/README.md); without it, or with --db sqlite, what is above.
# Knobs (environment): BENCH_RUNS (5), BENCH_DURATION (5 s), BENCH_WARMUP (2 s), BENCH_CONNS
# (64 wrk connections), BENCH_THREADS (server worker threads, also the ceiling's; default: what
# qrlogin serve uses by default), BENCH_HELD (19000), BENCH_SOURCES
# (64 client addresses), BENCH_WAKE_BACKGROUND (10000), BENCH_WAKE_SAMPLES (1000),
# BENCH_FLOW_CONC (256), BENCH_PROFILE=1 (also perf-record the server in each throughput
# scenario), BENCH_QUICK=1 (a small, fast smoke run; its numbers are not the benchmark).
# PostgreSQL mode only: BENCH_PG_CPU (0: the CPU PostgreSQL runs on), BENCH_PG_SHARED_BUFFERS
# (256MB), BENCH_PG_MAX_WAL_SIZE (2GB), BENCH_PG_POOL (connections per node; default: the
# store's own), BENCH_PG_POLL_CODES (200000), BENCH_PG_SETUP_S (120), BENCH_PG_WITH_SQLITE (1:
# also run SQLite in the same turns), BENCH_PG_HELD (1: the held-requests scenario on one node),
# BENCH_PG_STATS=1 (load pg_stat_statements and keep its top statements), BENCH_PG_KEEP=1
# (leave the cluster running at the end, for EXPLAIN and the like).
set -euo pipefail

DB_MODE=sqlite
while [ $# -gt 0 ]; do
  case "$1" in
    --db)
      [ $# -ge 2 ] || { echo "usage: $0 [--db sqlite|postgres]" >&2; exit 2; }
      DB_MODE=$2
      shift 2
      ;;
    --db=*)
      DB_MODE=${1#--db=}
      shift
      ;;
    -h | --help)
      echo "usage: $0 [--db sqlite|postgres]   (bench/README.md)"
      exit 0
      ;;
    *)
      echo "usage: $0 [--db sqlite|postgres]" >&2
      exit 2
      ;;
  esac
done
case "$DB_MODE" in
  sqlite | postgres) ;;
  postgresql) DB_MODE=postgres ;;
  *)
    echo "$0: --db takes sqlite or postgres, not '$DB_MODE'" >&2
    exit 2
    ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
BUILD=$ROOT/build/bench
WORK=$BUILD/run
if [ "$DB_MODE" = postgres ]; then WORK=$BUILD/run-pg; fi

RUNS=${BENCH_RUNS:-5}
DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-64}
THREADS=${BENCH_THREADS:-} # default: qrlogin serve's own default, read from its --help
HELD=${BENCH_HELD:-19000}
SOURCES=${BENCH_SOURCES:-64}
WAKE_BG=${BENCH_WAKE_BACKGROUND:-10000}
WAKE_SAMPLES=${BENCH_WAKE_SAMPLES:-1000}
FLOW_CONC=${BENCH_FLOW_CONC:-256}
PROFILE=${BENCH_PROFILE:-0}
HELD_WARM=2000    # plain polls before the RSS baseline of the held scenario
POLL_SETUP_S=120  # at most this long making login requests for the poll scenario
PG_CPU=${BENCH_PG_CPU:-0}
PG_SHARED_BUFFERS=${BENCH_PG_SHARED_BUFFERS:-256MB}
PG_MAX_WAL_SIZE=${BENCH_PG_MAX_WAL_SIZE:-2GB}
PG_POOL=${BENCH_PG_POOL:-}
PG_POLL_CODES=${BENCH_PG_POLL_CODES:-200000}
PG_SETUP_S=${BENCH_PG_SETUP_S:-120}
PG_WITH_SQLITE=${BENCH_PG_WITH_SQLITE:-1}
PG_HELD=${BENCH_PG_HELD:-1}
PG_STATS=${BENCH_PG_STATS:-0}
PG_KEEP=${BENCH_PG_KEEP:-0}
SQ_POLL_CODES=1200000
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  RUNS=1 DURATION=2 WARMUP=1 HELD=2000 WAKE_BG=1000 WAKE_SAMPLES=100 POLL_SETUP_S=10
  HELD_WARM=500 PG_POLL_CODES=40000 PG_SETUP_S=20 SQ_POLL_CODES=100000
fi

SERVER_CPU=0
CLIENT_CPU=1
QRL=$BUILD/qrlogin
CEILING=$BUILD/ceiling
LOADGEN=$BUILD/loadgen

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Packages and build

deps() {
  # What the Release build links (CMakeLists.txt) plus wrk. Kept in step with scripts/deps.sh,
  # without the test-only packages (cmocka, Node.js).
  local pkgs=(build-essential cmake pkg-config libsqlite3-dev libsodium-dev libmicrohttpd-dev
    libjansson-dev libcurl4-openssl-dev libqrencode-dev libpng-dev libzbar-dev libfido2-dev
    libcbor-dev libssl-dev libpq-dev wrk util-linux)
  # The PostgreSQL mode also runs a throwaway cluster (tests/pg/cluster.sh) and psql, which
  # come with the package of the server.
  if [ "$DB_MODE" = postgres ]; then pkgs+=(postgresql); fi
  local missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {
  log "building Release qrlogin in build/bench"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DQRL_TEST_HOOKS=OFF \
    -DQRL_BUILD_TESTS=OFF >"$BUILD.cmake.log" 2>&1 || { cat "$BUILD.cmake.log" >&2; exit 1; }
  cmake --build "$BUILD" -j"$(nproc)" --target qrlogin >"$BUILD.build.log" 2>&1 ||
    { tail -40 "$BUILD.build.log" >&2; exit 1; }
  local cflags=(-std=c17 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Wformat=2)
  # shellcheck disable=SC2046
  cc "${cflags[@]}" -o "$CEILING" "$BENCH/ceiling.c" $(pkg-config --cflags --libs libmicrohttpd) \
    -lpthread
  # shellcheck disable=SC2046
  cc "${cflags[@]}" -o "$LOADGEN" "$BENCH/loadgen.c" $(pkg-config --cflags --libs libsodium)
}

# ---------------------------------------------------------------------------------------------
# Processes. Every process this script starts is recorded and ended by its pid on exit.

PIDS=()
START_ENV=() # extra environment of the next start_qrlogin
SERVER_PID=""
SERVER_PORT=""
SHM=""
PG_DIR="" # the PostgreSQL mode's cluster, stopped and removed on exit (unless BENCH_PG_KEEP=1)

cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  sleep 0.2
  for p in "${PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
  done
  [ -n "$SHM" ] && rm -rf "$SHM"
  if [ -n "$PG_DIR" ] && [ "$PG_KEEP" != 1 ]; then
    "$ROOT/tests/pg/cluster.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_listening NAME: waits (10 s at most) for the "listening on" line of $WORK/NAME.out.
wait_listening() {
  local name=$1 i
  for i in $(seq 1 200); do
    if grep -q "listening on" "$WORK/$name.out" 2>/dev/null; then
      SERVER_PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' \
        "$WORK/$name.out" | head -1)
      [ -n "$SERVER_PORT" ] && return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/$name.err" >&2; die "$name did not start"; }
    sleep 0.05
  done
  die "$name did not start listening within 10 s"
}

# start_qrlogin NAME DB [serve options...]: a fresh server on CPU 0, any free port.
start_qrlogin() {
  local name=$1 db=$2
  shift 2
  # Every request comes from 127.0.0.1: the rate limits and the per-address connection cap
  # (on by default) would measure themselves, not the server. Variables, which builds from
  # before those options ignore; flags given after them (the held scenarios' cap) still win.
  env QRLOGIN_RATE_LIMITS=off QRLOGIN_PER_IP_LIMIT=0 "${START_ENV[@]}" \
    taskset -c "$SERVER_CPU" "$QRL" serve --listen 127.0.0.1:0 --db "$db" \
    --threads "$THREADS" --request-ttl 3600 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_listening "$name"
}

start_ceiling() {
  taskset -c "$SERVER_CPU" "$CEILING" --listen 127.0.0.1:0 --threads "$THREADS" \
    >"$WORK/ceiling.out" 2>"$WORK/ceiling.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_listening ceiling
}

# stop_server: SIGTERM, 20 s to exit, then SIGKILL.
stop_server() {
  local i
  [ -z "$SERVER_PID" ] && return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for i in $(seq 1 200); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# new_db DIR: a fresh database with the account "bench" (password in $WORK/password).
new_db() {
  rm -rf "$1"
  mkdir -p "$1"
  "$QRL" account add bench --db "$1/qrlogin.db" --password-stdin <"$WORK/password" \
    >/dev/null 2>&1 || die "cannot create the bench account in $1"
}

client() { taskset -c "$CLIENT_CPU" "$@"; }

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
  if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

# kv FILE KEY: the value of KEY=... in a loadgen output file.
kv() { sed -n "s/^$2=//p" "$1" | tail -1; }
# bench_field LINE KEY: the value of KEY=... in a "BENCH ..." line of the wrk scripts.
bench_field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# CPU accounting around a measurement, from /proc: "wall cpu0_busy cpu1_busy server_ticks".
# The server is pinned to CPU 0, so CPU 0's busy time minus the server's is what other
# processes took from it: a run with much of that is not a clean measurement.
cpu_snap() {
  local busy srv
  busy=$(awk '$1 == "cpu0" || $1 == "cpu1" { printf "%d ", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
  srv=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0)
  echo "$(date +%s.%N) $busy$srv"
}
# cpu_diff "SNAP0" "SNAP1": "server% others-on-cpu0% cpu1%" (of one CPU each).
cpu_diff() {
  awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { split(a, x, " "); split(b, y, " ");
    w = (y[1] - x[1]) * hz; if (w <= 0) w = 1; srv = y[4] - x[4];
    printf "%.0f %.0f %.0f\n", 100 * srv / w, 100 * (y[2] - x[2] - srv) / w, 100 * (y[3] - x[3]) / w }'
}

# wrk_once OUTFILE SECONDS PATH SCRIPT [script args]: one wrk run against SERVER_PORT; the CPU
# use during it goes to OUTFILE.cpu. The scripts snapshot the CPU themselves at the end of
# their init() and in done() (wrk/cpuwin.lua: the "CPUWIN" lines), so that the window is wrk's
# timed run alone and not the seconds poll.lua spends reading its codes before it; the
# snapshots around the whole process are the fallback.
wrk_once() {
  local out=$1 secs=$2 path=$3 script=$4 c0 c1 win
  shift 4
  c0=$(cpu_snap)
  BENCH_SERVER_PID=$SERVER_PID client wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 10s \
    -s "$script" "http://127.0.0.1:$SERVER_PORT$path" -- "$@" >"$out" 2>&1 || true
  c1=$(cpu_snap)
  mapfile -t win < <(sed -n 's/^CPUWIN //p' "$out")
  if [ "${#win[@]}" = 2 ]; then
    c0=${win[0]} c1=${win[1]}
  else
    log "warning: no CPU window in $out; CPU use is over the whole wrk process"
  fi
  cpu_diff "$c0" "$c1" >"$out.cpu"
}
rps_of() { sed -n 's/^Requests\/sec:[[:space:]]*//p' "$1"; }
bench_line_of() { grep '^BENCH ' "$1" | tail -1; }

# run_files PREFIX: sets RUN_FILES to the outputs of the timed runs, PREFIX-1.txt ...
run_files() {
  local i
  RUN_FILES=()
  for i in $(seq 1 "$RUNS"); do RUN_FILES+=("$1-$i.txt"); done
}

# cpu_summary NAME FILES...: over the runs whose outputs are FILES (each with FILE.cpu and a
# rate: wrk's Requests/sec or loadgen's flows), the median server CPU %, the most other processes
# took of CPU 0, the median CPU 1 use, and the median rate per second of server CPU time.
cpu_summary() {
  local name=$1 f a b c rate srv=() c1=() eff=() worst=0
  shift
  for f in "$@"; do
    read -r a b c <"$f.cpu"
    rate=$(rps_of "$f")
    [ -z "$rate" ] && rate=${R[$name]:-0}
    srv+=("$a")
    c1+=("$c")
    eff+=("$(awk -v r="$rate" -v s="$a" 'BEGIN { if (s > 0) printf "%.0f", r * 100 / s; else print 0 }')")
    [ "$b" -gt "$worst" ] && worst=$b
  done
  R[${name}_cpu]=$(median "${srv[@]}")
  R[${name}_others]=$worst
  R[${name}_cpu1]=$(median "${c1[@]}")
  R[${name}_eff]=$(median "${eff[@]}")
}

# profile_start NAME / profile_stop: optional perf record of the server during one run.
PERF_PID=""
profile_start() {
  [ "$PROFILE" = 1 ] || return 0
  command -v perf >/dev/null || return 0
  perf record -F 999 -g -p "$SERVER_PID" -o "$WORK/$1.perf.data" >/dev/null 2>&1 &
  PERF_PID=$!
  PIDS+=("$PERF_PID")
}
profile_stop() {
  [ -n "$PERF_PID" ] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=""
}

# ---------------------------------------------------------------------------------------------
# Scenarios

declare -A R # results

# The ceiling server runs for the whole suite next to the scenario servers (idle when not
# measured, on the same CPU), and each timed run of a scenario follows a run of the ceiling
# with the same script: this machine's speed moves by up to 2x within minutes, so only rates
# measured side by side make a meaningful fraction.
CEIL_PID=""
CEIL_PORT=""
start_ceiling_server() {
  log "ceiling: bench/ceiling.c, trivial libmicrohttpd responder, kept running next to each scenario"
  # The poll script needs a codes file; the ceiling ignores the codes, so made-up ones of the
  # real length do.
  awk 'BEGIN { srand(1); for (i = 0; i < 100000; i++) { s = "qrl_dc_";
         for (j = 0; j < 54; j++) s = s sprintf("%c", 97 + int(rand() * 26));
         print s, "qrl_ss_x", "BCDF-GHJK" } }' >"$WORK/fake-codes.txt"
  start_ceiling
  CEIL_PID=$SERVER_PID
  CEIL_PORT=$SERVER_PORT
  SERVER_PID=""
  SERVER_PORT=""
}

# ceiling_once OUTFILE SECONDS PATH SCRIPT [script args]: wrk_once against the ceiling.
ceiling_once() {
  local pid=$SERVER_PID port=$SERVER_PORT
  SERVER_PID=$CEIL_PID
  SERVER_PORT=$CEIL_PORT
  wrk_once "$@"
  SERVER_PID=$pid
  SERVER_PORT=$port
}

# ceiling_pair KEY I PATH SCRIPT [args]: the ceiling's run I (of key KEY) before a scenario run.
ceiling_pair() {
  local key=$1 i=$2
  shift 2
  ceiling_once "$WORK/ceiling-$key-$i.txt" "$DURATION" "$@"
}

# ceiling_summary KEY: the ceiling's median rate, its runs and CPU use, from its paired runs.
ceiling_summary() {
  local key=$1 i rates=()
  for i in $(seq 1 "$RUNS"); do rates+=("$(rps_of "$WORK/ceiling-$key-$i.txt")"); done
  R[ceiling_$key]=$(median "${rates[@]}")
  R[ceiling_${key}_runs]="${rates[*]}"
  run_files "$WORK/ceiling-$key"
  cpu_summary "ceiling_$key" "${RUN_FILES[@]}"
  log "ceiling ($key script): ${rates[*]} req/s"
}

# ratio_summary NAME KEY: the median over the runs of (scenario rate / ceiling rate of the run
# just before it), as R[NAME_frac].
ratio_summary() {
  local name=$1 key=$2 i fr=()
  for i in $(seq 1 "$RUNS"); do
    fr+=("$(awk -v a="$(rps_of "$WORK/$name-$i.txt")" -v b="$(rps_of "$WORK/ceiling-$key-$i.txt")"       'BEGIN { if (b + 0 > 0) printf "%.4f", a / b; else print "nan" }')")
  done
  R[${name}_frac]=$(median "${fr[@]}")
  R[${name}_fracs]="${fr[*]}"
}

# The three throughput scenarios take turns, run by run: each has its own server, kept up for
# all of them, and round i runs device authorization, the poll and the flows once each. This
# machine's speed moves by up to 2x for minutes at a time; in turns, a slow period falls on a
# run or two of every scenario instead of on all the runs of one, and the medians hold.

# use_server PID PORT: the server the next runs and CPU snapshots are about.
use_server() {
  SERVER_PID=$1
  SERVER_PORT=$2
}

# settle: waits (at most 5 s) until the server has used no CPU for 300 ms, so that a write-back
# or checkpoint one run left behind is not measured in the next (of another scenario).
settle() {
  local i a b
  b=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0)
  for i in $(seq 1 16); do
    sleep 0.3
    a=$b
    b=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat" 2>/dev/null || echo 0)
    [ "$a" = "$b" ] && return 0
  done
  return 0
}

DA_PID="" DA_PORT="" DA_OK=0 DA_BAD=0
device_auth_start() {
  log "scenario: device authorization (wrk, $CONNS connections)"
  new_db "$WORK/device_auth"
  start_qrlogin device_auth "$WORK/device_auth/qrlogin.db"
  DA_PID=$SERVER_PID DA_PORT=$SERVER_PORT
  ceiling_once "$WORK/ceiling-device_auth-warm.txt" "$WARMUP" /oauth/device_authorization \
    "$BENCH/wrk/device_auth.lua"
  wrk_once "$WORK/device_auth-warm.txt" "$WARMUP" /oauth/device_authorization \
    "$BENCH/wrk/device_auth.lua"
  settle
}

device_auth_run() {
  local i=$1 line
  use_server "$DA_PID" "$DA_PORT"
  ceiling_pair device_auth "$i" /oauth/device_authorization "$BENCH/wrk/device_auth.lua"
  [ "$i" = 1 ] && profile_start device_auth
  wrk_once "$WORK/device_auth-$i.txt" "$DURATION" /oauth/device_authorization \
    "$BENCH/wrk/device_auth.lua"
  [ "$i" = 1 ] && profile_stop
  line=$(bench_line_of "$WORK/device_auth-$i.txt")
  DA_OK=$((DA_OK + $(bench_field "$line" ok)))
  DA_BAD=$((DA_BAD + $(bench_field "$line" other) + $(bench_field "$line" errors)))
  R[device_auth_p99_us_$i]=$(bench_field "$line" p99_us)
  log "device authorization, run $i: $(rps_of "$WORK/device_auth-$i.txt") req/s"
  settle
}

device_auth_finish() {
  local i rates=()
  use_server "$DA_PID" "$DA_PORT"
  stop_server
  for i in $(seq 1 "$RUNS"); do rates+=("$(rps_of "$WORK/device_auth-$i.txt")"); done
  R[device_auth]=$(median "${rates[@]}")
  R[device_auth_runs]="${rates[*]}"
  run_files "$WORK/device_auth"
  cpu_summary device_auth "${RUN_FILES[@]}"
  ceiling_summary device_auth
  ratio_summary device_auth device_auth
  R[device_auth_ok]=$DA_OK
  R[device_auth_bad]=$DA_BAD
  log "device authorization: ${rates[*]} req/s ($DA_BAD non-200 or socket errors)"
}

POLL_PID="" POLL_PORT="" POLL_P=0 POLL_O=0 POLL_R=0
poll_start() {
  local line target created
  log "scenario: pending poll (wrk, $CONNS connections, distinct device codes)"
  # Enough codes that no code is polled twice within 5 s: two segments (runs alternate between
  # them) of 5 s each at 120,000 polls a second; wrk has driven 87,000 here (a run that came
  # round to its codes again would measure slow_down answers). Bounded by POLL_SETUP_S seconds
  # of setup.
  target=1200000
  # The server that answers the polls is the one that made the requests, on disk, as a screen's
  # requests are made and polled on one server; what it answers from memory is measured here.
  # The first poll of each code after a restart (a store read) is measured last.
  new_db "$WORK/poll"
  start_qrlogin poll "$WORK/poll/qrlogin.db"
  POLL_PID=$SERVER_PID POLL_PORT=$SERVER_PORT
  client "$LOADGEN" create --port "$SERVER_PORT" --n "$target" --conc 64 \
    --out "$WORK/poll-codes.txt" --time-limit "$POLL_SETUP_S" >"$WORK/poll-setup.txt" || true
  created=$(kv "$WORK/poll-setup.txt" created)
  log "poll setup: $created login requests (target $target) at $(kv "$WORK/poll-setup.txt" rate)/s"
  R[poll_codes]=$created
  # Making that many requests leaves hundreds of megabytes of the WAL and the database to be
  # written back; let the disk settle so that the runs measure polls, not the setup's writeback.
  sync
  sleep 3
  settle
  # The warm-up classifies every answer (authorization_pending, slow_down, other); the timed
  # runs only count them by status ("count": see wrk/poll.lua), all of which must be 400.
  ceiling_once "$WORK/ceiling-poll-warm.txt" "$WARMUP" /oauth/token "$BENCH/wrk/poll.lua" \
    "$WORK/fake-codes.txt" 0 1 1 count
  wrk_once "$WORK/poll-warm.txt" "$WARMUP" /oauth/token "$BENCH/wrk/poll.lua" \
    "$WORK/poll-codes.txt" 0 2
  line=$(bench_line_of "$WORK/poll-warm.txt")
  R[poll_warm_pending]=$(bench_field "$line" pending)
  R[poll_warm_other]=$(($(bench_field "$line" slow_down) + $(bench_field "$line" other400) + \
    $(bench_field "$line" ok200) + $(bench_field "$line" other) + $(bench_field "$line" errors)))
}

poll_run() {
  local i=$1 line seg=$(($1 % 2))
  use_server "$POLL_PID" "$POLL_PORT"
  ceiling_pair poll "$i" /oauth/token "$BENCH/wrk/poll.lua" "$WORK/fake-codes.txt" 0 1 1 count
  [ "$i" = 1 ] && profile_start poll
  wrk_once "$WORK/poll-$i.txt" "$DURATION" /oauth/token "$BENCH/wrk/poll.lua" \
    "$WORK/poll-codes.txt" "$seg" 2 1 count
  [ "$i" = 1 ] && profile_stop
  line=$(bench_line_of "$WORK/poll-$i.txt")
  POLL_P=$((POLL_P + $(bench_field "$line" non2xx)))
  POLL_O=$((POLL_O + $(bench_field "$line" answers) - $(bench_field "$line" non2xx) + \
    $(bench_field "$line" errors)))
  POLL_R=$((POLL_R + $(bench_field "$line" reuse)))
  log "pending poll, run $i: $(rps_of "$WORK/poll-$i.txt") req/s"
  settle
}

poll_finish() {
  local i line rates=()
  use_server "$POLL_PID" "$POLL_PORT"
  stop_server
  for i in $(seq 1 "$RUNS"); do rates+=("$(rps_of "$WORK/poll-$i.txt")"); done
  R[poll]=$(median "${rates[@]}")
  R[poll_runs]="${rates[*]}"
  run_files "$WORK/poll"
  cpu_summary poll "${RUN_FILES[@]}"
  ceiling_summary poll
  ratio_summary poll poll
  R[poll_pending]=$POLL_P
  R[poll_bad]=$POLL_O
  R[poll_reuse]=$POLL_R
  log "pending poll: ${rates[*]} req/s; warm-up answers: ${R[poll_warm_pending]}" \
    "authorization_pending, ${R[poll_warm_other]} other; timed answers: $POLL_P 400, $POLL_O other;" \
    "$POLL_R codes reused within 5 s"
  # After a restart nothing is known in memory: every poll reads the store (cold caches too).
  start_qrlogin poll-cold "$WORK/poll/qrlogin.db"
  ceiling_once "$WORK/ceiling-poll-cold.txt" "$DURATION" /oauth/token "$BENCH/wrk/poll.lua" \
    "$WORK/fake-codes.txt" 0 1 1 count
  wrk_once "$WORK/poll-cold.txt" "$DURATION" /oauth/token "$BENCH/wrk/poll.lua" \
    "$WORK/poll-codes.txt" $(((RUNS + 1) % 2)) 2
  stop_server
  R[poll_cold]=$(rps_of "$WORK/poll-cold.txt")
  R[poll_cold_frac]=$(awk -v a="${R[poll_cold]}" -v b="$(rps_of "$WORK/ceiling-poll-cold.txt")" \
    'BEGIN { if (b + 0 > 0) printf "%.4f", a / b; else print "nan" }')
  line=$(bench_line_of "$WORK/poll-cold.txt")
  R[poll_cold_pending]=$(bench_field "$line" pending)
  R[poll_cold_other]=$(($(bench_field "$line" slow_down) + $(bench_field "$line" other400) + \
    $(bench_field "$line" ok200) + $(bench_field "$line" other) + $(bench_field "$line" errors)))
  log "pending poll after a restart: ${R[poll_cold]} req/s; ${R[poll_cold_pending]} pending," \
    "${R[poll_cold_other]} other"
}

# The held and wake scenarios share one setup database of pending login requests.
setup_held_codes() {
  local n=$((HELD_WARM + HELD))
  [ "$WAKE_BG" -gt "$n" ] && n=$WAKE_BG
  log "setup: $n pending login requests for the held and wake scenarios"
  new_db "$SHM/held"
  start_qrlogin held-setup "$SHM/held/qrlogin.db"
  client "$LOADGEN" create --port "$SERVER_PORT" --n "$n" --conc 64 \
    --out "$WORK/held-codes.txt" --time-limit 60 >"$WORK/held-setup.txt" ||
    die "setup of held requests failed: $(cat "$WORK/held-setup.txt")"
  stop_server
}

# The held-request scenarios set every connection limit explicitly (the issue asks for it).
HELD_ENV=()
held_flags() {
  local per_ip=$(((HELD + SOURCES - 1) / SOURCES + 32))
  HELD_FLAGS=(--max-connections $((HELD + 600)) --connection-memory 8192 --connection-timeout 30
    --per-ip-limit "$per_ip")
  # Some builds of qrlogin serve do not take these options on the command line (a bug, see
  # docs/benchmarks.md): fall back to their environment variables, which every build reads.
  if ! "$QRL" serve "${HELD_FLAGS[@]}" --help >/dev/null 2>&1; then
    log "qrlogin serve rejects --max-connections & co.; passing them as QRLOGIN_* variables"
    HELD_ENV=(QRLOGIN_MAX_CONNECTIONS=$((HELD + 600)) QRLOGIN_CONNECTION_MEMORY=8192
      QRLOGIN_CONNECTION_TIMEOUT=30 "QRLOGIN_PER_IP_LIMIT=$per_ip")
    HELD_FLAGS=()
  fi
}

run_held() {
  log "scenario: $HELD held requests (Prefer: wait=60) from $SOURCES client addresses"
  rm -rf "$WORK/held"
  mkdir -p "$WORK/held"
  cp "$SHM/held/qrlogin.db" "$WORK/held/qrlogin.db"
  START_ENV=("${HELD_ENV[@]}")
  start_qrlogin held "$WORK/held/qrlogin.db" "${HELD_FLAGS[@]}"
  START_ENV=()
  client "$LOADGEN" held --port "$SERVER_PORT" --codes "$WORK/held-codes.txt" --n "$HELD" \
    --warm-polls "$HELD_WARM" --pid "$SERVER_PID" --sources "$SOURCES" --wait 60 --settle 2 \
    --cpu-window 3 --time-limit 45 --shutdown-check >"$WORK/held.txt" 2>"$WORK/held.log" || true
  stop_server
  cat "$WORK/held.log" >&2
}

run_wake() {
  log "scenario: wake latency ($WAKE_SAMPLES samples, $WAKE_BG other held requests)"
  rm -rf "$WORK/wake"
  mkdir -p "$WORK/wake"
  cp "$SHM/held/qrlogin.db" "$WORK/wake/qrlogin.db"
  START_ENV=("${HELD_ENV[@]}")
  start_qrlogin wake "$WORK/wake/qrlogin.db" "${HELD_FLAGS[@]}"
  START_ENV=()
  client "$LOADGEN" wake --port "$SERVER_PORT" --codes "$WORK/held-codes.txt" \
    --background "$WAKE_BG" --samples "$WAKE_SAMPLES" --warm-samples 50 --sources "$SOURCES" \
    --user bench --password-file "$WORK/password" --settle 1 --time-limit 50 \
    >"$WORK/wake.txt" 2>"$WORK/wake.log" || true
  stop_server
  cat "$WORK/wake.log" >&2
}

# Each run of the flows is its own loadgen: it signs in (two Argon2id checks), warms up for a
# second with the flows in flight, then measures; its CPU use is accounted over all of that.
# Each follows a ceiling run of the device-auth script, as in the other scenarios.
FLOWS_PID="" FLOWS_PORT="" FLOWS_ERRORS=0
flows_start() {
  log "scenario: full flows ($FLOW_CONC in flight)"
  new_db "$WORK/flows"
  start_qrlogin flows "$WORK/flows/qrlogin.db"
  FLOWS_PID=$SERVER_PID FLOWS_PORT=$SERVER_PORT
  client "$LOADGEN" flows --port "$SERVER_PORT" --conc "$FLOW_CONC" --user bench \
    --password-file "$WORK/password" --warmup "$WARMUP" --runs 1 --duration 1 \
    >"$WORK/flows-warm.txt" 2>"$WORK/flows-warm.log" || true
  settle
}

flows_run() {
  local i=$1 c0 f=$WORK/flows-$1.txt
  use_server "$FLOWS_PID" "$FLOWS_PORT"
  ceiling_once "$WORK/ceiling-flows-$i.txt" "$DURATION" /oauth/device_authorization \
    "$BENCH/wrk/device_auth.lua"
  [ "$i" = 1 ] && profile_start flows
  c0=$(cpu_snap)
  client "$LOADGEN" flows --port "$SERVER_PORT" --conc "$FLOW_CONC" --user bench \
    --password-file "$WORK/password" --warmup 1 --runs 1 --duration "$DURATION" \
    >"$f" 2>"$WORK/flows-$i.log" || true
  cpu_diff "$c0" "$(cpu_snap)" >"$f.cpu"
  [ "$i" = 1 ] && profile_stop
  FLOWS_ERRORS=$((FLOWS_ERRORS + $(kv "$f" flows_errors | grep . || echo 1)))
  log "full flows, run $i: $(kv "$f" flows_run1) flows/s"
  settle
}

flows_finish() {
  local i med rates=() cr=() fr=()
  use_server "$FLOWS_PID" "$FLOWS_PORT"
  stop_server
  cat "$WORK/flows-1.log" >&2
  for i in $(seq 1 "$RUNS"); do
    rates+=("$(kv "$WORK/flows-$i.txt" flows_run1)")
    cr+=("$(rps_of "$WORK/ceiling-flows-$i.txt")")
    fr+=("$(awk -v a="${rates[$((i - 1))]}" -v b="${cr[$((i - 1))]}" \
      'BEGIN { if (b + 0 > 0) printf "%.4f", a / b; else print "nan" }')")
  done
  med=$(median "${rates[@]}")
  # The report's per-step latencies are those of the median run.
  rm -f "$WORK/flows.txt"
  for i in $(seq 1 "$RUNS"); do
    if [ ! -f "$WORK/flows.txt" ] && [ "${rates[$((i - 1))]}" = "$med" ]; then
      cp "$WORK/flows-$i.txt" "$WORK/flows.txt"
    fi
  done
  [ -f "$WORK/flows.txt" ] || cp "$WORK/flows-1.txt" "$WORK/flows.txt"
  R[flows]=$med
  R[flows_runs]="${rates[*]}"
  R[flows_errors]=$FLOWS_ERRORS
  R[ceiling_flows]=$(median "${cr[@]}")
  R[ceiling_flows_runs]="${cr[*]}"
  R[flows_frac]=$(median "${fr[@]}")
  R[flows_fracs]="${fr[*]}"
  run_files "$WORK/flows"
  cpu_summary flows "${RUN_FILES[@]}"
  log "full flows: ${rates[*]} flows/s"
}

# ---------------------------------------------------------------------------------------------
# Report

machine() {
  local cpu mem fsync
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  fsync=$(dd if=/dev/zero of="$WORK/fsync.probe" bs=4k count=200 oflag=dsync 2>&1 |
    awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i-1) }')
  rm -f "$WORK/fsync.probe"
  R[fsync_ms]=$(awk -v s="$fsync" 'BEGIN { if (s == "") print "?"; else printf "%.2f", s * 1000 / 200 }')
  printf 'machine: %s CPUs (%s), %s, Linux %s; database on %s (%s), O_DSYNC 4 KiB write %s ms\n' \
    "$(nproc)" "$cpu" "$mem" "$(uname -r)" "$(df --output=source "$WORK" | tail -1)" \
    "$(df --output=fstype "$WORK" | tail -1 | tr -d ' ')" "${R[fsync_ms]}"
  printf 'load average before the run: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
}

frac() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "") printf "%.1f %%", 100 * a / b; else print "-" }'; }
pct() { awk -v a="$1" 'BEGIN { if (a == "" || a == "nan") print "-"; else printf "%.1f %%", 100 * a }'; }
num() { awk -v a="$1" 'BEGIN { if (a == "") print "-"; else printf "%.0f", a }'; }

report() {
  local h=$WORK/held.txt w=$WORK/wake.txt f=$WORK/flows.txt cd=${R[ceiling_device_auth]:-}
  local cp=${R[ceiling_poll]:-} flows=${R[flows]:-} cf=${R[ceiling_flows]:-} rss
  rss=$(awk -v b="$(kv "$h" rss_per_held_bytes)" 'BEGIN { if (b == "") print "-"; else printf "%.2f KiB", b / 1024 }')
  echo
  echo "qrlogin benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')"
  machine
  printf 'server: %s worker threads on CPU %s; load generators on CPU %s; %s warm-up + %s x %s s runs, median; the throughput scenarios in turns\n' \
    "$THREADS" "$SERVER_CPU" "$CLIENT_CPU" "${WARMUP}s" "$RUNS" "$DURATION"
  echo
  ms3() { awk -v a="$(kv "$w" "${1}_p50_us")" -v b="$(kv "$w" "${1}_p99_us")" \
    -v c="$(kv "$w" "${1}_p999_us")" 'BEGIN { printf "%.2f / %.2f / %.2f", a / 1000, b / 1000, c / 1000 }'; }
  cpu() { [ -n "${R[${1}_cpu]:-}" ] && echo "${R[${1}_cpu]} % (others ${R[${1}_others]} %)"; }
  row() { printf '| %-46s | %-20s | %-10s | %-22s | %-22s |\n' "$@"; }
  row "measure" "result" "target" "of ceiling" "server CPU 0 (others)"
  printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" "$(printf -- '-%.0s' {1..22})" \
    "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..24})" "$(printf -- '-%.0s' {1..24})"
  row "ceiling, device-auth script (req/s)" "$(num "$cd")" "" "100 %" "$(cpu ceiling_device_auth)"
  row "ceiling, poll script (req/s)" "$(num "$cp")" "" "100 %" "$(cpu ceiling_poll)"
  row "device authorization (req/s)" "$(num "${R[device_auth]:-}")" ">= 25000" \
    "$(pct "${R[device_auth_frac]:-}")" "$(cpu device_auth)"
  row "pending poll (req/s)" "$(num "${R[poll]:-}")" ">= 50000" "$(pct "${R[poll_frac]:-}")" \
    "$(cpu poll)"
  row "  first poll after a restart (req/s)" "$(num "${R[poll_cold]:-}")" "" \
    "$(pct "${R[poll_cold_frac]:-}")" ""
  row "full flows (flows/s; 4 HTTP requests each)" "$(num "$flows")" ">= 3000" \
    "$(pct "${R[flows_frac]:-}") (req: $(pct "$(awk -v f="${R[flows_frac]:-}" 'BEGIN { if (f != "" && f != "nan") print f * 4 }')"))" \
    "$(cpu flows)"
  row "wake latency p50 / p99 / p999 (ms)" "$(ms3 wake)" "<1 / <5" "" ""
  row "  approve sent -> tokens p50 / p99 / p999 (ms)" "$(ms3 approvewake)" "" "" ""
  row "  claim answered -> scanned p50/p99/p999 (ms)" "$(ms3 scanwake)" "" "" ""
  row "held requests (held / opened)" "$(kv "$h" held_unanswered) / $(kv "$h" held_target)" \
    "19000" "" "$(kv "$h" cpu_pct_while_held) % while held"
  row "RSS per held request" "$rss" "<= 10 KiB" "" ""
  row "  of which anonymous (RssAnon)" "$(awk -v b="$(kv "$h" rss_anon_per_held_bytes)" \
    'BEGIN { if (b == "") print "-"; else printf "%.2f KiB", b / 1024 }')" "" "" ""
  echo
  echo "details:"
  echo "  ceiling runs (req/s), each just before the scenario's run of the same number: device-auth script ${R[ceiling_device_auth_runs]:-}; poll script ${R[ceiling_poll_runs]:-}; device-auth script before each run of the flows ${R[ceiling_flows_runs]:-}"
  echo "  of ceiling, run by run: device authorization ${R[device_auth_fracs]:-}; pending poll ${R[poll_fracs]:-}; full flows (flows/s per req/s) ${R[flows_fracs]:-}"
  echo "  device authorization runs (req/s): ${R[device_auth_runs]:-}; non-200 answers or socket errors: ${R[device_auth_bad]:-}"
  echo "  pending poll runs (req/s): ${R[poll_runs]:-}; $((${R[poll_codes]:-0})) distinct device codes;" \
    "warm-up answers: ${R[poll_warm_pending]:-} authorization_pending, ${R[poll_warm_other]:-} other; timed runs (counted by status): ${R[poll_pending]:-} answered 400, ${R[poll_bad]:-} other;" \
    "${R[poll_reuse]:-} polls of a code within 5 s of its previous poll"
  echo "  first poll after a restart: ${R[poll_cold_pending]:-} authorization_pending, ${R[poll_cold_other]:-} other answers"
  echo "  full flows runs (flows/s): ${R[flows_runs]:-}; $(kv "$f" flows_concurrency) in flight; errors: ${R[flows_errors]:-}"
  echo "    per step p50 / p99 (ms): device_auth $(kv "$f" device_auth_p50_ms) / $(kv "$f" device_auth_p99_ms)," \
    "claim $(kv "$f" claim_p50_ms) / $(kv "$f" claim_p99_ms), approve $(kv "$f" approve_p50_ms) / $(kv "$f" approve_p99_ms)," \
    "redeem $(kv "$f" redeem_p50_ms) / $(kv "$f" redeem_p99_ms); whole flow $(kv "$f" flow_p50_ms) / $(kv "$f" flow_p99_ms)"
  echo "  wake: approve response -> held token response (signed; negative = tokens first): min $(kv "$w" wake_min_us) us, max $(kv "$w" wake_max_us) us;" \
    "$(kv "$w" wake_held_before_approve_response) of $(kv "$w" wake_samples) held answers arrived before the approve response;" \
    "errors $(kv "$w" wake_errors); background still held at the end: $(kv "$w" wake_background_still_held) / $(kv "$w" wake_background)"
  echo "    approve sent -> held token response: p50 / p99 / p999 $(kv "$w" approvewake_p50_us) / $(kv "$w" approvewake_p99_us) / $(kv "$w" approvewake_p999_us) us"
  echo "    claim response -> held \"scanned\" answer: p50 / p99 / p999 $(kv "$w" scanwake_p50_us) / $(kv "$w" scanwake_p99_us) / $(kv "$w" scanwake_p999_us) us"
  echo "  held: $(kv "$h" held_sent) sent in $(kv "$h" open_seconds) s, $(kv "$h" held_answered_early) answered early," \
    "$(kv "$h" held_failed) failed, $(kv "$h" connect_errors) connect errors; CPU $(kv "$h" cpu_ticks_while_held) ticks in $(kv "$h" cpu_window_s) s;" \
    "VmRSS $(kv "$h" rss_before_kb) KiB before, $(kv "$h" rss_after_kb) KiB after"
  echo "    of which RssAnon $(kv "$h" rss_anon_before_kb) -> $(kv "$h" rss_anon_after_kb) KiB," \
    "RssFile (file pages mapped, counted once per mapping) $(kv "$h" rss_file_before_kb) -> $(kv "$h" rss_file_after_kb) KiB"
  echo "    at server shutdown: $(kv "$h" shutdown_pending_answers) answered authorization_pending," \
    "$(kv "$h" shutdown_other_answers) other answers, $(kv "$h" shutdown_closed_unanswered) closed without an answer"
  echo "    server options: ${HELD_FLAGS[*]:-} ${HELD_ENV[*]:-}"
  echo "  server CPU 0 (others): the server's use of CPU 0 during the timed runs (median) and the"
  echo "    most that other processes took of CPU 0 in any run; above ~10 % the machine was not quiet."
  local k
  for k in ceiling_device_auth ceiling_poll device_auth poll flows; do
    [ -n "${R[${k}_cpu]:-}" ] || continue
    echo "    $k: per second of server CPU ${R[${k}_eff]}; CPU 1 (load generator and others) ${R[${k}_cpu1]} %"
  done
  if [ "$PROFILE" = 1 ]; then
    echo "  perf profiles: $WORK/*.perf.data (perf report -i FILE --no-children)"
  fi
}

# ---------------------------------------------------------------------------------------------

main() {
  local t0=$SECONDS
  deps
  mkdir -p "$BUILD"
  build
  rm -rf "$WORK"
  mkdir -p "$WORK"
  # Both the server and the load generators may hold ~20,000 sockets.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" -ge $((HELD + 700)) ] ||
    log "warning: open-file limit $(ulimit -n) is low for $HELD held requests"
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    SHM=$(mktemp -d /dev/shm/qrlogin-bench.XXXXXX)
  else
    SHM=$(mktemp -d "$WORK/setup.XXXXXX")
  fi
  head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$WORK/password"
  if [ -z "$THREADS" ]; then
    THREADS=$("$QRL" serve --help 2>&1 | sed -n 's/.*--threads N.*default \([0-9][0-9]*\).*/\1/p')
    [ -n "$THREADS" ] || THREADS=16
  fi
  log "worker threads: $THREADS (server and ceiling)"
  held_flags
  local c0 busy
  c0=$(cpu_snap)
  sleep 1
  busy=$(cpu_diff "$c0" "$(cpu_snap)")
  log "CPU 0 / CPU 1 busy before the run: $(echo "$busy" | awk '{ print $2 " % / " $3 " %" }')"
  echo "$busy" | awk '{ exit !($2 > 10 || $3 > 10) }' &&
    log "warning: the machine is not quiet; see the 'others' column before trusting the numbers"

  start_ceiling_server
  poll_start
  device_auth_start
  flows_start
  local i
  for i in $(seq 1 "$RUNS"); do
    log "round $i of $RUNS"
    device_auth_run "$i"
    poll_run "$i"
    flows_run "$i"
  done
  device_auth_finish
  flows_finish
  poll_finish
  setup_held_codes
  run_held
  run_wake
  report | tee "$WORK/results.txt"
  log "done in $((SECONDS - t0)) s; raw output in $WORK"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: bench/run.sh --db postgres
#
# The same scenarios on the PostgreSQL store, in up to three setups measured in the same turns:
#   sq   SQLite, one node: the reference, as in the default suite (BENCH_PG_WITH_SQLITE=0: left out);
#   pg1  PostgreSQL, one node: qrlogin serve --db postgresql://...;
#   pg2  PostgreSQL, two nodes: two qrlogin serve on different ports, on one database.
# One throwaway cluster (tests/pg/cluster.sh, its data on the same disk as the SQLite databases)
# serves every PostgreSQL setup, with a database of its own per scenario and setup. The nodes and
# PostgreSQL (postmaster and every backend: they inherit its CPU affinity) run on CPU 0, the load
# generators on CPU 1: the server side gets the one core the SQLite server gets. Two nodes:
# device authorization and polls load both at once, one wrk per node, their rates summed (the
# polls of node A are of the codes node B made, and the other way round); full flows send the
# screen's requests to node A and the phone's to node B (loadgen --phone-port); the wake holds
# the screen's token request on node A and approves on node B. Each round runs, per scenario, one
# ceiling run and then that scenario once in every setup.

PG_URI=""   # postgresql://postgres@127.0.0.1:PORT/postgres
PG_PM=""    # the postmaster's pid
SETUPS=()
CUR_PIDS="" CUR_PORTS=""
NODE_ENV=()   # extra environment of the next start_nodes
NODE_CODES=() # per node, the codes file an "@codes" argument of wrk_nodes stands for
declare -A NPIDS NPORTS SPEC POLL_FILES
declare -A LABEL=([sq]="SQLite, 1 node" [pg1]="PostgreSQL, 1 node" [pg2]="PostgreSQL, 2 nodes")

# pg_sql DB SQL...: runs each statement in database DB (each on its own, outside a transaction
# block) and prints the rows, unaligned.
pg_sql() {
  local db=$1 q args=()
  shift
  for q in "$@"; do args+=(-c "$q"); done
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -A -t -v ON_ERROR_STOP=1 \
    "${PG_URI%/*}/$db" "${args[@]}"
}

nodes_of() { if [ "$1" = pg2 ]; then echo 2; else echo 1; fi; }

pg_cluster_start() {
  local q settings
  PG_DIR=$WORK/pg
  log "PostgreSQL: a throwaway cluster in $PG_DIR (tests/pg/cluster.sh), on CPU $PG_CPU"
  PG_URI=$(taskset -c "$PG_CPU" "$ROOT/tests/pg/cluster.sh" start "$PG_DIR" 2>"$WORK/pg-cluster.log") ||
    { cat "$WORK/pg-cluster.log" >&2; die "cannot start a PostgreSQL cluster"; }
  # The bench's settings on top of the script's, which are made for tests: durability as in
  # production, and checkpoints at PostgreSQL's default interval, whatever the script chose.
  settings=("shared_buffers = '$PG_SHARED_BUFFERS'" "max_wal_size = '$PG_MAX_WAL_SIZE'"
    "checkpoint_timeout = '5min'" "max_connections = 300" "synchronous_commit = on" "fsync = on"
    "full_page_writes = on")
  if [ "$PG_STATS" = 1 ]; then settings+=("shared_preload_libraries = 'pg_stat_statements'"); fi
  for q in "${settings[@]}"; do pg_sql postgres "ALTER SYSTEM SET $q"; done
  taskset -c "$PG_CPU" "$ROOT/tests/pg/cluster.sh" restart "$PG_DIR" >>"$WORK/pg-cluster.log" 2>&1 ||
    { cat "$WORK/pg-cluster.log" >&2; die "the PostgreSQL cluster did not restart"; }
  PG_PM=$(head -1 "$PG_DIR/data/postmaster.pid")
  if [ "$PG_STATS" = 1 ]; then pg_sql postgres "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"; fi
  R[pg_version]=$(pg_sql postgres "SHOW server_version")
  R[pg_settings]=$(pg_sql postgres "SELECT string_agg(name || ' ' ||
    coalesce(nullif(current_setting(name), ''), '(none)'), ', '
    ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit',
    'fsync', 'full_page_writes', 'wal_level', 'max_wal_size', 'checkpoint_timeout',
    'max_connections', 'wal_buffers', 'commit_delay', 'shared_preload_libraries', 'work_mem',
    'huge_pages', 'autovacuum')")
  log "PostgreSQL ${R[pg_version]} at $PG_URI: ${R[pg_settings]}"
}

# The qrlogin being measured must open a PostgreSQL URI: say so plainly if it does not.
pg_probe() {
  pg_sql postgres "CREATE DATABASE bench_probe" >/dev/null
  if ! "$QRL" account add probe --db "${PG_URI%/*}/bench_probe" --password-stdin \
    <"$WORK/password" >"$WORK/pg-probe.out" 2>&1; then
    cat "$WORK/pg-probe.out" >&2
    die "this build of qrlogin does not open a PostgreSQL database (qrlogin account add --db" \
      "${PG_URI%/*}/bench_probe failed)"
  fi
}

# new_store K NAME: a new database with the account "bench" for scenario NAME of setup K; its
# specification (a path or a URI) is SPEC[K:NAME].
new_store() {
  local k=$1 name=$2 db
  if [ "$k" = sq ]; then
    new_db "$WORK/$k-$name"
    SPEC[$k:$name]=$WORK/$k-$name/qrlogin.db
    return 0
  fi
  db=bench_${k}_$name
  pg_sql postgres "DROP DATABASE IF EXISTS $db" "CREATE DATABASE $db" >/dev/null
  SPEC[$k:$name]=${PG_URI%/*}/$db
  "$QRL" account add bench --db "${SPEC[$k:$name]}" --password-stdin <"$WORK/password" \
    >/dev/null 2>"$WORK/$k-$name.account.err" ||
    { cat "$WORK/$k-$name.account.err" >&2; die "cannot create the bench account in $db"; }
}

# start_nodes K NAME LOGNAME [serve options]: the node(s) of setup K on SPEC[K:NAME], each on CPU
# 0 on a free port (the outputs in $WORK/LOGNAME-J.out/.err); they become the current nodes.
start_nodes() {
  local k=$1 name=$2 logname=$3 j pids="" ports=""
  shift 3
  for j in $(seq 1 "$(nodes_of "$k")"); do
    START_ENV=("${NODE_ENV[@]}")
    if [ "$k" != sq ] && [ -n "$PG_POOL" ]; then START_ENV+=("QRLOGIN_PG_POOL=$PG_POOL"); fi
    start_qrlogin "$logname-$j" "${SPEC[$k:$name]}" "$@"
    pids+="${pids:+ }$SERVER_PID"
    ports+="${ports:+ }$SERVER_PORT"
  done
  START_ENV=()
  NPIDS[$k:$name]=$pids
  NPORTS[$k:$name]=$ports
  use_nodes "$k" "$name"
}

use_nodes() {
  CUR_PIDS=${NPIDS[$1:$2]}
  CUR_PORTS=${NPORTS[$1:$2]}
}

stop_nodes() {
  local p
  for p in ${NPIDS[$1:$2]}; do
    SERVER_PID=$p
    stop_server
  done
  NPIDS[$1:$2]=""
}

# PostgreSQL's CPU time in clock ticks: the postmaster with its ended children (cutime, cstime)
# and every living child (backends, checkpointer, WAL writer, autovacuum...). A child that ends
# between the listing and the reading is simply not counted (its time moves to the postmaster's
# cutime and cstime), and is no failure.
pg_ticks() {
  local kids k files=()
  [ -n "$PG_PM" ] || { echo 0; return 0; }
  kids=$(cat "/proc/$PG_PM/task/$PG_PM/children" 2>/dev/null || true)
  for k in $kids; do files+=("/proc/$k/stat"); done
  { cat "/proc/$PG_PM/stat" "${files[@]}" 2>/dev/null || true; } |
    awk '{ s += $14 + $15 + $16 + $17 } END { print s + 0 }'
  return 0
}

# The current nodes' CPU time (utime + stime, summed) in clock ticks.
nodes_ticks() {
  local p t s=0
  for p in $CUR_PIDS; do
    t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true)
    s=$((s + ${t:-0}))
  done
  echo "$s"
}

# "wall cpu0_busy cpu1_busy nodes_ticks pg_ticks", as cpu_snap with PostgreSQL's share.
cpu_snap_n() {
  local busy
  busy=$(awk '$1 == "cpu0" || $1 == "cpu1" { printf "%d ", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
  echo "$(date +%s.%N) $busy$(nodes_ticks) $(pg_ticks)"
}

# cpu_diff_n "SNAP0" "SNAP1": "nodes% others-on-cpu0% cpu1% postgres%" (of one CPU each). The
# others are what neither the nodes nor (when it shares CPU 0) PostgreSQL took of CPU 0.
cpu_diff_n() {
  local pg0=0
  [ "$PG_CPU" = "$SERVER_CPU" ] && pg0=1
  awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" -v pg0="$pg0" 'BEGIN { split(a, x, " ");
    split(b, y, " "); w = (y[1] - x[1]) * hz; if (w <= 0) w = 1; srv = y[4] - x[4];
    pg = y[5] - x[5]; oth = y[2] - x[2] - srv - (pg0 ? pg : 0); if (oth < 0) oth = 0;
    printf "%.0f %.0f %.0f %.0f\n", 100 * srv / w, 100 * oth / w, 100 * (y[3] - x[3]) / w, 100 * pg / w }'
}

# settle_n: as settle, for the current nodes and PostgreSQL (its checkpointer and WAL writer
# included) together.
settle_n() {
  local i a b n p
  n=$(nodes_ticks)
  p=$(pg_ticks)
  b=$((n + p))
  for i in $(seq 1 16); do
    sleep 0.3
    a=$b
    n=$(nodes_ticks)
    p=$(pg_ticks)
    b=$((n + p))
    [ "$a" = "$b" ] && return 0
  done
  return 0
}

# wrk_nodes OUTFILE SECONDS PATH SCRIPT [script args]: one wrk per current node, all at once, on
# the client CPU, each with BENCH_CONNS connections; an argument "@codes" stands for that node's
# codes file (NODE_CODES). OUTFILE gets the sum of their "Requests/sec", their "BENCH" lines
# summed (the latency percentiles: the largest), and the CPU window of the first, which spans all
# the nodes and PostgreSQL; each wrk's own output is in OUTFILE.J.
wrk_nodes() {
  local out=$1 secs=$2 path=$3 script=$4 ports j a c0 c1 win args wp=()
  shift 4
  read -ra ports <<<"$CUR_PORTS"
  c0=$(cpu_snap_n)
  for j in "${!ports[@]}"; do
    args=()
    for a in "$@"; do
      [ "$a" = @codes ] && a=${NODE_CODES[$j]}
      args+=("$a")
    done
    BENCH_SERVER_PID=$CUR_PIDS BENCH_PG_PID=$PG_PM client wrk -t1 -c"$CONNS" -d"${secs}s" \
      --timeout 10s -s "$script" "http://127.0.0.1:${ports[$j]}$path" -- "${args[@]}" \
      >"$out.$j" 2>&1 &
    wp+=("$!")
    PIDS+=("$!")
  done
  for j in "${wp[@]}"; do wait "$j" || true; done
  c1=$(cpu_snap_n)
  {
    for j in "${!ports[@]}"; do rps_of "$out.$j"; done |
      awk '{ s += $1; n++ } END { if (n) printf "Requests/sec: %.2f\n", s }'
    for j in "${!ports[@]}"; do bench_line_of "$out.$j" || true; done |
      awk '{ for (i = 2; i <= NF; i++) { k = substr($i, 1, index($i, "=") - 1);
          v = substr($i, index($i, "=") + 1) + 0; if (!(k in s)) { o[++n] = k; s[k] = 0 }
          if (k ~ /^p[0-9]+_us$/ || k == "counted") { if (v > s[k]) s[k] = v } else s[k] += v } }
        END { if (n) { printf "BENCH"; for (i = 1; i <= n; i++) printf " %s=%d", o[i], s[o[i]]; print "" } }'
    grep '^CPUWIN ' "$out.0" || true
  } >"$out"
  mapfile -t win < <(sed -n 's/^CPUWIN //p' "$out")
  if [ "${#win[@]}" = 2 ]; then
    c0=${win[0]} c1=${win[1]}
  else
    log "warning: no CPU window in $out.0; CPU use is over the whole wrk processes"
  fi
  cpu_diff_n "$c0" "$c1" >"$out.cpu"
}

# bench_num LINE KEY: bench_field, 0 when absent.
bench_num() {
  local v
  v=$(bench_field "$1" "$2")
  echo "${v:-0}"
}

cpu_note() { awk '{ printf "nodes %s %%, PostgreSQL %s %%, others %s %% of CPU 0", $1, $4, $2 }' "$1"; }

# Device authorization ------------------------------------------------------------------------

pg_da_start() {
  local k=$1
  new_store "$k" da
  start_nodes "$k" da "$k-da"
  wrk_nodes "$WORK/$k-da-warm.txt" "$WARMUP" /oauth/device_authorization \
    "$BENCH/wrk/device_auth.lua"
  settle_n
}

pg_da_run() {
  local k=$1 i=$2 f=$WORK/$1-da-$2.txt line
  use_nodes "$k" da
  wrk_nodes "$f" "$DURATION" /oauth/device_authorization "$BENCH/wrk/device_auth.lua"
  line=$(bench_line_of "$f" || true)
  if [ -z "$line" ]; then
    R[$k:da_bad]=$((${R[$k:da_bad]:-0} + 1))
  else
    R[$k:da_bad]=$((${R[$k:da_bad]:-0} + $(bench_num "$line" other) + $(bench_num "$line" errors)))
  fi
  log "$k: device authorization, run $i: $(rps_of "$f") req/s ($(cpu_note "$f.cpu"))"
  settle_n
}

# Pending polls -------------------------------------------------------------------------------

pg_poll_start() {
  local k=$1 n target limit j p created=0 line ports pids=()
  new_store "$k" poll
  start_nodes "$k" poll "$k-poll"
  read -ra ports <<<"$CUR_PORTS"
  n=${#ports[@]}
  if [ "$k" = sq ]; then
    target=$SQ_POLL_CODES limit=$POLL_SETUP_S
  else
    target=$PG_POLL_CODES limit=$PG_SETUP_S
  fi
  log "$k: poll setup, $target login requests through $n node(s), at most $limit s"
  for j in "${!ports[@]}"; do
    client "$LOADGEN" create --port "${ports[$j]}" --n $((target / n)) --conc 64 \
      --out "$WORK/$k-poll-codes-$j.txt" --time-limit "$limit" >"$WORK/$k-poll-setup-$j.txt" &
    pids+=("$!")
    PIDS+=("$!")
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  for j in "${!ports[@]}"; do
    created=$((created + $(kv "$WORK/$k-poll-setup-$j.txt" created | grep . || echo 0)))
    R[$k:poll_setup_rate]="${R[$k:poll_setup_rate]:+${R[$k:poll_setup_rate]} + }$(kv "$WORK/$k-poll-setup-$j.txt" rate)"
  done
  R[$k:poll_codes]=$created
  log "$k: poll setup, $created login requests (target $target) at ${R[$k:poll_setup_rate]}/s"
  # Each node polls the codes the other one made (one node: its own).
  if [ "$n" = 2 ]; then
    POLL_FILES[$k]="$WORK/$k-poll-codes-1.txt $WORK/$k-poll-codes-0.txt"
  else
    POLL_FILES[$k]="$WORK/$k-poll-codes-0.txt"
  fi
  sync
  sleep 3
  settle_n
  read -ra NODE_CODES <<<"${POLL_FILES[$k]}"
  wrk_nodes "$WORK/$k-poll-warm.txt" "$WARMUP" /oauth/token "$BENCH/wrk/poll.lua" @codes 0 2
  line=$(bench_line_of "$WORK/$k-poll-warm.txt" || true)
  R[$k:poll_warm_pending]=$(bench_num "$line" pending)
  R[$k:poll_warm_other]=$(($(bench_num "$line" slow_down) + $(bench_num "$line" other400) + \
    $(bench_num "$line" ok200) + $(bench_num "$line" other) + $(bench_num "$line" errors)))
  settle_n
}

# SQLite's timed polls are counted by status only, as in the default suite (wrk is near its
# limit there); PostgreSQL's are classified one by one (authorization_pending, slow_down, other
# 400s, 200s, anything else), which costs wrk a little of a core that is far from full at their
# rates, and tells a 503 from a pending answer.
pg_poll_run() {
  local k=$1 i=$2 f=$WORK/$1-poll-$2.txt seg=$(($2 % 2)) line mode=()
  use_nodes "$k" poll
  read -ra NODE_CODES <<<"${POLL_FILES[$k]}"
  [ "$k" = sq ] && mode=(1 count)
  wrk_nodes "$f" "$DURATION" /oauth/token "$BENCH/wrk/poll.lua" @codes "$seg" 2 "${mode[@]}"
  line=$(bench_line_of "$f" || true)
  if [ -z "$line" ]; then
    R[$k:poll_bad]=$((${R[$k:poll_bad]:-0} + 1))
  elif [ "$k" = sq ]; then
    R[$k:poll_good]=$((${R[$k:poll_good]:-0} + $(bench_num "$line" non2xx)))
    R[$k:poll_bad]=$((${R[$k:poll_bad]:-0} + $(bench_num "$line" answers) - \
      $(bench_num "$line" non2xx) + $(bench_num "$line" errors)))
  else
    R[$k:poll_good]=$((${R[$k:poll_good]:-0} + $(bench_num "$line" pending)))
    R[$k:poll_bad]=$((${R[$k:poll_bad]:-0} + $(bench_num "$line" slow_down) + \
      $(bench_num "$line" other400) + $(bench_num "$line" ok200) + $(bench_num "$line" other) + \
      $(bench_num "$line" errors)))
  fi
  R[$k:poll_reuse]=$((${R[$k:poll_reuse]:-0} + $(bench_num "$line" reuse)))
  log "$k: pending poll, run $i: $(rps_of "$f") req/s ($(cpu_note "$f.cpu"))"
  settle_n
}

# Full flows ----------------------------------------------------------------------------------

# The loadgen options for the current nodes: the screen on the first, the phone on the second.
flow_ports() {
  local ports
  read -ra ports <<<"$CUR_PORTS"
  FLOW_PORTS=(--port "${ports[0]}")
  if [ "${#ports[@]}" -gt 1 ]; then FLOW_PORTS+=(--phone-port "${ports[1]}"); fi
}

pg_flows_start() {
  local k=$1
  new_store "$k" flows
  start_nodes "$k" flows "$k-flows"
  flow_ports
  client "$LOADGEN" flows "${FLOW_PORTS[@]}" --conc "$FLOW_CONC" --user bench \
    --password-file "$WORK/password" --warmup "$WARMUP" --runs 1 --duration 1 \
    >"$WORK/$k-flows-warm.txt" 2>"$WORK/$k-flows-warm.log" || true
  settle_n
}

# The CPU use is accounted over loadgen's timed window (its "CPUWIN" lines): the phone's sign-in
# (two Argon2id checks on a node) and the warm-up second before it are left out; at PostgreSQL's
# flow rates they would be a large part of a run's CPU time. Without those lines, over the whole
# loadgen process.
pg_flows_run() {
  local k=$1 i=$2 f=$WORK/$1-flows-$2.txt c0 c1 e s win
  use_nodes "$k" flows
  flow_ports
  c0=$(cpu_snap_n)
  client "$LOADGEN" flows "${FLOW_PORTS[@]}" --conc "$FLOW_CONC" --user bench \
    --password-file "$WORK/password" --warmup 1 --runs 1 --duration "$DURATION" \
    --cpu-pids "$CUR_PIDS" --pg-pid "$PG_PM" >"$f" 2>"$WORK/$k-flows-$i.log" || true
  c1=$(cpu_snap_n)
  mapfile -t win < <(sed -n 's/^CPUWIN //p' "$f")
  if [ "${#win[@]}" = 2 ]; then
    c0=${win[0]} c1=${win[1]}
  else
    log "warning: no CPU window in $f; CPU use is over the whole loadgen process"
  fi
  cpu_diff_n "$c0" "$c1" >"$f.cpu"
  e=$(kv "$f" flows_errors | grep . || echo 1)
  R[$k:flows_errors]=$((${R[$k:flows_errors]:-0} + e))
  for s in device_auth claim approve redeem; do
    R[$k:flows_errors_$s]=$((${R[$k:flows_errors_$s]:-0} + $(kv "$f" "flows_errors_$s" | grep . || echo 0)))
  done
  log "$k: full flows, run $i: $(kv "$f" flows_run1) flows/s, $e errors ($(cpu_note "$f.cpu"))"
  settle_n
}

# Medians -------------------------------------------------------------------------------------

# pg_tp_finish K SCEN: stops the nodes of scenario SCEN (da, poll, flows) of setup K and keeps,
# over its runs, the median rate, the median fraction of the ceiling run of the same round, the
# median CPU shares and the median rate per second of CPU time of the nodes and PostgreSQL.
pg_tp_finish() {
  local k=$1 sc=$2 i f rate cr a b c d med worst=0 rates=() fr=() srv=() pg=() c1=() eff=()
  stop_nodes "$k" "$sc"
  for i in $(seq 1 "$RUNS"); do
    f=$WORK/$k-$sc-$i.txt
    if [ "$sc" = flows ]; then rate=$(kv "$f" flows_run1); else rate=$(rps_of "$f"); fi
    rate=${rate:-0}
    cr=$(rps_of "$WORK/ceiling-$sc-$i.txt")
    rates+=("$rate")
    fr+=("$(awk -v a="$rate" -v b="$cr" 'BEGIN { if (b + 0 > 0) printf "%.4f", a / b; else print "nan" }')")
    read -r a b c d <"$f.cpu"
    srv+=("$a")
    pg+=("$d")
    c1+=("$c")
    [ "$b" -gt "$worst" ] && worst=$b
    eff+=("$(awk -v r="$rate" -v s="$a" -v p="$d" 'BEGIN { if (s + p > 0) printf "%.0f", r * 100 / (s + p); else print 0 }')")
  done
  med=$(median "${rates[@]}")
  R[$k:$sc]=$med
  R[$k:${sc}_runs]="${rates[*]}"
  R[$k:${sc}_frac]=$(median "${fr[@]}")
  R[$k:${sc}_fracs]="${fr[*]}"
  R[$k:${sc}_cpu]=$(median "${srv[@]}")
  R[$k:${sc}_pgcpu]=$(median "${pg[@]}")
  R[$k:${sc}_others]=$worst
  R[$k:${sc}_cpu1]=$(median "${c1[@]}")
  R[$k:${sc}_eff]=$(median "${eff[@]}")
  R[$k:${sc}_cpus]=$(for i in $(seq 1 "$RUNS"); do
    awk '{ printf "%s/%s/%s ", $1, $4, $2 }' "$WORK/$k-$sc-$i.txt.cpu"; done)
  if [ "$sc" = flows ]; then
    # The per-step latencies shown are those of the median run.
    rm -f "$WORK/$k-flows.txt"
    for i in $(seq 1 "$RUNS"); do
      if [ ! -f "$WORK/$k-flows.txt" ] && [ "${rates[$((i - 1))]}" = "$med" ]; then
        cp "$WORK/$k-flows-$i.txt" "$WORK/$k-flows.txt"
      fi
    done
    [ -f "$WORK/$k-flows.txt" ] || cp "$WORK/$k-flows-1.txt" "$WORK/$k-flows.txt"
  fi
  log "$k: $sc runs ${rates[*]}"
}

pg_ceiling_summary() {
  local sc=$1 i rates=()
  for i in $(seq 1 "$RUNS"); do rates+=("$(rps_of "$WORK/ceiling-$sc-$i.txt")"); done
  R[ceiling_$sc]=$(median "${rates[@]}")
  R[ceiling_${sc}_runs]="${rates[*]}"
}

# Held requests and wake latency --------------------------------------------------------------

# pg_wake_setup K NAME N: a database for NAME with N pending login requests made through the
# first node (codes in $WORK/K-NAME-codes.txt); then the node(s) are started afresh on it, with
# the held scenarios' connection limits, so nothing of the setup is in their memory.
pg_wake_setup() {
  local k=$1 name=$2 n=$3 ports
  new_store "$k" "$name"
  NODE_ENV=("${HELD_ENV[@]}")
  start_nodes "$k" "$name" "$k-$name-setup" "${HELD_FLAGS[@]}"
  read -ra ports <<<"$CUR_PORTS"
  client "$LOADGEN" create --port "${ports[0]}" --n "$n" --conc 64 \
    --out "$WORK/$k-$name-codes.txt" --time-limit 60 >"$WORK/$k-$name-setup.txt" ||
    die "setup of $k $name failed: $(cat "$WORK/$k-$name-setup.txt")"
  stop_nodes "$k" "$name"
  start_nodes "$k" "$name" "$k-$name" "${HELD_FLAGS[@]}"
  NODE_ENV=()
}

pg_held() {
  local k=$1 pids
  log "$k: $HELD held requests (Prefer: wait=60) from $SOURCES client addresses"
  pg_wake_setup "$k" held $((HELD_WARM + HELD))
  read -ra pids <<<"$CUR_PIDS"
  flow_ports
  client "$LOADGEN" held "${FLOW_PORTS[@]:0:2}" --codes "$WORK/$k-held-codes.txt" --n "$HELD" \
    --warm-polls "$HELD_WARM" --pid "${pids[0]}" --sources "$SOURCES" --wait 60 --settle 2 \
    --cpu-window 3 --time-limit 45 --shutdown-check >"$WORK/$k-held.txt" 2>"$WORK/$k-held.log" || true
  stop_nodes "$k" held
  cat "$WORK/$k-held.log" >&2
}

pg_wake() {
  local k=$1
  log "$k: wake latency ($WAKE_SAMPLES samples, $WAKE_BG other held requests)"
  pg_wake_setup "$k" wake "$WAKE_BG"
  flow_ports
  client "$LOADGEN" wake "${FLOW_PORTS[@]}" --codes "$WORK/$k-wake-codes.txt" \
    --background "$WAKE_BG" --samples "$WAKE_SAMPLES" --warm-samples 50 --sources "$SOURCES" \
    --user bench --password-file "$WORK/password" --settle 1 --time-limit 50 \
    >"$WORK/$k-wake.txt" 2>"$WORK/$k-wake.log" || true
  stop_nodes "$k" wake
  cat "$WORK/$k-wake.log" >&2
}

# PostgreSQL's own counters over the rounds (cluster-wide): checkpoints, WAL written and synced.
pg_counters() {
  pg_sql postgres "SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
    (SELECT wal_bytes FROM pg_stat_wal), (SELECT wal_sync FROM pg_stat_wal),
    (SELECT wal_write FROM pg_stat_wal)" | tr '|' ' '
}

pg_stats_dump() {
  [ "$PG_STATS" = 1 ] || return 0
  echo "database|calls|total_ms|mean_us|rows|query" >"$WORK/pg_stat_statements.txt"
  pg_sql postgres "SELECT d.datname, s.calls, round(s.total_exec_time::numeric, 1) AS total_ms,
      round((s.mean_exec_time * 1000)::numeric, 1) AS mean_us, s.rows,
      left(regexp_replace(s.query, '\s+', ' ', 'g'), 200)
    FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
    ORDER BY s.total_exec_time DESC LIMIT 60" >>"$WORK/pg_stat_statements.txt" || true
}

# Report --------------------------------------------------------------------------------------

# The rows' helpers below are called by name (per FUNC ...).
# shellcheck disable=SC2317
report_pg() {
  local k i fsf
  fsf=$(df --output=source,fstype "$PG_DIR" | tail -1 | awk '{ print $1 " (" $2 ")" }')
  echo
  echo "qrlogin benchmark, PostgreSQL, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')"
  machine | sed -n 1p
  printf 'load average: %s before the run, %s after it; at the start of each round: %s\n' \
    "${R[loadavg_before]}" "${R[loadavg_after]}" "${R[loadavg_rounds]}"
  printf 'PostgreSQL %s (a throwaway cluster of tests/pg/cluster.sh, data on %s, TCP on 127.0.0.1): %s\n' \
    "${R[pg_version]}" "$fsf" "${R[pg_settings]}"
  local pool="the store's default pool of connections"
  if [ -n "$PG_POOL" ]; then pool="a pool of $PG_POOL connections (QRLOGIN_PG_POOL)"; fi
  printf 'pinned: every qrlogin node (%s worker threads, %s) on CPU %s; PostgreSQL (postmaster and every backend) on CPU %s; wrk and loadgen on CPU %s\n' \
    "$THREADS" "$pool" "$SERVER_CPU" "$PG_CPU" "$CLIENT_CPU"
  printf 'runs: %s warm-up + %s x %s s runs, median; per round and scenario one ceiling run, then the scenario once per setup; two nodes: one wrk per node (rates summed), loadgen with the screen on node A and the phone on node B\n' \
    "${WARMUP}s" "$RUNS" "$DURATION"
  echo
  local hdr=("measure")
  for k in "${SETUPS[@]}"; do hdr+=("${LABEL[$k]}"); done
  hdr+=("target, 2 nodes")
  prow() {
    local c
    printf '| %-46s ' "$1"
    shift
    for c in "$@"; do printf '| %-22s ' "$c"; done
    printf '|\n'
  }
  prow "${hdr[@]}"
  printf '|%s' "$(printf -- '-%.0s' {1..48})"
  for k in "${SETUPS[@]}" x; do printf '|%s' "$(printf -- '-%.0s' {1..24})"; done
  printf '|\n'
  per() { # per FUNC TARGET LABEL: a row with FUNC K for each setup
    local fn=$1 target=$2 label=$3 v=()
    for k in "${SETUPS[@]}"; do v+=("$($fn "$k")"); done
    prow "$label" "${v[@]}" "$target"
  }
  c_da() { num "${R[ceiling_da]:-}"; }
  c_poll() { num "${R[ceiling_poll]:-}"; }
  rate() { num "${R[$k:$sc]:-}"; }
  ofc() { pct "${R[$k:${sc}_frac]:-}"; }
  ofc4() { local f=${R[$k:flows_frac]:-}; echo "$(pct "$f") (req: $(pct "$(awk -v f="$f" 'BEGIN { if (f != "" && f != "nan") print f * 4 }')"))"; }
  cpus() {
    if [ -n "${R[$k:${sc}_cpu]:-}" ]; then
      echo "${R[$k:${sc}_cpu]} / ${R[$k:${sc}_pgcpu]} / ${R[$k:${sc}_others]}"
    else
      echo -
    fi
  }
  eff() { num "${R[$k:${sc}_eff]:-}"; }
  w3() { local w=$WORK/$k-wake.txt; [ -f "$w" ] || { echo -; return; }
    awk -v a="$(kv "$w" "${1}_p50_us")" -v b="$(kv "$w" "${1}_p99_us")" \
      -v c="$(kv "$w" "${1}_p999_us")" 'BEGIN { if (a == "") print "-"; else printf "%.2f / %.2f / %.2f", a / 1000, b / 1000, c / 1000 }'; }
  wk() { w3 wake; }
  wa() { w3 approvewake; }
  ws() { w3 scanwake; }
  errs() {
    local w=$WORK/$k-wake.txt we
    we=$(kv "$w" wake_errors 2>/dev/null | grep . || echo 1)
    echo $((${R[$k:da_bad]:-0} + ${R[$k:poll_bad]:-0} + ${R[$k:poll_warm_other]:-0} + \
      ${R[$k:flows_errors]:-0} + we))
  }
  held() { local h=$WORK/$k-held.txt; if [ -f "$h" ]; then echo "$(kv "$h" held_unanswered) / $(kv "$h" held_target)"; else echo -; fi; }
  rss() { local h=$WORK/$k-held.txt; if [ -f "$h" ]; then awk -v b="$(kv "$h" rss_per_held_bytes)" 'BEGIN { if (b == "") print "-"; else printf "%.2f KiB", b / 1024 }'; else echo -; fi; }
  per c_da "" "ceiling, device-auth script (req/s)"
  per c_poll "" "ceiling, poll script (req/s)"
  local sc
  for sc in da poll flows; do
    case $sc in
      da) per rate "" "device authorization (req/s)" ;;
      poll) per rate ">= 20000" "pending poll (req/s)" ;;
      flows) per rate ">= 2000" "full flows (flows/s; 4 HTTP requests each)" ;;
    esac
    if [ "$sc" = flows ]; then per ofc4 "" "  of ceiling"; else per ofc "" "  of ceiling"; fi
    per cpus "" "  CPU 0 %: nodes / PostgreSQL / others"
    per eff "" "  per CPU second of nodes + PostgreSQL"
  done
  per wk "p99 <= 10 (cross-node)" "wake latency p50 / p99 / p999 (ms)"
  per wa "" "  approve sent -> tokens p50 / p99 / p999 (ms)"
  per ws "" "  claim answered -> scanned p50/p99/p999 (ms)"
  per errs "0" "errors (all scenarios)"
  per held "" "held requests (held / opened)"
  per rss "" "RSS per held request"
  echo
  echo "details:"
  echo "  ceiling runs (req/s), one per round before that round's runs of the scenario: device-auth script ${R[ceiling_da_runs]:-}; poll script ${R[ceiling_poll_runs]:-}; device-auth script before the flows ${R[ceiling_flows_runs]:-}"
  echo "  PostgreSQL during the rounds (whole cluster): ${R[pg_checkpoints]:-?} checkpoints, ${R[pg_wal_mb]:-?} MB of WAL in ${R[pg_wal_writes]:-?} writes and ${R[pg_wal_syncs]:-?} syncs"
  for k in "${SETUPS[@]}"; do
    local f=$WORK/$k-flows.txt w=$WORK/$k-wake.txt h=$WORK/$k-held.txt
    echo "  ${LABEL[$k]}:"
    echo "    device authorization runs (req/s): ${R[$k:da_runs]:-}; of ceiling ${R[$k:da_fracs]:-}; non-200 answers or socket errors: ${R[$k:da_bad]:-0}"
    echo "    pending poll runs (req/s): ${R[$k:poll_runs]:-}; of ceiling ${R[$k:poll_fracs]:-}; ${R[$k:poll_codes]:-0} codes made at ${R[$k:poll_setup_rate]:-?}/s$([ "$k" = pg2 ] && echo ', each node polling the codes the other made');" \
      "warm-up: ${R[$k:poll_warm_pending]:-} authorization_pending, ${R[$k:poll_warm_other]:-} other;" \
      "timed runs: ${R[$k:poll_good]:-0} $([ "$k" = sq ] && echo 'answered 400 (counted by status)' || echo authorization_pending), ${R[$k:poll_bad]:-0} other;" \
      "${R[$k:poll_reuse]:-0} polls of a code within 5 s of its previous poll"
    echo "    full flows runs (flows/s): ${R[$k:flows_runs]:-}; $(kv "$f" flows_concurrency) in flight; errors ${R[$k:flows_errors]:-0} (device_auth ${R[$k:flows_errors_device_auth]:-0}, claim ${R[$k:flows_errors_claim]:-0}, approve ${R[$k:flows_errors_approve]:-0}, redeem ${R[$k:flows_errors_redeem]:-0});" \
      "screen on port $(kv "$f" flows_screen_port), phone on port $(kv "$f" flows_phone_port)"
    echo "      per step p50 / p99 (ms): device_auth $(kv "$f" device_auth_p50_ms) / $(kv "$f" device_auth_p99_ms)," \
      "claim $(kv "$f" claim_p50_ms) / $(kv "$f" claim_p99_ms), approve $(kv "$f" approve_p50_ms) / $(kv "$f" approve_p99_ms)," \
      "redeem $(kv "$f" redeem_p50_ms) / $(kv "$f" redeem_p99_ms); whole flow $(kv "$f" flow_p50_ms) / $(kv "$f" flow_p99_ms)"
    echo "    CPU per run, nodes/PostgreSQL/others % of CPU 0: device authorization ${R[$k:da_cpus]:-}; poll ${R[$k:poll_cpus]:-}; flows ${R[$k:flows_cpus]:-}"
    echo "    CPU 1 (load generators and others), median: device authorization ${R[$k:da_cpu1]:-} %, poll ${R[$k:poll_cpu1]:-} %, flows ${R[$k:flows_cpu1]:-} %"
    if [ -f "$w" ]; then
      echo "    wake: screen on port $(kv "$w" wake_screen_port), phone on port $(kv "$w" wake_phone_port); approve response -> held token response (signed; negative = tokens first): min $(kv "$w" wake_min_us) us, max $(kv "$w" wake_max_us) us;" \
        "$(kv "$w" wake_held_before_approve_response) of $(kv "$w" wake_samples) held answers before the approve response;" \
        "errors $(kv "$w" wake_errors); background still held at the end: $(kv "$w" wake_background_still_held) / $(kv "$w" wake_background)"
    fi
    if [ -f "$h" ]; then
      echo "    held: $(kv "$h" held_sent) sent in $(kv "$h" open_seconds) s, $(kv "$h" held_answered_early) answered early," \
        "$(kv "$h" held_failed) failed, $(kv "$h" connect_errors) connect errors; node CPU $(kv "$h" cpu_pct_while_held) % while held;" \
        "VmRSS $(kv "$h" rss_before_kb) -> $(kv "$h" rss_after_kb) KiB, RssAnon $(kv "$h" rss_anon_before_kb) -> $(kv "$h" rss_anon_after_kb) KiB;" \
        "at shutdown $(kv "$h" shutdown_pending_answers) answered authorization_pending, $(kv "$h" shutdown_other_answers) other, $(kv "$h" shutdown_closed_unanswered) closed unanswered"
    fi
  done
  echo "  CPU 0 %: the nodes' (summed), PostgreSQL's (postmaster, backends, background processes) and"
  echo "    the rest's share of CPU 0 during the timed runs (medians; others: the most in any run)."
  echo "    Per CPU second: the rate divided by the CPU time of the nodes and PostgreSQL together."
  if [ "$PG_STATS" = 1 ]; then
    echo "  pg_stat_statements over the rounds, the wake and held scenarios: $WORK/pg_stat_statements.txt"
  fi
}

main_pg() {
  local t0=$SECONDS i k c0 busy ctr0 ctr1
  deps
  mkdir -p "$BUILD"
  build
  # A cluster an interrupted run left behind is stopped before its directory goes.
  if [ -f "$WORK/pg/.qrl-pg-cluster" ]; then
    "$ROOT/tests/pg/cluster.sh" stop "$WORK/pg" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  mkdir -p "$WORK"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  [ "$(ulimit -n)" -ge $((HELD + 700)) ] ||
    log "warning: open-file limit $(ulimit -n) is low for $HELD held requests"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$WORK/password"
  if [ -z "$THREADS" ]; then
    THREADS=$("$QRL" serve --help 2>&1 | sed -n 's/.*--threads N.*default \([0-9][0-9]*\).*/\1/p')
    [ -n "$THREADS" ] || THREADS=16
  fi
  log "worker threads: $THREADS per node (and the ceiling)"
  held_flags
  R[loadavg_before]=$(cut -d' ' -f1-3 /proc/loadavg)
  c0=$(cpu_snap)
  sleep 1
  busy=$(cpu_diff "$c0" "$(cpu_snap)")
  log "CPU 0 / CPU 1 busy before the run: $(echo "$busy" | awk '{ print $2 " % / " $3 " %" }');" \
    "load average ${R[loadavg_before]}"
  pg_cluster_start
  pg_probe
  SETUPS=()
  if [ "$PG_WITH_SQLITE" = 1 ]; then SETUPS+=(sq); fi
  SETUPS+=(pg1 pg2)

  start_ceiling_server
  for k in "${SETUPS[@]}"; do
    pg_poll_start "$k"
    pg_da_start "$k"
    pg_flows_start "$k"
  done
  if [ "$PG_STATS" = 1 ]; then pg_sql postgres "SELECT pg_stat_statements_reset()" >/dev/null; fi
  ctr0=$(pg_counters)
  R[loadavg_rounds]=""
  for i in $(seq 1 "$RUNS"); do
    R[loadavg_rounds]+="${R[loadavg_rounds]:+; }$(cut -d' ' -f1 /proc/loadavg)"
    log "round $i of $RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    ceiling_once "$WORK/ceiling-da-$i.txt" "$DURATION" /oauth/device_authorization \
      "$BENCH/wrk/device_auth.lua"
    for k in "${SETUPS[@]}"; do pg_da_run "$k" "$i"; done
    ceiling_once "$WORK/ceiling-poll-$i.txt" "$DURATION" /oauth/token "$BENCH/wrk/poll.lua" \
      "$WORK/fake-codes.txt" 0 1 1 count
    for k in "${SETUPS[@]}"; do pg_poll_run "$k" "$i"; done
    ceiling_once "$WORK/ceiling-flows-$i.txt" "$DURATION" /oauth/device_authorization \
      "$BENCH/wrk/device_auth.lua"
    for k in "${SETUPS[@]}"; do pg_flows_run "$k" "$i"; done
  done
  ctr1=$(pg_counters)
  read -r -a ctr0 <<<"$ctr0"
  read -r -a ctr1 <<<"$ctr1"
  R[pg_checkpoints]=$((ctr1[0] - ctr0[0]))
  R[pg_wal_mb]=$(awk -v a="${ctr0[1]}" -v b="${ctr1[1]}" 'BEGIN { printf "%.0f", (b - a) / 1048576 }')
  R[pg_wal_syncs]=$((ctr1[2] - ctr0[2]))
  R[pg_wal_writes]=$((ctr1[3] - ctr0[3]))
  for k in "${SETUPS[@]}"; do
    pg_tp_finish "$k" da
    pg_tp_finish "$k" poll
    pg_tp_finish "$k" flows
  done
  pg_ceiling_summary da
  pg_ceiling_summary poll
  pg_ceiling_summary flows
  SERVER_PID=$CEIL_PID
  stop_server
  if [ "$PG_HELD" = 1 ]; then pg_held pg1; fi
  for k in "${SETUPS[@]}"; do pg_wake "$k"; done
  pg_stats_dump
  R[loadavg_after]=$(cut -d' ' -f1-3 /proc/loadavg)
  report_pg | tee "$WORK/results.txt"
  if [ "$PG_KEEP" = 1 ]; then
    log "the cluster is left running: $PG_URI (databases bench_*); stop it with" \
      "tests/pg/cluster.sh stop $PG_DIR"
  fi
  log "done in $((SECONDS - t0)) s; raw output in $WORK"
}

if [ "$DB_MODE" = postgres ]; then
  main_pg
else
  main
fi
