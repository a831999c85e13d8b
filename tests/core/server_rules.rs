//! The server side's rules (CONFORMANCE §1), one test per rule, named after it.

use crate::support;

use pgssl::ServerOutcome;
use pgssl::error::{DecodeError, MITM_DETAIL, ServerError};
use pgssl::server::{NegotiationEvent, Reply, ServerNegotiator, ServerOutput, ServerPolicy};
use pgssl::wire::{
    self, CANCEL_REQUEST_CODE, ErrorResponse, GSSENC_REQUEST, GSSENC_REQUEST_CODE, ProtocolVersion,
    SSL_REQUEST, SSL_REQUEST_CODE,
};
use pgssl::{Channel, HandshakeInfo, StartTls};
use support::*;

fn tls_on() -> ServerNegotiator {
    ServerNegotiator::new(ServerPolicy::new().tls(true))
}

fn tls_off() -> ServerNegotiator {
    ServerNegotiator::new(ServerPolicy::new())
}

fn user() -> Vec<u8> {
    startup(&[("user", "alice"), ("database", "db")])
}

/// Brings a negotiator through SSLRequest and a successful handshake.
fn through_tls(s: &mut ServerNegotiator) {
    let (_, out) = feed(s, &SSL_REQUEST);
    assert_eq!(
        out,
        vec![
            ServerOutput::Transmit(Reply::SslAccepted),
            ServerOutput::StartTls(StartTls { direct: false })
        ]
    );
    s.handle_tls_established(HandshakeInfo::postgresql());
    assert_eq!(s.channel(), Channel::Tls { direct: false });
}

fn refusal(out: &[ServerOutput]) -> (ServerError, Option<ErrorResponse>, Channel) {
    match last(out) {
        ServerOutput::Done(ServerOutcome::Refuse(r)) => {
            (r.error().clone(), r.response(), r.channel())
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn expect_startup(out: &[ServerOutput]) -> pgssl::server::Startup {
    match last(out) {
        ServerOutput::Done(ServerOutcome::Startup(s)) => s.clone(),
        other => panic!("expected a startup, got {other:?}"),
    }
}

#[test]
fn ssl_request_is_answered_s_when_tls_is_available() {
    let mut s = tls_on();
    assert_eq!(s.poll_output(), ServerOutput::NeedInput { max: 8 });
    through_tls(&mut s);
    let (n, out) = feed(&mut s, &user());
    assert_eq!(n, user().len());
    let st = expect_startup(&out);
    assert_eq!(st.channel(), Channel::Tls { direct: false });
    assert_eq!(st.user_lossy(), "alice");
    assert_eq!(
        s.events().collect::<Vec<_>>(),
        [NegotiationEvent::SslRequestAccepted]
    );
}

#[test]
fn ssl_request_is_answered_n_without_tls_and_plaintext_follows() {
    let mut s = tls_off();
    let (n, out) = feed(&mut s, &SSL_REQUEST);
    assert_eq!(n, 8);
    assert_eq!(transmitted(&out), b"N");
    assert_eq!(last(&out), &ServerOutput::NeedInput { max: 8 });
    let (_, out) = feed(&mut s, &user());
    assert_eq!(expect_startup(&out).channel(), Channel::Plaintext);
    assert_eq!(
        s.events().collect::<Vec<_>>(),
        [NegotiationEvent::SslRequestRejected]
    );
}

#[test]
fn buffer_stuffing_ssl_request_and_startup_in_one_chunk_is_refused() {
    for mut s in [tls_on(), tls_off()] {
        let mut chunk = SSL_REQUEST.to_vec();
        chunk.extend_from_slice(&user());
        let (n, out) = feed(&mut s, &chunk);
        assert_eq!(
            n,
            chunk.len(),
            "the stuffed bytes are consumed, never handed on"
        );
        // No 'S' (or 'N') goes out: the refusal is sent at once, in plaintext.
        assert!(transmitted(&out).is_empty());
        let (err, resp, channel) = refusal(&out);
        assert_eq!(err, ServerError::UnencryptedDataAfterSslRequest);
        assert_eq!(channel, Channel::Plaintext);
        let resp = resp.expect("FATAL is sent");
        assert_eq!(resp.code, "08P01");
        assert_eq!(resp.message, "received unencrypted data after SSL request");
        assert_eq!(resp.detail.as_deref(), Some(MITM_DETAIL));
        assert_eq!(
            resp.detail.as_deref(),
            Some(
                "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."
            )
        );
    }
}

#[test]
fn buffer_stuffing_after_s_before_the_handshake_is_refused() {
    let mut s = tls_on();
    let (_, out) = feed(&mut s, &SSL_REQUEST);
    assert_eq!(transmitted(&out), b"S");
    // A host that reads again before starting TLS hands the negotiator plaintext.
    let (n, out) = feed(&mut s, b"Q\0\0\0\x05x");
    assert_eq!(n, 6);
    assert_eq!(refusal(&out).0, ServerError::UnencryptedDataAfterSslRequest);
}

#[test]
fn buffer_stuffing_after_gssenc_request_is_refused() {
    let mut s = tls_on();
    let mut chunk = GSSENC_REQUEST.to_vec();
    chunk.extend_from_slice(&SSL_REQUEST);
    let (_, out) = feed(&mut s, &chunk);
    let (err, resp, _) = refusal(&out);
    assert_eq!(err, ServerError::UnencryptedDataAfterGssRequest);
    let resp = resp.unwrap();
    assert_eq!(
        resp.message,
        "received unencrypted data after GSSAPI encryption request"
    );
    assert_eq!(
        (resp.code.as_str(), resp.detail.as_deref()),
        ("08P01", Some(MITM_DETAIL))
    );
}

#[test]
fn gssenc_request_is_always_declined() {
    let mut s = tls_on();
    let (_, out) = feed(&mut s, &GSSENC_REQUEST);
    assert_eq!(transmitted(&out), b"N");
    assert_eq!(last(&out), &ServerOutput::NeedInput { max: 8 });
    assert_eq!(
        s.events().collect::<Vec<_>>(),
        [NegotiationEvent::GssEncRequestRejected]
    );
}

#[test]
fn ssl_request_after_declined_gssenc_request_is_answered() {
    let mut s = tls_on();
    feed(&mut s, &GSSENC_REQUEST);
    let (_, out) = feed(&mut s, &SSL_REQUEST);
    assert_eq!(transmitted(&out), b"S");
    assert_eq!(
        last(&out),
        &ServerOutput::StartTls(StartTls { direct: false })
    );
}

#[test]
fn gssenc_request_after_refused_ssl_request_is_still_answered() {
    let mut s = tls_off();
    feed(&mut s, &SSL_REQUEST);
    let (_, out) = feed(&mut s, &GSSENC_REQUEST);
    assert_eq!(transmitted(&out), b"N");
    assert_eq!(
        s.events().collect::<Vec<_>>(),
        [
            NegotiationEvent::SslRequestRejected,
            NegotiationEvent::GssEncRequestRejected
        ]
    );
}

fn assert_unsupported(out: &[ServerOutput], code: &str, channel: Channel) {
    let (err, resp, ch) = refusal(out);
    let resp = resp.expect("FATAL is sent");
    assert_eq!(resp.code, "0A000");
    assert_eq!(
        resp.message,
        format!("unsupported frontend protocol {code}: server supports 3.0 to 3.2")
    );
    assert!(matches!(
        err,
        ServerError::Packet(DecodeError::UnsupportedProtocol { .. })
    ));
    assert_eq!(ch, channel);
}

#[test]
fn second_ssl_request_is_an_unsupported_protocol() {
    let mut s = tls_off();
    feed(&mut s, &SSL_REQUEST);
    let (_, out) = feed(&mut s, &SSL_REQUEST);
    assert_unsupported(&out, "1234.5679", Channel::Plaintext);
}

#[test]
fn second_gssenc_request_is_an_unsupported_protocol() {
    let mut s = tls_off();
    feed(&mut s, &GSSENC_REQUEST);
    let (_, out) = feed(&mut s, &GSSENC_REQUEST);
    assert_unsupported(&out, "1234.5680", Channel::Plaintext);
}

#[test]
fn ssl_request_inside_tls_is_an_unsupported_protocol() {
    let mut s = tls_on();
    through_tls(&mut s);
    let (_, out) = feed(&mut s, &SSL_REQUEST);
    // The FATAL goes out through TLS.
    assert_unsupported(&out, "1234.5679", Channel::Tls { direct: false });
}

#[test]
fn gssenc_request_inside_tls_is_an_unsupported_protocol() {
    let mut s = tls_on();
    through_tls(&mut s);
    let (_, out) = feed(&mut s, &GSSENC_REQUEST);
    assert_unsupported(&out, "1234.5680", Channel::Tls { direct: false });
}

#[test]
fn requests_inside_direct_tls_are_unsupported_protocols() {
    for (req, code) in [(SSL_REQUEST, "1234.5679"), (GSSENC_REQUEST, "1234.5680")] {
        let mut s = tls_on();
        let (n, _) = feed(&mut s, CLIENT_HELLO);
        assert_eq!(n, 0);
        s.handle_tls_established(HandshakeInfo::postgresql());
        let (_, out) = feed(&mut s, &req);
        assert_unsupported(&out, code, Channel::Tls { direct: true });
    }
}

#[test]
fn cancel_request_in_plaintext_is_never_answered() {
    let mut s = tls_on();
    let (n, out) = feed(&mut s, &cancel(4242, &[1, 2, 3, 4]));
    assert_eq!(n, 16);
    assert!(transmitted(&out).is_empty());
    match last(&out) {
        ServerOutput::Done(ServerOutcome::Cancel(c)) => {
            assert_eq!(
                (c.pid(), c.key(), c.channel()),
                (4242, &[1, 2, 3, 4][..], Channel::Plaintext)
            );
            assert_eq!(c.key_i32(), Some(0x0102_0304));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.poll_output(),
        ServerOutput::Done(ServerOutcome::Cancel(_))
    ));
}

#[test]
fn cancel_request_with_a_protocol_3_2_key_inside_tls() {
    let mut s = tls_on();
    through_tls(&mut s);
    let key: Vec<u8> = (0..=255).collect();
    let (_, out) = feed(&mut s, &cancel(7, &key));
    match last(&out) {
        ServerOutput::Done(ServerOutcome::Cancel(c)) => {
            assert_eq!(c.key(), &key[..]);
            assert_eq!(c.key_i32(), None, "a 3.2 key is not an i32");
            assert_eq!(c.channel(), Channel::Tls { direct: false });
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancel_request_lengths_are_checked_and_closed_silently() {
    let cases: [(Vec<u8>, &str); 3] = [
        (
            packet(CANCEL_REQUEST_CODE, &[]),
            "invalid length of cancel request packet",
        ),
        (
            packet(CANCEL_REQUEST_CODE, &1u32.to_be_bytes()),
            "invalid length of cancel key in cancel request packet",
        ),
        (
            packet(
                CANCEL_REQUEST_CODE,
                &[&1u32.to_be_bytes()[..], &[0; 257]].concat(),
            ),
            "invalid length of cancel key in cancel request packet",
        ),
    ];
    for (p, text) in cases {
        let mut s = tls_on();
        let (_, out) = feed(&mut s, &p);
        let (err, resp, _) = refusal(&out);
        assert_eq!(err.to_string(), text);
        assert!(
            resp.is_none(),
            "PostgreSQL sends nothing back for a bad cancel request"
        );
    }
}

#[test]
fn startup_packet_length_bounds() {
    for bad in [0u32, 4, 7, 10_005, 0x7fff_ffff] {
        let mut s = tls_on();
        let (_, out) = feed(&mut s, &bad.to_be_bytes());
        let (err, resp, _) = refusal(&out);
        assert_eq!(err.to_string(), "invalid length of startup packet");
        assert_eq!(err.sqlstate(), "08P01");
        assert!(resp.is_none(), "logged, closed with no reply");
    }
    // The largest valid packet: 10004 bytes.
    let filler = "x".repeat(10_004 - 8 - "user\0alice\0application_name\0\0\0".len());
    let big = startup(&[("user", "alice"), ("application_name", &filler)]);
    assert_eq!(big.len(), 10_004);
    let mut s = tls_off();
    let (_, out) = feed(&mut s, &big);
    assert_eq!(expect_startup(&out).packet().len(), 10_004);
}

#[test]
fn incomplete_startup_packet_is_closed_without_reply() {
    let mut s = tls_off();
    let p = user();
    let (n, out) = feed(&mut s, &p[..p.len() - 1]);
    assert_eq!(n, p.len() - 1);
    assert_eq!(last(&out), &ServerOutput::NeedInput { max: 1 });
    s.handle_eof();
    let out = drain_server(&mut s);
    let (err, resp, _) = refusal(&out);
    assert_eq!(err, ServerError::IncompletePacket);
    assert_eq!(err.to_string(), "incomplete startup packet");
    assert!(resp.is_none());
}

#[test]
fn eof_before_any_byte_closes_silently() {
    let mut s = tls_on();
    s.handle_eof();
    let out = drain_server(&mut s);
    let (err, resp, _) = refusal(&out);
    assert_eq!(err, ServerError::ClosedByClient);
    assert!(resp.is_none());
}

#[test]
fn only_the_first_int32_is_inspected_for_request_codes() {
    let mut s = tls_on();
    let (n, out) = feed(&mut s, &packet(SSL_REQUEST_CODE, b"ignored body"));
    assert_eq!(n, 20);
    assert_eq!(transmitted(&out), b"S");
    let mut s = tls_on();
    let (_, out) = feed(&mut s, &packet(GSSENC_REQUEST_CODE, &[0; 100]));
    assert_eq!(transmitted(&out), b"N");
}

#[test]
fn startup_layout_needs_a_terminator_as_last_byte() {
    let mut s = tls_off();
    let (_, out) = feed(
        &mut s,
        &packet(ProtocolVersion::V3_0.as_u32(), b"user\0alice\0"),
    );
    let (_, resp, _) = refusal(&out);
    let resp = resp.unwrap();
    assert_eq!(
        (resp.code.as_str(), resp.message.as_str()),
        (
            "08P01",
            "invalid startup packet layout: expected terminator as last byte"
        )
    );
}

#[test]
fn unsupported_major_protocol_version_is_fatal() {
    for (v, text) in [
        (ProtocolVersion::new(2, 0), "2.0"),
        (ProtocolVersion::new(4, 1), "4.1"),
    ] {
        let mut s = tls_off();
        let (_, out) = feed(&mut s, &startup_v(v, &[("user", "u")]));
        assert_unsupported(&out, text, Channel::Plaintext);
    }
}

#[test]
fn missing_or_empty_user_is_fatal_28000() {
    for p in [startup(&[("database", "d")]), startup(&[("user", "")])] {
        let mut s = tls_off();
        let (_, out) = feed(&mut s, &p);
        let resp = refusal(&out).1.unwrap();
        assert_eq!(
            (resp.code.as_str(), resp.message.as_str()),
            (
                "28000",
                "no PostgreSQL user name specified in startup packet"
            )
        );
    }
}

#[test]
fn plaintext_refused_with_postgres_hba_text() {
    let policy = ServerPolicy::new()
        .tls(true)
        .refuse_plaintext()
        .peer_addr("192.0.2.7:50000".parse().unwrap());
    let mut s = ServerNegotiator::new(policy.clone());
    let (_, out) = feed(&mut s, &user());
    let resp = refusal(&out).1.unwrap();
    assert_eq!(resp.code, "28000");
    assert_eq!(
        resp.message,
        "no pg_hba.conf entry for host \"192.0.2.7\", user \"alice\", database \"db\", no encryption"
    );
    // The same policy lets the StartupMessage through once TLS is up.
    let mut s = ServerNegotiator::new(policy);
    through_tls(&mut s);
    let (_, out) = feed(&mut s, &user());
    expect_startup(&out);
    // Without a peer address the host is "[local]"; the database defaults to the user.
    let mut s = ServerNegotiator::new(ServerPolicy::new().refuse_plaintext());
    let (_, out) = feed(&mut s, &startup(&[("user", "bob")]));
    assert_eq!(
        refusal(&out).1.unwrap().message,
        "no pg_hba.conf entry for host \"[local]\", user \"bob\", database \"bob\", no encryption"
    );
}

#[test]
fn plaintext_refused_with_a_custom_message() {
    let msg = "SSL connection is required. Please specify SSL options and retry.";
    let mut s = ServerNegotiator::new(ServerPolicy::new().refuse_plaintext_with(msg));
    let (_, out) = feed(&mut s, &user());
    let resp = refusal(&out).1.unwrap();
    assert_eq!((resp.code.as_str(), resp.message.as_str()), ("28000", msg));
}

#[test]
fn bytes_after_the_startup_message_are_left_untouched() {
    let mut s = tls_off();
    let mut chunk = user();
    let n_startup = chunk.len();
    chunk.extend_from_slice(b"p\0\0\0\x09secret");
    let (n, out) = feed(&mut s, &chunk);
    assert_eq!(n, n_startup);
    assert_eq!(expect_startup(&out).packet(), &chunk[..n_startup]);
}

#[test]
fn newer_minor_versions_and_pq_options_are_reported() {
    let mut s = tls_off();
    let (_, out) = feed(
        &mut s,
        &startup_v(
            ProtocolVersion::new(3, 9),
            &[("user", "u"), ("_pq_.compress", "on")],
        ),
    );
    let st = expect_startup(&out);
    let m = st.message();
    assert_eq!(m.version(), ProtocolVersion::new(3, 9));
    assert!(m.needs_protocol_negotiation());
    assert_eq!(
        m.protocol_options().collect::<Vec<_>>(),
        [&b"_pq_.compress"[..]]
    );
    let mut b = bytes::BytesMut::new();
    wire::encode_negotiate_protocol_version(&mut b, ProtocolVersion::LATEST, m.protocol_options());
    assert_eq!(b[0], b'v');
}

#[test]
fn direct_ssl_starts_tls_at_the_first_byte() {
    let mut s = tls_on();
    let (n, out) = feed(&mut s, CLIENT_HELLO);
    assert_eq!(
        n, 0,
        "every byte belongs to TLS and stays with the host to replay"
    );
    assert_eq!(out, vec![ServerOutput::StartTls(StartTls { direct: true })]);
    s.handle_tls_established(HandshakeInfo::postgresql());
    assert_eq!(
        s.events().collect::<Vec<_>>(),
        [NegotiationEvent::DirectSslAccepted]
    );
    let (_, out) = feed(&mut s, &user());
    assert_eq!(
        expect_startup(&out).channel(),
        Channel::Tls { direct: true }
    );
}

#[test]
fn direct_ssl_without_tls_is_closed_without_reply() {
    for policy in [
        ServerPolicy::new(),
        ServerPolicy::new().tls(true).direct_ssl(false),
    ] {
        let mut s = ServerNegotiator::new(policy);
        let (_, out) = feed(&mut s, &CLIENT_HELLO[..1]);
        let (err, resp, _) = refusal(&out);
        assert_eq!(err, ServerError::DirectSslUnavailable);
        assert!(resp.is_none());
        assert_eq!(
            s.events().collect::<Vec<_>>(),
            [NegotiationEvent::DirectSslRejected]
        );
    }
}

#[test]
fn direct_ssl_requires_alpn_postgresql() {
    let mut s = tls_on();
    feed(&mut s, CLIENT_HELLO);
    s.handle_tls_established(HandshakeInfo::new(None));
    let out = drain_server(&mut s);
    let (err, resp, _) = refusal(&out);
    assert_eq!(
        err.to_string(),
        "received direct SSL connection request without ALPN protocol negotiation extension"
    );
    assert_eq!(err.sqlstate(), "08P01");
    assert!(resp.is_none(), "logged only, as PostgreSQL does");
    assert_eq!(
        s.events().collect::<Vec<_>>(),
        [NegotiationEvent::DirectSslRejected]
    );
}

#[test]
fn direct_ssl_with_plaintext_left_over_is_refused() {
    let mut s = tls_on();
    feed(&mut s, CLIENT_HELLO);
    s.handle_tls_established(HandshakeInfo::postgresql().with_unread_plaintext(3));
    let out = drain_server(&mut s);
    assert_eq!(
        refusal(&out).0.to_string(),
        "buffered unencrypted data remains after negotiating SSL connection"
    );
}

#[test]
fn alpn_absent_is_accepted_after_ssl_request_but_a_wrong_protocol_is_not() {
    let mut s = tls_on();
    feed(&mut s, &SSL_REQUEST);
    s.handle_tls_established(HandshakeInfo::new(None)); // libpq before 17 sends no ALPN
    assert_eq!(s.channel(), Channel::Tls { direct: false });
    assert_eq!(s.poll_output(), ServerOutput::NeedInput { max: 8 });

    for direct in [false, true] {
        let mut s = tls_on();
        feed(&mut s, if direct { CLIENT_HELLO } else { &SSL_REQUEST });
        s.handle_tls_established(HandshakeInfo::new(Some(b"h2")));
        let out = drain_server(&mut s);
        assert_eq!(refusal(&out).0, ServerError::UnexpectedAlpn);
    }
}

#[test]
fn a_tls_record_byte_after_the_first_packet_is_just_a_length() {
    let mut s = tls_on();
    feed(&mut s, &GSSENC_REQUEST);
    let (_, out) = feed(&mut s, CLIENT_HELLO);
    assert_eq!(
        refusal(&out).0.to_string(),
        "invalid length of startup packet"
    );
}

#[test]
fn failed_handshake_closes_without_reply() {
    for direct in [false, true] {
        let mut s = tls_on();
        feed(&mut s, if direct { CLIENT_HELLO } else { &SSL_REQUEST });
        s.handle_tls_failed("tlsv1 alert unknown ca");
        let out = drain_server(&mut s);
        let (err, resp, _) = refusal(&out);
        assert_eq!(
            err.to_string(),
            "could not accept SSL connection: tlsv1 alert unknown ca"
        );
        assert!(resp.is_none());
        let rejected = s.events().any(|e| e == NegotiationEvent::DirectSslRejected);
        assert_eq!(rejected, direct);
    }
}

#[test]
fn read_hints_never_go_past_the_packet() {
    let mut s = tls_off();
    let p = user();
    assert_eq!(s.poll_output(), ServerOutput::NeedInput { max: 8 });
    feed(&mut s, &p[..2]);
    assert_eq!(s.poll_output(), ServerOutput::NeedInput { max: 6 });
    feed(&mut s, &p[2..4]);
    assert_eq!(
        s.poll_output(),
        ServerOutput::NeedInput { max: p.len() - 4 }
    );
    let (n, out) = feed(&mut s, &p[4..]);
    assert_eq!(n, p.len() - 4);
    expect_startup(&out);
}

#[test]
fn the_same_packet_split_anywhere_decides_the_same() {
    let p = user();
    for cut in 1..p.len() {
        let mut s = tls_off();
        assert_eq!(s.handle_input(&p[..cut]), cut);
        let (n, out) = feed(&mut s, &p[cut..]);
        assert_eq!(n, p.len() - cut);
        assert_eq!(expect_startup(&out).packet(), &p[..]);
    }
}

#[test]
fn outcome_is_returned_on_every_later_poll() {
    let mut s = tls_off();
    let (_, out) = feed(&mut s, &user());
    expect_startup(&out);
    assert!(s.is_finished());
    let done = out.last().cloned().expect("an outcome");
    assert!(matches!(done, ServerOutput::Done(_)));
    assert_eq!(s.poll_output(), done);
    assert_eq!(s.handle_input(b"more"), 0);
    assert_eq!(s.poll_output(), done);
}

#[test]
fn ssl_request_after_ssl_n_and_gss_n_is_still_refused() {
    // PostgreSQL's recursion would answer this third request again; pgssl allows one of each.
    let mut s = tls_off();
    feed(&mut s, &SSL_REQUEST);
    feed(&mut s, &GSSENC_REQUEST);
    let (_, out) = feed(&mut s, &SSL_REQUEST);
    assert_unsupported(&out, "1234.5679", Channel::Plaintext);
}
