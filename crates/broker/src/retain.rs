//! Retained messages (§3.3.1.3): the last retained message per topic, shared by every router
//! partition behind a read-write lock. Writes happen on retained publishes only; reads when a
//! subscription is made, so the lock is off the common publish path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use edgeplane_codec::topic;
use parking_lot::RwLock;

use crate::message::Message;
use crate::stats::Stats;

#[derive(Debug, Default)]
pub struct RetainStore {
    messages: RwLock<HashMap<String, Arc<Message>>>,
}

impl RetainStore {
    /// Store or (for an empty payload) clear the retained message of `msg.topic`.
    pub fn update(&self, msg: &Arc<Message>, stats: &Stats) {
        let mut map = self.messages.write();
        if msg.payload.is_empty() {
            if map.remove(&msg.topic).is_some() {
                Stats::sub(&stats.retained, 1);
            }
        } else if map.insert(msg.topic.clone(), Arc::clone(msg)).is_none() {
            Stats::add(&stats.retained, 1);
        }
    }

    /// Retained messages whose topic matches `filter`, expired ones removed on the way.
    pub fn matching(&self, filter: &str, stats: &Stats) -> Vec<Arc<Message>> {
        let now = Instant::now();
        let has_wildcard = filter.contains(['+', '#']);
        let mut expired = Vec::new();
        let found: Vec<Arc<Message>> = {
            let map = self.messages.read();
            let mut out = Vec::new();
            let mut consider = |m: &Arc<Message>| {
                if m.is_expired(now) {
                    expired.push(m.topic.clone());
                } else {
                    out.push(Arc::clone(m));
                }
            };
            if has_wildcard {
                map.values()
                    .filter(|m| topic::matches(filter, &m.topic))
                    .for_each(&mut consider);
            } else if let Some(m) = map.get(filter) {
                consider(m);
            }
            out
        };
        if !expired.is_empty() {
            let mut map = self.messages.write();
            for t in expired {
                if map.get(&t).is_some_and(|m| m.is_expired(now)) {
                    map.remove(&t);
                    Stats::sub(&stats.retained, 1);
                }
            }
        }
        found
    }
}
