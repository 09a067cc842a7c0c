#!/usr/bin/env bash
# Load harness (issue 9, "Performance"): Cachet against nginx proxy_cache and Varnish on the
# hit path, the miss path, the shared tier and purges, with wrk on loopback.
#
#   load-tests/run.sh                 # full run: 5 runs of 10 s per scenario and target (~25 min)
#   SMOKE=1 load-tests/run.sh         # 1 run of 3 s, small purge sizes (~2-3 minutes once built)
#
# Scenarios (SCENARIOS, in this order; each target gets the same requests):
#   hot      one key, 1 KiB body, fresh for a day: the hot hit
#   keys     KEYS (10 000) keys of 4 KiB, each wrk thread walking its share round and round
#   big      one key, 1 MiB body
#   close    the hot hit with `Connection: close` on every request: a new connection each time
#   miss     every request a new URL the origin marks no-store: through to the origin; the
#            origin asked directly is the baseline
#   l2       Cachet only: the same KEYS keys served from Redis (an instance whose memory tier
#            keeps nothing) against the same keys from memory (an instance on the same Redis)
#   purge    Cachet only: N tagged entries (PURGE_NS), then POST /purge {"tags":[...]} timed
#            with curl, then the next request for a purged URL; memory only and with Redis
#   stampede load-tests/stampede.sh (cold key, 3 instances on Redis, SWR, nginx), its medians
#
# Environment:
#   RUNS (5)  DURATION (10, seconds per run)  WARMUP (3, seconds of wrk per scenario and target)
#   CONNECTIONS (50)  THREADS (1, wrk threads)  KEYS (10000)  PURGE_NS ("1000 10000 100000")
#   SCENARIOS ("hot keys big close miss l2 purge stampede")  TARGETS ("cachet nginx varnish")
#   STAMPEDE_RUNS (RUNS)  NICE (-10; 0 = do not raise priority)  OUT (results directory)
#   SMOKE=1 (RUNS=1, DURATION=3, WARMUP=1, PURGE_NS="1000 10000", results in <date>-smoke)
#   KEEP_TMP=1 keeps the temporary directory (configs, logs, wrk outputs)
#   BUILD=0 skips the cargo builds and uses target/release/cachet as it is (the report then
#   names the checked-out commit, which need not be what that binary was built from)
#
# Noise control on 2 cores: wrk, the origin and redis-server run on CPU 0, the target under
# test on CPU 1 (taskset), at nice -10 when allowed. nginx has 1 worker, Cachet
# worker_threads = 1, Varnish its default thread pools: each target has the same single core.
# The target's CPU time (utime + stime of every process in its process group, from
# /proc/<pid>/stat) is read before and after each run and divided by wrk's request count.
#
# Output: $OUT/report.md (medians, min–max, ratios, targets, machine), raw.csv (one line per
# run), purge.csv, PNG charts (gnuplot), stampede.md. Everything listens on 127.0.0.1 and
# lives in a temporary directory removed at the end; every process started here is killed
# on exit (by process group). No system service or /etc is touched: nginx, varnishd and
# redis-server run with their own configs from the temporary directory on free ports.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE="$ROOT/load-tests"
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  RUNS=${RUNS:-1}
  DURATION=${DURATION:-3}
  WARMUP=${WARMUP:-1}
  PURGE_NS=${PURGE_NS:-"1000 10000"}
fi
RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
KEYS=${KEYS:-10000}
PURGE_NS=${PURGE_NS:-"1000 10000 100000"}
SCENARIOS=${SCENARIOS:-"hot keys big close miss l2 purge stampede"}
TARGETS=${TARGETS:-"cachet nginx varnish"}
STAMPEDE_RUNS=${STAMPEDE_RUNS:-$RUNS}
DAY=$(date -u +%F)
SUFFIX=""
[ "$SMOKE" != 1 ] || SUFFIX=-smoke
OUT=${OUT:-"$HERE/results/$DAY$SUFFIX"}
HOST_HEADER="cachet.test"
LUA="$HERE/wrk/paths.lua"

log() { printf '==> [%4ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
  printf 'run.sh: %s\n' "$*" >&2
  exit 1
}
has() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }

for n in "$RUNS" "$DURATION" "$WARMUP" "$CONNECTIONS" "$THREADS" "$KEYS" $PURGE_NS; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || die "RUNS, DURATION, WARMUP, CONNECTIONS, THREADS, KEYS and PURGE_NS take positive integers (got '$n')"
done
for s in $SCENARIOS; do
  has "$s" "hot keys big close miss l2 purge stampede" || die "unknown scenario '$s'"
done
for t in $TARGETS; do
  has "$t" "cachet nginx varnish" || die "unknown target '$t' (cachet, nginx, varnish)"
done
has cachet "$TARGETS" || die "TARGETS must include cachet"

# ---------------------------------------------------------------- packages

# command → Debian package, installed with apt when the command is missing.
need_apt=()
want() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }
want curl curl
want wrk wrk
want python3 python3
want gnuplot gnuplot-nox
want taskset util-linux
if has nginx "$TARGETS" || has stampede "$SCENARIOS"; then want nginx nginx; fi
if has varnish "$TARGETS"; then want varnishd varnish; fi
if has l2 "$SCENARIOS" || has purge "$SCENARIOS" || has stampede "$SCENARIOS"; then
  want redis-server redis-server
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} (apt)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${need_apt[*]}; not root and no sudo to install them"
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi
# Packaged services that apt may have started are left alone: this script runs its own.

# ---------------------------------------------------------------- pinning and builds

[ "$(nproc)" -ge 2 ] || log "fewer than 2 CPUs: no pinning, the figures mix load generator and target"
CLIENT_PIN=() TARGET_PIN=() PINNING="none (fewer than 2 CPUs)"
if [ "$(nproc)" -ge 2 ]; then
  CLIENT_PIN=(taskset -c 0) TARGET_PIN=(taskset -c 1)
  PINNING="wrk, curl, origin and redis-server on CPU 0; the target on CPU 1"
fi
NICE=${NICE:--10}
if [ "$NICE" != 0 ] && [ "$(nice -n "$NICE" nice 2>/dev/null)" = "$NICE" ]; then
  CLIENT_PIN=(nice -n "$NICE" "${CLIENT_PIN[@]}") TARGET_PIN=(nice -n "$NICE" "${TARGET_PIN[@]}")
  PINNING="$PINNING; nice $NICE"
fi

if [ "${BUILD:-1}" = 1 ]; then
  log "building Cachet (release)"
  (cd "$ROOT" && cargo build --release --quiet)
  log "building the load-test tools (release)"
  cargo build --release --quiet --manifest-path "$HERE/tools/Cargo.toml" --target-dir "$ROOT/target/load-tests"
fi
for bin in "$ROOT/target/release/cachet" "$ROOT/target/load-tests/release/origin"; do
  [ -x "$bin" ] || die "$bin is missing (BUILD=0 uses the binaries already built)"
done
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes and cleanup

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cachet-load.XXXXXX")
# nginx workers and varnishd's child drop to unprivileged users when started as root.
chmod 711 "$TMP"
GROUPS_STARTED=()

# kill_group PGID: TERM to the whole process group, KILL after 15 s (Cachet drains for up
# to its drain_timeout, 10 s).
kill_group() {
  kill -TERM -- "-$1" 2>/dev/null || return 0
  for _ in $(seq 150); do
    kill -0 -- "-$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$1" 2>/dev/null || true
}

# fg_run CMD...: runs CMD in the background and waits for it. bash runs its INT/TERM traps only
# once a foreground command has finished (and ignores SIGINT altogether when the command handles
# it, as wrk does), while `wait` is interrupted at once: Ctrl-C or a TERM stops the run now.
FG_PID=""
fg_run() {
  local rc=0
  "$@" &
  FG_PID=$!
  wait "$FG_PID" || rc=$?
  FG_PID=""
  return "$rc"
}

cleanup() {
  local status=$? g
  trap - EXIT INT TERM
  if [ -n "$FG_PID" ]; then
    kill -TERM "$FG_PID" 2>/dev/null || true
    wait "$FG_PID" 2>/dev/null || true
  fi
  for g in "${GROUPS_STARTED[@]}"; do kill_group "$g"; done
  for g in "${GROUPS_STARTED[@]}"; do wait "$g" 2>/dev/null || true; done
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Copies of the binaries: others may rebuild target/release while this runs.
mkdir -p "$TMP/bin"
cp "$ROOT/target/release/cachet" "$ROOT/target/load-tests/release/origin" "$TMP/bin/"
chmod 755 "$TMP/bin"
CACHET="$TMP/bin/cachet"
ORIGIN_BIN="$TMP/bin/origin"
CACHET_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes in src/')"

# shellcheck source=ports.sh
. "$HERE/ports.sh"
# shellcheck source=nginx.sh
. "$HERE/nginx.sh"

# start NAME CMD...: CMD in the background in its own process group (setsid), output in
# $TMP/NAME.log. LAST_PID is its pid, which is also its process-group id.
start() {
  local name=$1
  shift
  setsid "$@" >"$TMP/$name.log" 2>&1 </dev/null &
  LAST_PID=$!
  GROUPS_STARTED+=("$LAST_PID")
  # setsid execs the command when it is not a group leader (a background job of a script
  # never is); check, since cleanup and CPU accounting rely on it.
  local pgid=""
  for _ in $(seq 50); do
    pgid=$(ps -o pgid= -p "$LAST_PID" 2>/dev/null | tr -d ' ') || true
    [ "$pgid" = "$LAST_PID" ] && return 0
    kill -0 "$LAST_PID" 2>/dev/null || break
    sleep 0.02
  done
  kill -0 "$LAST_PID" 2>/dev/null || { cat "$TMP/$name.log" >&2; die "$name exited at once"; }
  die "$name (pid $LAST_PID) is not in its own process group (pgid '$pgid')"
}

# wait_http NAME PID URL [SECONDS]: until URL answers any HTTP status (bounded), or fail
# with the log of NAME when PID exits or time runs out.
wait_http() {
  local name=$1 pid=$2 url=$3 limit=${4:-30} code
  local deadline=$((SECONDS + limit))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "---- $name log ($TMP/$name.log):" >&2
      tail -n 40 "$TMP/$name.log" >&2 || true
      die "$name exited during start-up"
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null) || true
    if [ -n "$code" ] && [ "$code" != 000 ]; then return 0; fi
    sleep 0.1
  done
  echo "---- $name log ($TMP/$name.log):" >&2
  tail -n 40 "$TMP/$name.log" >&2 || true
  die "$name did not answer $url within ${limit} s"
}

# wait_tcp NAME PID PORT [SECONDS]: the same for a plain TCP port (redis-server).
wait_tcp() {
  local name=$1 pid=$2 port=$3 limit=${4:-30}
  local deadline=$((SECONDS + limit))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$TMP/$name.log" >&2; die "$name exited during start-up"; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  tail -n 40 "$TMP/$name.log" >&2
  die "$name did not listen on $port within ${limit} s"
}

# ---------------------------------------------------------------- targets

# Per target: its base URL, its process group (CPU accounting), its admin URL (Cachet).
declare -A URL PGID ADMIN

start_origin() {
  local port
  free_port port
  start origin "${CLIENT_PIN[@]}" "$ORIGIN_BIN" --listen "127.0.0.1:$port" --threads 1
  ORIGIN="127.0.0.1:$port"
  URL[origin]="http://$ORIGIN"
  PGID[origin]=$LAST_PID
  wait_http origin "$LAST_PID" "http://$ORIGIN/__count"
}

# cachet_config FILE PORT ADMIN_PORT [[cache] lines] [redis url]
cachet_config() {
  local redis="" cache=${4:-$'memory_max_bytes = "256MiB"\nmax_object_bytes = "8MiB"'}
  if [ -n "${5:-}" ]; then
    # op_timeout: the default 50 ms counts a slow Redis reply as a miss; on a busy 2-core
    # machine that sends some L2 reads to the origin and the L2 figures stop being L2 hits.
    redis=$(printf '[cache.redis]\nurl = "%s"\nkey_prefix = "load:"\nop_timeout = "1s"\n' "$5")
  fi
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
$cache

$redis

[[routes]]
name = "obj"
path_prefix = "/obj/"
upstream = "http://$ORIGIN"
stale_while_revalidate = "30s"
EOF
  "$CACHET" check --config "$1" >/dev/null || die "cachet check failed on $1"
}

# start_cachet NAME [[cache] lines] [redis url]
start_cachet() {
  local name=$1 port admin
  free_port port
  free_port admin
  cachet_config "$TMP/$name.toml" "$port" "$admin" "${2:-}" "${3:-}"
  start "$name" "${TARGET_PIN[@]}" "$CACHET" --config "$TMP/$name.toml"
  URL[$name]="http://127.0.0.1:$port"
  ADMIN[$name]="http://127.0.0.1:$admin"
  PGID[$name]=$LAST_PID
  wait_http "$name" "$LAST_PID" "${ADMIN[$name]}/healthz"
  wait_http "$name" "$LAST_PID" "${URL[$name]}/obj/ready"
}

start_nginx() {
  local port N="$TMP/nginx"
  free_port port
  # Like a common production setup: sendfile on, access log off, long keep-alive; the
  # cache lock, stale-while-updating and background update of the issue, as in stampede.sh.
  nginx_conf "$N" "$port" "$ORIGIN" "64m max_size=1g inactive=1h" \
    $'  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;'
  start nginx "${TARGET_PIN[@]}" nginx -p "$N" -c "$N/nginx.conf" -e "$N/error.log"
  URL[nginx]="http://127.0.0.1:$port"
  PGID[nginx]=$LAST_PID
  wait_http nginx "$LAST_PID" "${URL[nginx]}/obj/ready"
}

start_varnish() {
  local port V="$TMP/varnish"
  free_port port
  mkdir -p "$V"
  chmod 755 "$V"
  # The builtin VCL plus grace: a stale object is served while one background fetch
  # refreshes it (Varnish's stale-while-revalidate).
  cat >"$V/load.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "${ORIGIN#*:}"; }
sub vcl_backend_response {
  set beresp.grace = 30s;
}
sub vcl_deliver {
  if (obj.hits > 0) { set resp.http.Cache-Status = "varnish; hit"; }
  else { set resp.http.Cache-Status = "varnish; fwd=miss"; }
}
EOF
  chmod 644 "$V/load.vcl"
  # As root, varnishd runs its child as the packaged 'vcache' user (-j unix); otherwise
  # it cannot switch users, so no jail.
  local jail=()
  [ "$(id -u)" -eq 0 ] || jail=(-j none)
  # -T none: no management port; -F: in the foreground, so the process group is ours.
  start varnish "${TARGET_PIN[@]}" varnishd -F "${jail[@]}" -n "$V/work" -T none \
    -a "127.0.0.1:$port" -f "$V/load.vcl" -s malloc,256m
  URL[varnish]="http://127.0.0.1:$port"
  PGID[varnish]=$LAST_PID
  wait_http varnish "$LAST_PID" "${URL[varnish]}/obj/ready" 60
}

start_redis() {
  local port
  free_port port
  mkdir -p "$TMP/redis"
  start redis "${CLIENT_PIN[@]}" redis-server --bind 127.0.0.1 --port "$port" --save '' \
    --appendonly no --dir "$TMP/redis" --maxmemory 1gb --maxmemory-policy volatile-lru
  REDIS_PORT=$port
  PGID[redis]=$LAST_PID
  wait_tcp redis "$LAST_PID" "$port"
}

# ---------------------------------------------------------------- measuring

# cpu_ticks PGID: utime + stime (clock ticks) of every process of the group, threads included.
cpu_ticks() {
  local total=0 pid stat f
  for pid in $(pgrep -g "$1" || true); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -ra f <<<"${stat##*) }"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

origin_count() { curl -s --max-time 5 "http://$ORIGIN/__count"; }

# metric TARGET SERIES: the sum of the samples of SERIES (a prefix, labels included) on a
# Cachet instance's /metrics; 0 when absent.
metric() {
  curl -s --max-time 5 "${ADMIN[$1]}/metrics" |
    awk -v s="$2" 'index($0, s) == 1 { sum += $NF } END { printf "%d\n", sum }'
}

# wrk_run OUTFILE URL SECONDS [VAR=value ...]: one bounded wrk run with paths.lua, and the
# headers in WRK_HEADERS (-H "Name: value" pairs) besides Host.
WRK_HEADERS=()
wrk_run() {
  local out=$1 url=$2 secs=$3
  shift 3
  fg_run env LT_THREADS="$THREADS" "$@" "${CLIENT_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" \
    -d"${secs}s" --timeout 10s --latency -H "Host: $HOST_HEADER" "${WRK_HEADERS[@]}" \
    -s "$LUA" "$url" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk failed ($url)"; }
  grep -q '^RESULT ' "$out" || { cat "$out" >&2; die "wrk printed no RESULT line ($url)"; }
}

# fill TARGET PATH_PREFIX N QUERY: GET PATH_PREFIX0..N-1?QUERY once each through TARGET
# (curl, 16 in parallel, keep-alive); fails unless every answer is 200.
fill() {
  local target=$1 prefix=$2 n=$3 query=$4 ok
  fg_run "${CLIENT_PIN[@]}" curl -s --no-progress-meter -Z --parallel-max 16 -H "Host: $HOST_HEADER" \
    -w '%{stderr}%{http_code}\n' "${URL[$target]}$prefix[0-$((n - 1))]?$query" \
    2>"$TMP/fill.codes" >/dev/null || true
  ok=$(grep -cx 200 "$TMP/fill.codes" || true)
  [ "$ok" = "$n" ] || die "fill of $n through $target: $ok answered 200 ($(sort "$TMP/fill.codes" | uniq -c | head -3 | tr '\n' ' '))"
}

CSV="$TMP/raw.csv"
echo "scenario,target,run,requests,duration_s,rps,p50_ms,p90_ms,p99_ms,max_ms,cpu_ticks,cpu_us_per_req,errors,origin_requests,cachet_hits,l2_hits,redis_cpu_us_per_req" >"$CSV"

# measure SCENARIO TARGET RUN URL [VAR=value ...]: one measured run, one CSV line.
measure() {
  local scenario=$1 target=$2 run=$3 url=$4
  shift 4
  local out="$TMP/wrk-$scenario-$target-$run.out"
  local cpu0 cpu1 org0 org1 hits0="" hits1="" l20="" l21="" r0="" r1=""
  if [ -n "${ADMIN[$target]:-}" ]; then
    hits0=$(metric "$target" 'cachet_requests_total{route="obj",cache="hit"}')
    l20=$(metric "$target" 'cachet_tier_ops_total{tier="shared",op="get",outcome="hit"}')
  fi
  [ "$scenario" = l2 ] && r0=$(cpu_ticks "${PGID[redis]}")
  org0=$(origin_count)
  cpu0=$(cpu_ticks "${PGID[$target]}")
  wrk_run "$out" "$url" "$DURATION" "$@"
  cpu1=$(cpu_ticks "${PGID[$target]}")
  org1=$(origin_count)
  [ "$scenario" = l2 ] && r1=$(cpu_ticks "${PGID[redis]}")
  if [ -n "${ADMIN[$target]:-}" ]; then
    hits1=$(metric "$target" 'cachet_requests_total{route="obj",cache="hit"}')
    l21=$(metric "$target" 'cachet_tier_ops_total{tier="shared",op="get",outcome="hit"}')
  fi
  local line
  line=$(grep '^RESULT ' "$out" | sed 's/^RESULT //')
  awk -v line="$line" -v s="$scenario" -v t="$target" -v r="$run" -v ticks=$((cpu1 - cpu0)) \
    -v hz="$CLK_TCK" -v org=$((org1 - org0)) \
    -v hits="$([ -n "$hits0" ] && echo $((hits1 - hits0)))" \
    -v l2="$([ -n "$l20" ] && echo $((l21 - l20)))" \
    -v rt="$([ -n "$r0" ] && echo $((r1 - r0)))" 'BEGIN {
      n = split(line, kv, " ")
      for (i = 1; i <= n; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
      req = v["requests"]; secs = v["duration_us"] / 1e6
      if (req == 0) req = 1e-9
      printf "%s,%s,%d,%d,%.3f,%.1f,%.3f,%.3f,%.3f,%.3f,%d,%.2f,%d,%d,%s,%s,%s\n", s, t, r,
        v["requests"], secs, v["requests"] / secs, v["p50_us"] / 1000, v["p90_us"] / 1000,
        v["p99_us"] / 1000, v["max_us"] / 1000, ticks, ticks * 1e6 / hz / req, v["errors"], org,
        hits, l2, (rt == "" ? "" : sprintf("%.2f", rt * 1e6 / hz / req))
    }' | tee -a "$CSV" | awk -F, '{
      printf "    %-8s %-10s run %s: %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  CPU %7.2f us/req  errors %s  origin %s%s%s\n",
        $1, $2, $3, $6, $7, $9, $12, $13, $14, ($15 == "" ? "" : "  hits " $15), ($16 == "" ? "" : "  L2 hits " $16) }' >&2
}

# warm TARGET URL [VAR=value ...]: WARMUP seconds of the same load, not recorded.
warm() {
  local target=$1 url=$2
  shift 2
  wrk_run "$TMP/warm-$target.out" "$url" "$WARMUP" "$@"
}

# ---------------------------------------------------------------- start

mkdir -p "$OUT"
RUN_ID=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M UTC')
log "results in $OUT; RUNS=$RUNS DURATION=${DURATION}s WARMUP=${WARMUP}s CONNECTIONS=$CONNECTIONS THREADS=$THREADS KEYS=$KEYS"
log "load average at start: $LOAD_START; pinning: $PINNING"

need_main=0
for s in hot keys big close miss; do has "$s" "$SCENARIOS" && need_main=1; done
need_l2=0
has l2 "$SCENARIOS" && need_l2=1
has purge "$SCENARIOS" && need_main=1 && need_l2=1

start_origin
if [ "$need_main" = 1 ]; then
  start_cachet cachet
  has nginx "$TARGETS" && start_nginx
  has varnish "$TARGETS" && start_varnish
fi
if [ "$need_l2" = 1 ]; then
  start_redis
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  # The L1 instance: the usual memory tier, on Redis.
  start_cachet cachet-l1 "" "$REDIS_URL"
  # The L2 instance: one partition may hold 0.1% of 64 KiB (65 bytes) of memory, so nothing
  # is ever kept in memory and every hit comes from Redis.
  start_cachet cachet-l2 $'memory_max_bytes = "64KiB"\nmax_object_bytes = "64KiB"\ntenant_max_share = 0.001' "$REDIS_URL"
fi
log "started: origin $ORIGIN$(for t in $TARGETS cachet-l1 cachet-l2; do [ -n "${URL[$t]:-}" ] && printf ', %s %s' "$t" "${URL[$t]#http://}"; done)"

# ---------------------------------------------------------------- hit scenarios

# hit_scenario NAME PATH: one key, fetched once through every target, then measured.
hit_scenario() {
  local name=$1 path=$2 t run
  log "scenario $name: GET $path, $RUNS runs of ${DURATION}s per target"
  for t in $TARGETS; do
    curl -s -o /dev/null -H "Host: $HOST_HEADER" "${URL[$t]}$path"
    warm "$t" "${URL[$t]}$path"
  done
  for run in $(seq "$RUNS"); do
    for t in $TARGETS; do measure "$name" "$t" "$run" "${URL[$t]}$path"; done
  done
}

if has hot "$SCENARIOS"; then hit_scenario hot "/obj/hot1k?size=1024&max_age=86400"; fi

if has keys "$SCENARIOS"; then
  log "scenario keys: $KEYS keys of 4 KiB, $RUNS runs of ${DURATION}s per target"
  for t in $TARGETS; do
    fill "$t" /obj/k "$KEYS" "size=4096&max_age=86400"
    warm "$t" "${URL[$t]}/" LT_PATH="/obj/k{k}?size=4096&max_age=86400" LT_KEYS="$KEYS"
  done
  for run in $(seq "$RUNS"); do
    for t in $TARGETS; do
      measure keys "$t" "$run" "${URL[$t]}/" LT_PATH="/obj/k{k}?size=4096&max_age=86400" LT_KEYS="$KEYS"
    done
  done
fi

if has big "$SCENARIOS"; then hit_scenario big "/obj/big1m?size=1048576&max_age=86400"; fi

# The hot hit again, each request on a new connection that the target closes after answering
# (RFC 9112 §9.6): accept, the first read and the close are in every request's cost. wrk
# reconnects after each answer; the target's side keeps the TIME-WAIT, so the client's ports
# are not used up.
if has close "$SCENARIOS"; then
  WRK_HEADERS=(-H "Connection: close")
  hit_scenario close "/obj/hot1k?size=1024&max_age=86400"
  WRK_HEADERS=()
fi

# ---------------------------------------------------------------- miss path

if has miss "$SCENARIOS"; then
  log "scenario miss: a new no-store URL per request, origin direct as the baseline"
  for t in origin $TARGETS; do
    warm "$t" "${URL[$t]}/" LT_MODE=unique LT_PATH="/obj/miss-{k}?size=1024" LT_SALT="w$RUN_ID"
  done
  for run in $(seq "$RUNS"); do
    for t in origin $TARGETS; do
      measure miss "$t" "$run" "${URL[$t]}/" LT_MODE=unique LT_PATH="/obj/miss-{k}?size=1024" \
        LT_SALT="r$RUN_ID-$run"
    done
  done
fi

# ---------------------------------------------------------------- shared tier

if has l2 "$SCENARIOS"; then
  log "scenario l2: $KEYS keys of 4 KiB from memory (cachet-l1) and from Redis (cachet-l2)"
  L2_PATH="/obj/l{k}?size=4096&max_age=86400"
  fill cachet-l1 /obj/l "$KEYS" "size=4096&max_age=86400"
  # Writes to Redis are off the response path: wait until they have landed.
  deadline=$((SECONDS + 60))
  while :; do
    n=$(redis-cli -p "$REDIS_PORT" dbsize 2>/dev/null || echo 0)
    [ "${n:-0}" -ge "$KEYS" ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "Redis holds $n keys, expected at least $KEYS, 60 s after the fill"
    sleep 0.2
  done
  for t in cachet-l1 cachet-l2; do warm "$t" "${URL[$t]}/" LT_PATH="$L2_PATH" LT_KEYS="$KEYS"; done
  for run in $(seq "$RUNS"); do
    for t in cachet-l1 cachet-l2; do
      measure l2 "$t" "$run" "${URL[$t]}/" LT_PATH="$L2_PATH" LT_KEYS="$KEYS"
    done
  done
fi

# ---------------------------------------------------------------- purge

PURGE_CSV="$TMP/purge.csv"
echo "target,n,run,fill_s,memory_entries,hit_ms,hit_status,purge_ms,purge_http,next_ms,next_status" >"$PURGE_CSV"

# timed_get TARGET PATH: "<ms> <Cache-Status>" of one GET.
timed_get() {
  local out status
  out=$("${CLIENT_PIN[@]}" curl -s -o /dev/null -D "$TMP/headers" -H "Host: $HOST_HEADER" \
    -w '%{time_total}' "${URL[$1]}$2")
  status=$(grep -i '^cache-status:' "$TMP/headers" | cut -d: -f2- | tr -d '\r' | sed 's/^ *//; s/ /_/g')
  awk -v s="$out" -v st="${status:-none}" 'BEGIN { printf "%.3f %s\n", s * 1000, st }'
}

if has purge "$SCENARIOS"; then
  log "scenario purge: N tagged entries (N in $PURGE_NS), POST /purge {\"tags\":[...]}, next request"
  for target in cachet cachet-l1; do
    for n in $PURGE_NS; do
      for run in $(seq "$RUNS"); do
        tag="pt-$RUN_ID-$target-$n-$run"
        query="size=64&max_age=86400&tags=$tag"
        t0=$(date +%s.%N)
        fill "$target" "/obj/$tag-" "$n" "$query"
        fill_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        entries=$(metric "$target" 'cachet_memory_entries')
        read -r hit_ms hit_status < <(timed_get "$target" "/obj/$tag-0?$query")
        purge=$("${CLIENT_PIN[@]}" curl -s -o "$TMP/purge.body" -w '%{http_code} %{time_total}' \
          -X POST -H 'Content-Type: application/json' -d "{\"tags\":[\"$tag\"]}" "${ADMIN[$target]}/purge")
        grep -q '"ok": *true' "$TMP/purge.body" || die "purge on $target: $(cat "$TMP/purge.body")"
        read -r next_ms next_status < <(timed_get "$target" "/obj/$tag-0?$query")
        case "$next_status" in *fwd=miss*) ;; *) log "WARNING: after the purge, $target answered '$next_status' (expected a miss)" ;; esac
        purge_ms=$(awk -v s="${purge#* }" 'BEGIN { printf "%.3f", s * 1000 }')
        echo "$target,$n,$run,$fill_s,$entries,$hit_ms,$hit_status,$purge_ms,${purge%% *},$next_ms,$next_status" |
          tee -a "$PURGE_CSV" | awk -F, '{ printf "    purge %-10s N=%-7s run %s: fill %s s, hit %s ms, purge %s ms (HTTP %s), next %s ms (%s)\n", $1, $2, $3, $4, $6, $8, $9, $10, $11 }' >&2
      done
    done
  done
fi

# ---------------------------------------------------------------- versions, then stop

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "started=$STARTED_AT"
  echo "load_start=$LOAD_START"
  echo "load_end=$LOAD_END"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  echo "kernel=$(uname -r)"
  echo "cachet=$CACHET_COMMIT"
  echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //' || true)"
  echo "varnish=$(varnishd -V 2>&1 | head -1 | sed 's/^varnishd (\(.*\) revision.*/\1/' || true)"
  echo "redis=$(redis-server --version 2>/dev/null | awk '{ print $3 }' | sed 's/v=/redis-server /' || true)"
  echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }' || true)"
  echo "rustc=$(rustc -V 2>/dev/null || true)"
  echo "pinning=$PINNING"
  echo "runs=$RUNS"
  echo "duration=$DURATION"
  echo "warmup=$WARMUP"
  echo "connections=$CONNECTIONS"
  echo "threads=$THREADS"
  echo "keys=$KEYS"
  echo "purge_ns=$PURGE_NS"
  echo "scenarios=$SCENARIOS"
  echo "targets=$TARGETS"
  echo "smoke=$SMOKE"
  echo "stampede_runs=$STAMPEDE_RUNS"
  echo "clk_tck=$CLK_TCK"
} >"$TMP/meta.txt"

# Stop everything before the stampede measurement, which starts its own servers.
for g in "${GROUPS_STARTED[@]}"; do kill_group "$g"; done
for g in "${GROUPS_STARTED[@]}"; do wait "$g" 2>/dev/null || true; done
GROUPS_STARTED=()

cp "$CSV" "$OUT/raw.csv"
cp "$PURGE_CSV" "$OUT/purge.csv"
cp "$TMP/meta.txt" "$OUT/meta.txt"

# ---------------------------------------------------------------- stampede

rm -f "$OUT/stampede.md"
if has stampede "$SCENARIOS"; then
  log "scenario stampede: load-tests/stampede.sh with RUNS=$STAMPEDE_RUNS (its log: $OUT/stampede.log)"
  set +e
  fg_run env RUNS="$STAMPEDE_RUNS" NGINX=1 NICE="$NICE" "$HERE/stampede.sh" >"$OUT/stampede.md" 2>"$OUT/stampede.log"
  status=$?
  set -e
  # Interrupted (its own INT/TERM trap exits 130): stop here too.
  [ "$status" != 130 ] || exit 130
  echo "stampede_exit=$status" >>"$OUT/meta.txt"
  [ "$status" = 0 ] || log "stampede.sh exited $status (see $OUT/stampede.md and stampede.log)"
fi
echo "load_end_all=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"

# ---------------------------------------------------------------- report

log "writing the report"
python3 "$HERE/report.py" "$OUT"
log "done: $OUT/report.md"
