//! Reading a connection's bytes without holding a buffer while it is quiet.
//!
//! Most connections of a plant are idle most of the time: a sensor publishes every few
//! seconds, a dashboard waits for messages. A read buffer allocated up front is then held
//! by every idle connection (256 B, plus the allocator's bookkeeping). A plain TCP socket can
//! tell that bytes arrived without being given a buffer (`poll_read_ready`), so for it the
//! buffer is made only once there is something to read, and given back when the bytes are
//! consumed. Streams that decrypt or unframe (TLS, WebSocket) cannot: readiness of the socket
//! beneath says nothing about what they already hold, so they keep their buffer.

use std::future::Future;
use std::io;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A stream the connection task can read from; [`Input::WAITS_UNBUFFERED`] says whether it
/// can wait for input without a buffer.
pub trait Input: AsyncRead + Unpin {
    /// `poll_input_ready` reports real readiness, so the buffer may be released while idle.
    const WAITS_UNBUFFERED: bool = false;

    /// Ready once a read would return bytes (or an error or end of stream). Only called
    /// when [`Input::WAITS_UNBUFFERED`] holds.
    fn poll_input_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Input for tokio::net::TcpStream {
    const WAITS_UNBUFFERED: bool = true;

    fn poll_input_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl<S: AsyncRead + tokio::io::AsyncWrite + Unpin> Input for tokio_rustls::server::TlsStream<S> {}

impl<S: AsyncRead + tokio::io::AsyncWrite + Unpin> Input for crate::ws::WsStream<S> {}

/// Read into `buf`, first waiting for input if `buf` has no room (it was released while
/// idle), then reserving `size` bytes. Returns the bytes read and the room there was.
#[cfg(test)]
pub(super) async fn read<S: Input>(
    stream: &mut S,
    buf: &mut BytesMut,
    size: usize,
) -> io::Result<(usize, usize)> {
    std::future::poll_fn(|cx| poll_read(stream, buf, size, cx)).await
}

/// [`read`] as a poll: it keeps no state between polls, so the main loop can poll it
/// beside its other sources without storing a future.
pub(super) fn poll_read<S: Input>(
    stream: &mut S,
    buf: &mut BytesMut,
    size: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<(usize, usize)>> {
    if buf.capacity() == buf.len() && S::WAITS_UNBUFFERED {
        std::task::ready!(stream.poll_input_ready(cx))?;
    }
    if buf.capacity() - buf.len() < size / 2 {
        buf.reserve(size);
    }
    let room = buf.capacity() - buf.len();
    let read = stream.read_buf(buf);
    tokio::pin!(read);
    read.poll(cx).map_ok(|n| (n, room))
}

/// Give `buf` back while the connection waits, if the stream can wait without it and
/// nothing is left in it.
pub(super) fn release_idle<S: Input>(buf: &mut BytesMut) {
    if S::WAITS_UNBUFFERED && buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_released_buffer_is_made_again_when_bytes_arrive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let mut buf = BytesMut::with_capacity(256);
        release_idle::<tokio::net::TcpStream>(&mut buf);
        assert_eq!(buf.capacity(), 0, "an empty buffer is given back");

        let waiting = tokio::spawn(async move {
            let got = read(&mut server, &mut buf, 256).await.expect("read");
            (got, buf, server)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "nothing to read yet");
        client.write_all(b"\xc0\x00").await.expect("write");
        let ((n, room), mut buf, mut server) = waiting.await.expect("task");
        assert_eq!(n, 2);
        assert!(room >= 256, "room {room}");
        assert_eq!(&buf[..], b"\xc0\x00");

        // Bytes left over keep the buffer; once consumed it goes.
        release_idle::<tokio::net::TcpStream>(&mut buf);
        assert!(buf.capacity() >= 256);
        buf.clear();
        release_idle::<tokio::net::TcpStream>(&mut buf);
        assert_eq!(buf.capacity(), 0);

        drop(client);
        let (n, _) = read(&mut server, &mut buf, 256)
            .await
            .expect("end of stream");
        assert_eq!(n, 0, "end of stream is reported");
    }
}
