//! The `edgeplane` binary as a user runs it: a config folder of manifests, graceful SIGTERM,
//! and `validate` reporting every error with file, resource and field.

use std::time::Duration;

use edgeplane_tests::codec::{Packet, QoS, ReasonCode};
use edgeplane_tests::*;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("cli-{name}"))
}

const CONFIG: &str = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: Broker
metadata:
  name: default
spec:
  advanced:
    clients:
      maxKeepAliveSeconds: 120
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata:
  name: local
spec:
  ports:
  - port: 0
    bindAddress: 127.0.0.1
  - port: 0
    bindAddress: 127.0.0.1
    protocol: WebSockets
"#;

/// The configured listeners (and only those) serve; SIGTERM sends MQTT 5 clients
/// DISCONNECT 0x8B (server shutting down) and the process exits cleanly.
#[tokio::test]
async fn run_with_config_and_sigterm() {
    let dir = temp_dir("run");
    std::fs::write(dir.join("broker.yaml"), CONFIG).expect("write config");
    let (mut child, addrs) = start_edgeplane(BIN, &dir, 2).await;
    let mut c = Client::open(addrs[0], V5).await;
    let mut conn = connect("cli", V5);
    conn.keep_alive = 0;
    let ack = c.connect(conn).await;
    assert_eq!(ack.code, 0);
    assert_eq!(
        ack.properties.server_keep_alive,
        Some(120),
        "maxKeepAliveSeconds from the Broker resource applies"
    );
    c.sub("t", QoS::AtLeastOnce).await;
    c.publish(publish("t", "x", QoS::AtLeastOnce, 1)).await;
    assert_eq!(&c.receive_and_ack().await.payload[..], b"x");

    let pid = child.id().expect("pid").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(exit.success(), "{exit}");
}

/// `validate` reports every error at once, each with its file, resource and field path.
#[tokio::test]
async fn validate_reports_every_error() {
    let dir = temp_dir("validate");
    std::fs::write(
        dir.join("bad.yaml"),
        r#"
apiVersion: edgeplane.io/v1
kind: Broker
metadata: {name: default}
spec:
  advanced:
    clients:
      maxReceiveMaximum: 0
      surprise: 1
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: edge}
spec:
  ports:
  - port: 1883
    protocol: Tcp
"#,
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&dir)
        .output()
        .await
        .expect("run validate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "bad.yaml",
        "Broker/default spec.advanced.clients.maxReceiveMaximum",
        "Broker/default spec.advanced.clients.surprise",
        "BrokerListener/edge spec.ports[0].protocol",
        "3 error(s)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    std::fs::write(dir.join("bad.yaml"), CONFIG).expect("write");
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&dir)
        .output()
        .await
        .expect("run validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An invalid configuration stops `run` with the errors instead of starting half a broker.
#[tokio::test]
async fn run_refuses_invalid_config() {
    let dir = temp_dir("invalid");
    std::fs::write(
        dir.join("x.yaml"),
        "apiVersion: edgeplane.io/v1\nkind: Gateway\nmetadata: {name: a}\n",
    )
    .expect("write");
    let err = edgeplane_start_failure(BIN, &dir).await;
    assert!(err.contains("x.yaml") && err.contains("Gateway"), "{err}");
}

/// `--log-format json` writes one JSON object per line, and the Broker resource's
/// `diagnostics.logs.level` sets the level (debug lines appear).
#[tokio::test]
async fn json_logs_at_the_configured_level() {
    let dir = temp_dir("json-logs");
    let config = CONFIG.replace(
        "spec:\n  advanced:",
        "spec:\n  diagnostics:\n    logs: {level: debug}\n  advanced:",
    );
    std::fs::write(dir.join("broker.yaml"), config).expect("write config");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--log-format",
            "json",
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&*dir)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let mut levels = Vec::new();
    let mut client = None;
    let read = async {
        while !levels.iter().any(|l| l == "DEBUG") {
            let Some(line) = lines.next_line().await.expect("read") else {
                break;
            };
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            levels.push(v["level"].as_str().unwrap_or_default().to_owned());
            // A client connecting makes the broker log at debug level.
            if let (None, Some(addr)) = (
                &client,
                v["fields"]["listener"]
                    .as_str()
                    .and(v["fields"]["addr"].as_str()),
            ) {
                let mut c = Client::open(addr.parse().expect("addr"), V5).await;
                c.connect(connect("json-logs", V5)).await;
                client = Some(c);
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("log lines");
    assert!(levels.iter().any(|l| l == "INFO"), "{levels:?}");
    assert!(
        levels.iter().any(|l| l == "DEBUG"),
        "debug from diagnostics.logs.level: {levels:?}"
    );
}
