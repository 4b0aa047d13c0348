//! Dataflows through the `edgeplane` binary: `dataflow test` on samples, `validate`
//! pointing at a broken expression, and `run` with `requestDiskPersistence` killed with
//! SIGKILL mid-stream: after the restart every source message reaches the destination.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use edgeplane_codec::{Ack, Packet, QoS, ReasonCode};
use edgeplane_tests::*;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

const FLOW: &str = r#"apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {name: thermostats}
spec:
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: ["thermostats/+/telemetry"]}
  - operationType: BuiltInTransformation
    builtInTransformationSettings:
      datasets: [{key: assets, inputs: ["$source.deviceId", "$context.asset"], expression: "$1 == $2"}]
      filter: [{inputs: [temperature], expression: "$1 > 500", description: glitch}]
      map:
      - {inputs: ["*"], output: "*"}
      - {inputs: [temperature], output: temperatureF, expression: "cToF($1)"}
      - {inputs: ["$context(assets).location"], output: location}
  - operationType: Destination
    destinationSettings: {endpointRef: default, dataDestination: "curated/${inputTopic.2}"}
"#;

#[tokio::test]
async fn dataflow_test_prints_each_output_or_why_it_was_dropped() {
    let dir = TempDir::new("dataflow-cli");
    std::fs::write(dir.join("flow.yaml"), FLOW).expect("write");
    std::fs::write(
        dir.join("samples.jsonl"),
        concat!(
            "{\"topic\": \"thermostats/t1/telemetry\", \"payload\": {\"deviceId\": \"t1\", \"temperature\": 25}}\n",
            "{\"topic\": \"thermostats/t1/telemetry\", \"payload\": {\"deviceId\": \"t1\", \"temperature\": 900}}\n",
            "{\"deviceId\": \"t9\", \"temperature\": 0}\n",
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("assets.jsonl"),
        "{\"asset\": \"t1\", \"location\": \"hall-3\"}\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("dataflow")
        .arg("test")
        .arg(dir.join("flow.yaml"))
        .arg("--input")
        .arg(dir.join("samples.jsonl"))
        .arg("--dataset")
        .arg(format!("assets={}", dir.join("assets.jsonl").display()))
        .arg("--topic")
        .arg("thermostats/t9/telemetry")
        .output()
        .await
        .expect("run edgeplane dataflow test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            r#"1: -> curated/t1 {"deviceId":"t1","location":"hall-3","temperatureF":77.0}"#,
            "2: dropped: filter[0] matched (glitch)",
            r#"3: -> curated/t9 {"deviceId":"t9","temperatureF":32.0}"#,
        ]
    );
}

#[tokio::test]
async fn validate_points_at_a_broken_expression() {
    let dir = TempDir::new("dataflow-validate");
    std::fs::write(dir.join("flow.yaml"), FLOW.replace("cToF($1)", "cToF($1")).expect("write");
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&*dir)
        .output()
        .await
        .expect("run edgeplane validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = FLOW.lines().position(|l| l.contains("cToF")).expect("line") + 1;
    let expected = format!(
        "flow.yaml:{line}: Dataflow/thermostats spec.operations[1].builtInTransformationSettings.map[1].expression:"
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Start `edgeplane run` with a data folder and wait until it reports ready (`/readyz`:
/// listeners bound, state store and dataflows attached).
async fn run_durable(config: &std::path::Path, data: &std::path::Path, port: u16) -> Child {
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(BIN)
        .args(["run", "--metrics", "127.0.0.1:0", "--http"])
        .arg(http.to_string())
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start edgeplane");
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while !ready(http).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "edgeplane did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok());
    child
}

/// Whether `GET /readyz` answers 200.
async fn ready(http: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(http).await else {
        return false;
    };
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    if s.write_all(req.as_bytes()).await.is_err() || s.read_to_end(&mut buf).await.is_err() {
        return false;
    }
    buf.starts_with(b"HTTP/1.1 200")
}

async fn persistent_client(addr: SocketAddr, id: &str) -> (Client, bool) {
    let mut c = Client::open(addr, V5).await;
    let ack = c.connect(connect_persistent(id, V5, 3600)).await;
    assert_eq!(ack.code, 0, "CONNACK {ack:?}");
    (c, ack.session_present)
}

#[tokio::test]
async fn kill_9_mid_stream_with_disk_persistence_loses_nothing() {
    let dir = TempDir::new("dataflow-crash");
    let (config, data) = (dir.join("config"), dir.join("data"));
    std::fs::create_dir_all(&config).expect("mkdir");
    let port = free_port();
    std::fs::write(
        config.join("site.yaml"),
        format!(
            r#"apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {{name: local}}
spec:
  ports: [{{port: {port}, bindAddress: 127.0.0.1}}]
---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {{name: relay}}
spec:
  requestDiskPersistence: Enabled
  operations:
  - operationType: Source
    sourceSettings: {{endpointRef: default, dataSources: ["in/#"]}}
  - operationType: BuiltInTransformation
    builtInTransformationSettings:
      map: [{{inputs: ["*"], output: "*"}}, {{inputs: [seq], output: relayed, expression: "$1 + 0"}}]
  - operationType: Destination
    destinationSettings: {{endpointRef: default, dataDestination: "out/${{inputTopic.2}}"}}
"#
        ),
    )
    .expect("write config");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // `scripts/dataflow-crash-test.sh` runs many cycles; CI runs three.
    let cycles: u64 = std::env::var("EDGEPLANE_DATAFLOW_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let per_cycle: u64 = 1000;
    let total = cycles * per_cycle;
    let seq_of = |p: &edgeplane_codec::Publish| -> Option<u64> {
        // The map moves `seq` to `relayed` (a narrower rule takes its field from `*`).
        serde_json::from_slice::<serde_json::Value>(&p.payload).ok()?["relayed"].as_u64()
    };
    let body = |seq: u64| format!(r#"{{"seq": {seq}}}"#);
    let id = |seq: u64| 1 + (seq % 60_000) as u16;
    let mut received = BTreeSet::new();
    let mut deliveries = 0u64;
    for cycle in 0..cycles {
        let mut broker = run_durable(&config, &data, port).await;
        let (mut sub, present) = persistent_client(addr, "out-sub").await;
        assert_eq!(
            present,
            cycle > 0,
            "the subscriber's session survives every crash"
        );
        if cycle == 0 {
            sub.sub("out/#", QoS::AtLeastOnce).await;
        }
        let (mut pubc, present) = persistent_client(addr, "in-pub").await;
        assert_eq!(
            present,
            cycle > 0,
            "the publisher's session survives every crash"
        );
        for seq in cycle * per_cycle..(cycle + 1) * per_cycle {
            // Each PUBACK means the broker has the message on disk.
            pubc.publish(publish("in/line1", &body(seq), QoS::AtLeastOnce, id(seq)))
                .await;
        }
        // Read some, with deliveries still in flight through the dataflow, then SIGKILL.
        let reads = 50 + (cycle * 37) % 200;
        for _ in 0..reads {
            match sub.recv_within(Duration::from_millis(5)).await {
                Some(Packet::Publish(p)) => {
                    sub.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                        .await;
                    deliveries += 1;
                    received.extend(seq_of(&p));
                }
                Some(_) => {}
                None => break,
            }
        }
        broker.start_kill().expect("SIGKILL");
        let _ = broker.wait().await;
    }
    let _broker = run_durable(&config, &data, port).await;
    let (mut sub, present) = persistent_client(addr, "out-sub").await;
    assert!(present, "the subscriber's session survived");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (received.len() as u64) < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} arrived; first missing: {:?}",
            received.len(),
            (0..total).find(|s| !received.contains(s))
        );
        if let Some(Packet::Publish(p)) = sub.recv_within(Duration::from_secs(1)).await {
            sub.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                .await;
            deliveries += 1;
            received.extend(seq_of(&p));
        }
    }
    println!(
        "{cycles} kill -9 cycles: {total} source messages acknowledged, {} distinct reached \
         the destination, 0 lost, {} duplicate deliveries",
        received.len(),
        deliveries - received.len() as u64
    );
}

/// A changed Dataflow in the configuration folder applies without a restart, and a removed
/// one stops.
#[tokio::test]
async fn dataflows_follow_the_configuration_folder() {
    let dir = TempDir::new("dataflow-reload");
    let listener = "apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: local}\nspec:\n  ports:\n  - port: 0\n    bindAddress: 127.0.0.1\n";
    std::fs::write(dir.join("listener.yaml"), listener).expect("write");
    let flow = |destination: &str| {
        format!(
            "apiVersion: edgeplane.io/v1\nkind: Dataflow\nmetadata: {{name: moving}}\nspec:\n  operations:\n  - operationType: Source\n    sourceSettings: {{endpointRef: default, dataSources: [\"in/#\"]}}\n  - operationType: Destination\n    destinationSettings: {{endpointRef: default, dataDestination: \"{destination}\"}}\n"
        )
    };
    std::fs::write(dir.join("flow.yaml"), flow("first/out")).expect("write");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let mut sub = Client::open(addrs[0], V5).await;
    assert_eq!(sub.connect(connect("sub", V5)).await.code, 0);
    sub.sub("first/#", QoS::AtMostOnce).await;
    sub.sub("second/#", QoS::AtMostOnce).await;
    let mut pubc = Client::open(addrs[0], V5).await;
    assert_eq!(pubc.connect(connect("pub", V5)).await.code, 0);
    // Publish until a message arrives on `want`; fail after `limit`.
    async fn until(pubc: &mut Client, sub: &mut Client, want: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            pubc.publish(publish("in/x", "m", QoS::AtLeastOnce, 1))
                .await;
            if let Some(Packet::Publish(p)) = sub.recv_within(Duration::from_millis(200)).await {
                if p.topic == want {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "nothing on {want}");
        }
    }
    until(&mut pubc, &mut sub, "first/out", WAIT).await;
    std::fs::write(dir.join("flow.yaml"), flow("second/out")).expect("write");
    until(&mut pubc, &mut sub, "second/out", Duration::from_secs(15)).await;

    std::fs::remove_file(dir.join("flow.yaml")).expect("remove");
    // Once the removal applies, nothing more comes out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        while sub.recv_within(Duration::from_millis(50)).await.is_some() {}
        pubc.publish(publish("in/x", "m", QoS::AtLeastOnce, 1))
            .await;
        if sub.recv_within(Duration::from_millis(500)).await.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the removed dataflow still runs"
        );
    }
}
