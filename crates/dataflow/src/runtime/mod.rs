//! Running dataflows: every [`Plan`] becomes `instances` tasks that read the source, run
//! the BuiltInTransformation, and hand results to the destination.
//!
//! Data enters from the local broker through an in-process client (a persistent session
//! named `edgeplane-dataflow-<name>-<i>`, so the broker keeps — and with a data folder
//! stores — what arrives while the dataflow is down or its destination unreachable), or
//! from a remote broker through an [`mqtt::MqttLink`]. It leaves through a
//! [`sink::Sink`].
//!
//! Delivery is at least once and in order: a source message is acknowledged only after
//! the destination has accepted its result (or after it was dropped on purpose, by a
//! filter or an unresolvable topic), results reach the destination in arrival order, and at most
//! [`WINDOW`] messages are in flight per instance, so a stalled destination stops the
//! reading instead of filling memory. Each dataflow's counters and health are in
//! [`DataflowStatus`]. Enrichment datasets are read from the state store at start and
//! again on each KEYNOTIFY notification of their key.

mod datasets;
mod instance;
pub mod mqtt;
mod parquet;
pub mod sink;
mod status;
pub mod topic;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use edgeplane_broker::LocalFactory;
use edgeplane_statestore::StateStoreHandle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::resources::Plan;
use datasets::start_datasets;
use instance::Instance;
pub use status::{Counters, DataflowStatus, Health, StatusBoard};

/// How long [`Dataflows::start`] waits for its instances to attach.
pub const ATTACH_WAIT: Duration = Duration::from_secs(10);

/// Wait for every receiver (a sender dropped counts as done).
async fn all_done(receivers: Vec<oneshot::Receiver<()>>) {
    for rx in receivers {
        let _ = rx.await;
    }
}

/// Messages in flight (taken from the source, not yet acknowledged) per instance.
pub const WINDOW: usize = 256;

/// The running dataflows.
pub struct Dataflows {
    broker: LocalFactory,
    state_store: Option<StateStoreHandle>,
    running: BTreeMap<String, Running>,
    board: StatusBoard,
}

/// One running dataflow: its tasks end when this is dropped. Its source session stays in
/// the broker, so messages not yet acknowledged are delivered again to the next run.
struct Running {
    fingerprint: u64,
    status: DataflowStatus,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What [`Dataflows::apply`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
}

impl Dataflows {
    /// Start every plan and wait (at most [`ATTACH_WAIT`]) until each instance has made
    /// its first attempt to attach, so a local source is subscribed before the caller
    /// reports the broker ready. `state_store` serves enrichment datasets (none: datasets
    /// stay empty and `$context` reads give `()`).
    pub async fn start(
        broker: LocalFactory,
        state_store: Option<StateStoreHandle>,
        plans: Vec<Plan>,
    ) -> Dataflows {
        let mut flows = Dataflows {
            broker,
            state_store,
            running: BTreeMap::new(),
            board: StatusBoard::default(),
        };
        let (_, attached) = flows.apply_waiting(plans);
        let all = all_done(attached);
        if tokio::time::timeout(ATTACH_WAIT, all).await.is_err() {
            tracing::warn!("some dataflows are still attaching; starting without waiting for them");
        }
        flows
    }

    /// Make the running dataflows those of `plans`: new ones start, those whose
    /// fingerprint changed restart, those no longer planned (or now disabled) stop.
    pub fn apply(&mut self, plans: Vec<Plan>) -> Applied {
        self.apply_waiting(plans).0
    }

    fn apply_waiting(&mut self, plans: Vec<Plan>) -> (Applied, Vec<oneshot::Receiver<()>>) {
        let mut attached = Vec::new();
        let mut applied = Applied::default();
        let names: std::collections::BTreeSet<String> =
            plans.iter().map(|p| p.name.clone()).collect();
        self.running.retain(|name, _| {
            let keep = names.contains(name);
            if !keep {
                tracing::info!(dataflow = %name, "dataflow stopped");
                applied.stopped.push(name.clone());
            }
            keep
        });
        for plan in plans {
            match self.running.get(&plan.name) {
                Some(r) if r.fingerprint == plan.fingerprint => continue,
                Some(_) => applied.restarted.push(plan.name.clone()),
                None => applied.started.push(plan.name.clone()),
            }
            // Stop the old run before the new one attaches to the same sessions.
            self.running.remove(&plan.name);
            let running = self.launch(plan, &mut attached);
            self.running.insert(running.status.name.clone(), running);
        }
        self.board.set(self.statuses());
        (applied, attached)
    }

    /// The statuses, kept current by [`Dataflows::apply`].
    pub fn board(&self) -> StatusBoard {
        self.board.clone()
    }

    fn launch(&self, plan: Plan, attached: &mut Vec<oneshot::Receiver<()>>) -> Running {
        let counters = Arc::new(Counters::default());
        let (problem_tx, problem) = watch::channel(None);
        let problem_tx = Arc::new(problem_tx);
        let (datasets, datasets_task) =
            start_datasets(&plan, &self.broker, self.state_store.clone());
        let mut tasks: Vec<JoinHandle<()>> = datasets_task.into_iter().collect();
        for instance in 0..plan.instances {
            let flow = Instance {
                plan: plan.clone(),
                instance,
                counters: Arc::clone(&counters),
                problem: Arc::clone(&problem_tx),
                datasets: datasets.clone(),
            };
            let (tx, rx) = oneshot::channel();
            attached.push(rx);
            tasks.push(tokio::spawn(flow.run(self.broker.clone(), Some(tx))));
        }
        tracing::info!(dataflow = %plan.name, instances = plan.instances, "dataflow started");
        Running {
            fingerprint: plan.fingerprint,
            status: DataflowStatus {
                name: plan.name.clone(),
                counters,
                problem,
            },
            tasks,
        }
    }

    /// Every running dataflow's status, by name.
    pub fn statuses(&self) -> Vec<DataflowStatus> {
        self.running.values().map(|r| r.status.clone()).collect()
    }
}
