#!/usr/bin/env bash
# Broker RSS over time with a subscriber that stops reading while publishers continue
# (half MQTT 5, half MQTT 3.1.1, QoS 1): Edgeplane with maxQueuedBytes = BOUND_MIB MiB.
# Writes docs/rss-stalled-subscriber.csv and docs/rss-stalled-subscriber.svg and prints a
# JSON summary (rss_start_mib, rss_max_mib, accepted, refused).
# Usage: scripts/bench/stalled-subscriber.sh [SECONDS] [BOUND_MIB]   (default 60, 64)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_RUN="${1:-60}"
BOUND_MIB="${2:-64}"
cargo build --release --locked -q -p edgeplane -p edgeplane-bench
T="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/config"
printf 'apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: bench}\nspec:\n  ports:\n  - port: %s\n    bindAddress: 127.0.0.1\n' "$port" >"$work/config/listener.yaml"
printf 'apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {name: default}\nspec:\n  advanced:\n    clients:\n      maxQueuedBytes: %s\n' "$((BOUND_MIB * 1024 * 1024))" >"$work/config/broker.yaml"
RUST_LOG=warn "$T/edgeplane" run --config "$work/config" --http 127.0.0.1:0 --metrics 127.0.0.1:0 >"$work/broker.log" 2>&1 &
pid=$!
sleep 1
"$T/edgeplane-bench" stalled-subscriber --broker "127.0.0.1:$port" --pid "$pid" \
  --publishers 4 --payload 4096 --duration-secs "$SECONDS_RUN" --bound-mib "$BOUND_MIB" \
  --csv docs/rss-stalled-subscriber.csv --svg docs/rss-stalled-subscriber.svg
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
