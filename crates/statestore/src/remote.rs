//! A state store client over the network, for the `edgeplane state` command: an MQTT v5
//! connection that publishes requests (QoS 1, response topic, correlation data, `__ts`) and
//! waits for the matching response, or for KEYNOTIFY notifications.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use edgeplane_codec::{
    Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubOptions,
    Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{resp, NOTIFY_TOPIC_PREFIX, REQUEST_TOPIC};

const V: ProtocolVersion = ProtocolVersion::V5;
/// How long a request may wait for its response.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot reach the broker at {addr}: {source}; is `edgeplane run` listening there?")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the broker refused the connection (CONNACK 0x{0:02X})")]
    Refused(u8),
    #[error("connection to the broker lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker sent an invalid packet: {0}")]
    Protocol(#[from] edgeplane_codec::ProtocolError),
    #[error("no answer from the state store within {0:?}")]
    Timeout(Duration),
    #[error("the state store's answer cannot be read: {0}")]
    BadReply(&'static str),
}

/// A decoded response payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteReply {
    Ok,
    Int(i64),
    Bulk(Bytes),
    Nil,
    Error(String),
    Keys {
        keys: Vec<Bytes>,
        cursor: Option<Bytes>,
    },
}

/// A notification of a watched key: the new value, or `None` when it was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub key: Vec<u8>,
    pub value: Option<Bytes>,
}

pub struct RemoteStateStore {
    stream: TcpStream,
    rbuf: BytesMut,
    client_id: String,
    response_topic: String,
    next: u64,
    packet_id: u16,
}

impl RemoteStateStore {
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Result<Self, RemoteError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| RemoteError::Connect { addr, source })?;
        let response_topic = format!("clients/{client_id}/services/statestore/v1/response");
        let mut me = Self {
            stream,
            rbuf: BytesMut::new(),
            client_id: client_id.into(),
            response_topic,
            next: 1,
            packet_id: 1,
        };
        let connect = Connect {
            protocol: V,
            clean_start: true,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        };
        me.send(&Packet::Connect(Box::new(connect))).await?;
        match me.read().await? {
            Packet::ConnAck(a) if a.code == 0 => {}
            Packet::ConnAck(a) => return Err(RemoteError::Refused(a.code)),
            _ => return Err(RemoteError::BadReply("expected CONNACK")),
        }
        let filters = vec![
            (me.response_topic.clone(), SubOptions::new(QoS::AtLeastOnce)),
            (
                format!(
                    "{NOTIFY_TOPIC_PREFIX}{}/command/notify/+",
                    hex(client_id.as_bytes())
                ),
                SubOptions::new(QoS::AtLeastOnce),
            ),
        ];
        me.send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters,
            properties: Properties::default(),
        }))
        .await?;
        loop {
            if let Packet::SubAck(_) = me.read().await? {
                return Ok(me);
            }
        }
    }

    /// Send one request (`["SET", key, value, ...]`) and wait for its response.
    pub async fn request<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
    ) -> Result<RemoteReply, RemoteError> {
        let corr = self.next;
        self.next += 1;
        self.packet_id = self.packet_id.wrapping_add(1).max(1);
        let properties = Properties {
            response_topic: Some(self.response_topic.clone()),
            correlation_data: Some(Bytes::copy_from_slice(&corr.to_be_bytes())),
            content_type: Some(crate::CONTENT_TYPE.into()),
            user_properties: vec![
                ("__ts".into(), now_hlc()),
                ("__protVer".into(), "1.0".into()),
                ("__srcId".into(), self.client_id.clone()),
            ],
            ..Properties::default()
        };
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: REQUEST_TOPIC.into(),
            packet_id: self.packet_id,
            properties,
            payload: resp::encode_request(args),
        };
        self.send(&Packet::Publish(publish)).await?;
        let wait = async {
            loop {
                if let Packet::Publish(p) = self.read().await? {
                    self.ack(&p).await?;
                    if p.properties.correlation_data.as_deref() == Some(&corr.to_be_bytes()[..]) {
                        return parse_reply(&p.payload);
                    }
                }
            }
        };
        tokio::time::timeout(TIMEOUT, wait)
            .await
            .map_err(|_| RemoteError::Timeout(TIMEOUT))?
    }

    /// The next notification of a key watched with `KEYNOTIFY`.
    pub async fn notification(&mut self) -> Result<Notification, RemoteError> {
        loop {
            if let Packet::Publish(p) = self.read().await? {
                self.ack(&p).await?;
                let Some(hex_key) = p
                    .topic
                    .rsplit('/')
                    .next()
                    .filter(|_| p.topic.starts_with(NOTIFY_TOPIC_PREFIX))
                else {
                    continue;
                };
                let key =
                    unhex(hex_key).ok_or(RemoteError::BadReply("notification topic is not hex"))?;
                let args = resp::parse_request(&p.payload)
                    .map_err(|_| RemoteError::BadReply("notification payload"))?;
                let value = match args.iter().map(|a| &a[..]).collect::<Vec<_>>()[..] {
                    [b"NOTIFY", b"SET", b"VALUE", v] => Some(Bytes::copy_from_slice(v)),
                    [b"NOTIFY", b"DELETE"] => None,
                    _ => return Err(RemoteError::BadReply("unknown notification")),
                };
                return Ok(Notification { key, value });
            }
        }
    }

    async fn ack(&mut self, p: &Publish) -> Result<(), RemoteError> {
        if p.qos == QoS::AtLeastOnce {
            self.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                .await?;
        }
        Ok(())
    }

    async fn send(&mut self, p: &Packet) -> Result<(), RemoteError> {
        let mut out = BytesMut::new();
        edgeplane_codec::encode(p, V, &mut out);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    async fn read(&mut self) -> Result<Packet, RemoteError> {
        loop {
            if let Some(p) = edgeplane_codec::decode(&mut self.rbuf, V, usize::MAX)? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(RemoteError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

fn now_hlc() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:0>15}:{:0>5}:cli", 0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Decode a response payload.
pub fn parse_reply(p: &[u8]) -> Result<RemoteReply, RemoteError> {
    let bad = RemoteError::BadReply;
    let line_end = |from: usize| {
        p[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| from + i)
    };
    let end = line_end(0).ok_or(bad("no line end"))?;
    let line = std::str::from_utf8(&p[1..end]).map_err(|_| bad("not text"))?;
    match p.first() {
        Some(b'+') if line == "OK" => Ok(RemoteReply::Ok),
        Some(b'-') => Ok(RemoteReply::Error(
            line.trim_start_matches("ERR ").to_owned(),
        )),
        Some(b':') => line
            .parse()
            .map(RemoteReply::Int)
            .map_err(|_| bad("bad integer")),
        Some(b'$') if line == "-1" => Ok(RemoteReply::Nil),
        Some(b'$') => {
            let n: usize = line.parse().map_err(|_| bad("bad length"))?;
            p.get(end + 2..end + 2 + n)
                .map(|v| RemoteReply::Bulk(Bytes::copy_from_slice(v)))
                .ok_or(bad("short value"))
        }
        Some(b'*') => {
            // *1|*2 \r\n *n \r\n ($len\r\nkey\r\n)* [$len\r\ncursor\r\n]
            let parts: usize = line.parse().map_err(|_| bad("bad array"))?;
            let mut at = end + 2;
            let e = line_end(at).ok_or(bad("no key count"))?;
            let n: usize = std::str::from_utf8(&p[at + 1..e])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(bad("bad key count"))?;
            at = e + 2;
            let bulk = |at: &mut usize| -> Result<Bytes, RemoteError> {
                let e = line_end(*at).ok_or(bad("no bulk"))?;
                let len: usize = std::str::from_utf8(&p[*at + 1..e])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(bad("bad bulk"))?;
                let v = p.get(e + 2..e + 2 + len).ok_or(bad("short bulk"))?;
                *at = e + 4 + len;
                Ok(Bytes::copy_from_slice(v))
            };
            let keys = (0..n)
                .map(|_| bulk(&mut at))
                .collect::<Result<Vec<_>, _>>()?;
            let cursor = if parts == 2 {
                Some(bulk(&mut at)?)
            } else {
                None
            };
            Ok(RemoteReply::Keys { keys, cursor })
        }
        _ => Err(bad("unknown reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Reply;

    #[test]
    fn replies_round_trip() {
        let cases = [
            (Reply::Ok, RemoteReply::Ok),
            (Reply::Int(-1), RemoteReply::Int(-1)),
            (Reply::Nil, RemoteReply::Nil),
            (
                Reply::Bulk(Bytes::from_static(b"v\r\n")),
                RemoteReply::Bulk(Bytes::from_static(b"v\r\n")),
            ),
            (
                Reply::Error("syntax error"),
                RemoteReply::Error("syntax error".into()),
            ),
            (
                Reply::Keys {
                    keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
                    cursor: Some(Bytes::from_static(b"7")),
                },
                RemoteReply::Keys {
                    keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
                    cursor: Some(Bytes::from_static(b"7")),
                },
            ),
            (
                Reply::Keys {
                    keys: vec![],
                    cursor: None,
                },
                RemoteReply::Keys {
                    keys: vec![],
                    cursor: None,
                },
            ),
        ];
        for (reply, want) in cases {
            assert_eq!(parse_reply(&reply.encode()).ok(), Some(want));
        }
        assert!(parse_reply(b"$5\r\nab").is_err());
        assert!(parse_reply(b"").is_err());
    }
}
