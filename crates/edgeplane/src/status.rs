//! `edgeplane status`: one screen of health for a running instance, read from its HTTP API
//! (`/readyz` and two scrapes of `/metrics` a second apart, for rates).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Print the status; `Ok(false)` when the instance answers but is not ready.
pub async fn run(http: SocketAddr) -> anyhow::Result<bool> {
    let (code, ready) = get(http, "/readyz").await?;
    let first = metrics(&get(http, "/metrics").await?.1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = metrics(&get(http, "/metrics").await?.1);
    let v = |name: &str| second.get(name).copied().unwrap_or(0.0);
    let rate = |name: &str| v(name) - first.get(name).copied().unwrap_or(0.0);
    let state = if code == 200 { "ready" } else { "NOT READY" };
    println!(
        "Edgeplane {} at {http}: {state}, up {}",
        version(&second),
        uptime(v("edgeplane_uptime_seconds"))
    );
    for line in ready.lines().filter(|l| l.starts_with("[")) {
        println!("  {line}");
    }
    println!(
        "clients      {} connected, {} sessions, {} at most",
        v("aio_broker_connected_sessions"),
        v("aio_broker_total_sessions"),
        v("edgeplane_clients_maximum")
    );
    println!(
        "messages     {} received ({}/s), {} sent ({}/s)",
        v("aio_broker_publishes_received_total"),
        rate("aio_broker_publishes_received_total"),
        v("aio_broker_publishes_sent_total"),
        rate("aio_broker_publishes_sent_total")
    );
    println!(
        "routing      {} subscriptions, {} retained messages",
        v("aio_broker_total_subscriptions"),
        v("aio_broker_store_retained_messages")
    );
    let drops: Vec<String> = ["queue_full", "expired", "oversize", "qos0_offline"]
        .iter()
        .map(|c| {
            format!(
                "{c} {}",
                v(&format!(
                    "edgeplane_messages_dropped_total{{cause=\"{c}\"}}"
                ))
            )
        })
        .collect();
    println!("dropped      {}", drops.join(", "));
    println!(
        "self-check   {} runs, {} failed, last round trip {:.2} ms",
        v("edgeplane_selfcheck_runs_total"),
        v("edgeplane_selfcheck_failures_total"),
        v("edgeplane_selfcheck_latency_seconds") * 1000.0
    );
    Ok(code == 200)
}

/// A GET over HTTP/1.0 (the body ends when the server closes).
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let io = async {
        let mut s = TcpStream::connect(addr).await.with_context(|| {
            format!("cannot reach the HTTP API at {addr}; is `edgeplane run` serving --http there?")
        })?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(|_| anyhow!("{addr}{path}: no answer within 10 s"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{addr}{path}: not an HTTP answer"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("{addr}{path}: no status code"))?;
    Ok((code, body.to_owned()))
}

/// Samples of a Prometheus exposition, keyed by name with labels as written.
fn metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn version(m: &HashMap<String, f64>) -> String {
    m.keys()
        .find_map(|k| {
            k.strip_prefix("edgeplane_build_info{version=\"")?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

fn uptime(secs: f64) -> String {
    let s = secs as u64;
    match (s / 86_400, s / 3600 % 24, s / 60 % 60) {
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}
