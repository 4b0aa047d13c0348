//! The connected-clients list over real sockets: an MQTT 3.1.1 and an MQTT 5 client with
//! usernames connect to the broker and subscribe; `GET /api/v1/broker/clients` shows each
//! with its username, protocol version, listener, remote address, connect time and
//! subscription count, in-process services left out, to an administrator and a viewer,
//! and to nobody signed out.

mod common;

use common::{call, start_portal, Http};
use edgeplane_codec::{ProtocolVersion, QoS};
use edgeplane_portal::{Portal, Services};
use edgeplane_registry::Registry;
use edgeplane_tests::*;
use serde_json::{json, Value};

async fn start() -> (TestBroker, Portal) {
    let b = TestBroker::start().await;
    let services = Services {
        broker: Some(b.broker.local_factory()),
        ..Services::registry(Registry::open(None).expect("registry"))
    };
    let portal = start_portal(&b, services).await;
    (b, portal)
}

async fn client(b: &TestBroker, id: &str, v: ProtocolVersion, user: &str) -> Client {
    let mut c = Client::open(b.addr, v).await;
    let mut connect = connect(id, v);
    connect.username = Some(user.into());
    let ack = c.connect(connect).await;
    assert_eq!(ack.code, 0, "CONNACK for {id}");
    c
}

fn by_id<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|c| c["clientId"] == id)
        .unwrap_or_else(|| panic!("{id} not listed in {items:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_page_lists_connected_clients() {
    let (b, portal) = start().await;
    let addr = portal.http_addr();
    let admin = Http::set_up(addr).await;

    let mut old = client(&b, "line-3-plc", V311, "plc").await;
    old.sub("plant/line3/#", QoS::AtLeastOnce).await;
    let mut new = client(&b, "dashboard", V5, "grafana").await;
    new.sub("plant/+/temperature", QoS::AtMostOnce).await;
    new.sub("plant/+/pressure", QoS::AtMostOnce).await;
    // The portal's own topic explorer session is in-process: not a client on this list.
    let explorer = b.broker.local_factory();
    let _service = explorer
        .attach(edgeplane_broker::LocalOptions::new("$service"))
        .await
        .expect("in-process client");

    let (code, body) = call(&admin, "GET", "/api/v1/broker/clients", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["total"], 2, "{body}");
    assert_eq!(body["complete"], true);
    assert_eq!(body["limit"], 1000);
    let items = body["items"].as_array().expect("items");
    let ids: Vec<_> = items.iter().map(|c| c["clientId"].clone()).collect();
    assert_eq!(ids, [json!("dashboard"), json!("line-3-plc")], "sorted");

    let plc = by_id(items, "line-3-plc");
    assert_eq!(plc["username"], "plc");
    assert_eq!(plc["protocolVersion"], "3.1.1");
    assert_eq!(plc["listener"], "tcp");
    assert_eq!(plc["subscriptions"], 1);
    assert_eq!(plc["queuedMessages"], 0);
    let remote = plc["remoteAddress"].as_str().expect("remote address");
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let since = plc["connectedSinceMs"].as_u64().expect("connectedSinceMs");
    assert!(
        since <= now_ms && now_ms - since < 60_000,
        "{since} vs {now_ms}"
    );

    let dash = by_id(items, "dashboard");
    assert_eq!(dash["username"], "grafana");
    assert_eq!(dash["protocolVersion"], "5");
    assert_eq!(dash["subscriptions"], 2);
    assert_ne!(dash["remoteAddress"], plc["remoteAddress"]);

    // Bounded: the first by client id, with the total.
    let (code, body) = call(&admin, "GET", "/api/v1/broker/clients?limit=1", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["total"], 2);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["items"][0]["clientId"], "dashboard");
    let (code, body) = call(&admin, "GET", "/api/v1/broker/clients?limit=zero", "").await;
    assert_eq!(code, 422, "{body}");

    // A viewer reads it; nobody signed out does.
    let viewer = json!({"user": "operator", "password": "look only 123", "role": "viewer"});
    let (code, body) = call(&admin, "POST", "/api/v1/users", &viewer.to_string()).await;
    assert_eq!(code, 201, "{body}");
    let operator = Http::sign_in_as(addr, "operator", "look only 123").await;
    let (code, body) = call(&operator, "GET", "/api/v1/broker/clients", "").await;
    assert_eq!((code, body["total"].clone()), (200, json!(2)), "{body}");
    let (code, _) = call(&Http::anonymous(addr), "GET", "/api/v1/broker/clients", "").await;
    assert_eq!(code, 401);

    // A client that disconnects leaves the list.
    old.disconnect().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = call(&admin, "GET", "/api/v1/broker/clients", "").await;
        if body["total"] == 1 {
            assert_eq!(body["items"][0]["clientId"], "dashboard");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
