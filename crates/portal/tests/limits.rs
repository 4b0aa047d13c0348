//! The portal's bounded lists over real sockets, each pushed past its bound: connected
//! clients (the first 1,000 by client id, with the total; `limit` capped at 1,000 and
//! checked), the activity log (the newest 1,000 served, every entry kept in the file),
//! state store keys (500 shown, with the total), retained messages (500 shown; the broker
//! page counts them all) and the topic explorer (100 messages a second; what it skips is
//! counted in the next event, so nothing goes missing unsaid).
//!
//! The CSV import's 1,000 rows are the browser's (`ui/assets.js`): see `asset_csv.rs`.

mod common;

use common::{call, start_with_state, Http};
use edgeplane_codec::QoS;
use edgeplane_portal::Portal;
use edgeplane_registry::Registry;
use edgeplane_tests::*;
use serde_json::Value;

async fn start(data_dir: Option<&std::path::Path>) -> (TestBroker, Portal) {
    let registry = Registry::open(None).expect("registry");
    start_with_state(registry, None, data_dir.map(Into::into)).await
}

fn items(body: &Value) -> &[Value] {
    body["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("items in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_list_shows_the_first_1000_and_the_total() {
    let (b, portal) = start(None).await;
    let admin = Http::set_up(portal.http_addr()).await;
    const CONNECTED: usize = 1003;
    let broker = b.addr;
    let mut clients = Vec::with_capacity(CONNECTED);
    for batch in (0..CONNECTED).collect::<Vec<_>>().chunks(100) {
        let opened = futures_util::future::join_all(batch.iter().map(|n| async move {
            let mut c = Client::open(broker, V5).await;
            let ack = c.connect(connect(&format!("c-{n:04}"), V5)).await;
            assert_eq!(ack.code, 0, "CONNACK for c-{n:04}");
            c
        }))
        .await;
        clients.extend(opened);
    }

    let want: Vec<String> = (0..1000).map(|n| format!("c-{n:04}")).collect();
    let ids = |body: &Value| -> Vec<String> {
        items(body)
            .iter()
            .map(|c| c["clientId"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (code, body) = call(&admin, "GET", "/api/v1/broker/clients", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (
            body["total"].as_u64(),
            body["limit"].as_u64(),
            body["complete"].as_bool()
        ),
        (Some(CONNECTED as u64), Some(1000), Some(true)),
        "total, limit, complete"
    );
    assert_eq!(ids(&body), want, "the first 1,000 by client id, in order");

    // Asking for more than 1,000 gets 1,000; a limit that is no whole number from 1 up is
    // refused with its field, as the page's documentation says.
    let (code, body) = call(&admin, "GET", "/api/v1/broker/clients?limit=5000", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["limit"].as_u64(), Some(1000));
    assert_eq!(body["total"].as_u64(), Some(CONNECTED as u64));
    assert_eq!(ids(&body), want);
    let (code, body) = call(&admin, "GET", "/api/v1/broker/clients?limit=3", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(ids(&body), ["c-0000", "c-0001", "c-0002"]);
    for bad in ["0", "-1", "many"] {
        let path = format!("/api/v1/broker/clients?limit={bad}");
        let (code, body) = call(&admin, "GET", &path, "").await;
        assert_eq!(code, 422, "limit={bad}: {body}");
        assert_eq!(body["errors"][0]["field"], "limit", "{body}");
    }
    drop(clients);
}

/// `user action resource` of each activity entry.
fn entries(body: &Value) -> Vec<String> {
    items(body)
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            format!("{} {} {}", text("user"), text("action"), text("resource"))
        })
        .collect()
}

#[tokio::test]
async fn activity_keeps_the_newest_1000_and_state_keys_show_500() {
    let dir = TempDir::new("portal-limits-activity");
    let (_b, portal) = start(Some(&dir)).await;
    let admin = Http::set_up(portal.http_addr()).await;
    const KEYS: usize = 1001;
    for n in 0..KEYS {
        let path = format!("/api/v1/state/k{n:04}");
        let a = admin.send("PUT", &path, "v", &[]).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }

    // 1,002 changes (the set-up and 1,001 keys): the newest 1,000 are served, newest first.
    let (code, log) = call(&admin, "GET", "/api/v1/activity", "").await;
    assert_eq!(code, 200, "{log}");
    let served = entries(&log);
    assert_eq!(served.len(), 1000);
    assert_eq!(served[0], "admin set StateStoreKey/k1000");
    assert_eq!(served[999], "admin set StateStoreKey/k0001");
    assert!(
        !served
            .iter()
            .any(|e| e.ends_with("k0000") || e.contains("set up")),
        "the two oldest are no longer served"
    );
    // The file keeps every entry.
    let file = std::fs::read_to_string(dir.join("portal-activity.jsonl")).expect("activity file");
    assert_eq!(file.lines().count(), KEYS + 1);

    // State store keys: 500 shown, the total given.
    let (code, body) = call(&admin, "GET", "/api/v1/state?pattern=k*", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["total"].as_u64(), Some(KEYS as u64));
    let shown: std::collections::BTreeSet<&str> = items(&body)
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(shown.len(), 500, "500 distinct keys shown");
    assert!(shown.iter().all(|k| k.starts_with('k')), "{shown:?}");
    drop(portal);

    // After a restart the newest 1,000 of the file are served again, then the new sign-in.
    let (_b2, portal) = start(Some(&dir)).await;
    let admin = Http::sign_in(portal.http_addr()).await;
    let (_, log) = call(&admin, "GET", "/api/v1/activity", "").await;
    let served = entries(&log);
    assert_eq!(served.len(), 1000);
    assert_eq!(served[0], "admin signed in ");
    assert_eq!(served[1], "admin set StateStoreKey/k1000");
    assert_eq!(served[999], "admin set StateStoreKey/k0002");
}

#[tokio::test]
async fn retained_messages_show_500_and_the_broker_counts_all() {
    let (b, portal) = start(None).await;
    let admin = Http::set_up(portal.http_addr()).await;
    const RETAINED: usize = 502;
    let mut publisher = Client::open(b.addr, V5).await;
    assert_eq!(publisher.connect(connect("pub", V5)).await.code, 0);
    for n in 0..RETAINED {
        let mut p = publish(&format!("r/{n:04}"), "kept", QoS::AtLeastOnce, n as u16 + 1);
        p.retain = true;
        publisher.publish(p).await;
    }
    let (code, body) = call(&admin, "GET", "/api/v1/broker", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["counters"]["retained"].as_u64(), Some(RETAINED as u64));

    // The list is gathered within a quiet spell; ask again while the machine is busy.
    let deadline = tokio::time::Instant::now() + STARTUP;
    let topics = loop {
        let (code, body) = call(&admin, "GET", "/api/v1/broker/retained?filter=r%2F%2B", "").await;
        assert_eq!(code, 200, "{body}");
        let topics: std::collections::BTreeSet<String> = items(&body)
            .iter()
            .filter_map(|m| m["topic"].as_str().map(str::to_owned))
            .collect();
        assert!(topics.len() <= 500, "at most 500: {}", topics.len());
        if topics.len() == 500 {
            break topics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retained messages listed: {}",
            topics.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(topics.iter().all(|t| t.starts_with("r/")), "{topics:?}");
}

/// The `data:` lines of a Server-Sent Events text that are whole JSON objects.
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_stream_counts_what_it_skips() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (b, portal) = start(None).await;
    let admin = Http::set_up(portal.http_addr()).await;
    let addr = portal.http_addr();
    let cookie = admin.cookie.clone().expect("cookie");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET /api/v1/topics/stream?filter=burst%2F%23 HTTP/1.1\r\nHost: {addr}\r\nCookie: edgeplane_session={cookie}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    // The answer's head comes once the explorer's session has subscribed.
    let mut seen = String::new();
    let mut buf = vec![0u8; 65536];
    tokio::time::timeout(WAIT, async {
        while !seen.contains("\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("the stream's head");
    assert!(seen.contains("text/event-stream"), "{seen}");

    const BURST: usize = 1000;
    let mut publisher = Client::open(b.addr, V5).await;
    assert_eq!(publisher.connect(connect("burst", V5)).await.code, 0);
    for n in 0..BURST {
        publisher
            .publish(publish(&format!("burst/{n}"), "x", QoS::AtMostOnce, 0))
            .await;
    }
    // A last message after the rate window: its event reports what was skipped before it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    publisher
        .publish(publish("burst/end", "x", QoS::AtMostOnce, 0))
        .await;
    let got = tokio::time::timeout(STARTUP, async {
        loop {
            let got = events(&seen);
            if got.iter().any(|e| e["topic"] == "burst/end") {
                return got;
            }
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("the last message reaches the stream");
    let (code, broker) = call(&admin, "GET", "/api/v1/broker", "").await;
    assert_eq!(code, 200);
    assert_eq!(
        broker["counters"]["droppedQueueFull"].as_u64(),
        Some(0),
        "the broker dropped nothing"
    );
    let shown = got.iter().filter(|e| e["topic"] != "burst/end").count();
    let skipped: u64 = got.iter().filter_map(|e| e["skipped"].as_u64()).sum();
    eprintln!("topic stream: {shown} of {BURST} shown, {skipped} counted as skipped");
    assert_eq!(
        shown as u64 + skipped,
        BURST as u64,
        "every message of the burst is shown or counted as skipped"
    );
    assert!(
        got.iter()
            .all(|e| e["payload"] == "x"
                && e["topic"].as_str().is_some_and(|t| t.starts_with("burst/"))),
        "{got:?}"
    );
}
