//! `ServiceAccountToken` (K8S-SAT enhanced authentication) through the real binary, with
//! tokens signed by the test (ES256 with a ring key, RS256 with an `openssl` key) and their
//! public keys in a JWKS Secret: accepted tokens, refused ones (signature, audience, expiry,
//! unknown key), a method no configured method speaks (0x8C), the legacy user name form,
//! disconnection when the token expires, re-authentication with AUTH 0x19 that extends it,
//! failed or malformed re-authentication, and no token in the broker's log.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use edgeplane_tests::codec::{Auth, Connect, Packet, Properties, ReasonCode};
use edgeplane_tests::*;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::json;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");
const AUDIENCE: &str = "edge-broker";

/// The test's token issuer: an ES256 and an RS256 key, published as one JWKS.
struct Issuer {
    ec: EcdsaKeyPair,
    rsa: RsaKeyPair,
    /// A key whose public part is not published.
    stranger: EcdsaKeyPair,
}

fn ec_key() -> EcdsaKeyPair {
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate EC key");
    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("load EC key")
}

async fn rsa_key(work: &Path) -> RsaKeyPair {
    let path = work.join("rsa.pem");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .await
        .expect("run openssl");
    assert!(status.status.success(), "openssl genpkey failed");
    let pem = std::fs::read_to_string(&path).expect("read key");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64).expect("PEM body");
    RsaKeyPair::from_pkcs8(&der).expect("load RSA key")
}

impl Issuer {
    async fn new(work: &Path) -> Issuer {
        Issuer {
            ec: ec_key(),
            rsa: rsa_key(work).await,
            stranger: ec_key(),
        }
    }

    /// The EC key alone (before a rotation adds the RSA key).
    fn jwks_ec_only(&self) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&self.jwks()).expect("jwks");
        if let Some(keys) = v["keys"].as_array_mut() {
            keys.retain(|k| k["kty"] == "EC");
        }
        v.to_string()
    }

    fn jwks(&self) -> String {
        let point = self.ec.public_key().as_ref();
        let rsa: signature::RsaPublicKeyComponents<Vec<u8>> = self.rsa.public().into();
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
             "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])},
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
             "n": URL_SAFE_NO_PAD.encode(&rsa.n), "e": URL_SAFE_NO_PAD.encode(&rsa.e)},
        ]})
        .to_string()
    }

    /// A token for `aud`, valid from `nbf` to `exp` seconds from now.
    fn token(&self, alg: &str, aud: &str, nbf: i64, exp: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let kid = match alg {
            "RS256" => "rsa-1",
            _ => "ec-1",
        };
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let claims = json!({
            "aud": [aud], "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": "system:serviceaccount:plant:line1", "nbf": now + nbf, "exp": now + exp,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match alg {
            "RS256" => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        input.as_bytes(),
                        &mut sig,
                    )
                    .expect("RSA sign");
                sig
            }
            "stranger" => self
                .stranger
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            _ => self
                .ec
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn config(dir: &Path, jwks: &str) {
    let text = format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthentication\nmetadata: {{name: sat}}\nspec:\n  authenticationMethods:\n  - method: ServiceAccountToken\n    serviceAccountTokenSettings:\n      audiences: [aio-internal, {AUDIENCE}]\n      jwksSecretRef: sat-keys\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: sat-keys}}\nstringData:\n  jwks.json: '{jwks}'\n---\napiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {{name: plant}}\nspec:\n  ports:\n  - port: 0\n    bindAddress: 127.0.0.1\n    authenticationRef: sat\n"
    );
    std::fs::write(dir.join("config.yaml"), text).expect("write config");
}

fn sat_connect(id: &str, method: &str, token: &str) -> Connect {
    let mut c = connect(id, V5);
    c.properties.authentication_method = Some(method.into());
    c.properties.authentication_data = Some(token.to_owned().into());
    c
}

fn reauth(method: &str, token: &str) -> Packet {
    let properties = Properties {
        authentication_method: Some(method.into()),
        authentication_data: Some(token.to_owned().into()),
        ..Properties::default()
    };
    Packet::Auth(Auth {
        reason: ReasonCode::RE_AUTHENTICATE,
        properties,
    })
}

async fn open(addr: std::net::SocketAddr, c: Connect) -> (Client, edgeplane_tests::codec::ConnAck) {
    let mut client = Client::open(addr, c.protocol).await;
    let ack = client.connect(c).await;
    (client, ack)
}

#[tokio::test]
async fn service_account_tokens() {
    let dir = TempDir::new("auth-sat");
    let keys = TempDir::new("auth-sat-keys");
    let issuer = Issuer::new(&keys).await;
    config(&dir, &issuer.jwks());
    let log = dir.join("broker.log");
    let (child, addrs, http) = start_logging(&dir, &log).await;
    let a = addrs[0];
    let mut tokens = Vec::new();

    // Accepted: ES256 and RS256; CONNACK names the method.
    for alg in ["ES256", "RS256"] {
        let t = issuer.token(alg, AUDIENCE, -5, 600);
        let (mut c, ack) = open(a, sat_connect(&format!("ok-{alg}"), "K8S-SAT", &t)).await;
        assert_eq!(ack.code, 0, "{alg} token accepted");
        assert_eq!(
            ack.properties.authentication_method.as_deref(),
            Some("K8S-SAT")
        );
        c.send(&Packet::PingReq).await;
        assert_eq!(c.recv().await, Some(Packet::PingResp));
        tokens.push(t);
    }

    // Refused: 0x86 for a relevant but invalid token.
    let refused = [
        (
            issuer.token("ES256", "someone-else", -5, 600),
            "wrong audience",
        ),
        (issuer.token("ES256", AUDIENCE, -600, -10), "expired"),
        (issuer.token("ES256", AUDIENCE, 300, 600), "not valid yet"),
        (
            issuer.token("stranger", AUDIENCE, -5, 600),
            "signed by an unknown key",
        ),
        ("not-a-jwt".to_owned(), "garbage"),
    ];
    for (i, (t, why)) in refused.iter().enumerate() {
        let (_c, ack) = open(a, sat_connect(&format!("bad-{i}"), "K8S-SAT", t)).await;
        assert_eq!(ack.code, 0x86, "{why}");
        tokens.push(t.clone());
    }

    // A method nobody speaks: 0x8C Bad authentication method.
    let t = issuer.token("ES256", AUDIENCE, -5, 600);
    let (_c, ack) = open(a, sat_connect("scram", "SCRAM-SHA-256", &t)).await;
    assert_eq!(ack.code, 0x8C);
    // No credentials at all: 0x87.
    let (_c, ack) = open(a, connect("anon", V5)).await;
    assert_eq!(ack.code, 0x87);

    // Older clients: user name K8S-SAT, the token as password (3.1.1 too).
    let mut legacy = connect("legacy", V311);
    legacy.username = Some("K8S-SAT".into());
    legacy.password = Some(t.clone().into());
    let (_c, ack) = open(a, legacy).await;
    assert_eq!(ack.code, 0, "legacy form");

    // Expiry: without re-authentication the connection closes with 0xA0.
    let short = issuer.token("ES256", AUDIENCE, -5, 2);
    let (mut lapsing, ack) = open(a, sat_connect("lapsing", "K8S-SAT", &short)).await;
    assert_eq!(ack.code, 0);

    // Re-authentication with a fresh token keeps a connection past the first expiry.
    let (mut renewing, ack) = open(a, sat_connect("renewing", "K8S-SAT", &short)).await;
    assert_eq!(ack.code, 0);
    let fresh = issuer.token("RS256", AUDIENCE, -5, 600);
    renewing.send(&reauth("K8S-SAT", &fresh)).await;
    match renewing.recv().await {
        Some(Packet::Auth(ok)) => {
            assert_eq!(ok.reason, ReasonCode::SUCCESS);
            assert_eq!(
                ok.properties.authentication_method.as_deref(),
                Some("K8S-SAT")
            );
        }
        other => panic!("expected AUTH success, got {other:?}"),
    }

    // Re-authentication with an expired token, or under another method, ends the connection.
    let (mut failing, _) = open(a, sat_connect("failing", "K8S-SAT", &tokens[0])).await;
    failing
        .send(&reauth(
            "K8S-SAT",
            &issuer.token("ES256", AUDIENCE, -600, -10),
        ))
        .await;
    assert_eq!(
        failing.expect_closed().await,
        Some(ReasonCode::NOT_AUTHORIZED)
    );
    let (mut switching, _) = open(a, sat_connect("switching", "K8S-SAT", &tokens[0])).await;
    switching.send(&reauth("SCRAM-SHA-256", "x")).await;
    assert_eq!(
        switching.expect_closed().await,
        Some(ReasonCode::PROTOCOL_ERROR)
    );

    assert_eq!(
        lapsing.expect_closed().await,
        Some(ReasonCode::MAXIMUM_CONNECT_TIME),
        "closed when the token expired"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    renewing.send(&Packet::PingReq).await;
    assert_eq!(
        renewing.recv().await,
        Some(Packet::PingResp),
        "re-authenticated connection outlives its first token"
    );
    tokens.extend([short, fresh, t]);

    let metrics = scrape(http).await;
    drop(child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(
        log_text.contains("service account token refused"),
        "{log_text}"
    );
    // Neither the log nor the metrics hold any part of a token.
    let text = format!("{log_text}\n{metrics}");
    for t in &tokens {
        // The signature part is what makes a token usable; no part of one may be logged.
        for part in t.split('.').filter(|p| p.len() > 8) {
            assert!(
                !text.contains(part),
                "token material in the log or metrics:\n{text}"
            );
        }
    }
}

/// A real MQTT 5 client (paho-mqtt) authenticating with K8S-SAT: accepted and served, refused
/// with 0x86 / 0x8C, and disconnected with 0xA0 when its token expires.
#[tokio::test]
async fn paho_client_with_service_account_tokens() {
    let dir = TempDir::new("auth-sat-paho");
    let keys = TempDir::new("auth-sat-paho-keys");
    let issuer = Issuer::new(&keys).await;
    config(&dir, &issuer.jwks());
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let cases = json!([
        {"id": "paho-ok", "method": "K8S-SAT", "data": issuer.token("RS256", AUDIENCE, -5, 600)},
        {"id": "paho-expired", "method": "K8S-SAT", "data": issuer.token("ES256", AUDIENCE, -600, -1)},
        {"id": "paho-scram", "method": "SCRAM-SHA-1", "data": "x"},
        // Made before the cases run one after another: 6 s leaves room for the ones before
        // it on a loaded machine (2 s did not).
        {"id": "paho-lapse", "method": "K8S-SAT", "data": issuer.token("ES256", AUDIENCE, -5, 6), "wait": 12},
    ]);
    let r = paho(addrs[0], "sat/", cases).await;
    assert_eq!(
        (r[0]["connack"].as_u64(), r[0]["echo"].as_str()),
        (Some(0), Some("hello")),
        "{r:?}"
    );
    assert_eq!(r[1]["connack"].as_u64(), Some(0x86), "{r:?}");
    assert_eq!(r[2]["connack"].as_u64(), Some(0x8C), "{r:?}");
    assert_eq!(
        (r[3]["connack"].as_u64(), r[3]["disconnect"].as_u64()),
        (Some(0), Some(0xA0)),
        "{r:?}"
    );
}

/// A key added to the JWKS Secret while the broker runs applies to new connections without a
/// restart; connected clients stay connected.
#[tokio::test]
async fn rotated_keys_apply_without_restart() {
    let dir = TempDir::new("auth-sat-rotate");
    let keys = TempDir::new("auth-sat-rotate-keys");
    let issuer = Issuer::new(&keys).await;
    config(&dir, &issuer.jwks_ec_only());
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let a = addrs[0];
    let ec = issuer.token("ES256", AUDIENCE, -5, 600);
    let rsa = issuer.token("RS256", AUDIENCE, -5, 600);
    let (mut kept, ack) = open(a, sat_connect("kept", "K8S-SAT", &ec)).await;
    assert_eq!(ack.code, 0);
    let (_c, ack) = open(a, sat_connect("before", "K8S-SAT", &rsa)).await;
    assert_eq!(ack.code, 0x86, "the RSA key is not published yet");
    config(&dir, &issuer.jwks());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (_c, ack) = open(a, sat_connect(&format!("after-{attempt}"), "K8S-SAT", &rsa)).await;
        if ack.code == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotated JWKS not applied within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    kept.send(&Packet::PingReq).await;
    assert_eq!(
        kept.recv().await,
        Some(Packet::PingResp),
        "connected client kept"
    );
}

/// A JWKS without usable keys, or no audiences, stops start-up.
#[tokio::test]
async fn sat_settings_are_checked_at_start() {
    let dir = TempDir::new("auth-sat-bad");
    config(&dir, r#"{"keys": []}"#);
    let err = edgeplane_start_failure(BIN, &dir).await;
    assert!(err.contains("no usable RS256 or ES256 public key"), "{err}");
}

/// Like `start_edgeplane`, with the broker's log also written to `log`.
async fn start_logging(
    dir: &Path,
    log: &Path,
) -> (Child, Vec<std::net::SocketAddr>, std::net::SocketAddr) {
    let script = format!(
        "#!/usr/bin/env bash\nexec {} run --http 127.0.0.1:0 --metrics 127.0.0.1:0 --config {} 2> >(tee {} >&2)\n",
        BIN,
        dir.display(),
        log.display()
    );
    let wrapper = dir.join("run.sh");
    std::fs::write(&wrapper, script).expect("wrapper");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .await
        .expect("chmod");
    assert!(status.success());
    start_edgeplane_http(wrapper.to_str().expect("utf-8 path"), dir, 1).await
}

/// The broker's Prometheus metrics (the HTTP address serves them too).
async fn scrape(http: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http)
        .await
        .expect("connect to HTTP");
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request metrics");
    let mut body = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut body))
        .await
        .expect("metrics within 5 s")
        .expect("read metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
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
