//! Encoding of the requests and replies of the negotiation.

use bytes::{BufMut, BytesMut};

use super::codes::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_CANCEL_KEY_LEN, ProtocolVersion, SSL_REQUEST_CODE,
};

const fn request(code: u32) -> [u8; 8] {
    let c = code.to_be_bytes();
    [0, 0, 0, 8, c[0], c[1], c[2], c[3]]
}

/// The eight bytes of an SSLRequest.
pub const SSL_REQUEST: [u8; 8] = request(SSL_REQUEST_CODE);
/// The eight bytes of a GSSENCRequest.
pub const GSSENC_REQUEST: [u8; 8] = request(GSSENC_REQUEST_CODE);
/// The server's reply to an SSLRequest when TLS is to start: `S`.
pub const REPLY_SSL_ACCEPTED: &[u8; 1] = b"S";
/// The server's reply to an SSLRequest when TLS is not available: `N`.
pub const REPLY_SSL_REJECTED: &[u8; 1] = b"N";
/// The server's reply to a GSSENCRequest (pgssl never does GSS encryption): `N`.
pub const REPLY_GSS_REJECTED: &[u8; 1] = b"N";

/// Appends a CancelRequest for `pid` with `key` (4 bytes for protocol 3.0, up to 256 for 3.2).
///
/// # Panics
///
/// If `key` is empty or longer than 256 bytes, which no server would accept.
pub fn encode_cancel_request(buf: &mut BytesMut, pid: u32, key: &[u8]) {
    assert!(
        !key.is_empty() && key.len() <= MAX_CANCEL_KEY_LEN,
        "cancel key must be 1..=256 bytes"
    );
    buf.reserve(12 + key.len());
    buf.put_u32((12 + key.len()) as u32);
    buf.put_u32(CANCEL_REQUEST_CODE);
    buf.put_u32(pid);
    buf.put_slice(key);
}

/// Appends a StartupMessage with `version` and the `(name, value)` pairs.
///
/// Names and values must not contain NUL bytes; a pair that does would make a packet the
/// server refuses, and is written as given.
pub fn encode_startup_message<'p, I, N, V>(buf: &mut BytesMut, version: ProtocolVersion, params: I)
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]> + 'p,
    V: AsRef<[u8]> + 'p,
{
    let start = buf.len();
    buf.put_u32(0);
    buf.put_u32(version.as_u32());
    for (name, value) in params {
        buf.put_slice(name.as_ref());
        buf.put_u8(0);
        buf.put_slice(value.as_ref());
        buf.put_u8(0);
    }
    buf.put_u8(0);
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a NegotiateProtocolVersion message (`v`): the newest minor version the server
/// supports (as a full version word) and the protocol options it did not recognise.
pub fn encode_negotiate_protocol_version<'o>(
    buf: &mut BytesMut,
    newest: ProtocolVersion,
    unrecognized: impl IntoIterator<Item = &'o [u8]>,
) {
    let start = buf.len();
    buf.put_u8(b'v');
    buf.put_u32(0);
    buf.put_u32(newest.as_u32());
    let count_at = buf.len();
    buf.put_u32(0);
    let mut count = 0u32;
    for opt in unrecognized {
        buf.put_slice(opt);
        buf.put_u8(0);
        count += 1;
    }
    buf[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
    let len = (buf.len() - start - 1) as u32;
    buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_documented_bytes() {
        assert_eq!(SSL_REQUEST, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        assert_eq!(GSSENC_REQUEST, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    }

    #[test]
    fn startup_message_bytes() {
        let mut b = BytesMut::new();
        encode_startup_message(&mut b, ProtocolVersion::V3_0, [("user", "u")]);
        assert_eq!(&b[..], b"\0\0\0\x10\0\x03\0\0user\0u\0\0");
    }

    #[test]
    fn negotiate_protocol_version_bytes() {
        let mut b = BytesMut::new();
        encode_negotiate_protocol_version(&mut b, ProtocolVersion::V3_2, [&b"_pq_.a"[..]]);
        assert_eq!(&b[..], b"v\0\0\0\x13\0\x03\0\x02\0\0\0\x01_pq_.a\0");
    }
}
