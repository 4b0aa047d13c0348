//! Shared set-up of the authentication and authorization tests that run the binary
//! (`auth.rs`, `auth_inject.rs`, `auth_will.rs`, `auth_custom.rs`, `statestore_authz.rs`,
//! `observability.rs`, `tls_x509.rs`, ...): the password `BrokerAuthentication`, listeners
//! such as the two-port `site` (one port enforcing the policy `rules`, one without a
//! policy), policies, the `Custom` method's manifests, users added with
//! `edgeplane passwd`, CONNECT with credentials. (A started binary whose whole log and
//! metrics a test reads is `edgeplane_tests::start_edgeplane_logged`.)
//!
//! Each test target compiles this module and uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use edgeplane_tests::codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use edgeplane_tests::*;
use tokio::process::Child;

pub const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

/// `BrokerAuthentication/users`: user names and passwords from the Secret that
/// `edgeplane passwd` writes (`edgeplane-passwords`).
pub const USERS: &str = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: users}
spec:
  authenticationMethods:
  - method: UsernamePassword
    usernamePasswordSettings: {passwordFileSecretRef: edgeplane-passwords}
"#;

/// The fields of a port that authenticates [`USERS`] and enforces the policy `rules`.
pub const USERS_AND_RULES: &[&str] = &["authenticationRef: users", "authorizationRef: rules"];

/// `BrokerListener/name` with an ephemeral loopback port for each of `ports`, which lists
/// the port's other fields as YAML lines (none: anonymous, no policy).
pub fn listener(name: &str, ports: &[&[&str]]) -> String {
    let mut out = format!(
        "apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {{name: {name}}}\nspec:\n  ports:\n"
    );
    for fields in ports {
        out.push_str("  - port: 0\n    bindAddress: 127.0.0.1\n");
        for f in *fields {
            out.push_str(&format!("    {f}\n"));
        }
    }
    out
}

/// `BrokerListener/site`: port 1 authenticates [`USERS`] and enforces `rules`, port 2
/// authenticates the same users and has no policy.
pub fn site() -> String {
    listener("site", &[USERS_AND_RULES, &["authenticationRef: users"]])
}

/// `BrokerAuthentication/name` with the `Custom` method (`settings`: the lines under
/// `customSettings`), followed with `then_passwords` by the password method of [`USERS`].
pub fn custom_authentication(name: &str, settings: &[&str], then_passwords: bool) -> String {
    let mut out = format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthentication\nmetadata: {{name: {name}}}\nspec:\n  authenticationMethods:\n  - method: Custom\n    customSettings:\n"
    );
    for s in settings {
        out.push_str(&format!("      {s}\n"));
    }
    if then_passwords {
        out.push_str("  - method: UsernamePassword\n    usernamePasswordSettings: {passwordFileSecretRef: edgeplane-passwords}\n");
    }
    out
}

/// `BrokerAuthorization/rules` with the decision cache on and `rules`, the YAML list of
/// rules indented as under `authorizationPolicies.rules`.
pub fn policy(rules: &str) -> String {
    named_policy("rules", rules)
}

/// Like [`policy`], named `name`.
pub fn named_policy(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthorization\nmetadata: {{name: {name}}}\nspec:\n  authorizationPolicies:\n    cache: Enabled\n    rules:\n{}",
        rules.trim_start_matches('\n')
    )
}

/// A ConfigMap `name` holding the PEM CA certificate `pem` under `ca.pem`.
pub fn ca_config_map(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata:\n  ca.pem: |\n{indented}")
}

/// Add `users` (name, password) with `edgeplane passwd` and write [`USERS`].
pub async fn add_users(dir: &Path, users: &[(&str, &str)]) {
    for (user, password) in users {
        passwd(BIN, &dir.join("passwords.yaml"), user, password).await;
    }
    std::fs::write(dir.join("users.yaml"), USERS).expect("write users.yaml");
}

/// A config folder for [`site`]: `users`, [`USERS`], and `policy` as `policy.yaml` (a
/// test may rewrite that file to change the policy while the broker runs).
pub async fn write_site(dir: &Path, users: &[(&str, &str)], policy: &str) {
    add_users(dir, users).await;
    std::fs::write(dir.join("listener.yaml"), site()).expect("write listener.yaml");
    std::fs::write(dir.join("policy.yaml"), policy).expect("write policy.yaml");
}

/// [`write_site`] in a new folder named after `name`, and the binary started on it: the
/// folder, the process, the port with the policy and the port without.
pub async fn start_site(
    name: &str,
    users: &[(&str, &str)],
    policy: &str,
) -> (TempDir, Child, SocketAddr, SocketAddr) {
    let dir = TempDir::new(name);
    write_site(&dir, users, policy).await;
    let (child, addrs) = start_edgeplane(BIN, &dir, 2).await;
    (dir, child, addrs[0], addrs[1])
}

/// A CONNECT with clean start and the credentials given.
pub fn login(id: &str, v: ProtocolVersion, user: Option<&str>, password: Option<&str>) -> Connect {
    let mut c = connect(id, v);
    c.username = user.map(Into::into);
    c.password = password.map(|p| p.to_owned().into());
    c
}

/// The PUBACK reason of a QoS 1 PUBLISH to `topic`.
pub async fn publish_reason(c: &mut Client, topic: &str, packet_id: u16) -> ReasonCode {
    let p = publish(topic, "x", QoS::AtLeastOnce, packet_id);
    c.send(&Packet::Publish(p)).await;
    match c.recv().await {
        Some(Packet::PubAck(a)) if a.packet_id == packet_id => a.reason,
        other => panic!("expected PUBACK {packet_id}, got {other:?}"),
    }
}

/// Open a connection to `addr` and send `c`: the client and its CONNACK code.
pub async fn try_connect(addr: SocketAddr, c: Connect) -> (Client, u8) {
    let mut client = Client::open(addr, c.protocol).await;
    let ack = client.connect(c).await;
    (client, ack.code)
}
