#!/usr/bin/env bash
# Where Cachet's CPU goes (issue 9, "profile and fix the cause"): perf with call graphs on a
# frame-pointer release build, under one of the load-test loads, and a flame graph of it.
#
#   load-tests/profile.sh hot           # the hot 1 KiB hit under wrk
#   load-tests/profile.sh keys          # 10 000 keys of 4 KiB, filled first, walked round and round
#   load-tests/profile.sh miss          # a new no-store URL per request, through to the origin
#   load-tests/profile.sh swr           # bursts of 500 clients on a just-expired key (SWR)
#
# Environment: SECONDS_RECORDED (4; hot, keys and miss), KEYS (10000; keys), BURSTS (6; swr), FREQ (5000 Hz),
# OUT (load-tests/results/<date>-profile), KEEP_TMP=1.
#
# Writes $OUT/<scenario>.svg (flame graph, inferno) and <scenario>.top.txt (self time by
# symbol); FOLDED=1 also keeps <scenario>.folded (collapsed stacks, one line per distinct stack
# with its CPU time in ns: perf's cpu-clock sample periods).
# For swr only the burst windows are kept: samples within 60 ms after each quiet gap, so the
# warm-up of the 500 connections before each burst is left out.
#
# Set-up as in run.sh: origin and load on CPU 0, Cachet on CPU 1 with worker_threads = 1,
# loopback only, everything in a temporary directory removed at the end (the helpers of
# chaos/lib.sh). Needs perf (linux-perf, installed with apt when missing) and inferno (cargo
# install inferno when missing); the build goes to target/profile so the normal release build
# is not disturbed.
set -euo pipefail

# shellcheck source=chaos/lib.sh
. "$(dirname "$0")/chaos/lib.sh"
SCENARIO=${1:-}
case "$SCENARIO" in hot | keys | miss | swr) ;; *)
  echo "usage: $0 hot|keys|miss|swr" >&2
  exit 2
  ;;
esac
RECORD_SECS=${SECONDS_RECORDED:-4}
BURSTS=${BURSTS:-6}
FREQ=${FREQ:-5000}
OUT=${OUT:-$ROOT/load-tests/results/$(date -u +%Y-%m-%d)-profile}
FOLDED=${FOLDED:-0}

need_packages perf:linux-perf wrk:wrk
if ! command -v inferno-flamegraph >/dev/null 2>&1; then
  log "installing inferno (cargo install)"
  cargo install --locked --quiet inferno
fi

log "building Cachet with frame pointers (target/profile)"
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/profile" RUSTFLAGS="-C force-frame-pointers=yes" \
  CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_PROFILE_RELEASE_STRIP=none cargo build --release --quiet --bin cachet)
build_tools
CACHET="$ROOT/target/profile/release/cachet"

make_tmp profile
setup_pinning

# start NAME PORT CMD...: CMD in the background, logged to $TMP/NAME.log, until PORT listens.
start() {
  local name=$1 port=$2
  shift 2
  spawn "$TMP/$name.log" "$@"
  wait_port "$LAST_PID" "$port" "$name" "$TMP/$name.log"
}

free_port ORIGIN_PORT
free_port PORT
free_port ADMIN_PORT
ORIGIN="127.0.0.1:$ORIGIN_PORT"
start origin "$ORIGIN_PORT" "${CLIENT_PIN[@]}" "$ORIGIN_BIN" --listen "$ORIGIN"
cat >"$TMP/cachet.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
worker_threads = 1
max_connections = 4096

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[log]
level = "warn"
access_log = false

[cache]
memory_max_bytes = "256MiB"

[[routes]]
name = "obj"
path_prefix = "/obj/"
upstream = "http://$ORIGIN"
stale_while_revalidate = "30s"
EOF
start cachet "$PORT" "${TARGET_PIN[@]}" "$CACHET" --config "$TMP/cachet.toml"
CACHET_PID=$LAST_PID
URL="http://127.0.0.1:$PORT"

record() { # record OUTFILE SECONDS
  perf record -q -F "$FREQ" -g -p "$CACHET_PID" -o "$1" -- sleep "$2" >/dev/null 2>&1
}

mkdir -p "$OUT"
FOLD="$TMP/$SCENARIO.folded"
case "$SCENARIO" in
  hot | keys | miss)
    # As in run.sh: one key is wrk's own pre-built request for the URL; the keys are filled
    # first and walked by paths.lua; the miss path a new key per request.
    keys=1
    case "$SCENARIO" in
      hot) path="/obj/hot1k?size=1024&max_age=86400" mode=cycle url="$URL/obj/hot1k?size=1024&max_age=86400" ;;
      keys)
        keys=${KEYS:-10000} path="/obj/k{k}?size=4096&max_age=86400" mode=cycle url="$URL/"
        log "keys: filling $keys keys of 4 KiB"
        "${CLIENT_PIN[@]}" curl -s -Z --parallel-max 16 -H "Host: cachet.test" \
          "$URL/obj/k[0-$((keys - 1))]?size=4096&max_age=86400" >/dev/null
        ;;
      miss) path="/obj/miss-{k}?size=1024" mode=unique url="$URL/" ;;
    esac
    log "$SCENARIO: wrk on CPU 0, perf on Cachet for ${RECORD_SECS} s after 2 s of warm-up"
    LT_PATH="$path" LT_KEYS=$keys LT_MODE=$mode LT_SALT=$$ "${CLIENT_PIN[@]}" wrk -t1 -c50 -d"$((RECORD_SECS + 3))s" \
      -H "Host: cachet.test" -s "$ROOT/load-tests/wrk/paths.lua" "$url" >"$TMP/wrk.txt" &
    WRK=$!
    sleep 2
    record "$TMP/perf.data" "$RECORD_SECS"
    wait "$WRK"
    grep '^RESULT' "$TMP/wrk.txt" >&2 || true
    perf script -i "$TMP/perf.data" 2>/dev/null | inferno-collapse-perf >"$FOLD"
    ;;
  swr)
    log "swr: $BURSTS bursts of 500 clients on a just-expired key, perf around each"
    : >"$FOLD.all"
    for run in $(seq "$BURSTS"); do
      record "$TMP/perf-$run.data" 3.5 &
      REC=$!
      "${CLIENT_PIN[@]}" "$BURST_BIN" --origin "$ORIGIN" --origin-delay-ms 200 --clients 500 --cpu-pid "$CACHET_PID" \
        --target "127.0.0.1:$PORT" --path "/obj/swr-$$-$run?delay_ms=200&max_age=1" \
        --prime --release-after-prime-ms 1500 | grep '^RESULT' >&2
      wait "$REC"
      # Keep the burst: the samples after the longest quiet gap (the wait before the release).
      perf script -i "$TMP/perf-$run.data" 2>/dev/null | python3 -c '
import sys
blocks = sys.stdin.read().split("\n\n")
timed = []
for block in blocks:
    head = block.strip("\n").split("\n", 1)[0].split()
    stamp = next((w.rstrip(":") for w in head if w.endswith(":")), None)
    try:
        timed.append((float(stamp), block))
    except (TypeError, ValueError):
        continue
timed.sort(key=lambda t: t[0])
gaps = [(timed[i + 1][0] - timed[i][0], i + 1) for i in range(len(timed) - 1)]
start = max(gaps)[1] if gaps else 0
t0 = timed[start][0] if timed else 0
sys.stdout.write("\n\n".join(b for t, b in timed if t0 <= t < t0 + 0.06) + "\n\n")
' | inferno-collapse-perf >>"$FOLD.all"
    done
    # One line per stack across the bursts.
    awk '{ n = $NF; $NF = ""; sub(/ $/, ""); c[$0] += n } END { for (s in c) print s, c[s] }' \
      "$FOLD.all" | sort >"$FOLD"
    rm -f "$FOLD.all"
    ;;
esac

inferno-flamegraph --title "Cachet, $SCENARIO ($(git -C "$ROOT" rev-parse --short HEAD))" \
  <"$FOLD" >"$OUT/$SCENARIO.svg"
# Self time by symbol: the last frame of each stack.
awk '{ n = $NF; $NF = ""; k = split($0, f, ";"); s = f[k]; sub(/ $/, "", s); c[s] += n; t += n }
  END { for (s in c) printf "%6.2f%%  %s\n", 100 * c[s] / t, s }' "$FOLD" |
  sort -rn | sed -n 1,40p >"$OUT/$SCENARIO.top.txt"
if [ "$FOLDED" = 1 ]; then cp "$FOLD" "$OUT/"; fi
log "wrote $OUT/$SCENARIO.svg and $SCENARIO.top.txt ($(awk '{ t += $NF } END { printf "%.0f", t / 1e6 }' "$FOLD") ms of Cachet's CPU sampled)"
