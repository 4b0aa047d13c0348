//! A partition's part of the connected-clients snapshot (see `router/clients.rs`).

use super::super::clients::{ClientInfo, PartitionClients};
use super::Partition;

impl Partition {
    /// The sessions with a connection attached (in-process ones left out): at most `limit`,
    /// the first by client id, and how many there are.
    pub(super) fn connected_clients(&self, limit: usize) -> PartitionClients {
        let mut clients: Vec<ClientInfo> = Vec::new();
        let mut total = 0;
        for s in self.sessions.iter().flatten() {
            let Some(details) = s.conn.as_ref().and_then(|c| c.details.as_ref()) else {
                continue;
            };
            if s.internal {
                continue;
            }
            total += 1;
            // Keep the `limit` smallest ids without holding every session at once: sort and
            // cut whenever twice the limit has gathered.
            if clients.len() >= limit.saturating_mul(2).max(64) {
                clients.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
                clients.truncate(limit);
            }
            clients.push(ClientInfo {
                client_id: s.client_id.to_string(),
                username: details.username.as_deref().map(str::to_owned),
                version: s.version,
                listener: details.listener.to_string(),
                remote: details.remote,
                connected_since: details.connected_at(),
                subscriptions: s.subs.len(),
                queued_messages: s.queue.len(),
                queued_bytes: s.queue.bytes(),
                inflight: s.inflight.len(),
            });
        }
        clients.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
        clients.truncate(limit);
        PartitionClients { total, clients }
    }
}
