//! Blocking adapters over `std::io` streams.
//!
//! [`accept`] drives a [`ServerNegotiator`] and OpenSSL over one accepted stream until the
//! negotiation is decided. The bytes of a direct SSL ClientHello that were read in plaintext
//! are replayed into OpenSSL; nothing received in plaintext after an SSLRequest ever is.

use std::io::{self, Read, Write};

use openssl::ssl::{HandshakeError, SslStream};

use crate::HandshakeInfo;
use crate::server::{Cancel, Refusal, ServerNegotiator, ServerOutput, ServerPolicy, Startup};
use crate::tls::{ServerTls, SessionInfo};
use crate::wire::MAX_PACKET_LEN;

/// A stream whose first bytes come from a buffer: the direct SSL bytes the negotiator did not
/// consume, replayed to OpenSSL before the socket's.
#[derive(Debug)]
pub struct Replay<S> {
    buf: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Replay<S> {
    /// `inner`, with `buf` read first.
    pub fn new(buf: Vec<u8>, inner: S) -> Self {
        Replay { buf, pos: 0, inner }
    }

    /// Replayed bytes not read yet.
    pub fn unread(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The underlying stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Read> Read for Replay<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.buf.len() {
            let n = out.len().min(self.buf.len() - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.buf.len() {
                self.buf = Vec::new();
                self.pos = 0;
            }
            return Ok(n);
        }
        self.inner.read(out)
    }
}

impl<S: Write> Write for Replay<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A negotiated connection: plaintext, or TLS over the stream.
#[derive(Debug)]
pub enum PgStream<S> {
    /// No encryption.
    Plain(S),
    /// TLS.
    Tls(Box<SslStream<Replay<S>>>),
}

impl<S: Read + Write> Read for PgStream<S> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            PgStream::Plain(s) => s.read(b),
            PgStream::Tls(s) => s.read(b),
        }
    }
}

impl<S: Read + Write> Write for PgStream<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            PgStream::Plain(s) => s.write(b),
            PgStream::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            PgStream::Plain(s) => s.flush(),
            PgStream::Tls(s) => s.flush(),
        }
    }
}

impl<S> PgStream<S> {
    /// The TLS session, if any.
    pub fn ssl(&self) -> Option<&openssl::ssl::SslRef> {
        match self {
            PgStream::Plain(_) => None,
            PgStream::Tls(s) => Some(s.ssl()),
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        match self {
            PgStream::Plain(s) => s,
            PgStream::Tls(s) => s.get_ref().get_ref(),
        }
    }
}

/// How an accepted connection's negotiation ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Accepted<S> {
    /// A StartupMessage arrived; authenticate and serve over `stream`.
    Startup {
        /// The negotiated stream.
        stream: PgStream<S>,
        /// The StartupMessage.
        startup: Startup,
        /// The TLS session's facts, when TLS is in use.
        session: Option<SessionInfo>,
        /// Bytes received after the StartupMessage (empty for a client that waits for the
        /// server's reply, as every client does).
        leftover: Vec<u8>,
    },
    /// A CancelRequest arrived (nothing has been sent back).
    Cancel(Cancel),
    /// The connection was refused; the ErrorResponse, if any, has been sent.
    Refused(Refusal),
}

/// Runs the server side of the negotiation over `stream`. TLS is available exactly when `tls`
/// is given (the policy's own `tls` flag is replaced).
///
/// I/O errors are returned as they are; a peer that goes away mid-negotiation is a
/// [`Accepted::Refused`] with [`crate::ServerError::ClosedByClient`] or
/// [`crate::ServerError::IncompletePacket`], as PostgreSQL treats it.
pub fn accept<S: Read + Write>(
    stream: S,
    policy: ServerPolicy,
    tls: Option<&ServerTls>,
) -> io::Result<Accepted<S>> {
    let policy = policy.tls(tls.is_some());
    let mut neg = ServerNegotiator::new(policy);
    let mut conn = Some(PgStream::Plain(stream));
    let mut buf = vec![0u8; MAX_PACKET_LEN];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let out = neg.poll_output();
        match out {
            ServerOutput::Transmit(reply) => {
                let c = conn.as_mut().expect("stream present");
                c.write_all(reply.as_bytes())?;
                c.flush()?;
            }
            ServerOutput::NeedInput { max } => {
                let c = conn.as_mut().expect("stream present");
                let n = match c.read(&mut buf[..max]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    neg.handle_eof();
                } else {
                    let used = neg.handle_input(&buf[..n]);
                    pending.extend_from_slice(&buf[used..n]);
                }
            }
            ServerOutput::StartTls(st) => {
                let tls = tls.expect("TLS is only started when a context is given");
                let Some(PgStream::Plain(raw)) = conn.take() else {
                    unreachable!("TLS starts on a plaintext stream")
                };
                // Direct SSL: what was read belongs to the ClientHello. SSLRequest path: the
                // negotiator refused any byte after the request, so there is nothing.
                let replay = if st.direct {
                    std::mem::take(&mut pending)
                } else {
                    Vec::new()
                };
                let ssl = tls.new_ssl().map_err(io::Error::other)?;
                match ssl.accept(Replay::new(replay, raw)) {
                    Ok(s) => {
                        let info = HandshakeInfo::new(s.ssl().selected_alpn_protocol())
                            .with_unread_plaintext(s.get_ref().unread());
                        neg.handle_tls_established(info);
                        conn = Some(PgStream::Tls(Box::new(s)));
                    }
                    Err(HandshakeError::Failure(mid)) => {
                        let reason = handshake_reason(mid.error());
                        neg.handle_tls_failed(&reason);
                    }
                    Err(HandshakeError::SetupFailure(e)) => {
                        neg.handle_tls_failed(&crate::tls::openssl_reason(&e));
                    }
                    Err(HandshakeError::WouldBlock(_)) => {
                        neg.handle_tls_failed("the stream would block (blocking streams only)");
                    }
                }
            }
            ServerOutput::Startup(startup) => {
                let stream = conn.take().expect("stream present");
                let session = match stream.ssl() {
                    Some(ssl) => Some(SessionInfo::from_ssl(ssl).map_err(io::Error::other)?),
                    None => None,
                };
                return Ok(Accepted::Startup {
                    stream,
                    startup,
                    session,
                    leftover: pending,
                });
            }
            ServerOutput::Cancel(c) => return Ok(Accepted::Cancel(c)),
            ServerOutput::Refuse(r) => {
                if let (Some(c), Some(bytes)) = (conn.as_mut(), r.response_bytes()) {
                    // The peer may already be gone; the refusal stands either way.
                    let _ = c.write_all(&bytes).and_then(|()| c.flush());
                }
                return Ok(Accepted::Refused(r));
            }
            ServerOutput::Finished => unreachable!("outcomes end the loop"),
        }
    }
}

/// The reason OpenSSL gives for a failed handshake, as PostgreSQL logs it.
pub(crate) fn handshake_reason(e: &openssl::ssl::Error) -> String {
    match (e.ssl_error(), e.io_error()) {
        (Some(stack), _) if !stack.errors().is_empty() => crate::tls::openssl_reason(stack),
        (_, Some(io)) => crate::tls::io_reason(io),
        _ => "EOF detected".to_owned(),
    }
}
