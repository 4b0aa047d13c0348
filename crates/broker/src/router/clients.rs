//! The connected-clients snapshot: every partition lists its sessions that have a connection
//! attached, with what the connection recorded when the client connected.
//!
//! The request goes to each partition over its command inbox (behind the commands already
//! queued there) and the answers are gathered until a deadline; a partition that does not
//! answer in time is left out and the list says so (`complete: false`). Each partition sorts
//! its own sessions by client id and sends at most `limit` of them with its total count, so
//! the answer stays small however many clients are connected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use edgeplane_codec::ProtocolVersion;
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

use super::{Cmd, Router};

/// What a connection tells its session about itself when it attaches.
#[derive(Debug)]
pub struct ClientDetails {
    pub username: Option<Box<str>>,
    /// Name of the listener the client connected through.
    pub listener: Arc<str>,
    pub remote: SocketAddr,
    /// When, in milliseconds since the Unix epoch: one of these per connected client, and
    /// 72 B of fields keep the allocation in a 96 B chunk (a `SystemTime` and a `String`
    /// made it 112 B).
    pub connected_at_ms: u64,
}

impl ClientDetails {
    pub fn connected_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.connected_at_ms)
    }
}

/// One connected client as the snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub version: ProtocolVersion,
    pub listener: String,
    pub remote: SocketAddr,
    pub connected_since: SystemTime,
    /// Subscriptions of the session (shared ones included).
    pub subscriptions: usize,
    /// Messages queued for the client and not yet handed to its connection.
    pub queued_messages: usize,
    pub queued_bytes: u64,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
}

/// The answer of [`Router::clients`].
#[derive(Debug, Clone, Default)]
pub struct ClientList {
    /// Connected clients of the partitions that answered, all of them.
    pub total: usize,
    /// At most `limit` of them, sorted by client id.
    pub clients: Vec<ClientInfo>,
    /// Every partition answered before the deadline.
    pub complete: bool,
}

/// One partition's answer: its connected clients (sorted, at most the limit) and its count.
pub(crate) struct PartitionClients {
    pub total: usize,
    pub clients: Vec<ClientInfo>,
}

impl Router {
    /// The connected clients (in-process services left out), at most `limit` sorted by
    /// client id, from the partitions that answer within `wait`.
    pub async fn clients(&self, limit: usize, wait: Duration) -> ClientList {
        let deadline = Instant::now() + wait;
        let mut replies = Vec::with_capacity(self.partitions());
        for inbox in &self.inboxes {
            let (tx, rx) = oneshot::channel();
            let cmd = Cmd::Clients { limit, reply: tx };
            if let Ok(Ok(())) = timeout_at(deadline, inbox.send(cmd)).await {
                replies.push(rx);
            }
        }
        let mut list = ClientList {
            complete: replies.len() == self.partitions(),
            ..ClientList::default()
        };
        for rx in replies {
            match timeout_at(deadline, rx).await {
                Ok(Ok(part)) => {
                    list.total += part.total;
                    list.clients.extend(part.clients);
                }
                _ => list.complete = false,
            }
        }
        list.clients
            .sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
        list.clients.truncate(limit);
        list
    }
}

#[cfg(test)]
mod tests {
    //! The snapshot over real sockets: clients connected through a TCP listener, one
    //! in-process client left out, the limit and the total.

    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::BytesMut;
    use edgeplane_codec::{
        decode, encode, Connect, Packet, Properties, ProtocolVersion, QoS, SubOptions, Subscribe,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::{Broker, ListenerSpec, LocalOptions, Protocol, Settings};

    struct Raw {
        stream: TcpStream,
        rbuf: BytesMut,
        v: ProtocolVersion,
    }

    impl Raw {
        async fn send(&mut self, p: Packet) {
            let mut out = BytesMut::new();
            encode(&p, self.v, &mut out);
            self.stream.write_all(&out).await.expect("write");
        }

        async fn recv(&mut self) -> Packet {
            let read = async {
                loop {
                    if let Some(p) = decode(&mut self.rbuf, self.v, usize::MAX).expect("decode") {
                        return p;
                    }
                    let n = self.stream.read_buf(&mut self.rbuf).await.expect("read");
                    assert!(n > 0, "connection closed");
                }
            };
            tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .expect("a packet within 5 s")
        }

        async fn open(
            addr: SocketAddr,
            id: &str,
            v: ProtocolVersion,
            user: Option<&str>,
            filters: &[&str],
        ) -> Raw {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let mut c = Raw {
                stream,
                rbuf: BytesMut::new(),
                v,
            };
            c.send(Packet::Connect(Box::new(Connect {
                protocol: v,
                clean_start: true,
                keep_alive: 60,
                client_id: id.into(),
                will: None,
                username: user.map(str::to_owned),
                password: None,
                properties: Properties::default(),
            })))
            .await;
            assert!(matches!(c.recv().await, Packet::ConnAck(a) if a.code == 0));
            if !filters.is_empty() {
                c.send(Packet::Subscribe(Subscribe {
                    packet_id: 1,
                    filters: filters
                        .iter()
                        .map(|f| (f.to_string(), SubOptions::new(QoS::AtLeastOnce)))
                        .collect(),
                    properties: Properties::default(),
                }))
                .await;
                assert!(matches!(c.recv().await, Packet::SubAck(_)));
            }
            c
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_snapshot_lists_connected_clients_sorted_and_bounded() {
        let settings = Settings {
            sys_interval: None,
            partitions: 4,
            ..Settings::default()
        };
        let spec = ListenerSpec {
            name: "plant-floor".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            protocol: Protocol::Mqtt,
            tls: None,
            auth: Default::default(),
            limits: Default::default(),
        };
        let broker = Broker::start(settings, vec![spec]).await.expect("broker");
        let addr = broker.addr(Protocol::Mqtt).expect("listener");
        let _local = broker
            .local_client(LocalOptions::new("$internal-service"))
            .await
            .expect("local client");
        let v3 = ProtocolVersion::V311;
        let v5 = ProtocolVersion::V5;
        let a = Raw::open(addr, "sensor-b", v3, Some("ann"), &["a/#", "b/+"]).await;
        let mut b = Raw::open(addr, "sensor-a", v5, None, &["x"]).await;
        let mut others = Vec::new();
        for i in 0..10 {
            others.push(Raw::open(addr, &format!("z-{i:02}"), v5, None, &[]).await);
        }

        let list = broker.clients(3).await;
        assert!(list.complete);
        assert_eq!(list.total, 12, "in-process clients are left out");
        let ids: Vec<_> = list.clients.iter().map(|c| c.client_id.as_str()).collect();
        assert_eq!(ids, ["sensor-a", "sensor-b", "z-00"]);
        let (first, second) = (&list.clients[0], &list.clients[1]);
        assert_eq!(first.version, v5);
        assert_eq!(first.username, None);
        assert_eq!(first.subscriptions, 1);
        assert_eq!(second.version, v3);
        assert_eq!(second.username.as_deref(), Some("ann"));
        assert_eq!(second.subscriptions, 2);
        assert_eq!(second.listener, "plant-floor");
        assert_eq!(second.remote, a.stream.local_addr().expect("local addr"));
        let age = second.connected_since.elapsed().expect("in the past");
        assert!(age < Duration::from_secs(30), "connected {age:?} ago");

        // A client that left is no longer listed.
        b.send(Packet::Disconnect(edgeplane_codec::Disconnect::new(
            edgeplane_codec::ReasonCode(0),
        )))
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let list = broker.clients(1000).await;
            if list.total == 11 {
                assert_eq!(list.clients.len(), 11);
                assert!(list.clients.iter().all(|c| c.client_id != "sensor-a"));
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still {}",
                list.total
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop((a, others));
        broker.shutdown(Duration::from_secs(1)).await;
    }
}
