//! Injection through user names and attributes, over real sockets through the binary: a
//! policy grants `users/{principal.username}/#` and `sites/{principal.attributes.site}/#`,
//! and principals whose user name or `site` attribute is one of `+ # * ? [a-z] a] a/b` get
//! exactly the literal value's topic level and nothing more. User names come from the
//! password file, from the custom authentication webhook (served here over HTTPS) and from
//! a client certificate's CN; attributes from the webhook and from X509
//! `authorizationAttributes`. (Client ids: `auth.rs`.)
//!
//! For each value: wildcard filters over the substituted level, another principal's level
//! and `#` get SUBACK 0x87; a PUBLISH to another principal's topic gets PUBACK 0x87 and
//! never reaches a watcher subscribed to everything on a port without a policy. The
//! literal level works where MQTT allows it: `*`, `?`, `[a-z]`, `a]` subscribe, publish,
//! and the watcher gets exactly that message. `+` and `#` cannot be a literal level (in a
//! filter they are wildcards, and a topic name may not contain them, MQTT-3.3.2-2), and a
//! value with `/` would be two levels, which one substituted segment never matches: those
//! values get nothing.

use std::net::SocketAddr;

use base64::Engine as _;
use edgeplane_tests::codec::{QoS, ReasonCode};
use edgeplane_tests::*;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

mod auth_support;
mod https_support;
mod tls_support;
use auth_support::{
    add_users, ca_config_map, custom_authentication, listener, login, policy, publish_reason,
    try_connect, BIN, USERS_AND_RULES,
};
use https_support::{json_reply, serve_https};
use tls_support::{
    certs, client_cert, local_ca, tls_relay, write_identity, x509_authentication, MANUAL_TLS,
};

const VALUES: [&str; 7] = ["+", "#", "*", "?", "[a-z]", "a]", "a/b"];
const PASSWORD: &str = "correct-horse-for-injection";

const RULES: &str = r##"
    - principals:
        usernames: ["+", "#", "*", "?", "[a-z]", "a]", "a/b"]
        attributes: [{kind: injected}]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["users/{principal.username}/#", "sites/{principal.attributes.site}/#"]
      - method: Subscribe
        topics: ["users/{principal.username}/#", "sites/{principal.attributes.site}/#"]
"##;

/// The broker of one test: a port without authentication or policy (for the watcher), and
/// ports with the policy for passwords, the webhook and client certificates.
struct Site {
    dir: TempDir,
    _child: tokio::process::Child,
    open: SocketAddr,
    password: SocketAddr,
    hook: SocketAddr,
    mtls: u16,
}

/// The webhook allows everyone, with attributes `kind: injected` and `site`: the password.
async fn webhook() -> (u16, String) {
    serve_https("inject webhook CA", "webhook", |req| async move {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return json_reply(400, json!("no body")),
        };
        let site = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b["password"].as_str().map(str::to_owned))
            .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
            .and_then(|p| String::from_utf8(p).ok())
            .unwrap_or_default();
        json_reply(
            200,
            json!({"attributes": {"kind": "injected", "site": site}}),
        )
    })
    .await
}

/// X509 attributes: the certificate `site-N` has `site` = `VALUES[N]`.
fn x509_attributes() -> String {
    VALUES
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "        site-{i}: {{subject: \"CN = site-{i}, O = Edgeplane\", attributes: {{kind: injected, site: {v:?}}}}}\n"
            )
        })
        .collect()
}

async fn start(name: &str, users: &[&str]) -> Site {
    let dir = TempDir::new(&format!("inject-{name}"));
    certs(&dir, &[]).await;
    // alice is the other principal, whose topics no one else may use.
    let users: Vec<(&str, &str)> = users
        .iter()
        .chain(&["alice"])
        .map(|u| (*u, PASSWORD))
        .collect();
    add_users(&dir, &users).await;
    let (hook_port, hook_ca) = webhook().await;
    let hook = format!("endpoint: https://127.0.0.1:{hook_port}");
    let ports: [&[&str]; 4] = [
        &[],
        USERS_AND_RULES,
        &["authenticationRef: hook", "authorizationRef: rules"],
        &[
            MANUAL_TLS,
            "authenticationRef: devices",
            "authorizationRef: rules",
        ],
    ];
    let config = [
        custom_authentication("hook", &[&hook, "caCertConfigMap: hook-ca"], false),
        ca_config_map("hook-ca", &hook_ca),
        x509_authentication(&x509_attributes()),
        policy(RULES),
        listener("inject", &ports),
    ]
    .join("---\n");
    std::fs::write(dir.join("inject.yaml"), config).expect("write config");
    let (child, addrs) = start_edgeplane(BIN, &dir, 4).await;
    Site {
        dir,
        _child: child,
        open: addrs[0],
        password: addrs[1],
        hook: addrs[2],
        mtls: addrs[3].port(),
    }
}

/// A client on the open port subscribed to everything under `users/` and `sites/`.
async fn watcher(site: &Site) -> Client {
    let mut w = site.open_client("watcher").await;
    let ack = w
        .subscribe(subscribe(
            1,
            &[("users/#", QoS::AtLeastOnce), ("sites/#", QoS::AtLeastOnce)],
        ))
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode(1), ReasonCode(1)]);
    w
}

impl Site {
    async fn open_client(&self, id: &str) -> Client {
        let (c, code) = try_connect(self.open, connect(id, V5)).await;
        assert_eq!(code, 0, "open port");
        c
    }
}

/// `c`, whose `{prefix}` value is `value` (`users`: its user name, `sites`: its `site`
/// attribute), gets only the literal level `{prefix}/{value}/`; `watcher` sees exactly what
/// was allowed.
async fn assert_only_literal(c: &mut Client, watcher: &mut Client, prefix: &str, value: &str) {
    let what = format!("{prefix} value {value:?}");
    for filter in [
        format!("{prefix}/+/#"),
        format!("{prefix}/#"),
        format!("{prefix}/+"),
        format!("{prefix}/alice/#"),
        "#".to_owned(),
    ] {
        let ack = c
            .subscribe(subscribe(1, &[(filter.as_str(), QoS::AtLeastOnce)]))
            .await;
        assert_eq!(
            ack.reasons,
            vec![ReasonCode::NOT_AUTHORIZED],
            "{what} subscribing {filter}"
        );
    }
    let literal = !value.contains(['+', '#', '/']);
    let own = format!("{prefix}/{value}/#");
    let ack = c
        .subscribe(subscribe(2, &[(own.as_str(), QoS::AtLeastOnce)]))
        .await;
    let want = if literal {
        ReasonCode(1)
    } else if value.contains('#') {
        // `#` before the last level: not a valid filter at all [MQTT-4.7.1-1].
        ReasonCode::TOPIC_FILTER_INVALID
    } else {
        ReasonCode::NOT_AUTHORIZED
    };
    assert_eq!(ack.reasons, vec![want], "{what} subscribing {own}");

    assert_eq!(
        publish_reason(c, &format!("{prefix}/alice/x"), 3).await,
        ReasonCode::NOT_AUTHORIZED,
        "{what} publishing to alice's topic"
    );
    if value.contains('/') {
        // Two levels, `a` and `b`: not what `{prefix}/{value}` grants.
        let topic = format!("{prefix}/{value}/x");
        assert_eq!(
            publish_reason(c, &topic, 4).await,
            ReasonCode::NOT_AUTHORIZED,
            "{what} publishing {topic}"
        );
    }
    if literal {
        let topic = format!("{prefix}/{value}/x");
        c.publish(publish(&topic, value, QoS::AtLeastOnce, 5)).await;
        let mine = c.receive_and_ack().await;
        assert_eq!(mine.topic, topic, "{what}: its own subscription");
        let seen = watcher.receive_and_ack().await;
        assert_eq!(
            seen.topic, topic,
            "{what}: the watcher saw another message (a refused one?) first"
        );
    }
    watcher.expect_nothing().await;
}

/// User names from the password file, but `#`: a password file line starting with `#` is a
/// comment, so `edgeplane passwd` refuses that name
/// ([`user_names_starting_with_hash_are_refused_by_passwd`]).
#[tokio::test]
async fn password_user_names_never_widen_a_grant() {
    let users: Vec<&str> = VALUES.into_iter().filter(|v| *v != "#").collect();
    let site = start("password", &users).await;
    let mut watch = watcher(&site).await;
    for (i, user) in users.iter().copied().enumerate() {
        let id = format!("user-{i}");
        let (mut c, code) =
            try_connect(site.password, login(&id, V5, Some(user), Some(PASSWORD))).await;
        assert_eq!(code, 0, "user name {user:?}");
        assert_only_literal(&mut c, &mut watch, "users", user).await;
    }
}

/// User names and attributes from the webhook: the user name as sent, `site` = password.
#[tokio::test]
async fn webhook_user_names_and_attributes_never_widen_a_grant() {
    let site = start("webhook", &[]).await;
    let mut watch = watcher(&site).await;
    for (i, value) in VALUES.into_iter().enumerate() {
        let id = format!("hooked-{i}");
        let (mut c, code) = try_connect(site.hook, login(&id, V5, Some(value), Some(value))).await;
        assert_eq!(code, 0, "webhook principal {value:?}");
        assert_only_literal(&mut c, &mut watch, "users", value).await;
        assert_only_literal(&mut c, &mut watch, "sites", value).await;
    }
}

/// A client certificate's CN as the user name, and `site` from `authorizationAttributes`.
#[tokio::test]
async fn certificate_names_and_attributes_never_widen_a_grant() {
    let site = start("x509", &[]).await;
    let mut watch = watcher(&site).await;
    let ca = local_ca(&site.dir);
    let cafile = site.dir.join("ca.crt");
    for (i, value) in VALUES.into_iter().enumerate() {
        for (cn, prefix) in [(value.to_string(), "users"), (format!("site-{i}"), "sites")] {
            let cert = client_cert(&ca, &cn);
            let (crt, key) = write_identity(&site.dir, &format!("{prefix}-{i}"), &cert, &[]);
            let relay = tls_relay(site.mtls, &cafile, Some((crt.as_path(), key.as_path()))).await;
            let (mut c, code) = try_connect(relay, connect(&format!("{prefix}-{i}"), V5)).await;
            assert_eq!(code, 0, "certificate CN {cn:?}");
            assert_only_literal(&mut c, &mut watch, prefix, value).await;
        }
    }
}

/// `edgeplane passwd FILE NAME` with `password` on standard input: success, and what it
/// printed.
async fn try_passwd(file: &std::path::Path, user: &str, password: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new(BIN)
        .arg("passwd")
        .arg(file)
        .arg(user)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run passwd");
    let mut stdin = child.stdin.take().expect("stdin");
    // passwd may exit before reading; a closed pipe is not the test's failure.
    let _ = stdin.write_all(format!("{password}\n").as_bytes()).await;
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("passwd finished within 30 s")
        .expect("passwd output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A user name starting with `#` would be written as a comment line and never log in, so
/// `edgeplane passwd` refuses it, saying why, and leaves the file as it was; logging in as
/// `#` is refused with 0x86 (bad user name or password) while `*`, added before (and
/// allowed to connect by the policy), still logs in.
#[tokio::test]
async fn user_names_starting_with_hash_are_refused_by_passwd() {
    let site = start("hash", &["*"]).await;
    let file = site.dir.join("passwords.yaml");
    let before = std::fs::read(&file).expect("password file");
    for user in ["#", "#admin"] {
        let (ok, out) = try_passwd(&file, user, PASSWORD).await;
        assert!(!ok, "passwd accepted {user:?}: {out}");
        assert!(
            out.contains("starts with `#`, which marks a comment line"),
            "passwd names the rule for {user:?}: {out}"
        );
        assert!(!out.contains(PASSWORD), "passwd echoed the password: {out}");
        assert_eq!(
            std::fs::read(&file).expect("password file"),
            before,
            "file unchanged"
        );
    }
    let (_c, code) = try_connect(site.password, login("h", V5, Some("#"), Some(PASSWORD))).await;
    assert_eq!(code, 0x86, "user # does not exist");
    let (_c, code) = try_connect(site.password, login("a", V5, Some("*"), Some(PASSWORD))).await;
    assert_eq!(code, 0, "user * from the same file");
}
