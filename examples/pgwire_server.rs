//! A tokio server where pgssl negotiates and [pgwire](https://docs.rs/pgwire) serves.
//!
//! ```text
//! cargo run --example pgwire_server --features tokio -- [--listen ADDR] [-c NAME=VALUE]...
//! ```
//!
//! pgssl answers the first packets as PostgreSQL does — SSLRequest, PostgreSQL 17 direct SSL
//! (ALPN `postgresql`), GSSENCRequest declined with `N`, CancelRequest — and runs the OpenSSL
//! handshake; pgwire then reads the StartupMessage and runs the rest with its own handlers
//! (start-up without a password, the simple and the extended query protocol, cancellation).
//! The hand-off is [`PgStream::unread_startup`](pgssl::io::PgStream::unread_startup) and the
//! session's facts in pgwire's client metadata ([`SessionInfo::metadata`]); a CancelRequest
//! that pgssl received goes to pgwire's cancel handler. See docs/integrations.md.
//!
//! It answers `SELECT 1`, `SELECT * FROM pg_stat_ssl` (this connection's TLS facts, read back
//! from pgwire's metadata, with `alpn` and `sni` columns added), `SELECT pg_sleep(N)`
//! (cancellable), and `BEGIN` / `COMMIT` / `ROLLBACK`.
//!
//! The options are the server example's: with none it listens on 127.0.0.1:5433 with TLS on,
//! using an ECDSA P-256 certificate it generates, and prints a `psql` command that connects to
//! it; `-c` takes PostgreSQL's SSL settings by name (`ssl=off`, `ssl_cert_file`,
//! `ssl_key_file`, …) and `authentication_timeout`. SIGINT/SIGTERM stop it.

#[path = "support/frontend.rs"]
mod frontend;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, StreamExt, stream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, DefaultClient, ErrorHandler,
    METADATA_DATABASE, METADATA_USER, NoopHandler, PgWireConnectionState, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};

use pgssl::io::tokio::{Accepted, accept};
use pgssl::server::ServerPolicy;
use pgssl::tls::{ServerTls, SessionInfo, server_end_point_metadata};

// ---------------------------------------------------------------------------------------------
// The hand-off: pgssl negotiates, pgwire serves.

/// One accepted connection: pgssl's negotiation, then pgwire from the StartupMessage on (or a
/// CancelRequest handed to pgwire's cancel handler).
async fn serve(
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerTls>>,
    timeout: Duration,
    backend: Arc<Backend>,
) {
    log::info!(
        "connection received: host={} port={}",
        peer.ip(),
        peer.port()
    );
    let _ = sock.set_nodelay(true);
    let policy = ServerPolicy::new().peer_addr(peer);
    let started = tokio::time::Instant::now();
    let accepted = match accept(sock, policy, tls.as_deref(), Some(timeout)).await {
        Ok(a) => a,
        Err(e) => return log::warn!("{e}"),
    };
    match accepted {
        Accepted::Startup {
            mut stream,
            startup,
            session,
            ..
        } => {
            // pgwire copies the StartupMessage's parameters into the metadata map: none may
            // shadow the TLS facts.
            if let Err(e) = SessionInfo::check_startup_parameters(&startup) {
                log::warn!("FATAL:  {}", e.message);
                let _ = stream.write_all(&e.to_bytes()).await;
                return;
            }
            let end_point = stream.ssl().and_then(server_end_point_metadata);
            stream.unread_startup(&startup);
            let mut client = DefaultClient::new(peer, stream.is_tls());
            let facts = session
                .iter()
                .flat_map(SessionInfo::metadata)
                .chain(end_point);
            client
                .metadata
                .extend(facts.map(|(k, v)| (k.to_owned(), v)));
            if let Some(s) = session {
                client.session_extensions.insert(s);
            }
            let mut socket = Framed::new(stream, PgWireMessageServerCodec::new(client));
            socket.set_state(PgWireConnectionState::AwaitingStartup);
            let deadline = started + timeout;
            if let Err(e) = run_pgwire(&mut socket, &backend, deadline).await {
                log::info!("could not receive data from client: {e}");
            }
        }
        Accepted::Cancel {
            cancel: c,
            mut stream,
            ..
        } => {
            // pgwire's ConnectionManager keys connections by the key's bytes, whatever its
            // length (4 bytes in protocol 3.0, up to 256 in 3.2).
            let key = SecretKey::Bytes(Bytes::copy_from_slice(c.key()));
            let request = CancelRequest::new(c.pid() as i32, key);
            backend.on_cancel_request(request).await;
            // Acted on: now the client may see the connection end (close_notify on TLS).
            let _ = stream.shutdown().await;
        }
        Accepted::Refused(_) => {}
    }
}

/// pgwire's message loop over a negotiated stream, written over its public `process_message`
/// and `process_error` (pgwire 0.42 runs the same loop inside `process_socket`, which takes a
/// `TcpStream` and negotiates TLS itself). The start-up must end by `deadline` (PostgreSQL's
/// authentication_timeout, counted from the accept).
async fn run_pgwire<S>(
    socket: &mut Framed<S, PgWireMessageServerCodec<String>>,
    backend: &Arc<Backend>,
    deadline: tokio::time::Instant,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let (copy, errors) = (Arc::new(NoopHandler), NoopHandler);
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if starting {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(next) => next,
                Err(_) => {
                    log::warn!("FATAL:  canceling authentication due to timeout");
                    return Ok(());
                }
            }
        } else {
            socket.next().await
        };
        let message = match next {
            Some(Ok(PgWireFrontendMessage::Terminate(_))) | None => return Ok(()),
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
        };
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended_query) => extended_query,
            _ => message.is_extended_query(),
        };
        let b = backend;
        let handled = process_message(
            message,
            socket,
            b.clone(),
            b.clone(),
            b.clone(),
            copy.clone(),
            b.clone(),
        );
        if let Err(mut e) = handled.await {
            errors.on_error(socket, &mut e);
            let fatal = e.is_fatal();
            process_error(socket, e, extended_query).await?;
            if fatal {
                return Ok(());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pgwire's handlers: start-up without a password, a few queries, cancellation.

/// The handlers, shared by every connection.
#[derive(Clone)]
struct Backend {
    /// pgwire's map of live connections, keyed by (pid, secret key), that cancels reach.
    manager: Arc<ConnectionManager>,
    parser: Arc<NoopQueryParser>,
}

#[async_trait]
impl NoopStartupHandler for Backend {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }

    async fn post_startup<C>(&self, client: &mut C, _: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let m = client.metadata();
        let get = |k: &str| m.get(k).map_or("", String::as_str);
        let (user, db) = (get(METADATA_USER), get(METADATA_DATABASE));
        let db = if db.is_empty() { user } else { db };
        let (pid, _) = client.pid_and_secret_key();
        if client.is_secure() {
            log::info!(
                "connection authorized: user={user} database={db} SSL enabled (protocol={}, cipher={}, bits={}) pid={pid}",
                get("ssl_version"),
                get("ssl_cipher"),
                get("ssl_bits")
            );
        } else {
            log::info!("connection authorized: user={user} database={db} SSL off pid={pid}");
        }
        Ok(())
    }
}

/// Logs a CancelRequest as PostgreSQL does, then lets pgwire's ConnectionManager fire it.
#[async_trait]
impl CancelHandler for Backend {
    async fn on_cancel_request(&self, request: CancelRequest) {
        if self.manager.cancel(request.pid, &request.secret_key).await {
            log::info!("cancel request for process {} accepted", request.pid);
        } else {
            log::info!(
                "PID {} in cancel request did not match any process",
                request.pid
            );
        }
    }
}

/// What a query answers.
enum Answer {
    Rows(Vec<FieldInfo>, Vec<Vec<Value>>),
    Sleep(Duration),
    Tag(Response),
}

/// A column value.
enum Value {
    Int(i32),
    Bool(bool),
    Text(Option<String>),
}

/// The answer to `query` for `client`, with its columns in `format`.
fn answer<C: ClientInfo>(client: &C, query: &str, format: &Format) -> PgWireResult<Answer> {
    let q = query
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_ascii_lowercase();
    let field = |i: usize, name: &str, t: Type| {
        FieldInfo::new(name.into(), None, None, t, format.format_for(i))
    };
    if q == "select 1" {
        return Ok(Answer::Rows(
            vec![field(0, "?column?", Type::INT4)],
            vec![vec![Value::Int(1)]],
        ));
    }
    if q.starts_with("select") && q.contains("pg_stat_ssl") {
        let m = client.metadata();
        let text = |k: &str| Value::Text(m.get(k).cloned());
        let names = [
            "pid",
            "ssl",
            "version",
            "cipher",
            "bits",
            "client_dn",
            "client_serial",
            "issuer_dn",
            "alpn",
            "sni",
        ];
        let types = [Type::INT4, Type::BOOL, Type::TEXT, Type::TEXT, Type::INT4];
        let fields = names
            .iter()
            .enumerate()
            .map(|(i, n)| field(i, n, types.get(i).cloned().unwrap_or(Type::TEXT)))
            .collect();
        let bits = m.get("ssl_bits").and_then(|b| b.parse().ok());
        let row = vec![
            Value::Int(client.pid_and_secret_key().0),
            Value::Bool(client.is_secure()),
            text("ssl_version"),
            text("ssl_cipher"),
            bits.map_or(Value::Text(None), Value::Int),
            text("ssl_client_dn"),
            text("ssl_client_serial"),
            text("ssl_issuer_dn"),
            text("ssl_alpn"),
            text("ssl_sni"),
        ];
        return Ok(Answer::Rows(fields, vec![row]));
    }
    if let Some(secs) = q
        .strip_prefix("select pg_sleep(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let secs: f64 = secs.trim().parse().map_err(|_| {
            user_error(
                "22P02",
                format!("invalid input syntax for type double precision: \"{secs}\""),
            )
        })?;
        return Ok(Answer::Sleep(Duration::from_secs_f64(
            secs.clamp(0.0, 3600.0),
        )));
    }
    match q.as_str() {
        "begin" | "start transaction" => {
            Ok(Answer::Tag(Response::TransactionStart(Tag::new("BEGIN"))))
        }
        "commit" | "end" => Ok(Answer::Tag(Response::TransactionEnd(Tag::new("COMMIT")))),
        "rollback" => Ok(Answer::Tag(Response::TransactionEnd(Tag::new("ROLLBACK")))),
        _ => Err(user_error(
            "0A000",
            format!(
                "this server answers SELECT 1, SELECT * FROM pg_stat_ssl and SELECT pg_sleep(N), not {query:?}"
            ),
        )),
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// Runs the answer: encodes the rows, or sleeps (pgwire drops this future when a cancel
/// arrives, and answers 57014 "canceling statement due to user request").
async fn respond(a: Answer) -> PgWireResult<Response> {
    match a {
        Answer::Tag(r) => Ok(r),
        Answer::Sleep(d) => {
            tokio::time::sleep(d).await;
            let fields = Arc::new(vec![FieldInfo::new(
                "pg_sleep".into(),
                None,
                None,
                Type::TEXT,
                FieldFormat::Text,
            )]);
            let row = encode(&fields, &[Value::Text(Some(String::new()))]);
            Ok(Response::Query(QueryResponse::new(
                fields,
                stream::iter([row]),
            )))
        }
        Answer::Rows(fields, rows) => {
            let fields = Arc::new(fields);
            let rows: Vec<_> = rows.iter().map(|r| encode(&fields, r)).collect();
            Ok(Response::Query(QueryResponse::new(
                fields,
                stream::iter(rows),
            )))
        }
    }
}

fn encode(
    fields: &Arc<Vec<FieldInfo>>,
    row: &[Value],
) -> PgWireResult<pgwire::messages::data::DataRow> {
    let mut e = DataRowEncoder::new(fields.clone());
    for v in row {
        match v {
            Value::Int(i) => e.encode_field(i)?,
            Value::Bool(b) => e.encode_field(b)?,
            Value::Text(t) => e.encode_field(t)?,
        }
    }
    Ok(e.take_row())
}

/// The columns of `query`, for Describe (empty for statements that return no rows).
fn columns<C: ClientInfo>(client: &C, query: &str, format: &Format) -> Vec<FieldInfo> {
    match answer(client, query, format) {
        Ok(Answer::Rows(fields, _)) => fields,
        Ok(Answer::Sleep(_)) => vec![FieldInfo::new(
            "pg_sleep".into(),
            None,
            None,
            Type::TEXT,
            format.format_for(0),
        )],
        _ => Vec::new(),
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let a = answer(client, query, &Format::UnifiedText)?;
        Ok(vec![respond(a).await?])
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = columns(client, &target.statement, &Format::UnifiedText);
        Ok(DescribeStatementResponse::new(Vec::new(), fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let query = &target.statement.statement;
        let fields = columns(client, query, &target.result_column_format);
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let query = &portal.statement.statement;
        respond(answer(client, query, &portal.result_column_format)?).await
    }
}

// ---------------------------------------------------------------------------------------------
// The command line and the accept loop.

fn usage() -> ! {
    eprintln!("usage: pgwire_server [--listen ADDR] [-c NAME=VALUE]...");
    std::process::exit(2);
}

fn main() {
    if log::set_logger(&frontend::LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("FATAL:  {e}");
        frontend::remove_generated();
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:5433".to_owned();
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "-c" => {
                let kv = args.next().unwrap_or_else(|| usage());
                let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
                settings.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            _ => usage(),
        }
    }
    // TLS from PostgreSQL's settings (a generated certificate without ssl_cert_file), as the
    // server example does; every connection trusted.
    let front = frontend::Frontend::new(settings, "host all all all trust\n")?;
    let backend = Arc::new(Backend {
        manager: Arc::new(ConnectionManager::new()),
        parser: Arc::new(NoopQueryParser::new()),
    });
    let listener = TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    frontend::log_listening(addr);
    front.print_connect_command(addr.port());
    log::info!("database system is ready to accept connections");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (sock, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("could not accept new connection: {e}");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let tls = front.tls.as_ref().map(|t| t.current());
        let timeout = front.authentication_timeout;
        tokio::spawn(serve(sock, peer, tls, timeout, backend.clone()));
    }
    log::info!("received fast shutdown request");
    if front.generated.is_some() {
        frontend::remove_generated();
    }
    Ok(())
}
