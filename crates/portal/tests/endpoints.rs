//! The portal over real sockets: a broker started in process, the portal serving its
//! counters and readiness checks, and plain HTTP/1.1 requests written on a TCP stream.

use std::net::SocketAddr;

use edgeplane_portal::{Listen, Portal, PortalError, Readiness};
use edgeplane_tests::codec::QoS;
use edgeplane_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Response {
    status: u16,
    head: String,
    body: String,
}

/// One request on a fresh connection, `Connection: close`, read to the end.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let exchange = async {
        let mut s = TcpStream::connect(addr)
            .await
            .expect("connect to the portal");
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read response");
        buf
    };
    let buf = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("response within 5 s");
    let text = String::from_utf8(buf).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    Response {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path).await
}

fn listen_any(origin: &str) -> Listen {
    Listen {
        addr: loopback(),
        origin: origin.into(),
    }
}

async fn start_portal(b: &TestBroker, readiness: Readiness) -> Portal {
    Portal::start(
        &listen_any("--http"),
        &listen_any("--metrics"),
        b.broker.stats_handle(),
        readiness,
    )
    .await
    .expect("portal starts")
}

/// The value of the sample `series` (name and labels as written) in an exposition.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// `/readyz` is 503 naming each failing check, 200 once all pass, and follows a check
/// that fails again; `/healthz` answers throughout.
#[tokio::test]
async fn readiness_follows_named_checks() {
    let b = TestBroker::start().await;
    let readiness = Readiness::default();
    let broker = readiness.register("broker", "starting");
    let storage = readiness.register("storage", "recovering");
    let portal = start_portal(&b, readiness).await;
    let http = portal.http_addr();

    let r = get(http, "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "[-]broker failed: starting\n[-]storage failed: recovering\nreadyz check failed\n"
    );
    let r = get(http, "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    broker.ready();
    storage.ready();
    let r = get(http, "/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "[+]broker ok\n[+]storage ok\nreadyz check passed\n");

    storage.not_ready("cannot write /var/lib/edgeplane: no space left on device");
    let r = get(http, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains(
            "[-]storage failed: cannot write /var/lib/edgeplane: no space left on device\n"
        ),
        "{}",
        r.body
    );
    storage.ready();
    assert_eq!(get(http, "/readyz").await.status, 200);
}

/// After real MQTT traffic the counters on both addresses say what happened.
#[tokio::test]
async fn metrics_count_mqtt_traffic() {
    let b = TestBroker::start().await;
    let portal = start_portal(&b, Readiness::default()).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("plant/line1/#", QoS::AtLeastOnce).await;
    let mut publisher = b.client("pub", V5).await;
    for i in 1..=3 {
        let topic = format!("plant/line1/cell{i}");
        publisher
            .publish(publish(&topic, "21.5", QoS::AtLeastOnce, i))
            .await;
        sub.receive_and_ack().await;
    }

    let r = get(portal.metrics_addr(), "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.head
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        r.head
    );
    let m = &r.body;
    assert_eq!(sample(m, "aio_broker_publishes_received_total"), 3.0);
    assert_eq!(sample(m, "aio_broker_publishes_sent_total"), 3.0);
    assert_eq!(sample(m, "aio_broker_connected_sessions"), 2.0);
    assert_eq!(sample(m, "aio_broker_total_subscriptions"), 1.0);
    assert_eq!(sample(m, "aio_broker_total_sessions"), 2.0);
    assert_eq!(sample(m, "edgeplane_clients_maximum"), 2.0);
    assert!(sample(m, "edgeplane_received_bytes_total") > 0.0);
    assert!(sample(m, "edgeplane_sent_publish_bytes_total") >= 3.0 * 4.0);
    let dropped = "edgeplane_messages_dropped_total{cause=\"qos0_offline\"}";
    assert_eq!(sample(m, dropped), 0.0);
    let version = format!(
        "edgeplane_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(m, &version), 1.0);

    // The HTTP address serves the same document.
    let r = get(portal.http_addr(), "/metrics").await;
    assert_eq!(sample(&r.body, "aio_broker_publishes_sent_total"), 3.0);

    // A persistent session left offline with a QoS 0 subscription drops what it is sent.
    let mut offline = Client::open(b.addr, V5).await;
    assert_eq!(
        offline
            .connect(connect_persistent("offline", V5, 60))
            .await
            .code,
        0
    );
    offline.sub("alarms", QoS::AtMostOnce).await;
    publisher.disconnect().await;
    offline.disconnect().await;
    scrape_until(portal.metrics_addr(), "only `sub` connected", |m| {
        sample(m, "aio_broker_connected_sessions") == 1.0
    })
    .await;
    let mut late = b.client("late", V5).await;
    late.publish(publish("alarms", "overheat", QoS::AtLeastOnce, 1))
        .await;
    let m = scrape_until(portal.metrics_addr(), "the QoS 0 drop counted", |m| {
        sample(m, dropped) == 1.0
    })
    .await;
    assert_eq!(sample(&m, "aio_broker_connected_sessions"), 2.0);
    assert_eq!(sample(&m, "aio_broker_total_subscriptions"), 2.0);
    assert_eq!(sample(&m, "edgeplane_clients_maximum"), 3.0);
    // sub, offline (persistent, disconnected) and late exist; publisher's clean session ended.
    assert_eq!(sample(&m, "aio_broker_total_sessions"), 3.0);
    assert_eq!(sample(&m, "aio_broker_publishes_received_total"), 4.0);
}

/// Scrape until `done` holds for the exposition, for at most [`WAIT`].
async fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = get(addr, "/metrics").await.body;
        if done(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 5 s: {what}; last scrape:\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Unknown paths say what is served; the metrics address serves nothing but metrics;
/// only GET (and HEAD) are allowed.
#[tokio::test]
async fn unknown_paths_and_methods() {
    let b = TestBroker::start().await;
    let portal = start_portal(&b, Readiness::default()).await;
    let r = get(portal.http_addr(), "/status").await;
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("/healthz, /readyz and /metrics"),
        "{}",
        r.body
    );
    let r = get(portal.metrics_addr(), "/healthz").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("serves /metrics"), "{}", r.body);
    let r = request(portal.http_addr(), "POST", "/metrics").await;
    assert_eq!(r.status, 405);
}

/// An address in use is refused with the address and the setting that chose it.
#[tokio::test]
async fn bind_failure_names_address_and_origin() {
    let b = TestBroker::start().await;
    let taken = std::net::TcpListener::bind(loopback()).expect("bind a port");
    let addr = taken.local_addr().expect("local addr");
    let metrics = Listen {
        addr,
        origin: "Broker diagnostics.metrics.prometheusPort".into(),
    };
    let result = Portal::start(
        &listen_any("--http"),
        &metrics,
        b.broker.stats_handle(),
        Readiness::default(),
    )
    .await;
    match result {
        Err(e @ PortalError::Bind { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&addr.to_string()), "{msg}");
            assert!(msg.contains("for metrics"), "{msg}");
            assert!(msg.contains("prometheusPort"), "{msg}");
        }
        Ok(_) => panic!("{addr} is taken, yet the portal started"),
    }
}
