//! [`PgStream`]: a negotiated connection, plaintext or TLS, one type for both adapters.

use std::io;

use openssl::ssl::SslRef;

use super::replay::ReadAhead;
use crate::tls::{SessionError, SessionInfo};

mod sealed {
    /// Only pgssl's TLS streams implement [`TlsLayer`](super::TlsLayer).
    pub trait Sealed {}
}

/// The TLS stream of an adapter ([`blocking::TlsStream`](super::blocking::TlsStream), or the
/// tokio adapter's): what [`PgStream`] needs of it. Sealed: implemented by pgssl only.
pub trait TlsLayer<S>: sealed::Sealed {
    /// The TLS session.
    fn ssl(&self) -> &SslRef;
    /// The stream under TLS.
    fn get_ref(&self) -> &S;
    /// The stream under TLS, mutably (reading or writing it directly breaks the TLS stream).
    fn get_mut(&mut self) -> &mut S;
}

/// Defines an adapter's `TlsStream<S>`: an opaque newtype over the TLS library's stream on
/// `Replay<S>`, implementing [`TlsLayer`].
macro_rules! tls_stream {
    ($(#[$doc:meta])* $inner:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct TlsStream<S>($inner);

        impl<S> crate::io::stream::Sealed for TlsStream<S> {}

        impl<S> crate::io::TlsLayer<S> for TlsStream<S> {
            fn ssl(&self) -> &openssl::ssl::SslRef {
                self.0.ssl()
            }
            fn get_ref(&self) -> &S {
                self.0.get_ref().get_ref()
            }
            fn get_mut(&mut self) -> &mut S {
                self.0.get_mut().get_mut()
            }
        }
    };
}

pub(crate) use sealed::Sealed;
pub(crate) use tls_stream;

/// A connection after the negotiation: plaintext, or TLS over the stream `S`, where `T` is the
/// adapter's TLS stream. It reads and writes as `S` does ([`io::Read`] and [`io::Write`] from
/// the blocking adapter, `AsyncRead` and `AsyncWrite` from the tokio adapter). Opaque, as
/// tokio-postgres's `MaybeTlsStream` is not: what the TLS stream is made of is not part of
/// the API.
///
/// Bytes the peer sent behind its StartupMessage (a client that pipelines its first messages)
/// were already received by the negotiation: reads return them first, so a codec or a relay
/// put on the stream sees every byte in order ([`buffered`](PgStream::buffered) shows them).
#[derive(Debug)]
pub struct PgStream<S, T> {
    inner: Inner<S, T>,
    ahead: ReadAhead,
}

#[derive(Debug)]
pub(crate) enum Inner<S, T> {
    Plain(S),
    Tls(Box<T>),
}

impl<S, T: TlsLayer<S>> PgStream<S, T> {
    pub(crate) fn plain(s: S) -> Self {
        PgStream {
            inner: Inner::Plain(s),
            ahead: ReadAhead::default(),
        }
    }

    pub(crate) fn tls(t: T) -> Self {
        PgStream {
            inner: Inner::Tls(Box::new(t)),
            ahead: ReadAhead::default(),
        }
    }

    /// `self`, with `bytes` (already received) read before the stream's own.
    pub(crate) fn with_buffered(mut self, bytes: Vec<u8>) -> Self {
        self.ahead = ReadAhead::new(bytes);
        self
    }

    /// Bytes already received and not read yet, which the next reads return first (what a
    /// client sent behind its StartupMessage). Empty for a client that waits for the server's
    /// reply, as every client does.
    pub fn buffered(&self) -> &[u8] {
        self.ahead.rest()
    }

    /// Takes the [`buffered`](PgStream::buffered) bytes (a proxy forwards them upstream), so
    /// that reads go to the stream at once.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.ahead.take()
    }

    /// Puts `startup` back in front of the [`buffered`](PgStream::buffered) bytes: the stream
    /// then reads from the StartupMessage on, as if no negotiation had read it. The way to hand
    /// a negotiated connection to a wire-protocol library that reads the StartupMessage itself
    /// (pgwire, say): TLS (or plaintext) is already settled, the library sees the protocol from
    /// its first message.
    pub fn unread_startup(&mut self, startup: &crate::server::Startup) {
        let mut bytes = startup.packet().to_vec();
        bytes.extend_from_slice(self.ahead.rest());
        self.ahead = ReadAhead::new(bytes);
    }

    pub(crate) fn inner_mut(&mut self) -> &mut Inner<S, T> {
        &mut self.inner
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// The TLS session, if any.
    pub fn ssl(&self) -> Option<&SslRef> {
        match &self.inner {
            Inner::Plain(_) => None,
            Inner::Tls(t) => Some(t.ssl()),
        }
    }

    /// The facts of the TLS session (the pg_stat_ssl row), if any.
    pub fn session_info(&self) -> Option<Result<SessionInfo, SessionError>> {
        self.ssl().map(SessionInfo::from_ssl)
    }

    /// The underlying stream (the socket).
    pub fn get_ref(&self) -> &S {
        match &self.inner {
            Inner::Plain(s) => s,
            Inner::Tls(t) => t.get_ref(),
        }
    }

    /// The underlying stream, mutably: for socket options. Reading or writing it directly
    /// breaks a TLS stream.
    pub fn get_mut(&mut self) -> &mut S {
        match &mut self.inner {
            Inner::Plain(s) => s,
            Inner::Tls(t) => t.get_mut(),
        }
    }
}

impl<S: io::Read, T: io::Read> io::Read for PgStream<S, T> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = self.ahead.copy_to(b) {
            return Ok(n);
        }
        match &mut self.inner {
            Inner::Plain(s) => s.read(b),
            Inner::Tls(t) => t.read(b),
        }
    }
}

impl<S: io::Write, T: io::Write> io::Write for PgStream<S, T> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.write(b),
            Inner::Tls(t) => t.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(s) => s.flush(),
            Inner::Tls(t) => t.flush(),
        }
    }
}

#[cfg(feature = "tokio")]
mod async_io {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::{Inner, PgStream};

    impl<S, T> AsyncRead for PgStream<S, T>
    where
        S: AsyncRead + Unpin,
        T: AsyncRead + Unpin,
    {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if let Some(n) = this.ahead.copy_to(buf.initialize_unfilled()) {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            match &mut this.inner {
                Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
                Inner::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
            }
        }
    }

    impl<S, T> AsyncWrite for PgStream<S, T>
    where
        S: AsyncWrite + Unpin,
        T: AsyncWrite + Unpin,
    {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            match &mut self.get_mut().inner {
                Inner::Plain(s) => Pin::new(s).poll_write(cx, b),
                Inner::Tls(t) => Pin::new(&mut **t).poll_write(cx, b),
            }
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match &mut self.get_mut().inner {
                Inner::Plain(s) => Pin::new(s).poll_flush(cx),
                Inner::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
            }
        }

        /// Plaintext: shuts the stream's write side. TLS: sends close_notify, then shuts it.
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match &mut self.get_mut().inner {
                Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
                Inner::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
            }
        }
    }
}

/// The connection a driver's step needs: always there, since a step that reads or writes
/// follows a connect (an error rather than a panic if a driver ever broke that).
pub(crate) fn present<S, T>(conn: &mut Option<PgStream<S, T>>) -> io::Result<&mut PgStream<S, T>> {
    conn.as_mut().ok_or_else(missing)
}

/// The connection, taken out of the adapter's slot.
pub(crate) fn stream<S, T>(conn: Option<PgStream<S, T>>) -> io::Result<PgStream<S, T>> {
    conn.ok_or_else(missing)
}

/// The plaintext stream TLS starts on.
pub(crate) fn plaintext<S, T>(conn: Option<PgStream<S, T>>) -> io::Result<S> {
    match conn.map(|c| c.inner) {
        Some(Inner::Plain(s)) => Ok(s),
        _ => Err(io::Error::other(
            "TLS can only start on a plaintext connection",
        )),
    }
}

fn missing() -> io::Error {
    io::Error::other("no connection for this step")
}
