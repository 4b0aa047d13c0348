//! Encoding what the router hands a connection: control packets as they are, deliveries as
//! PUBLISH with this connection's topic aliases, remaining message expiry and subscription
//! identifiers, never above the client's Maximum Packet Size.

use std::sync::Arc;
use std::time::Instant;

use edgeplane_codec::{PublishView, QoS};

use super::{Conn, Context};
use crate::router::mailbox::MailboxRx;
use crate::router::{AckKind, Cmd, Delivery, Outgoing};
use crate::stats::Stats;

/// Most items taken from the channel per wake-up, so reading is not starved.
const OUT_BATCH: usize = 256;

/// Encode `first` and whatever else is ready in the channel into the write buffer.
pub(super) async fn write_batch(
    first: Outgoing,
    rx: &mut MailboxRx<Outgoing>,
    conn: &mut Conn,
    ctx: &Context,
) {
    write_outgoing(conn, first, ctx).await;
    for _ in 1..OUT_BATCH {
        match rx.try_recv() {
            Some(item) => write_outgoing(conn, item, ctx).await,
            None => break,
        }
    }
}

pub(super) async fn write_outgoing(conn: &mut Conn, item: Outgoing, ctx: &Context) {
    match item {
        Outgoing::Packet(p) => conn.write(&p),
        Outgoing::Publish(d) => deliver(conn, d, ctx).await,
    }
}

async fn deliver(conn: &mut Conn, d: Delivery, ctx: &Context) {
    let msg = &d.msg;
    // Written from the shared message as it is: nothing of it is copied per delivery.
    let (topic_alias, new_alias) = if conn.v5() && conn.client_alias_max > 0 {
        alias_for(conn, &msg.topic)
    } else {
        (None, None)
    };
    let known = topic_alias.is_some() && new_alias.is_none();
    let view = PublishView {
        dup: d.dup,
        qos: d.qos,
        retain: d.retain,
        topic: if known { "" } else { &msg.topic },
        packet_id: d.packet_id,
        properties: &msg.properties,
        // The clock is read only for messages that expire.
        message_expiry_interval: msg
            .expires_at
            .and_then(|_| msg.remaining_expiry(Instant::now())),
        subscription_identifiers: &d.sub_ids,
        topic_alias,
        payload: &msg.payload,
    };
    let size = edgeplane_codec::publish_view_len(&view, conn.version);
    if size > conn.client_max_packet as usize {
        // Too large for the client: discard as if sent [MQTT-3.1.2-25].
        Stats::add(&ctx.stats.dropped_oversize, 1);
        if d.qos != QoS::AtMostOnce {
            let cmd = Cmd::Ack {
                client: Arc::clone(&conn.client_id),
                conn: conn.conn_id,
                packet_id: d.packet_id,
                kind: AckKind::Qos1Acked,
            };
            ctx.router.send(conn.partition, cmd).await;
        }
        return;
    }
    edgeplane_codec::encode_publish_view(&view, conn.version, &mut conn.wbuf);
    if let Some(alias) = new_alias {
        conn.rare()
            .outbound_aliases
            .insert(msg.topic.clone(), alias);
    }
    Stats::add(&ctx.stats.messages_sent, 1);
    ctx.stats.sent_by_qos.add(d.qos);
    Stats::add(&ctx.stats.bytes_sent, size as u64);
}

/// The topic alias for a delivery to `topic` (§3.3.2.3.4): one the client already knows
/// (the topic is then left out), or a new one while aliases are left (sent with the topic,
/// and returned second, to be remembered only once the packet is actually written).
fn alias_for(conn: &Conn, topic: &str) -> (Option<u16>, Option<u16>) {
    let known = conn.rare.as_ref().map(|r| &r.outbound_aliases);
    let used = known.map_or(0, |k| k.len());
    if let Some(&alias) = known.and_then(|k| k.get(topic)) {
        (Some(alias), None)
    } else if used < usize::from(conn.client_alias_max) {
        let alias = used as u16 + 1;
        (Some(alias), Some(alias))
    } else {
        (None, None)
    }
}
