//! Heap allocations on the server's negotiation paths, counted with a counting global allocator
//! (the `allocation-counter` crate, which counts per thread, so the test harness's other threads
//! do not disturb the counts).
//!
//! The SSLRequest, GSSENCRequest and CancelRequest paths must not allocate at all, whether the
//! packet arrives in one chunk or byte by byte: a server that answers many of them (or a
//! pooler in front of one) should not touch the allocator for them. The StartupMessage paths
//! allocate a little (the owned packet handed to the host); their counts are printed and bounded
//! from above.
//!
//! Every measured section runs the whole connection: `ServerNegotiator::new`, every
//! `handle_*` call, and draining `poll_output` after each, up to the outcome. The input bytes
//! are built before the section. No logger is installed, as in `log`'s default, so the `log`
//! macros do not format anything.
//!
//! Decoding a PROXY protocol header (`wire::proxy`) must not allocate either.
//!
//! Run with `cargo test --test allocations -- --nocapture` to see the counts.

use allocation_counter::{AllocationInfo, measure};
use bytes::BytesMut;
use pgssl::ServerOutcome;
use pgssl::server::{Reply, ServerNegotiator, ServerOutput, ServerPolicy};
use pgssl::wire::{
    GSSENC_REQUEST, ProtocolVersion, SSL_REQUEST, encode_cancel_request, encode_startup_message,
};
use pgssl::{Channel, HandshakeInfo};

/// How the bytes of one packet are handed to `handle_input`.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// The whole packet in one call.
    OneChunk,
    /// One byte per call.
    ByteByByte,
}

impl Split {
    fn chunks(self, packet: &[u8]) -> std::slice::Chunks<'_, u8> {
        match self {
            Split::OneChunk => packet.chunks(packet.len()),
            Split::ByteByByte => packet.chunks(1),
        }
    }
}

/// Feeds `packet` to `neg` as `split` says, draining `poll_output` after every call, and
/// returns the first output that is not `NeedInput` (`NeedInput` itself if the packet is not
/// decided yet). Transmits are collected in `sent`.
fn feed(
    neg: &mut ServerNegotiator,
    packet: &[u8],
    split: Split,
    sent: &mut Vec<Reply>,
) -> ServerOutput {
    let mut last = ServerOutput::NeedInput { max: 0 };
    for chunk in split.chunks(packet) {
        let consumed = neg.handle_input(chunk);
        assert_eq!(
            consumed,
            chunk.len(),
            "the negotiator consumes the whole packet"
        );
        last = drain(neg, sent);
    }
    last
}

/// Drains `poll_output` until it asks for input or returns anything but a reply.
fn drain(neg: &mut ServerNegotiator, sent: &mut Vec<Reply>) -> ServerOutput {
    loop {
        match neg.poll_output() {
            ServerOutput::Transmit(reply) => sent.push(reply),
            other => return other,
        }
    }
}

/// Runs `f` with allocation counting and prints the count under `name`.
fn count(name: &str, f: impl FnOnce()) -> AllocationInfo {
    let info = measure(f);
    println!(
        "{name:<58} {:>2} allocations, {:>5} bytes",
        info.count_total, info.bytes_total
    );
    info
}

fn cancel_packet(key_len: usize) -> Vec<u8> {
    let mut b = BytesMut::new();
    let key: Vec<u8> = (0..key_len).map(|i| i as u8).collect();
    encode_cancel_request(&mut b, 4242, &key);
    b.to_vec()
}

/// A StartupMessage as psql 17 sends it (libpq adds `datestyle` when PGDATESTYLE is set), 97
/// bytes; with `long_options`, also an `options` parameter that takes it past the 268 bytes the
/// negotiator assembles inline, so that a split packet goes through its heap buffer.
fn startup_packet(long_options: bool) -> Vec<u8> {
    let options = "-c search_path=app,public -c statement_timeout=30s ".repeat(5);
    let mut params = vec![
        ("user", "alice"),
        ("database", "appdb"),
        ("application_name", "psql"),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
    ];
    if long_options {
        params.push(("options", options.trim_end()));
    }
    let mut b = BytesMut::new();
    encode_startup_message(&mut b, ProtocolVersion::V3_0, params);
    b.to_vec()
}

/// Every request path that must not allocate, in one or in many chunks. The replies are
/// collected into a `Vec` created with capacity outside the measured section, so that the
/// collecting does not count either.
#[test]
fn request_paths_do_not_allocate() {
    // The counter is live: a zero below means no allocation, not a counter that is not there.
    let boxed = measure(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!((boxed.count_total, boxed.bytes_total), (1, 8));

    let cancel4 = cancel_packet(4);
    let cancel256 = cancel_packet(256);
    assert_eq!((cancel4.len(), cancel256.len()), (16, 268));

    for split in [Split::OneChunk, Split::ByteByByte] {
        // SSLRequest, TLS available: 'S', then StartTls.
        let mut sent = Vec::with_capacity(4);
        let mut out = None;
        let info = count(
            &format!("SSLRequest, tls on ('S', StartTls), {split:?}"),
            || {
                let mut neg = ServerNegotiator::new(ServerPolicy::new().tls(true));
                out = Some(feed(&mut neg, &SSL_REQUEST, split, &mut sent));
            },
        );
        assert!(
            matches!(out, Some(ServerOutput::StartTls(t)) if !t.direct),
            "{out:?}"
        );
        assert_eq!(sent, [Reply::SslAccepted]);
        assert_eq!(info.count_total, 0, "SSLRequest, tls on, {split:?}");

        // SSLRequest, TLS off: 'N', then the negotiator waits for the plaintext StartupMessage.
        let mut sent = Vec::with_capacity(4);
        let mut out = None;
        let info = count(&format!("SSLRequest, tls off ('N'), {split:?}"), || {
            let mut neg = ServerNegotiator::new(ServerPolicy::new());
            out = Some(feed(&mut neg, &SSL_REQUEST, split, &mut sent));
        });
        assert!(
            matches!(out, Some(ServerOutput::NeedInput { max: 8 })),
            "{out:?}"
        );
        assert_eq!(sent, [Reply::SslRejected]);
        assert_eq!(info.count_total, 0, "SSLRequest, tls off, {split:?}");

        // GSSENCRequest: 'N' (pgssl never does GSS encryption).
        let mut sent = Vec::with_capacity(4);
        let mut out = None;
        let info = count(&format!("GSSENCRequest ('N'), {split:?}"), || {
            let mut neg = ServerNegotiator::new(ServerPolicy::new().tls(true));
            out = Some(feed(&mut neg, &GSSENC_REQUEST, split, &mut sent));
        });
        assert!(
            matches!(out, Some(ServerOutput::NeedInput { max: 8 })),
            "{out:?}"
        );
        assert_eq!(sent, [Reply::GssRejected]);
        assert_eq!(info.count_total, 0, "GSSENCRequest, {split:?}");

        // CancelRequest with a 4-byte key (protocol 3.0) and a 256-byte key (3.2, the largest).
        for packet in [&cancel4, &cancel256] {
            let key_len = packet.len() - 12;
            let mut sent = Vec::with_capacity(4);
            let mut out = None;
            let info = count(
                &format!("CancelRequest, {key_len}-byte key, {split:?}"),
                || {
                    let mut neg = ServerNegotiator::new(ServerPolicy::new().tls(true));
                    out = Some(feed(&mut neg, packet, split, &mut sent));
                },
            );
            match out {
                Some(ServerOutput::Done(ServerOutcome::Cancel(c))) => {
                    assert_eq!((c.pid(), c.key()), (4242, &packet[12..]));
                    assert_eq!(c.channel(), Channel::Plaintext);
                }
                other => panic!("{other:?}"),
            }
            assert!(sent.is_empty());
            assert_eq!(
                info.count_total, 0,
                "CancelRequest, {key_len}-byte key, {split:?}"
            );
        }
    }
}

/// The StartupMessage paths allocate; the counts are bounded by what was measured when this test
/// was written (pgssl 0.1.0, bytes 1.12), so that a change that adds an allocation fails here.
///
/// Where the allocations come from:
///
/// * the owned packet that `Startup::packet` hands to the host: ONE allocation. A packet decoded
///   in place (one chunk), or assembled in the negotiator's inline buffer (split, up to 268
///   bytes), is copied once with `Bytes::copy_from_slice`. A longer split packet is assembled in
///   a `Vec` sized from its length word (one allocation, turned into `Bytes` without copying),
///   and `Bytes::clone` then allocates the shared header for that buffer: TWO allocations.
/// * nothing else: the user and database names for the plaintext refusal are only built when
///   the policy refuses plaintext, so plaintext and TLS cost the same.
#[test]
fn startup_paths_allocate_little() {
    let psql = startup_packet(false);
    let long = startup_packet(true);
    assert_eq!(psql.len(), 97);
    assert!(long.len() > 268, "{}", long.len());

    // (packet, split, bound inside TLS, bound in plaintext)
    let cases = [
        ("97-byte", &psql, Split::OneChunk, 1, 1),
        ("97-byte", &psql, Split::ByteByByte, 1, 1),
        ("long", &long, Split::OneChunk, 1, 1),
        ("long", &long, Split::ByteByByte, 2, 2),
    ];
    for (size, startup, split, tls_bound, plain_bound) in cases {
        let name = format!("SSLRequest + {size} StartupMessage inside TLS, {split:?}");
        let mut sent = Vec::with_capacity(4);
        let mut out = None;
        let info = count(&name, || {
            let mut neg = ServerNegotiator::new(ServerPolicy::new().tls(true));
            let tls = feed(&mut neg, &SSL_REQUEST, Split::OneChunk, &mut sent);
            assert!(matches!(tls, ServerOutput::StartTls(_)));
            neg.handle_tls_established(HandshakeInfo::postgresql());
            out = Some(feed(&mut neg, startup, split, &mut sent));
        });
        match &out {
            Some(ServerOutput::Done(ServerOutcome::Startup(s))) => {
                assert_eq!(s.user_lossy(), "alice");
                assert_eq!(s.channel(), Channel::Tls { direct: false });
                assert_eq!(s.packet(), &startup[..]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sent, [Reply::SslAccepted]);
        assert!(
            info.count_total <= tls_bound,
            "{name}: {} allocations, at most {tls_bound} expected",
            info.count_total
        );

        let name = format!("{size} StartupMessage in plaintext, {split:?}");
        let mut sent = Vec::with_capacity(4);
        let mut out = None;
        let info = count(&name, || {
            let mut neg = ServerNegotiator::new(ServerPolicy::new());
            out = Some(feed(&mut neg, startup, split, &mut sent));
        });
        match &out {
            Some(ServerOutput::Done(ServerOutcome::Startup(s))) => {
                assert_eq!(s.database_lossy(), "appdb");
                assert_eq!(s.channel(), Channel::Plaintext);
                assert_eq!(s.packet(), &startup[..]);
            }
            other => panic!("{other:?}"),
        }
        assert!(sent.is_empty());
        assert!(
            info.count_total <= plain_bound,
            "{name}: {} allocations, at most {plain_bound} expected",
            info.count_total
        );
    }
}

/// Decoding a PROXY protocol header does not allocate: a v2 header with addresses, TLVs (an SSL
/// TLV with sub-TLVs among them) and a CRC32C, read whole, split byte by byte, and its TLVs
/// walked; and a v1 header.
#[test]
fn proxy_headers_decode_without_allocating() {
    use pgssl::wire::Decoded;
    use pgssl::wire::proxy::{
        ProxyCommand, ProxyLimits, Tlv, decode_proxy_header, encode_proxy_v1, encode_proxy_v2,
        tlv_type,
    };

    let src = "192.0.2.1:56324".parse().unwrap();
    let dst = "10.0.0.2:5432".parse().unwrap();
    let ssl = b"\x03\x00\x00\x00\x00\x21\x00\x07TLSv1.3\x22\x00\x05alice";
    let mut v2 = BytesMut::new();
    encode_proxy_v2(
        &mut v2,
        ProxyCommand::Proxy,
        Some((src, dst)),
        &[
            (tlv_type::ALPN, b"postgresql"),
            (tlv_type::AUTHORITY, b"db.example.com"),
            (tlv_type::UNIQUE_ID, &[7; 32]),
            (tlv_type::SSL, ssl),
        ],
        true,
    );
    let mut v1 = BytesMut::new();
    encode_proxy_v1(&mut v1, src, dst);
    let limits = ProxyLimits::default();

    for (name, header) in [("v2 with TLVs and CRC32C", &v2), ("v1 TCP4", &v1)] {
        let mut seen = 0;
        let info = count(&format!("PROXY {name}, whole and byte by byte"), || {
            for k in 0..header.len() {
                assert!(matches!(
                    decode_proxy_header(&header[..k], &limits),
                    Ok(Decoded::Partial(_))
                ));
            }
            match decode_proxy_header(header, &limits) {
                Ok(Decoded::Complete(h, n)) => {
                    assert_eq!(n, header.len());
                    assert_eq!(h.addresses, Some((src, dst)));
                    for t in h.tlvs {
                        seen += 1;
                        if let Tlv::Ssl(s) = t {
                            assert_eq!(s.cn(), Some(&b"alice"[..]));
                            seen += s.sub_tlvs().count();
                        }
                    }
                }
                other => panic!("{other:?}"),
            }
        });
        assert_eq!(info.count_total, 0, "{name}");
        assert_eq!(seen, if header == &v2 { 7 } else { 0 });
    }
}

/// A trusted proxy's header (v1, and v2 without TLVs, as HAProxy's `send-proxy-v2` sends it)
/// followed by an SSLRequest: the negotiator reads the header, takes the client's address and
/// answers 'S' without allocating, in one chunk or byte by byte.
#[test]
fn proxy_header_then_ssl_request_does_not_allocate() {
    use pgssl::server::ProxyNetworks;
    use pgssl::wire::proxy::{ProxyCommand, encode_proxy_v1, encode_proxy_v2};

    let src = "192.0.2.1:56324".parse().unwrap();
    let dst = "10.0.0.2:5432".parse().unwrap();
    let policy = ServerPolicy::new()
        .tls(true)
        .peer_addr("127.0.0.5:40000".parse().unwrap())
        .proxy_networks(ProxyNetworks::parse_list("127.0.0.0/8").unwrap());
    let mut v1 = BytesMut::new();
    encode_proxy_v1(&mut v1, src, dst);
    let mut v2 = BytesMut::new();
    encode_proxy_v2(&mut v2, ProxyCommand::Proxy, Some((src, dst)), &[], false);
    for (name, header) in [("v1", v1), ("v2", v2)] {
        let stream = [&header[..], &SSL_REQUEST[..]].concat();
        for split in [Split::OneChunk, Split::ByteByByte] {
            let mut sent = Vec::with_capacity(4);
            let mut client = None;
            let info = count(&format!("PROXY {name} + SSLRequest, {split:?}"), || {
                let mut neg = ServerNegotiator::new(policy.clone());
                let out = feed(&mut neg, &stream, split, &mut sent);
                assert!(matches!(out, ServerOutput::StartTls(_)), "{out:?}");
                client = neg.client_addr();
            });
            assert_eq!(info.count_total, 0, "{name} {split:?}");
            assert_eq!(sent, [Reply::SslAccepted]);
            assert_eq!(client, Some(src));
        }
    }
}
