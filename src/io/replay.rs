//! The stream under TLS: the bytes of a direct SSL ClientHello that were read in plaintext,
//! replayed to OpenSSL before the socket's. On the SSLRequest path and on the client side the
//! replay is empty: nothing received in plaintext there ever reaches TLS.

use std::io;

/// Bytes already received that reads return before the stream's own.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    buf: Vec<u8>,
    pos: usize,
}

impl ReadAhead {
    pub(crate) fn new(buf: Vec<u8>) -> Self {
        ReadAhead { buf, pos: 0 }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Takes the bytes not read yet.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.drain(..std::mem::take(&mut self.pos));
        buf
    }

    /// Copies bytes not read yet into `out`; None once there are none (read the stream).
    pub(crate) fn copy_to(&mut self, out: &mut [u8]) -> Option<usize> {
        if self.pos == self.buf.len() || out.is_empty() {
            return None;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            *self = ReadAhead::default();
        }
        Some(n)
    }
}

/// `inner`, with `buf` read first. Writes go straight to `inner`.
#[derive(Debug)]
pub(crate) struct Replay<S> {
    ahead: ReadAhead,
    inner: S,
}

impl<S> Replay<S> {
    /// `inner`, with `buf` read first.
    pub(crate) fn new(buf: Vec<u8>, inner: S) -> Self {
        Replay {
            ahead: ReadAhead::new(buf),
            inner,
        }
    }

    /// Replayed bytes not read yet (TLS must have consumed them all).
    pub(crate) fn unread(&self) -> usize {
        self.ahead.rest().len()
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: io::Read> io::Read for Replay<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.ahead.copy_to(out) {
            Some(n) => Ok(n),
            None => self.inner.read(out),
        }
    }
}

impl<S: io::Write> io::Write for Replay<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(feature = "tokio")]
mod async_io {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::Replay;

    impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            match this.ahead.copy_to(out.initialize_unfilled()) {
                Some(n) => {
                    out.advance(n);
                    Poll::Ready(Ok(()))
                }
                None => Pin::new(&mut this.inner).poll_read(cx, out),
            }
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn replayed_bytes_come_first() {
        let mut r = Replay::new(b"ab".to_vec(), &b"cd"[..]);
        let mut out = [0u8; 1];
        assert_eq!(r.read(&mut out).unwrap(), 1);
        assert_eq!(r.unread(), 1);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!((&out[..], &rest[..]), (&b"a"[..], &b"bcd"[..]));
        assert_eq!(r.unread(), 0);
    }
}
