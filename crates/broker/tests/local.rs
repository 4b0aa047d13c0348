//! In-process clients against a real broker: they exchange messages with network clients,
//! their sessions keep unacknowledged QoS 1 messages across a resume, and the self-check
//! probe built on them passes without being seen by `#` subscribers.

use std::time::Duration;

use edgeplane_broker::selfcheck::{ProbeStatus, SelfCheckSettings};
use edgeplane_broker::{Broker, ListenerSpec, LocalOptions, Protocol, Settings};
use edgeplane_codec::{Properties, Publish, QoS, SubOptions};

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

fn publish(topic: &str, payload: &'static str, qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: 0,
        properties: Properties::default(),
        payload: payload.into(),
    }
}

#[tokio::test]
async fn local_clients_exchange_messages() {
    let b = broker().await;
    let mut sub = b
        .local_client(LocalOptions::new("svc-sub"))
        .await
        .expect("attach");
    assert_eq!(
        sub.subscribe("svc/+", SubOptions::new(QoS::AtLeastOnce))
            .await
            .expect("sub"),
        QoS::AtLeastOnce
    );
    let publisher = b
        .local_client(LocalOptions::new("svc-pub"))
        .await
        .expect("attach");
    publisher
        .publish(publish("svc/a", "one", QoS::ExactlyOnce))
        .await
        .expect("publish");
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv())
        .await
        .expect("in time")
        .expect("delivery");
    assert_eq!(&r.message.payload[..], b"one");
    assert_eq!(r.qos, QoS::AtLeastOnce, "downgraded to the granted QoS");
    sub.ack(&r).await;
    assert!(sub.unsubscribe("svc/+").await.expect("unsubscribe"));
    assert!(!sub.unsubscribe("svc/+").await.expect("unsubscribe"));
}

/// A QoS 1 delivery that was not acknowledged is delivered again (DUP) when the session is
/// resumed, so a service that crashed mid-work loses nothing.
#[tokio::test]
async fn unacknowledged_delivery_survives_resume() {
    let b = broker().await;
    let opts = LocalOptions {
        session_expiry: 60,
        ..LocalOptions::new("worker")
    };
    let mut w = b.local_client(opts.clone()).await.expect("attach");
    w.subscribe("jobs", SubOptions::new(QoS::AtLeastOnce))
        .await
        .expect("sub");
    let p = b
        .local_client(LocalOptions::new("producer"))
        .await
        .expect("attach");
    p.publish(publish("jobs", "job-1", QoS::AtLeastOnce))
        .await
        .expect("publish");
    let first = w.recv().await.expect("delivery");
    assert_eq!(&first.message.payload[..], b"job-1");
    w.disconnect().await; // without ack
    let mut w = b
        .local_client(LocalOptions {
            clean_start: false,
            ..opts
        })
        .await
        .expect("resume");
    let again = tokio::time::timeout(std::time::Duration::from_secs(5), w.recv())
        .await
        .expect("in time")
        .expect("redelivery");
    assert_eq!(&again.message.payload[..], b"job-1");
    w.ack(&again).await;
}

/// A second client with the same id takes the session over; the first sees the end.
#[tokio::test]
async fn takeover_ends_the_first_client() {
    let b = broker().await;
    let mut first = b
        .local_client(LocalOptions::new("same"))
        .await
        .expect("attach");
    let _second = b
        .local_client(LocalOptions::new("same"))
        .await
        .expect("attach");
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), first.recv())
        .await
        .expect("in time");
    assert!(end.is_none());
}

/// The self-check probe (an in-process session) passes, measures its round trip, and stays
/// invisible to `#` subscribers.
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
