//! X509 trusted client CAs follow their ConfigMap while the broker runs: replacing the
//! `client-ca` ConfigMap in the config folder makes new TLS handshakes trust the new CAs
//! (and only them) within the reload period, while a client connected under the old CA
//! stays connected and keeps receiving. Real sockets, real `mosquitto_pub`/`mosquitto_sub`
//! clients with certificates made by `edgeplane certs`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use edgeplane_tests::*;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

const CONFIG: &str = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: devices}
spec:
  authenticationMethods:
  - method: X509
    x509Settings: {trustedClientCaCert: client-ca}
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
"#;

/// `edgeplane certs` into `dir`: a new CA, the server certificate, a client certificate
/// for `cn`.
async fn certs(dir: &Path, cn: &str) {
    let status = Command::new(BIN)
        .args(["certs", "--client", cn, "--out"])
        .arg(dir)
        .status()
        .await
        .expect("run certs");
    assert!(status.success());
}

/// Run a mosquitto client over TLS trusting `dir`'s CA for the server, with the client
/// certificate of `cn` from `certs_dir`; returns (success, stdout+stderr).
async fn mosquitto(
    tool: &str,
    port: u16,
    dir: &Path,
    certs_dir: &Path,
    cn: &str,
    extra: &[&str],
) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(tool)
            .args(["-h", "localhost", "-p", &port.to_string(), "--cafile"])
            .arg(dir.join("ca.crt"))
            .arg("--cert")
            .arg(certs_dir.join(format!("client-{cn}.crt")))
            .arg("--key")
            .arg(certs_dir.join(format!("client-{cn}.key")))
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

/// Trust moves from CA A to CA B when `client-ca` is replaced: B's client gets in, A's new
/// connections are refused, and A's client connected before the change still receives.
#[tokio::test]
async fn replaced_client_ca_applies_to_new_handshakes_without_dropping_clients() {
    let dir = TempDir::new("x509-reload");
    let other = TempDir::new("x509-reload-other");
    certs(&dir, "dev1").await;
    certs(&other, "dev2").await;
    std::fs::write(dir.join("mtls.yaml"), CONFIG).expect("write config");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let port = addrs[0].port();

    let (ok, out) = mosquitto(
        "mosquitto_pub",
        port,
        &dir,
        &other,
        "dev2",
        &["-t", "t", "-m", "x"],
    )
    .await;
    assert!(
        !ok,
        "a client of CA B before the change must not connect: {out}"
    );

    let sub_dir = dir.to_path_buf();
    let sub = tokio::spawn(async move {
        let args = ["-t", "reload/t", "-C", "1", "-W", "50", "-i", "early"];
        mosquitto("mosquitto_sub", port, &sub_dir, &sub_dir, "dev1", &args).await
    });
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The ConfigMap `client-ca` now holds CA B only.
    std::fs::copy(other.join("client-ca.yaml"), dir.join("client-ca.yaml")).expect("replace");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let args = ["-t", "reload/probe", "-m", "x"];
        if mosquitto("mosquitto_pub", port, &dir, &other, "dev2", &args)
            .await
            .0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replaced client CA was not trusted within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ok, out) = mosquitto(
        "mosquitto_pub",
        port,
        &dir,
        &dir,
        "dev1",
        &["-t", "t", "-m", "x"],
    )
    .await;
    assert!(
        !ok,
        "a client of CA A after the change must not connect: {out}"
    );

    let args = ["-t", "reload/t", "-m", "after the change", "-q", "1"];
    let (ok, out) = mosquitto("mosquitto_pub", port, &dir, &other, "dev2", &args).await;
    assert!(ok, "{out}");
    let (ok, out) = sub.await.expect("sub");
    assert!(
        ok && out.trim() == "after the change",
        "the client connected under CA A stays connected and receives: {out}"
    );
}
