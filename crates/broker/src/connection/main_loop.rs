//! The connection's main loop: wait for the mailbox, the socket, the store's
//! acknowledgements and the rare timers; handle what woke it; write what it produced in one
//! socket write. Every byte of its future is held by every idle connection, which is why the
//! wait polls its sources by hand and the keep alive is left to the partition.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use edgeplane_codec::ReasonCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{
    acks_progress, flush_then, inbound, input, outbound, Conn, Context, Input, Stop, PAUSED_BUFFER,
    PAUSE_POLL, READ_BUFFER, READ_BUFFER_MAX, WRITE_BUFFER_KEEP,
};
use crate::router::mailbox::{MailboxRx, Order};
use crate::router::{clock_instant, clock_ms, Cmd, Ending, Outgoing};
use crate::stats::Stats;

/// Which source woke the main loop's wait, in the order they are polled.
enum Polled {
    /// A ticket completed or the store's durable position moved.
    Acks,
    /// The mailbox has an item or an order, or lost its senders.
    Mail,
    /// The paused connection's timer fired: time to look at the queued bytes again.
    PauseOver,
    /// Bytes read and the room there was, or the read's error.
    Read(std::io::Result<(usize, usize)>),
    Expired,
    /// The quiet timer fired: the read buffer may have to shrink.
    Quiet,
}

/// What is left to do after the wait: only plain values, so no await below keeps the read's
/// result (or a partly moved mailbox item) in the task's future, whose every byte each idle
/// connection holds.
#[derive(Clone, Copy)]
enum Wake {
    /// Handled right after the wait (acknowledgements flushed, bytes read, a timer).
    Handled,
    /// The mailbox has an item or an order.
    Mail,
    /// The credentials expired.
    Expired,
}

/// The main loop. A plain function returning an `async move` block, like
/// [`serve`](super::serve), so its
/// arguments are held once.
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
pub(super) fn run<'a, S>(
    stream: &'a mut S,
    rbuf: &'a mut BytesMut,
    rx: &'a mut MailboxRx<Outgoing>,
    conn: &'a mut Conn,
    ctx: &'a Context,
) -> impl std::future::Future<Output = Stop> + Send + 'a
where
    S: Input + AsyncWrite + Send,
{
    async move {
        // The keep alive is the partition's to enforce, from the time of the last input
        // this loop writes into the mailbox's signals: no timer here.
        // Armed at the credentials' expiry; re-armed when re-authentication moves it.
        // Boxed and made only when needed: most connections have no expiry, and every byte of
        // this future is held by every idle connection.
        let mut expiry_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        // While reads are paused: when to look again whether they may resume.
        let mut pause_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        // While a buffer grown for a burst is held: when to look whether input went quiet.
        let mut quiet_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        // Bytes that arrived with CONNECT are processed before reading more.
        let mut pending_input = !rbuf.is_empty();
        let mut read_size = READ_BUFFER;
        if !pending_input {
            input::release_idle::<S>(rbuf);
        }
        loop {
            if resume_if_below(conn, ctx) {
                pending_input = true;
            } else {
                pause_if_over(conn, ctx);
            }
            if conn.paused {
                // The client is not silent, we are not listening.
                note_input(rx);
            }
            if pending_input {
                pending_input = false;
                if let Some(stop) = Box::pin(inbound::process(rbuf, conn, ctx)).await {
                    return Box::pin(flush_then(stream, conn, stop)).await;
                }
                // Reads went back to small ones: so does the buffer, and a stream that can
                // wait for input without one gives it back until bytes arrive.
                if rbuf.is_empty() && read_size == READ_BUFFER {
                    if rbuf.capacity() > 4 * READ_BUFFER {
                        *rbuf = BytesMut::with_capacity(READ_BUFFER);
                    }
                    input::release_idle::<S>(rbuf);
                } else if quiet_timer.is_none() {
                    quiet_timer = Some(Box::pin(tokio::time::sleep(QUIET)));
                }
            }
            if conn.expiry_moved {
                conn.expiry_moved = false;
                let left = conn.expiry.map_or(FAR, |t| {
                    t.duration_since(std::time::SystemTime::now())
                        .unwrap_or_default()
                });
                let at = tokio::time::Instant::now() + left;
                match &mut expiry_timer {
                    Some(t) => t.as_mut().reset(at),
                    None => expiry_timer = Some(Box::pin(tokio::time::sleep_until(at))),
                }
            }
            if !conn.wbuf.is_empty() {
                if stream.write_all(&conn.wbuf).await.is_err() || stream.flush().await.is_err() {
                    return Stop::Ended(Ending::Abnormal);
                }
                conn.wbuf.clear();
                if conn.wbuf.capacity() > WRITE_BUFFER_KEEP {
                    conn.wbuf = BytesMut::new();
                }
            }
            if conn.paused && pause_timer.is_none() {
                pause_timer = Some(Box::pin(tokio::time::sleep(PAUSE_POLL)));
            }
            let wake = {
                // Boxed: only connections waiting for the store to acknowledge need it.
                let mut acks = (!conn.acks.is_empty()).then(|| {
                    let durable = conn.store.as_mut().map(|(_, d)| d);
                    Box::pin(acks_progress(conn.ack_notify.as_deref(), durable))
                });
                let paused = conn.paused;
                let reading = !conn.paused || conn.deferred_bytes < PAUSED_BUFFER;
                let (mail, input, buf) = (&mut *rx, &mut *stream, &mut *rbuf);
                let (pause, expiry, quiet) =
                    (&mut pause_timer, &mut expiry_timer, &mut quiet_timer);
                let size = read_size;
                // Polled by hand, in this order (acknowledgements, mail, the pause timer,
                // input, expiry, the quiet timer), by a closure that owns what it uses: a
                // `select!` would store a future per source, and every byte of this future
                // is held by every idle connection.
                let polled = std::future::poll_fn(move |cx| {
                    if let Some(a) = &mut acks {
                        if a.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Polled::Acks);
                        }
                    }
                    if mail.poll_ready(cx).is_ready() {
                        return Poll::Ready(Polled::Mail);
                    }
                    if let (true, Some(t)) = (paused, &mut *pause) {
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Polled::PauseOver);
                        }
                    }
                    if reading {
                        if let Poll::Ready(r) = input::poll_read(input, buf, size, cx) {
                            return Poll::Ready(Polled::Read(r));
                        }
                    }
                    if let Some(t) = &mut *expiry {
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Polled::Expired);
                        }
                    }
                    if let Some(t) = &mut *quiet {
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Polled::Quiet);
                        }
                    }
                    Poll::Pending
                })
                .await;
                match polled {
                    Polled::Acks => {
                        conn.flush_acks();
                        Wake::Handled
                    }
                    Polled::Mail => Wake::Mail,
                    Polled::PauseOver => {
                        pause_timer = None;
                        Wake::Handled
                    }
                    Polled::Read(r) => {
                        let Ok((n, room)) = r else {
                            return Stop::Ended(Ending::Abnormal);
                        };
                        if n == 0 {
                            return Stop::Ended(Ending::Abnormal);
                        }
                        Stats::add(&ctx.stats.bytes_received, n as u64);
                        note_input(rx);
                        pending_input = true;
                        if n == room {
                            read_size = (read_size * 2).min(READ_BUFFER_MAX);
                        } else if n < read_size / 4 {
                            read_size = (read_size / 2).max(READ_BUFFER);
                        }
                        Wake::Handled
                    }
                    Polled::Expired => Wake::Expired,
                    Polled::Quiet => {
                        let last = rx.signals().last_input_ms.load(Ordering::Relaxed);
                        let quiet_since = last + QUIET_MS;
                        match &mut quiet_timer {
                            Some(t) if clock_ms() < quiet_since => {
                                t.as_mut().reset(clock_instant(quiet_since).into());
                            }
                            _ => {
                                // A connection gone quiet gives back what a burst grew.
                                quiet_timer = None;
                                if rbuf.is_empty() {
                                    if rbuf.capacity() > READ_BUFFER {
                                        *rbuf = BytesMut::with_capacity(READ_BUFFER);
                                    }
                                    read_size = READ_BUFFER;
                                    input::release_idle::<S>(rbuf);
                                }
                            }
                        }
                        Wake::Handled
                    }
                }
            };
            match wake {
                Wake::Handled => {}
                Wake::Mail => {
                    // Orders first, as `MailboxRx::next` gives them; the item is taken as a
                    // whole and moved into the boxed batch, so no mailbox item is kept in this
                    // future across an await (every idle connection would hold its size).
                    match rx.order() {
                        Some(Order::Shutdown) => return Stop::Shutdown,
                        Some(Order::Kill) => {
                            let reason = rx.signals().kill_reason.load(Ordering::Acquire);
                            conn.disconnect(ReasonCode(reason));
                            return Box::pin(flush_then(stream, conn, Stop::Detached)).await;
                        }
                        None => {}
                    }
                    let Some(item) = rx.try_recv() else {
                        if rx.is_closed() {
                            return Stop::Ended(Ending::Abnormal);
                        }
                        continue;
                    };
                    Box::pin(outbound::write_batch(item, rx, conn, ctx)).await;
                    if rx.signals().drain.swap(false, Ordering::AcqRel) {
                        let cmd = Cmd::Drained {
                            client: Arc::clone(&conn.client_id),
                            conn: conn.conn_id,
                        };
                        Box::pin(ctx.router.send(conn.partition, cmd)).await;
                    }
                }
                Wake::Expired => {
                    tracing::info!(client_id = %conn.client_id, "credentials expired: disconnecting");
                    conn.disconnect(ReasonCode::MAXIMUM_CONNECT_TIME);
                    return Box::pin(flush_then(stream, conn, Stop::Ended(Ending::Abnormal))).await;
                }
            }
        }
    }
}

/// Input arrived (or reads are paused, which is not the client's silence): the partition's
/// keep-alive check counts from now.
fn note_input(rx: &MailboxRx<Outgoing>) {
    rx.signals()
        .last_input_ms
        .store(clock_ms(), Ordering::Relaxed);
}

/// After this long without input a connection gives back the read buffer a burst grew.
const QUIET_MS: u64 = 10_000;
const QUIET: Duration = Duration::from_millis(QUIET_MS);

/// "Never" for timers that are not armed.
const FAR: std::time::Duration = std::time::Duration::from_secs(86_400 * 365);

/// Pause an MQTT 3.1.1 connection when queued bytes are over `maxQueuedBytes` or the
/// store over `persistence.maxSize`; `true` when it is paused (now or already).
pub(super) fn pause_if_over(conn: &mut Conn, ctx: &Context) -> bool {
    if !conn.paused && !conn.v5() && ctx.router.over_bounds() {
        conn.paused = true;
        Stats::add(&ctx.stats.reads_paused, 1);
        Stats::add(&ctx.stats.reads_paused_now, 1);
        tracing::debug!(client_id = %conn.client_id, "queued bytes over maxQueuedBytes: reads paused");
    }
    conn.paused
}

/// Resume a paused connection once queued bytes are below the low-water mark; `true` when
/// it resumed: what it held back must be handled.
fn resume_if_below(conn: &mut Conn, ctx: &Context) -> bool {
    if conn.paused && ctx.router.below_bounds() {
        conn.paused = false;
        Stats::sub(&ctx.stats.reads_paused_now, 1);
        tracing::debug!(client_id = %conn.client_id, "queued bytes below low water: reads resumed");
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output_size<F, A, B, C, D, E, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C, D, E) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// The main loop's future is held by every idle connection: rarely taken paths (closing,
    /// expiry, paused reads, waiting for the store) are boxed so they cost nothing until
    /// used, the wait polls its sources by hand instead of storing a `select!`'s futures,
    /// the keep alive is the partition's to enforce (no timer here), and rarely used state is
    /// boxed out of `Conn`. 152 bytes in a release build of 2026-12-03 evening (432 that
    /// morning with a `select!` and a keep-alive timer, 984 the day before); `Conn` is 208
    /// bytes (512).
    #[test]
    fn the_main_loop_future_stays_small() {
        let run = output_size(run::<tokio::net::TcpStream>);
        let conn = std::mem::size_of::<Conn>();
        eprintln!("run future {run} B, Conn {conn} B");
        assert!(run <= 168, "the connection main loop future is {run} bytes");
        assert!(conn <= 224, "Conn is {conn} bytes");
    }
}
