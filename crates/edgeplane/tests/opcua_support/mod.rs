//! Shared parts of the OPC UA tests (`opcua.rs`): the simulator and the PyPI `asyncua` server,
//! the `edgeplane` binary with a seeded PKI, the REST API with a signed-in session, manifests
//! and the checks of Azure IoT Operations' message shape.

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

pub const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

/// Upper bound of a wait for the connector (connects, reconnects with backoff up to 10 s).
pub const SLOW: Duration = Duration::from_secs(45);

/// How long the outage test keeps the server down (issue 9: 30 s).
pub const OUTAGE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Certificates: RSA key generation takes seconds in debug builds, so the simulator's and the
// connector's application certificates are made once and copied into each test's folders.

static SEED: OnceCell<PathBuf> = OnceCell::const_new();

pub async fn seed() -> &'static PathBuf {
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
pub async fn seeded_pki(which: &str, dst: &Path) {
    let src = seed().await.join(which);
    for sub in ["own", "private"] {
        std::fs::create_dir_all(dst.join(sub)).expect("pki folder");
        for entry in std::fs::read_dir(src.join(sub)).expect("seed") {
            let entry = entry.expect("seed entry");
            std::fs::copy(entry.path(), dst.join(sub).join(entry.file_name())).expect("copy");
        }
    }
}

pub fn sim_config(pki: &Path, bind: &str, users: Vec<SimUser>) -> SimConfig {
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

pub async fn start_sim(dir: &Path, bind: &str) -> SimHandle {
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

pub struct Edgeplane {
    pub _child: Child,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub data: PathBuf,
}

/// `edgeplane run --config DIR/config --data-dir DIR/data`, the connector's PKI seeded.
pub async fn start_edgeplane(dir: &Path) -> Edgeplane {
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
    // The rest of the log goes to the test's captured output: shown only when it fails.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("edgeplane: {line}");
        }
    });
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
pub async fn session(addr: SocketAddr) -> (String, String) {
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
pub async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
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
pub async fn wait_status(
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

pub fn state(doc: &Value, endpoint: Option<&str>) -> String {
    let s = match endpoint {
        Some(e) => &doc["endpoints"][e],
        None => doc,
    };
    s["state"].as_str().unwrap_or_default().to_owned()
}

pub async fn subscriber(addr: SocketAddr, filter: &str) -> Client {
    let mut c = Client::open(addr, V5).await;
    let mut hello = connect(
        &format!("observer-{}", filter.replace(['/', '#', '+'], "_")),
        V5,
    );
    // The observer only reads (it sends no PINGREQ), and the outage test runs longer than
    // 1.5 × a keep-alive of 60 s on a loaded machine: the broker would rightly close it.
    hello.keep_alive = 0;
    c.connect(hello).await;
    c.sub(filter, QoS::AtMostOnce).await;
    c
}

/// The next PUBLISH within [`SLOW`].
pub async fn next_publish(c: &mut Client) -> Publish {
    match c.recv_within(SLOW).await {
        Some(edgeplane_codec::Packet::Publish(p)) => p,
        other => panic!("expected asset data, got {other:?}"),
    }
}

/// The first key frame that holds every one of `points` (the very first message may carry
/// only the values the server sent first).
pub async fn key_frame_with_all(c: &mut Client, points: &[&str]) -> Publish {
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
pub fn sequence(p: &Publish) -> u64 {
    user_property(p, "sequence")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no sequence in {:?}", p.properties.user_properties))
}

/// Throw away what arrives within [`QUIET`], returning the sequence numbers it carried.
/// The window is fixed: with data flowing faster than `QUIET` a "read until a quiet gap"
/// loop would never end (on an idle machine it did not, until the broker closed the
/// observer).
pub async fn drain_sequences(c: &mut Client) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + QUIET;
    let mut seen = Vec::new();
    while let Some(packet) = c.recv_within(left(deadline)).await {
        if let edgeplane_codec::Packet::Publish(p) = packet {
            seen.push(sequence(&p));
        }
    }
    seen
}

/// Throw away what arrives within [`QUIET`].
pub async fn drain(c: &mut Client) {
    let deadline = tokio::time::Instant::now() + QUIET;
    while c.recv_within(left(deadline)).await.is_some() {}
}

fn left(deadline: tokio::time::Instant) -> Duration {
    deadline.saturating_duration_since(tokio::time::Instant::now())
}

pub fn user_property<'a>(p: &'a Publish, key: &str) -> Option<&'a str> {
    p.properties
        .user_properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub fn payload(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).expect("json payload")
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir.join("config")).expect("config folder");
    std::fs::write(dir.join("config").join(name), text).expect("write manifest");
}

pub const LISTENER: &str = "apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: local}
spec:
  ports:
  - {port: 0, bindAddress: 127.0.0.1}
";

pub fn secret(name: &str, user: &str, password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{username: {user}, password: {password}}}\n"
    )
}

/// A Device with one OPC UA endpoint `opc-ua` at `url`, user name and password from Secret
/// `secret`, and `additional` as its additionalConfiguration.
pub fn device(name: &str, url: &str, secret: &str, additional: &str) -> String {
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
pub fn asset(name: &str, device: &str, points: &[(&str, &str)]) -> String {
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

/// Two of the simulator's fast nodes: a sine (by namespace URI) and a counter (by index).
pub const SINE_AND_COUNTER: [(&str, &str); 2] = [
    ("sine", "nsu=http://edgeplane.io/opcua-sim;s=Fast.Sine.0"),
    ("counter", "ns=2;s=Fast.Counter.0"),
];

/// Checks one dataset message: the AIO payload shape and the CloudEvents properties.
pub fn assert_aio_message(p: &Publish, asset: &str, points: &[&str], source: &str) {
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

pub async fn wait_items(
    sim: &SimHandle,
    items: &impl Fn(&SimHandle) -> [usize; 2],
    want: [usize; 2],
) {
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

pub struct PyServer(pub Child);

/// Start `tests/opcua/asyncua_server.py` on `port`, waiting for its READY line.
pub async fn start_asyncua(port: u16) -> PyServer {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
