//! §3.1 CONNECT and §3.2 CONNACK: acceptance for both protocol versions, client identifiers,
//! protocol levels, the CONNECT-first rule, the limits CONNACK advertises, session takeover,
//! the connect timeout, and MQTT over WebSocket (§6).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use edgeplane_tests::codec::{self, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use edgeplane_tests::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// A CONNECT packet as raw bytes with any protocol name and level, Clean Session set, keep
/// alive 60 and client id "c1" (no MQTT 5 properties: the level is refused before them).
fn raw_connect(name: &[u8], level: u8) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, 0x02, 0x00, 60, 0x00, 0x02, b'c', b'1']);
    let mut out = vec![0x10, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

/// [MQTT-3.1.4-5] [MQTT-3.2.0-1] [MQTT-3.2.2-2] (3.1.1: [MQTT-3.2.2-1]) Both protocol versions
/// are accepted: CONNACK is the first packet back, with code 0 and Session Present 0 on a
/// clean start, and the connection then serves requests.
#[tokio::test]
async fn connack_accepts_both_versions() {
    let b = TestBroker::start().await;
    for v in [V311, V5] {
        let mut c = Client::open(b.addr, v).await;
        let ack = c.connect(connect(&format!("c-{v:?}"), v)).await;
        assert_eq!(ack.code, 0, "{v:?}");
        assert!(!ack.session_present, "{v:?}");
        assert!(
            ack.properties.assigned_client_identifier.is_none(),
            "{v:?}: the client chose its id"
        );
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp), "{v:?}");
    }
}

/// [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16] An MQTT 5 client with a zero-length client id
/// gets a unique Assigned Client Identifier, which names its session: resuming with it finds
/// the session.
#[tokio::test]
async fn v5_empty_client_id_is_assigned() {
    let b = TestBroker::start().await;
    let mut c = Client::open(b.addr, V5).await;
    let mut first = connect("", V5);
    first.properties.session_expiry_interval = Some(60);
    let ack = c.connect(first).await;
    assert_eq!(ack.code, 0);
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier in CONNACK");
    assert!(!id.is_empty());
    c.sub("assigned/t", QoS::AtLeastOnce).await;

    // A second anonymous client gets another id and does not take the first one over.
    let mut other = Client::open(b.addr, V5).await;
    let ack2 = other.connect(connect("", V5)).await;
    let id2 = ack2
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier in CONNACK");
    assert_ne!(id, id2, "assigned ids are unique");
    c.expect_nothing().await;
    c.disconnect().await;

    let mut again = Client::open(b.addr, V5).await;
    let ack = again.connect(connect_persistent(&id, V5, 60)).await;
    assert_eq!(ack.code, 0);
    assert!(ack.session_present, "the assigned id names the session");
    other
        .publish(publish("assigned/t", "hello", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(&again.receive_and_ack().await.payload[..], b"hello");
}

/// [MQTT-3.1.3-6] [MQTT-3.1.3-7] An MQTT 3.1.1 client with a zero-length client id and Clean
/// Session 1 is accepted with a unique id of the broker's choosing: two such clients do not
/// take each other over.
#[tokio::test]
async fn v311_empty_client_id_with_clean_session_accepted() {
    let b = TestBroker::start().await;
    let mut one = Client::open(b.addr, V311).await;
    assert_eq!(one.connect(connect("", V311)).await.code, 0);
    let mut two = Client::open(b.addr, V311).await;
    assert_eq!(two.connect(connect("", V311)).await.code, 0);
    for c in [&mut one, &mut two] {
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp));
    }
}

/// 3.1.1: [MQTT-3.1.3-8] [MQTT-3.2.2-4] [MQTT-3.2.2-5] An MQTT 3.1.1 client with a zero-length
/// client id and Clean Session 0 gets CONNACK return code 0x02 (Identifier rejected) with
/// Session Present 0, and the connection closes. [MQTT-3.1.4-6] A PUBLISH sent right behind the
/// refused CONNECT is not processed.
#[tokio::test]
async fn v311_empty_client_id_without_clean_session_refused() {
    let b = TestBroker::start().await;
    let mut watcher = b.client("watcher", V5).await;
    watcher.sub("refused/#", QoS::AtMostOnce).await;
    let mut c = Client::open(b.addr, V311).await;
    let mut req = connect("", V311);
    req.clean_start = false;
    let mut bytes = BytesMut::new();
    codec::encode(&Packet::Connect(Box::new(req)), V311, &mut bytes);
    codec::encode(
        &Packet::Publish(publish("refused/t", "sneaky", QoS::AtMostOnce, 0)),
        V311,
        &mut bytes,
    );
    c.send_raw(&bytes).await;
    match c.recv().await {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.code, 0x02);
            assert!(
                !ack.session_present,
                "Session Present 0 with a non-zero return code"
            );
        }
        other => panic!("expected CONNACK 0x02, got {other:?}"),
    }
    assert_eq!(c.expect_closed().await, None);
    watcher.expect_nothing().await;
}

/// 3.1.1: [MQTT-3.1.2-2] [MQTT-3.2.2-5] An unsupported protocol level (MQTT 3.1 "MQIsdp"
/// level 3, or level 6) gets CONNACK return code 0x01 in the MQTT 3.1.1 format, and the
/// connection closes. (MQTT 5's 0x84 cannot be used: a client of an unknown level cannot be
/// assumed to parse an MQTT 5 CONNACK.)
#[tokio::test]
async fn unsupported_protocol_level_refused_with_0x01() {
    let b = TestBroker::start().await;
    for (name, level) in [(&b"MQIsdp"[..], 3), (&b"MQTT"[..], 3), (&b"MQTT"[..], 6)] {
        let mut c = Client::open(b.addr, V311).await;
        c.send_raw(&raw_connect(name, level)).await;
        match c.recv().await {
            Some(Packet::ConnAck(a)) => {
                assert_eq!(a.code, 0x01, "level {level}");
                assert!(!a.session_present);
            }
            other => panic!("level {level}: expected CONNACK 0x01, got {other:?}"),
        }
        assert_eq!(c.expect_closed().await, None, "level {level}");
    }
    assert_broker_serves(&b).await;
}

/// [MQTT-3.1.2-1] A protocol name other than "MQTT" at level 4 is not processed as MQTT: the
/// connection is closed without a CONNACK.
#[tokio::test]
async fn wrong_protocol_name_closes() {
    let b = TestBroker::start().await;
    let mut c = Client::open(b.addr, V311).await;
    c.send_raw(&raw_connect(b"MQTX", 4)).await;
    assert_eq!(c.expect_closed().await, None);
}

/// [MQTT-3.1.0-1] The first packet must be CONNECT: anything else (PINGREQ, PUBLISH) closes
/// the connection unanswered.
#[tokio::test]
async fn first_packet_not_connect_closes() {
    let b = TestBroker::start().await;
    let mut watcher = b.client("watcher", V5).await;
    watcher.sub("first/#", QoS::AtMostOnce).await;
    for v in [V311, V5] {
        let mut c = Client::open(b.addr, v).await;
        c.send(&Packet::PingReq).await;
        assert_eq!(
            c.expect_closed().await,
            None,
            "{v:?}: PINGREQ before CONNECT"
        );

        let mut c = Client::open(b.addr, v).await;
        c.send(&Packet::Publish(publish(
            "first/t",
            "sneaky",
            QoS::AtMostOnce,
            0,
        )))
        .await;
        assert_eq!(
            c.expect_closed().await,
            None,
            "{v:?}: PUBLISH before CONNECT"
        );
    }
    watcher.expect_nothing().await;
}

/// [MQTT-3.1.0-2] A second CONNECT is a Protocol Error: MQTT 5 gets DISCONNECT 0x82, and the
/// connection closes in both versions.
#[tokio::test]
async fn second_connect_is_protocol_error() {
    let b = TestBroker::start().await;
    for v in [V311, V5] {
        let id = format!("twice-{v:?}");
        let mut c = b.client(&id, v).await;
        c.send(&Packet::Connect(Box::new(connect(&id, v)))).await;
        let expected = (v == V5).then_some(ReasonCode::PROTOCOL_ERROR);
        assert_eq!(c.expect_closed().await, expected, "{v:?}");
    }
    assert_broker_serves(&b).await;
}

/// §3.2.2.3.2, §3.2.2.3.3, §3.2.2.3.6, §3.2.2.3.8 CONNACK advertises the server's limits to
/// MQTT 5 clients: Receive Maximum when below 65,535 (absent means 65,535), Maximum Packet
/// Size, Topic Alias Maximum, and the Session Expiry Interval when the server uses another
/// value than the one requested.
#[tokio::test]
async fn connack_properties_advertise_limits() {
    let b = TestBroker::with(|s| {
        s.receive_maximum = 10;
        s.topic_alias_maximum = 5;
        s.clients.max_packet_size = 4096;
        s.clients.max_session_expiry_secs = 30;
    })
    .await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect_persistent("limits", V5, 3600)).await;
    assert_eq!(ack.code, 0);
    let p = &ack.properties;
    assert_eq!(p.receive_maximum, Some(10));
    assert_eq!(p.maximum_packet_size, Some(4096));
    assert_eq!(p.topic_alias_maximum, Some(5));
    assert_eq!(
        p.session_expiry_interval,
        Some(30),
        "the capped expiry is returned"
    );

    // Defaults: Receive Maximum 100 (as Azure IoT Operations); an uncapped expiry is not
    // returned.
    let b = TestBroker::start().await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect_persistent("defaults", V5, 3600)).await;
    assert_eq!(ack.properties.receive_maximum, Some(100));
    assert_eq!(
        ack.properties.session_expiry_interval, None,
        "the requested expiry was granted"
    );
    assert!(ack.properties.maximum_packet_size.is_some());
}

/// §3.2.2.3.2 The Session Expiry Interval the server returns is the one it uses: a session
/// capped to 1 s is gone 1.5 s after its connection closed, even when DISCONNECT asks for
/// more (§3.14.2.2.2).
#[tokio::test]
async fn capped_session_expiry_is_enforced() {
    let b = TestBroker::with(|s| s.clients.max_session_expiry_secs = 1).await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect_persistent("capped", V5, 3600)).await;
    assert_eq!(ack.properties.session_expiry_interval, Some(1));
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect_persistent("capped", V5, 3600)).await;
    assert!(
        !ack.session_present,
        "the session expired after the capped interval"
    );

    // DISCONNECT cannot lift the cap either.
    c.sub("capped/t", QoS::AtLeastOnce).await;
    let mut d = Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(3600);
    c.send(&Packet::Disconnect(d)).await;
    assert_eq!(c.expect_closed().await, None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect_persistent("capped", V5, 3600)).await;
    assert!(
        !ack.session_present,
        "the expiry set on DISCONNECT is capped as well"
    );
}

/// [MQTT-3.1.4-3] (3.1.1: [MQTT-3.1.4-2]) A CONNECT with the client id of a connected client
/// takes the session over: the existing connection gets DISCONNECT 0x8E (MQTT 5) and is
/// closed, the new one works.
#[tokio::test]
async fn takeover_closes_existing_connection() {
    let b = TestBroker::start().await;
    for v in [V311, V5] {
        let id = format!("taken-{v:?}");
        let mut old = b.client(&id, v).await;
        let mut new = b.client(&id, v).await;
        let expected = (v == V5).then_some(ReasonCode::SESSION_TAKEN_OVER);
        assert_eq!(old.expect_closed().await, expected, "{v:?}");
        new.sub("taken/t", QoS::AtLeastOnce).await;
        new.publish(publish("taken/t", "still here", QoS::AtLeastOnce, 2))
            .await;
        assert_eq!(
            &new.receive_and_ack().await.payload[..],
            b"still here",
            "{v:?}"
        );
    }
}

/// §3.1.4 (1): a server SHOULD close a connection that sends no CONNECT within a reasonable
/// time. A connection that sends nothing, or only part of a CONNECT, is closed after the
/// connect timeout without any packet; a connection that did connect is unaffected.
#[tokio::test]
async fn connect_timeout_closes_silent_connections() {
    let timeout = Duration::from_millis(300);
    let b = TestBroker::with(|s| s.connect_timeout = timeout).await;

    let started = Instant::now();
    let mut silent = Client::open(b.addr, V5).await;
    let mut partial = Client::open(b.addr, V5).await;
    let mut bytes = BytesMut::new();
    codec::encode(
        &Packet::Connect(Box::new(connect("slow", V5))),
        V5,
        &mut bytes,
    );
    partial.send_raw(&bytes[..bytes.len() / 2]).await;

    assert_eq!(silent.expect_closed().await, None);
    assert_eq!(partial.expect_closed().await, None);
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(50),
        "closed before the timeout"
    );

    // A prompt CONNECT is unaffected.
    let mut c = b.client("prompt", V5).await;
    tokio::time::sleep(timeout * 2).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

// ---- MQTT over WebSocket (§6) --------------------------------------------------------------

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw MQTT client over WebSocket binary frames.
struct WsClient {
    ws: WsStream,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl WsClient {
    /// Open `ws://addr/mqtt` offering the `mqtt` subprotocol; returns the client and the
    /// subprotocol the server selected.
    async fn open(b: &TestBroker, version: ProtocolVersion) -> (WsClient, Option<String>) {
        let mut req = format!("ws://{}/mqtt", b.ws_addr())
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let (ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket handshake");
        let proto = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        (
            WsClient {
                ws,
                rbuf: BytesMut::new(),
                version,
            },
            proto,
        )
    }

    fn encode(&self, p: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        codec::encode(p, self.version, &mut out);
        out.to_vec()
    }

    async fn send_frame(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("websocket send");
    }

    async fn send(&mut self, p: &Packet) {
        let bytes = self.encode(p);
        self.send_frame(bytes).await;
    }

    /// The next packet, or `None` if the connection closed or nothing came within [`WAIT`].
    async fn recv(&mut self) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match codec::decode(&mut self.rbuf, self.version, usize::MAX) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => panic!("broker sent an invalid packet: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(data)))) => self.rbuf.extend_from_slice(&data),
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => {
                    return None
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Assert the server closes the connection within [`WAIT`]; a DISCONNECT may come first,
    /// no other packet may.
    async fn expect_closed(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match codec::decode(&mut self.rbuf, self.version, usize::MAX) {
                Ok(Some(Packet::Disconnect(_))) | Ok(None) => {}
                Ok(Some(p)) => panic!("expected the connection to close, got {p:?}"),
                Err(e) => panic!("broker sent an invalid packet: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(data)))) => self.rbuf.extend_from_slice(&data),
                Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return,
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!("connection still open after {WAIT:?}"),
            }
        }
    }
}

/// [MQTT-6.0.0-2] [MQTT-6.0.0-3] [MQTT-6.0.0-4] MQTT over WebSocket on `/mqtt`: the server
/// selects the `mqtt` subprotocol, packets may be split across and packed into binary frames,
/// and CONNECT, SUBSCRIBE and PUBLISH work in both directions with TCP clients.
#[tokio::test]
async fn websocket_carries_mqtt() {
    let b = TestBroker::start().await;
    for v in [V311, V5] {
        let (mut ws, proto) = WsClient::open(&b, v).await;
        assert_eq!(
            proto.as_deref(),
            Some("mqtt"),
            "{v:?}: selected subprotocol"
        );

        // CONNECT split over two frames.
        let id = format!("ws-{v:?}");
        let bytes = ws.encode(&Packet::Connect(Box::new(connect(&id, v))));
        let (head, tail) = bytes.split_at(5);
        ws.send_frame(head.to_vec()).await;
        ws.send_frame(tail.to_vec()).await;
        match ws.recv().await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0, "{v:?}"),
            other => panic!("{v:?}: expected CONNACK, got {other:?}"),
        }

        // SUBSCRIBE and PINGREQ packed into one frame; their answers may come in any order.
        let mut both = ws.encode(&Packet::Subscribe(subscribe(
            1,
            &[("ws/in", QoS::AtLeastOnce)],
        )));
        both.extend(ws.encode(&Packet::PingReq));
        ws.send_frame(both).await;
        let (mut suback, mut pingresp) = (false, false);
        for _ in 0..2 {
            match ws.recv().await {
                Some(Packet::SubAck(a)) => {
                    assert_eq!(a.reasons, vec![ReasonCode::GRANTED_QOS_1], "{v:?}");
                    suback = true;
                }
                Some(Packet::PingResp) => pingresp = true,
                other => panic!("{v:?}: expected SUBACK and PINGRESP, got {other:?}"),
            }
        }
        assert!(
            suback && pingresp,
            "{v:?}: both packets of the frame are answered"
        );

        // TCP -> WebSocket.
        let mut tcp = b.client(&format!("tcp-{v:?}"), V5).await;
        tcp.sub("ws/out", QoS::AtLeastOnce).await;
        tcp.publish(publish("ws/in", "to ws", QoS::AtLeastOnce, 1))
            .await;
        match ws.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!(
                    (p.topic.as_str(), &p.payload[..]),
                    ("ws/in", &b"to ws"[..]),
                    "{v:?}"
                );
                ws.send(&Packet::PubAck(codec::Ack::new(
                    p.packet_id,
                    ReasonCode::SUCCESS,
                )))
                .await;
            }
            other => panic!("{v:?}: expected PUBLISH, got {other:?}"),
        }

        // WebSocket -> TCP.
        ws.send(&Packet::Publish(publish(
            "ws/out",
            "from ws",
            QoS::AtLeastOnce,
            9,
        )))
        .await;
        match ws.recv().await {
            Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, 9, "{v:?}"),
            other => panic!("{v:?}: expected PUBACK, got {other:?}"),
        }
        assert_eq!(
            &tcp.receive_and_ack().await.payload[..],
            b"from ws",
            "{v:?}"
        );
    }
}

/// §6 MQTT is served on `/mqtt` only: a WebSocket upgrade on another path is refused.
#[tokio::test]
async fn websocket_wrong_path_refused() {
    let b = TestBroker::start().await;
    let mut req = format!("ws://{}/other", b.ws_addr())
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        Err(e) => panic!("expected an HTTP 404 refusal, got {e}"),
        Ok(_) => panic!("upgrade on /other was accepted"),
    }
}

/// [MQTT-6.0.0-1] MQTT packets travel in binary frames: a text frame closes the connection.
#[tokio::test]
async fn websocket_text_frame_closes() {
    let b = TestBroker::start().await;
    let (mut ws, _) = WsClient::open(&b, V5).await;
    ws.send(&Packet::Connect(Box::new(connect("ws-text", V5))))
        .await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(a)) if a.code == 0));
    ws.ws
        .send(Message::Text("\u{c0}\u{0}".into()))
        .await
        .expect("websocket send");
    ws.expect_closed().await;
}

/// [MQTT-3.2.0-1] [MQTT-3.1.4-5] A client may send packets right after CONNECT without waiting:
/// CONNACK still comes first, and the pipelined packets are then processed.
#[tokio::test]
async fn packets_pipelined_after_connect_follow_connack() {
    let b = TestBroker::start().await;
    for v in [V311, V5] {
        let mut c = Client::open(b.addr, v).await;
        let mut bytes = BytesMut::new();
        codec::encode(
            &Packet::Connect(Box::new(connect(&format!("eager-{v:?}"), v))),
            v,
            &mut bytes,
        );
        codec::encode(&Packet::PingReq, v, &mut bytes);
        codec::encode(
            &Packet::Subscribe(subscribe(3, &[("eager/t", QoS::AtMostOnce)])),
            v,
            &mut bytes,
        );
        c.send_raw(&bytes).await;
        match c.recv().await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0, "{v:?}"),
            other => panic!("{v:?}: expected CONNACK first, got {other:?}"),
        }
        let (mut pingresp, mut suback) = (false, false);
        for _ in 0..2 {
            match c.recv().await {
                Some(Packet::PingResp) => pingresp = true,
                Some(Packet::SubAck(a)) => suback = a.packet_id == 3,
                other => panic!("{v:?}: expected PINGRESP and SUBACK, got {other:?}"),
            }
        }
        assert!(pingresp && suback, "{v:?}");
    }
}

/// [MQTT-4.12.0-1] A CONNECT with an Authentication Method the server does not support gets
/// CONNACK 0x8C (Bad authentication method) and the connection is closed.
#[tokio::test]
async fn unsupported_authentication_method_refused() {
    let b = TestBroker::start().await;
    let mut c = Client::open(b.addr, V5).await;
    let mut conn = connect("enhanced", V5);
    conn.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let ack = c.connect(conn).await;
    assert_eq!(ack.code, 0x8C);
    assert_eq!(c.expect_closed().await, None);
    assert_broker_serves(&b).await;
}
