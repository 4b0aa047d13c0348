//! One connection spread over several OPC UA sessions (`EndpointConfig::sessions`): every
//! dataset is subscribed once on exactly one session, the endpoint reports one status
//! (connected only when every session is), an outage and a restart of the server are
//! reported and recovered on every session without duplicate subscriptions, and a wrong
//! password or an untrusted server certificate still give one clear status.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::{
    client_config, dataset, distinct_values, event_arrives, events, seeded_pki, seeded_sim,
    sim_config, wait_status, WAIT,
};
use edgeplane_opcua::client::{
    rejected_certificates, trust, Auth, Connection, Dataset, EndpointStatus, Notification,
    Security, SecurityMode, SecurityPolicy,
};
use edgeplane_opcua::sim::{Sim, SimHandle, SimUser};
use tempfile::TempDir;

/// Three datasets of two data points each; the counters show order and duplicates.
const DATASETS: [(&str, [&str; 2]); 3] = [
    ("a", ["Fast.Counter.0", "Fast.Sine.0"]),
    ("b", ["Fast.Counter.1", "Fast.Random.0"]),
    ("c", ["Fast.Sine.1", "Slow.Counter.0"]),
];

fn datasets() -> Vec<Dataset> {
    DATASETS.iter().map(|(n, p)| dataset(n, p)).collect()
}

fn all_points() -> Vec<&'static str> {
    DATASETS.iter().flat_map(|(_, p)| *p).collect()
}

/// Waits until the simulator holds exactly one monitored item per data point and the
/// event source, and still does half a second later (a late duplicate would show here).
async fn one_item_per_node(sim: &SimHandle) -> Result<()> {
    let expected = all_points().len() + 1;
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.monitored_items() != expected {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "simulator holds {} monitored items, expected {expected}",
            sim.monitored_items()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        sim.monitored_items() == expected,
        "simulator holds {} monitored items after settling, expected {expected}",
        sim.monitored_items()
    );
    for p in all_points().into_iter().chain(["Special.Events"]) {
        let id = format!("ns=2;s={p}");
        ensure!(sim.monitored_items_on(&id) == 1, "{id} monitored once");
    }
    Ok(())
}

/// Collects data until every point showed `distinct` values; checks each change came
/// under its own dataset and each counter only moved forward.
async fn data_of_every_dataset(
    rx: &mut tokio::sync::mpsc::Receiver<Notification>,
    distinct: usize,
) -> Result<()> {
    let owner: HashMap<&str, &str> = DATASETS
        .iter()
        .flat_map(|(d, points)| points.iter().map(move |p| (*p, *d)))
        .collect();
    let seen = distinct_values(rx, &all_points(), distinct).await?;
    for (point, changes) in &seen {
        for c in changes {
            ensure!(
                owner.get(point.as_str()) == Some(&&*c.dataset),
                "{point} arrived under dataset {}",
                c.dataset
            );
        }
        if point.contains("Counter") {
            let values: Vec<u64> = changes.iter().filter_map(|c| c.value.as_u64()).collect();
            ensure!(
                values.windows(2).all(|w| w[1] > w[0]),
                "{point} went backwards or repeated: {values:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sessions_subscribe_once_and_recover_from_a_restart() -> Result<()> {
    let dir = TempDir::new()?;
    let sim_pki = seeded_pki("sim", &dir.path().join("sim-pki")).await?;
    let sim = Sim::start(sim_config(&sim_pki)).await?;
    let addr = sim.local_addr();
    let client_pki = seeded_pki("client", &dir.path().join("client-pki")).await?;
    let mut cfg = client_config(sim.endpoint_url(), &client_pki);
    cfg.auto_accept_untrusted_server_certs = true;
    cfg.sessions = 3;
    let (conn, mut rx) = Connection::start(cfg, datasets(), vec![events()])?;
    wait_status(&conn, "connected", |s| *s == EndpointStatus::Connected).await?;
    ensure!(
        conn.sessions_created() == 3,
        "connected means all three sessions are up: {} created",
        conn.sessions_created()
    );
    data_of_every_dataset(&mut rx, 2).await?;
    one_item_per_node(&sim).await?;

    sim.shutdown().await;
    let status = wait_status(&conn, "an error naming the outage", |s| {
        matches!(s, EndpointStatus::Error(_))
    })
    .await?;
    ensure!(
        status.to_string().contains("cannot reach"),
        "status after the outage: {status}"
    );

    let mut restart = sim_config(&sim_pki);
    restart.bind = addr;
    let sim = Sim::start(restart).await?;
    wait_status(&conn, "reconnected", |s| *s == EndpointStatus::Connected).await?;
    ensure!(
        conn.sessions_created() == 6,
        "each session opened exactly one new server session: {} created",
        conn.sessions_created()
    );
    while rx.try_recv().is_ok() {}
    data_of_every_dataset(&mut rx, 3).await?;
    one_item_per_node(&sim).await?;
    ensure!(
        event_arrives(&mut rx).await?,
        "events flow again after the restart"
    );

    // A clean shutdown deletes every session's subscriptions on the server.
    conn.shutdown().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.monitored_items() != 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "subscriptions left behind: {}",
            sim.monitored_items()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_on_several_sessions_is_one_clear_error() -> Result<()> {
    let dir = TempDir::new()?;
    let mut sim_cfg = sim_config(&seeded_pki("sim", &dir.path().join("sim-pki")).await?);
    sim_cfg.allow_anonymous = false;
    sim_cfg.users = vec![SimUser {
        username: "operator".into(),
        password: "s3cret".into(),
    }];
    let sim = Sim::start(sim_cfg).await?;
    let pki = seeded_pki("client", &dir.path().join("client-pki")).await?;
    let mut cfg = client_config(sim.endpoint_url(), &pki);
    cfg.security = Security::Require(SecurityMode::None, SecurityPolicy::None);
    cfg.sessions = 2;
    cfg.auth = Auth::UsernamePassword {
        username: "operator".into(),
        password: "wrong".into(),
    };
    let (conn, mut rx) = Connection::start(cfg, datasets(), vec![])?;
    let status = wait_status(&conn, "an error", |s| matches!(s, EndpointStatus::Error(_))).await?;
    ensure!(
        status.to_string().contains("bad user or password"),
        "status: {status}"
    );
    // Retries keep failing; the endpoint never claims to be connected and sends nothing.
    let later = tokio::time::timeout(Duration::from_secs(2), async {
        let mut watch = conn.watch_status();
        while watch.changed().await.is_ok() {
            if *watch.borrow() == EndpointStatus::Connected {
                return true;
            }
        }
        false
    })
    .await;
    ensure!(
        !matches!(later, Ok(true)),
        "connected with a wrong password"
    );
    ensure!(conn.sessions_created() == 0, "no server session opened");
    ensure!(rx.try_recv().is_err(), "no data with a wrong password");
    conn.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_on_several_sessions_is_saved_once_and_trusting_it_connects_all(
) -> Result<()> {
    let dir = TempDir::new()?;
    let (sim, pki) = seeded_sim(dir.path()).await?;
    let mut cfg = client_config(sim.endpoint_url(), &pki);
    cfg.sessions = 2;
    let (conn, mut rx) = Connection::start(cfg, datasets(), vec![])?;
    let status = wait_status(&conn, "an error", |s| matches!(s, EndpointStatus::Error(_))).await?;
    let text = status.to_string();
    ensure!(
        text.contains("server certificate not trusted: saved to"),
        "status: {text}"
    );
    let rejected = rejected_certificates(&pki)?;
    ensure!(
        rejected.len() == 1,
        "one rejected certificate for both sessions: {rejected:?}"
    );
    trust(&pki, &rejected[0].thumbprint)?;
    wait_status(&conn, "connected", |s| *s == EndpointStatus::Connected).await?;
    ensure!(conn.sessions_created() == 2, "both sessions up");
    data_of_every_dataset(&mut rx, 2).await?;
    ensure!(
        !matches!(conn.status(), EndpointStatus::Error(_)),
        "{}",
        conn.status()
    );
    conn.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
