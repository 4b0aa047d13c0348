//! The connector against the simulator over real sockets: values from several node kinds,
//! events, the identities, and the error statuses a user sees when something is wrong.

mod common;

use anyhow::{ensure, Context, Result};
use common::{
    client_config, dataset, distinct_values, events, seeded_pki, seeded_sim, sim_config,
    wait_status, WAIT,
};
use edgeplane_opcua::client::{
    rejected_certificates, trust, Auth, Connection, EndpointStatus, Notification, Security,
    SecurityMode, SecurityPolicy,
};
use edgeplane_opcua::sim::{Sim, SimUser};
use tempfile::TempDir;

const KINDS: [&str; 5] = [
    "Fast.Counter.0",
    "Fast.Sine.1",
    "Fast.Toggle.0",
    "Fast.Trend.0",
    "Fast.Random.0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_most_secure_receives_values_bad_status_and_events() -> Result<()> {
    // Empty PKI directories: both sides create their certificates on first start.
    let dir = TempDir::new()?;
    let sim = Sim::start(sim_config(&dir.path().join("sim-pki"))).await?;
    ensure!(
        sim.certificate_path().exists(),
        "simulator certificate created"
    );
    let client_pki = dir.path().join("client-pki");
    let mut cfg = client_config(sim.endpoint_url(), &client_pki);
    cfg.auto_accept_untrusted_server_certs = true;
    let mut points: Vec<&str> = KINDS.to_vec();
    points.push("Special.Bad");
    let (conn, mut rx) = Connection::start(cfg, vec![dataset("plc", &points)], vec![events()])?;
    wait_status(&conn, "connected", |s| *s == EndpointStatus::Connected).await?;

    let seen = distinct_values(&mut rx, &KINDS, 2).await?;
    ensure!(
        seen["Fast.Toggle.0"].iter().any(|c| c.value == true)
            && seen["Fast.Toggle.0"].iter().any(|c| c.value == false),
        "toggle flips"
    );
    for change in seen.values().flatten() {
        ensure!(change.dataset.as_ref() == "plc", "dataset name carried");
        ensure!(
            change.source_timestamp.is_some(),
            "source timestamp carried"
        );
    }
    let mut bad = None;
    let mut event = None;
    tokio::time::timeout(WAIT, async {
        while bad.is_none() || event.is_none() {
            match rx.recv().await {
                Some(Notification::Data { changes, .. }) => {
                    if let Some(c) = changes
                        .into_iter()
                        .find(|c| c.data_point.as_ref() == "Special.Bad")
                    {
                        bad = Some(c);
                    }
                }
                Some(Notification::Event(e)) => event = Some(e),
                None => break,
            }
        }
    })
    .await
    .context("bad-status value and event")?;
    let bad = bad.context("bad node value")?;
    ensure!(bad.status.is_bad(), "bad node reports {}", bad.status);
    ensure!(bad.status.symbol() == "BadSensorFailure", "{}", bad.status);
    let event = event.context("event")?;
    ensure!(event.source.as_ref() == "alarms");
    let message = event.fields["Message"].as_str().unwrap_or_default();
    ensure!(
        message.starts_with("simulated event"),
        "message {message:?}"
    );
    ensure!(event.fields["SourceName"] == "Special.Events");
    ensure!(event.time.is_some());
    conn.shutdown().await;

    // The certificate is kept: a second connection with the same PKI reuses it, and the
    // auto-accepted server certificate is now in the trust list.
    let own = client_pki.join("own/cert.der");
    let before = std::fs::read(&own)?;
    let cfg = client_config(sim.endpoint_url(), &client_pki);
    let (conn, _rx) = Connection::start(cfg, vec![dataset("plc", &KINDS[..1])], vec![])?;
    wait_status(&conn, "connected", |s| *s == EndpointStatus::Connected).await?;
    ensure!(std::fs::read(&own)? == before, "client certificate kept");
    conn.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

async fn user_sim_config(dir: &TempDir) -> Result<edgeplane_opcua::sim::SimConfig> {
    let mut cfg = sim_config(&seeded_pki("sim", &dir.path().join("sim-pki")).await?);
    cfg.allow_anonymous = false;
    cfg.users = vec![SimUser {
        username: "operator".into(),
        password: "s3cret".into(),
    }];
    Ok(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_password_receives_values() -> Result<()> {
    let dir = TempDir::new()?;
    let sim = Sim::start(user_sim_config(&dir).await?).await?;
    let pki = seeded_pki("client", &dir.path().join("client-pki")).await?;
    let mut cfg = client_config(sim.endpoint_url(), &pki);
    cfg.security = Security::Require(SecurityMode::None, SecurityPolicy::None);
    cfg.auth = Auth::UsernamePassword {
        username: "operator".into(),
        password: "s3cret".into(),
    };
    let (conn, mut rx) = Connection::start(cfg, vec![dataset("plc", &KINDS[..2])], vec![])?;
    wait_status(&conn, "connected", |s| *s == EndpointStatus::Connected).await?;
    distinct_values(&mut rx, &KINDS[..2], 3).await?;
    conn.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_anonymous_give_clear_statuses() -> Result<()> {
    let dir = TempDir::new()?;
    let sim = Sim::start(user_sim_config(&dir).await?).await?;
    let pki = seeded_pki("client", &dir.path().join("client-pki")).await?;
    let mut cfg = client_config(sim.endpoint_url(), &pki);
    cfg.security = Security::Require(SecurityMode::None, SecurityPolicy::None);
    cfg.auth = Auth::UsernamePassword {
        username: "operator".into(),
        password: "wrong".into(),
    };
    let (conn, _rx) = Connection::start(cfg.clone(), vec![dataset("plc", &KINDS[..1])], vec![])?;
    let status = wait_status(&conn, "an error", |s| matches!(s, EndpointStatus::Error(_))).await?;
    ensure!(
        status.to_string().contains("bad user or password"),
        "status: {status}"
    );
    conn.shutdown().await;

    cfg.auth = Auth::Anonymous;
    let (conn, _rx) = Connection::start(cfg, vec![dataset("plc", &KINDS[..1])], vec![])?;
    let status = wait_status(&conn, "an error", |s| matches!(s, EndpointStatus::Error(_))).await?;
    ensure!(
        status.to_string().contains("does not accept anonymous"),
        "status: {status}"
    );
    conn.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_server_certificate_is_saved_and_trusting_it_connects() -> Result<()> {
    let dir = TempDir::new()?;
    let (sim, pki) = seeded_sim(dir.path()).await?;
    let cfg = client_config(sim.endpoint_url(), &pki);
    let (conn, mut rx) = Connection::start(cfg, vec![dataset("plc", &KINDS[..1])], vec![])?;

    let status = wait_status(&conn, "an error", |s| matches!(s, EndpointStatus::Error(_))).await?;
    let text = status.to_string();
    ensure!(
        text.contains("server certificate not trusted: saved to") && text.contains("rejected"),
        "status: {text}"
    );
    let rejected = rejected_certificates(&pki)?;
    ensure!(
        rejected.len() == 1,
        "one rejected certificate: {rejected:?}"
    );
    ensure!(
        text.contains(&*rejected[0].path.to_string_lossy()),
        "status names the file"
    );

    let trusted = trust(&pki, &rejected[0].thumbprint)?;
    ensure!(trusted.starts_with(pki.join("trusted")));
    ensure!(
        rejected_certificates(&pki)?.is_empty(),
        "moved out of rejected/"
    );
    wait_status(&conn, "connected", |s| *s == EndpointStatus::Connected).await?;
    distinct_values(&mut rx, &KINDS[..1], 2).await?;
    conn.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

/// Points the server refuses, or whose namespace it does not know, sit between good ones:
/// each refusal names its point, and every good value still lands on its own point (the
/// callback finds points by client handle), with its position and source timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_points_between_good_ones_keep_every_value_on_its_point() -> Result<()> {
    let dir = TempDir::new()?;
    let (sim, pki) = seeded_sim(dir.path()).await?;
    let mut cfg = client_config(sim.endpoint_url(), &pki);
    cfg.security = Security::Require(SecurityMode::None, SecurityPolicy::None);
    let mut ds = dataset("plc", &["Fast.Counter.0", "Fast.Sine.1", "Fast.Toggle.0"]);
    let mut missing = ds.data_points[0].clone();
    missing.name = "missing".into();
    missing.node_id = "ns=2;s=Fast.Nothing.0".into();
    let mut elsewhere = ds.data_points[0].clone();
    elsewhere.name = "elsewhere".into();
    elsewhere.node_id = "nsu=urn:not-on-this-server;s=X".into();
    // Order: Counter, missing (refused by the server), Sine, elsewhere (refused before
    // asking), Toggle.
    ds.data_points.insert(1, missing);
    ds.data_points.insert(3, elsewhere);
    let (conn, mut rx) = Connection::start(cfg, vec![ds], vec![])?;
    wait_status(&conn, "connected", |s| *s == EndpointStatus::Connected).await?;
    let good = ["Fast.Counter.0", "Fast.Sine.1", "Fast.Toggle.0"];
    let mut points = good.to_vec();
    points.extend(["missing", "elsewhere"]);
    let seen = distinct_values(&mut rx, &points, 1).await?;
    for refused in ["missing", "elsewhere"] {
        let c = &seen[refused][0];
        ensure!(
            c.status.symbol() == "BadNodeIdUnknown" && c.value.is_null(),
            "{refused}: {:?}",
            c
        );
    }
    ensure!(seen["missing"][0].index == 1 && seen["elsewhere"][0].index == 3);
    let seen = distinct_values(&mut rx, &good, 2).await?;
    for (point, index) in good.iter().zip([0u32, 2, 4]) {
        for c in &seen[*point] {
            ensure!(c.index == index, "{point} at position {}", c.index);
            ensure!(c.status.is_good() && c.source_timestamp.is_some(), "{c:?}");
        }
    }
    ensure!(
        seen["Fast.Counter.0"].iter().all(|c| c.value.is_u64()),
        "counter values"
    );
    ensure!(
        seen["Fast.Sine.1"].iter().all(|c| c.value.is_f64()),
        "sine values"
    );
    ensure!(
        seen["Fast.Toggle.0"].iter().all(|c| c.value.is_boolean()),
        "toggle values"
    );
    conn.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
