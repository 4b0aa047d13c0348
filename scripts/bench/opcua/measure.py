#!/usr/bin/env python3
"""Subscribe to an asset's topic for SECONDS and report what reached MQTT.

For every data point value in every message, two latencies from the value's SourceTimestamp
(server clock = this machine's clock): to the message's CloudEvents `time` (set by the
connector just before it publishes into the broker: source-to-broker), and to its arrival at
this subscriber (an upper bound that includes the broker-to-subscriber hop and this
script's own lag). Prints one JSON line: messages, values, values per second, p50/p99/max.
Usage: measure.py HOST PORT TOPIC SECONDS WARMUP_SECONDS
"""

import json
import sys
import time
from datetime import datetime

import paho.mqtt.client as mqtt

host, port, topic, seconds, warmup = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
latencies = []
to_broker = []
messages = 0
start = None


def parse(ts):
    # 2026-12-02T03:33:00.551456400Z: keep microseconds.
    head, _, frac = ts.rstrip("Z").partition(".")
    micros = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{micros}+00:00").timestamp()


def on_message(client, userdata, msg):
    global messages, start
    now = time.time()
    if start is None:
        start = now
    if now - start < warmup:
        return
    messages += 1
    props = dict(getattr(msg.properties, "UserProperty", []) or [])
    sent = parse(props["time"]) if "time" in props else None
    # The values of one message mostly share a SourceTimestamp (one server tick): parse
    # each distinct one once, so this script's CPU (it shares the machine) stays small.
    stamps = {}
    for point in json.loads(msg.payload).values():
        ts = point.get("SourceTimestamp")
        if ts:
            stamps[ts] = stamps.get(ts, 0) + 1
    for ts, count in stamps.items():
        source = parse(ts)
        latencies.extend([(now - source) * 1000.0] * count)
        if sent is not None:
            to_broker.extend([(sent - source) * 1000.0] * count)


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.on_message = on_message
client.connect(host, port)
client.subscribe(topic, qos=0)
client.loop_start()
deadline = time.time() + warmup + seconds + 30
while time.time() < deadline and (start is None or time.time() - start < warmup + seconds):
    time.sleep(0.1)
client.loop_stop()
latencies.sort()
to_broker.sort()
n = len(latencies)


def pick(values, q):
    return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None


print(json.dumps({
    "messages": messages,
    "values": n,
    "values_per_second": round(n / seconds),
    "source_to_broker_ms_p50": pick(to_broker, 0.50),
    "source_to_broker_ms_p99": pick(to_broker, 0.99),
    "source_to_broker_ms_max": pick(to_broker, 1.0),
    "source_to_subscriber_ms_p50": pick(latencies, 0.50),
    "source_to_subscriber_ms_p99": pick(latencies, 0.99),
    "source_to_subscriber_ms_max": pick(latencies, 1.0),
}))
