//! SUBSCRIBE and UNSUBSCRIBE for a partition's sessions, and the shared-subscription groups
//! the partition owns: filters enter the trie or their group (in whichever partition owns
//! it), retained messages follow per retain handling, and SUBACK/UNSUBACK go back through
//! the session's control queue.

use std::sync::Arc;

use edgeplane_codec::{
    topic, Packet, Properties, QoS, ReasonCode, SubAck, SubOptions, Subscribe, UnsubAck,
    Unsubscribe,
};

use super::super::shared::{Group, Member};
use super::super::trie::{Entry, Target};
use super::super::{hash_index, Ending, Inter, Outgoing};
use super::Partition;
use crate::message::Message;
use crate::stats::Stats;
use crate::store::Record;

impl Partition {
    pub(super) fn on_subscribe(&mut self, idx: u32, packet: Subscribe, denied: &[bool]) {
        let sub_id = packet.properties.subscription_identifiers.first().copied();
        let mut hold = 0;
        let mut reasons = Vec::with_capacity(packet.filters.len());
        let mut retained: Vec<(Arc<Message>, QoS, Option<u32>)> = Vec::new();
        for (i, (raw, opts)) in packet.filters.iter().enumerate() {
            let spec = match topic::parse_filter(raw) {
                Ok(spec) => spec,
                Err(_) => {
                    reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
            };
            if spec.share_group.is_some() && opts.no_local {
                // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
                if let Some(s) = self.session(idx) {
                    s.signal_kill(ReasonCode::PROTOCOL_ERROR.0);
                }
                self.on_disconnected(idx, Ending::Abnormal);
                return;
            }
            if denied.get(i) == Some(&true) {
                reasons.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let client = match self.session(idx) {
                Some(s) => Arc::clone(&s.client_id),
                None => return,
            };
            let new = self.add_subscription(idx, Arc::clone(&client), raw, *opts, sub_id, true);
            if spec.share_group.is_none()
                && (opts.retain_handling == 0 || (opts.retain_handling == 1 && new))
            {
                for m in self.router.retain.matching(spec.filter, &self.router.stats) {
                    retained.push((m, opts.qos, sub_id));
                }
            }
            if self.session(idx).is_some_and(|s| s.persist) {
                hold = self.persist(Record::Subscribe {
                    client,
                    filter: raw.clone(),
                    opts: *opts,
                    sub_id,
                });
            }
            reasons.push(ReasonCode(opts.qos as u8));
        }
        let Some(s) = self.session(idx) else { return };
        let ack = SubAck {
            packet_id: packet.packet_id,
            reasons,
            properties: Properties::default(),
        };
        // SUBACK once the subscriptions are durable; retained messages follow it.
        s.hold = s.hold.max(hold);
        s.control
            .push_back(Outgoing::Packet(Box::new(Packet::SubAck(ack))));
        self.pump(idx);
        for (m, qos, sub_id) in retained {
            let qos = m.qos.min(qos);
            self.enqueue(idx, &m, qos, true, sub_id.into_iter().collect(), 0, None);
        }
    }

    pub(super) fn on_unsubscribe(&mut self, idx: u32, packet: Unsubscribe) {
        let mut reasons = Vec::with_capacity(packet.filters.len());
        let mut hold = 0;
        for raw in &packet.filters {
            let Some(s) = self.session(idx) else { return };
            let client = Arc::clone(&s.client_id);
            let internal = s.internal;
            let persist = s.persist;
            if s.subs.remove(raw).is_some() {
                self.remove_subscription(idx, &client, raw, internal);
                if persist {
                    let filter = raw.clone();
                    hold = self.persist(Record::Unsubscribe { client, filter });
                }
                reasons.push(ReasonCode::SUCCESS);
            } else if topic::parse_filter(raw).is_err() {
                reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
            } else {
                reasons.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        let Some(s) = self.session(idx) else { return };
        let ack = UnsubAck {
            packet_id: packet.packet_id,
            reasons,
            properties: Properties::default(),
        };
        s.hold = s.hold.max(hold);
        s.control
            .push_back(Outgoing::Packet(Box::new(Packet::UnsubAck(ack))));
        self.pump(idx);
    }

    /// Add (or replace) one subscription of a session: in the session's map, and in the
    /// trie or its shared group. Returns whether the filter is new for the session.
    pub(super) fn add_subscription(
        &mut self,
        idx: u32,
        client: Arc<str>,
        raw: &str,
        opts: SubOptions,
        sub_id: Option<u32>,
        online: bool,
    ) -> bool {
        let Ok(spec) = topic::parse_filter(raw) else {
            return false;
        };
        let Some(s) = self.session(idx) else {
            return false;
        };
        let is_new = s.subs.insert(raw.to_owned(), (opts, sub_id)).is_none();
        if is_new && !s.internal {
            Stats::add(&self.router.stats.subscriptions, 1);
        }
        match spec.share_group {
            Some(group) => {
                let member = Member {
                    client,
                    partition: self.index,
                    opts,
                    sub_id,
                    online,
                };
                self.send_shared(group, spec.filter, |g, f| Inter::SharedJoin(member, g, f));
                is_new
            }
            None => self.trie.insert(
                spec.filter,
                Entry {
                    target: Target::Session(idx),
                    opts,
                    sub_id,
                },
            ),
        }
    }

    /// Every subscription of a session with its options (to write them to the store).
    pub(super) fn subscription_options(
        &mut self,
        idx: u32,
    ) -> Vec<(String, SubOptions, Option<u32>)> {
        self.session(idx).map_or_else(Vec::new, |s| {
            s.subs
                .iter()
                .map(|(f, (o, id))| (f.clone(), *o, *id))
                .collect()
        })
    }

    /// Remove one subscription (already taken out of the session's map) from the trie or
    /// its shared group.
    pub(super) fn remove_subscription(
        &mut self,
        idx: u32,
        client: &Arc<str>,
        raw: &str,
        internal: bool,
    ) {
        if !internal {
            Stats::sub(&self.router.stats.subscriptions, 1);
        }
        let Ok(spec) = topic::parse_filter(raw) else {
            return;
        };
        match spec.share_group {
            Some(group) => {
                let client = Arc::clone(client);
                self.send_shared(group, spec.filter, |group, filter| Inter::SharedLeave {
                    group,
                    filter,
                    client,
                });
            }
            None => {
                self.trie.remove(spec.filter, Target::Session(idx));
            }
        }
    }

    pub(super) fn set_shared_online(&mut self, idx: u32, online: bool) {
        let Some(s) = self.session(idx) else { return };
        let client = Arc::clone(&s.client_id);
        let shared: Vec<String> = s
            .subs
            .keys()
            .filter(|k| k.starts_with("$share/"))
            .cloned()
            .collect();
        for raw in shared {
            if let Ok(topic::FilterSpec {
                share_group: Some(g),
                filter,
            }) = topic::parse_filter(&raw)
            {
                let client = Arc::clone(&client);
                self.send_shared(g, filter, |group, filter| Inter::SharedOnline {
                    group,
                    filter,
                    client,
                    online,
                });
            }
        }
    }

    /// Deliver a group message to the partition that owns the group (maybe this one).
    pub(super) fn send_shared(
        &mut self,
        group: &str,
        filter: &str,
        make: impl FnOnce(String, String) -> Inter,
    ) {
        let owner = hash_index(&format!("{group}/{filter}"), self.router.partitions());
        let m = make(group.to_owned(), filter.to_owned());
        if owner == self.index {
            self.on_inter(m);
        } else {
            self.router.send_inter(owner, m);
        }
    }

    pub(super) fn shared_join(&mut self, member: Member, group: String, filter: String) {
        let key = (group.clone(), filter.clone());
        let g = match self.group_ids.get(&key) {
            Some(&g) => g,
            None => {
                let g = match self.groups.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => {
                        self.groups.push(None);
                        self.groups.len() - 1
                    }
                } as u32;
                self.groups[g as usize] = Some(Group::new(group, filter.clone()));
                self.group_ids.insert(key, g);
                let opts = SubOptions::new(QoS::ExactlyOnce);
                self.trie.insert(
                    &filter,
                    Entry {
                        target: Target::Shared(g),
                        opts,
                        sub_id: None,
                    },
                );
                g
            }
        };
        if let Some(grp) = self.groups[g as usize].as_mut() {
            grp.join(member);
        }
    }

    pub(super) fn remove_group(&mut self, g: u32) {
        if let Some(grp) = self.groups[g as usize].take() {
            self.trie.remove(&grp.filter, Target::Shared(g));
            self.group_ids.remove(&(grp.name, grp.filter));
        }
    }
}
