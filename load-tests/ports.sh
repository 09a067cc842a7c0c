# Free loopback ports for the load-test scripts (sourced by run.sh, stampede.sh and
# chaos/lib.sh, not run).

USED_PORTS=" "
# free_port VAR: sets VAR to a port nothing listens on, below the kernel's ephemeral range
# (32768 and up by default), not handed out before in this run; 1 when none is found.
# The local has a name no caller uses: `printf -v port` from a local `port` would set the
# local, not the caller's variable.
free_port() {
  local free_port_candidate
  for _ in $(seq 200); do
    free_port_candidate=$((20000 + RANDOM % 12000))
    case "$USED_PORTS" in *" $free_port_candidate "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$free_port_candidate") 2>/dev/null; then
      USED_PORTS="$USED_PORTS$free_port_candidate "
      printf -v "$1" '%s' "$free_port_candidate"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}
