//! Helpers shared by the integration tests: building packets and draining negotiators (here),
//! and the submodules below.

pub mod example_proc;
// A scripted hostile server (TLS through the openssl crate).
#[cfg(feature = "openssl")]
pub mod hostile;
pub mod pg;
// The OpenSSL layer's helpers; without them `--no-default-features` still builds the core's tests.
#[cfg(feature = "openssl")]
pub mod tls;

use bytes::BytesMut;
use pgssl::server::{ServerNegotiator, ServerOutput};
use pgssl::wire::{self, ProtocolVersion};

/// A StartupMessage 3.0 with these parameters.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    startup_v(ProtocolVersion::V3_0, params)
}

/// A StartupMessage of `version` with these parameters.
pub fn startup_v(version: ProtocolVersion, params: &[(&str, &str)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    wire::encode_startup_message(&mut b, version, params.iter().copied());
    b.to_vec()
}

/// A packet with this length word, code and body (the length is computed).
pub fn packet(code: u32, body: &[u8]) -> Vec<u8> {
    let mut v = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A CancelRequest.
pub fn cancel(pid: u32, key: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    wire::encode_cancel_request(&mut b, pid, key);
    b.to_vec()
}

/// The start of a TLS ClientHello record, enough for the negotiators (first byte 0x16).
pub const CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\x2a\x01\x00\x00\x26\x03\x03";

/// Polls the server until it asks for input or TLS, or returns an outcome; returns every
/// output in order (the last one is the one that stopped the drain).
pub fn drain_server(s: &mut ServerNegotiator) -> Vec<ServerOutput> {
    let mut out = Vec::new();
    for _ in 0..16 {
        let o = s.poll_output();
        let stop = !matches!(o, ServerOutput::Transmit(_));
        out.push(o);
        if stop {
            return out;
        }
    }
    panic!("server negotiator did not settle: {out:?}");
}

/// Feeds `data` to the server and drains it; returns (consumed, outputs).
pub fn feed(s: &mut ServerNegotiator, data: &[u8]) -> (usize, Vec<ServerOutput>) {
    let n = s.handle_input(data);
    (n, drain_server(s))
}

/// The last output of a drain.
pub fn last(out: &[ServerOutput]) -> &ServerOutput {
    out.last().expect("at least one output")
}

/// The bytes transmitted in a drain.
pub fn transmitted(out: &[ServerOutput]) -> Vec<u8> {
    out.iter()
        .filter_map(|o| match o {
            ServerOutput::Transmit(r) => Some(r.as_bytes().to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}
