//! The OPC UA connector through the `edgeplane` binary: a configuration folder (or the REST
//! API) declares a Device pointing at an OPC UA server and an Asset; a real MQTT subscriber
//! sees the asset's data in Azure IoT Operations' shape; `GET /api/v1/.../status` reports a
//! wrong password, an untrusted certificate and an outage in words; `edgeplane opcua
//! trust` fixes the certificate; an asset changed or deleted through the API reconfigures
//! or ends its session; data resumes after the server comes back, on every one of the
//! endpoint's OPC UA sessions (`sessionCount`).
//!
//! Servers: the built-in simulator (in process, so a test can stop it and start it again on
//! the same port and count its monitored items) and an independent one, Python's `asyncua`
//! (`tests/opcua/asyncua_server.py`; `scripts/install-deps.sh` installs it).

use std::time::Duration;

use edgeplane_opcua::sim::SimHandle;
use edgeplane_tests::*;
use tokio::process::Command;

mod opcua_support;

use opcua_support::start_edgeplane;
use opcua_support::*;

#[tokio::test]
async fn simulator_data_reaches_mqtt_and_resumes_after_an_outage() {
    let dir = TempDir::new("opcua-sim-e2e");
    let sim = start_sim(&dir, "127.0.0.1:0").await;
    let url = sim.endpoint_url().to_owned();
    let bind = sim.local_addr().to_string();
    write(&dir, "listener.yaml", LISTENER);
    write(
        &dir,
        "secret.yaml",
        &secret("plc-user", "operator", "secret"),
    );
    // Two sessions (`sessionCount`): the oven's dataset on one, the mixer's on the other.
    let two_sessions =
        r#"{"security":{"autoAcceptUntrustedServerCertificates":true}, "sessionCount": 2}"#;
    write(
        &dir,
        "device.yaml",
        &device("plc", &url, "plc-user", two_sessions),
    );
    write(&dir, "mixer.yaml", MIXER);
    let events = "  eventGroups:
  - name: alarms
    events:
    - name: simulated
      dataSource: ns=2;s=Special.Events
      eventConfiguration: '{\"publishingInterval\": 100}'
      destinations:
      - {target: Mqtt, configuration: {topic: factory/oven/events, qos: Qos1}}
";
    write(
        &dir,
        "asset.yaml",
        &(asset("oven", "plc", &SINE_AND_COUNTER) + events),
    );
    let ep = start_edgeplane(&dir).await;
    let mut sub = subscriber(ep.mqtt, "azure-iot-operations/data/#").await;
    let mut event_sub = subscriber(ep.mqtt, "factory/oven/events").await;
    let mut mixer_sub = subscriber(ep.mqtt, "factory/mixer/speed").await;

    let first = next_publish(&mut sub).await;
    assert_aio_message(&first, "oven", &[], &url);
    assert_eq!(user_property(&first, "type"), Some("ua-keyframe"));
    assert_eq!(user_property(&first, "sequence"), Some("0"));
    // Key frames (every third message) carry every data point's last value.
    let key = key_frame_with_all(&mut sub, &["sine", "counter"]).await;
    assert_aio_message(&key, "oven", &["sine", "counter"], &url);
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let p = next_publish(&mut sub).await;
        assert_aio_message(&p, "oven", &[], &url);
        kinds.push(user_property(&p, "type").map(str::to_owned));
    }
    assert!(kinds.contains(&Some("ua-deltaframe".into())), "{kinds:?}");

    let device = wait_status(ep.http, "/api/v1/devices/plc/status", "connected", |s| {
        state(s, Some("opc-ua")) == "connected"
    })
    .await;
    assert_eq!(device["origin"]["source"], "config");
    let asset_status = wait_status(ep.http, "/api/v1/assets/oven/status", "messages", |s| {
        state(s, None) == "connected" && s["messagesPublished"].as_u64() > Some(0)
    })
    .await;
    assert!(asset_status["origin"]["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("asset.yaml")));
    let one_each = |sim: &SimHandle| {
        [
            "ns=2;s=Fast.Sine.0",
            "ns=2;s=Fast.Counter.0",
            "ns=2;s=Special.Events",
            "ns=2;s=Fast.Trend.0",
            "ns=2;s=Fast.Random.0",
        ]
        .map(|n| sim.monitored_items_on(n))
    };
    assert_eq!(
        one_each(&sim),
        [1, 1, 1, 1, 1],
        "one monitored item per data point and event, over both sessions"
    );
    let mixer = next_publish(&mut mixer_sub).await;
    assert_eq!(user_property(&mixer, "dataset"), Some("speed"));
    assert_eq!(user_property(&mixer, "subject"), Some("mixer"));

    // Events go to their own destination, one message each.
    let event = next_publish(&mut event_sub).await;
    let fields = payload(&event);
    assert!(
        fields["Message"]
            .as_str()
            .is_some_and(|m| m.contains("simulated event")),
        "{fields}"
    );
    assert_eq!(user_property(&event, "type"), Some("ua-event"));
    assert_eq!(user_property(&event, "subject"), Some("oven"));

    // Outage of 30 s: the status says so, in words, and keeps saying so while the
    // connector retries with backoff; no asset data arrives meanwhile.
    let before = drain_sequences(&mut sub).await;
    let last_before = before.last().copied().unwrap_or(0);
    let stopped = tokio::time::Instant::now();
    sim.shutdown().await;
    let mixer_late = drain_sequences(&mut mixer_sub).await;
    let down = wait_status(ep.http, "/api/v1/devices/plc/status", "the outage", |s| {
        state(s, Some("opc-ua")) == "error"
    })
    .await;
    let why = down["endpoints"]["opc-ua"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("cannot reach") || why.contains("no connection"),
        "{why}"
    );
    let asset_down = wait_status(ep.http, "/api/v1/assets/oven/status", "asset outage", |s| {
        state(s, None) == "error"
    })
    .await;
    assert!(asset_down["error"].as_str().is_some());
    let late = drain_sequences(&mut sub).await;
    assert!(
        late.iter().all(|s| *s > last_before),
        "messages during the outage repeat sequences: {late:?} after {last_before}"
    );
    let last_before = late.last().copied().unwrap_or(last_before);
    while stopped.elapsed() < OUTAGE {
        let (_, s) = call(ep.http, "GET", "/api/v1/devices/plc/status", "").await;
        assert_eq!(state(&s, Some("opc-ua")), "error", "during the outage: {s}");
        assert!(
            sub.recv_within(Duration::from_secs(1)).await.is_none(),
            "asset data while the server is down"
        );
        assert!(
            mixer_sub.recv_within(Duration::ZERO).await.is_none(),
            "mixer data while the server is down"
        );
    }

    // The server comes back on the same port: the connector recovers by itself, the
    // dataset's stream continues where it stopped (sequence numbers go on, none twice) and
    // every data point and event has exactly one monitored item again.
    let sim = start_sim(&dir, &bind).await;
    let again = next_publish(&mut sub).await;
    assert_aio_message(&again, "oven", &[], &url);
    wait_status(ep.http, "/api/v1/devices/plc/status", "recovery", |s| {
        state(s, Some("opc-ua")) == "connected"
            && s["endpoints"]["opc-ua"]["lastError"].as_str().is_some()
    })
    .await;
    let mut after = vec![sequence(&again)];
    for _ in 0..5 {
        after.push(sequence(&next_publish(&mut sub).await));
    }
    assert!(
        after[0] > last_before && after.windows(2).all(|w| w[1] > w[0]),
        "sequences after recovery {after:?} do not continue {last_before}"
    );
    // The mixer's session recovered too; its sequence continues as well.
    let mixer_last = mixer_late
        .last()
        .copied()
        .unwrap_or_else(|| sequence(&mixer));
    let mixer_again = sequence(&next_publish(&mut mixer_sub).await);
    assert!(
        mixer_again > mixer_last,
        "mixer sequence {mixer_again} after recovery does not continue {mixer_last}"
    );
    assert_eq!(
        one_each(&sim),
        [1, 1, 1, 1, 1],
        "subscriptions of both sessions recreated without duplicates"
    );
    let event = next_publish(&mut event_sub).await;
    assert_eq!(user_property(&event, "type"), Some("ua-event"));
    sim.shutdown().await;
}

/// A second asset on the outage test's device, publishing to its own topic.
const MIXER: &str = "apiVersion: namespaces.deviceregistry.microsoft.com/v1
kind: Asset
metadata: {name: mixer}
spec:
  deviceRef: {deviceName: plc, endpointName: opc-ua}
  datasets:
  - name: speed
    datasetConfiguration: '{\"publishingInterval\": 100, \"samplingInterval\": 100}'
    dataPoints:
    - {name: trend, dataSource: \"ns=2;s=Fast.Trend.0\"}
    - {name: random, dataSource: \"ns=2;s=Fast.Random.0\"}
    destinations:
    - {target: Mqtt, configuration: {topic: factory/mixer/speed, qos: Qos1}}
";

#[tokio::test]
async fn wrong_password_and_untrusted_certificate_show_a_clear_status() {
    let dir = TempDir::new("opcua-sim-errors");
    let sim = start_sim(&dir, "127.0.0.1:0").await;
    let url = sim.endpoint_url().to_owned();
    write(&dir, "listener.yaml", LISTENER);
    write(
        &dir,
        "secret.yaml",
        &secret("wrong-user", "operator", "not-the-password"),
    );
    write(
        &dir,
        "secret2.yaml",
        &secret("plc-user", "operator", "secret"),
    );
    // No certificate trusted anywhere: security None reaches the password check.
    write(
        &dir,
        "device.yaml",
        &device(
            "locked",
            &url,
            "wrong-user",
            r#"{"security":{"securityMode":"None"}}"#,
        ),
    );
    write(
        &dir,
        "asset.yaml",
        &asset("locked-asset", "locked", &[("c", "ns=2;s=Fast.Counter.0")]),
    );
    let ep = start_edgeplane(&dir).await;
    let status = wait_status(ep.http, "/api/v1/devices/locked/status", "a refusal", |s| {
        state(s, Some("opc-ua")) == "error"
    })
    .await;
    let why = status["endpoints"]["opc-ua"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("bad user or password"), "{why}");
    let asset_status = wait_status(
        ep.http,
        "/api/v1/assets/locked-asset/status",
        "asset",
        |s| state(s, None) == "error",
    )
    .await;
    assert!(asset_status["error"]
        .as_str()
        .is_some_and(|e| e.contains("bad user or password")));

    // Through the API, a device that requires encryption and does not auto-accept: the
    // simulator's certificate is rejected until trusted with `edgeplane opcua trust`.
    let strict = device(
        "strict",
        &url,
        "plc-user",
        r#"{"security":{"securityMode":"SignAndEncrypt","securityPolicy":"Basic256Sha256"}}"#,
    );
    let (code, created) = call(ep.http, "POST", "/api/v1/devices", &strict).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"]["origin"]["source"], "api");
    let (code, body) = call(
        ep.http,
        "POST",
        "/api/v1/assets",
        &asset("strict-asset", "strict", &[("c", "ns=2;s=Fast.Counter.0")]),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let status = wait_status(ep.http, "/api/v1/devices/strict/status", "untrusted", |s| {
        state(s, Some("opc-ua")) == "error"
            && s["endpoints"]["opc-ua"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("not trusted"))
    })
    .await;
    let why = status["endpoints"]["opc-ua"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("edgeplane opcua trust"), "{why}");

    let rejected = Command::new(BIN)
        .args(["opcua", "rejected", "--data-dir"])
        .arg(&ep.data)
        .output()
        .await
        .expect("opcua rejected");
    let listing = String::from_utf8_lossy(&rejected.stdout).into_owned();
    let thumbprint = listing
        .lines()
        .find(|l| l.contains("simulator"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the simulator's certificate is listed: {listing}"))
        .to_owned();
    let trusted = Command::new(BIN)
        .args(["opcua", "trust", &thumbprint[..12], "--data-dir"])
        .arg(&ep.data)
        .output()
        .await
        .expect("opcua trust");
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    wait_status(
        ep.http,
        "/api/v1/assets/strict-asset/status",
        "trusted",
        |s| state(s, None) == "connected",
    )
    .await;

    // Changing the asset through the API reconfigures the session; deleting it ends it.
    let items = |sim: &SimHandle| {
        ["ns=2;s=Fast.Counter.0", "ns=2;s=Fast.Sine.0"].map(|n| sim.monitored_items_on(n))
    };
    wait_items(&sim, &items, [1, 0]).await;
    let changed = asset(
        "strict-asset",
        "strict",
        &[("c", "ns=2;s=Fast.Counter.0"), ("s", "ns=2;s=Fast.Sine.0")],
    );
    let (code, body) = call(ep.http, "PUT", "/api/v1/assets/strict-asset", &changed).await;
    assert_eq!(code, 200, "{body}");
    wait_items(&sim, &items, [1, 1]).await;
    let (code, _) = call(ep.http, "DELETE", "/api/v1/assets/strict-asset", "").await;
    assert_eq!(code, 204);
    wait_items(&sim, &items, [0, 0]).await;
    let (code, _) = call(ep.http, "GET", "/api/v1/assets/strict-asset/status", "").await;
    assert_eq!(code, 404);
    wait_status(ep.http, "/api/v1/devices/strict/status", "unused", |s| {
        state(s, Some("opc-ua")) == "unused"
    })
    .await;
    sim.shutdown().await;
}

/// Wait until the simulator's monitored item counts are `want`.

#[tokio::test]
async fn asyncua_server_data_reaches_mqtt_and_errors_are_clear() {
    let dir = TempDir::new("opcua-asyncua");
    let port = free_port();
    let mut server = start_asyncua(port).await;
    let url = format!("opc.tcp://127.0.0.1:{port}/");
    write(&dir, "listener.yaml", LISTENER);
    write(
        &dir,
        "secret.yaml",
        &secret("py-user", "operator", "secret"),
    );
    write(&dir, "wrong.yaml", &secret("py-wrong", "operator", "nope"));
    let none = r#"{"security":{"securityMode":"None"}}"#;
    write(&dir, "device.yaml", &device("py", &url, "py-user", none));
    write(
        &dir,
        "device-wrong.yaml",
        &device("py-wrong", &url, "py-wrong", none),
    );
    let ns = "nsu=urn:edgeplane:test:asyncua;s=";
    let points = [
        ("temperature", format!("{ns}Temperature")),
        ("counter", format!("{ns}Counter")),
    ];
    let refs: Vec<(&str, &str)> = points.iter().map(|(n, id)| (*n, id.as_str())).collect();
    write(&dir, "asset.yaml", &asset("boiler", "py", &refs));
    write(
        &dir,
        "asset-wrong.yaml",
        &asset("boiler-wrong", "py-wrong", &refs[..1]),
    );
    let ep = start_edgeplane(&dir).await;
    let mut sub = subscriber(ep.mqtt, "azure-iot-operations/data/boiler").await;
    let key = key_frame_with_all(&mut sub, &["temperature", "counter"]).await;
    assert_aio_message(&key, "boiler", &["temperature", "counter"], &url);
    let status = wait_status(ep.http, "/api/v1/devices/py-wrong/status", "refusal", |s| {
        state(s, Some("opc-ua")) == "error"
    })
    .await;
    let why = status["endpoints"]["opc-ua"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("bad user or password"), "{why}");

    // Stop the server, see the outage, start it again on the same port: data resumes.
    let _ = server.0.kill().await;
    wait_status(ep.http, "/api/v1/assets/boiler/status", "outage", |s| {
        state(s, None) == "error"
    })
    .await;
    drain(&mut sub).await;
    server = start_asyncua(port).await;
    let again = next_publish(&mut sub).await;
    assert_aio_message(&again, "boiler", &[], &url);
    wait_status(ep.http, "/api/v1/assets/boiler/status", "recovery", |s| {
        state(s, None) == "connected"
    })
    .await;
    drop(server);
}

/// A dataset whose destination is `BrokerStateStore`: the key holds every data point's
/// last known value (each write a whole key frame), read back with `edgeplane state get`
/// like any state store client; the values move on as the server's do.
#[tokio::test]
async fn dataset_to_a_state_store_key_holds_the_whole_dataset() {
    let dir = TempDir::new("opcua-sim-statestore");
    let sim = start_sim(&dir, "127.0.0.1:0").await;
    let url = sim.endpoint_url().to_owned();
    write(&dir, "listener.yaml", LISTENER);
    write(
        &dir,
        "secret.yaml",
        &secret("plc-user", "operator", "secret"),
    );
    let none = r#"{"security":{"securityMode":"None"}}"#;
    write(&dir, "device.yaml", &device("plc", &url, "plc-user", none));
    let asset = asset("oven", "plc", &SINE_AND_COUNTER)
        + "    destinations: [{target: BrokerStateStore, configuration: {key: oven/telemetry}}]\n";
    write(&dir, "asset.yaml", &asset);
    let ep = start_edgeplane(&dir).await;
    let mut sub = subscriber(ep.mqtt, "azure-iot-operations/data/#").await;

    let read = || async {
        let out = Command::new(BIN)
            .args([
                "state",
                "--broker",
                &ep.mqtt.to_string(),
                "get",
                "oven/telemetry",
            ])
            .output()
            .await
            .expect("edgeplane state get");
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .flatten()
    };
    let counter = |v: &serde_json::Value| v["counter"]["Value"].as_f64();
    let deadline = tokio::time::Instant::now() + SLOW;
    let first = loop {
        if let Some(v) = read().await {
            if v["sine"]["Value"].is_number() && counter(&v).is_some() {
                break v;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key never held both data points"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        first["counter"]["SourceTimestamp"].as_str().is_some(),
        "AIO value shape: {first}"
    );
    // Later writes replace the whole value: still both points, the counter moved on.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = read().await.expect("the key still exists");
    assert!(later["sine"]["Value"].is_number(), "{later}");
    assert!(
        counter(&later) > counter(&first),
        "the counter moved on: {first} then {later}"
    );
    // Nothing of this dataset went to MQTT.
    assert!(
        sub.recv_within(Duration::from_millis(500)).await.is_none(),
        "a BrokerStateStore dataset was also published"
    );
    let (_, status) = call(ep.http, "GET", "/api/v1/assets/oven/status", "").await;
    assert_eq!(state(&status, None), "connected", "{status}");
    sim.shutdown().await;
}
