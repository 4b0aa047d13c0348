#!/usr/bin/env bash
# Broker RSS over time with a subscriber that stops reading while publishers continue
# (half MQTT 5, half MQTT 3.1.1, QoS 1): Edgeplane with maxQueuedBytes = BOUND_MIB MiB.
# Writes docs/rss-stalled-subscriber.csv and docs/rss-stalled-subscriber.svg and prints a
# JSON summary (rss_start_mib, rss_max_mib, accepted, refused).
# Usage: scripts/bench/stalled-subscriber.sh [SECONDS] [BOUND_MIB]   (default 60, 64)
# With DISK_BUFFER=SIZE (AIO's pattern, e.g. 1G) the broker also has a disk-backed message
# buffer of that size (diskBackedMessageBuffer.maxSize; memoryThreshold from
# MEMORY_THRESHOLD, e.g. 16M, else 3/4 of the bound), in its private folder (no data
# folder, so no durable store: the same workload as without the buffer); the outputs are then docs/rss-stalled-subscriber-buffer.{csv,svg}, and the spill
# folder's size is printed beside the summary. NO_BUILD=1 skips the release build;
# BIN_DIR=DIR runs the edgeplane and edgeplane-bench binaries found there instead (a copy
# of your build, when other checkouts share the target folder and overwrite release/).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_RUN="${1:-60}"
BOUND_MIB="${2:-64}"
[ -n "${NO_BUILD:-}" ] || cargo build --release --locked -q -p edgeplane -p edgeplane-bench
T="${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/config"
printf 'apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: bench}\nspec:\n  ports:\n  - port: %s\n    bindAddress: 127.0.0.1\n' "$port" >"$work/config/listener.yaml"
printf 'apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {name: default}\nspec:\n  advanced:\n    clients:\n      maxQueuedBytes: %s\n' "$((BOUND_MIB * 1024 * 1024))" >"$work/config/broker.yaml"
out=docs/rss-stalled-subscriber
if [ -n "${DISK_BUFFER:-}" ]; then
  printf '  diskBackedMessageBuffer:\n    maxSize: %s\n' "$DISK_BUFFER" >>"$work/config/broker.yaml"
  [ -z "${MEMORY_THRESHOLD:-}" ] || printf '    memoryThreshold: %s\n' "$MEMORY_THRESHOLD" >>"$work/config/broker.yaml"
  out=docs/rss-stalled-subscriber-buffer
fi
mkdir -p "$work/tmp"
TMPDIR="$work/tmp" RUST_LOG=warn "$T/edgeplane" run --config "$work/config" --http 127.0.0.1:0 --metrics 127.0.0.1:0 >"$work/broker.log" 2>&1 &
pid=$!
sleep 1
"$T/edgeplane-bench" stalled-subscriber --broker "127.0.0.1:$port" --pid "$pid" \
  --publishers 4 --payload 4096 --duration-secs "$SECONDS_RUN" --bound-mib "$BOUND_MIB" \
  --csv "$out.csv" --svg "$out.svg"
[ -z "${DISK_BUFFER:-}" ] || echo "{\"spill_dir_bytes_at_end\":$(du -sb "$work/tmp" | cut -f1)}"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
