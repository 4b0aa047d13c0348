//! §1.5, §2, §4.13 malformed packets and protocol errors.
//!
//! Each row is one violation written as raw bytes, sent either after a valid CONNECT or as
//! the first packet, with the reaction the specification asks for: an MQTT 5 connection gets
//! DISCONNECT (or CONNACK, for a bad CONNECT) with the exact reason code and is closed
//! [MQTT-4.13.1-1]; an MQTT 3.1.1 connection is closed [MQTT-4.8.0-1]. After every row a
//! fresh client must still be served.

use edgeplane_broker::Settings;
use edgeplane_tests::codec::{Packet, ProtocolVersion, QoS};
use edgeplane_tests::*;

/// One violation and the reaction it must get, as the sequence of what the client sees.
struct Row {
    name: &'static str,
    version: ProtocolVersion,
    /// Sent after a valid CONNECT was accepted (otherwise as the first packet).
    after_connect: bool,
    bytes: Vec<u8>,
    /// What the client sees: packets as [`describe`] names them, then `closed`.
    expect: Vec<String>,
    /// Broker settings the row needs (rows without share one default broker).
    settings: Option<fn(&mut Settings)>,
}

fn row(name: &'static str, version: ProtocolVersion, bytes: Vec<u8>, expect: Vec<String>) -> Row {
    Row {
        name,
        version,
        after_connect: true,
        bytes,
        expect,
        settings: None,
    }
}

/// A row whose bytes are the first packet of the connection.
fn first(name: &'static str, version: ProtocolVersion, bytes: Vec<u8>, expect: Vec<String>) -> Row {
    Row {
        after_connect: false,
        ..row(name, version, bytes, expect)
    }
}

/// MQTT 5: DISCONNECT with `reason`, then the close.
fn disconnect(reason: u8) -> Vec<String> {
    vec![format!("DISCONNECT 0x{reason:02X}"), "closed".into()]
}

/// CONNECT refused: CONNACK with `code`, then the close.
fn connack(code: u8) -> Vec<String> {
    vec![format!("CONNACK 0x{code:02X}"), "closed".into()]
}

/// Closed without any packet (MQTT 3.1.1, or a first packet that is not CONNECT).
fn closed() -> Vec<String> {
    vec!["closed".into()]
}

fn describe(p: &Packet) -> String {
    match p {
        Packet::Disconnect(d) => format!("DISCONNECT {:?}", d.reason),
        Packet::ConnAck(a) => format!("CONNACK 0x{:02X}", a.code),
        other => other.name().into(),
    }
}

/// A packet: first header byte, remaining length (computed), then the body parts.
fn pkt(header: u8, body: &[&[u8]]) -> Vec<u8> {
    let body = body.concat();
    let mut out = vec![header];
    out.extend(varint(body.len()));
    out.extend(body);
    out
}

fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7F) as u8;
        n >>= 7;
        out.push(if n > 0 { b | 0x80 } else { b });
        if n == 0 {
            return out;
        }
    }
}

/// A UTF-8 Encoded String (two-byte length, then the bytes as they are).
fn s(text: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

/// MQTT 5 CONNECT, keep alive 60, with these flags, properties and payload (client id first).
fn connect5(flags: u8, props: &[u8], payload: &[&[u8]]) -> Vec<u8> {
    pkt(
        0x10,
        &[
            &s(b"MQTT"),
            &[5, flags, 0, 60],
            &varint(props.len()),
            props,
            &payload.concat(),
        ],
    )
}

/// MQTT 3.1.1 CONNECT, keep alive 60, with these flags and payload (client id first).
fn connect311(flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    pkt(0x10, &[&s(b"MQTT"), &[4, flags, 0, 60], &payload.concat()])
}

/// QoS 0 MQTT 5 PUBLISH on `topic` with a property block.
fn publish5(topic: &[u8], props: &[u8]) -> Vec<u8> {
    pkt(0x30, &[&s(topic), &varint(props.len()), props, b"payload"])
}

/// MQTT 5 SUBSCRIBE, packet id 1, no properties, one filter with these option bits.
fn subscribe5(filter: &[u8], options: u8) -> Vec<u8> {
    pkt(0x82, &[&[0, 1, 0], &s(filter), &[options]])
}

// One row a line reads as a table; rustfmt would spread each over several.
/// Packets sent after a valid MQTT 5 CONNECT, each answered by DISCONNECT.
#[rustfmt::skip]
fn v5_rows() -> Vec<Row> {
    use ProtocolVersion::V5 as V;
    vec![
        // §2.1 fixed header and §1.5 data representation.
        row("SUBSCRIBE with flags 0000 [MQTT-3.8.1-1]", V, pkt(0x80, &[&[0, 1, 0], &s(b"a"), &[1]]), disconnect(0x81)),
        row("UNSUBSCRIBE with flags 0000 [MQTT-3.10.1-1]", V, pkt(0xA0, &[&[0, 1, 0], &s(b"a")]), disconnect(0x81)),
        row("PUBREL with flags 0000 [MQTT-3.6.1-1]", V, pkt(0x60, &[&[0, 1]]), disconnect(0x81)),
        row("PUBACK with flags 0001 [MQTT-2.1.3-1]", V, pkt(0x41, &[&[0, 1]]), disconnect(0x81)),
        row("PINGREQ with flags 0001 [MQTT-2.1.3-1]", V, vec![0xC1, 0x00], disconnect(0x81)),
        row("AUTH with flags 0001 [MQTT-2.1.3-1]", V, vec![0xF1, 0x00], disconnect(0x81)),
        row("remaining length of 5 bytes [MQTT-1.5.5-1]", V, vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], disconnect(0x81)),
        row("remaining length not in its shortest form [MQTT-1.5.5-1]", V, vec![0xC0, 0x80, 0x00], disconnect(0x81)),
        row("packet type 0 [§2.1.2]", V, vec![0x00, 0x00], disconnect(0x81)),
        row("PINGREQ with a trailing byte [§3.12]", V, vec![0xC0, 0x01, 0x00], disconnect(0x81)),
        row("PUBLISH topic length beyond the packet [§1.5.4]", V, pkt(0x30, &[&[0x00, 0x0A], b"abc"]), disconnect(0x81)),
        row("property length beyond the packet [§2.2.2.1]", V, pkt(0x30, &[&s(b"t"), &[0x05, 0x02, 0x00]]), disconnect(0x81)),
        row("packet above the Maximum Packet Size [MQTT-3.1.2-24]", V, vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F], disconnect(0x95)),
        row("invalid UTF-8 in topic [MQTT-1.5.4-1]", V, publish5(&[b'a', 0xC3, 0x28], &[]), disconnect(0x81)),
        row("UTF-16 surrogate in topic [MQTT-1.5.4-1]", V, publish5(&[0xED, 0xA0, 0x80], &[]), disconnect(0x81)),
        row("U+0000 in topic [MQTT-1.5.4-2]", V, publish5(b"a\0b", &[]), disconnect(0x81)),
        row("invalid UTF-8 in user property [MQTT-1.5.4-1]", V, publish5(b"t", &[0x26, 0, 1, b'k', 0, 1, 0xFF]), disconnect(0x81)),
        // §3.3 PUBLISH.
        row("PUBLISH QoS 3 [MQTT-3.3.1-4]", V, pkt(0x36, &[&s(b"t"), &[0, 1, 0]]), disconnect(0x81)),
        row("DUP on a QoS 0 PUBLISH [MQTT-3.3.1-2]", V, pkt(0x38, &[&s(b"t"), &[0]]), disconnect(0x82)),
        row("'+' in topic name [MQTT-3.3.2-2]", V, publish5(b"a/+", &[]), disconnect(0x90)),
        row("'#' in topic name [MQTT-3.3.2-2]", V, publish5(b"a/#", &[]), disconnect(0x90)),
        row("packet id 0 in QoS 1 PUBLISH [MQTT-2.2.1-3]", V, pkt(0x32, &[&s(b"t"), &[0, 0, 0]]), disconnect(0x82)),
        row("empty topic without alias [§3.3.2.1]", V, publish5(b"", &[]), disconnect(0x82)),
        row("unknown property 0x7F [MQTT-2.2.2-2]", V, publish5(b"t", &[0x7F]), disconnect(0x81)),
        row("Session Expiry Interval in PUBLISH [§2.2.2.2]", V, publish5(b"t", &[0x11, 0, 0, 0, 10]), disconnect(0x81)),
        row("two Content Types [§3.3.2.3.9]", V, publish5(b"t", &[0x03, 0, 1, b'a', 0x03, 0, 1, b'b']), disconnect(0x82)),
        row("Payload Format Indicator 2 [§3.3.2.3.2]", V, publish5(b"t", &[0x01, 0x02]), disconnect(0x82)),
        row("Response Topic with a wildcard [MQTT-3.3.2-14]", V, publish5(b"t", &[0x08, 0, 1, b'#']), disconnect(0x82)),
        row("topic alias 0 [MQTT-3.3.2-8]", V, publish5(b"t", &[0x23, 0, 0]), disconnect(0x94)),
        row("topic alias above the maximum 64 [MQTT-3.3.2-9]", V, publish5(b"t", &[0x23, 0, 65]), disconnect(0x94)),
        row("empty topic with an unknown alias [§3.3.2.3.4]", V, publish5(b"", &[0x23, 0, 5]), disconnect(0x82)),
        row("subscription identifier from a client [MQTT-3.3.4-6]", V, publish5(b"t", &[0x0B, 0x01]), disconnect(0x82)),
        Row {
            settings: Some(|s| s.receive_maximum = 1),
            ..row(
                "QoS 2 PUBLISH beyond Receive Maximum 1 [MQTT-3.3.4-9]",
                V,
                [pkt(0x34, &[&s(b"t"), &[0, 1, 0], b"x"]), pkt(0x34, &[&s(b"t"), &[0, 2, 0], b"x"])].concat(),
                vec!["PUBREC".into(), "DISCONNECT 0x93".into(), "closed".into()],
            )
        },
        Row {
            settings: Some(|s| s.clients.max_packet_size = 64),
            ..row("PUBLISH above clients.max_packet_size 64 [MQTT-3.1.2-24]", V, pkt(0x30, &[&s(b"t"), &[0], &[b'x'; 80]]), disconnect(0x95))
        },
        // §3.4–§3.7 acknowledgements.
        row("packet id 0 in PUBACK [MQTT-2.2.1-3]", V, pkt(0x40, &[&[0, 0]]), disconnect(0x82)),
        row("PUBACK reason code 0x05 [§3.4.2.1]", V, pkt(0x40, &[&[0, 1, 0x05]]), disconnect(0x82)),
        row("PUBREL reason code 0x10 [§3.6.2.1]", V, pkt(0x62, &[&[0, 1, 0x10]]), disconnect(0x82)),
        row("Topic Alias in PUBACK properties [§2.2.2.2]", V, pkt(0x40, &[&[0, 1, 0x00, 0x03, 0x23, 0, 1]]), disconnect(0x81)),
        // §3.8 SUBSCRIBE, §3.10 UNSUBSCRIBE.
        row("packet id 0 in SUBSCRIBE [MQTT-2.2.1-3]", V, pkt(0x82, &[&[0, 0, 0], &s(b"a"), &[0]]), disconnect(0x82)),
        row("SUBSCRIBE without topic filter [MQTT-3.8.3-2]", V, pkt(0x82, &[&[0, 1, 0]]), disconnect(0x82)),
        row("subscription identifier 0 [§3.8.2.1.2]", V, pkt(0x82, &[&[0, 1, 2, 0x0B, 0x00], &s(b"a"), &[0]]), disconnect(0x82)),
        row("subscription options reserved bits [MQTT-3.8.3-5]", V, subscribe5(b"a", 0xC0), disconnect(0x81)),
        row("retain handling 3 [§3.8.3.1]", V, subscribe5(b"a", 0x30), disconnect(0x82)),
        row("maximum QoS 3 in subscription options [§3.8.3.1]", V, subscribe5(b"a", 0x03), disconnect(0x82)),
        row("No Local on a shared subscription [MQTT-3.8.3-4]", V, subscribe5(b"$share/g/a", 0x04), disconnect(0x82)),
        row("invalid UTF-8 in topic filter [MQTT-1.5.4-1]", V, subscribe5(&[0xFF, 0xFE], 0x00), disconnect(0x81)),
        row("packet id 0 in UNSUBSCRIBE [MQTT-2.2.1-3]", V, pkt(0xA2, &[&[0, 0, 0], &s(b"a")]), disconnect(0x82)),
        row("UNSUBSCRIBE without topic filter [MQTT-3.10.3-2]", V, pkt(0xA2, &[&[0, 1, 0]]), disconnect(0x82)),
        // Packets a client never sends, §3.14 DISCONNECT, §3.15 AUTH.
        row("second CONNECT [MQTT-3.1.0-2]", V, connect5(0x02, &[], &[&s(b"again")]), disconnect(0x82)),
        row("CONNACK from a client [§3.2]", V, vec![0x20, 0x03, 0x00, 0x00, 0x00], disconnect(0x82)),
        row("SUBACK from a client [§3.9]", V, pkt(0x90, &[&[0, 1, 0, 0]]), disconnect(0x82)),
        row("PINGRESP from a client [§3.13]", V, vec![0xD0, 0x00], disconnect(0x82)),
        row("AUTH without an authentication method [MQTT-4.12.0-1]", V, vec![0xF0, 0x00], disconnect(0x82)),
        row("DISCONNECT reason code 0x05 [§3.14.2.1]", V, vec![0xE0, 0x01, 0x05], disconnect(0x82)),
        row("DISCONNECT sets session expiry after 0 [MQTT-3.14.2-2]", V, pkt(0xE0, &[&[0x00, 0x05, 0x11, 0, 0, 0, 10]]), disconnect(0x82)),
    ]
}

/// Packets sent after a valid MQTT 3.1.1 CONNECT: the broker closes the connection.
#[rustfmt::skip]
fn v311_rows() -> Vec<Row> {
    use ProtocolVersion::V311 as V;
    vec![
        row("SUBSCRIBE with flags 0000 [MQTT-3.8.1-1]", V, pkt(0x80, &[&[0, 1], &s(b"a"), &[1]]), closed()),
        row("UNSUBSCRIBE with flags 0000 [MQTT-3.10.1-1]", V, pkt(0xA0, &[&[0, 1], &s(b"a")]), closed()),
        row("PUBREL with flags 0000 [MQTT-3.6.1-1]", V, pkt(0x60, &[&[0, 1]]), closed()),
        row("PINGREQ with flags 0001 [MQTT-2.2.2-2]", V, vec![0xC1, 0x00], closed()),
        row("remaining length of 5 bytes [§2.2.3]", V, vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], closed()),
        row("packet type 0 [§2.2.1]", V, vec![0x00, 0x00], closed()),
        row("AUTH (type 15) in 3.1.1 [§2.2.1]", V, vec![0xF0, 0x00], closed()),
        row("PINGREQ with a trailing byte [§3.12]", V, vec![0xC0, 0x01, 0x00], closed()),
        row("PUBACK with a reason code byte [§3.4]", V, pkt(0x40, &[&[0, 1, 0]]), closed()),
        row("PUBLISH topic length beyond the packet [§1.5.3]", V, pkt(0x30, &[&[0x00, 0x0A], b"abc"]), closed()),
        row("packet above the Maximum Packet Size", V, vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F], closed()),
        row("PUBLISH QoS 3 [MQTT-3.3.1-4]", V, pkt(0x36, &[&s(b"t"), &[0, 1]]), closed()),
        row("DUP on a QoS 0 PUBLISH [MQTT-3.3.1-2]", V, pkt(0x38, &[&s(b"t")]), closed()),
        row("wildcard in topic name [MQTT-3.3.2-2]", V, pkt(0x30, &[&s(b"a/+")]), closed()),
        row("empty topic name [MQTT-4.7.3-1]", V, pkt(0x30, &[&s(b""), b"x"]), closed()),
        row("packet id 0 in QoS 1 PUBLISH [MQTT-2.3.1-1]", V, pkt(0x32, &[&s(b"t"), &[0, 0]]), closed()),
        row("invalid UTF-8 in topic [MQTT-1.5.3-1]", V, pkt(0x30, &[&s(&[0xC3, 0x28])]), closed()),
        row("U+0000 in topic [MQTT-1.5.3-2]", V, pkt(0x30, &[&s(b"a\0")]), closed()),
        row("packet id 0 in SUBSCRIBE [MQTT-2.3.1-1]", V, pkt(0x82, &[&[0, 0], &s(b"a"), &[0]]), closed()),
        row("SUBSCRIBE without topic filter [MQTT-3.8.3-3]", V, pkt(0x82, &[&[0, 1]]), closed()),
        row("SUBSCRIBE reserved option bits [MQTT-3-8.3-4]", V, pkt(0x82, &[&[0, 1], &s(b"a"), &[0x04]]), closed()),
        row("SUBSCRIBE QoS 3 [MQTT-3-8.3-4]", V, pkt(0x82, &[&[0, 1], &s(b"a"), &[0x03]]), closed()),
        row("UNSUBSCRIBE without topic filter [MQTT-3.10.3-2]", V, pkt(0xA2, &[&[0, 1]]), closed()),
        row("second CONNECT [MQTT-3.1.0-2]", V, connect311(0x02, &[&s(b"again")]), closed()),
        row("CONNACK from a client [§3.2]", V, vec![0x20, 0x02, 0x00, 0x00], closed()),
    ]
}

/// Malformed CONNECT packets and connections that do not start with CONNECT.
#[rustfmt::skip]
fn connect_rows() -> Vec<Row> {
    use ProtocolVersion::{V311, V5};
    let id = s(b"c");
    let will = [&[0u8][..], &s(b"w"), &s(b"x")].concat();
    let will_wild = [&[0u8][..], &s(b"w/#"), &s(b"x")].concat();
    vec![
        first("v5 CONNECT reserved flag [MQTT-3.1.2-3]", V5, connect5(0x03, &[], &[&id]), connack(0x81)),
        first("v5 will QoS 3 [MQTT-3.1.2-12]", V5, connect5(0x1E, &[], &[&id, &will]), connack(0x81)),
        first("v5 will QoS without will flag [MQTT-3.1.2-11]", V5, connect5(0x0A, &[], &[&id]), connack(0x81)),
        first("v5 will retain without will flag [MQTT-3.1.2-13]", V5, connect5(0x22, &[], &[&id]), connack(0x81)),
        first("v5 will topic with a wildcard [MQTT-3.1.3-11]", V5, connect5(0x06, &[], &[&id, &will_wild]), connack(0x90)),
        first("v5 Receive Maximum 0 [§3.1.2.11.3]", V5, connect5(0x02, &[0x21, 0, 0], &[&id]), connack(0x82)),
        first("v5 Maximum Packet Size 0 [§3.1.2.11.4]", V5, connect5(0x02, &[0x27, 0, 0, 0, 0], &[&id]), connack(0x82)),
        first("v5 authentication data without method [§3.1.2.11.10]", V5, connect5(0x02, &[0x16, 0, 1, b'x'], &[&id]), connack(0x82)),
        first("v5 Topic Alias in CONNECT [§2.2.2.2]", V5, connect5(0x02, &[0x23, 0, 1], &[&id]), connack(0x81)),
        first("v5 client id with invalid UTF-8 [MQTT-1.5.4-1]", V5, connect5(0x02, &[], &[&s(&[0xC3, 0x28])]), connack(0x81)),
        first("v5 CONNECT with trailing bytes [§3.1]", V5, connect5(0x02, &[], &[&id, b"zz"]), connack(0x81)),
        Row {
            settings: Some(|s| s.clients.max_packet_size = 64),
            ..first("v5 CONNECT above clients.max_packet_size [MQTT-3.1.2-24]", V5, connect5(0x02, &[], &[&s(&[b'c'; 80])]), connack(0x95))
        },
        first("v5 first packet PUBLISH [MQTT-3.1.0-1]", V5, publish5(b"t", &[]), closed()),
        first("v5 first packet PINGREQ [MQTT-3.1.0-1]", V5, vec![0xC0, 0x00], closed()),
        first("v5 first packet malformed PUBLISH [MQTT-3.1.0-1]", V5, publish5(b"a\0", &[]), closed()),
        first("3.1.1 CONNECT reserved flag [MQTT-3.1.2-3]", V311, connect311(0x03, &[&id]), closed()),
        first("3.1.1 will QoS 3 [MQTT-3.1.2-14]", V311, connect311(0x1E, &[&id, &s(b"w"), &s(b"x")]), closed()),
        first("3.1.1 password without user name [MQTT-3.1.2-22]", V311, connect311(0x42, &[&id, &s(b"pw")]), closed()),
        first("3.1.1 will topic with a wildcard [MQTT-3.3.2-2]", V311, connect311(0x06, &[&id, &s(b"w/+"), &s(b"x")]), closed()),
        first("3.1.1 client id with U+0000 [MQTT-1.5.3-2]", V311, connect311(0x02, &[&s(b"c\0")]), closed()),
        first("3.1.1 protocol level 3 gets return code 0x01 [MQTT-3.1.2-2]", V311, pkt(0x10, &[&s(b"MQIsdp"), &[3, 0x02, 0, 60], &id]), connack(0x01)),
        first("3.1.1 first packet SUBSCRIBE [MQTT-3.1.0-1]", V311, pkt(0x82, &[&[0, 1], &s(b"a"), &[0]]), closed()),
    ]
}

/// What the client sees after sending the row's bytes: each packet, then `closed`, or
/// `still open` if the broker neither closes nor sends anything within [`WAIT`].
async fn observe_row(b: &TestBroker, row: &Row, n: usize) -> Vec<String> {
    let mut c = if row.after_connect {
        b.client(&format!("row-{n}"), row.version).await
    } else {
        Client::open(b.addr, row.version).await
    };
    c.send_raw(&row.bytes).await;
    let mut seen = Vec::new();
    loop {
        match c.observe(WAIT).await {
            Observed::Packet(p) => seen.push(describe(&p)),
            Observed::Closed => {
                seen.push("closed".into());
                return seen;
            }
            Observed::Silent => {
                seen.push("still open".into());
                return seen;
            }
        }
    }
}

/// Run every row on a fresh connection, then prove the broker still serves; report every
/// row that failed, by name, at the end.
async fn run(rows: Vec<Row>) {
    let shared = TestBroker::start().await;
    let mut failures = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let own = match row.settings {
            Some(f) => Some(TestBroker::with(f).await),
            None => None,
        };
        let b = own.as_ref().unwrap_or(&shared);
        let seen = observe_row(b, row, n).await;
        if seen != row.expect {
            failures.push(format!(
                "{} ({:?}): expected {:?}, got {:?}",
                row.name, row.version, row.expect, seen
            ));
        }
        assert_broker_serves(b).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// [MQTT-4.13.1-1] [MQTT-4.13.2-1] MQTT 5: each malformed or protocol-violating packet gets
/// DISCONNECT with the reason code the specification names, then the connection is closed.
#[tokio::test]
async fn v5_violations_get_disconnect_with_reason() {
    let rows = v5_rows();
    assert!(rows.len() >= 20);
    run(rows).await;
}

/// [MQTT-4.8.0-1] (3.1.1 §4.8) MQTT 3.1.1: a protocol violation closes the connection,
/// without any packet (3.1.1 has no server DISCONNECT).
#[tokio::test]
async fn v311_violations_close_the_connection() {
    let rows = v311_rows();
    assert!(rows.len() >= 20);
    run(rows).await;
}

/// [MQTT-3.1.4-1] [MQTT-3.1.4-2] [MQTT-3.1.0-1] A malformed CONNECT is refused (MQTT 5 with a
/// CONNACK naming the reason, 3.1.1 by closing), and a connection whose first packet is not
/// CONNECT is closed.
#[tokio::test]
async fn malformed_connect_is_refused() {
    run(connect_rows()).await;
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failing seed can be replayed.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// [MQTT-4.13.1-1] Random bytes (64 per connection, fixed seeds) sent as the first packet or
/// after a valid CONNECT of either version never take the broker down: it answers only with
/// well-formed packets, a connected bystander keeps receiving, and fresh clients are served.
#[tokio::test]
async fn random_garbage_never_crashes_the_broker() {
    let b = TestBroker::start().await;
    let mut bystander = b.client("bystander", V5).await;
    bystander.sub("bystander/t", QoS::AtLeastOnce).await;
    let mut tasks = tokio::task::JoinSet::new();
    for seed in 0..40u64 {
        for mode in 0..3 {
            let addr = b.addr;
            tasks.spawn(async move {
                let version = if mode == 2 { V311 } else { V5 };
                let mut c = Client::open(addr, version).await;
                if mode > 0 {
                    let ack = c
                        .connect(connect(&format!("garbage-{seed}-{mode}"), version))
                        .await;
                    assert_eq!(ack.code, 0);
                }
                c.send_raw(&garbage(seed, 64)).await;
                // Any packet the broker sends back must decode; `observe` panics otherwise.
                while let Observed::Packet(_) = c.observe(QUIET).await {}
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            panic!("a garbage connection saw an invalid answer: {e}");
        }
    }
    let mut publ = b.client("publisher", V5).await;
    publ.publish(publish("bystander/t", "still here", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(
        &bystander.receive_and_ack().await.payload[..],
        b"still here"
    );
    assert_broker_serves(&b).await;
}
