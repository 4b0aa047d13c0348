//! X509 trusted client CAs follow their ConfigMap while the broker runs: replacing the
//! `client-ca` ConfigMap in the config folder makes new TLS handshakes trust the new CAs
//! (and only them) within the reload period, while a client connected under the old CA
//! stays connected and keeps receiving. Real sockets, real `mosquitto_pub`/`mosquitto_sub`
//! clients with certificates made by `edgeplane certs`.

use std::path::Path;
use std::time::Duration;

use edgeplane_tests::*;

mod auth_support;
mod tls_support;
use auth_support::listener;
use tls_support::{certs, client_files, x509_authentication, BIN, MANUAL_TLS};

/// A mosquitto client over TLS trusting `dir`'s CA for the server, with the client
/// certificate of `cn` from `certs_dir`.
async fn mosquitto(
    tool: &str,
    port: u16,
    dir: &Path,
    certs_dir: &Path,
    cn: &str,
    extra: &[&str],
) -> (bool, String) {
    let (crt, key) = client_files(certs_dir, cn);
    let identity = Some((crt.as_path(), key.as_path()));
    tls_support::mosquitto(tool, port, &dir.join("ca.crt"), identity, extra).await
}

/// Trust moves from CA A to CA B when `client-ca` is replaced: B's client gets in, A's new
/// connections are refused, and A's client connected before the change still receives.
#[tokio::test]
async fn replaced_client_ca_applies_to_new_handshakes_without_dropping_clients() {
    let dir = TempDir::new("x509-reload");
    let other = TempDir::new("x509-reload-other");
    certs(&dir, &["dev1"]).await;
    certs(&other, &["dev2"]).await;
    let port = listener("mtls", &[&[MANUAL_TLS, "authenticationRef: devices"]]);
    let config = format!("{}---\n{port}", x509_authentication(""));
    std::fs::write(dir.join("mtls.yaml"), config).expect("write config");
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
