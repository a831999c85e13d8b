//! The blocking adapter's deadline: a client that connects and sends nothing, or trickles its
//! bytes, cannot hold the negotiation past it.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use pgssl::io::blocking::{Accepted, TIMEOUT_MESSAGE, accept_with_deadline};
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
        Accepted::Startup { startup, .. } => assert_eq!(startup.user(), "u"),
        other => panic!("{other:?}"),
    }
}
