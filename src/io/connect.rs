//! The client side's decisions, shared by both adapters: libpq's attempt plan over new
//! connections, the addresses and the `connect_timeout` deadline, the TLS context (built once
//! per connect), the reply to the SSLRequest read as libpq reads it (bytes stuffed after `S`
//! are refused), the server's first message checked as libpq checks it, and the
//! [`Connected`] result. The adapters only resolve, connect, read, write and run handshakes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openssl::ssl::{Ssl, SslRef};

use super::error::{AuthFailure, ConnectError, ssl_error_stack};
use super::stream::{PgStream, TlsLayer};
use crate::HandshakeInfo;
use crate::client::{ClientNegotiator, ClientOutcome, ClientOutput, SslMode, SslNegotiation};
use crate::error::ClientError;
use crate::tls::{ClientTls, ClientTlsConfig, ClientTlsError, SessionInfo};
use crate::wire::{Decoded, ErrorResponse};

/// libpq bounds an ErrorResponse during connection startup (`MAX_ERRLEN`).
const MAX_ERROR_LEN: usize = 30_000;
/// libpq bounds an authentication request and a NegotiateProtocolVersion message.
const MAX_AUTH_LEN: usize = 2_000;
/// How much of the server's reply to an SSLRequest is read at once. libpq reads what has
/// arrived into its buffer and refuses anything behind an `S`; reading more than the one byte
/// the negotiator needs is what lets it see such bytes.
const REPLY_READ: usize = 64;

/// The server's first message after the StartupMessage: an authentication request (`R`) or a
/// NegotiateProtocolVersion (`v`), checked as libpq checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstMessage {
    bytes: Vec<u8>,
}

impl FirstMessage {
    /// The message type byte: `R` or `v`.
    pub fn tag(&self) -> u8 {
        self.bytes[0]
    }

    /// The body, after the type byte and the length word.
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }

    /// The authentication request's code (0 AuthenticationOk, 3 cleartext, 5 MD5, 10 SASL, …),
    /// for an `R` message.
    pub fn auth_code(&self) -> Option<u32> {
        match (self.tag(), self.body()) {
            (b'R', [a, b, c, d, ..]) => Some(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => None,
        }
    }

    /// The whole message: type byte, length word, body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A client connection that libpq's plan negotiated and on which the server accepted the
/// StartupMessage (its first reply was an authentication request or a protocol negotiation).
#[derive(Debug)]
#[non_exhaustive]
pub struct Connected<S, T> {
    /// The stream, TLS or plaintext as the sslmode decided.
    pub stream: PgStream<S, T>,
    /// The TLS session's facts, when TLS is in use.
    pub session: Option<SessionInfo>,
    /// The server's first message after the StartupMessage.
    pub first_message: FirstMessage,
    /// How many connections the plan made (2 after a fallback).
    pub connections: u32,
    /// The client TLS setup, for later checks (`sslcertmode`, channel binding).
    pub tls: Option<Arc<ClientTls>>,
}

/// What the connect sends once the negotiation is done.
pub(crate) enum FirstPacket {
    /// A StartupMessage: the server's first reply is read and checked.
    Startup(Bytes),
    /// A CancelRequest: nothing is read back.
    Cancel(Bytes),
    /// Nothing: the stream is handed to the host, which sends its own StartupMessage.
    HandOver,
}

/// A connection that libpq's plan negotiated, before any StartupMessage: handed to a host that
/// runs the start-up and authentication itself (tokio-postgres's `connect_raw`, a pooler's own
/// protocol code). If the server refuses it, the host reports the ErrorResponse and libpq's
/// plan may try the next method over a new connection.
#[derive(Debug)]
#[non_exhaustive]
pub struct Negotiated<S, T> {
    /// The stream, TLS or plaintext as the sslmode decided, positioned before the
    /// StartupMessage.
    pub stream: PgStream<S, T>,
    /// The TLS session's facts, when TLS is in use.
    pub session: Option<SessionInfo>,
    /// How many connections the plan made (2 after a fallback).
    pub connections: u32,
    /// The client TLS setup, for later checks (`sslcertmode`, channel binding).
    pub tls: Option<Arc<ClientTls>>,
}

/// The StartupMessage for `config`: `user` (the OS user by default, as libpq), `database` and
/// `application_name`.
pub(crate) fn startup_message(config: &ClientTlsConfig) -> FirstPacket {
    let mut startup = bytes::BytesMut::new();
    let user = config.effective_user();
    let mut params = vec![("user", user.as_str())];
    if let Some(db) = &config.dbname {
        params.push(("database", db));
    }
    if let Some(app) = &config.application_name {
        params.push(("application_name", app));
    }
    crate::wire::encode_startup_message(&mut startup, crate::wire::ProtocolVersion::V3_0, params);
    FirstPacket::Startup(startup.freeze())
}

/// A CancelRequest for backend `pid` with `key`.
pub(crate) fn cancel_request(pid: u32, key: &[u8]) -> FirstPacket {
    let mut packet = bytes::BytesMut::new();
    crate::wire::encode_cancel_request(&mut packet, pid, key);
    FirstPacket::Cancel(packet.freeze())
}

/// What the adapter does next for the client side.
pub(crate) enum ClientStep<'a> {
    /// Resolve `host` and `port`, then [`ClientDriver::handle_resolved`].
    Resolve { host: &'a str, port: u16 },
    /// Open a TCP connection to `addr` (closing the previous one), giving up at `deadline`,
    /// then [`ClientDriver::handle_connected`].
    Connect {
        addr: SocketAddr,
        deadline: Option<Instant>,
    },
    /// Write these bytes and flush, then [`ClientDriver::handle_written`].
    Write(Bytes),
    /// Read at most `max` bytes into [`ClientDriver::input`], then
    /// [`ClientDriver::handle_read`].
    Read { max: usize },
    /// Build the client TLS context from the configuration's files (blocking work:
    /// [`TlsBuild::run`]), then [`ClientDriver::handle_tls_context`].
    BuildTls(Box<TlsBuild>),
    /// Run the client handshake with `ssl` over the plaintext stream (nothing replayed), then
    /// [`ClientDriver::handshake_done`] or [`ClientDriver::handshake_failed`].
    Handshake(Ssl),
    /// The stream is ready for authentication: [`ClientDriver::connected`], the host's
    /// callback, and [`ClientDriver::handle_auth_failure`] if the server refused.
    Authenticate,
    /// The negotiated stream goes to the host before any StartupMessage:
    /// [`ClientDriver::negotiated`], the host's callback, and
    /// [`ClientDriver::handle_auth_failure`] if the server refused.
    HandOver,
    /// The connect is over: Ok only for a cancel request, which expects no reply.
    Done(Result<(), ConnectError>),
}

/// The client TLS context to build, for a configuration validated once by the driver.
pub(crate) struct TlsBuild {
    config: ClientTlsConfig,
    mode: SslMode,
    negotiation: SslNegotiation,
}

impl TlsBuild {
    /// Reads the root certificate, the CRLs, the client certificate and its key.
    pub(crate) fn run(self) -> Result<ClientTls, ClientTlsError> {
        ClientTls::build(&self.config, self.mode, self.negotiation)
    }
}

enum Phase {
    /// A new connection is wanted: resolve, then connect.
    Connecting,
    /// Writing the configured preamble (a PROXY protocol header) on a new connection.
    Preamble,
    /// Driving the negotiator.
    Negotiate,
    /// Sending the first packet.
    SendFirst,
    /// Reading the server's first message; the write of the first packet failed when `Some`.
    ReadFirst(Option<io::Error>),
    /// Waiting for the host's authentication.
    Authenticate,
    /// The stream is the host's, before any StartupMessage.
    HandOver,
    /// Finished.
    Done(Option<Result<(), ConnectError>>),
}

/// One connect's plan, without I/O.
pub(crate) struct ClientDriver<'c> {
    config: &'c ClientTlsConfig,
    mode: SslMode,
    negotiation: SslNegotiation,
    neg: ClientNegotiator,
    first: FirstPacket,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    addrs: Vec<SocketAddr>,
    /// The address being tried; once one connected, the fallbacks reconnect to it.
    next_addr: usize,
    connected_addr: Option<SocketAddr>,
    tls: Option<Arc<ClientTls>>,
    last_tls_error: Option<ClientTlsError>,
    phase: Phase,
    /// Where reads go.
    input: Vec<u8>,
    /// Bytes read but not used yet (after an `N` reply).
    unread: Vec<u8>,
    /// The first message so far.
    message: Vec<u8>,
}

impl<'c> ClientDriver<'c> {
    /// A driver for `config` (validated once, here), sending `first` once negotiated.
    pub(crate) fn new(
        config: &'c ClientTlsConfig,
        first: FirstPacket,
    ) -> Result<Self, ConnectError> {
        let (mode, negotiation) = config.validate()?;
        Ok(ClientDriver {
            config,
            mode,
            negotiation,
            neg: ClientNegotiator::with_mode(mode, negotiation),
            first,
            // libpq: values below 2 s count as 2 s; 0 or none is no timeout.
            timeout: config
                .connect_timeout
                .filter(|&t| t > 0)
                .map(|t| Duration::from_secs(t.max(2))),
            deadline: None,
            addrs: Vec::new(),
            next_addr: 0,
            connected_addr: None,
            tls: None,
            last_tls_error: None,
            phase: Phase::Negotiate,
            input: Vec::new(),
            unread: Vec::new(),
            message: Vec::new(),
        })
    }

    /// When the attempt in progress times out: libpq's `connect_timeout`, counted from the
    /// first connection to an address, its fallbacks included.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The next step.
    pub(crate) fn next(&mut self) -> ClientStep<'c> {
        loop {
            match &mut self.phase {
                Phase::Done(result) => return ClientStep::Done(result.take().unwrap_or(Ok(()))),
                Phase::Authenticate => return ClientStep::Authenticate,
                Phase::HandOver => return ClientStep::HandOver,
                Phase::Connecting => return self.connect_step(),
                Phase::Preamble => match &self.config.proxy_header {
                    Some(header) => return ClientStep::Write(header.clone()),
                    None => self.phase = Phase::Negotiate,
                },
                Phase::SendFirst => match &self.first {
                    FirstPacket::Startup(bytes) | FirstPacket::Cancel(bytes) => {
                        return ClientStep::Write(bytes.clone());
                    }
                    FirstPacket::HandOver => self.phase = Phase::HandOver,
                },
                Phase::ReadFirst(_) => {
                    if let Some(max) = self.read_first() {
                        return ClientStep::Read { max };
                    }
                }
                Phase::Negotiate => {
                    if let Some(step) = self.negotiate() {
                        return step;
                    }
                }
            }
        }
    }

    fn connect_step(&mut self) -> ClientStep<'c> {
        if let Some(addr) = self.connected_addr {
            // A fallback: the same address, within the same deadline (as libpq).
            return ClientStep::Connect {
                addr,
                deadline: self.deadline,
            };
        }
        if self.addrs.is_empty() {
            let config = self.config;
            let host = match (&config.hostaddr, config.host.as_str()) {
                (Some(addr), _) => addr.as_str(),
                (None, "") => "localhost",
                (None, host) => host,
            };
            return ClientStep::Resolve {
                host,
                port: config.port,
            };
        }
        // Each address has its own deadline, as in libpq.
        self.deadline = self.timeout.map(|t| Instant::now() + t);
        ClientStep::Connect {
            addr: self.addrs[self.next_addr],
            deadline: self.deadline,
        }
    }

    /// Acts on one output of the negotiator; returns a step for the adapter, or None when
    /// the phase changed.
    fn negotiate(&mut self) -> Option<ClientStep<'c>> {
        match self.neg.poll_output() {
            ClientOutput::Connect(_) => {
                self.unread.clear();
                self.phase = Phase::Connecting;
                None
            }
            ClientOutput::Transmit(bytes) => Some(ClientStep::Write(Bytes::from_static(bytes))),
            ClientOutput::NeedInput { .. } => Some(ClientStep::Read { max: REPLY_READ }),
            ClientOutput::StartTls(_) => {
                let Some(tls) = &self.tls else {
                    return Some(ClientStep::BuildTls(Box::new(TlsBuild {
                        config: self.config.clone(),
                        mode: self.mode,
                        negotiation: self.negotiation,
                    })));
                };
                match tls.new_ssl() {
                    Ok(ssl) => Some(ClientStep::Handshake(ssl)),
                    Err(e) => {
                        self.tls_failed(e);
                        None
                    }
                }
            }
            ClientOutput::Done(ClientOutcome::Ready(_)) => {
                self.phase = Phase::SendFirst;
                None
            }
            ClientOutput::Done(ClientOutcome::Failed(e)) => {
                let error = match (e, self.last_tls_error.take()) {
                    (ClientError::TlsHandshake { .. }, Some(t)) => t.into(),
                    (e, _) => e.into(),
                };
                self.fail(error);
                None
            }
        }
    }

    /// How many more bytes of the first message to read; None when none (the phase changed).
    fn read_first(&mut self) -> Option<usize> {
        let want = match self.message_len() {
            Ok(want) => want,
            Err(e) => {
                self.fail(e.into());
                return None;
            }
        };
        if self.message.len() < want {
            if self.unread.is_empty() {
                return Some(want - self.message.len());
            }
            let n = self.unread.len().min(want - self.message.len());
            self.message.extend(self.unread.drain(..n));
            return None;
        }
        if let Phase::ReadFirst(Some(e)) = std::mem::replace(&mut self.phase, Phase::Negotiate) {
            // A reply arrived although the write failed: the write's error stands.
            self.fail(e.into());
            return None;
        }
        self.first_message_complete();
        None
    }

    /// The first message's whole length once its header is in (5 until then), or libpq's
    /// error for a message it does not accept here.
    fn message_len(&self) -> Result<usize, ClientError> {
        let [tag, a, b, c, d, ..] = self.message[..] else {
            return Ok(5);
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        let bounded = |max: usize, error: ClientError| {
            if (8..=max).contains(&len) {
                Ok(1 + len)
            } else {
                Err(error)
            }
        };
        match tag {
            b'R' => bounded(MAX_AUTH_LEN, ClientError::InvalidAuthenticationRequest),
            b'v' => bounded(MAX_AUTH_LEN, ClientError::InvalidProtocolNegotiation),
            b'E' => bounded(MAX_ERROR_LEN, ClientError::InvalidErrorMessage),
            byte => Err(ClientError::UnexpectedFirstMessage { byte }),
        }
    }

    fn first_message_complete(&mut self) {
        if self.message[0] != b'E' {
            self.phase = Phase::Authenticate;
            return;
        }
        let message = std::mem::take(&mut self.message);
        match ErrorResponse::decode(&message) {
            Ok(Decoded::Complete(response, _)) => {
                // pg_hba.conf refusing the encryption, say: libpq's plan may fall back.
                self.neg.handle_server_error(response);
                self.phase = Phase::Negotiate;
            }
            _ => self.fail(ClientError::InvalidErrorMessage.into()),
        }
    }

    /// Where a read goes (`max` bytes, as the step said).
    pub(crate) fn input(&mut self, max: usize) -> &mut [u8] {
        self.input.resize(max, 0);
        &mut self.input[..max]
    }

    /// The addresses of the host.
    pub(crate) fn handle_resolved(&mut self, addrs: io::Result<Vec<SocketAddr>>) {
        match addrs {
            Ok(a) if !a.is_empty() => self.addrs = a,
            Ok(_) => self.fail(io::Error::other("could not translate host name").into()),
            Err(e) => self.fail(e.into()),
        }
    }

    /// The TCP connect of the last [`ClientStep::Connect`] ended.
    pub(crate) fn handle_connected(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => {
                self.connected_addr = Some(self.addrs[self.next_addr]);
                self.phase = Phase::Preamble;
            }
            Err(e) if self.is_timeout(&e) && self.connected_addr.is_some() => {
                self.fail(ConnectError::Timeout)
            }
            // libpq moves to the next address, with a deadline of its own.
            Err(_) if self.connected_addr.is_none() && self.next_addr + 1 < self.addrs.len() => {
                self.next_addr += 1;
            }
            Err(e) if self.is_timeout(&e) => self.fail(ConnectError::Timeout),
            Err(e) => self.fail(e.into()),
        }
    }

    /// A write ended.
    pub(crate) fn handle_written(&mut self, result: io::Result<()>) {
        match (result, &self.phase) {
            (Ok(()), Phase::Preamble) => self.phase = Phase::Negotiate,
            (Ok(()), Phase::SendFirst) => {
                self.phase = match self.first {
                    FirstPacket::Startup(_) => Phase::ReadFirst(None),
                    FirstPacket::Cancel(_) | FirstPacket::HandOver => Phase::Done(Some(Ok(()))),
                };
            }
            // Like libpq, read on after a failed write of the StartupMessage: the reason is
            // usually a TLS alert waiting to be read (a refused client certificate).
            (Err(e), Phase::SendFirst) if !self.is_timeout(&e) => {
                self.phase = match self.first {
                    FirstPacket::Startup(_) => Phase::ReadFirst(Some(e)),
                    FirstPacket::Cancel(_) | FirstPacket::HandOver => {
                        Phase::Done(Some(Err(e.into())))
                    }
                };
            }
            (Ok(()), _) => {}
            (Err(e), _) => self.fail_io(e),
        }
    }

    /// A read into [`input`](Self::input) ended; `tls` says whether it went through TLS.
    pub(crate) fn handle_read(&mut self, result: io::Result<usize>, tls: bool) {
        let n = match result {
            Ok(n) => n,
            Err(e) => return self.read_failed(e, tls),
        };
        match &self.phase {
            Phase::Negotiate if n == 0 => self.neg.handle_eof(),
            Phase::Negotiate => {
                let used = self.neg.handle_input(&self.input[..n]);
                // Bytes behind an `N` reply: the start of the server's first message.
                self.unread.extend_from_slice(&self.input[used..n]);
            }
            Phase::ReadFirst(_) if n == 0 => {
                // A TLS read ends (0 bytes) on close_notify only: OpenSSL 3 reports an end of
                // stream without it as an error ("unexpected eof while reading").
                let error = if tls {
                    ClientError::SslConnectionClosed
                } else {
                    ClientError::ServerClosed
                };
                self.fail_after_write(error.into());
            }
            Phase::ReadFirst(_) => self.message.extend_from_slice(&self.input[..n]),
            _ => {}
        }
    }

    fn read_failed(&mut self, e: io::Error, tls: bool) {
        if self.is_timeout(&e) {
            return self.fail(ConnectError::Timeout);
        }
        let error = if tls { tls_io_error(e) } else { e.into() };
        match self.phase {
            Phase::Negotiate if !tls && is_eof(&error) => self.neg.handle_eof(),
            _ => self.fail_after_write(error),
        }
    }

    /// The TLS context was built (or could not be, for this reason).
    pub(crate) fn handle_tls_context(&mut self, tls: Result<ClientTls, ClientTlsError>) {
        match tls {
            Ok(t) => self.tls = Some(Arc::new(t)),
            Err(e) => self.tls_failed(e),
        }
    }

    /// The handshake completed: libpq's checks of what it established.
    pub(crate) fn handshake_done(&mut self, ssl: &SslRef) -> bool {
        let Some(tls) = &self.tls else {
            return false;
        };
        match tls.check_established(ssl) {
            Ok(()) => {
                self.neg
                    .handle_tls_established(HandshakeInfo::new(ssl.selected_alpn_protocol()));
                true
            }
            Err(e) => {
                self.tls_failed(e);
                false
            }
        }
    }

    /// The handshake failed.
    pub(crate) fn handshake_failed(&mut self, e: &openssl::ssl::Error, ssl: Option<&SslRef>) {
        if e.io_error().is_some_and(|io| self.is_timeout(io)) {
            return self.fail(ConnectError::Timeout);
        }
        match &self.tls {
            Some(tls) => {
                let e = tls.handshake_error(e, ssl);
                self.tls_failed(e);
            }
            None => self
                .neg
                .handle_tls_failed(&super::accept::handshake_reason(e)),
        }
    }

    /// The handshake could not be set up.
    pub(crate) fn handshake_setup_failed(&mut self, e: &openssl::error::ErrorStack) {
        self.neg.handle_tls_failed(&crate::tls::openssl_reason(e));
    }

    /// The connection, ready for authentication: libpq's `sslcertmode=require` check on an
    /// immediate AuthenticationOk, and the session's facts.
    pub(crate) fn connected<S, T: TlsLayer<S>>(
        &mut self,
        stream: PgStream<S, T>,
    ) -> Result<Connected<S, T>, ConnectError> {
        let first_message = FirstMessage {
            bytes: std::mem::take(&mut self.message),
        };
        if first_message.auth_code() == Some(0)
            && let (Some(t), Some(ssl)) = (&self.tls, stream.ssl())
        {
            t.check_cert_mode(ssl)?;
        }
        let session = stream.session_info().transpose()?;
        Ok(Connected {
            tls: if stream.is_tls() {
                self.tls.clone()
            } else {
                None
            },
            // Bytes that came with an `N` reply beyond the first message: read first.
            stream: stream.with_buffered(std::mem::take(&mut self.unread)),
            session,
            first_message,
            connections: self.neg.connections(),
        })
    }

    /// The negotiated connection, for the host's own start-up.
    pub(crate) fn negotiated<S, T: TlsLayer<S>>(
        &mut self,
        stream: PgStream<S, T>,
    ) -> Result<Negotiated<S, T>, ConnectError> {
        let session = stream.session_info().transpose()?;
        Ok(Negotiated {
            tls: if stream.is_tls() {
                self.tls.clone()
            } else {
                None
            },
            stream,
            session,
            connections: self.neg.connections(),
        })
    }

    /// What the host's authentication callback reported.
    pub(crate) fn handle_auth_failure(&mut self, failure: AuthFailure) {
        match failure {
            AuthFailure::Server(response) => {
                self.neg.handle_server_error(response);
                self.phase = Phase::Negotiate;
            }
            AuthFailure::Abort(e) => self.fail(e),
        }
    }

    /// The adapter's wait for the last step reached the deadline.
    pub(crate) fn timed_out(&mut self) {
        self.fail(ConnectError::Timeout);
    }

    /// Whether `e` is the deadline expiring: the adapters report it as
    /// [`io::ErrorKind::TimedOut`] (a read timeout set from the deadline, or the connect's).
    fn is_timeout(&self, e: &io::Error) -> bool {
        self.deadline.is_some()
            && matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            )
    }

    fn tls_failed(&mut self, e: ClientTlsError) {
        self.neg.handle_tls_failed(&e.to_string());
        self.last_tls_error = Some(e);
    }

    fn fail_io(&mut self, e: io::Error) {
        if self.is_timeout(&e) {
            self.fail(ConnectError::Timeout);
        } else {
            self.fail(e.into());
        }
    }

    /// Fails with `error`, unless the write of the first packet failed before: then the
    /// write's error stands if this one says less.
    fn fail_after_write(&mut self, error: ConnectError) {
        match std::mem::replace(&mut self.phase, Phase::Negotiate) {
            Phase::ReadFirst(Some(write)) if matches!(error, ConnectError::Io(_)) => {
                self.fail(write.into())
            }
            _ => self.fail(error),
        }
    }

    fn fail(&mut self, error: ConnectError) {
        self.phase = Phase::Done(Some(Err(error)));
    }
}

fn is_eof(e: &ConnectError) -> bool {
    matches!(e, ConnectError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof)
}

/// An I/O error on a TLS stream in libpq's form: "SSL error: <OpenSSL's reason>" (a refused
/// client certificate arrives as an alert after the handshake), "SSL SYSCALL error: …".
fn tls_io_error(e: io::Error) -> ConnectError {
    match ssl_error_stack(&e) {
        Some(stack) => ClientTlsError::handshake(stack).into(),
        _ => match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                ClientTlsError::Syscall("EOF detected".to_owned()).into()
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                ClientTlsError::Syscall(crate::tls::io_reason(&e)).into()
            }
            _ => e.into(),
        },
    }
}
