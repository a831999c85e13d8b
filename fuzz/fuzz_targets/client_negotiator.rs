//! Drives a `ClientNegotiator` through a whole connect, with the server's behaviour chosen by
//! the input.
//!
//! Input layout: one header byte, then one control byte per step (at most 64 steps), some
//! followed by server bytes.
//!
//! * header: `% 6` picks the `sslmode` from `SslMode::ALL`, bit 7 `sslnegotiation=direct`;
//!   combinations `ClientSettings::resolve` refuses are skipped;
//! * on `NeedInput`: control `% 4 == 0` is EOF, otherwise the next `1 + control / 4 % 3`
//!   bytes are the server's reply (EOF when the input has run out);
//! * on `StartTls`: established with ALPN "postgresql", without ALPN, with a wrong ALPN,
//!   failed, EOF, or stray plaintext;
//! * on `Ready`: the server refuses with FATAL 28000 or 57P03, or the connect is done.
//!
//! After every `handle_*` call `poll_output` is drained. Checked: nothing panics; at most two
//! connections; `handle_input` never returns more than it was given; a `Ready` channel is one
//! the mode allows (never plaintext under require or stronger, TLS only after a handshake
//! with the right ALPN, direct only with `sslnegotiation=direct`); `Failed` is followed by
//! `Finished` forever.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgssl::ClientOutcome;
use pgssl::client::{ClientOutput, ClientSettings};
use pgssl::wire::{ErrorResponse, SSL_REQUEST};
use pgssl::{Channel, ClientNegotiator, HandshakeInfo, SslMode, SslNegotiation};

fuzz_target!(|data: &[u8]| {
    let [header, ref rest @ ..] = *data else {
        return;
    };
    let mode = SslMode::ALL[header as usize % 6];
    let negotiation = match header & 0x80 {
        0 => SslNegotiation::Postgres,
        _ => SslNegotiation::Direct,
    };
    let settings = ClientSettings::new()
        .sslmode(mode)
        .sslnegotiation(negotiation);
    if settings.resolve().is_err() {
        return;
    }
    let mut neg = ClientNegotiator::with_mode(mode, negotiation);
    let mut input: &[u8] = rest;
    // The channel the last handshake established, if it succeeded.
    let mut tls_up: Option<Channel> = None;

    for _ in 0..64 {
        match drain(&mut neg, &mut tls_up) {
            ClientOutput::NeedInput { max } => {
                assert_eq!(max, 1, "the reply to an SSLRequest is one byte");
                match next(&mut input) {
                    Some(c) if c % 4 != 0 && !input.is_empty() => {
                        let n = (1 + (c / 4) % 3) as usize;
                        let (reply, tail) = input.split_at(n.min(input.len()));
                        input = tail;
                        let used = neg.handle_input(reply);
                        assert!(used <= reply.len());
                    }
                    _ => neg.handle_eof(),
                }
            }
            ClientOutput::StartTls(start) => {
                assert!(mode.allows_ssl());
                assert_eq!(start.direct, negotiation == SslNegotiation::Direct);
                let up = Some(Channel::Tls {
                    direct: start.direct,
                });
                match next(&mut input).map(|c| c % 6) {
                    Some(0) => {
                        neg.handle_tls_established(HandshakeInfo::postgresql());
                        tls_up = up;
                    }
                    Some(1) => {
                        neg.handle_tls_established(HandshakeInfo::new(None));
                        // Direct SSL requires ALPN; the SSLRequest path does not.
                        tls_up = if start.direct { None } else { up };
                    }
                    Some(2) => neg.handle_tls_established(HandshakeInfo::new(Some(b"http/1.1"))),
                    Some(3) => neg.handle_tls_failed("certificate verify failed"),
                    Some(4) => assert!(neg.handle_input(b"S") <= 1),
                    _ => neg.handle_eof(),
                }
            }
            ClientOutput::Done(ClientOutcome::Ready(channel)) => {
                match channel {
                    Channel::Plaintext => assert!(mode.allows_plaintext(), "{mode} went plaintext"),
                    Channel::Tls { .. } => {
                        assert_eq!(Some(channel), tls_up, "TLS without a good handshake")
                    }
                }
                match next(&mut input).map(|c| c % 3) {
                    Some(0) => neg.handle_server_error(ErrorResponse::fatal("28000", "x")),
                    Some(1) => {
                        neg.handle_server_error(ErrorResponse::fatal("57P03", "starting up"))
                    }
                    _ => break, // connected
                }
            }
            ClientOutput::Done(ClientOutcome::Failed(e)) => {
                let _ = e.to_string();
                for _ in 0..3 {
                    neg.handle_eof();
                    neg.handle_tls_failed("late");
                    neg.handle_server_error(ErrorResponse::fatal("28000", "x"));
                    assert_eq!(
                        neg.poll_output(),
                        ClientOutput::Done(ClientOutcome::Failed(e.clone()))
                    );
                }
                break;
            }
            other => panic!("drain stopped at {other:?}"),
        }
        assert!(neg.connections() <= 2, "{} connections", neg.connections());
    }
    let _ = drain(&mut neg, &mut tls_up); // opens any reconnect the last call asked for
    assert!(neg.connections() <= 2, "{} connections", neg.connections());
});

fn next(input: &mut &[u8]) -> Option<u8> {
    let (&b, tail) = input.split_first()?;
    *input = tail;
    Some(b)
}

/// Polls until the negotiator asks for input or a handshake, or is ready or done; connections
/// are "opened" (forgetting the previous connection's TLS) and the SSLRequest "sent" on the
/// way.
fn drain(neg: &mut ClientNegotiator, tls_up: &mut Option<Channel>) -> ClientOutput {
    loop {
        match neg.poll_output() {
            ClientOutput::Connect(attempt) => {
                assert_eq!(attempt.number, neg.connections());
                assert!(attempt.number <= 2, "connection {}", attempt.number);
                *tls_up = None;
            }
            ClientOutput::Transmit(bytes) => assert_eq!(bytes, &SSL_REQUEST[..]),
            other => return other,
        }
    }
}
