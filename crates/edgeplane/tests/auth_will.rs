//! Will messages under authorization, through the real binary over real sockets: a will is
//! checked at CONNECT against the Publish rules a PUBLISH to its topic would meet, so a
//! client can never leave a will it could not publish. A refused will refuses the
//! connection with CONNACK 0x87 (MQTT 5) or return code 5 (MQTT 3.1.1); an allowed will is
//! delivered when the client goes away.

use std::net::SocketAddr;

use edgeplane_tests::codec::{ProtocolVersion, QoS};
use edgeplane_tests::*;

mod auth_support;
use auth_support::{policy, start_site};

const PASSWORD: &str = "will-authz-password";

/// Each client may publish only under `status/{clientId}` on the port with the policy.
const RULES: &str = r##"
    - principals: {usernames: [app]}
      brokerResources:
      - {method: Connect}
      - {method: Publish, topics: ["status/{principal.clientId}"]}
      - {method: Subscribe, topics: ["status/#"]}
"##;

async fn start(name: &str) -> (TempDir, tokio::process::Child, SocketAddr, SocketAddr) {
    let dir = format!("will-authz-{name}");
    start_site(&dir, &[("app", PASSWORD)], &policy(RULES)).await
}

/// CONNECT as `app` with a will on `topic`: the client and its CONNACK code.
async fn connect_with_will(
    addr: SocketAddr,
    id: &str,
    v: ProtocolVersion,
    topic: &str,
) -> (Client, u8) {
    let mut client = Client::open(addr, v).await;
    let mut c = connect(id, v);
    c.username = Some("app".into());
    c.password = Some(PASSWORD.to_owned().into());
    c.will = Some(will(topic, "gone", QoS::AtLeastOnce, false));
    let code = client.connect(c).await.code;
    (client, code)
}

async fn watcher(addr: SocketAddr) -> Client {
    let mut w = Client::open(addr, V5).await;
    let mut c = connect("watcher", V5);
    c.username = Some("app".into());
    c.password = Some(PASSWORD.to_owned().into());
    assert_eq!(w.connect(c).await.code, 0);
    w.sub("status/#", QoS::AtLeastOnce).await;
    w
}

/// A will on another client's topic is refused at CONNECT in both protocol versions, and the
/// connection is closed; a will on the client's own topic is accepted and delivered.
#[tokio::test]
async fn a_will_the_client_could_not_publish_refuses_the_connection() {
    let (_dir, _child, secured, _open) = start("policy").await;
    let mut watch = watcher(secured).await;

    let (mut c, code) = connect_with_will(secured, "line1", V5, "status/line2").await;
    assert_eq!(code, 0x87, "MQTT 5: Not authorized");
    c.expect_closed().await;
    let (mut c, code) = connect_with_will(secured, "line1", V311, "status/line2").await;
    assert_eq!(code, 5, "MQTT 3.1.1: not authorized");
    c.expect_closed().await;
    // Wildcard-looking client ids never widen the grant: `status/+` is not a topic of `+`.
    let (_c, code) = connect_with_will(secured, "+", V5, "status/line2").await;
    assert_eq!(code, 0x87);

    let (c, code) = connect_with_will(secured, "line1", V5, "status/line1").await;
    assert_eq!(code, 0, "a will on the client's own topic is allowed");
    c.drop_connection();
    let w = watch.receive_and_ack().await;
    assert_eq!(w.topic, "status/line1");
    assert_eq!(&w.payload[..], b"gone");
    // Nothing of the refused wills was ever published.
    watch.expect_nothing().await;
}

/// Without a policy any will is allowed, except on the reserved `$SYS` and `$share`
/// topics, which no client may publish to.
#[tokio::test]
async fn without_a_policy_only_reserved_topics_are_refused() {
    let (_dir, _child, _secured, open) = start("open").await;
    let mut watch = watcher(open).await;
    for (v, refused) in [(V5, 0x87), (V311, 5)] {
        for topic in ["$SYS/broker/uptime", "$share/g/status/x"] {
            let (mut c, code) = connect_with_will(open, "any", v, topic).await;
            assert_eq!(code, refused, "will on {topic} ({v:?})");
            c.expect_closed().await;
        }
    }
    let (c, code) = connect_with_will(open, "any", V311, "status/elsewhere").await;
    assert_eq!(code, 0);
    c.drop_connection();
    let w = watch.receive_and_ack().await;
    assert_eq!(w.topic, "status/elsewhere");
}
