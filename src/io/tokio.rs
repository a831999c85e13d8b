//! Async adapters over tokio streams (feature `tokio`).
//!
//! The same negotiation as the [blocking adapter](super::blocking), driven with `.await`
//! instead of blocking reads: [`accept`] runs a [`ServerNegotiator`](crate::server::ServerNegotiator) and an OpenSSL server
//! handshake (through `tokio-openssl`) over one accepted stream, and [`connect`] runs libpq's
//! plan as a client over tokio TCP connections. Nothing inside blocks a runtime thread: socket
//! I/O is awaited, and the one step that reads files (building the client's TLS context from
//! its certificate and key files) runs on tokio's blocking pool.
//!
//! As in the blocking adapter, the bytes of a direct SSL ClientHello that were read in
//! plaintext are replayed into OpenSSL before the socket's; nothing received in plaintext after
//! an SSLRequest ever is: bytes that arrived with the request are refused (see [`accept`]).
//!
//! ```no_run
//! use pgssl::io::tokio::{Accepted, accept};
//! use pgssl::server::ServerPolicy;
//! use std::time::Duration;
//!
//! # async fn serve(tls: pgssl::tls::ServerTls) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5433").await?;
//! let tls = std::sync::Arc::new(tls);
//! loop {
//!     let (sock, _) = listener.accept().await?;
//!     let tls = tls.clone();
//!     tokio::spawn(async move {
//!         // PostgreSQL's authentication_timeout is 60 s.
//!         let timeout = Some(Duration::from_secs(60));
//!         match accept(sock, ServerPolicy::new(), Some(&tls), timeout).await {
//!             Ok(Accepted::Startup { stream, startup, .. }) => {
//!                 println!("user {} over TLS: {}", startup.user_lossy(), stream.ssl().is_some());
//!                 // authenticate, then serve over `stream`
//!             }
//!             Ok(_) => {} // a CancelRequest, or refused (the ErrorResponse has been sent)
//!             Err(e) => eprintln!("{e}"),
//!         }
//!     });
//! }
//! # }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use ::tokio::net::TcpStream;
use openssl::ssl::Ssl;

use super::accept::{ServerDriver, ServerStep};
use super::connect::{ClientDriver, ClientStep, FirstPacket, cancel_request, startup_message};
use super::error::{AuthFailure, CONNECT_TIMEOUT_MESSAGE, ConnectError, TIMEOUT_MESSAGE};
use super::replay::Replay;
use super::stream::{Inner, plaintext, present, stream, tls_stream};
use crate::server::{ServerOutcome, ServerPolicy};
use crate::tls::{ClientTlsConfig, ServerTls};

tls_stream!(
    /// The TLS stream of the tokio adapter (tokio-openssl's, over the socket). Reached through
    /// [`PgStream`]; opaque.
    tokio_openssl::SslStream<Replay<S>>
);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    /// Sends close_notify, then shuts the stream's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A negotiated connection of the tokio adapter.
pub type PgStream<S> = super::PgStream<S, TlsStream<S>>;
/// How [`accept`] ended.
pub type Accepted<S> = super::Accepted<S, TlsStream<S>>;
/// What [`connect`] returns.
pub type Connected = super::Connected<TcpStream, TlsStream<TcpStream>>;
/// What [`negotiate_with`] hands over: the negotiated stream before any StartupMessage.
pub type Negotiated = super::Negotiated<TcpStream, TlsStream<TcpStream>>;

/// Runs the server side of the negotiation over `stream`, with the same decisions as
/// [`blocking::accept`](super::blocking::accept). TLS is available exactly when `tls` is
/// given; a policy whose own [`tls`](ServerPolicy::tls) setting contradicts it is refused
/// with [`io::ErrorKind::InvalidInput`].
///
/// Each read waits for at most the `NeedInput { max }` bytes the negotiator asks for. When a
/// read fills that request (a packet may be complete), the bytes that have already arrived
/// behind it are taken too, without waiting, as PostgreSQL's buffered read takes them: so an
/// SSLRequest or a GSSENCRequest sent in one go with more bytes is refused in plaintext with
/// FATAL 08P01 "received unencrypted data after SSL request" (CVE-2021-23214), whether TLS is
/// available or not, and no `S` or `N` is sent. What the negotiator leaves of them is a direct
/// SSL ClientHello (replayed into OpenSSL) or the bytes after a StartupMessage (read first from
/// the returned stream: [`PgStream::buffered`](super::PgStream::buffered)).
///
/// `timeout` bounds the whole negotiation, TLS handshake and refusal included (PostgreSQL's
/// `authentication_timeout` is 60 s): past it the negotiation is dropped, the stream with it,
/// and the error is [`io::ErrorKind::TimedOut`] with [`TIMEOUT_MESSAGE`]. A client that
/// connects and sends nothing, or trickles a byte at a time, cannot hold the connection past
/// it. A timeout needs a runtime with the time driver enabled.
///
/// I/O errors are returned as they are; a peer that goes away mid-negotiation is a
/// [`Refused`](super::Accepted::Refused) with [`crate::ServerError::ClosedByClient`] or
/// [`crate::ServerError::IncompletePacket`], as PostgreSQL treats it.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    policy: ServerPolicy,
    tls: Option<&ServerTls>,
    timeout: Option<Duration>,
) -> io::Result<Accepted<S>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let (d, conn) = ServerDriver::start(stream, policy, tls)?;
    // Boxed: the negotiation's state (the driver, the handshake's futures: some 5.5 KB) lives
    // on the heap until it is done, instead of inside the caller's future, which a server
    // keeps (a task per connection) for the connection's whole life.
    within(deadline, TIMEOUT_MESSAGE, Box::pin(negotiate(d, conn))).await?
}

/// [`accept`]'s loop, without the deadline.
async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    mut d: ServerDriver<'_>,
    mut conn: Option<PgStream<S>>,
) -> io::Result<Accepted<S>> {
    loop {
        match d.next() {
            ServerStep::Write(bytes) => write_flush(present(&mut conn)?, bytes).await?,
            ServerStep::Read { max } => {
                let r = read_packet(present(&mut conn)?, d.input(), max).await;
                d.handle_read(r)?;
            }
            ServerStep::Handshake { ssl, replay } => {
                let raw = plaintext(conn.take())?;
                let mut s = match tokio_openssl::SslStream::new(ssl, Replay::new(replay, raw)) {
                    Ok(s) => s,
                    Err(e) => {
                        d.handshake_setup_failed(&e);
                        continue;
                    }
                };
                match Pin::new(&mut s).accept().await {
                    Ok(()) => {
                        d.handshake_done(s.ssl(), s.get_ref().unread());
                        conn = Some(PgStream::tls(TlsStream(s)));
                    }
                    Err(e) => d.handshake_failed(&e),
                }
            }
            ServerStep::Done(outcome) => {
                if let Some(c) = conn.as_mut() {
                    conclude(c, &outcome).await;
                }
                return d.finish(outcome, conn);
            }
        }
    }
}

/// What a refusal still needs: the ErrorResponse (the refusal stands even if the peer is
/// gone), and close_notify on TLS, as PostgreSQL sends it. (A cancel is closed by the host once
/// it has acted on it.)
async fn conclude<S: AsyncRead + AsyncWrite + Unpin>(c: &mut PgStream<S>, outcome: &ServerOutcome) {
    let ServerOutcome::Refuse(r) = outcome else {
        return;
    };
    if let Some(bytes) = r.response_bytes() {
        let _ = write_flush(c, &bytes).await;
    }
    if let Inner::Tls(t) = c.inner_mut() {
        let _ = t.shutdown().await;
    }
}

/// Reads at most `max` bytes into `input`, and then, on the plaintext stream, what has already
/// arrived behind them (without waiting).
async fn read_packet<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut PgStream<S>,
    input: &mut [u8],
    max: usize,
) -> io::Result<usize> {
    let n = c.read(&mut input[..max]).await?;
    if n == max && n > 0 && !c.is_tls() {
        return Ok(n + read_ready(c, &mut input[n..]).await?);
    }
    Ok(n)
}

/// Reads what `s` has already received, without waiting for more: 0 when nothing is there
/// (or at end of stream, which the next read sees again).
async fn read_ready<S: AsyncRead + Unpin>(s: &mut S, out: &mut [u8]) -> io::Result<usize> {
    if out.is_empty() {
        return Ok(0);
    }
    std::future::poll_fn(|cx| {
        let mut rb = ReadBuf::new(&mut *out);
        match Pin::new(&mut *s).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Ready(Ok(0)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => Poll::Ready(Ok(0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    })
    .await
}

/// Connects as libpq does, with the same decisions as
/// [`blocking::connect`](super::blocking::connect): libpq's attempt plan over new tokio TCP
/// connections, the server verified as libpq would, the StartupMessage sent and the server's
/// first message checked as libpq checks it.
///
/// `connect_timeout` (at least 2 s, as in libpq) is a deadline for the whole attempt at an
/// address — TCP connect, negotiation, TLS handshake, first message, fallbacks and the
/// authentication of [`connect_with`] — not a timeout per step: past it the connect fails with
/// [`ConnectError::Timeout`] ("timeout expired"), with no fallback. A timeout needs a runtime
/// with the time driver enabled; the client TLS context is built on tokio's blocking pool.
pub async fn connect(config: &ClientTlsConfig) -> Result<Connected, ConnectError> {
    connect_with(config, async |_: &mut Connected| Ok(()))
        .await
        .map(|(c, ())| c)
}

/// [`connect`], with the host's authentication run inside libpq's plan, as
/// [`blocking::connect_with`](super::blocking::connect_with): returning
/// [`AuthFailure::Server`] lets the plan fall back to the next method over a new connection.
pub async fn connect_with<T>(
    config: &ClientTlsConfig,
    authenticate: impl AsyncFnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    let on_ready = Authenticating(authenticate);
    run_plan(config, startup_message(config), on_ready)
        .await?
        .ok_or_else(no_connection)
}

/// [`connect_with`] sending `startup` (a whole StartupMessage, e.g. a proxy's client's).
pub async fn connect_with_startup<T>(
    config: &ClientTlsConfig,
    startup: &[u8],
    authenticate: impl AsyncFnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    let first = FirstPacket::Startup(bytes::Bytes::copy_from_slice(startup));
    run_plan(config, first, Authenticating(authenticate))
        .await?
        .ok_or_else(no_connection)
}

/// Runs libpq's attempt plan up to the StartupMessage and hands each negotiated connection to
/// `start_up`, as [`blocking::negotiate_with`](super::blocking::negotiate_with): the host's own
/// start-up code (tokio-postgres's `connect_raw`, say) sends the StartupMessage and
/// authenticates; [`AuthFailure::Server`] lets the plan fall back to the next method.
pub async fn negotiate_with<T>(
    config: &ClientTlsConfig,
    start_up: impl AsyncFnMut(Negotiated) -> Result<T, AuthFailure>,
) -> Result<T, ConnectError> {
    run_plan(config, FirstPacket::HandOver, HandingOver(start_up))
        .await?
        .ok_or_else(no_connection)
}

/// Sends a CancelRequest for backend `pid` with `key` over a connection negotiated as the
/// configuration says; nothing is read back.
pub async fn send_cancel(
    config: &ClientTlsConfig,
    pid: u32,
    key: &[u8],
) -> Result<(), ConnectError> {
    let plan = run_plan(config, cancel_request(pid, key), Cancelling);
    plan.await.map(|_| ())
}

fn no_connection() -> ConnectError {
    io::Error::other("the connect ended without a connection").into()
}

/// What the host made of a ready connection: Some to end the connect, None to go on with the
/// plan (the failure was reported to the driver).
type ReadyResult<R> = Result<Option<R>, ConnectError>;

/// What [`run_plan`] does with a connection once the driver says it is ready. (A trait with
/// concrete implementations rather than a returned async closure, so that the connect's future
/// stays `Send` where the host's callback is.)
trait OnReady {
    type Output;
    async fn ready(
        &mut self,
        d: &mut ClientDriver<'_>,
        s: PgStream<TcpStream>,
    ) -> ReadyResult<Self::Output>;
}

/// The host's authentication after pgssl's StartupMessage ([`connect_with`]).
struct Authenticating<F>(F);

impl<T, F: AsyncFnMut(&mut Connected) -> Result<T, AuthFailure>> OnReady for Authenticating<F> {
    type Output = (Connected, T);

    async fn ready(
        &mut self,
        d: &mut ClientDriver<'_>,
        s: PgStream<TcpStream>,
    ) -> ReadyResult<(Connected, T)> {
        let mut connected = d.connected(s)?;
        match (self.0)(&mut connected).await {
            Ok(t) => Ok(Some((connected, t))),
            Err(failure) => {
                d.handle_auth_failure(failure);
                Ok(None)
            }
        }
    }
}

/// The host's own start-up ([`negotiate_with`]).
struct HandingOver<F>(F);

impl<T, F: AsyncFnMut(Negotiated) -> Result<T, AuthFailure>> OnReady for HandingOver<F> {
    type Output = T;

    async fn ready(&mut self, d: &mut ClientDriver<'_>, s: PgStream<TcpStream>) -> ReadyResult<T> {
        let negotiated = d.negotiated(s)?;
        match (self.0)(negotiated).await {
            Ok(t) => Ok(Some(t)),
            Err(failure) => {
                d.handle_auth_failure(failure);
                Ok(None)
            }
        }
    }
}

/// A cancel request: sent, nothing to do ([`send_cancel`]).
struct Cancelling;

impl OnReady for Cancelling {
    type Output = ();

    async fn ready(&mut self, _: &mut ClientDriver<'_>, _: PgStream<TcpStream>) -> ReadyResult<()> {
        Ok(Some(()))
    }
}

/// The attempt plan: Some with what `on_ready` made of a ready connection, None once a cancel
/// request was sent.
async fn run_plan<H: OnReady>(
    config: &ClientTlsConfig,
    first: FirstPacket,
    mut on_ready: H,
) -> Result<Option<H::Output>, ConnectError> {
    let mut d = ClientDriver::new(config, first)?;
    let mut conn: Option<PgStream<TcpStream>> = None;
    loop {
        let deadline = d.deadline();
        match d.next() {
            ClientStep::Resolve { host, port } => {
                let found = ::tokio::net::lookup_host((host, port)).await;
                d.handle_resolved(found.map(Iterator::collect));
            }
            ClientStep::Connect { addr, deadline } => {
                conn = None;
                let tcp = within(deadline, CONNECT_TIMEOUT_MESSAGE, TcpStream::connect(addr));
                let r = tcp.await.and_then(|r| r).and_then(|s| {
                    s.set_nodelay(true)?;
                    conn = Some(PgStream::plain(s));
                    Ok(())
                });
                d.handle_connected(r);
            }
            ClientStep::Write(bytes) => {
                let c = present(&mut conn)?;
                let r = within(deadline, CONNECT_TIMEOUT_MESSAGE, write_flush(c, &bytes)).await;
                d.handle_written(r.and_then(|r| r));
            }
            ClientStep::Read { max } => {
                let c = present(&mut conn)?;
                let tls = c.is_tls();
                let r = within(deadline, CONNECT_TIMEOUT_MESSAGE, c.read(d.input(max))).await;
                d.handle_read(r.and_then(|r| r), tls);
            }
            ClientStep::BuildTls(build) => {
                // Reads files: on the blocking pool, not on a runtime thread.
                let built = ::tokio::task::spawn_blocking(move || build.run()).await;
                d.handle_tls_context(built.map_err(io::Error::other)?);
            }
            ClientStep::Handshake(ssl) => {
                let raw = plaintext(conn.take())?;
                let handshake = client_handshake(&mut d, ssl, raw);
                match within(deadline, CONNECT_TIMEOUT_MESSAGE, handshake).await {
                    Ok(c) => conn = c,
                    Err(_) => d.timed_out(),
                }
            }
            ClientStep::Authenticate | ClientStep::HandOver => {
                let ready = on_ready.ready(&mut d, stream(conn.take())?);
                match within(deadline, CONNECT_TIMEOUT_MESSAGE, ready).await {
                    Ok(r) => {
                        if let Some(r) = r? {
                            return Ok(Some(r));
                        }
                    }
                    Err(_) => d.timed_out(),
                }
            }
            ClientStep::Done(result) => return result.map(|()| None),
        }
    }
}

/// The client handshake over `raw`; the TLS stream when the driver accepts what it established.
async fn client_handshake(
    d: &mut ClientDriver<'_>,
    ssl: Ssl,
    raw: TcpStream,
) -> Option<PgStream<TcpStream>> {
    let mut s = match tokio_openssl::SslStream::new(ssl, Replay::new(Vec::new(), raw)) {
        Ok(s) => s,
        Err(e) => {
            d.handshake_setup_failed(&e);
            return None;
        }
    };
    match Pin::new(&mut s).connect().await {
        Ok(()) => d
            .handshake_done(s.ssl())
            .then(|| PgStream::tls(TlsStream(s))),
        Err(e) => {
            d.handshake_failed(&e, Some(s.ssl()));
            None
        }
    }
}

/// `f`, bounded by `deadline` when there is one ([`io::ErrorKind::TimedOut`] with `message`
/// past it).
async fn within<F: Future>(
    deadline: Option<Instant>,
    message: &'static str,
    f: F,
) -> io::Result<F::Output> {
    match deadline {
        None => Ok(f.await),
        Some(d) => ::tokio::time::timeout_at(d.into(), f)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, message)),
    }
}

/// Writes all of `bytes` and flushes.
async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}
