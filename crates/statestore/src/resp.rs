//! The RESP3 subset the state store speaks: requests are arrays of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), responses are simple strings, integers, bulk strings,
//! errors and (for `SCAN`) nested arrays. Pure functions; arguments are zero-copy slices of
//! the request payload.

use bytes::{BufMut, Bytes, BytesMut};

/// Most arguments a request may carry (`SET k v NEX PX ms` has 6).
const MAX_ARGS: usize = 16;

/// The payload is not an array of bulk strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a RESP3 array of bulk strings: {0}")]
pub struct SyntaxError(&'static str);

/// Split a request into its arguments.
pub fn parse_request(payload: &Bytes) -> Result<Vec<Bytes>, SyntaxError> {
    let mut pos = 0;
    let count = read_header(payload, &mut pos, b'*')?;
    if count == 0 || count > MAX_ARGS {
        return Err(SyntaxError("the array must hold 1 to 16 elements"));
    }
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_header(payload, &mut pos, b'$')?;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= payload.len())
            .ok_or(SyntaxError("a bulk string is longer than the payload"))?;
        if payload.get(end..end + 2) != Some(b"\r\n") {
            return Err(SyntaxError("a bulk string is not followed by CRLF"));
        }
        args.push(payload.slice(pos..end));
        pos = end + 2;
    }
    if pos != payload.len() {
        return Err(SyntaxError("bytes after the array"));
    }
    Ok(args)
}

/// Read `{prefix}{decimal}\r\n` at `pos`.
fn read_header(buf: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, SyntaxError> {
    if buf.get(*pos) != Some(&prefix) {
        return Err(SyntaxError("expected an array or bulk string header"));
    }
    let start = *pos + 1;
    let digits = buf
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 9 {
        return Err(SyntaxError("a length must be 1 to 9 decimal digits"));
    }
    let end = start + digits;
    if buf.get(end..end + 2) != Some(b"\r\n") {
        return Err(SyntaxError("a length is not followed by CRLF"));
    }
    let n = buf[start..end]
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    *pos = end + 2;
    Ok(n)
}

/// Build a request (for in-process clients, the CLI and tests).
pub fn encode_request<A: AsRef<[u8]>>(args: &[A]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        put_bulk(&mut out, a.as_ref());
    }
    out.freeze()
}

/// A response payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// `:n` (`:-1` is "condition not met", `:0`/`:1` the number of keys deleted)
    Int(i64),
    /// `$len value`
    Bulk(Bytes),
    /// `$-1`
    Nil,
    /// `-ERR text`
    Error(&'static str),
    /// `*1 *n keys…` (last page) or `*2 *n keys… $token` (more to come)
    Keys {
        keys: Vec<Bytes>,
        cursor: Option<Bytes>,
    },
}

impl Reply {
    pub fn encode(&self) -> Bytes {
        match self {
            Reply::Ok => Bytes::from_static(b"+OK\r\n"),
            Reply::Nil => Bytes::from_static(b"$-1\r\n"),
            Reply::Int(n) => Bytes::from(format!(":{n}\r\n")),
            Reply::Error(text) => Bytes::from(format!("-ERR {text}\r\n")),
            Reply::Bulk(v) => {
                let mut out = BytesMut::with_capacity(v.len() + 16);
                put_bulk(&mut out, v);
                out.freeze()
            }
            Reply::Keys { keys, cursor } => {
                let mut out = BytesMut::new();
                let parts = 1 + usize::from(cursor.is_some());
                out.put_slice(format!("*{parts}\r\n*{}\r\n", keys.len()).as_bytes());
                for k in keys {
                    put_bulk(&mut out, k);
                }
                if let Some(c) = cursor {
                    put_bulk(&mut out, c);
                }
                out.freeze()
            }
        }
    }
}

/// A KEYNOTIFY notification payload: `NOTIFY SET VALUE v` or `NOTIFY DELETE`.
pub fn encode_notification(value: Option<&[u8]>) -> Bytes {
    match value {
        None => Bytes::from_static(b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"),
        Some(v) => {
            let mut out = BytesMut::with_capacity(v.len() + 48);
            out.put_slice(b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n");
            put_bulk(&mut out, v);
            out.freeze()
        }
    }
}

fn put_bulk(out: &mut BytesMut, v: &[u8]) {
    out.put_slice(format!("${}\r\n", v.len()).as_bytes());
    out.put_slice(v);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() -> Result<(), SyntaxError> {
        let req = encode_request(&["SET", "k", "", "PX", "10"]);
        assert_eq!(
            &req[..],
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nPX\r\n$2\r\n10\r\n"
        );
        let args = parse_request(&req)?;
        assert_eq!(
            args,
            ["SET", "k", "", "PX", "10"].map(|s| Bytes::from_static(s.as_bytes()))
        );
        let binary = encode_request(&[&b"SET"[..], b"\r\n\x00", b"$-1\r\n"]);
        assert_eq!(parse_request(&binary)?[1], &b"\r\n\x00"[..]);
        Ok(())
    }

    #[test]
    fn malformed_requests_are_syntax_errors() {
        for bad in [
            &b""[..],
            b"*",
            b"*0\r\n",
            b"*1\r\n",
            b"*1\r\n$3\r\nGET",
            b"*1\r\n$3\r\nGET\r\nextra",
            b"*1\r\n$4\r\nGET\r\n",
            b"*1\r\n$99999999\r\nGET\r\n",
            b"*1\r\n$9999999999\r\nGET\r\n",
            b"*1\r\n+GET\r\n",
            b"*-1\r\n",
            b"*17\r\n",
            b"GET k\r\n",
        ] {
            assert!(parse_request(&Bytes::from_static(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replies_have_the_documented_bytes() {
        assert_eq!(&Reply::Ok.encode()[..], b"+OK\r\n");
        assert_eq!(&Reply::Int(-1).encode()[..], b":-1\r\n");
        assert_eq!(&Reply::Nil.encode()[..], b"$-1\r\n");
        assert_eq!(
            &Reply::Bulk(Bytes::from_static(b"v1")).encode()[..],
            b"$2\r\nv1\r\n"
        );
        assert_eq!(
            &Reply::Error("syntax error").encode()[..],
            b"-ERR syntax error\r\n"
        );
        let keys = vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")];
        let page = Reply::Keys {
            keys: keys.clone(),
            cursor: Some(Bytes::from_static(b"bc")),
        };
        assert_eq!(
            &page.encode()[..],
            b"*2\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n$2\r\nbc\r\n"
        );
        let last = Reply::Keys { keys, cursor: None };
        assert_eq!(&last.encode()[..], b"*1\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n");
        assert_eq!(
            &encode_notification(Some(b"hello"))[..],
            b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$5\r\nhello\r\n"
        );
        assert_eq!(
            &encode_notification(None)[..],
            b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"
        );
    }
}
