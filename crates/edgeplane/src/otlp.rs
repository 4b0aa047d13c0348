//! Which OpenTelemetry collector the metrics and the traces go to: the Broker's
//! `diagnostics.metrics.otlp` and `diagnostics.traces.otlp`, else the OpenTelemetry SDK
//! environment variables operators already use, else none.
//!
//! Metrics: `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` as it is, or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! plus `/v1/metrics`; `OTEL_METRIC_EXPORT_INTERVAL` in milliseconds, 60 s by default as the
//! specification says. Traces: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces` (none when `OTEL_TRACES_EXPORTER` is
//! `none`); `OTEL_BSP_SCHEDULE_DELAY` (ms, 5 s) and `OTEL_BSP_MAX_QUEUE_SIZE` (2,048). The
//! CA file for an `https://` collector: `trustedCaFile`, else
//! `OTEL_EXPORTER_OTLP_{METRICS,TRACES}_CERTIFICATE` or `OTEL_EXPORTER_OTLP_CERTIFICATE`,
//! else the system's roots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use edgeplane_config::{BrokerSettings, OtlpExport};
use edgeplane_portal::{Collector, OtlpSettings};

/// Where ended spans are exported, how often, and how many may wait.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    pub collector: Collector,
    pub interval: Duration,
    pub capacity: usize,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn millis(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match var(name) {
        Some(ms) => Ok(Duration::from_millis(ms.trim().parse().map_err(|_| {
            anyhow!("{name} must be a number of milliseconds, not `{ms}`")
        })?)),
        None => Ok(default),
    }
}

/// `trustedCaFile` relative to the configuration folder, else the signal's and the general
/// certificate variables.
fn ca_file(config: Option<&OtlpExport>, dir: Option<&Path>, signal: &str) -> Option<PathBuf> {
    if let Some(c) = config {
        return c.trusted_ca_file.as_ref().map(|f| match dir {
            Some(d) => d.join(f),
            None => PathBuf::from(f),
        });
    }
    var(&format!("OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE"))
        .or_else(|| var("OTEL_EXPORTER_OTLP_CERTIFICATE"))
        .map(PathBuf::from)
}

pub fn settings(
    config: Option<&OtlpExport>,
    dir: Option<&Path>,
) -> anyhow::Result<Option<OtlpSettings>> {
    let ca = ca_file(config, dir, "METRICS");
    let ca = ca.as_deref();
    if let Some(c) = config {
        let interval = Duration::from_secs(u64::from(c.interval_seconds));
        return OtlpSettings::from_base(&c.endpoint, interval, ca)
            .map(Some)
            .map_err(|e| anyhow!("Broker spec.diagnostics.metrics.otlp: {e}"));
    }
    let interval = millis("OTEL_METRIC_EXPORT_INTERVAL", Duration::from_secs(60))?;
    if let Some(url) = var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
        return OtlpSettings::from_metrics_url(&url, interval, ca)
            .map(Some)
            .map_err(|e| anyhow!("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: {e}"));
    }
    if let Some(url) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        return OtlpSettings::from_base(&url, interval, ca)
            .map(Some)
            .map_err(|e| anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"));
    }
    Ok(None)
}

/// The trace export of the Broker resource `broker` (from the folder `dir`), else of the
/// environment.
pub fn trace_settings(
    broker: Option<&BrokerSettings>,
    dir: Option<&Path>,
) -> anyhow::Result<Option<TraceSettings>> {
    let traces = broker.and_then(|b| b.traces.as_ref());
    let ca = ca_file(traces.map(|t| &t.otlp), dir, "TRACES");
    let ca = ca.as_deref();
    let base = |url: &str| format!("{}/v1/traces", url.trim_end_matches('/'));
    if let Some(t) = traces {
        let collector = Collector::new(&base(&t.otlp.endpoint), ca)
            .map_err(|e| anyhow!("Broker spec.diagnostics.traces.otlp: {e}"))?;
        return Ok(Some(TraceSettings {
            collector,
            interval: Duration::from_secs(u64::from(t.otlp.interval_seconds)),
            capacity: t.span_channel_capacity as usize,
        }));
    }
    if var("OTEL_TRACES_EXPORTER").is_some_and(|e| e.trim() == "none") {
        return Ok(None);
    }
    let (name, url) = match (
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        var("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url),
        (None, Some(url)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", base(&url)),
        (None, None) => return Ok(None),
    };
    let collector = Collector::new(&url, ca).map_err(|e| anyhow!("{name}: {e}"))?;
    let capacity = match var("OTEL_BSP_MAX_QUEUE_SIZE") {
        Some(n) => n
            .trim()
            .parse()
            .map_err(|_| anyhow!("OTEL_BSP_MAX_QUEUE_SIZE must be a number of spans, not `{n}`"))?,
        None => 2048,
    };
    Ok(Some(TraceSettings {
        collector,
        interval: millis("OTEL_BSP_SCHEDULE_DELAY", Duration::from_secs(5))?,
        capacity,
    }))
}
