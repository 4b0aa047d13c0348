//! Test support: start a real broker on an ephemeral loopback port, and a raw MQTT client
//! built on the codec that sends exactly the bytes a test asks for and reads back packets.
//! Every wait is bounded so a broken broker fails a test instead of hanging it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use edgeplane_broker::{Broker, ListenerSpec, Protocol, Settings};
use edgeplane_codec::{
    Ack, ConnAck, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubAck,
    SubOptions, Subscribe, UnsubAck, Unsubscribe, Will,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use edgeplane_codec as codec;

/// How long to wait for a packet that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a started `edgeplane` binary may take to report its listeners.
pub const STARTUP: Duration = Duration::from_secs(30);
/// How long to watch for a packet that should not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

pub use ProtocolVersion::{V311, V5};

/// A broker started for one test; shut down when dropped with the runtime.
pub struct TestBroker {
    pub broker: Broker,
    pub addr: SocketAddr,
    /// The data folder when the suite runs durable (`EDGEPLANE_TEST_DURABLE=1`).
    _data: Option<TempDir>,
}

impl TestBroker {
    /// Default settings, one TCP listener on 127.0.0.1:0, `$SYS` off.
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// Start with settings changed by `f`.
    pub async fn with(f: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings {
            sys_interval: None,
            ..Settings::default()
        };
        // The same suite runs against the durable store when asked: every guarantee holds
        // with acknowledgements held for the disk.
        let data = std::env::var_os("EDGEPLANE_TEST_DURABLE").map(|_| {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            TempDir::new(&format!("durable-{n}"))
        });
        settings.data_dir = data.as_ref().map(|d| d.to_path_buf());
        f(&mut settings);
        let listeners = vec![
            ListenerSpec {
                name: "tcp".into(),
                bind: loopback(),
                protocol: Protocol::Mqtt,
                tls: None,
                auth: Default::default(),
                limits: Default::default(),
            },
            ListenerSpec {
                name: "ws".into(),
                bind: loopback(),
                protocol: Protocol::WebSockets,
                tls: None,
                auth: Default::default(),
                limits: Default::default(),
            },
        ];
        let broker = Broker::start(settings, listeners)
            .await
            .expect("broker starts");
        let addr = broker.addr(Protocol::Mqtt).expect("tcp listener");
        TestBroker {
            broker,
            addr,
            _data: data,
        }
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.broker.addr(Protocol::WebSockets).expect("ws listener")
    }

    /// Connect a client with clean start and default options; panics unless accepted.
    pub async fn client(&self, id: &str, v: ProtocolVersion) -> Client {
        let mut c = Client::open(self.addr, v).await;
        let ack = c.connect(connect(id, v)).await;
        assert_eq!(ack.code, 0, "CONNACK for {id}: {ack:?}");
        c
    }
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A CONNECT with clean start, keep alive 60 and no other options.
pub fn connect(id: &str, v: ProtocolVersion) -> Connect {
    Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 60,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

pub fn will(topic: &str, payload: &str, qos: QoS, retain: bool) -> Will {
    Will {
        topic: topic.into(),
        payload: payload.to_owned().into(),
        qos,
        retain,
        properties: Properties::default(),
    }
}

pub fn publish(topic: &str, payload: &str, qos: QoS, packet_id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload: payload.to_owned().into(),
    }
}

pub fn subscribe(packet_id: u16, filters: &[(&str, QoS)]) -> Subscribe {
    Subscribe {
        packet_id,
        filters: filters
            .iter()
            .map(|(f, q)| (f.to_string(), SubOptions::new(*q)))
            .collect(),
        properties: Properties::default(),
    }
}

/// A raw MQTT client over TCP.
pub struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    pub version: ProtocolVersion,
}

impl Client {
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Client {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            rbuf: BytesMut::new(),
            version,
        }
    }

    /// Send CONNECT and return the CONNACK.
    pub async fn connect(&mut self, c: Connect) -> ConnAck {
        self.version = c.protocol;
        self.send(&Packet::Connect(Box::new(c))).await;
        match self.recv().await {
            Some(Packet::ConnAck(a)) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        codec::encode(p, self.version, &mut out);
        self.send_raw(&out).await;
    }

    /// Write bytes as they are (for malformed packets). Errors are ignored: the broker may
    /// already have closed the connection.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next packet, or `None` if the connection closed or nothing came within [`WAIT`].
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, limit: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match codec::decode(&mut self.rbuf, self.version, usize::MAX) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => panic!("broker sent an invalid packet: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Assert nothing arrives within [`QUIET`].
    pub async fn expect_nothing(&mut self) {
        if let Some(p) = self.recv_within(QUIET).await {
            panic!("expected no packet, got {p:?}");
        }
    }

    /// True if the broker closed the connection (EOF) within [`WAIT`], skipping any packets
    /// (such as DISCONNECT) before it. Returns the DISCONNECT reason if one came.
    pub async fn expect_closed(&mut self) -> Option<ReasonCode> {
        let mut reason = None;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match codec::decode(&mut self.rbuf, self.version, usize::MAX) {
                Ok(Some(Packet::Disconnect(d))) => reason = Some(d.reason),
                Ok(Some(p)) => panic!("expected the connection to close, got {p:?}"),
                Ok(None) => {}
                Err(e) => panic!("broker sent an invalid packet: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return reason,
                Err(_) => panic!("connection still open after {WAIT:?}"),
                Ok(Ok(_)) => {}
            }
        }
    }

    pub async fn subscribe(&mut self, s: Subscribe) -> SubAck {
        self.send(&Packet::Subscribe(s)).await;
        match self.recv().await {
            Some(Packet::SubAck(a)) => a,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribe to one filter at `qos` and assert it was granted.
    pub async fn sub(&mut self, filter: &str, qos: QoS) {
        let ack = self.subscribe(subscribe(1, &[(filter, qos)])).await;
        assert_eq!(
            ack.reasons,
            vec![ReasonCode(qos as u8)],
            "SUBACK for {filter}"
        );
    }

    pub async fn unsubscribe(&mut self, packet_id: u16, filters: &[&str]) -> UnsubAck {
        let u = Unsubscribe {
            packet_id,
            filters: filters.iter().map(|f| f.to_string()).collect(),
            properties: Properties::default(),
        };
        self.send(&Packet::Unsubscribe(u)).await;
        match self.recv().await {
            Some(Packet::UnsubAck(a)) => a,
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publish and complete the QoS flow (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    pub async fn publish(&mut self, p: Publish) {
        let (qos, id) = (p.qos, p.packet_id);
        self.send(&Packet::Publish(p)).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.recv().await {
                Some(Packet::PubAck(a)) if a.packet_id == id => {}
                other => panic!("expected PUBACK {id}, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                match self.recv().await {
                    Some(Packet::PubRec(a)) if a.packet_id == id => {}
                    other => panic!("expected PUBREC {id}, got {other:?}"),
                }
                self.send(&Packet::PubRel(Ack::new(id, ReasonCode::SUCCESS)))
                    .await;
                match self.recv().await {
                    Some(Packet::PubComp(a)) if a.packet_id == id => {}
                    other => panic!("expected PUBCOMP {id}, got {other:?}"),
                }
            }
        }
    }

    /// The next PUBLISH (panics on anything else).
    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Receive a PUBLISH and acknowledge it as its QoS requires.
    pub async fn receive_and_ack(&mut self) -> Publish {
        let p = self.expect_publish().await;
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                    .await
            }
            QoS::ExactlyOnce => {
                self.send(&Packet::PubRec(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                    .await;
                match self.recv().await {
                    Some(Packet::PubRel(a)) if a.packet_id == p.packet_id => {}
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(&Packet::PubComp(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                    .await;
            }
        }
        p
    }

    /// Send DISCONNECT (reason success) and close.
    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(edgeplane_codec::Disconnect::new(
            ReasonCode::SUCCESS,
        )))
        .await;
        let _ = self.stream.shutdown().await;
    }

    /// Drop the TCP connection without DISCONNECT (an abnormal close).
    pub fn drop_connection(self) {
        drop(self.stream);
    }
}

/// Proves the broker still serves: a fresh client connects, subscribes, and gets its own
/// message back.
pub async fn assert_broker_serves(b: &TestBroker) {
    let mut c = b.client("health-check", V5).await;
    c.sub("health/check", QoS::AtLeastOnce).await;
    c.publish(publish("health/check", "ok", QoS::AtLeastOnce, 7))
        .await;
    let p = c.receive_and_ack().await;
    assert_eq!(&p.payload[..], b"ok");
}

/// What a client saw next: a packet, the broker closing the connection, or nothing at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Packet(Box<Packet>),
    /// EOF or a reset: the broker closed the connection.
    Closed,
    /// Neither a packet nor a close within the limit.
    Silent,
}

impl Client {
    /// The next packet or the close of the connection, telling the two apart (unlike
    /// [`Client::recv_within`]); `Silent` if nothing happens within `limit`.
    pub async fn observe(&mut self, limit: Duration) -> Observed {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match codec::decode(&mut self.rbuf, self.version, usize::MAX) {
                Ok(Some(p)) => return Observed::Packet(Box::new(p)),
                Ok(None) => {}
                Err(e) => panic!("broker sent an invalid packet: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Observed::Closed,
                Err(_) => return Observed::Silent,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// A CONNECT that resumes (or starts) a session kept after the connection closes: Clean
/// Start 0, and for MQTT 5 a Session Expiry Interval of `expiry_secs`.
pub fn connect_persistent(id: &str, v: ProtocolVersion, expiry_secs: u32) -> Connect {
    let mut c = connect(id, v);
    c.clean_start = false;
    if v == V5 {
        c.properties.session_expiry_interval = Some(expiry_secs);
    }
    c
}

/// Start the `edgeplane` binary (`bin`, from `CARGO_BIN_EXE_edgeplane`) with
/// `run --config dir`, HTTP and metrics on ephemeral loopback ports, and return it with the
/// addresses of its first `listeners` MQTT listeners, read from its log. The process is
/// killed when the returned child is dropped.
pub async fn start_edgeplane(
    bin: &str,
    dir: &std::path::Path,
    listeners: usize,
) -> (tokio::process::Child, Vec<SocketAddr>) {
    let (child, addrs, _) = start_edgeplane_http(bin, dir, listeners).await;
    (child, addrs)
}

/// Like [`start_edgeplane`], also returning the HTTP API's address.
pub async fn start_edgeplane_http(
    bin: &str,
    dir: &std::path::Path,
    listeners: usize,
) -> (tokio::process::Child, Vec<SocketAddr>, SocketAddr) {
    let started = start_edgeplane_logged(bin, dir, listeners).await;
    (started.child, started.mqtt, started.http)
}

/// A started `edgeplane` binary ([`start_edgeplane_logged`]): the process (killed when
/// dropped), the addresses of its MQTT listeners, HTTP API and Prometheus metrics, and
/// every line it logs, for a test that looks for what must (not) be in the log.
pub struct Edgeplane {
    pub child: tokio::process::Child,
    pub mqtt: Vec<SocketAddr>,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

/// Start `bin run --config dir` with `RUST_LOG=info`, HTTP and metrics on ephemeral
/// loopback ports; returns once its first `listeners` MQTT listeners and both HTTP servers
/// are in its log, which it keeps reading.
pub async fn start_edgeplane_logged(
    bin: &str,
    dir: &std::path::Path,
    listeners: usize,
) -> Edgeplane {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(bin)
        .args([
            "run",
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start edgeplane");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (mut mqtt, mut http, mut metrics) = (Vec::new(), None, None);
    let addr_of = |line: &str| -> Option<SocketAddr> {
        line.split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let read = async {
        while mqtt.len() < listeners || http.is_none() || metrics.is_none() {
            let line = lines
                .next_line()
                .await
                .expect("read log")
                .expect("edgeplane exited early");
            if line.contains("listener=") {
                mqtt.extend(addr_of(&line));
            } else if line.contains("http listening") {
                http = addr_of(&line);
            } else if line.contains("metrics listening") {
                metrics = addr_of(&line);
            }
            log.lock().expect("log").push(line);
        }
    };
    // Generous: a debug binary on a loaded two-core CI machine, with the whole suite
    // starting brokers in parallel, can take seconds to get to its listeners.
    tokio::time::timeout(STARTUP, read)
        .await
        .expect("listeners within 30 s");
    let sink = std::sync::Arc::clone(&log);
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().expect("log").push(line);
        }
    });
    Edgeplane {
        child,
        mqtt,
        http: http.expect("http address"),
        metrics: metrics.expect("metrics address"),
        log,
        reader,
    }
}

impl Edgeplane {
    /// The Prometheus text on the metrics port (panics unless 200).
    pub async fn scrape(&self) -> String {
        let (status, body) = http_get(self.metrics, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Stop the binary and return everything it logged.
    pub async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        let _ = tokio::time::timeout(WAIT, &mut self.reader).await;
        self.log.lock().expect("log").join("\n")
    }
}

/// A folder for one test, removed when dropped (declare it first so it outlives the broker
/// process that uses it).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A fresh, empty folder named after the test and this process.
    pub fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("edgeplane-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `bin run --config dir`, which must fail to start within [`WAIT`]; returns its stderr.
pub async fn edgeplane_start_failure(bin: &str, dir: &std::path::Path) -> String {
    let run = tokio::process::Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(dir)
        .output();
    let out = tokio::time::timeout(WAIT, run)
        .await
        .expect("exits")
        .expect("run edgeplane");
    assert!(
        !out.status.success(),
        "edgeplane started although it should have refused"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `BIN passwd FILE USER` with `password` typed at its prompt (standard input), as a user
/// adds an entry to a password Secret. Panics unless it succeeds, or if it echoes the
/// password on either output.
pub async fn passwd(bin: &str, file: &std::path::Path, user: &str, password: &str) {
    let mut child = tokio::process::Command::new(bin)
        .arg("passwd")
        .arg(file)
        .arg(user)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run passwd");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .expect("write password");
    drop(stdin);
    let out = child.wait_with_output().await.expect("passwd finished");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains(password), "passwd must not echo the password");
}

/// GET `path` over plain HTTP/1.1 with `Connection: close`: the status and the body. Panics
/// if no answer comes within [`WAIT`].
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    tokio::time::timeout(WAIT, try_http_get(addr, path))
        .await
        .expect("response within 5 s")
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// [`http_get`] without the deadline, for servers that may not be up yet.
pub async fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8(buf).map_err(|_| bad("response is not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    Ok((status, body.to_owned()))
}

/// The value of the sample `series` (name and labels, exactly as exposed) in a Prometheus
/// text exposition; panics, showing the text, if there is none.
pub fn metric_sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}
