//! The broker seen from the portal: counters and their recent history, retained messages,
//! and the live topic explorer.
//!
//! ```text
//! GET /api/v1/broker                      counters now + one sample every 2 s for 5 minutes
//! GET /api/v1/broker/retained?filter=F    retained messages matching F (at most 500)
//! GET /api/v1/broker/clients?limit=N      connected clients by client id (at most 1,000)
//! GET /api/v1/topics/stream?filter=F      Server-Sent Events: one `message` event per message
//! ```
//!
//! The explorer attaches an in-process client (a clean QoS 0 session named
//! `$portal-explorer-N`) subscribed to the filter for as long as the browser keeps the
//! stream open: dropping the stream drops the client, which ends its session. So a slow
//! browser never holds the broker back: QoS 0 deliveries past the session's queue limit
//! are dropped by the broker, and past [`STREAM_RATE`] a second here (counted in the next
//! event's `skipped`). Payloads are sent as UTF-8 text (lossy), cut to [`PAYLOAD_SHOWN`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use edgeplane_broker::{LocalFactory, LocalOptions, Stats, CLIENTS_SHOWN};
use edgeplane_codec::{ProtocolVersion, QoS, SubOptions};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::activity::rfc3339_now;
use crate::api::{json_response, message};

/// Messages a topic stream forwards per second at most.
const STREAM_RATE: u32 = 100;
/// Bytes of a payload shown.
const PAYLOAD_SHOWN: usize = 4096;
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const SAMPLES_KEPT: usize = 150;
const RETAINED_SHOWN: usize = 500;

static EXPLORERS: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
pub(crate) struct Live {
    pub stats: Arc<Stats>,
    pub broker: Option<LocalFactory>,
    pub history: Arc<Mutex<VecDeque<Value>>>,
}

pub(crate) fn router(live: Live) -> Router {
    Router::new()
        .route("/api/v1/broker", get(broker))
        .route("/api/v1/broker/retained", get(retained))
        .route("/api/v1/broker/clients", get(clients))
        .route("/api/v1/topics/stream", get(stream))
        .with_state(live)
}

fn counters(stats: &Stats) -> Value {
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    // Connections accepted so far by protocol version; the clients connected now are
    // listed by `/api/v1/broker/clients`.
    let by_version: serde_json::Map<String, Value> = stats
        .connects
        .accepted
        .samples()
        .iter()
        .map(|(v, n)| ((*v).to_owned(), json!(n)))
        .collect();
    json!({
        "connectionsAcceptedByVersion": by_version,
        "clientsConnected": g(&stats.clients_connected),
        "clientsTotal": g(&stats.clients_total),
        "clientsMaximum": g(&stats.clients_maximum),
        "messagesReceived": g(&stats.messages_received),
        "messagesSent": g(&stats.messages_sent),
        "bytesReceived": g(&stats.bytes_received),
        "bytesSent": g(&stats.bytes_sent),
        "subscriptions": g(&stats.subscriptions),
        "retained": g(&stats.retained),
        "droppedQueueFull": g(&stats.dropped_queue_full),
        "queuedMessages": stats.queued_messages(),
        "uptimeSeconds": stats.started.elapsed().as_secs(),
    })
}

/// Sample the counters every [`SAMPLE_EVERY`] into `history` as rates per second.
pub(crate) fn spawn_sampler(live: &Live) -> tokio::task::JoinHandle<()> {
    let (stats, history) = (Arc::clone(&live.stats), Arc::clone(&live.history));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        let mut last: Option<(Instant, u64, u64)> = None;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let rx = stats.messages_received.load(Ordering::Relaxed);
            let tx = stats.messages_sent.load(Ordering::Relaxed);
            if let Some((then, prx, ptx)) = last {
                let secs = now.duration_since(then).as_secs_f64().max(0.001);
                let sample = json!({
                    "time": rfc3339_now(),
                    "receivedPerSecond": (rx.saturating_sub(prx)) as f64 / secs,
                    "sentPerSecond": (tx.saturating_sub(ptx)) as f64 / secs,
                    "clientsConnected": stats.clients_connected.load(Ordering::Relaxed),
                });
                let mut h = history.lock();
                h.push_back(sample);
                if h.len() > SAMPLES_KEPT {
                    h.pop_front();
                }
            }
            last = Some((now, rx, tx));
        }
    })
}

async fn broker(State(live): State<Live>) -> Response {
    let history: Vec<Value> = live.history.lock().iter().cloned().collect();
    json_response(
        StatusCode::OK,
        &json!({ "counters": counters(&live.stats), "history": history }),
    )
}

/// The `filter` query parameter, percent-decoded; `#` when absent.
fn filter_of(uri: &Uri) -> Result<String, Response> {
    let raw = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "filter")
        .map_or("%23", |(_, v)| v);
    let filter = percent_decode(raw).ok_or_else(|| {
        message(
            StatusCode::BAD_REQUEST,
            "filter",
            "the filter is not valid percent-encoded UTF-8".into(),
        )
    })?;
    let valid = !filter.is_empty()
        && filter.split('/').enumerate().all(|(i, level)| {
            let last = i == filter.split('/').count() - 1;
            (level == "#" && last) || level == "+" || !level.contains(['#', '+'])
        });
    if valid {
        Ok(filter)
    } else {
        Err(message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "filter",
            format!("`{filter}` is not a topic filter; `+` and `#` take a whole level, `#` only the last"),
        ))
    }
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn shown(payload: &[u8]) -> (String, bool) {
    let cut = payload.len() > PAYLOAD_SHOWN;
    let part = &payload[..payload.len().min(PAYLOAD_SHOWN)];
    (String::from_utf8_lossy(part).into_owned(), cut)
}

fn no_broker() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "",
        "this server has no broker attached".into(),
    )
}

/// `GET /api/v1/broker/clients`: the connected clients (in-process services left out),
/// sorted by client id, at most `limit` (default and maximum [`CLIENTS_SHOWN`]), with the
/// total count. `complete` is false when a router partition did not answer in time.
async fn clients(State(live): State<Live>, uri: Uri) -> Response {
    let Some(broker) = &live.broker else {
        return no_broker();
    };
    let limit = match query_param(&uri, "limit").map(|v| v.parse::<usize>()) {
        None => CLIENTS_SHOWN,
        Some(Ok(n)) if n >= 1 => n.min(CLIENTS_SHOWN),
        Some(_) => {
            return message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "limit",
                format!("`limit` must be a whole number from 1 to {CLIENTS_SHOWN}"),
            )
        }
    };
    let list = broker.clients(limit).await;
    let now = SystemTime::now();
    let items: Vec<Value> = list
        .clients
        .iter()
        .map(|c| {
            let since_ms = c
                .connected_since
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            json!({
                "clientId": c.client_id,
                "username": c.username,
                "protocolVersion": match c.version {
                    ProtocolVersion::V311 => "3.1.1",
                    ProtocolVersion::V5 => "5",
                },
                "listener": c.listener,
                "remoteAddress": c.remote.to_string(),
                "connectedSinceMs": since_ms,
                "connectedSeconds": now.duration_since(c.connected_since).map_or(0, |d| d.as_secs()),
                "subscriptions": c.subscriptions,
                "queuedMessages": c.queued_messages,
                "queuedBytes": c.queued_bytes,
                "inflight": c.inflight,
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "total": list.total,
            "limit": limit,
            "complete": list.complete,
            "items": items,
        }),
    )
}

/// A query parameter's raw value.
fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn retained(State(live): State<Live>, uri: Uri) -> Response {
    let filter = match filter_of(&uri) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(factory) = &live.broker else {
        return no_broker();
    };
    let id = format!(
        "$portal-retained-{}",
        EXPLORERS.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = match factory.attach(LocalOptions::new(id)).await {
        Ok(c) => c,
        Err(e) => return message(StatusCode::SERVICE_UNAVAILABLE, "", e.to_string()),
    };
    if let Err(e) = client
        .subscribe(&filter, SubOptions::new(QoS::AtMostOnce))
        .await
    {
        return message(StatusCode::UNPROCESSABLE_ENTITY, "filter", e.to_string());
    }
    let mut items = Vec::new();
    // Retained messages are queued at subscribe time; a short quiet spell ends the list.
    while items.len() < RETAINED_SHOWN {
        match tokio::time::timeout(Duration::from_millis(200), client.recv()).await {
            Ok(Some(r)) if r.retain => {
                let (payload, truncated) = shown(&r.message.payload);
                items.push(json!({ "topic": r.message.topic, "payload": payload, "truncated": truncated, "qos": r.message.qos as u8 }));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    client.disconnect().await;
    json_response(StatusCode::OK, &json!({ "filter": filter, "items": items }))
}

async fn stream(State(live): State<Live>, uri: Uri) -> Response {
    let filter = match filter_of(&uri) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(factory) = &live.broker else {
        return no_broker();
    };
    let id = format!(
        "$portal-explorer-{}",
        EXPLORERS.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = match factory.attach(LocalOptions::new(id)).await {
        Ok(c) => c,
        Err(e) => return message(StatusCode::SERVICE_UNAVAILABLE, "", e.to_string()),
    };
    if let Err(e) = client
        .subscribe(&filter, SubOptions::new(QoS::AtMostOnce))
        .await
    {
        return message(StatusCode::UNPROCESSABLE_ENTITY, "filter", e.to_string());
    }
    let start = (client, Instant::now(), 0u32, 0u64);
    let events = futures_util::stream::unfold(
        start,
        |(mut client, mut window, mut sent, mut skipped)| async move {
            loop {
                let r = client.recv().await?;
                if window.elapsed() >= Duration::from_secs(1) {
                    window = Instant::now();
                    sent = 0;
                }
                if sent >= STREAM_RATE {
                    skipped += 1;
                    continue;
                }
                sent += 1;
                let (payload, truncated) = shown(&r.message.payload);
                let props: serde_json::Map<String, Value> = r
                    .message
                    .properties
                    .user_properties
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                let data = json!({
                    "topic": r.message.topic,
                    "payload": payload,
                    "truncated": truncated,
                    "retain": r.retain,
                    "qos": r.message.qos as u8,
                    "userProperties": props,
                    "time": rfc3339_now(),
                    "skipped": skipped,
                });
                skipped = 0;
                let event = Event::default().event("message").data(data.to_string());
                return Some((
                    Ok::<Event, Infallible>(event),
                    (client, window, sent, skipped),
                ));
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_from_queries() {
        let f = |q: &str| filter_of(&format!("/x?{q}").parse::<Uri>().expect("uri")).ok();
        assert_eq!(f("filter=a%2F%2B%2Fb").as_deref(), Some("a/+/b"));
        assert_eq!(f("other=1").as_deref(), Some("#"));
        assert_eq!(f("filter=a%2F%23").as_deref(), Some("a/#"));
        assert!(f("filter=a%23").is_none());
        assert!(f("filter=%23%2Fa").is_none());
    }
}
