//! Who may touch which keys: each request's [`Access`], decided from the publisher the
//! broker attached to the request message ([`Publisher`]) and, for a network client, the
//! `stateStoreResources` of its listener port's `BrokerAuthorization`, read per request so
//! a replaced policy applies to the next request.
//!
//! As for topics: a port without a policy allows everything, a port with one allows only
//! what a rule grants (allow-only). In-process services are trusted. A will carries its
//! client's principal and port like the client's PUBLISH. A request whose publisher is
//! unknown (a message or will read back from the store after a restart) is refused whatever
//! the policies, since nothing says which port's rules would apply.

use std::sync::Arc;

use edgeplane_broker::auth::{Authorization, KeyAccess, Principal};
use edgeplane_broker::message::{Message, Publisher};

/// What one request may do.
pub(crate) enum Access<'a> {
    All,
    Nothing,
    Rules(Arc<Authorization>, &'a Principal),
}

impl<'a> Access<'a> {
    pub(crate) fn of(msg: &'a Message) -> Self {
        match msg.publisher.as_deref() {
            Some(Publisher::Service) => Access::All,
            Some(Publisher::Client {
                principal, auth, ..
            }) => match auth.authorization() {
                Some(policy) => Access::Rules(policy, principal),
                None => Access::All,
            },
            None => Access::Nothing,
        }
    }

    /// Whether a policy limits this request's keys (its SCAN cursors are then sealed).
    pub(crate) fn restricted(&self) -> bool {
        !matches!(self, Access::All)
    }

    pub(crate) fn allows(&self, access: KeyAccess, key: &[u8]) -> bool {
        match self {
            Access::All => true,
            Access::Nothing => false,
            Access::Rules(policy, principal) => policy.allows_key(principal, access, key),
        }
    }
}
