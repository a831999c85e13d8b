//! tokio-postgres with libpq's rules (feature `tokio-postgres`).
//!
//! Two ways in:
//!
//! * [`connect`]: a connection string that works with psql (conninfo or URI, the PG*
//!   environment, `~/.postgresql/` defaults), libpq's **whole** attempt plan — `sslmode`
//!   disable … verify-full, `sslnegotiation=direct`, the fallbacks over new connections — and
//!   tokio-postgres's own start-up and authentication, SCRAM-SHA-256-PLUS included:
//!
//!   ```no_run
//!   # async fn run() -> Result<(), pgssl::tokio_postgres::Error> {
//!   let (client, connection) = pgssl::tokio_postgres::connect(
//!       "host=db.example user=app sslmode=verify-full sslrootcert=/etc/pg/root.crt").await?;
//!   tokio::spawn(connection);
//!   # let _ = client; Ok(()) }
//!   ```
//!
//! * [`MakeTlsConnector`]: tokio-postgres's `MakeTlsConnect` / `TlsConnect` with libpq's TLS
//!   rules (root certificate, CRLs, client certificate and key, verify-full's host check and
//!   texts, SNI, ALPN "postgresql", `tls-server-end-point` channel binding), for
//!   `tokio_postgres::Config::connect` or `connect_raw`. tokio-postgres then decides *whether*
//!   TLS is used (its own `sslmode`: disable, prefer, require) and makes no fallback over a new
//!   connection; the connector decides *how* (the `ClientTlsConfig` it was built from).
//!
//! # How `connect` works
//!
//! pgssl's sans-IO [`ClientNegotiator`] runs libpq's plan: it opens the connections, sends
//! the SSLRequest and reads the reply as libpq does (`E`, an unknown byte, bytes stuffed after
//! `S` end the connect with libpq's texts; `N` continues in plaintext when the mode allows it).
//! Each attempt is then tokio-postgres's `connect_raw` over the TCP connection: for TLS with
//! `sslnegotiation=direct` in tokio-postgres's configuration (so that it starts the handshake
//! at once, through this module's [`TlsConnector`], whether the server was reached by direct
//! SSL or answered `S`), for plaintext with `sslmode=disable`. tokio-postgres sends the
//! StartupMessage and authenticates, with the TLS stream's channel binding data, so
//! `channel_binding=require` and SCRAM-SHA-256-PLUS work. Its failures drive the plan as
//! libpq's: a failed handshake or a server's ErrorResponse moves to the next method over a new
//! connection (prefer: plaintext after TLS; allow: TLS after plaintext), other failures end
//! the connect.
//!
//! (Handing pgssl's negotiated stream to `connect_raw` with `sslmode=disable`, as
//! [`negotiate_with`](crate::io::tokio::negotiate_with) allows, would lose channel binding:
//! tokio-postgres has none for a stream it did not encrypt itself.)
//!
//! # What tokio-postgres cannot express
//!
//! These keywords are refused by [`connect`] with [`Error::Unsupported`], whose text says why:
//! `gssencmode=require` (libpq's own text when built without GSSAPI), `target_session_attrs`
//! other than `any`, `replication`, `require_auth`, `service`, `passfile`, a `client_encoding`
//! other than UTF8, and a Unix-domain socket `host`. libpq's default `~/.pgpass` is not read.
//! Accepted and not acted on: `keepalives*`, `tcp_user_timeout`, `krbsrvname`, `gsslib`,
//! `gssdelegation`, `requirepeer`, `sslcompression`, `load_balance_hosts`,
//! `min_protocol_version`, `max_protocol_version`, `scram_client_key`, `scram_server_key`.
//! `sslcertmode=require` is checked once tokio-postgres has authenticated (libpq checks it at
//! AuthenticationOk): the connection is then dropped with libpq's text. Errors raised by
//! tokio-postgres itself (an unexpected message, a SCRAM failure) keep its texts
//! ([`Error::Postgres`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use ::tokio::net::TcpStream;
use ::tokio_postgres::config::{ChannelBinding as PgChannelBinding, SslMode as PgSslMode};
use ::tokio_postgres::error::DbError;
use ::tokio_postgres::tls::{ChannelBinding as PgBinding, MakeTlsConnect, TlsConnect};
use openssl::ssl::SslRef;

use crate::client::SslNegotiation;
use crate::io::CONNECT_TIMEOUT_MESSAGE;
use crate::tls::{
    CertRequest, ChannelBinding, ClientConfigError, ClientTls, ClientTlsConfig, ClientTlsError,
    Reason, SessionError, SessionInfo, SslCertMode, cert_request, peer_end_point,
};
use crate::wire::{ALPN_PROTOCOL, ErrorResponse};
use crate::{Channel, ClientError, ClientNegotiator, ClientOutcome, ClientOutput, HandshakeInfo};

/// Why [`connect`] or a [`TlsConnector`] failed, with libpq's texts where pgssl decided.
///
/// The server's refusal is [`Server`](Error::Server) (its text as psql prints it:
/// `FATAL:  …`, then `DETAIL:` and `HINT:` lines); tokio-postgres's own failures are
/// [`Postgres`](Error::Postgres) with tokio-postgres's texts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection string or the environment is invalid (libpq's texts); nothing was sent.
    #[error(transparent)]
    Config(#[from] ClientConfigError),
    /// A parameter that tokio-postgres cannot honour (see the [module documentation](self));
    /// nothing was sent.
    #[error("{0}")]
    Unsupported(String),
    /// The TLS setup or handshake failed, or the server's certificate was refused (libpq's
    /// texts: `SSL error: certificate verify failed`, `server certificate for "…" does not
    /// match host name "…"`, …); or `sslcertmode=require` was not met.
    #[error(transparent)]
    Tls(#[from] ClientTlsError),
    /// The negotiation failed: the reply to the SSLRequest, ALPN (libpq's texts).
    #[error(transparent)]
    Negotiation(ClientError),
    /// The server refused with an ErrorResponse and libpq's plan had no method left to try;
    /// [`as_db_error`](Error::as_db_error) gives its fields.
    #[error("{}", server_text(.0))]
    Server(::tokio_postgres::Error),
    /// tokio-postgres failed otherwise (its texts).
    #[error(transparent)]
    Postgres(::tokio_postgres::Error),
    /// `connect_timeout` expired ("timeout expired"); no fallback follows, as in libpq.
    #[error("{CONNECT_TIMEOUT_MESSAGE}")]
    Timeout,
    /// Resolving the host, the TCP connection, or a read or write before tokio-postgres took
    /// the connection over.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// The server's ErrorResponse, when the server refused (or tokio-postgres reports one).
    pub fn as_db_error(&self) -> Option<&DbError> {
        match self {
            Error::Server(e) | Error::Postgres(e) => e.as_db_error(),
            _ => None,
        }
    }
}

/// The server's ErrorResponse as libpq prints it.
fn server_text(e: &::tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut text = format!("{}:  {}", db.severity(), db.message());
    if let Some(d) = db.detail() {
        text.push_str(&format!("\nDETAIL:  {d}"));
    }
    if let Some(h) = db.hint() {
        text.push_str(&format!("\nHINT:  {h}"));
    }
    text
}

/// tokio-postgres's `MakeTlsConnect` with libpq's TLS rules, built once from a
/// [`ClientTlsConfig`] (its files read by [`new`](Self::new), never per connection); the host
/// name comes from tokio-postgres per connection.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use pgssl::tls::ClientTlsConfig;
/// let tls = pgssl::tokio_postgres::MakeTlsConnector::new(&ClientTlsConfig::from_env_and_conninfo(
///     "sslmode=verify-full sslrootcert=/etc/pg/root.crt")?)?;
/// let config: tokio_postgres::Config = "host=db.example user=app sslmode=require".parse()?;
/// let (client, connection) = config.connect(tls).await?;
/// # let _ = (client, connection); Ok(()) }
/// ```
///
/// The chain is verified as the connector's `sslmode` (and `sslrootcert`) say; tokio-postgres's
/// own `sslmode` only decides whether TLS is asked for. With `sslnegotiation=direct` in the
/// connector's configuration, ALPN "postgresql" must be selected by the server, as libpq
/// requires for direct SSL; set `sslnegotiation=direct` in tokio-postgres's configuration too.
#[derive(Clone, Debug)]
pub struct MakeTlsConnector {
    tls: Arc<ClientTls>,
}

impl MakeTlsConnector {
    /// Builds the TLS context from `config`: reads the root certificate, the CRLs, the client
    /// certificate and key (blocking file I/O: call it before the runtime, or on
    /// `tokio::task::spawn_blocking`). libpq's texts on failure.
    pub fn new(config: &ClientTlsConfig) -> Result<MakeTlsConnector, Error> {
        Ok(MakeTlsConnector::from_client_tls(Arc::new(ClientTls::new(
            config,
        )?)))
    }

    /// A connector over a context already built.
    pub fn from_client_tls(tls: Arc<ClientTls>) -> MakeTlsConnector {
        MakeTlsConnector { tls }
    }

    /// The TLS context.
    pub fn client_tls(&self) -> &Arc<ClientTls> {
        &self.tls
    }

    /// The connector for one connection to `host` (the name for SNI and the verify-full
    /// check; never an address connected to, as libpq's `hostaddr`).
    pub fn connector(&self, host: &str) -> TlsConnector {
        TlsConnector {
            tls: Some(self.tls.clone()),
            host: host.to_owned(),
            direct: self.tls.negotiation() == SslNegotiation::Direct,
            seen: None,
        }
    }
}

impl<S> MakeTlsConnect<S> for MakeTlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = TlsConnector;
    type Error = Error;

    /// The connector for `domain`, the host tokio-postgres connects to.
    fn make_tls_connect(&mut self, domain: &str) -> Result<TlsConnector, Error> {
        Ok(self.connector(domain))
    }
}

/// What a handshake established, for [`connect`]'s checks after tokio-postgres's start-up.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// The handshake completed (before pgssl's checks of it).
    completed: bool,
    alpn: Option<Vec<u8>>,
    cert_request: CertRequest,
}

/// tokio-postgres's `TlsConnect` for one connection: libpq's handshake with the host name
/// given, its checks, and the channel binding data. From [`MakeTlsConnector`].
#[derive(Clone, Debug)]
pub struct TlsConnector {
    /// None only for [`connect`]'s plaintext attempts, where tokio-postgres never calls it.
    tls: Option<Arc<ClientTls>>,
    host: String,
    direct: bool,
    seen: Option<Arc<Mutex<Seen>>>,
}

impl TlsConnector {
    /// Runs the handshake over `stream` and libpq's checks of it.
    async fn handshake<S>(self, stream: S) -> Result<TlsStream<S>, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let tls = self
            .tls
            .ok_or_else(|| Error::Unsupported("TLS was not configured".to_owned()))?;
        let ssl = tls.new_ssl_for_host(&self.host)?;
        let mut s =
            tokio_openssl::SslStream::new(ssl, stream).map_err(|e| ClientTlsError::OpenSsl {
                context: "could not establish SSL connection",
                reason: e.into(),
            })?;
        if let Err(e) = Pin::new(&mut s).connect().await {
            return Err(tls.handshake_error(&e, Some(s.ssl())).into());
        }
        let alpn = s.ssl().selected_alpn_protocol().map(<[u8]>::to_vec);
        if let Some(seen) = &self.seen {
            *seen.lock().unwrap_or_else(PoisonError::into_inner) = Seen {
                completed: true,
                alpn: alpn.clone(),
                cert_request: cert_request(s.ssl()),
            };
        }
        tls.check_established_for_host(s.ssl(), &self.host)?;
        match alpn.as_deref() {
            Some(p) if p != ALPN_PROTOCOL => {
                return Err(Error::Negotiation(ClientError::UnexpectedAlpn));
            }
            None if self.direct => {
                return Err(Error::Negotiation(ClientError::DirectSslWithoutAlpn));
            }
            _ => {}
        }
        let end_point = peer_end_point(s.ssl()).ok();
        Ok(TlsStream {
            inner: s,
            end_point,
        })
    }
}

impl<S> TlsConnect<S> for TlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream<S>, Error>> + Send>>;

    /// The handshake over `stream`, with libpq's rules.
    fn connect(self, stream: S) -> Self::Future {
        Box::pin(self.handshake(stream))
    }
}

/// A TLS stream made by a [`TlsConnector`]: tokio-openssl's, with the server certificate's
/// `tls-server-end-point` hash for SCRAM-SHA-256-PLUS.
pub struct TlsStream<S> {
    inner: tokio_openssl::SslStream<S>,
    end_point: Option<Vec<u8>>,
}

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("ssl", self.inner.ssl())
            .finish_non_exhaustive()
    }
}

impl<S> TlsStream<S> {
    /// The OpenSSL session.
    pub fn ssl(&self) -> &SslRef {
        self.inner.ssl()
    }

    /// The session's facts (the pg_stat_ssl row's).
    pub fn session_info(&self) -> Result<SessionInfo, SessionError> {
        SessionInfo::from_ssl(self.inner.ssl())
    }

    /// The stream under TLS.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// Sends close_notify, then shuts the stream's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ::tokio_postgres::tls::TlsStream for TlsStream<S> {
    /// `tls-server-end-point` of the server's certificate (none if its signature algorithm
    /// has no digest, as Ed25519's).
    fn channel_binding(&self) -> PgBinding {
        match &self.end_point {
            Some(h) => PgBinding::tls_server_end_point(h.clone()),
            None => PgBinding::none(),
        }
    }
}

/// The connection [`connect`] returns: spawn it (it runs the protocol), as tokio-postgres's.
pub type Connection = ::tokio_postgres::Connection<TcpStream, TlsStream<TcpStream>>;

/// Connects as psql would with `conninfo_or_uri`: the PG* environment and `~/.postgresql/`
/// defaults ([`ClientTlsConfig::from_env_and_conninfo`]), then [`connect_config`].
///
/// The future is `Send`: `tokio::spawn(pgssl::tokio_postgres::connect("…"))` compiles.
pub async fn connect(
    conninfo_or_uri: &str,
) -> Result<(::tokio_postgres::Client, Connection), Error> {
    let config = ClientTlsConfig::from_env_and_conninfo(conninfo_or_uri)?;
    connect_config(&config).await
}

/// libpq's whole attempt plan for `config` (see the [module documentation](self)), each
/// attempt's start-up and authentication run by tokio-postgres. The TLS context is built (its
/// files read) on tokio's blocking pool, once, when the plan first needs TLS; a failure to
/// build it is a failed TLS attempt (under `prefer` libpq then tries plaintext).
/// `connect_timeout` is one deadline per address, fallbacks included, as in libpq.
pub async fn connect_config(
    config: &ClientTlsConfig,
) -> Result<(::tokio_postgres::Client, Connection), Error> {
    let (mode, negotiation) = config.validate()?;
    let pg = postgres_config(config)?;
    let mut plan = Plan {
        config,
        pg,
        neg: ClientNegotiator::with_mode(mode, negotiation),
        tls: None,
        timeout: config
            .connect_timeout
            .filter(|&t| t > 0)
            .map(|t| Duration::from_secs(t.max(2))),
        deadline: None,
        addr: None,
        last_tls_error: None,
        last_server_error: None,
    };
    plan.run().await
}

/// One [`connect_config`].
struct Plan<'c> {
    config: &'c ClientTlsConfig,
    pg: ::tokio_postgres::Config,
    neg: ClientNegotiator,
    tls: Option<MakeTlsConnector>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// The address connected to; the fallbacks reconnect to it.
    addr: Option<SocketAddr>,
    last_tls_error: Option<ClientTlsError>,
    last_server_error: Option<::tokio_postgres::Error>,
}

/// What an attempt by tokio-postgres ended with, when it does not end the connect.
type Attempt = Result<(::tokio_postgres::Client, Connection), ::tokio_postgres::Error>;

impl Plan<'_> {
    async fn run(&mut self) -> Result<(::tokio_postgres::Client, Connection), Error> {
        let mut sock: Option<TcpStream> = None;
        loop {
            match self.neg.poll_output() {
                ClientOutput::Connect(_) => {
                    // The previous connection (if any) is closed before the next one opens.
                    drop(sock.take());
                    sock = Some(self.tcp().await?);
                }
                ClientOutput::Transmit(bytes) => {
                    let s = present(&mut sock)?;
                    within(self.deadline, s.write_all(bytes)).await??;
                }
                ClientOutput::NeedInput { .. } => {
                    let s = present(&mut sock)?;
                    within(self.deadline, reply(&mut self.neg, s)).await??;
                }
                ClientOutput::StartTls(start) => {
                    let s = sock.take().ok_or_else(no_connection)?;
                    if let Some(done) = self.over_tls(s, start.direct).await? {
                        return Ok(done);
                    }
                }
                ClientOutput::Done(ClientOutcome::Ready(Channel::Plaintext)) => {
                    let s = sock.take().ok_or_else(no_connection)?;
                    let mut pg = self.pg.clone();
                    pg.ssl_mode(PgSslMode::Disable);
                    let unused = TlsConnector {
                        tls: None,
                        host: String::new(),
                        direct: false,
                        seen: None,
                    };
                    let attempt = within(self.deadline, pg.connect_raw(s, unused)).await?;
                    if let Some(done) = self.after_start_up(attempt)? {
                        return Ok(done);
                    }
                }
                ClientOutput::Done(ClientOutcome::Ready(Channel::Tls { .. })) => {
                    // The handshake and the start-up are one step here (`over_tls`).
                    return Err(no_connection());
                }
                ClientOutput::Done(ClientOutcome::Failed(e)) => return Err(self.final_error(e)),
            }
        }
    }

    /// A TLS attempt over `s`: the handshake (tokio-postgres's "direct" start, through this
    /// module's connector), then tokio-postgres's start-up. Some when connected.
    async fn over_tls(
        &mut self,
        s: TcpStream,
        direct: bool,
    ) -> Result<Option<(::tokio_postgres::Client, Connection)>, Error> {
        let make = match self.tls.clone() {
            Some(t) => t,
            None => {
                let config = self.config.clone();
                let built = ::tokio::task::spawn_blocking(move || ClientTls::new(&config))
                    .await
                    .map_err(io::Error::other)?;
                match built {
                    Ok(t) => {
                        let t = MakeTlsConnector::from_client_tls(Arc::new(t));
                        self.tls = Some(t.clone());
                        t
                    }
                    Err(e) => {
                        self.tls_failed(e);
                        return Ok(None);
                    }
                }
            }
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut connector = make.connector(&self.config.host);
        connector.direct = direct;
        connector.seen = Some(seen.clone());
        let mut pg = self.pg.clone();
        pg.ssl_mode(PgSslMode::Require)
            .ssl_negotiation(::tokio_postgres::config::SslNegotiation::Direct);
        let attempt = within(self.deadline, pg.connect_raw(s, connector)).await?;
        let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
        let attempt = match attempt {
            // The handshake, or pgssl's checks of it, failed.
            Err(e) if is_mine(&e) => match e.into_source().map(|s| s.downcast::<Error>()) {
                Some(Ok(mine)) => match *mine {
                    Error::Tls(t) => {
                        self.tls_failed(t);
                        return Ok(None);
                    }
                    Error::Negotiation(_) if seen.completed => {
                        // ALPN: the negotiator decides, with libpq's text.
                        self.neg
                            .handle_tls_established(HandshakeInfo::new(seen.alpn.as_deref()));
                        return Ok(None);
                    }
                    other => return Err(other),
                },
                Some(Err(other)) => return Err(Error::Io(io::Error::other(other))),
                None => return Err(no_connection()),
            },
            attempt => attempt,
        };
        self.neg
            .handle_tls_established(HandshakeInfo::new(seen.alpn.as_deref()));
        let done = self.after_start_up(attempt)?;
        if done.is_some() && self.config.sslcertmode == SslCertMode::Require {
            // libpq checks it at AuthenticationOk; tokio-postgres has authenticated.
            if !seen.cert_request.requested {
                return Err(ClientTlsError::CertNotRequested.into());
            }
            if !seen.cert_request.sent {
                return Err(ClientTlsError::CertNotSent.into());
            }
        }
        Ok(done)
    }

    /// What tokio-postgres's start-up ended with: connected, the server's refusal (the plan
    /// goes on), or the end of the connect.
    fn after_start_up(
        &mut self,
        attempt: Attempt,
    ) -> Result<Option<(::tokio_postgres::Client, Connection)>, Error> {
        match attempt {
            Ok(done) => Ok(Some(done)),
            Err(e) => match e.as_db_error() {
                Some(db) => {
                    let response = ErrorResponse::fatal(db.code().code(), db.message());
                    self.neg.handle_server_error(response);
                    self.last_server_error = Some(e);
                    Ok(None)
                }
                None => Err(postgres_error(e)),
            },
        }
    }

    fn tls_failed(&mut self, e: ClientTlsError) {
        self.neg.handle_tls_failed(&e.to_string());
        self.last_tls_error = Some(e);
    }

    /// The error the negotiator ended with, with the details kept aside.
    fn final_error(&mut self, e: ClientError) -> Error {
        match e {
            ClientError::TlsHandshake { .. } if self.last_tls_error.is_some() => {
                Error::Tls(self.last_tls_error.take().expect("checked"))
            }
            ClientError::Server { .. } if self.last_server_error.is_some() => {
                Error::Server(self.last_server_error.take().expect("checked"))
            }
            e => Error::Negotiation(e),
        }
    }

    /// A new TCP connection, with the configuration's `proxy_header` written first.
    async fn tcp(&mut self) -> Result<TcpStream, Error> {
        let mut s = self.tcp_connect().await?;
        if let Some(header) = &self.config.proxy_header {
            within(self.deadline, s.write_all(header)).await??;
        }
        Ok(s)
    }

    /// A new TCP connection: the first address that accepts one (each with its own deadline,
    /// as in libpq), then the same address for the fallbacks, within the same deadline.
    async fn tcp_connect(&mut self) -> Result<TcpStream, Error> {
        if let Some(addr) = self.addr {
            let s = within(self.deadline, TcpStream::connect(addr)).await??;
            s.set_nodelay(true)?;
            return Ok(s);
        }
        let config = self.config;
        let host = match (&config.hostaddr, config.host.as_str()) {
            (Some(addr), _) => addr.as_str(),
            (None, "") => "localhost",
            (None, host) => host,
        };
        let addrs: Vec<SocketAddr> = ::tokio::net::lookup_host((host, config.port))
            .await?
            .collect();
        let mut last = Error::Io(io::Error::other("could not translate host name"));
        for addr in addrs {
            self.deadline = self.timeout.map(|t| Instant::now() + t);
            match within(self.deadline, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    s.set_nodelay(true)?;
                    self.addr = Some(addr);
                    return Ok(s);
                }
                Ok(Err(e)) => last = e.into(),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The reply to the SSLRequest, read as libpq reads it: what has arrived (so that bytes
/// stuffed behind an `S` are seen), of which only what the negotiator uses is consumed.
async fn reply(neg: &mut ClientNegotiator, s: &mut TcpStream) -> Result<(), Error> {
    let mut buf = [0u8; 64];
    match s.peek(&mut buf).await {
        Ok(0) => neg.handle_eof(),
        Ok(n) => {
            let used = neg.handle_input(&buf[..n]);
            s.read_exact(&mut buf[..used]).await?;
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            ) =>
        {
            neg.handle_eof()
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Whether tokio-postgres's error is this module's connector's (the handshake failed).
fn is_mine(e: &::tokio_postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<Error>())
}

/// tokio-postgres's failure, in libpq's words where TLS failed after the handshake (a refused
/// client certificate arrives as an alert on the first read: "SSL error: …").
fn postgres_error(e: ::tokio_postgres::Error) -> Error {
    use std::error::Error as _;
    let ssl = e
        .source()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>())
        .and_then(openssl::ssl::Error::ssl_error);
    match ssl {
        Some(stack) if !stack.errors().is_empty() => ClientTlsError::Handshake {
            reason: Reason::OpenSsl(stack.clone()),
            verify: None,
            hint: None,
        }
        .into(),
        _ => Error::Postgres(e),
    }
}

/// tokio-postgres's configuration for `config`: what it understands; the rest is pgssl's, or
/// refused with [`Error::Unsupported`].
fn postgres_config(config: &ClientTlsConfig) -> Result<::tokio_postgres::Config, Error> {
    let unsupported = |what: String| Err(Error::Unsupported(what));
    if config.hostaddr.is_none() && (config.host.starts_with('/') || config.host.starts_with('@')) {
        return unsupported(format!(
            "host \"{}\" is a Unix-domain socket: pgssl::tokio_postgres::connect connects over TCP only (use host=localhost, or tokio_postgres::Config::connect)",
            config.host
        ));
    }
    let mut pg = ::tokio_postgres::Config::new();
    pg.user(config.effective_user());
    if let Some(p) = &config.password {
        pg.password(p.as_bytes());
    }
    if let Some(d) = &config.dbname {
        pg.dbname(d);
    }
    pg.channel_binding(match config.channel_binding {
        ChannelBinding::Disable => PgChannelBinding::Disable,
        ChannelBinding::Prefer => PgChannelBinding::Prefer,
        ChannelBinding::Require => PgChannelBinding::Require,
    });
    let mut application_name = config.application_name.clone();
    for (key, value) in &config.other {
        let (key, v) = (key.as_str(), value.as_str());
        let cannot = |why: &str| {
            unsupported(format!(
                "{key}={v:?} cannot be honoured over tokio-postgres: {why}"
            ))
        };
        match key {
            "options" if !v.is_empty() => {
                pg.options(v);
            }
            "fallback_application_name" if application_name.is_none() && !v.is_empty() => {
                application_name = Some(v.to_owned());
            }
            "gssencmode" => match v {
                "" | "disable" | "prefer" | "allow" => {}
                "require" => {
                    return unsupported(format!(
                        "gssencmode value \"{v}\" invalid when GSSAPI support is not compiled in"
                    ));
                }
                _ => return unsupported(format!("invalid gssencmode value: \"{v}\"")),
            },
            "target_session_attrs" if !matches!(v, "" | "any") => {
                return cannot(
                    "pgssl connects to the first host only, without checking its session",
                );
            }
            "replication" if !matches!(v, "" | "0" | "off" | "false" | "no") => {
                return cannot("tokio-postgres has no replication connections");
            }
            "require_auth" if !v.is_empty() => {
                return cannot("tokio-postgres does not restrict the authentication methods");
            }
            "service" if !v.is_empty() => {
                return cannot("pg_service.conf is not read");
            }
            "passfile" if !v.is_empty() => {
                return cannot("password files are not read; give password=");
            }
            "client_encoding"
                if !v.is_empty() && !v.eq_ignore_ascii_case("utf8") && v != "UTF-8" =>
            {
                return cannot("tokio-postgres always uses UTF8");
            }
            _ => {}
        }
    }
    if let Some(a) = &application_name {
        pg.application_name(a);
    }
    Ok(pg)
}

fn present(s: &mut Option<TcpStream>) -> Result<&mut TcpStream, Error> {
    s.as_mut().ok_or_else(no_connection)
}

fn no_connection() -> Error {
    Error::Io(io::Error::other("the connect ended without a connection"))
}

/// `f`, bounded by `deadline` when there is one ([`Error::Timeout`] past it).
async fn within<F: Future>(deadline: Option<Instant>, f: F) -> Result<F::Output, Error> {
    match deadline {
        None => Ok(f.await),
        Some(d) => ::tokio::time::timeout_at(d.into(), f)
            .await
            .map_err(|_| Error::Timeout),
    }
}
