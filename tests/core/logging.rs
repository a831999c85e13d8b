//! The server negotiator logs its negotiation events and refusals in PostgreSQL's words, so
//! hosts (and the examples' tests) can scrape them as they would PostgreSQL's log.

use crate::support;

use std::cell::RefCell;

use pgssl::HandshakeInfo;
use pgssl::server::{ServerNegotiator, ServerPolicy};
use pgssl::wire::{GSSENC_REQUEST, SSL_REQUEST};
use support::{CLIENT_HELLO, feed, startup};

thread_local! {
    static LINES: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

/// Records every log line of the current thread, so tests running in parallel don't mix.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target().starts_with("pgssl") {
            LINES.with(|l| {
                l.borrow_mut()
                    .push((record.level(), record.args().to_string()))
            });
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn captured(f: impl FnOnce()) -> Vec<(log::Level, String)> {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    LINES.with(|l| l.borrow_mut().clear());
    f();
    LINES.with(|l| l.borrow().clone())
}

fn has(lines: &[(log::Level, String)], level: log::Level, text: &str) -> bool {
    lines.iter().any(|(l, t)| *l == level && t == text)
}

#[test]
fn ssl_request_accepted_and_rejected() {
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new().tls(true));
        feed(&mut s, &SSL_REQUEST);
    });
    assert!(
        has(&lines, log::Level::Info, "SSLRequest accepted"),
        "{lines:?}"
    );
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new());
        feed(&mut s, &SSL_REQUEST);
    });
    assert!(
        has(&lines, log::Level::Info, "SSLRequest rejected"),
        "{lines:?}"
    );
}

#[test]
fn gssenc_request_rejected() {
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new());
        feed(&mut s, &GSSENC_REQUEST);
    });
    assert!(
        has(&lines, log::Level::Info, "GSSENCRequest rejected"),
        "{lines:?}"
    );
}

#[test]
fn direct_ssl_accepted_and_rejected() {
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new().tls(true));
        feed(&mut s, CLIENT_HELLO);
        s.handle_tls_established(HandshakeInfo::postgresql());
    });
    assert!(
        has(&lines, log::Level::Info, "direct SSL connection accepted"),
        "{lines:?}"
    );
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new().tls(true));
        feed(&mut s, CLIENT_HELLO);
        s.handle_tls_established(HandshakeInfo::new(None));
    });
    assert!(
        has(&lines, log::Level::Info, "direct SSL connection rejected"),
        "{lines:?}"
    );
    assert!(
        has(
            &lines,
            log::Level::Warn,
            "received direct SSL connection request without ALPN protocol negotiation extension"
        ),
        "{lines:?}"
    );
}

#[test]
fn fatal_refusals_are_logged_with_their_text() {
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new().tls(true));
        let mut chunk = SSL_REQUEST.to_vec();
        chunk.extend_from_slice(&startup(&[("user", "u")]));
        feed(&mut s, &chunk);
    });
    assert!(
        has(
            &lines,
            log::Level::Warn,
            "FATAL:  received unencrypted data after SSL request"
        ),
        "{lines:?}"
    );
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new());
        feed(&mut s, &3u32.to_be_bytes());
    });
    assert!(
        has(&lines, log::Level::Warn, "invalid length of startup packet"),
        "{lines:?}"
    );
}

#[test]
fn silent_close_is_not_logged_as_a_problem() {
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new());
        s.handle_eof();
    });
    assert!(
        lines.iter().all(|(l, _)| *l > log::Level::Warn),
        "{lines:?}"
    );
}

#[test]
fn direct_ssl_without_tls_is_one_log_line() {
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new());
        feed(&mut s, CLIENT_HELLO);
    });
    let rejected: Vec<_> = lines
        .iter()
        .filter(|(_, t)| t.contains("direct SSL connection rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "{lines:?}");
}

#[test]
fn connection_received_names_the_client_a_trusted_proxy_names() {
    use pgssl::server::ProxyNetworks;
    let balancer = "127.0.0.5:40000".parse().unwrap();
    let trusted = ProxyNetworks::parse_list("127.0.0.0/8").unwrap();
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(
            ServerPolicy::new()
                .peer_addr(balancer)
                .proxy_networks(trusted.clone())
                .log_connections(true),
        );
        feed(&mut s, b"PROXY TCP4 192.0.2.10 127.0.0.1 51234 5432\r\n");
    });
    let received: Vec<_> = lines
        .iter()
        .filter(|(_, t)| t.starts_with("connection received"))
        .collect();
    assert_eq!(
        received,
        [&(
            log::Level::Info,
            "connection received: host=192.0.2.10 port=51234".to_owned()
        )],
        "{lines:?}"
    );
    // Without a proxy, at once, with the peer; and not at all when log_connections is off.
    let lines = captured(|| {
        let _ = ServerNegotiator::new(
            ServerPolicy::new()
                .peer_addr(balancer)
                .log_connections(true),
        );
        let _ = ServerNegotiator::new(ServerPolicy::new().peer_addr(balancer));
    });
    assert_eq!(
        lines,
        [(
            log::Level::Info,
            "connection received: host=127.0.0.5 port=40000".to_owned()
        )]
    );
    // A header from a peer outside the trusted networks: one warning naming it.
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(
            ServerPolicy::new()
                .peer_addr("192.0.2.99:1234".parse().unwrap())
                .proxy_networks(trusted),
        );
        feed(&mut s, b"PROXY TCP4 10.0.0.1 127.0.0.1 1 5432\r\n");
    });
    assert!(
        has(
            &lines,
            log::Level::Warn,
            "PROXY protocol header from host=192.0.2.99 port=1234, which is not a trusted proxy: connection refused"
        ),
        "{lines:?}"
    );
}

/// A partial length word (fewer than 4 bytes) after a negotiation request, then EOF, is not
/// logged, as PostgreSQL's ProcessStartupPacket stays quiet then (`!ssl_done && !gss_done`);
/// before any request, or with a whole length word after one, "incomplete startup packet" is.
#[test]
fn partial_length_word_after_a_request_is_not_logged() {
    let incomplete = |lines: &[(log::Level, String)]| {
        lines
            .iter()
            .any(|(_, t)| t.contains("incomplete startup packet"))
    };
    let after_request = |extra: &[u8]| {
        captured(|| {
            let mut s = ServerNegotiator::new(ServerPolicy::new());
            // The 'N' is sent before the client writes more (bytes in the request's own
            // segment are "unencrypted data after SSL request").
            feed(&mut s, &SSL_REQUEST);
            feed(&mut s, extra);
            s.handle_eof();
        })
    };
    let lines = after_request(&[0, 0]);
    assert!(
        has(&lines, log::Level::Info, "SSLRequest rejected"),
        "{lines:?}"
    );
    assert!(!incomplete(&lines), "{lines:?}");
    let lines = after_request(&[0, 0, 0, 50, 0, 3]);
    assert!(
        has(&lines, log::Level::Warn, "incomplete startup packet"),
        "{lines:?}"
    );
    let lines = captured(|| {
        let mut s = ServerNegotiator::new(ServerPolicy::new());
        feed(&mut s, &[0, 0]);
        s.handle_eof();
    });
    assert!(
        has(&lines, log::Level::Warn, "incomplete startup packet"),
        "{lines:?}"
    );
}
