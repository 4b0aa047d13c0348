//! MQTT 3.1.1 rows: every packet type of §3, without properties or reason codes.

use super::*;

pub(super) fn rows() -> Vec<Row> {
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
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: 0,
                properties: no_props(),
            }),
        ),
        row(
            "CONNACK not authorized",
            V311,
            vec![0x20, 0x02, 0x00, 0x05],
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: 5,
                properties: no_props(),
            }),
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
        row(
            "PUBACK",
            V311,
            vec![0x40, 0x02, 0x00, 0x01],
            Packet::PubAck(ack(1, 0)),
        ),
        row(
            "PUBREC",
            V311,
            vec![0x50, 0x02, 0x00, 0x02],
            Packet::PubRec(ack(2, 0)),
        ),
        row(
            "PUBREL",
            V311,
            vec![0x62, 0x02, 0x00, 0x03],
            Packet::PubRel(ack(3, 0)),
        ),
        row(
            "PUBCOMP",
            V311,
            vec![0x70, 0x02, 0x00, 0x04],
            Packet::PubComp(ack(4, 0)),
        ),
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
                reasons: vec![
                    ReasonCode(1),
                    ReasonCode(0),
                    ReasonCode(0x80),
                    ReasonCode(2),
                ],
                properties: no_props(),
            }),
        ),
        row(
            "UNSUBSCRIBE two filters",
            V311,
            cat(&[
                &[0xA2, 0x0A, 0x00, 0x02, 0x00, 0x03],
                b"a/+",
                &[0x00, 0x01],
                b"#",
            ]),
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
            Packet::UnsubAck(UnsubAck {
                packet_id: 2,
                reasons: vec![],
                properties: no_props(),
            }),
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
