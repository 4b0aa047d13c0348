"""Interop checks with Eclipse paho-mqtt 2.x against a broker on 127.0.0.1:PORT.

Usage: paho_client.py PORT [tcp|websockets]
Each check asserts; on success prints one line per check and 'all paho checks passed'.
"""
import queue
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

PORT = int(sys.argv[1])
TRANSPORT = sys.argv[2] if len(sys.argv) > 2 else "tcp"
TIMEOUT = 5


def client(version, client_id=None, clean=True, will=None, session_expiry=None):
    cid = client_id or f"paho-{uuid.uuid4().hex[:8]}"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=version, transport=TRANSPORT)
    if TRANSPORT == "websockets":
        c.ws_set_options(path="/mqtt")
    c.inbox = queue.Queue()
    c.on_message = lambda cl, ud, msg: cl.inbox.put(msg)
    connected = queue.Queue()
    c.on_connect = lambda cl, ud, flags, rc, props: connected.put((flags, rc, props))
    if will:
        c.will_set(*will)
    kwargs = {}
    if version == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        if session_expiry is not None:
            props.SessionExpiryInterval = session_expiry
        kwargs["properties"] = props
        kwargs["clean_start"] = clean
    else:
        c._clean_session = clean
    c.connect("127.0.0.1", PORT, keepalive=30, **kwargs)
    c.loop_start()
    flags, rc, props = connected.get(timeout=TIMEOUT)
    assert not rc.is_failure, f"connect refused: {rc}"
    c.session_present = flags.session_present
    return c


def subscribe(c, topic, qos, props=None):
    done = queue.Queue()
    c.on_subscribe = lambda cl, ud, mid, rcs, p: done.put(rcs)
    c.subscribe(topic, qos=qos, properties=props) if props else c.subscribe(topic, qos=qos)
    rcs = done.get(timeout=TIMEOUT)
    assert not rcs[0].is_failure, f"subscribe refused: {rcs}"
    return rcs


def receive(c):
    return c.inbox.get(timeout=TIMEOUT)


def stop(c):
    c.disconnect()
    c.loop_stop()


def check(name):
    print(f"ok: {name}", flush=True)


def qos_both_versions():
    for sv in (mqtt.MQTTv5, mqtt.MQTTv311):
        for pv in (mqtt.MQTTv5, mqtt.MQTTv311):
            sub = client(sv)
            subscribe(sub, "interop/qos/#", 2)
            pub = client(pv)
            for qos in (0, 1, 2):
                pub.publish("interop/qos/x", f"m{qos}", qos=qos).wait_for_publish(TIMEOUT)
            got = [receive(sub) for _ in range(3)]
            assert [m.payload for m in got] == [b"m0", b"m1", b"m2"], got
            assert [m.qos for m in got] == [0, 1, 2]
            stop(sub)
            stop(pub)
    check("QoS 0/1/2 between MQTT 5 and 3.1.1 clients in every combination")


def properties_and_subscription_ids():
    sub = client(mqtt.MQTTv5)
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 42
    subscribe(sub, "interop/props", 1, sp)
    pub = client(mqtt.MQTTv5)
    pp = Properties(PacketTypes.PUBLISH)
    pp.UserProperty = [("a", "1"), ("b", "2"), ("a", "3")]
    pp.ResponseTopic = "interop/reply"
    pp.CorrelationData = b"\x01\x02"
    pp.ContentType = "application/json"
    pp.PayloadFormatIndicator = 1
    pp.MessageExpiryInterval = 60
    pub.publish("interop/props", b'{"t":1}', qos=1, properties=pp).wait_for_publish(TIMEOUT)
    m = receive(sub)
    p = m.properties
    assert p.UserProperty == [("a", "1"), ("b", "2"), ("a", "3")], p.UserProperty
    assert p.ResponseTopic == "interop/reply"
    assert p.CorrelationData == b"\x01\x02"
    assert p.ContentType == "application/json"
    assert p.PayloadFormatIndicator == 1
    assert 0 < p.MessageExpiryInterval <= 60
    assert p.SubscriptionIdentifier == [42], p.SubscriptionIdentifier
    stop(sub)
    stop(pub)
    check("user properties, response topic, correlation data, content type, expiry, subscription id")


def retained_and_no_local():
    pub = client(mqtt.MQTTv5)
    pub.publish("interop/retained", "r", qos=1, retain=True).wait_for_publish(TIMEOUT)
    sub = client(mqtt.MQTTv311)
    subscribe(sub, "interop/retained", 1)
    m = receive(sub)
    assert m.payload == b"r" and m.retain
    pub.publish("interop/retained", "", qos=1, retain=True).wait_for_publish(TIMEOUT)
    stop(sub)
    me = client(mqtt.MQTTv5)
    done = queue.Queue()
    me.on_subscribe = lambda cl, ud, mid, rcs, p: done.put(rcs)
    me.subscribe("interop/nolocal", options=SubscribeOptions(qos=1, noLocal=True))
    assert not done.get(timeout=TIMEOUT)[0].is_failure
    me.publish("interop/nolocal", "self", qos=1).wait_for_publish(TIMEOUT)
    pub.publish("interop/nolocal", "other", qos=1).wait_for_publish(TIMEOUT)
    assert receive(me).payload == b"other"
    stop(me)
    stop(pub)
    check("retained message delivered and cleared; no local")


def will_and_session():
    watcher = client(mqtt.MQTTv5)
    subscribe(watcher, "interop/will", 1)
    dying = client(mqtt.MQTTv311, will=("interop/will", "gone", 1, False))
    dying._sock_close()  # vanish without DISCONNECT
    dying.loop_stop()
    assert receive(watcher).payload == b"gone"
    check("will published when a client vanishes")

    cid = f"paho-persist-{uuid.uuid4().hex[:6]}"
    s = client(mqtt.MQTTv5, client_id=cid, clean=True, session_expiry=60)
    subscribe(s, "interop/offline", 1)
    stop(s)
    watcher.publish("interop/offline", "while-away", qos=1).wait_for_publish(TIMEOUT)
    s = client(mqtt.MQTTv5, client_id=cid, clean=False, session_expiry=60)
    assert s.session_present
    assert receive(s).payload == b"while-away"
    stop(s)
    stop(watcher)
    check("persistent session keeps subscriptions and queues QoS 1 while offline")


if __name__ == "__main__":
    qos_both_versions()
    properties_and_subscription_ids()
    retained_and_no_local()
    will_and_session()
    print("all paho checks passed", flush=True)
