//! A real peer: `psql` (libpq from PostgreSQL 15, as installed on this machine) against the
//! server negotiator over real TCP sockets, with TLS off. The TLS cases come with the OpenSSL
//! layer; these show that a real libpq sees pgssl's `N`, its refusals and its texts exactly as
//! it would see PostgreSQL's.
//!
//! psql must be on PATH; `scripts/test.sh` installs it (`apt-get install postgresql-client`).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use pgssl::ServerOutcome;
use pgssl::server::{NegotiationEvent, ServerNegotiator, ServerOutput, ServerPolicy};
use pgssl::wire::ErrorResponse;

/// What the server saw on one connection.
#[derive(Debug)]
struct Seen {
    events: Vec<NegotiationEvent>,
    /// "startup USER DB", "refused: TEXT" or "cancel".
    outcome: String,
}

const MARKER: &str = "pgssl test server: startup received";

fn serve_one(mut sock: TcpStream, policy: ServerPolicy) -> Seen {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut neg = ServerNegotiator::new(policy.peer_addr(sock.peer_addr().unwrap()));
    let mut buf = [0u8; 16384];
    let outcome = loop {
        match neg.poll_output() {
            ServerOutput::Transmit(r) => sock.write_all(r.as_bytes()).unwrap(),
            ServerOutput::NeedInput { max } => match sock.read(&mut buf[..max]) {
                Ok(0) | Err(_) => neg.handle_eof(),
                Ok(n) => assert_eq!(neg.handle_input(&buf[..n]), n, "exact reads are consumed"),
            },
            ServerOutput::Done(ServerOutcome::Startup(s)) => {
                // End psql's attempt with a FATAL it will print, so the test can see it.
                let r = ErrorResponse::fatal("28000", format!("{MARKER} for {}", s.user_lossy()));
                sock.write_all(&r.to_bytes()).unwrap();
                break format!("startup {} {}", s.user_lossy(), s.database_lossy());
            }
            ServerOutput::Done(ServerOutcome::Cancel(_)) => break "cancel".to_owned(),
            ServerOutput::Done(ServerOutcome::Refuse(r)) => {
                if let Some(b) = r.response_bytes() {
                    sock.write_all(&b).unwrap();
                }
                break format!("refused: {}", r.error());
            }
            other => panic!("unexpected output with TLS off: {other:?}"),
        }
    };
    Seen {
        events: neg.events().collect(),
        outcome,
    }
}

/// Runs psql with `conninfo` (host and port are added) against a server with `policy`;
/// returns psql's stderr and what the server saw on each connection.
fn psql_against(policy: ServerPolicy, conninfo: &str) -> (String, Vec<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let server = {
        let done = done.clone();
        thread::spawn(move || {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((sock, _)) => {
                        sock.set_nonblocking(false).unwrap();
                        seen.push(serve_one(sock, policy.clone()));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            seen
        })
    };
    let output = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} connect_timeout=10 gssencmode=disable {conninfo}"
        ))
        .args(["-X", "-w", "-c", "select 1"])
        .env_remove("PGSSLMODE")
        .env("PGSSLROOTCERT", "/nonexistent/root.crt") // no ~/.postgresql influence
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run psql ({e}): install it with `apt-get install postgresql-client` \
                 (scripts/test.sh does this)"
            )
        });
    done.store(true, Ordering::SeqCst);
    let seen = server.join().unwrap();
    assert!(
        !output.status.success(),
        "psql cannot succeed against this server"
    );
    (String::from_utf8_lossy(&output.stderr).into_owned(), seen)
}

#[test]
fn psql_prefer_gets_n_and_continues_in_plaintext() {
    let (stderr, seen) = psql_against(ServerPolicy::new(), "user=alice dbname=db sslmode=prefer");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].events, [NegotiationEvent::SslRequestRejected]);
    assert_eq!(seen[0].outcome, "startup alice db");
    assert!(
        stderr.contains(&format!("FATAL:  {MARKER} for alice")),
        "{stderr}"
    );
}

#[test]
fn psql_disable_sends_no_ssl_request() {
    let (stderr, seen) = psql_against(ServerPolicy::new(), "user=alice sslmode=disable");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].events.is_empty());
    assert_eq!(
        seen[0].outcome, "startup alice alice",
        "database defaults to the user"
    );
    assert!(stderr.contains(MARKER), "{stderr}");
}

#[test]
fn psql_require_against_a_server_without_tls() {
    let (stderr, seen) = psql_against(ServerPolicy::new(), "user=alice sslmode=require");
    assert!(
        stderr.contains("server does not support SSL, but SSL was required"),
        "{stderr}"
    );
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].events, [NegotiationEvent::SslRequestRejected]);
    assert_eq!(
        seen[0].outcome,
        "refused: connection closed by the client before a startup packet"
    );
}

#[test]
fn psql_sees_the_hostssl_refusal_text() {
    let (stderr, seen) = psql_against(
        ServerPolicy::new().refuse_plaintext(),
        "user=alice dbname=db sslmode=prefer",
    );
    assert!(
        stderr.contains(
            "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"alice\", database \"db\", no encryption"
        ),
        "{stderr}"
    );
    assert_eq!(seen.len(), 1);
}

#[test]
fn psql_allow_retries_after_a_refused_plaintext_connection() {
    // libpq 15 retries sslmode=allow with an SSLRequest over a new connection; the server
    // answers N, and libpq 15 (unlike 17, which gives up there) continues in plaintext once
    // more. The server sees both connections.
    let (stderr, seen) = psql_against(
        ServerPolicy::new().refuse_plaintext(),
        "user=alice dbname=db sslmode=allow",
    );
    assert!(stderr.contains("no pg_hba.conf entry"), "{stderr}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].events.is_empty());
    assert_eq!(seen[1].events, [NegotiationEvent::SslRequestRejected]);
}
