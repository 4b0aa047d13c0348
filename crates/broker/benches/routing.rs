//! Microbenchmarks of routing: messages published by an in-process client through the
//! partitioned router to subscribers, with no sockets, so what is measured is matching
//! (the topic trie), queueing and the hand-off to the connection.
//!
//! `cargo bench -p edgeplane-broker --bench routing` (criterion; results in `target/criterion/`).
//!
//! Each iteration publishes a window of 64 messages and receives all their deliveries.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edgeplane_broker::{Broker, LocalClient, LocalOptions, Settings};
use edgeplane_codec::{Properties, Publish, QoS, SubOptions};

const WINDOW: u64 = 64;

fn publish(topic: &str, qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: 0,
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(&[b'x'; 64]),
    }
}

struct Setup {
    _broker: Broker,
    publisher: LocalClient,
    subscribers: Vec<LocalClient>,
}

/// A broker with `subscribers` clients on `factory/+/temperature`, the first of which also
/// holds `other_filters` distinct filters that never match (the trie's size).
async fn setup(subscribers: usize, other_filters: usize, qos: QoS) -> Setup {
    let settings = Settings {
        sys_interval: None,
        ..Settings::default()
    };
    let broker = match Broker::start(settings, Vec::new()).await {
        Ok(b) => b,
        Err(e) => panic!("broker: {e}"),
    };
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let mut s = attach(&broker, &format!("sub-{i}")).await;
        subscribe(&mut s, "factory/+/temperature", qos).await;
        if i == 0 {
            for f in 0..other_filters {
                let filter = match f % 3 {
                    0 => format!("site/{f}/line/+/state"),
                    1 => format!("site/{f}/#"),
                    _ => format!("factory/line{f}/pressure"),
                };
                subscribe(&mut s, &filter, qos).await;
            }
        }
        subs.push(s);
    }
    Setup {
        publisher: attach(&broker, "publisher").await,
        _broker: broker,
        subscribers: subs,
    }
}

async fn attach(broker: &Broker, id: &str) -> LocalClient {
    match broker.local_client(LocalOptions::new(id)).await {
        Ok(c) => c,
        Err(e) => panic!("attach {id}: {e}"),
    }
}

async fn subscribe(c: &mut LocalClient, filter: &str, qos: QoS) {
    if let Err(e) = c.subscribe(filter, SubOptions::new(qos)).await {
        panic!("subscribe {filter}: {e}");
    }
}

/// Publish `n` messages in windows, receiving (and acknowledging) every delivery.
async fn run(s: &mut Setup, n: u64, qos: QoS) -> Duration {
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let window = WINDOW.min(n - sent);
        for i in 0..window {
            let topic = format!("factory/line{}/temperature", (sent + i) % 16);
            if let Err(e) = s.publisher.publish(publish(&topic, qos)).await {
                panic!("publish: {e}");
            }
        }
        for sub in &mut s.subscribers {
            for _ in 0..window {
                match sub.recv().await {
                    Some(r) => sub.ack(&r).await,
                    None => panic!("subscriber closed"),
                }
            }
        }
        sent += window;
    }
    start.elapsed()
}

fn bench_routing(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let mut g = c.benchmark_group("route");
    let cases = [
        ("qos0_1_subscriber", 1, 0, QoS::AtMostOnce),
        ("qos1_1_subscriber", 1, 0, QoS::AtLeastOnce),
        ("qos0_10_subscribers", 10, 0, QoS::AtMostOnce),
        (
            "qos0_1_subscriber_10k_other_filters",
            1,
            10_000,
            QoS::AtMostOnce,
        ),
    ];
    for (name, subscribers, filters, qos) in cases {
        let mut s = rt.block_on(setup(subscribers, filters, qos));
        g.throughput(Throughput::Elements(subscribers as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|n| rt.block_on(run(&mut s, n, qos)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
