//! MQTT conformance tests over real sockets, one file per area of the specification. Each
//! test names the normative statement it checks.

#[path = "09-alias.rs"]
mod alias;
#[path = "01-connect.rs"]
mod connect;
#[path = "08-expiry.rs"]
mod expiry;
#[path = "10-flow.rs"]
mod flow;
#[path = "12-keepalive.rs"]
mod keepalive;
#[path = "13-malformed.rs"]
mod malformed;
#[path = "11-properties.rs"]
mod properties;
#[path = "03-publish.rs"]
mod publish;
#[path = "04-retain.rs"]
mod retain;
#[path = "06-session.rs"]
mod session;
#[path = "07-shared.rs"]
mod shared;
#[path = "02-subpub.rs"]
mod subpub;
#[path = "05-will.rs"]
mod will;
