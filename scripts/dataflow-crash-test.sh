#!/usr/bin/env bash
# kill -9 a broker running a dataflow with requestDiskPersistence, CYCLES times (default
# 20), while messages flow through it; then check that every source message the broker
# acknowledged reached the dataflow's destination. Prints one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGEPLANE_DATAFLOW_CRASH_CYCLES="${1:-20}"
cargo test --release --locked -p edgeplane --test dataflow kill_9 -- --nocapture 2>&1 \
  | grep -E "kill -9 cycles|test result|panicked|missing"
