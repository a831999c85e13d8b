//! Criterion benchmarks of the sans-IO negotiation, all in memory.
//!
//! Each group holds a `baseline`: the least work that touches the same bytes (a
//! `u32::from_be_bytes` parse of the request, a memcpy of the packet), measured in the same run,
//! so that results can be published as ratios to it rather than as absolute times, which
//! depend on the machine. On a shared machine both move from run to run (docs/performance.md has
//! the ranges measured). `scripts/bench.sh` runs this file with short criterion times and prints
//! every median with its ratio to its group's baseline (the one with the same parameter, if the
//! benchmark has one).
//!
//! * `ssl_request`: the server deciding an SSLRequest with TLS on (`S`, then `StartTls`), from a
//!   new `ServerNegotiator`; and `decode_initial` alone on the 8 bytes.
//! * `startup`: `decode_initial` on a StartupMessage as psql sends it; the same packet through a
//!   new `ServerNegotiator` (plaintext allowed) to its `Startup` outcome; and the server side of
//!   a TLS connect (SSLRequest, `S`, handshake reported done, the packet inside TLS).
//! * `cancel_request`: a new `ServerNegotiator` deciding a CancelRequest with a 4-byte key
//!   (protocol 3.0) and a 256-byte key (3.2).
//! * `full_negotiation`: a `ClientNegotiator` (sslmode=prefer, sslnegotiation=postgres) and a
//!   `ServerNegotiator` (TLS on) passing their bytes to each other, both told the TLS handshake
//!   succeeded with ALPN "postgresql", then the client's StartupMessage fed to the server inside
//!   "TLS" up to its `Startup` outcome.
//!
//! Run: `cargo bench --bench negotiation`, or `bash scripts/bench.sh` for the ratios.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pgssl::ClientOutcome;
use pgssl::ServerOutcome;
use pgssl::client::{ClientNegotiator, ClientOutput, SslMode, SslNegotiation};
use pgssl::server::{Reply, ServerNegotiator, ServerOutput, ServerPolicy, Startup};
use pgssl::wire::{
    CANCEL_REQUEST_CODE, Decoded, InitialPacket, MAX_CANCEL_KEY_LEN, ProtocolVersion, SSL_REQUEST,
    SSL_REQUEST_CODE, decode_initial, encode_cancel_request, encode_startup_message,
};
use pgssl::{Channel, HandshakeInfo, StartTls};

/// A StartupMessage as psql 17 sends it: user, database, application_name, client_encoding, and
/// the `datestyle` libpq adds when PGDATESTYLE is set. 97 bytes.
fn psql_startup() -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_startup_message(
        &mut b,
        ProtocolVersion::V3_0,
        [
            ("user", "alice"),
            ("database", "appdb"),
            ("application_name", "psql"),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO, MDY"),
        ],
    );
    b.to_vec()
}

fn cancel_packet(key_len: usize) -> Vec<u8> {
    let key: Vec<u8> = (0..key_len).map(|i| i as u8).collect();
    let mut b = BytesMut::new();
    encode_cancel_request(&mut b, 4242, &key);
    b.to_vec()
}

/// The server's answer to an SSLRequest with TLS on: `S`, then the instruction to start TLS.
fn server_ssl_request(input: &[u8; 8]) -> StartTls {
    let mut neg = ServerNegotiator::new(ServerPolicy::new().tls(true));
    server_ssl_request_on(&mut neg, input)
}

fn server_ssl_request_on(neg: &mut ServerNegotiator, input: &[u8; 8]) -> StartTls {
    let _ = neg.handle_input(input);
    let mut replied = false;
    loop {
        match neg.poll_output() {
            ServerOutput::Transmit(Reply::SslAccepted) => replied = true,
            ServerOutput::StartTls(t) if replied => return t,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A plaintext StartupMessage through a new server negotiator, to its outcome.
fn server_startup(packet: &[u8]) -> Startup {
    let mut neg = ServerNegotiator::new(ServerPolicy::new());
    let _ = neg.handle_input(packet);
    match neg.poll_output() {
        ServerOutput::Done(ServerOutcome::Startup(s)) => s,
        other => panic!("unexpected {other:?}"),
    }
}

/// The server side of a TLS connect: SSLRequest, `S`, the handshake reported done, then the
/// StartupMessage inside TLS to the Startup outcome.
fn server_startup_in_tls(packet: &[u8]) -> Startup {
    let mut neg = ServerNegotiator::new(ServerPolicy::new().tls(true));
    server_ssl_request_on(&mut neg, &SSL_REQUEST);
    neg.handle_tls_established(HandshakeInfo::postgresql());
    let _ = neg.handle_input(packet);
    match neg.poll_output() {
        ServerOutput::Done(ServerOutcome::Startup(s)) => s,
        other => panic!("unexpected {other:?}"),
    }
}

/// A CancelRequest through a new server negotiator: its pid.
fn server_cancel(packet: &[u8]) -> u32 {
    let mut neg = ServerNegotiator::new(ServerPolicy::new().tls(true));
    let _ = neg.handle_input(packet);
    match neg.poll_output() {
        ServerOutput::Done(ServerOutcome::Cancel(c)) => c.pid(),
        other => panic!("unexpected {other:?}"),
    }
}

/// A whole connect, client and server in memory: SSLRequest, `S`, both TLS handshakes reported
/// done, the StartupMessage inside "TLS", the server's Startup outcome.
fn full_negotiation(startup: &[u8]) -> Startup {
    let mut client = ClientNegotiator::with_mode(SslMode::Prefer, SslNegotiation::Postgres);
    let mut server = ServerNegotiator::new(ServerPolicy::new().tls(true));
    let mut client_tls = false;
    let mut server_tls = false;
    loop {
        match client.poll_output() {
            ClientOutput::Connect(_) => {}
            ClientOutput::Transmit(bytes) => {
                let n = server.handle_input(bytes);
                debug_assert_eq!(n, bytes.len());
                // Drain the server: its reply goes to the client.
                loop {
                    match server.poll_output() {
                        ServerOutput::Transmit(reply) => {
                            let n = client.handle_input(reply.as_bytes());
                            debug_assert_eq!(n, 1);
                        }
                        ServerOutput::StartTls(t) if !t.direct && !server_tls => {
                            server.handle_tls_established(HandshakeInfo::postgresql());
                            server_tls = true;
                        }
                        ServerOutput::NeedInput { .. } => break,
                        other => panic!("server: unexpected {other:?}"),
                    }
                }
            }
            ClientOutput::NeedInput { .. } => panic!("client waits for a reply never sent"),
            ClientOutput::StartTls(t) if !t.direct && !client_tls => {
                client.handle_tls_established(HandshakeInfo::postgresql());
                client_tls = true;
            }
            ClientOutput::Done(ClientOutcome::Ready(Channel::Tls { direct: false })) => break,
            other => panic!("client: unexpected {other:?}"),
        }
    }
    let n = server.handle_input(startup);
    debug_assert_eq!(n, startup.len());
    match server.poll_output() {
        ServerOutput::Done(ServerOutcome::Startup(s)) => s,
        other => panic!("server: unexpected {other:?}"),
    }
}

fn ssl_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("ssl_request");
    g.bench_function("baseline", |b| {
        // Read the length and the code, and compare: the least any server does.
        b.iter(|| {
            let p: &[u8; 8] = black_box(&SSL_REQUEST);
            let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
            let code = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            len == 8 && code == SSL_REQUEST_CODE
        })
    });
    g.bench_function("decode_initial", |b| {
        b.iter(|| {
            matches!(
                decode_initial(black_box(&SSL_REQUEST), true),
                Ok(Decoded::Complete(InitialPacket::SslRequest, 8))
            )
        })
    });
    g.bench_function("server_to_start_tls", |b| {
        b.iter(|| server_ssl_request(black_box(&SSL_REQUEST)))
    });
    g.finish();
}

fn startup(c: &mut Criterion) {
    let packet = psql_startup();
    let mut g = c.benchmark_group("startup");
    g.bench_function("baseline", |b| {
        // memcpy of the packet into a buffer allocated once.
        let mut dst = vec![0u8; packet.len()];
        b.iter(|| {
            dst.copy_from_slice(black_box(&packet));
            black_box(&mut dst);
        })
    });
    g.bench_function("decode_initial", |b| {
        b.iter(|| match decode_initial(black_box(&packet), false) {
            Ok(Decoded::Complete(InitialPacket::Startup(m), n)) => (m.version(), n),
            other => panic!("unexpected {other:?}"),
        })
    });
    g.bench_function("server_to_startup", |b| {
        b.iter(|| server_startup(black_box(&packet)))
    });
    g.bench_function("server_ssl_request_then_startup_in_tls", |b| {
        b.iter(|| server_startup_in_tls(black_box(&packet)))
    });
    g.finish();
}

fn cancel_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("cancel_request");
    for key_len in [4, MAX_CANCEL_KEY_LEN] {
        let packet = cancel_packet(key_len);
        g.bench_with_input(BenchmarkId::new("baseline", key_len), &packet, |b, p| {
            // Read length, code and pid, and copy the key out, as the owned outcome does.
            b.iter(|| {
                let p: &[u8] = black_box(p);
                let be = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
                let (len, code, pid) = (be(0) as usize, be(4), be(8));
                assert!(len == p.len() && code == CANCEL_REQUEST_CODE);
                let mut key = [0u8; MAX_CANCEL_KEY_LEN];
                key[..len - 12].copy_from_slice(&p[12..len]);
                (pid, key)
            })
        });
        g.bench_with_input(BenchmarkId::new("server", key_len), &packet, |b, p| {
            b.iter(|| server_cancel(black_box(p)))
        });
    }
    g.finish();
}

fn full(c: &mut Criterion) {
    let startup = psql_startup();
    let s = full_negotiation(&startup);
    assert_eq!(s.channel(), Channel::Tls { direct: false });
    assert_eq!(s.packet(), &startup[..]);

    let mut g = c.benchmark_group("full_negotiation");
    g.bench_function("baseline", |b| {
        // memcpy of every byte that crosses: the SSLRequest, `S`, and the StartupMessage.
        let mut dst = vec![0u8; 8 + 1 + startup.len()];
        b.iter(|| {
            dst[..8].copy_from_slice(black_box(&SSL_REQUEST));
            dst[8..9].copy_from_slice(black_box(b"S"));
            dst[9..].copy_from_slice(black_box(&startup));
            black_box(&mut dst);
        })
    });
    g.bench_function("prefer_postgres_tls", |b| {
        b.iter(|| full_negotiation(black_box(&startup)))
    });
    g.finish();
}

criterion_group!(benches, ssl_request, startup, cancel_request, full);
criterion_main!(benches);
