//! OTLP trace export of the `edgeplane` binary as an operator sees it: the process started
//! with `diagnostics.traces.otlp`, real MQTT clients connecting, and the spans arriving at a
//! receiver that decodes them with the OpenTelemetry project's protobuf definitions
//! (`otlp_receiver.py`, PyPI `opentelemetry-proto`, installed by `scripts/install-deps.sh`),
//! over plain HTTP and over HTTPS checked against a configured CA file.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use edgeplane_broker::tls::{issue_ca, issue_leaf};
use edgeplane_tests::codec::QoS;
use edgeplane_tests::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");
/// How long spans get to reach the receiver (exported every second) on a loaded machine.
const ARRIVAL: Duration = Duration::from_secs(30);

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

/// A client's W3C trace context: trace id, then its span id.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The receiver, its output lines and its port; `tls`: its certificate and key files.
async fn receiver(tls: Option<(&Path, &Path)>) -> (Child, Lines<BufReader<ChildStdout>>, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp_receiver.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    if let Some((cert, key)) = tls {
        cmd.arg("--tls").arg(cert).arg(key);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 otlp_receiver.py");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(ARRIVAL, lines.next_line())
        .await
        .expect("the receiver starts")
        .expect("read")
        .unwrap_or_default();
    let port = ready
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!("receiver said {ready:?}; is opentelemetry-proto installed (scripts/install-deps.sh)?")
        });
    (child, lines, port)
}

struct Edgeplane {
    _child: Child,
    mqtt: SocketAddr,
    metrics: SocketAddr,
}

/// `edgeplane run --config dir` with logs at `warn`: spans are exported whatever the level.
async fn start(dir: &Path) -> Edgeplane {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir)
        .args(["--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .env(
            "RUST_LOG",
            "warn,edgeplane=info,edgeplane_broker=info,edgeplane_portal=info",
        )
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start edgeplane");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut mqtt, mut metrics) = (None, None);
    let read = async {
        while mqtt.is_none() || metrics.is_none() {
            let line = lines
                .next_line()
                .await
                .expect("read log")
                .expect("edgeplane exited early");
            let Some(addr) = line.split("addr=").nth(1) else {
                continue;
            };
            let addr: Option<SocketAddr> =
                addr.split_whitespace().next().and_then(|a| a.parse().ok());
            if line.contains("metrics listening") {
                metrics = addr;
            } else if line.contains("listener=") {
                mqtt = addr;
            }
        }
    };
    tokio::time::timeout(ARRIVAL, read)
        .await
        .expect("listening in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Edgeplane {
        _child: child,
        mqtt: mqtt.expect("mqtt"),
        metrics: metrics.expect("metrics"),
    }
}

fn broker_yaml(diagnostics: &str) -> String {
    format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\nmetadata:\n  name: default\n\
         spec:\n  diagnostics:\n{diagnostics}\n---\n{LISTENER}"
    )
}

/// The spans of a receiver's output line (empty for a metrics request).
fn spans(request: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for r in request["resourceSpans"].as_array().into_iter().flatten() {
        for s in r["scopeSpans"].as_array().into_iter().flatten() {
            out.extend(s["spans"].as_array().into_iter().flatten().cloned());
        }
    }
    out
}

fn attr(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map(|kv| {
            let v = &kv["value"];
            v.get("stringValue")
                .or_else(|| v.get("intValue"))
                .or_else(|| v.get("boolValue"))
                .cloned()
                .unwrap_or(Value::Null)
        })
        .unwrap_or(Value::Null)
}

/// Read the receiver until `done` holds for the spans received so far; all of them.
async fn collect(
    lines: &mut Lines<BufReader<ChildStdout>>,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut all = Vec::new();
    let read = async {
        while !done(&all) {
            let line = lines
                .next_line()
                .await
                .expect("read receiver")
                .expect("receiver running");
            assert!(!line.starts_with("REJECTED"), "receiver: {line}");
            let request: Value = serde_json::from_str(&line).expect("JSON from the receiver");
            all.extend(spans(&request));
        }
    };
    if tokio::time::timeout(ARRIVAL, read).await.is_err() {
        panic!("spans missing after {ARRIVAL:?}; received: {all:#?}");
    }
    all
}

fn connection_of<'a>(spans: &'a [Value], client_id: &str) -> Option<&'a Value> {
    spans
        .iter()
        .find(|s| s["name"] == "mqtt.connection" && attr(s, "mqtt.client_id") == client_id)
}

/// A v5 client whose CONNECT carries `traceparent` and a refused 3.1.1 client: the
/// connection spans, their CONNECT exchanges and authentication arrive as one trace each,
/// the first joined to the client's trace, with the listener, client id, version and
/// CONNACK code as attributes, the refusal marked as an error; `/metrics` counts them.
#[tokio::test]
async fn connection_spans_reach_an_otlp_receiver() {
    let (_receiver, mut lines, port) = receiver(None).await;
    let dir = TempDir::new("traces-http");
    let otlp = format!(
        "    traces:\n      spanChannelCapacity: 1000\n      otlp: {{endpoint: 'http://127.0.0.1:{port}', intervalSeconds: 1}}"
    );
    std::fs::write(dir.join("broker.yaml"), broker_yaml(&otlp)).expect("write config");
    let ep = start(&dir).await;

    let mut traced = Client::open(ep.mqtt, V5).await;
    let mut c = connect("traced", V5);
    c.properties
        .user_properties
        .push(("traceparent".into(), TRACEPARENT.into()));
    assert_eq!(traced.connect(c).await.code, 0);
    traced
        .publish(publish("plant/line1/temp", "21.5", QoS::AtMostOnce, 0))
        .await;
    traced.disconnect().await;
    // A zero-byte client id without Clean Session is refused with 0x02 [MQTT-3.1.3-8].
    let mut refused = Client::open(ep.mqtt, V311).await;
    let mut c = connect("", V311);
    c.clean_start = false;
    assert_eq!(refused.connect(c).await.code, 0x02);

    let all = collect(&mut lines, |s| {
        connection_of(s, "traced").is_some()
            && s.iter().any(|s| {
                s["name"] == "mqtt.connection" && s["status"]["code"] == "STATUS_CODE_ERROR"
            })
            && s.iter().filter(|s| s["name"] == "mqtt.connect").count() >= 2
    })
    .await;

    let conn = connection_of(&all, "traced").expect("the traced connection");
    assert_eq!(
        conn["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{conn}"
    );
    assert_eq!(conn["parentSpanId"], "00f067aa0ba902b7", "{conn}");
    assert_eq!(conn["kind"], "SPAN_KIND_SERVER", "{conn}");
    assert_eq!(attr(conn, "mqtt.listener"), "local", "{conn}");
    assert_eq!(attr(conn, "mqtt.protocol_version"), "5", "{conn}");
    assert_eq!(attr(conn, "mqtt.connack.code"), "0", "{conn}");
    assert_eq!(attr(conn, "network.peer.address"), "127.0.0.1", "{conn}");
    assert_eq!(attr(conn, "tls"), false, "{conn}");
    let (start, end) = (
        conn["startTimeUnixNano"]
            .as_str()
            .and_then(|t| t.parse::<u128>().ok()),
        conn["endTimeUnixNano"]
            .as_str()
            .and_then(|t| t.parse::<u128>().ok()),
    );
    assert!(
        start.zip(end).is_some_and(|(s, e)| s > 0 && e >= s),
        "{conn}"
    );

    let connect_span = all
        .iter()
        .find(|s| s["name"] == "mqtt.connect" && s["parentSpanId"] == conn["spanId"])
        .expect("the CONNECT exchange inside the connection");
    assert_eq!(connect_span["traceId"], conn["traceId"]);
    assert_eq!(connect_span["kind"], "SPAN_KIND_INTERNAL");
    assert_eq!(attr(connect_span, "mqtt.connack.code"), "0");
    let authn = all
        .iter()
        .find(|s| s["name"] == "mqtt.authenticate" && s["parentSpanId"] == connect_span["spanId"])
        .expect("authentication inside the CONNECT exchange");
    assert_eq!(authn["traceId"], conn["traceId"]);

    let refused_conn = all
        .iter()
        .find(|s| s["name"] == "mqtt.connection" && s["status"]["code"] == "STATUS_CODE_ERROR")
        .expect("the refused connection");
    assert_eq!(attr(refused_conn, "mqtt.protocol_version"), "3.1.1");
    assert_ne!(
        refused_conn["traceId"], conn["traceId"],
        "a trace of its own"
    );
    assert!(refused_conn.get("parentSpanId").is_none(), "{refused_conn}");
    let refused_connect = all
        .iter()
        .find(|s| s["name"] == "mqtt.connect" && s["parentSpanId"] == refused_conn["spanId"])
        .expect("the refused CONNECT exchange");
    assert_eq!(attr(refused_connect, "mqtt.connack.code"), "2");

    // Five spans: the refused CONNECT never reached authentication.
    let exported = tokio::time::timeout(ARRIVAL, async {
        loop {
            let text = get_metrics(ep.metrics).await;
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix("edgeplane_otlp_spans_exported_total "))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if n >= 5 {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("/metrics counts the exported spans");
    assert!(
        exported.contains("edgeplane_otlp_spans_dropped_total{cause=\"queue_full\"} 0"),
        "{exported}"
    );
}

async fn get_metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect to /metrics");
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Traces and metrics to an `https://` collector whose certificate is issued by a CA the
/// Broker names in `trustedCaFile` (relative to the configuration folder): both arrive.
#[tokio::test]
async fn traces_and_metrics_reach_an_https_collector() {
    let dir = TempDir::new("traces-https");
    let ca = issue_ca("otlp test CA").expect("CA");
    let leaf = issue_leaf(&ca, "collector", &["127.0.0.1".to_owned()], false).expect("leaf");
    let (cert, key) = (dir.join("collector.pem"), dir.join("collector.key"));
    std::fs::write(&cert, &leaf.cert_pem).expect("write cert");
    std::fs::write(&key, &leaf.key_pem).expect("write key");
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem).expect("write CA");
    let (_receiver, mut lines, port) = receiver(Some((&cert, &key))).await;
    let endpoint = format!(
        "{{endpoint: 'https://127.0.0.1:{port}', intervalSeconds: 1, trustedCaFile: ca.pem}}"
    );
    let diagnostics =
        format!("    metrics:\n      otlp: {endpoint}\n    traces:\n      otlp: {endpoint}");
    // Only YAML files of the folder are resources; the PEM files beside them are not.
    std::fs::write(dir.join("broker.yaml"), broker_yaml(&diagnostics)).expect("write config");
    let ep = start(&dir).await;

    let mut client = Client::open(ep.mqtt, V5).await;
    assert_eq!(client.connect(connect("over-tls", V5)).await.code, 0);
    client.disconnect().await;

    let (mut metrics_seen, mut span_seen) = (false, false);
    let read = async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read receiver")
                .expect("receiver running");
            assert!(!line.starts_with("REJECTED"), "receiver: {line}");
            let request: Value = serde_json::from_str(&line).expect("JSON from the receiver");
            metrics_seen |= request.get("resourceMetrics").is_some();
            span_seen |= connection_of(&spans(&request), "over-tls").is_some();
            if span_seen && metrics_seen {
                return;
            }
        }
    };
    tokio::time::timeout(ARRIVAL, read)
        .await
        .expect("spans and metrics over HTTPS");
}

/// An `https://` collector with a CA file that does not exist stops the start, naming the
/// field.
#[tokio::test]
async fn a_missing_ca_file_is_a_start_error() {
    let dir = TempDir::new("traces-no-ca");
    let otlp = "    traces:\n      otlp: {endpoint: 'https://127.0.0.1:4318', trustedCaFile: /nonexistent/ca.pem}";
    std::fs::write(dir.join("broker.yaml"), broker_yaml(otlp)).expect("write config");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&*dir)
        .args(["--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .output();
    let out = tokio::time::timeout(ARRIVAL, out)
        .await
        .expect("edgeplane exits")
        .expect("run edgeplane");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.diagnostics.traces.otlp") && stderr.contains("/nonexistent/ca.pem"),
        "{stderr}"
    );
}
