//! The key-value store behind the protocol: values with versions (HLC), optional fencing
//! tokens and expiry, quotas, and KEYNOTIFY registrations. Pure state: the service task owns
//! one [`Store`], passes the time in, and drains the [`Notification`]s each operation
//! produces to publish them. With a journal, every change is also recorded as a
//! [`Change`] for [`crate::persist`] to write before the answers go out.
//!
//! KEYNOTIFY registrations belong to a client id and remember the connections that made
//! them ([`Requester`]). The broker reports ended connections separately from requests and
//! the two are not ordered, so [`Store::drop_client`] drops only what the ended connection
//! (or an in-process caller) registered, and a request from a connection already reported
//! ended is answered but registers nothing. For that the store remembers ended connection
//! ids for [`ENDED_RETENTION`]. Connection ids are unique but follow the order connections
//! were accepted, not the order they attached to their session (a slow CONNECT attaches
//! after a later connection's), so they are compared for equality only.
//!
//! Invariants: `bytes` is the sum of key and value lengths of `entries`; every entry with an
//! expiry has a matching `(expires_at, key, version)` in `expiries` (stale heap items, for
//! keys since rewritten or deleted, are skipped when they come due); `watchers` and
//! `watched_by` hold the same (client, key) pairs, each with at least one `Made`; `ended`
//! holds the ids of `ended_log`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::hlc::{wall_ms, Clock, Hlc};
use edgeplane_broker::auth::glob;

/// Why a write was refused; [`StoreError::text`] is the protocol's exact error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    FencingTokenRequired,
    FencingTokenLower,
    QuotaExceeded,
    EmptyKey,
}

impl StoreError {
    /// The text sent as `-ERR {text}` (the SDK matches these byte for byte).
    pub fn text(self) -> &'static str {
        match self {
            StoreError::FencingTokenRequired => "a fencing token is required for this request",
            StoreError::FencingTokenLower => "the request fencing token is a lower version than the fencing token protecting the resource",
            StoreError::QuotaExceeded => "the quota has been exceeded",
            StoreError::EmptyKey => "the key length is zero",
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for StoreError {}

/// When a SET applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Condition {
    #[default]
    Always,
    /// `NX`: only if the key is absent.
    IfAbsent,
    /// `NEX`: only if the key is absent or holds this very value (lock renewal).
    IfAbsentOrEqual,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub condition: Condition,
    /// `PX`: the key disappears (and watchers get DELETE) after this long.
    pub expires: Option<Duration>,
    /// `__ft`: required (equal or newer) once the key holds one; stored on success.
    pub fencing_token: Option<Hlc>,
}

/// Result of a conditional write: applied with this version, or the condition was not met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Applied(Hlc),
    NotApplied,
}

/// Result of a VDEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueDeleted {
    Deleted(Hlc),
    NotFound,
    /// The key holds another value.
    Mismatch,
}

/// A key's value and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub version: Hlc,
}

/// One notification to publish: `value` is the new value of a SET, `None` a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub client_id: Arc<str>,
    pub key: Bytes,
    pub value: Option<Bytes>,
    pub version: Hlc,
}

/// How long the store remembers that a connection ended. A KEYNOTIFY that reaches the store
/// later than this after its connection's end was processed registers (and is dropped at
/// that client id's next disconnection, see [`Store::drop_client`]); requests wait in the
/// store's queues for milliseconds, so the margin is wide. Memory: one id and one log item
/// per connection that ended within this time before the latest disconnection or KEYNOTIFY
/// (older ones are pruned then), however many client ids come and go.
pub const ENDED_RETENTION: Duration = Duration::from_secs(60);

/// Who asks for a KEYNOTIFY registration, which decides when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// An in-process caller (the typed API, an in-process session): its registrations end
    /// at any disconnection of its client id.
    InProcess,
    /// The network connection with this id: its registrations end when it ends.
    Connection(u64),
    /// A request whose connection has already ended (a will): registers nothing.
    Ended,
}

/// Who made a registration (`None`: in-process) and when it last asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Made {
    by: Option<u64>,
    at: Instant,
}

/// Quotas (the memory profile's, in AIO terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_keys: usize,
    /// Sum of key and value lengths.
    pub max_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    version: Hlc,
    fencing: Option<Hlc>,
    expires_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Store {
    entries: BTreeMap<Bytes, Entry>,
    expiries: BinaryHeap<Reverse<(Instant, Bytes, Hlc)>>,
    watchers: HashMap<Bytes, BTreeSet<Arc<str>>>,
    /// Each client's registrations, with who made them: usually one connection, more while
    /// the end of an earlier connection of the client id is still on its way.
    watched_by: HashMap<Arc<str>, HashMap<Bytes, Vec<Made>>>,
    /// Connections reported ended within [`ENDED_RETENTION`] (ids are broker-wide unique).
    ended: HashSet<u64>,
    /// The same ids in the order they were reported, for pruning.
    ended_log: VecDeque<(Instant, u64)>,
    bytes: usize,
    limits: Limits,
    clock: Clock,
    notifications: Vec<Notification>,
    /// Changes to write to the journal, when there is one.
    changes: Option<Vec<Change>>,
}

/// One change of the key space, as the journal records it. Expiry is wall-clock time, so
/// it means the same after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        key: Bytes,
        value: Bytes,
        version: Hlc,
        fencing: Option<Hlc>,
        /// Unix milliseconds.
        expires_at_ms: Option<u64>,
    },
    Remove {
        key: Bytes,
    },
}

impl Store {
    pub fn new(node_id: &str, limits: Limits) -> Self {
        Self {
            entries: BTreeMap::new(),
            expiries: BinaryHeap::new(),
            watchers: HashMap::new(),
            watched_by: HashMap::new(),
            ended: HashSet::new(),
            ended_log: VecDeque::new(),
            bytes: 0,
            limits,
            clock: Clock::new(node_id),
            notifications: Vec::new(),
            changes: None,
        }
    }

    /// Record every change from now on, for [`Store::take_changes`].
    pub fn record_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// Changes since the last call, in order (empty unless recording).
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Every live entry as a [`Change::Put`], for a journal snapshot.
    pub fn snapshot(&self, now: Instant) -> Vec<Change> {
        let wall = wall_ms();
        self.entries
            .iter()
            .map(|(key, e)| Change::Put {
                key: key.clone(),
                value: e.value.clone(),
                version: e.version.clone(),
                fencing: e.fencing.clone(),
                expires_at_ms: e.expires_at.map(|at| instant_to_wall(at, now, wall)),
            })
            .collect()
    }

    /// Load entries read back from the journal (the store must be empty). Expired ones are
    /// skipped, quotas are not applied (what was accepted stays), and the clock moves past
    /// every restored version so new versions are newer.
    pub fn restore(&mut self, entries: Vec<Change>, now: Instant) {
        let wall = wall_ms();
        for change in entries {
            let Change::Put {
                key,
                value,
                version,
                fencing,
                expires_at_ms,
            } = change
            else {
                continue;
            };
            self.clock.observe(&version);
            let expires_at = match expires_at_ms {
                Some(ms) if ms <= wall => continue,
                Some(ms) => now.checked_add(Duration::from_millis(ms - wall)),
                None => None,
            };
            if let Some(at) = expires_at {
                self.expiries
                    .push(Reverse((at, key.clone(), version.clone())));
            }
            self.bytes += key.len() + value.len();
            let entry = Entry {
                value,
                version,
                fencing,
                expires_at,
            };
            if let Some(old) = self.entries.insert(key.clone(), entry) {
                self.bytes -= key.len() + old.value.len();
            }
        }
    }

    /// A fresh version (for responses that carry no key's version).
    pub fn tick(&mut self) -> Hlc {
        self.clock.tick(wall_ms())
    }

    /// Merge a client's (validated) timestamp into the clock.
    pub fn observe(&mut self, remote: &Hlc) {
        self.clock.observe(remote);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of key and value lengths held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Versioned> {
        self.reap_if_expired(key, now);
        self.entries.get(key).map(|e| Versioned {
            value: e.value.clone(),
            version: e.version.clone(),
        })
    }

    pub fn set(
        &mut self,
        key: Bytes,
        value: Bytes,
        opts: SetOptions,
        now: Instant,
    ) -> Result<Written, StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        self.reap_if_expired(&key, now);
        let old = self.entries.get(&key);
        let stored_token = old.and_then(|e| e.fencing.as_ref());
        check_fencing(stored_token, opts.fencing_token.as_ref())?;
        let met = match (opts.condition, old) {
            (Condition::Always, _) | (_, None) => true,
            (Condition::IfAbsent, Some(_)) => false,
            (Condition::IfAbsentOrEqual, Some(e)) => e.value == value,
        };
        if !met {
            return Ok(Written::NotApplied);
        }
        let old_size = old.map_or(0, |e| key.len() + e.value.len());
        let keys = self.entries.len() + usize::from(old.is_none());
        let bytes = self.bytes - old_size + key.len() + value.len();
        if keys > self.limits.max_keys || bytes > self.limits.max_bytes {
            return Err(StoreError::QuotaExceeded);
        }
        let fencing = opts
            .fencing_token
            .or_else(|| old.and_then(|e| e.fencing.clone()));
        let version = self.tick();
        let expires_at = opts.expires.and_then(|d| now.checked_add(d));
        if let Some(at) = expires_at {
            self.expiries
                .push(Reverse((at, key.clone(), version.clone())));
        }
        self.bytes = bytes;
        self.notify(&key, Some(&value), &version);
        if let Some(changes) = &mut self.changes {
            changes.push(Change::Put {
                key: key.clone(),
                value: value.clone(),
                version: version.clone(),
                fencing: fencing.clone(),
                expires_at_ms: expires_at.map(|at| instant_to_wall(at, now, wall_ms())),
            });
        }
        let entry = Entry {
            value,
            version: version.clone(),
            fencing,
            expires_at,
        };
        self.entries.insert(key, entry);
        Ok(Written::Applied(version))
    }

    /// Delete a key; the deletion's version if it existed.
    pub fn del(
        &mut self,
        key: &[u8],
        fencing_token: Option<&Hlc>,
        now: Instant,
    ) -> Result<Option<Hlc>, StoreError> {
        self.reap_if_expired(key, now);
        let Some(e) = self.entries.get(key) else {
            return Ok(None);
        };
        check_fencing(e.fencing.as_ref(), fencing_token)?;
        Ok(Some(self.remove(key)))
    }

    /// Delete a key only if it holds `value`.
    pub fn vdel(
        &mut self,
        key: &[u8],
        value: &[u8],
        fencing_token: Option<&Hlc>,
        now: Instant,
    ) -> Result<ValueDeleted, StoreError> {
        self.reap_if_expired(key, now);
        let Some(e) = self.entries.get(key) else {
            return Ok(ValueDeleted::NotFound);
        };
        check_fencing(e.fencing.as_ref(), fencing_token)?;
        if e.value != value {
            return Ok(ValueDeleted::Mismatch);
        }
        Ok(ValueDeleted::Deleted(self.remove(key)))
    }

    /// Register `client_id` for notifications on `key` (idempotent); false if nothing was
    /// registered because the requesting connection has ended.
    pub fn watch(&mut self, client_id: &Arc<str>, key: Bytes, by: Requester, now: Instant) -> bool {
        self.prune_ended(now);
        let by = match by {
            Requester::InProcess => None,
            Requester::Connection(c) if self.ended.contains(&c) => return false,
            Requester::Connection(c) => Some(c),
            Requester::Ended => return false,
        };
        let made = self
            .watched_by
            .entry(Arc::clone(client_id))
            .or_default()
            .entry(key.clone())
            .or_default();
        match made.iter_mut().find(|m| m.by == by) {
            Some(m) => m.at = now,
            None => made.push(Made { by, at: now }),
        }
        self.watchers
            .entry(key)
            .or_default()
            .insert(Arc::clone(client_id));
        true
    }

    /// Remove a registration; false if there was none the requester may end. A connection
    /// ends what it or an in-process caller registered, not what another connection of the
    /// client id did (an old connection's late STOP does not undo its successor's
    /// KEYNOTIFY); an in-process caller ends the whole registration; an ended one nothing.
    pub fn unwatch(&mut self, client_id: &str, key: &[u8], by: Requester) -> bool {
        let Some(keys) = self.watched_by.get_mut(client_id) else {
            return false;
        };
        let Some(made) = keys.get_mut(key) else {
            return false;
        };
        let before = made.len();
        match by {
            Requester::InProcess => made.clear(),
            Requester::Connection(c) => made.retain(|m| m.by.is_some_and(|b| b != c)),
            Requester::Ended => {}
        }
        let removed = made.len() < before;
        if made.is_empty() {
            keys.remove(key);
            if keys.is_empty() {
                self.watched_by.remove(client_id);
            }
            self.remove_watcher(key, client_id);
        }
        removed
    }

    /// The client's connection `conn` ended: drop what it and in-process callers registered,
    /// and remember `conn` for [`ENDED_RETENTION`]. Also dropped: what another connection
    /// registered more than [`ENDED_RETENTION`] ago. While a connection is attached no other
    /// of its client id is, so the one attached now registered after `conn` ended, that is
    /// moments ago; an older registration is one whose request came so late that the end of
    /// its connection was forgotten, and it ends here rather than never.
    pub fn drop_client(&mut self, client_id: &str, conn: u64, now: Instant) {
        self.prune_ended(now);
        if self.ended.insert(conn) {
            self.ended_log.push_back((now, conn));
        }
        let Some(keys) = self.watched_by.get_mut(client_id) else {
            return;
        };
        let mut gone = Vec::new();
        keys.retain(|key, made| {
            made.retain(|m| {
                m.by.is_some_and(|b| b != conn)
                    && now.saturating_duration_since(m.at) < ENDED_RETENTION
            });
            if made.is_empty() {
                gone.push(key.clone());
            }
            !made.is_empty()
        });
        if keys.is_empty() {
            self.watched_by.remove(client_id);
        }
        for key in gone {
            self.remove_watcher(&key, client_id);
        }
    }

    /// Forget connections reported ended [`ENDED_RETENTION`] or longer before `now`.
    fn prune_ended(&mut self, now: Instant) {
        while let Some(&(at, conn)) = self.ended_log.front() {
            if now.saturating_duration_since(at) < ENDED_RETENTION {
                break;
            }
            self.ended_log.pop_front();
            self.ended.remove(&conn);
        }
    }

    /// One page of keys matching `pattern`, in key order, after `cursor`; looks at no more
    /// than `budget` keys so a sparse match cannot stall the service (a page may then be
    /// empty but still carry a cursor). The cursor is `None` after the last page.
    pub fn scan(
        &self,
        pattern: &[u8],
        cursor: Option<&[u8]>,
        page: usize,
        budget: usize,
        now: Instant,
    ) -> (Vec<Bytes>, Option<Bytes>) {
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = self
            .entries
            .range::<[u8], _>((start, Bound::Unbounded))
            .peekable();
        let mut keys = Vec::new();
        let mut last = None;
        for _ in 0..budget.max(1) {
            let Some((k, e)) = iter.next() else { break };
            last = Some(k);
            if e.expires_at.is_none_or(|t| t > now) && glob::matches(pattern, k) {
                keys.push(k.clone());
                if keys.len() >= page.max(1) {
                    break;
                }
            }
        }
        let more = iter.peek().is_some();
        (keys, last.filter(|_| more).cloned())
    }

    /// When the next expiry is due.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.peek().map(|Reverse((at, ..))| *at)
    }

    /// Remove every key due by `now` (watchers get DELETE).
    pub fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, key, version))) = self.expiries.peek().cloned() {
            if at > now {
                break;
            }
            self.expiries.pop();
            if self.entries.get(&key).is_some_and(|e| e.version == version) {
                self.remove(&key);
            }
        }
    }

    /// Notifications produced since the last call, in order.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.notifications)
    }

    fn reap_if_expired(&mut self, key: &[u8], now: Instant) {
        let due = self
            .entries
            .get(key)
            .is_some_and(|e| e.expires_at.is_some_and(|t| t <= now));
        if due {
            self.remove(key);
        }
    }

    /// Remove an existing key, notify watchers; the deletion's version.
    fn remove(&mut self, key: &[u8]) -> Hlc {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= key.len() + e.value.len();
            if let Some(changes) = &mut self.changes {
                changes.push(Change::Remove {
                    key: Bytes::copy_from_slice(key),
                });
            }
        }
        let version = self.tick();
        self.notify(key, None, &version);
        version
    }

    fn notify(&mut self, key: &[u8], value: Option<&Bytes>, version: &Hlc) {
        let Some(clients) = self.watchers.get(key) else {
            return;
        };
        let key = Bytes::copy_from_slice(key);
        for c in clients {
            self.notifications.push(Notification {
                client_id: Arc::clone(c),
                key: key.clone(),
                value: value.cloned(),
                version: version.clone(),
            });
        }
    }

    fn remove_watcher(&mut self, key: &[u8], client_id: &str) {
        if let Some(set) = self.watchers.get_mut(key) {
            set.remove(client_id);
            if set.is_empty() {
                self.watchers.remove(key);
            }
        }
    }
}

/// The wall-clock time (Unix ms) of `at`, given that `now` is `wall_now` ms.
fn instant_to_wall(at: Instant, now: Instant, wall_now: u64) -> u64 {
    let ahead = at.saturating_duration_since(now).as_millis();
    wall_now.saturating_add(u64::try_from(ahead).unwrap_or(u64::MAX))
}

/// Once a key holds a fencing token, writes need one at least as new.
fn check_fencing(stored: Option<&Hlc>, given: Option<&Hlc>) -> Result<(), StoreError> {
    match (stored, given) {
        (Some(_), None) => Err(StoreError::FencingTokenRequired),
        (Some(s), Some(g)) if g < s => Err(StoreError::FencingTokenLower),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
