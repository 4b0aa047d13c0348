//! Packets from the client after CONNECT: each is checked against the rules that belong to
//! the connection (aliases, receive maximum, QoS 2 receive state, DISCONNECT expiry rules)
//! and turned into router commands and immediate acknowledgements.

use std::sync::Arc;

use bytes::BytesMut;
use edgeplane_codec::{AckType, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

use super::{Conn, Context, OwedAck, Stop};
use crate::message::Message;
use crate::router::{AckKind, Cmd, Ending, Ticket};
use crate::stats::{Refusal, Stats};
use crate::store::Record;

/// Decode and handle every whole packet in `rbuf` (after those held back while the
/// connection was paused, once it no longer is). `Some(stop)` ends the connection.
pub(super) async fn process(rbuf: &mut BytesMut, conn: &mut Conn, ctx: &Context) -> Option<Stop> {
    let max = ctx.settings.clients.max_packet_size as usize;
    conn.over_memory = conn.v5() && ctx.router.over_memory();
    conn.over_disk = conn.v5() && ctx.router.store.as_ref().is_some_and(|s| s.over_size());
    while !conn.paused {
        let Some(packet) = conn.rare.as_mut().and_then(|r| r.deferred.pop_front()) else {
            conn.deferred_bytes = 0;
            break;
        };
        if matches!(packet, Packet::Publish(_)) && super::main_loop::pause_if_over(conn, ctx) {
            // Over the bound again: back to waiting, in order.
            conn.rare().deferred.push_front(packet);
            break;
        }
        if let Some(stop) = handle(packet, conn, ctx).await {
            return Some(stop);
        }
    }
    loop {
        if conn.paused && conn.deferred_bytes >= super::PAUSED_BUFFER {
            return None;
        }
        let before = rbuf.len();
        match edgeplane_codec::decode(rbuf, conn.version, max) {
            Ok(Some(packet)) => {
                // Checked per PUBLISH, not only per read: one read can carry many.
                let publish = matches!(packet, Packet::Publish(_));
                if (publish && super::main_loop::pause_if_over(conn, ctx))
                    || (conn.paused && !passes_pause(&packet))
                {
                    conn.deferred_bytes += before - rbuf.len();
                    conn.rare().deferred.push_back(packet);
                    continue;
                }
                if let Some(stop) = handle(packet, conn, ctx).await {
                    return Some(stop);
                }
            }
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(client_id = %conn.client_id, error = %e, "protocol violation");
                conn.disconnect(e.reason_code());
                return Some(Stop::Ended(Ending::Abnormal));
            }
        }
    }
}

/// Packets a paused connection still handles ahead of held-back ones: they answer the
/// broker's own packets (so they free memory) or keep the connection alive, and reordering
/// them with the client's PUBLISH changes nothing the client can observe.
fn passes_pause(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubComp(_)
            | Packet::PubRel(_)
            | Packet::PingReq
    )
}

fn violation(conn: &mut Conn, reason: ReasonCode, why: &str) -> Option<Stop> {
    tracing::debug!(client_id = %conn.client_id, %reason, why, "protocol violation");
    conn.disconnect(reason);
    Some(Stop::Ended(Ending::Abnormal))
}

async fn handle(packet: Packet, conn: &mut Conn, ctx: &Context) -> Option<Stop> {
    let client = || Arc::clone(&conn.client_id);
    match packet {
        Packet::Publish(p) => return publish(p, conn, ctx).await,
        Packet::PubAck(a) => ack(conn, ctx, a.packet_id, AckKind::Qos1Acked).await,
        Packet::PubRec(a) => {
            // The session answers with PUBREL once it has recorded the receipt.
            let failed = a.reason.is_error();
            ack(conn, ctx, a.packet_id, AckKind::Qos2Received { failed }).await;
        }
        Packet::PubComp(a) => ack(conn, ctx, a.packet_id, AckKind::Qos2Completed).await,
        Packet::PubRel(a) => {
            if !conn
                .rare
                .as_mut()
                .is_some_and(|r| r.incoming_qos2.remove(&a.packet_id))
            {
                conn.write_ack(OwedAck {
                    kind: AckType::PubComp,
                    packet_id: a.packet_id,
                    reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                });
                return None;
            }
            // A persisted session answers once the release is durable, so a restart never
            // forgets it and drops the next message that reuses the packet id.
            let lsn = match (&ctx.router.store, conn.persist) {
                (Some(store), true) => store.append(Record::Incoming {
                    client: client(),
                    packet_id: a.packet_id,
                    released: true,
                }),
                _ => 0,
            };
            let cmd = Cmd::IncomingQos2 {
                client: client(),
                conn: conn.conn_id,
                packet_id: a.packet_id,
                released: true,
                lsn,
            };
            ctx.router.send(conn.partition, cmd).await;
            if lsn == 0 {
                conn.write_ack(OwedAck {
                    kind: AckType::PubComp,
                    packet_id: a.packet_id,
                    reason: ReasonCode::SUCCESS,
                });
            }
        }
        Packet::Subscribe(s) => {
            let denied = denied_filters(&s, conn);
            let cmd = Cmd::Subscribe {
                client: client(),
                conn: conn.conn_id,
                packet: Box::new(s),
                denied,
            };
            ctx.router.send(conn.partition, cmd).await;
        }
        Packet::Unsubscribe(u) => {
            ctx.router
                .send(
                    conn.partition,
                    Cmd::Unsubscribe {
                        client: client(),
                        conn: conn.conn_id,
                        packet: Box::new(u),
                    },
                )
                .await;
        }
        Packet::PingReq => conn.write(&Packet::PingResp),
        Packet::Disconnect(d) => return disconnect(d, conn, ctx),
        Packet::Connect(_) => {
            return violation(
                conn,
                ReasonCode::PROTOCOL_ERROR,
                "second CONNECT [MQTT-3.1.0-2]",
            )
        }
        Packet::Auth(a) => return Box::pin(reauthenticate(a, conn)).await,
        other => {
            let why = format!("{} is never sent by a client", other.name());
            return violation(conn, ReasonCode::PROTOCOL_ERROR, &why);
        }
    }
    None
}

/// Which filters of a SUBSCRIBE authorization refuses (empty when no policy applies). A
/// shared subscription is authorized on its filter proper.
fn denied_filters(s: &edgeplane_codec::Subscribe, conn: &Conn) -> Vec<bool> {
    let Some(authz) = conn.auth.authorization() else {
        return Vec::new();
    };
    s.filters
        .iter()
        .map(|(raw, _)| match edgeplane_codec::topic::parse_filter(raw) {
            Ok(spec) => !authz.allows_subscribe(&conn.principal, spec.filter),
            Err(_) => false,
        })
        .collect()
}

/// Re-authentication (§4.12.1): AUTH with reason 0x19 and CONNECT's Authentication Method
/// carrying fresh credentials. Success answers AUTH 0x00 and moves the expiry (and takes
/// the webhook's new attributes); failure disconnects with 0x87 (DISCONNECT has no code for
/// a bad method).
async fn reauthenticate(a: edgeplane_codec::Auth, conn: &mut Conn) -> Option<Stop> {
    let Some(method) = conn.rare.as_ref().and_then(|r| r.auth_method.clone()) else {
        return violation(
            conn,
            ReasonCode::PROTOCOL_ERROR,
            "AUTH without an authentication method on CONNECT [MQTT-4.12.0-6]",
        );
    };
    if a.reason != ReasonCode::RE_AUTHENTICATE {
        return violation(
            conn,
            ReasonCode::PROTOCOL_ERROR,
            "AUTH continuing an exchange the server did not start [MQTT-4.12.0-2]",
        );
    }
    if a.properties.authentication_method.as_deref() != Some(method.as_str()) {
        return violation(
            conn,
            ReasonCode::PROTOCOL_ERROR,
            "re-authentication with another method [MQTT-4.12.1-1]",
        );
    }
    let data = a.properties.authentication_data.unwrap_or_default();
    let result = match conn.auth.authentication.clone() {
        Some(authn) => authn.reauthenticate(&method, &data).await,
        None => Err(ReasonCode::NOT_AUTHORIZED.0),
    };
    match result {
        Ok(renewal) => {
            conn.expiry = renewal.expiry;
            conn.expiry_moved = true;
            if let Some(attributes) = renewal.attributes {
                // Cached decisions were for the old principal.
                Arc::make_mut(&mut conn.principal).attributes = attributes;
                conn.authz_cache = None;
            }
            let mut ok = edgeplane_codec::Auth {
                reason: ReasonCode::SUCCESS,
                properties: Default::default(),
            };
            ok.properties.authentication_method = Some(method);
            conn.write(&Packet::Auth(ok));
            tracing::debug!(client_id = %conn.client_id, "re-authenticated");
            None
        }
        Err(code) => {
            tracing::info!(client_id = %conn.client_id, code = format!("0x{code:02X}"), "re-authentication failed: disconnecting");
            conn.disconnect(ReasonCode(code));
            Some(Stop::Ended(Ending::Abnormal))
        }
    }
}

async fn ack(conn: &Conn, ctx: &Context, packet_id: u16, kind: AckKind) {
    let cmd = Cmd::Ack {
        client: Arc::clone(&conn.client_id),
        conn: conn.conn_id,
        packet_id,
        kind,
    };
    ctx.router.send(conn.partition, cmd).await;
}

fn disconnect(d: Disconnect, conn: &mut Conn, ctx: &Context) -> Option<Stop> {
    let expiry = d.properties.session_expiry_interval;
    if conn.session_expiry == 0 && expiry.is_some_and(|e| e > 0) {
        return violation(
            conn,
            ReasonCode::PROTOCOL_ERROR,
            "session expiry set on DISCONNECT after 0 on CONNECT [§3.14.2.2.2]",
        );
    }
    Some(Stop::Ended(Ending::Graceful {
        // Only Normal disconnection discards the will [MQTT-3.14.4-3] [MQTT-3.1.2-8].
        publish_will: d.reason != ReasonCode::SUCCESS,
        // The server's cap applies as it did on CONNECT.
        session_expiry: expiry.map(|e| e.min(ctx.settings.clients.max_session_expiry_secs)),
    }))
}

async fn publish(mut p: Publish, conn: &mut Conn, ctx: &Context) -> Option<Stop> {
    Stats::add(&ctx.stats.messages_received, 1);
    ctx.stats.received_by_qos.add(p.qos);
    if conn.version == ProtocolVersion::V5 {
        if !p.properties.subscription_identifiers.is_empty() {
            return violation(
                conn,
                ReasonCode::PROTOCOL_ERROR,
                "subscription identifier from a client [MQTT-3.3.4-6]",
            );
        }
        if let Some(alias) = p.properties.topic_alias {
            if alias > ctx.settings.topic_alias_maximum {
                return violation(
                    conn,
                    ReasonCode::TOPIC_ALIAS_INVALID,
                    "topic alias above our maximum [MQTT-3.3.2-9]",
                );
            }
            if p.topic.is_empty() {
                match conn
                    .rare
                    .as_ref()
                    .and_then(|r| r.inbound_aliases.get(&alias))
                {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        return violation(
                            conn,
                            ReasonCode::PROTOCOL_ERROR,
                            "unknown topic alias [MQTT-3.3.2-8]",
                        )
                    }
                }
            } else {
                conn.rare().inbound_aliases.insert(alias, p.topic.clone());
            }
        }
    }
    let denied = p.topic.starts_with("$SYS")
        || p.topic.starts_with("$share")
        || conn.auth.authorization().is_some_and(|a| {
            !conn
                .authz_cache
                .get_or_insert_with(Default::default)
                .allows_publish(&a, &conn.principal, &p.topic)
        });
    if conn.over_memory && p.qos == QoS::AtMostOnce && !denied {
        Stats::add(&ctx.stats.dropped_memory, 1);
        if let Some(more) = ctx.stats.why(Refusal::Qos0Memory) {
            tracing::warn!(cause = Refusal::Qos0Memory.as_str(), client_id = %conn.client_id, more_since_last_line = more, "QoS 0 publish dropped: queued bytes over maxQueuedBytes");
        }
        return None;
    }
    let refused = if denied {
        Some(ReasonCode::NOT_AUTHORIZED)
    } else if conn.over_memory || (conn.over_disk && p.qos != QoS::AtMostOnce) {
        Some(ReasonCode::QUOTA_EXCEEDED)
    } else if p.properties.payload_format_indicator == Some(1)
        && std::str::from_utf8(&p.payload).is_err()
    {
        Some(ReasonCode::PAYLOAD_FORMAT_INVALID)
    } else {
        None
    };
    let (qos, packet_id) = (p.qos, p.packet_id);
    if qos == QoS::ExactlyOnce {
        if conn
            .rare
            .as_ref()
            .is_some_and(|r| r.incoming_qos2.contains(&packet_id))
        {
            // A re-sent PUBLISH whose first copy was already routed [MQTT-4.3.3-10].
            let ack = OwedAck {
                kind: AckType::PubRec,
                packet_id,
                reason: ReasonCode::SUCCESS,
            };
            conn.ack(ack, None);
            return None;
        }
        if conn.incoming_qos2() >= usize::from(ctx.settings.receive_maximum) {
            return violation(
                conn,
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                "more QoS 2 in flight than Receive Maximum [MQTT-3.3.4-9]",
            );
        }
    }
    if refused == Some(ReasonCode::QUOTA_EXCEEDED) {
        // Counted past the re-sent QoS 2 check: a copy of one already accepted gets success.
        let (counter, cause) = if conn.over_memory {
            (&ctx.stats.rejected_memory, Refusal::QuotaMemory)
        } else {
            (&ctx.stats.rejected_disk, Refusal::QuotaDisk)
        };
        Stats::add(counter, 1);
        if let Some(more) = ctx.stats.why(cause) {
            tracing::warn!(cause = cause.as_str(), client_id = %conn.client_id, more_since_last_line = more, "publish refused with 0x97 Quota exceeded: {}", if conn.over_memory { "queued bytes over maxQueuedBytes" } else { "the durable store is over persistence.maxSize" });
        }
    } else if refused == Some(ReasonCode::NOT_AUTHORIZED) {
        if let Some(more) = ctx.stats.why(Refusal::PublishDenied) {
            tracing::info!(cause = Refusal::PublishDenied.as_str(), client_id = %conn.client_id, topic = %p.topic, more_since_last_line = more, "publish refused with 0x87: not authorized for the topic");
        }
    }
    let mut ticket = None;
    match refused {
        Some(reason) => {
            tracing::debug!(client_id = %conn.client_id, topic = %p.topic, %reason, "publish refused");
        }
        None => {
            if qos == QoS::ExactlyOnce {
                conn.rare().incoming_qos2.insert(packet_id);
                let cmd = Cmd::IncomingQos2 {
                    client: Arc::clone(&conn.client_id),
                    conn: conn.conn_id,
                    packet_id,
                    released: false,
                    lsn: 0,
                };
                ctx.router.send(conn.partition, cmd).await;
            }
            if ctx.router.store.is_some() && qos != QoS::AtMostOnce {
                // A persisted session's QoS 2 message is committed by its receive record,
                // written once every partition has routed it (see `Ticket`).
                let commit = (qos == QoS::ExactlyOnce && conn.persist).then_some(packet_id);
                let parts = ctx.router.partitions();
                // Made at the first ticket: most connections never wait for one.
                let notify = conn.ack_notify.get_or_insert_with(Default::default);
                ticket = Some(Ticket::new(parts, Arc::clone(notify), commit));
            }
            let max_expiry = ctx.settings.clients.max_message_expiry_secs;
            let mut msg = Message::from_publish(p, Some(Arc::clone(&conn.client_id)), max_expiry);
            if crate::message::carries_publisher(&msg.topic) {
                msg.publisher = Some(Arc::new(crate::message::Publisher::Client {
                    principal: crate::auth::Principal::clone(&conn.principal),
                    auth: Arc::clone(&conn.auth),
                    conn: Some(conn.conn_id),
                }));
            }
            ctx.router.publish(Arc::new(msg), 0, ticket.clone()).await;
        }
    }
    let reason = refused.unwrap_or(ReasonCode::SUCCESS);
    let kind = match qos {
        QoS::AtMostOnce => return None,
        QoS::AtLeastOnce => AckType::PubAck,
        QoS::ExactlyOnce => AckType::PubRec,
    };
    let ack = OwedAck {
        kind,
        packet_id,
        reason,
    };
    conn.ack(ack, ticket);
    None
}
