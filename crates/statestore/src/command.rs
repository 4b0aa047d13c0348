//! One request, from MQTT message to reply: the `__ts` and `__ft` checks, the RESP3 command
//! (`SET`, `GET`, `DEL`, `VDEL`, `KEYNOTIFY`, and our `SCAN` extension), its execution on the
//! [`Store`], and the reply with the version to send as `__ts`. Every malformed input ends in
//! one of the protocol's `-ERR` texts, never a panic. A well-formed request for a key its
//! publisher may not read or write (see `access.rs`) is answered `-ERR not authorized`
//! before it touches the store; SCAN returns only the keys the publisher may read.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeplane_broker::auth::KeyAccess;

use crate::access::Access;
use crate::cursor::CursorSeal;
use crate::hlc::{wall_ms, Hlc};
use crate::resp::{parse_request, Reply};
use crate::store::{Condition, Requester, SetOptions, Store, StoreError, ValueDeleted, Written};

pub const TIMESTAMP_PROPERTY: &str = "__ts";
pub const FENCING_TOKEN_PROPERTY: &str = "__ft";
pub const SOURCE_ID_PROPERTY: &str = "__srcId";

/// The protocol's error texts (matched byte for byte by the SDK).
pub mod text {
    pub const TIMESTAMP_SKEW: &str = "the request timestamp is too far in the future; ensure that the client and broker system clocks are synchronized";
    pub const FENCING_TOKEN_SKEW: &str = "the request fencing token timestamp is too far in the future; ensure that the client and broker system clocks are synchronized";
    pub const SYNTAX_ERROR: &str = "syntax error";
    pub const UNKNOWN_COMMAND: &str = "unknown command";
    pub const WRONG_ARGUMENTS: &str = "wrong number of arguments";
    pub const MISSING_TIMESTAMP: &str = "missing timestamp";
    pub const MALFORMED_TIMESTAMP: &str = "malformed timestamp";
    pub const NOT_AUTHORIZED: &str = "not authorized";
}

/// What a request needs besides the store: who sent it, its metadata, the limits.
pub struct Request<'a> {
    pub payload: &'a Bytes,
    /// MQTT client id of the publisher (KEYNOTIFY registrations belong to it).
    pub client_id: Option<&'a Arc<str>>,
    /// Which connection sent it, for the lifetime of a KEYNOTIFY registration.
    pub requester: Requester,
    pub user_properties: &'a [(String, String)],
    /// Which keys the publisher may read and write.
    pub access: &'a Access<'a>,
    /// Seals the SCAN cursors of restricted publishers.
    pub cursors: &'a CursorSeal,
}

/// Request-independent knobs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_clock_skew: Duration,
    pub scan_page: usize,
    pub scan_budget: usize,
}

/// Execute one request; the reply and the version for `__ts`.
pub fn execute(store: &mut Store, req: &Request<'_>, limits: Limits, now: Instant) -> (Reply, Hlc) {
    match run(store, req, limits, now) {
        Ok(done) => done,
        Err(text) => (Reply::Error(text), store.tick()),
    }
}

fn run(
    store: &mut Store,
    req: &Request<'_>,
    limits: Limits,
    now: Instant,
) -> Result<(Reply, Hlc), &'static str> {
    let skew_ms = u64::try_from(limits.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
    let horizon = wall_ms().saturating_add(skew_ms);
    let ts = property(req, TIMESTAMP_PROPERTY).ok_or(text::MISSING_TIMESTAMP)?;
    let ts = Hlc::from_str(ts).map_err(|_| text::MALFORMED_TIMESTAMP)?;
    if ts.ms > horizon {
        return Err(text::TIMESTAMP_SKEW);
    }
    store.observe(&ts);
    let args = parse_request(req.payload).map_err(|_| text::SYNTAX_ERROR)?;
    let (verb, args) = args.split_first().ok_or(text::SYNTAX_ERROR)?;
    let verb = verb.to_ascii_uppercase();
    let fencing = || -> Result<Option<Hlc>, &'static str> {
        let Some(ft) = property(req, FENCING_TOKEN_PROPERTY) else {
            return Ok(None);
        };
        let ft = Hlc::from_str(ft).map_err(|_| text::MALFORMED_TIMESTAMP)?;
        if ft.ms > horizon {
            return Err(text::FENCING_TOKEN_SKEW);
        }
        Ok(Some(ft))
    };
    let key = || -> Result<Bytes, &'static str> {
        match args.first() {
            Some(k) if k.is_empty() => Err(StoreError::EmptyKey.text()),
            Some(k) => Ok(k.clone()),
            None => Err(text::WRONG_ARGUMENTS),
        }
    };
    let allowed = |access: KeyAccess, key: &[u8]| {
        if req.access.allows(access, key) {
            Ok(())
        } else {
            Err(text::NOT_AUTHORIZED)
        }
    };
    let arity = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(text::WRONG_ARGUMENTS)
        }
    };
    match &verb[..] {
        b"SET" => {
            arity(args.len() >= 2)?;
            let opts = set_options(&args[2..], fencing()?)?;
            let (key, value) = (key()?, args[1].clone());
            allowed(KeyAccess::Write, &key)?;
            let written = store.set(key, value, opts, now).map_err(StoreError::text)?;
            Ok(match written {
                Written::Applied(v) => (Reply::Ok, v),
                Written::NotApplied => (Reply::Int(-1), store.tick()),
            })
        }
        b"GET" => {
            arity(args.len() == 1)?;
            let key = key()?;
            allowed(KeyAccess::Read, &key)?;
            Ok(match store.get(&key, now) {
                Some(v) => (Reply::Bulk(v.value), v.version),
                None => (Reply::Nil, store.tick()),
            })
        }
        b"DEL" => {
            arity(args.len() == 1)?;
            let (key, ft) = (key()?, fencing()?);
            allowed(KeyAccess::Write, &key)?;
            Ok(
                match store
                    .del(&key, ft.as_ref(), now)
                    .map_err(StoreError::text)?
                {
                    Some(v) => (Reply::Int(1), v),
                    None => (Reply::Int(0), store.tick()),
                },
            )
        }
        b"VDEL" => {
            arity(args.len() == 2)?;
            let (key, ft) = (key()?, fencing()?);
            allowed(KeyAccess::Write, &key)?;
            let outcome = store.vdel(&key, &args[1], ft.as_ref(), now);
            Ok(match outcome.map_err(StoreError::text)? {
                ValueDeleted::Deleted(v) => (Reply::Int(1), v),
                ValueDeleted::NotFound => (Reply::Int(0), store.tick()),
                ValueDeleted::Mismatch => (Reply::Int(-1), store.tick()),
            })
        }
        b"KEYNOTIFY" => {
            arity(matches!(args.len(), 1 | 2))?;
            let key = key()?;
            let client = req
                .client_id
                .cloned()
                .or_else(|| property(req, SOURCE_ID_PROPERTY).map(Arc::from))
                .ok_or(text::SYNTAX_ERROR)?;
            let reply = match args.get(1) {
                None => {
                    allowed(KeyAccess::Read, &key)?;
                    // From a connection that has ended, `+OK` registers nothing: the
                    // answer goes nowhere that connection can read.
                    store.watch(&client, key, req.requester, now);
                    Reply::Ok
                }
                Some(opt) if opt.eq_ignore_ascii_case(b"STOP") => {
                    if store.unwatch(&client, &key, req.requester) {
                        Reply::Ok
                    } else {
                        Reply::Int(0)
                    }
                }
                Some(_) => return Err(text::SYNTAX_ERROR),
            };
            Ok((reply, store.tick()))
        }
        b"SCAN" => {
            arity(matches!(args.len(), 1 | 2))?;
            // A restricted client's cursors are sealed: the last key examined may be one it
            // cannot read.
            let sealed = req.access.restricted();
            let start = match args.get(1) {
                Some(c) if sealed => {
                    Some(Bytes::from(req.cursors.open(c).ok_or(text::SYNTAX_ERROR)?))
                }
                other => other.cloned(),
            };
            let (mut keys, cursor) = store.scan(
                &args[0],
                start.as_deref(),
                limits.scan_page,
                limits.scan_budget,
                now,
            );
            // Keys the publisher may not read are left out (the cursor still moves past them).
            keys.retain(|k| req.access.allows(KeyAccess::Read, k));
            let cursor = match cursor {
                // Sealing fails only if the system's randomness does; no cursor is leaked.
                Some(c) if sealed => Some(req.cursors.seal(&c).ok_or(text::SYNTAX_ERROR)?),
                other => other,
            };
            Ok((Reply::Keys { keys, cursor }, store.tick()))
        }
        _ => Err(text::UNKNOWN_COMMAND),
    }
}

/// `[NX|NEX] [PX ms]`, in either order, each at most once; `PX` needs 1 ms or more.
fn set_options(opts: &[Bytes], fencing_token: Option<Hlc>) -> Result<SetOptions, &'static str> {
    let mut out = SetOptions {
        fencing_token,
        ..SetOptions::default()
    };
    let mut i = 0;
    while let Some(opt) = opts.get(i) {
        let opt = opt.to_ascii_uppercase();
        match &opt[..] {
            b"NX" | b"NEX" if out.condition == Condition::Always => {
                out.condition = if &opt[..] == b"NX" {
                    Condition::IfAbsent
                } else {
                    Condition::IfAbsentOrEqual
                };
            }
            b"PX" if out.expires.is_none() => {
                let ms = opts
                    .get(i + 1)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|&ms| ms > 0)
                    .ok_or(text::SYNTAX_ERROR)?;
                out.expires = Some(Duration::from_millis(ms));
                i += 1;
            }
            _ => return Err(text::SYNTAX_ERROR),
        }
        i += 1;
    }
    Ok(out)
}

fn property<'a>(req: &'a Request<'_>, name: &str) -> Option<&'a str> {
    req.user_properties
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
