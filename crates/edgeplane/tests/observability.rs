//! Readiness and metrics of the `edgeplane` binary under faults and real traffic, as an
//! operator sees them over HTTP: `/readyz` turning not ready when the durable store cannot
//! write (a full disk: a small tmpfs is the data folder) and ready again once space is
//! freed; `/metrics` broken down by protocol version, listener, QoS and authentication
//! outcome after traffic from real clients.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN); without it the storage test prints why it
//! is skipped.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use edgeplane_tests::codec::{Packet, QoS, ReasonCode};
use edgeplane_tests::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod auth_support;
use auth_support::{add_users, listener, policy, BIN, USERS_AND_RULES};

/// How long a readiness change may take to show: the store check is polled every second.
const READY_WAIT: Duration = Duration::from_secs(20);

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

struct Edgeplane {
    _child: Child,
    /// MQTT addresses with the name of their listener, as logged.
    mqtt: Vec<(String, SocketAddr)>,
    http: SocketAddr,
    metrics: SocketAddr,
    /// Its log lines after the addresses.
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// `edgeplane run --config dir` plus `args`, with `ports` MQTT ports and `RUST_LOG=info`;
/// addresses come from its log.
async fn start(dir: &Path, args: &[&str], ports: usize) -> Edgeplane {
    start_with(dir, args, ports, Some("info")).await
}

async fn start_with(dir: &Path, args: &[&str], ports: usize, rust_log: Option<&str>) -> Edgeplane {
    let mut command = Command::new(BIN);
    command
        .args(["run", "--config"])
        .arg(dir)
        .args(["--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start edgeplane");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut mqtt, mut http, mut metrics) = (Vec::new(), None, None);
    let read = async {
        while mqtt.len() < ports || http.is_none() || metrics.is_none() {
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
            } else if let Some(rest) = line.split("listener=").nth(1) {
                let name = rest.split_whitespace().next().unwrap_or_default();
                mqtt.push((name.to_owned(), addr));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("listening within 20 s");
    let (tx, log) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    Edgeplane {
        _child: child,
        log,
        mqtt,
        http: http.expect("http"),
        metrics: metrics.expect("metrics"),
    }
}

/// Poll `/readyz` until `want` holds for its status and body; the last answer.
async fn readyz_until(http: SocketAddr, what: &str, want: impl Fn(u16, &str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        let (status, body) = http_get(http, "/readyz").await;
        if want(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {READY_WAIT:?}; last /readyz: {status}\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Mount(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A file that takes all the free space of its filesystem, removed when dropped.
struct Filler(PathBuf);

impl Filler {
    fn fill(path: PathBuf) -> Filler {
        let mut f = std::fs::File::create(&path).expect("filler file");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        Filler(path)
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The data folder's disk fills up: `/readyz` answers 503 naming the `store` check and the
/// cause, acknowledgements are withheld; once space is freed it answers 200 again and the
/// withheld acknowledgements go out.
#[tokio::test]
async fn readyz_turns_not_ready_on_a_full_disk_and_back() {
    const COUNT: u16 = 20;
    let root = TempDir::new("obs-disk-full");
    let _mount = match Mount::tmpfs(&root, "4m") {
        Ok(m) => m,
        Err(why) => {
            println!("SKIPPED readyz_turns_not_ready_on_a_full_disk_and_back: cannot mount a 4 MiB tmpfs ({why})");
            return;
        }
    };
    let config = root.join("config");
    let data = root.join("data");
    std::fs::create_dir(&config).expect("config folder");
    std::fs::create_dir(&data).expect("data folder");
    std::fs::write(config.join("listener.yaml"), LISTENER).expect("write config");
    let data_arg = data.to_string_lossy().into_owned();
    let ep = start(&config, &["--data-dir", &data_arg], 1).await;
    let mqtt = ep.mqtt[0].1;
    readyz_until(ep.http, "ready with the store", |s, b| {
        s == 200 && b.contains("[+]store ok\n")
    })
    .await;

    let mut sub = Client::open(mqtt, V5).await;
    sub.connect(connect_persistent("keeper", V5, 3600)).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let filler = Filler::fill(root.join("filler"));
    let mut p = Client::open(mqtt, V5).await;
    assert_eq!(p.connect(connect("publisher", V5)).await.code, 0);
    for n in 0..COUNT {
        let m = publish("t", &format!("{n:<8192}"), QoS::AtLeastOnce, n + 1);
        p.send(&Packet::Publish(m)).await;
    }
    let body = readyz_until(ep.http, "not ready on a full disk", |s, b| {
        s == 503 && b.contains("[-]store failed: ")
    })
    .await;
    assert!(body.contains("No space left"), "{body}");
    assert!(body.ends_with("readyz check failed\n"), "{body}");
    assert!(body.contains("[+]broker ok\n"), "{body}");
    // Nothing was acknowledged while the disk was full.
    let mut acked = 0;
    while let Some(packet) = p.recv_within(QUIET).await {
        match packet {
            Packet::PubAck(a) if a.reason == ReasonCode::SUCCESS => acked += 1,
            Packet::PubAck(a) => assert_eq!(a.reason, ReasonCode::QUOTA_EXCEEDED),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert_eq!(acked, 0, "nothing is acknowledged on a full disk");

    drop(filler);
    readyz_until(ep.http, "ready again once space is freed", |s, b| {
        s == 200 && b.contains("[+]store ok\n")
    })
    .await;
    while acked < COUNT {
        match p.recv_within(WAIT).await {
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.reason, ReasonCode::SUCCESS);
                acked += 1;
            }
            other => panic!("expected the withheld PUBACKs, got {other:?}"),
        }
    }
    let (_, metrics) = http_get(ep.metrics, "/metrics").await;
    assert!(metrics.contains("aio_broker_publishes_received_total"));
}

const SECRET_PASSWORD: &str = "correct-horse-battery-staple";

/// On the `secured` listener only alice may connect (and publish anywhere).
const ALICE_ONLY: &str = r##"
    - principals:
        usernames: [alice]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["#"]
"##;

/// Users alice and bob, an anonymous listener `open` and a listener `secured` with user
/// names and passwords and the policy [`ALICE_ONLY`] in `dir`.
async fn two_listeners(dir: &Path) {
    add_users(dir, &[("alice", SECRET_PASSWORD), ("bob", SECRET_PASSWORD)]).await;
    let listeners = [
        listener("open", &[&[]]),
        listener("secured", &[USERS_AND_RULES]),
    ];
    std::fs::write(dir.join("broker.yaml"), listeners.join("---\n")).expect("write config");
    std::fs::write(dir.join("policy.yaml"), policy(ALICE_ONLY)).expect("write policy");
}

/// `mosquitto_pub` (Debian's mosquitto-clients) with `args`; whether it succeeded.
async fn mosquitto_pub(addr: SocketAddr, args: &[&str]) -> bool {
    let run = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("mosquitto_pub exits within 5 s")
        .expect("mosquitto_pub (Debian package mosquitto-clients; run scripts/install-deps.sh)")
        .success()
}

/// Real clients (mosquitto_pub and mosquitto_sub, both protocol versions, QoS 0 to 2, a
/// `metriccategory`, good and bad passwords, a user the policy refuses) and then `/metrics`
/// holds each of them under its labels, and passes `promtool check metrics`.
#[tokio::test]
async fn metrics_by_protocol_version_qos_category_and_auth_outcome() {
    let dir = TempDir::new("obs-breakdown");
    two_listeners(&dir).await;
    let ep = start(&dir, &[], 2).await;
    let addr_of = |prefix: &str| {
        ep.mqtt
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener {prefix} in {:?}", ep.mqtt))
    };
    let (open, secured) = (addr_of("open"), addr_of("secured"));

    let port = open.port().to_string();
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5", "-q", "2"])
        .args(["-t", "plant/#", "-C", "3", "-i", "dashboard-sub"])
        .args([
            "-D",
            "connect",
            "user-property",
            "metriccategory",
            "dashboard",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub (Debian package mosquitto-clients)");
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric_sample(
        &http_get(ep.metrics, "/metrics").await.1,
        "aio_broker_total_subscriptions",
    ) < 1.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mosquitto_sub subscribed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for qos in ["0", "1", "2"] {
        let args = [
            "-V",
            "mqttv311",
            "-q",
            qos,
            "-t",
            "plant/line1/temp",
            "-m",
            "21.5",
        ];
        assert!(mosquitto_pub(open, &args).await, "QoS {qos} publish");
    }
    let out = tokio::time::timeout(WAIT, sub.wait_with_output())
        .await
        .expect("mosquitto_sub got its 3 messages within 5 s")
        .expect("mosquitto_sub output");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);

    let login = |user: &'static str, password: &'static str, version: &'static str| {
        [
            "-V", version, "-u", user, "-P", password, "-t", "x", "-m", "1",
        ]
    };
    assert!(mosquitto_pub(secured, &login("alice", SECRET_PASSWORD, "mqttv5")).await);
    assert!(!mosquitto_pub(secured, &login("alice", "wrong-password", "mqttv311")).await);
    assert!(!mosquitto_pub(secured, &login("bob", SECRET_PASSWORD, "mqttv5")).await);

    let (status, text) = http_get(ep.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let expect = [
        ("edgeplane_connections_total{mqtt_version=\"3.1.1\"}", 3.0),
        ("edgeplane_connections_total{mqtt_version=\"5\"}", 2.0),
        (
            "edgeplane_connections_by_category_total{category=\"dashboard\"}",
            1.0,
        ),
        (
            "edgeplane_connections_by_category_total{category=\"none\"}",
            4.0,
        ),
        (
            "aio_broker_authentication_successes_total{mqtt_version=\"5\"}",
            2.0,
        ),
        (
            "aio_broker_authentication_successes_total{mqtt_version=\"3.1.1\"}",
            0.0,
        ),
        (
            "aio_broker_authentication_failures_total{mqtt_version=\"3.1.1\"}",
            1.0,
        ),
        (
            "aio_broker_authentication_failures_total{mqtt_version=\"5\"}",
            0.0,
        ),
        (
            "edgeplane_connect_authorizations_total{mqtt_version=\"5\",outcome=\"allow\"}",
            1.0,
        ),
        (
            "edgeplane_connect_authorizations_total{mqtt_version=\"5\",outcome=\"deny\"}",
            1.0,
        ),
        ("edgeplane_publishes_sent_by_qos_total{qos=\"0\"}", 1.0),
        ("edgeplane_publishes_sent_by_qos_total{qos=\"1\"}", 1.0),
        ("edgeplane_publishes_sent_by_qos_total{qos=\"2\"}", 1.0),
        ("aio_broker_publishes_received_total", 4.0),
        // Three on the open listener (one per QoS) and alice's QoS 0 on the secured one.
        ("edgeplane_publishes_received_by_qos_total{qos=\"0\"}", 2.0),
        ("edgeplane_publishes_received_by_qos_total{qos=\"1\"}", 1.0),
        ("edgeplane_publishes_received_by_qos_total{qos=\"2\"}", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(metric_sample(&text, series), value, "{series}");
    }
    assert!(!text.contains(SECRET_PASSWORD) && !text.contains("wrong-password"));

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; run scripts/install-deps.sh)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = promtool.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

/// The next log line containing `text` within `limit`, skipping others.
async fn log_line(ep: &mut Edgeplane, text: &str, limit: Duration) -> Option<String> {
    let find = async {
        while let Some(line) = ep.log.recv().await {
            if line.contains(text) {
                return Some(line);
            }
        }
        None
    };
    tokio::time::timeout(limit, find).await.ok().flatten()
}

fn broker_with_level(level: &str) -> String {
    format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\nmetadata: {{name: default}}\n\
         spec:\n  diagnostics:\n    logs:\n      level: {level}\n---\n{LISTENER}"
    )
}

/// Changing the Broker resource's `diagnostics.logs.level` in the configuration folder
/// changes what the running process logs, without a restart and without dropping clients:
/// at `info` a connecting client leaves no line, at `debug` it does, and back at `info` it
/// does not again.
#[tokio::test]
async fn log_level_follows_the_broker_resource_without_restart() {
    let dir = TempDir::new("obs-log-level");
    std::fs::write(dir.join("broker.yaml"), broker_with_level("info")).expect("write config");
    let mut ep = start_with(&dir, &[], 1, None).await;
    let mqtt = ep.mqtt[0].1;
    let connected = |id: &str| format!("client_id={id}");

    let mut kept = Client::open(mqtt, V5).await;
    assert_eq!(kept.connect(connect("kept", V5)).await.code, 0);
    assert_eq!(
        log_line(&mut ep, &connected("kept"), QUIET).await,
        None,
        "no debug line at info"
    );

    std::fs::write(dir.join("broker.yaml"), broker_with_level("debug")).expect("write config");
    let changed = log_line(&mut ep, "log level changed", Duration::from_secs(10)).await;
    assert!(
        changed.is_some_and(|l| l.contains("to=debug")),
        "the change is logged"
    );
    let mut later = Client::open(mqtt, V5).await;
    assert_eq!(later.connect(connect("later", V5)).await.code, 0);
    let line = log_line(&mut ep, &connected("later"), WAIT).await;
    assert!(
        line.is_some_and(|l| l.contains("client connected")),
        "debug line at debug"
    );

    std::fs::write(dir.join("broker.yaml"), broker_with_level("info")).expect("write config");
    assert!(
        log_line(&mut ep, "log level changed", Duration::from_secs(10))
            .await
            .is_some()
    );
    let mut last = Client::open(mqtt, V5).await;
    assert_eq!(last.connect(connect("last", V5)).await.code, 0);
    assert_eq!(
        log_line(&mut ep, &connected("last"), QUIET).await,
        None,
        "info again"
    );

    // The client connected before the changes was never dropped.
    kept.sub("still/here", QoS::AtMostOnce).await;
    later.disconnect().await;
    last.disconnect().await;
}

/// Refused connections leave one log line per cause per 10 s interval, with the count of
/// the others since the previous line, and never the password: ten bad logins (each an
/// argon2id verification, so they may span more than one interval on a loaded machine)
/// give one `authentication` line per interval started; a user the policy refuses gets its
/// own `connect_not_authorized` line.
#[tokio::test]
async fn refusals_leave_one_rate_limited_line_per_cause() {
    let dir = TempDir::new("obs-why");
    two_listeners(&dir).await;
    let mut ep = start(&dir, &[], 2).await;
    let secured = ep
        .mqtt
        .iter()
        .find(|(name, _)| name.starts_with("secured"))
        .map(|(_, a)| *a)
        .expect("secured listener");
    let login = |id: &str, user: &str, password: &str| {
        let mut c = connect(id, V5);
        c.username = Some(user.into());
        c.password = Some(password.to_owned().into());
        c
    };
    let started = std::time::Instant::now();
    for i in 0..10 {
        let mut c = Client::open(secured, V5).await;
        let ack = c
            .connect(login(&format!("bad{i}"), "alice", "wrong-password-77"))
            .await;
        assert_eq!(ack.code, 0x86, "bad user name or password");
    }
    let mut c = Client::open(secured, V5).await;
    assert_eq!(
        c.connect(login("bob1", "bob", SECRET_PASSWORD)).await.code,
        0x87
    );

    let intervals = started.elapsed().as_secs() / 10 + 1;
    let mut lines = Vec::new();
    while let Some(line) = log_line(&mut ep, "connection refused", QUIET).await {
        lines.push(line);
    }
    let of = |cause: &str| -> Vec<&String> {
        let tag = format!("cause=\"{cause}\"");
        lines.iter().filter(|l| l.contains(&tag)).collect()
    };
    let authn = of("authentication");
    assert!(
        !authn.is_empty() && authn.len() as u64 <= intervals,
        "one line per interval started ({intervals}): {lines:#?}"
    );
    assert!(authn[0].contains("client_id=bad0") && authn[0].contains("more_since_last_line=0"));
    // Each line counts itself and the silent ones before it: never more than happened.
    let accounted: u64 = authn
        .iter()
        .filter_map(|l| {
            l.split("more_since_last_line=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .map(|more| more + 1)
        .sum();
    assert!(
        accounted <= 10 && accounted >= authn.len() as u64,
        "{lines:#?}"
    );
    assert_eq!(of("connect_not_authorized").len(), 1, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("credentials not accepted") && l.contains("client_id=bad0")),
        "{lines:#?}"
    );
    assert!(lines
        .iter()
        .all(|l| !l.contains("wrong-password") && !l.contains(SECRET_PASSWORD)));
}
