//! The `Broker` kind: the field tables of its spec and the settings the broker acts on.
//!
//! The whole Azure IoT Operations Broker spec is accepted and validated (cardinality,
//! resource limits, internal certificates, disk buffer, diagnostics, persistence), so AIO
//! manifests load unchanged. What the broker acts on today leaves as typed
//! [`BrokerSettings`] (client limits, memory profile, metrics port, log level); the rest is
//! kept verbatim in [`BrokerSettings::raw_spec`] for the components that will use it.

use serde::Serialize;

use crate::error::Sink;
use crate::persistence;
use crate::resource::crd_document;
use crate::schema::{opt, req, EnumDef, Field, Schema, OPERATIONAL_MODE};
use crate::yaml::Node;

/// Name of the broker when the folder has no `Broker` resource (AIO's default too).
pub const DEFAULT_BROKER_NAME: &str = "default";

/// AIO memory profile: sizes internal buffers and bounds the largest packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum MemoryProfile {
    Tiny,
    Low,
    #[default]
    Medium,
    High,
}

impl MemoryProfile {
    /// Largest MQTT packet, in bytes, this profile allows.
    pub fn max_packet_size(self) -> u32 {
        const MIB: u32 = 1024 * 1024;
        match self {
            MemoryProfile::Tiny => 4 * MIB,
            MemoryProfile::Low => 16 * MIB,
            MemoryProfile::Medium => 64 * MIB,
            MemoryProfile::High => 256 * MIB,
        }
    }

    /// Default broker-wide bound on bytes queued for subscribers (`maxQueuedBytes`), eight
    /// times the profile's largest packet, so one subscriber can always hold a few of them.
    pub fn max_queued_bytes(self) -> u64 {
        const MIB: u64 = 1024 * 1024;
        match self {
            MemoryProfile::Tiny => 32 * MIB,
            MemoryProfile::Low => 128 * MIB,
            MemoryProfile::Medium => 512 * MIB,
            MemoryProfile::High => 2048 * MIB,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "Tiny" => Some(MemoryProfile::Tiny),
            "Low" => Some(MemoryProfile::Low),
            "Medium" => Some(MemoryProfile::Medium),
            "High" => Some(MemoryProfile::High),
            _ => None,
        }
    }
}

/// What to do when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum QueueStrategy {
    /// Never drop (AIO's default and documented meaning: "messages are never dropped"): the
    /// limit is advisory, and memory is bounded by `maxQueuedBytes` pushing back on
    /// publishers instead.
    #[default]
    None,
    /// Drop the oldest queued QoS 0/1 message to make room (QoS 2 is never dropped).
    DropOldest,
    /// Edgeplane extension: drop the new QoS 0/1 message for this subscriber.
    DropNewest,
}

/// `advanced.clients.subscriberQueueLimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct QueueLimit {
    /// Messages queued per subscriber before the strategy applies; at least 1.
    pub length: u64,
    /// Edgeplane extension `maxBytes`: bytes queued per subscriber (topic, payload and
    /// properties of each message) before the strategy applies; `None` for no byte bound.
    pub max_bytes: Option<u64>,
    pub strategy: QueueStrategy,
}

/// Limits the broker imposes on every client (`spec.advanced.clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientLimits {
    /// Upper bound of a session's expiry interval; `u32::MAX` means no cap.
    pub max_session_expiry_secs: u32,
    /// Upper bound of a message's expiry interval (also caps retained messages).
    pub max_message_expiry_secs: Option<u32>,
    /// Largest packet accepted: the smaller of the memory profile's limit and
    /// `maxPacketSizeBytes`.
    pub max_packet_size: u32,
    /// Upper bound of the Receive Maximum a client may ask for.
    pub max_receive_maximum: u16,
    /// Upper bound of a client's Keep Alive.
    pub max_keep_alive_secs: Option<u16>,
    pub subscriber_queue_limit: Option<QueueLimit>,
    /// Our extension `queueQos0WhileOffline`: queue QoS 0 messages for offline persistent
    /// sessions (the specification allows it; Mosquitto and AIO drop them, the default).
    pub queue_qos0_offline: bool,
    /// Our extension `maxQueuedBytes`: bound on the bytes queued for all subscribers
    /// together. Above it MQTT 5 QoS 1/2 publishes get 0x97 Quota exceeded, QoS 0 messages
    /// are dropped, and MQTT 3.1.1 publishers stop being read until the total falls below
    /// three quarters of it. Defaults to the memory profile's
    /// [`MemoryProfile::max_queued_bytes`].
    pub max_queued_bytes: u64,
    /// Our extension `maxInflightBytes`: bound on the bytes of QoS 1/2 messages sent to one
    /// client and not yet acknowledged (beside its Receive Maximum, which bounds their
    /// number). Past it further deliveries wait in the session's queue; one message is always
    /// allowed, whatever its size. `None`: only Receive Maximum bounds the window.
    pub max_inflight_bytes: Option<u64>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            max_session_expiry_secs: u32::MAX,
            max_message_expiry_secs: None,
            max_packet_size: MemoryProfile::default().max_packet_size(),
            max_receive_maximum: u16::MAX,
            max_keep_alive_secs: None,
            queue_qos0_offline: false,
            subscriber_queue_limit: None,
            max_queued_bytes: MemoryProfile::default().max_queued_bytes(),
            max_inflight_bytes: None,
        }
    }
}

/// `spec.diskBackedMessageBuffer`: once the bytes queued for subscribers in memory pass
/// `memory_threshold`, further queued messages go to spill files on disk, up to `max_size`
/// bytes of them. Sizes use AIO's pattern `^[0-9]+[KMGTPE]$`, read as powers of 1024
/// (`1G` is 1 GiB). The volume claim specs of AIO are accepted and ignored: the buffer lives
/// in `<data-dir>/spill`, or a private temporary folder without a data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskBufferSettings {
    /// `maxSize`: bytes of spill files on disk, at most.
    pub max_size: u64,
    /// Edgeplane extension `memoryThreshold`: queued bytes in memory (all subscribers, as
    /// counted for `maxQueuedBytes`) above which messages spill. `None`: three quarters of
    /// `maxQueuedBytes`, as AIO spills its queues above 75% of their memory pool.
    pub memory_threshold: Option<u64>,
}

impl DiskBufferSettings {
    /// The memory threshold in effect under the bound `max_queued_bytes`.
    pub fn threshold(&self, max_queued_bytes: u64) -> u64 {
        self.memory_threshold
            .unwrap_or(max_queued_bytes - max_queued_bytes / 4)
    }
}

/// The broker's settings, from the `Broker` resource or defaults when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerSettings {
    /// `metadata.name` of the Broker resource; [`DEFAULT_BROKER_NAME`] without one.
    pub name: String,
    pub clients: ClientLimits,
    /// `diagnostics.metrics.prometheusPort`, when set.
    pub prometheus_port: Option<u16>,
    /// `diagnostics.metrics.otlp` (an Edgeplane extension): push the metrics to an
    /// OpenTelemetry collector.
    pub otlp: Option<OtlpExport>,
    /// `diagnostics.traces.otlp` (an Edgeplane extension): export spans to an OpenTelemetry
    /// collector; absent, or `diagnostics.traces.mode: Disabled`, none are.
    pub traces: Option<TracesExport>,
    pub memory_profile: MemoryProfile,
    /// `diagnostics.logs.level`, when set (a tracing filter such as `info`).
    pub log_level: Option<String>,
    /// `spec.persistence`, when present.
    pub persistence: Option<persistence::Persistence>,
    /// `spec.diskBackedMessageBuffer`, when present: subscriber queues spill to disk.
    pub disk_buffer: Option<DiskBufferSettings>,
    /// The whole `spec` as JSON, for settings not typed here yet; null without a spec.
    pub raw_spec: serde_json::Value,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_BROKER_NAME.to_owned(),
            clients: ClientLimits::default(),
            prometheus_port: None,
            otlp: None,
            traces: None,
            memory_profile: MemoryProfile::default(),
            log_level: None,
            persistence: None,
            disk_buffer: None,
            raw_spec: serde_json::Value::Null,
        }
    }
}

/// `diagnostics.metrics.otlp` and `diagnostics.traces.otlp`: OTLP/HTTP export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtlpExport {
    /// The collector's base URL, `http://host:4318` or `https://...` (`/v1/metrics` or
    /// `/v1/traces` is appended).
    pub endpoint: String,
    /// Seconds between exports (metrics: 30 by default; traces: at most this long between
    /// a span's end and its export, 5 by default).
    pub interval_seconds: u32,
    /// `trustedCaFile`: PEM file of the CA certificates an `https://` collector is checked
    /// against (relative to the configuration folder); absent, the system's.
    pub trusted_ca_file: Option<String>,
}

/// `diagnostics.traces`: where spans go and how many may wait for export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracesExport {
    pub otlp: OtlpExport,
    /// AIO's `spanChannelCapacity`: ended spans waiting for export, at most (1,000 by
    /// default); past it spans are dropped and counted.
    pub span_channel_capacity: u32,
}

pub(crate) static DOCUMENT: [Field; 5] = crd_document(false, Schema::Object(&SPEC));

static SPEC: [Field; 7] = [
    opt("memoryProfile", Schema::Enum(&MEMORY_PROFILE)),
    opt("cardinality", Schema::Object(&CARDINALITY)),
    opt("generateResourceLimits", Schema::Object(&RESOURCE_LIMITS)),
    opt("advanced", Schema::Object(&ADVANCED)),
    opt("diskBackedMessageBuffer", Schema::Object(&DISK_BUFFER)),
    opt("diagnostics", Schema::Object(&DIAGNOSTICS)),
    opt("persistence", Schema::Object(&persistence::PERSISTENCE)),
];

static MEMORY_PROFILE: EnumDef = EnumDef {
    values: &["Tiny", "Low", "Medium", "High"],
    aliases: &[],
};

static CARDINALITY: [Field; 2] = [
    req(
        "frontend",
        Schema::Object(&[
            req("replicas", Schema::Int(1, 16)),
            opt("workers", Schema::Int(1, 16)),
        ]),
    ),
    req(
        "backendChain",
        Schema::Object(&[
            req("partitions", Schema::Int(1, 16)),
            req("redundancyFactor", Schema::Int(1, 5)),
            opt("workers", Schema::Int(1, 16)),
        ]),
    ),
];

static RESOURCE_LIMITS: [Field; 1] = [opt("cpu", Schema::Enum(&OPERATIONAL_MODE))];

static ADVANCED: [Field; 3] = [
    opt("encryptInternalTraffic", Schema::Enum(&OPERATIONAL_MODE)),
    opt("internalCerts", Schema::Object(&INTERNAL_CERTS)),
    opt("clients", Schema::Object(&CLIENTS)),
];

static INTERNAL_CERTS: [Field; 3] = [
    req("duration", Schema::StrWith(check_duration)),
    req("renewBefore", Schema::StrWith(check_duration)),
    req("privateKey", Schema::Object(&PRIVATE_KEY)),
];

/// cert-manager private key settings; shared with listener TLS specs.
pub(crate) static PRIVATE_KEY: [Field; 2] = [
    req(
        "algorithm",
        Schema::Enum(&EnumDef {
            values: &[
                "Ec256", "Ec384", "Ec521", "Ed25519", "Rsa2048", "Rsa4096", "Rsa8192",
            ],
            aliases: &[],
        }),
    ),
    req(
        "rotationPolicy",
        Schema::Enum(&EnumDef {
            values: &["Always", "Never"],
            aliases: &[],
        }),
    ),
];

static CLIENTS: [Field; 9] = [
    opt("maxSessionExpirySeconds", Schema::Int(1, u32::MAX as i64)),
    opt("maxMessageExpirySeconds", Schema::Int(1, u32::MAX as i64)),
    opt("maxPacketSizeBytes", Schema::Int(1, 268_435_456)),
    opt("maxReceiveMaximum", Schema::Int(1, 65_535)),
    opt("maxKeepAliveSeconds", Schema::Int(0, 65_535)),
    // Edgeplane extension: queue QoS 0 messages for offline persistent sessions.
    opt("queueQos0WhileOffline", Schema::Bool),
    // Edgeplane extension: broker-wide bound on queued bytes (backpressure above it).
    opt("maxQueuedBytes", Schema::Int(1024, i64::MAX)),
    // Edgeplane extension: per-client bound on unacknowledged QoS 1/2 bytes sent to it.
    opt("maxInflightBytes", Schema::Int(1, i64::MAX)),
    opt(
        "subscriberQueueLimit",
        Schema::Object(&[
            req("length", Schema::Int(1, i64::MAX)),
            // Edgeplane extension: a byte bound beside AIO's message count.
            opt("maxBytes", Schema::Int(1, i64::MAX)),
            opt("strategy", Schema::Enum(&QUEUE_STRATEGY)),
        ]),
    ),
];

static QUEUE_STRATEGY: EnumDef = EnumDef {
    // `DropNewest` is an Edgeplane extension.
    values: &["None", "DropOldest", "DropNewest"],
    aliases: &[],
};

static DISK_BUFFER: [Field; 4] = [
    req("maxSize", Schema::StrWith(check_buffer_size)),
    // Edgeplane extension: queued bytes in memory above which messages spill to disk.
    opt("memoryThreshold", Schema::StrWith(check_buffer_size)),
    opt("ephemeralVolumeClaimSpec", Schema::FreeMap),
    opt("persistentVolumeClaimSpec", Schema::FreeMap),
];

static DIAGNOSTICS: [Field; 4] = [
    opt("logs", Schema::Object(&[opt("level", Schema::Str)])),
    opt(
        "metrics",
        Schema::Object(&[
            opt("prometheusPort", Schema::Int(0, 65_535)),
            opt("otlp", Schema::Object(&OTLP)),
        ]),
    ),
    opt(
        "selfCheck",
        Schema::Object(&[
            opt("mode", Schema::Enum(&OPERATIONAL_MODE)),
            opt("intervalSeconds", Schema::Int(30, 300)),
            opt("timeoutSeconds", Schema::Int(5, 120)),
        ]),
    ),
    opt("traces", Schema::Object(&TRACES)),
];

/// `diagnostics.metrics.otlp` and `diagnostics.traces.otlp` (Edgeplane extensions).
static OTLP: [Field; 3] = [
    req("endpoint", Schema::Str),
    opt("intervalSeconds", Schema::Int(1, 3600)),
    opt("trustedCaFile", Schema::Str),
];

static TRACES: [Field; 5] = [
    opt("otlp", Schema::Object(&OTLP)),
    opt("mode", Schema::Enum(&OPERATIONAL_MODE)),
    opt("cacheSizeMegabytes", Schema::Int(1, 128)),
    opt("spanChannelCapacity", Schema::Int(1000, 100_000)),
    opt(
        "selfTracing",
        Schema::Object(&[
            opt("mode", Schema::Enum(&OPERATIONAL_MODE)),
            opt("intervalSeconds", Schema::Int(1, 300)),
        ]),
    ),
];

/// Read the settings from a Broker document already checked against [`DOCUMENT`], and check
/// the rules that relate several fields. Invalid values fall back to defaults (they were
/// reported by the table walk).
pub(crate) fn read(doc: &Node, name: &str, sink: &mut Sink) -> BrokerSettings {
    let Some(spec) = doc.get("spec") else {
        return BrokerSettings {
            name: name.to_owned(),
            ..BrokerSettings::default()
        };
    };
    check_internal_certs(spec, sink);
    persistence::check(spec, sink);
    let otlp = read_otlp(spec, &["diagnostics", "metrics", "otlp"], 30, sink);
    let traces = read_traces(spec, sink);

    let memory_profile = spec
        .get("memoryProfile")
        .and_then(Node::as_str)
        .and_then(MemoryProfile::parse)
        .unwrap_or_default();
    BrokerSettings {
        name: name.to_owned(),
        clients: read_clients(spec.at(&["advanced", "clients"]), memory_profile),
        prometheus_port: int_at(spec, &["diagnostics", "metrics", "prometheusPort"]),
        otlp,
        traces,
        memory_profile,
        log_level: spec
            .at(&["diagnostics", "logs", "level"])
            .and_then(Node::as_str)
            .map(str::to_owned),
        persistence: persistence::read(spec),
        disk_buffer: read_disk_buffer(spec),
        raw_spec: if spec.is_null() {
            serde_json::Value::Null
        } else {
            spec.to_json()
        },
    }
}

fn read_clients(clients: Option<&Node>, profile: MemoryProfile) -> ClientLimits {
    let defaults = ClientLimits {
        max_packet_size: profile.max_packet_size(),
        max_queued_bytes: profile.max_queued_bytes(),
        ..ClientLimits::default()
    };
    let Some(clients) = clients else {
        return defaults;
    };
    let max_packet_size = int_at::<u32>(clients, &["maxPacketSizeBytes"])
        .map_or(defaults.max_packet_size, |n| {
            n.min(defaults.max_packet_size)
        });
    let subscriber_queue_limit = clients.get("subscriberQueueLimit").and_then(|limit| {
        let length = int_at::<u64>(limit, &["length"])?;
        let strategy = match limit.get("strategy").and_then(Node::as_str) {
            Some("DropOldest") => QueueStrategy::DropOldest,
            Some("DropNewest") => QueueStrategy::DropNewest,
            _ => QueueStrategy::None,
        };
        let max_bytes = int_at::<u64>(limit, &["maxBytes"]);
        Some(QueueLimit {
            length,
            max_bytes,
            strategy,
        })
    });
    ClientLimits {
        max_session_expiry_secs: int_at(clients, &["maxSessionExpirySeconds"])
            .unwrap_or(defaults.max_session_expiry_secs),
        max_message_expiry_secs: int_at(clients, &["maxMessageExpirySeconds"]),
        max_packet_size,
        max_receive_maximum: int_at(clients, &["maxReceiveMaximum"])
            .unwrap_or(defaults.max_receive_maximum),
        max_keep_alive_secs: int_at(clients, &["maxKeepAliveSeconds"]),
        subscriber_queue_limit,
        queue_qos0_offline: clients
            .get("queueQos0WhileOffline")
            .and_then(Node::as_bool)
            .unwrap_or(false),
        max_queued_bytes: int_at(clients, &["maxQueuedBytes"]).unwrap_or(defaults.max_queued_bytes),
        max_inflight_bytes: int_at(clients, &["maxInflightBytes"]),
    }
}

/// `diskBackedMessageBuffer`, when present with a valid `maxSize` (the table walk reported
/// an invalid one).
fn read_disk_buffer(spec: &Node) -> Option<DiskBufferSettings> {
    let buffer = spec.get("diskBackedMessageBuffer")?;
    let size = |key| buffer.get(key).and_then(Node::as_str).and_then(buffer_size);
    Some(DiskBufferSettings {
        max_size: size("maxSize")?,
        memory_threshold: size("memoryThreshold"),
    })
}

/// The integer at `keys`, if present and representable (the table walk checked ranges).
fn int_at<T: TryFrom<i64>>(node: &Node, keys: &[&str]) -> Option<T> {
    node.at(keys)
        .and_then(Node::as_i64)
        .and_then(|i| T::try_from(i).ok())
}

/// The OTLP export at `path`, when present with a valid endpoint (an invalid one is
/// reported naming the field).
fn read_otlp(
    spec: &Node,
    path: &[&str],
    default_interval: u32,
    sink: &mut Sink,
) -> Option<OtlpExport> {
    let otlp = spec.at(path)?;
    let endpoint = otlp.get("endpoint")?;
    let url = endpoint.as_str()?;
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .map(|rest| rest.split(['/', ':']).next().unwrap_or_default());
    if host.is_none_or(str::is_empty) {
        sink.error(
            &format!("spec.{}.endpoint", path.join(".")),
            Some(endpoint.line),
            "endpoint must be an http:// or https:// URL of an OTLP/HTTP collector, such as \
             http://otel-collector:4318",
        );
        return None;
    }
    Some(OtlpExport {
        endpoint: url.to_owned(),
        interval_seconds: int_at(otlp, &["intervalSeconds"]).unwrap_or(default_interval),
        trusted_ca_file: otlp
            .get("trustedCaFile")
            .and_then(Node::as_str)
            .map(str::to_owned),
    })
}

/// `diagnostics.traces`: exported when `otlp` is set and `mode` is not `Disabled`.
fn read_traces(spec: &Node, sink: &mut Sink) -> Option<TracesExport> {
    let otlp = read_otlp(spec, &["diagnostics", "traces", "otlp"], 5, sink)?;
    let traces = spec.at(&["diagnostics", "traces"])?;
    if traces.get("mode").and_then(Node::as_str) == Some("Disabled") {
        return None;
    }
    Some(TracesExport {
        otlp,
        span_channel_capacity: int_at(traces, &["spanChannelCapacity"]).unwrap_or(1000),
    })
}

/// cert-manager renews before expiry, so `renewBefore` must be shorter than `duration`.
fn check_internal_certs(spec: &Node, sink: &mut Sink) {
    let Some(certs) = spec.at(&["advanced", "internalCerts"]) else {
        return;
    };
    let secs = |key| {
        certs
            .get(key)
            .and_then(Node::as_str)
            .and_then(duration_secs)
    };
    if let (Some(duration), Some(renew)) = (secs("duration"), secs("renewBefore")) {
        if renew >= duration {
            let line = certs.get("renewBefore").map(|n| n.line);
            sink.error(
                "spec.advanced.internalCerts.renewBefore",
                line,
                "renewBefore must be shorter than duration; lower it or raise duration",
            );
        }
    }
}

/// A Go `time.Duration` limited to hours, minutes and seconds, as AIO documents
/// (`240h`, `45m`, `1h30m`, `1.5h`), in seconds.
pub(crate) fn duration_secs(text: &str) -> Option<f64> {
    let mut rest = text;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest.get(..number_len)?.parse().ok()?;
        rest = rest.get(number_len..)?;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        total += value
            * match rest.get(..unit_len)? {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                _ => return None,
            };
        rest = rest.get(unit_len..)?;
    }
    Some(total)
}

fn check_duration(text: &str) -> Result<(), String> {
    match duration_secs(text) {
        Some(_) => Ok(()),
        None => Err(format!(
            "invalid duration `{text}`; use hours, minutes and seconds such as 240h, 45m or 1h30m"
        )),
    }
}

/// A size of AIO's pattern `^[0-9]+[KMGTPE]$` in bytes, the unit a power of 1024; `None`
/// when it does not match or does not fit in 64 bits.
fn buffer_size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(['K', 'M', 'G', 'T', 'P', 'E']);
    if digits.is_empty()
        || !digits.chars().all(|c| c.is_ascii_digit())
        || text.len() != digits.len() + 1
    {
        return None;
    }
    let shift = match text.as_bytes().last()? {
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        b'P' => 50,
        _ => 60,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// `diskBackedMessageBuffer.maxSize` and `memoryThreshold`: AIO's pattern `^[0-9]+[KMGTPE]$`.
fn check_buffer_size(text: &str) -> Result<(), String> {
    if buffer_size(text).is_some() {
        Ok(())
    } else {
        Err(format!(
            "invalid size `{text}`; use digits and one unit letter (K, M, G, T, P or E), such as 1G"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(duration_secs("240h"), Some(864_000.0));
        assert_eq!(duration_secs("1h30m"), Some(5400.0));
        assert_eq!(duration_secs("1.5h"), Some(5400.0));
        for bad in ["", "h", "10", "10d", "1.2.3h", "-1h"] {
            assert_eq!(duration_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn buffer_sizes_follow_the_aio_pattern() {
        assert!(check_buffer_size("1G").is_ok());
        assert!(check_buffer_size("500M").is_ok());
        for bad in ["G", "1", "1Gi", "1GG", "1g", " 1G", "99999E"] {
            assert!(check_buffer_size(bad).is_err(), "{bad}");
        }
        assert_eq!(buffer_size("1G"), Some(1 << 30));
        assert_eq!(buffer_size("64K"), Some(64 << 10));
        assert_eq!(buffer_size("15E"), Some(15 << 60));
    }

    #[test]
    fn disk_buffer_threshold_defaults_to_three_quarters() {
        let b = DiskBufferSettings {
            max_size: 1 << 30,
            memory_threshold: None,
        };
        assert_eq!(b.threshold(64 << 20), 48 << 20);
        let b = DiskBufferSettings {
            memory_threshold: Some(1 << 20),
            ..b
        };
        assert_eq!(b.threshold(64 << 20), 1 << 20);
    }

    #[test]
    fn profile_packet_limits() {
        assert_eq!(MemoryProfile::Tiny.max_packet_size(), 4 << 20);
        assert_eq!(MemoryProfile::High.max_packet_size(), 256 << 20);
        assert_eq!(ClientLimits::default().max_packet_size, 64 << 20);
    }
}
