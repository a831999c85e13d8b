//! The blocking adapter: [`accept`] and [`connect`] over `std::io` streams.
//!
//! Each function is a read/write/handshake loop around the shared driver of [`crate::io`]:
//! every decision (the reply to send, what a read may take, when TLS starts, what is replayed
//! into it, libpq's attempt plan and its checks) is made there, the same for the tokio adapter.
//! The bytes of a direct SSL ClientHello that were read in plaintext are replayed into
//! OpenSSL; nothing received in plaintext after an SSLRequest ever is, on either side.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use openssl::ssl::{HandshakeError, Ssl};

use super::accept::{ServerDriver, ServerStep};
use super::connect::{ClientDriver, ClientStep, FirstPacket, cancel_request, startup_message};
use super::error::{AuthFailure, CONNECT_TIMEOUT_MESSAGE, ConnectError, TIMEOUT_MESSAGE};
use super::replay::Replay;
use super::stream::{Inner, plaintext, present, stream, tls_stream};
use crate::server::{ServerOutcome, ServerPolicy};
use crate::tls::{ClientTlsConfig, ServerTls};

tls_stream!(
    /// The TLS stream of the blocking adapter (OpenSSL's, over the socket). Reached through
    /// [`PgStream`]; opaque.
    openssl::ssl::SslStream<Replay<S>>
);

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.read(b)
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A negotiated connection of the blocking adapter.
pub type PgStream<S> = super::PgStream<S, TlsStream<S>>;
/// How [`accept`] ended.
pub type Accepted<S> = super::Accepted<S, TlsStream<S>>;
/// What [`connect`] returns: a TCP stream that keeps libpq's `connect_timeout` deadline until
/// [`PgStream::clear_deadline`](super::PgStream::clear_deadline).
pub type Connected = super::Connected<Deadline<TcpStream>, TlsStream<Deadline<TcpStream>>>;
/// What [`negotiate_with`] hands over: the negotiated stream before any StartupMessage.
pub type Negotiated = super::Negotiated<Deadline<TcpStream>, TlsStream<Deadline<TcpStream>>>;

/// Streams whose reads can be given a timeout (what a deadline needs).
pub trait ReadTimeout {
    /// Sets the timeout of every later read (None: block).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Sets the timeout of every later write (None: block). The default does nothing.
    fn set_write_timeout(&self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    /// Whether bytes have already arrived that a read would return at once (checked without
    /// consuming them). [`accept`] uses it to see bytes stuffed after an SSLRequest even when
    /// it reads exactly one packet, as PostgreSQL sees them in its receive buffer. The default
    /// says no.
    fn has_pending_input(&self) -> bool {
        false
    }
}

impl ReadTimeout for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
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
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_write_timeout(self, t)
    }
}

/// A stream with an overall deadline: every read and write waits at most until the deadline,
/// then fails with [`io::ErrorKind::TimedOut`] and the deadline's text
/// ([`TIMEOUT_MESSAGE`] on the server side, [`CONNECT_TIMEOUT_MESSAGE`] on the client
/// side). A peer that sends nothing, or trickles a byte at a time, cannot hold the stream past
/// it.
#[derive(Debug)]
pub struct Deadline<S> {
    inner: S,
    deadline: Option<Instant>,
    message: &'static str,
}

impl<S: ReadTimeout> Deadline<S> {
    /// `inner` with reads and writes bounded by `timeout` from now (None: no deadline), failing
    /// with [`TIMEOUT_MESSAGE`].
    pub fn new(inner: S, timeout: Option<Duration>) -> Self {
        Deadline::until(inner, timeout.map(|t| Instant::now() + t), TIMEOUT_MESSAGE)
    }

    fn until(inner: S, deadline: Option<Instant>, message: &'static str) -> Self {
        Deadline {
            inner,
            deadline,
            message,
        }
    }

    /// Removes the deadline (after authentication, as PostgreSQL's authentication_timeout and
    /// libpq's connect_timeout end there).
    pub fn clear(&mut self) -> io::Result<()> {
        self.deadline = None;
        self.inner.set_read_timeout(None)?;
        self.inner.set_write_timeout(None)
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The underlying stream, without the deadline.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The time left, or the timeout error once none is.
    fn left(&self) -> io::Result<Option<Duration>> {
        match self.deadline {
            None => Ok(None),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(Some(left)),
                _ => Err(self.expired()),
            },
        }
    }

    fn expired(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, self.message)
    }

    fn bounded<T>(&self, r: io::Result<T>) -> io::Result<T> {
        r.map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut if self.deadline.is_some() => {
                self.expired()
            }
            _ => e,
        })
    }
}

impl<S: Read + ReadTimeout> Read for Deadline<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = self.left()? {
            self.inner.set_read_timeout(Some(left))?;
        }
        let r = self.inner.read(out);
        self.bounded(r)
    }
}

/// How long a write may still wait once the deadline has passed: the error that says so
/// ("canceling authentication due to timeout", "timeout expired" upstream) still goes out to a
/// peer that reads, and a peer that does not cannot hold the writer longer than this.
const WRITE_GRACE: Duration = Duration::from_secs(1);

impl<S: Write + ReadTimeout> Write for Deadline<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.deadline.is_some() {
            let left = self.left().ok().flatten().unwrap_or(WRITE_GRACE);
            self.inner.set_write_timeout(Some(left))?;
        }
        let r = self.inner.write(b);
        self.bounded(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<S: ReadTimeout> ReadTimeout for Deadline<S> {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(t)
    }

    fn has_pending_input(&self) -> bool {
        self.inner.has_pending_input()
    }
}

impl<S: ReadTimeout> super::PgStream<Deadline<S>, TlsStream<Deadline<S>>> {
    /// Removes the negotiation's deadline, once authentication is over.
    pub fn clear_deadline(&mut self) -> io::Result<()> {
        self.get_mut().clear()
    }
}

/// [`accept`] with an overall deadline on the negotiation (PostgreSQL's
/// `authentication_timeout` is 60 s). On timeout the error is [`io::ErrorKind::TimedOut`] with
/// [`TIMEOUT_MESSAGE`]; the stream keeps the deadline until
/// [`PgStream::clear_deadline`](super::PgStream::clear_deadline).
pub fn accept_with_deadline<S: Read + Write + ReadTimeout>(
    stream: S,
    policy: ServerPolicy,
    tls: Option<&ServerTls>,
    timeout: Option<Duration>,
) -> io::Result<Accepted<Deadline<S>>> {
    accept(Deadline::new(stream, timeout), policy, tls)
}

/// Runs the server side of the negotiation over `stream`. TLS is available exactly when `tls`
/// is given; a policy whose own [`tls`](ServerPolicy::tls) setting contradicts it is refused
/// with [`io::ErrorKind::InvalidInput`].
///
/// Each read takes at most the packet the negotiator asks for, plus what has already arrived
/// behind it, as PostgreSQL's buffered read: so bytes stuffed after an SSLRequest are refused
/// (CVE-2021-23214). I/O errors are returned as they are; a peer that goes away
/// mid-negotiation is a [`Refused`](super::Accepted::Refused) with
/// [`crate::ServerError::ClosedByClient`] or [`crate::ServerError::IncompletePacket`], as
/// PostgreSQL treats it.
pub fn accept<S: Read + Write + ReadTimeout>(
    stream: S,
    policy: ServerPolicy,
    tls: Option<&ServerTls>,
) -> io::Result<Accepted<S>> {
    let (mut d, mut conn) = ServerDriver::start(stream, policy, tls)?;
    loop {
        match d.next() {
            ServerStep::Write(bytes) => write_flush(present(&mut conn)?, bytes)?,
            ServerStep::Read { max } => {
                let r = read_packet(present(&mut conn)?, d.input(), max);
                d.handle_read(r)?;
            }
            ServerStep::Handshake { ssl, replay } => {
                let raw = plaintext(conn.take())?;
                conn = match ssl.accept(Replay::new(replay, raw)) {
                    Ok(s) => {
                        d.handshake_done(s.ssl(), s.get_ref().unread());
                        Some(PgStream::tls(TlsStream(s)))
                    }
                    Err(HandshakeError::Failure(mid) | HandshakeError::WouldBlock(mid)) => {
                        d.handshake_failed(mid.error());
                        None
                    }
                    Err(HandshakeError::SetupFailure(e)) => {
                        d.handshake_setup_failed(&e);
                        None
                    }
                };
            }
            ServerStep::Done(outcome) => {
                if let Some(c) = conn.as_mut() {
                    conclude(c, &outcome);
                }
                return d.finish(outcome, conn);
            }
        }
    }
}

/// What a refusal still needs: the ErrorResponse (the peer may already be gone: the refusal
/// stands either way), and close_notify on TLS, as PostgreSQL sends it. (A cancel is closed by
/// the host once it has acted on it.)
fn conclude<S: Read + Write + ReadTimeout>(conn: &mut PgStream<S>, outcome: &ServerOutcome) {
    let ServerOutcome::Refuse(r) = outcome else {
        return;
    };
    if let Some(bytes) = r.response_bytes() {
        let _ = write_flush(conn, &bytes);
    }
    let _ = conn.shutdown();
}

impl<S: Read + Write + ReadTimeout> super::PgStream<S, TlsStream<S>> {
    /// Ends the connection as PostgreSQL ends it: on TLS, close_notify, then whatever the peer
    /// has already sent is drained (without waiting) so that closing the socket does not reset
    /// the connection under the peer's last read; the socket itself closes when the stream is
    /// dropped. Nothing to do in plaintext.
    pub fn shutdown(&mut self) -> io::Result<()> {
        match self.inner_mut() {
            Inner::Tls(t) => close_tls(&mut t.0),
            Inner::Plain(_) => Ok(()),
        }
    }
}
/// Sends close_notify, then drains whatever the peer has already sent (without waiting).
fn close_tls<S: Read + Write + ReadTimeout>(
    s: &mut openssl::ssl::SslStream<Replay<S>>,
) -> io::Result<()> {
    s.shutdown().map_err(|e| {
        e.into_io_error()
            .unwrap_or_else(|e| io::Error::other(e.to_string()))
    })?;
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
    Ok(())
}

/// Reads at most `max` bytes into `input`, and then, on the plaintext stream, what has already
/// arrived behind them.
fn read_packet<S: Read + Write + ReadTimeout>(
    conn: &mut PgStream<S>,
    input: &mut [u8],
    max: usize,
) -> io::Result<usize> {
    let n = conn.read(&mut input[..max])?;
    if n == max && !conn.is_tls() && conn.get_ref().has_pending_input() {
        return Ok(n + conn.read(&mut input[n..]).unwrap_or(0));
    }
    Ok(n)
}

/// Connects as libpq does: runs the attempt plan of the configuration's sslmode and
/// sslnegotiation over new TCP connections, verifies the server as libpq would, sends the
/// StartupMessage (`user`, `database`, `application_name`) and reads the server's first
/// message, checked as libpq checks it. An ErrorResponse there (pg_hba.conf refusing the
/// encryption) makes libpq's fallback reconnect; an authentication request or a
/// NegotiateProtocolVersion ends the negotiation and the stream is returned for
/// authentication.
///
/// `connect_timeout` (at least 2 s, as in libpq) is a deadline for the whole attempt at an
/// address — TCP connect, negotiation, TLS handshake, first message, fallbacks and the
/// authentication of [`connect_with`] — not a timeout per read: past it the connect fails
/// with [`ConnectError::Timeout`] ("timeout expired"), with no fallback. The returned stream
/// keeps the deadline until [`PgStream::clear_deadline`](super::PgStream::clear_deadline).
pub fn connect(config: &ClientTlsConfig) -> Result<Connected, ConnectError> {
    connect_with(config, |_| Ok(())).map(|(c, ())| c)
}

/// [`connect`], with the host's authentication run inside libpq's plan: `authenticate` gets
/// each connection whose first message was an authentication request; returning
/// [`AuthFailure::Server`] (a refused password, say) lets the plan fall back to the next
/// method over a new connection, as libpq does.
pub fn connect_with<T>(
    config: &ClientTlsConfig,
    authenticate: impl FnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    let on_ready = authenticating(authenticate);
    run_plan(config, startup_message(config), on_ready)?.ok_or_else(no_connection)
}

/// [`connect_with`] sending `startup` (a whole StartupMessage, e.g. a proxy's client's)
/// instead of one built from the configuration.
pub fn connect_with_startup<T>(
    config: &ClientTlsConfig,
    startup: &[u8],
    authenticate: impl FnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    let first = FirstPacket::Startup(bytes::Bytes::copy_from_slice(startup));
    run_plan(config, first, authenticating(authenticate))?.ok_or_else(no_connection)
}

/// Runs libpq's attempt plan up to the StartupMessage and hands each negotiated connection to
/// `start_up`, which sends its own StartupMessage and authenticates (a client library's own
/// start-up code). Returning [`AuthFailure::Server`] with the server's ErrorResponse lets the
/// plan fall back to the next method over a new connection, as libpq does; `Ok` ends the
/// connect with the callback's result.
pub fn negotiate_with<T>(
    config: &ClientTlsConfig,
    mut start_up: impl FnMut(Negotiated) -> Result<T, AuthFailure>,
) -> Result<T, ConnectError> {
    let on_ready = |d: &mut ClientDriver<'_>, s: PgStream<Deadline<TcpStream>>| match start_up(
        d.negotiated(s)?,
    ) {
        Ok(t) => Ok(Some(t)),
        Err(failure) => {
            d.handle_auth_failure(failure);
            Ok(None)
        }
    };
    run_plan(config, FirstPacket::HandOver, on_ready)?.ok_or_else(no_connection)
}

/// Sends a CancelRequest for backend `pid` with `key`, over a connection negotiated as the
/// configuration says (PostgreSQL 17's libpq encrypts cancel requests the same way). Nothing
/// is read back: the server answers a cancel request by closing.
pub fn send_cancel(config: &ClientTlsConfig, pid: u32, key: &[u8]) -> Result<(), ConnectError> {
    let on_ready = |_: &mut ClientDriver<'_>, _: PgStream<Deadline<TcpStream>>| Ok(Some(()));
    run_plan(config, cancel_request(pid, key), on_ready).map(|_| ())
}

fn no_connection() -> ConnectError {
    io::Error::other("the connect ended without a connection").into()
}

/// The host's authentication as what [`run_plan`] calls once a connection is ready.
fn authenticating<T>(
    mut authenticate: impl FnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> impl FnMut(&mut ClientDriver<'_>, PgStream<Deadline<TcpStream>>) -> ReadyResult<(Connected, T)>
{
    move |d, s| {
        let mut connected = d.connected(s)?;
        match authenticate(&mut connected) {
            Ok(t) => Ok(Some((connected, t))),
            Err(failure) => {
                d.handle_auth_failure(failure);
                Ok(None)
            }
        }
    }
}

/// What the host made of a ready connection: Some to end the connect, None to go on with the
/// plan (the failure was reported to the driver).
type ReadyResult<R> = Result<Option<R>, ConnectError>;

/// The attempt plan: Some with what `on_ready` made of a ready connection, None once a cancel
/// request was sent.
fn run_plan<R>(
    config: &ClientTlsConfig,
    first: FirstPacket,
    mut on_ready: impl FnMut(&mut ClientDriver<'_>, PgStream<Deadline<TcpStream>>) -> ReadyResult<R>,
) -> Result<Option<R>, ConnectError> {
    let mut d = ClientDriver::new(config, first)?;
    let mut conn: Option<PgStream<Deadline<TcpStream>>> = None;
    loop {
        match d.next() {
            ClientStep::Resolve { host, port } => {
                let addrs = (host, port).to_socket_addrs().map(Iterator::collect);
                d.handle_resolved(addrs);
            }
            ClientStep::Connect { addr, deadline } => {
                conn = None;
                let r = tcp_connect(addr, deadline).map(|s| conn = Some(PgStream::plain(s)));
                d.handle_connected(r);
            }
            ClientStep::Write(bytes) => {
                let r = write_flush(present(&mut conn)?, &bytes);
                d.handle_written(r);
            }
            ClientStep::Read { max } => {
                let c = present(&mut conn)?;
                let r = c.read(d.input(max));
                d.handle_read(r, c.is_tls());
            }
            ClientStep::BuildTls(build) => d.handle_tls_context(build.run()),
            ClientStep::Handshake(ssl) => {
                conn = client_handshake(&mut d, ssl, plaintext(conn.take())?);
            }
            ClientStep::Authenticate | ClientStep::HandOver => {
                if let Some(r) = on_ready(&mut d, stream(conn.take())?)? {
                    return Ok(Some(r));
                }
            }
            ClientStep::Done(result) => return result.map(|()| None),
        }
    }
}

/// A TCP connection to `addr`, with the deadline on it.
fn tcp_connect(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<Deadline<TcpStream>> {
    let s = match deadline {
        None => TcpStream::connect(addr)?,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    CONNECT_TIMEOUT_MESSAGE,
                ));
            }
            TcpStream::connect_timeout(&addr, left)?
        }
    };
    s.set_nodelay(true)?;
    Ok(Deadline::until(s, deadline, CONNECT_TIMEOUT_MESSAGE))
}

/// The client handshake over `raw`; the TLS stream when the driver accepts what it established.
fn client_handshake<S: Read + Write>(
    d: &mut ClientDriver<'_>,
    ssl: Ssl,
    raw: S,
) -> Option<PgStream<S>> {
    match ssl.connect(Replay::new(Vec::new(), raw)) {
        Ok(s) => d
            .handshake_done(s.ssl())
            .then(|| PgStream::tls(TlsStream(s))),
        Err(HandshakeError::Failure(mid) | HandshakeError::WouldBlock(mid)) => {
            d.handshake_failed(mid.error(), Some(mid.ssl()));
            None
        }
        Err(HandshakeError::SetupFailure(e)) => {
            d.handshake_setup_failed(&e);
            None
        }
    }
}

fn write_flush<W: Write>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes)?;
    w.flush()
}
