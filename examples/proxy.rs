//! A TLS-terminating front for any PostgreSQL server, built on pgssl.
//!
//! ```text
//! cargo run --example proxy -- [--listen ADDR] --upstream 'CONNINFO' [-c NAME=VALUE]... [--hba FILE]
//! ```
//!
//! Clients are accepted as the server example accepts them (the same `-c` settings and `--hba`
//! file; `password` lines are relayed to the upstream, which authenticates). The upstream
//! connection is made with pgssl's client side from the upstream conninfo's SSL parameters, so
//! `sslmode=verify-full sslrootcert=…` protects the second hop. The client's StartupMessage is
//! forwarded, authentication is relayed (SCRAM-SHA-256-PLUS is withheld: its channel binding
//! cannot cross a TLS-terminating proxy), then bytes flow both ways until either side closes.
//! Cancel requests are forwarded to the upstream over a new connection negotiated the same way.

#[path = "support/frontend.rs"]
mod frontend;
#[path = "support/pgwire.rs"]
mod pgwire;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use frontend::{Frontend, LOGGER, fatal};
use pgssl::io::blocking::{Accepted, Connected, PgStream, connect_with_startup, send_cancel};
use pgssl::io::{AuthFailure, ConnectError};
use pgssl::tls::{ClientTlsConfig, SessionInfo};

fn frame(tag: u8, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    pgwire::put(&mut b, tag, body);
    b
}

/// The SASL mechanism list without SCRAM-SHA-256-PLUS.
fn without_plus(body: &[u8]) -> Vec<u8> {
    let mut out = body[..4].to_vec();
    let mut pos = 4;
    while let Some(m) = pgwire::get_cstr(body, &mut pos) {
        if m.is_empty() {
            break;
        }
        if m != "SCRAM-SHA-256-PLUS" {
            pgwire::cstr(&mut out, &m);
        }
    }
    out.push(0);
    out
}

/// Relays authentication between the client and the upstream until ReadyForQuery.
fn relay_auth<C: Read + Write>(client: &mut C, up: &mut Connected) -> Result<(), AuthFailure> {
    let mut next = Some(up.first_message.clone());
    loop {
        let (tag, body) = match next.take() {
            Some(m) => (m.tag(), m.body().to_vec()),
            None => match pgwire::read_message(&mut up.stream, 1 << 20)? {
                Some(m) => (m.tag, m.body),
                None => {
                    return Err(AuthFailure::Abort(
                        io::Error::other("upstream closed").into(),
                    ));
                }
            },
        };
        let body = if tag == b'R' && body.get(..4) == Some(&10u32.to_be_bytes()) {
            without_plus(&body)
        } else {
            body
        };
        pgwire::send(client, &frame(tag, &body))?;
        match tag {
            b'E' => {
                return Err(AuthFailure::Abort(
                    io::Error::other("upstream refused").into(),
                ));
            }
            b'Z' => return Ok(()),
            b'R' => {
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                if matches!(code, 3 | 5 | 10 | 11) {
                    let m = pgwire::read_message(client, 1 << 20)?.ok_or_else(|| {
                        AuthFailure::Abort(io::Error::other("client closed").into())
                    })?;
                    pgwire::send(&mut up.stream, &frame(m.tag, &m.body))?;
                }
            }
            _ => {}
        }
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

fn serve(front: Arc<Frontend>, upstream: &ClientTlsConfig, sock: TcpStream, peer: SocketAddr) {
    let Some(accepted) = front.accept(sock, peer) else {
        return;
    };
    match accepted {
        Accepted::Startup {
            mut stream,
            startup,
            session,
            leftover,
            ..
        } => {
            if let Err(e) = session_main(
                &front,
                upstream,
                &mut stream,
                leftover,
                &startup,
                session,
                peer.ip(),
            ) {
                log::info!("connection ended: {e}");
            }
        }
        Accepted::Cancel(c) => match send_cancel(upstream, c.pid(), c.key()) {
            Ok(()) => log::info!("cancel request for process {} forwarded upstream", c.pid()),
            Err(e) => log::warn!("could not forward cancel request: {e}"),
        },
        _ => {}
    }
}

fn session_main(
    front: &Frontend,
    upstream: &ClientTlsConfig,
    client: &mut PgStream<pgssl::io::blocking::Deadline<TcpStream>>,
    leftover: Vec<u8>,
    startup: &pgssl::server::Startup,
    session: Option<SessionInfo>,
    ip: IpAddr,
) -> io::Result<()> {
    let user = startup.user();
    let db = startup.database();
    // `trust` and `password` lines let the client through: the upstream authenticates it.
    if front.authorize(client, startup, &session, ip).is_none() {
        return Ok(());
    }
    let mut upstream = upstream.clone();
    upstream.user = Some(user.clone());
    upstream.dbname = Some(db.clone());
    let mut cio = pgwire::Prefixed::new(leftover, &mut *client);
    let result = connect_with_startup(&upstream, startup.packet(), |up| relay_auth(&mut cio, up));
    let pipelined = cio.rest();
    let (mut up, ()) = match result {
        Ok(c) => c,
        Err(ConnectError::Io(e)) if e.to_string() == "upstream refused" => return Ok(()),
        // The upstream refused before authentication: pass its FATAL on as it is.
        Err(ConnectError::Negotiation(pgssl::ClientError::Server { response })) => {
            log::warn!("FATAL:  {}", response.message);
            let _ = client.write_all(&response.to_bytes());
            let _ = client.flush();
            return Ok(());
        }
        Err(e) => {
            fatal(
                client,
                "08006",
                format!("could not connect to the upstream server: {e}"),
            );
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
    if !pipelined.is_empty() {
        up.stream.write_all(&pipelined)?;
    }
    relay(client, &mut up.stream);
    Ok(())
}

fn usage() -> ! {
    eprintln!("usage: proxy [--listen ADDR] --upstream 'CONNINFO' [-c NAME=VALUE]... [--hba FILE]");
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
            _ => usage(),
        }
    }
    let upstream = ClientTlsConfig::from_env_and_conninfo(&upstream.unwrap_or_else(|| usage()))?;
    upstream.validate()?;
    let front = Arc::new(Frontend::new(settings, &hba_text)?);
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
        move |front, sock, peer| serve(front, &upstream, sock, peer),
        ready,
    )?;
    log::info!("proxy shut down");
    Ok(())
}
