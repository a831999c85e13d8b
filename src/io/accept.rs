//! The server side's decisions, shared by both adapters: what to do next on an accepted
//! stream, the bytes kept for a direct SSL replay or left after a StartupMessage, the TLS
//! context, and the [`Accepted`] result. The adapters only read, write and run handshakes.

use std::io;

use openssl::ssl::{Ssl, SslRef};

use log::warn;

use super::error::ssl_error_stack;
use super::stream::{PgStream, TlsLayer};
use crate::HandshakeInfo;
use crate::server::Startup;
use crate::server::{Cancel, Refusal, ServerNegotiator, ServerOutcome, ServerOutput, ServerPolicy};
use crate::tls::{ServerTls, SessionInfo};
use crate::wire::MAX_PACKET_LEN;

/// How an accepted connection's negotiation ended. Closed: a `match` needs no catch-all arm.
#[derive(Debug)]
pub enum Accepted<S, T> {
    /// A StartupMessage arrived; authenticate and serve over `stream`.
    #[non_exhaustive]
    Startup {
        /// The negotiated stream. Bytes the client sent behind its StartupMessage are read from
        /// it first ([`PgStream::buffered`]).
        stream: PgStream<S, T>,
        /// The StartupMessage.
        startup: Startup,
        /// The TLS session's facts, when TLS is in use.
        session: Option<SessionInfo>,
    },
    /// A CancelRequest arrived; nothing has been sent back. Act on it, then close `stream`
    /// (blocking: [`shutdown`](super::blocking::PgStream::shutdown); tokio:
    /// `AsyncWriteExt::shutdown`), which sends close_notify on TLS: PostgreSQL signals the
    /// backend before it closes the connection, and a client (libpq 17's encrypted cancel) takes
    /// the close as "done".
    #[non_exhaustive]
    Cancel {
        /// The request.
        cancel: Cancel,
        /// The connection it came on, to close once the cancel is acted on.
        stream: PgStream<S, T>,
    },
    /// The connection was refused; the ErrorResponse, if any, has been sent.
    Refused(Refusal),
}

/// What the adapter does next for the server side.
#[allow(clippy::large_enum_variant)] // one step at a time, never stored
pub(crate) enum ServerStep {
    /// Write these bytes and flush.
    Write(&'static [u8]),
    /// Read at most `max` bytes into [`ServerDriver::input`], then
    /// [`ServerDriver::handle_read`]. On the plaintext stream, a read that fills `max` takes
    /// what has already arrived behind it too (without waiting), into the rest of the input,
    /// as PostgreSQL's buffered read does: so bytes stuffed after an SSLRequest are seen.
    Read { max: usize },
    /// Run the TLS server handshake with `ssl` over the plaintext stream, reading `replay`
    /// first (the direct SSL bytes already read), then call
    /// [`ServerDriver::handshake_done`] or [`ServerDriver::handshake_failed`].
    Handshake { ssl: Ssl, replay: Vec<u8> },
    /// Decided: finish as [`ServerDriver::finish`] says.
    Done(ServerOutcome),
}

/// One accepted connection's negotiation, without I/O.
pub(crate) struct ServerDriver<'t> {
    neg: ServerNegotiator,
    tls: Option<&'t ServerTls>,
    input: Box<[u8]>,
    /// Bytes read that the negotiator did not consume: a direct SSL ClientHello's start, or
    /// what followed the StartupMessage.
    pending: Vec<u8>,
    /// The TLS session's facts, once the handshake is done.
    session: Option<SessionInfo>,
}

impl<'t> ServerDriver<'t> {
    /// A driver for `policy`, TLS on exactly when `tls` is given. A policy whose TLS setting
    /// contradicts the context is refused, not overridden.
    pub(crate) fn new(policy: ServerPolicy, tls: Option<&'t ServerTls>) -> io::Result<Self> {
        let policy = match (policy.tls_setting(), tls.is_some()) {
            (Some(true), false) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the policy says ssl = on but no TLS context was given",
                ));
            }
            (Some(false), true) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the policy says ssl = off but a TLS context was given",
                ));
            }
            (_, on) => policy.tls(on),
        };
        Ok(ServerDriver {
            neg: ServerNegotiator::new(policy),
            tls,
            input: vec![0u8; MAX_PACKET_LEN].into_boxed_slice(),
            pending: Vec::new(),
            session: None,
        })
    }

    /// A driver, and the adapter's slot holding `stream` (plaintext until TLS starts).
    pub(crate) fn start<S, T: TlsLayer<S>>(
        stream: S,
        policy: ServerPolicy,
        tls: Option<&'t ServerTls>,
    ) -> io::Result<(Self, Option<PgStream<S, T>>)> {
        Ok((
            ServerDriver::new(policy, tls)?,
            Some(PgStream::plain(stream)),
        ))
    }

    /// The next step.
    pub(crate) fn next(&mut self) -> ServerStep {
        loop {
            match self.neg.poll_output() {
                ServerOutput::Transmit(reply) => return ServerStep::Write(reply.as_bytes()),
                ServerOutput::NeedInput { max } => return ServerStep::Read { max },
                ServerOutput::StartTls(st) => {
                    let ssl = match self.tls.map(ServerTls::new_ssl) {
                        Some(Ok(ssl)) => ssl,
                        Some(Err(e)) => {
                            self.neg.handle_tls_failed(&e.to_string());
                            continue;
                        }
                        None => {
                            self.neg.handle_tls_failed("no TLS context");
                            continue;
                        }
                    };
                    // Direct SSL: what was read belongs to the ClientHello. SSLRequest path:
                    // the negotiator refused any byte after the request, so there is nothing.
                    let replay = if st.direct {
                        std::mem::take(&mut self.pending)
                    } else {
                        Vec::new()
                    };
                    return ServerStep::Handshake { ssl, replay };
                }
                ServerOutput::Done(outcome) => return ServerStep::Done(outcome),
            }
        }
    }

    /// Where a read goes: `max` bytes first, then what has already arrived behind them.
    pub(crate) fn input(&mut self) -> &mut [u8] {
        &mut self.input
    }

    /// `n` bytes were read into [`input`](Self::input) (0: end of stream; a connection reset
    /// is an end of stream too, as PostgreSQL treats it).
    ///
    /// An error of the TLS stream (a client that tries to renegotiate, an alert) ends the
    /// connection as PostgreSQL's `be_tls_read` ends it: logged as `SSL error: <OpenSSL's
    /// reason>`, then taken as the end of the stream.
    pub(crate) fn handle_read(&mut self, read: io::Result<usize>) -> io::Result<()> {
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => match ssl_error_stack(&e) {
                Some(stack) => {
                    warn!("SSL error: {}", crate::tls::openssl_reason(stack));
                    0
                }
                None => return Err(e),
            },
        };
        if n == 0 {
            self.neg.handle_eof();
        } else {
            let used = self.neg.handle_input(&self.input[..n]);
            self.pending.extend_from_slice(&self.input[used..n]);
        }
        Ok(())
    }

    /// The handshake completed; `unread` replayed bytes were left unread by TLS. The session's
    /// facts are read here, once: a client certificate PostgreSQL would refuse (a NUL in its
    /// names) refuses the connection with PostgreSQL's log line.
    pub(crate) fn handshake_done(&mut self, ssl: &SslRef, unread: usize) {
        let facts = SessionInfo::from_ssl(ssl).and_then(|s| s.check_client_names().map(|()| s));
        match facts {
            Ok(s) => self.session = Some(s),
            Err(e) => return self.neg.handle_tls_rejected(&e.to_string()),
        }
        let info = HandshakeInfo::new(ssl.selected_alpn_protocol()).with_unread_plaintext(unread);
        self.neg.handle_tls_established(info);
    }

    /// The handshake failed, for OpenSSL's reason.
    pub(crate) fn handshake_failed(&mut self, e: &openssl::ssl::Error) {
        self.neg.handle_tls_failed(&handshake_reason(e));
    }

    /// The handshake could not be set up.
    pub(crate) fn handshake_setup_failed(&mut self, e: &openssl::error::ErrorStack) {
        self.neg.handle_tls_failed(&crate::tls::openssl_reason(e));
    }

    /// The result for a decided outcome, given the stream. What the adapter still has to do
    /// for a refusal or a cancel (send the ErrorResponse, close TLS) is its own.
    pub(crate) fn finish<S, T: TlsLayer<S>>(
        self,
        outcome: ServerOutcome,
        stream: Option<PgStream<S, T>>,
    ) -> io::Result<Accepted<S, T>> {
        Ok(match outcome {
            ServerOutcome::Startup(startup) => {
                // A StartupMessage is read over the stream: it is there.
                let stream = stream.ok_or_else(|| io::Error::other("no stream"))?;
                Accepted::Startup {
                    session: self.session,
                    stream: stream.with_buffered(self.pending),
                    startup,
                }
            }
            ServerOutcome::Cancel(cancel) => Accepted::Cancel {
                cancel,
                // A CancelRequest is read over the stream: it is there.
                stream: stream.ok_or_else(|| io::Error::other("no stream"))?,
            },
            ServerOutcome::Refuse(r) => Accepted::Refused(r),
        })
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
