//! Abuse limits of a listener port, through the binary and its configuration: at most
//! `maxConnections` at once (a slot frees when a client leaves), and at most
//! `maxConnectsPerSecondPerAddress` new connections per second from one address.

use std::time::Duration;

use edgeplane_tests::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

const CONFIG: &str = r#"
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: limited}
spec:
  ports:
  - port: 0
    bindAddress: 127.0.0.1
    maxConnections: 2
  - port: 0
    bindAddress: 127.0.0.1
    maxConnectsPerSecondPerAddress: 3
"#;

/// True if the broker closed a fresh TCP connection right away, without reading CONNECT.
async fn refused(addr: std::net::SocketAddr) -> bool {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn connection_limits() {
    let dir = TempDir::new("limits");
    std::fs::write(dir.join("listener.yaml"), CONFIG).expect("write");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 2).await;

    let first = connected(addrs[0], "one").await;
    let _second = connected(addrs[0], "two").await;
    assert!(
        refused(addrs[0]).await,
        "a third connection exceeds maxConnections: 2"
    );
    first.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _third = connected(addrs[0], "three").await;

    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(connected(addrs[1], &format!("fast-{i}")).await);
    }
    assert!(
        refused(addrs[1]).await,
        "a fourth connect within the second is refused"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    clients.push(connected(addrs[1], "after-a-second").await);
}

async fn connected(addr: std::net::SocketAddr, id: &str) -> Client {
    let mut c = Client::open(addr, V5).await;
    assert_eq!(c.connect(connect(id, V5)).await.code, 0, "{id}");
    c
}
