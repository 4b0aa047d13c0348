#!/usr/bin/env bash
# Cost of metrics on the hot path: QoS 0 and QoS 1 fan-in throughput with /metrics scraped
# every second (as Prometheus would) against no scraping, alternating for ROUNDS rounds.
# The counters are always on (relaxed atomics); scraping is the part that can be switched.
# Usage: scripts/bench/metrics-overhead.sh [ROUNDS]   (default 5)
#
# Load-independent variant: scripts/bench/metrics-overhead.sh callgrind [MESSAGES]
# runs the release broker under valgrind's callgrind (Debian package valgrind) and, for a
# QoS 0 and a QoS 1 fan-in of 10 publishers x MESSAGES (default 2000) 64 B messages, counts
# the instructions the broker executed per delivered message and those whose inline chain is
# in the metrics code (crates/broker/src/stats.rs, crates/portal/src/metrics.rs), with
# scripts/bench/metrics_instructions.py. Instruction counts do not depend on the machine's
# load; they do not price an atomic read-modify-write above other instructions (see
# docs/BENCHMARKS.md, Metrics overhead).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -q -p edgeplane -p edgeplane-bench
T="${CARGO_TARGET_DIR:-target}/release"
if [ "${1:-}" = callgrind ]; then
  MESSAGES="${2:-2000}"
  work=$(mktemp -d)
  # KEEP=1 keeps the profiles (callgrind_annotate them) and says where.
  if [ -n "${KEEP:-}" ]; then
    trap 'kill $(jobs -p) 2>/dev/null || true; echo "profiles in $work" >&2' EXIT
  else
    trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
  fi
  free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  port=$(free); mport=$(free)
  printf 'apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: bench}\nspec:\n  ports:\n  - port: %s\n    bindAddress: 127.0.0.1\n' "$port" >"$work/l.yaml"
  RUST_LOG=warn valgrind --tool=callgrind --dump-instr=yes --dump-line=no \
    --compress-strings=no --compress-pos=no --instr-atstart=no \
    --callgrind-out-file="$work/cg.out" \
    "$T/edgeplane" run --config "$work" --http 127.0.0.1:0 --metrics "127.0.0.1:$mport" 2>"$work/broker.log" &
  broker=$!
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do sleep 1; done
  # Warm-up (connections, allocator, first subscriptions) outside the profile.
  "$T/edgeplane-bench" fan-in --broker "127.0.0.1:$port" --clients 10 --messages 200 --timeout-secs 600 >/dev/null
  for qos in 0 1; do
    callgrind_control -i on "$broker" >/dev/null
    "$T/edgeplane-bench" fan-in --broker "127.0.0.1:$port" --clients 10 --messages "$MESSAGES" --qos "$qos" --timeout-secs 600 >"$work/qos$qos.json"
    callgrind_control -i off "$broker" >/dev/null
    callgrind_control -d "qos$qos" "$broker" >/dev/null
    cp "$(ls -t "$work"/cg.out.* | head -1)" "$work/qos$qos.cg"
    echo "qos $qos: $(cat "$work/qos$qos.json")" >&2
  done
  # One scrape's cost, averaged over 10 with no traffic.
  callgrind_control -i on "$broker" >/dev/null
  for _ in $(seq 10); do curl -s "http://127.0.0.1:$mport/metrics" >/dev/null; done
  callgrind_control -i off "$broker" >/dev/null
  callgrind_control -d scrape "$broker" >/dev/null
  scrape=$(ls -t "$work"/cg.out.* | head -1)
  python3 scripts/bench/metrics_instructions.py "$T/edgeplane" "$((MESSAGES * 10))" "$work/qos0.cg" "$work/qos1.cg"
  echo "One /metrics scrape (HTTP included): $(awk '/^totals:/ {printf "%d", $2 / 10}' "$scrape") instructions"
  exit 0
fi
ROUNDS="${1:-5}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt=$(free_port); http=$(free_port); metrics=$(free_port)
printf 'apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: bench}\nspec:\n  ports:\n  - port: %s\n    bindAddress: 127.0.0.1\n' "$mqtt" >"$work/l.yaml"
RUST_LOG=warn "$T/edgeplane" run --config "$work" --http "127.0.0.1:$http" --metrics "127.0.0.1:$metrics" &
sleep 1
results="$work/r.tsv"
for round in $(seq "$ROUNDS"); do
  for mode in off on; do
    if [ "$mode" = on ]; then
      ( while true; do curl -s "http://127.0.0.1:$metrics/metrics" >/dev/null; sleep 1; done ) &
      scraper=$!
    fi
    for qos in 0 1; do
      out=$("$T/edgeplane-bench" fan-in --broker "127.0.0.1:$mqtt" --clients 10 --messages 200000 --qos "$qos")
      printf '%s\t%s\t%s\n' "$mode" "$qos" "$out" >>"$results"
      echo "round $round scrape=$mode qos=$qos: $out" >&2
    done
    if [ "$mode" = on ]; then kill $scraper; wait $scraper 2>/dev/null || true; fi
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, qos, out = line.rstrip("\n").split("\t")
    rows.setdefault(qos, {}).setdefault(mode, []).append(json.loads(out)["deliveries_per_sec"])
print("| scenario | without scraping (msg/s) | scraped every 1 s (msg/s) | difference |")
print("|---|---|---|---|")
for qos, m in sorted(rows.items()):
    off, on = statistics.median(m["off"]), statistics.median(m["on"])
    print(f"| QoS {qos} fan-in 10→1, 64 B | {off:,.0f} | {on:,.0f} | {(on-off)/off*100:+.1f} % |")
PY
