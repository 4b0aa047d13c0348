//! One endpoint status from the states of the endpoint's sessions.
//!
//! A [`super::Connection`] may spread its datasets over several OPC UA sessions; each
//! session's supervisor writes its own slot of the [`StatusBoard`], and the board publishes
//! one [`EndpointStatus`] for the endpoint on a `watch` channel: an error if any session
//! is failing (the first failing session's message, unchanged, so the words a user acts on
//! are the same with one session or four), otherwise connecting while any session is not
//! up yet, and connected only when every session is.

use std::sync::Mutex;

use tokio::sync::watch;

use super::EndpointStatus;

/// The sessions' states and the endpoint status derived from them.
#[derive(Debug)]
pub(crate) struct StatusBoard {
    slots: Mutex<Vec<EndpointStatus>>,
    tx: watch::Sender<EndpointStatus>,
}

impl StatusBoard {
    /// A board for `sessions` sessions, all connecting.
    pub(crate) fn new(sessions: usize) -> (StatusBoard, watch::Receiver<EndpointStatus>) {
        let (tx, rx) = watch::channel(EndpointStatus::Connecting);
        let board = StatusBoard {
            slots: Mutex::new(vec![EndpointStatus::Connecting; sessions.max(1)]),
            tx,
        };
        (board, rx)
    }

    /// Session `slot` is now in `status`; watchers see the endpoint status only when it
    /// changes.
    pub(crate) fn set(&self, slot: usize, status: EndpointStatus) {
        let endpoint = {
            // A poisoned lock only means another supervisor panicked mid-update; the
            // states it holds are still whole values.
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = slots.get_mut(slot) {
                *s = status;
            }
            aggregate(&slots)
        };
        self.tx.send_if_modified(|s| {
            let changed = *s != endpoint;
            *s = endpoint;
            changed
        });
    }
}

/// The endpoint's status from its sessions' states; see the module docs.
pub(crate) fn aggregate(sessions: &[EndpointStatus]) -> EndpointStatus {
    if let Some(error) = sessions
        .iter()
        .find(|s| matches!(s, EndpointStatus::Error(_)))
    {
        return error.clone();
    }
    if sessions.iter().all(|s| *s == EndpointStatus::Connected) {
        EndpointStatus::Connected
    } else {
        EndpointStatus::Connecting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use EndpointStatus::{Connected, Connecting, Error};

    #[test]
    fn connected_only_when_every_session_is() {
        assert_eq!(aggregate(&[Connected, Connected]), Connected);
        assert_eq!(aggregate(&[Connected, Connecting]), Connecting);
        assert_eq!(aggregate(&[Connecting, Connected, Connected]), Connecting);
    }

    #[test]
    fn any_failing_session_names_the_error() {
        let bad = Error("bad user or password".into());
        assert_eq!(aggregate(&[Connected, bad.clone()]), bad);
        assert_eq!(
            aggregate(&[Connecting, Error("first".into()), Error("second".into())]),
            Error("first".into())
        );
    }

    #[test]
    fn watchers_see_changes_of_the_endpoint_not_of_each_session() {
        let (board, mut rx) = StatusBoard::new(2);
        rx.borrow_and_update();
        board.set(0, Connected);
        // Session 1 is still connecting: the endpoint status did not change.
        assert!(!rx.has_changed().unwrap_or(true));
        board.set(1, Connected);
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(*rx.borrow_and_update(), Connected);
        board.set(1, Connecting);
        assert_eq!(*rx.borrow_and_update(), Connecting);
        board.set(0, Error("cannot reach".into()));
        assert_eq!(*rx.borrow_and_update(), Error("cannot reach".into()));
    }
}
