//! `$SYS/broker/...` statistics, published as retained messages every period, in the layout
//! Mosquitto users know.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgeplane_codec::{Properties, QoS};

use crate::message::Message;
use crate::router::Router;
use crate::stats::Stats;

pub(crate) async fn run(router: Arc<Router>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        publish_all(&router).await;
    }
}

async fn publish_all(router: &Router) {
    let s = &router.stats;
    let values: [(&str, String); 16] = [
        (
            "version",
            format!("edgeplane {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "uptime",
            format!("{} seconds", s.started.elapsed().as_secs()),
        ),
        (
            "clients/connected",
            Stats::get(&s.clients_connected).to_string(),
        ),
        ("clients/total", Stats::get(&s.clients_total).to_string()),
        (
            "clients/maximum",
            Stats::get(&s.clients_maximum).to_string(),
        ),
        (
            "messages/received",
            Stats::get(&s.messages_received).to_string(),
        ),
        ("messages/sent", Stats::get(&s.messages_sent).to_string()),
        ("bytes/received", Stats::get(&s.bytes_received).to_string()),
        ("bytes/sent", Stats::get(&s.bytes_sent).to_string()),
        (
            "subscriptions/count",
            Stats::get(&s.subscriptions).to_string(),
        ),
        (
            "retained messages/count",
            Stats::get(&s.retained).to_string(),
        ),
        ("messages/dropped", dropped(s).to_string()),
        ("partitions", router.partitions().to_string()),
        (
            "store/spilled/bytes",
            Stats::get(&s.spilled_bytes).to_string(),
        ),
        (
            "store/spilled/messages",
            Stats::get(&s.spilled_messages).to_string(),
        ),
        (
            "store/spilled/failures",
            Stats::get(&s.spill_failures).to_string(),
        ),
    ];
    for (name, value) in values {
        let msg = Message {
            topic: format!("$SYS/broker/{name}"),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
            expires_at: None,
            origin: None,
            publisher: None,
            store_id: std::sync::OnceLock::new(),
        };
        router.publish(Arc::new(msg), 0, None).await;
    }
}

fn dropped(s: &Stats) -> u64 {
    Stats::get(&s.dropped_queue_full)
        + Stats::get(&s.dropped_expired)
        + Stats::get(&s.dropped_oversize)
        + Stats::get(&s.dropped_qos0_offline)
        + Stats::get(&s.dropped_memory)
}
