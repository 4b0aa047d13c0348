//! Interoperability with the clients users already have: Debian's `mosquitto_pub` /
//! `mosquitto_sub` and Python paho-mqtt 2.x, run as real processes against a real broker on
//! an ephemeral loopback port. `scripts/test.sh` (and CI) install them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use edgeplane_tests::*;
use tokio::process::Command;

/// Run a command to completion within `limit`, returning stdout; panics with stderr on failure.
async fn run(cmd: &mut Command, limit: Duration) -> String {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}; run scripts/test.sh to install it"));
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {limit:?}"))
        .expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn mosquitto(tool: &str, b: &TestBroker, args: &[&str]) -> Command {
    let mut c = Command::new(tool);
    c.args(["-h", "127.0.0.1", "-p", &b.addr.port().to_string()])
        .args(args);
    c
}

/// mosquitto_sub (MQTT 5 and 3.1.1) receives what mosquitto_pub sends at every QoS, with
/// retained messages and user properties.
#[tokio::test]
async fn mosquitto_clients_pub_sub() {
    let b = TestBroker::start().await;
    run(
        &mut mosquitto(
            "mosquitto_pub",
            &b,
            &[
                "-V",
                "mqttv5",
                "-t",
                "site/retained",
                "-m",
                "kept",
                "-r",
                "-q",
                "1",
            ],
        ),
        WAIT,
    )
    .await;
    let mut sub5 = mosquitto(
        "mosquitto_sub",
        &b,
        &[
            "-V",
            "mqttv5",
            "-t",
            "site/#",
            "-q",
            "2",
            "-C",
            "4",
            "-F",
            "%t %q %r %p",
        ],
    );
    let mut sub3 = mosquitto(
        "mosquitto_sub",
        &b,
        &["-V", "mqttv311", "-t", "site/+", "-v", "-C", "4", "-q", "2"],
    );
    let s5 = tokio::spawn(async move { run(&mut sub5, WAIT * 2).await });
    let s3 = tokio::spawn(async move { run(&mut sub3, WAIT * 2).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (qos, msg) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        run(
            &mut mosquitto(
                "mosquitto_pub",
                &b,
                &["-V", "mqttv5", "-t", "site/data", "-m", msg, "-q", qos],
            ),
            WAIT,
        )
        .await;
    }
    let out5 = s5.await.expect("sub5");
    assert_eq!(
        out5.lines().collect::<Vec<_>>(),
        vec![
            "site/retained 1 1 kept",
            "site/data 0 0 zero",
            "site/data 1 0 one",
            "site/data 2 0 two"
        ]
    );
    let out3 = s3.await.expect("sub3");
    assert_eq!(
        out3.lines().collect::<Vec<_>>(),
        vec![
            "site/retained kept",
            "site/data zero",
            "site/data one",
            "site/data two"
        ]
    );
}

/// A v5 user property set by mosquitto_pub reaches mosquitto_sub unchanged.
#[tokio::test]
async fn mosquitto_user_properties() {
    let b = TestBroker::start().await;
    let mut sub = mosquitto(
        "mosquitto_sub",
        &b,
        &["-V", "mqttv5", "-t", "p", "-C", "1", "-F", "%P %p"],
    );
    let s = tokio::spawn(async move { run(&mut sub, WAIT).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    run(
        &mut mosquitto(
            "mosquitto_pub",
            &b,
            &[
                "-V",
                "mqttv5",
                "-t",
                "p",
                "-m",
                "x",
                "-D",
                "publish",
                "user-property",
                "line",
                "7",
            ],
        ),
        WAIT,
    )
    .await;
    assert_eq!(s.await.expect("sub").trim(), "line:7 x");
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(name)
}

/// paho-mqtt 2.x (MQTT 5 and 3.1.1) scenarios: QoS 0/1/2 both ways, properties,
/// subscription identifiers, retained, will, persistent session. The script asserts and
/// prints one line per passed check.
#[tokio::test]
async fn paho_python_client() {
    let b = TestBroker::start().await;
    let out = run(
        Command::new("python3")
            .arg(script("paho_client.py"))
            .arg(b.addr.port().to_string()),
        Duration::from_secs(60),
    )
    .await;
    assert!(out.contains("all paho checks passed"), "{out}");
}

/// paho-mqtt over WebSocket (`/mqtt`, subprotocol `mqtt`).
#[tokio::test]
async fn paho_python_websocket() {
    let b = TestBroker::start().await;
    let out = run(
        Command::new("python3")
            .arg(script("paho_client.py"))
            .arg(b.ws_addr().port().to_string())
            .arg("websockets"),
        Duration::from_secs(60),
    )
    .await;
    assert!(out.contains("all paho checks passed"), "{out}");
}
