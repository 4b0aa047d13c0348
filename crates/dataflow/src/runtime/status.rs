//! What operators see of a dataflow: its counters, its health, and the board that keeps
//! every running dataflow's status across reloads and renders them for Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// Health as Azure IoT Operations reports it for a dataflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    Available,
    Degraded,
    Unavailable,
}

/// Counters and health of one dataflow, shared by its instances.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages taken from the source.
    pub received: AtomicU64,
    /// Messages the destination accepted.
    pub sent: AtomicU64,
    /// Dropped by a filter rule.
    pub filtered: AtomicU64,
    /// Dropped because the destination topic could not be resolved.
    pub unroutable: AtomicU64,
    /// Dropped because the transform could not run (payload not JSON, evaluation error).
    pub failed: AtomicU64,
}

/// What an operator sees of one dataflow.
#[derive(Clone)]
pub struct DataflowStatus {
    pub name: String,
    pub counters: Arc<Counters>,
    /// Why the dataflow is not Available, if it is not.
    pub problem: watch::Receiver<Option<String>>,
}

impl DataflowStatus {
    pub fn health(&self) -> Health {
        match &*self.problem.borrow() {
            None => Health::Available,
            Some(_) => Health::Degraded,
        }
    }
}

/// The statuses of the running dataflows, kept current across reloads, for metrics and
/// the API. Cheap to clone.
#[derive(Clone, Default)]
pub struct StatusBoard(Arc<std::sync::RwLock<Vec<DataflowStatus>>>);

impl StatusBoard {
    /// Replace the statuses (after the running dataflows changed).
    pub(super) fn set(&self, statuses: Vec<DataflowStatus>) {
        if let Ok(mut board) = self.0.write() {
            *board = statuses;
        }
    }

    pub fn statuses(&self) -> Vec<DataflowStatus> {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Append the dataflows' counters and health in the Prometheus text format. Labels:
    /// the dataflow's name (from configuration, so bounded) and a fixed `outcome`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let statuses = self.statuses();
        let _ = writeln!(
            out,
            "# HELP edgeplane_dataflow_messages_total Messages through a dataflow by outcome: \
             received from the source, sent to the destination, or dropped (filtered, \
             unroutable, failed).\n# TYPE edgeplane_dataflow_messages_total counter"
        );
        for s in &statuses {
            let name = label(&s.name);
            let c = &s.counters;
            for (outcome, n) in [
                ("received", &c.received),
                ("sent", &c.sent),
                ("filtered", &c.filtered),
                ("unroutable", &c.unroutable),
                ("failed", &c.failed),
            ] {
                let _ = writeln!(
                    out,
                    "edgeplane_dataflow_messages_total{{dataflow=\"{name}\",outcome=\"{outcome}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP edgeplane_dataflow_available 1 while a dataflow is Available, 0 while it is \
             Degraded (an endpoint is down).\n# TYPE edgeplane_dataflow_available gauge"
        );
        for s in &statuses {
            let up = u8::from(s.health() == Health::Available);
            let _ = writeln!(
                out,
                "edgeplane_dataflow_available{{dataflow=\"{}\"}} {up}",
                label(&s.name)
            );
        }
    }
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_one_sample_per_outcome_and_escape_names() {
        let counters = Arc::new(Counters::default());
        counters.received.store(5, Ordering::Relaxed);
        counters.sent.store(4, Ordering::Relaxed);
        let (_tx, problem) = watch::channel(Some("endpoint x: down".to_owned()));
        let board = StatusBoard::default();
        if let Ok(mut b) = board.0.write() {
            b.push(DataflowStatus {
                name: "line\"1".into(),
                counters,
                problem,
            });
        }
        let mut out = String::new();
        board.render_metrics(&mut out);
        assert!(out.contains(
            "edgeplane_dataflow_messages_total{dataflow=\"line\\\"1\",outcome=\"received\"} 5\n"
        ));
        assert!(out.contains("outcome=\"sent\"} 4\n"));
        assert!(out.contains("edgeplane_dataflow_available{dataflow=\"line\\\"1\"} 0\n"));
        assert_eq!(out.matches("# TYPE").count(), 2);
    }
}
