//! Dataflows to and from remote brokers (Debian's Mosquitto) over real sockets: a 30 s
//! outage of the destination loses and reorders nothing; username/password, TLS with a
//! client certificate, WebSockets; refusals show as a degraded dataflow, in words.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    free_port, problem_of, start_flows, start_mosquitto, start_mosquitto_with, stop, until_flowing,
};
use edgeplane_codec::{Packet, QoS};
use edgeplane_dataflow::runtime::Health;
use edgeplane_tests::{connect_persistent, publish, Client, TempDir, TestBroker, V5, WAIT};
use tokio::process::Command;

/// A subscriber on Mosquitto that keeps its session and reconnects, collecting sequence
/// numbers in arrival order until it has every one of `0..n`.
async fn collect_from(port: u16, n: u64) -> Vec<u64> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut seen = Vec::new();
    let mut distinct = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while (distinct.len() as u64) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} arrived",
            distinct.len()
        );
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        drop(stream);
        let mut c = Client::open(addr, V5).await;
        let ack = c.connect(connect_persistent("remote-sub", V5, 3600)).await;
        if ack.code != 0 {
            continue;
        }
        if !ack.session_present {
            c.sub("plant/#", QoS::AtLeastOnce).await;
        }
        loop {
            match c.recv_within(Duration::from_secs(2)).await {
                Some(Packet::Publish(p)) => {
                    if p.qos == QoS::AtLeastOnce {
                        c.send(&Packet::PubAck(edgeplane_codec::Ack::new(
                            p.packet_id,
                            edgeplane_codec::ReasonCode::SUCCESS,
                        )))
                        .await;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).expect("json");
                    let seq = v["seq"].as_u64().expect("seq");
                    seen.push(seq);
                    distinct.insert(seq);
                    if distinct.len() as u64 == n {
                        return seen;
                    }
                }
                Some(_) => {}
                None => break, // connection gone or quiet: reconnect
            }
        }
    }
    seen
}

#[tokio::test]
async fn remote_destination_survives_a_30_second_outage_in_order() {
    let dir = TempDir::new("dataflow-mosquitto");
    let port = free_port();
    let mosquitto = start_mosquitto(&dir, port).await;
    let manifests = format!(
        r#"
apiVersion: connectivity.iotoperations.azure.com/v1
kind: DataflowEndpoint
metadata: {{name: remote}}
spec:
  endpointType: Mqtt
  mqttSettings: {{host: "127.0.0.1:{port}", tls: {{mode: Disabled}}, qos: 1, keepAliveSeconds: 5, maxInflightMessages: 50}}
---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {{name: uplink}}
spec:
  operations:
  - operationType: Source
    sourceSettings: {{endpointRef: default, dataSources: ["plant/#"]}}
  - operationType: Destination
    destinationSettings: {{endpointRef: remote, dataDestination: "${{inputTopic}}"}}
"#
    );
    let b = TestBroker::start().await;
    let flows = start_flows(&b, &manifests).await;
    let status = flows.statuses()[0].clone();
    let total: u64 = 2000;
    let collector = tokio::spawn(collect_from(port, total));
    // Let the collector subscribe and the dataflow connect.
    let deadline = tokio::time::Instant::now() + WAIT;
    while status.health() != Health::Available || !status.problem.borrow().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dataflow never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut pubc = b.client("pub", V5).await;
    let send = |seq: u64| {
        publish(
            "plant/line1",
            &format!(r#"{{"seq": {seq}}}"#),
            QoS::AtLeastOnce,
            1 + (seq % 60000) as u16,
        )
    };
    for seq in 0..total / 2 {
        pubc.publish(send(seq)).await;
    }
    stop(mosquitto).await;
    // The rest is published during the outage: the broker keeps it for the dataflow.
    for seq in total / 2..total {
        pubc.publish(send(seq)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status.health(), Health::Degraded, "the outage shows");
    tokio::time::sleep(Duration::from_secs(27)).await;
    let _mosquitto = start_mosquitto(&dir, port).await;

    let seen = tokio::time::timeout(Duration::from_secs(90), collector)
        .await
        .expect("every message arrives after the outage")
        .expect("collector ran");
    // Every message arrived; ignoring re-sent duplicates, in publish order.
    let mut firsts = Vec::new();
    let mut got = BTreeSet::new();
    for s in &seen {
        if got.insert(*s) {
            firsts.push(*s);
        }
    }
    assert_eq!(firsts, (0..total).collect::<Vec<_>>(), "order kept");
    let deadline = tokio::time::Instant::now() + WAIT;
    while status.health() != Health::Available {
        assert!(tokio::time::Instant::now() < deadline, "health recovers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{} deliveries for {total} messages ({} re-sent after the outage)",
        seen.len(),
        seen.len() as u64 - total
    );
}

#[tokio::test]
async fn remote_source_with_username_and_password() {
    let dir = TempDir::new("dataflow-remote-source");
    let passwords = dir.join("passwords");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["plant", "s3cret"])
        .status()
        .await
        .expect("mosquitto_passwd runs");
    assert!(made.success());
    let port = free_port();
    let _mosquitto = start_mosquitto_with(
        &dir,
        port,
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
    )
    .await;
    let manifests = |password: &str| {
        format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: login}}
stringData: {{username: plant, password: "{password}"}}
---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: DataflowEndpoint
metadata: {{name: site-broker}}
spec:
  endpointType: Mqtt
  mqttSettings:
    host: "127.0.0.1:{port}"
    tls: {{mode: Disabled}}
    authentication: {{method: UsernamePassword, usernamePasswordSettings: {{secretRef: login}}}}
---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {{name: inbound}}
spec:
  operations:
  - operationType: Source
    sourceSettings: {{endpointRef: site-broker, dataSources: ["sensors/#"]}}
  - operationType: Destination
    destinationSettings: {{endpointRef: default, dataDestination: "site/${{inputTopic}}"}}
"#
        )
    };

    // A wrong password shows as a degraded dataflow, with the broker's reason.
    let b = TestBroker::start().await;
    let flows = start_flows(&b, &manifests("wrong")).await;
    let status = flows.statuses()[0].clone();
    let why = problem_of(&status, "no status for a refused login").await;
    assert_eq!(status.health(), Health::Degraded);
    assert!(
        why.contains("site-broker") && why.contains("refused"),
        "{why}"
    );
    assert!(!why.contains("wrong"), "the password never appears: {why}");
    drop((flows, b));

    // The right one brings remote messages in.
    let b = TestBroker::start().await;
    let flows = start_flows(&b, &manifests("s3cret")).await;
    let status = flows.statuses()[0].clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while status.problem.borrow().is_some() || status.counters.received.load(Ordering::Relaxed) > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dataflow never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sub = b.client("sub", V5).await;
    sub.sub("site/#", QoS::AtLeastOnce).await;
    let remote = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut device = Client::open(remote, V5).await;
    let mut login = edgeplane_tests::connect("device", V5);
    login.username = Some("plant".into());
    login.password = Some(bytes::Bytes::from_static(b"s3cret"));
    assert_eq!(device.connect(login).await.code, 0);
    let mut got = None;
    for _ in 0..50 {
        device
            .publish(publish(
                "sensors/press1",
                r#"{"bar": 2.5}"#,
                QoS::AtLeastOnce,
                1,
            ))
            .await;
        if let Some(Packet::Publish(p)) = sub.recv_within(Duration::from_millis(200)).await {
            got = Some(p);
            break;
        }
    }
    let p = got.expect("the remote message arrives locally");
    assert_eq!(p.topic, "site/sensors/press1");
    assert_eq!(&p.payload[..], br#"{"bar": 2.5}"#);
}

#[tokio::test]
async fn remote_destination_over_tls_with_a_client_certificate() {
    use edgeplane_broker::tls::{issue_ca, issue_leaf};
    let dir = TempDir::new("dataflow-tls");
    let ca = issue_ca("plant-ca").expect("ca");
    let server = issue_leaf(&ca, "mosquitto", &["127.0.0.1".into()], false).expect("server");
    let client = issue_leaf(&ca, "edge-gateway", &[], true).expect("client");
    let other_ca = issue_ca("someone-else").expect("ca");
    for (name, pem) in [
        ("ca.pem", &ca.cert_pem),
        ("server.pem", &server.cert_pem),
        ("server.key", &server.key_pem),
        ("client.pem", &client.cert_pem),
        ("client.key", &client.key_pem),
    ] {
        std::fs::write(dir.join(name), pem).expect("write pem");
    }
    let port = free_port();
    let d = dir.display();
    let _mosquitto = start_mosquitto_with(
        &dir,
        port,
        &format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"
        ),
    )
    .await;
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let manifests = |trusted: &str| {
        format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: gateway-cert}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: plant-ca}}
data:
  ca.crt: |
{}---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: DataflowEndpoint
metadata: {{name: secure}}
spec:
  endpointType: Mqtt
  mqttSettings:
    host: "127.0.0.1:{port}"
    tls: {{mode: Enabled, trustedCaCertificateConfigMapRef: plant-ca}}
    cloudEventAttributes: CreateOrRemap
    authentication: {{method: X509Certificate, x509CertificateSettings: {{secretRef: gateway-cert}}}}
---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {{name: secure-uplink}}
spec:
  operations:
  - operationType: Source
    sourceSettings: {{endpointRef: default, dataSources: ["plant/#"]}}
  - operationType: Destination
    destinationSettings: {{endpointRef: secure, dataDestination: "uplink/${{inputTopic}}"}}
"#,
            indent(&client.cert_pem),
            indent(&client.key_pem),
            indent(trusted)
        )
    };

    // A broker certificate from a CA the endpoint does not trust is refused, in words.
    let b = TestBroker::start().await;
    let flows = start_flows(&b, &manifests(&other_ca.cert_pem)).await;
    let status = flows.statuses()[0].clone();
    let why = problem_of(&status, "no status for an untrusted broker").await;
    assert!(why.contains("tls handshake"), "{why}");
    drop((flows, b));

    // Trusting the right CA, messages reach a TLS subscriber on Mosquitto.
    let b = TestBroker::start().await;
    let _flows = start_flows(&b, &manifests(&ca.cert_pem)).await;
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            "5",
            "-t",
            "uplink/#",
            "-C",
            "1",
            "-v",
        ])
        .arg("--cafile")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("client.pem"))
        .arg("--key")
        .arg(dir.join("client.key"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub runs");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pubc = b.client("pub", V5).await;
    let output = async {
        loop {
            pubc.publish(publish("plant/press", "42", QoS::AtLeastOnce, 1))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(Some(_)) = sub.try_wait() {
                break;
            }
        }
        sub.wait_with_output().await.expect("mosquitto_sub output")
    };
    let out = tokio::time::timeout(Duration::from_secs(15), output)
        .await
        .expect("the message arrives over TLS");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "uplink/plant/press 42"
    );
}

#[tokio::test]
async fn remote_destination_over_websockets() {
    let dir = TempDir::new("dataflow-ws");
    let (ws_port, tcp_port) = (free_port(), free_port());
    let _mosquitto = start_mosquitto_with(
        &dir,
        ws_port,
        &format!("protocol websockets\nlistener {tcp_port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .await;
    let manifests = format!(
        r#"
apiVersion: connectivity.iotoperations.azure.com/v1
kind: DataflowEndpoint
metadata: {{name: ws}}
spec:
  endpointType: Mqtt
  mqttSettings: {{host: "127.0.0.1:{ws_port}", protocol: WebSockets, tls: {{mode: Disabled}}}}
---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {{name: over-ws}}
spec:
  operations:
  - operationType: Source
    sourceSettings: {{endpointRef: default, dataSources: ["plant/#"]}}
  - operationType: Destination
    destinationSettings: {{endpointRef: ws, dataDestination: "ws/${{inputTopic}}"}}
"#
    );
    let b = TestBroker::start().await;
    let _flows = start_flows(&b, &manifests).await;
    let remote = std::net::SocketAddr::from(([127, 0, 0, 1], tcp_port));
    let mut sub = Client::open(remote, V5).await;
    assert_eq!(
        sub.connect(edgeplane_tests::connect("ws-sub", V5))
            .await
            .code,
        0
    );
    sub.sub("ws/#", QoS::AtLeastOnce).await;
    let mut pubc = b.client("pub", V5).await;
    let p = until_flowing(&mut pubc, &mut sub, "plant/valve", "open").await;
    assert_eq!(p.topic, "ws/plant/valve");
    assert_eq!(&p.payload[..], b"open");
}
