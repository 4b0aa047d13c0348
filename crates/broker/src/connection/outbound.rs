//! Encoding what the router hands a connection: control packets as they are, deliveries as
//! PUBLISH with this connection's topic aliases, remaining message expiry and subscription
//! identifiers, never above the client's Maximum Packet Size.

use std::sync::Arc;
use std::time::Instant;

use edgeplane_codec::{Packet, Publish, QoS};

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
    let mut properties = msg.properties.clone();
    properties.message_expiry_interval = msg.remaining_expiry(Instant::now());
    properties.subscription_identifiers = d.sub_ids;
    let mut publish = Publish {
        dup: d.dup,
        qos: d.qos,
        retain: d.retain,
        topic: msg.topic.clone(),
        packet_id: d.packet_id,
        properties,
        payload: msg.payload.clone(),
    };
    let new_alias = if conn.v5() && conn.client_alias_max > 0 {
        apply_alias(conn, &mut publish)
    } else {
        None
    };
    let size = edgeplane_codec::publish_len(&publish, conn.version);
    if size > conn.client_max_packet {
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
    if let Some(alias) = new_alias {
        conn.outbound_aliases.insert(publish.topic.clone(), alias);
    }
    Stats::add(&ctx.stats.messages_sent, 1);
    ctx.stats.sent_by_qos.add(publish.qos);
    Stats::add(&ctx.stats.bytes_sent, size as u64);
    conn.write(&Packet::Publish(publish));
}

/// Replace the topic by an alias the client already knows, or teach it a new one while
/// aliases are left (§3.3.2.3.4). A new alias is returned, to be remembered only once the
/// packet is actually sent.
fn apply_alias(conn: &Conn, p: &mut Publish) -> Option<u16> {
    if let Some(&alias) = conn.outbound_aliases.get(&p.topic) {
        p.properties.topic_alias = Some(alias);
        p.topic.clear();
        None
    } else if conn.outbound_aliases.len() < usize::from(conn.client_alias_max) {
        let alias = conn.outbound_aliases.len() as u16 + 1;
        p.properties.topic_alias = Some(alias);
        Some(alias)
    } else {
        None
    }
}
