//! X509 authentication through the real binary over real TLS sockets: a client certificate
//! from the trusted CA connects (its CN is the user name, its subject gives the attributes
//! authorization uses), and each refusal is its own test: no certificate, a certificate from
//! another CA, an expired certificate. An authorized client publishes and subscribes only
//! where its rules allow. `authorizationAttributes` are matched leaf first, then up the
//! chain: a leaf's entry wins over its intermediate's. Subjects compare attribute by
//! attribute: a comma inside a CN never stands for a second attribute, and two entries for
//! one subject stop the broker from starting.
//!
//! `mosquitto_pub`/`mosquitto_sub` are the real clients; where a test needs the broker's
//! reason codes, the raw client of `edgeplane_tests` speaks through [`tls_relay`], a
//! loopback relay that makes the TLS connection with the client certificate.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use edgeplane_tests::codec::{Packet, QoS, ReasonCode};
use edgeplane_tests::*;

mod auth_support;
mod tls_support;
use auth_support::{listener, named_policy, publish_reason};
use tls_support::{
    certs, client_cert, client_files, expired_client_cert, intermediate_ca, local_ca, mosquitto,
    tls_relay, write_identity, x509_authentication, BIN, MANUAL_TLS,
};

/// Attributes by subject: `dev1` is a sensor, `admin` may watch everything; the
/// intermediate CA and a leaf it issued each have an entry (listed intermediate first). A
/// certificate whose only attribute is the CN `admin, O = Edgeplane` (the comma escaped in
/// the configured subject) is a sensor too.
const ATTRIBUTES: &str = r#"
        sensors: {subject: "CN = dev1, O = Edgeplane", attributes: {role: sensor}}
        admins: {subject: "CN = admin, O = Edgeplane", attributes: {role: admin}}
        comma-in-cn: {subject: 'CN = admin\, O = Edgeplane', attributes: {role: sensor}}
        by-intermediate: {subject: "CN = Edgeplane intermediate, O = Edgeplane", attributes: {role: intermediate}}
        by-leaf: {subject: "O=Edgeplane,CN=chained-leaf", attributes: {role: leaf}}
"#;

/// Sensors and certificates with a role use their own topics; admins may watch everything.
const RULES: &str = r##"
    - principals:
        attributes: [{role: sensor}, {role: intermediate}, {role: leaf}]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["devices/{principal.username}/#", "roles/{principal.attributes.role}/#"]
      - method: Subscribe
        topics: ["devices/{principal.username}/#", "roles/{principal.attributes.role}/#"]
    - principals:
        attributes: [{role: admin}]
      brokerResources:
      - method: Connect
      - method: Subscribe
        topics: ["#"]
"##;

/// A broker with [`ATTRIBUTES`] and [`RULES`], and certificates for `dev1` and `admin` from
/// `edgeplane certs`.
async fn start(name: &str) -> (TempDir, tokio::process::Child, u16) {
    let dir = TempDir::new(&format!("x509-{name}"));
    certs(&dir, &["dev1", "admin"]).await;
    let port = [
        MANUAL_TLS,
        "authenticationRef: devices",
        "authorizationRef: by-certificate",
    ];
    let config = [
        x509_authentication(ATTRIBUTES),
        named_policy("by-certificate", RULES),
        listener("mtls", &[&port]),
    ]
    .join("---\n");
    std::fs::write(dir.join("mtls.yaml"), config).expect("write config");
    let (child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    (dir, child, addrs[0].port())
}

/// A raw MQTT client over TLS to `port`, with the certificate and key files given.
async fn tls_client(dir: &Path, port: u16, identity: Option<(&Path, &Path)>) -> Client {
    let relay = tls_relay(port, &dir.join("ca.crt"), identity).await;
    Client::open(relay, V5).await
}

/// Connect over TLS as the `edgeplane certs` client `cn` of `dir`; panics unless accepted.
async fn connected(dir: &Path, port: u16, cn: &str) -> Client {
    let (crt, key) = client_files(dir, cn);
    let mut c = tls_client(dir, port, Some((crt.as_path(), key.as_path()))).await;
    let ack = c.connect(connect(cn, V5)).await;
    assert_eq!(ack.code, 0, "CONNACK for the certificate of {cn}");
    c
}

/// The certificate `crt` (key `key`) is refused in the TLS handshake: `mosquitto_pub` fails,
/// and the raw client gets no CONNACK, the connection closes; a trusted client still
/// connects, so the port itself works.
async fn assert_refused_in_handshake(dir: &Path, port: u16, crt: &Path, key: &Path, what: &str) {
    let (ok, out) = mosquitto_pub(dir, port, Some((crt, key))).await;
    assert!(!ok, "{what} must not connect: {out}");
    let mut c = tls_client(dir, port, Some((crt, key))).await;
    c.send(&Packet::Connect(Box::new(connect("refused", V5))))
        .await;
    assert_eq!(c.observe(WAIT).await, Observed::Closed, "{what}");
    connected(dir, port, "dev1").await.disconnect().await;
}

/// `mosquitto_pub` with the certificate files given, to `devices/dev1/temp`.
async fn mosquitto_pub(dir: &Path, port: u16, identity: Option<(&Path, &Path)>) -> (bool, String) {
    let args = ["-t", "devices/dev1/temp", "-m", "x", "-q", "1"];
    mosquitto("mosquitto_pub", port, &dir.join("ca.crt"), identity, &args).await
}

/// A trusted client certificate: mosquitto clients publish and subscribe where the CN
/// (`devices/{principal.username}/#`) and the subject's attributes allow.
#[tokio::test]
async fn trusted_certificate_publishes_and_subscribes_with_mosquitto() {
    let (dir, _child, port) = start("trusted").await;
    let ca = dir.join("ca.crt");
    let (crt, key) = client_files(&dir, "dev1");
    let (sub_ca, sub_crt, sub_key) = (ca.clone(), crt.clone(), key.clone());
    let sub = tokio::spawn(async move {
        let args = [
            "-t",
            "devices/dev1/#",
            "-C",
            "1",
            "-W",
            "30",
            "-i",
            "watcher",
        ];
        let identity = Some((sub_crt.as_path(), sub_key.as_path()));
        mosquitto("mosquitto_sub", port, &sub_ca, identity, &args).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let args = ["-t", "devices/dev1/temp", "-m", "21.5", "-q", "1"];
    let identity = Some((crt.as_path(), key.as_path()));
    let (ok, out) = mosquitto("mosquitto_pub", port, &ca, identity, &args).await;
    assert!(ok, "trusted client certificate: {out}");
    let (ok, out) = sub.await.expect("sub");
    assert!(
        ok && out.trim() == "21.5",
        "authorized by the certificate's CN and attributes: {out}"
    );
}

/// Without a client certificate the handshake succeeds (the port asks for one but the
/// method is not relevant without it) and, X509 being the only method, CONNACK is 0x87.
#[tokio::test]
async fn no_client_certificate_cannot_connect() {
    let (dir, _child, port) = start("no-cert").await;
    let (ok, out) = mosquitto_pub(&dir, port, None).await;
    assert!(!ok, "no client certificate must not connect: {out}");
    let mut c = tls_client(&dir, port, None).await;
    let ack = c.connect(connect("anonymous", V5)).await;
    assert_eq!(ack.code, 0x87, "no method finds the credentials relevant");
    c.expect_closed().await;
    // The port itself serves a trusted certificate.
    connected(&dir, port, "dev1").await.disconnect().await;
}

/// A certificate (same CN and organisation) from a CA the port does not trust is refused in
/// the TLS handshake.
#[tokio::test]
async fn certificate_from_another_ca_cannot_connect() {
    let (dir, _child, port) = start("other-ca").await;
    let other = TempDir::new("x509-other-ca-certs");
    certs(&other, &["dev1"]).await;
    let (crt, key) = client_files(&other, "dev1");
    assert_refused_in_handshake(&dir, port, &crt, &key, "a certificate from another CA").await;
}

/// An expired certificate issued by the trusted CA is refused in the TLS handshake.
#[tokio::test]
async fn expired_certificate_cannot_connect() {
    let (dir, _child, port) = start("expired").await;
    let expired = expired_client_cert(&local_ca(&dir), "dev1");
    let (crt, key) = write_identity(&dir, "expired", &expired, &[]);
    assert_refused_in_handshake(&dir, port, &crt, &key, "an expired certificate").await;
}

/// `dev1` may use `devices/dev1/#` only: a wider or another device's filter gets SUBACK
/// 0x87, a PUBLISH to another device's topic PUBACK 0x87 and is not delivered (an admin
/// watching `devices/#` sees only the allowed message).
#[tokio::test]
async fn authorized_client_publishes_and_subscribes_only_where_its_rules_allow() {
    let (dir, _child, port) = start("rules").await;
    let mut admin = connected(&dir, port, "admin").await;
    admin.sub("devices/#", QoS::AtLeastOnce).await;
    let mut dev = connected(&dir, port, "dev1").await;
    let ack = dev
        .subscribe(subscribe(
            1,
            &[
                ("devices/dev1/#", QoS::AtLeastOnce),
                ("devices/dev2/#", QoS::AtLeastOnce),
                ("devices/+/temp", QoS::AtLeastOnce),
                ("#", QoS::AtLeastOnce),
            ],
        ))
        .await;
    assert_eq!(
        ack.reasons,
        vec![
            ReasonCode(1),
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::NOT_AUTHORIZED
        ]
    );
    assert_eq!(
        publish_reason(&mut dev, "devices/dev2/temp", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    dev.publish(publish("devices/dev1/temp", "21.5", QoS::AtLeastOnce, 3))
        .await;
    let own = dev.receive_and_ack().await;
    assert_eq!(
        (own.topic.as_str(), &own.payload[..]),
        ("devices/dev1/temp", &b"21.5"[..])
    );
    let seen = admin.receive_and_ack().await;
    assert_eq!(
        seen.topic, "devices/dev1/temp",
        "the refused publish was delivered"
    );
    admin.expect_nothing().await;
}

/// Attributes come from the first entry matching up the presented chain, leaf first: a
/// leaf issued by an intermediate with entries for both gets the leaf's (although the
/// intermediate's is listed first); a leaf without an entry gets its intermediate's.
#[tokio::test]
async fn leaf_attributes_win_over_its_intermediate() {
    let (dir, _child, port) = start("chain").await;
    let intermediate = intermediate_ca(&local_ca(&dir), "Edgeplane intermediate");
    for (cn, role, other) in [
        ("chained-leaf", "leaf", "intermediate"),
        ("unlisted-leaf", "intermediate", "leaf"),
    ] {
        let leaf = client_cert(&intermediate, cn);
        let (crt, key) = write_identity(&dir, cn, &leaf, &[&intermediate]);
        let mut c = tls_client(&dir, port, Some((crt.as_path(), key.as_path()))).await;
        let ack = c.connect(connect(cn, V5)).await;
        assert_eq!(
            ack.code, 0,
            "CONNACK for {cn} (chain through the intermediate)"
        );
        let mine = format!("roles/{role}/#");
        let theirs = format!("roles/{other}/#");
        let ack = c
            .subscribe(subscribe(
                1,
                &[
                    (mine.as_str(), QoS::AtMostOnce),
                    (theirs.as_str(), QoS::AtMostOnce),
                ],
            ))
            .await;
        assert_eq!(
            ack.reasons,
            vec![ReasonCode(0), ReasonCode::NOT_AUTHORIZED],
            "{cn} has role {role}"
        );
    }
}

/// A client certificate whose only subject attribute is the CN `admin, O = Edgeplane`,
/// signed by the local CA of `dir`.
fn comma_cn_certificate(dir: &Path) -> edgeplane_broker::tls::Issued {
    let ca = local_ca(dir);
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem).expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).expect("issuer");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "admin, O = Edgeplane");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).expect("sign");
    edgeplane_broker::tls::Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A comma inside a CN never passes for a second attribute: the certificate with CN
/// `admin, O = Edgeplane` (and no O) does not get the attributes of the subject
/// `CN = admin, O = Edgeplane` (SUBSCRIBE `#` and `roles/admin/#` refused), but those of
/// the entry that escapes the comma (`roles/sensor/#` granted); the real `admin` still
/// subscribes to `#`.
#[tokio::test]
async fn comma_in_common_name_does_not_match_another_subject() {
    let (dir, _child, port) = start("comma").await;
    let (crt, key) = write_identity(&dir, "comma", &comma_cn_certificate(&dir), &[]);
    let mut c = tls_client(&dir, port, Some((crt.as_path(), key.as_path()))).await;
    assert_eq!(c.connect(connect("comma", V5)).await.code, 0);
    let ack = c
        .subscribe(subscribe(
            1,
            &[
                ("#", QoS::AtMostOnce),
                ("roles/admin/#", QoS::AtMostOnce),
                ("roles/sensor/#", QoS::AtMostOnce),
            ],
        ))
        .await;
    assert_eq!(
        ack.reasons,
        vec![
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode(0)
        ],
        "the comma CN has the escaped entry's role (sensor), not admin's"
    );
    let mut admin = connected(&dir, port, "admin").await;
    let ack = admin
        .subscribe(subscribe(1, &[("#", QoS::AtMostOnce)]))
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode(0)], "the real admin");
}

/// Two `authorizationAttributes` entries for one subject (in another spelling) would make
/// the attributes depend on an order the configuration does not keep: the broker refuses
/// to start and names both entries.
#[tokio::test]
async fn two_entries_for_one_subject_are_refused_at_start() {
    let dir = TempDir::new("x509-same-subject");
    certs(&dir, &[]).await;
    let attributes = r#"
        listed-first: {subject: "CN = twice, O = Edgeplane", attributes: {role: first}}
        also-matching: {subject: "O=Edgeplane, CN=twice", attributes: {role: second}}
"#;
    let port = [MANUAL_TLS, "authenticationRef: devices"];
    let config = [x509_authentication(attributes), listener("mtls", &[&port])].join("---\n");
    std::fs::write(dir.join("mtls.yaml"), config).expect("write config");
    let run = tokio::process::Command::new(BIN)
        .args([
            "run",
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&*dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("edgeplane exits within 30 s")
        .expect("run edgeplane");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with an ambiguous subject: {err}"
    );
    assert!(
        err.contains("authorizationAttributes.also-matching and authorizationAttributes.listed-first name the same subject"),
        "{err}"
    );
}
