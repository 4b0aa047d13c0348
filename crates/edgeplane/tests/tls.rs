//! TLS listeners over real sockets with real clients: `edgeplane certs` output used as is,
//! `mosquitto_pub`/`mosquitto_sub` with `--cafile` over TLS 1.2 and 1.3 and over WebSocket,
//! a client trusting another CA refused, a renewed certificate picked up without dropping
//! connected clients, and `mode: Automatic` issuing from the local CA. Client certificates
//! (X509 ports) are in `tls_x509.rs`, the handshake deadline in `tls_slowloris.rs`.

use std::path::Path;
use std::time::Duration;

use edgeplane_tests::*;
use tokio::process::Command;

mod tls_support;
use tls_support::{certs, BIN};

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("tls-{name}"))
}

fn listener(tls: &str) -> String {
    format!(
        "apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {{name: secure}}\nspec:\n  ports:\n  - port: 0\n    bindAddress: 127.0.0.1\n    tls: {tls}\n  - port: 0\n    bindAddress: 127.0.0.1\n    protocol: WebSockets\n    tls: {tls}\n"
    )
}

const MANUAL: &str = "{mode: Manual, manual: {secretRef: edgeplane-server-tls}}";

/// A mosquitto client over TLS without a client certificate.
async fn mosquitto(tool: &str, port: u16, cafile: &Path, extra: &[&str]) -> (bool, String) {
    tls_support::mosquitto(tool, port, cafile, None, extra).await
}

/// Over TLS 1.2 and 1.3, mosquitto clients that trust the local CA publish and subscribe;
/// WebSocket over TLS works too; a client trusting another CA is refused.
#[tokio::test]
async fn manual_tls_with_mosquitto_clients() {
    let dir = temp_dir("manual");
    certs(&dir, &[]).await;
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
    certs(&other, &[]).await;
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
    certs(&dir, &[]).await;
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

    certs(&dir, &[]).await; // new CA, new server certificate, same Secret name
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
    certs(&dir, &[]).await;
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
