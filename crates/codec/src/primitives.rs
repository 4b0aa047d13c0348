//! The data representations of MQTT §1.5: integers, Variable Byte Integers, UTF-8 strings and
//! binary data. [`Reader`] walks one packet body that has already been cut from the stream;
//! the `put_*` functions append to an output buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// Largest value a Variable Byte Integer can hold (§1.5.5).
pub const VARINT_MAX: u32 = 268_435_455;

/// A cursor over one packet's bytes. Every read checks bounds and fails with
/// [`ProtocolError::Truncated`] naming the field, so no input can panic it.
/// Fields a decoded packet keeps up to this size are copied out of the read buffer (see
/// [`Reader::kept`]).
pub(crate) const COPY_LIMIT: usize = 16 * 1024;

pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(ProtocolError::Truncated(field))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, ProtocolError> {
        let s = self.take(2, field)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        let s = self.take(4, field)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn varint(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        let (value, used) =
            decode_varint(&self.buf[self.pos..])?.ok_or(ProtocolError::Truncated(field))?;
        self.pos += used;
        Ok(value)
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], ProtocolError> {
        if self.remaining() < n {
            return Err(ProtocolError::Truncated(field));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// `n` bytes as a shared slice of the packet buffer (no copy).
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, ProtocolError> {
        if self.remaining() < n {
            return Err(ProtocolError::Truncated(field));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// `n` bytes the caller keeps (a payload, correlation data): copied when small, so a
    /// message that waits in a queue holds its own bytes and not the connection's whole
    /// read buffer (which can then be reused in place); shared above [`COPY_LIMIT`], where
    /// the packet is most of its buffer anyway.
    fn kept(&mut self, n: usize, field: &'static str) -> Result<Bytes, ProtocolError> {
        if n > COPY_LIMIT {
            return self.bytes(n, field);
        }
        self.take(n, field).map(Bytes::copy_from_slice)
    }

    /// The rest of the packet (the PUBLISH payload); see [`Reader::kept`].
    pub(crate) fn rest(&mut self) -> Bytes {
        let n = self.remaining();
        self.kept(n, "payload").unwrap_or_default()
    }

    /// Binary Data (§1.5.6): two-byte length then bytes; see [`Reader::kept`].
    pub(crate) fn binary(&mut self, field: &'static str) -> Result<Bytes, ProtocolError> {
        let len = self.u16(field)? as usize;
        self.kept(len, field)
    }

    /// UTF-8 Encoded String (§1.5.4), validated.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let len = self.u16(field)? as usize;
        let raw = self.take(len, field)?;
        let s = std::str::from_utf8(raw).map_err(|_| ProtocolError::InvalidUtf8)?;
        check_str(s)?;
        Ok(s.to_owned())
    }

    /// Fail if bytes remain after the packet's content.
    pub(crate) fn finish(&self, packet: &'static str) -> Result<(), ProtocolError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(ProtocolError::TrailingBytes(packet, n)),
        }
    }
}

/// Rules of §1.5.4 beyond well-formedness: no U+0000. (Rust strings cannot hold surrogates.)
pub(crate) fn check_str(s: &str) -> Result<(), ProtocolError> {
    if s.contains('\0') {
        return Err(ProtocolError::NullCharacter);
    }
    Ok(())
}

/// Decode a Variable Byte Integer from the front of `buf`: `Ok(None)` if more bytes are
/// needed, `Ok(Some((value, bytes used)))` otherwise.
///
/// More than four bytes, or a longer form than the value needs (a last byte of 0 after a
/// continuation, e.g. `80 00` for 0), is refused [MQTT-1.5.5-1], so every integer has
/// exactly one accepted encoding.
pub fn decode_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, ProtocolError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(ProtocolError::MalformedVariableInteger);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(ProtocolError::MalformedVariableInteger)
}

pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut b = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if value == 0 {
            break;
        }
    }
}

pub(crate) fn put_string(out: &mut BytesMut, s: &str) {
    put_binary(out, s.as_bytes());
}

pub(crate) fn put_binary(out: &mut BytesMut, b: &[u8]) {
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}
