//! Dataflows on a live broker over real sockets, local to local: transform, enrichment
//! from the state store (refreshed on change), headers and topic variables; shared
//! instances; batches of JSON-lines and Parquet files.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{start_flows, start_flows_with_store, until_flowing, until_received};
use edgeplane_codec::QoS;
use edgeplane_dataflow::runtime::Health;
use edgeplane_statestore::SetOptions;
use edgeplane_tests::{publish, TempDir, TestBroker, V5, WAIT};
use tokio::process::Command;

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
    let counters = flows.statuses()[0].counters.clone();
    until_received(&mut pubc, &counters.received, "line/warmup", r#"{"n": -1}"#).await;
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
    until_received(
        &mut pubc,
        &counters.received,
        "line/warmup",
        r#"{"n": -1, "t": 0}"#,
    )
    .await;
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
