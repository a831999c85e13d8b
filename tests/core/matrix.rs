//! The negotiation matrix: a client negotiator and a server negotiator driven against each other
//! in memory, for every server policy × user rule × sslmode × sslnegotiation, with the events
//! and the outcome checked against a table that mirrors PostgreSQL's own
//! src/test/libpq_encryption/t/001_negotiate_encryption.pl (without GSS).
//!
//! The server hosts three users, as that test does: `testuser` (a `host` rule: anything goes),
//! `ssluser` (`hostssl`: plaintext is refused by the negotiator's policy) and `nossluser`
//! (`hostnossl`: the host refuses the StartupMessage when it came through TLS). TLS itself is
//! simulated: once both sides ask for it, the handshake "succeeds" with ALPN "postgresql" — the
//! real handshakes are the OpenSSL layer's tests.

use crate::support;

use std::collections::BTreeSet;

use pgssl::ClientOutcome;
use pgssl::HandshakeInfo;
use pgssl::ServerOutcome;
use pgssl::client::{ClientNegotiator, ClientOutput, ClientSettings, SslMode, SslNegotiation};
use pgssl::server::{NegotiationEvent, ServerNegotiator, ServerOutput, ServerPolicy};
use pgssl::wire::{Decoded, ErrorResponse};
use support::{CLIENT_HELLO, drain_server, startup};

/// Expected results. Columns: server, user, sslmode (comma list), sslnegotiation (`*` for
/// both), events, outcome. `-` means no event (the connect is refused before connecting).
const TABLE: &str = include_str!("../support/libpq_encryption.table");

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    Host,
    HostSsl,
    HostNoSsl,
}

fn rule(user: &str) -> Rule {
    match user {
        "testuser" => Rule::Host,
        "ssluser" => Rule::HostSsl,
        "nossluser" => Rule::HostNoSsl,
        other => panic!("unknown user {other}"),
    }
}

fn policy(server: &str, rule: Rule) -> ServerPolicy {
    let p = match server {
        "ssl=on" => ServerPolicy::new().tls(true),
        "ssl=off" => ServerPolicy::new(),
        "ssl=on,nodirect" => ServerPolicy::new().tls(true).direct_ssl(false),
        other => panic!("unknown server {other}"),
    };
    match rule {
        Rule::HostSsl => p.refuse_plaintext(),
        _ => p,
    }
}

fn event_name(e: NegotiationEvent) -> &'static str {
    match e {
        NegotiationEvent::SslRequestAccepted => "sslaccept",
        NegotiationEvent::SslRequestRejected => "sslreject",
        NegotiationEvent::DirectSslAccepted => "directsslaccept",
        NegotiationEvent::DirectSslRejected => "directsslreject",
        NegotiationEvent::GssEncRequestRejected => "gssreject",
        other => panic!("unexpected event {other:?}"),
    }
}

/// One simulated connection's server side.
struct Server {
    neg: ServerNegotiator,
    /// Bytes on their way to the client.
    to_client: Vec<u8>,
    closed: bool,
    events_seen: usize,
    /// Outcome decided by the negotiator, awaiting the host's authentication.
    startup: Option<pgssl::server::Startup>,
}

impl Server {
    fn new(policy: ServerPolicy) -> Self {
        Server {
            neg: ServerNegotiator::new(policy),
            to_client: Vec::new(),
            closed: false,
            events_seen: 0,
            startup: None,
        }
    }

    /// Feeds bytes from the client and acts on the outputs. Returns the bytes not consumed.
    fn receive(&mut self, data: &[u8]) -> Vec<u8> {
        let n = self.neg.handle_input(data);
        self.settle();
        data[n..].to_vec()
    }

    fn settle(&mut self) {
        for out in drain_server(&mut self.neg) {
            match out {
                ServerOutput::Transmit(r) => self.to_client.extend_from_slice(r.as_bytes()),
                ServerOutput::NeedInput { .. } | ServerOutput::StartTls(_) => {}
                ServerOutput::Done(ServerOutcome::Startup(s)) => self.startup = Some(s),
                ServerOutput::Done(ServerOutcome::Refuse(r)) => {
                    if let Some(b) = r.response_bytes() {
                        self.to_client.extend_from_slice(&b);
                    }
                    self.closed = true;
                }
                other => panic!("unexpected server output {other:?}"),
            }
        }
    }

    fn new_events(&mut self, log: &mut Vec<&'static str>) {
        let all: Vec<_> = self.neg.events().collect();
        for e in &all[self.events_seen..] {
            log.push(event_name(*e));
        }
        self.events_seen = all.len();
    }
}

/// Runs one connect and returns (events, outcome).
fn run(server: &str, user: &str, mode: SslMode, negotiation: SslNegotiation) -> (String, String) {
    let settings = ClientSettings::new()
        .sslmode(mode)
        .sslnegotiation(negotiation);
    let Ok(mut client) = ClientNegotiator::new(settings) else {
        return ("-".into(), "fail".into());
    };
    let rule = rule(user);
    let mut log: Vec<&'static str> = Vec::new();
    let mut srv: Option<Server> = None;
    for _ in 0..64 {
        if let Some(s) = srv.as_mut() {
            s.new_events(&mut log);
        }
        match client.poll_output() {
            ClientOutput::Connect(a) => {
                log.push(if a.number == 1 {
                    "connect"
                } else {
                    "reconnect"
                });
                srv = Some(Server::new(policy(server, rule)));
            }
            ClientOutput::Transmit(bytes) => {
                let s = srv.as_mut().unwrap();
                assert!(s.receive(bytes).is_empty());
            }
            ClientOutput::NeedInput { max } => {
                let s = srv.as_mut().unwrap();
                if s.to_client.is_empty() {
                    assert!(s.closed, "deadlock: both sides wait");
                    client.handle_eof();
                } else {
                    let take = max.min(s.to_client.len());
                    let chunk: Vec<u8> = s.to_client.drain(..take).collect();
                    let n = client.handle_input(&chunk);
                    assert_eq!(n, chunk.len());
                }
            }
            ClientOutput::StartTls(st) => {
                let s = srv.as_mut().unwrap();
                if st.direct {
                    // The ClientHello reaches the server, which consumes none of it.
                    let left = s.receive(CLIENT_HELLO);
                    if !s.closed {
                        assert_eq!(left, CLIENT_HELLO, "direct SSL bytes are replayed to TLS");
                    }
                }
                if s.closed {
                    client.handle_eof();
                } else {
                    assert!(matches!(s.neg.poll_output(), ServerOutput::StartTls(_)));
                    s.neg.handle_tls_established(HandshakeInfo::postgresql());
                    s.settle();
                    client.handle_tls_established(HandshakeInfo::postgresql());
                }
            }
            ClientOutput::Done(ClientOutcome::Ready(channel)) => {
                let s = srv.as_mut().unwrap();
                assert_eq!(s.neg.channel(), channel, "both sides agree on the channel");
                let left = s.receive(&startup(&[("user", user), ("database", "postgres")]));
                assert!(left.is_empty());
                s.new_events(&mut log);
                // The host's authentication: pg_hba.conf's rule for this user.
                let refused = match (&s.startup, rule) {
                    (Some(st), Rule::HostNoSsl) if st.channel().is_tls() => {
                        Some(ErrorResponse::fatal(
                            "28000",
                            format!(
                                "no pg_hba.conf entry for host \"127.0.0.1\", user \"{user}\", database \"postgres\", SSL encryption"
                            ),
                        ))
                    }
                    (Some(_), _) => None,
                    (None, _) => {
                        assert!(s.closed, "the negotiator refused the startup");
                        match ErrorResponse::decode(&s.to_client).unwrap() {
                            Decoded::Complete(r, _) => Some(r),
                            Decoded::Partial(_) => panic!("truncated refusal"),
                        }
                    }
                };
                match refused {
                    None => {
                        log.push("authok");
                        let outcome = if channel.is_tls() { "ssl" } else { "plain" };
                        if let Some(st) = &s.startup {
                            assert_eq!(st.channel(), channel);
                            assert_eq!(st.user_lossy(), user);
                        }
                        return (log.join(","), outcome.into());
                    }
                    Some(resp) => {
                        log.push("authfail");
                        client.handle_server_error(resp);
                    }
                }
            }
            ClientOutput::Done(ClientOutcome::Failed(_)) => return (log.join(","), "fail".into()),
        }
    }
    panic!("connect did not finish: {log:?}");
}

fn negotiations(s: &str) -> Vec<SslNegotiation> {
    match s {
        "*" => vec![SslNegotiation::Postgres, SslNegotiation::Direct],
        other => vec![other.parse().unwrap()],
    }
}

#[test]
fn matrix_matches_postgres_table() {
    let mut covered = BTreeSet::new();
    let mut mismatches = Vec::new();
    let mut cases = 0;
    for line in TABLE.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 6, "bad table line: {line}");
        let (server, user, modes, negs, events, outcome) =
            (cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]);
        for mode in modes.split(',') {
            let mode: SslMode = mode.parse().unwrap();
            for neg in negotiations(negs) {
                cases += 1;
                assert!(
                    covered.insert((server, user, mode, neg.as_str())),
                    "duplicate row for {server} {user} {mode} {neg}"
                );
                let got = run(server, user, mode, neg);
                if got != (events.to_string(), outcome.to_string()) {
                    mismatches.push(format!(
                        "{server} {user} {mode} {neg}: expected {events} -> {outcome}, got {} -> {}",
                        got.0, got.1
                    ));
                }
            }
        }
    }
    // Every combination is in the table exactly once.
    assert_eq!(cases, 3 * 3 * 6 * 2);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
