//! Packets that break MQTT 3.1.1 or 5.0, one violation a row, each with the exact
//! [`ProtocolError`] the decoder must report and the reason code the broker then sends
//! (0x81 Malformed Packet, 0x82 Protocol Error, or a more specific code the spec names).
//!
//! Rows are grouped by spec area: fixed header (§2.1), CONNECT (§3.1), CONNACK (§3.2),
//! PUBLISH (§3.3), acknowledgements (§3.4–3.7), SUBSCRIBE/SUBACK (§3.8–3.9),
//! UNSUBSCRIBE/UNSUBACK (§3.10–3.11), PING (§3.12–3.13), DISCONNECT (§3.14), AUTH (§3.15).

use bytes::BytesMut;
use edgeplane_codec::{decode, Class, ProtocolError as E, ProtocolVersion, ReasonCode};

use ProtocolVersion::{V311, V5};

const MAX: usize = 1 << 20;

struct Row {
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    max_packet_size: usize,
    error: E,
    reason: u8,
}

fn row(name: &'static str, version: ProtocolVersion, bytes: Vec<u8>, error: E, reason: u8) -> Row {
    Row {
        name,
        version,
        bytes,
        max_packet_size: MAX,
        error,
        reason,
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// MQTT 3.1.1 CONNECT with client id "c1" and keep alive 60, given protocol name, level and
/// connect flags (remaining length adjusted to the name's length).
fn connect_v311(name: &[u8], level: u8, flags: u8) -> Vec<u8> {
    let body_len = 2 + name.len() + 1 + 1 + 2 + 4;
    cat(&[
        &[0x10, body_len as u8, 0x00, name.len() as u8],
        name,
        &[level, flags, 0x00, 0x3C, 0x00, 0x02],
        b"c1",
    ])
}

/// MQTT 5 CONNECT, clean start, keep alive 0, empty client id, with the given property block.
fn connect_v5(props: &[u8]) -> Vec<u8> {
    let body_len = 10 + 1 + props.len() + 2;
    cat(&[
        &[0x10, body_len as u8, 0x00, 0x04],
        b"MQTT",
        &[0x05, 0x02, 0x00, 0x00, props.len() as u8],
        props,
        &[0x00, 0x00],
    ])
}

// One row a line reads as a table; rustfmt would spread each over several.
#[rustfmt::skip]
fn fixed_header_rows() -> Vec<Row> {
    vec![
        row("remaining length of 5 bytes", V311, vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], E::MalformedVariableInteger, 0x81),
        row("remaining length not in shortest form", V5, vec![0xC0, 0x80, 0x00], E::MalformedVariableInteger, 0x81),
        row("packet type 0", V311, vec![0x00, 0x00], E::ReservedPacketType, 0x81),
        row("packet type 0", V5, vec![0x00, 0x00], E::ReservedPacketType, 0x81),
        row("AUTH in 3.1.1", V311, vec![0xF0, 0x00], E::AuthInV311, 0x81),
        Row {
            max_packet_size: 8,
            ..row(
                "packet one byte over the maximum size",
                V311,
                cat(&[&[0x30, 0x07, 0x00, 0x03], b"a/b", b"hi"]),
                E::PacketTooLarge { size: 9, max: 8 },
                0x95,
            )
        },
        Row {
            max_packet_size: 1024,
            ..row(
                "oversized packet refused from its header alone",
                V5,
                vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F],
                E::PacketTooLarge { size: 1 + 4 + 268_435_455, max: 1024 },
                0x95,
            )
        },
    ]
}

#[rustfmt::skip]
fn connect_rows() -> Vec<Row> {
    vec![
        row("CONNECT fixed header flags", V311, { let mut b = connect_v311(b"MQTT", 4, 0x02); b[0] = 0x11; b }, E::ReservedFlags("CONNECT"), 0x81),
        row("protocol name MQTX", V311, connect_v311(b"MQTX", 4, 0x02), E::InvalidProtocolName, 0x82),
        row("protocol level 3", V311, connect_v311(b"MQTT", 3, 0x02), E::UnsupportedProtocolVersion(3), 0x84),
        row("protocol level 6", V5, connect_v311(b"MQTT", 6, 0x02), E::UnsupportedProtocolVersion(6), 0x84),
        row("MQTT 3.1 (MQIsdp, level 3)", V311, connect_v311(b"MQIsdp", 3, 0x02), E::UnsupportedProtocolVersion(3), 0x84),
        row("CONNECT reserved flag", V311, connect_v311(b"MQTT", 4, 0x03), E::ConnectReservedFlag, 0x81),
        row("CONNECT reserved flag", V5, { let mut b = connect_v5(&[]); b[9] = 0x03; b }, E::ConnectReservedFlag, 0x81),
        row("will QoS 3", V311, connect_v311(b"MQTT", 4, 0x1E), E::InvalidWillQos, 0x81),
        row("will retain without will", V311, connect_v311(b"MQTT", 4, 0x22), E::WillFlagsWithoutWill, 0x81),
        row("will QoS 1 without will", V5, { let mut b = connect_v5(&[]); b[9] = 0x0A; b }, E::WillFlagsWithoutWill, 0x81),
        row("password without user name in 3.1.1", V311, connect_v311(b"MQTT", 4, 0x42), E::PasswordWithoutUsername, 0x81),
        row("user name flag without user name", V311, connect_v311(b"MQTT", 4, 0x82), E::Truncated("user name"), 0x81),
        row(
            "client id overlong UTF-8 (C0 80)",
            V311,
            cat(&[&[0x10, 0x0E, 0x00, 0x04], b"MQTT", &[0x04, 0x02, 0x00, 0x3C, 0x00, 0x02, 0xC0, 0x80]]),
            E::InvalidUtf8,
            0x81,
        ),
        row(
            "client id lone surrogate U+D800 (ED A0 80)",
            V5,
            cat(&[&[0x10, 0x10, 0x00, 0x04], b"MQTT", &[0x05, 0x02, 0x00, 0x00, 0x00, 0x00, 0x03, 0xED, 0xA0, 0x80]]),
            E::InvalidUtf8,
            0x81,
        ),
        row(
            "client id containing U+0000",
            V311,
            cat(&[&[0x10, 0x0D, 0x00, 0x04], b"MQTT", &[0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, 0x00]]),
            E::NullCharacter,
            0x81,
        ),
        row(
            "client id shorter than its length",
            V311,
            cat(&[&[0x10, 0x0E, 0x00, 0x04], b"MQTT", &[0x04, 0x02, 0x00, 0x3C, 0x00, 0x05], b"c1"]),
            E::Truncated("client identifier"),
            0x81,
        ),
        row(
            "CONNECT with a trailing byte",
            V311,
            cat(&[&[0x10, 0x0F, 0x00, 0x04], b"MQTT", &[0x04, 0x02, 0x00, 0x3C, 0x00, 0x02], b"c1", &[0xFF]]),
            E::TrailingBytes("CONNECT", 1),
            0x81,
        ),
        row(
            "will topic with wildcard",
            V311,
            cat(&[&[0x10, 0x15, 0x00, 0x04], b"MQTT", &[0x04, 0x06, 0x00, 0x3C, 0x00, 0x02], b"c1", &[0x00, 0x03], b"a/#", &[0x00, 0x00]]),
            E::WildcardInTopicName,
            0x90,
        ),
        row(
            "empty will topic",
            V311,
            cat(&[&[0x10, 0x12, 0x00, 0x04], b"MQTT", &[0x04, 0x06, 0x00, 0x3C, 0x00, 0x02], b"c1", &[0x00, 0x00, 0x00, 0x00]]),
            E::EmptyTopic,
            0x82,
        ),
        row("authentication data without method", V5, connect_v5(&[0x16, 0x00, 0x01, 0xAA]), E::AuthenticationDataWithoutMethod, 0x82),
        row(
            "receive maximum 0",
            V5,
            connect_v5(&[0x21, 0x00, 0x00]),
            E::InvalidPropertyValue("Receive Maximum", "§3.1.2.11.3"),
            0x82,
        ),
        row(
            "maximum packet size 0",
            V5,
            connect_v5(&[0x27, 0x00, 0x00, 0x00, 0x00]),
            E::InvalidPropertyValue("Maximum Packet Size", "§3.1.2.11.4"),
            0x82,
        ),
        row(
            "request problem information 2",
            V5,
            connect_v5(&[0x17, 0x02]),
            E::InvalidPropertyValue("Request Problem Information", "§3.1.2.11.7"),
            0x82,
        ),
        row(
            "duplicate session expiry interval",
            V5,
            connect_v5(&[0x11, 0x00, 0x00, 0x00, 0x01, 0x11, 0x00, 0x00, 0x00, 0x02]),
            E::DuplicateProperty("Session Expiry Interval"),
            0x82,
        ),
        row(
            "will delay interval in CONNECT properties",
            V5,
            connect_v5(&[0x18, 0x00, 0x00, 0x00, 0x01]),
            E::PropertyNotAllowed("Will Delay Interval", "CONNECT"),
            0x81,
        ),
        row("unknown property 0x05", V5, connect_v5(&[0x05, 0x00]), E::UnknownProperty(0x05), 0x81),
        row(
            "string property running past its property block",
            V5,
            connect_v5(&[0x15, 0x00, 0x05, b'a', b'b']),
            E::Truncated("Authentication Method"),
            0x81,
        ),
        row(
            "property length past the end of the packet",
            V5,
            cat(&[&[0x10, 0x0D, 0x00, 0x04], b"MQTT", &[0x05, 0x02, 0x00, 0x00, 0x0A, 0x00, 0x00]]),
            E::Truncated("properties"),
            0x81,
        ),
        row(
            "topic alias in will properties",
            V5,
            cat(&[
                &[0x10, 0x16, 0x00, 0x04],
                b"MQTT",
                &[0x05, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00],
                &[0x03, 0x23, 0x00, 0x01],
                &[0x00, 0x01],
                b"t",
                &[0x00, 0x00],
            ]),
            E::PropertyNotAllowed("Topic Alias", "will properties"),
            0x81,
        ),
    ]
}

#[rustfmt::skip]
fn connack_rows() -> Vec<Row> {
    vec![
        row("CONNACK with a trailing byte", V311, vec![0x20, 0x03, 0x00, 0x00, 0x00], E::TrailingBytes("CONNACK", 1), 0x81),
        row("CONNACK return code 6", V311, vec![0x20, 0x02, 0x00, 0x06], E::InvalidReasonCode(0x06, "CONNACK"), 0x82),
        row("CONNACK reason code 0x10", V5, vec![0x20, 0x03, 0x00, 0x10, 0x00], E::InvalidReasonCode(0x10, "CONNACK"), 0x82),
        row("CONNACK acknowledge flags bit 1", V5, vec![0x20, 0x03, 0x02, 0x00, 0x00], E::ReservedFlags("CONNACK"), 0x81),
        row(
            "CONNACK maximum QoS 2",
            V5,
            vec![0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02],
            E::InvalidPropertyValue("Maximum QoS", "MQTT-3.2.2-9"),
            0x82,
        ),
        row(
            "topic alias in CONNACK",
            V5,
            vec![0x20, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01],
            E::PropertyNotAllowed("Topic Alias", "CONNACK"),
            0x81,
        ),
    ]
}

#[rustfmt::skip]
fn publish_rows() -> Vec<Row> {
    vec![
        row("PUBLISH QoS 3", V311, cat(&[&[0x36, 0x05, 0x00, 0x01], b"t", &[0x00, 0x01]]), E::InvalidQos, 0x81),
        row("DUP on QoS 0", V5, cat(&[&[0x38, 0x04, 0x00, 0x01], b"t", &[0x00]]), E::DupOnQos0, 0x82),
        row("topic name with +", V311, cat(&[&[0x30, 0x04, 0x00, 0x02], b"a+"]), E::WildcardInTopicName, 0x90),
        row("topic name with #", V5, cat(&[&[0x30, 0x05, 0x00, 0x02], b"a#", &[0x00]]), E::WildcardInTopicName, 0x90),
        row("PUBLISH packet id 0", V311, cat(&[&[0x32, 0x05, 0x00, 0x01], b"t", &[0x00, 0x00]]), E::ZeroPacketId, 0x82),
        row("empty topic", V311, vec![0x30, 0x02, 0x00, 0x00], E::EmptyTopic, 0x82),
        row("empty topic without topic alias", V5, vec![0x30, 0x03, 0x00, 0x00, 0x00], E::EmptyTopic, 0x82),
        row("topic alias 0", V5, cat(&[&[0x30, 0x07, 0x00, 0x01], b"t", &[0x03, 0x23, 0x00, 0x00]]), E::TopicAliasZero, 0x94),
        row(
            "response topic with wildcard",
            V5,
            cat(&[&[0x30, 0x0A, 0x00, 0x01], b"t", &[0x06, 0x08, 0x00, 0x03], b"r/+"]),
            E::InvalidPropertyValue("Response Topic", "MQTT-3.3.2-14"),
            0x82,
        ),
        row(
            "payload format indicator 2",
            V5,
            cat(&[&[0x30, 0x06, 0x00, 0x01], b"t", &[0x02, 0x01, 0x02]]),
            E::InvalidPropertyValue("Payload Format Indicator", "§3.3.2.3.2"),
            0x82,
        ),
        row(
            "session expiry interval in PUBLISH",
            V5,
            cat(&[&[0x30, 0x09, 0x00, 0x01], b"t", &[0x05, 0x11, 0x00, 0x00, 0x00, 0x01]]),
            E::PropertyNotAllowed("Session Expiry Interval", "PUBLISH"),
            0x81,
        ),
        row(
            "duplicate topic alias",
            V5,
            cat(&[&[0x30, 0x0A, 0x00, 0x01], b"t", &[0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02]]),
            E::DuplicateProperty("Topic Alias"),
            0x82,
        ),
        row(
            "subscription identifier of 5 bytes",
            V5,
            cat(&[&[0x30, 0x09, 0x00, 0x01], b"t", &[0x05, 0x0B, 0xFF, 0xFF, 0xFF, 0xFF]]),
            E::MalformedVariableInteger,
            0x81,
        ),
        row("topic shorter than its length", V311, vec![0x30, 0x03, 0x00, 0x05, b'a'], E::Truncated("topic name"), 0x81),
        row("packet id cut short", V311, cat(&[&[0x32, 0x04, 0x00, 0x01], b"t", &[0x00]]), E::Truncated("packet identifier"), 0x81),
        row("topic name invalid UTF-8", V311, vec![0x30, 0x04, 0x00, 0x02, 0xC0, 0x80], E::InvalidUtf8, 0x81),
        row("topic name containing U+0000", V311, vec![0x30, 0x04, 0x00, 0x02, b'a', 0x00], E::NullCharacter, 0x81),
        row("property length past the end of PUBLISH", V5, cat(&[&[0x30, 0x04, 0x00, 0x01], b"t", &[0x05]]), E::Truncated("properties"), 0x81),
    ]
}

#[rustfmt::skip]
fn ack_rows() -> Vec<Row> {
    vec![
        row("PUBACK fixed header flags", V311, vec![0x42, 0x02, 0x00, 0x01], E::ReservedFlags("PUBACK"), 0x81),
        row("PUBREL fixed header flags 0", V311, vec![0x60, 0x02, 0x00, 0x01], E::ReservedFlags("PUBREL"), 0x81),
        row("PUBREL fixed header flags 0", V5, vec![0x60, 0x02, 0x00, 0x01], E::ReservedFlags("PUBREL"), 0x81),
        row("PUBACK packet id 0", V311, vec![0x40, 0x02, 0x00, 0x00], E::ZeroPacketId, 0x82),
        row("PUBACK with a trailing byte", V311, vec![0x40, 0x03, 0x00, 0x01, 0x00], E::TrailingBytes("PUBACK", 1), 0x81),
        row("PUBACK packet id cut short", V5, vec![0x40, 0x01, 0x00], E::Truncated("packet identifier"), 0x81),
        row("PUBACK reason code 0x04", V5, vec![0x40, 0x03, 0x00, 0x01, 0x04], E::InvalidReasonCode(0x04, "PUBACK"), 0x82),
        row("PUBREC reason code 0x92", V5, vec![0x50, 0x03, 0x00, 0x01, 0x92], E::InvalidReasonCode(0x92, "PUBREC"), 0x82),
        row("PUBREL reason code 0x10", V5, vec![0x62, 0x03, 0x00, 0x01, 0x10], E::InvalidReasonCode(0x10, "PUBREL"), 0x82),
        row("PUBCOMP reason code 0x80", V5, vec![0x70, 0x03, 0x00, 0x01, 0x80], E::InvalidReasonCode(0x80, "PUBCOMP"), 0x82),
        row(
            "topic alias in PUBACK",
            V5,
            vec![0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x23, 0x00, 0x01],
            E::PropertyNotAllowed("Topic Alias", "PUBACK/PUBREC/PUBREL/PUBCOMP"),
            0x81,
        ),
    ]
}

#[rustfmt::skip]
fn subscribe_rows() -> Vec<Row> {
    vec![
        row("SUBSCRIBE fixed header flags 0", V311, vec![0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], E::ReservedFlags("SUBSCRIBE"), 0x81),
        row("SUBSCRIBE packet id 0", V311, vec![0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], E::ZeroPacketId, 0x82),
        row("SUBSCRIBE with no filters", V311, vec![0x82, 0x02, 0x00, 0x01], E::NoTopicFilters("SUBSCRIBE"), 0x82),
        row("SUBSCRIBE with no filters", V5, vec![0x82, 0x03, 0x00, 0x01, 0x00], E::NoTopicFilters("SUBSCRIBE"), 0x82),
        row(
            "subscription options bit 6",
            V5,
            vec![0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40],
            E::SubscriptionOptionsReserved,
            0x81,
        ),
        row(
            "subscription options bit 2 in 3.1.1",
            V311,
            vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04],
            E::SubscriptionOptionsReserved,
            0x81,
        ),
        row("retain handling 3", V5, vec![0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30], E::InvalidRetainHandling, 0x82),
        row("subscription QoS 3", V5, vec![0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x03], E::InvalidSubscriptionQos, 0x82),
        row("subscription QoS 3", V311, vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03], E::InvalidSubscriptionQos, 0x82),
        row(
            "subscription identifier 0",
            V5,
            vec![0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'a', 0x00],
            E::InvalidPropertyValue("Subscription Identifier", "§3.8.2.1.2"),
            0x82,
        ),
        row(
            "two subscription identifiers in SUBSCRIBE",
            V5,
            vec![0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00],
            E::DuplicateProperty("Subscription Identifier"),
            0x82,
        ),
        row(
            "reason string in SUBSCRIBE",
            V5,
            vec![0x82, 0x0B, 0x00, 0x01, 0x04, 0x1F, 0x00, 0x01, b'x', 0x00, 0x01, b'a', 0x00],
            E::PropertyNotAllowed("Reason String", "SUBSCRIBE"),
            0x81,
        ),
        row(
            "no local on a shared subscription",
            V5,
            cat(&[&[0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0A], b"$share/g/t", &[0x04]]),
            E::NoLocalOnSharedSubscription,
            0x82,
        ),
        row(
            "filter without subscription options",
            V311,
            vec![0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
            E::Truncated("subscription options"),
            0x81,
        ),
        row("topic filter invalid UTF-8", V311, vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0xFF, 0x00], E::InvalidUtf8, 0x81),
        row("SUBACK return code 0x03", V311, vec![0x90, 0x03, 0x00, 0x01, 0x03], E::InvalidReasonCode(0x03, "SUBACK"), 0x82),
        row("SUBACK reason code 0x11", V5, vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x11], E::InvalidReasonCode(0x11, "SUBACK"), 0x82),
        row("SUBACK packet id 0", V311, vec![0x90, 0x03, 0x00, 0x00, 0x00], E::ZeroPacketId, 0x82),
    ]
}

#[rustfmt::skip]
fn unsubscribe_rows() -> Vec<Row> {
    vec![
        row("UNSUBSCRIBE fixed header flags 0", V311, vec![0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], E::ReservedFlags("UNSUBSCRIBE"), 0x81),
        row("UNSUBSCRIBE packet id 0", V5, vec![0xA2, 0x06, 0x00, 0x00, 0x00, 0x00, 0x01, b'a'], E::ZeroPacketId, 0x82),
        row("UNSUBSCRIBE with no filters", V311, vec![0xA2, 0x02, 0x00, 0x01], E::NoTopicFilters("UNSUBSCRIBE"), 0x82),
        row("UNSUBSCRIBE filter cut short", V311, vec![0xA2, 0x04, 0x00, 0x01, 0x00, 0x02], E::Truncated("topic filter"), 0x81),
        row("UNSUBACK with a trailing byte", V311, vec![0xB0, 0x03, 0x00, 0x01, 0x00], E::TrailingBytes("UNSUBACK", 1), 0x81),
        row("UNSUBACK reason code 0x01", V5, vec![0xB0, 0x04, 0x00, 0x01, 0x00, 0x01], E::InvalidReasonCode(0x01, "UNSUBACK"), 0x82),
    ]
}

#[rustfmt::skip]
fn control_rows() -> Vec<Row> {
    vec![
        row("PINGREQ fixed header flags", V311, vec![0xC1, 0x00], E::ReservedFlags("PINGREQ"), 0x81),
        row("PINGREQ with a trailing byte", V311, vec![0xC0, 0x01, 0x00], E::TrailingBytes("PINGREQ", 1), 0x81),
        row("PINGRESP with a trailing byte", V5, vec![0xD0, 0x01, 0x00], E::TrailingBytes("PINGRESP", 1), 0x81),
        row("DISCONNECT fixed header flags", V5, vec![0xE2, 0x00], E::ReservedFlags("DISCONNECT"), 0x81),
        row("DISCONNECT with a byte in 3.1.1", V311, vec![0xE0, 0x01, 0x00], E::TrailingBytes("DISCONNECT", 1), 0x81),
        row("DISCONNECT reason code 0x01", V5, vec![0xE0, 0x01, 0x01], E::InvalidReasonCode(0x01, "DISCONNECT"), 0x82),
        row("DISCONNECT reason code 0x84 (CONNACK only)", V5, vec![0xE0, 0x01, 0x84], E::InvalidReasonCode(0x84, "DISCONNECT"), 0x82),
        row(
            "receive maximum in DISCONNECT",
            V5,
            vec![0xE0, 0x05, 0x00, 0x03, 0x21, 0x00, 0x0A],
            E::PropertyNotAllowed("Receive Maximum", "DISCONNECT"),
            0x81,
        ),
        row("DISCONNECT byte after properties", V5, vec![0xE0, 0x03, 0x00, 0x00, 0xFF], E::TrailingBytes("DISCONNECT", 1), 0x81),
        row("AUTH fixed header flags", V5, vec![0xF1, 0x00], E::ReservedFlags("AUTH"), 0x81),
        row("AUTH reason code 0x01", V5, vec![0xF0, 0x01, 0x01], E::InvalidReasonCode(0x01, "AUTH"), 0x82),
        row(
            "session expiry interval in AUTH",
            V5,
            vec![0xF0, 0x07, 0x18, 0x05, 0x11, 0x00, 0x00, 0x00, 0x01],
            E::PropertyNotAllowed("Session Expiry Interval", "AUTH"),
            0x81,
        ),
    ]
}

fn all_rows() -> Vec<Row> {
    let mut rows = fixed_header_rows();
    rows.extend(connect_rows());
    rows.extend(connack_rows());
    rows.extend(publish_rows());
    rows.extend(ack_rows());
    rows.extend(subscribe_rows());
    rows.extend(unsubscribe_rows());
    rows.extend(control_rows());
    rows
}

#[test]
fn every_violation_is_reported_exactly() {
    for r in all_rows() {
        let mut buf = BytesMut::from(&r.bytes[..]);
        let got = decode(&mut buf, r.version, r.max_packet_size);
        assert_eq!(got, Err(r.error.clone()), "{:?} {}", r.version, r.name);
        assert_eq!(
            r.error.reason_code(),
            ReasonCode(r.reason),
            "{:?} {}: reason code",
            r.version,
            r.name
        );
    }
}

/// The two generic codes agree with the classification the error reports.
#[test]
fn reason_codes_agree_with_class() {
    for r in all_rows() {
        match r.reason {
            0x81 => assert_eq!(r.error.class(), Class::Malformed, "{}", r.name),
            0x82 => assert_eq!(r.error.class(), Class::Protocol, "{}", r.name),
            _ => {}
        }
    }
}

#[test]
fn table_has_at_least_thirty_distinct_violations() {
    let rows = all_rows();
    let mut names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 30, "{} distinct violations", names.len());
}

/// MQTT 3.1.1 answers an unsupported protocol level with CONNACK return code 0x01 and
/// nothing else in this table with a CONNACK (§3.2.2.3).
#[test]
fn v311_connack_return_codes() {
    for r in all_rows() {
        let want = matches!(r.error, E::UnsupportedProtocolVersion(_)).then_some(0x01);
        assert_eq!(r.error.connect_return_code(), want, "{}", r.name);
    }
}

/// Every proper prefix of a violating packet is just an incomplete packet: the decoder waits
/// rather than reporting an error it cannot yet know about, unless the fixed header already
/// condemns it (oversized or over-long remaining length).
#[test]
fn prefixes_of_violations_wait_for_more_bytes() {
    for r in all_rows() {
        let header_only = matches!(
            r.error,
            E::PacketTooLarge { .. } | E::MalformedVariableInteger
        );
        for k in 0..r.bytes.len() {
            let mut buf = BytesMut::from(&r.bytes[..k]);
            let got = decode(&mut buf, r.version, r.max_packet_size);
            if got.is_err() && header_only {
                continue;
            }
            assert_eq!(got, Ok(None), "{:?} {} cut at {k}", r.version, r.name);
            assert_eq!(buf.len(), k);
        }
    }
}

/// Writes each row to `fuzz/corpus/decode/` as seed corpus for the `decode` fuzz target, so
/// that mutation starts next to every error path. Not a check; `fuzz/seed.sh` runs it.
#[test]
#[ignore = "writes the fuzz seed corpus; run by fuzz/seed.sh"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
    std::fs::create_dir_all(&dir).expect("create fuzz/corpus/decode");
    for r in all_rows() {
        let name: String = r
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("bad-{:?}-{name}", r.version));
        std::fs::write(&path, &r.bytes).expect("write seed");
    }
}
