//! A small Postgres-compatible server built on pgssl.
//!
//! ```text
//! cargo run --example server -- [--listen ADDR] [-c NAME=VALUE]... [--hba FILE] [--password USER=PASS]...
//!                                [--proxy-protocol-networks CIDR[,CIDR…]]
//! ```
//!
//! With no options it listens on 127.0.0.1:5433 with TLS on, using an ECDSA P-256 certificate
//! it generates (CN and SAN localhost, SAN 127.0.0.1), and prints a `psql` command that
//! connects to it. `-c` takes PostgreSQL's SSL settings by name (`ssl=off` included); `--hba`
//! a pg_hba.conf subset (host/hostssl/hostnossl; trust, reject, password, cert;
//! clientcert=verify-ca|verify-full, clientname=CN|DN). Every query is answered with one row
//! describing the connection's TLS. SIGHUP reloads the TLS settings; SIGINT/SIGTERM stop it.
//! `--proxy-protocol-networks` names the load balancers trusted to send a PROXY protocol
//! header: pg_hba.conf and the log then see the client's address, and the row gains two
//! columns, the client's address and port and the TCP peer's.
//!
//! Its protocol messages are written by hand (support/pgwire.rs): postgres-protocol, which the
//! client examples use, encodes only frontend messages and decodes only backend ones.

#[path = "support/frontend.rs"]
mod frontend;
#[path = "support/pgwire.rs"]
mod pgwire;

use frontend::{Frontend, LOGGER, fatal};

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use pgssl::io::blocking::{Accepted, PgStream};
use pgssl::server::ProxyNetworks;
use pgssl::tls::{AuthMethod, SessionInfo};
use pgssl::wire::ErrorResponse;

// ---------------------------------------------------------------------------------------------
// The server.

/// What the server keeps beyond the client-facing side: passwords and live backends.
struct Backend {
    passwords: HashMap<String, String>,
    backends: Mutex<HashMap<u32, [u8; 4]>>,
    next_pid: AtomicU32,
}

fn serve(front: Arc<Frontend>, backend: &Backend, sock: TcpStream, peer: SocketAddr) {
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
            // Messages the client pipelined behind its StartupMessage are read first.
            if let Err(e) = session_main(&front, backend, &mut stream, &startup, session, peer) {
                log::info!("could not receive data from client: {e}");
            }
        }
        Accepted::Cancel {
            cancel: c,
            mut stream,
            ..
        } => {
            let known = backend.backends.lock().unwrap().get(&c.pid()).copied();
            match known {
                Some(key) if same_key(&key, c.key()) => {
                    log::info!("cancel request for process {} accepted", c.pid())
                }
                Some(_) => log::info!("wrong key in cancel request for process {}", c.pid()),
                None => log::info!(
                    "PID {} in cancel request did not match any process",
                    c.pid()
                ),
            }
            // Acted on: now the client may see the connection end (close_notify on TLS).
            let _ = stream.shutdown();
        }
        Accepted::Refused(_) => {}
    }
}

/// The cancel key check, in constant time as `Cancel::key` asks (lengths first: a 3.2 key
/// may be longer than ours).
fn same_key(ours: &[u8], theirs: &[u8]) -> bool {
    ours.len() == theirs.len() && openssl::memcmp::eq(ours, theirs)
}

type Stream = PgStream<pgssl::io::blocking::Deadline<TcpStream>>;

fn session_main(
    front: &Frontend,
    backend: &Backend,
    stream: &mut Stream,
    startup: &pgssl::server::Startup,
    session: Option<SessionInfo>,
    peer: SocketAddr,
) -> io::Result<()> {
    let user = startup.user_lossy().into_owned();
    let db = startup.database_lossy().into_owned();
    // The client's address: a trusted proxy's PROXY header's, else the TCP peer's.
    let client = startup.client_addr().unwrap_or(peer);
    let Some(method) = front.authorize(stream, startup, &session, client.ip()) else {
        return Ok(());
    };
    if method == AuthMethod::Password {
        let mut out = BytesMut::new();
        pgwire::auth(&mut out, 3, &[]);
        pgwire::send(stream, &out)?;
        let given = match pgwire::read_message(stream, 10_000)? {
            Some(m) if m.tag == b'p' => {
                let mut pos = 0;
                pgwire::get_cstr(&m.body, &mut pos).unwrap_or_default()
            }
            _ => return Ok(()),
        };
        if backend.passwords.get(&user) != Some(&given) {
            fatal(
                stream,
                "28P01",
                format!("password authentication failed for user \"{user}\""),
            );
            return Ok(());
        }
        log::info!("connection authenticated: identity=\"{user}\" method=password");
    }
    // Authentication is over: PostgreSQL's authentication_timeout no longer applies.
    stream.clear_deadline()?;
    let pid = backend.next_pid.fetch_add(1, Ordering::SeqCst);
    let mut key = [0u8; 4];
    openssl::rand::rand_bytes(&mut key).map_err(io::Error::other)?;
    backend.backends.lock().unwrap().insert(pid, key);
    let mut out = BytesMut::new();
    pgwire::auth(&mut out, 0, &[]);
    for (n, v) in [
        ("server_version", "17.0 (pgssl example)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("is_superuser", "off"),
        ("session_authorization", user.as_str()),
        (
            "application_name",
            startup.message().get_str("application_name").unwrap_or(""),
        ),
    ] {
        pgwire::parameter_status(&mut out, n, v);
    }
    pgwire::backend_key_data(&mut out, pid, &key);
    pgwire::ready_for_query(&mut out);
    pgwire::send(stream, &out)?;
    match &session {
        Some(s) => log::info!(
            "connection authorized: user={user} database={db} SSL enabled (protocol={}, cipher={}, bits={})",
            s.version,
            s.cipher,
            s.bits
        ),
        None => log::info!("connection authorized: user={user} database={db} SSL off"),
    }
    let addrs = (!front.proxy_networks.is_empty()).then_some((client, peer));
    let result = query_loop(stream, &session, addrs);
    backend.backends.lock().unwrap().remove(&pid);
    result
}

const COLUMNS: [&str; 9] = [
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

/// The row's columns: the nine, and with `--proxy-protocol-networks` the client's and the TCP
/// peer's addresses.
fn columns(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<&'static str> {
    let mut c = COLUMNS.to_vec();
    if addrs.is_some() {
        c.extend(["client_addr", "peer_addr"]);
    }
    c
}

fn row(
    session: &Option<SessionInfo>,
    addrs: Option<(SocketAddr, SocketAddr)>,
) -> Vec<Option<String>> {
    let mut row = tls_row(session);
    if let Some((client, peer)) = addrs {
        row.extend([Some(client.to_string()), Some(peer.to_string())]);
    }
    row
}

fn tls_row(session: &Option<SessionInfo>) -> Vec<Option<String>> {
    match session {
        None => {
            let mut v = vec![Some("f".to_owned())];
            v.extend(std::iter::repeat_n(None, COLUMNS.len() - 1));
            v
        }
        Some(s) => vec![
            Some("t".to_owned()),
            Some(s.version.to_string()),
            Some(s.cipher.clone()),
            Some(s.bits.to_string()),
            s.peer.as_ref().map(|p| p.subject.clone()),
            s.peer.as_ref().map(|p| p.serial.clone()),
            s.peer.as_ref().map(|p| p.issuer.clone()),
            s.alpn
                .as_ref()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            s.sni.clone(),
        ],
    }
}

fn query_loop<S: Read + Write>(
    stream: &mut S,
    session: &Option<SessionInfo>,
    addrs: Option<(SocketAddr, SocketAddr)>,
) -> io::Result<()> {
    let mut in_error = false;
    loop {
        let Some(m) = pgwire::read_message(stream, 1 << 20)? else {
            return Ok(());
        };
        let mut out = BytesMut::new();
        match m.tag {
            b'X' => return Ok(()),
            b'Q' => {
                pgwire::row_description(&mut out, &columns(addrs));
                pgwire::data_row(&mut out, &row(session, addrs));
                pgwire::command_complete(&mut out, "SELECT 1");
                pgwire::ready_for_query(&mut out);
            }
            // The extended protocol, enough for drivers that always use it.
            b'P' if !in_error => pgwire::put(&mut out, b'1', &[]),
            b'B' if !in_error => pgwire::put(&mut out, b'2', &[]),
            b'D' if !in_error => {
                if m.body.first() == Some(&b'S') {
                    pgwire::put(&mut out, b't', &0u16.to_be_bytes());
                }
                pgwire::row_description(&mut out, &columns(addrs));
            }
            b'E' if !in_error => {
                pgwire::data_row(&mut out, &row(session, addrs));
                pgwire::command_complete(&mut out, "SELECT 1");
            }
            b'C' if !in_error => pgwire::put(&mut out, b'3', &[]),
            b'S' => {
                in_error = false;
                pgwire::ready_for_query(&mut out);
            }
            b'H' => {}
            b'P' | b'B' | b'D' | b'E' | b'C' => {}
            other => {
                let e = ErrorResponse::new(
                    pgssl::wire::Severity::Error,
                    "0A000",
                    format!("unsupported frontend message type {}", other as char),
                );
                e.encode(&mut out);
                in_error = true;
            }
        }
        if !out.is_empty() {
            pgwire::send(stream, &out)?;
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: server [--listen ADDR] [-c NAME=VALUE]... [--hba FILE] [--password USER=PASS]... [--proxy-protocol-networks CIDR[,CIDR...]]"
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
    let mut listen = "127.0.0.1:5433".to_owned();
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut hba_text = "host all all all trust\n".to_owned();
    let mut passwords = HashMap::new();
    let mut proxy_networks = ProxyNetworks::none();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "-c" => {
                let kv = args.next().unwrap_or_else(|| usage());
                let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
                settings.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "--hba" => hba_text = std::fs::read_to_string(args.next().unwrap_or_else(|| usage()))?,
            "--password" => {
                let kv = args.next().unwrap_or_else(|| usage());
                let (u, p) = kv.split_once('=').unwrap_or_else(|| usage());
                passwords.insert(u.to_owned(), p.to_owned());
            }
            "--proxy-protocol-networks" => {
                let list = args.next().unwrap_or_else(|| usage());
                proxy_networks = ProxyNetworks::parse_list(&list)
                    .map_err(|e| format!("invalid value for --proxy-protocol-networks: {e}"))?;
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let mut front = Frontend::new(settings, &hba_text)?;
    front.proxy_networks = proxy_networks;
    let front = Arc::new(front);
    let backend = Arc::new(Backend {
        passwords,
        backends: Mutex::new(HashMap::new()),
        next_pid: AtomicU32::new(std::process::id() * 10),
    });
    let listener = TcpListener::bind(&listen)?;
    let ready = |addr: SocketAddr| {
        front.print_connect_command(addr.port());
        log::info!("database system is ready to accept connections");
    };
    front.run(
        listener,
        move |front, sock, peer| serve(front, &backend, sock, peer),
        ready,
    )?;
    log::info!("database system is shut down");
    Ok(())
}
