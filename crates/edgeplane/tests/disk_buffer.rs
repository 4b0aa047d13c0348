//! `diskBackedMessageBuffer` through the binary: with `maxQueuedBytes` at 128 KiB, a stalled
//! subscriber's queue would get publishers 0x97 Quota exceeded after about 112 messages of
//! 1,000 bytes; with a disk buffer (`maxSize: 64M`, `memoryThreshold: 16K`) all 800 are
//! accepted (each spilled one holds 96 bytes of memory), and they all arrive in order once
//! the subscriber reads. Without a data folder the buffer lives in a private temporary
//! folder, which holds the spilled messages and is removed when the broker stops. `/metrics`
//! reports the spilled bytes and messages while they wait.

use edgeplane_tests::codec::{Ack, Packet, QoS, ReasonCode};
use edgeplane_tests::*;

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

const CONFIG: &str = r#"
apiVersion: edgeplane.io/v1
kind: Broker
metadata: {name: default}
spec:
  advanced:
    clients:
      maxQueuedBytes: 131072
  diskBackedMessageBuffer:
    maxSize: 64M
    memoryThreshold: 16K
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: plain}
spec:
  ports:
  - port: 0
    bindAddress: 127.0.0.1
"#;

const TOTAL: u16 = 800;

#[tokio::test]
async fn the_configured_buffer_takes_what_memory_alone_would_refuse() {
    let dir = TempDir::new("disk-buffer-binary");
    std::fs::write(dir.join("config.yaml"), CONFIG).expect("write config");
    let (mut child, addrs, http) = start_edgeplane_http(BIN, &dir, 1).await;
    let pid = child.id().expect("running");
    let spill = std::env::temp_dir().join(format!("edgeplane-spill-{pid}-0"));
    let mut sub = Client::open(addrs[0], V5).await;
    let mut c = connect("stalled", V5);
    c.properties.receive_maximum = Some(10);
    assert_eq!(sub.connect(c).await.code, 0);
    sub.sub("t", QoS::AtLeastOnce).await;

    let mut publisher = Client::open(addrs[0], V5).await;
    assert_eq!(publisher.connect(connect("pub", V5)).await.code, 0);
    for n in 0..TOTAL {
        let msg = publish("t", &format!("{n:<1000}"), QoS::AtLeastOnce, n + 1);
        publisher.send(&Packet::Publish(msg)).await;
        match publisher.recv().await {
            Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::SUCCESS, "message {n}"),
            other => panic!("expected PUBACK {n}, got {other:?}"),
        }
    }

    // A PUBACK leaves once the message is routed; its partition may still be writing the
    // last few records, so compare the gauge with the files once both have settled.
    let spill_files = || -> u64 {
        std::fs::read_dir(&spill)
            .expect("the private spill folder")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let deadline = tokio::time::Instant::now() + WAIT * 4;
    let (spilled, metrics) = loop {
        let spilled = spill_files();
        let (status, metrics) = http_get(http, "/metrics").await;
        assert_eq!(status, 200);
        let gauge = metric_sample(&metrics, "edgeplane_spilled_bytes");
        if gauge == spilled as f64 && spill_files() == spilled {
            break (spilled, metrics);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauge {gauge} for {spilled} bytes of spill files"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(spilled > 500 * 1000, "{spilled} bytes spilled");
    let held = metric_sample(&metrics, "edgeplane_spilled_messages");
    assert!(
        held > 500.0 && held < f64::from(TOTAL),
        "{held} messages spilled"
    );
    assert_eq!(
        metric_sample(&metrics, "edgeplane_spill_failures_total"),
        0.0
    );

    for n in 0..TOTAL {
        match sub.recv_within(WAIT * 2).await {
            Some(Packet::Publish(p)) => {
                let got: u16 = String::from_utf8_lossy(&p.payload)
                    .trim_end()
                    .parse()
                    .expect("numbered payload");
                assert_eq!(got, n, "in order");
                sub.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                    .await;
            }
            other => panic!("expected PUBLISH {n}, got {other:?}"),
        }
    }
    sub.expect_nothing().await;
    let (_, metrics) = http_get(http, "/metrics").await;
    assert_eq!(metric_sample(&metrics, "edgeplane_spilled_messages"), 0.0);

    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(stopped.success());
    let status = tokio::time::timeout(STARTUP, child.wait())
        .await
        .expect("the broker stops within 30 s")
        .expect("exit status");
    assert!(status.success(), "{status:?}");
    assert!(!spill.exists(), "the private spill folder is removed");
}
