//! The authorization decision cache (`authorizationPolicies.cache: Enabled`, the default):
//! per connection, PUBLISH decisions by topic, valid for one compiled policy. A connection's
//! principal does not change while it is connected, so a decision depends only on the policy
//! and the topic; the cache remembers the policy it was filled under (by pointer) and empties
//! itself when it is handed another one, so a reloaded policy applies at the next PUBLISH.
//!
//! Bounded: at most [`MAX_ENTRIES`] topics of at most [`MAX_TOPIC`] bytes per connection; when
//! full it starts over (devices publish to a handful of topics, so a full cache means a client
//! whose topics do not repeat, for which remembering does not pay). Nothing is allocated until
//! a client publishes under a policy.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Authorization, Principal};

/// Topics remembered per connection.
pub const MAX_ENTRIES: usize = 64;
/// Longer topics are decided every time rather than held.
pub const MAX_TOPIC: usize = 256;

#[derive(Debug, Default)]
pub struct DecisionCache {
    policy: Option<Arc<Authorization>>,
    publish: HashMap<Box<str>, bool>,
}

impl DecisionCache {
    /// May `p` publish to `topic` under `policy`? Same answer as
    /// [`Authorization::allows_publish`], remembered when the policy allows caching.
    pub fn allows_publish(
        &mut self,
        policy: &Arc<Authorization>,
        p: &Principal,
        topic: &str,
    ) -> bool {
        if !policy.cache_enabled() {
            return policy.allows_publish(p, topic);
        }
        if !self.policy.as_ref().is_some_and(|c| Arc::ptr_eq(c, policy)) {
            self.publish.clear();
            self.policy = Some(Arc::clone(policy));
        }
        if let Some(&allowed) = self.publish.get(topic) {
            return allowed;
        }
        let allowed = policy.allows_publish(p, topic);
        if topic.len() <= MAX_TOPIC {
            if self.publish.len() >= MAX_ENTRIES {
                self.publish.clear();
            }
            self.publish.insert(topic.into(), allowed);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(topic: &str, cache: &str) -> Arc<Authorization> {
        let spec = serde_json::json!({"authorizationPolicies": {"cache": cache, "rules": [
            {"principals": {"clientIds": ["dev"]},
             "brokerResources": [{"method": "Publish", "topics": [topic]}]}
        ]}});
        Arc::new(Authorization::from_spec(&spec).expect("policy"))
    }

    #[test]
    fn answers_like_the_policy_and_follows_a_new_one() {
        let p = Principal {
            client_id: "dev".into(),
            ..Principal::default()
        };
        let mut cache = DecisionCache::default();
        let first = policy("a/#", "Enabled");
        for _ in 0..2 {
            assert!(cache.allows_publish(&first, &p, "a/1"));
            assert!(!cache.allows_publish(&first, &p, "b/1"));
        }
        let second = policy("b/#", "Enabled");
        assert!(
            !cache.allows_publish(&second, &p, "a/1"),
            "new policy applies"
        );
        assert!(cache.allows_publish(&second, &p, "b/1"));
        // Bounded, and still right past the bound.
        for i in 0..(MAX_ENTRIES * 3) {
            assert!(cache.allows_publish(&second, &p, &format!("b/{i}")));
            assert!(cache.publish.len() <= MAX_ENTRIES);
        }
        let long = format!("b/{}", "x".repeat(MAX_TOPIC));
        assert!(cache.allows_publish(&second, &p, &long));
        assert!(!cache.publish.contains_key(long.as_str()));
    }

    #[test]
    fn disabled_cache_remembers_nothing() {
        let p = Principal {
            client_id: "dev".into(),
            ..Principal::default()
        };
        let mut cache = DecisionCache::default();
        let off = policy("a/#", "Disabled");
        assert!(cache.allows_publish(&off, &p, "a/1"));
        assert!(cache.publish.is_empty());
    }
}
