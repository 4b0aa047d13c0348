#!/usr/bin/env bash
# Throughput side by side: Edgeplane and Mosquitto (Debian package), same machine, loopback,
# alternating A B A B for ROUNDS rounds; prints a Markdown table of medians.
# Usage: scripts/bench/compare-brokers.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-3}"
scripts/install-deps.sh >/dev/null
cargo build --release --locked -q -p edgeplane -p edgeplane-bench
T="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_edgeplane() {
  local port=$1
  mkdir -p "$work/ep"
  printf 'apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: bench}\nspec:\n  ports:\n  - port: %s\n    bindAddress: 127.0.0.1\n' "$port" >"$work/ep/l.yaml"
  RUST_LOG=warn "$T/edgeplane" run --config "$work/ep" >/dev/null 2>&1 &
  echo $!
}
start_mosquitto() {
  # Lossless: no queue or in-flight limits, so no message is dropped.
  local port=$1
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n' "$port" >"$work/mq.conf"
  mosquitto -c "$work/mq.conf" >/dev/null 2>&1 &
  echo $!
}

# name | bench arguments
SCENARIOS=(
  "QoS 0 fan-in 10→1, 64 B|fan-in --clients 10 --messages 50000 --qos 0 --payload 64"
  "QoS 1 fan-in 10→1, 64 B|fan-in --clients 10 --messages 20000 --qos 1 --payload 64"
  "QoS 2 fan-in 10→1, 64 B|fan-in --clients 10 --messages 10000 --qos 2 --payload 64"
  "QoS 0 fan-out 1→100, 64 B|fan-out --clients 100 --messages 2000 --qos 0 --payload 64"
  "QoS 1 fan-in 10→1, 4 KB|fan-in --clients 10 --messages 5000 --qos 1 --payload 4096"
)

results="$work/results.tsv"
for round in $(seq "$ROUNDS"); do
  for broker in edgeplane mosquitto; do
    for s in "${SCENARIOS[@]}"; do
      name="${s%%|*}"; args="${s#*|}"
      port=$(free_port)
      pid=$(start_"$broker" "$port")
      sleep 0.5
      start_cpu=$(awk '{print $14+$15}' "/proc/$pid/stat")
      # shellcheck disable=SC2086
      out=$("$T/edgeplane-bench" $args --broker "127.0.0.1:$port")
      end_cpu=$(awk '{print $14+$15}' "/proc/$pid/stat")
      kill "$pid"; wait "$pid" 2>/dev/null || true
      printf '%s\t%s\t%s\t%s\n' "$name" "$broker" "$out" "$((end_cpu - start_cpu))" >>"$results"
      echo "round $round $broker $name: $out" >&2
    done
  done
done

python3 - "$results" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, broker, out, ticks = line.rstrip("\n").split("\t")
    r = json.loads(out)
    cpu_per_m = int(ticks) / int(sys.argv[2]) / max(r["received"], 1) * 1e6
    rows.setdefault(name, {}).setdefault(broker, []).append((r["deliveries_per_sec"], r["lost"], cpu_per_m))
print("| scenario | edgeplane msg/s | mosquitto msg/s | ratio | edgeplane CPU s / M msgs | mosquitto CPU s / M msgs | lost (e/m) |")
print("|---|---|---|---|---|---|---|")
for name, b in rows.items():
    e = statistics.median(x[0] for x in b["edgeplane"]); m = statistics.median(x[0] for x in b["mosquitto"])
    ec = statistics.median(x[2] for x in b["edgeplane"]); mc = statistics.median(x[2] for x in b["mosquitto"])
    el = sum(x[1] for x in b["edgeplane"]); ml = sum(x[1] for x in b["mosquitto"])
    print(f"| {name} | {e:,.0f} | {m:,.0f} | {e/m:.2f}× | {ec:.2f} | {mc:.2f} | {el}/{ml} |")
PY
