#!/usr/bin/env bash
# Resident memory per idle MQTT connection: Edgeplane and Mosquitto, same machine, same run.
# Usage: scripts/bench/idle-connections.sh [CONNECTIONS]   (default 10000)
# Each broker is one process, so CONNECTIONS is bounded by the open-file hard limit
# (`ulimit -Hn`; 20,000 on the build machine, which this container cannot raise).
# Beyond that limit: scripts/bench/idle-connections-vm.sh (the same measurement in a VM).
# rumqttd is measured too when scripts/bench/compare-brokers.sh has installed it.
# Prints a Markdown table row per broker: RSS before, after, and per connection.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-10000}"
# Each process needs a descriptor per connection: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((N + 100)) ]; then
  echo "open-file limit $(ulimit -n) is below $N connections; raise the hard limit (ulimit -Hn)" >&2
  exit 1
fi
scripts/install-deps.sh >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeplane/target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked -q -p edgeplane -p edgeplane-bench
TARGET="$CARGO_TARGET_DIR/release"
RUMQTTD="$HOME/.cache/edgeplane/rumqttd/bin/rumqttd"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

measure() { # name pid port
  local name=$1 pid=$2 port=$3
  sleep 1
  local before; before=$(rss_kb "$pid")
  # Keep alive 600 s: rumqttd refuses 0; the run is far shorter.
  "$TARGET/edgeplane-bench" idle --broker "127.0.0.1:$port" --connections "$N" --hold-secs 3 \
    --keep-alive 600 --sources 4 >"$work/$name.out" &
  local bench=$!
  while ! grep -q holding "$work/$name.out" 2>/dev/null; do sleep 0.2; kill -0 $bench 2>/dev/null || { cat "$work/$name.out"; exit 1; }; done
  sleep 1
  local after; after=$(rss_kb "$pid")
  wait $bench
  local per; per=$(python3 -c "print(f'{($after-$before)*1024/$N:.0f}')")
  echo "| $name | $N | $((before/1024)) MiB | $((after/1024)) MiB | $per B |"
}

port=$(free_port)
mkdir -p "$work/ep"
cat >"$work/ep/listener.yaml" <<YAML
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: bench}
spec:
  ports:
  - port: $port
    bindAddress: 127.0.0.1
YAML
RUST_LOG=warn "$TARGET/edgeplane" run --config "$work/ep" &
ep=$!
echo "| broker | connections | RSS before | RSS after | RSS per connection |"
echo "|---|---|---|---|---|"
measure edgeplane $ep "$port"
kill -TERM $ep; wait $ep || true

port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >/dev/null 2>&1 &
mq=$!
measure "mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}')" $mq "$port"
kill $mq; wait $mq 2>/dev/null || true

if [ -x "$RUMQTTD" ]; then
  port=$(free_port)
  cat >"$work/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = $((N + 100))
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
EOF
  RUST_LOG=error "$RUMQTTD" -c "$work/rumqttd.toml" -q >/dev/null 2>&1 &
  rq=$!
  measure "rumqttd $("$RUMQTTD" -V | awk '{print $2}')" $rq "$port"
  kill $rq; wait $rq 2>/dev/null || true
fi
