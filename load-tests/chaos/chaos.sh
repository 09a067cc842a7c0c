#!/usr/bin/env bash
# Chaos under load (issue 10, "Hardening"): 3 Cachet instances on one redis-server, steady
# wrk load on each, and a sequence of faults injected while the load runs:
#
#   baseline          no fault (the caches warm up)
#   redis-kill        kill -9 redis-server, REDIS_DOWN s later start it again (empty)
#   redis-pause       SIGSTOP redis-server for REDIS_PAUSE s, then SIGCONT
#   origin-kill       kill -9 the origin, ORIGIN_DOWN s later start it again
#   instance-restart  SIGTERM one Cachet instance, wait for it to exit, start it again
#
#   load-tests/chaos/chaos.sh              # ~70 s of load, ~2 min with start-up (after the builds)
#
# Per fault window: responses, 5xx (by code), other statuses, connection errors, stale
# answers (delta of cachet_stale_served_total over every instance) and recovery time:
#   Redis: from redis-server being back until every instance's /readyz says
#          "shared_tier":"up" (polled every 100 ms)
#   origin: from the origin being back until a never-seen key through instance 1 answers 200
#   instance: from starting the new process until its client listener answers 200
# Writes results/<date>/report.md (printed too), chaos-seconds.csv and events.tsv.
# Exit status 1 when a Redis fault window saw any 5xx or a fault did not recover.
#
# Load: one wrk per instance, -tN -cN with N = CONNECTIONS (one connection per wrk thread, so
# tally.lua can time each request), random keys, statuses/Cache-Status/latency per second.
#
# Environment: DURATION (70 s of load; the four fault windows share all of it after an
# 8 s baseline; each must fit its fault plus 5 s), KEYS (300), SIZE (1024 bytes), MAX_AGE
# (2 s, origin freshness), CONNECTIONS (4 per wrk), THINK_MS (4 ms pause per connection
# between requests: ~1000 req/s per instance), REDIS_DOWN (3), REDIS_PAUSE (5), ORIGIN_DOWN (8),
# RESTART_INSTANCE (2; 1-3), RECOVERY_TIMEOUT (20 s per fault), NICE (-10; 0 = do not raise
# priority), OUT (results directory), KEEP_TMP=1 (keep configs, logs and raw wrk output).
#
# Everything listens on 127.0.0.1 on free ports, lives in one temporary directory removed at
# exit, and every process started here is killed on exit. No system service or /etc is
# touched: redis-server runs from the temporary directory.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

DURATION=${DURATION:-70}
KEYS=${KEYS:-300}
SIZE=${SIZE:-1024}
MAX_AGE=${MAX_AGE:-2}
CONNECTIONS=${CONNECTIONS:-4}
THINK_MS=${THINK_MS:-4}
REDIS_DOWN=${REDIS_DOWN:-3}
REDIS_PAUSE=${REDIS_PAUSE:-5}
ORIGIN_DOWN=${ORIGIN_DOWN:-8}
RESTART_INSTANCE=${RESTART_INSTANCE:-2}
RECOVERY_TIMEOUT=${RECOVERY_TIMEOUT:-20}
INSTANCES=3
BASELINE=8
OUT=${OUT:-$HERE/results/$(date -u +%Y-%m-%d)}

if [ "$DURATION" -lt 60 ]; then
  echo "DURATION must be at least 60 (an 8 s baseline and four windows of 13 s)" >&2
  exit 2
fi
case "$RESTART_INSTANCE" in 1 | 2 | 3) ;; *) echo "RESTART_INSTANCE: 1, 2 or 3" >&2; exit 2 ;; esac
# Each fault window lasts WINDOW seconds; a fault starts at the beginning of its window.
WINDOW=$(awk -v d="$DURATION" -v b="$BASELINE" 'BEGIN { printf "%.3f", (d - b) / 4 }')
for fault in "$REDIS_DOWN" "$REDIS_PAUSE" "$ORIGIN_DOWN"; do
  if awk -v w="$WINDOW" -v f="$fault" 'BEGIN { exit !(f + 5 > w) }'; then
    echo "each fault window lasts (DURATION - $BASELINE) / 4 = $WINDOW s: too short for a $fault s fault plus recovery (raise DURATION)" >&2
    exit 2
  fi
done

need_packages wrk:wrk redis-server:redis-server curl:curl python3:python3 taskset:util-linux
setup_pinning
build_binaries
make_tmp chaos
RAW="$TMP/raw"
mkdir -p "$RAW" "$TMP/redis"
EVENTS="$RAW/events.tsv"
: >"$EVENTS"
# event NAME [VALUE]: one line in events.tsv (VALUE defaults to the current time).
event() { printf '%s\t%s\n' "$1" "${2:-$(now)}" >>"$EVENTS"; }

# ---------------------------------------------------------------- servers

free_port ORIGIN_PORT
free_port REDIS_PORT
PORTS=() ADMINS=() CACHET_PIDS=()
for i in $(seq "$INSTANCES"); do
  free_port p
  free_port a
  PORTS[i]=$p ADMINS[i]=$a
done

start_origin() {
  spawn "$TMP/origin.log" "${CLIENT_PIN[@]}" "$ORIGIN_BIN" --listen "127.0.0.1:$ORIGIN_PORT"
  ORIGIN_PID=$LAST_PID
  wait_port "$ORIGIN_PID" "$ORIGIN_PORT" origin "$TMP/origin.log"
}

start_redis() {
  spawn "$TMP/redis.log" "${CLIENT_PIN[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save '' --appendonly no --dir "$TMP/redis" --maxmemory 256mb \
    --maxmemory-policy volatile-lru
  REDIS_PID=$LAST_PID
  wait_port "$REDIS_PID" "$REDIS_PORT" redis-server "$TMP/redis.log"
}

# cachet_config I: the config of instance I.
cachet_config() {
  local i=$1
  cat >"$TMP/cachet-$i.toml" <<EOF
[server]
listen = "127.0.0.1:${PORTS[i]}"
worker_threads = 1
drain_timeout = "10s"

[admin]
listen = "127.0.0.1:${ADMINS[i]}"

[log]
level = "info"
access_log = false

[cache]
memory_max_bytes = "64MiB"
max_object_bytes = "1MiB"

[cache.redis]
url = "redis://127.0.0.1:$REDIS_PORT/0"
key_prefix = "chaos:"

[[routes]]
name = "obj"
path_prefix = "/obj/"
upstream = "http://127.0.0.1:$ORIGIN_PORT"
timeout = "2s"
max_ttl = "1h"
stale_while_revalidate = "30s"
stale_if_error = "10m"
EOF
  "$CACHET" check --config "$TMP/cachet-$i.toml" >/dev/null
}

start_cachet() {
  local i=$1
  printf -- '---- start %s\n' "$(date -u +%FT%T.%NZ)" >>"$TMP/cachet-$i.log"
  spawn "$TMP/cachet-$i.log" env NO_COLOR=1 "${TARGET_PIN[@]}" "$CACHET" serve --config "$TMP/cachet-$i.toml"
  CACHET_PIDS[i]=$LAST_PID
  wait_port "$LAST_PID" "${PORTS[i]}" "cachet-$i" "$TMP/cachet-$i.log"
}

# readyz_states: one word per instance, "<shared_tier>/<breaker>" from its /readyz ("up/closed",
# "down/open", ...), or "none/none" when its admin listener does not answer.
readyz_states() {
  local i body tier breaker out=()
  for i in $(seq "$INSTANCES"); do
    body=$(curl -s -m 0.5 "http://127.0.0.1:${ADMINS[i]}/readyz" 2>/dev/null || true)
    tier=$(sed -nE 's/.*"shared_tier": *"([a-z-]+)".*/\1/p' <<<"$body")
    breaker=$(sed -nE 's/.*"breaker": *"([a-z-]+)".*/\1/p' <<<"$body")
    out+=("${tier:-none}/${breaker:-none}")
  done
  echo "${out[*]}"
}
# all_up STATES: every instance says shared_tier up; all_closed STATES: and its breaker is closed.
all_up() { [ -z "$(tr ' ' '\n' <<<"$1" | grep -v '^up/')" ]; }
all_closed() { [ -z "$(tr ' ' '\n' <<<"$1" | grep -vx 'up/closed')" ]; }

# scrape TAG: every instance's /metrics into $RAW/metrics-TAG-I.txt.
scrape() {
  local i
  for i in $(seq "$INSTANCES"); do
    curl -s -m 2 "http://127.0.0.1:${ADMINS[i]}/metrics" >"$RAW/metrics-$1-$i.txt" 2>/dev/null || true
  done
  event "scrape:$1"
}

log "origin, redis-server and $INSTANCES Cachet instances on 127.0.0.1 (temporary directory $TMP)"
start_origin
start_redis
for i in $(seq "$INSTANCES"); do
  cachet_config "$i"
  start_cachet "$i"
done
for _ in $(seq 150); do
  all_closed "$(readyz_states)" && break
  sleep 0.1
done
if ! all_closed "$(readyz_states)"; then
  echo "the instances did not report shared_tier up within 15 s: $(readyz_states)" >&2
  exit 1
fi

# ---------------------------------------------------------------- load

MACHINE=$(machine_line)
export CH_KEYS=$KEYS CH_PATH=/obj/c CH_QUERY="size=$SIZE&max_age=$MAX_AGE" CH_THINK_MS=$THINK_MS
scrape w0
T0=$(now)
event load_start "$T0"
WRK_PIDS=()
for i in $(seq "$INSTANCES"); do
  spawn "$RAW/wrk-$i.out" "${CLIENT_PIN[@]}" env CH_SEED="$i" \
    wrk -t"$CONNECTIONS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$HERE/tally.lua" "http://127.0.0.1:${PORTS[i]}/"
  WRK_PIDS[i]=$LAST_PID
done
log "load: $INSTANCES x wrk -t$CONNECTIONS -c$CONNECTIONS (${THINK_MS} ms think time), $KEYS keys, ${DURATION} s"

# at SECONDS: sleeps until SECONDS after the load started (now, if that has passed).
at() {
  local wait
  wait=$(awk -v t0="$T0" -v s="$1" -v n="$(now)" 'BEGIN { w = t0 + s - n; printf "%.3f", (w > 0 ? w : 0) }')
  sleep "$wait"
}
# elapsed: seconds since the load started.
elapsed() { since "$T0"; }

FAILED_RECOVERY=()
# watch_down SECONDS WINDOW: polls /readyz every 100 ms for SECONDS, noting when the first
# instance reported shared_tier down (detection) in events.tsv.
watch_down() {
  local end seen=0
  end=$(awk -v n="$(now)" -v s="$1" 'BEGIN { printf "%.3f", n + s }')
  while awk -v n="$(now)" -v e="$end" 'BEGIN { exit !(n < e) }'; do
    if [ $seen = 0 ] && [[ " $(readyz_states) " == *" down/"* ]]; then
      event "$2:first_down"
      seen=1
    fi
    sleep 0.1
  done
}
# wait_all_up WINDOW: polls /readyz every 100 ms until every instance says shared_tier up
# (event WINDOW:recovered), then until every breaker is closed as well (WINDOW:breaker_closed):
# /readyz says "up" as soon as Redis answers again, while an open breaker keeps requests
# away from it until its cool-down ends.
wait_all_up() {
  local deadline states up=0
  deadline=$(awk -v n="$(now)" -v s="$RECOVERY_TIMEOUT" 'BEGIN { printf "%.3f", n + s }')
  while :; do
    states=$(readyz_states)
    if [ $up = 0 ] && all_up "$states"; then
      event "$1:recovered"
      up=1
    fi
    if all_closed "$states"; then
      event "$1:breaker_closed"
      return 0
    fi
    if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then
      if [ $up = 0 ]; then
        event "$1:not_recovered" "$states"
        FAILED_RECOVERY+=("$1")
      else
        event "$1:breaker_not_closed" "$states"
      fi
      log "$1: /readyz still says '$states' ${RECOVERY_TIMEOUT} s after the fault ended"
      return 1
    fi
    sleep 0.1
  done
}

# ---- 1. Redis killed and restarted empty
at "$BASELINE"
scrape w1
event redis-kill:start
log "t=$(elapsed) s: kill -9 redis-server; back in ${REDIS_DOWN} s (empty)"
{ kill -9 "$REDIS_PID" && reap "$REDIS_PID"; } 2>/dev/null || true
watch_down "$REDIS_DOWN" redis-kill
start_redis
event redis-kill:fault_end
wait_all_up redis-kill || true
log "t=$(elapsed) s: redis-kill: all instances up again: $(readyz_states)"

# ---- 2. Redis paused
at "$(awk -v b="$BASELINE" -v w="$WINDOW" 'BEGIN { print b + w }')"
scrape w2
event redis-pause:start
log "t=$(elapsed) s: SIGSTOP redis-server for ${REDIS_PAUSE} s"
kill -STOP "$REDIS_PID"
watch_down "$REDIS_PAUSE" redis-pause
kill -CONT "$REDIS_PID"
event redis-pause:fault_end
wait_all_up redis-pause || true
log "t=$(elapsed) s: redis-pause: all instances up again: $(readyz_states)"

# ---- 3. origin killed and restarted
at "$(awk -v b="$BASELINE" -v w="$WINDOW" 'BEGIN { print b + 2 * w }')"
scrape w3
event origin-kill:start
log "t=$(elapsed) s: kill -9 the origin; back in ${ORIGIN_DOWN} s"
{ kill -9 "$ORIGIN_PID" && reap "$ORIGIN_PID"; } 2>/dev/null || true
sleep "$ORIGIN_DOWN"
start_origin
event origin-kill:fault_end
probe=0 code=000
deadline=$(awk -v n="$(now)" -v s="$RECOVERY_TIMEOUT" 'BEGIN { printf "%.3f", n + s }')
while :; do
  probe=$((probe + 1))
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' \
    "http://127.0.0.1:${PORTS[1]}/obj/probe-$$-$probe?size=64&max_age=$MAX_AGE" 2>/dev/null || true)
  if [ "$code" = 200 ]; then
    event origin-kill:recovered
    break
  fi
  printf 'origin-kill probe %s answered %s\n' "$probe" "$code" >>"$RAW/probes.txt"
  if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then
    event origin-kill:not_recovered "last status $code"
    FAILED_RECOVERY+=(origin-kill)
    break
  fi
  sleep 0.1
done
log "t=$(elapsed) s: origin-kill: a new key answered $code after $probe probe(s)"

# ---- 4. one instance restarted
at "$(awk -v b="$BASELINE" -v w="$WINDOW" 'BEGIN { print b + 3 * w }')"
R=$RESTART_INSTANCE
scrape w4
event instance-restart:start
log "t=$(elapsed) s: SIGTERM Cachet instance $R"
kill -TERM "${CACHET_PIDS[R]}"
if wait_exit "${CACHET_PIDS[R]}" 30; then
  status=0
  wait "${CACHET_PIDS[R]}" || status=$?
  reap "${CACHET_PIDS[R]}"
  event instance-restart:exited
  event instance-restart:exit_status "$status"
else
  event instance-restart:not_exited
  FAILED_RECOVERY+=(instance-restart)
  log "instance $R did not exit within 30 s of SIGTERM; killing it"
  kill -9 "${CACHET_PIDS[R]}" 2>/dev/null || true
  reap "${CACHET_PIDS[R]}"
fi
start_cachet "$R"
event instance-restart:fault_end
if wait_http "http://127.0.0.1:${PORTS[R]}/obj/c0?$CH_QUERY" "$RECOVERY_TIMEOUT"; then
  event instance-restart:recovered
else
  event instance-restart:not_recovered
  FAILED_RECOVERY+=(instance-restart)
fi
log "t=$(elapsed) s: instance $R answers again"

# ---- end of the load
for i in $(seq "$INSTANCES"); do
  wait "${WRK_PIDS[i]}" || log "wrk for instance $i exited with status $?"
  reap "${WRK_PIDS[i]}"
done
event load_end
scrape end
LOAD_END_AVG=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

mkdir -p "$OUT"
cat >"$RAW/meta.env" <<EOF
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
MACHINE=$MACHINE
LOAD_END_AVG=$LOAD_END_AVG
CACHET_COMMIT=$CACHET_COMMIT
REDIS_VERSION=$(redis-server --version | grep -o 'v=[^ ]*' | cut -d= -f2)
WRK_VERSION=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }')
PINNING=$PINNING
DURATION=$DURATION
KEYS=$KEYS
SIZE=$SIZE
MAX_AGE=$MAX_AGE
CONNECTIONS=$CONNECTIONS
THINK_MS=$THINK_MS
REDIS_DOWN=$REDIS_DOWN
REDIS_PAUSE=$REDIS_PAUSE
ORIGIN_DOWN=$ORIGIN_DOWN
RESTART_INSTANCE=$RESTART_INSTANCE
RECOVERY_TIMEOUT=$RECOVERY_TIMEOUT
INSTANCES=$INSTANCES
EOF
for i in $(seq "$INSTANCES"); do cp "$TMP/cachet-$i.log" "$RAW/cachet-$i.log"; done
cp "$TMP/redis.log" "$RAW/redis.log"

status=0
python3 "$HERE/chaos_report.py" "$RAW" "$OUT" || status=$?
if [ ${#FAILED_RECOVERY[@]} -gt 0 ]; then
  log "not recovered in time: ${FAILED_RECOVERY[*]}"
  [ "$status" = 0 ] && status=1
fi
if [ "$status" != 0 ]; then
  # A finding: keep the evidence next to the report.
  mkdir -p "$OUT/logs"
  for i in $(seq "$INSTANCES"); do
    if [ "$(wc -l <"$TMP/cachet-$i.log")" -le 5000 ]; then
      cp "$TMP/cachet-$i.log" "$OUT/logs/cachet-$i.log"
    else
      grep -E ' (WARN|ERROR) |^---- start' "$TMP/cachet-$i.log" | head -n 5000 >"$OUT/logs/cachet-$i.log" || true
    fi
  done
  cp "$TMP/redis.log" "$OUT/logs/redis.log"
  [ -f "$RAW/probes.txt" ] && cp "$RAW/probes.txt" "$OUT/logs/"
  log "logs copied to $OUT/logs"
fi
exit "$status"
