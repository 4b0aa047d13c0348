//! Helpers shared by the OPC UA integration tests: a fast simulator configuration, client
//! settings with short backoffs, and waits that fail with a message instead of hanging.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use edgeplane_opcua::client::{
    Backoff, Connection, DataChange, DataPoint, Dataset, EndpointConfig, EndpointStatus,
    EventSource, Notification,
};
use edgeplane_opcua::sim::{NodeRate, Sim, SimConfig, SimHandle, SimSecurity};
use tokio::sync::{mpsc, OnceCell};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// Application instance certificates shared by the tests. RSA key generation takes seconds
/// in debug builds, so most tests start from copies of these (kept in the target's temp
/// directory and renewed after 30 days); the tests that check a certificate is created on
/// first start use empty PKI directories instead.
static SEED: OnceCell<PathBuf> = OnceCell::const_new();

async fn seed() -> Result<&'static PathBuf> {
    SEED.get_or_try_init(|| async {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmp.join("opcua-pki-seed");
        if seed_is_fresh(&dir) {
            return Ok(dir);
        }
        let staging = tmp.join(format!("opcua-pki-seed.{}", std::process::id()));
        let sim = Sim::start(sim_config(&staging.join("sim"))).await?;
        let client = client_config(sim.endpoint_url(), &staging.join("client"));
        drop(Connection::start(client, Vec::new(), Vec::new())?);
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::rename(&staging, &dir).is_err() {
            // Another test binary won the race; use its seed.
            let _ = std::fs::remove_dir_all(&staging);
        }
        Ok(dir)
    })
    .await
}

fn seed_is_fresh(dir: &Path) -> bool {
    ["sim", "client"].iter().all(|w| {
        std::fs::metadata(dir.join(w).join("own/cert.der"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(30 * 24 * 3600))
    })
}

/// A PKI directory at `dst` holding a copy of the seeded simulator (`"sim"`) or client
/// (`"client"`) certificate and key; nothing is trusted or rejected yet.
pub async fn seeded_pki(which: &str, dst: &Path) -> Result<PathBuf> {
    let src = seed().await?.join(which);
    for sub in ["own", "private"] {
        std::fs::create_dir_all(dst.join(sub))?;
        for entry in std::fs::read_dir(src.join(sub))? {
            let entry = entry?;
            std::fs::copy(entry.path(), dst.join(sub).join(entry.file_name()))?;
        }
    }
    Ok(dst.to_path_buf())
}

/// A simulator with the seeded server certificate, and the seeded client PKI folder, both
/// under `dir`.
pub async fn seeded_sim(dir: &Path) -> Result<(SimHandle, PathBuf)> {
    let sim = Sim::start(sim_config(&seeded_pki("sim", &dir.join("sim-pki")).await?)).await?;
    let pki = seeded_pki("client", &dir.join("client-pki")).await?;
    Ok((sim, pki))
}

/// A simulator on an ephemeral localhost port, values changing every 100 ms.
pub fn sim_config(pki: &Path) -> SimConfig {
    SimConfig {
        bind: "127.0.0.1:0".parse().expect("literal address"),
        pki_dir: pki.to_path_buf(),
        fast: NodeRate {
            count: 2,
            interval: Duration::from_millis(100),
        },
        slow: NodeRate {
            count: 1,
            interval: Duration::from_millis(500),
        },
        event_interval: Duration::from_millis(200),
        security: vec![SimSecurity::None, SimSecurity::Basic256Sha256SignAndEncrypt],
        ..SimConfig::default()
    }
}

/// Client settings with a short backoff so reconnects happen within the test's bounds.
pub fn client_config(url: &str, pki: &Path) -> EndpointConfig {
    let mut cfg = EndpointConfig::new(url, pki);
    cfg.reconnect = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(500),
    };
    cfg.keep_alive_interval = Duration::from_secs(1);
    cfg.request_timeout = Duration::from_secs(5);
    cfg
}

/// A dataset over the given simulator node names (`Fast.Sine.0` …), data points named
/// after the nodes.
pub fn dataset(name: &str, nodes: &[&str]) -> Dataset {
    Dataset {
        name: name.into(),
        publishing_interval: Duration::from_millis(100),
        data_points: nodes
            .iter()
            .map(|n| DataPoint {
                name: (*n).into(),
                node_id: format!("nsu={};s={n}", edgeplane_opcua::sim::NAMESPACE_URI),
                sampling_interval: Duration::from_millis(100),
                queue_size: 10,
            })
            .collect(),
    }
}

/// The simulator's event source.
pub fn events() -> EventSource {
    EventSource {
        name: "alarms".into(),
        node_id: "ns=2;s=Special.Events".into(),
        publishing_interval: Duration::from_millis(100),
        queue_size: 100,
    }
}

/// Waits until the status satisfies `pred`, returning it.
pub async fn wait_status(
    conn: &Connection,
    what: &str,
    pred: impl Fn(&EndpointStatus) -> bool,
) -> Result<EndpointStatus> {
    let mut rx = conn.watch_status();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let current = rx.borrow_and_update().clone();
            if pred(&current) {
                return Ok(current);
            }
            if rx.changed().await.is_err() {
                bail!("connection stopped while waiting for {what}");
            }
        }
    })
    .await;
    match found {
        Ok(r) => r,
        Err(_) => bail!("timed out waiting for {what}; status is {}", conn.status()),
    }
}

/// Collects data changes until every named data point has shown at least `distinct`
/// different values; returns them by data point.
pub async fn distinct_values(
    rx: &mut mpsc::Receiver<Notification>,
    points: &[&str],
    distinct: usize,
) -> Result<HashMap<String, Vec<DataChange>>> {
    let mut seen: HashMap<String, Vec<DataChange>> = HashMap::new();
    let done = |seen: &HashMap<String, Vec<DataChange>>| {
        points.iter().all(|p| {
            seen.get(*p).is_some_and(|v| {
                v.iter()
                    .map(|c| c.value.to_string())
                    .collect::<HashSet<_>>()
                    .len()
                    >= distinct
            })
        })
    };
    tokio::time::timeout(WAIT, async {
        while !done(&seen) {
            match rx.recv().await.context("notification channel closed")? {
                Notification::Data { changes, .. } => {
                    for c in changes {
                        seen.entry(c.data_point.to_string()).or_default().push(c);
                    }
                }
                Notification::Event(_) => {}
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .with_context(|| {
        let got: Vec<String> = seen
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.len()))
            .collect();
        format!("timed out waiting for {distinct} distinct values of {points:?}; got {got:?}")
    })??;
    Ok(seen)
}

/// Whether an event notification arrives within [`WAIT`] (data notifications are skipped).
pub async fn event_arrives(rx: &mut mpsc::Receiver<Notification>) -> Result<bool> {
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Some(Notification::Event(_)) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await?;
    Ok(seen)
}
