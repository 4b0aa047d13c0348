//! The bounded mailbox through which a partition hands a connection (network or in-process)
//! what it must send: one producer side held by the session, one consumer side held by the
//! connection task.
//!
//! It replaces a tokio `mpsc` channel for memory: that channel allocates its first block of
//! 32 slots (about 2 KB) and a cache-padded header per connection even while idle, and idle
//! connections dominate memory at scale. Here an idle mailbox is one small allocation (an
//! empty `VecDeque` allocates nothing); the queue grows with a burst and gives its memory
//! back when a large one has been drained.
//!
//! Semantics are those of the channel it replaces: [`MailboxTx::try_send`] never waits and
//! reports `Full` at the capacity or `Closed` once the receiver is gone; [`MailboxRx::recv`]
//! yields items in order and `None` once every sender is dropped and the queue is empty.
//! `recv` is cancel-safe (an item leaves the queue only when it is returned), so it can be a
//! `select!` branch.
//!
//! The mailbox also carries the partition's orders to close the connection
//! ([`MailboxTx::kill`]) or to shut it down with the server ([`MailboxTx::shutdown`]),
//! ahead of anything queued: [`MailboxRx::next`] reports them first. They used to be a
//! tokio `Notify` per connection and a `watch` shared by all, whose futures the connection
//! re-registered on every wake-up of its main loop (4.5 % of the broker's CPU in a QoS 0
//! fan-in profile, the shared one contended between threads); here they cost one read of a
//! field under the lock `recv` takes anyway.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use super::ConnSignals;

/// Queue capacity kept after draining; a queue that grew beyond it for a burst is freed.
const KEEP: usize = 32;

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver, parked while the queue is empty.
    waker: Option<Waker>,
    /// `u32`, like `capacity`: the mailbox is allocated per connection, so its size counts.
    senders: u32,
    receiver_gone: bool,
    /// The order to close, if one came (the first one stands).
    order: Option<Order>,
}

struct Shared<T> {
    capacity: u32,
    state: Mutex<State<T>>,
    /// Flags both sides read without the lock; here rather than in an `Arc` of their own,
    /// which every connection would pay for in one more allocation.
    signals: ConnSignals,
}

/// Why [`MailboxTx::try_send`] gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// `capacity` items are waiting.
    Full(T),
    /// The receiver was dropped.
    Closed(T),
}

/// An order to close, reported by [`MailboxRx::next`] before any queued item (and again
/// on every later call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Close now ([`MailboxTx::kill`]: takeover, protocol error).
    Kill,
    /// The server is shutting down ([`MailboxTx::shutdown`]).
    Shutdown,
}

/// What [`MailboxRx::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    Item(T),
    Order(Order),
    /// Every sender is gone and nothing is left.
    Closed,
}

/// The sending side; cloning adds a sender.
pub struct MailboxTx<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side.
pub struct MailboxRx<T> {
    shared: Arc<Shared<T>>,
}

/// A mailbox holding at most `capacity` items (at least one).
pub fn mailbox<T>(capacity: usize) -> (MailboxTx<T>, MailboxRx<T>) {
    let shared = Arc::new(Shared {
        capacity: u32::try_from(capacity.max(1)).unwrap_or(u32::MAX),
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            senders: 1,
            receiver_gone: false,
            order: None,
        }),
        signals: ConnSignals::default(),
    });
    let tx = MailboxTx {
        shared: Arc::clone(&shared),
    };
    (tx, MailboxRx { shared })
}

impl<T> MailboxTx<T> {
    /// The flags shared with the receiving connection.
    pub fn signals(&self) -> &ConnSignals {
        &self.shared.signals
    }

    /// Queue `item` without waiting, waking the receiver if it is parked.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut st = self.shared.state.lock();
            if st.receiver_gone {
                return Err(TrySendError::Closed(item));
            }
            if st.queue.len() >= self.shared.capacity as usize {
                return Err(TrySendError::Full(item));
            }
            st.queue.push_back(item);
            st.waker.take()
        };
        // Woken outside the lock so the receiver does not contend with us for it.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> MailboxTx<T> {
    /// Tell the receiver to close: [`MailboxRx::next`] returns [`Order::Kill`] from now on,
    /// ahead of queued items. Works when the queue is full.
    pub fn kill(&self) {
        self.order(Order::Kill);
    }

    /// Tell the receiver the server is shutting down ([`Order::Shutdown`]).
    pub fn shutdown(&self) {
        self.order(Order::Shutdown);
    }

    fn order(&self, order: Order) {
        let waker = {
            let mut st = self.shared.state.lock();
            st.order.get_or_insert(order);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Clone for MailboxTx<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for MailboxTx<T> {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.shared.state.lock();
            st.senders -= 1;
            if st.senders == 0 {
                st.waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> MailboxRx<T> {
    /// The flags shared with the sending partition.
    pub fn signals(&self) -> &ConnSignals {
        &self.shared.signals
    }

    /// The next item, waiting for one; `None` once all senders are gone and nothing is left.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut st = self.shared.state.lock();
            if let Some(item) = pop(&mut st) {
                return Poll::Ready(Some(item));
            }
            if st.senders == 0 {
                return Poll::Ready(None);
            }
            park(&mut st, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// The order to close if one came, else the next item, waiting for one.
    pub async fn next(&mut self) -> Next<T> {
        poll_fn(|cx| {
            let mut st = self.shared.state.lock();
            if let Some(order) = st.order {
                return Poll::Ready(Next::Order(order));
            }
            if let Some(item) = pop(&mut st) {
                return Poll::Ready(Next::Item(item));
            }
            if st.senders == 0 {
                return Poll::Ready(Next::Closed);
            }
            park(&mut st, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Ready once there is an order, an item, or no sender left (what
    /// [`MailboxRx::next`] would return without waiting). Nothing is taken, so the caller's
    /// future holds no item: it asks [`MailboxRx::order`], then [`MailboxRx::try_recv`], then
    /// [`MailboxRx::is_closed`].
    pub fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut st = self.shared.state.lock();
        if st.order.is_some() || !st.queue.is_empty() || st.senders == 0 {
            return Poll::Ready(());
        }
        park(&mut st, cx.waker());
        Poll::Pending
    }

    /// The order to close, if one came (it comes before queued items).
    pub fn order(&self) -> Option<Order> {
        self.shared.state.lock().order
    }

    /// Every sender is gone and nothing is left.
    pub fn is_closed(&self) -> bool {
        let st = self.shared.state.lock();
        st.senders == 0 && st.queue.is_empty()
    }

    /// The next item if one is waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        pop(&mut self.shared.state.lock())
    }

    pub fn is_empty(&self) -> bool {
        self.shared.state.lock().queue.is_empty()
    }
}

impl<T> Drop for MailboxRx<T> {
    fn drop(&mut self) {
        let queue = {
            let mut st = self.shared.state.lock();
            st.receiver_gone = true;
            st.waker = None;
            std::mem::take(&mut st.queue)
        };
        // Items are dropped outside the lock: their destructors may be arbitrary.
        drop(queue);
    }
}

/// The receiver waits: remember its waker, and give the emptied queue's buffer back (an
/// idle connection then holds none; a busy one re-allocates it once per wake-up, not per
/// item).
fn park<T>(st: &mut State<T>, waker: &Waker) {
    match &mut st.waker {
        Some(w) if w.will_wake(waker) => {}
        slot => *slot = Some(waker.clone()),
    }
    if st.queue.capacity() > 0 {
        st.queue = VecDeque::new();
    }
}

/// Take the front item; a queue emptied after growing past [`KEEP`] gives its memory back.
fn pop<T>(st: &mut State<T>) -> Option<T> {
    let item = st.queue.pop_front()?;
    if st.queue.is_empty() && st.queue.capacity() > KEEP {
        st.queue = VecDeque::new();
    }
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_and_the_bound_holds() {
        let (tx, mut rx) = mailbox(3);
        for i in 0..3 {
            assert_eq!(tx.try_send(i), Ok(()));
        }
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert!(rx.is_empty());
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_parked_receiver_is_woken_by_a_send_from_another_task() {
        let (tx, mut rx) = mailbox(4);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.try_send("hello").map_err(|_| "send failed")
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got, Ok(Some("hello")));
        assert_eq!(sender.await.ok(), Some(Ok(())));
        // The only sender is gone: the receiver sees the end.
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn the_end_comes_after_queued_items_and_only_when_every_sender_is_gone() {
        let (tx, mut rx) = mailbox(4);
        let tx2 = tx.clone();
        assert_eq!(tx.try_send(1), Ok(()));
        drop(tx);
        assert_eq!(tx2.try_send(2), Ok(()));
        drop(tx2);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn sending_to_a_dropped_receiver_gives_the_item_back_and_drops_what_was_queued() {
        let (tx, rx) = mailbox(4);
        let queued = Arc::new(());
        assert!(tx.try_send(Arc::clone(&queued)).is_ok());
        drop(rx);
        assert_eq!(Arc::strong_count(&queued), 1);
        assert!(matches!(tx.try_send(queued), Err(TrySendError::Closed(_))));
    }

    #[tokio::test]
    async fn a_drained_burst_gives_its_memory_back() {
        let (tx, mut rx) = mailbox(1024);
        for i in 0..500 {
            assert!(tx.try_send(i).is_ok());
        }
        assert!(rx.shared.state.lock().queue.capacity() >= 500);
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.state.lock().queue.capacity(), 0);
    }

    #[tokio::test]
    async fn a_kill_overtakes_queued_items_and_wakes_a_parked_receiver() {
        let (tx, mut rx) = mailbox(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        // Full: the kill still gets through, and comes first.
        tx.kill();
        // The first order stands.
        tx.shutdown();
        assert_eq!(rx.next().await, Next::Order(Order::Kill));
        assert_eq!(rx.next().await, Next::Order(Order::Kill));
        assert_eq!(rx.try_recv(), Some(1));

        let (tx, mut rx) = mailbox::<u8>(2);
        let killer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.shutdown();
            tx
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.next()).await;
        assert_eq!(got, Ok(Next::Order(Order::Shutdown)));
        drop(killer.await);
    }

    #[tokio::test]
    async fn next_reports_items_then_the_end() {
        let (tx, mut rx) = mailbox(2);
        assert_eq!(tx.try_send(7), Ok(()));
        drop(tx);
        assert_eq!(rx.next().await, Next::Item(7));
        assert_eq!(rx.next().await, Next::Closed);
    }

    #[tokio::test]
    async fn a_waiting_receiver_holds_no_buffer() {
        let (tx, mut rx) = mailbox(8);
        assert!(tx.try_send(1).is_ok());
        assert_eq!(rx.recv().await, Some(1));
        assert!(rx.shared.state.lock().queue.capacity() > 0);
        // Nothing left: the receiver parks and the buffer goes.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(10), rx.next()).await;
        assert!(waited.is_err());
        assert_eq!(rx.shared.state.lock().queue.capacity(), 0);
        assert!(tx.try_send(2).is_ok());
        assert_eq!(rx.next().await, Next::Item(2));
    }

    #[test]
    fn an_idle_mailbox_is_small() {
        // The shared part is the whole per-connection cost of an idle mailbox.
        let size = std::mem::size_of::<Shared<super::super::Outgoing>>();
        assert!(size <= 96, "an idle mailbox is {size} bytes");
    }
}
