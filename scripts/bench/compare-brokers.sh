#!/usr/bin/env bash
# Side by side: Edgeplane, Mosquitto (Debian package) and rumqttd (crates.io, when it builds),
# same machine, loopback, equivalent lossless settings, alternating brokers (A B C A B C) for
# ROUNDS rounds. Prints a Markdown table of medians and, with --write, replaces the generated
# section of docs/BENCHMARKS.md (between the compare-brokers markers) with it.
# Usage: scripts/bench/compare-brokers.sh [ROUNDS] [--write]   (default 3 rounds;
# SKIP_BUILD=1 uses the release binaries already built; ONLY='regex' runs the scenarios whose
# name matches, e.g. ONLY='fan-in 10→1, 64 B|fan-out|20,000'; NO_RUMQTTD=1 leaves rumqttd out.
# --write is refused with ONLY: the generated table must hold every scenario)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-3}"
WRITE="${2:-}"
scripts/install-deps.sh >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeplane/target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked -q -p edgeplane -p edgeplane-bench
T="$CARGO_TARGET_DIR/release"

# rumqttd: `cargo install`ed once into a cache folder; if it cannot build, the table says so.
RUMQTTD_ROOT="$HOME/.cache/edgeplane/rumqttd"
BROKERS=(edgeplane mosquitto)
if [ ! -x "$RUMQTTD_ROOT/bin/rumqttd" ] && [ -z "${NO_RUMQTTD:-}" ]; then
  CARGO_TARGET_DIR="$HOME/.cache/edgeplane/rumqttd-target" \
    cargo install rumqttd --version 0.20.0 --root "$RUMQTTD_ROOT" -q >&2 \
    || echo "rumqttd did not build; comparing without it" >&2
fi
[ -x "$RUMQTTD_ROOT/bin/rumqttd" ] && [ -z "${NO_RUMQTTD:-}" ] && BROKERS+=(rumqttd)
if [ -n "${ONLY:-}" ] && [ "$WRITE" = "--write" ]; then
  echo "--write needs every scenario: run without ONLY" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_edgeplane() {
  local port=$1
  mkdir -p "$work/ep"
  printf 'apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: bench}\nspec:\n  ports:\n  - port: %s\n    bindAddress: 127.0.0.1\n' "$port" >"$work/ep/l.yaml"
  RUST_LOG=warn "$T/edgeplane" run --config "$work/ep" --http 127.0.0.1:0 --metrics 127.0.0.1:0 >/dev/null 2>&1 &
  echo $!
}
start_mosquitto() {
  # Lossless: no queue or in-flight limits, so no message is dropped.
  local port=$1
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n' "$port" >"$work/mq.conf"
  mosquitto -c "$work/mq.conf" >/dev/null 2>&1 &
  echo $!
}
start_rumqttd() {
  # Lossless as far as rumqttd allows: a 1 GiB commit log per filter (10 segments of 100 MiB)
  # so no slow subscriber falls off its tail, 1 MiB payloads, 1,000 in flight.
  local port=$1
  cat >"$work/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 110000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 1000
    dynamic_filters = true
EOF
  RUST_LOG=error "$RUMQTTD_ROOT/bin/rumqttd" -c "$work/rumqttd.toml" -q >/dev/null 2>&1 &
  echo $!
}

# name | bench arguments (MQTT 3.1.1 clients; closed loop unless --rate)
SCENARIOS=(
  "QoS 0 fan-in 10→1, 64 B|fan-in --clients 10 --messages 50000 --qos 0 --payload 64"
  "QoS 1 fan-in 10→1, 64 B|fan-in --clients 10 --messages 20000 --qos 1 --payload 64"
  "QoS 2 fan-in 10→1, 64 B|fan-in --clients 10 --messages 5000 --qos 2 --payload 64"
  "QoS 0 fan-out 1→100, 64 B|fan-out --clients 100 --messages 2000 --qos 0 --payload 64"
  "QoS 1 pairwise 10→10, 64 B|pairwise --clients 10 --messages 10000 --qos 1 --payload 64"
  "QoS 1 shared 10→4 consumers, 64 B|shared --clients 10 --consumers 4 --messages 10000 --qos 1 --payload 64"
  "QoS 0 10,000 distinct topics, 64 B|subscriptions --clients 10000 --consumers 10 --messages 100000 --qos 0 --payload 64"
  "QoS 1 fan-in 10→1, 4 KB|fan-in --clients 10 --messages 5000 --qos 1 --payload 4096"
  "QoS 1 fan-in 10→1, 64 KB|fan-in --clients 10 --messages 500 --qos 1 --payload 65536"
  "QoS 1 at 20,000 msg/s offered (open loop), 64 B|fan-in --clients 10 --messages 6000 --qos 1 --payload 64 --rate 20000 --window 1000"
)

results="$work/results.tsv"
for round in $(seq "$ROUNDS"); do
  for s in "${SCENARIOS[@]}"; do
    if [ -n "${ONLY:-}" ] && ! [[ "${s%%|*}" =~ $ONLY ]]; then continue; fi
    for broker in "${BROKERS[@]}"; do
      name="${s%%|*}"; args="${s#*|}"
      port=$(free_port)
      pid=$(start_"$broker" "$port")
      for _ in $(seq 50); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.1)" 2>/dev/null && break
        sleep 0.1
      done
      # shellcheck disable=SC2086
      if out=$(timeout 180 "$T/edgeplane-bench" $args --broker "127.0.0.1:$port" --broker-pid "$pid" 2>/dev/null); then
        printf '%s\t%s\t%s\n' "$name" "$broker" "$out" >>"$results"
        echo "round $round $broker $name: $out" >&2
      else
        printf '%s\t%s\t%s\n' "$name" "$broker" '{"failed":true}' >>"$results"
        echo "round $round $broker $name: FAILED" >&2
      fi
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    done
  done
done

table="$work/table.md"
python3 - "$results" "$ROUNDS" "${BROKERS[*]}" >"$table" <<'PY'
import json, statistics, sys, datetime, os
brokers = sys.argv[3].split()
rows = {}
for line in open(sys.argv[1]):
    name, broker, out = line.rstrip("\n").split("\t")
    rows.setdefault(name, {}).setdefault(broker, []).append(json.loads(out))
def med(runs, f):
    xs = [f(r) for r in runs if not r.get("failed") and f(r) is not None]
    return statistics.median(xs) if xs else None
def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)
load = os.getloadavg()[0]
print(f"Generated by `scripts/bench/compare-brokers.sh {sys.argv[2]} --write` on "
      f"{datetime.date.today()} ({sys.argv[2]} alternating rounds, medians; "
      f"load average at the end {load:.1f}). msg/s counts deliveries at the subscribers; "
      "CPU is the broker's user+system seconds per million deliveries; p99 is end-to-end "
      "latency; lost is summed over all rounds.")
print()
head = ["scenario"] + [f"{b} msg/s" for b in brokers] + ["edgeplane / mosquitto"] \
     + [f"CPU s/M {b}" for b in brokers] + [f"p99 ms {b}" for b in brokers] + ["lost " + "/".join(brokers)]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for name, b in rows.items():
    rate = {k: med(b.get(k, []), lambda r: r["deliveries_per_sec"]) for k in brokers}
    cpu = {k: med(b.get(k, []), lambda r: r.get("broker_cpu_secs_per_million")) for k in brokers}
    p99 = {k: med(b.get(k, []), lambda r: r.get("latency_ms", {}).get("p99")) for k in brokers}
    lost = "/".join(str(sum(r.get("lost", 0) for r in b.get(k, []) if not r.get("failed")))
                    + ("" if all(not r.get("failed") for r in b.get(k, [])) else " (failed)") for k in brokers)
    ratio = (f"{rate['edgeplane']/rate['mosquitto']:.2f}×" if rate.get("edgeplane") and rate.get("mosquitto") else "n/a")
    cells = [name] + [fmt(rate[k], ",.0f") for k in brokers] + [ratio] \
          + [fmt(cpu[k], ".2f") for k in brokers] + [fmt(p99[k], ".1f") for k in brokers] + [lost]
    print("| " + " | ".join(cells) + " |")
PY
cat "$table"
if [ "$WRITE" = "--write" ]; then
  python3 - docs/BENCHMARKS.md "$table" <<'PY'
import sys
doc, table = open(sys.argv[1]).read(), open(sys.argv[2]).read()
begin, end = "<!-- compare-brokers:begin -->", "<!-- compare-brokers:end -->"
i, j = doc.index(begin) + len(begin), doc.index(end)
open(sys.argv[1], "w").write(doc[:i] + "\n" + table + doc[j:])
PY
  echo "docs/BENCHMARKS.md updated" >&2
fi
