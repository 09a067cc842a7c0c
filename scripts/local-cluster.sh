#!/usr/bin/env bash
# docker/compose.yaml without a container engine: Redis, the demo origin and three Cachet
# instances sharing that Redis, as local processes on free loopback ports.
#
#   scripts/local-cluster.sh            start everything, print URLs and curl lines, run until Ctrl-C
#   scripts/local-cluster.sh --check    start everything, check the shared tier and a purge across
#                                       instances, stop everything; exit 0 when all checks pass, else 1
#   scripts/local-cluster.sh --release  use a release build (default: debug)
#
# The instances use docker/cachet.toml with the origin's address substituted, and environment
# overrides (CACHET__...) for their listeners, Redis URL, admin token and partition secret, as
# in compose. CACHET_BIN=/path/to/cachet reuses a built binary instead of running cargo build.
# redis-server (and curl) are installed with apt when missing, as scripts/test.sh does.
# Everything started here is stopped on exit, and the temp dir (config, logs) removed.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
profile=debug
for arg in "$@"; do
  case "$arg" in
    --check) check=true ;;
    --release) profile=release ;;
    -h | --help)
      sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

# Every wait below is bounded by this deadline (seconds from start-up, builds excluded).
readonly WAIT_SECONDS=${LOCAL_CLUSTER_WAIT:-20}
readonly HOST_HEADER="Host: cachet.test" # one Host for every instance, as behind one load balancer
readonly TOKEN="local-cluster-token"

log() { echo "==> $*"; }

# ---- tools ----
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ -n "${CACHET_BIN:-}" ]; then
  bin=$CACHET_BIN
else
  log "cargo build ($profile)"
  if [ "$profile" = release ]; then cargo build --release --bin cachet; else cargo build --bin cachet; fi
  bin="${CARGO_TARGET_DIR:-target}/$profile/cachet"
fi
if [ ! -x "$bin" ]; then
  echo "no cachet binary at $bin" >&2
  exit 1
fi

# Only the overrides set below apply: none may leak in from the caller's environment.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep '^CACHET__' || true)

# ---- processes and clean-up ----
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cachet-cluster.XXXXXX")
pids=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pid i
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

deadline=$((SECONDS + WAIT_SECONDS))

fail() {
  echo "FAIL: $*" >&2
  local file
  for file in "$tmp"/*.log; do
    [ -e "$file" ] || continue
    echo "--- last lines of $(basename "$file")" >&2
    tail -n 15 "$file" >&2 || true
  done
  exit 1
}

# Sets the variable named $1 to a loopback port nobody listens on (and not handed out yet).
# Ports come from below the usual ephemeral range, so outgoing connections do not take them.
handed_out=" "
free_port() {
  local port i
  for i in $(seq 1 200); do
    port=$((20000 + RANDOM % 12000))
    case "$handed_out" in *" $port "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      handed_out+="$port "
      printf -v "$1" '%s' "$port"
      return 0
    fi
  done
  fail "no free port found"
}

# Polls `$2...` until it succeeds; fails with $1 at the deadline or when process $pid died.
wait_for() {
  local what=$1 pid=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.1
  done
}

# Starts a process in the background, output to $tmp/$1.log; its pid in $last_pid.
spawn() {
  local name=$1
  shift
  "$@" </dev/null >"$tmp/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}

# Each start retries on fresh ports (another process may bind a port between probe and use).
start_redis() {
  local attempt
  for attempt in 1 2 3; do
    free_port redis_port
    spawn redis redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp" \
      --save "" --appendonly no --maxmemory 64mb --maxmemory-policy volatile-lru
    if wait_for "redis" "$last_pid" redis-cli -p "$redis_port" ping; then return 0; fi
  done
  fail "redis-server did not start"
}

start_origin() {
  local attempt
  for attempt in 1 2 3; do
    free_port origin_port
    spawn origin "$bin" demo --origin-only --listen "127.0.0.1:$origin_port"
    if wait_for "the demo origin" "$last_pid" \
      curl -sf --max-time 2 "http://127.0.0.1:$origin_port/api/products"; then
      return 0
    fi
  done
  fail "the demo origin did not start"
}

# start_instance N: sets proxy_port[N] and admin_port[N].
declare -a proxy_port admin_port
start_instance() {
  local n=$1 attempt proxy admin
  for attempt in 1 2 3; do
    free_port proxy
    free_port admin
    spawn "cachet-$n" env \
      CACHET__SERVER__LISTEN="127.0.0.1:$proxy" \
      CACHET__SERVER__DRAIN_TIMEOUT=2s \
      CACHET__ADMIN__LISTEN="127.0.0.1:$admin" \
      CACHET__ADMIN__TOKEN="$TOKEN" \
      CACHET__CACHE__PARTITION_SECRET="$secret" \
      CACHET__CACHE__REDIS__URL="redis://127.0.0.1:$redis_port/0" \
      "$bin" --config "$tmp/cachet.toml"
    # Ready, and reading the shared tier (subscribed and synced): what --check relies on.
    if wait_for "cachet-$n" "$last_pid" \
      bash -c "curl -sf --max-time 2 http://127.0.0.1:$admin/readyz | grep -q '\"shared_tier\":\"up\"'"; then
      proxy_port[n]=$proxy
      admin_port[n]=$admin
      return 0
    fi
  done
  fail "cachet-$n did not start"
}

# ---- start ----
log "temp dir $tmp"
start_redis
start_origin
# docker/cachet.toml with the origin's address instead of the compose service's.
sed "s#http://origin:9000#http://127.0.0.1:$origin_port#g" docker/cachet.toml >"$tmp/cachet.toml"
grep -q "127.0.0.1:$origin_port" "$tmp/cachet.toml" || fail "docker/cachet.toml names no http://origin:9000 upstream"
secret="local-$RANDOM$RANDOM$RANDOM" # the same on every instance sharing Redis
"$bin" check --config "$tmp/cachet.toml" >/dev/null || fail "cachet check rejected the generated config"
for n in 1 2 3; do start_instance "$n"; done

if ! $check; then
  cat <<EOF

Cachet local cluster (Ctrl-C stops everything)
  redis     redis://127.0.0.1:$redis_port/0
  origin    http://127.0.0.1:$origin_port   (the demo API, direct)
  cachet-1  http://127.0.0.1:${proxy_port[1]}   admin http://127.0.0.1:${admin_port[1]}
  cachet-2  http://127.0.0.1:${proxy_port[2]}   admin http://127.0.0.1:${admin_port[2]}
  cachet-3  http://127.0.0.1:${proxy_port[3]}   admin http://127.0.0.1:${admin_port[3]}
  logs      $tmp/*.log (JSON, removed on exit)

Try (one Host header for every instance, as behind one load balancer):
  curl -si -H '$HOST_HEADER' http://127.0.0.1:${proxy_port[1]}/api/products/42 | grep -i cache-status   # fwd=miss; stored
  curl -si -H '$HOST_HEADER' http://127.0.0.1:${proxy_port[2]}/api/products/42 | grep -i cache-status   # hit; detail=shared
  curl -s -X POST -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:${admin_port[1]}/purge -d '{"tags": ["product:42"]}'
  curl -si -H '$HOST_HEADER' http://127.0.0.1:${proxy_port[3]}/api/products/42 | grep -i cache-status   # fwd=miss again
  curl -s http://127.0.0.1:${admin_port[1]}/readyz
  curl -s http://127.0.0.1:${admin_port[1]}/metrics | grep cachet_requests_total
EOF
  while true; do
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || fail "a process stopped (pid $pid)"
    done
    sleep 1
  done
fi

# ---- --check ----
# get N PATH: GET through instance N; sets $status_line, $cache_status and $body.
get() {
  local headers
  headers=$(curl -s --max-time 5 -D - -o "$tmp/body" -H "$HOST_HEADER" \
    "http://127.0.0.1:${proxy_port[$1]}$2") || fail "GET $2 on cachet-$1: no answer"
  headers=$(printf '%s' "$headers" | tr -d '\r')
  status_line=$(printf '%s\n' "$headers" | head -n 1)
  cache_status=$(printf '%s\n' "$headers" | grep -i '^cache-status:' | cut -d: -f2- | sed 's/^ *//' || true)
  body=$(cat "$tmp/body")
  case "$status_line" in *" 200"*) ;; *) fail "GET $2 on cachet-$1: $status_line" ;; esac
}

generated_at() { printf '%s' "$1" | grep -o '"generated_at":[0-9]*' | cut -d: -f2; }

id="check-$RANDOM"
path="/api/products/$id"

get 1 "$path"
case "$cache_status" in *fwd=miss*stored*) ;; *) fail "cachet-1 first GET: cache-status '$cache_status', want fwd=miss; stored" ;; esac
first_body=$body
echo "ok   cachet-1 filled $path from the origin ($cache_status)"

get 2 "$path"
case "$cache_status" in *hit*detail=shared*) ;; *) fail "cachet-2: cache-status '$cache_status', want hit; detail=shared" ;; esac
[ "$body" = "$first_body" ] || fail "cachet-2 served another body than cachet-1 stored"
echo "ok   cachet-2 answered from Redis ($cache_status)"

get 3 "$path"
case "$cache_status" in *hit*) ;; *) fail "cachet-3 before the purge: cache-status '$cache_status', want a hit" ;; esac
echo "ok   cachet-3 holds it too ($cache_status)"

purge=$(curl -s --max-time 5 -X POST -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d "{\"tags\": [\"product:$id\"]}" \
  "http://127.0.0.1:${admin_port[1]}/purge") || fail "purge on cachet-1: no answer"
case "$purge" in *'"ok":true'*) ;; *) fail "purge on cachet-1 answered: $purge" ;; esac
echo "ok   purged tag product:$id through cachet-1's admin API ($purge)"

# The purge reaches cachet-3 by pub/sub, normally within milliseconds.
while true; do
  get 3 "$path"
  case "$cache_status" in *fwd=miss*) break ;; esac
  [ "$SECONDS" -lt "$deadline" ] || fail "cachet-3 still answers '$cache_status' after the purge"
  sleep 0.1
done
[ "$(generated_at "$body")" != "$(generated_at "$first_body")" ] ||
  fail "cachet-3 refetched but the body is the old one"
echo "ok   cachet-3 refetched from the origin after the purge ($cache_status)"

echo "local cluster check passed"
