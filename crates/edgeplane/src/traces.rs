//! OTLP export of the traces: a `tracing_subscriber` layer turns the closed spans of the
//! Edgeplane crates into OTLP spans, and [`export`] posts them in batches to the
//! collector's `/v1/traces` as an `ExportTraceServiceRequest` in the OTLP/HTTP JSON
//! encoding.
//!
//! Which spans: those the components open at connection granularity (an MQTT connection
//! from accept to close, its CONNECT exchange, its authentication), never one per packet,
//! so there is nothing to sample: their number follows the connect rate. Bounded all the
//! same: ended spans wait in a queue of at most `capacity` (AIO's `spanChannelCapacity`);
//! past it, and when an export fails, spans are dropped and counted
//! (`edgeplane_otlp_spans_dropped_total{cause}`), so a slow or absent collector costs
//! memory up to that bound and never blocks a connection. The layer's work on the data
//! path is a short mutex hold when a span closes.
//!
//! Ids are random (trace 16 bytes, span 8). A span recording a W3C `traceparent`
//! (`00-<trace id>-<parent id>-<flags>`) before its children open joins that trace as a
//! child of the remote span: a client's CONNECT user property `traceparent` puts the
//! broker's connection span under the client's own trace. A recorded `error` field marks the
//! span's status as an error with that message; every other field becomes an attribute.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::otlp::TraceSettings;

/// Spans sent in one request, at most (the SDKs' `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
const BATCH: usize = 512;
/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Spans whose target starts with this are exported.
const TARGET_PREFIX: &str = "edgeplane";

/// The queue between the layer and the exporter, and its counters.
pub struct Spans {
    queue: Mutex<Vec<Ended>>,
    capacity: usize,
    /// Woken when a batch is full.
    full: tokio::sync::Notify,
    ids: Ids,
    exported: AtomicU64,
    dropped_full: AtomicU64,
    dropped_failed: AtomicU64,
}

impl Spans {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Spans {
            queue: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            full: tokio::sync::Notify::new(),
            ids: Ids::new(),
            exported: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            dropped_failed: AtomicU64::new(0),
        })
    }

    /// The layer to add to the subscriber (spans of the Edgeplane crates only).
    pub fn layer<S>(self: &Arc<Self>) -> impl tracing_subscriber::Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        let filter = tracing_subscriber::filter::filter_fn(|m| {
            m.is_span() && m.target().starts_with(TARGET_PREFIX)
        });
        TraceLayer {
            spans: Arc::clone(self),
        }
        .with_filter(filter)
    }

    fn push(&self, span: Ended) {
        let mut q = self.queue.lock();
        if q.len() >= self.capacity {
            drop(q);
            self.dropped_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push(span);
        let batch_full = q.len() >= BATCH;
        drop(q);
        if batch_full {
            self.full.notify_one();
        }
    }

    /// The exporter's counters in the text exposition format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "# HELP edgeplane_otlp_spans_exported_total Spans the OTLP collector accepted.\n\
             # TYPE edgeplane_otlp_spans_exported_total counter\n\
             edgeplane_otlp_spans_exported_total {}\n\
             # HELP edgeplane_otlp_spans_dropped_total Spans not exported: the queue was full (spanChannelCapacity) or the collector failed.\n\
             # TYPE edgeplane_otlp_spans_dropped_total counter\n\
             edgeplane_otlp_spans_dropped_total{{cause=\"queue_full\"}} {}\n\
             edgeplane_otlp_spans_dropped_total{{cause=\"export_failed\"}} {}\n",
            self.exported.load(Ordering::Relaxed),
            self.dropped_full.load(Ordering::Relaxed),
            self.dropped_failed.load(Ordering::Relaxed),
        );
    }
}

/// Unique random-looking ids: SplitMix64 over a per-process random seed and a counter (a
/// bijection, so no two ids of a run repeat); never zero, which OTLP reads as "no id".
struct Ids {
    seed: u64,
    next: AtomicU64,
}

impl Ids {
    fn new() -> Self {
        let seed = RandomState::new().hash_one(SystemTime::now());
        Ids {
            seed,
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).max(1)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
}

/// A span while it is open (kept in the registry's extensions).
struct Open {
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    start: u128,
    attributes: Vec<(&'static str, AttrValue)>,
    error: Option<String>,
    /// No child opened yet: a `traceparent` may still move it to another trace.
    childless: bool,
}

/// A span that has ended, waiting for export.
struct Ended {
    name: &'static str,
    open: Open,
    end: u128,
}

impl Visit for Open {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "traceparent" => self.join(value),
            "error" => self.error = Some(value.to_owned()),
            name => self.set(name, AttrValue::Str(value.to_owned())),
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), AttrValue::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(
            field.name(),
            AttrValue::Int(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), AttrValue::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), AttrValue::Double(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl Open {
    fn set(&mut self, name: &'static str, value: AttrValue) {
        match self.attributes.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((name, value)),
        }
    }

    /// Join the trace of a W3C `traceparent`, as a child of its span (version 00; anything
    /// else, or all-zero ids, is ignored as the W3C recommendation says).
    fn join(&mut self, traceparent: &str) {
        if !self.childless {
            return;
        }
        if let Some((trace, parent)) = parse_traceparent(traceparent) {
            self.trace = trace;
            self.parent = Some(parent);
            self.set("w3c.traceparent", AttrValue::Str(traceparent.to_owned()));
        }
    }
}

fn parse_traceparent(s: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = s.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || flags.len() != 2 || parts.next().is_some() {
        return None;
    }
    let trace: [u8; 16] = hex_bytes(trace)?;
    let parent: [u8; 8] = hex_bytes(parent)?;
    (trace != [0; 16] && parent != [0; 8]).then_some((trace, parent))
}

/// Lower-case hex of exactly `N` bytes.
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

struct TraceLayer {
    spans: Arc<Spans>,
}

impl<S> tracing_subscriber::Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let parent = span.parent().and_then(|p| {
            let mut ext = p.extensions_mut();
            let open = ext.get_mut::<Open>()?;
            open.childless = false;
            Some((open.trace, open.id))
        });
        let (trace, parent) = match parent {
            Some((trace, parent)) => (trace, Some(parent)),
            None => {
                let mut trace = [0u8; 16];
                trace[..8].copy_from_slice(&self.spans.ids.next().to_be_bytes());
                trace[8..].copy_from_slice(&self.spans.ids.next().to_be_bytes());
                (trace, None)
            }
        };
        let mut open = Open {
            trace,
            id: self.spans.ids.next().to_be_bytes(),
            parent,
            start: now_nanos(),
            attributes: Vec::new(),
            error: None,
            childless: true,
        };
        attrs.record(&mut open);
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<Open>() {
                values.record(open);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let name = span.name();
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        self.spans.push(Ended {
            name,
            open,
            end: now_nanos(),
        });
    }
}

/// Post the ended spans every `interval` (sooner when a batch is full) until aborted.
pub async fn export(spans: Arc<Spans>, settings: TraceSettings) {
    let url = settings.collector.url().to_owned();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(settings.interval.max(Duration::from_millis(100))) => {}
            _ = spans.full.notified() => {}
        }
        loop {
            let batch: Vec<Ended> = {
                let mut q = spans.queue.lock();
                let n = q.len().min(BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            let n = batch.len() as u64;
            let body = encode(&batch, &host);
            let sent = tokio::time::timeout(EXPORT_TIMEOUT, settings.collector.post(body))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {EXPORT_TIMEOUT:?}")));
            match sent {
                Ok(()) => {
                    spans.exported.fetch_add(n, Ordering::Relaxed);
                    if failing {
                        failing = false;
                        tracing::info!(%url, "otlp trace export works again");
                    }
                }
                Err(why) => {
                    spans.dropped_failed.fetch_add(n, Ordering::Relaxed);
                    if !failing {
                        failing = true;
                        tracing::warn!(%url, error = %why, "otlp trace export failed; its spans are dropped (counted in edgeplane_otlp_spans_dropped_total)");
                    }
                    break;
                }
            }
        }
    }
}

fn attribute(key: &str, value: &AttrValue) -> Value {
    let value = match value {
        AttrValue::Str(s) => json!({"stringValue": s}),
        // 64-bit integers are strings in OTLP's JSON encoding.
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::Double(d) => json!({"doubleValue": d}),
    };
    json!({"key": key, "value": value})
}

/// The `ExportTraceServiceRequest` in OTLP's JSON encoding: ids in hex (not base64, as
/// the OTLP specification says for JSON), times as decimal strings, enums as numbers.
fn encode(batch: &[Ended], host: &str) -> Vec<u8> {
    let spans: Vec<Value> = batch
        .iter()
        .map(|e| {
            let o = &e.open;
            let attributes: Vec<Value> =
                o.attributes.iter().map(|(k, v)| attribute(k, v)).collect();
            // SPAN_KIND_SERVER for a span serving a remote client (a root, or one joined to
            // the client's trace), else SPAN_KIND_INTERNAL; STATUS_CODE_ERROR / _UNSET.
            let is_server =
                o.parent.is_none() || o.attributes.iter().any(|(k, _)| *k == "w3c.traceparent");
            let mut span = json!({
                "traceId": hex(&o.trace),
                "spanId": hex(&o.id),
                "name": e.name,
                "kind": if is_server { 2 } else { 1 },
                "startTimeUnixNano": o.start.to_string(),
                "endTimeUnixNano": e.end.max(o.start).to_string(),
                "attributes": attributes,
                "status": match &o.error {
                    Some(message) => json!({"code": 2, "message": message}),
                    None => json!({}),
                },
            });
            if let Some(parent) = o.parent {
                span["parentSpanId"] = Value::String(hex(&parent));
            }
            span
        })
        .collect();
    let resource = [
        attribute("service.name", &AttrValue::Str("edgeplane".into())),
        attribute(
            "service.version",
            &AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        attribute("host.name", &AttrValue::Str(host.to_owned())),
    ];
    json!({
        "resourceSpans": [{
            "resource": {"attributes": resource},
            "scopeSpans": [{
                "scope": {"name": "edgeplane", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_version_00_is_joined_and_bad_ones_ignored() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (trace, parent) = parse_traceparent(good).expect("valid");
        assert_eq!(hex(&trace), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&parent), "b7ad6b7169203331");
        for bad in [
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_do_not_repeat_and_are_never_zero() {
        let ids = Ids::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = ids.next();
            assert_ne!(id, 0);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let spans = Spans::new(2);
        let open = || Open {
            trace: [1; 16],
            id: [2; 8],
            parent: None,
            start: 1,
            attributes: Vec::new(),
            error: None,
            childless: true,
        };
        for _ in 0..5 {
            spans.push(Ended {
                name: "s",
                open: open(),
                end: 2,
            });
        }
        assert_eq!(spans.queue.lock().len(), 2);
        let mut out = String::new();
        spans.render_metrics(&mut out);
        assert!(out.contains("edgeplane_otlp_spans_dropped_total{cause=\"queue_full\"} 3"));
    }
}
