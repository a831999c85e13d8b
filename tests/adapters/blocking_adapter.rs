//! The blocking adapter's deadline: a client that connects and sends nothing, or trickles its
//! bytes, cannot hold the negotiation past it.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use pgssl::io::TIMEOUT_MESSAGE;
use pgssl::io::blocking::{Accepted, accept_with_deadline};
use pgssl::server::ServerPolicy;

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (s, c)
}

#[test]
fn a_silent_client_times_out() {
    let (server, _client) = pair();
    let start = Instant::now();
    let e = accept_with_deadline(
        server,
        ServerPolicy::new(),
        None,
        Some(Duration::from_millis(300)),
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(e.to_string(), TIMEOUT_MESSAGE);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_trickling_client_times_out_at_the_overall_deadline() {
    let (server, mut client) = pair();
    let t = std::thread::spawn(move || {
        // One byte of a StartupMessage every 100 ms, forever (until the server gives up).
        let packet = [0u8, 0, 0, 40, 0, 3, 0, 0];
        for b in packet.iter().cycle() {
            if client.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let start = Instant::now();
    let e = accept_with_deadline(
        server,
        ServerPolicy::new(),
        None,
        Some(Duration::from_millis(700)),
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(t);
}

#[test]
fn a_prompt_client_is_not_affected() {
    let (server, mut client) = pair();
    let mut b = bytes::BytesMut::new();
    pgssl::wire::encode_startup_message(
        &mut b,
        pgssl::wire::ProtocolVersion::V3_0,
        [("user", "u")],
    );
    client.write_all(&b).unwrap();
    match accept_with_deadline(
        server,
        ServerPolicy::new(),
        None,
        Some(Duration::from_secs(5)),
    )
    .unwrap()
    {
        Accepted::Startup { startup, .. } => assert_eq!(startup.user_lossy(), "u"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stuffed_bytes_after_ssl_request_are_refused_over_tcp() {
    use pgssl::io::blocking::accept;
    use std::io::Read;
    for tls_on in [false, true] {
        let (server, mut client) = pair();
        let mut b = bytes::BytesMut::new();
        b.extend_from_slice(&pgssl::wire::SSL_REQUEST);
        pgssl::wire::encode_startup_message(
            &mut b,
            pgssl::wire::ProtocolVersion::V3_0,
            [("user", "u")],
        );
        client.write_all(&b).unwrap(); // one write: the bytes arrive together
        std::thread::sleep(Duration::from_millis(50));
        let d = tempfile::tempdir().unwrap();
        let tls = if tls_on {
            let key = d.path().join("k.key");
            std::fs::copy(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/certs/server-localhost.key"
                ),
                &key,
            )
            .unwrap();
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            Some(
                pgssl::tls::ServerTlsConfig::new()
                    .cert_file(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/tests/certs/server-localhost.crt"
                    ))
                    .key_file(&key)
                    .build()
                    .unwrap(),
            )
        } else {
            None
        };
        match accept(server, ServerPolicy::new(), tls.as_ref()).unwrap() {
            Accepted::Refused(r) => assert_eq!(
                r.error().to_string(),
                "received unencrypted data after SSL request",
                "tls {tls_on}"
            ),
            other => panic!("tls {tls_on}: {other:?}"),
        }
        // The client gets the FATAL, and no 'S' or 'N' before it.
        let mut reply = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = client.read_to_end(&mut reply);
        assert_eq!(reply.first(), Some(&b'E'), "tls {tls_on}: {reply:?}");
    }
}

use crate::support::tls as tls_support;

#[test]
fn the_client_always_offers_alpn_postgresql() {
    use tls_support::{Seen, TestServer, cert, localhost_config};
    let d = tempfile::tempdir().unwrap();
    let srv = TestServer::with(
        ServerPolicy::new(),
        localhost_config(d.path()).build().unwrap(),
    );
    for negotiation in ["postgres", "direct"] {
        let conninfo = format!(
            "host=localhost port={} user=u sslmode=require sslnegotiation={negotiation} sslrootcert={}",
            srv.port,
            cert("root_ca.crt").display()
        );
        let config = pgssl::tls::ClientTlsConfig::from_conninfo(&conninfo).unwrap();
        // The test server answers the StartupMessage with a FATAL, which ends the connect.
        let _ = pgssl::io::blocking::connect(&config);
        match srv.next() {
            Seen::Startup {
                session: Some(s), ..
            } => {
                assert_eq!(s.alpn.as_deref(), Some(&b"postgresql"[..]), "{negotiation}")
            }
            other => panic!("{negotiation}: {other:?}"),
        }
    }
}

/// A client that pipelines a Query behind its StartupMessage: the negotiation received both,
/// and the returned stream gives the Query first, then the socket's bytes, in order.
#[test]
fn bytes_pipelined_after_the_startup_message_are_read_first_from_the_stream() {
    use std::io::Read;
    let (server, mut client) = pair();
    let mut b = bytes::BytesMut::new();
    pgssl::wire::encode_startup_message(
        &mut b,
        pgssl::wire::ProtocolVersion::V3_0,
        [("user", "u")],
    );
    let query = b"Q\0\0\0\x0dselect 1\0";
    b.extend_from_slice(query);
    client.write_all(&b).unwrap(); // one write: the bytes arrive together
    std::thread::sleep(Duration::from_millis(50));
    let mut stream = match pgssl::io::blocking::accept(server, ServerPolicy::new(), None).unwrap() {
        Accepted::Startup {
            stream, startup, ..
        } => {
            assert_eq!(startup.user(), Some(&b"u"[..]));
            stream
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(stream.buffered(), query);
    client.write_all(b"X\0\0\0\x04").unwrap();
    let mut got = vec![0u8; query.len() + 5];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got[..query.len()], query);
    assert_eq!(&got[query.len()..], b"X\0\0\0\x04");
    assert!(stream.buffered().is_empty());
}

/// `unread_startup` positions the stream at the StartupMessage again, the pipelined bytes after
/// it: what a wire library that reads the StartupMessage itself needs.
#[test]
fn unread_startup_hands_over_the_stream_from_the_startup_message_on() {
    use std::io::Read;
    let (server, mut client) = pair();
    let mut startup = bytes::BytesMut::new();
    pgssl::wire::encode_startup_message(
        &mut startup,
        pgssl::wire::ProtocolVersion::V3_0,
        [("user", "u")],
    );
    let query = b"Q\0\0\0\x0dselect 1\0";
    client.write_all(&[&startup[..], query].concat()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut stream = match pgssl::io::blocking::accept(server, ServerPolicy::new(), None).unwrap() {
        Accepted::Startup {
            mut stream,
            startup,
            ..
        } => {
            stream.unread_startup(&startup);
            stream
        }
        other => panic!("{other:?}"),
    };
    let mut got = vec![0u8; startup.len() + query.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, [&startup[..], query].concat());
}

/// One source of truth for "TLS on": a policy that sets `tls` against the context given is
/// refused (InvalidInput), not silently overridden; an unset policy follows the context.
#[test]
fn a_policy_contradicting_the_tls_context_is_refused() {
    use pgssl::io::blocking::accept;
    let d = tempfile::tempdir().unwrap();
    let key = crate::support::tls::key_copy(d.path(), "server-localhost.key", 0o600);
    let mut config = pgssl::tls::ServerTlsConfig::new();
    config
        .cert_file(crate::support::tls::cert("server-localhost.crt"))
        .key_file(&key);
    let tls = config.build().unwrap();

    let (server, _client) = pair();
    let e = accept(server, ServerPolicy::new().tls(true), None).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        e.to_string(),
        "the policy says ssl = on but no TLS context was given"
    );

    let (server, _client) = pair();
    let e = accept(server, ServerPolicy::new().tls(false), Some(&tls)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        e.to_string(),
        "the policy says ssl = off but a TLS context was given"
    );

    // Unset: TLS is on because a context is given (an SSLRequest gets 'S').
    let (server, mut client) = pair();
    client.write_all(&pgssl::wire::SSL_REQUEST).unwrap();
    let t = std::thread::spawn(move || {
        let mut reply = [0u8; 1];
        std::io::Read::read_exact(&mut client, &mut reply).unwrap();
        reply[0]
    });
    let _ = accept_with_deadline(
        server,
        ServerPolicy::new(),
        Some(&tls),
        Some(Duration::from_secs(2)),
    );
    assert_eq!(t.join().unwrap(), b'S');
}
