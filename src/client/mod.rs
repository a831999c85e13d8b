//! The client side: libpq's negotiation for one connect, over as many connections as libpq's
//! attempt plan makes.
//!
//! [`ClientNegotiator`] is a sans-IO state machine with the same contract as the server's:
//! drain [`poll_output`](ClientNegotiator::poll_output) after every `handle_*` call until it
//! asks for input, for a TLS handshake, or returns [`ClientOutput::Done`]. The host loop:
//!
//! * [`ClientOutput::Connect`]: open a new connection (closing any previous one);
//! * [`ClientOutput::Transmit`]: write the bytes (the SSLRequest);
//! * [`ClientOutput::NeedInput`]: read at most `max` bytes, then
//!   [`handle_input`](ClientNegotiator::handle_input) or
//!   [`handle_eof`](ClientNegotiator::handle_eof);
//! * [`ClientOutput::StartTls`]: run the client handshake offering ALPN "postgresql", then
//!   [`handle_tls_established`](ClientNegotiator::handle_tls_established) or
//!   [`handle_tls_failed`](ClientNegotiator::handle_tls_failed);
//! * [`ClientOutput::Done`] with [`ClientOutcome::Ready`]: send the StartupMessage over the
//!   channel given and authenticate; if the server refuses with an ErrorResponse, report it
//!   with [`handle_server_error`](ClientNegotiator::handle_server_error) and keep polling:
//!   libpq may retry over a new connection with the next method;
//! * [`ClientOutput::Done`] with [`ClientOutcome::Failed`]: give up with libpq's error.
//!
//! The fallbacks are libpq's (PostgreSQL 17, fe-connect.c): `N` to an SSLRequest continues in
//! plaintext on the same connection when the mode allows plaintext; a failed handshake, or an
//! error from the server during authentication, moves to the next method over a new
//! connection; `E` or any other byte in reply to the SSLRequest, bytes after `S`, and the
//! server closing during the negotiation end the connect. require and stronger modes never
//! fall back to plaintext, and direct SSL never falls back to an SSLRequest.

mod plan;
mod settings;

pub use plan::{AttemptKind, AttemptPlan, Method};
pub use settings::{ClientSettings, SslMode, SslNegotiation};

use log::debug;

use crate::channel::{Channel, HandshakeInfo, StartTls};
use crate::error::{ClientError, SettingsError};
use crate::wire::{ALPN_PROTOCOL, ErrorResponse, SSL_REQUEST, sqlstate};

/// One connection of a connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// How the connection begins.
    pub kind: AttemptKind,
    /// 1 for the first connection, 2 for the reconnect libpq makes after a fallback.
    pub number: u32,
}

/// What the host must do next, from [`ClientNegotiator::poll_output`].
///
/// Instructions, then [`ClientOutput::Done`] once the negotiation is decided — returned on
/// every later poll too, with the same outcome, as the server's
/// [`ServerOutput::Done`](crate::ServerOutput::Done) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutput {
    /// Open a new connection to the server (closing the previous one, if any), then poll again.
    Connect(Attempt),
    /// Write these bytes to the server.
    Transmit(&'static [u8]),
    /// Read what the server sent, at most `max` bytes, and pass it to `handle_input`, or call
    /// `handle_eof`. Reading exactly `max` never reads past the server's reply; a host that
    /// reads what has already arrived behind it (as libpq does) lets the negotiator refuse
    /// bytes stuffed after `S`.
    NeedInput {
        /// The most bytes the negotiator can use now.
        max: usize,
    },
    /// Run the TLS client handshake now, offering ALPN "postgresql".
    StartTls(StartTls),
    /// Decided: ready for the StartupMessage, or failed.
    Done(ClientOutcome),
}

/// How a client negotiation ended. Closed, so a `match` on it needs no catch-all arm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    /// The connection is ready: send the StartupMessage over this channel. If the server then
    /// refuses with an ErrorResponse, report it with
    /// [`handle_server_error`](ClientNegotiator::handle_server_error) and keep polling: libpq
    /// may retry over a new connection with the next method.
    Ready(Channel),
    /// The connect failed, with libpq's message.
    Failed(ClientError),
}

#[derive(Clone, Debug)]
enum State {
    Connect,
    SendSslRequest,
    AwaitReply,
    AwaitTls { direct: bool },
    Ready(Channel),
    Failed(ClientError),
}

/// libpq's client-side negotiation for one connect. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ClientNegotiator {
    plan: AttemptPlan,
    state: State,
    connections: u32,
    errors: Vec<ClientError>,
}

impl ClientNegotiator {
    /// A negotiator for `settings`, or libpq's error if the settings contradict each other.
    pub fn new(settings: ClientSettings) -> Result<Self, SettingsError> {
        let (mode, negotiation) = settings.resolve()?;
        Ok(Self::with_mode(mode, negotiation))
    }

    /// A negotiator for an already validated mode and negotiation (use [`ClientNegotiator::new`]
    /// to apply libpq's checks).
    pub fn with_mode(mode: SslMode, negotiation: SslNegotiation) -> Self {
        ClientNegotiator {
            plan: AttemptPlan::new(mode, negotiation),
            state: State::Connect,
            connections: 0,
            errors: Vec::new(),
        }
    }

    /// The next thing the host must do. Drain it after every `handle_*` call until it asks for
    /// input or for a TLS handshake, or returns [`ClientOutput::Done`].
    #[must_use]
    pub fn poll_output(&mut self) -> ClientOutput {
        match &mut self.state {
            State::Connect => {
                let Some(method) = self.plan.current() else {
                    // Every failure leaves the plan through `fail`, never here; kept total.
                    let error = self
                        .errors
                        .last()
                        .cloned()
                        .unwrap_or(ClientError::SslNotSupported);
                    self.fail(error);
                    return self.poll_output();
                };
                self.connections += 1;
                let kind = self.plan.kind(method);
                self.state = match kind {
                    AttemptKind::Plaintext => State::Ready(Channel::Plaintext),
                    AttemptKind::SslRequest => State::SendSslRequest,
                    AttemptKind::DirectSsl => State::AwaitTls { direct: true },
                };
                ClientOutput::Connect(Attempt {
                    kind,
                    number: self.connections,
                })
            }
            State::SendSslRequest => {
                self.state = State::AwaitReply;
                ClientOutput::Transmit(&SSL_REQUEST)
            }
            State::AwaitReply => ClientOutput::NeedInput { max: 1 },
            State::AwaitTls { direct } => ClientOutput::StartTls(StartTls { direct: *direct }),
            State::Ready(channel) => ClientOutput::Done(ClientOutcome::Ready(*channel)),
            State::Failed(error) => ClientOutput::Done(ClientOutcome::Failed(error.clone())),
        }
    }

    /// Bytes received from the server in plaintext. Returns how many were consumed; bytes
    /// after an `N` reply stay with the caller.
    #[must_use = "bytes after an `N` reply belong to what follows"]
    pub fn handle_input(&mut self, data: &[u8]) -> usize {
        let Some(&byte) = data.first() else {
            return 0;
        };
        match self.state {
            State::AwaitReply => match byte {
                b'S' if data.len() > 1 => {
                    self.fail(ClientError::UnencryptedDataAfterSslResponse);
                    data.len()
                }
                b'S' => {
                    self.state = State::AwaitTls { direct: false };
                    1
                }
                b'N' => {
                    self.negotiation_refused();
                    1
                }
                b'E' => {
                    self.fail(ClientError::ErrorDuringSslExchange);
                    data.len()
                }
                other => {
                    self.fail(ClientError::InvalidSslResponse { byte: other });
                    data.len()
                }
            },
            State::AwaitTls { direct: false } => {
                // Arrived after `S`, before the handshake: never TLS input.
                self.fail(ClientError::UnencryptedDataAfterSslResponse);
                data.len()
            }
            _ => {
                debug!("client negotiator: input not expected now, left unconsumed");
                0
            }
        }
    }

    /// The server closed the connection (a read returned 0 bytes).
    pub fn handle_eof(&mut self) {
        match self.state {
            State::AwaitReply => self.fail(ClientError::ServerClosed),
            State::AwaitTls { .. } => self.connection_failed(ClientError::TlsHandshake {
                reason: "SSL SYSCALL error: EOF detected".to_owned(),
            }),
            _ => {}
        }
    }

    /// The TLS handshake completed. With direct SSL, ALPN "postgresql" must have been
    /// negotiated ("direct SSL connection was established without ALPN protocol negotiation
    /// extension"); a different protocol is refused on either path.
    pub fn handle_tls_established(&mut self, info: HandshakeInfo<'_>) {
        let State::AwaitTls { direct } = self.state else {
            debug!("client negotiator: TLS reported while none was requested; ignored");
            return;
        };
        match info.alpn() {
            Some(p) if p != ALPN_PROTOCOL => self.connection_failed(ClientError::UnexpectedAlpn),
            None if direct => self.connection_failed(ClientError::DirectSslWithoutAlpn),
            _ => self.state = State::Ready(Channel::Tls { direct }),
        }
    }

    /// The TLS handshake failed (certificate verification included), with the TLS layer's
    /// reason. Under `prefer` libpq retries in plaintext over a new connection.
    pub fn handle_tls_failed(&mut self, reason: &str) {
        if let State::AwaitTls { .. } = self.state {
            self.connection_failed(ClientError::TlsHandshake {
                reason: reason.to_owned(),
            });
        }
    }

    /// The server refused the connection after [`ClientOutcome::Ready`] with this
    /// ErrorResponse (authentication failed, no pg_hba.conf entry, …). The next method is
    /// tried over a new connection if the plan has one; 57P03 ("the database system is
    /// starting up") ends the connect, as libpq moves to its next host instead.
    pub fn handle_server_error(&mut self, response: ErrorResponse) {
        if !matches!(self.state, State::Ready(_)) {
            return;
        }
        let cannot_connect_now = response.code == sqlstate::CANNOT_CONNECT_NOW;
        let error = ClientError::Server { response };
        if cannot_connect_now {
            self.fail(error);
        } else {
            self.connection_failed(error);
        }
    }

    /// The attempt plan, with the method being tried.
    pub fn plan(&self) -> &AttemptPlan {
        &self.plan
    }

    /// How many connections have been asked for so far.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    /// The errors of earlier connections that led to a fallback, oldest first (libpq prints
    /// them all when the connect finally fails).
    pub fn earlier_errors(&self) -> &[ClientError] {
        &self.errors
    }

    /// `N`: libpq's ENCRYPTION_NEGOTIATION_FAILED. Continue in plaintext on this connection if
    /// that is the next method; otherwise the connect fails.
    fn negotiation_refused(&mut self) {
        match self.plan.fail_current() {
            Some(Method::Plaintext) => self.state = State::Ready(Channel::Plaintext),
            _ => self.fail(ClientError::SslNotSupported),
        }
    }

    /// libpq's CONNECTION_FAILED: the next method over a new connection, if any.
    fn connection_failed(&mut self, error: ClientError) {
        if self.plan.fail_current().is_some() {
            debug!("client negotiator: {error}; retrying over a new connection");
            self.errors.push(error);
            self.state = State::Connect;
        } else {
            self.fail(error);
        }
    }

    fn fail(&mut self, error: ClientError) {
        self.state = State::Failed(error);
    }
}
