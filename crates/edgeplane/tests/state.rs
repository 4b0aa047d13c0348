//! `edgeplane state` and `edgeplane status` against a running `edgeplane run`: set, get, list, conditions, watch,
//! delete and the exit status of a missing key, all through the state store's MQTT protocol.

use std::process::Stdio;
use std::time::Duration;

use edgeplane_tests::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

const LISTENER: &str = "apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: local}\nspec:\n  ports:\n  - port: 0\n    bindAddress: 127.0.0.1\n";

async fn state(broker: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        WAIT * 2,
        Command::new(BIN)
            .arg("state")
            .args(args)
            .args(["--broker", broker])
            .output(),
    )
    .await
    .expect("edgeplane state finished")
    .expect("run edgeplane state");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn state_commands_against_a_running_broker() {
    let dir = TempDir::new("state-cli");
    std::fs::write(dir.join("listener.yaml"), LISTENER).expect("write");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let broker = addrs[0].to_string();

    let mut watch = Command::new(BIN)
        .args(["state", "watch", "line1/setpoint", "--broker", &broker])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("watch");
    let mut watched = BufReader::new(watch.stderr.take().expect("stderr")).lines();
    let ready = tokio::time::timeout(WAIT, watched.next_line())
        .await
        .expect("watch starts")
        .expect("line");
    assert!(ready.is_some_and(|l| l.contains("watching")));

    assert_eq!(
        state(&broker, &["set", "line1/setpoint", "72.5"]).await.0,
        0
    );
    let (code, out, _) = state(&broker, &["get", "line1/setpoint"]).await;
    assert_eq!((code, out.trim()), (0, "72.5"));
    let (code, _, err) = state(&broker, &["set", "line1/setpoint", "80", "--nx"]).await;
    assert_eq!(code, 2, "NX on an existing key is refused: {err}");
    assert!(err.contains("condition"), "{err}");
    assert_eq!(
        state(&broker, &["set", "line2/setpoint", "60", "--px", "60000"])
            .await
            .0,
        0
    );
    let (code, out, _) = state(&broker, &["list", "line*"]).await;
    let mut keys: Vec<&str> = out.lines().collect();
    keys.sort();
    assert_eq!((code, keys), (0, vec!["line1/setpoint", "line2/setpoint"]));
    let (code, out, _) = state(&broker, &["del", "line1/setpoint"]).await;
    assert_eq!((code, out.trim()), (0, "deleted"));
    assert_eq!(
        state(&broker, &["get", "line1/setpoint"]).await.0,
        1,
        "missing key: exit status 1"
    );
    assert_eq!(state(&broker, &["del", "line1/setpoint"]).await.0, 1);

    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .expect("notification")
            .expect("read");
        seen.push(line.expect("watch still running"));
    }
    assert_eq!(seen, ["SET 72.5", "DELETE"]);
}

/// A broker that is not there gives a clear error and exit status 2.
#[tokio::test]
async fn unreachable_broker_is_a_clear_error() {
    let (code, _, err) = state("127.0.0.1:9", &["get", "k"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach the broker"), "{err}");
}

/// `edgeplane status` shows a running instance's health, clients and message counts.
#[tokio::test]
async fn status_shows_a_running_instance() {
    let dir = TempDir::new("status-cli");
    std::fs::write(dir.join("listener.yaml"), LISTENER).expect("write");
    let (_child, addrs, http) = start_edgeplane_http(BIN, &dir, 1).await;
    let mut c = Client::open(addrs[0], V5).await;
    c.connect(connect("status-client", V5)).await;
    c.publish(publish(
        "plant/t",
        "1",
        edgeplane_tests::codec::QoS::AtLeastOnce,
        1,
    ))
    .await;
    let out = tokio::time::timeout(
        WAIT * 2,
        Command::new(BIN)
            .args(["status", "--http", &http.to_string()])
            .output(),
    )
    .await
    .expect("status finished")
    .expect("run status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(": ready"), "{text}");
    assert!(text.contains("[+]self-check ok"), "{text}");
    assert!(text.contains("clients      1 connected"), "{text}");
    assert!(text.contains("messages     1 received"), "{text}");
    let down = Command::new(BIN)
        .args(["status", "--http", "127.0.0.1:9"])
        .output()
        .await
        .expect("run status");
    assert_eq!(down.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach the HTTP API"));
}

/// With --data-dir, a key answered `+OK` is there after `kill -9` and a restart.
#[tokio::test]
async fn state_survives_kill_9_with_a_data_folder() {
    let dir = TempDir::new("state-kill9");
    let (config, data) = (dir.join("config"), dir.join("data"));
    std::fs::create_dir_all(&config).expect("mkdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    std::fs::write(
        config.join("listener.yaml"),
        LISTENER.replace("port: 0", &format!("port: {port}")),
    )
    .expect("write");
    let start = || {
        Command::new(BIN)
            .args([
                "run",
                "--http",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start edgeplane")
    };
    let broker = format!("127.0.0.1:{port}");
    let wait_up = || async {
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "edgeplane did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut child = start();
    wait_up().await;
    let (code, _, err) = state(&broker, &["set", "line1/setpoint", "72.5"]).await;
    assert_eq!(code, 0, "{err}");
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;

    let _child = start();
    wait_up().await;
    let (code, out, err) = state(&broker, &["get", "line1/setpoint"]).await;
    assert_eq!((code, out.trim()), (0, "72.5"), "{err}");
}
