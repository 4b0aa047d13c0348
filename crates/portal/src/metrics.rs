//! The broker's counters in the Prometheus text exposition format, version 0.0.4.
//!
//! [`render`] reads [`Stats`] (relaxed atomic loads, nothing on the data path changes) and
//! writes one family per counter, each with `# HELP` and `# TYPE`. Names follow Azure IoT
//! Operations' (`aio_broker_*`) where Edgeplane counts the same thing, with the `_total`
//! suffix Prometheus gives counters (AIO's OpenTelemetry exporter adds it too); the rest are
//! `edgeplane_*`. Labels are bounded: a `cause` out of a fixed few and the build `version`,
//! never a topic or a client id.
//!
//! | metric | type | from |
//! |---|---|---|
//! | `aio_broker_publishes_received_total` | counter | PUBLISH packets from clients, plus wills |
//! | `aio_broker_publishes_sent_total` | counter | PUBLISH packets written to clients |
//! | `aio_broker_connected_sessions` | gauge | clients connected now |
//! | `aio_broker_total_subscriptions` | gauge | subscriptions held by all sessions |
//! | `aio_broker_store_retained_messages` | gauge | retained messages stored, `$SYS` included |
//! | `aio_broker_total_sessions` | gauge | sessions that exist now, connected or not |
//! | `edgeplane_clients_maximum` | gauge | most clients connected at once since start |
//! | `edgeplane_received_bytes_total` | counter | MQTT bytes read from clients, all packets |
//! | `edgeplane_sent_publish_bytes_total` | counter | bytes of PUBLISH packets written to clients |
//! | `edgeplane_messages_dropped_total{cause}` | counter | queue_full, expired, oversize, qos0_offline, memory |
//! | `edgeplane_qos0_messages_dropped_total{cause}` | counter | the QoS 0 drops: queue_full, offline, memory |
//! | `edgeplane_publishes_rejected_total{cause}` | counter | MQTT 5 QoS 1/2 publishes refused with 0x97: memory, disk |
//! | `edgeplane_queued_bytes` | gauge | bytes queued for subscribers (what `maxQueuedBytes` bounds) |
//! | `edgeplane_queued_messages` | gauge | messages queued for subscribers |
//! | `edgeplane_spilled_bytes` | gauge | bytes of the disk-backed message buffer's files on disk |
//! | `edgeplane_spilled_messages` | gauge | queued messages held in the disk-backed buffer, not in memory |
//! | `edgeplane_spill_failures_total` | counter | spill writes or reads that failed (the message stayed in memory, or a spilled one was lost) |
//! | `edgeplane_reads_paused_total` | counter | times an MQTT 3.1.1 publisher stopped being read |
//! | `edgeplane_connections_paused` | gauge | MQTT 3.1.1 connections not read at the moment |
//! | `edgeplane_uptime_seconds` | gauge | seconds since the broker started |
//! | `edgeplane_selfcheck_runs_total` | counter | self-check probes run |
//! | `edgeplane_selfcheck_failures_total` | counter | self-check probes that failed |
//! | `edgeplane_selfcheck_latency_seconds` | gauge | round trip of the latest successful probe |
//! | `edgeplane_build_info{version}` | gauge | always 1 |
//! | `edgeplane_connections_total{mqtt_version}` | counter | CONNECTs accepted, by protocol version (`3.1.1`, `5`) |
//! | `edgeplane_listener_connections{listener}` | gauge | network connections open on each listener now (CONNECT done or not) |
//! | `edgeplane_listener_connections_total{listener,mqtt_version}` | counter | CONNECTs accepted, by listener and protocol version |
//! | `edgeplane_connections_by_category_total{category}` | counter | CONNECTs accepted, by `metriccategory` (bounded; `none`, `other`) |
//! | `aio_broker_authentication_successes_total{mqtt_version}` | counter | credentials an authentication method accepted |
//! | `aio_broker_authentication_failures_total{mqtt_version}` | counter | credentials refused (or an unsupported method) |
//! | `edgeplane_connect_authorizations_total{mqtt_version,outcome}` | counter | CONNECT authorization decisions, `allow` or `deny` |
//! | `edgeplane_publishes_sent_by_qos_total{qos}` | counter | PUBLISH packets written to clients, by the QoS sent at |
//! | `edgeplane_publishes_received_by_qos_total{qos}` | counter | PUBLISH packets from clients, by QoS (wills not included) |
//!
//! Components outside the broker add their own families through
//! [`crate::Portal::add_metrics`]: the dataflows add
//! `edgeplane_dataflow_messages_total{dataflow,outcome}` (received, sent, filtered,
//! unroutable, failed) and `edgeplane_dataflow_available{dataflow}`.
//!
//! AIO's `aio_broker_payload_bytes_*` count payload bytes only; the broker counts whole
//! packets, so that name is not used for what would be another number.

use std::fmt::Write as _;

use edgeplane_broker::Stats;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Render every metric of `stats` as one exposition document.
pub fn render(stats: &Stats) -> String {
    let mut out = Exposition::default();
    let s = stats;
    out.single(
        "aio_broker_publishes_received_total",
        Kind::Counter,
        "PUBLISH packets received from clients, plus wills published for them.",
        Stats::get(&s.messages_received),
    );
    out.single(
        "aio_broker_publishes_sent_total",
        Kind::Counter,
        "PUBLISH packets sent to clients, one per delivery; acknowledgements not counted.",
        Stats::get(&s.messages_sent),
    );
    out.single(
        "aio_broker_connected_sessions",
        Kind::Gauge,
        "Clients connected now.",
        Stats::get(&s.clients_connected),
    );
    out.single(
        "aio_broker_total_subscriptions",
        Kind::Gauge,
        "Subscriptions held by all sessions, connected or not.",
        Stats::get(&s.subscriptions),
    );
    out.single(
        "aio_broker_store_retained_messages",
        Kind::Gauge,
        "Retained messages stored, $SYS topics included.",
        Stats::get(&s.retained),
    );
    out.single(
        "aio_broker_total_sessions",
        Kind::Gauge,
        "Sessions that exist now, connected or not (in-process services excluded).",
        Stats::get(&s.clients_total),
    );
    out.single(
        "edgeplane_clients_maximum",
        Kind::Gauge,
        "Most clients connected at the same time since the broker started.",
        Stats::get(&s.clients_maximum),
    );
    out.single(
        "edgeplane_received_bytes_total",
        Kind::Counter,
        "MQTT bytes read from client connections, all packet types.",
        Stats::get(&s.bytes_received),
    );
    out.single(
        "edgeplane_sent_publish_bytes_total",
        Kind::Counter,
        "Bytes of PUBLISH packets written to clients, headers and properties included.",
        Stats::get(&s.bytes_sent),
    );
    out.labelled(
        "edgeplane_messages_dropped_total",
        Kind::Counter,
        "Messages the broker discarded instead of delivering, by cause.",
        "cause",
        &[
            ("queue_full", Stats::get(&s.dropped_queue_full)),
            ("expired", Stats::get(&s.dropped_expired)),
            ("oversize", Stats::get(&s.dropped_oversize)),
            ("qos0_offline", Stats::get(&s.dropped_qos0_offline)),
            ("memory", Stats::get(&s.dropped_memory)),
        ],
    );
    out.labelled(
        "edgeplane_qos0_messages_dropped_total",
        Kind::Counter,
        "QoS 0 messages the broker discarded, by cause (queue_full is part of the total's).",
        "cause",
        &[
            ("queue_full", Stats::get(&s.dropped_qos0_queue_full)),
            ("offline", Stats::get(&s.dropped_qos0_offline)),
            ("memory", Stats::get(&s.dropped_memory)),
        ],
    );
    out.labelled(
        "edgeplane_publishes_rejected_total",
        Kind::Counter,
        "MQTT 5 QoS 1/2 publishes refused with 0x97 Quota exceeded, by cause.",
        "cause",
        &[
            ("memory", Stats::get(&s.rejected_memory)),
            ("disk", Stats::get(&s.rejected_disk)),
        ],
    );
    out.single(
        "edgeplane_queued_bytes",
        Kind::Gauge,
        "Bytes queued for subscribers, counted per subscriber copy (bounded by maxQueuedBytes).",
        s.queued_bytes(),
    );
    out.single(
        "edgeplane_queued_messages",
        Kind::Gauge,
        "Messages queued for subscribers, not yet handed to their connections.",
        s.queued_messages(),
    );
    out.single(
        "edgeplane_spilled_bytes",
        Kind::Gauge,
        "Bytes of the disk-backed message buffer's spill files on disk (bounded by maxSize).",
        Stats::get(&s.spilled_bytes),
    );
    out.single(
        "edgeplane_spilled_messages",
        Kind::Gauge,
        "Queued messages whose bodies are in the disk-backed buffer, not in memory.",
        Stats::get(&s.spilled_messages),
    );
    out.single(
        "edgeplane_spill_failures_total",
        Kind::Counter,
        "Spill writes or reads that failed: the message stayed in memory, or a spilled one was lost for its running session.",
        Stats::get(&s.spill_failures),
    );
    out.single(
        "edgeplane_reads_paused_total",
        Kind::Counter,
        "Times an MQTT 3.1.1 publisher stopped being read because queued bytes were over the bound.",
        Stats::get(&s.reads_paused),
    );
    out.single(
        "edgeplane_connections_paused",
        Kind::Gauge,
        "MQTT 3.1.1 connections not read at the moment (backpressure).",
        Stats::get(&s.reads_paused_now),
    );
    out.single(
        "edgeplane_selfcheck_runs_total",
        Kind::Counter,
        "Self-check probes run (publish to a reserved topic and receive it back).",
        Stats::get(&s.selfcheck_runs),
    );
    out.single(
        "edgeplane_selfcheck_failures_total",
        Kind::Counter,
        "Self-check probes that failed or timed out.",
        Stats::get(&s.selfcheck_failures),
    );
    out.header(
        "edgeplane_selfcheck_latency_seconds",
        Kind::Gauge,
        "Round trip of the latest successful self-check probe.",
    );
    let latency = Stats::get(&s.selfcheck_latency_us) as f64 / 1e6;
    let _ = writeln!(out.text, "edgeplane_selfcheck_latency_seconds {latency:.6}");
    out.header(
        "edgeplane_uptime_seconds",
        Kind::Gauge,
        "Seconds since the broker started.",
    );
    let uptime = s.started.elapsed().as_secs_f64();
    let _ = writeln!(out.text, "edgeplane_uptime_seconds {uptime:.3}");
    render_breakdowns(&mut out, s);
    out.labelled(
        "edgeplane_build_info",
        Kind::Gauge,
        "Always 1; the version label says which Edgeplane is running.",
        "version",
        &[(env!("CARGO_PKG_VERSION"), 1)],
    );
    out.text
}

/// The families split by protocol version, category, authentication outcome and QoS.
fn render_breakdowns(out: &mut Exposition, s: &Stats) {
    let c = &s.connects;
    out.labelled(
        "edgeplane_connections_total",
        Kind::Counter,
        "CONNECTs accepted (session attached), by MQTT protocol version.",
        "mqtt_version",
        &c.accepted.samples(),
    );
    render_listeners(out, s);
    let categories = c.by_category();
    let categories: Vec<(&str, u64)> = categories.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    out.labelled(
        "edgeplane_connections_by_category_total",
        Kind::Counter,
        "CONNECTs accepted, by the CONNECT user property metriccategory (first 32 values; none, other).",
        "category",
        &categories,
    );
    out.labelled(
        "aio_broker_authentication_successes_total",
        Kind::Counter,
        "CONNECTs whose credentials an authentication method accepted, by MQTT protocol version.",
        "mqtt_version",
        &c.authn_successes.samples(),
    );
    out.labelled(
        "aio_broker_authentication_failures_total",
        Kind::Counter,
        "CONNECTs whose credentials were refused or whose authentication method is not configured, by MQTT protocol version.",
        "mqtt_version",
        &c.authn_failures.samples(),
    );
    out.header(
        "edgeplane_connect_authorizations_total",
        Kind::Counter,
        "CONNECT decisions of the authorization policy, by MQTT protocol version and outcome.",
    );
    for (outcome, by) in [("allow", &c.authz_allowed), ("deny", &c.authz_denied)] {
        for (version, n) in by.samples() {
            let _ = writeln!(
                out.text,
                "edgeplane_connect_authorizations_total{{mqtt_version=\"{version}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    out.labelled(
        "edgeplane_publishes_sent_by_qos_total",
        Kind::Counter,
        "PUBLISH packets written to clients, by the QoS they were sent at.",
        "qos",
        &s.sent_by_qos.samples(),
    );
    out.labelled(
        "edgeplane_publishes_received_by_qos_total",
        Kind::Counter,
        "PUBLISH packets received from clients, by QoS (wills not included).",
        "qos",
        &s.received_by_qos.samples(),
    );
}

/// Per-listener families (listener names come from the configuration: bounded).
fn render_listeners(out: &mut Exposition, s: &Stats) {
    let listeners = s.listeners.snapshot();
    out.header(
        "edgeplane_listener_connections",
        Kind::Gauge,
        "Network connections open on the listener now, CONNECT done or not.",
    );
    for (name, counts) in &listeners {
        let _ = writeln!(
            out.text,
            "edgeplane_listener_connections{{listener=\"{}\"}} {}",
            escape_label(name),
            Stats::get(&counts.open)
        );
    }
    out.header(
        "edgeplane_listener_connections_total",
        Kind::Counter,
        "CONNECTs accepted (session attached), by listener and MQTT protocol version.",
    );
    for (name, counts) in &listeners {
        for (version, n) in counts.accepted.samples() {
            let _ = writeln!(
                out.text,
                "edgeplane_listener_connections_total{{listener=\"{}\",mqtt_version=\"{version}\"}} {n}",
                escape_label(name)
            );
        }
    }
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.text, "{name} {value}");
    }

    fn labelled(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        samples: &[(&str, u64)],
    ) {
        self.header(name, kind, help);
        for (label_value, value) in samples {
            let v = escape_label(label_value);
            let _ = writeln!(self.text, "{name}{{{label}=\"{v}\"}} {value}");
        }
    }
}

/// `# HELP` text escapes backslash and line feed.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values also escape the double quote.
fn escape_label(s: &str) -> String {
    escape_help(s).replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line belongs to the family announced just above it, and each family
    /// has exactly one HELP and one TYPE line.
    #[test]
    fn families_are_well_formed() {
        let stats = Stats::default();
        Stats::add(&stats.messages_received, 7);
        Stats::add(&stats.dropped_expired, 2);
        let text = render(&stats);
        let mut family = String::new();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                family = rest.split(' ').next().unwrap_or_default().to_owned();
                assert!(seen.insert(family.clone()), "{family} announced twice");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(rest.starts_with(&format!("{family} ")), "{line}");
            } else {
                assert!(
                    line.starts_with(&family),
                    "{line} outside its family {family}"
                );
            }
        }
        assert!(text.contains("\naio_broker_publishes_received_total 7\n"));
        assert!(text.contains("\nedgeplane_messages_dropped_total{cause=\"expired\"} 2\n"));
        assert!(text.contains("edgeplane_build_info{version=\""));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn escapes_help_and_label_values() {
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
        assert_eq!(escape_label("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
    }
}
