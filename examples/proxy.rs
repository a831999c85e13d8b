//! A TLS-terminating front for any PostgreSQL server, built on pgssl.
//!
//! ```text
//! cargo run --example proxy -- [--listen ADDR] --upstream 'CONNINFO' [-c NAME=VALUE]... [--hba FILE]
//!                               [--send-proxy v1|v2] [--proxy-protocol-networks CIDR[,CIDR…]]
//! ```
//!
//! Clients are accepted as the server example accepts them (the same `-c` settings and `--hba`
//! file; `password` lines are relayed to the upstream, which authenticates). The upstream
//! connection is made with pgssl's client side from the upstream conninfo's SSL parameters, so
//! `sslmode=verify-full sslrootcert=…` protects the second hop. The client's StartupMessage is
//! forwarded, authentication is relayed (SCRAM-SHA-256-PLUS is withheld: its channel binding
//! cannot cross a TLS-terminating proxy), then bytes flow both ways until either side closes.
//! Cancel requests are forwarded to the upstream over a new connection negotiated the same way.
//!
//! `--send-proxy v1|v2` begins every upstream connection with a PROXY protocol header naming
//! the client (its address and port, and the address it connected to; v2 adds the server name
//! and ALPN the client sent, as AUTHORITY and ALPN TLVs), for an upstream that trusts this
//! proxy's address. `--proxy-protocol-networks` makes the proxy itself accept one from a load
//! balancer in front of it, as the server example does.
//!
//! The upstream's authentication requests are decoded by postgres-protocol
//! (`message::backend`), after libpq's length check. The messages are relayed as they came,
//! framed by hand (support/pgwire.rs): postgres-protocol encodes no backend message (the
//! mechanism list the client gets) and decodes no frontend one (the client's answers, read
//! with PostgreSQL's bounds).

#[path = "support/frontend.rs"]
mod frontend;
#[path = "support/pgwire.rs"]
mod pgwire;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use frontend::{Frontend, LOGGER, fatal};
use pgssl::io::blocking::{Accepted, Connected, PgStream, connect_with_startup, send_cancel};
use pgssl::io::{AuthFailure, ConnectError, TIMEOUT_MESSAGE};
use pgssl::server::ProxyNetworks;
use pgssl::tls::{ClientTlsConfig, SessionInfo};
use pgssl::wire::proxy::{ProxyCommand, encode_proxy_v1, encode_proxy_v2, tlv_type};
use pgwire::Message;
use postgres_protocol::authentication::sasl::SCRAM_SHA_256_PLUS;
use postgres_protocol::message::backend;

fn frame(tag: u8, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    pgwire::put(&mut b, tag, body);
    b
}

/// libpq's bound on a server message during the startup.
const MAX_UPSTREAM_MESSAGE: usize = 30_000;
/// PostgreSQL's bound on a password message (`PG_MAX_AUTH_TOKEN_LENGTH`).
const MAX_PASSWORD_MESSAGE: usize = 65_535;
/// PostgreSQL's bound on a SASL message for SCRAM (`PG_MAX_SASL_MESSAGE_LENGTH`).
const MAX_SASL_MESSAGE: usize = 1_024;
/// AuthenticationRequest codes the client answers.
const AUTH_OK: u32 = 0;
const AUTH_PASSWORD: u32 = 3;
const AUTH_MD5: u32 = 5;
const AUTH_SASL: u32 = 10;
const AUTH_SASL_CONTINUE: u32 = 11;

/// Why the relayed authentication stopped short of ReadyForQuery.
#[derive(Debug)]
enum Stop {
    /// The upstream refused; its ErrorResponse already went to the client.
    UpstreamRefused,
    /// The upstream failed, broke the protocol or passed the deadline: the client gets
    /// FATAL 08006 "could not connect to the upstream server: …".
    Upstream(String),
    /// The client broke the protocol: FATAL 08P01 with PostgreSQL's text.
    ClientViolation(String),
    /// The client's authentication_timeout passed (PostgreSQL logs it, sends nothing).
    ClientTimeout,
    /// The client closed or its socket failed.
    ClientGone(String),
}

/// The body of an AuthenticationSASL offering `list` without SCRAM-SHA-256-PLUS; `None` if
/// the list is malformed (postgres-protocol also refuses bytes after the list's end and a name
/// that is not UTF-8, which libpq ignores).
fn without_plus(list: backend::SaslMechanisms<'_>) -> Option<Vec<u8>> {
    let names: Vec<&str> = list
        .filter(|m| Ok(*m != SCRAM_SHA_256_PLUS))
        .collect()
        .ok()?;
    let mut out = AUTH_SASL.to_be_bytes().to_vec();
    for m in names {
        out.extend_from_slice(m.as_bytes());
        out.push(0);
    }
    out.push(0);
    Some(out)
}

/// Whether an I/O error is a read timeout.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads the upstream's next message, waiting at most until `deadline`.
fn read_upstream(up: &mut Connected, deadline: Instant) -> Result<Message, Stop> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Stop::Upstream("timeout expired".into()));
    }
    let sock = up.stream.get_ref().get_ref();
    sock.set_read_timeout(Some(left))
        .and_then(|()| sock.set_write_timeout(Some(left)))
        .map_err(|e| Stop::Upstream(e.to_string()))?;
    match pgwire::read_message(&mut up.stream, MAX_UPSTREAM_MESSAGE) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Stop::Upstream(
            "server closed the connection unexpectedly".into(),
        )),
        Err(e) if timed_out(&e) || Instant::now() >= deadline => {
            Err(Stop::Upstream("timeout expired".into()))
        }
        Err(e) => Err(Stop::Upstream(match pgwire::bad_length(&e) {
            Some(bad) => bad.libpq_text(),
            None => e.to_string(),
        })),
    }
}

/// Checks an upstream AuthenticationRequest as libpq would and returns its code and the
/// body to pass on (SCRAM-SHA-256-PLUS withheld).
///
/// The length and the code are checked first, as libpq checks them (postgres-protocol refuses
/// codes it does not know, which the client is left to refuse); postgres-protocol then decodes
/// MD5's salt (only the salt: libpq ignores what follows) and the SASL mechanism list.
fn upstream_request(body: Vec<u8>) -> Result<(u32, Vec<u8>), Stop> {
    let invalid = || Stop::Upstream("received invalid authentication request".into());
    if !(8..=2000).contains(&(body.len() + 4)) {
        return Err(invalid());
    }
    let code = u32::from_be_bytes(*body.first_chunk().ok_or_else(invalid)?);
    match code {
        AUTH_MD5 => match pgwire::parse_backend(b'R', &body[..body.len().min(8)]) {
            Ok(backend::Message::AuthenticationMd5Password(_)) => Ok((code, body)),
            _ => Err(invalid()),
        },
        AUTH_SASL => {
            let list = match pgwire::parse_backend(b'R', &body) {
                Ok(backend::Message::AuthenticationSasl(m)) => without_plus(m.mechanisms()),
                _ => None,
            };
            list.map(|b| (code, b)).ok_or_else(|| {
                Stop::Upstream(
                    "fe_sendauth: invalid authentication request from server: invalid list of authentication mechanisms"
                        .into(),
                )
            })
        }
        _ => Ok((code, body)),
    }
}

/// Reads the client's answer to authentication request `code`, as PostgreSQL's server
/// reads it: a `p` message within PostgreSQL's bound, else a protocol violation.
fn read_client_answer<C: Read>(client: &mut C, code: u32) -> Result<Message, Stop> {
    let (max, what) = if code == AUTH_PASSWORD || code == AUTH_MD5 {
        (MAX_PASSWORD_MESSAGE, "password")
    } else {
        (MAX_SASL_MESSAGE, "SASL")
    };
    let m = match pgwire::read_message(client, max) {
        Ok(Some(m)) => m,
        Ok(None) => return Err(Stop::ClientGone("client closed the connection".into())),
        Err(e) if pgwire::bad_length(&e).is_some() => {
            return Err(Stop::ClientViolation("invalid message length".into()));
        }
        Err(e) if timed_out(&e) => return Err(Stop::ClientTimeout),
        Err(e) => return Err(Stop::ClientGone(e.to_string())),
    };
    if m.tag != b'p' {
        return Err(Stop::ClientViolation(format!(
            "expected {what} response, got message type {}",
            m.tag
        )));
    }
    Ok(m)
}

/// Relays authentication between the client and the upstream until ReadyForQuery, the
/// upstream side bounded by `deadline` (the proxy's authentication_timeout).
fn relay_auth<C: Read + Write>(
    client: &mut C,
    up: &mut Connected,
    deadline: Instant,
) -> Result<(), Stop> {
    let mut first = Some(up.first_message.as_bytes().to_vec());
    let mut authenticated = false;
    loop {
        let m = match first.take() {
            Some(raw) => pgwire::read_message(&mut raw.as_slice(), MAX_UPSTREAM_MESSAGE)
                .ok()
                .flatten()
                .ok_or_else(|| Stop::Upstream("received invalid authentication request".into()))?,
            None => read_upstream(up, deadline)?,
        };
        let to_client = |c: &mut C, tag: u8, body: &[u8]| {
            pgwire::send(c, &frame(tag, body)).map_err(|e| Stop::ClientGone(e.to_string()))
        };
        match m.tag {
            b'R' if !authenticated => {
                let (code, body) = upstream_request(m.body)?;
                to_client(client, b'R', &body)?;
                authenticated = code == AUTH_OK;
                if matches!(
                    code,
                    AUTH_PASSWORD | AUTH_MD5 | AUTH_SASL | AUTH_SASL_CONTINUE
                ) {
                    let answer = read_client_answer(client, code)?;
                    pgwire::send(&mut up.stream, &frame(answer.tag, &answer.body))
                        .map_err(|e| Stop::Upstream(e.to_string()))?;
                }
            }
            b'E' => {
                if pgwire::error_response(&m).is_none() {
                    return Err(Stop::Upstream("received invalid error message".into()));
                }
                to_client(client, b'E', &m.body)?;
                return Err(Stop::UpstreamRefused);
            }
            b'v' if !authenticated => to_client(client, b'v', &m.body)?,
            tag if !authenticated => {
                return Err(Stop::Upstream(format!(
                    "expected authentication request from server, but received {}",
                    tag as char
                )));
            }
            b'S' | b'K' | b'N' => to_client(client, m.tag, &m.body)?,
            b'Z' => return to_client(client, b'Z', &m.body),
            _ => {
                return Err(Stop::Upstream(
                    "unexpected message from server during startup".into(),
                ));
            }
        }
    }
}

/// Tells the client why the relay stopped, as PostgreSQL would.
fn report_stop<W: Write>(client: &mut W, stop: Stop) {
    match stop {
        Stop::UpstreamRefused => {}
        Stop::Upstream(why) => fatal(
            client,
            "08006",
            format!("could not connect to the upstream server: {why}"),
        ),
        Stop::ClientViolation(why) => fatal(client, "08P01", why),
        Stop::ClientTimeout => log::warn!("FATAL:  {TIMEOUT_MESSAGE}"),
        Stop::ClientGone(why) => log::info!("could not receive data from client: {why}"),
    }
}

/// Copies bytes both ways until either side closes, polling each with a short timeout.
fn relay<A: Read + Write, B: Read + Write>(a: &mut A, b: &mut B) {
    let mut buf = vec![0u8; 16 * 1024];
    let idle = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    loop {
        match a.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if b.write_all(&buf[..n]).and_then(|()| b.flush()).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
        match b.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if a.write_all(&buf[..n]).and_then(|()| a.flush()).is_err() {
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
    }
}

/// Which PROXY protocol header, if any, begins each upstream connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendProxy {
    Off,
    V1,
    V2,
}

/// The header naming `client`, which connected to `local`.
fn proxy_header(
    send: SendProxy,
    client: SocketAddr,
    local: SocketAddr,
    session: Option<&SessionInfo>,
) -> Option<bytes::Bytes> {
    let mut b = BytesMut::new();
    match send {
        SendProxy::Off => return None,
        SendProxy::V1 => encode_proxy_v1(&mut b, client, local),
        SendProxy::V2 => {
            let mut tlvs: Vec<(u8, &[u8])> = Vec::new();
            if let Some(sni) = session.and_then(|s| s.sni.as_deref()) {
                tlvs.push((tlv_type::AUTHORITY, sni.as_bytes()));
            }
            if let Some(alpn) = session.and_then(|s| s.alpn.as_deref()) {
                tlvs.push((tlv_type::ALPN, alpn));
            }
            encode_proxy_v2(
                &mut b,
                ProxyCommand::Proxy,
                Some((client, local)),
                &tlvs,
                false,
            );
        }
    }
    Some(b.freeze())
}

fn serve(
    front: Arc<Frontend>,
    upstream: &ClientTlsConfig,
    send_proxy: SendProxy,
    sock: TcpStream,
    peer: SocketAddr,
) {
    // authentication_timeout runs from the connection's arrival, for both sides.
    let deadline = Instant::now() + front.authentication_timeout;
    let local = sock.local_addr().unwrap_or(peer);
    let Some(accepted) = front.accept(sock, peer) else {
        return;
    };
    match accepted {
        Accepted::Startup {
            mut stream,
            startup,
            session,
            ..
        } => {
            // The client: a trusted balancer's PROXY header names it, else the TCP peer.
            let client = startup.client_addr().unwrap_or(peer);
            let local = startup
                .proxy()
                .and_then(|p| p.destination())
                .unwrap_or(local);
            let mut upstream = upstream.clone();
            upstream.proxy_header = proxy_header(send_proxy, client, local, session.as_ref());
            if let Err(e) = session_main(
                &front,
                &upstream,
                &mut stream,
                &startup,
                session,
                Arrival {
                    ip: client.ip(),
                    deadline,
                },
            ) {
                log::info!("connection ended: {e}");
            }
        }
        Accepted::Cancel {
            cancel: c,
            mut stream,
            ..
        } => {
            let mut upstream = upstream.clone();
            let client = c.client_addr().unwrap_or(peer);
            upstream.proxy_header = proxy_header(send_proxy, client, local, None);
            match send_cancel(&upstream, c.pid(), c.key()) {
                Ok(()) => log::info!("cancel request for process {} forwarded upstream", c.pid()),
                Err(e) => log::warn!("could not forward cancel request: {e}"),
            }
            // Forwarded: now the client may see the connection end (close_notify on TLS).
            let _ = stream.shutdown();
        }
        _ => {}
    }
}

/// Where a client came from, and when its authentication_timeout ends.
struct Arrival {
    ip: IpAddr,
    deadline: Instant,
}

fn session_main(
    front: &Frontend,
    upstream: &ClientTlsConfig,
    client: &mut PgStream<pgssl::io::blocking::Deadline<TcpStream>>,
    startup: &pgssl::server::Startup,
    session: Option<SessionInfo>,
    Arrival { ip, deadline }: Arrival,
) -> io::Result<()> {
    let user = startup.user_lossy().into_owned();
    let db = startup.database_lossy().into_owned();
    // `trust` and `password` lines let the client through: the upstream authenticates it.
    if front.authorize(client, startup, &session, ip).is_none() {
        return Ok(());
    }
    let mut upstream = upstream.clone();
    upstream.user = Some(user.clone());
    upstream.dbname = Some(db.clone());
    upstream.connect_timeout = Some(upstream_read_timeout(&upstream, deadline));
    let mut stop = None;
    let result = connect_with_startup(&upstream, startup.packet(), |up| {
        relay_auth(&mut *client, up, deadline).map_err(|s| {
            stop = Some(s);
            AuthFailure::Abort(io::Error::other("authentication relay stopped").into())
        })
    });
    // What the client sent behind its messages and the relay did not read: forwarded as is.
    let pipelined = client.take_buffered();
    let (mut up, ()) = match (result, stop) {
        (Ok(c), _) => c,
        (Err(_), Some(stop)) => {
            report_stop(client, stop);
            return Ok(());
        }
        // The upstream refused before authentication: pass its FATAL on as it is.
        (Err(ConnectError::Server(response)), None) => {
            log::warn!("FATAL:  {}", response.message);
            let _ = client.write_all(&response.to_bytes());
            let _ = client.flush();
            return Ok(());
        }
        (Err(e), None) => {
            let why = match &e {
                ConnectError::Timeout => "timeout expired".to_owned(),
                ConnectError::Io(io) if timed_out(io) => "timeout expired".to_owned(),
                _ if Instant::now() >= deadline => "timeout expired".to_owned(),
                _ => e.to_string(),
            };
            report_stop(client, Stop::Upstream(why));
            return Ok(());
        }
    };
    client.clear_deadline()?;
    match (&session, &up.session) {
        (Some(s), Some(u)) => log::info!(
            "connection authorized: user={user} database={db} SSL enabled (protocol={}, cipher={}, bits={}); upstream SSL enabled (protocol={}, cipher={})",
            s.version,
            s.cipher,
            s.bits,
            u.version,
            u.cipher
        ),
        (Some(s), None) => log::info!(
            "connection authorized: user={user} database={db} SSL enabled (protocol={}, cipher={}, bits={}); upstream SSL off",
            s.version,
            s.cipher,
            s.bits
        ),
        (None, u) => log::info!(
            "connection authorized: user={user} database={db} SSL off; upstream SSL {}",
            if u.is_some() { "enabled" } else { "off" }
        ),
    }
    let tick = Some(Duration::from_millis(10));
    client.clear_deadline()?;
    client.get_ref().get_ref().set_read_timeout(tick)?;
    up.stream.clear_deadline()?;
    up.stream.get_ref().get_ref().set_read_timeout(tick)?;
    up.stream.get_ref().get_ref().set_write_timeout(None)?;
    if !pipelined.is_empty() {
        up.stream.write_all(&pipelined)?;
    }
    relay(client, &mut up.stream);
    Ok(())
}

/// The upstream's `connect_timeout` for this connection: what is left of
/// authentication_timeout, rounded up to whole seconds, or the conninfo's own if shorter.
/// pgssl applies it to the TCP connect and to every read until authentication.
fn upstream_read_timeout(upstream: &ClientTlsConfig, deadline: Instant) -> u64 {
    let left = deadline.saturating_duration_since(Instant::now());
    let secs = (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1);
    match upstream.connect_timeout {
        Some(t) if t > 0 => t.min(secs),
        _ => secs,
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: proxy [--listen ADDR] --upstream 'CONNINFO' [-c NAME=VALUE]... [--hba FILE] [--send-proxy v1|v2] [--proxy-protocol-networks CIDR[,CIDR...]]"
    );
    std::process::exit(2);
}

fn main() {
    if let Err(e) = run() {
        eprintln!("FATAL:  {e}");
        frontend::remove_generated();
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    let mut listen = "127.0.0.1:5434".to_owned();
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut hba_text = "host all all all trust\n".to_owned();
    let mut upstream = None;
    let mut send_proxy = SendProxy::Off;
    let mut proxy_networks = ProxyNetworks::none();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "--upstream" => upstream = Some(args.next().unwrap_or_else(|| usage())),
            "-c" => {
                let kv = args.next().unwrap_or_else(|| usage());
                let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
                settings.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "--hba" => hba_text = std::fs::read_to_string(args.next().unwrap_or_else(|| usage()))?,
            "--send-proxy" => {
                send_proxy = match args.next().as_deref() {
                    Some("v1") => SendProxy::V1,
                    Some("v2") => SendProxy::V2,
                    _ => usage(),
                }
            }
            "--proxy-protocol-networks" => {
                let list = args.next().unwrap_or_else(|| usage());
                proxy_networks = ProxyNetworks::parse_list(&list)
                    .map_err(|e| format!("invalid value for --proxy-protocol-networks: {e}"))?;
            }
            _ => usage(),
        }
    }
    let upstream = ClientTlsConfig::from_env_and_conninfo(&upstream.unwrap_or_else(|| usage()))?;
    upstream.validate()?;
    let mut front = Frontend::new(settings, &hba_text)?;
    front.proxy_networks = proxy_networks;
    let front = Arc::new(front);
    let listener = TcpListener::bind(&listen)?;
    let ready = |addr: SocketAddr| {
        if let Some((crt, _)) = &front.generated {
            eprintln!(
                "connect with: psql \"host=localhost port={} sslmode=verify-full sslrootcert={}\"",
                addr.port(),
                crt.display()
            );
        }
    };
    front.run(
        listener,
        move |front, sock, peer| serve(front, &upstream, send_proxy, sock, peer),
        ready,
    )?;
    log::info!("proxy shut down");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: u32, extra: &[u8]) -> Vec<u8> {
        [&code.to_be_bytes()[..], extra].concat()
    }

    #[test]
    fn plus_is_withheld() {
        let body = request(AUTH_SASL, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let (code, out) = upstream_request(body).unwrap();
        assert_eq!(code, AUTH_SASL);
        assert_eq!(out, request(AUTH_SASL, b"SCRAM-SHA-256\0\0"));
    }

    #[test]
    fn md5_salt_is_checked_and_the_rest_ignored() {
        let body = request(AUTH_MD5, b"saltmore");
        assert_eq!(upstream_request(body.clone()).unwrap(), (AUTH_MD5, body));
        let body = request(AUTH_PASSWORD, b"");
        assert_eq!(
            upstream_request(body.clone()).unwrap(),
            (AUTH_PASSWORD, body)
        );
    }

    #[test]
    fn malformed_upstream_requests_are_named() {
        for body in [
            Vec::new(),
            vec![0; 3],
            request(AUTH_MD5, b""),
            request(AUTH_MD5, b"ab"),
            request(AUTH_SASL, b""),
            request(AUTH_SASL, b"SCRAM-SHA-256"),
            request(AUTH_SASL, b"SCRAM-SHA-256\0\0x"),
            request(AUTH_SASL, b"\xff\0\0"),
            request(AUTH_SASL, &[b'x'; 2000]),
        ] {
            match upstream_request(body.clone()) {
                Err(Stop::Upstream(why)) => assert!(
                    why.contains("invalid authentication request")
                        || why.contains("invalid list of authentication mechanisms"),
                    "{body:?}: {why}"
                ),
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_client_lengths_are_protocol_violations() {
        let mut client = &b"p\xff\xff\xff\xff"[..];
        match read_client_answer(&mut client, AUTH_PASSWORD) {
            Err(Stop::ClientViolation(why)) => assert_eq!(why, "invalid message length"),
            other => panic!("{other:?}"),
        }
        let mut client = &b"Q\x00\x00\x00\x05x"[..];
        match read_client_answer(&mut client, AUTH_SASL) {
            Err(Stop::ClientViolation(why)) => {
                assert_eq!(why, "expected SASL response, got message type 81")
            }
            other => panic!("{other:?}"),
        }
    }
}
