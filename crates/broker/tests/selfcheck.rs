//! The self-check probe against a real broker: it passes, measures its round trip, and stays
//! invisible to `#` subscribers.

use std::time::Duration;

use edgeplane_broker::selfcheck::{ProbeStatus, SelfCheckSettings};
use edgeplane_broker::{Broker, ListenerSpec, LocalOptions, Protocol, Settings};
use edgeplane_codec::{QoS, SubOptions};

async fn broker() -> Broker {
    let listener = ListenerSpec {
        name: "tcp".into(),
        bind: "127.0.0.1:0".parse().expect("addr"),
        protocol: Protocol::Mqtt,
        tls: None,
        auth: Default::default(),
        limits: Default::default(),
    };
    Broker::start(
        Settings {
            sys_interval: None,
            ..Settings::default()
        },
        vec![listener],
    )
    .await
    .expect("start")
}

#[tokio::test]
async fn probe_passes_and_is_invisible_to_wildcard_subscribers() {
    let b = broker().await;
    let mut everything = b
        .local_client(LocalOptions::new("watch-all"))
        .await
        .expect("attach");
    everything
        .subscribe("#", SubOptions::new(QoS::AtLeastOnce))
        .await
        .expect("sub");
    let settings = SelfCheckSettings {
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
    };
    let mut status = b.start_self_check(settings);
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), status.changed())
            .await
            .expect("a probe completes")
            .expect("probe runs");
        match &*status.borrow_and_update() {
            ProbeStatus::Passed { latency } => assert!(*latency < Duration::from_secs(5)),
            other => panic!("probe should pass: {other:?}"),
        }
    }
    let stats = b.stats();
    assert!(
        stats
            .selfcheck_runs
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    assert_eq!(
        stats
            .selfcheck_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(
        stats
            .selfcheck_latency_us
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let leak = tokio::time::timeout(Duration::from_millis(300), everything.recv()).await;
    assert!(
        leak.is_err(),
        "a `#` subscriber must not see the probe: {leak:?}"
    );
}
