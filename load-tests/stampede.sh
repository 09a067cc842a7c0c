#!/usr/bin/env bash
# Stampede measurement (issue 6, "Performance"): what reaches a slow origin, and how long
# clients wait, when many clients ask for one key at the same moment.
#
#   load-tests/stampede.sh            # about a minute after the builds
#
# Scenarios, each run RUNS times on fresh keys, medians printed at the end:
#   1. cold key, one Cachet instance            → 1 origin request, p50 ≤ 1.1× the origin delay
#   2. cold key, 3 instances on one redis-server → 1 origin request
#   3. just-expired hot key under SWR            → 1 origin request, no client waits for it
#   4. (when nginx is available) nginx proxy_cache_lock on the cold key, and on the
#      just-expired key with proxy_cache_use_stale updating + background update, for comparison;
#      it runs beside the single Cachet instance, each of its bursts right after Cachet's
#
# Environment: RUNS (5), CLIENTS (500), DELAY_MS (200), INSTANCES (3),
# NGINX=auto|1|0 (auto: compare when nginx is installed; 1: apt-get install it when missing;
# 0: skip), NICE (-10; 0 = do not raise priority), KEEP_TMP=1 keeps the temporary directory
# (configs, logs, every burst's full output). Exit status 1 when a check below fails.
#
# Everything listens on 127.0.0.1, lives in a temporary directory that is removed at the end,
# and every process started here is killed on exit. No system service or /etc is touched:
# redis-server and nginx run from the temporary directory on free ports.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
CLIENTS=${CLIENTS:-500}
DELAY_MS=${DELAY_MS:-200}
INSTANCES=${INSTANCES:-3}
NGINX=${NGINX:-auto}
# The just-expired case: the origin allows 1 s of freshness, the burst comes 1.5 s after the
# entry was stored. nginx keeps validity in whole seconds (an entry stored at x.9 s with
# max-age=1 is still fresh at x.9+1.5), so its burst waits 2.5 s.
SWR_WAIT_MS=1500
NGINX_SWR_WAIT_MS=2500

log() { printf '==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- tools and pinning

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ "$NGINX" = 1 ] && ! command -v nginx >/dev/null 2>&1; then need_apt+=(nginx); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# The packaged services are not used: this script starts its own servers.
if [ "$NGINX" = auto ]; then
  if command -v nginx >/dev/null 2>&1; then NGINX=1; else NGINX=0; fi
fi

# Load generator (burst client, origin, redis) on one core, the proxy under test on the other.
CLIENT_PIN=() TARGET_PIN=() PINNING="none (fewer than 2 cores or no taskset)"
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  CLIENT_PIN=(taskset -c 0) TARGET_PIN=(taskset -c 1)
  PINNING="burst client, origin and redis on CPU 0; proxies on CPU 1"
fi
# On a shared machine, other work on those cores stretches the tails by tens of milliseconds.
# When allowed (root or CAP_SYS_NICE), everything started here runs at a higher priority
# than the rest of the machine; NICE=0 turns this off.
NICE=${NICE:--10}
if [ "$NICE" != 0 ] && [ "$(nice -n "$NICE" nice 2>/dev/null)" = "$NICE" ]; then
  CLIENT_PIN=(nice -n "$NICE" "${CLIENT_PIN[@]}") TARGET_PIN=(nice -n "$NICE" "${TARGET_PIN[@]}")
  PINNING="$PINNING; nice $NICE"
fi

log "building Cachet (release)"
(cd "$ROOT" && cargo build --release --quiet)
log "building the load-test tools (release)"
cargo build --release --quiet --manifest-path "$ROOT/load-tests/tools/Cargo.toml" \
  --target-dir "$ROOT/target/load-tests"
CACHET="$ROOT/target/release/cachet"
ORIGIN_BIN="$ROOT/target/load-tests/release/origin"
BURST_BIN="$ROOT/target/load-tests/release/burst"

# ---------------------------------------------------------------- processes and cleanup

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cachet-stampede.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=ports.sh
. "$ROOT/load-tests/ports.sh"
# shellcheck source=nginx.sh
. "$ROOT/load-tests/nginx.sh"

# wait_port PID PORT NAME: until PORT accepts connections (10 s), or PID died.
wait_port() {
  for _ in $(seq 200); do
    if ! kill -0 "$1" 2>/dev/null; then
      echo "$3 exited during start-up; its log:" >&2
      cat "$TMP/$3.log" >&2 || true
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "$3 did not listen on $2 within 10 s" >&2
  return 1
}

# start NAME PORT CMD...: runs CMD in the background with its output in $TMP/NAME.log;
# LAST_PID is its process id (nice and taskset exec the command, so it is the server's).
start() {
  local name=$1 port=$2
  shift 2
  "$@" >"$TMP/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_port "$LAST_PID" "$port" "$name"
}

# stop_all: ends every process started so far (between scenarios).
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
  PROXY_PIDS=()
}

# cachet_config FILE PORT ADMIN_PORT ORIGIN [REDIS_URL]
cachet_config() {
  local redis=""
  if [ -n "${5:-}" ]; then
    redis=$(printf '\n[cache.redis]\nurl = "%s"\nkey_prefix = "stampede:"\n' "$5")
  fi
  # worker_threads = 1: the proxy has one core here, as nginx has one worker process.
  cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$2"
worker_threads = 1
max_connections = 4096

[admin]
listen = "127.0.0.1:$3"

[log]
level = "warn"
access_log = false

[cache]
memory_max_bytes = "256MiB"
max_object_bytes = "8MiB"
$redis

[[routes]]
name = "obj"
path_prefix = "/obj/"
upstream = "http://$4"
stale_while_revalidate = "30s"
EOF
}

start_origin() {
  free_port ORIGIN_PORT
  ORIGIN="127.0.0.1:$ORIGIN_PORT"
  start origin "$ORIGIN_PORT" "${CLIENT_PIN[@]}" "$ORIGIN_BIN" --listen "$ORIGIN"
}

# ---------------------------------------------------------------- bursts and medians

# burst SCENARIO RUN [burst args...]: one burst; its output goes to $TMP/SCENARIO.out and a
# one-line summary to the terminal. Fails the script if the burst client fails. The CPU time
# of the processes in PROXY_PIDS during the burst is reported as target_cpu_ms.
PROXY_PIDS=()
burst() {
  local scenario=$1 run=$2 out pid cpu=()
  shift 2
  for pid in "${PROXY_PIDS[@]}"; do cpu+=(--cpu-pid "$pid"); done
  out=$("${CLIENT_PIN[@]}" "$BURST_BIN" --origin "$ORIGIN" --origin-delay-ms "$DELAY_MS" \
    --clients "$CLIENTS" "${cpu[@]}" "$@") || {
    echo "$out" >&2
    echo "burst client failed ($scenario, run $run)" >&2
    return 1
  }
  printf '### %s run %s\n%s\n' "$scenario" "$run" "$out" >>"$TMP/$scenario.out"
  local result statuses
  result=$(grep '^RESULT ' <<<"$out" | sed 's/^RESULT //')
  statuses=$(grep '^CACHE_STATUS ' <<<"$out" | sed 's/^CACHE_STATUS //')
  printf '  run %s: %s\n         %s\n' "$run" "$result" "$statuses" >&2
  echo "$result" >>"$TMP/$scenario.results"
  # An unexpected origin count: show the whole report, statuses per target included.
  if ! grep -q ' origin_requests=1 ' <<<" $result "; then echo "$out" >&2; fi
}

# field FILE NAME: the values of NAME=... in FILE, one per line.
field() { grep -o "\b$2=[^ ]*" "$1" | cut -d= -f2; }

# median FILE NAME
median() {
  field "$1" "$2" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "n/a"; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# summarize SCENARIO TITLE: the medians of every run of SCENARIO, on one line and in $SUMMARY.
SUMMARY=""
summarize() {
  local f="$TMP/$1.results" counts
  counts=$(field "$f" origin_requests | paste -sd, -)
  local line
  line=$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$2" \
    "$(median "$f" origin_requests)" "$counts" "$(median "$f" p50_ms)" "$(median "$f" p90_ms)" \
    "$(median "$f" p99_ms)" "$(median "$f" max_ms)" "$(median "$f" ratio_p50)" \
    "$(median "$f" waited)" "$(median "$f" target_cpu_ms)")
  SUMMARY="$SUMMARY$line"$'\n'
  log "$2: median of $(wc -l <"$f") runs: origin requests $(median "$f" origin_requests) (per run: $counts), p50 $(median "$f" p50_ms) ms, p99 $(median "$f" p99_ms) ms, p50/delay $(median "$f" ratio_p50)"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
COLD="delay_ms=$DELAY_MS&max_age=60"
STALE="delay_ms=$DELAY_MS&max_age=1"
TAG=$$

# start_nginx: nginx (1 worker) on NGINX_PORT in front of ORIGIN, with proxy_cache_lock and
# use_stale updating; NGINX_PIDS is its worker, which serves every request.
NGINX_PIDS=()
start_nginx() {
  free_port NGINX_PORT
  N="$TMP/nginx"
  nginx_conf "$N" "$NGINX_PORT" "$ORIGIN" "16m max_size=256m inactive=10m" \
    "  keepalive_requests 100000;" \
    $'      proxy_cache_lock_timeout 10s;\n      proxy_cache_lock_age 10s;'
  # nginx_conf opens its own directory to the worker; the one above it must be passable too.
  chmod 711 "$TMP"
  start nginx "$NGINX_PORT" "${TARGET_PIN[@]}" nginx -p "$N" -c "$N/nginx.conf" -e "$N/error.log"
  # CPU time is counted for the worker (it serves every request); it is forked after the
  # listening socket is opened, so wait for it.
  for _ in $(seq 100); do
    mapfile -t NGINX_PIDS < <(ps -o pid= -o args= --ppid "$LAST_PID" | awk '/worker process/ { print $1 }')
    [ ${#NGINX_PIDS[@]} -gt 0 ] && break
    sleep 0.05
  done
}

# ---------------------------------------------------------------- 1 and 3: one instance

# Cachet and nginx run side by side here, and their bursts alternate run by run, so that a
# slow spell of the shared machine falls on both alike.
NGINX_VERSION=""
if [ "$NGINX" = 1 ]; then NGINX_VERSION=$(nginx -v 2>&1 | sed 's/^nginx version: //'); fi
log "one Cachet instance${NGINX_VERSION:+ and $NGINX_VERSION}: cold key, $CLIENTS clients, ${DELAY_MS} ms origin, $RUNS runs"
start_origin
free_port PORT
free_port ADMIN_PORT
cachet_config "$TMP/cachet-1.toml" "$PORT" "$ADMIN_PORT" "$ORIGIN"
start cachet-1 "$PORT" "${TARGET_PIN[@]}" "$CACHET" --config "$TMP/cachet-1.toml"
CACHET_PID=$LAST_PID
if [ "$NGINX" = 1 ]; then start_nginx; fi
for run in $(seq "$RUNS"); do
  PROXY_PIDS=("$CACHET_PID")
  burst single "$run" --target "127.0.0.1:$PORT" --path "/obj/cold-$TAG-$run?$COLD"
  if [ "$NGINX" = 1 ]; then
    PROXY_PIDS=("${NGINX_PIDS[@]}")
    burst nginx "$run" --target "127.0.0.1:$NGINX_PORT" --path "/obj/nginx-cold-$TAG-$run?$COLD"
  fi
done
summarize single "Cachet, 1 instance, cold key"

log "just-expired key under stale-while-revalidate (nginx: use_stale updating), $RUNS runs"
for run in $(seq "$RUNS"); do
  PROXY_PIDS=("$CACHET_PID")
  burst swr "$run" --target "127.0.0.1:$PORT" --path "/obj/swr-$TAG-$run?$STALE" \
    --prime --release-after-prime-ms "$SWR_WAIT_MS"
  if [ "$NGINX" = 1 ]; then
    PROXY_PIDS=("${NGINX_PIDS[@]}")
    burst nginx-swr "$run" --target "127.0.0.1:$NGINX_PORT" --path "/obj/nginx-swr-$TAG-$run?$STALE" \
      --prime --release-after-prime-ms "$NGINX_SWR_WAIT_MS"
  fi
done
summarize swr "Cachet, 1 instance, just-expired key (SWR)"
stop_all

# ---------------------------------------------------------------- 2: instances on one Redis

log "$INSTANCES Cachet instances on one redis-server: cold key, $RUNS runs"
start_origin
free_port REDIS_PORT
mkdir -p "$TMP/redis"
start redis "$REDIS_PORT" "${CLIENT_PIN[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
  --save '' --appendonly no --dir "$TMP/redis"
TARGETS=()
for i in $(seq "$INSTANCES"); do
  free_port PORT
  free_port ADMIN_PORT
  cachet_config "$TMP/cachet-shared-$i.toml" "$PORT" "$ADMIN_PORT" "$ORIGIN" \
    "redis://127.0.0.1:$REDIS_PORT/0"
  start "cachet-shared-$i" "$PORT" "${TARGET_PIN[@]}" "$CACHET" --config "$TMP/cachet-shared-$i.toml"
  PROXY_PIDS+=("$LAST_PID")
  TARGETS+=(--target "127.0.0.1:$PORT")
done
for run in $(seq "$RUNS"); do
  burst shared "$run" "${TARGETS[@]}" --path "/obj/shared-$TAG-$run?$COLD"
done
summarize shared "Cachet, $INSTANCES instances on one Redis, cold key"
stop_all

if [ "$NGINX" = 1 ]; then
  summarize nginx "nginx proxy_cache_lock, cold key"
  summarize nginx-swr "nginx use_stale updating, just-expired key"
fi

# ---------------------------------------------------------------- report

cat <<EOF

## Stampede: $CLIENTS concurrent clients, one key, ${DELAY_MS} ms origin (median of $RUNS runs)

$(date -u '+%Y-%m-%d %H:%M UTC'); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')); Linux $(uname -r)
Cachet $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo " + uncommitted changes in src/"); pinning: $PINNING${NGINX_VERSION:+; $NGINX_VERSION}

| scenario | origin requests | per run | p50 ms | p90 ms | p99 ms | max ms | p50 / origin delay | clients ≥ origin delay | proxy CPU ms |
|---|---|---|---|---|---|---|---|---|---|
$SUMMARY
EOF

# ---------------------------------------------------------------- checks (issue 6 targets)

FAILED=0
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then echo "ok      $what"; else echo "FAILED  $what"; FAILED=1; fi
}
# every SCENARIO FIELD VALUE: FIELD is VALUE in every run.
every() { [ -z "$(field "$TMP/$1.results" "$2" | grep -vx "$3")" ]; }
# at_most SCENARIO FIELD MAX: the median of FIELD is at most MAX.
at_most() { awk -v v="$(median "$TMP/$1.results" "$2")" -v max="$3" 'BEGIN { exit !(v <= max) }'; }
check "Cachet, 1 instance, cold key: 1 origin request in every run" every single origin_requests 1
check "Cachet, 1 instance, cold key: median p50 <= 1.1x the origin delay" at_most single ratio_p50 1.1
check "Cachet, $INSTANCES instances on one Redis: 1 origin request in every run" every shared origin_requests 1
check "Cachet, just-expired key (SWR): 1 origin request in every run" every swr origin_requests 1
check "Cachet, just-expired key (SWR): no client waited for the origin in any run" every swr waited 0
for scenario in single swr shared; do
  check "Cachet, $scenario: every request answered" every "$scenario" errors 0
done
[ "$FAILED" = 0 ] || echo "(the p50 check is sensitive to other load on the machine; see the load average above)"
exit "$FAILED"
