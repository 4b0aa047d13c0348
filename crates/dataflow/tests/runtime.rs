//! Dataflows running against a live broker over real sockets: local to local with a
//! transform, enrichment from the state store and headers; batches of JSON-lines files;
//! and a remote destination (Debian's Mosquitto) that is stopped for 30 s mid-stream
//! without losing or reordering anything.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edgeplane_codec::{Packet, QoS};
use edgeplane_dataflow::resources;
use edgeplane_dataflow::runtime::{Dataflows, Health};
use edgeplane_statestore::{SetOptions, StateStore, StateStoreSettings};
use edgeplane_tests::{connect_persistent, publish, Client, TempDir, TestBroker, V5, WAIT};
use tokio::process::{Child, Command};

async fn start_flows(b: &TestBroker, manifests: &str) -> Dataflows {
    start_flows_with_store(b, manifests).await.0
}

async fn start_flows_with_store(
    b: &TestBroker,
    manifests: &str,
) -> (Dataflows, edgeplane_statestore::StateStoreHandle) {
    let state = StateStore::start(&b.broker, StateStoreSettings::default())
        .await
        .expect("state store starts");
    state
        .set(
            "assets",
            "{\"asset\": \"t1\", \"location\": \"hall-3\"}\n{\"asset\": \"t2\", \"location\": \"roof\"}\n",
            SetOptions::default(),
        )
        .await
        .expect("dataset stored");
    let config = edgeplane_config::load_str("flows.yaml", manifests).expect("manifests load");
    let plans = resources::plans(&config, None).expect("dataflows compile");
    let flows = Dataflows::start(b.broker.local_factory(), Some(state.clone()), plans).await;
    (flows, state)
}

/// Publish `topic`/`payload` until something arrives on `sub` (the dataflow attaches in
/// the background); returns what arrived.
async fn until_flowing(
    pubc: &mut Client,
    sub: &mut Client,
    topic: &str,
    payload: &str,
) -> edgeplane_codec::Publish {
    for _ in 0..50 {
        pubc.publish(publish(topic, payload, QoS::AtLeastOnce, 1))
            .await;
        if let Some(Packet::Publish(p)) = sub.recv_within(Duration::from_millis(200)).await {
            return p;
        }
    }
    panic!("the dataflow never delivered");
}

const TRANSFORM: &str = r#"
apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {name: thermostats}
spec:
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: ["thermostats/+/telemetry"]}
  - operationType: BuiltInTransformation
    builtInTransformationSettings:
      datasets: [{key: "assets as asset", inputs: ["$source.deviceId", "$context(asset).asset"], expression: "$1 == $2"}]
      filter: [{inputs: [temperature], expression: "$1 > 500", description: glitch}]
      map:
      - {inputs: ["*"], output: "*"}
      - {inputs: [temperature], output: temperatureF, expression: "cToF($1)"}
      - {inputs: ["$context(asset).location"], output: location}
  - operationType: Destination
    destinationSettings:
      endpointRef: default
      dataDestination: "curated/${inputTopic.2}"
      headers: [{actionType: AddOrReplace, key: site, value: plant-1}]
"#;

#[tokio::test]
async fn local_flow_transforms_enriches_filters_and_routes() {
    let b = TestBroker::start().await;
    let (flows, state) = start_flows_with_store(&b, TRANSFORM).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("curated/#", QoS::AtLeastOnce).await;
    let mut pubc = b.client("pub", V5).await;

    let first = until_flowing(
        &mut pubc,
        &mut sub,
        "thermostats/t1/telemetry",
        r#"{"deviceId": "t1", "temperature": 20}"#,
    )
    .await;
    assert_eq!(first.topic, "curated/t1");
    let body: serde_json::Value = serde_json::from_slice(&first.payload).expect("json out");
    assert_eq!(
        body,
        serde_json::json!({"deviceId": "t1", "temperatureF": 68.0, "location": "hall-3"})
    );
    assert!(first
        .properties
        .user_properties
        .contains(&("site".to_owned(), "plant-1".to_owned())));

    // Filtered (true drops), not JSON, then a normal one: only the last comes out.
    for payload in [r#"{"deviceId": "t2", "temperature": 900}"#, "not json"] {
        pubc.publish(publish(
            "thermostats/t2/telemetry",
            payload,
            QoS::AtLeastOnce,
            2,
        ))
        .await;
    }
    pubc.publish(publish(
        "thermostats/t2/telemetry",
        r#"{"deviceId": "t2", "temperature": 100}"#,
        QoS::AtLeastOnce,
        3,
    ))
    .await;
    let next = sub.receive_and_ack().await;
    let body: serde_json::Value = serde_json::from_slice(&next.payload).expect("json out");
    assert_eq!(next.topic, "curated/t2");
    assert_eq!(body["location"], "roof");
    assert_eq!(body["temperatureF"], 212.0);

    // A changed dataset applies without a restart (KEYNOTIFY refresh).
    state
        .set(
            "assets",
            "{\"asset\": \"t1\", \"location\": \"hall-9\"}\n",
            SetOptions::default(),
        )
        .await
        .expect("dataset updated");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        pubc.publish(publish(
            "thermostats/t1/telemetry",
            r#"{"deviceId": "t1", "temperature": 1}"#,
            QoS::AtLeastOnce,
            4,
        ))
        .await;
        let p = sub.receive_and_ack().await;
        let body: serde_json::Value = serde_json::from_slice(&p.payload).expect("json out");
        if body["location"] == "hall-9" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dataset never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = &flows.statuses()[0];
    assert_eq!(status.health(), Health::Available);
    assert_eq!(status.counters.filtered.load(Ordering::Relaxed), 1);
    assert_eq!(status.counters.failed.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn local_storage_writes_synced_json_lines_batches() {
    let out = TempDir::new("dataflow-files");
    let manifests = format!(
        r#"
apiVersion: edgeplane.io/v1
kind: DataflowEndpoint
metadata: {{name: files}}
spec:
  endpointType: LocalStorage
  localStorageSettings: {{path: "{}", batching: {{latencySeconds: 1, maxMessages: 4}}}}
---
apiVersion: edgeplane.io/v1
kind: Dataflow
metadata: {{name: archive}}
spec:
  operations:
  - operationType: Source
    sourceSettings: {{endpointRef: default, dataSources: ["line/#"]}}
  - operationType: Destination
    destinationSettings: {{endpointRef: files, dataDestination: line-data}}
"#,
        out.display()
    );
    let b = TestBroker::start().await;
    let flows = start_flows(&b, &manifests).await;
    let mut pubc = b.client("pub", V5).await;
    // Wait for the dataflow's subscription, then send ten numbered messages.
    let counters = &flows.statuses()[0].counters;
    let deadline = tokio::time::Instant::now() + WAIT;
    while counters.received.load(Ordering::Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dataflow never subscribed"
        );
        pubc.publish(publish("line/warmup", r#"{"n": -1}"#, QoS::AtLeastOnce, 1))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 0..10 {
        pubc.publish(publish(
            "line/1",
            &format!(r#"{{"n": {n}}}"#),
            QoS::AtLeastOnce,
            2,
        ))
        .await;
    }
    let folder = out.join("line-data");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let numbers = loop {
        let mut lines = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in &files {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert!(!name.ends_with(".tmp") || name.starts_with('.'), "{name}");
            if name.ends_with(".jsonl") && !name.starts_with('.') {
                let text = std::fs::read_to_string(f).expect("readable");
                assert!(
                    text.lines().count() <= 4,
                    "a batch holds at most maxMessages"
                );
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        let numbers: Vec<i64> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["n"].as_i64())
            .filter(|n| *n >= 0)
            .collect();
        if numbers.len() >= 10 || tokio::time::Instant::now() > deadline {
            break numbers;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(numbers, (0..10).collect::<Vec<_>>());
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn start_mosquitto(dir: &std::path::Path, port: u16) -> Child {
    start_mosquitto_with(dir, port, "allow_anonymous true\n").await
}

async fn start_mosquitto_with(dir: &std::path::Path, port: u16, extra: &str) -> Child {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\n{extra}persistence true\npersistence_location {}/\nmax_queued_messages 100000\nmax_inflight_messages 100\n",
            dir.display()
        ),
    )
    .expect("write mosquitto.conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto runs (scripts/install-deps.sh installs it)");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mosquitto did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Stop Mosquitto the way a service manager does (it saves its sessions on SIGTERM).
async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").arg(pid.to_string()).status().await;
    }
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
}

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
    let deadline = tokio::time::Instant::now() + WAIT;
    let why = loop {
        if let Some(why) = status.problem.borrow().clone() {
            break why;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status for a refused login"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    let deadline = tokio::time::Instant::now() + WAIT;
    let why = loop {
        if let Some(why) = status.problem.borrow().clone() {
            break why;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status for an untrusted broker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
async fn instances_of_a_profile_share_the_source() {
    let manifests = r#"
apiVersion: connectivity.iotoperations.azure.com/v1
kind: DataflowProfile
metadata: {name: wide}
spec: {instanceCount: 3}
---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {name: fan}
spec:
  profileRef: wide
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: ["work/#"]}
  - operationType: Destination
    destinationSettings: {endpointRef: default, dataDestination: "done/${inputTopic.2}"}
"#;
    let b = TestBroker::start().await;
    let flows = start_flows(&b, manifests).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("done/#", QoS::AtLeastOnce).await;
    let mut pubc = b.client("pub", V5).await;
    until_flowing(&mut pubc, &mut sub, "work/warmup", "w").await;
    while sub.recv_within(Duration::from_millis(300)).await.is_some() {}
    for n in 0..300u16 {
        pubc.publish(publish(
            "work/item",
            &n.to_string(),
            QoS::AtLeastOnce,
            n + 1,
        ))
        .await;
    }
    let mut got = Vec::new();
    while got.len() < 300 {
        let p = sub.receive_and_ack().await;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    // Each message once (a shared group gives each to one instance), none extra.
    assert!(sub.recv_within(Duration::from_millis(300)).await.is_none());
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(distinct.len(), 300);
    assert!(flows.statuses()[0].counters.sent.load(Ordering::Relaxed) >= 300);
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

#[tokio::test]
async fn local_storage_writes_parquet_that_pyarrow_reads() {
    let out = TempDir::new("dataflow-parquet");
    let manifests = format!(
        r#"
apiVersion: edgeplane.io/v1
kind: DataflowEndpoint
metadata: {{name: lake}}
spec:
  endpointType: LocalStorage
  localStorageSettings: {{path: "{}", batching: {{latencySeconds: 1, maxMessages: 100}}}}
---
apiVersion: edgeplane.io/v1
kind: Dataflow
metadata: {{name: to-lake}}
spec:
  operations:
  - operationType: Source
    sourceSettings: {{endpointRef: default, dataSources: ["line/#"]}}
  - operationType: BuiltInTransformation
    builtInTransformationSettings:
      serializationFormat: Parquet
      map: [{{inputs: ["*"], output: "*"}}, {{inputs: [t], output: tF, expression: "cToF($1)"}}]
  - operationType: Destination
    destinationSettings: {{endpointRef: lake, dataDestination: telemetry}}
"#,
        out.display()
    );
    let b = TestBroker::start().await;
    let flows = start_flows(&b, &manifests).await;
    let counters = flows.statuses()[0].counters.clone();
    let mut pubc = b.client("pub", V5).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while counters.received.load(Ordering::Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dataflow never subscribed"
        );
        pubc.publish(publish(
            "line/warmup",
            r#"{"n": -1, "t": 0}"#,
            QoS::AtLeastOnce,
            1,
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 0..20 {
        let body = format!(r#"{{"n": {n}, "t": {}, "site": "kent"}}"#, n * 5);
        pubc.publish(publish("line/1", &body, QoS::AtLeastOnce, 2))
            .await;
    }
    let folder = out.join("telemetry");
    let script = format!(
        "import glob, pyarrow.parquet as pq, pyarrow as pa\n\
         files = sorted(glob.glob('{}/*.parquet'))\n\
         t = pa.concat_tables([pq.read_table(f) for f in files], promote_options='default')\n\
         rows = [r for r in t.to_pylist() if r['n'] >= 0]\n\
         print(len(rows), rows[-1]['n'], rows[-1]['tF'], rows[-1]['site'])",
        folder.display()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let out = Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .await
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if text == "20 19 203.0 kent" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pyarrow read {text:?} ({})",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
