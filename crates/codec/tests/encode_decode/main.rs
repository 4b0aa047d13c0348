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
    decode, encode, encode_ack, encode_publish_view, encoded_len, publish_len, publish_view_len,
    Ack, AckType, Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, Publish,
    PublishView, QoS, ReasonCode, SubAck, SubOptions, Subscribe, UnsubAck, Unsubscribe, Will,
};

use ProtocolVersion::{V311, V5};

mod v311;
mod v5;

const MAX: usize = 1 << 20;

/// One well-formed packet: its name, the connection's version, its bytes and its model.
struct Row {
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    packet: Packet,
}

fn row(name: &'static str, version: ProtocolVersion, bytes: Vec<u8>, packet: Packet) -> Row {
    Row {
        name,
        version,
        bytes,
        packet,
    }
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

fn all_rows() -> Vec<Row> {
    let mut rows = v311::rows();
    rows.extend(v5::connect_rows());
    rows.extend(v5::publish_rows());
    rows.extend(v5::other_rows());
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
        assert_eq!(
            got,
            Ok(Some(r.packet.clone())),
            "{:?} {}",
            r.version,
            r.name
        );
        assert!(
            buf.is_empty(),
            "{:?} {}: {} bytes left",
            r.version,
            r.name,
            buf.len()
        );
    }
}

#[test]
fn every_row_encodes_to_its_bytes() {
    for r in all_rows() {
        assert_eq!(
            encode_one(&r.packet, r.version),
            r.bytes,
            "{:?} {}",
            r.version,
            r.name
        );
        assert_eq!(
            encoded_len(&r.packet, r.version),
            r.bytes.len(),
            "{:?} {}",
            r.version,
            r.name
        );
        if let Packet::Publish(p) = &r.packet {
            assert_eq!(
                publish_len(p, r.version),
                r.bytes.len(),
                "{:?} {}",
                r.version,
                r.name
            );
        }
    }
}

#[test]
fn every_packet_type_of_each_version_has_a_row() {
    let rows = all_rows();
    let names = |v: ProtocolVersion| -> Vec<&'static str> {
        let mut n: Vec<_> = rows
            .iter()
            .filter(|r| r.version == v)
            .map(|r| r.packet.name())
            .collect();
        n.sort_unstable();
        n.dedup();
        n
    };
    let mut v311 = vec![
        "CONNECT",
        "CONNACK",
        "PUBLISH",
        "PUBACK",
        "PUBREC",
        "PUBREL",
        "PUBCOMP",
        "SUBSCRIBE",
        "SUBACK",
        "UNSUBSCRIBE",
        "UNSUBACK",
        "PINGREQ",
        "PINGRESP",
        "DISCONNECT",
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
    type Check = (&'static str, fn(&Properties) -> bool);
    let checks: [Check; 27] = [
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
            assert_eq!(
                &buf[..],
                &r.bytes[..k],
                "{:?} {} cut at {k}: buffer changed",
                r.version,
                r.name
            );
        }
        buf.extend_from_slice(&r.bytes[r.bytes.len() - 1..]);
        assert_eq!(
            decode(&mut buf, r.version, MAX),
            Ok(Some(r.packet)),
            "{}",
            r.name
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn two_packets_back_to_back_in_one_buffer() {
    let publish = cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]);
    let mut buf = BytesMut::from(&cat(&[&publish, &[0xC0, 0x00]])[..]);
    assert_eq!(
        decode(&mut buf, V311, MAX),
        Ok(Some(Packet::Publish(publish_qos0())))
    );
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
            assert_eq!(
                decode(&mut buf, v, MAX),
                Ok(Some(r.packet.clone())),
                "{v:?} {}",
                r.name
            );
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
        (
            "PUBACK explicit success",
            V5,
            vec![0x40, 0x03, 0x00, 0x01, 0x00],
            vec![0x40, 0x02, 0x00, 0x01],
        ),
        (
            "PUBREL reason with empty properties",
            V5,
            vec![0x62, 0x04, 0x00, 0x03, 0x92, 0x00],
            vec![0x62, 0x03, 0x00, 0x03, 0x92],
        ),
        (
            "DISCONNECT explicit success",
            V5,
            vec![0xE0, 0x02, 0x00, 0x00],
            vec![0xE0, 0x00],
        ),
        (
            "DISCONNECT reason with empty properties",
            V5,
            vec![0xE0, 0x02, 0x8E, 0x00],
            vec![0xE0, 0x01, 0x8E],
        ),
        (
            "AUTH explicit success",
            V5,
            vec![0xF0, 0x02, 0x00, 0x00],
            vec![0xF0, 0x00],
        ),
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
        assert_eq!(
            decode_one(&canonical, v),
            packet,
            "{name}: both forms mean the same packet"
        );
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
    let Packet::Publish(p) = out_of_order else {
        panic!("not a PUBLISH")
    };
    assert_eq!(
        p.properties.user_properties,
        user(&[("z", "1"), ("a", "2")]),
        "user property order kept"
    );
}

/// Encoding for MQTT 3.1.1 drops what 3.1.1 cannot carry: properties, ack reason codes, the
/// DISCONNECT reason, subscription options beyond QoS; SUBACK failures become 0x80 (§3.9.3).
#[test]
fn encoding_for_v311_drops_mqtt5_fields() {
    let props = Properties {
        user_properties: user(&[("k", "v")]),
        ..no_props()
    };
    let cases: Vec<(&str, Packet, Vec<u8>)> = vec![
        (
            "PUBLISH with properties",
            Packet::Publish(Publish {
                properties: props.clone(),
                ..publish_qos0()
            }),
            cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]),
        ),
        (
            "PUBACK with reason and properties",
            Packet::PubAck(Ack {
                properties: props.clone(),
                ..ack(9, 0x10)
            }),
            vec![0x40, 0x02, 0x00, 0x09],
        ),
        (
            "DISCONNECT with reason",
            Packet::Disconnect(Disconnect {
                reason: ReasonCode::SERVER_SHUTTING_DOWN,
                properties: props.clone(),
            }),
            vec![0xE0, 0x00],
        ),
        (
            "SUBACK with MQTT 5 failure codes",
            Packet::SubAck(SubAck {
                packet_id: 5,
                reasons: vec![
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::NOT_AUTHORIZED,
                    ReasonCode::TOPIC_FILTER_INVALID,
                ],
                properties: props.clone(),
            }),
            vec![0x90, 0x05, 0x00, 0x05, 0x01, 0x80, 0x80],
        ),
        (
            "UNSUBACK with reasons",
            Packet::UnsubAck(UnsubAck {
                packet_id: 5,
                reasons: vec![ReasonCode::SUCCESS],
                properties: props.clone(),
            }),
            vec![0xB0, 0x02, 0x00, 0x05],
        ),
        (
            "SUBSCRIBE with MQTT 5 options",
            Packet::Subscribe(Subscribe {
                packet_id: 5,
                filters: vec![(
                    s("a"),
                    SubOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: 2,
                    },
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
    let v5 = v5::connect_rows().remove(0);
    assert_eq!(decode_one(&v5.bytes, V311), v5.packet);
    let v311 = v311::rows().remove(0);
    assert_eq!(decode_one(&v311.bytes, V5), v311.packet);
}

/// Every PUBLISH row encoded from borrowed parts ([`PublishView`], what the broker writes
/// per delivery) decodes back to the same packet, with the length it announced; the
/// delivery's own expiry, subscription identifiers and alias replace whatever the
/// forwarded properties hold for them.
#[test]
fn every_publish_row_encodes_the_same_from_a_view() {
    let mut seen = 0;
    for r in all_rows() {
        let Packet::Publish(p) = &r.packet else {
            continue;
        };
        seen += 1;
        // Stale values in the forwarded properties must not reach the wire.
        let mut forwarded = p.properties.clone();
        forwarded.message_expiry_interval = Some(999);
        forwarded.subscription_identifiers = vec![77, 78];
        forwarded.topic_alias = Some(9);
        let view = PublishView {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: &p.topic,
            packet_id: p.packet_id,
            properties: &forwarded,
            message_expiry_interval: p.properties.message_expiry_interval,
            subscription_identifiers: &p.properties.subscription_identifiers,
            topic_alias: p.properties.topic_alias,
            payload: &p.payload,
        };
        let mut out = BytesMut::new();
        encode_publish_view(&view, r.version, &mut out);
        assert_eq!(out.len(), publish_view_len(&view, r.version), "{}", r.name);
        assert_eq!(out.len(), r.bytes.len(), "{}", r.name);
        assert_eq!(decode_one(&out, r.version), r.packet, "{}", r.name);
    }
    assert!(seen >= 4, "only {seen} PUBLISH rows");
}

/// The compact acknowledgement encoder writes the same bytes as encoding the packet, for
/// every acknowledgement type, both versions, success and an error reason.
#[test]
fn compact_acks_match_the_packet_encoding() {
    type Make = fn(Ack) -> Packet;
    let kinds: [(AckType, Make); 4] = [
        (AckType::PubAck, Packet::PubAck),
        (AckType::PubRec, Packet::PubRec),
        (AckType::PubRel, Packet::PubRel),
        (AckType::PubComp, Packet::PubComp),
    ];
    for (kind, make) in kinds {
        for v in [V311, V5] {
            // An error reason each type allows (§3.4.2.1, §3.6.2.1).
            let error = match kind {
                AckType::PubAck | AckType::PubRec => ReasonCode::NOT_AUTHORIZED,
                AckType::PubRel | AckType::PubComp => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            };
            for reason in [ReasonCode::SUCCESS, error] {
                if v == V311 && reason != ReasonCode::SUCCESS {
                    continue;
                }
                let mut fast = BytesMut::new();
                encode_ack(kind, 0x1234, reason, v, &mut fast);
                let packet = make(Ack::new(0x1234, reason));
                assert_eq!(
                    &fast[..],
                    &encode_one(&packet, v)[..],
                    "{kind:?} {v:?} {reason:?}"
                );
                assert_eq!(decode_one(&fast, v), packet);
            }
        }
    }
}

/// A small payload is the decoded packet's own copy, not a slice of the read buffer (a
/// queued message must not hold the connection's buffer); a payload above 16 KiB is still
/// shared, as it is most of its buffer anyway. Both decode to the bytes sent.
#[test]
fn small_payloads_are_copied_out_of_the_read_buffer() {
    for (size, shared) in [(64usize, false), (100 * 1024, true)] {
        let payload = vec![0xA5u8; size];
        let packet = Packet::Publish(publish(QoS::AtMostOnce, "a/b", 0, &payload));
        let mut buf = BytesMut::from(&encode_one(&packet, V311)[..]);
        let range = buf.as_ptr_range();
        let Ok(Some(Packet::Publish(p))) = decode(&mut buf, V311, 1 << 20) else {
            panic!("PUBLISH of {size} bytes did not decode");
        };
        assert_eq!(&p.payload[..], &payload[..]);
        assert_eq!(range.contains(&p.payload.as_ptr()), shared, "{size} bytes");
    }
}

/// A packet exactly `max_packet_size` long is accepted (the limit includes the fixed header).
#[test]
fn packet_of_exactly_the_maximum_size_is_accepted() {
    let bytes = cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(
        decode(&mut buf, V311, bytes.len()),
        Ok(Some(Packet::Publish(publish_qos0())))
    );
}

/// Writes each row (up to libFuzzer's default 4 KiB input) to `fuzz/corpus/decode/` as seed
/// corpus for the `decode` fuzz target. Not a check; `fuzz/seed.sh` runs it.
#[test]
#[ignore = "writes the fuzz seed corpus; run by fuzz/seed.sh"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    std::fs::create_dir_all(&dir).expect("create fuzz/corpus/decode");
    for r in all_rows().into_iter().filter(|r| r.bytes.len() <= 4096) {
        let name: String = r
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("ok-{:?}-{name}", r.version));
        std::fs::write(&path, &r.bytes).expect("write seed");
    }
}
