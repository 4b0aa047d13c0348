#!/usr/bin/env bash
# Durability check: 100 kill -9 / restart cycles of Edgeplane under a mixed QoS 1 / QoS 2
# load of persistent sessions; reports acknowledged messages lost and QoS 2 duplicates
# (exit status 1 on any). Extra arguments go to `edgeplane-bench crash` (--cycles N ...).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeplane/target}"
cargo build --release --locked -p edgeplane -p edgeplane-bench
exec "$CARGO_TARGET_DIR/release/edgeplane-bench" crash \
  --edgeplane "$CARGO_TARGET_DIR/release/edgeplane" "$@"
