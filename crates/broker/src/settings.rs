//! Runtime settings of one broker instance: the client limits of the `Broker` resource plus
//! what the resource model does not (yet) carry, with production defaults.

use std::time::Duration;

pub use edgeplane_config::{
    ClientLimits, DiskBufferSettings, Persistence, QueueLimit, QueueStrategy,
};

use crate::store::StoreOptions;

/// Everything the broker core needs to know to serve clients.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Limits from `Broker.spec.advanced.clients`.
    pub clients: ClientLimits,
    /// Receive Maximum we advertise: how many unacknowledged QoS 1/2 PUBLISH packets a client
    /// may have in flight towards us before it gets DISCONNECT 0x93. 100 as in Azure IoT
    /// Operations; QoS 1 is acknowledged as soon as it is routed, so it rarely binds.
    pub receive_maximum: u16,
    /// Topic Alias Maximum we advertise for client-to-broker aliases.
    pub topic_alias_maximum: u16,
    /// How long a new connection may take to send CONNECT (slow-loris protection).
    pub connect_timeout: Duration,
    /// Period of `$SYS/broker/...` statistics; `None` disables them.
    pub sys_interval: Option<Duration>,
    /// Router partitions; defaults to the number of cores.
    pub partitions: usize,
    /// Where the durable store lives; `None` keeps all state in memory.
    pub data_dir: Option<std::path::PathBuf>,
    /// What the store keeps (`Broker.spec.persistence`; everything by default).
    pub persistence: Persistence,
    pub store: StoreOptions,
    /// `Broker.spec.diskBackedMessageBuffer`: spill queued messages to disk above a memory
    /// threshold (see [`crate::router::spill`]); `None` keeps every queued message in memory.
    pub disk_buffer: Option<DiskBufferSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            clients: ClientLimits::default(),
            receive_maximum: 100,
            topic_alias_maximum: 64,
            connect_timeout: Duration::from_secs(10),
            sys_interval: Some(Duration::from_secs(10)),
            partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            data_dir: None,
            persistence: Persistence::default(),
            store: StoreOptions::default(),
            disk_buffer: None,
        }
    }
}
