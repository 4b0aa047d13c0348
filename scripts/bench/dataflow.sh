#!/usr/bin/env bash
# End-to-end dataflow throughput, Edgeplane's dataflow engine beside Node-RED (npm package
# node-red, the tool many OT teams would use instead) running the same flow against the
# same broker (Edgeplane, no dataflow). Alternating rounds; prints each run as JSON and the
# medians. Also runs the transform engine alone (the `throughput` example).
#
#   scripts/bench/dataflow.sh [ROUNDS=3] [MESSAGES_PER_PUBLISHER=50000] [PUBLISHERS=4]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
MSGS=${2:-50000}
PUBS=${3:-4}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeplane/target}"
cargo build --release --locked -q -p edgeplane -p edgeplane-dataflow --example relay_bench --example throughput
BIN="$CARGO_TARGET_DIR/release/edgeplane"
BENCH="$CARGO_TARGET_DIR/release/examples/relay_bench"
NR="$HOME/.cache/edgeplane/node-red"
if [ ! -x "$NR/node_modules/.bin/node-red" ]; then
  echo "installing node-red (npm) into $NR" >&2
  npm install --silent --no-audit --no-fund --prefix "$NR" node-red@4 >/dev/null
fi
here=scripts/bench/dataflow
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
cpu_seconds() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
dataset=$(python3 -c 'print("\n".join("{\"asset\": \"dev-%d\", \"location\": \"room-%d\", \"site\": \"Kent\"}" % (i, i % 7) for i in range(50)))')

run_edgeplane() {
  local port; port=$(free_port)
  mkdir -p "$work/ep"; sed "s/PORT/$port/" "$here/flow.yaml" > "$work/ep/site.yaml"
  "$BIN" run --config "$work/ep" --http 127.0.0.1:0 --metrics 127.0.0.1:0 2>"$work/ep.log" &
  local pid=$!
  wait_port "$port"
  "$BIN" state --broker "127.0.0.1:$port" set assets "$dataset" >/dev/null
  sleep 0.5
  local out; out=$("$BENCH" --broker "127.0.0.1:$port" --publishers "$PUBS" --messages "$MSGS")
  echo "edgeplane-dataflow $out broker_cpu_s=$(cpu_seconds $pid)"
  kill $pid; wait $pid 2>/dev/null || true
}

run_node_red() {
  local port http; port=$(free_port); http=$(free_port)
  mkdir -p "$work/plain" "$work/nr"
  sed "s/PORT/$port/" "$here/listener.yaml" > "$work/plain/site.yaml"
  sed "s/\"PORT\"/\"$port\"/" "$here/node-red-flows.json" > "$work/nr/flows.json"
  "$BIN" run --config "$work/plain" --http 127.0.0.1:0 --metrics 127.0.0.1:0 2>"$work/plain.log" &
  local bpid=$!
  wait_port "$port"
  "$NR/node_modules/.bin/node-red" --userDir "$work/nr" --port "$http" flows.json >"$work/nr.log" 2>&1 &
  local npid=$!
  for _ in $(seq 300); do grep -q "Connected to broker" "$work/nr.log" && break; sleep 0.1; done
  grep -q "Connected to broker" "$work/nr.log" || { echo "node-red did not connect" >&2; cat "$work/nr.log" >&2; return 1; }
  sleep 0.5
  local out; out=$("$BENCH" --broker "127.0.0.1:$port" --publishers "$PUBS" --messages "$MSGS")
  echo "node-red $out broker_cpu_s=$(cpu_seconds $bpid) node_red_cpu_s=$(cpu_seconds $npid)"
  kill $npid $bpid; wait $npid $bpid 2>/dev/null || true
}

echo "# machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GB; $(date -u +%F)"
echo "# transform engine alone (one core):"
"$CARGO_TARGET_DIR/release/examples/throughput"
: > "$work/results"
for r in $(seq "$ROUNDS"); do
  run_edgeplane | tee -a "$work/results"
  run_node_red | tee -a "$work/results"
done
echo "# medians of $ROUNDS rounds, msg/s end to end:"
for engine in edgeplane-dataflow node-red; do
  grep "^$engine " "$work/results" | sed 's/.*"msg_per_s":\([0-9]*\).*/\1/' | sort -n \
    | awk -v e="$engine" '{a[NR]=$1} END {printf "%s %d\n", e, a[int((NR+1)/2)]}'
done
