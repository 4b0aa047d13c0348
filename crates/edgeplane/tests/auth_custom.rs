//! The `Custom` authentication method through the real binary against a real HTTPS server
//! (`custom_auth_server.py`: Python's http.server over TLS, asking for the broker's client
//! certificate): attributes from the webhook used by authorization, a 403 refusal with the
//! server's code (3.1.1: its return code), a 422 and an unreachable server falling through to
//! the next method, an expiry that disconnects the client, the request's shape (api-version,
//! base64 password, extra headers), and no password in the broker's log.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use edgeplane_broker::tls::{issue_ca, issue_leaf};
use edgeplane_tests::codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use edgeplane_tests::*;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

mod auth_support;
use auth_support::{
    ca_config_map, custom_authentication, listener, named_policy, try_connect, BIN,
};

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/custom_auth_server.py");
const ALICE_PASSWORD: &str = "webhook-password-alice";
const CAROL_PASSWORD: &str = "file-password-carol";

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// Start the webhook with a certificate for 127.0.0.1 from a fresh CA that also signs the
/// broker's client certificate; returns the server, its port, and the manifests the broker
/// needs (CA ConfigMap, client certificate Secret).
async fn start_webhook(work: &Path) -> (Child, u16, String) {
    let ca = issue_ca("webhook test CA").expect("CA");
    let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let server = issue_leaf(&ca, "webhook", &names, false).expect("server cert");
    let client = issue_leaf(&ca, "edgeplane-broker", &[], true).expect("client cert");
    for (name, text) in [
        ("webhook.crt", &server.cert_pem),
        ("webhook.key", &server.key_pem),
        ("ca.crt", &ca.cert_pem),
    ] {
        std::fs::write(work.join(name), text).expect("write cert");
    }
    let mut child = Command::new("python3")
        .arg(SERVER)
        .arg(work.join("webhook.crt"))
        .arg(work.join("webhook.key"))
        .arg(work.join("ca.crt"))
        .arg(work.join("requests.jsonl"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the webhook (python3)");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(WAIT, tokio::io::BufReader::new(stdout).lines().next_line())
        .await
        .expect("webhook port within 5 s")
        .expect("read port")
        .expect("webhook printed its port");
    let port: u16 = line.trim().parse().expect("port number");
    let manifests = format!(
        "{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: custom-auth-client-cert}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        ca_config_map("custom-auth-ca", &ca.cert_pem),
        indent(&client.cert_pem),
        indent(&client.key_pem)
    );
    (child, port, manifests)
}

/// Attribute `group: line1` (from the webhook) may use `groups/line1/#`; carol (from the
/// password file) may only connect.
const GROUPS: &str = r#"
    - principals:
        attributes: [{group: line1}]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["groups/{principal.attributes.group}/#"]
      - method: Subscribe
        topics: ["groups/{principal.attributes.group}/#"]
    - principals:
        usernames: [old-carol, carol]
      brokerResources:
      - method: Connect
"#;

/// A port with the webhook first and passwords second, one whose webhook is down, and one
/// that trusts another CA than the one of the webhook's certificate.
fn config(dir: &Path, port: u16, closed_port: u16, manifests: &str) {
    let client_cert = "auth: {x509: {secretRef: custom-auth-client-cert}}";
    let header = "headers: {X-Test-Key: header-value}";
    let webhook = custom_authentication(
        "webhook",
        &[
            &format!("endpoint: https://127.0.0.1:{port}/"),
            "caCertConfigMap: custom-auth-ca",
            client_cert,
            header,
        ],
        true,
    );
    let down = custom_authentication(
        "down",
        &[
            &format!("endpoint: https://127.0.0.1:{closed_port}"),
            "caCertConfigMap: custom-auth-ca",
        ],
        true,
    );
    let untrusted = custom_authentication(
        "untrusted",
        &[
            &format!("endpoint: https://127.0.0.1:{port}"),
            "caCertConfigMap: other-ca",
            client_cert,
            header,
        ],
        true,
    );
    let other_ca = ca_config_map("other-ca", &issue_ca("another CA").expect("CA").cert_pem);
    let groups = named_policy("groups", GROUPS);
    let port = ["authenticationRef: webhook", "authorizationRef: groups"];
    let down_port = ["authenticationRef: down", "authorizationRef: groups"];
    let untrusted_port = ["authenticationRef: untrusted", "authorizationRef: groups"];
    let plant = listener("plant", &[&port, &down_port, &untrusted_port]);
    let text = [
        webhook,
        down,
        untrusted,
        other_ca,
        groups,
        plant,
        manifests.to_owned(),
    ];
    std::fs::write(dir.join("config.yaml"), text.join("---\n")).expect("write config");
}

fn login(id: &str, v: ProtocolVersion, user: &str, password: &str) -> Connect {
    auth_support::login(id, v, Some(user), Some(password))
}

/// A port that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn custom_webhook_decides_with_the_aio_api() {
    let dir = TempDir::new("auth-custom");
    let work = TempDir::new("auth-custom-webhook");
    let (_webhook, port, manifests) = start_webhook(&work).await;
    passwd(
        BIN,
        &dir.join("passwords.yaml"),
        "old-carol",
        CAROL_PASSWORD,
    )
    .await;
    passwd(BIN, &dir.join("passwords.yaml"), "carol", CAROL_PASSWORD).await;
    config(&dir, port, closed_port(), &manifests);
    let broker = start_edgeplane_logged(BIN, &dir, 3).await;
    let (hooked, down, untrusted) = (broker.mqtt[0], broker.mqtt[1], broker.mqtt[2]);

    // Allowed with attributes: authorization grants by the webhook's `group`.
    let (mut alice, code) = try_connect(hooked, login("a1", V5, "alice", ALICE_PASSWORD)).await;
    assert_eq!(code, 0, "the webhook allows alice");
    alice
        .publish(publish("groups/line1/t", "ok", QoS::AtLeastOnce, 1))
        .await;
    alice
        .send(&Packet::Publish(publish(
            "groups/line2/t",
            "no",
            QoS::AtLeastOnce,
            2,
        )))
        .await;
    match alice.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }

    // 403: the server's reason code (134 = 0x86), 3.1.1 return code 0x04.
    let (_c, code) = try_connect(hooked, login("b1", V5, "deny-bob", "pw-b1")).await;
    assert_eq!(code, 0x86);
    let (_c, code) = try_connect(hooked, login("b2", V311, "deny-bob", "pw-b2")).await;
    assert_eq!(code, 0x04);
    // Whatever code the server picks (138 = 0x8A Banned; 3.1.1 has none: 0x05).
    let (_c, code) = try_connect(hooked, login("b3", V5, "ban-bob", "pw-b3")).await;
    assert_eq!(code, 0x8A);
    let (_c, code) = try_connect(hooked, login("b4", V311, "ban-bob", "pw-b4")).await;
    assert_eq!(code, 0x05);

    // 422 (no version in common) is no answer: the password file decides.
    let (_c, code) = try_connect(hooked, login("c1", V5, "old-carol", CAROL_PASSWORD)).await;
    assert_eq!(code, 0, "422 falls through to UsernamePassword");
    let (_c, code) = try_connect(hooked, login("c2", V5, "old-carol", "pw-wrong")).await;
    assert_eq!(code, 0x86, "and that method decides");

    // Unreachable webhook: falls through, and still nobody gets in without credentials.
    let (_c, code) = try_connect(down, login("d1", V5, "carol", CAROL_PASSWORD)).await;
    assert_eq!(code, 0, "unreachable server falls through");
    let (_c, code) = try_connect(down, login("d2", V5, "alice", ALICE_PASSWORD)).await;
    assert_eq!(code, 0x86, "alice is not in the password file");
    let (_c, code) = try_connect(down, connect("d3", V5)).await;
    assert_eq!(code, 0x87, "no method found anonymous credentials relevant");

    // A webhook whose certificate does not chain to caCertConfigMap is never asked.
    let (_c, code) = try_connect(untrusted, login("u1", V5, "alice", ALICE_PASSWORD)).await;
    assert_eq!(
        code, 0x86,
        "TLS to the webhook failed: the password file decided"
    );

    // Expiry: disconnected with 0xA0 Maximum connect time when it passes (3.1.1: closed).
    let start = tokio::time::Instant::now();
    let (mut erin, code) = try_connect(hooked, login("e1", V5, "expire-erin", "pw-e1")).await;
    assert_eq!(code, 0);
    let (mut old, code) = try_connect(hooked, login("e2", V311, "expire-erin", "pw-e2")).await;
    assert_eq!(code, 0);
    assert_eq!(
        erin.expect_closed().await,
        Some(ReasonCode::MAXIMUM_CONNECT_TIME)
    );
    assert_eq!(old.expect_closed().await, None);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(8),
        "closed at the expiry, after {took:?}"
    );
    // A connection without expiry stays.
    alice
        .publish(publish("groups/line1/t", "still", QoS::AtLeastOnce, 3))
        .await;

    // The requests had the API's shape.
    let requests = std::fs::read_to_string(work.join("requests.jsonl")).expect("request log");
    let first: serde_json::Value =
        serde_json::from_str(requests.lines().next().expect("a request")).expect("json");
    assert_eq!(first["path"], "/");
    assert_eq!(first["query"]["api-version"][0], "0.5.0");
    assert_eq!(first["headers"]["x-test-key"], "header-value");
    assert_eq!(first["headers"]["content-type"], "application/json");
    let body: serde_json::Value =
        serde_json::from_str(first["body"].as_str().expect("body")).expect("body json");
    assert_eq!(body["type"], "connect");
    assert_eq!(body["username"], "alice");
    let b64 = base64::engine::general_purpose::STANDARD.encode(ALICE_PASSWORD);
    assert_eq!(body["password"], b64.as_str());

    // The same through a real MQTT 5 client (paho-mqtt).
    let cases = serde_json::json!([
        {"id": "paho-alice", "username": "alice", "password": ALICE_PASSWORD},
        {"id": "paho-deny", "username": "deny-bob", "password": "pw-p1"},
        {"id": "paho-expire", "username": "expire-erin", "password": "pw-p2", "wait": 6},
    ]);
    let r = paho(hooked, "groups/line1/", cases).await;
    assert_eq!(
        (r[0]["connack"].as_u64(), r[0]["echo"].as_str()),
        (Some(0), Some("hello")),
        "webhook attributes authorize paho's subscribe and publish: {r:?}"
    );
    assert_eq!(r[1]["connack"].as_u64(), Some(0x86), "{r:?}");
    assert_eq!(
        (r[2]["connack"].as_u64(), r[2]["disconnect"].as_u64()),
        (Some(0), Some(0xA0)),
        "{r:?}"
    );

    let metrics = broker.scrape().await;
    let log_text = broker.stop().await;
    for expected in [
        "custom authentication server refused the client",
        "cannot connect",
        "invalid peer certificate",
        "does not support API version 0.5.0",
    ] {
        assert!(
            log_text.contains(expected),
            "{expected:?} not in the log:\n{log_text}"
        );
    }
    // Neither the log nor the metrics hold a password, its base64 or a webhook header value.
    let text = format!("{log_text}\n{metrics}");
    for secret in [
        ALICE_PASSWORD,
        b64.as_str(),
        CAROL_PASSWORD,
        "pw-b1",
        "pw-b2",
        "pw-b3",
        "pw-b4",
        "pw-p1",
        "pw-p2",
        "pw-wrong",
        "header-value",
    ] {
        assert!(
            !text.contains(secret),
            "secret {secret:?} in the log or metrics:\n{text}"
        );
    }
}

/// A webhook that is not https, or a missing CA, stops start-up.
#[tokio::test]
async fn custom_settings_are_checked_at_start() {
    let dir = TempDir::new("auth-custom-bad");
    std::fs::write(
        dir.join("config.yaml"),
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthentication\nmetadata: {name: webhook}\nspec:\n  authenticationMethods:\n  - method: Custom\n    customSettings: {endpoint: http://127.0.0.1:1, caCertConfigMap: ca}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: ca}\ndata: {ca.pem: x}\n---\napiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: plant}\nspec:\n  ports:\n  - port: 0\n    bindAddress: 127.0.0.1\n    authenticationRef: webhook\n",
    )
    .expect("write");
    let err = edgeplane_start_failure(BIN, &dir).await;
    assert!(err.contains("https"), "{err}");
}

/// Run `paho_auth.py` (paho-mqtt 2.x, MQTT 5) with `cases`; one JSON result per case.
async fn paho(
    addr: std::net::SocketAddr,
    prefix: &str,
    cases: serde_json::Value,
) -> Vec<serde_json::Value> {
    use tokio::io::AsyncWriteExt;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho_auth.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(prefix)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run paho_auth.py (python3 with paho-mqtt)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(cases.to_string().as_bytes())
        .await
        .expect("write cases");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("paho cases within 60 s")
        .expect("paho finished");
    assert!(out.status.success(), "paho_auth.py failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON result line"))
        .collect()
}
