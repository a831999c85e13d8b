//! The server negotiation behind a load balancer: a PROXY protocol header from a trusted proxy
//! before the first packet (docs/proxy-protocol.md, "The server side"). The headers are
//! written by hand, not with the crate's encoder.

use std::net::SocketAddr;

use proptest::prelude::*;

use crate::support::*;
use pgssl::error::ServerError;
use pgssl::server::{
    ProxyNetworks, Reply, ServerNegotiator, ServerOutcome, ServerOutput, ServerPolicy,
};
use pgssl::wire::proxy::{ProxyCommand, ProxyError, ProxyLimits, ProxyVersion};
use pgssl::wire::{GSSENC_REQUEST, SSL_REQUEST};
use pgssl::{Channel, HandshakeInfo, StartTls};

const BALANCER: &str = "127.0.0.5:40000";
const V1: &[u8] = b"PROXY TCP4 192.0.2.10 127.0.0.1 51234 5432\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn policy(peer: &str) -> ServerPolicy {
    ServerPolicy::new()
        .tls(true)
        .peer_addr(addr(peer))
        .proxy_networks(ProxyNetworks::parse_list("127.0.0.5/32, 10.0.0.0/8").unwrap())
}

fn trusted() -> ServerNegotiator {
    ServerNegotiator::new(policy(BALANCER))
}

/// A v2 header: PROXY (or LOCAL) over TCP/IPv4, then `tlvs`.
fn v2(command: u8, src: [u8; 4], sport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(0x11);
    h.extend_from_slice(&(12 + tlvs.len() as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&5432u16.to_be_bytes());
    h.extend_from_slice(tlvs);
    h
}

fn user() -> Vec<u8> {
    startup(&[("user", "alice"), ("database", "db")])
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn refusal(out: &[ServerOutput]) -> ServerError {
    match last(out) {
        ServerOutput::Done(ServerOutcome::Refuse(r)) => {
            // No reply of any kind: nothing a client could take for PostgreSQL's answer.
            assert_eq!(r.response(), None, "{r:?}");
            assert!(transmitted(out).is_empty(), "{out:?}");
            r.error().clone()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn startup_of(out: &[ServerOutput]) -> pgssl::server::Startup {
    match last(out) {
        ServerOutput::Done(ServerOutcome::Startup(s)) => s.clone(),
        other => panic!("expected a startup, got {other:?}"),
    }
}

#[test]
fn without_trusted_networks_a_header_is_a_malformed_packet_as_before() {
    // The feature off: exactly today's behaviour, the packet length 'PROX' refused as
    // PostgreSQL refuses it (logged, no reply).
    let mut off = ServerNegotiator::new(ServerPolicy::new().tls(true).peer_addr(addr(BALANCER)));
    let mut before = ServerNegotiator::new(ServerPolicy::new().tls(true));
    let (n1, out1) = feed(&mut off, V1);
    let (n2, out2) = feed(&mut before, V1);
    assert_eq!((n1, &out1), (n2, &out2));
    match last(&out1) {
        ServerOutput::Done(ServerOutcome::Refuse(r)) => {
            assert_eq!(r.response(), None);
            assert_eq!(r.error().to_string(), "invalid length of startup packet");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn v1_header_then_ssl_request_in_one_read() {
    let mut s = trusted();
    assert_eq!(s.client_addr(), Some(addr(BALANCER)));
    let (n, out) = feed(&mut s, &cat(&[V1, &SSL_REQUEST]));
    assert_eq!(n, V1.len() + 8);
    assert_eq!(
        out,
        vec![
            ServerOutput::Transmit(Reply::SslAccepted),
            ServerOutput::StartTls(StartTls { direct: false })
        ]
    );
    assert_eq!(s.client_addr(), Some(addr("192.0.2.10:51234")));
    let p = s.proxy().expect("the header's facts");
    assert_eq!(p.version(), ProxyVersion::V1);
    assert_eq!(p.command(), ProxyCommand::Proxy);
    assert_eq!(p.destination(), Some(addr("127.0.0.1:5432")));
    assert_eq!(p.header_len(), V1.len());
    s.handle_tls_established(HandshakeInfo::postgresql());
    let (_, out) = feed(&mut s, &user());
    let st = startup_of(&out);
    assert_eq!(st.channel(), Channel::Tls { direct: false });
    assert_eq!(st.client_addr(), Some(addr("192.0.2.10:51234")));
    assert_eq!(
        st.proxy().and_then(|p| p.source()),
        Some(addr("192.0.2.10:51234"))
    );
}

#[test]
fn v2_header_then_plaintext_startup_and_tlvs() {
    let mut t = vec![0x02, 0x00, 10];
    t.extend_from_slice(b"db.example");
    t.extend_from_slice(&[0x05, 0x00, 0x02]);
    t.extend_from_slice(b"id");
    let header = v2(1, [198, 51, 100, 7], 6000, &t);
    let mut s = ServerNegotiator::new(
        ServerPolicy::new()
            .peer_addr(addr("10.1.2.3:999"))
            .proxy_networks(ProxyNetworks::parse_list("10.0.0.0/8").unwrap()),
    );
    let (n, out) = feed(&mut s, &cat(&[&header, &user(), b"Q"]));
    assert_eq!(
        n,
        header.len() + user().len(),
        "the byte after the StartupMessage stays"
    );
    let st = startup_of(&out);
    assert_eq!(st.channel(), Channel::Plaintext);
    assert_eq!(st.client_addr(), Some(addr("198.51.100.7:6000")));
    let p = st.proxy().unwrap();
    assert_eq!(p.version(), ProxyVersion::V2);
    assert_eq!(p.tlvs().authority(), Some(&b"db.example"[..]));
    assert_eq!(p.tlvs().unique_id(), Some(&b"id"[..]));
}

#[test]
fn v2_local_and_v1_unknown_keep_the_peer_address() {
    for header in [v2(0, [0; 4], 0, &[]), b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut s = trusted();
        let (_, out) = feed(&mut s, &cat(&[&header, &user()]));
        let st = startup_of(&out);
        assert_eq!(st.client_addr(), Some(addr(BALANCER)), "{header:?}");
        assert_eq!(st.proxy().unwrap().source(), None);
    }
    let mut s = trusted();
    let _ = feed(&mut s, &v2(0, [0; 4], 0, &[]));
    assert_eq!(s.proxy().unwrap().command(), ProxyCommand::Local);
}

#[test]
fn the_plaintext_refusal_names_the_proxied_client() {
    let mut s = ServerNegotiator::new(policy(BALANCER).refuse_plaintext());
    let (_, out) = feed(&mut s, &cat(&[V1, &user()]));
    let ServerOutput::Done(ServerOutcome::Refuse(r)) = last(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(
        r.response().unwrap().message,
        "no pg_hba.conf entry for host \"192.0.2.10\", user \"alice\", database \"db\", no encryption"
    );
}

#[test]
fn a_trusted_peer_must_send_a_header() {
    let mut s = trusted();
    let (n, out) = feed(&mut s, &SSL_REQUEST);
    assert_eq!(n, 8);
    assert_eq!(
        refusal(&out),
        ServerError::ProxyHeaderMissing {
            peer: Some(addr(BALANCER))
        }
    );
    assert_eq!(
        refusal(&out).to_string(),
        "connection from the trusted proxy at host=127.0.0.5 port=40000 did not begin with a complete PROXY protocol header"
    );
    // Direct SSL without a header too.
    let mut s = trusted();
    let (_, out) = feed(&mut s, CLIENT_HELLO);
    assert!(matches!(
        refusal(&out),
        ServerError::ProxyHeaderMissing { .. }
    ));
}

#[test]
fn a_malformed_header_from_a_trusted_peer_is_refused_without_reply() {
    let cases: &[(&[u8], ProxyError)] = &[
        (
            b"PROXY TCP4 192.0.2.010 127.0.0.1 1 2\r\n",
            ProxyError::InvalidV1 {
                reason: "invalid IPv4 address (expected a dotted quad without leading zeros)",
            },
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            ProxyError::InvalidV1 {
                reason: "line feed without a carriage return",
            },
        ),
    ];
    for (bytes, expected) in cases {
        let mut s = trusted();
        let (n, out) = feed(&mut s, &cat(&[bytes, &SSL_REQUEST]));
        assert_eq!(n, bytes.len() + 8);
        assert_eq!(
            refusal(&out),
            ServerError::ProxyHeader {
                error: expected.clone(),
                peer: Some(addr(BALANCER))
            }
        );
    }
    // v2 UDP: unsupported, named.
    let mut h = v2(1, [1, 2, 3, 4], 1, &[]);
    h[13] = 0x12;
    let mut s = trusted();
    let (_, out) = feed(&mut s, &h);
    assert_eq!(
        refusal(&out).to_string(),
        "PROXY protocol v2 address family UDP over IPv4 (0x12) is not supported (from the trusted proxy at host=127.0.0.5 port=40000)"
    );
}

#[test]
fn a_header_from_an_untrusted_peer_is_refused_without_reply() {
    // Whole headers, or a first read that is a prefix of one (`P`, CR): no packet or TLS
    // record begins so.
    for first in [
        cat(&[V1, &SSL_REQUEST]),
        v2(1, [1, 2, 3, 4], 1, &[]),
        b"P".to_vec(),
        b"\r\n".to_vec(),
    ] {
        let mut s = ServerNegotiator::new(policy("192.0.2.99:1234"));
        let (n, out) = feed(&mut s, &first);
        assert_eq!(n, first.len());
        assert_eq!(
            refusal(&out),
            ServerError::ProxyHeaderUntrusted {
                peer: Some(addr("192.0.2.99:1234"))
            }
        );
        assert_eq!(s.proxy(), None);
        assert_eq!(s.client_addr(), Some(addr("192.0.2.99:1234")));
    }
    // An untrusted peer without a header negotiates as always.
    let mut s = ServerNegotiator::new(policy("192.0.2.99:1234"));
    let (_, out) = feed(&mut s, &SSL_REQUEST);
    assert_eq!(out[0], ServerOutput::Transmit(Reply::SslAccepted));
    // No peer given (a Unix socket): nobody is trusted.
    let mut s = ServerNegotiator::new(
        ServerPolicy::new().proxy_networks(ProxyNetworks::parse_list("0.0.0.0/0").unwrap()),
    );
    let (_, out) = feed(&mut s, V1);
    assert_eq!(
        refusal(&out),
        ServerError::ProxyHeaderUntrusted { peer: None }
    );
}

#[test]
fn an_ipv4_mapped_peer_is_matched_as_ipv4() {
    let mut s = ServerNegotiator::new(policy("[::ffff:127.0.0.5]:40000"));
    let (_, out) = feed(&mut s, &cat(&[V1, &user()]));
    assert_eq!(
        startup_of(&out).client_addr(),
        Some(addr("192.0.2.10:51234"))
    );
}

#[test]
fn stuffing_rules_hold_after_the_header() {
    // Bytes after header + SSLRequest are still stuffing: FATAL 08P01 in plaintext.
    let mut s = trusted();
    let (_, out) = feed(&mut s, &cat(&[V1, &SSL_REQUEST, &user()]));
    match last(&out) {
        ServerOutput::Done(ServerOutcome::Refuse(r)) => {
            assert_eq!(r.error(), &ServerError::UnencryptedDataAfterSslRequest);
            assert!(r.response().is_some());
        }
        other => panic!("{other:?}"),
    }
    // GSSENCRequest then SSLRequest after the header: N, then S.
    let mut s = trusted();
    let (_, out) = feed(&mut s, &cat(&[V1, &GSSENC_REQUEST]));
    assert_eq!(out[0], ServerOutput::Transmit(Reply::GssRejected));
    let (_, out) = feed(&mut s, &SSL_REQUEST);
    assert_eq!(out[0], ServerOutput::Transmit(Reply::SslAccepted));
}

#[test]
fn direct_ssl_after_the_header() {
    let mut s = trusted();
    let header = v2(1, [203, 0, 113, 1], 7, &[]);
    let (n, out) = feed(&mut s, &cat(&[&header, CLIENT_HELLO]));
    assert_eq!(n, header.len(), "the ClientHello is left for TLS");
    assert_eq!(out, vec![ServerOutput::StartTls(StartTls { direct: true })]);
    assert_eq!(s.client_addr(), Some(addr("203.0.113.1:7")));
}

#[test]
fn a_cancel_request_carries_the_client_address() {
    let mut s = trusted();
    let (_, out) = feed(&mut s, &cat(&[V1, &cancel(7, &[1, 2, 3, 4])]));
    match last(&out) {
        ServerOutput::Done(ServerOutcome::Cancel(c)) => {
            assert_eq!(c.client_addr(), Some(addr("192.0.2.10:51234")));
            assert_eq!(c.pid(), 7);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn eof_before_and_inside_the_header() {
    // A balancer's TCP health check: connect, close. Quiet, as a client that sent nothing.
    let mut s = trusted();
    s.handle_eof();
    assert_eq!(refusal(&drain_server(&mut s)), ServerError::ClosedByClient);
    let mut s = trusted();
    let _ = feed(&mut s, &V1[..20]);
    s.handle_eof();
    assert!(matches!(
        refusal(&drain_server(&mut s)),
        ServerError::ProxyHeaderMissing { .. }
    ));
}

#[test]
fn the_v2_length_bound_comes_from_the_policy() {
    let big = v2(
        1,
        [1, 2, 3, 4],
        1,
        &[&[0x04, 0x01, 0x00][..], &[0u8; 256]].concat(),
    );
    let limits = ProxyLimits::new().max_v2_len(100);
    let mut s = ServerNegotiator::new(policy(BALANCER).proxy_limits(limits));
    let (_, out) = feed(&mut s, &big[..16]);
    assert!(matches!(
        refusal(&out),
        ServerError::ProxyHeader {
            error: ProxyError::V2TooLong { len: 271, max: 100 },
            ..
        }
    ));
    // Under the default bound the same header is held, heap-buffered past 256 bytes, and the
    // negotiator never holds more than the header.
    let mut s = trusted();
    for chunk in big.chunks(50) {
        let (n, _) = feed(&mut s, chunk);
        assert_eq!(n, chunk.len());
        assert!(s.buffered_len() <= big.len());
    }
    assert_eq!(s.buffered_len(), 0);
    assert_eq!(s.client_addr(), Some(addr("1.2.3.4:1")));
}

/// Reads exactly `max` each time from `stream`; returns the outputs and the byte count the
/// negotiator had taken when the header's facts first appeared.
fn drive_exact(s: &mut ServerNegotiator, stream: &[u8]) -> (Vec<ServerOutput>, Option<usize>) {
    let mut pos = 0;
    let mut at_header = None;
    loop {
        let out = drain_server(s);
        match last(&out) {
            ServerOutput::NeedInput { max } if pos < stream.len() => {
                let end = (pos + max).min(stream.len());
                let n = s.handle_input(&stream[pos..end]);
                pos += n;
                if n < end - pos + n {
                    // Only a direct SSL ClientHello is left unconsumed, for TLS.
                    let out = drain_server(s);
                    assert_eq!(
                        last(&out),
                        &ServerOutput::StartTls(StartTls { direct: true })
                    );
                    return (out, at_header);
                }
                if at_header.is_none() && s.proxy().is_some() {
                    at_header = Some(pos);
                }
            }
            ServerOutput::StartTls(_) => {
                s.handle_tls_established(HandshakeInfo::postgresql());
            }
            _ => return (out, at_header),
        }
    }
}

fn any_header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(V1.to_vec()),
        Just(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n".to_vec()),
        Just(b"PROXY UNKNOWN whatever\r\n".to_vec()),
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(src, port, noop)| {
                let mut t = vec![0x04];
                t.extend_from_slice(&(noop.len() as u16).to_be_bytes());
                t.extend_from_slice(&noop);
                v2(1, src, port, &t)
            }),
        Just(v2(0, [0; 4], 0, &[])),
    ]
}

fn any_followup() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(cat(&[&SSL_REQUEST, &user()])),
        Just(user()),
        Just(cat(&[&GSSENC_REQUEST, &SSL_REQUEST, &user()])),
        Just(cancel(1, &[9; 4])),
        Just(CLIENT_HELLO.to_vec()),
    ]
}

proptest! {
    /// Reading exactly `max` never takes a byte past the header: when its facts appear, the
    /// negotiator has been given the header and nothing more (a host honouring `max` can hand
    /// what follows to TLS or to its own parser).
    #[test]
    fn need_input_never_reads_past_the_header(header in any_header(), rest in any_followup()) {
        let mut s = trusted();
        let stream = cat(&[&header, &rest]);
        let (_, at_header) = drive_exact(&mut s, &stream);
        prop_assert_eq!(at_header, Some(header.len()));
    }

    /// Split anywhere in the header (in two reads), the outcome is the one of a single read.
    /// (Past the header, where a split falls decides stuffing, as without a header.)
    #[test]
    fn split_in_the_header_same_outcome(header in any_header(), rest in any_followup(), cut in any::<prop::sample::Index>()) {
        let stream = cat(&[&header, &rest]);
        let whole = {
            let mut s = trusted();
            let (n, out) = feed(&mut s, &stream);
            (n, out, s.client_addr(), s.proxy().cloned())
        };
        let cut = cut.index(header.len() + 1);
        let mut s = trusted();
        let (n1, _) = feed(&mut s, &stream[..cut]);
        let (n2, out) = if n1 == cut { feed(&mut s, &stream[cut..]) } else { (0, drain_server(&mut s)) };
        // The outcome and what was consumed agree; a direct SSL ClientHello is left over either way.
        prop_assert_eq!(last(&out), last(&whole.1));
        prop_assert_eq!(n1 + n2, whole.0);
        prop_assert_eq!(s.client_addr(), whole.2);
        prop_assert_eq!(s.proxy().cloned(), whole.3);
    }
}

#[test]
fn split_at_every_byte_exhaustively() {
    for header in [
        V1.to_vec(),
        v2(1, [9, 8, 7, 6], 5, &[0x04, 0x00, 0x01, 0xff]),
    ] {
        let stream = cat(&[&header, &SSL_REQUEST]);
        for cut in 0..=stream.len() {
            let mut s = trusted();
            let (n1, out1) = feed(&mut s, &stream[..cut]);
            assert_eq!(n1, cut);
            let sent = transmitted(&out1);
            let (n2, out) = feed(&mut s, &stream[cut..]);
            assert_eq!(n1 + n2, stream.len(), "cut {cut}");
            assert_eq!([sent, transmitted(&out)].concat(), b"S", "cut {cut}");
            assert_eq!(
                last(&out),
                &ServerOutput::StartTls(StartTls { direct: false })
            );
            assert_ne!(s.client_addr(), Some(addr(BALANCER)));
        }
    }
}
