//! The OPC UA connector through the `edgeplane` binary: a configuration folder (or the REST
//! API) declares a Device pointing at an OPC UA server and an Asset; a real MQTT subscriber
//! sees the asset's data in Azure IoT Operations' shape; `GET /api/v1/.../status` reports a
//! wrong password, an untrusted certificate and an outage in words; `edgeplane opcua
//! trust` fixes the certificate; an asset changed or deleted through the API reconfigures
//! or ends its session; data resumes after the server comes back.
//!
//! Servers: the built-in simulator (in process, so a test can stop it and start it again on
//! the same port and count its monitored items) and an independent one, Python's `asyncua`
//! (`tests/opcua/asyncua_server.py`; `scripts/install-deps.sh` installs it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use edgeplane_codec::{Publish, QoS};
use edgeplane_opcua::client::{Connection, EndpointConfig};
use edgeplane_opcua::sim::{NodeRate, Sim, SimConfig, SimHandle, SimSecurity, SimUser};
use edgeplane_tests::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

/// Upper bound of a wait for the connector (connects, reconnects with backoff up to 10 s).
const SLOW: Duration = Duration::from_secs(45);

/// How long the outage test keeps the server down (issue 9: 30 s).
const OUTAGE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Certificates: RSA key generation takes seconds in debug builds, so the simulator's and the
// connector's application certificates are made once and copied into each test's folders.

static SEED: OnceCell<PathBuf> = OnceCell::const_new();

async fn seed() -> &'static PathBuf {
    SEED.get_or_init(|| async {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmp.join("edgeplane-opcua-seed");
        let fresh = ["sim", "client"]
            .iter()
            .all(|w| dir.join(w).join("own/cert.der").exists());
        if fresh {
            return dir;
        }
        let staging = tmp.join(format!("edgeplane-opcua-seed.{}", std::process::id()));
        let sim = Sim::start(sim_config(&staging.join("sim"), "127.0.0.1:0", Vec::new()))
            .await
            .expect("seed simulator");
        let client = EndpointConfig::new(sim.endpoint_url(), staging.join("client"));
        drop(Connection::start(client, Vec::new(), Vec::new()).expect("seed client"));
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::rename(&staging, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        dir
    })
    .await
}

/// Copy the seeded `which` ("sim" or "client") certificate into the PKI folder `dst`.
async fn seeded_pki(which: &str, dst: &Path) {
    let src = seed().await.join(which);
    for sub in ["own", "private"] {
        std::fs::create_dir_all(dst.join(sub)).expect("pki folder");
        for entry in std::fs::read_dir(src.join(sub)).expect("seed") {
            let entry = entry.expect("seed entry");
            std::fs::copy(entry.path(), dst.join(sub).join(entry.file_name())).expect("copy");
        }
    }
}

fn sim_config(pki: &Path, bind: &str, users: Vec<SimUser>) -> SimConfig {
    SimConfig {
        bind: bind.parse().expect("address"),
        pki_dir: pki.to_path_buf(),
        fast: NodeRate {
            count: 1,
            interval: Duration::from_millis(100),
        },
        slow: NodeRate {
            count: 1,
            interval: Duration::from_millis(1000),
        },
        event_interval: Duration::from_millis(500),
        users,
        security: vec![SimSecurity::None, SimSecurity::Basic256Sha256SignAndEncrypt],
        ..SimConfig::default()
    }
}

async fn start_sim(dir: &Path, bind: &str) -> SimHandle {
    let pki = dir.join("sim-pki");
    seeded_pki("sim", &pki).await;
    let users = vec![SimUser {
        username: "operator".into(),
        password: "secret".into(),
    }];
    Sim::start(sim_config(&pki, bind, users))
        .await
        .expect("simulator starts")
}

// ---------------------------------------------------------------------------------------
// The binary, HTTP and MQTT.

struct Edgeplane {
    _child: Child,
    mqtt: SocketAddr,
    http: SocketAddr,
    data: PathBuf,
}

/// `edgeplane run --config DIR/config --data-dir DIR/data`, the connector's PKI seeded.
async fn start_edgeplane(dir: &Path) -> Edgeplane {
    let data = dir.join("data");
    seeded_pki("client", &data.join("opcua/pki")).await;
    let mut child = Command::new(BIN)
        .args(["run", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .arg("--config")
        .arg(dir.join("config"))
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start edgeplane");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr_of = |line: &str| -> Option<SocketAddr> {
        line.split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let (mut mqtt, mut http) = (None, None);
    let read = async {
        while mqtt.is_none() || http.is_none() {
            let line = lines
                .next_line()
                .await
                .expect("read log")
                .expect("edgeplane exited early");
            if line.contains("listener=") {
                mqtt = mqtt.or(addr_of(&line));
            } else if line.contains("http listening") {
                http = addr_of(&line);
            }
        }
    };
    tokio::time::timeout(SLOW, read)
        .await
        .expect("edgeplane starts");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Edgeplane {
        _child: child,
        mqtt: mqtt.expect("mqtt"),
        http: http.expect("http"),
        data,
    }
}

/// Sessions by portal address: (cookie, CSRF token). The API needs a signed-in user.
static SESSIONS: std::sync::Mutex<Vec<(SocketAddr, String, String)>> =
    std::sync::Mutex::new(Vec::new());

/// A session on the portal at `addr`: the first user is set up (or, after a restart on the
/// same data folder, signed in).
async fn session(addr: SocketAddr) -> (String, String) {
    let known = SESSIONS
        .lock()
        .expect("sessions")
        .iter()
        .find(|(a, _, _)| *a == addr)
        .map(|(_, c, t)| (c.clone(), t.clone()));
    if let Some(s) = known {
        return s;
    }
    let creds = r#"{"user": "admin", "password": "correct horse"}"#;
    for path in ["/api/v1/setup", "/api/v1/login"] {
        let mut s = TcpStream::connect(addr).await.expect("connect http");
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{creds}",
            creds.len()
        );
        s.write_all(req.as_bytes()).await.expect("send");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        let cookie = buf.lines().find_map(|l| {
            let v = l.strip_prefix("set-cookie: edgeplane_session=")?;
            v.split(';').next().map(str::to_owned)
        });
        let csrf = buf
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str::<Value>(b.trim()).ok())
            .and_then(|v| v["csrf"].as_str().map(str::to_owned));
        if let (Some(c), Some(t)) = (cookie, csrf) {
            SESSIONS
                .lock()
                .expect("sessions")
                .push((addr, c.clone(), t.clone()));
            return (c, t);
        }
    }
    panic!("cannot sign in to the portal at {addr}");
}

/// One HTTP request (signed in); the status and the body as JSON (null when empty).
async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (cookie, csrf) = session(addr).await;
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.expect("connect http");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: edgeplane_session={cookie}\r\nX-CSRF-Token: {csrf}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("send");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        buf
    };
    let buf = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("http answer");
    let text = String::from_utf8(buf).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let json = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    (status, json)
}

/// Poll `path` until `pred` holds for its JSON; return it.
async fn wait_status(
    http: SocketAddr,
    path: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let found = tokio::time::timeout(SLOW, async {
        loop {
            let (code, body) = call(http, "GET", path, "").await;
            if code == 200 && pred(&body) {
                return body;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what} at {path}; last: {last}"))
}

fn state(doc: &Value, endpoint: Option<&str>) -> String {
    let s = match endpoint {
        Some(e) => &doc["endpoints"][e],
        None => doc,
    };
    s["state"].as_str().unwrap_or_default().to_owned()
}

async fn subscriber(addr: SocketAddr, filter: &str) -> Client {
    let mut c = Client::open(addr, V5).await;
    c.connect(connect(
        &format!("observer-{}", filter.replace(['/', '#', '+'], "_")),
        V5,
    ))
    .await;
    c.sub(filter, QoS::AtMostOnce).await;
    c
}

/// The next PUBLISH within [`SLOW`].
async fn next_publish(c: &mut Client) -> Publish {
    match c.recv_within(SLOW).await {
        Some(edgeplane_codec::Packet::Publish(p)) => p,
        other => panic!("expected asset data, got {other:?}"),
    }
}

/// The first key frame that holds every one of `points` (the very first message may carry
/// only the values the server sent first).
async fn key_frame_with_all(c: &mut Client, points: &[&str]) -> Publish {
    for _ in 0..50 {
        let p = next_publish(c).await;
        let body = payload(&p);
        if user_property(&p, "type") == Some("ua-keyframe")
            && points.iter().all(|k| body.get(*k).is_some())
        {
            return p;
        }
    }
    panic!("no key frame with all of {points:?} in 50 messages");
}

/// The AIO `sequence` of an asset message.
fn sequence(p: &Publish) -> u64 {
    user_property(p, "sequence")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no sequence in {:?}", p.properties.user_properties))
}

/// Throw away what arrived so far, returning the sequence numbers it carried.
async fn drain_sequences(c: &mut Client) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Some(packet) = c.recv_within(QUIET).await {
        if let edgeplane_codec::Packet::Publish(p) = packet {
            seen.push(sequence(&p));
        }
    }
    seen
}

/// Throw away what arrived so far.
async fn drain(c: &mut Client) {
    while c.recv_within(QUIET).await.is_some() {}
}

fn user_property<'a>(p: &'a Publish, key: &str) -> Option<&'a str> {
    p.properties
        .user_properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn payload(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).expect("json payload")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir.join("config")).expect("config folder");
    std::fs::write(dir.join("config").join(name), text).expect("write manifest");
}

const LISTENER: &str = "apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: local}
spec:
  ports:
  - {port: 0, bindAddress: 127.0.0.1}
";

fn secret(name: &str, user: &str, password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{username: {user}, password: {password}}}\n"
    )
}

/// A Device with one OPC UA endpoint `opc-ua` at `url`, user name and password from Secret
/// `secret`, and `additional` as its additionalConfiguration.
fn device(name: &str, url: &str, secret: &str, additional: &str) -> String {
    format!(
        "apiVersion: namespaces.deviceregistry.microsoft.com/v1
kind: Device
metadata: {{name: {name}}}
spec:
  endpoints:
    inbound:
      opc-ua:
        endpointType: Microsoft.OpcUa
        address: {url}
        authentication:
          method: UsernamePassword
          usernamePasswordCredentials: {{usernameSecretName: {secret}, passwordSecretName: {secret}}}
        additionalConfiguration: '{additional}'
"
    )
}

/// An Asset on `device`'s `opc-ua` endpoint with one dataset of `points` (name, node id).
fn asset(name: &str, device: &str, points: &[(&str, &str)]) -> String {
    let points: String = points
        .iter()
        .map(|(n, id)| format!("    - {{name: {n}, dataSource: \"{id}\"}}\n"))
        .collect();
    format!(
        "apiVersion: namespaces.deviceregistry.microsoft.com/v1
kind: Asset
metadata: {{name: {name}}}
spec:
  deviceRef: {{deviceName: {device}, endpointName: opc-ua}}
  externalAssetId: {name}-0001
  datasets:
  - name: telemetry
    datasetConfiguration: '{{\"publishingInterval\": 100, \"samplingInterval\": 100, \"keyFrameCount\": 3}}'
    dataPoints:
{points}"
    )
}

const SIM_NS: &str = "nsu=http://edgeplane.io/opcua-sim;s=";

/// Checks one dataset message: the AIO payload shape and the CloudEvents properties.
fn assert_aio_message(p: &Publish, asset: &str, points: &[&str], source: &str) {
    assert_eq!(p.topic, format!("azure-iot-operations/data/{asset}"));
    let body = payload(p);
    for point in points {
        let value = &body[*point];
        assert!(
            value["SourceTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{point} has a SourceTimestamp: {body}"
        );
        assert!(!value["Value"].is_null(), "{point} has a Value: {body}");
    }
    assert_eq!(user_property(p, "specversion"), Some("1.0"));
    assert!(matches!(
        user_property(p, "type"),
        Some("ua-keyframe" | "ua-deltaframe")
    ));
    assert_eq!(user_property(p, "source"), Some(source));
    assert_eq!(user_property(p, "subject"), Some(asset));
    assert_eq!(
        user_property(p, "datacontenttype"),
        Some("application/json")
    );
    assert!(user_property(p, "id").is_some_and(|id| id.len() == 36));
    assert!(user_property(p, "time").is_some());
    assert!(user_property(p, "sequence").is_some_and(|s| s.parse::<u64>().is_ok()));
    let external = format!("{asset}-0001");
    assert_eq!(user_property(p, "externalAssetId"), Some(external.as_str()));
}

// ---------------------------------------------------------------------------------------

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
    let auto_accept = r#"{"security":{"autoAcceptUntrustedServerCertificates":true}}"#;
    write(
        &dir,
        "device.yaml",
        &device("plc", &url, "plc-user", auto_accept),
    );
    let points = [
        ("sine", format!("{SIM_NS}Fast.Sine.0")),
        ("counter", "ns=2;s=Fast.Counter.0".to_owned()),
    ];
    let refs: Vec<(&str, &str)> = points.iter().map(|(n, id)| (*n, id.as_str())).collect();
    let events = "  eventGroups:
  - name: alarms
    events:
    - name: simulated
      dataSource: ns=2;s=Special.Events
      eventConfiguration: '{\"publishingInterval\": 100}'
      destinations:
      - {target: Mqtt, configuration: {topic: factory/oven/events, qos: Qos1}}
";
    write(&dir, "asset.yaml", &(asset("oven", "plc", &refs) + events));
    let ep = start_edgeplane(&dir).await;
    let mut sub = subscriber(ep.mqtt, "azure-iot-operations/data/#").await;
    let mut event_sub = subscriber(ep.mqtt, "factory/oven/events").await;

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
        ]
        .map(|n| sim.monitored_items_on(n))
    };
    assert_eq!(
        one_each(&sim),
        [1, 1, 1],
        "one monitored item per data point and event"
    );

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
    assert_eq!(
        one_each(&sim),
        [1, 1, 1],
        "subscriptions recreated without duplicates"
    );
    let event = next_publish(&mut event_sub).await;
    assert_eq!(user_property(&event, "type"), Some("ua-event"));
    sim.shutdown().await;
}

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
async fn wait_items(sim: &SimHandle, items: &impl Fn(&SimHandle) -> [usize; 2], want: [usize; 2]) {
    let reached = tokio::time::timeout(SLOW, async {
        while items(sim) != want {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "monitored items {:?}, expected {want:?}",
        items(sim)
    );
}

// ---------------------------------------------------------------------------------------
// An independent server: Python's asyncua.

struct PyServer(Child);

/// Start `tests/opcua/asyncua_server.py` on `port`, waiting for its READY line.
async fn start_asyncua(port: u16) -> PyServer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/opcua/asyncua_server.py");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import asyncua"])
        .output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "python3 cannot import asyncua; run scripts/install-deps.sh"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--user", "operator:secret"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start asyncua server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(SLOW, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("READY") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready.ok(), Some(true), "the asyncua server says READY");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    PyServer(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

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
