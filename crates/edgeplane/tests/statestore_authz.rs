//! State store authorization through the real binary: MQTT v5 clients on real sockets send
//! the AIO state store protocol (RESP3 requests with `__ts`, response topic and correlation
//! data) to a port whose `BrokerAuthorization` has `stateStoreResources`, and to a port
//! without one. Read/Write methods, Pattern/String/Binary keys, `{principal.clientId}`
//! prefixes, glob injection through the client id, a policy change applied to a connected
//! client, and wills addressed to the state store are each checked by what the client gets
//! back: the value, `+OK`, or `-ERR not authorized`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeplane_tests::codec::{Ack, Packet, Properties, Publish, QoS, ReasonCode};
use edgeplane_tests::*;

mod auth_support;
use auth_support::{policy, start_site, write_site, BIN};

const PASSWORD: &str = "state-store-authz-password";
const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";
const DENIED: &[u8] = b"-ERR not authorized\r\n";
const OK: &[u8] = b"+OK\r\n";

const RULES: &str = r#"
    - principals:
        usernames: [app]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke"]
      - method: Subscribe
        topics: ["clients/{principal.clientId}/#"]
      stateStoreResources:
      - method: Read
        keyType: Pattern
        keys: ["sensor/*"]
      - method: ReadWrite
        keyType: Pattern
        keys: ["clients/{principal.clientId}/*"]
      - method: Write
        keyType: String
        keys: ["config/{principal.clientId}"]
      - method: Read
        keyType: Binary
        keys: ["AP8="]
"#;

/// Port 1 enforces `rules` (`policy`), port 2 authenticates the same users and has none.
async fn start(name: &str) -> (TempDir, tokio::process::Child, SocketAddr, SocketAddr) {
    let dir = format!("ss-authz-{name}");
    start_site(&dir, &[("app", PASSWORD)], &policy(RULES)).await
}

/// A state store client speaking the protocol as the AIO SDK does, over our MQTT v5 client.
struct App {
    client: Client,
    response_topic: String,
    next: u16,
}

impl App {
    async fn connect(addr: SocketAddr, id: &str) -> App {
        let mut client = Client::open(addr, V5).await;
        let mut c = connect(id, V5);
        c.username = Some("app".into());
        c.password = Some(PASSWORD.to_owned().into());
        let ack = client.connect(c).await;
        assert_eq!(ack.code, 0, "CONNACK for {id}");
        let response_topic = format!("clients/{id}/services/statestore/response");
        client.sub(&response_topic, QoS::AtLeastOnce).await;
        App {
            client,
            response_topic,
            next: 1,
        }
    }

    /// Send one request and return the reply's payload.
    async fn call(&mut self, args: &[&[u8]]) -> Vec<u8> {
        let id = self.next;
        self.next += 1;
        let properties = Properties {
            response_topic: Some(self.response_topic.clone()),
            correlation_data: Some(id.to_be_bytes().to_vec().into()),
            user_properties: vec![("__ts".to_owned(), now_hlc())],
            ..Properties::default()
        };
        let request = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: REQUEST_TOPIC.into(),
            packet_id: id,
            properties,
            payload: encode(args).into(),
        };
        self.client.send(&Packet::Publish(request)).await;
        loop {
            match self.client.recv().await {
                Some(Packet::PubAck(a)) if a.packet_id == id => {
                    assert_eq!(a.reason, ReasonCode::SUCCESS, "request PUBACK");
                }
                Some(Packet::Publish(p)) if p.topic == self.response_topic => {
                    if p.qos == QoS::AtLeastOnce {
                        let ack = Ack::new(p.packet_id, ReasonCode::SUCCESS);
                        self.client.send(&Packet::PubAck(ack)).await;
                    }
                    if p.properties.correlation_data.as_deref() != Some(&id.to_be_bytes()[..]) {
                        continue;
                    }
                    let stat = p
                        .properties
                        .user_properties
                        .iter()
                        .find(|(k, _)| k == "__stat");
                    assert_eq!(stat.map(|(_, v)| v.as_str()), Some("200"));
                    return p.payload.to_vec();
                }
                Some(Packet::Publish(p)) => {
                    // A KEYNOTIFY notification: acknowledge and keep waiting.
                    if p.qos == QoS::AtLeastOnce {
                        let ack = Ack::new(p.packet_id, ReasonCode::SUCCESS);
                        self.client.send(&Packet::PubAck(ack)).await;
                    }
                }
                other => panic!("expected the state store's answer, got {other:?}"),
            }
        }
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

fn now_hlc() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:015}:00000:test")
}

/// Seed keys through the port without a policy, where everything is allowed.
async fn seed(open: SocketAddr) {
    let mut admin = App::connect(open, "seeder").await;
    for (k, v) in [
        (&b"sensor/t1"[..], &b"21.5"[..]),
        (b"clients/ab/secret", b"s3cret"),
        (b"clients/other/x", b"theirs"),
        (&[0x00, 0xFF], b"raw"),
        (&[0x00, 0xFE], b"raw2"),
    ] {
        assert_eq!(admin.call(&[b"SET", k, v]).await, OK);
    }
}

/// Read on `sensor/*` allows GET and KEYNOTIFY but not SET or DEL; the client's own
/// `clients/{clientId}/*` prefix is read-write, another client's is refused; String and
/// Binary keys are exact; SCAN lists only readable keys.
#[tokio::test]
async fn grants_follow_methods_and_key_types() {
    let (_dir, _child, secured, open) = start("grants").await;
    seed(open).await;
    let mut app = App::connect(secured, "reader1").await;

    assert_eq!(app.call(&[b"GET", b"sensor/t1"]).await, bulk(b"21.5"));
    assert_eq!(app.call(&[b"KEYNOTIFY", b"sensor/t1"]).await, OK);
    assert_eq!(app.call(&[b"SET", b"sensor/t1", b"99"]).await, DENIED);
    assert_eq!(app.call(&[b"DEL", b"sensor/t1"]).await, DENIED);
    assert_eq!(app.call(&[b"VDEL", b"sensor/t1", b"21.5"]).await, DENIED);
    assert_eq!(app.call(&[b"GET", b"other/key"]).await, DENIED);

    assert_eq!(app.call(&[b"SET", b"clients/reader1/k", b"mine"]).await, OK);
    assert_eq!(
        app.call(&[b"GET", b"clients/reader1/k"]).await,
        bulk(b"mine")
    );
    assert_eq!(app.call(&[b"GET", b"clients/other/x"]).await, DENIED);
    assert_eq!(
        app.call(&[b"SET", b"clients/other/x", b"taken"]).await,
        DENIED
    );
    assert_eq!(app.call(&[b"DEL", b"clients/other/x"]).await, DENIED);

    assert_eq!(app.call(&[b"SET", b"config/reader1", b"c"]).await, OK);
    assert_eq!(app.call(&[b"SET", b"config/reader1x", b"c"]).await, DENIED);
    assert_eq!(
        app.call(&[b"GET", b"config/reader1"]).await,
        DENIED,
        "Write only"
    );

    assert_eq!(app.call(&[b"GET", &[0x00, 0xFF]]).await, bulk(b"raw"));
    assert_eq!(app.call(&[b"GET", &[0x00, 0xFE]]).await, DENIED);

    let listed = app.call(&[b"SCAN", b"*"]).await;
    let expected = [
        &b"*1\r\n*3\r\n"[..],
        &bulk(&[0x00, 0xFF]),
        &bulk(b"clients/reader1/k"),
        &bulk(b"sensor/t1"),
    ]
    .concat();
    assert_eq!(listed, expected, "{}", String::from_utf8_lossy(&listed));

    // The refusals changed nothing.
    let mut admin = App::connect(open, "checker").await;
    assert_eq!(admin.call(&[b"GET", b"sensor/t1"]).await, bulk(b"21.5"));
    assert_eq!(
        admin.call(&[b"GET", b"clients/other/x"]).await,
        bulk(b"theirs")
    );
}

/// A client id full of glob syntax is substituted literally: `a*` reads `clients/a*/…`,
/// never `clients/ab/…`; a port without a policy allows everything.
#[tokio::test]
async fn client_id_injection_cannot_widen_a_grant_and_no_policy_allows_all() {
    let (_dir, _child, secured, open) = start("injection").await;
    seed(open).await;
    for id in ["a*", "?b", "[a-z]b", "a\\"] {
        let mut app = App::connect(secured, id).await;
        assert_eq!(
            app.call(&[b"GET", b"clients/ab/secret"]).await,
            DENIED,
            "{id}"
        );
        assert_eq!(
            app.call(&[b"SET", b"clients/ab/secret", b"x"]).await,
            DENIED,
            "{id}"
        );
        let own = format!("clients/{id}/k");
        assert_eq!(app.call(&[b"SET", own.as_bytes(), b"v"]).await, OK, "{id}");
    }
    let listed = App::connect(secured, "a*")
        .await
        .call(&[b"SCAN", b"clients/*"])
        .await;
    let expected = [&b"*1\r\n*1\r\n"[..], &bulk(b"clients/a*/k")].concat();
    assert_eq!(listed, expected, "{}", String::from_utf8_lossy(&listed));

    let mut free = App::connect(open, "anyone").await;
    assert_eq!(
        free.call(&[b"GET", b"clients/ab/secret"]).await,
        bulk(b"s3cret")
    );
    assert_eq!(free.call(&[b"SET", b"sensor/t1", b"22"]).await, OK);
    assert_eq!(free.call(&[b"DEL", b"clients/other/x"]).await, b":1\r\n");
}

/// A changed policy applies to a client that is already connected, at its next request.
#[tokio::test]
async fn changed_policy_applies_to_connected_clients() {
    let (dir, _child, secured, open) = start("reload").await;
    seed(open).await;
    let mut app = App::connect(secured, "writer").await;
    assert_eq!(app.call(&[b"SET", b"sensor/t1", b"1"]).await, DENIED);
    let widened = policy(&RULES.replace(
        "      - method: Read\n        keyType: Pattern\n        keys: [\"sensor/*\"]",
        "      - method: ReadWrite\n        keyType: Pattern\n        keys: [\"sensor/*\"]",
    ));
    assert_ne!(widened, policy(RULES));
    std::fs::write(dir.join("policy.yaml"), &widened).expect("edit policy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = app.call(&[b"SET", b"sensor/t1", b"2"]).await;
        if reply == OK {
            break;
        }
        assert_eq!(reply, DENIED);
        assert!(
            tokio::time::Instant::now() < deadline,
            "policy change not applied within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(app.call(&[b"GET", b"sensor/t1"]).await, bulk(b"2"));
    // And back: the narrower policy applies as soon as it is read again.
    std::fs::write(dir.join("policy.yaml"), policy(RULES)).expect("restore policy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.call(&[b"SET", b"sensor/t1", b"3"]).await != DENIED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "narrowed policy not applied within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A will addressed to the state store carries its client's principal and port, like the
/// client's PUBLISH: it is refused only where that port's `stateStoreResources` refuse it.
#[tokio::test]
async fn will_to_the_state_store_follows_the_policy_of_its_port() {
    let (_dir, _child, secured, open) = start("will").await;
    for (addr, id, key, answer) in [
        (open, "dying", &b"willed"[..], OK),
        (secured, "dying", b"clients/dying/willed", OK),
        (secured, "dying", b"sensor/willed", DENIED),
    ] {
        let mut watcher = App::connect(addr, "watcher").await;
        let request = String::from_utf8(encode(&[b"SET", key, b"v"])).expect("ascii");
        let mut w = will(REQUEST_TOPIC, &request, QoS::AtLeastOnce, false);
        w.properties.response_topic = Some(watcher.response_topic.clone());
        w.properties.correlation_data = Some(b"will".to_vec().into());
        w.properties.user_properties = vec![("__ts".to_owned(), now_hlc())];
        let mut dying = Client::open(addr, V5).await;
        let mut c = connect(id, V5);
        c.username = Some("app".into());
        c.password = Some(PASSWORD.to_owned().into());
        c.will = Some(w);
        assert_eq!(dying.connect(c).await.code, 0);
        dying.drop_connection();
        let reply = watcher.client.receive_and_ack().await;
        assert_eq!(
            reply.properties.correlation_data.as_deref(),
            Some(&b"will"[..])
        );
        assert_eq!(&reply.payload[..], answer, "will SET {key:?}");
        let mut admin = App::connect(open, "admin").await;
        let stored = if answer == OK {
            bulk(b"v")
        } else {
            b"$-1\r\n".to_vec()
        };
        assert_eq!(
            admin.call(&[b"GET", key]).await,
            stored,
            "{key:?} after the will"
        );
    }
}

/// A malformed `stateStoreResources` entry stops the start with the field named, rather
/// than leaving the keys unprotected.
#[tokio::test]
async fn invalid_state_store_resources_refuse_to_start() {
    let dir = TempDir::new("ss-authz-invalid");
    let invalid = RULES
        .replace("keyType: Binary", "keyType: Regex")
        .replace("method: Write\n", "method: Delete\n");
    write_site(&dir, &[("app", PASSWORD)], &policy(&invalid)).await;
    let err = edgeplane_start_failure(BIN, &dir).await;
    for field in [
        "rules[0].stateStoreResources[2].method",
        "rules[0].stateStoreResources[3].keyType",
    ] {
        assert!(err.contains(field), "{field} not in: {err}");
    }
}

/// A SCAN reply's keys and cursor.
fn parse_scan(reply: &[u8]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    fn line(r: &mut &[u8]) -> Vec<u8> {
        let end = r
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("CRLF in reply");
        let l = r[..end].to_vec();
        *r = &r[end + 2..];
        l
    }
    fn number(l: &[u8], prefix: u8) -> usize {
        assert_eq!(l.first(), Some(&prefix), "{}", String::from_utf8_lossy(l));
        std::str::from_utf8(&l[1..])
            .ok()
            .and_then(|n| n.parse().ok())
            .expect("length")
    }
    fn bulk_of(r: &mut &[u8]) -> Vec<u8> {
        let len = number(&line(r), b'$');
        let v = r[..len].to_vec();
        *r = &r[len + 2..];
        v
    }
    let mut r = reply;
    let parts = number(&line(&mut r), b'*');
    let n = number(&line(&mut r), b'*');
    let keys = (0..n).map(|_| bulk_of(&mut r)).collect();
    let cursor = (parts == 2).then(|| bulk_of(&mut r));
    (keys, cursor)
}

/// SCAN cursors of a restricted client are sealed: a page ending on a key the client cannot
/// read does not name it, the sealed cursor pages on, a made-up cursor is refused; a client
/// on the port without a policy still gets plain cursors.
#[tokio::test]
async fn scan_cursors_never_name_unreadable_keys() {
    let (_dir, _child, secured, open) = start("scan").await;
    seed(open).await;
    let mut admin = App::connect(open, "filler").await;
    for i in 0..100 {
        let key = format!("aaa/{i:03}");
        assert_eq!(admin.call(&[b"SET", key.as_bytes(), b"hidden"]).await, OK);
    }
    let (_, plain) = parse_scan(&admin.call(&[b"SCAN", b"*"]).await);
    // The two binary keys sort first, so the 100th key examined is aaa/097.
    assert_eq!(
        plain.as_deref(),
        Some(&b"aaa/097"[..]),
        "unrestricted: plain"
    );

    let mut app = App::connect(secured, "reader1").await;
    let (mut listed, cursor) = parse_scan(&app.call(&[b"SCAN", b"*"]).await);
    assert_eq!(
        listed,
        vec![vec![0x00, 0xFF]],
        "one readable key on the first page"
    );
    let mut cursor = cursor.expect("more pages");
    assert!(
        !cursor.windows(4).any(|w| w == b"aaa/"),
        "cursor names a key: {cursor:?}"
    );
    for _ in 0..10 {
        let (keys, next) = parse_scan(&app.call(&[b"SCAN", b"*", &cursor]).await);
        listed.extend(keys);
        match next {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(listed, vec![vec![0x00, 0xFF], b"sensor/t1".to_vec()]);
    assert_eq!(
        app.call(&[b"SCAN", b"*", b"aaa/050"]).await,
        b"-ERR syntax error\r\n"
    );
}
