//! Server outages: the simulator stops and comes back on the same port; the connector
//! reports the outage, reconnects on its own and subscribes again without duplicates.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::{
    client_config, dataset, distinct_values, event_arrives, events, seeded_pki, sim_config,
    wait_status, WAIT,
};
use edgeplane_opcua::client::{Connection, EndpointStatus};
use edgeplane_opcua::sim::{Sim, SimHandle};
use tempfile::TempDir;

const POINTS: [&str; 3] = ["Fast.Counter.0", "Fast.Sine.0", "Slow.Toggle.0"];

/// Waits until the simulator holds exactly `expected` monitored items, then checks the
/// number stays put for a while (a late duplicate would show up here).
async fn settled_monitored_items(sim: &SimHandle, expected: usize) -> Result<()> {
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
    for p in POINTS {
        let id = format!("ns=2;s={p}");
        ensure!(sim.monitored_items_on(&id) == 1, "{id} monitored once");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_same_port_is_reported_and_recovered_without_duplicates() -> Result<()> {
    let dir = TempDir::new()?;
    let sim_pki = seeded_pki("sim", &dir.path().join("sim-pki")).await?;
    let sim = Sim::start(sim_config(&sim_pki)).await?;
    let addr = sim.local_addr();
    let certificate = std::fs::read(sim.certificate_path())?;
    let client_pki = seeded_pki("client", &dir.path().join("client-pki")).await?;
    let mut cfg = client_config(sim.endpoint_url(), &client_pki);
    cfg.auto_accept_untrusted_server_certs = true;
    let (conn, mut rx) = Connection::start(cfg, vec![dataset("plc", &POINTS)], vec![events()])?;
    wait_status(&conn, "connected", |s| *s == EndpointStatus::Connected).await?;
    distinct_values(&mut rx, &POINTS[..2], 2).await?;
    // Three data points plus the event source.
    settled_monitored_items(&sim, POINTS.len() + 1).await?;

    sim.shutdown().await;
    let outage = wait_status(&conn, "the outage", |s| *s != EndpointStatus::Connected).await?;
    let status = wait_status(&conn, "an error naming the outage", |s| {
        matches!(s, EndpointStatus::Error(_))
    })
    .await?;
    ensure!(
        status.to_string().contains("cannot reach"),
        "status after outage ({outage}): {status}"
    );

    let mut restart = sim_config(&sim_pki);
    restart.bind = addr;
    let sim = Sim::start(restart).await?;
    ensure!(
        std::fs::read(sim.certificate_path())? == certificate,
        "the restarted simulator keeps its certificate"
    );
    wait_status(&conn, "reconnected", |s| *s == EndpointStatus::Connected).await?;
    while rx.try_recv().is_ok() {}
    let seen = distinct_values(&mut rx, &POINTS[..2], 3).await?;
    let counters = &seen["Fast.Counter.0"];
    ensure!(
        counters.windows(2).all(|w| w[0].value != w[1].value),
        "no value delivered twice after the restart: {:?}",
        counters.iter().map(|c| c.value.clone()).collect::<Vec<_>>()
    );
    settled_monitored_items(&sim, POINTS.len() + 1).await?;
    ensure!(
        conn.sessions_created() == 2,
        "one new session after the restart"
    );
    ensure!(
        event_arrives(&mut rx).await?,
        "events flow again after the restart"
    );

    // A clean shutdown deletes the subscriptions on the server.
    conn.shutdown().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while sim.monitored_items() != 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "subscriptions left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.shutdown().await;
    Ok(())
}
