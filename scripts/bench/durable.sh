#!/usr/bin/env bash
# Durable QoS 1 throughput: Edgeplane in memory, Edgeplane with --data-dir (fsync per group
# commit) and Mosquitto with `persistence true`, 10 publishers → 1 persistent subscriber,
# 64 B and 4 KB payloads, alternating for ROUNDS rounds; prints medians (msg/s).
# Usage: scripts/bench/durable.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-3}"
scripts/install-deps.sh >/dev/null
cargo build --release --locked -q -p edgeplane -p edgeplane-bench
T="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {
  local kind=$1 port=$2
  rm -rf "$work/run" && mkdir -p "$work/run/config"
  case $kind in
    memory|durable)
      printf 'apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: bench}\nspec:\n  ports:\n  - port: %s\n    bindAddress: 127.0.0.1\n' "$port" >"$work/run/config/l.yaml"
      local data=()
      [ "$kind" = durable ] && data=(--data-dir "$work/run/data")
      RUST_LOG=warn "$T/edgeplane" run --config "$work/run/config" "${data[@]}" \
        --http 127.0.0.1:0 --metrics 127.0.0.1:0 >/dev/null 2>&1 &
      ;;
    mosquitto)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\npersistence true\npersistence_location %s/\nautosave_interval 1\n' \
        "$port" "$work/run" >"$work/run/mq.conf"
      mosquitto -c "$work/run/mq.conf" >/dev/null 2>&1 &
      ;;
  esac
  echo $!
}

results="$work/results.tsv"
for round in $(seq "$ROUNDS"); do
  for payload in 64 4096; do
    for kind in memory durable mosquitto; do
      port=$(free_port)
      pid=$(start "$kind" "$port")
      sleep 0.5
      rate=$("$T/edgeplane-bench" fan-in --broker "127.0.0.1:$port" --clients 10 \
        --messages 30000 --qos 1 --payload "$payload" --persistent \
        | sed -n 's/.*"deliveries_per_sec":\([0-9]*\).*/\1/p')
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
      printf '%s\t%s\t%s\n' "$payload" "$kind" "$rate" >>"$results"
      echo "round $round: $kind ${payload} B: $rate msg/s" >&2
    done
  done
done
echo "| payload | Edgeplane in memory | Edgeplane durable | Mosquitto persistence | durable / memory |"
echo "|---|---|---|---|---|"
for payload in 64 4096; do
  med() { awk -F'\t' -v p="$payload" -v k="$1" '$1==p && $2==k {print $3}' "$results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  m=$(med memory); d=$(med durable); q=$(med mosquitto)
  printf '| %s B | %s | %s | %s | %.2f |\n' "$payload" "$m" "$d" "$q" "$(echo "$d / $m" | bc -l)"
done
