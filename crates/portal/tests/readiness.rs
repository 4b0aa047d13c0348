//! `/readyz` following the self-check probe of a real broker: the probe publishes through
//! the router and waits for its own delivery, so when the broker cannot deliver (here: its
//! durable store's disk is full, a small tmpfs) the probe fails, `/readyz` answers 503
//! naming the `self-check` check and its reason, and once space is freed the next probe
//! passes and `/readyz` answers 200 again.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN); without it the test prints why it is
//! skipped.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edgeplane_broker::selfcheck::SelfCheckSettings;
use edgeplane_portal::{Listen, Portal, Readiness};
use edgeplane_tests::codec::{Packet, QoS};
use edgeplane_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on every readiness change awaited below.
const CHANGE_WAIT: Duration = Duration::from_secs(20);

async fn readyz(addr: SocketAddr) -> (u16, String) {
    let exchange = async {
        let mut s = TcpStream::connect(addr)
            .await
            .expect("connect to the portal");
        let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read response");
        buf
    };
    let buf = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("response within 5 s");
    let text = String::from_utf8(buf).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, body.to_owned())
}

async fn readyz_until(addr: SocketAddr, what: &str, want: impl Fn(u16, &str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + CHANGE_WAIT;
    loop {
        let (status, body) = readyz(addr).await;
        if want(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {CHANGE_WAIT:?}; last /readyz: {status}\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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

#[tokio::test]
async fn readyz_follows_a_failing_self_check() {
    let root = TempDir::new("readyz-selfcheck");
    let _mount = match Mount::tmpfs(&root, "4m") {
        Ok(m) => m,
        Err(why) => {
            println!(
                "SKIPPED readyz_follows_a_failing_self_check: cannot mount a 4 MiB tmpfs ({why})"
            );
            return;
        }
    };
    let data = root.join("data");
    std::fs::create_dir(&data).expect("data folder");
    let data_dir = data.clone();
    let b = TestBroker::with(move |s| s.data_dir = Some(data_dir)).await;
    let readiness = Readiness::default();
    let settings = SelfCheckSettings {
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(1),
    };
    readiness
        .follow_self_check(b.broker.start_self_check(settings), settings.timeout)
        .await;
    let any = |origin: &str| Listen {
        addr: loopback(),
        origin: origin.into(),
    };
    let portal = Portal::start(
        &any("--http"),
        &any("--metrics"),
        b.broker.stats_handle(),
        readiness,
    )
    .await
    .expect("portal starts");
    let http = portal.http_addr();
    assert_eq!(
        readyz(http).await,
        (200, "[+]self-check ok\nreadyz check passed\n".to_owned())
    );

    let mut sub = Client::open(b.addr, V5).await;
    sub.connect(connect_persistent("keeper", V5, 3600)).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let filler = Filler::fill(root.join("filler"));
    let mut p = b.client("publisher", V5).await;
    for n in 0..20u16 {
        let m = publish("t", &format!("{n:<8192}"), QoS::AtLeastOnce, n + 1);
        p.send(&Packet::Publish(m)).await;
    }
    let body = readyz_until(http, "not ready while the probe fails", |s, b| {
        s == 503 && b.contains("[-]self-check failed: no delivery within ")
    })
    .await;
    println!("{body}");
    drop(filler);
    readyz_until(http, "ready again once the probe passes", |s, b| {
        s == 200 && b.contains("[+]self-check ok\n")
    })
    .await;
}
