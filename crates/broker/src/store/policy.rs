//! Which state the store keeps, from the `persistence` section of the Broker resource: each
//! policy is `None`, `All` or `Custom` (topic filters, client id patterns), and a v5 client
//! may opt in with the dynamic user property (`aio-persistence=true`) on CONNECT, SUBSCRIBE
//! or PUBLISH. Sessions are only ever persisted with a session expiry above zero.

use edgeplane_codec::{topic, Properties};
pub use edgeplane_config::{PersistMode, PersistPolicy, Persistence};

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub config: Persistence,
}

impl Policy {
    pub fn new(config: Persistence) -> Self {
        Self { config }
    }

    /// Whether `props` carry the dynamic opt-in user property.
    pub fn opted_in(&self, props: &Properties) -> bool {
        props
            .user_properties
            .iter()
            .any(|(k, v)| *k == self.config.dynamic_key && *v == self.config.dynamic_value)
    }

    /// Whether a session of `client_id` (which asked with `opted_in`) keeps its state
    /// (subscriptions, queue, QoS state) on disk.
    pub fn persist_session(&self, client_id: &str, opted_in: bool) -> bool {
        let p = &self.config.subscriber_queue;
        match p.mode {
            PersistMode::All => true,
            PersistMode::None => false,
            PersistMode::Custom => {
                (p.dynamic && opted_in)
                    || p.client_ids
                        .iter()
                        .any(|pat| wildcard_match(pat, client_id))
                    || (p.client_ids.is_empty() && !p.topics.is_empty())
            }
        }
    }

    /// Whether a message on `topic` (published with `opted_in`) is queued durably for
    /// persisted sessions.
    pub fn persist_queued(&self, topic_name: &str, opted_in: bool) -> bool {
        let p = &self.config.subscriber_queue;
        match p.mode {
            PersistMode::All => true,
            PersistMode::None => false,
            PersistMode::Custom => {
                p.topics.is_empty()
                    || (p.dynamic && opted_in)
                    || p.topics.iter().any(|f| topic::matches(f, topic_name))
            }
        }
    }

    /// Whether a retained message on `topic` is kept on disk.
    pub fn persist_retained(&self, topic_name: &str, opted_in: bool) -> bool {
        if topic_name.starts_with("$SYS") {
            // Regenerated every period; never worth a write.
            return false;
        }
        let p = &self.config.retain;
        match p.mode {
            PersistMode::All => true,
            PersistMode::None => p.dynamic && opted_in,
            PersistMode::Custom => {
                (p.dynamic && opted_in) || p.topics.iter().any(|f| topic::matches(f, topic_name))
            }
        }
    }
}

/// Match a client id against a pattern where `*` stands for any run of characters.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty();
    };
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_patterns() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("line-*", "line-7"));
        assert!(!wildcard_match("line-*", "press-7"));
        assert!(wildcard_match("*-critical", "pump-critical"));
        assert!(wildcard_match("a*b*c", "a-x-b-y-c"));
        assert!(!wildcard_match("a*b*c", "a-x-c"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("exact", "exact2"));
        assert!(!wildcard_match("ab*ba", "aba"));
    }
}
