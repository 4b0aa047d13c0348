//! The `BrokerAuthentication` and `BrokerAuthorization` kinds, accepted as opaque specs.
//!
//! For now only the envelope is validated and `spec` must be a mapping; the spec leaves as
//! JSON so listener ports can reference these resources by name and the broker's auth
//! module can read them. Their own field tables belong here when the broker acts on them.

use crate::resource::crd_document;
use crate::schema::{Field, Schema};
use crate::yaml::Node;

pub(crate) static DOCUMENT: [Field; 5] = crd_document(true, Schema::FreeMap);

/// The `spec` as JSON (null when missing; that was reported).
pub(crate) fn read_spec(doc: &Node) -> serde_json::Value {
    doc.get("spec")
        .map_or(serde_json::Value::Null, Node::to_json)
}
