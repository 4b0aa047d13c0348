//! OPC UA for Edgeplane: the connector side that brings OPC UA servers' values and events
//! to the rest of the system, and a simulator server to try it against.
//!
//! - [`client`] connects to one endpoint (security, identity, PKI and trust list),
//!   subscribes to datasets and event sources, reconnects on its own, and delivers
//!   [`client::Notification`]s on a channel together with an endpoint
//!   [`client::EndpointStatus`].
//! - [`payload`] turns dataset values into AIO-shaped MQTT payloads and CloudEvents
//!   properties (key and delta frames); it is pure and does no I/O.
//! - [`sim`] is an OPC PLC-like simulator server with predictable node ids.
//!
//! Nothing here talks to the MQTT broker or reads configuration files: the caller wires
//! notifications to messages.

pub mod client;
pub mod payload;
pub mod sim;
pub mod value;
