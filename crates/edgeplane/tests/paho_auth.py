"""Connect with paho-mqtt 2.x (MQTT 5) the way real clients authenticate, for the auth tests.

Usage: paho_auth.py HOST PORT TOPIC_PREFIX < cases.json

Each case: {"id", "method"?, "data"?, "username"?, "password"?, "wait"?}. The client connects
(with Authentication Method / Data when given), subscribes to TOPIC_PREFIX + id and publishes one QoS 1 message there when
accepted, then, if "wait" is set, waits up to that many seconds for the broker to disconnect
it. Prints one JSON line per case: {"id", "connack", "echo", "disconnect"} with reason codes
as numbers (null when it did not happen).
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def run(host, port, prefix, case):
    result = {"id": case["id"], "connack": None, "echo": None, "disconnect": None}
    connected, echoed, gone = threading.Event(), threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=case["id"],
                         protocol=mqtt.MQTTv5)

    def on_connect(c, _u, _f, rc, _p):
        result["connack"] = rc.value
        connected.set()
        if rc.value == 0:
            c.subscribe(prefix + case["id"], qos=1)

    def on_subscribe(c, _u, _mid, _rcs, _p):
        c.publish(prefix + case["id"], b"hello", qos=1)

    def on_message(_c, _u, msg):
        result["echo"] = msg.payload.decode()
        echoed.set()

    def on_disconnect(_c, _u, _f, rc, _p):
        if connected.is_set() and result["connack"] == 0:
            result["disconnect"] = rc.value
        gone.set()
        connected.set()

    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_message, client.on_disconnect = on_message, on_disconnect
    if "username" in case:
        client.username_pw_set(case["username"], case.get("password"))
    props = Properties(PacketTypes.CONNECT)
    if "method" in case:
        props.AuthenticationMethod = case["method"]
        props.AuthenticationData = case["data"].encode()
    client.connect(host, port, keepalive=30, clean_start=True, properties=props)
    client.loop_start()
    connected.wait(5)
    if result["connack"] == 0:
        echoed.wait(5)
        if case.get("wait"):
            gone.wait(case["wait"])
    client.disconnect()
    client.loop_stop()
    return result


def main():
    host, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    for case in json.load(sys.stdin):
        print(json.dumps(run(host, port, prefix, case)), flush=True)


if __name__ == "__main__":
    main()
