//! Authentication and authorization through the real binary: passwords from a Secret made
//! by `edgeplane passwd`, BrokerAuthorization rules with substitution, refusals with the
//! specification's codes in both protocol versions, injection attempts that must not widen a
//! grant, a policy change applied to connected clients, and no password in the logs or metrics.

use std::path::Path;
use std::time::Duration;

use edgeplane_tests::codec::{Packet, QoS, ReasonCode};
use edgeplane_tests::*;

mod auth_support;
use auth_support::{login, policy, try_connect, write_site, BIN};

const SECRET_PASSWORD: &str = "correct-horse-battery-staple";

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("auth-{name}"))
}

const RULES: &str = r#"
    - principals:
        usernames: [alice, mallory]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["telemetry/{principal.clientId}/#", "public/data"]
      - method: Subscribe
        topics: ["commands/{principal.clientId}/#", "public/#"]
"#;

/// A config folder for the `site` listener with `user` (password [`SECRET_PASSWORD`]) and
/// the policy of [`RULES`].
async fn config(dir: &Path, user: &str) {
    write_site(dir, &[(user, SECRET_PASSWORD)], &policy(RULES)).await;
}

/// Wrong or missing credentials get the specification's codes, in both versions; neither
/// the broker's log nor its Prometheus metrics ever contain a password.
#[tokio::test]
async fn refusals_use_the_specified_codes_and_never_log_passwords() {
    let dir = temp_dir("refusals");
    config(&dir, "alice").await;
    let broker = start_edgeplane_logged(BIN, &dir, 1).await;
    let a = broker.mqtt[0];
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
    let metrics = broker.scrape().await;
    // The scrape is of this broker: it counts the wrong passwords (two in MQTT 5, one in
    // 3.1.1) among the refused credentials.
    for (version, refused) in [("5", 2.0), ("3.1.1", 1.0)] {
        let series =
            format!("aio_broker_authentication_failures_total{{mqtt_version=\"{version}\"}}");
        assert!(metric_sample(&metrics, &series) >= refused, "{series}");
    }
    let log = broker.stop().await;
    assert!(log.contains("refused"), "refusals are logged:\n{log}");
    for secret in [
        SECRET_PASSWORD,
        "wrong-password-1",
        "wrong-password-2",
        "wrong-password-3",
    ] {
        assert!(!log.contains(secret), "password {secret:?} in the log");
        assert!(
            !metrics.contains(secret),
            "password {secret:?} in the metrics"
        );
    }
    let manifest = std::fs::read_to_string(dir.join("passwords.yaml")).expect("manifest");
    assert!(manifest.contains("$argon2id$") && !manifest.contains(SECRET_PASSWORD));
}

/// Publish and subscribe only where the rules allow: denied PUBLISH gets PUBACK 0x87 and is
/// not delivered, denied SUBSCRIBE gets SUBACK 0x87 (3.1.1: 0x80).
#[tokio::test]
async fn publish_and_subscribe_follow_the_rules() {
    let dir = temp_dir("rules");
    config(&dir, "alice").await;
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
    config(&dir, "mallory").await;
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
    config(&dir, "alice").await;
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
        policy(
            &RULES
                .replace("\"public/#\"]", "\"public/#\", \"extra/#\"]")
                .replace("\"public/data\"]", "\"public/data\", \"extra/#\"]"),
        ),
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
    config(&dir, "alice").await;
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
