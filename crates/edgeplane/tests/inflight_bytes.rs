//! `advanced.clients.maxInflightBytes` through the binary: a subscriber that does not
//! acknowledge holds at most that many bytes of QoS 1 deliveries (one message always fits);
//! each acknowledgement lets the next one through, and nothing is lost.

use std::time::Duration;

use edgeplane_tests::codec::{Ack, Packet, QoS, ReasonCode};
use edgeplane_tests::*;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

/// 4 KiB: three 1,000-byte messages (each counted with its topic and 160 bytes of overhead,
/// about 1,170 bytes) fit, a fourth does not.
const CONFIG: &str = r#"
apiVersion: edgeplane.io/v1
kind: Broker
metadata: {name: default}
spec:
  advanced:
    clients:
      maxInflightBytes: 4096
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: plain}
spec:
  ports:
  - port: 0
    bindAddress: 127.0.0.1
"#;

async fn next_publish(c: &mut Client, limit: Duration) -> Option<u16> {
    match c.recv_within(limit).await {
        Some(Packet::Publish(p)) => Some(p.packet_id),
        None => None,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test]
async fn unacknowledged_bytes_per_client_are_bounded() {
    let dir = TempDir::new("inflight-bytes");
    std::fs::write(dir.join("config.yaml"), CONFIG).expect("write config");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let mut sub = Client::open(addrs[0], V5).await;
    assert_eq!(sub.connect(connect("slow", V5)).await.code, 0);
    sub.sub("big/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::open(addrs[0], V5).await;
    assert_eq!(publisher.connect(connect("pub", V5)).await.code, 0);
    let payload = "x".repeat(1000);
    for i in 1..=6u16 {
        publisher
            .publish(publish("big/t", &payload, QoS::AtLeastOnce, i))
            .await;
    }
    // Receive Maximum would allow 65,535; the byte bound stops at three.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            next_publish(&mut sub, WAIT)
                .await
                .expect("a delivery within the bound"),
        );
    }
    assert_eq!(
        next_publish(&mut sub, Duration::from_millis(500)).await,
        None,
        "a fourth unacknowledged message would pass maxInflightBytes"
    );
    // Each acknowledgement makes room for one more; all six arrive.
    let mut received = held.len();
    while let Some(id) = held.pop() {
        sub.send(&Packet::PubAck(Ack::new(id, ReasonCode::SUCCESS)))
            .await;
        if received < 6 {
            held.push(
                next_publish(&mut sub, WAIT)
                    .await
                    .expect("next delivery after an ack"),
            );
            received += 1;
            assert_eq!(
                next_publish(&mut sub, Duration::from_millis(200)).await,
                None,
                "one acknowledgement, one more delivery"
            );
        }
    }
    assert_eq!(received, 6);
}
