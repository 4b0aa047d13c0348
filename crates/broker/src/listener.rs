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
    protocol: Protocol,
    tls: Option<Arc<ServerTls>>,
    auth: Arc<ListenerAuth>,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
    live: Arc<()>,
) {
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
        let _ = tcp.set_nodelay(true);
        let ctx = Arc::clone(&ctx);
        let live = Arc::clone(&live);
        let tls = tls.as_ref().map(|t| t.acceptor());
        let auth = Arc::clone(&auth);
        tokio::spawn(async move {
            let _live = live;
            let Some(acceptor) = tls else {
                return serve(tcp, protocol, peer, auth, None, ctx).await;
            };
            // The TLS handshake counts against the CONNECT deadline (slow-loris protection).
            match tokio::time::timeout(ctx.settings.connect_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    // Verified by rustls against the port's trusted client CAs, if any.
                    let certs = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| Arc::new(c.iter().map(|d| d.clone().into_owned()).collect()));
                    serve(stream, protocol, peer, auth, certs, ctx).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

async fn serve<S>(
    stream: S,
    protocol: Protocol,
    peer: SocketAddr,
    auth: Arc<ListenerAuth>,
    certs: Option<ClientCerts>,
    ctx: Arc<Context>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    match protocol {
        Protocol::Mqtt => connection::serve(stream, peer, auth, certs, ctx).await,
        Protocol::WebSockets => match crate::ws::accept(stream).await {
            Ok(ws) => connection::serve(ws, peer, auth, certs, ctx).await,
            Err(e) => tracing::debug!(%peer, error = %e, "websocket handshake failed"),
        },
    }
}
