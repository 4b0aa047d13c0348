//! §3.1.2.10 Keep Alive, §3.12 PINGREQ/PINGRESP and §3.2.2.3.14 Server Keep Alive: the server
//! answers pings, closes a connection silent for 1.5 times its keep alive (publishing the
//! will), never times out a keep alive of 0, and enforces the keep alive it imposes.

use std::time::{Duration, Instant};

use edgeplane_tests::codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use edgeplane_tests::*;

/// A clean-start CONNECT with the given keep alive (seconds).
fn keep_alive(id: &str, v: ProtocolVersion, secs: u16) -> Connect {
    let mut c = connect(id, v);
    c.keep_alive = secs;
    c
}

async fn connected(b: &TestBroker, c: Connect) -> Client {
    let mut client = Client::open(b.addr, c.protocol).await;
    let ack = client.connect(c).await;
    assert_eq!(ack.code, 0);
    client
}

/// [MQTT-3.12.4-1] The server answers every PINGREQ with a PINGRESP.
#[tokio::test]
async fn pingreq_gets_pingresp() {
    let b = TestBroker::start().await;
    for v in [V311, V5] {
        let mut c = b.client(&format!("pinger-{v:?}"), v).await;
        for _ in 0..3 {
            c.send(&Packet::PingReq).await;
            assert_eq!(c.recv().await, Some(Packet::PingResp), "{v:?}");
        }
    }
}

/// [MQTT-3.1.2-22] [MQTT-3.1.2-8] (3.1.1: [MQTT-3.1.2-24] [MQTT-3.1.2-8]) With keep alive 1 s
/// and no packet from the client, the server closes the connection after 1.5 s (MQTT 5 with
/// DISCONNECT 0x8D first) as if the network had failed, so the will is published.
#[tokio::test]
async fn keep_alive_timeout_closes_connection() {
    let b = TestBroker::start().await;
    let mut w = b.client("watcher", V5).await;
    w.sub("will/#", QoS::AtLeastOnce).await;
    let mut silent = Vec::new();
    for v in [V311, V5] {
        let mut c = keep_alive(&format!("silent-{v:?}"), v, 1);
        c.will = Some(will(
            &format!("will/{v:?}"),
            "timed out",
            QoS::AtLeastOnce,
            false,
        ));
        silent.push((v, connected(&b, c).await));
    }
    let started = Instant::now();
    for (v, mut c) in silent {
        let expected = (v == V5).then_some(ReasonCode::KEEP_ALIVE_TIMEOUT);
        assert_eq!(c.expect_closed().await, expected, "{v:?}");
        let after = started.elapsed();
        assert!(
            after >= Duration::from_millis(1300),
            "{v:?}: closed after {after:?}, before 1.5 x keep alive"
        );
        assert!(
            after < Duration::from_secs(3),
            "{v:?}: closed only after {after:?}"
        );
    }
    let mut wills = vec![
        w.receive_and_ack().await.topic,
        w.receive_and_ack().await.topic,
    ];
    wills.sort();
    assert_eq!(wills, ["will/V311", "will/V5"]);
}

/// [MQTT-3.1.2-22] (3.1.1: [MQTT-3.1.2-24]) Any control packet resets the keep alive timer: a
/// client that sends PINGREQ or PUBLISH every 0.5 s stays connected well past 1.5 x 1 s.
#[tokio::test]
async fn activity_keeps_connection_alive() {
    let b = TestBroker::start().await;
    let mut v311 = connected(&b, keep_alive("busy-V311", V311, 1)).await;
    let mut v5 = connected(&b, keep_alive("busy-V5", V5, 1)).await;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for c in [&mut v311, &mut v5] {
            if round % 2 == 0 {
                c.send(&Packet::PingReq).await;
                assert_eq!(c.recv().await, Some(Packet::PingResp), "round {round}");
            } else {
                c.publish(publish("busy/t", "tick", QoS::AtLeastOnce, round))
                    .await;
            }
        }
    }
}

/// §3.1.2.10 A Keep Alive of 0 turns the mechanism off: an idle client is not disconnected.
#[tokio::test]
async fn keep_alive_zero_never_times_out() {
    let b = TestBroker::start().await;
    let mut clients = Vec::new();
    for v in [V311, V5] {
        let mut c = Client::open(b.addr, v).await;
        let ack = c.connect(keep_alive(&format!("idle-{v:?}"), v, 0)).await;
        assert_eq!(
            ack.properties.server_keep_alive, None,
            "{v:?}: no limit is imposed"
        );
        clients.push((v, c));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (v, mut c) in clients {
        assert_eq!(
            c.observe(QUIET).await,
            Observed::Silent,
            "{v:?}: still connected and idle"
        );
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp), "{v:?}");
    }
}

/// [MQTT-3.2.2-21] [MQTT-3.2.2-22] With `max_keep_alive_secs` the server caps a larger (or
/// disabled) keep alive, tells MQTT 5 clients in Server Keep Alive, and enforces the capped
/// value; a keep alive within the cap is used as sent and not echoed.
#[tokio::test]
async fn server_keep_alive_caps_and_is_enforced() {
    let b = TestBroker::with(|s| s.clients.max_keep_alive_secs = Some(1)).await;

    let mut within = Client::open(b.addr, V5).await;
    let ack = within.connect(keep_alive("within", V5, 1)).await;
    assert_eq!(
        ack.properties.server_keep_alive, None,
        "[MQTT-3.2.2-22] the client's value stands"
    );

    let mut zero = Client::open(b.addr, V5).await;
    let ack = zero.connect(keep_alive("zero", V5, 0)).await;
    assert_eq!(
        ack.properties.server_keep_alive,
        Some(1),
        "keep alive 0 is capped too"
    );

    let mut capped = Client::open(b.addr, V5).await;
    let ack = capped.connect(keep_alive("capped", V5, 60)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    let started = Instant::now();
    assert_eq!(
        capped.expect_closed().await,
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    let after = started.elapsed();
    assert!(
        after < Duration::from_secs(3),
        "closed after {after:?}: the 1 s cap, not 60 s, applies"
    );
    assert_eq!(
        zero.expect_closed().await,
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert_eq!(
        within.expect_closed().await,
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
}

/// §3.1.2.10: a 3.1.1 client cannot be told of a Server Keep Alive, so the broker's cap does
/// not apply to it: it keeps its own keep alive and is not cut off early.
#[tokio::test]
async fn keep_alive_cap_does_not_apply_to_v311() {
    let b = TestBroker::with(|s| s.clients.max_keep_alive_secs = Some(1)).await;
    let mut c = Client::open(b.addr, V311).await;
    let ack = c.connect(keep_alive("v311-60", V311, 60)).await;
    assert_eq!(ack.code, 0);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PingResp),
        "still connected after 2.2 s idle"
    );
}

/// [MQTT-3.1.2-22] The keep alive is the attached connection's: after a takeover, the old
/// connection's deadline does not close the new one. The new connection (keep alive 2 s,
/// resuming the session) must outlive the old one's 1.5 s, and time out on its own
/// 1.5 x 2 s, counted from its CONNECT.
#[tokio::test]
async fn keep_alive_follows_the_connection_that_took_over() {
    let b = TestBroker::start().await;
    for v in [V311, V5] {
        let id = format!("takeover-ka-{v:?}");
        let mut first = keep_alive(&id, v, 1);
        first.clean_start = false;
        first.properties.session_expiry_interval = (v == V5).then_some(60);
        let mut old = connected(&b, first).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let mut second = keep_alive(&id, v, 2);
        second.clean_start = false;
        second.properties.session_expiry_interval = (v == V5).then_some(60);
        let started = Instant::now();
        let mut new = connected(&b, second).await;
        let expected = (v == V5).then_some(ReasonCode::SESSION_TAKEN_OVER);
        assert_eq!(old.expect_closed().await, expected, "{v:?}: taken over");
        // Past the old connection's deadline (1.5 s after its CONNECT).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            new.observe(QUIET).await,
            Observed::Silent,
            "{v:?}: the new connection is not closed at the old one's deadline"
        );
        let expected = (v == V5).then_some(ReasonCode::KEEP_ALIVE_TIMEOUT);
        assert_eq!(new.expect_closed().await, expected, "{v:?}");
        let after = started.elapsed();
        assert!(
            after >= Duration::from_millis(2800) && after < Duration::from_millis(4500),
            "{v:?}: closed after {after:?}, expected about 3 s (1.5 x 2 s)"
        );
    }
}
