//! Client lifecycle events for in-process services that keep per-client state (the state
//! store drops a client's KEYNOTIFY registrations when it disconnects).
//!
//! An event names the connection that ended, not only the client id: this queue is not
//! ordered with the messages that connection published (those travel through the router
//! and the service's session), so a service matches the two by connection id. Ids come
//! from one broker-wide counter shared by network connections and in-process sessions
//! ([`crate::LocalClient`]), taken when a connection is accepted: unique, but not in the
//! order connections attach to their session (a slow CONNECT attaches after a later
//! connection's). A network client's requests carry the same id in
//! [`crate::message::Publisher::Client`].
//!
//! Partitions call [`ClientEvents::send`] as connections end; each listener from
//! [`ClientEvents::subscribe`] has its own unbounded queue, so no event is ever lost, however
//! many clients go at once (a bounded broadcast channel lagged when ~19,000 clients
//! disconnected together, and the registrations of the missed ones leaked). A queue holds
//! only what its listener has not read yet, one small entry per disconnection; listeners are
//! services that read continuously, and a dropped listener is removed at the next send.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

/// A change in a client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The client's connection `conn_id` ended (normally, abnormally, or taken over by a
    /// new one). For an in-process session, `conn_id` is that session's id.
    Disconnected { client_id: Arc<str>, conn_id: u64 },
}

/// The listeners of client events; shared by the partitions.
#[derive(Default)]
pub struct ClientEvents {
    listeners: Mutex<Vec<mpsc::UnboundedSender<ClientEvent>>>,
}

impl ClientEvents {
    /// Events from now on, in the order the partitions sent them (per client, the order its
    /// connections ended).
    pub fn subscribe(&self) -> ClientEventReceiver {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().push(tx);
        ClientEventReceiver(rx)
    }

    /// Queue `event` for every listener; returns how many got it (none listening is fine).
    pub fn send(&self, event: ClientEvent) -> usize {
        let mut listeners = self.lock();
        listeners.retain(|l| l.send(event.clone()).is_ok());
        listeners.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<ClientEvent>>> {
        // The guarded Vec is never left half-changed, so a panic elsewhere does not spoil it.
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One listener's queue of client events.
pub struct ClientEventReceiver(mpsc::UnboundedReceiver<ClientEvent>);

impl ClientEventReceiver {
    /// The next event; `None` once the broker has stopped. Cancel-safe.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.0.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.0.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listener_gets_every_event_in_order_however_many() {
        let events = ClientEvents::default();
        let mut a = events.subscribe();
        let mut b = events.subscribe();
        for i in 0..20_000 {
            let client_id: Arc<str> = format!("c{i}").into();
            let conn_id = i;
            assert_eq!(
                events.send(ClientEvent::Disconnected { client_id, conn_id }),
                2
            );
        }
        for rx in [&mut a, &mut b] {
            for i in 0..20_000 {
                let Some(ClientEvent::Disconnected { client_id, conn_id }) = rx.try_recv() else {
                    panic!("event {i} missing");
                };
                assert_eq!((&*client_id, conn_id), (&*format!("c{i}"), i));
            }
            assert!(rx.try_recv().is_none());
        }
    }

    #[test]
    fn a_dropped_listener_is_forgotten() {
        let events = ClientEvents::default();
        let a = events.subscribe();
        let _b = events.subscribe();
        drop(a);
        let client_id: Arc<str> = "x".into();
        let event = ClientEvent::Disconnected {
            client_id,
            conn_id: 1,
        };
        assert_eq!(events.send(event), 1);
    }
}
