//! Metrics and health of the `edgeplane` binary as an operator sees them: the process
//! started with a config folder, MQTT traffic from real clients, `/metrics` checked by
//! `promtool` and scraped by a real Prometheus server (both from Debian's `prometheus`
//! package, installed by `scripts/install-deps.sh`), queried through its HTTP API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use edgeplane_tests::codec::QoS;
use edgeplane_tests::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");
/// How long Prometheus gets to start, scrape (every second) and answer.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(30);

const LISTENER: &str = r#"
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata:
  name: local
spec:
  ports:
  - port: 0
    bindAddress: 127.0.0.1
"#;

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("metrics-{name}"))
}

/// A port free right now on 127.0.0.1, for programs that cannot be told to pick one.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

struct Edgeplane {
    _child: Child,
    mqtt: SocketAddr,
    http: SocketAddr,
    metrics: SocketAddr,
}

/// `edgeplane run --config dir` plus `args`; its addresses are read from its log.
async fn start(dir: &Path, args: &[&str]) -> Edgeplane {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start edgeplane");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut mqtt, mut http, mut metrics) = (None, None, None);
    let read = async {
        while mqtt.is_none() || http.is_none() || metrics.is_none() {
            let line = lines
                .next_line()
                .await
                .expect("read log")
                .expect("edgeplane exited early");
            let Some(addr) = line.split("addr=").nth(1) else {
                continue;
            };
            let addr: SocketAddr = addr
                .split_whitespace()
                .next()
                .and_then(|a| a.parse().ok())
                .expect("socket address after addr=");
            if line.contains("http listening") {
                http = Some(addr);
            } else if line.contains("metrics listening") {
                metrics = Some(addr);
            } else if line.contains("listener=") {
                mqtt = Some(addr);
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("listening within 5 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Edgeplane {
        _child: child,
        mqtt: mqtt.expect("mqtt"),
        http: http.expect("http"),
        metrics: metrics.expect("metrics"),
    }
}

const EPHEMERAL: [&str; 4] = ["--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"];

/// A subscriber on `plant/#` and a publisher that sends `n` QoS 1 messages it receives.
async fn traffic(mqtt: SocketAddr, n: u16) -> (Client, Client) {
    let mut sub = Client::open(mqtt, V5).await;
    assert_eq!(sub.connect(connect("sub", V5)).await.code, 0);
    sub.sub("plant/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::open(mqtt, V311).await;
    assert_eq!(publisher.connect(connect("pub", V311)).await.code, 0);
    for i in 1..=n {
        publisher
            .publish(publish("plant/line1/temp", "21.5", QoS::AtLeastOnce, i))
            .await;
        sub.receive_and_ack().await;
    }
    (sub, publisher)
}

fn promtool_check(exposition: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; run scripts/install-deps.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    child.wait_with_output().expect("promtool output")
}

/// Health and readiness answer, the counters move with traffic, and the exposition passes
/// `promtool check metrics` without a lint.
#[tokio::test]
async fn scrape_after_traffic_passes_promtool() {
    let dir = temp_dir("promtool");
    std::fs::write(dir.join("listener.yaml"), LISTENER).expect("write config");
    // A dataflow too, so its metrics are scraped and checked with the broker's.
    std::fs::write(
        dir.join("flow.yaml"),
        "apiVersion: edgeplane.io/v1\nkind: Dataflow\nmetadata: {name: relay}\nspec:\n  operations:\n  \
         - operationType: Source\n    sourceSettings: {endpointRef: default, dataSources: [\"plant/#\"]}\n  \
         - operationType: Destination\n    destinationSettings: {endpointRef: default, dataDestination: \"curated/${inputTopic.2}\"}\n",
    )
    .expect("write config");
    let ep = start(&dir, &EPHEMERAL).await;
    assert_eq!(http_get(ep.http, "/healthz").await, (200, "ok\n".into()));
    let (status, body) = http_get(ep.http, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "[+]broker ok\n[+]self-check ok\nreadyz check passed\n")
    );

    let (status, before) = http_get(ep.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let _clients = traffic(ep.mqtt, 3).await;
    let (_, after) = http_get(ep.metrics, "/metrics").await;
    let delta = |series: &str| metric_sample(&after, series) - metric_sample(&before, series);
    assert_eq!(delta("aio_broker_publishes_received_total"), 3.0);
    assert_eq!(delta("aio_broker_publishes_sent_total"), 3.0);
    assert_eq!(delta("aio_broker_total_sessions"), 2.0);
    assert!(delta("edgeplane_received_bytes_total") > 0.0);
    assert!(delta("edgeplane_sent_publish_bytes_total") > 0.0);
    assert_eq!(metric_sample(&after, "aio_broker_connected_sessions"), 2.0);
    // Both clients came in on the listener `local`, one of each protocol version.
    let local = |version: &str| {
        format!(
            "edgeplane_listener_connections_total{{listener=\"local\",mqtt_version=\"{version}\"}}"
        )
    };
    assert_eq!(delta(&local("5")), 1.0);
    assert_eq!(delta(&local("3.1.1")), 1.0);
    assert_eq!(
        metric_sample(&after, "edgeplane_listener_connections{listener=\"local\"}"),
        2.0
    );
    // In-process sessions (the dataflow's) are not counted.
    assert_eq!(metric_sample(&after, "aio_broker_total_subscriptions"), 1.0);
    let relayed = |text: &str| {
        metric_sample(
            text,
            "edgeplane_dataflow_messages_total{dataflow=\"relay\",outcome=\"sent\"}",
        )
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while relayed(&http_get(ep.metrics, "/metrics").await.1) < 3.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dataflow relayed 3 messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, after) = http_get(ep.metrics, "/metrics").await;
    assert_eq!(
        metric_sample(&after, "edgeplane_dataflow_available{dataflow=\"relay\"}"),
        1.0
    );
    // The HTTP address serves the same metrics.
    let (status, body) = http_get(ep.http, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric_sample(&body, "aio_broker_publishes_received_total"),
        3.0
    );

    let out = promtool_check(&after);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics: {report}");
    assert_eq!(report.trim(), "", "promtool lints");
}

/// `diagnostics.metrics.prometheusPort` of the Broker resource sets the metrics port.
#[tokio::test]
async fn prometheus_port_from_the_broker_resource() {
    let dir = temp_dir("port");
    let port = free_port();
    let broker = format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\nmetadata:\n  name: default\n\
         spec:\n  diagnostics:\n    metrics:\n      prometheusPort: {port}\n---\n{LISTENER}"
    );
    std::fs::write(dir.join("broker.yaml"), broker).expect("write config");
    let ep = start(&dir, &["--http", "127.0.0.1:0"]).await;
    assert_eq!(ep.metrics, SocketAddr::from(([127, 0, 0, 1], port)));
    let (status, body) = http_get(ep.metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric_sample(&body, "aio_broker_connected_sessions"), 0.0);
}

/// An HTTP address in use stops the process with an error naming it and the flag.
#[tokio::test]
async fn http_address_in_use_is_a_clear_error() {
    let dir = temp_dir("in-use");
    std::fs::write(dir.join("listener.yaml"), LISTENER).expect("write config");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local addr").to_string();
    let run = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&dir)
        .args(["--http", &addr, "--metrics", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, run)
        .await
        .expect("exits within 5 s")
        .expect("run edgeplane");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on {addr} for the HTTP API (set by --http)"
        )),
        "{stderr}"
    );
}

/// Prometheus' answer to an instant query: the value of its single series.
async fn query(prometheus: SocketAddr, promql: &str) -> Option<(serde_json::Value, f64)> {
    let path = format!("/api/v1/query?query={promql}");
    let (status, body) = tokio::time::timeout(WAIT, try_http_get(prometheus, &path))
        .await
        .ok()?
        .ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let series = v["data"]["result"].as_array()?.first()?.clone();
    let value = series["value"][1].as_str()?.parse().ok()?;
    Some((series["metric"].clone(), value))
}

/// A real Prometheus server scrapes the broker every second; after traffic, three metrics
/// read through its query API hold what the clients did.
#[tokio::test]
async fn prometheus_scrapes_the_broker() {
    let dir = temp_dir("prometheus");
    std::fs::write(dir.join("listener.yaml"), LISTENER).expect("write config");
    let ep = start(&dir, &EPHEMERAL).await;

    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(prom_dir.join("data")).expect("prometheus dir");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: edgeplane\n    static_configs:\n      - targets: ['{}']\n",
        ep.metrics
    );
    std::fs::write(prom_dir.join("prometheus.yml"), config).expect("prometheus config");
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = std::fs::File::create(prom_dir.join("log")).expect("prometheus log");
    let _prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            prom_dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            prom_dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus (Debian package prometheus; run scripts/install-deps.sh)");

    let _clients = traffic(ep.mqtt, 5).await;

    let deadline = tokio::time::Instant::now() + PROMETHEUS_WAIT;
    loop {
        let answers = [
            query(prom_addr, "aio_broker_publishes_received_total").await,
            query(prom_addr, "aio_broker_connected_sessions").await,
            query(prom_addr, "edgeplane_build_info").await,
        ];
        let values: Vec<Option<f64>> = answers.iter().map(|a| a.as_ref().map(|a| a.1)).collect();
        if values == [Some(5.0), Some(2.0), Some(1.0)] {
            let (labels, _) = answers[2].clone().expect("build info");
            assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"));
            assert_eq!(labels["job"], "edgeplane");
            assert_eq!(labels["instance"], ep.metrics.to_string());
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let log = std::fs::read_to_string(prom_dir.join("log")).unwrap_or_default();
            panic!(
                "Prometheus did not report the traffic within {PROMETHEUS_WAIT:?}: \
                 last answers {values:?}\nprometheus log:\n{log}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `diagnostics.metrics.otlp` pushes the same families to an OpenTelemetry collector: a
/// receiver decoding with the OpenTelemetry project's protobuf definitions
/// (`otlp_receiver.py`, PyPI `opentelemetry-proto`) accepts every request, and after
/// traffic it holds the publish counter as a cumulative monotonic sum (OpenTelemetry names:
/// no `_total`), the sessions gauge, labels as attributes and the service's resource.
#[tokio::test]
async fn metrics_reach_an_otlp_receiver() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp_receiver.py");
    let mut receiver = Command::new("python3")
        .arg(script)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 otlp_receiver.py");
    let mut lines = BufReader::new(receiver.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(PROMETHEUS_WAIT, lines.next_line())
        .await
        .expect("the receiver starts")
        .expect("read")
        .unwrap_or_default();
    let port: u16 = ready
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!("receiver said {ready:?}; is opentelemetry-proto installed (scripts/install-deps.sh)?")
        });

    let dir = temp_dir("otlp");
    let broker = format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\nmetadata:\n  name: default\n\
         spec:\n  diagnostics:\n    metrics:\n      otlp: {{endpoint: 'http://127.0.0.1:{port}', intervalSeconds: 1}}\n---\n{LISTENER}"
    );
    std::fs::write(dir.join("broker.yaml"), broker).expect("write config");
    let ep = start(&dir, &EPHEMERAL).await;
    let _clients = traffic(ep.mqtt, 5).await;

    let metric = |request: &serde_json::Value, name: &str| -> Option<serde_json::Value> {
        request["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
    };
    let int = |point: &serde_json::Value| -> i64 {
        point["asInt"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    let found = tokio::time::timeout(PROMETHEUS_WAIT, async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read receiver")
                .expect("receiver running");
            assert!(!line.starts_with("REJECTED"), "receiver: {line}");
            let request: serde_json::Value =
                serde_json::from_str(&line).expect("canonical JSON from the receiver");
            let Some(received) = metric(&request, "aio_broker_publishes_received") else {
                continue;
            };
            if int(&received["sum"]["dataPoints"][0]) >= 5 {
                return (request, received);
            }
        }
    })
    .await;
    let (request, received) = found.expect("an export with the traffic counted");
    assert_eq!(received["sum"]["isMonotonic"], true, "{received}");
    assert_eq!(
        received["sum"]["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "{received}"
    );
    let sessions = metric(&request, "aio_broker_connected_sessions").expect("sessions gauge");
    assert_eq!(int(&sessions["gauge"]["dataPoints"][0]), 2, "{sessions}");
    let by_version = metric(&request, "edgeplane_connections").expect("connections by version");
    let points = by_version["sum"]["dataPoints"].as_array().expect("points");
    assert!(
        points
            .iter()
            .any(|p| p["attributes"][0]["key"] == "mqtt_version"
                && p["attributes"][0]["value"]["stringValue"] == "5"
                && int(p) >= 1),
        "{by_version}"
    );
    let resource = &request["resourceMetrics"][0]["resource"]["attributes"];
    assert!(
        resource.as_array().is_some_and(|a| a
            .iter()
            .any(|kv| kv["key"] == "service.name" && kv["value"]["stringValue"] == "edgeplane")),
        "{resource}"
    );
}

/// An endpoint that is not an http:// URL is refused at start, naming the file's field.
#[tokio::test]
async fn otlp_endpoint_must_be_http() {
    let dir = temp_dir("otlp-bad");
    let broker = format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\nmetadata:\n  name: default\n\
         spec:\n  diagnostics:\n    metrics:\n      otlp: {{endpoint: 'collector:4317'}}\n---\n{LISTENER}"
    );
    std::fs::write(dir.join("broker.yaml"), broker).expect("write config");
    let out = Command::new(BIN)
        .args(["validate"])
        .arg(&dir)
        .output()
        .await
        .expect("run edgeplane validate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("broker.yaml") && stderr.contains("spec.diagnostics.metrics.otlp.endpoint"),
        "{stderr}"
    );
}
