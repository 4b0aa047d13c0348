//! OTLP export of the metrics: every interval, the same families `/metrics` serves are sent
//! to an OpenTelemetry collector as an `ExportMetricsServiceRequest`, OTLP/HTTP with the JSON
//! encoding (`POST <endpoint>/v1/metrics`, `Content-Type: application/json`), which every
//! collector's `otlp` receiver accepts on port 4318.
//!
//! Counters become cumulative monotonic sums named without Prometheus' `_total` suffix (the
//! OpenTelemetry convention; a collector's Prometheus exporter adds it back), gauges become
//! gauges; labels become attributes. The resource says `service.name` `edgeplane`, the
//! version and the host. A collector that is down or refuses the request costs one log
//! line (and one when it accepts again); samples are cumulative, so the next export after
//! an outage carries everything.
//!
//! `https://` collectors are checked against a configured CA file or the system's roots
//! (see [`crate::otlp_http`]).
//!
//! The exposition text is parsed rather than read from the counters a second time, so the
//! two views cannot disagree: one renderer, two encodings.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::path::Path;

use serde_json::{json, Value};

use crate::otlp_http::Collector;

/// Where and how often to export.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The collector, at the full URL requests go to (`http://host:port/v1/metrics`).
    pub collector: Collector,
    pub interval: Duration,
}

impl OtlpSettings {
    /// From a collector's base URL (`http://collector:4318`): `/v1/metrics` is appended, as
    /// the OpenTelemetry specification says for `OTEL_EXPORTER_OTLP_ENDPOINT`. `ca_file`:
    /// the CA certificates an `https://` collector is checked against (else the system's).
    ///
    /// # Errors
    /// Not an `http://` or `https://` URL with a host, or no CA certificate to trust.
    pub fn from_base(
        endpoint: &str,
        interval: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let url = format!("{}/v1/metrics", endpoint.trim_end_matches('/'));
        Self::from_metrics_url(&url, interval, ca_file)
    }

    /// From the URL used as it is (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
    ///
    /// # Errors
    /// As [`OtlpSettings::from_base`].
    pub fn from_metrics_url(
        url: &str,
        interval: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        Ok(OtlpSettings {
            collector: Collector::new(url, ca_file)?,
            interval: interval.max(Duration::from_secs(1)),
        })
    }
}

/// Export `render()`'s families every interval until the task is aborted.
pub(crate) async fn run(settings: OtlpSettings, render: impl Fn() -> String) {
    let start = unix_nanos(SystemTime::now());
    let host = host_name();
    let url = settings.collector.url().to_owned();
    let mut failing = false;
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let body = encode(
            &parse(&render()),
            start,
            unix_nanos(SystemTime::now()),
            &host,
        );
        let sent = tokio::time::timeout(Duration::from_secs(10), settings.collector.post(body))
            .await
            .unwrap_or_else(|_| Err("no answer within 10 s".into()));
        match sent {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(%url, "otlp metrics export works again");
            }
            Ok(()) => {}
            Err(why) if !failing => {
                failing = true;
                tracing::warn!(%url, error = %why, "otlp metrics export failed; retrying every interval");
            }
            Err(_) => {}
        }
    }
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family of the exposition text.
#[derive(Debug, PartialEq)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<(Vec<(String, String)>, f64)>,
}

/// Families of a text exposition (what [`crate::metrics`] and the components write:
/// `# HELP`, `# TYPE` counter|gauge, then samples). Lines that do not parse are skipped.
fn parse(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    let mut help = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest
                .split_once(' ')
                .map(|(_, h)| unescape(h))
                .unwrap_or_default();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                continue;
            };
            let kind = match kind.trim() {
                "counter" => Kind::Counter,
                _ => Kind::Gauge,
            };
            families.push(Family {
                name: name.to_owned(),
                help: std::mem::take(&mut help),
                kind,
                samples: Vec::new(),
            });
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            if let (Some(f), Some(sample)) = (families.last_mut(), sample(line)) {
                if sample.0 == f.name {
                    f.samples.push((sample.1, sample.2));
                }
            }
        }
    }
    families
}

type Labels = Vec<(String, String)>;

/// `name{a="x",b="y"} value` (labels optional; values escape `\\`, `\"` and `\n`).
fn sample(line: &str) -> Option<(String, Labels, f64)> {
    let split = line.find(['{', ' '])?;
    let name = &line[..split];
    let mut rest = &line[split..];
    let mut labels = Vec::new();
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = body.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            };
            labels.push((key.trim().to_owned(), value));
            body = &after[end + 1..];
        }
    }
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    Some((name.to_owned(), labels, value))
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\\\", "\\")
}

fn attributes(pairs: &[(String, String)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect(),
    )
}

/// The `ExportMetricsServiceRequest` in OTLP's JSON encoding (64-bit integers as strings,
/// enums as numbers, lowerCamelCase field names).
fn encode(families: &[Family], start: u128, now: u128, host: &str) -> Vec<u8> {
    let metrics: Vec<Value> = families
        .iter()
        .map(|f| {
            let points: Vec<Value> = f
                .samples
                .iter()
                .map(|(labels, value)| {
                    let mut p = json!({
                        "attributes": attributes(labels),
                        "startTimeUnixNano": start.to_string(),
                        "timeUnixNano": now.to_string(),
                    });
                    if value.fract() == 0.0 && value.abs() < 9.0e15 {
                        // Whole numbers up to 2^53 are exact in f64.
                        p["asInt"] = Value::String(format!("{}", *value as i64));
                    } else {
                        p["asDouble"] = json!(value);
                    }
                    p
                })
                .collect();
            match f.kind {
                Kind::Counter => json!({
                    "name": f.name.strip_suffix("_total").unwrap_or(&f.name),
                    "description": f.help,
                    // 2 = AGGREGATION_TEMPORALITY_CUMULATIVE.
                    "sum": {"dataPoints": points, "aggregationTemporality": 2, "isMonotonic": true},
                }),
                Kind::Gauge => json!({
                    "name": f.name,
                    "description": f.help,
                    "gauge": {"dataPoints": points},
                }),
            }
        })
        .collect();
    let resource = [
        ("service.name".to_owned(), "edgeplane".to_owned()),
        (
            "service.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        ("host.name".to_owned(), host.to_owned()),
    ];
    let request = json!({
        "resourceMetrics": [{
            "resource": {"attributes": attributes(&resource)},
            "scopeMetrics": [{
                "scope": {"name": "edgeplane", "version": env!("CARGO_PKG_VERSION")},
                "metrics": metrics,
            }],
        }],
    });
    request.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP a_total Things \\\\ done.\n# TYPE a_total counter\na_total 7\n\
        # HELP b Now.\n# TYPE b gauge\nb{cause=\"x \\\"y\\\"\",mqtt_version=\"5\"} 0.25\n\
        b{cause=\"z\"} 3\n";

    #[test]
    fn parses_families_labels_and_escapes() {
        let f = parse(TEXT);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "a_total");
        assert_eq!(f[0].help, "Things \\ done.");
        assert_eq!(f[0].kind, Kind::Counter);
        assert_eq!(f[0].samples, vec![(vec![], 7.0)]);
        assert_eq!(
            f[1].samples[0],
            (
                vec![
                    ("cause".to_owned(), "x \"y\"".to_owned()),
                    ("mqtt_version".to_owned(), "5".to_owned())
                ],
                0.25
            )
        );
        assert_eq!(f[1].samples[1].1, 3.0);
    }

    #[test]
    fn counters_are_cumulative_sums_without_the_suffix() {
        let body = encode(&parse(TEXT), 1, 2, "box");
        let v: Value = serde_json::from_slice(&body).expect("json");
        let m = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
        assert_eq!(m[0]["name"], "a");
        assert_eq!(m[0]["sum"]["isMonotonic"], true);
        assert_eq!(m[0]["sum"]["dataPoints"][0]["asInt"], "7");
        assert_eq!(m[1]["gauge"]["dataPoints"][0]["asDouble"], 0.25);
        assert_eq!(m[1]["gauge"]["dataPoints"][1]["asInt"], "3");
    }

    #[test]
    fn urls_get_the_metrics_path() {
        let ok = OtlpSettings::from_base("http://127.0.0.1:4318/", Duration::from_secs(5), None);
        assert_eq!(
            ok.map(|s| s.collector.url().to_owned()),
            Ok("http://127.0.0.1:4318/v1/metrics".to_owned())
        );
        assert!(OtlpSettings::from_metrics_url("c:4318", Duration::from_secs(5), None).is_err());
    }
}
