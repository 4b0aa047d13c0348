//! The self-check probe: an in-process session that periodically publishes a QoS 1 message to
//! a reserved `$edgeplane/selfcheck/...` topic and waits for its own delivery, so the full
//! path (router, subscription matching, queues, acknowledgements) is exercised the way
//! clients use it. Being a `$` topic, the probe is invisible to `#` subscribers. Results are
//! published on a watch channel (for readiness) and counted in [`Stats`].

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeplane_codec::{Properties, Publish, QoS, SubOptions};
use tokio::sync::watch;

use crate::local::{LocalClient, LocalOptions};
use crate::stats::Stats;
use crate::Broker;

/// The probe's reserved topic prefix.
pub const SELF_CHECK_TOPIC: &str = "$edgeplane/selfcheck";

/// How long the probe's session outlives a stopped broker before it expires.
const PROBE_SESSION_EXPIRY_SECS: u32 = 300;

#[derive(Debug, Clone, Copy)]
pub struct SelfCheckSettings {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for SelfCheckSettings {
    /// Azure IoT Operations' defaults: every 30 s, 15 s to answer.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(15),
        }
    }
}

/// The outcome of the latest probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeStatus {
    /// No probe has completed yet.
    Pending,
    Passed {
        latency: Duration,
    },
    Failed {
        reason: String,
    },
}

impl Broker {
    /// Start the self-check probe; the receiver sees every probe's outcome.
    pub fn start_self_check(&self, settings: SelfCheckSettings) -> watch::Receiver<ProbeStatus> {
        let (tx, rx) = watch::channel(ProbeStatus::Pending);
        let broker_ctx = self.local_factory();
        let stats = self.stats_handle();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(settings.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut client: Option<LocalClient> = None;
            let mut seq: u64 = 0;
            loop {
                tick.tick().await;
                seq += 1;
                let status = match probe(&broker_ctx, &mut client, seq, settings.timeout).await {
                    Ok(latency) => {
                        stats
                            .selfcheck_latency_us
                            .store(latency.as_micros() as u64, Relaxed);
                        ProbeStatus::Passed { latency }
                    }
                    Err(reason) => {
                        Stats::add(&stats.selfcheck_failures, 1);
                        client = None; // start over with a fresh session next time
                        tracing::warn!(%reason, "self-check failed");
                        ProbeStatus::Failed { reason }
                    }
                };
                Stats::add(&stats.selfcheck_runs, 1);
                if tx.send(status).is_err() {
                    return; // nobody listens any more
                }
            }
        });
        rx
    }
}

async fn probe(
    factory: &crate::LocalFactory,
    client: &mut Option<LocalClient>,
    seq: u64,
    timeout: Duration,
) -> Result<Duration, String> {
    let round = async {
        if client.is_none() {
            // A persistent session, as plant clients use: with a data folder its queued
            // probe is written to the durable store, so a store that cannot write makes the
            // probe fail. Clean start replaces whatever an earlier run left.
            let options = LocalOptions {
                session_expiry: PROBE_SESSION_EXPIRY_SECS,
                ..LocalOptions::new("$edgeplane-selfcheck")
            };
            let mut c = factory.attach(options).await.map_err(|e| e.to_string())?;
            c.subscribe(
                &format!("{SELF_CHECK_TOPIC}/#"),
                SubOptions::new(QoS::AtLeastOnce),
            )
            .await
            .map_err(|e| e.to_string())?;
            *client = Some(c);
        }
        let Some(c) = client.as_mut() else {
            return Err("no probe session".to_owned());
        };
        let started = Instant::now();
        let payload = Bytes::from(seq.to_string());
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: format!("{SELF_CHECK_TOPIC}/probe"),
            packet_id: 0,
            properties: Properties::default(),
            payload: payload.clone(),
        };
        c.publish(publish).await.map_err(|e| e.to_string())?;
        loop {
            let r = c
                .recv()
                .await
                .ok_or_else(|| "the probe session ended".to_owned())?;
            c.ack(&r).await;
            if r.message.payload == payload {
                return Ok(started.elapsed());
            }
        }
    };
    tokio::time::timeout(timeout, round)
        .await
        .unwrap_or_else(|_| Err(format!("no delivery within {timeout:?}")))
}
