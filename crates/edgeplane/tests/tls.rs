//! TLS listeners over real sockets with real clients: `edgeplane certs` output used as is,
//! `mosquitto_pub`/`mosquitto_sub` with `--cafile` over TLS 1.2 and 1.3 and over WebSocket,
//! a client trusting another CA refused, a renewed certificate picked up without dropping
//! connected clients, and `mode: Automatic` issuing from the local CA.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use edgeplane_tests::*;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("tls-{name}"))
}

async fn certs(out: &Path) {
    let status = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(out)
        .status()
        .await
        .expect("run certs");
    assert!(status.success());
}

fn listener(tls: &str) -> String {
    format!(
        "apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {{name: secure}}\nspec:\n  ports:\n  - port: 0\n    bindAddress: 127.0.0.1\n    tls: {tls}\n  - port: 0\n    bindAddress: 127.0.0.1\n    protocol: WebSockets\n    tls: {tls}\n"
    )
}

const MANUAL: &str = "{mode: Manual, manual: {secretRef: edgeplane-server-tls}}";

/// Run a mosquitto client over TLS; returns (success, stdout+stderr).
async fn mosquitto(tool: &str, port: u16, cafile: &Path, extra: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        WAIT * 2,
        Command::new(tool)
            .args(["-h", "localhost", "-p", &port.to_string(), "--cafile"])
            .arg(cafile)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mosquitto client finished")
    .expect("run mosquitto client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Over TLS 1.2 and 1.3, mosquitto clients that trust the local CA publish and subscribe;
/// WebSocket over TLS works too; a client trusting another CA is refused.
#[tokio::test]
async fn manual_tls_with_mosquitto_clients() {
    let dir = temp_dir("manual");
    certs(&dir).await;
    std::fs::write(dir.join("listener.yaml"), listener(MANUAL)).expect("write");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 2).await;
    let (tls_port, wss_port) = (addrs[0].port(), addrs[1].port());
    let ca = dir.join("ca.crt");
    for version in ["tlsv1.2", "tlsv1.3"] {
        let sub_ca = ca.clone();
        let sub = tokio::spawn(async move {
            mosquitto(
                "mosquitto_sub",
                tls_port,
                &sub_ca,
                &["-t", "secure/t", "-C", "1", "--tls-version", version],
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (ok, out) = mosquitto(
            "mosquitto_pub",
            tls_port,
            &ca,
            &[
                "-t",
                "secure/t",
                "-m",
                version,
                "-q",
                "1",
                "--tls-version",
                version,
            ],
        )
        .await;
        assert!(ok, "publish over {version}: {out}");
        let (ok, out) = sub.await.expect("sub");
        assert!(
            ok && out.trim() == version,
            "subscribe over {version}: {out}"
        );
    }
    // MQTT over WebSocket over TLS, with paho-mqtt: a round trip on the wss listener.
    let script = r#"
import queue, sys
import paho.mqtt.client as mqtt
got = queue.Queue()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wss", protocol=mqtt.MQTTv5, transport="websockets")
c.ws_set_options(path="/mqtt")
c.tls_set(ca_certs=sys.argv[2])
c.on_message = lambda cl, ud, m: got.put(m.payload)
c.on_connect = lambda cl, ud, f, rc, p: cl.subscribe("secure/ws", qos=1)
c.on_subscribe = lambda cl, ud, mid, rcs, p: cl.publish("secure/ws", b"over wss", qos=1)
c.connect("localhost", int(sys.argv[1]))
c.loop_start()
print(got.get(timeout=5).decode())
c.disconnect()
"#;
    let out = tokio::time::timeout(
        WAIT * 2,
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(wss_port.to_string())
            .arg(&ca)
            .output(),
    )
    .await
    .expect("paho finished")
    .expect("run python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "over wss",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let other = temp_dir("other-ca");
    certs(&other).await;
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        tls_port,
        &other.join("ca.crt"),
        &["-t", "secure/t", "-m", "x"],
    )
    .await;
    assert!(!ok, "a client trusting another CA must be refused: {out}");
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        tls_port,
        &ca,
        &["-t", "secure/t", "-m", "still serving"],
    )
    .await;
    assert!(ok, "{out}");
}

/// A renewed certificate (new CA and server certificate written over the Secret) is used for
/// new connections within seconds, while a client connected before stays connected.
#[tokio::test]
async fn renewed_certificate_is_reloaded_without_dropping_clients() {
    let dir = temp_dir("reload");
    certs(&dir).await;
    std::fs::write(dir.join("listener.yaml"), listener(MANUAL)).expect("write");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 2).await;
    let port = addrs[0].port();
    let old_ca = dir.join("old-ca.crt");
    std::fs::copy(dir.join("ca.crt"), &old_ca).expect("keep old CA");
    let sub_ca = old_ca.clone();
    let sub = tokio::spawn(async move {
        mosquitto(
            "mosquitto_sub",
            port,
            &sub_ca,
            &["-t", "renew/t", "-C", "1", "-W", "30"],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    certs(&dir).await; // new CA, new server certificate, same Secret name
    let new_ca = dir.join("ca.crt");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, _) = mosquitto(
            "mosquitto_pub",
            port,
            &new_ca,
            &["-t", "renew/probe", "-m", "x"],
        )
        .await;
        if ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "renewed certificate not in use after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        port,
        &new_ca,
        &["-t", "renew/t", "-m", "after renewal", "-q", "1"],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = sub.await.expect("sub");
    assert!(
        ok && out.trim() == "after renewal",
        "the client connected before renewal still receives: {out}"
    );
}

/// `mode: Automatic` issues the listener's certificate from the local CA Secret.
#[tokio::test]
async fn automatic_tls_issues_from_local_ca() {
    let dir = temp_dir("automatic");
    certs(&dir).await;
    std::fs::remove_file(dir.join("edgeplane-server-tls.yaml")).expect("only the CA is needed");
    std::fs::write(dir.join("listener.yaml"), listener("{mode: Automatic}")).expect("write");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 2).await;
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        addrs[0].port(),
        &dir.join("ca.crt"),
        &["-t", "auto/t", "-m", "x"],
    )
    .await;
    assert!(ok, "{out}");
}

/// Without the local CA, `mode: Automatic` stops start-up with a message saying what to do.
#[tokio::test]
async fn automatic_tls_without_ca_is_a_clear_error() {
    let dir = temp_dir("no-ca");
    std::fs::write(dir.join("listener.yaml"), listener("{mode: Automatic}")).expect("write");
    let err = edgeplane_start_failure(BIN, &dir).await;
    assert!(
        err.contains("edgeplane certs") && err.contains("BrokerListener/secure"),
        "{err}"
    );
}

const X509_CONFIG: &str = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: devices}
spec:
  authenticationMethods:
  - method: X509
    x509Settings:
      trustedClientCaCert: client-ca
      authorizationAttributes:
        sensors: {subject: "CN = dev1, O = Edgeplane", attributes: {role: sensor}}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthorization
metadata: {name: by-certificate}
spec:
  authorizationPolicies:
    rules:
    - principals:
        attributes: [{role: sensor}]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["devices/{principal.username}/#"]
      - method: Subscribe
        topics: ["devices/{principal.username}/#"]
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: mtls}
spec:
  ports:
  - port: 0
    bindAddress: 127.0.0.1
    tls: {mode: Manual, manual: {secretRef: edgeplane-server-tls}}
    authenticationRef: devices
    authorizationRef: by-certificate
"#;

/// An expired client certificate signed by the local CA in `dir`.
fn expired_client_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let config = edgeplane_config::load_dir(dir).expect("load certs");
    let ca = &config.secrets["edgeplane-ca"].data;
    let ca_key = rcgen::KeyPair::from_pem(std::str::from_utf8(&ca["tls.key"]).expect("pem"))
        .expect("ca key");
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(std::str::from_utf8(&ca["tls.crt"]).expect("pem"), ca_key)
            .expect("issuer");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dev1");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Edgeplane");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let (crt, pem) = (dir.join("expired.crt"), dir.join("expired.key"));
    std::fs::write(&crt, cert.pem()).expect("write");
    std::fs::write(&pem, key.serialize_pem()).expect("write");
    (crt, pem)
}

/// X509 authentication: a client certificate from the trusted CA connects, its CN is the
/// user name and its subject gives the attributes authorization uses; no certificate, a
/// certificate from another CA, and an expired certificate cannot connect.
#[tokio::test]
async fn x509_client_certificates() {
    let dir = temp_dir("x509");
    let status = Command::new(BIN)
        .args(["certs", "--client", "dev1", "--out"])
        .arg(&dir)
        .status()
        .await
        .expect("certs");
    assert!(status.success());
    std::fs::write(dir.join("mtls.yaml"), X509_CONFIG).expect("write");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let port = addrs[0].port();
    let ca = dir.join("ca.crt");
    let (crt, key) = (dir.join("client-dev1.crt"), dir.join("client-dev1.key"));
    let auth = |c: &Path, k: &Path| {
        vec![
            "--cert".to_owned(),
            c.display().to_string(),
            "--key".to_owned(),
            k.display().to_string(),
        ]
    };
    let good = auth(&crt, &key);

    let mut sub_args: Vec<String> = ["-t", "devices/dev1/#", "-C", "1", "-i", "watcher"]
        .map(String::from)
        .to_vec();
    sub_args.extend(good.clone());
    let sub_ca = ca.clone();
    let sub = tokio::spawn(async move {
        let args: Vec<&str> = sub_args.iter().map(String::as_str).collect();
        mosquitto("mosquitto_sub", port, &sub_ca, &args).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pub_args: Vec<String> = ["-t", "devices/dev1/temp", "-m", "21.5", "-q", "1"]
        .map(String::from)
        .to_vec();
    pub_args.extend(good.clone());
    let args: Vec<&str> = pub_args.iter().map(String::as_str).collect();
    let (ok, out) = mosquitto("mosquitto_pub", port, &ca, &args).await;
    assert!(ok, "trusted client certificate: {out}");
    let (ok, out) = sub.await.expect("sub");
    assert!(
        ok && out.trim() == "21.5",
        "authorized by the certificate's CN and attributes: {out}"
    );

    let (ok, out) = mosquitto(
        "mosquitto_pub",
        port,
        &ca,
        &["-t", "devices/dev1/temp", "-m", "x"],
    )
    .await;
    assert!(!ok, "no client certificate must not connect: {out}");

    let other = temp_dir("x509-other");
    let status = Command::new(BIN)
        .args(["certs", "--client", "dev1", "--out"])
        .arg(&other)
        .status()
        .await
        .expect("certs");
    assert!(status.success());
    let foreign = auth(
        &other.join("client-dev1.crt"),
        &other.join("client-dev1.key"),
    );
    let mut args: Vec<&str> = vec!["-t", "devices/dev1/temp", "-m", "x"];
    args.extend(foreign.iter().map(String::as_str));
    let (ok, out) = mosquitto("mosquitto_pub", port, &ca, &args).await;
    assert!(!ok, "a certificate from another CA must not connect: {out}");

    let (ecrt, ekey) = expired_client_cert(&dir);
    let expired = auth(&ecrt, &ekey);
    let mut args: Vec<&str> = vec!["-t", "devices/dev1/temp", "-m", "x"];
    args.extend(expired.iter().map(String::as_str));
    let (ok, out) = mosquitto("mosquitto_pub", port, &ca, &args).await;
    assert!(!ok, "an expired certificate must not connect: {out}");
}
