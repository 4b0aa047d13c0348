//! MQTT 5.0 rows: every packet type, every property (§2.2.2.2) in a packet that allows it,
//! the short forms of acknowledgements, DISCONNECT and AUTH, and multi-byte remaining lengths.

use super::*;

pub(super) fn connect_rows() -> Vec<Row> {
    vec![
        row(
            "CONNECT minimal",
            V5,
            cat(&[
                &[0x10, 0x0D, 0x00, 0x04],
                b"MQTT",
                &[0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00],
            ]),
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
                &[0x30],                         // property length 48
                &[0x11, 0x00, 0x00, 0x0E, 0x10], // session expiry interval 3600
                &[0x15, 0x00, 0x05],
                b"SCRAM",                              // authentication method
                &[0x16, 0x00, 0x03, 0x01, 0x02, 0x03], // authentication data
                &[0x17, 0x00],                         // request problem information 0
                &[0x19, 0x01],                         // request response information 1
                &[0x21, 0x00, 0x14],                   // receive maximum 20
                &[0x22, 0x00, 0x05],                   // topic alias maximum 5
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
                b"dev",                          // client id
                &[0x26],                         // will property length 38
                &[0x01, 0x01],                   // payload format indicator: UTF-8
                &[0x02, 0x00, 0x00, 0x00, 0x3C], // message expiry interval 60
                &[0x03, 0x00, 0x04],
                b"json", // content type
                &[0x08, 0x00, 0x04],
                b"resp",                         // response topic
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
                b"bob",                    // user name
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
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: 0,
                properties: no_props(),
            }),
        ),
        row(
            "CONNACK not authorized",
            V5,
            vec![0x20, 0x03, 0x00, 0x87, 0x00],
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: 0x87,
                properties: no_props(),
            }),
        ),
        row(
            "CONNACK every CONNACK property",
            V5,
            cat(&[
                &[0x20, 0x4D, 0x01, 0x00],       // session present, success
                &[0x4A],                         // property length 74
                &[0x11, 0x00, 0x00, 0x00, 0x78], // session expiry interval 120
                &[0x12, 0x00, 0x04],
                b"auto",             // assigned client identifier
                &[0x13, 0x00, 0x1E], // server keep alive 30
                &[0x15, 0x00, 0x05],
                b"SCRAM",                        // authentication method
                &[0x16, 0x00, 0x02, 0x04, 0x05], // authentication data
                &[0x1A, 0x00, 0x03],
                b"r/x", // response information
                &[0x1C, 0x00, 0x04],
                b"host", // server reference
                &[0x1F, 0x00, 0x02],
                b"ok",               // reason string
                &[0x21, 0x00, 0x0A], // receive maximum 10
                &[0x22, 0x00, 0x08], // topic alias maximum 8
                &[0x24, 0x01],       // maximum QoS 1
                &[0x25, 0x00],       // retain available 0
                &[0x26, 0x00, 0x01],
                b"x",
                &[0x00, 0x01],
                b"y",
                &[0x27, 0x00, 0x01, 0x00, 0x00], // maximum packet size 65536
                &[0x28, 0x00],                   // wildcard subscription available 0
                &[0x29, 0x01],                   // subscription identifiers available 1
                &[0x2A, 0x00],                   // shared subscription available 0
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

pub(super) fn publish_rows() -> Vec<Row> {
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
                &[0x00, 0x07],                   // packet id 7
                &[0x30],                         // property length 48
                &[0x01, 0x01],                   // payload format indicator
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
                properties: Properties {
                    topic_alias: Some(1),
                    ..no_props()
                },
                ..publish(QoS::AtMostOnce, "", 0, b"p")
            }),
        ),
        row(
            "PUBLISH QoS 2 retain, 200-byte payload (remaining length 206)",
            V5,
            cat(&[
                &[0x35, 0xCE, 0x01, 0x00, 0x01],
                b"t",
                &[0x12, 0x34, 0x00],
                &[0x5A; 200],
            ]),
            Packet::Publish(Publish {
                retain: true,
                ..publish(QoS::ExactlyOnce, "t", 0x1234, &[0x5A; 200])
            }),
        ),
        row(
            "PUBLISH 20,000-byte payload (3-byte remaining length 20,004)",
            V5,
            cat(&[
                &[0x30, 0xA4, 0x9C, 0x01, 0x00, 0x01],
                b"t",
                &[0x00],
                &[0x07; 20_000],
            ]),
            Packet::Publish(publish(QoS::AtMostOnce, "t", 0, &[0x07; 20_000])),
        ),
        row(
            "PUBACK short form",
            V5,
            vec![0x40, 0x02, 0x00, 0x01],
            Packet::PubAck(ack(1, 0)),
        ),
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
        row(
            "PUBREC short form",
            V5,
            vec![0x50, 0x02, 0x00, 0x02],
            Packet::PubRec(ack(2, 0)),
        ),
        row(
            "PUBREC packet identifier in use",
            V5,
            vec![0x50, 0x03, 0x00, 0x02, 0x91],
            Packet::PubRec(ack(2, 0x91)),
        ),
        row(
            "PUBREL short form",
            V5,
            vec![0x62, 0x02, 0x00, 0x03],
            Packet::PubRel(ack(3, 0)),
        ),
        row(
            "PUBREL packet identifier not found",
            V5,
            vec![0x62, 0x03, 0x00, 0x03, 0x92],
            Packet::PubRel(ack(3, 0x92)),
        ),
        row(
            "PUBCOMP short form",
            V5,
            vec![0x70, 0x02, 0x00, 0x04],
            Packet::PubComp(ack(4, 0)),
        ),
        row(
            "PUBCOMP with reason string",
            V5,
            cat(&[
                &[0x70, 0x08, 0x00, 0x04, 0x92, 0x04, 0x1F, 0x00, 0x01],
                b"?",
            ]),
            Packet::PubComp(Ack {
                properties: Properties {
                    reason_string: Some(s("?")),
                    ..no_props()
                },
                ..ack(4, 0x92)
            }),
        ),
    ]
}

pub(super) fn other_rows() -> Vec<Row> {
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
                    (
                        s("$share/g/t"),
                        SubOptions {
                            retain_handling: 1,
                            ..SubOptions::new(QoS::ExactlyOnce)
                        },
                    ),
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
            cat(&[
                &[0x90, 0x0B, 0x00, 0x0A, 0x05, 0x1F, 0x00, 0x02],
                b"ok",
                &[0x01, 0xA2, 0x02],
            ]),
            Packet::SubAck(SubAck {
                packet_id: 10,
                reasons: vec![
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
                    ReasonCode::GRANTED_QOS_2,
                ],
                properties: Properties {
                    reason_string: Some(s("ok")),
                    ..no_props()
                },
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
                properties: Properties {
                    user_properties: user(&[("k", "v")]),
                    ..no_props()
                },
            }),
        ),
        row(
            "UNSUBACK with reason string",
            V5,
            cat(&[
                &[0xB0, 0x0A, 0x00, 0x0B, 0x05, 0x1F, 0x00, 0x02],
                b"ok",
                &[0x00, 0x11],
            ]),
            Packet::UnsubAck(UnsubAck {
                packet_id: 11,
                reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
                properties: Properties {
                    reason_string: Some(s("ok")),
                    ..no_props()
                },
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
            Packet::Auth(Auth {
                reason: ReasonCode::SUCCESS,
                properties: no_props(),
            }),
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
