//! Drives a `ServerNegotiator` the way a host does, with everything chosen by the input.
//!
//! Input layout: four header bytes, then the client's byte stream.
//!
//! * `[0]` the policy: bit 0 TLS available, bit 1 direct SSL allowed, bit 2 plaintext refused
//!   (bit 3 with a custom message); bits 4-5 the PROXY protocol: off, on with the peer a
//!   trusted proxy (a header expected first), on with the peer outside the trusted networks;
//!   bits 6-7 the v2 length bound (4096, 0, 300, 65535);
//! * `[1]` how the host chunks its reads: bits 6-7 pick exactly `max`, a fixed size, `max`
//!   plus extra (a host that over-reads), or sizes that vary per read; bits 0-5 are the size;
//! * `[2]` what the TLS handshake does when asked for: established with ALPN "postgresql",
//!   without ALPN, with a wrong ALPN, with plaintext left unread, failed, EOF, or stray
//!   plaintext handed to the negotiator instead;
//! * `[3]` bit 0: call `handle_eof` when the stream runs out (otherwise the host just stops).
//!
//! After every `handle_*` call `poll_output` is drained, as the crate documents. Checked:
//! nothing panics; `buffered_len() <= 10004` after every call; `handle_input` never returns
//! more than it was given, and consumes everything while it still asks for input; at most one
//! `S`/`N` reply of each kind; `StartTls` only with TLS available; no plaintext StartupMessage
//! gets through a policy that refuses plaintext; a header is accepted only from a trusted peer
//! and only a header's source becomes the client address; once an outcome (Startup, Cancel, Refuse) is
//! returned, `poll_output` returns `Finished` forever, whatever the host calls.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgssl::ServerOutcome;
use pgssl::server::{ProxyNetworks, ServerNegotiator, ServerOutput, ServerPolicy};
use pgssl::wire::proxy::ProxyLimits;
use pgssl::wire::{MAX_PACKET_LEN, SSL_REQUEST};
use pgssl::{Channel, HandshakeInfo};

fuzz_target!(|data: &[u8]| {
    let [policy_bits, chunking, tls_choice, flags, ref stream @ ..] = *data else {
        return;
    };
    let mut policy = ServerPolicy::new()
        .tls(policy_bits & 1 != 0)
        .direct_ssl(policy_bits & 2 != 0);
    if policy_bits & 4 != 0 {
        policy = match policy_bits & 8 {
            0 => policy.refuse_plaintext(),
            _ => policy.refuse_plaintext_with("SSL connection is required."),
        };
    }
    let trusted = ProxyNetworks::parse_list("127.0.0.0/8").unwrap();
    let max_v2 = [4096, 0, 300, 65535][usize::from(policy_bits >> 6)];
    policy = policy.proxy_limits(ProxyLimits::new().max_v2_len(max_v2));
    policy = match (policy_bits >> 4) & 3 {
        0 => policy.peer_addr("192.0.2.1:1".parse().unwrap()),
        1 | 3 => policy
            .peer_addr("127.0.0.5:2".parse().unwrap())
            .proxy_networks(trusted),
        _ => policy
            .peer_addr("192.0.2.1:1".parse().unwrap())
            .proxy_networks(trusted),
    };
    let mut h = Host {
        neg: ServerNegotiator::new(policy.clone()),
        policy,
        replies: 0,
        peeked: None,
    };
    let mut stream: &[u8] = stream;
    let mut reads = 0usize;

    let outcome = loop {
        match h.drain() {
            ServerOutput::NeedInput { max } => {
                let header_bound = 16 + usize::from(h.policy.proxy_header_limits().max_v2_len);
                assert!(max >= 1 && h.neg.buffered_len() + max <= MAX_PACKET_LEN.max(header_bound));
                if stream.is_empty() {
                    if flags & 1 == 0 {
                        return; // the host gives up without telling the negotiator
                    }
                    h.neg.handle_eof();
                    h.check();
                    continue;
                }
                let size = match chunking >> 6 {
                    0 => max,
                    1 => 1 + (chunking & 63) as usize,
                    2 => max + (chunking & 63) as usize,
                    _ => 1 + (reads * (chunking as usize | 1)) % 23,
                };
                reads += 1;
                let (chunk, rest) = stream.split_at(size.min(stream.len()));
                stream = rest;
                let used = h.neg.handle_input(chunk);
                assert!(used <= chunk.len(), "consumed {used} of {}", chunk.len());
                h.check();
                // Unconsumed bytes belong to TLS or to what follows the StartupMessage: the
                // negotiator must not ask for more input while it leaves bytes behind.
                if used < chunk.len() {
                    assert!(
                        !matches!(h.peek(), ServerOutput::NeedInput { .. }),
                        "left {} bytes unconsumed but asks for input",
                        chunk.len() - used
                    );
                }
            }
            ServerOutput::StartTls(start) => {
                assert!(h.policy.tls_available());
                assert!(!start.direct || h.policy.direct_ssl_available());
                match tls_choice % 7 {
                    0 => h.neg.handle_tls_established(HandshakeInfo::postgresql()),
                    1 => h.neg.handle_tls_established(HandshakeInfo::new(None)),
                    2 => h
                        .neg
                        .handle_tls_established(HandshakeInfo::new(Some(b"http/1.1"))),
                    3 => h.neg.handle_tls_established(
                        HandshakeInfo::postgresql().with_unread_plaintext(1),
                    ),
                    4 => h.neg.handle_tls_failed("handshake failure"),
                    5 => h.neg.handle_eof(),
                    _ => {
                        let stray = if stream.is_empty() {
                            b"x"
                        } else {
                            &stream[..1]
                        };
                        assert!(h.neg.handle_input(stray) <= 1);
                    }
                }
                h.check();
                if matches!(h.neg.channel(), Channel::Tls { .. }) {
                    assert!(tls_choice % 7 <= 3, "TLS is up only after a handshake");
                }
            }
            outcome @ (ServerOutput::Done(ServerOutcome::Startup(_))
            | ServerOutput::Done(ServerOutcome::Cancel(_))
            | ServerOutput::Done(ServerOutcome::Refuse(_))) => {
                break outcome;
            }
            other => panic!("drain stopped at {other:?}"),
        }
    };

    match &outcome {
        ServerOutput::Done(ServerOutcome::Startup(s)) => {
            assert_eq!(s.channel(), h.neg.channel());
            assert!(
                s.channel().is_tls() || h.policy.plaintext_allowed(),
                "plaintext got through"
            );
            assert!(s.user().is_some_and(|u| !u.is_empty()));
            assert_eq!(
                s.packet().len(),
                u32::from_be_bytes(s.packet()[..4].try_into().unwrap()) as usize
            );
        }
        ServerOutput::Done(ServerOutcome::Cancel(c)) => assert!(!c.key().is_empty()),
        ServerOutput::Done(ServerOutcome::Refuse(_)) => {}
        _ => unreachable!(),
    }
    match (h.neg.proxy(), h.policy.expects_proxy_header()) {
        (Some(p), true) => {
            assert_eq!(h.neg.client_addr(), p.source().or(h.policy.peer()));
        }
        (Some(_), false) => panic!("a header accepted from an untrusted peer"),
        (None, _) => assert_eq!(h.neg.client_addr(), h.policy.peer()),
    }
    if let ServerOutput::Done(ServerOutcome::Startup(s)) = &outcome {
        assert_eq!(s.client_addr(), h.neg.client_addr());
    }
    match &outcome {
        ServerOutput::Done(ServerOutcome::Startup(_) | ServerOutcome::Cancel(_)) => {}
        ServerOutput::Done(ServerOutcome::Refuse(r)) => {
            let _ = (r.error().to_string(), r.response_bytes());
        }
        _ => unreachable!(),
    }

    // Decided: nothing the host does changes that.
    assert!(h.neg.is_finished());
    let decided = h.neg.poll_output();
    assert!(matches!(decided, ServerOutput::Done(_)));
    for _ in 0..2 {
        assert_eq!(h.neg.poll_output(), decided);
        assert_eq!(h.neg.handle_input(&SSL_REQUEST), 0);
        h.neg.handle_eof();
        h.neg.handle_tls_established(HandshakeInfo::postgresql());
        h.neg.handle_tls_failed("late");
        assert_eq!(h.neg.poll_output(), decided);
        h.check();
    }
});

struct Host {
    neg: ServerNegotiator,
    policy: ServerPolicy,
    replies: usize,
    /// An output already polled by `peek`, to be returned by the next `drain`.
    peeked: Option<ServerOutput>,
}

impl Host {
    /// Polls until the negotiator asks for input or a handshake, or returns an outcome;
    /// replies are "sent" on the way.
    fn drain(&mut self) -> ServerOutput {
        if let Some(out) = self.peeked.take() {
            return out;
        }
        loop {
            match self.neg.poll_output() {
                ServerOutput::Transmit(reply) => {
                    assert_eq!(reply.as_bytes().len(), 1);
                    assert_eq!(
                        self.neg.channel(),
                        Channel::Plaintext,
                        "replies precede TLS"
                    );
                    self.replies += 1;
                    assert!(self.replies <= 2, "at most one SSL and one GSS reply");
                }
                other => return other,
            }
        }
    }

    /// Drains, keeping the result for the next `drain`.
    fn peek(&mut self) -> &ServerOutput {
        let out = self.drain();
        self.peeked.insert(out)
    }

    /// Checked after every `handle_*` call.
    fn check(&self) {
        let header_bound = 16 + usize::from(self.policy.proxy_header_limits().max_v2_len);
        assert!(self.neg.buffered_len() <= MAX_PACKET_LEN.max(header_bound));
    }
}
