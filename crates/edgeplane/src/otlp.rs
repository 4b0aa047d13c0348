//! Which OpenTelemetry collector the metrics go to: the Broker's
//! `diagnostics.metrics.otlp`, else the OpenTelemetry SDK environment variables operators
//! already use (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` as it is, or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/metrics`; `OTEL_METRIC_EXPORT_INTERVAL` in
//! milliseconds, 60 s by default as the specification says), else none.

use std::time::Duration;

use anyhow::anyhow;
use edgeplane_config::OtlpExport;
use edgeplane_portal::OtlpSettings;

pub fn settings(config: Option<&OtlpExport>) -> anyhow::Result<Option<OtlpSettings>> {
    if let Some(c) = config {
        let interval = Duration::from_secs(u64::from(c.interval_seconds));
        return OtlpSettings::from_base(&c.endpoint, interval)
            .map(Some)
            .map_err(|e| anyhow!("Broker spec.diagnostics.metrics.otlp.endpoint: {e}"));
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let interval = match var("OTEL_METRIC_EXPORT_INTERVAL") {
        Some(ms) => Duration::from_millis(ms.trim().parse().map_err(|_| {
            anyhow!("OTEL_METRIC_EXPORT_INTERVAL must be a number of milliseconds, not `{ms}`")
        })?),
        None => Duration::from_secs(60),
    };
    if let Some(url) = var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
        return OtlpSettings::from_metrics_url(&url, interval)
            .map(Some)
            .map_err(|e| anyhow!("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: {e}"));
    }
    if let Some(url) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        return OtlpSettings::from_base(&url, interval)
            .map(Some)
            .map_err(|e| anyhow!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"));
    }
    Ok(None)
}
