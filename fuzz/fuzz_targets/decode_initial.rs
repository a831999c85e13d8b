//! Fuzzes the wire decoders on arbitrary bytes: `decode_initial` (with and without direct TLS
//! allowed), `ErrorResponse::decode` and `StartupMessage::parse`.
//!
//! Besides "never panics", it checks what the decoders promise: a complete initial packet is
//! 8..=10004 bytes, no longer than the input and as long as its length word says (direct TLS
//! consumes nothing); a partial result asks for at least one byte and never past the packet;
//! an ErrorResponse that decodes re-encodes to one that decodes the same; a StartupMessage that
//! parses is exactly its `name\0value\0` pairs and the final `\0`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgssl::wire::{
    Decoded, ErrorResponse, InitialPacket, MAX_CANCEL_KEY_LEN, MAX_PACKET_LEN, MIN_PACKET_LEN,
    ProtocolVersion, StartupMessage, TLS_HANDSHAKE_RECORD, decode_initial,
};

fuzz_target!(|data: &[u8]| {
    for direct_allowed in [true, false] {
        check_initial(data, direct_allowed);
    }
    check_error_response(data);
    if let Ok(m) = StartupMessage::parse(ProtocolVersion::V3_0, data) {
        check_startup(&m, data);
    }
});

fn check_initial(data: &[u8], direct_allowed: bool) {
    match decode_initial(data, direct_allowed) {
        Ok(Decoded::Complete(InitialPacket::DirectTls, n)) => {
            assert!(direct_allowed && data.first() == Some(&TLS_HANDSHAKE_RECORD));
            assert_eq!(n, 0, "direct TLS consumes nothing");
        }
        Ok(Decoded::Complete(packet, n)) => {
            assert!((MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&n), "length {n}");
            assert!(n <= data.len());
            assert_eq!(
                be_u32(data) as usize,
                n,
                "consumed as much as the length word says"
            );
            match packet {
                InitialPacket::CancelRequest(c) => {
                    assert!((1..=MAX_CANCEL_KEY_LEN).contains(&c.key.len()));
                    assert_eq!(n, 12 + c.key.len());
                }
                InitialPacket::Startup(m) => {
                    assert_eq!(m.version().major(), 3);
                    assert_eq!(m.version().as_u32(), be_u32(&data[4..]));
                    check_startup(&m, &data[8..n]);
                }
                _ => {}
            }
        }
        Ok(Decoded::Partial(k)) => {
            assert!(k >= 1, "a partial packet needs at least one more byte");
            assert!(
                data.len() + k <= MAX_PACKET_LEN,
                "never asks past the packet"
            );
        }
        Err(e) => {
            let _ = (e.to_string(), e.sqlstate(), e.response());
        }
    }
}

fn check_error_response(data: &[u8]) {
    match ErrorResponse::decode(data) {
        Ok(Decoded::Complete(resp, n)) => {
            assert!(n >= 6 && n <= data.len(), "consumed {n} of {}", data.len());
            assert_eq!(be_u32(&data[1..]) as usize + 1, n);
            let _ = resp.to_string();
            // Decoded strings hold no NUL, so encoding loses nothing; it may only grow past
            // libpq's limit (lossy UTF-8 replacement), in which case decoding refuses it.
            let again = resp.to_bytes();
            match ErrorResponse::decode(&again) {
                Ok(Decoded::Complete(resp2, m)) => {
                    assert_eq!(resp2, resp);
                    assert_eq!(m, again.len());
                }
                other => assert!(again.len() > 30_001, "re-encoded {resp:?}: {other:?}"),
            }
        }
        Ok(Decoded::Partial(k)) => assert!(k >= 1),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// `params` is the parameter area `m` was parsed from.
fn check_startup(m: &StartupMessage<'_>, params: &[u8]) {
    assert_eq!(m.raw_parameters(), params);
    let mut rebuilt = Vec::with_capacity(params.len());
    for p in m.parameters() {
        assert!(!p.name.is_empty() && !p.name.contains(&0) && !p.value.contains(&0));
        rebuilt.extend_from_slice(p.name);
        rebuilt.push(0);
        rebuilt.extend_from_slice(p.value);
        rebuilt.push(0);
    }
    rebuilt.push(0);
    assert_eq!(
        rebuilt, params,
        "the parameters are the whole parameter area"
    );
    if let Some(u) = m.user() {
        assert!(!u.is_empty());
    }
    assert_eq!(m.check_user().is_ok(), m.user().is_some());
    let _ = (
        m.database(),
        m.get_str("options"),
        m.needs_protocol_negotiation(),
    );
    let _ = m.protocol_options().count();
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
