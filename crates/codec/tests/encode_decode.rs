//! Well-formed packets of MQTT 3.1.1 and 5.0, written byte by byte from the OASIS
//! specifications, checked both ways: `decode(bytes) == packet`, `encode(packet) == bytes` and
//! `encoded_len(packet) == bytes.len()`. Every packet type of each version has a row, every
//! MQTT 5 property appears at least once in a packet that allows it, and the stream behaviour
//! (partial buffers, several packets in one buffer) is checked on the same rows.
//!
//! Byte comments name the field; lengths were counted by hand against the spec's layouts
//! (§2 fixed header, §3.x variable header and payload).

use bytes::{Bytes, BytesMut};
use edgeplane_codec::{
    decode, encode, encoded_len, publish_len, Ack, Auth, ConnAck, Connect, Disconnect, Packet,
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubAck, SubOptions, Subscribe,
    UnsubAck, Unsubscribe, Will,
};

use ProtocolVersion::{V311, V5};

const MAX: usize = 1 << 20;

/// One well-formed packet: its name, the connection's version, its bytes and its model.
struct Row {
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    packet: Packet,
}

fn row(name: &'static str, version: ProtocolVersion, bytes: Vec<u8>, packet: Packet) -> Row {
    Row { name, version, bytes, packet }
}

/// Concatenate byte pieces so that strings can be written as `b"..."` between header bytes.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn user(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (s(k), s(v))).collect()
}

fn no_props() -> Properties {
    Properties::default()
}

fn publish(qos: QoS, topic: &str, packet_id: u16, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: s(topic),
        packet_id,
        properties: no_props(),
        payload: Bytes::copy_from_slice(payload),
    }
}

fn ack(packet_id: u16, reason: u8) -> Ack {
    Ack::new(packet_id, ReasonCode(reason))
}

fn v311_rows() -> Vec<Row> {
    vec![
        row(
            "CONNECT minimal",
            V311,
            cat(&[
                &[0x10, 0x0E, 0x00, 0x04],
                b"MQTT",
                &[0x04, 0x02, 0x00, 0x3C], // level 4, clean session, keep alive 60
                &[0x00, 0x02],
                b"c1",
            ]),
            Packet::Connect(Box::new(Connect {
                protocol: V311,
                clean_start: true,
                keep_alive: 60,
                client_id: s("c1"),
                will: None,
                username: None,
                password: None,
                properties: no_props(),
            })),
        ),
        row(
            "CONNECT will, user name, password, empty client id",
            V311,
            cat(&[
                &[0x10, 0x20, 0x00, 0x04],
                b"MQTT",
                // user name, password, will retain, will QoS 1, will flag; no clean session
                &[0x04, 0xEC, 0x01, 0x2C],
                &[0x00, 0x00], // client id ""
                &[0x00, 0x03],
                b"w/t",
                &[0x00, 0x03],
                b"bye",
                &[0x00, 0x04],
                b"user",
                &[0x00, 0x02, 0x01, 0x02],
            ]),
            Packet::Connect(Box::new(Connect {
                protocol: V311,
                clean_start: false,
                keep_alive: 300,
                client_id: s(""),
                will: Some(Will {
                    topic: s("w/t"),
                    payload: Bytes::from_static(b"bye"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: no_props(),
                }),
                username: Some(s("user")),
                password: Some(Bytes::from_static(&[1, 2])),
                properties: no_props(),
            })),
        ),
        row(
            "CONNACK session present",
            V311,
            vec![0x20, 0x02, 0x01, 0x00],
            Packet::ConnAck(ConnAck { session_present: true, code: 0, properties: no_props() }),
        ),
        row(
            "CONNACK not authorized",
            V311,
            vec![0x20, 0x02, 0x00, 0x05],
            Packet::ConnAck(ConnAck { session_present: false, code: 5, properties: no_props() }),
        ),
        row(
            "PUBLISH QoS 0",
            V311,
            cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]),
            Packet::Publish(publish(QoS::AtMostOnce, "a/b", 0, b"hi")),
        ),
        row(
            "PUBLISH QoS 1 dup retain, empty payload",
            V311,
            cat(&[&[0x3B, 0x05, 0x00, 0x01], b"t", &[0x00, 0x0A]]),
            Packet::Publish(Publish {
                dup: true,
                retain: true,
                ..publish(QoS::AtLeastOnce, "t", 10, b"")
            }),
        ),
        row(
            "PUBLISH QoS 2 packet id 65535",
            V311,
            cat(&[&[0x34, 0x06, 0x00, 0x01], b"t", &[0xFF, 0xFF], b"x"]),
            Packet::Publish(publish(QoS::ExactlyOnce, "t", 0xFFFF, b"x")),
        ),
        row(
            "PUBLISH 200-byte payload (2-byte remaining length 203)",
            V311,
            cat(&[&[0x30, 0xCB, 0x01, 0x00, 0x01], b"t", &[0xAB; 200]]),
            Packet::Publish(publish(QoS::AtMostOnce, "t", 0, &[0xAB; 200])),
        ),
        row("PUBACK", V311, vec![0x40, 0x02, 0x00, 0x01], Packet::PubAck(ack(1, 0))),
        row("PUBREC", V311, vec![0x50, 0x02, 0x00, 0x02], Packet::PubRec(ack(2, 0))),
        row("PUBREL", V311, vec![0x62, 0x02, 0x00, 0x03], Packet::PubRel(ack(3, 0))),
        row("PUBCOMP", V311, vec![0x70, 0x02, 0x00, 0x04], Packet::PubComp(ack(4, 0))),
        row(
            "SUBSCRIBE three filters",
            V311,
            cat(&[
                &[0x82, 0x10, 0x00, 0x01],
                &[0x00, 0x03],
                b"a/+",
                &[0x01],
                &[0x00, 0x01],
                b"#",
                &[0x00],
                &[0x00, 0x01],
                b"b",
                &[0x02],
            ]),
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![
                    (s("a/+"), SubOptions::new(QoS::AtLeastOnce)),
                    (s("#"), SubOptions::new(QoS::AtMostOnce)),
                    (s("b"), SubOptions::new(QoS::ExactlyOnce)),
                ],
                properties: no_props(),
            }),
        ),
        row(
            "SUBACK with failure",
            V311,
            vec![0x90, 0x06, 0x00, 0x01, 0x01, 0x00, 0x80, 0x02],
            Packet::SubAck(SubAck {
                packet_id: 1,
                reasons: vec![ReasonCode(1), ReasonCode(0), ReasonCode(0x80), ReasonCode(2)],
                properties: no_props(),
            }),
        ),
        row(
            "UNSUBSCRIBE two filters",
            V311,
            cat(&[&[0xA2, 0x0A, 0x00, 0x02, 0x00, 0x03], b"a/+", &[0x00, 0x01], b"#"]),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 2,
                filters: vec![s("a/+"), s("#")],
                properties: no_props(),
            }),
        ),
        row(
            "UNSUBACK",
            V311,
            vec![0xB0, 0x02, 0x00, 0x02],
            Packet::UnsubAck(UnsubAck { packet_id: 2, reasons: vec![], properties: no_props() }),
        ),
        row("PINGREQ", V311, vec![0xC0, 0x00], Packet::PingReq),
        row("PINGRESP", V311, vec![0xD0, 0x00], Packet::PingResp),
        row(
            "DISCONNECT",
            V311,
            vec![0xE0, 0x00],
            Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)),
        ),
    ]
}

fn v5_connect_rows() -> Vec<Row> {
    vec![
        row(
            "CONNECT minimal",
            V5,
            cat(&[&[0x10, 0x0D, 0x00, 0x04], b"MQTT", &[0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00]]),
            Packet::Connect(Box::new(Connect {
                protocol: V5,
                clean_start: true,
                keep_alive: 0,
                client_id: s(""),
                will: None,
                username: None,
                password: None,
                properties: no_props(),
            })),
        ),
        row(
            "CONNECT password without user name (allowed in 5.0)",
            V5,
            cat(&[
                &[0x10, 0x10, 0x00, 0x04],
                b"MQTT",
                &[0x05, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
                b"p",
            ]),
            Packet::Connect(Box::new(Connect {
                protocol: V5,
                clean_start: true,
                keep_alive: 0,
                client_id: s(""),
                will: None,
                username: None,
                password: Some(Bytes::from_static(b"p")),
                properties: no_props(),
            })),
        ),
        row(
            "CONNECT every CONNECT and will property",
            V5,
            cat(&[
                &[0x10, 0x7B, 0x00, 0x04],
                b"MQTT",
                // user name, password, will QoS 2, will flag, clean start; keep alive 10
                &[0x05, 0xD6, 0x00, 0x0A],
                &[0x30], // property length 48
                &[0x11, 0x00, 0x00, 0x0E, 0x10], // session expiry interval 3600
                &[0x15, 0x00, 0x05],
                b"SCRAM", // authentication method
                &[0x16, 0x00, 0x03, 0x01, 0x02, 0x03], // authentication data
                &[0x17, 0x00], // request problem information 0
                &[0x19, 0x01], // request response information 1
                &[0x21, 0x00, 0x14], // receive maximum 20
                &[0x22, 0x00, 0x05], // topic alias maximum 5
                &[0x26, 0x00, 0x01],
                b"k",
                &[0x00, 0x01],
                b"v", // user property k=v
                &[0x26, 0x00, 0x01],
                b"a",
                &[0x00, 0x01],
                b"b", // user property a=b, after k=v: order is kept, not sorted
                &[0x27, 0x00, 0x00, 0x10, 0x00], // maximum packet size 4096
                &[0x00, 0x03],
                b"dev", // client id
                &[0x26], // will property length 38
                &[0x01, 0x01], // payload format indicator: UTF-8
                &[0x02, 0x00, 0x00, 0x00, 0x3C], // message expiry interval 60
                &[0x03, 0x00, 0x04],
                b"json", // content type
                &[0x08, 0x00, 0x04],
                b"resp", // response topic
                &[0x09, 0x00, 0x02, 0xAB, 0xCD], // correlation data
                &[0x18, 0x00, 0x00, 0x00, 0x05], // will delay interval 5
                &[0x26, 0x00, 0x01],
                b"w",
                &[0x00, 0x01],
                b"1",
                &[0x00, 0x04],
                b"gone", // will topic
                &[0x00, 0x03],
                b"off", // will payload
                &[0x00, 0x03],
                b"bob", // user name
                &[0x00, 0x02, 0xFF, 0x00], // password
            ]),
            Packet::Connect(Box::new(Connect {
                protocol: V5,
                clean_start: true,
                keep_alive: 10,
                client_id: s("dev"),
                will: Some(Will {
                    topic: s("gone"),
                    payload: Bytes::from_static(b"off"),
                    qos: QoS::ExactlyOnce,
                    retain: false,
                    properties: Properties {
                        payload_format_indicator: Some(1),
                        message_expiry_interval: Some(60),
                        content_type: Some(s("json")),
                        response_topic: Some(s("resp")),
                        correlation_data: Some(Bytes::from_static(&[0xAB, 0xCD])),
                        will_delay_interval: Some(5),
                        user_properties: user(&[("w", "1")]),
                        ..no_props()
                    },
                }),
                username: Some(s("bob")),
                password: Some(Bytes::from_static(&[0xFF, 0x00])),
                properties: Properties {
                    session_expiry_interval: Some(3600),
                    authentication_method: Some(s("SCRAM")),
                    authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
                    request_problem_information: Some(0),
                    request_response_information: Some(1),
                    receive_maximum: Some(20),
                    topic_alias_maximum: Some(5),
                    user_properties: user(&[("k", "v"), ("a", "b")]),
                    maximum_packet_size: Some(4096),
                    ..no_props()
                },
            })),
        ),
        row(
            "CONNACK minimal",
            V5,
            vec![0x20, 0x03, 0x00, 0x00, 0x00],
            Packet::ConnAck(ConnAck { session_present: false, code: 0, properties: no_props() }),
        ),
        row(
            "CONNACK not authorized",
            V5,
            vec![0x20, 0x03, 0x00, 0x87, 0x00],
            Packet::ConnAck(ConnAck { session_present: false, code: 0x87, properties: no_props() }),
        ),
        row(
            "CONNACK every CONNACK property",
            V5,
            cat(&[
                &[0x20, 0x4D, 0x01, 0x00], // session present, success
                &[0x4A],                   // property length 74
                &[0x11, 0x00, 0x00, 0x00, 0x78], // session expiry interval 120
                &[0x12, 0x00, 0x04],
                b"auto", // assigned client identifier
                &[0x13, 0x00, 0x1E], // server keep alive 30
                &[0x15, 0x00, 0x05],
                b"SCRAM", // authentication method
                &[0x16, 0x00, 0x02, 0x04, 0x05], // authentication data
                &[0x1A, 0x00, 0x03],
                b"r/x", // response information
                &[0x1C, 0x00, 0x04],
                b"host", // server reference
                &[0x1F, 0x00, 0x02],
                b"ok", // reason string
                &[0x21, 0x00, 0x0A], // receive maximum 10
                &[0x22, 0x00, 0x08], // topic alias maximum 8
                &[0x24, 0x01],       // maximum QoS 1
                &[0x25, 0x00],       // retain available 0
                &[0x26, 0x00, 0x01],
                b"x",
                &[0x00, 0x01],
                b"y",
                &[0x27, 0x00, 0x01, 0x00, 0x00], // maximum packet size 65536
                &[0x28, 0x00], // wildcard subscription available 0
                &[0x29, 0x01], // subscription identifiers available 1
                &[0x2A, 0x00], // shared subscription available 0
            ]),
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: 0,
                properties: Properties {
                    session_expiry_interval: Some(120),
                    assigned_client_identifier: Some(s("auto")),
                    server_keep_alive: Some(30),
                    authentication_method: Some(s("SCRAM")),
                    authentication_data: Some(Bytes::from_static(&[4, 5])),
                    response_information: Some(s("r/x")),
                    server_reference: Some(s("host")),
                    reason_string: Some(s("ok")),
                    receive_maximum: Some(10),
                    topic_alias_maximum: Some(8),
                    maximum_qos: Some(1),
                    retain_available: Some(0),
                    user_properties: user(&[("x", "y")]),
                    maximum_packet_size: Some(65536),
                    wildcard_subscription_available: Some(0),
                    subscription_identifier_available: Some(1),
                    shared_subscription_available: Some(0),
                    ..no_props()
                },
            }),
        ),
    ]
}

fn v5_publish_rows() -> Vec<Row> {
    vec![
        row(
            "PUBLISH QoS 0 no properties",
            V5,
            cat(&[&[0x30, 0x08, 0x00, 0x03], b"a/b", &[0x00], b"hi"]),
            Packet::Publish(publish(QoS::AtMostOnce, "a/b", 0, b"hi")),
        ),
        row(
            "PUBLISH QoS 1 every PUBLISH property",
            V5,
            cat(&[
                &[0x32, 0x3A, 0x00, 0x03],
                b"a/b",
                &[0x00, 0x07], // packet id 7
                &[0x30],       // property length 48
                &[0x01, 0x01], // payload format indicator
                &[0x02, 0x00, 0x00, 0x0E, 0x10], // message expiry interval 3600
                &[0x03, 0x00, 0x04],
                b"json",
                &[0x08, 0x00, 0x04],
                b"resp",
                &[0x09, 0x00, 0x02, 0x01, 0x02],
                &[0x0B, 0x05],       // subscription identifier 5
                &[0x0B, 0x80, 0x01], // subscription identifier 128 (two-byte varint)
                &[0x23, 0x00, 0x03], // topic alias 3
                &[0x26, 0x00, 0x01],
                b"a",
                &[0x00, 0x01],
                b"1",
                &[0x26, 0x00, 0x01],
                b"a",
                &[0x00, 0x01],
                b"2", // the same name twice is allowed
                b"{}",
            ]),
            Packet::Publish(Publish {
                properties: Properties {
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(3600),
                    content_type: Some(s("json")),
                    response_topic: Some(s("resp")),
                    correlation_data: Some(Bytes::from_static(&[1, 2])),
                    subscription_identifiers: vec![5, 128],
                    topic_alias: Some(3),
                    user_properties: user(&[("a", "1"), ("a", "2")]),
                    ..no_props()
                },
                ..publish(QoS::AtLeastOnce, "a/b", 7, b"{}")
            }),
        ),
        row(
            "PUBLISH empty topic with topic alias",
            V5,
            cat(&[&[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01], b"p"]),
            Packet::Publish(Publish {
                properties: Properties { topic_alias: Some(1), ..no_props() },
                ..publish(QoS::AtMostOnce, "", 0, b"p")
            }),
        ),
        row(
            "PUBLISH QoS 2 retain, 200-byte payload (remaining length 206)",
            V5,
            cat(&[&[0x35, 0xCE, 0x01, 0x00, 0x01], b"t", &[0x12, 0x34, 0x00], &[0x5A; 200]]),
            Packet::Publish(Publish {
                retain: true,
                ..publish(QoS::ExactlyOnce, "t", 0x1234, &[0x5A; 200])
            }),
        ),
        row(
            "PUBLISH 20,000-byte payload (3-byte remaining length 20,004)",
            V5,
            cat(&[&[0x30, 0xA4, 0x9C, 0x01, 0x00, 0x01], b"t", &[0x00], &[0x07; 20_000]]),
            Packet::Publish(publish(QoS::AtMostOnce, "t", 0, &[0x07; 20_000])),
        ),
        row("PUBACK short form", V5, vec![0x40, 0x02, 0x00, 0x01], Packet::PubAck(ack(1, 0))),
        row(
            "PUBACK reason only",
            V5,
            vec![0x40, 0x03, 0x00, 0x01, 0x10],
            Packet::PubAck(ack(1, 0x10)),
        ),
        row(
            "PUBACK reason and properties",
            V5,
            cat(&[
                &[0x40, 0x12, 0x00, 0x01, 0x80, 0x0E],
                &[0x1F, 0x00, 0x04],
                b"nope",
                &[0x26, 0x00, 0x01],
                b"k",
                &[0x00, 0x01],
                b"v",
            ]),
            Packet::PubAck(Ack {
                packet_id: 1,
                reason: ReasonCode::UNSPECIFIED_ERROR,
                properties: Properties {
                    reason_string: Some(s("nope")),
                    user_properties: user(&[("k", "v")]),
                    ..no_props()
                },
            }),
        ),
        row("PUBREC short form", V5, vec![0x50, 0x02, 0x00, 0x02], Packet::PubRec(ack(2, 0))),
        row(
            "PUBREC packet identifier in use",
            V5,
            vec![0x50, 0x03, 0x00, 0x02, 0x91],
            Packet::PubRec(ack(2, 0x91)),
        ),
        row("PUBREL short form", V5, vec![0x62, 0x02, 0x00, 0x03], Packet::PubRel(ack(3, 0))),
        row(
            "PUBREL packet identifier not found",
            V5,
            vec![0x62, 0x03, 0x00, 0x03, 0x92],
            Packet::PubRel(ack(3, 0x92)),
        ),
        row("PUBCOMP short form", V5, vec![0x70, 0x02, 0x00, 0x04], Packet::PubComp(ack(4, 0))),
        row(
            "PUBCOMP with reason string",
            V5,
            cat(&[&[0x70, 0x08, 0x00, 0x04, 0x92, 0x04, 0x1F, 0x00, 0x01], b"?"]),
            Packet::PubComp(Ack {
                properties: Properties { reason_string: Some(s("?")), ..no_props() },
                ..ack(4, 0x92)
            }),
        ),
    ]
}

fn v5_other_rows() -> Vec<Row> {
    vec![
        row(
            "SUBSCRIBE options, shared filter, subscription identifier",
            V5,
            cat(&[
                &[0x82, 0x23, 0x00, 0x0A],
                &[0x09],       // property length 9
                &[0x0B, 0x2A], // subscription identifier 42
                &[0x26, 0x00, 0x01],
                b"k",
                &[0x00, 0x01],
                b"v",
                &[0x00, 0x03],
                b"a/+",
                &[0x2D], // QoS 1, no local, retain as published, retain handling 2
                &[0x00, 0x0A],
                b"$share/g/t",
                &[0x12], // QoS 2, retain handling 1
                &[0x00, 0x01],
                b"#",
                &[0x00],
            ]),
            Packet::Subscribe(Subscribe {
                packet_id: 10,
                filters: vec![
                    (
                        s("a/+"),
                        SubOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: true,
                            retain_as_published: true,
                            retain_handling: 2,
                        },
                    ),
                    (s("$share/g/t"), SubOptions { retain_handling: 1, ..SubOptions::new(QoS::ExactlyOnce) }),
                    (s("#"), SubOptions::new(QoS::AtMostOnce)),
                ],
                properties: Properties {
                    subscription_identifiers: vec![42],
                    user_properties: user(&[("k", "v")]),
                    ..no_props()
                },
            }),
        ),
        row(
            "SUBACK with reason string",
            V5,
            cat(&[&[0x90, 0x0B, 0x00, 0x0A, 0x05, 0x1F, 0x00, 0x02], b"ok", &[0x01, 0xA2, 0x02]]),
            Packet::SubAck(SubAck {
                packet_id: 10,
                reasons: vec![
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
                    ReasonCode::GRANTED_QOS_2,
                ],
                properties: Properties { reason_string: Some(s("ok")), ..no_props() },
            }),
        ),
        row(
            "SUBACK minimal",
            V5,
            vec![0x90, 0x04, 0x00, 0x0A, 0x00, 0x00],
            Packet::SubAck(SubAck {
                packet_id: 10,
                reasons: vec![ReasonCode::SUCCESS],
                properties: no_props(),
            }),
        ),
        row(
            "UNSUBSCRIBE with user property",
            V5,
            cat(&[
                &[0xA2, 0x1B, 0x00, 0x0B, 0x07, 0x26, 0x00, 0x01],
                b"k",
                &[0x00, 0x01],
                b"v",
                &[0x00, 0x03],
                b"a/+",
                &[0x00, 0x0A],
                b"$share/g/t",
            ]),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 11,
                filters: vec![s("a/+"), s("$share/g/t")],
                properties: Properties { user_properties: user(&[("k", "v")]), ..no_props() },
            }),
        ),
        row(
            "UNSUBACK with reason string",
            V5,
            cat(&[&[0xB0, 0x0A, 0x00, 0x0B, 0x05, 0x1F, 0x00, 0x02], b"ok", &[0x00, 0x11]]),
            Packet::UnsubAck(UnsubAck {
                packet_id: 11,
                reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
                properties: Properties { reason_string: Some(s("ok")), ..no_props() },
            }),
        ),
        row("PINGREQ", V5, vec![0xC0, 0x00], Packet::PingReq),
        row("PINGRESP", V5, vec![0xD0, 0x00], Packet::PingResp),
        row(
            "DISCONNECT remaining length 0",
            V5,
            vec![0xE0, 0x00],
            Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)),
        ),
        row(
            "DISCONNECT reason only",
            V5,
            vec![0xE0, 0x01, 0x04],
            Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL)),
        ),
        row(
            "DISCONNECT every DISCONNECT property",
            V5,
            cat(&[
                &[0xE0, 0x1B, 0x9C, 0x19],
                &[0x11, 0x00, 0x00, 0x00, 0x00], // session expiry interval 0
                &[0x1C, 0x00, 0x04],
                b"host",
                &[0x1F, 0x00, 0x03],
                b"bye",
                &[0x26, 0x00, 0x01],
                b"k",
                &[0x00, 0x01],
                b"v",
            ]),
            Packet::Disconnect(Disconnect {
                reason: ReasonCode::USE_ANOTHER_SERVER,
                properties: Properties {
                    session_expiry_interval: Some(0),
                    server_reference: Some(s("host")),
                    reason_string: Some(s("bye")),
                    user_properties: user(&[("k", "v")]),
                    ..no_props()
                },
            }),
        ),
        row(
            "AUTH remaining length 0",
            V5,
            vec![0xF0, 0x00],
            Packet::Auth(Auth { reason: ReasonCode::SUCCESS, properties: no_props() }),
        ),
        row(
            "AUTH every AUTH property",
            V5,
            cat(&[
                &[0xF0, 0x1C, 0x18, 0x1A], // continue authentication, property length 26
                &[0x15, 0x00, 0x05],
                b"SCRAM",
                &[0x16, 0x00, 0x03, 0x01, 0x02, 0x03],
                &[0x1F, 0x00, 0x02],
                b"go",
                &[0x26, 0x00, 0x01],
                b"k",
                &[0x00, 0x01],
                b"v",
            ]),
            Packet::Auth(Auth {
                reason: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: Properties {
                    authentication_method: Some(s("SCRAM")),
                    authentication_data: Some(Bytes::from_static(&[1, 2, 3])),
                    reason_string: Some(s("go")),
                    user_properties: user(&[("k", "v")]),
                    ..no_props()
                },
            }),
        ),
    ]
}

fn all_rows() -> Vec<Row> {
    let mut rows = v311_rows();
    rows.extend(v5_connect_rows());
    rows.extend(v5_publish_rows());
    rows.extend(v5_other_rows());
    rows
}

fn decode_one(bytes: &[u8], v: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, v, MAX)
        .unwrap_or_else(|e| panic!("decode failed: {e}"))
        .unwrap_or_else(|| panic!("decode wanted more bytes"));
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    packet
}

fn encode_one(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(p, v, &mut out);
    out.to_vec()
}

#[test]
fn every_row_decodes_to_its_packet() {
    for r in all_rows() {
        let mut buf = BytesMut::from(&r.bytes[..]);
        let got = decode(&mut buf, r.version, MAX);
        assert_eq!(got, Ok(Some(r.packet.clone())), "{:?} {}", r.version, r.name);
        assert!(buf.is_empty(), "{:?} {}: {} bytes left", r.version, r.name, buf.len());
    }
}

#[test]
fn every_row_encodes_to_its_bytes() {
    for r in all_rows() {
        assert_eq!(encode_one(&r.packet, r.version), r.bytes, "{:?} {}", r.version, r.name);
        assert_eq!(encoded_len(&r.packet, r.version), r.bytes.len(), "{:?} {}", r.version, r.name);
        if let Packet::Publish(p) = &r.packet {
            assert_eq!(publish_len(p, r.version), r.bytes.len(), "{:?} {}", r.version, r.name);
        }
    }
}

#[test]
fn every_packet_type_of_each_version_has_a_row() {
    let rows = all_rows();
    let names = |v: ProtocolVersion| -> Vec<&'static str> {
        let mut n: Vec<_> = rows.iter().filter(|r| r.version == v).map(|r| r.packet.name()).collect();
        n.sort_unstable();
        n.dedup();
        n
    };
    let mut v311 = vec![
        "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE",
        "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT",
    ];
    v311.sort_unstable();
    let mut v5 = v311.clone();
    v5.push("AUTH");
    v5.sort_unstable();
    assert_eq!(names(V311), v311);
    assert_eq!(names(V5), v5);
}

/// Each MQTT 5 property identifier (§2.2.2.2, Table 2-4) appears in at least one row.
#[test]
fn every_mqtt5_property_is_covered() {
    let mut seen: Vec<Properties> = Vec::new();
    for r in all_rows().into_iter().filter(|r| r.version == V5) {
        match r.packet {
            Packet::Connect(c) => {
                seen.push(c.properties);
                seen.extend(c.will.map(|w| w.properties));
            }
            Packet::ConnAck(c) => seen.push(c.properties),
            Packet::Publish(p) => seen.push(p.properties),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                seen.push(a.properties)
            }
            Packet::Subscribe(x) => seen.push(x.properties),
            Packet::SubAck(x) => seen.push(x.properties),
            Packet::Unsubscribe(x) => seen.push(x.properties),
            Packet::UnsubAck(x) => seen.push(x.properties),
            Packet::Disconnect(x) => seen.push(x.properties),
            Packet::Auth(x) => seen.push(x.properties),
            Packet::PingReq | Packet::PingResp => {}
        }
    }
    let any = |f: fn(&Properties) -> bool| seen.iter().any(f);
    let checks: [(&str, fn(&Properties) -> bool); 27] = [
        ("0x01", |p| p.payload_format_indicator.is_some()),
        ("0x02", |p| p.message_expiry_interval.is_some()),
        ("0x03", |p| p.content_type.is_some()),
        ("0x08", |p| p.response_topic.is_some()),
        ("0x09", |p| p.correlation_data.is_some()),
        ("0x0B", |p| !p.subscription_identifiers.is_empty()),
        ("0x11", |p| p.session_expiry_interval.is_some()),
        ("0x12", |p| p.assigned_client_identifier.is_some()),
        ("0x13", |p| p.server_keep_alive.is_some()),
        ("0x15", |p| p.authentication_method.is_some()),
        ("0x16", |p| p.authentication_data.is_some()),
        ("0x17", |p| p.request_problem_information.is_some()),
        ("0x18", |p| p.will_delay_interval.is_some()),
        ("0x19", |p| p.request_response_information.is_some()),
        ("0x1A", |p| p.response_information.is_some()),
        ("0x1C", |p| p.server_reference.is_some()),
        ("0x1F", |p| p.reason_string.is_some()),
        ("0x21", |p| p.receive_maximum.is_some()),
        ("0x22", |p| p.topic_alias_maximum.is_some()),
        ("0x23", |p| p.topic_alias.is_some()),
        ("0x24", |p| p.maximum_qos.is_some()),
        ("0x25", |p| p.retain_available.is_some()),
        ("0x26", |p| !p.user_properties.is_empty()),
        ("0x27", |p| p.maximum_packet_size.is_some()),
        ("0x28", |p| p.wildcard_subscription_available.is_some()),
        ("0x29", |p| p.subscription_identifier_available.is_some()),
        ("0x2A", |p| p.shared_subscription_available.is_some()),
    ];
    for (id, check) in checks {
        assert!(any(check), "no row carries property {id}");
    }
}

/// A buffer cut anywhere before the packet's last byte yields `Ok(None)` and is left intact;
/// the rest arriving completes the packet.
#[test]
fn partial_buffer_waits_at_every_split_point() {
    for r in all_rows() {
        let mut buf = BytesMut::new();
        for k in 0..r.bytes.len() {
            buf.clear();
            buf.extend_from_slice(&r.bytes[..k]);
            let got = decode(&mut buf, r.version, MAX);
            assert_eq!(got, Ok(None), "{:?} {} cut at {k}", r.version, r.name);
            assert_eq!(&buf[..], &r.bytes[..k], "{:?} {} cut at {k}: buffer changed", r.version, r.name);
        }
        buf.extend_from_slice(&r.bytes[r.bytes.len() - 1..]);
        assert_eq!(decode(&mut buf, r.version, MAX), Ok(Some(r.packet)), "{}", r.name);
        assert!(buf.is_empty());
    }
}

#[test]
fn two_packets_back_to_back_in_one_buffer() {
    let publish = cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]);
    let mut buf = BytesMut::from(&cat(&[&publish, &[0xC0, 0x00]])[..]);
    assert_eq!(decode(&mut buf, V311, MAX), Ok(Some(Packet::Publish(publish_qos0()))));
    assert_eq!(&buf[..], &[0xC0, 0x00]);
    assert_eq!(decode(&mut buf, V311, MAX), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, V311, MAX), Ok(None));
    assert!(buf.is_empty());
}

fn publish_qos0() -> Publish {
    publish(QoS::AtMostOnce, "a/b", 0, b"hi")
}

/// All rows of one version concatenated decode in order, each taking exactly its bytes.
#[test]
fn a_stream_of_every_row_decodes_in_order() {
    for v in [V311, V5] {
        let rows: Vec<Row> = all_rows().into_iter().filter(|r| r.version == v).collect();
        let mut buf = BytesMut::new();
        for r in &rows {
            buf.extend_from_slice(&r.bytes);
        }
        // A trailing partial packet must not disturb the ones before it.
        buf.extend_from_slice(&[0x30, 0x05, 0x00]);
        for r in &rows {
            assert_eq!(decode(&mut buf, v, MAX), Ok(Some(r.packet.clone())), "{v:?} {}", r.name);
        }
        assert_eq!(decode(&mut buf, v, MAX), Ok(None));
        assert_eq!(&buf[..], &[0x30, 0x05, 0x00]);
    }
}

/// Inputs that decode but are not the canonical encoding: decoding gives the packet and
/// re-encoding gives the shorter canonical bytes (§3.4.2.1, §3.14.2.1, §3.15.2.1 allow the
/// reason code and property length to be omitted; property order is insignificant except
/// between user properties, §2.2.2.2).
#[test]
fn non_canonical_inputs_decode_and_reencode_canonically() {
    let cases: Vec<(&str, ProtocolVersion, Vec<u8>, Vec<u8>)> = vec![
        (
            "PUBACK success with empty properties",
            V5,
            vec![0x40, 0x04, 0x00, 0x01, 0x00, 0x00],
            vec![0x40, 0x02, 0x00, 0x01],
        ),
        ("PUBACK explicit success", V5, vec![0x40, 0x03, 0x00, 0x01, 0x00], vec![0x40, 0x02, 0x00, 0x01]),
        (
            "PUBREL reason with empty properties",
            V5,
            vec![0x62, 0x04, 0x00, 0x03, 0x92, 0x00],
            vec![0x62, 0x03, 0x00, 0x03, 0x92],
        ),
        ("DISCONNECT explicit success", V5, vec![0xE0, 0x02, 0x00, 0x00], vec![0xE0, 0x00]),
        ("DISCONNECT reason with empty properties", V5, vec![0xE0, 0x02, 0x8E, 0x00], vec![0xE0, 0x01, 0x8E]),
        ("AUTH explicit success", V5, vec![0xF0, 0x02, 0x00, 0x00], vec![0xF0, 0x00]),
        (
            "PUBLISH properties out of identifier order",
            V5,
            cat(&[
                &[0x30, 0x17, 0x00, 0x01],
                b"t",
                &[0x13],
                &[0x26, 0x00, 0x01],
                b"z",
                &[0x00, 0x01],
                b"1",
                &[0x23, 0x00, 0x09],
                &[0x26, 0x00, 0x01],
                b"a",
                &[0x00, 0x01],
                b"2",
                &[0x01, 0x00],
            ]),
            cat(&[
                &[0x30, 0x17, 0x00, 0x01],
                b"t",
                &[0x13],
                &[0x01, 0x00],
                &[0x23, 0x00, 0x09],
                &[0x26, 0x00, 0x01],
                b"z",
                &[0x00, 0x01],
                b"1",
                &[0x26, 0x00, 0x01],
                b"a",
                &[0x00, 0x01],
                b"2",
            ]),
        ),
    ];
    for (name, v, input, canonical) in cases {
        let packet = decode_one(&input, v);
        assert_eq!(decode_one(&canonical, v), packet, "{name}: both forms mean the same packet");
        assert_eq!(encode_one(&packet, v), canonical, "{name}");
        assert_eq!(encoded_len(&packet, v), canonical.len(), "{name}");
    }
    let out_of_order = decode_one(
        &cat(&[
            &[0x30, 0x17, 0x00, 0x01],
            b"t",
            &[0x13, 0x26, 0x00, 0x01],
            b"z",
            &[0x00, 0x01],
            b"1",
            &[0x23, 0x00, 0x09, 0x26, 0x00, 0x01],
            b"a",
            &[0x00, 0x01],
            b"2",
            &[0x01, 0x00],
        ]),
        V5,
    );
    let Packet::Publish(p) = out_of_order else { panic!("not a PUBLISH") };
    assert_eq!(p.properties.user_properties, user(&[("z", "1"), ("a", "2")]), "user property order kept");
}

/// Encoding for MQTT 3.1.1 drops what 3.1.1 cannot carry: properties, ack reason codes, the
/// DISCONNECT reason, subscription options beyond QoS; SUBACK failures become 0x80 (§3.9.3).
#[test]
fn encoding_for_v311_drops_mqtt5_fields() {
    let props = Properties { user_properties: user(&[("k", "v")]), ..no_props() };
    let cases: Vec<(&str, Packet, Vec<u8>)> = vec![
        (
            "PUBLISH with properties",
            Packet::Publish(Publish { properties: props.clone(), ..publish_qos0() }),
            cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]),
        ),
        (
            "PUBACK with reason and properties",
            Packet::PubAck(Ack { properties: props.clone(), ..ack(9, 0x10) }),
            vec![0x40, 0x02, 0x00, 0x09],
        ),
        (
            "DISCONNECT with reason",
            Packet::Disconnect(Disconnect { reason: ReasonCode::SERVER_SHUTTING_DOWN, properties: props.clone() }),
            vec![0xE0, 0x00],
        ),
        (
            "SUBACK with MQTT 5 failure codes",
            Packet::SubAck(SubAck {
                packet_id: 5,
                reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED, ReasonCode::TOPIC_FILTER_INVALID],
                properties: props.clone(),
            }),
            vec![0x90, 0x05, 0x00, 0x05, 0x01, 0x80, 0x80],
        ),
        (
            "UNSUBACK with reasons",
            Packet::UnsubAck(UnsubAck { packet_id: 5, reasons: vec![ReasonCode::SUCCESS], properties: props.clone() }),
            vec![0xB0, 0x02, 0x00, 0x05],
        ),
        (
            "SUBSCRIBE with MQTT 5 options",
            Packet::Subscribe(Subscribe {
                packet_id: 5,
                filters: vec![(
                    s("a"),
                    SubOptions { qos: QoS::AtLeastOnce, no_local: true, retain_as_published: true, retain_handling: 2 },
                )],
                properties: props,
            }),
            cat(&[&[0x82, 0x06, 0x00, 0x05, 0x00, 0x01], b"a", &[0x01]]),
        ),
    ];
    for (name, packet, bytes) in cases {
        assert_eq!(encode_one(&packet, V311), bytes, "{name}");
        assert_eq!(encoded_len(&packet, V311), bytes.len(), "{name}");
    }
}

/// The protocol level inside CONNECT decides its layout, whatever the connection assumed.
#[test]
fn connect_carries_its_own_version() {
    let v5 = v5_connect_rows().remove(0);
    assert_eq!(decode_one(&v5.bytes, V311), v5.packet);
    let v311 = v311_rows().remove(0);
    assert_eq!(decode_one(&v311.bytes, V5), v311.packet);
}

/// A packet exactly `max_packet_size` long is accepted (the limit includes the fixed header).
#[test]
fn packet_of_exactly_the_maximum_size_is_accepted() {
    let bytes = cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, V311, bytes.len()), Ok(Some(Packet::Publish(publish_qos0()))));
}
