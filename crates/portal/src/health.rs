//! Readiness as a list of named checks, reported by `/readyz`.
//!
//! A component that can make the process unfit to serve (the broker's listeners, the
//! durable store, the self-check probe) registers a [`Check`] with [`Readiness`] and flips
//! it as its state changes; [`Readiness::follow_self_check`] does so for the probe's
//! outcomes. A check starts not ready, with the reason given at
//! registration, so nothing reports ready before it has said so. `/readyz` answers 200 only
//! when every check is ready, and lists each check in the format Kubernetes components use
//! for `/readyz?verbose` (`[+]name ok`, `[-]name failed: reason`).

use std::fmt::Write as _;
use std::sync::Arc;

use edgeplane_broker::selfcheck::ProbeStatus;
use parking_lot::Mutex;
use tokio::sync::watch;

/// The set of readiness checks; cheap to clone, all clones share the checks.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<Check>>>,
}

/// One named readiness condition, held by the component that knows its state.
#[derive(Clone)]
pub struct Check {
    name: Arc<str>,
    /// `None` when ready, else why not.
    failure: Arc<Mutex<Option<String>>>,
}

/// What `/readyz` says: whether every check passes, and a line per check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ready: bool,
    pub text: String,
}

impl Readiness {
    /// Add a check named `name`, not ready for `reason` until [`Check::ready`] is called.
    pub fn register(&self, name: &str, reason: &str) -> Check {
        let check = Check {
            name: Arc::from(name),
            failure: Arc::new(Mutex::new(Some(reason.to_owned()))),
        };
        self.checks.lock().push(check.clone());
        check
    }

    /// Register the `self-check` check and keep it following the probe's outcomes: the
    /// first outcome is waited for (up to `first_within`) so readiness is known before
    /// `/readyz` is served; a failed probe makes the process not ready with its reason, the
    /// next passing one ready again. The follower ends with the probe.
    pub async fn follow_self_check(
        &self,
        mut status: watch::Receiver<ProbeStatus>,
        first_within: std::time::Duration,
    ) -> Check {
        let check = self.register("self-check", "no probe has completed yet");
        let apply = |check: &Check, status: &ProbeStatus| match status {
            ProbeStatus::Passed { .. } => check.ready(),
            ProbeStatus::Failed { reason } => check.not_ready(reason.clone()),
            ProbeStatus::Pending => {}
        };
        let _ = tokio::time::timeout(
            first_within,
            status.wait_for(|s| *s != ProbeStatus::Pending),
        )
        .await;
        apply(&check, &status.borrow_and_update());
        let follower = check.clone();
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                apply(&follower, &status.borrow_and_update());
            }
        });
        check
    }

    /// The state of every check, in registration order.
    pub fn report(&self) -> Report {
        let checks = self.checks.lock().clone();
        let mut ready = true;
        let mut text = String::new();
        for check in &checks {
            // Writing to a String cannot fail.
            match check.failure.lock().as_deref() {
                None => {
                    let _ = writeln!(text, "[+]{} ok", check.name);
                }
                Some(reason) => {
                    ready = false;
                    let _ = writeln!(text, "[-]{} failed: {reason}", check.name);
                }
            }
        }
        text.push_str(if ready {
            "readyz check passed\n"
        } else {
            "readyz check failed\n"
        });
        Report { ready, text }
    }
}

impl Check {
    pub fn ready(&self) {
        *self.failure.lock() = None;
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        *self.failure.lock() = Some(reason.into());
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_is() {
        let readiness = Readiness::default();
        let broker = readiness.register("broker", "starting");
        let storage = readiness.register("storage", "opening");
        let r = readiness.report();
        assert!(!r.ready);
        assert_eq!(
            r.text,
            "[-]broker failed: starting\n[-]storage failed: opening\nreadyz check failed\n"
        );
        broker.ready();
        storage.ready();
        let r = readiness.report();
        assert!(r.ready);
        assert_eq!(r.text, "[+]broker ok\n[+]storage ok\nreadyz check passed\n");
        storage.not_ready("cannot write /data: disk full");
        let r = readiness.report();
        assert!(!r.ready);
        assert!(r
            .text
            .contains("[-]storage failed: cannot write /data: disk full\n"));
        assert!(r.text.contains("[+]broker ok\n"));
    }
}
