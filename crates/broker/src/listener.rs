//! Listeners: accept TCP connections on a bound address, add TLS and/or WebSocket framing as
//! the listener says, and hand each to its own connection task, until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use edgeplane_config::Protocol;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{ClientCerts, ListenerAuth};
use crate::connection::{self, Context};
use crate::tls::ServerTls;

/// A listener to open: its resource name, address, protocol and optional TLS identity.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    pub tls: Option<Arc<ServerTls>>,
    /// Authentication and authorization of this port (none: anonymous, everything allowed).
    pub auth: Arc<ListenerAuth>,
    /// Abuse limits of this port.
    pub limits: ConnectionLimits,
}

/// Abuse limits of a listener port; a refused connection is closed at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections the port holds at once.
    pub max_connections: Option<u32>,
    /// New connections accepted per second from one source address.
    pub max_connects_per_second_per_address: Option<u32>,
}

/// What an accept loop applies to each connection of its port.
pub(crate) struct Port {
    /// The listener's resource name, shown with each of its clients.
    pub name: Arc<str>,
    pub protocol: Protocol,
    pub tls: Option<Arc<ServerTls>>,
    pub auth: Arc<ListenerAuth>,
    pub limits: ConnectionLimits,
}

/// Per-address connection counts of the current one-second window.
#[derive(Default)]
struct RateWindow {
    started: Option<std::time::Instant>,
    counts: std::collections::HashMap<std::net::IpAddr, u32>,
}

impl RateWindow {
    /// Count a connection from `ip`; false when it is over `limit` this second.
    fn admit(&mut self, ip: std::net::IpAddr, limit: u32) -> bool {
        let now = std::time::Instant::now();
        if self
            .started
            .is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(1))
        {
            self.started = Some(now);
            self.counts.clear();
        }
        let n = self.counts.entry(ip).or_insert(0);
        *n += 1;
        *n <= limit
    }
}

/// What a port's connections share. One `Arc` of it per connection ([`PortGuard`]) keeps,
/// until the connection ends, the broker's liveness (`live`, which shutdown waits on), the
/// port's count against `maxConnections` (the `Arc`'s own count) and the listener's
/// open-connections gauge: one pointer in every connection task instead of three.
struct PortShared {
    _live: Arc<()>,
    counts: Arc<crate::stats::ListenerCounts>,
}

/// A connection of a port, counted while it lives.
struct PortGuard(Arc<PortShared>);

impl PortGuard {
    fn new(port: &Arc<PortShared>) -> Self {
        crate::stats::Stats::add(&port.counts.open, 1);
        PortGuard(Arc::clone(port))
    }
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        crate::stats::Stats::sub(&self.0.counts.open, 1);
    }
}

/// A listener that is accepting connections.
#[derive(Debug, Clone)]
pub struct BoundListener {
    pub name: String,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub tls: bool,
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    port: Port,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
    live: Arc<()>,
) {
    let Port {
        name,
        protocol,
        tls,
        auth,
        limits,
    } = port;
    // Live connections of this port: every connection task holds a clone.
    let port_shared = Arc::new(PortShared {
        _live: live,
        counts: ctx.stats.listeners.of(&name),
    });
    let mut rate = RateWindow::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if limits
            .max_connections
            .is_some_and(|max| Arc::strong_count(&port_shared) > max as usize)
        {
            tracing::debug!(%peer, "connection refused: the port holds maxConnections already");
            continue;
        }
        if limits
            .max_connects_per_second_per_address
            .is_some_and(|max| !rate.admit(peer.ip(), max))
        {
            tracing::debug!(%peer, "connection refused: too many connects per second from this address");
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let ctx = Arc::clone(&ctx);
        let tls = tls.as_ref().map(|t| t.acceptor());
        let auth = Arc::clone(&auth);
        let span = connection_span(&name, peer, protocol, tls.is_some());
        let name = Arc::clone(&name);
        // Held until the connection ends: the broker's liveness, `maxConnections` and the
        // open-connections gauge.
        let guard = PortGuard::new(&port_shared);
        match (tls, protocol) {
            // Spawned as it is, without a wrapping future: every idle connection holds this
            // task, and an `async` wrapper would keep a second copy of the arguments.
            (None, Protocol::Mqtt) => spawn_connection(
                connection::serve(tcp, origin(peer, name, auth, None), ctx, guard),
                span,
            ),
            (None, Protocol::WebSockets) => spawn_connection(
                async move {
                    let _guard = guard;
                    serve(tcp, protocol, (peer, name), auth, None, ctx).await
                },
                span,
            ),
            // Boxed: a TLS session is several KB, held once the handshake is done.
            (Some(acceptor), _) => spawn_connection(
                async move {
                    let _guard = guard;
                    Box::pin(serve_tls(acceptor, tcp, protocol, (peer, name), auth, ctx)).await
                },
                span,
            ),
        }
    }
}

fn origin(
    peer: SocketAddr,
    listener: Arc<str>,
    auth: Arc<ListenerAuth>,
    certs: Option<ClientCerts>,
) -> Box<connection::Origin> {
    Box::new(connection::Origin {
        peer,
        listener,
        auth,
        certs,
    })
}

/// Spawn a connection's task. Without a subscriber for its span (no trace export, logs
/// above debug) the task carries no span at all.
fn spawn_connection<F>(task: F, span: tracing::Span)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if span.is_disabled() {
        tokio::spawn(task);
    } else {
        tokio::spawn(tracing::Instrument::instrument(task, span));
    }
}

/// The span of one connection from accept to close (exported as an OTLP trace when traces
/// are; the CONNECT exchange records the client's id, version and CONNACK code in it).
fn connection_span(
    listener: &str,
    peer: SocketAddr,
    protocol: Protocol,
    tls: bool,
) -> tracing::Span {
    use tracing::field::Empty;
    let transport = match protocol {
        Protocol::Mqtt => "mqtt",
        Protocol::WebSockets => "websocket",
    };
    tracing::debug_span!(
        "mqtt.connection",
        mqtt.listener = listener,
        network.peer.address = %peer.ip(),
        network.peer.port = peer.port(),
        network.protocol.name = transport,
        tls,
        mqtt.client_id = Empty,
        mqtt.protocol_version = Empty,
        mqtt.connack.code = Empty,
        traceparent = Empty,
        error = Empty,
    )
}

/// TLS handshake (counted against the CONNECT deadline: slow-loris protection), then serve.
async fn serve_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    protocol: Protocol,
    (peer, name): (SocketAddr, Arc<str>),
    auth: Arc<ListenerAuth>,
    ctx: Arc<Context>,
) {
    match tokio::time::timeout(ctx.settings.connect_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            // Verified by rustls against the port's trusted client CAs, if any.
            let certs = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|d| d.clone().into_owned()).collect()));
            serve(stream, protocol, (peer, name), auth, certs, ctx).await
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

async fn serve<S>(
    stream: S,
    protocol: Protocol,
    (peer, name): (SocketAddr, Arc<str>),
    auth: Arc<ListenerAuth>,
    certs: Option<ClientCerts>,
    ctx: Arc<Context>,
) where
    S: connection::Input + tokio::io::AsyncWrite + Send,
{
    match protocol {
        Protocol::Mqtt => connection::serve(stream, origin(peer, name, auth, certs), ctx, ()).await,
        // Boxed for the same reason as TLS: WebSocket framing state would grow every task.
        Protocol::WebSockets => {
            Box::pin(async move {
                match crate::ws::accept(stream).await {
                    Ok(ws) => connection::serve(ws, origin(peer, name, auth, certs), ctx, ()).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "websocket handshake failed"),
                }
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a function returns, without calling it.
    fn future_size4<F, A, B, C, D, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C, D) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every idle connection holds its task's future, as large as its largest state: keep
    /// it small. The performance issue asks for 2 KB of memory per idle connection in all;
    /// this guards the largest part against regressions (TLS or WebSocket state inline,
    /// arguments held twice, locals that outlive their use).
    #[test]
    fn an_idle_plain_tcp_connection_task_stays_small() {
        let conn = future_size4(connection::serve::<tokio::net::TcpStream, PortGuard>);
        eprintln!("connection::serve future: {conn} B");
        // With the port's guard: 480 B in a debug build and 464 B in a release build of
        // 2026-12-03 evening (752 B that morning, 1,928 B the day before). A tokio task cell
        // is this future plus 112 B (header 32, scheduler, task id and stage tag 32, trailer
        // 48), rounded up to 128 B: at most 528 B keeps the cell at 640 B.
        assert!(conn <= 528, "connection::serve future is {conn} bytes");
    }
}
