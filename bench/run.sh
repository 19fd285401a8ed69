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
# Knobs (environment): BENCH_RUNS (5), BENCH_DURATION (5 s), BENCH_WARMUP (2 s), BENCH_CONNS
# (64 wrk connections), BENCH_THREADS (server worker threads, also the ceiling's; default: what
# qrlogin serve uses by default), BENCH_HELD (19000), BENCH_SOURCES
# (64 client addresses), BENCH_WAKE_BACKGROUND (10000), BENCH_WAKE_SAMPLES (1000),
# BENCH_FLOW_CONC (256), BENCH_PROFILE=1 (also perf-record the server in each throughput
# scenario), BENCH_QUICK=1 (a small, fast smoke run; its numbers are not the benchmark).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
BUILD=$ROOT/build/bench
WORK=$BUILD/run

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
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  RUNS=1 DURATION=2 WARMUP=1 HELD=2000 WAKE_BG=1000 WAKE_SAMPLES=100 POLL_SETUP_S=10
  HELD_WARM=500
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
    libjansson-dev libcurl4-openssl-dev libqrencode-dev libpng-dev libzbar-dev wrk util-linux)
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

main "$@"
