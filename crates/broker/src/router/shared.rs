//! Shared-subscription groups (§4.8.2) owned by one partition: the member list of one
//! `$share/{group}/{filter}` and the choice of the member that receives each message —
//! round-robin over connected members, or, as in Azure IoT Operations, by hash of the
//! message's `$partition` user property so related messages reach the same member.

use std::sync::Arc;

use edgeplane_codec::SubOptions;

use crate::message::Message;

#[derive(Debug, Clone)]
pub struct Member {
    pub client: Arc<str>,
    pub partition: usize,
    pub opts: SubOptions,
    pub sub_id: Option<u32>,
    pub online: bool,
}

#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub filter: String,
    pub members: Vec<Member>,
    next: usize,
}

impl Group {
    pub fn new(name: String, filter: String) -> Self {
        Self {
            name,
            filter,
            members: Vec::new(),
            next: 0,
        }
    }

    pub fn join(&mut self, member: Member) {
        match self.members.iter_mut().find(|m| m.client == member.client) {
            Some(m) => *m = member,
            None => self.members.push(member),
        }
    }

    pub fn leave(&mut self, client: &str) {
        self.members.retain(|m| &*m.client != client);
    }

    pub fn set_online(&mut self, client: &str, online: bool) {
        if let Some(m) = self.members.iter_mut().find(|m| &*m.client == client) {
            m.online = online;
        }
    }

    /// The member that receives `msg`: by `$partition` hash when present, otherwise the
    /// next connected member in turn (any member when none is connected, so the message
    /// waits in that member's session).
    pub fn pick(&mut self, msg: &Message) -> Option<&Member> {
        if self.members.is_empty() {
            return None;
        }
        // The pool is the connected members, or every member when none is connected; it is
        // indexed in place (this runs for every message to the group).
        let online = self.members.iter().filter(|m| m.online).count();
        let in_pool = |m: &Member| online == 0 || m.online;
        let pool_len = if online == 0 {
            self.members.len()
        } else {
            online
        };
        let key = msg
            .properties
            .user_properties
            .iter()
            .find(|(k, _)| k == "$partition");
        let nth = match key {
            Some((_, v)) => super::hash_index(v, pool_len),
            None => {
                self.next = self.next.wrapping_add(1);
                self.next % pool_len
            }
        };
        self.members.iter().filter(|m| in_pool(m)).nth(nth)
    }
}
