#!/usr/bin/env bash
# The OPC UA connector under issue 9's load: one `edgeplane opcua-sim` serving 10,000 data
# points changing every 100 ms (2,000 fast nodes of each of its 5 kinds), one Asset with 10
# datasets of 1,000 points (publishing and sampling 100 ms), `edgeplane run` connecting to
# it. Measures, over SECONDS after a warm-up: the CPU the edgeplane process used (utime +
# stime from /proc, in cores), and each value's latency from its SourceTimestamp to its
# arrival at an MQTT subscriber (paho, QoS 0; an upper bound of source-to-broker).
# PUBLISHING_MS and SAMPLING_MS (default 100 and 100) set the datasets' intervals; with
# sampling 0 the server reports each change as it happens. The simulator's CPU is reported
# too (it shares the machine).
# QOS (Qos1, the default, or Qos0) is the destination's QoS: with the data folder, a QoS 1
# publish waits for the durable store. NO_BUILD=1 uses the release binary as it is; BIN=path
# runs another edgeplane binary (e.g. a copy of an older build, to compare back to back);
# SIM_BIN=path runs the simulator from another binary than the connector (default: BIN).
# SESSIONS=N sets the device endpoint's `sessionCount` (default: the connector's own, one
# OPC UA session per core up to 4).
# ASSET_FROM=folder (default) puts the Asset (10,000 data points, a 622 kB manifest) in the
# configuration folder like the listener and the Device; ASSET_FROM=api creates it through
# the REST API instead (signing up a bench user first), so the folder stays small. The
# folder is re-read every 5 s by `edgeplane run`, which parses every manifest in it.
# The connector logs its per-stage latencies (source->callback->built->broker, p50/p99/max
# per 10 s window, weighted by values) at debug level; the windows after the warm-up are
# printed at the end.
# Usage: [PUBLISHING_MS=..] [SAMPLING_MS=..] scripts/bench/opcua.sh [SECONDS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_RUN="${1:-30}"
WARMUP=10
PUBLISHING_MS="${PUBLISHING_MS:-100}"
SAMPLING_MS="${SAMPLING_MS:-100}"
QOS="${QOS:-Qos1}"
ASSET_FROM="${ASSET_FROM:-folder}"
case "$ASSET_FROM" in folder|api) ;; *) echo "ASSET_FROM is folder or api" >&2; exit 2;; esac
scripts/install-deps.sh >/dev/null
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p edgeplane
T="${CARGO_TARGET_DIR:-target}/release"
BIN="${BIN:-$T/edgeplane}"
SIM_BIN="${SIM_BIN:-$BIN}"
ADDITIONAL='"security":{"securityMode":"None"}'
[ -z "${SESSIONS:-}" ] || ADDITIONAL="$ADDITIONAL, \"sessionCount\": $SESSIONS"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OPC=$(free_port); MQTT=$(free_port); HTTP=$(free_port)

RUST_LOG=warn "$SIM_BIN" opcua-sim --listen "127.0.0.1:$OPC" --pki-dir "$work/sim-pki" \
  --fast-nodes 2000 --fast-interval-ms 100 --slow-nodes 0 --security none >/dev/null 2>&1 &
SIM=$!

mkdir -p "$work/config"
cat >"$work/config/all.yaml" <<YAML
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: bench}
spec:
  ports: [{port: $MQTT, bindAddress: 127.0.0.1}]
---
apiVersion: namespaces.deviceregistry.microsoft.com/v1
kind: Device
metadata: {name: sim}
spec:
  endpoints:
    inbound:
      opc-ua:
        endpointType: Microsoft.OpcUa
        address: opc.tcp://127.0.0.1:$OPC
        additionalConfiguration: '{$ADDITIONAL}'
YAML
cat >"$work/asset.yaml" <<YAML
apiVersion: namespaces.deviceregistry.microsoft.com/v1
kind: Asset
metadata: {name: line}
spec:
  deviceRef: {deviceName: sim, endpointName: opc-ua}
  defaultDatasetsConfiguration: '{"publishingInterval": $PUBLISHING_MS, "samplingInterval": $SAMPLING_MS, "queueSize": 1}'
  defaultDatasetsDestinations: [{target: Mqtt, configuration: {topic: azure-iot-operations/data/line, qos: $QOS}}]
  datasets:
YAML
python3 - "$work/asset.yaml" <<'PY'
import sys
kinds = ["Counter", "Random", "Sine", "Trend", "Toggle"]
with open(sys.argv[1], "a") as f:
    for d in range(10):
        f.write(f"  - name: ds{d}\n    dataPoints:\n")
        for j in range(1000):
            n = d * 1000 + j
            kind, i = kinds[n // 2000], n % 2000
            f.write(f"    - {{name: {kind}{i}, dataSource: 'ns=2;s=Fast.{kind}.{i}'}}\n")
PY
if [ "$ASSET_FROM" = folder ]; then
  { echo ---; cat "$work/asset.yaml"; } >>"$work/config/all.yaml"
fi
NO_COLOR=1 RUST_LOG=warn,edgeplane_connectors::stages=debug "$BIN" run --config "$work/config" --data-dir "$work/data" \
  --http "127.0.0.1:$HTTP" --metrics 127.0.0.1:0 >"$work/run.log" 2>&1 &
EP=$!
sleep 1
if [ "$ASSET_FROM" = api ]; then
  python3 scripts/bench/opcua/post_asset.py "127.0.0.1:$HTTP" "$work/asset.yaml"
fi
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
python3 scripts/bench/opcua/measure.py 127.0.0.1 "$MQTT" 'azure-iot-operations/data/line' "$SECONDS_RUN" "$WARMUP" >"$work/measure.json" &
MEASURE=$!
sleep "$WARMUP"
t0=$(ticks $EP); q0=$(ticks $SIM); m0=$(ticks $MEASURE); s0=$(date +%s.%N)
sleep "$SECONDS_RUN"
t1=$(ticks $EP); q1=$(ticks $SIM); m1=$(ticks $MEASURE); s1=$(date +%s.%N)
wait "$MEASURE"
cores() { python3 -c "print(round(($2 - $1) / $HZ / ($s1 - $s0), 3))"; }
echo "publishing ${PUBLISHING_MS} ms, sampling ${SAMPLING_MS} ms, $QOS, asset from the $ASSET_FROM; edgeplane CPU: $(cores $t0 $t1) cores, simulator CPU: $(cores $q0 $q1) cores, subscriber CPU: $(cores $m0 $m1) cores over ${SECONDS_RUN}s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$work/measure.json"
# CPU per value: the connector's CPU time (decode, frames, broker, delivery to the subscriber)
# divided by the values that reached MQTT; unlike the latencies it barely moves with load.
python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print('edgeplane CPU per value: %.2f us' % ($(cores $t0 $t1) * 1e6 / max(1, m['values_per_second'])))" "$work/measure.json"
grep "opc ua stages" "$work/run.log" | tail -n +2 | sed 's/^.*opc ua stages/stages/' || true
grep -iE "warn|error" "$work/run.log" | tail -5 || true
