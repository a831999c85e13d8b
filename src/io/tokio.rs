//! Async adapters over tokio streams (feature `tokio`).
//!
//! The same negotiation as the [blocking adapter](super::blocking), driven with `.await`
//! instead of blocking reads: [`accept`] runs a [`ServerNegotiator`] and an OpenSSL server
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
//!                 println!("user {} over TLS: {}", startup.user(), stream.ssl().is_some());
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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use ::tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::blocking::AuthFailure;
use super::blocking::{ConnectError, TIMEOUT_MESSAGE, handshake_reason};
use crate::HandshakeInfo;
use crate::client::{ClientNegotiator, ClientOutput};
use crate::server::{Cancel, Refusal, ServerNegotiator, ServerOutput, ServerPolicy, Startup};
use crate::tls::{ClientTls, ClientTlsConfig, ServerTls, SessionInfo};
use crate::wire::MAX_PACKET_LEN;

/// An async stream whose first bytes come from a buffer: the direct SSL bytes the negotiator
/// did not consume, replayed to OpenSSL before the socket's. Writes go straight to the stream.
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

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.buf.len() {
            let n = out.remaining().min(this.buf.len() - this.pos);
            out.put_slice(&this.buf[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.buf.len() {
                this.buf = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A negotiated connection: plaintext, or TLS over the stream. Implements [`AsyncRead`] and
/// [`AsyncWrite`].
#[derive(Debug)]
pub enum PgStream<S> {
    /// No encryption.
    Plain(S),
    /// TLS.
    Tls(Box<SslStream<Replay<S>>>),
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

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_write(cx, b),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, b),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    /// Plaintext: shuts the stream's write side. TLS: sends close_notify, then shuts it.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PgStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            PgStream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PgStream::Plain(s) => s.is_write_vectored(),
            PgStream::Tls(s) => s.is_write_vectored(),
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

/// Runs the server side of the negotiation over `stream`, as
/// [`blocking::accept`](super::blocking::accept) does. TLS is available exactly when `tls` is
/// given (the policy's own `tls` flag is replaced).
///
/// Each read waits for at most the `NeedInput { max }` bytes the negotiator asks for. When a
/// read fills that request (a packet may be complete), the bytes that have already arrived
/// behind it are taken too, without waiting, as PostgreSQL's buffered read takes them: so an
/// SSLRequest or a GSSENCRequest sent in one go with more bytes is refused in plaintext with
/// FATAL 08P01 "received unencrypted data after SSL request" (CVE-2021-23214), whether TLS is
/// available or not, and no `S` or `N` is sent. What the negotiator leaves of them is a direct
/// SSL ClientHello (replayed into OpenSSL) or the bytes after a StartupMessage (`leftover`).
///
/// `timeout` bounds the whole negotiation, TLS handshake and refusal included (PostgreSQL's
/// `authentication_timeout` is 60 s): past it the negotiation is dropped, the stream with it,
/// and the error is [`io::ErrorKind::TimedOut`] with [`TIMEOUT_MESSAGE`]. A client that
/// connects and sends nothing, or trickles a byte at a time, cannot hold the connection past
/// it. A timeout needs a runtime with the time driver enabled.
///
/// I/O errors are returned as they are; a peer that goes away mid-negotiation is a
/// [`Accepted::Refused`] with [`crate::ServerError::ClosedByClient`] or
/// [`crate::ServerError::IncompletePacket`], as PostgreSQL treats it.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    policy: ServerPolicy,
    tls: Option<&ServerTls>,
    timeout: Option<Duration>,
) -> io::Result<Accepted<S>> {
    let negotiation = negotiate(stream, policy, tls);
    match timeout {
        None => negotiation.await,
        Some(t) => match ::tokio::time::timeout(t, negotiation).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, TIMEOUT_MESSAGE)),
        },
    }
}

/// [`accept`] without a deadline.
async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
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
        match neg.poll_output() {
            ServerOutput::Transmit(reply) => {
                let c = conn.as_mut().expect("stream present");
                c.write_all(reply.as_bytes()).await?;
                c.flush().await?;
            }
            ServerOutput::NeedInput { max } => {
                let c = conn.as_mut().expect("stream present");
                let mut n = match c.read(&mut buf[..max]).await {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                    Err(e) => return Err(e),
                };
                if n > 0 && n == max {
                    // A packet may be complete: take what has already arrived behind it, as
                    // PostgreSQL's buffered read does, so that bytes sent in one go with an
                    // SSLRequest or a GSSENCRequest are the stuffing refusal (CVE-2021-23214)
                    // rather than the start of the TLS handshake.
                    n += read_ready(c, &mut buf[n..]).await?;
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
                let mut s = match SslStream::new(ssl, Replay::new(replay, raw)) {
                    Ok(s) => s,
                    Err(e) => {
                        neg.handle_tls_failed(&crate::tls::openssl_reason(&e));
                        continue;
                    }
                };
                match Pin::new(&mut s).accept().await {
                    Ok(()) => {
                        let info = HandshakeInfo::new(s.ssl().selected_alpn_protocol())
                            .with_unread_plaintext(s.get_ref().unread());
                        neg.handle_tls_established(info);
                        conn = Some(PgStream::Tls(Box::new(s)));
                    }
                    Err(e) => neg.handle_tls_failed(&handshake_reason(&e)),
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
                    let _ = tokio::io::AsyncWriteExt::shutdown(s.as_mut()).await;
                }
                return Ok(Accepted::Cancel(c));
            }
            ServerOutput::Refuse(r) => {
                if let (Some(c), Some(bytes)) = (conn.as_mut(), r.response_bytes()) {
                    // The peer may already be gone; the refusal stands either way.
                    let _ = write_flush(c, &bytes).await;
                }
                if let Some(PgStream::Tls(s)) = conn.as_mut() {
                    let _ = tokio::io::AsyncWriteExt::shutdown(s.as_mut()).await;
                }
                return Ok(Accepted::Refused(r));
            }
            ServerOutput::Finished => unreachable!("outcomes end the loop"),
        }
    }
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

/// Writes all of `bytes` and flushes.
async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// A client connection that libpq's plan negotiated and on which the server accepted the
/// StartupMessage (its first reply was not an ErrorResponse); the async counterpart of
/// [`blocking::Connected`](super::blocking::Connected).
#[derive(Debug)]
pub struct Connected {
    /// The stream, TLS or plaintext as the sslmode decided.
    pub stream: PgStream<TcpStream>,
    /// The TLS session's facts, when TLS is in use.
    pub session: Option<SessionInfo>,
    /// The server's first message after the StartupMessage (an authentication request, or
    /// NegotiateProtocolVersion), whole.
    pub first_message: Vec<u8>,
    /// How many connections the plan made (2 after a fallback).
    pub connections: u32,
    /// The client TLS setup, for later checks (`sslcertmode`, channel binding).
    pub tls: Option<Arc<ClientTls>>,
}

/// libpq's message when `connect_timeout` expires.
const CONNECT_TIMEOUT_MESSAGE: &str = "timeout expired";

/// `f`, bounded by `limit` when there is one ([`io::ErrorKind::TimedOut`] past it).
async fn within<F: Future>(limit: Option<Duration>, f: F) -> io::Result<F::Output> {
    match limit {
        None => Ok(f.await),
        Some(t) => ::tokio::time::timeout(t, f)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, CONNECT_TIMEOUT_MESSAGE)),
    }
}

/// Connects as libpq does, as [`blocking::connect`](super::blocking::connect) does: runs the
/// attempt plan of the configuration's sslmode and sslnegotiation over new tokio TCP
/// connections, verifies the server as libpq would, sends the StartupMessage (`user`,
/// `database`, `application_name`) and reads the server's first reply. An ErrorResponse there
/// (pg_hba.conf refusing the encryption) makes libpq's fallback reconnect; anything else ends
/// the negotiation and the stream is returned for authentication.
///
/// `connect_timeout` (at least 2 s, as in libpq) bounds each step that waits on the server:
/// each address's TCP connect (a timeout moves to the next address), each read of the
/// negotiation, the TLS handshake, and the StartupMessage exchange. Past it the connect fails
/// with [`io::ErrorKind::TimedOut`] ("timeout expired"). A timeout needs a runtime with the
/// time driver enabled; the client TLS context is built on tokio's blocking pool.
pub async fn connect(config: &ClientTlsConfig) -> Result<Connected, ConnectError> {
    let startup = super::common::startup_message(config);
    run_plan(config, &startup, true, async |_: &mut Connected| Ok(()))
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
    let startup = super::common::startup_message(config);
    run_plan(config, &startup, true, authenticate).await
}

/// [`connect_with`] sending `startup` (a whole StartupMessage, e.g. a proxy's client's).
pub async fn connect_with_startup<T>(
    config: &ClientTlsConfig,
    startup: &[u8],
    authenticate: impl AsyncFnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    run_plan(config, startup, true, authenticate).await
}

/// Sends a CancelRequest for backend `pid` with `key` over a connection negotiated as the
/// configuration says; nothing is read back.
pub async fn send_cancel(
    config: &ClientTlsConfig,
    pid: u32,
    key: &[u8],
) -> Result<(), ConnectError> {
    let mut packet = bytes::BytesMut::new();
    crate::wire::encode_cancel_request(&mut packet, pid, key);
    run_plan(config, &packet, false, async |_: &mut Connected| Ok(()))
        .await
        .map(|_| ())
}

async fn run_plan<T>(
    config: &ClientTlsConfig,
    first_packet: &[u8],
    expect_reply: bool,
    mut authenticate: impl AsyncFnMut(&mut Connected) -> Result<T, AuthFailure>,
) -> Result<(Connected, T), ConnectError> {
    let (mode, negotiation) = config.validate()?;
    let mut neg = ClientNegotiator::with_mode(mode, negotiation);
    let mut tls: Option<Arc<ClientTls>> = None;
    let mut last_tls_error: Option<crate::tls::ClientTlsError> = None;
    let mut conn: Option<PgStream<TcpStream>> = None;
    let timeout = config
        .connect_timeout
        .filter(|&t| t > 0)
        .map(|t| Duration::from_secs(t.max(2)));
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
                let addrs: Vec<_> = ::tokio::net::lookup_host((target, config.port))
                    .await?
                    .collect();
                let mut last = None;
                for a in addrs {
                    match within(timeout, TcpStream::connect(a)).await.and_then(|r| r) {
                        Ok(s) => {
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
                within(timeout, write_flush(c, bytes)).await??;
            }
            ClientOutput::NeedInput { max } => {
                let c = conn.as_mut().expect("connected");
                let mut buf = [0u8; 16];
                let n = within(timeout, c.read(&mut buf[..max.min(16)])).await??;
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
                    None => client_tls(config).await?.map(Arc::new),
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
                let mut s = match SslStream::new(ssl, Replay::new(Vec::new(), raw)) {
                    Ok(s) => s,
                    Err(e) => {
                        neg.handle_tls_failed(&crate::tls::openssl_reason(&e));
                        continue;
                    }
                };
                match within(timeout, Pin::new(&mut s).connect()).await? {
                    Ok(()) => match t.check_established(s.ssl()) {
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
                    Err(e) => {
                        let e = t.handshake_error(&e, Some(s.ssl()));
                        neg.handle_tls_failed(&e.to_string());
                        last_tls_error = Some(e);
                    }
                }
            }
            ClientOutput::Ready(_) => {
                let c = conn.as_mut().expect("connected");
                let msg = within(timeout, async {
                    match write_flush(c, first_packet).await {
                        Ok(()) if !expect_reply => Ok(vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0]),
                        Ok(()) => read_message(c).await,
                        // Like libpq, read on after a failed write: the reason is usually a
                        // TLS alert waiting to be read (a refused client certificate).
                        Err(e) => read_message(c).await.and(Err(e)),
                    }
                })
                .await?;
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
                match authenticate(&mut connected).await {
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

/// Builds the client TLS context on the blocking pool: it reads the root certificate, the
/// CRLs, the client certificate and its key from files.
async fn client_tls(
    config: &ClientTlsConfig,
) -> io::Result<Result<ClientTls, crate::tls::ClientTlsError>> {
    let config = config.clone();
    ::tokio::task::spawn_blocking(move || ClientTls::new(&config))
        .await
        .map_err(io::Error::other)
}

/// Reads the server's first reply (type byte, length, body), bounded as libpq bounds it.
async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)
        .await
        .map_err(super::common::closed_as_libpq)?;
    let mut msg = head.to_vec();
    msg.resize(5 + super::common::reply_body_len(&head)?, 0);
    s.read_exact(&mut msg[5..]).await?;
    Ok(msg)
}
