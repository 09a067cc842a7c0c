# Shared helpers for load-tests/chaos/chaos.sh, soak.sh and load-tests/profile.sh (sourced, not run).
#
# Provides: log, now/since, need_packages, setup_pinning (CLIENT_PIN / TARGET_PIN),
# build_tools, build_binaries, make_tmp (the temporary directory TMP and the exit trap), spawn, reap, alive,
# wait_exit, free_port (from ../ports.sh), wait_port, wait_http, metric_sum, size_bytes, machine_line. Every
# process started through spawn is remembered in TRACKED until reaped, and ended by the exit
# trap (SIGCONT first, in case it was stopped); then the temporary directory is removed
# (KEEP_TMP=1 keeps it).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

log() { printf '==> %s\n' "$*" >&2; }

# now: seconds since the epoch with microseconds (bash 5's EPOCHREALTIME, no fork).
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
# since T0: seconds elapsed since T0, 3 decimals.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# need_packages CMD:PACKAGE...: apt-get install the packages whose command is missing
# (apt-get update once; sudo only when not root). Nothing else on the system is touched.
need_packages() {
  local missing=() spec
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Load generators, origin and redis on CPU 0; Cachet on CPU 1; nice -10 when allowed.
setup_pinning() {
  CLIENT_PIN=() TARGET_PIN=() PINNING="none (fewer than 2 cores or no taskset)"
  if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    CLIENT_PIN=(taskset -c 0) TARGET_PIN=(taskset -c 1)
    PINNING="wrk, origin and redis on CPU 0; Cachet on CPU 1"
  fi
  NICE=${NICE:--10}
  if [ "$NICE" != 0 ] && [ "$(nice -n "$NICE" nice 2>/dev/null)" = "$NICE" ]; then
    CLIENT_PIN=(nice -n "$NICE" "${CLIENT_PIN[@]}") TARGET_PIN=(nice -n "$NICE" "${TARGET_PIN[@]}")
    PINNING="$PINNING; nice $NICE"
  fi
}

# build_tools: the load-test tools (release), into ORIGIN_BIN and BURST_BIN.
build_tools() {
  log "building the load-test tools (release)"
  cargo build --release --quiet --manifest-path "$ROOT/load-tests/tools/Cargo.toml" \
    --target-dir "$ROOT/target/load-tests"
  ORIGIN_BIN="$ROOT/target/load-tests/release/origin"
  BURST_BIN="$ROOT/target/load-tests/release/burst"
}

# build_binaries: Cachet (release, at the repository root) and the load-test tools.
build_binaries() {
  log "building Cachet (release; waits for the cargo lock when other builds run)"
  (cd "$ROOT" && cargo build --release --quiet)
  build_tools
  CACHET="$ROOT/target/release/cachet"
  CACHET_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if ! git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null; then
    CACHET_COMMIT="$CACHET_COMMIT + uncommitted changes in src/"
  fi
}

# ---------------------------------------------------------------- processes and cleanup

TRACKED=()
make_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/cachet-$1.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}
cleanup() {
  local pid
  trap - EXIT
  for pid in "${TRACKED[@]}"; do
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${TRACKED[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${TMP:-}" ]; then
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  fi
}

# spawn LOGFILE CMD...: runs CMD in the background, output appended to LOGFILE; LAST_PID is
# its id (nice and taskset exec the command, so it is the server's own).
spawn() {
  local logfile=$1
  shift
  "$@" >>"$logfile" 2>&1 &
  LAST_PID=$!
  TRACKED+=("$LAST_PID")
}

# reap PID: waits for PID (already ended or being ended) and forgets it, so the exit trap
# never signals a process id the system may have handed to someone else since.
reap() {
  local pid=$1 keep=() p
  wait "$pid" 2>/dev/null || true
  for p in "${TRACKED[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  TRACKED=("${keep[@]}")
}

# alive PID: the process exists and is not a zombie.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# wait_exit PID SECONDS: until PID has exited (polled every 50 ms); 1 on timeout.
wait_exit() {
  local deadline
  deadline=$(awk -v n="$(now)" -v s="$2" 'BEGIN { printf "%.3f", n + s }')
  while alive "$1"; do
    if awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }'; then return 1; fi
    sleep 0.05
  done
  return 0
}

# shellcheck source=../ports.sh
. "$ROOT/load-tests/ports.sh"

# wait_port PID PORT NAME LOG: until PORT accepts connections (15 s), or PID died.
wait_port() {
  for _ in $(seq 300); do
    if ! alive "$1"; then
      echo "$3 exited during start-up; its log ($4):" >&2
      tail -n 40 "$4" >&2 || true
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "$3 did not listen on $2 within 15 s" >&2
  return 1
}

# wait_http URL SECONDS: until URL answers 200 (polled every 100 ms); 1 on timeout.
wait_http() {
  local n=$(($2 * 10))
  for _ in $(seq "$n"); do
    if [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$1" 2>/dev/null)" = 200 ]; then return 0; fi
    sleep 0.1
  done
  return 1
}

# metric_sum FILE NAME [LABEL_REGEX]: sum of the samples of NAME (any labels matching the
# regex) in a Prometheus/OpenMetrics text file; 0 when absent.
metric_sum() {
  awk -v name="$2" -v re="${3:-}" '
    $1 ~ /^#/ { next }
    {
      series = $1; base = series; sub(/\{.*/, "", base)
      if (base != name) next
      if (re != "" && series !~ re) next
      sum += $2
    }
    END { printf "%.0f\n", sum }' "$1"
}

# size_bytes "64MiB": bytes of a Cachet size string (B, KiB, MiB, GiB).
size_bytes() {
  awk -v s="$1" 'BEGIN {
    if (match(s, /^[0-9]+/) == 0) { print "bad size: " s > "/dev/stderr"; exit 1 }
    n = substr(s, 1, RLENGTH); u = substr(s, RLENGTH + 1); gsub(/ /, "", u)
    m = (u == "" || u == "B") ? 1 : (u == "KiB") ? 1024 : (u == "MiB") ? 1048576 : (u == "GiB") ? 1073741824 : -1
    if (m < 0) { print "bad size unit: " s > "/dev/stderr"; exit 1 }
    printf "%.0f\n", n * m }'
}

machine_line() {
  printf '%s CPUs (%s), Linux %s, load average %s' "$(nproc)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(uname -r)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
}
