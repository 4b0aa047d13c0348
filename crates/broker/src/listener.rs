//! Listeners: accept TCP or WebSocket connections on a bound address and hand each to its
//! own connection task, until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use edgeplane_config::Protocol;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::connection::{self, Context};

/// A listener to open: its resource name, address and protocol.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: Protocol,
}

/// A listener that is accepting connections.
#[derive(Debug, Clone)]
pub struct BoundListener {
    pub name: String,
    pub addr: SocketAddr,
    pub protocol: Protocol,
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    protocol: Protocol,
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
        tokio::spawn(async move {
            let _live = live;
            match protocol {
                Protocol::Mqtt => connection::serve(tcp, peer, ctx).await,
                Protocol::WebSockets => match crate::ws::accept(tcp).await {
                    Ok(ws) => connection::serve(ws, peer, ctx).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "websocket handshake failed"),
                },
            }
        });
    }
}
