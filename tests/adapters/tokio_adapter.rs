//! The async adapter (`pgssl::io::tokio`, feature `tokio`): its `accept` against its own
//! `connect` under every sslmode that uses TLS and under direct SSL, against a real libpq
//! (`psql`), against a silent and a trickling client (the deadline), against a client that
//! stuffs bytes behind its SSLRequest, and under many concurrent connections on one
//! multi-threaded runtime.
//!
//! psql must be on PATH; `scripts/test.sh` installs it.
#![cfg(feature = "tokio")]

use crate::support::tls as tls_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgssl::Channel;
use pgssl::io::tokio::{Accepted, Connected, accept, connect};
use pgssl::io::{ConnectError, TIMEOUT_MESSAGE};
use pgssl::server::ServerPolicy;
use pgssl::tls::{ClientTlsConfig, ClientTlsError, ServerTls};
use pgssl::wire::{Decoded, ErrorResponse, SSL_REQUEST};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const MARKER: &str = "pgssl async test server";

/// The server's answer to a StartupMessage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// AuthenticationCleartextPassword, then read the PasswordMessage and report it.
    Password,
    /// FATAL 28000 describing the session (psql prints it).
    Fatal,
    /// FATAL over TLS (as pg_hba.conf refusing it), a password request in plaintext.
    FatalOverTls,
}

/// What the server saw on one connection.
#[derive(Debug)]
#[allow(dead_code)] // some fields are only read through Debug, in failure messages
enum Seen {
    Startup {
        user: String,
        channel: Channel,
        alpn: Option<Vec<u8>>,
        sni: Option<String>,
        /// The client's PasswordMessage body (with [`Answer::Password`]).
        password: Option<String>,
    },
    Cancel(u32),
    Refused(String),
    Error(std::io::ErrorKind, String),
}

/// The server's TLS, `server-localhost` with its intermediate, its key copied at 0600.
fn server_tls(dir: &Path) -> Arc<ServerTls> {
    Arc::new(tls_support::localhost_config(dir).build().unwrap())
}

/// Reads one backend-style message (type byte, length, body) whole.
async fn read_msg<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut msg = head.to_vec();
    msg.resize(1 + len, 0);
    s.read_exact(&mut msg[5..]).await?;
    Ok(msg)
}

/// Negotiates one connection with the async `accept` and answers as told.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    sock: S,
    policy: ServerPolicy,
    tls: Option<Arc<ServerTls>>,
    answer: Answer,
) -> Seen {
    let accepted = accept(sock, policy, tls.as_deref(), Some(Duration::from_secs(20))).await;
    match accepted {
        Ok(Accepted::Startup {
            mut stream,
            startup,
            session,
            ..
        }) => {
            assert!(
                stream.buffered().is_empty(),
                "the client waits for the server"
            );
            let fatal = match answer {
                Answer::Password => false,
                Answer::Fatal => true,
                Answer::FatalOverTls => session.is_some(),
            };
            let mut password = None;
            if fatal {
                let desc = match &session {
                    Some(s) => format!(
                        "{MARKER}: ssl=on version={} alpn={} user={}",
                        s.version,
                        s.alpn
                            .as_deref()
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .unwrap_or_else(|| "none".into()),
                        startup.user_lossy()
                    ),
                    None => format!("{MARKER}: ssl=off user={}", startup.user_lossy()),
                };
                let r = ErrorResponse::fatal("28000", desc).to_bytes();
                let _ = stream.write_all(&r).await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
            } else {
                // AuthenticationCleartextPassword.
                stream
                    .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
                    .await
                    .unwrap();
                stream.flush().await.unwrap();
                let msg = read_msg(&mut stream).await.unwrap();
                assert_eq!(msg[0], b'p');
                let body = &msg[5..msg.len() - 1];
                password = Some(String::from_utf8_lossy(body).into_owned());
                let _ = stream.shutdown().await;
            }
            Seen::Startup {
                user: startup.user_lossy().into_owned(),
                channel: startup.channel(),
                alpn: session.as_ref().and_then(|s| s.alpn.clone()),
                sni: session.and_then(|s| s.sni),
                password,
            }
        }
        Ok(Accepted::Cancel {
            cancel: c,
            mut stream,
            ..
        }) => {
            let _ = stream.shutdown().await;
            Seen::Cancel(c.pid())
        }
        Ok(Accepted::Refused(r)) => Seen::Refused(r.error().to_string()),
        Err(e) => Seen::Error(e.kind(), e.to_string()),
    }
}

/// A server on 127.0.0.1 that takes `connections` connections, each negotiated in its own
/// task, and returns what it saw on each, in the order they were accepted.
struct Server {
    port: u16,
    handle: JoinHandle<Vec<Seen>>,
}

impl Server {
    async fn start(
        policy: ServerPolicy,
        tls: Option<Arc<ServerTls>>,
        answer: Answer,
        connections: usize,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..connections {
                let (sock, _) = listener.accept().await.unwrap();
                tasks.push(tokio::spawn(serve_one(
                    sock,
                    policy.clone(),
                    tls.clone(),
                    answer,
                )));
            }
            let mut seen = Vec::new();
            for t in tasks {
                seen.push(t.await.unwrap());
            }
            seen
        });
        Server { port, handle }
    }

    /// What the server saw, once every connection is done.
    async fn seen(self) -> Vec<Seen> {
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("the server finished its connections")
            .unwrap()
    }
}

/// A client configuration for the test server, trusting the PKI's root, without
/// `~/.postgresql` defaults.
fn client_config(port: u16, conninfo: &str) -> ClientTlsConfig {
    let root = tls_support::cert("root_ca.crt");
    let mut c = ClientTlsConfig::from_conninfo(&format!(
        "host=localhost port={port} user=alice dbname=db connect_timeout=10 sslrootcert={} {conninfo}",
        root.display()
    ))
    .unwrap();
    c.home = None;
    c
}

/// Answers the server's password request over the connected stream.
async fn send_password(c: &mut Connected, password: &str) {
    assert_eq!(c.first_message.as_bytes(), [b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((4 + password.len() + 1) as u32).to_be_bytes());
    msg.extend_from_slice(password.as_bytes());
    msg.push(0);
    c.stream.write_all(&msg).await.unwrap();
    c.stream.flush().await.unwrap();
}

/// connect → accept over TLS with `conninfo`; checks both ends.
async fn tls_round_trip(conninfo: &str, direct: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        ServerPolicy::new(),
        Some(server_tls(dir.path())),
        Answer::Password,
        1,
    )
    .await;
    let mut c = connect(&client_config(server.port, conninfo))
        .await
        .unwrap_or_else(|e| panic!("{conninfo}: {e}"));
    assert!(c.stream.ssl().is_some(), "{conninfo}: TLS in use");
    assert_eq!(c.connections, 1);
    let session = c.session.clone().expect("session facts");
    assert_eq!(session.alpn.as_deref(), Some(&b"postgresql"[..]));
    assert!(c.tls.is_some());
    send_password(&mut c, "secret").await;
    // The server closes after the password; the client reads the end of the stream.
    let mut rest = Vec::new();
    let _ = c.stream.read_to_end(&mut rest).await;
    let seen = server.seen().await;
    match &seen[..] {
        [
            Seen::Startup {
                user,
                channel,
                alpn,
                sni,
                password,
            },
        ] => {
            assert_eq!(user, "alice");
            assert_eq!(*channel, Channel::Tls { direct }, "{conninfo}");
            assert_eq!(alpn.as_deref(), Some(&b"postgresql"[..]));
            assert_eq!(sni.as_deref(), Some("localhost"));
            assert_eq!(password.as_deref(), Some("secret"));
        }
        other => panic!("{conninfo}: {other:?}"),
    }
}

#[tokio::test]
async fn connect_prefer_gets_tls_from_the_async_server() {
    tls_round_trip("sslmode=prefer", false).await;
}

#[tokio::test]
async fn connect_require_gets_tls_from_the_async_server() {
    tls_round_trip("sslmode=require", false).await;
}

#[tokio::test]
async fn connect_verify_full_checks_localhost() {
    tls_round_trip("sslmode=verify-full", false).await;
}

#[tokio::test]
async fn connect_direct_ssl_replays_the_client_hello() {
    tls_round_trip("sslmode=require sslnegotiation=direct", true).await;
    tls_round_trip("sslmode=verify-full sslnegotiation=direct", true).await;
}

#[tokio::test]
async fn connect_prefer_continues_in_plaintext_after_n() {
    let server = Server::start(ServerPolicy::new(), None, Answer::Password, 1).await;
    let mut c = connect(&client_config(server.port, "sslmode=prefer"))
        .await
        .unwrap();
    assert!(c.stream.ssl().is_none());
    assert!(c.session.is_none() && c.tls.is_none());
    assert_eq!(c.connections, 1);
    send_password(&mut c, "pw").await;
    let seen = server.seen().await;
    assert!(
        matches!(&seen[..], [Seen::Startup { channel: Channel::Plaintext, password: Some(p), .. }] if p == "pw"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn connect_prefer_falls_back_after_a_failed_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        ServerPolicy::new(),
        Some(server_tls(dir.path())),
        Answer::Password,
        2,
    )
    .await;
    let other = tls_support::cert("other_ca.crt");
    let mut config = client_config(server.port, "sslmode=prefer");
    config.sslrootcert = Some(pgssl::tls::RootCert::File(other.clone()));
    let mut c = connect(&config).await.unwrap();
    assert!(c.stream.ssl().is_none(), "plaintext after the fallback");
    assert_eq!(c.connections, 2);
    send_password(&mut c, "pw").await;
    let seen = server.seen().await;
    assert!(
        matches!(&seen[0], Seen::Refused(r) if r.contains("could not accept SSL connection")),
        "{seen:?}"
    );
    assert!(
        matches!(
            &seen[1],
            Seen::Startup {
                channel: Channel::Plaintext,
                ..
            }
        ),
        "{seen:?}"
    );
}

#[tokio::test]
async fn connect_prefer_falls_back_after_a_server_error_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        ServerPolicy::new(),
        Some(server_tls(dir.path())),
        Answer::FatalOverTls,
        2,
    )
    .await;
    let mut c = connect(&client_config(server.port, "sslmode=prefer"))
        .await
        .unwrap();
    assert!(c.stream.ssl().is_none());
    assert_eq!(c.connections, 2);
    send_password(&mut c, "pw").await;
    let seen = server.seen().await;
    assert!(
        matches!(
            &seen[..],
            [
                Seen::Startup {
                    channel: Channel::Tls { direct: false },
                    ..
                },
                Seen::Startup {
                    channel: Channel::Plaintext,
                    ..
                }
            ]
        ),
        "{seen:?}"
    );
}

#[tokio::test]
async fn connect_require_refuses_an_untrusted_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        ServerPolicy::new(),
        Some(server_tls(dir.path())),
        Answer::Password,
        1,
    )
    .await;
    let other = tls_support::cert("other_ca.crt");
    let mut config = client_config(server.port, "sslmode=require");
    config.sslrootcert = Some(pgssl::tls::RootCert::File(other.clone()));
    match connect(&config).await {
        Err(ConnectError::Tls(ClientTlsError::Handshake { reason, .. })) => {
            assert!(
                reason.to_string().starts_with("certificate verify failed"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let seen = server.seen().await;
    assert!(matches!(&seen[..], [Seen::Refused(_)]), "{seen:?}");
}

#[tokio::test]
async fn connect_reports_the_alert_for_a_refused_client_certificate() {
    // TLS 1.3: the client's handshake is over before the server rejects its certificate; the
    // alert arrives while the StartupMessage is written or the reply read, and is reported in
    // libpq's words.
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_support::localhost_config(dir.path())
        .ca_file(tls_support::cert("root+client_ca.crt"))
        .build()
        .unwrap();
    let server = Server::start(
        ServerPolicy::new(),
        Some(Arc::new(tls)),
        Answer::Password,
        1,
    )
    .await;
    let key = tls_support::key_copy(dir.path(), "client-other-ca.key", 0o600);
    let mut config = client_config(server.port, "sslmode=require");
    config.sslcert = Some(tls_support::cert("client-other-ca.crt"));
    config.sslkey = Some(key);
    match connect(&config).await {
        Err(ConnectError::Tls(ClientTlsError::Handshake { reason, .. })) => {
            assert!(reason.to_string().contains("unknown ca"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let seen = server.seen().await;
    assert!(
        matches!(&seen[..], [Seen::Refused(r)] if r.starts_with("could not accept SSL connection")),
        "{seen:?}"
    );
}

/// psql (libpq 15) with `sslmode` against the async server, which answers its StartupMessage
/// with a FATAL that psql prints.
async fn psql_against_async_server(sslmode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        ServerPolicy::new(),
        Some(server_tls(dir.path())),
        Answer::Fatal,
        1,
    )
    .await;
    let conninfo = format!(
        "host=localhost port={} sslmode={sslmode} user=u sslrootcert={} gssencmode=disable connect_timeout=10",
        server.port,
        tls_support::cert("root_ca.crt").display()
    );
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .arg(conninfo)
            .args(["-X", "-w", "-c", "select 1"])
            .env_remove("PGSSLMODE")
            .env_remove("PGSSLNEGOTIATION")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run psql ({e}): install it with `apt-get install postgresql-client` \
                     (scripts/test.sh does this)"
                )
            })
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("FATAL:  {MARKER}: ssl=on")) && stderr.contains("user=u"),
        "{sslmode}: {stderr}"
    );
    let seen = server.seen().await;
    assert!(
        matches!(&seen[..], [Seen::Startup { user, channel: Channel::Tls { direct: false }, sni: Some(sni), .. }] if user == "u" && sni == "localhost"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn psql_require_against_the_async_server() {
    psql_against_async_server("require").await;
}

#[tokio::test]
async fn psql_verify_full_against_the_async_server() {
    psql_against_async_server("verify-full").await;
}

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (s, c)
}

#[tokio::test]
async fn a_silent_client_times_out() {
    let (server, _client) = pair().await;
    let start = Instant::now();
    let e = accept(
        server,
        ServerPolicy::new(),
        None,
        Some(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(e.to_string(), TIMEOUT_MESSAGE);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_silent_client_times_out_during_the_tls_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let tls = server_tls(dir.path());
    let (server, mut client) = pair().await;
    // An SSLRequest, then nothing: the server waits in the handshake for a ClientHello.
    client.write_all(&SSL_REQUEST).await.unwrap();
    let e = accept(
        server,
        ServerPolicy::new(),
        Some(&tls),
        Some(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(e.to_string(), TIMEOUT_MESSAGE);
    let mut reply = [0u8; 1];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply, *b"S");
}

#[tokio::test]
async fn a_trickling_client_times_out_at_the_overall_deadline() {
    let (server, mut client) = pair().await;
    let trickle = tokio::spawn(async move {
        // One byte of a StartupMessage every 100 ms, until the server gives up.
        let packet = [0u8, 0, 0, 40, 0, 3, 0, 0];
        for b in packet.iter().cycle().take(100) {
            if client.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let start = Instant::now();
    let e = accept(
        server,
        ServerPolicy::new(),
        None,
        Some(Duration::from_millis(700)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(5),
        "{took:?}"
    );
    trickle.abort();
}

#[tokio::test]
async fn a_prompt_client_is_not_affected_by_the_deadline() {
    let (server, mut client) = pair().await;
    let mut b = bytes::BytesMut::new();
    pgssl::wire::encode_startup_message(
        &mut b,
        pgssl::wire::ProtocolVersion::V3_0,
        [("user", "u")],
    );
    client.write_all(&b).await.unwrap();
    match accept(
        server,
        ServerPolicy::new(),
        None,
        Some(Duration::from_secs(5)),
    )
    .await
    .unwrap()
    {
        Accepted::Startup {
            startup, stream, ..
        } => {
            assert_eq!(startup.user_lossy(), "u");
            assert!(stream.buffered().is_empty());
        }
        other => panic!("{other:?}"),
    }
}

/// An SSLRequest and a StartupMessage in one write: refused in plaintext, with no `S` or `N`
/// before the FATAL.
async fn stuffing_is_refused(tls: Option<Arc<ServerTls>>) {
    let (server, mut client) = pair().await;
    let mut chunk = SSL_REQUEST.to_vec();
    let mut b = bytes::BytesMut::new();
    pgssl::wire::encode_startup_message(
        &mut b,
        pgssl::wire::ProtocolVersion::V3_0,
        [("user", "mallory")],
    );
    chunk.extend_from_slice(&b);
    client.write_all(&chunk).await.unwrap();
    let served = tokio::spawn(serve_one(
        server,
        ServerPolicy::new(),
        tls,
        Answer::Password,
    ));
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    match ErrorResponse::decode(&got) {
        Ok(Decoded::Complete(r, n)) => {
            assert_eq!(r.message, "received unencrypted data after SSL request");
            assert_eq!(r.code, "08P01");
            assert_eq!(n, got.len(), "nothing but the FATAL");
        }
        other => panic!("{other:?}: {got:?}"),
    }
    match served.await.unwrap() {
        Seen::Refused(r) => assert_eq!(r, "received unencrypted data after SSL request"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn buffer_stuffing_after_an_accepted_ssl_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    stuffing_is_refused(Some(server_tls(dir.path()))).await;
}

#[tokio::test]
async fn buffer_stuffing_after_a_rejected_ssl_request_is_refused() {
    stuffing_is_refused(None).await;
}

#[tokio::test]
async fn a_cancel_request_over_an_in_memory_stream() {
    let (server, mut client) = tokio::io::duplex(64);
    let mut b = bytes::BytesMut::new();
    pgssl::wire::encode_cancel_request(&mut b, 4242, &[1, 2, 3, 4]);
    client.write_all(&b).await.unwrap();
    let seen = serve_one(server, ServerPolicy::new(), None, Answer::Password).await;
    assert!(matches!(seen, Seen::Cancel(4242)), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_connections_on_one_runtime() {
    const N: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        ServerPolicy::new(),
        Some(server_tls(dir.path())),
        Answer::Password,
        N,
    )
    .await;
    let port = server.port;
    let modes = [
        "sslmode=require",
        "sslmode=verify-full",
        "sslmode=require sslnegotiation=direct",
        "sslmode=disable",
    ];
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let conninfo = format!("{} user=user{i}", modes[i % modes.len()]);
            tokio::spawn(async move {
                let mut c = connect(&client_config(port, &conninfo))
                    .await
                    .unwrap_or_else(|e| panic!("{conninfo}: {e}"));
                assert_eq!(c.stream.ssl().is_some(), !conninfo.contains("disable"));
                send_password(&mut c, &format!("pw{i}")).await;
                let mut rest = Vec::new();
                let _ = c.stream.read_to_end(&mut rest).await;
            })
        })
        .collect();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("client finished")
            .unwrap();
    }
    let seen = server.seen().await;
    assert_eq!(seen.len(), N);
    let mut users: Vec<String> = Vec::new();
    let (mut tls, mut direct, mut plain) = (0, 0, 0);
    for s in &seen {
        match s {
            Seen::Startup {
                user,
                channel,
                password: Some(p),
                ..
            } => {
                assert_eq!(
                    p,
                    &format!("pw{}", &user[4..]),
                    "each password on its connection"
                );
                users.push(user.clone());
                match channel {
                    Channel::Tls { direct: false } => tls += 1,
                    Channel::Tls { direct: true } => direct += 1,
                    Channel::Plaintext => plain += 1,
                }
            }
            other => panic!("{other:?}"),
        }
    }
    users.sort();
    users.dedup();
    assert_eq!(users.len(), N);
    assert_eq!((tls, direct, plain), (26, 12, 12));
}

#[tokio::test]
async fn send_cancel_over_tls_and_connect_with_fallback() {
    use pgssl::io::AuthFailure;
    use pgssl::io::tokio::{connect_with, send_cancel};
    let dir = tempfile::tempdir().unwrap();
    let tls = server_tls(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Three connections: the cancel, then connect_with's TLS attempt and its plaintext retry.
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (sock, _) = listener.accept().await.unwrap();
            match accept(
                sock,
                ServerPolicy::new(),
                Some(&tls),
                Some(Duration::from_secs(20)),
            )
            .await
            {
                Ok(Accepted::Cancel {
                    cancel: c,
                    mut stream,
                    ..
                }) => {
                    seen.push(format!("cancel {} {:?}", c.pid(), c.channel()));
                    let _ = stream.shutdown().await;
                }
                Ok(Accepted::Startup { mut stream, .. }) => {
                    seen.push(format!("startup tls={}", stream.ssl().is_some()));
                    // AuthenticationOk.
                    stream
                        .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0])
                        .await
                        .unwrap();
                    stream.flush().await.unwrap();
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest).await;
                }
                other => seen.push(format!("{other:?}")),
            }
        }
        seen
    });
    let cancel_config = client_config(port, "sslmode=require");
    send_cancel(&cancel_config, 4242, &[1, 2, 3, 4])
        .await
        .unwrap();
    // Under prefer, a server error during the host's authentication over TLS makes libpq retry
    // in plaintext over a new connection.
    let config = client_config(port, "sslmode=prefer");
    let (conn, attempts) = connect_with(&config, async |c: &mut Connected| {
        if c.session.is_some() {
            Err(AuthFailure::Server(ErrorResponse::fatal(
                "28000",
                "no pg_hba.conf entry",
            )))
        } else {
            Ok(c.connections)
        }
    })
    .await
    .unwrap();
    assert_eq!(attempts, 2);
    assert!(conn.session.is_none());
    drop(conn);
    let seen = server.await.unwrap();
    assert_eq!(
        seen,
        [
            "cancel 4242 Tls { direct: false }",
            "startup tls=true",
            "startup tls=false"
        ]
    );
}

/// A trusted proxy's PROXY header, sent by pgssl's own client (`ClientTlsConfig::proxy_header`)
/// on every connection of a connect, read by the async `accept`: the client's address reaches
/// the outcome, over an SSLRequest, over direct SSL, and again on `prefer`'s plaintext retry
/// after a FATAL over TLS (the header is sent on the new connection too).
#[tokio::test]
async fn a_trusted_proxy_header_names_the_client() {
    use bytes::BytesMut;
    use pgssl::server::ProxyNetworks;
    use pgssl::wire::proxy::{ProxyCommand, encode_proxy_v1, encode_proxy_v2};

    let claimed: std::net::SocketAddr = "203.0.113.9:4242".parse().unwrap();
    let dst: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let mut v1 = BytesMut::new();
    encode_proxy_v1(&mut v1, claimed, dst);
    let mut v2 = BytesMut::new();
    encode_proxy_v2(
        &mut v2,
        ProxyCommand::Proxy,
        Some((claimed, dst)),
        &[],
        true,
    );
    for (header, conninfo, connections) in [
        (v1.clone(), "sslmode=require", 1),
        (v2.clone(), "sslmode=require sslnegotiation=direct", 1),
        (v2.clone(), "sslmode=prefer", 2),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tls = server_tls(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..connections {
                let (sock, peer) = listener.accept().await.unwrap();
                let policy = ServerPolicy::new()
                    .peer_addr(peer)
                    .proxy_networks(ProxyNetworks::parse_list("127.0.0.1/32").unwrap());
                match accept(sock, policy, Some(&tls), Some(Duration::from_secs(20))).await {
                    Ok(Accepted::Startup {
                        mut stream,
                        startup,
                        ..
                    }) => {
                        let client = startup.client_addr().unwrap();
                        let r = ErrorResponse::fatal("28000", format!("client={client}"));
                        let _ = stream.write_all(&r.to_bytes()).await;
                        let _ = stream.shutdown().await;
                        seen.push((client, startup.channel(), startup.proxy().cloned()));
                    }
                    other => panic!("{other:?}"),
                }
            }
            seen
        });
        let mut config = client_config(port, conninfo);
        config.proxy_header = Some(header.clone().freeze());
        match connect(&config).await {
            Err(ConnectError::Server(r)) => assert_eq!(r.message, format!("client={claimed}")),
            other => panic!("{conninfo}: {other:?}"),
        }
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), connections, "{conninfo}");
        for (client, _, proxy) in &seen {
            assert_eq!(*client, claimed, "{conninfo}");
            let p = proxy.as_ref().expect("the header");
            assert_eq!(p.destination(), Some(dst));
            assert_eq!(p.header_len(), header.len());
        }
        let direct = conninfo.contains("direct");
        assert_eq!(seen[0].1, Channel::Tls { direct }, "{conninfo}");
        if connections == 2 {
            assert_eq!(seen[1].1, Channel::Plaintext, "prefer's retry");
        }
    }
}
