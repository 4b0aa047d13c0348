//! One file per packet family; each decodes a packet body from a [`crate::primitives::Reader`]
//! and encodes into a buffer, given the protocol version.

pub mod connect;
pub mod control;
pub mod publish;
pub mod subscribe;
