#!/usr/bin/env bash
# Runs every check and test on a fresh Debian machine with a Rust toolchain:
# installs what the tests need when it is missing, then fmt, clippy and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# The packaged service is not used: tests start their own redis-server on free ports.

rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# About twenty test binaries each link the whole crate graph: full debug info and
# incremental caches took gigabytes and once filled a CI disk. Line tables keep
# backtraces readable at a fraction of the size.
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --all-features -- -D warnings
echo "==> cargo test"
cargo test --all-targets --all-features
cargo test --doc
