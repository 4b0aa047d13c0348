//! The records of the durable log and their binary form. A record is one change to the
//! durable state (a session, a subscription, a queued message, a retained message); the log
//! is the sequence of them, and replaying it in order rebuilds the state.
//!
//! Messages are written once (`Message`) and referenced by id from every queue and from the
//! retained index. Message bodies are stored as MQTT 5 PUBLISH packets, so they go through
//! the same fuzzed codec as the network, plus the fields a packet does not carry (absolute
//! expiry, publisher).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use edgeplane_codec::{Packet, ProtocolVersion, Publish, QoS, SubOptions};

use crate::message::Message;
use crate::router::WillMsg;

/// One change to the durable state.
#[derive(Debug, Clone)]
pub enum Record {
    /// A message body, referenced by `id` from queues and the retained index.
    Message {
        id: u64,
        msg: Arc<Message>,
    },
    /// A persistent session was created or changed (connect, disconnect, will published).
    Session(Box<SessionMeta>),
    /// A session ended: everything it owned is gone.
    SessionEnd {
        client: Arc<str>,
    },
    Subscribe {
        client: Arc<str>,
        filter: String,
        opts: SubOptions,
        sub_id: Option<u32>,
    },
    Unsubscribe {
        client: Arc<str>,
        filter: String,
    },
    /// A message joined a session's queue with sequence number `seq`.
    Enqueue(Queued),
    /// PUBREC arrived for the outgoing QoS 2 message `seq`: only PUBCOMP is awaited.
    Released {
        client: Arc<str>,
        seq: u64,
    },
    /// The message `seq` left the session's queue (acknowledged, expired or dropped).
    Done {
        client: Arc<str>,
        seq: u64,
    },
    /// A QoS 2 PUBLISH with `packet_id` was received from the client (`released: false`) or
    /// released by PUBREL (`true`).
    Incoming {
        client: Arc<str>,
        packet_id: u16,
        released: bool,
    },
    /// The retained message of `topic` is now message `msg_id` (`None`: cleared).
    Retain {
        topic: String,
        msg_id: Option<u64>,
    },
}

#[derive(Debug, Clone)]
pub struct SessionMeta {
    pub client: Arc<str>,
    pub version: ProtocolVersion,
    pub expiry: u32,
    pub will: Option<WillMsg>,
    /// Unix seconds when the last connection ended; `None` while connected.
    pub disconnected_at: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Queued {
    pub client: Arc<str>,
    pub seq: u64,
    pub msg_id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// For a QoS 2 message from a persisted session: the publisher and packet id whose
    /// receive record ([`Record::Incoming`]) commits this entry. Without that record the
    /// message was never acknowledged, and recovery drops the entry.
    pub origin: Option<(Arc<str>, u16)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn bad(what: &str) -> DecodeError {
    DecodeError(format!("malformed record: {what}"))
}

const T_MESSAGE: u8 = 1;
const T_SESSION: u8 = 2;
const T_SESSION_END: u8 = 3;
const T_SUBSCRIBE: u8 = 4;
const T_UNSUBSCRIBE: u8 = 5;
const T_ENQUEUE: u8 = 6;
const T_RELEASED: u8 = 7;
const T_DONE: u8 = 8;
const T_INCOMING: u8 = 9;
const T_RETAIN: u8 = 10;

impl Record {
    /// Append the record's body (without framing) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Record::Message { id, msg } => {
                out.put_u8(T_MESSAGE);
                out.put_u64(*id);
                put_message(out, msg);
            }
            Record::Session(m) => {
                out.put_u8(T_SESSION);
                put_str(out, &m.client);
                out.put_u8(match m.version {
                    ProtocolVersion::V311 => 4,
                    ProtocolVersion::V5 => 5,
                });
                out.put_u32(m.expiry);
                out.put_u64(m.disconnected_at.map_or(0, |t| t.max(1)));
                match &m.will {
                    Some(w) => {
                        out.put_u8(1);
                        out.put_u32(w.delay);
                        put_publish(out, &w.publish);
                    }
                    None => out.put_u8(0),
                }
            }
            Record::SessionEnd { client } => {
                out.put_u8(T_SESSION_END);
                put_str(out, client);
            }
            Record::Subscribe {
                client,
                filter,
                opts,
                sub_id,
            } => {
                out.put_u8(T_SUBSCRIBE);
                put_str(out, client);
                put_str(out, filter);
                out.put_u8(opts.qos as u8);
                out.put_u8(u8::from(opts.no_local) | u8::from(opts.retain_as_published) << 1);
                out.put_u8(opts.retain_handling);
                out.put_u32(sub_id.unwrap_or(0));
            }
            Record::Unsubscribe { client, filter } => {
                out.put_u8(T_UNSUBSCRIBE);
                put_str(out, client);
                put_str(out, filter);
            }
            Record::Enqueue(q) => {
                out.put_u8(T_ENQUEUE);
                put_str(out, &q.client);
                out.put_u64(q.seq);
                out.put_u64(q.msg_id);
                out.put_u8(q.qos as u8);
                out.put_u8(u8::from(q.retain));
                out.put_u32(q.sub_ids.len() as u32);
                q.sub_ids.iter().for_each(|s| out.put_u32(*s));
                match &q.origin {
                    Some((publisher, pid)) => {
                        out.put_u8(1);
                        put_str(out, publisher);
                        out.put_u16(*pid);
                    }
                    None => out.put_u8(0),
                }
            }
            Record::Released { client, seq } | Record::Done { client, seq } => {
                let t = if matches!(self, Record::Released { .. }) {
                    T_RELEASED
                } else {
                    T_DONE
                };
                out.put_u8(t);
                put_str(out, client);
                out.put_u64(*seq);
            }
            Record::Incoming {
                client,
                packet_id,
                released,
            } => {
                out.put_u8(T_INCOMING);
                put_str(out, client);
                out.put_u16(*packet_id);
                out.put_u8(u8::from(*released));
            }
            Record::Retain { topic, msg_id } => {
                out.put_u8(T_RETAIN);
                put_str(out, topic);
                out.put_u64(msg_id.unwrap_or(0));
            }
        }
    }

    /// Decode one record body (as framed by the log). `clock` turns stored wall-clock
    /// expiry back into monotonic instants.
    pub fn decode(mut b: Bytes, clock: &Clock) -> Result<Record, DecodeError> {
        let r = &mut b;
        let rec = match get_u8(r)? {
            T_MESSAGE => {
                let id = get_u64(r)?;
                let msg = get_message(r, clock)?;
                Record::Message {
                    id,
                    msg: Arc::new(msg),
                }
            }
            T_SESSION => {
                let client = get_client(r)?;
                let version = match get_u8(r)? {
                    4 => ProtocolVersion::V311,
                    5 => ProtocolVersion::V5,
                    _ => return Err(bad("unknown protocol version")),
                };
                let expiry = get_u32(r)?;
                let disconnected_at = Some(get_u64(r)?).filter(|t| *t != 0);
                let will = match get_u8(r)? {
                    0 => None,
                    _ => {
                        let delay = get_u32(r)?;
                        let publish = get_publish(r)?;
                        // Its publisher is not stored: the state store refuses it.
                        Some(WillMsg {
                            publish,
                            delay,
                            publisher: None,
                        })
                    }
                };
                Record::Session(Box::new(SessionMeta {
                    client,
                    version,
                    expiry,
                    will,
                    disconnected_at,
                }))
            }
            T_SESSION_END => Record::SessionEnd {
                client: get_client(r)?,
            },
            T_SUBSCRIBE => {
                let client = get_client(r)?;
                let filter = get_str(r)?;
                let qos = get_qos(r)?;
                let flags = get_u8(r)?;
                let retain_handling = get_u8(r)?;
                let sub_id = Some(get_u32(r)?).filter(|s| *s != 0);
                let opts = SubOptions {
                    qos,
                    no_local: flags & 1 != 0,
                    retain_as_published: flags & 2 != 0,
                    retain_handling,
                };
                Record::Subscribe {
                    client,
                    filter,
                    opts,
                    sub_id,
                }
            }
            T_UNSUBSCRIBE => Record::Unsubscribe {
                client: get_client(r)?,
                filter: get_str(r)?,
            },
            T_ENQUEUE => {
                let client = get_client(r)?;
                let seq = get_u64(r)?;
                let msg_id = get_u64(r)?;
                let qos = get_qos(r)?;
                let retain = get_u8(r)? != 0;
                let n = get_u32(r)? as usize;
                if n > r.remaining() / 4 {
                    return Err(bad("subscription identifier count"));
                }
                let sub_ids = (0..n).map(|_| get_u32(r)).collect::<Result<_, _>>()?;
                let origin = match get_u8(r)? {
                    0 => None,
                    _ => Some((get_client(r)?, get_u16(r)?)),
                };
                Record::Enqueue(Queued {
                    client,
                    seq,
                    msg_id,
                    qos,
                    retain,
                    sub_ids,
                    origin,
                })
            }
            t @ (T_RELEASED | T_DONE) => {
                let client = get_client(r)?;
                let seq = get_u64(r)?;
                if t == T_RELEASED {
                    Record::Released { client, seq }
                } else {
                    Record::Done { client, seq }
                }
            }
            T_INCOMING => Record::Incoming {
                client: get_client(r)?,
                packet_id: get_u16(r)?,
                released: get_u8(r)? != 0,
            },
            T_RETAIN => Record::Retain {
                topic: get_str(r)?,
                msg_id: Some(get_u64(r)?).filter(|id| *id != 0),
            },
            t => return Err(DecodeError(format!("unknown record type {t}"))),
        };
        if r.has_remaining() {
            return Err(bad("trailing bytes"));
        }
        Ok(rec)
    }
}

/// Converts between monotonic instants (in memory) and Unix milliseconds (on disk).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    unix_ms: u64,
}

impl Clock {
    pub fn now() -> Self {
        Self {
            instant: Instant::now(),
            unix_ms: unix_ms(),
        }
    }

    pub fn to_unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.unix_ms + after.as_millis() as u64,
            None => self
                .unix_ms
                .saturating_sub(self.instant.duration_since(at).as_millis() as u64),
        }
    }

    pub fn to_instant(&self, ms: u64) -> Instant {
        if ms >= self.unix_ms {
            self.instant + Duration::from_millis(ms - self.unix_ms)
        } else {
            let back = Duration::from_millis(self.unix_ms - ms);
            self.instant.checked_sub(back).unwrap_or(self.instant)
        }
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn put_publish(out: &mut BytesMut, p: &Publish) {
    let mut p = p.clone();
    p.dup = false;
    p.packet_id = u16::from(p.qos != QoS::AtMostOnce);
    let packet = Packet::Publish(p);
    out.put_u32(edgeplane_codec::encoded_len(&packet, ProtocolVersion::V5) as u32);
    edgeplane_codec::encode(&packet, ProtocolVersion::V5, out);
}

fn put_message(out: &mut BytesMut, m: &Message) {
    let clock = Clock::now();
    out.put_u64(m.expires_at.map_or(0, |t| clock.to_unix_ms(t).max(1)));
    match &m.origin {
        Some(o) => {
            out.put_u8(1);
            put_str(out, o);
        }
        None => out.put_u8(0),
    }
    let p = Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: 0,
        properties: m.properties.clone(),
        payload: m.payload.clone(),
    };
    put_publish(out, &p);
}

fn get_message(r: &mut Bytes, clock: &Clock) -> Result<Message, DecodeError> {
    let expires = get_u64(r)?;
    let origin = match get_u8(r)? {
        0 => None,
        _ => Some(get_client(r)?),
    };
    let p = get_publish(r)?;
    Ok(Message {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
        expires_at: (expires != 0).then(|| clock.to_instant(expires)),
        origin,
        publisher: None,
        store_id: std::sync::OnceLock::new(),
    })
}

fn get_publish(r: &mut Bytes) -> Result<Publish, DecodeError> {
    let n = get_u32(r)? as usize;
    if r.remaining() < n {
        return Err(bad("truncated publish"));
    }
    let mut buf = BytesMut::from(&r.split_to(n)[..]);
    match edgeplane_codec::decode(&mut buf, ProtocolVersion::V5, usize::MAX) {
        Ok(Some(Packet::Publish(p))) if buf.is_empty() => Ok(p),
        Ok(_) => Err(bad("stored message is not one PUBLISH packet")),
        Err(e) => Err(DecodeError(format!("stored message: {e}"))),
    }
}

fn need(r: &Bytes, n: usize) -> Result<(), DecodeError> {
    if r.remaining() < n {
        Err(bad("truncated"))
    } else {
        Ok(())
    }
}

fn get_u8(r: &mut Bytes) -> Result<u8, DecodeError> {
    need(r, 1)?;
    Ok(r.get_u8())
}

fn get_u16(r: &mut Bytes) -> Result<u16, DecodeError> {
    need(r, 2)?;
    Ok(r.get_u16())
}

fn get_u32(r: &mut Bytes) -> Result<u32, DecodeError> {
    need(r, 4)?;
    Ok(r.get_u32())
}

fn get_u64(r: &mut Bytes) -> Result<u64, DecodeError> {
    need(r, 8)?;
    Ok(r.get_u64())
}

fn get_qos(r: &mut Bytes) -> Result<QoS, DecodeError> {
    QoS::try_from(get_u8(r)?).map_err(|_| bad("invalid QoS"))
}

fn get_str(r: &mut Bytes) -> Result<String, DecodeError> {
    let n = get_u32(r)? as usize;
    need(r, n)?;
    String::from_utf8(r.split_to(n).to_vec()).map_err(|_| bad("string is not UTF-8"))
}

fn get_client(r: &mut Bytes) -> Result<Arc<str>, DecodeError> {
    get_str(r).map(Arc::from)
}
