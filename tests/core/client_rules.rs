//! The client side's negotiation rules (CONFORMANCE §4), one test per rule, named after it.

use pgssl::ClientOutcome;
use pgssl::client::{
    Attempt, AttemptKind, ClientNegotiator, ClientOutput, ClientSettings, SslMode, SslNegotiation,
};
use pgssl::error::ClientError;
use pgssl::wire::{ErrorResponse, SSL_REQUEST};
use pgssl::{Channel, HandshakeInfo, StartTls};

fn client(mode: SslMode) -> ClientNegotiator {
    ClientNegotiator::new(ClientSettings::new().sslmode(mode)).unwrap()
}

fn direct(mode: SslMode) -> ClientNegotiator {
    ClientNegotiator::new(
        ClientSettings::new()
            .sslmode(mode)
            .sslnegotiation(SslNegotiation::Direct),
    )
    .unwrap()
}

fn connect(kind: AttemptKind, number: u32) -> ClientOutput {
    ClientOutput::Connect(Attempt { kind, number })
}

/// Brings a postgres-negotiation client to the point where it awaits the reply byte.
fn to_reply(c: &mut ClientNegotiator) {
    assert_eq!(c.poll_output(), connect(AttemptKind::SslRequest, 1));
    assert_eq!(c.poll_output(), ClientOutput::Transmit(&SSL_REQUEST));
    assert_eq!(c.poll_output(), ClientOutput::NeedInput { max: 1 });
}

fn failed(c: &mut ClientNegotiator) -> ClientError {
    match c.poll_output() {
        ClientOutput::Done(ClientOutcome::Failed(e)) => {
            assert_eq!(
                c.poll_output(),
                ClientOutput::Done(ClientOutcome::Failed(e.clone()))
            );
            e
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn auth_error() -> ErrorResponse {
    ErrorResponse::fatal("28000", "no pg_hba.conf entry")
}

#[test]
fn s_reply_starts_the_handshake() {
    for mode in [
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ] {
        let mut c = client(mode);
        to_reply(&mut c);
        assert_eq!(c.handle_input(b"S"), 1);
        assert_eq!(
            c.poll_output(),
            ClientOutput::StartTls(StartTls { direct: false })
        );
        c.handle_tls_established(HandshakeInfo::new(None)); // ALPN not required here
        assert_eq!(
            c.poll_output(),
            ClientOutput::Done(ClientOutcome::Ready(Channel::Tls { direct: false }))
        );
    }
}

#[test]
fn n_reply_continues_in_plaintext_on_the_same_connection_when_allowed() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    assert_eq!(c.handle_input(b"N"), 1);
    assert_eq!(
        c.poll_output(),
        ClientOutput::Done(ClientOutcome::Ready(Channel::Plaintext))
    );
    assert_eq!(c.connections(), 1);
}

#[test]
fn n_reply_fails_when_ssl_is_required() {
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        let mut c = client(mode);
        to_reply(&mut c);
        let _ = c.handle_input(b"N");
        let e = failed(&mut c);
        assert_eq!(e, ClientError::SslNotSupported);
        assert_eq!(
            e.to_string(),
            "server does not support SSL, but SSL was required"
        );
    }
}

#[test]
fn e_reply_fails_without_reading_the_error_or_falling_back() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    // The server's text is never read (CVE-2024-10977): only the 'E' byte is looked at.
    let _ = c.handle_input(b"E\0\0\0\x40SFATAL\0Mforged message from a man in the middle\0\0");
    let e = failed(&mut c);
    assert_eq!(
        e.to_string(),
        "server sent an error response during SSL exchange"
    );
    assert_eq!(c.connections(), 1, "no fallback after E");
}

#[test]
fn any_other_reply_byte_is_invalid() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    let _ = c.handle_input(b"X");
    assert_eq!(
        failed(&mut c).to_string(),
        "received invalid response to SSL negotiation: X"
    );
}

#[test]
fn bytes_with_the_s_reply_are_refused() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    let _ = c.handle_input(b"S\x16\x03\x03");
    let e = failed(&mut c);
    assert_eq!(e, ClientError::UnencryptedDataAfterSslResponse);
    assert_eq!(
        e.to_string(),
        "received unencrypted data after SSL response"
    );
    assert_eq!(c.connections(), 1, "no fallback, even under prefer");
}

#[test]
fn bytes_after_the_s_reply_before_the_handshake_are_refused() {
    let mut c = client(SslMode::Require);
    to_reply(&mut c);
    let _ = c.handle_input(b"S");
    let _ = c.handle_input(b"E");
    assert_eq!(failed(&mut c), ClientError::UnencryptedDataAfterSslResponse);
}

#[test]
fn server_closing_before_the_reply_fails_without_fallback() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    c.handle_eof();
    assert!(
        failed(&mut c)
            .to_string()
            .starts_with("server closed the connection unexpectedly")
    );
}

#[test]
fn failed_handshake_under_prefer_retries_in_plaintext_over_a_new_connection() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    let _ = c.handle_input(b"S");
    c.handle_tls_failed("certificate verify failed");
    assert_eq!(c.poll_output(), connect(AttemptKind::Plaintext, 2));
    assert_eq!(
        c.poll_output(),
        ClientOutput::Done(ClientOutcome::Ready(Channel::Plaintext))
    );
    assert_eq!(c.earlier_errors().len(), 1);
}

#[test]
fn failed_handshake_under_require_and_stronger_never_falls_back() {
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        let mut c = client(mode);
        to_reply(&mut c);
        let _ = c.handle_input(b"S");
        c.handle_tls_failed("certificate verify failed");
        assert_eq!(
            failed(&mut c),
            ClientError::TlsHandshake {
                reason: "certificate verify failed".into()
            }
        );
    }
}

#[test]
fn allow_tries_plaintext_first_then_ssl_after_an_authentication_error() {
    let mut c = client(SslMode::Allow);
    assert_eq!(c.poll_output(), connect(AttemptKind::Plaintext, 1));
    assert_eq!(
        c.poll_output(),
        ClientOutput::Done(ClientOutcome::Ready(Channel::Plaintext))
    );
    c.handle_server_error(auth_error());
    assert_eq!(c.poll_output(), connect(AttemptKind::SslRequest, 2));
    assert_eq!(c.poll_output(), ClientOutput::Transmit(&SSL_REQUEST));
    assert_eq!(c.poll_output(), ClientOutput::NeedInput { max: 1 });
    let _ = c.handle_input(b"S");
    c.handle_tls_established(HandshakeInfo::postgresql());
    assert_eq!(
        c.poll_output(),
        ClientOutput::Done(ClientOutcome::Ready(Channel::Tls { direct: false }))
    );
}

#[test]
fn allow_fails_when_the_ssl_retry_is_answered_n() {
    let mut c = client(SslMode::Allow);
    let _ = c.poll_output();
    let _ = c.poll_output();
    c.handle_server_error(auth_error());
    let _ = c.poll_output();
    let _ = c.poll_output();
    let _ = c.handle_input(b"N");
    assert_eq!(failed(&mut c), ClientError::SslNotSupported);
}

#[test]
fn prefer_retries_in_plaintext_after_an_authentication_error_over_ssl() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    let _ = c.handle_input(b"S");
    c.handle_tls_established(HandshakeInfo::postgresql());
    assert_eq!(
        c.poll_output(),
        ClientOutput::Done(ClientOutcome::Ready(Channel::Tls { direct: false }))
    );
    c.handle_server_error(auth_error());
    assert_eq!(c.poll_output(), connect(AttemptKind::Plaintext, 2));
    assert_eq!(
        c.poll_output(),
        ClientOutput::Done(ClientOutcome::Ready(Channel::Plaintext))
    );
    // A second refusal has nowhere left to go.
    c.handle_server_error(auth_error());
    let e = failed(&mut c);
    assert_eq!(e.to_string(), "FATAL:  no pg_hba.conf entry");
}

#[test]
fn prefer_after_n_has_no_fallback_left() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    let _ = c.handle_input(b"N");
    c.handle_server_error(auth_error());
    assert!(matches!(failed(&mut c), ClientError::Server { .. }));
    assert_eq!(c.connections(), 1);
}

#[test]
fn require_never_falls_back_after_an_authentication_error() {
    let mut c = client(SslMode::Require);
    to_reply(&mut c);
    let _ = c.handle_input(b"S");
    c.handle_tls_established(HandshakeInfo::postgresql());
    let _ = c.poll_output();
    c.handle_server_error(auth_error());
    assert!(matches!(failed(&mut c), ClientError::Server { .. }));
}

#[test]
fn cannot_connect_now_ends_the_connect_without_changing_encryption() {
    let mut c = client(SslMode::Prefer);
    to_reply(&mut c);
    let _ = c.handle_input(b"S");
    c.handle_tls_established(HandshakeInfo::postgresql());
    let _ = c.poll_output();
    c.handle_server_error(ErrorResponse::fatal(
        "57P03",
        "the database system is starting up",
    ));
    assert!(matches!(failed(&mut c), ClientError::Server { .. }));
    assert_eq!(c.connections(), 1);
}

#[test]
fn disable_sends_no_ssl_request() {
    let mut c = client(SslMode::Disable);
    assert_eq!(c.poll_output(), connect(AttemptKind::Plaintext, 1));
    assert_eq!(
        c.poll_output(),
        ClientOutput::Done(ClientOutcome::Ready(Channel::Plaintext))
    );
    c.handle_server_error(auth_error());
    assert!(matches!(failed(&mut c), ClientError::Server { .. }));
}

#[test]
fn direct_starts_tls_at_once_and_requires_alpn() {
    let mut c = direct(SslMode::Require);
    assert_eq!(c.poll_output(), connect(AttemptKind::DirectSsl, 1));
    assert_eq!(
        c.poll_output(),
        ClientOutput::StartTls(StartTls { direct: true })
    );
    c.handle_tls_established(HandshakeInfo::postgresql());
    assert_eq!(
        c.poll_output(),
        ClientOutput::Done(ClientOutcome::Ready(Channel::Tls { direct: true }))
    );

    let mut c = direct(SslMode::VerifyFull);
    let _ = c.poll_output();
    c.handle_tls_established(HandshakeInfo::new(None));
    assert_eq!(
        failed(&mut c).to_string(),
        "direct SSL connection was established without ALPN protocol negotiation extension"
    );

    let mut c = direct(SslMode::VerifyCa);
    let _ = c.poll_output();
    c.handle_tls_established(HandshakeInfo::new(Some(b"http/1.1")));
    assert_eq!(
        failed(&mut c).to_string(),
        "SSL connection was established with unexpected ALPN protocol"
    );
}

#[test]
fn direct_never_falls_back_to_ssl_request() {
    let mut c = direct(SslMode::Require);
    let _ = c.poll_output();
    c.handle_eof(); // a server before 17 reads the ClientHello as a bad length and closes
    assert!(matches!(failed(&mut c), ClientError::TlsHandshake { .. }));
    assert_eq!(c.connections(), 1);
}

#[test]
fn weak_modes_are_refused_with_direct() {
    for mode in [SslMode::Disable, SslMode::Allow, SslMode::Prefer] {
        let e = ClientNegotiator::new(
            ClientSettings::new()
                .sslmode(mode)
                .sslnegotiation(SslNegotiation::Direct),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "weak sslmode \"{mode}\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")"
            )
        );
    }
}

#[test]
fn input_outside_the_reply_is_left_unconsumed() {
    let mut c = client(SslMode::Prefer);
    assert_eq!(
        c.handle_input(b"S"),
        0,
        "nothing is awaited before the SSLRequest is sent"
    );
    to_reply(&mut c);
    assert_eq!(c.handle_input(b"N"), 1);
    assert_eq!(
        c.handle_input(b"R\0\0\0\x08\0\0\0\0"),
        0,
        "the protocol after N is the host's"
    );
}

#[test]
fn a_wrong_alpn_is_refused_after_ssl_request_too() {
    let mut c = client(SslMode::Require);
    to_reply(&mut c);
    let _ = c.handle_input(b"S");
    c.handle_tls_established(HandshakeInfo::new(Some(b"h2")));
    assert_eq!(failed(&mut c), ClientError::UnexpectedAlpn);
}
