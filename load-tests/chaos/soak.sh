#!/usr/bin/env bash
# Memory soak (issue 10, "Hardening"): one Cachet instance with memory_max_bytes = BUDGET
# under DURATION seconds of mixed traffic whose working set is 10x the budget, sampling the
# process's RSS. Target: RSS <= 1.2 x BUDGET + fixed overhead, where the fixed overhead is
# the RSS measured right after start and a warm-up with the cache still empty.
#
#   load-tests/chaos/soak.sh                  # 30 min (plus ~1 min start-up, after the builds)
#   DURATION=120 load-tests/chaos/soak.sh     # a short check of the script
#   SHARED=1 load-tests/chaos/soak.sh         # with a redis-server as shared tier
#
# Traffic (wrk -t1 -c4, soak.lua): 70 % 4 KiB objects over 10 x BUDGET / 4 KiB keys, 5 %
# 64 KiB objects over 10 x BUDGET / 64 KiB keys, 15 % 1 KiB objects over 1000 hot keys,
# 10 % uncacheable (origin no-store) over 1000 keys; origin freshness SOAK_MAX_AGE. Every
# PURGE_EVERY seconds, three purges through the admin API: a tag (1/64 of the 4 KiB keys), a
# prefix (/obj/s64-<digit>) and 10 URLs of the hot set.
#
# Phases: start; WARMUP seconds of the same load with uncacheable requests only (nothing is
# stored); the fixed overhead is then the RSS (its memory tier is checked to be empty); then
# DURATION seconds of the mix, sampling VmRSS from /proc/<pid>/status every SAMPLE seconds.
#
# Writes results/<date>/soak.md (printed too), soak.csv and soak.png (gnuplot); with SHARED=1
# soak-shared.*. Exit status 1 when a sample's RSS exceeded the target, or Cachet failed.
#
# Environment: DURATION (1800 s), BUDGET ("64MiB"), SHARED (0; 1 = add a redis-server),
# WARMUP (15 s), SAMPLE (5 s), PURGE_EVERY (60 s), SOAK_MAX_AGE (600 s), CONNECTIONS (4),
# MIX ("70,5,15,10": percent of 4 KiB, 64 KiB, 1 KiB, uncacheable requests), WORKERS (Cachet
# worker_threads, 2), NICE (-10; 0 = do not raise priority), OUT (results
# directory), KEEP_TMP=1 (keep configs and logs).
#
# Everything listens on 127.0.0.1 on free ports, lives in one temporary directory removed at
# exit, and every process started here is killed on exit. No system service or /etc is touched.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

DURATION=${DURATION:-1800}
BUDGET=${BUDGET:-64MiB}
SHARED=${SHARED:-0}
WARMUP=${WARMUP:-15}
SAMPLE=${SAMPLE:-5}
PURGE_EVERY=${PURGE_EVERY:-60}
SOAK_MAX_AGE=${SOAK_MAX_AGE:-600}
CONNECTIONS=${CONNECTIONS:-4}
WORKERS=${WORKERS:-2}
MIX=${MIX:-70,5,15,10}
OUT=${OUT:-$HERE/results/$(date -u +%Y-%m-%d)}
NAME=soak
[ "$SHARED" = 1 ] && NAME=soak-shared

BUDGET_BYTES=$(size_bytes "$BUDGET")
N4K=$((10 * BUDGET_BYTES / 4096))
N64K=$((10 * BUDGET_BYTES / 65536))
N1K=1000
NUNC=1000

pkgs=(wrk:wrk curl:curl gnuplot:gnuplot-nox taskset:util-linux)
[ "$SHARED" = 1 ] && pkgs+=(redis-server:redis-server)
need_packages "${pkgs[@]}"
setup_pinning
build_binaries
make_tmp soak

# ---------------------------------------------------------------- servers

free_port ORIGIN_PORT
free_port PORT
free_port ADMIN
TOKEN="soak-$RANDOM$RANDOM"
spawn "$TMP/origin.log" "${CLIENT_PIN[@]}" "$ORIGIN_BIN" --listen "127.0.0.1:$ORIGIN_PORT"
wait_port "$LAST_PID" "$ORIGIN_PORT" origin "$TMP/origin.log"

REDIS_SECTION=""
if [ "$SHARED" = 1 ]; then
  free_port REDIS_PORT
  mkdir -p "$TMP/redis"
  spawn "$TMP/redis.log" "${CLIENT_PIN[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save '' --appendonly no --dir "$TMP/redis" --maxmemory 256mb \
    --maxmemory-policy volatile-lru
  wait_port "$LAST_PID" "$REDIS_PORT" redis-server "$TMP/redis.log"
  REDIS_SECTION=$(printf '[cache.redis]\nurl = "redis://127.0.0.1:%s/0"\nkey_prefix = "soak:"\n' "$REDIS_PORT")
fi

cat >"$TMP/cachet.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
worker_threads = $WORKERS

[admin]
listen = "127.0.0.1:$ADMIN"
token = "$TOKEN"

[log]
level = "info"
access_log = false

[cache]
memory_max_bytes = "$BUDGET"
max_object_bytes = "1MiB"
$REDIS_SECTION

[[routes]]
name = "obj"
path_prefix = "/obj/"
upstream = "http://127.0.0.1:$ORIGIN_PORT"
timeout = "5s"
max_ttl = "1h"
stale_while_revalidate = "30s"
EOF
"$CACHET" check --config "$TMP/cachet.toml" >/dev/null
printf -- '---- start %s\n' "$(date -u +%FT%T.%NZ)" >>"$TMP/cachet.log"
spawn "$TMP/cachet.log" env NO_COLOR=1 "${TARGET_PIN[@]}" "$CACHET" serve --config "$TMP/cachet.toml"
CACHET_PID=$LAST_PID
wait_port "$CACHET_PID" "$PORT" cachet "$TMP/cachet.log"
if ! wait_http "http://127.0.0.1:$ADMIN/readyz" 15; then
  echo "Cachet's /readyz did not answer 200 within 15 s" >&2
  exit 1
fi

# rss_kib: VmRSS of Cachet in KiB (empty when it is gone).
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$CACHET_PID/status" 2>/dev/null || true; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$CACHET_PID/status" 2>/dev/null || true; }
# metrics: Cachet's /metrics into $TMP/metrics.txt.
metrics() { curl -s -m 2 "http://127.0.0.1:$ADMIN/metrics" >"$TMP/metrics.txt" 2>/dev/null || : >"$TMP/metrics.txt"; }

CSV="$TMP/$NAME.csv"
echo "t_s,phase,rss_kib,memory_bytes,memory_entries,requests" >"$CSV"
T0=$(now)
# sample PHASE: one CSV line.
sample() {
  local rss
  rss=$(rss_kib)
  if [ -z "$rss" ]; then
    echo "Cachet (pid $CACHET_PID) is gone; its log:" >&2
    tail -n 40 "$TMP/cachet.log" >&2
    CACHET_DIED=1
    return 1
  fi
  metrics
  printf '%s,%s,%s,%s,%s,%s\n' "$(since "$T0")" "$1" "$rss" \
    "$(metric_sum "$TMP/metrics.txt" cachet_memory_bytes)" \
    "$(metric_sum "$TMP/metrics.txt" cachet_memory_entries)" \
    "$(metric_sum "$TMP/metrics.txt" cachet_requests_total)" >>"$CSV"
}
CACHET_DIED=0
RSS_START=$(rss_kib)
sample start

# ---------------------------------------------------------------- warm-up: nothing stored

export SK_N4K=$N4K SK_N64K=$N64K SK_N1K=$N1K SK_NUNC=$NUNC SK_MAX_AGE=$SOAK_MAX_AGE SK_MIX=$MIX
log "warm-up: ${WARMUP} s of uncacheable requests (wrk -t1 -c$CONNECTIONS)"
spawn "$TMP/wrk-warmup.out" "${CLIENT_PIN[@]}" env SK_MODE=warmup SK_SEED=1 \
  wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$HERE/soak.lua" "http://127.0.0.1:$PORT/"
WRK_PID=$LAST_PID
while alive "$WRK_PID"; do
  sleep "$SAMPLE" &
  wait $! || true
  alive "$WRK_PID" && { sample warmup || exit 1; }
done
reap "$WRK_PID"
sleep 1
sample overhead || exit 1
OVERHEAD_KIB=$(rss_kib)
OVERHEAD_MEM_BYTES=$(metric_sum "$TMP/metrics.txt" cachet_memory_bytes)
OVERHEAD_ENTRIES=$(metric_sum "$TMP/metrics.txt" cachet_memory_entries)
TARGET_KIB=$(awk -v b="$BUDGET_BYTES" -v o="$OVERHEAD_KIB" 'BEGIN { printf "%.0f", 1.2 * b / 1024 + o }')
log "fixed overhead: RSS $((OVERHEAD_KIB / 1024)) MiB after the warm-up (memory tier $OVERHEAD_MEM_BYTES bytes in $OVERHEAD_ENTRIES entries); target RSS <= $((TARGET_KIB / 1024)) MiB"

# ---------------------------------------------------------------- the soak

MACHINE=$(machine_line)
log "soak: ${DURATION} s of mixed traffic, $N4K x 4 KiB + $N64K x 64 KiB + $N1K x 1 KiB keys + $NUNC uncacheable, budget $BUDGET"
spawn "$TMP/wrk-soak.out" "${CLIENT_PIN[@]}" env SK_MODE=mix SK_SEED=2 \
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s -s "$HERE/soak.lua" "http://127.0.0.1:$PORT/"
WRK_PID=$LAST_PID
SOAK_T0=$(now)
SOAK_OFFSET=$(since "$T0")
echo "t_s,kind,status,seconds,selector" >"$TMP/purges.csv"
purge() { # purge KIND JSON
  local out
  out=$(curl -s -o /dev/null -m 10 -w '%{http_code} %{time_total}' -X POST \
    -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/purge" -d "$2" 2>/dev/null || echo "000 0")
  printf '%s,%s,%s,%s,"%s"\n' "$(since "$T0")" "$1" "${out% *}" "${out#* }" "${2//\"/\'}" >>"$TMP/purges.csv"
}
next_purge=$PURGE_EVERY
round=0
while alive "$WRK_PID"; do
  sleep "$SAMPLE" &
  wait $! || true
  alive "$WRK_PID" || break
  sample soak || break
  if awk -v e="$(since "$SOAK_T0")" -v p="$next_purge" 'BEGIN { exit !(e >= p) }'; then
    purge tag "{\"tags\": [\"g$((round % 64))\"]}"
    purge prefix "{\"prefix\": \"/obj/s64-$((round % 10))\"}"
    urls=""
    for j in $(seq 0 9); do urls="$urls${urls:+, }\"/obj/s1-$(((round * 10 + j) % N1K))?size=1024&max_age=$SOAK_MAX_AGE\""; done
    purge urls "{\"urls\": [$urls]}"
    round=$((round + 1))
    next_purge=$((next_purge + PURGE_EVERY))
  fi
done
reap "$WRK_PID"
FINAL_KIB=$(rss_kib)
HWM_KIB=$(hwm_kib)
[ "$CACHET_DIED" = 0 ] && sample final || true
LOAD_END_AVG=$(cut -d' ' -f1-3 /proc/loadavg)
metrics
cp "$TMP/metrics.txt" "$TMP/metrics-end.txt"

# ---------------------------------------------------------------- report

mkdir -p "$OUT"
cp "$CSV" "$OUT/$NAME.csv"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
RESULT=$(grep '^RESULT ' "$TMP/wrk-soak.out" | sed 's/^RESULT //' || true)
field() { grep -o "\b$1=[^ ]*" <<<"$RESULT" | cut -d= -f2; }
# Samples of the soak phase only (the warm-up has its own, smaller figures).
read -r MAX_KIB MAX_T < <(awk -F, '$2 == "soak" || $2 == "final" { if ($3 > m) { m = $3; t = $1 } } END { print m + 0, t + 0 }' "$CSV")
[ -z "$FINAL_KIB" ] && FINAL_KIB=$(awk -F, 'END { print $3 }' "$CSV")
FINAL_MEM=$(awk -F, 'END { print $4 }' "$CSV")
FINAL_ENTRIES=$(awk -F, 'END { print $5 }' "$CSV")
MAX_MEM=$(awk -F, '$2 == "soak" || $2 == "final" { if ($4 > m) m = $4 } END { printf "%.0f", m }' "$CSV")
N_SAMPLES=$(awk -F, '$2 == "soak" || $2 == "final"' "$CSV" | wc -l)
HITS=$(metric_sum "$TMP/metrics-end.txt" cachet_requests_total 'cache="(hit|stale)"')
ALL=$(metric_sum "$TMP/metrics-end.txt" cachet_requests_total)
PURGES_OK=$(awk -F, 'NR > 1 && $3 == 200' "$TMP/purges.csv" | wc -l)
PURGES_ALL=$(($(wc -l <"$TMP/purges.csv") - 1))

FAILED=0
verdict() { # verdict VALUE_KIB
  if [ "$1" -le "$TARGET_KIB" ]; then echo "within"; else echo "**over**"; fi
}
[ "$MAX_KIB" -le "$TARGET_KIB" ] || FAILED=1
[ "$CACHET_DIED" = 0 ] || FAILED=1

# The chart.
awk -F, 'NR > 1 { printf "%s %.2f %.2f\n", $1, $3 / 1024, $4 / 1048576 }' "$CSV" >"$TMP/$NAME.dat"
cat >"$TMP/$NAME.gp" <<EOF
set terminal pngcairo size 1100,560 font ",10"
set termoption noenhanced
set output "$OUT/$NAME.png"
set title "Cachet RSS under churn: budget $BUDGET, working set 10x budget, SHARED=$SHARED"
set xlabel "seconds since start"
set ylabel "MiB"
set key outside right top
set grid
set yrange [0:*]
set autoscale xfix
set arrow from $SOAK_OFFSET, graph 0 to $SOAK_OFFSET, graph 1 nohead dt 3
set label "warm-up | soak" at $SOAK_OFFSET, graph 0.97 center offset 0,0.5
plot "$TMP/$NAME.dat" using 1:2 with lines lw 2 title "RSS", \\
     "$TMP/$NAME.dat" using 1:3 with lines lw 1 title "memory tier (cachet_memory_bytes)", \\
     $(mib "$TARGET_KIB") with lines dt 2 lw 2 title "target 1.2 x budget + overhead", \\
     $(awk -v b="$BUDGET_BYTES" 'BEGIN { printf "%.2f", b / 1048576 }') with lines dt 3 title "budget", \\
     $(mib "$OVERHEAD_KIB") with lines dt 4 title "fixed overhead"
EOF
if ! gnuplot "$TMP/$NAME.gp" 2>"$TMP/gnuplot.err"; then
  # pngcairo is in gnuplot-nox on Debian; fall back to the plain png terminal.
  sed -i 's/^set terminal pngcairo size 1100,560 font ",10"/set terminal png size 1100,560/' "$TMP/$NAME.gp"
  gnuplot "$TMP/$NAME.gp" || log "gnuplot failed: $(cat "$TMP/gnuplot.err")"
fi

cat >"$OUT/$NAME.md" <<EOF
# Soak: RSS under churn (budget $BUDGET, SHARED=$SHARED)

$(date -u '+%Y-%m-%d %H:%M UTC'); $MACHINE at the start of the soak, $LOAD_END_AVG at the end.
Cachet \`$CACHET_COMMIT\`, \`worker_threads = $WORKERS\`; $PINNING.

Traffic: \`wrk -t1 -c$CONNECTIONS\` for $DURATION s (soak.lua), percentages $MIX of: 4 KiB objects over $N4K keys
(10 × the budget), 64 KiB objects over $N64K keys (10 × the budget), 1 KiB objects over
$N1K hot keys, uncacheable over $NUNC keys; origin \`max-age=$SOAK_MAX_AGE\`; every
$PURGE_EVERY s a tag, a prefix and a 10-URL purge. $([ "$SHARED" = 1 ] && echo "Shared tier: a redis-server (maxmemory 256 MB, volatile-lru)." || echo "Memory tier only.")

| figure | value |
|---|---|
| RSS right after start | $(mib "$RSS_START") MiB |
| **fixed overhead** (RSS after ${WARMUP} s of uncacheable load, memory tier $OVERHEAD_MEM_BYTES bytes / $OVERHEAD_ENTRIES entries) | **$(mib "$OVERHEAD_KIB") MiB** |
| budget (\`memory_max_bytes\`) | $BUDGET ($(awk -v b="$BUDGET_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }') MiB) |
| target: 1.2 × budget + fixed overhead | $(mib "$TARGET_KIB") MiB |
| max RSS over $N_SAMPLES samples (every $SAMPLE s) | $(mib "$MAX_KIB") MiB, $(awk -v t="$MAX_T" -v w="$SOAK_OFFSET" 'BEGIN { printf "%.0f", t - w }') s into the soak — $(verdict "$MAX_KIB") the target |
| final RSS (end of the load) | $(mib "$FINAL_KIB") MiB — $(verdict "$FINAL_KIB") the target |
| kernel peak RSS (VmHWM at the end: whole life, between samples too; the kernel updates it lazily) | $(mib "${HWM_KIB:-0}") MiB |
| max memory tier bytes (\`cachet_memory_bytes\`) | $(awk -v b="$MAX_MEM" 'BEGIN { printf "%.1f", b / 1048576 }') MiB |
| per memory-tier entry at the end: RSS above the overhead / what the tier accounts | $(awk -v r="$FINAL_KIB" -v o="$OVERHEAD_KIB" -v e="$FINAL_ENTRIES" -v b="$FINAL_MEM" 'BEGIN { if (e > 0) printf "%.1f KiB / %.1f KiB (%d entries)", (r - o) / e, b / 1024 / e, e; else print "n/a" }') |
| requests (wrk) | $(field requests) (2xx $(field s2xx), 5xx $(field s5xx), other $(field other); socket errors connect/read/write/timeout $(field connect)/$(field read)/$(field write)/$(field timeout)) |
| latency p50 / p99 / max | $(awk -v a="$(field p50_us)" -v b="$(field p99_us)" -v c="$(field max_us)" 'BEGIN { printf "%.2f / %.2f / %.1f ms", a / 1000, b / 1000, c / 1000 }') |
| hit ratio (hit + stale / all, Cachet's counters) | $(awk -v h="$HITS" -v a="$ALL" 'BEGIN { if (a > 0) printf "%.1f %%", 100 * h / a; else print "n/a" }') |
| purges answered 200 | $PURGES_OK of $PURGES_ALL |

Result: **$([ "$FAILED" = 0 ] && echo "target met" || echo "target missed")**$([ "$CACHET_DIED" = 1 ] && echo " (Cachet exited during the run)").

![RSS over time]($NAME.png)

Samples: \`$NAME.csv\` (t_s, phase, rss_kib, memory_bytes, memory_entries, requests).
EOF
cat "$OUT/$NAME.md"

if [ "$FAILED" != 0 ]; then
  mkdir -p "$OUT/logs"
  grep -E ' (WARN|ERROR) |^---- start' "$TMP/cachet.log" | head -n 5000 >"$OUT/logs/$NAME-cachet.log" || true
  cp "$TMP/purges.csv" "$OUT/logs/$NAME-purges.csv"
  cp "$TMP/metrics-end.txt" "$OUT/logs/$NAME-metrics-end.txt"
  log "target missed or Cachet failed; log lines and final metrics in $OUT/logs"
fi
exit "$FAILED"
