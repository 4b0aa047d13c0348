//! Authentication and authorization through the real binary: passwords from a Secret made
//! by `edgeplane passwd`, BrokerAuthorization rules with substitution, refusals with the
//! specification's codes in both protocol versions, injection attempts that must not widen a
//! grant, a policy change applied to connected clients, and no password in the logs.

use std::path::Path;
use std::time::Duration;

use edgeplane_tests::codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use edgeplane_tests::*;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");
const SECRET_PASSWORD: &str = "correct-horse-battery-staple";

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("auth-{name}"))
}

const POLICY: &str = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: rules}
spec:
  authorizationPolicies:
    cache: Enabled
    rules:
    - principals:
        usernames: [alice, mallory]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["telemetry/{principal.clientId}/#", "public/data"]
      - method: Subscribe
        topics: ["commands/{principal.clientId}/#", "public/#"]
"#;

fn config(dir: &Path, policy: &str) {
    let text = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: users}
spec:
  authenticationMethods:
  - method: UsernamePassword
    usernamePasswordSettings: {passwordFileSecretRef: edgeplane-passwords}
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: secured}
spec:
  ports:
  - port: 0
    bindAddress: 127.0.0.1
    authenticationRef: users
    authorizationRef: rules
"#;
    std::fs::write(dir.join("listener.yaml"), text).expect("write listener");
    std::fs::write(dir.join("policy.yaml"), policy).expect("write policy");
}

fn login(id: &str, v: ProtocolVersion, user: Option<&str>, password: Option<&str>) -> Connect {
    let mut c = connect(id, v);
    c.username = user.map(Into::into);
    c.password = password.map(|p| p.to_owned().into());
    c
}

async fn try_connect(addr: std::net::SocketAddr, c: Connect) -> (Client, u8) {
    let mut client = Client::open(addr, c.protocol).await;
    let ack = client.connect(c).await;
    (client, ack.code)
}

/// Wrong or missing credentials get the specification's codes, in both versions; the
/// broker's log never contains a password.
#[tokio::test]
async fn refusals_use_the_specified_codes_and_never_log_passwords() {
    let dir = temp_dir("refusals");
    passwd(BIN, &dir.join("passwords.yaml"), "alice", SECRET_PASSWORD).await;
    config(&dir, POLICY);
    let log = dir.join("broker.log");
    let (child, addrs) = start_edgeplane_logging(&dir, &log).await;
    let a = addrs[0];
    let cases = [
        (
            V5,
            None,
            None,
            0x87,
            "no credentials: no method finds them relevant",
        ),
        (
            V5,
            Some("alice"),
            Some("wrong-password-1"),
            0x86,
            "bad password",
        ),
        (
            V5,
            Some("nobody"),
            Some("wrong-password-2"),
            0x86,
            "unknown user",
        ),
        (V311, None, None, 0x05, "3.1.1 not authorized"),
        (
            V311,
            Some("alice"),
            Some("wrong-password-3"),
            0x04,
            "3.1.1 bad user name or password",
        ),
        (V5, Some("alice"), Some(SECRET_PASSWORD), 0x00, "correct"),
        (
            V311,
            Some("alice"),
            Some(SECRET_PASSWORD),
            0x00,
            "correct 3.1.1",
        ),
    ];
    for (i, (v, user, pass, want, why)) in cases.into_iter().enumerate() {
        let (_c, code) = try_connect(a, login(&format!("dev-{i}"), v, user, pass)).await;
        assert_eq!(code, want, "{why}");
    }
    drop(child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("refused"), "refusals are logged:\n{text}");
    for secret in [
        SECRET_PASSWORD,
        "wrong-password-1",
        "wrong-password-2",
        "wrong-password-3",
    ] {
        assert!(!text.contains(secret), "password {secret:?} in the log");
    }
    let manifest = std::fs::read_to_string(dir.join("passwords.yaml")).expect("manifest");
    assert!(manifest.contains("$argon2id$") && !manifest.contains(SECRET_PASSWORD));
}

/// Publish and subscribe only where the rules allow: denied PUBLISH gets PUBACK 0x87 and is
/// not delivered, denied SUBSCRIBE gets SUBACK 0x87 (3.1.1: 0x80).
#[tokio::test]
async fn publish_and_subscribe_follow_the_rules() {
    let dir = temp_dir("rules");
    let file = dir.join("passwords.yaml");
    passwd(BIN, &file, "alice", SECRET_PASSWORD).await;
    config(&dir, POLICY);
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let a = addrs[0];
    let (mut dev, code) =
        try_connect(a, login("dev1", V5, Some("alice"), Some(SECRET_PASSWORD))).await;
    assert_eq!(code, 0);
    let ack = dev
        .subscribe(subscribe(
            1,
            &[
                ("public/#", QoS::AtLeastOnce),
                ("secret/#", QoS::AtLeastOnce),
                ("commands/dev1/#", QoS::AtLeastOnce),
            ],
        ))
        .await;
    assert_eq!(
        ack.reasons,
        vec![ReasonCode(1), ReasonCode::NOT_AUTHORIZED, ReasonCode(1)]
    );
    dev.send(&Packet::Publish(publish(
        "secret/x",
        "no",
        QoS::AtLeastOnce,
        5,
    )))
    .await;
    match dev.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    dev.publish(publish("public/data", "yes", QoS::AtLeastOnce, 6))
        .await;
    let got = dev.receive_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("public/data", &b"yes"[..])
    );
    dev.publish(publish("telemetry/dev1/temp", "t", QoS::AtLeastOnce, 7))
        .await;
    dev.expect_nothing().await;

    let (mut old, code) =
        try_connect(a, login("dev2", V311, Some("alice"), Some(SECRET_PASSWORD))).await;
    assert_eq!(code, 0);
    let ack = old
        .subscribe(subscribe(1, &[("secret/#", QoS::AtMostOnce)]))
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode(0x80)], "3.1.1 failure code");
}

/// Client ids carrying wildcard or glob characters never gain more than the literal value
/// allows: `commands/{principal.clientId}/#` for client id `+` covers `commands/+/...` only
/// as the literal topic level "+", which no one can publish to.
#[tokio::test]
async fn injected_characters_never_widen_a_grant() {
    let dir = temp_dir("injection");
    passwd(BIN, &dir.join("passwords.yaml"), "mallory", SECRET_PASSWORD).await;
    config(&dir, POLICY);
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    for id in ["+", "#", "*", "?", "[a-z]", "a/b", "dev1/+"] {
        let (mut c, code) = try_connect(
            addrs[0],
            login(id, V5, Some("mallory"), Some(SECRET_PASSWORD)),
        )
        .await;
        assert_eq!(code, 0, "{id}");
        for filter in [
            "commands/+/#",
            "commands/#",
            "commands/dev1/#",
            "telemetry/+/x",
        ] {
            let ack = c
                .subscribe(subscribe(1, &[(filter, QoS::AtMostOnce)]))
                .await;
            assert_eq!(
                ack.reasons,
                vec![ReasonCode::NOT_AUTHORIZED],
                "client id {id:?} subscribing {filter}"
            );
        }
        c.send(&Packet::Publish(publish(
            "telemetry/dev1/x",
            "spoof",
            QoS::AtLeastOnce,
            3,
        )))
        .await;
        match c.recv().await {
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED, "client id {id:?}")
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

/// A changed policy applies to clients that are already connected.
#[tokio::test]
async fn changed_policy_applies_to_connected_clients() {
    let dir = temp_dir("reload");
    passwd(BIN, &dir.join("passwords.yaml"), "alice", SECRET_PASSWORD).await;
    config(&dir, POLICY);
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let (mut c, _) = try_connect(
        addrs[0],
        login("dev1", V5, Some("alice"), Some(SECRET_PASSWORD)),
    )
    .await;
    let ack = c
        .subscribe(subscribe(1, &[("extra/t", QoS::AtMostOnce)]))
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode::NOT_AUTHORIZED]);
    // A denied PUBLISH, which the connection's decision cache now remembers.
    assert_eq!(publish_reason(&mut c, 1).await, ReasonCode::NOT_AUTHORIZED);
    std::fs::write(
        dir.join("policy.yaml"),
        POLICY
            .replace("\"public/#\"]", "\"public/#\", \"extra/#\"]")
            .replace("\"public/data\"]", "\"public/data\", \"extra/#\"]"),
    )
    .expect("edit policy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ack = c
            .subscribe(subscribe(2, &[("extra/t", QoS::AtMostOnce)]))
            .await;
        if ack.reasons == vec![ReasonCode(0)] {
            assert_eq!(
                publish_reason(&mut c, 2).await,
                ReasonCode::SUCCESS,
                "the new policy applies to PUBLISH too (the cache followed it)"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "policy change not applied within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A user added with `edgeplane passwd` while the broker runs can connect without a restart.
#[tokio::test]
async fn added_user_can_connect_without_restart() {
    let dir = temp_dir("passwd-reload");
    let file = dir.join("passwords.yaml");
    passwd(BIN, &file, "alice", SECRET_PASSWORD).await;
    config(&dir, POLICY);
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let (_c, code) = try_connect(
        addrs[0],
        login("m1", V5, Some("mallory"), Some("new-password-m")),
    )
    .await;
    assert_eq!(code, 0x86, "mallory does not exist yet");
    passwd(BIN, &file, "mallory", "new-password-m").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let id = format!("m-{attempt}");
        let (_c, code) = try_connect(
            addrs[0],
            login(&id, V5, Some("mallory"), Some("new-password-m")),
        )
        .await;
        if code == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "added user not accepted within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_c, code) = try_connect(
        addrs[0],
        login("a1", V5, Some("alice"), Some(SECRET_PASSWORD)),
    )
    .await;
    assert_eq!(code, 0, "existing users still accepted");
}

/// Publish QoS 1 to `extra/t` and return the PUBACK reason.
async fn publish_reason(c: &mut Client, packet_id: u16) -> ReasonCode {
    c.send(&Packet::Publish(publish(
        "extra/t",
        "x",
        QoS::AtLeastOnce,
        packet_id,
    )))
    .await;
    loop {
        match c.recv().await {
            Some(Packet::PubAck(a)) if a.packet_id == packet_id => return a.reason,
            // Our own message, delivered once the subscription is granted.
            Some(Packet::Publish(_)) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

/// Like `start_edgeplane`, with the broker's log also written to `log`.
async fn start_edgeplane_logging(
    dir: &Path,
    log: &Path,
) -> (tokio::process::Child, Vec<std::net::SocketAddr>) {
    let script = format!(
        "exec {} run --http 127.0.0.1:0 --metrics 127.0.0.1:0 --config {} 2> >(tee {} >&2)",
        BIN,
        dir.display(),
        log.display()
    );
    let wrapper = dir.join("run.sh");
    std::fs::write(&wrapper, format!("#!/usr/bin/env bash\n{script}\n")).expect("wrapper");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .await
        .expect("chmod");
    assert!(status.success());
    start_edgeplane(wrapper.to_str().expect("utf-8 path"), dir, 1).await
}
