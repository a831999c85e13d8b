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

/// Streams whose reads can be given a timeout (what a deadline needs).
pub trait ReadTimeout {
    /// Sets the timeout of every later read (None: block).
    fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()>;

    /// Whether bytes have already arrived that a read would return at once (checked without
    /// consuming them). [`accept`] uses it to see bytes stuffed after an SSLRequest even when
    /// it reads exactly one packet, as PostgreSQL sees them in its receive buffer. The default
    /// says no.
    fn has_pending_input(&self) -> bool {
        false
    }
}

impl ReadTimeout for std::net::TcpStream {
    fn set_read_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, t)
    }

    fn has_pending_input(&self) -> bool {
        if self.set_nonblocking(true).is_err() {
            return false;
        }
        let r = self.peek(&mut [0u8; 1]);
        let _ = self.set_nonblocking(false);
        matches!(r, Ok(n) if n > 0)
    }
}

impl ReadTimeout for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, t)
    }
}

/// The text of the timeout error, PostgreSQL's ("canceling authentication due to timeout").
pub const TIMEOUT_MESSAGE: &str = "canceling authentication due to timeout";

/// A stream with an overall deadline: every read waits at most until the deadline, then fails
/// with [`io::ErrorKind::TimedOut`] and [`TIMEOUT_MESSAGE`]. A client that connects and sends
/// nothing, or trickles a byte at a time, cannot hold the connection past it.
#[derive(Debug)]
pub struct Deadline<S> {
    inner: S,
    deadline: Option<std::time::Instant>,
}

impl<S: ReadTimeout> Deadline<S> {
    /// `inner` with reads bounded by `timeout` from now (None: no deadline).
    pub fn new(inner: S, timeout: Option<std::time::Duration>) -> Self {
        Deadline {
            inner,
            deadline: timeout.map(|t| std::time::Instant::now() + t),
        }
    }

    /// Removes the deadline (after authentication, as PostgreSQL's authentication_timeout
    /// ends there).
    pub fn clear(&mut self) -> io::Result<()> {
        self.deadline = None;
        self.inner.set_read_timeout(None)
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The underlying stream, without the deadline.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Read + ReadTimeout> Read for Deadline<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, TIMEOUT_MESSAGE));
            }
            self.inner.set_read_timeout(Some(left))?;
        }
        self.inner.read(out).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut if self.deadline.is_some() => {
                io::Error::new(io::ErrorKind::TimedOut, TIMEOUT_MESSAGE)
            }
            _ => e,
        })
    }
}

impl<S: ReadTimeout> ReadTimeout for Deadline<S> {
    fn set_read_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(t)
    }

    fn has_pending_input(&self) -> bool {
        self.inner.has_pending_input()
    }
}

impl<S: Write> Write for Deadline<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// [`accept`] with an overall deadline on the negotiation (PostgreSQL's
/// `authentication_timeout` is 60 s). On timeout the error is [`io::ErrorKind::TimedOut`] with
/// [`TIMEOUT_MESSAGE`]; the stream keeps the deadline until [`Deadline::clear`].
pub fn accept_with_deadline<S: Read + Write + ReadTimeout>(
    stream: S,
    policy: ServerPolicy,
    tls: Option<&ServerTls>,
    timeout: Option<std::time::Duration>,
) -> io::Result<Accepted<Deadline<S>>> {
    accept(Deadline::new(stream, timeout), policy, tls)
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

impl<S: ReadTimeout> PgStream<Deadline<S>> {
    /// Removes the negotiation's deadline, once authentication is over.
    pub fn clear_deadline(&mut self) -> io::Result<()> {
        match self {
            PgStream::Plain(d) => d.clear(),
            PgStream::Tls(s) => s.get_mut().get_mut().clear(),
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
pub fn accept<S: Read + Write + ReadTimeout>(
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
                let mut n = match c.read(&mut buf[..max]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                    Err(e) => return Err(e),
                };
                // Exact reads never over-read; but bytes that have already arrived behind the
                // packet (stuffed after an SSLRequest, say) are taken with it, so that the
                // negotiator sees them as PostgreSQL sees its receive buffer.
                if let PgStream::Plain(raw) = &*c {
                    if n == max && raw.has_pending_input() {
                        n += c.read(&mut buf[n..]).unwrap_or(0);
                    }
                }
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
                    Some(ssl) => {
                        let s = SessionInfo::from_ssl(ssl).map_err(io::Error::other)?;
                        // PostgreSQL refuses a client certificate whose names hold a NUL.
                        s.check_client_names().map_err(io::Error::other)?;
                        Some(s)
                    }
                    None => None,
                };
                return Ok(Accepted::Startup {
                    stream,
                    startup,
                    session,
                    leftover: pending,
                });
            }
            ServerOutput::Cancel(c) => {
                // Close TLS cleanly (close_notify), as PostgreSQL does: libpq 17's encrypted
                // cancel reads until then and reports an unexpected EOF otherwise.
                if let Some(PgStream::Tls(s)) = conn.as_mut() {
                    close_tls(s);
                }
                return Ok(Accepted::Cancel(c));
            }
            ServerOutput::Refuse(r) => {
                if let (Some(c), Some(bytes)) = (conn.as_mut(), r.response_bytes()) {
                    // The peer may already be gone; the refusal stands either way.
                    let _ = c.write_all(&bytes).and_then(|()| c.flush());
                }
                if let Some(PgStream::Tls(s)) = conn.as_mut() {
                    close_tls(s);
                }
                return Ok(Accepted::Refused(r));
            }
            ServerOutput::Finished => unreachable!("outcomes end the loop"),
        }
    }
}

/// Sends close_notify, then drains whatever the peer has already sent (without waiting), so
/// that closing the socket with unread bytes does not reset the connection under the peer's
/// last read.
fn close_tls<S: Read + Write + ReadTimeout>(s: &mut SslStream<Replay<S>>) {
    if s.shutdown().is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    for _ in 0..16 {
        if !s.get_ref().get_ref().has_pending_input() {
            break;
        }
        match s.get_mut().get_mut().read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
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

/// A client connection that libpq's plan negotiated and on which the server accepted the
/// StartupMessage (its first reply was not an ErrorResponse).
#[derive(Debug)]
pub struct Connected {
    /// The stream, TLS or plaintext as the sslmode decided.
    pub stream: PgStream<std::net::TcpStream>,
    /// The TLS session's facts, when TLS is in use.
    pub session: Option<SessionInfo>,
    /// The server's first message after the StartupMessage (an authentication request, or
    /// NegotiateProtocolVersion), whole.
    pub first_message: Vec<u8>,
    /// How many connections the plan made (2 after a fallback).
    pub connections: u32,
    /// The client TLS setup, for later checks (`sslcertmode`, channel binding).
    pub tls: Option<std::sync::Arc<crate::tls::ClientTls>>,
}

/// Why [`connect`] failed, with libpq's message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::tls::ClientConfigError),
    /// The TLS setup or handshake failed (the last attempt's reason).
    #[error(transparent)]
    Tls(#[from] crate::tls::ClientTlsError),
    /// The negotiation or the server refused.
    #[error(transparent)]
    Negotiation(#[from] crate::ClientError),
    /// The TCP connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A failure during authentication, as the host's callback reports it to [`connect_with`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The server refused with this ErrorResponse: libpq's fallback may reconnect with the
    /// next method (an ErrorResponse during authentication is CONNECTION_FAILED in libpq).
    Server(crate::wire::ErrorResponse),
    /// Give up with this error.
    Abort(ConnectError),
}

impl From<io::Error> for AuthFailure {
    fn from(e: io::Error) -> Self {
        AuthFailure::Abort(e.into())
    }
}

/// Connects as libpq does: runs the attempt plan of the configuration's sslmode and
/// sslnegotiation over new TCP connections, verifies the server as libpq would, sends the
/// StartupMessage (`user`, `database`, `application_name`) and reads the server's first reply.
/// An ErrorResponse there (pg_hba.conf refusing the encryption) makes libpq's fallback
/// reconnect; anything else ends the negotiation and the stream is returned for
/// authentication.
pub fn connect(config: &crate::tls::ClientTlsConfig) -> Result<Connected, ConnectError> {
    connect_with(config, |_| Ok(())).map(|(c, ())| c)
}

/// [`connect`], with the host's authentication run inside libpq's plan: `authenticate` gets
/// each connection whose first reply was not an ErrorResponse; returning
/// [`AuthFailure::Server`] (a refused password, say) lets the plan fall back to the next
/// method over a new connection, as libpq does.
pub fn connect_with<T>(
    config: &crate::tls::ClientTlsConfig,
    authenticate: impl FnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    let startup = super::common::startup_message(config);
    run_plan(config, &startup, true, authenticate)
}

/// [`connect_with`] sending `startup` (a whole StartupMessage, e.g. a proxy's client's)
/// instead of one built from the configuration.
pub fn connect_with_startup<T>(
    config: &crate::tls::ClientTlsConfig,
    startup: &[u8],
    authenticate: impl FnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    run_plan(config, startup, true, authenticate)
}

/// Sends a CancelRequest for backend `pid` with `key`, over a connection negotiated as the
/// configuration says (PostgreSQL 17's libpq encrypts cancel requests the same way). Nothing
/// is read back: the server answers a cancel request by closing.
pub fn send_cancel(
    config: &crate::tls::ClientTlsConfig,
    pid: u32,
    key: &[u8],
) -> Result<(), ConnectError> {
    let mut packet = bytes::BytesMut::new();
    crate::wire::encode_cancel_request(&mut packet, pid, key);
    run_plan(config, &packet, false, |_| Ok(())).map(|_| ())
}

fn run_plan<T>(
    config: &crate::tls::ClientTlsConfig,
    first_packet: &[u8],
    expect_reply: bool,
    mut authenticate: impl FnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    use crate::client::{ClientNegotiator, ClientOutput};
    use std::net::TcpStream;
    use std::sync::Arc;

    let (mode, negotiation) = config.validate()?;
    let mut neg = ClientNegotiator::with_mode(mode, negotiation);
    let mut tls: Option<Arc<crate::tls::ClientTls>> = None;
    let mut last_tls_error: Option<crate::tls::ClientTlsError> = None;
    let mut conn: Option<PgStream<TcpStream>> = None;
    let timeout = config
        .connect_timeout
        .filter(|&t| t > 0)
        .map(|t| std::time::Duration::from_secs(t.max(2)));
    loop {
        match neg.poll_output() {
            ClientOutput::Connect(_) => {
                conn = None;
                let target = config
                    .hostaddr
                    .as_deref()
                    .unwrap_or(if config.host.is_empty() {
                        "localhost"
                    } else {
                        &config.host
                    });
                let addrs: Vec<_> =
                    std::net::ToSocketAddrs::to_socket_addrs(&(target, config.port))?.collect();
                let mut last = None;
                for a in addrs {
                    let r = match timeout {
                        Some(t) => TcpStream::connect_timeout(&a, t),
                        None => TcpStream::connect(a),
                    };
                    match r {
                        Ok(s) => {
                            s.set_read_timeout(timeout)?;
                            s.set_nodelay(true)?;
                            conn = Some(PgStream::Plain(s));
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                if conn.is_none() {
                    return Err(last
                        .unwrap_or_else(|| io::Error::other("could not translate host name"))
                        .into());
                }
            }
            ClientOutput::Transmit(bytes) => {
                let c = conn.as_mut().expect("connected");
                c.write_all(bytes)?;
                c.flush()?;
            }
            ClientOutput::NeedInput { max } => {
                let c = conn.as_mut().expect("connected");
                let mut buf = [0u8; 16];
                let n = c.read(&mut buf[..max.min(16)])?;
                if n == 0 {
                    neg.handle_eof();
                } else {
                    neg.handle_input(&buf[..n]);
                }
            }
            ClientOutput::StartTls(_) => {
                let Some(PgStream::Plain(raw)) = conn.take() else {
                    unreachable!("TLS starts on a plaintext stream")
                };
                let setup = match &tls {
                    Some(t) => Ok(t.clone()),
                    None => crate::tls::ClientTls::new(config).map(Arc::new),
                };
                let t = match setup {
                    Ok(t) => {
                        tls = Some(t.clone());
                        t
                    }
                    Err(e) => {
                        neg.handle_tls_failed(&e.to_string());
                        last_tls_error = Some(e);
                        continue;
                    }
                };
                let ssl = match t.new_ssl() {
                    Ok(s) => s,
                    Err(e) => {
                        neg.handle_tls_failed(&e.to_string());
                        last_tls_error = Some(e);
                        continue;
                    }
                };
                match ssl.connect(Replay::new(Vec::new(), raw)) {
                    Ok(s) => match t.check_established(s.ssl()) {
                        Ok(()) => {
                            neg.handle_tls_established(HandshakeInfo::new(
                                s.ssl().selected_alpn_protocol(),
                            ));
                            conn = Some(PgStream::Tls(Box::new(s)));
                        }
                        Err(e) => {
                            neg.handle_tls_failed(&e.to_string());
                            last_tls_error = Some(e);
                        }
                    },
                    Err(HandshakeError::Failure(mid)) => {
                        let e = t.handshake_error(mid.error(), Some(mid.ssl()));
                        neg.handle_tls_failed(&e.to_string());
                        last_tls_error = Some(e);
                    }
                    Err(HandshakeError::SetupFailure(e)) => {
                        neg.handle_tls_failed(&crate::tls::openssl_reason(&e));
                    }
                    Err(HandshakeError::WouldBlock(_)) => {
                        neg.handle_tls_failed("the stream would block (blocking streams only)");
                    }
                }
            }
            ClientOutput::Ready(_) => {
                let c = conn.as_mut().expect("connected");
                let sent = c.write_all(first_packet).and_then(|()| c.flush());
                let msg = match (sent, expect_reply) {
                    (Ok(()), true) => read_message(c),
                    (Ok(()), false) => Ok(vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0]),
                    // Like libpq, read on after a failed write: the reason is usually a TLS
                    // alert waiting to be read (a refused client certificate).
                    (Err(e), _) => read_message(c).and(Err(e)),
                };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => return Err(super::common::tls_io_error(e, c.ssl().is_some())),
                };
                if msg[0] == b'E' {
                    match crate::wire::ErrorResponse::decode(&msg) {
                        Ok(crate::wire::Decoded::Complete(resp, _)) => {
                            neg.handle_server_error(resp);
                            continue;
                        }
                        _ => {
                            return Err(
                                io::Error::other("invalid ErrorResponse from server").into()
                            );
                        }
                    }
                }
                let stream = conn.take().expect("connected");
                let session = match stream.ssl() {
                    Some(ssl) => Some(SessionInfo::from_ssl(ssl).map_err(io::Error::other)?),
                    None => None,
                };
                // AuthenticationOk straight away: libpq's sslcertmode=require check.
                if expect_reply && msg[0] == b'R' && msg.len() >= 9 && msg[5..9] == [0, 0, 0, 0] {
                    if let (Some(t), Some(ssl)) = (&tls, stream.ssl()) {
                        t.check_cert_mode(ssl)?;
                    }
                }
                let mut connected = Connected {
                    tls: if stream.ssl().is_some() {
                        tls.clone()
                    } else {
                        None
                    },
                    stream,
                    session,
                    first_message: msg,
                    connections: neg.connections(),
                };
                match authenticate(&mut connected) {
                    Ok(t) => return Ok((connected, t)),
                    Err(AuthFailure::Server(resp)) => {
                        drop(connected);
                        neg.handle_server_error(resp);
                    }
                    Err(AuthFailure::Abort(e)) => return Err(e),
                }
            }
            ClientOutput::Failed(e) => {
                return Err(match (e, last_tls_error) {
                    (crate::ClientError::TlsHandshake { .. }, Some(t)) => t.into(),
                    (e, _) => e.into(),
                });
            }
            ClientOutput::Finished => unreachable!("failures end the loop"),
        }
    }
}

/// Reads the server's first reply (type byte, length, body), bounded as libpq bounds it.
fn read_message<S: Read>(s: &mut S) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)
        .map_err(super::common::closed_as_libpq)?;
    let mut msg = head.to_vec();
    msg.resize(5 + super::common::reply_body_len(&head)?, 0);
    s.read_exact(&mut msg[5..])?;
    Ok(msg)
}
