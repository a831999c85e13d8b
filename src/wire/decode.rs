//! Decoding of an initial packet, borrowing from the input.

use super::codes::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_CANCEL_KEY_LEN, MAX_PACKET_LEN, MIN_PACKET_LEN,
    ProtocolVersion, SSL_REQUEST_CODE, TLS_HANDSHAKE_RECORD, be_u32,
};
use super::decode_error::DecodeError;
use super::startup::StartupMessage;

/// The result of decoding input that may be incomplete, in the manner of httparse's `Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A whole value, and how many bytes of the input it took.
    Complete(T, usize),
    /// The input ends inside a packet: at least this many more bytes are needed, and no byte
    /// was consumed. The count never makes a reader go past the end of the packet.
    Partial(usize),
}

/// One decoded initial packet.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitialPacket<'a> {
    /// SSLRequest (code 80877103). PostgreSQL inspects only the code, so a longer packet with
    /// this code is still an SSLRequest; its extra body is ignored.
    SslRequest,
    /// GSSENCRequest (code 80877104).
    GssEncRequest,
    /// CancelRequest (code 80877102).
    CancelRequest(CancelRequest<'a>),
    /// A protocol 3.x StartupMessage, its layout checked.
    Startup(StartupMessage<'a>),
    /// The first byte is 0x16, a TLS handshake record: a PostgreSQL 17 direct SSL connection.
    /// Only meaningful as the very first byte of a connection. Consumes nothing: every byte
    /// belongs to TLS.
    DirectTls,
}

/// A CancelRequest: the process id and the secret key of the backend to cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelRequest<'a> {
    /// The backend's process id.
    pub pid: u32,
    /// The secret key: 4 bytes up to protocol 3.1, 1..=256 bytes with protocol 3.2.
    pub key: &'a [u8],
}

/// Decodes the initial packet at the start of `buf`.
///
/// `direct_tls_allowed` says whether a leading 0x16 byte is to be read as direct SSL (true only
/// for the very first byte of a connection); otherwise it is read as part of a length word.
///
/// The length word is checked as soon as its four bytes are there, before the rest of the
/// packet is awaited, so an invalid length is refused without reading on (as PostgreSQL does).
/// A major protocol version other than 3 is [`DecodeError::UnsupportedProtocol`]; the layout of
/// a 3.x StartupMessage is checked.
pub fn decode_initial(
    buf: &[u8],
    direct_tls_allowed: bool,
) -> Result<Decoded<InitialPacket<'_>>, DecodeError> {
    if direct_tls_allowed && buf.first() == Some(&TLS_HANDSHAKE_RECORD) {
        return Ok(Decoded::Complete(InitialPacket::DirectTls, 0));
    }
    if buf.len() < 4 {
        return Ok(Decoded::Partial(MIN_PACKET_LEN - buf.len()));
    }
    let len = check_length(be_u32(buf))?;
    if buf.len() < len {
        return Ok(Decoded::Partial(len - buf.len()));
    }
    let packet = decode_body(&buf[4..len])?;
    Ok(Decoded::Complete(packet, len))
}

/// Checks a packet's length word and returns the packet's length in bytes.
#[inline]
pub(crate) fn check_length(len: u32) -> Result<usize, DecodeError> {
    let len = len as usize;
    if (MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&len) {
        Ok(len)
    } else {
        Err(DecodeError::InvalidLength { length: len as u32 })
    }
}

/// Decodes a whole packet's body (everything after the length word; at least 4 bytes).
fn decode_body(body: &[u8]) -> Result<InitialPacket<'_>, DecodeError> {
    let code = be_u32(body);
    match code {
        SSL_REQUEST_CODE => Ok(InitialPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(InitialPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => decode_cancel(body).map(InitialPacket::CancelRequest),
        _ => {
            let version = ProtocolVersion::from_u32(code);
            if version.major() != 3 {
                return Err(DecodeError::UnsupportedProtocol { version });
            }
            StartupMessage::parse(version, &body[4..]).map(InitialPacket::Startup)
        }
    }
}

fn decode_cancel(body: &[u8]) -> Result<CancelRequest<'_>, DecodeError> {
    // body: code (4), pid (4), key (1..=256).
    if body.len() < 8 {
        return Err(DecodeError::InvalidCancelLength);
    }
    let key = &body[8..];
    if key.is_empty() || key.len() > MAX_CANCEL_KEY_LEN {
        return Err(DecodeError::InvalidCancelKeyLength { length: key.len() });
    }
    Ok(CancelRequest {
        pid: be_u32(&body[4..8]),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode::{
        GSSENC_REQUEST, SSL_REQUEST, encode_cancel_request, encode_startup_message,
    };
    use bytes::BytesMut;

    fn packet(code: u32, extra: &[u8]) -> Vec<u8> {
        let mut v = ((8 + extra.len()) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn ssl_and_gss_requests() {
        assert_eq!(
            decode_initial(&SSL_REQUEST, true).unwrap(),
            Decoded::Complete(InitialPacket::SslRequest, 8)
        );
        assert_eq!(
            decode_initial(&GSSENC_REQUEST, false).unwrap(),
            Decoded::Complete(InitialPacket::GssEncRequest, 8)
        );
    }

    #[test]
    fn only_the_code_is_inspected() {
        let p = packet(SSL_REQUEST_CODE, b"trailing body");
        assert_eq!(
            decode_initial(&p, false).unwrap(),
            Decoded::Complete(InitialPacket::SslRequest, p.len())
        );
    }

    #[test]
    fn partial_input_consumes_nothing_and_never_over_asks() {
        assert_eq!(decode_initial(&[], true).unwrap(), Decoded::Partial(8));
        assert_eq!(
            decode_initial(&SSL_REQUEST[..3], true).unwrap(),
            Decoded::Partial(5)
        );
        assert_eq!(
            decode_initial(&SSL_REQUEST[..5], true).unwrap(),
            Decoded::Partial(3)
        );
        let mut b = BytesMut::new();
        encode_startup_message(&mut b, ProtocolVersion::V3_0, [("user", "alice")]);
        assert_eq!(
            decode_initial(&b[..4], false).unwrap(),
            Decoded::Partial(b.len() - 4)
        );
    }

    #[test]
    fn length_bounds() {
        for bad in [0u32, 3, 4, 7, 10_005, u32::MAX] {
            let err = decode_initial(&bad.to_be_bytes(), false).unwrap_err();
            assert_eq!(err.to_string(), "invalid length of startup packet");
            assert!(err.response().is_none());
        }
        // 8 and 10004 are the bounds; a packet of 10004 bytes with an SSL code is accepted.
        let p = packet(SSL_REQUEST_CODE, &vec![0; MAX_PACKET_LEN - 8]);
        assert!(matches!(
            decode_initial(&p, false).unwrap(),
            Decoded::Complete(InitialPacket::SslRequest, MAX_PACKET_LEN)
        ));
    }

    #[test]
    fn direct_tls_only_when_allowed() {
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01];
        assert_eq!(
            decode_initial(&hello, true).unwrap(),
            Decoded::Complete(InitialPacket::DirectTls, 0)
        );
        assert_eq!(
            decode_initial(&hello[..1], true).unwrap(),
            Decoded::Complete(InitialPacket::DirectTls, 0)
        );
        // Not at the first byte: a length word of 0x16030102, far too long.
        assert!(matches!(
            decode_initial(&hello, false),
            Err(DecodeError::InvalidLength { .. })
        ));
    }

    #[test]
    fn cancel_keys() {
        let mut b = BytesMut::new();
        encode_cancel_request(&mut b, 42, &[1, 2, 3, 4]);
        assert_eq!(b.len(), 16);
        assert_eq!(
            decode_initial(&b, false).unwrap(),
            Decoded::Complete(
                InitialPacket::CancelRequest(CancelRequest {
                    pid: 42,
                    key: &[1, 2, 3, 4]
                }),
                16
            )
        );
        let long = packet(
            CANCEL_REQUEST_CODE,
            &[&7u32.to_be_bytes()[..], &[9; 256]].concat(),
        );
        match decode_initial(&long, false).unwrap() {
            Decoded::Complete(InitialPacket::CancelRequest(c), 268) => {
                assert_eq!((c.pid, c.key.len()), (7, 256))
            }
            other => panic!("{other:?}"),
        }
        let too_long = packet(
            CANCEL_REQUEST_CODE,
            &[&7u32.to_be_bytes()[..], &[9; 257]].concat(),
        );
        assert_eq!(
            decode_initial(&too_long, false).unwrap_err().to_string(),
            "invalid length of cancel key in cancel request packet"
        );
        let no_key = packet(CANCEL_REQUEST_CODE, &7u32.to_be_bytes());
        assert_eq!(
            decode_initial(&no_key, false).unwrap_err().to_string(),
            "invalid length of cancel key in cancel request packet"
        );
        let no_pid = packet(CANCEL_REQUEST_CODE, &[]);
        assert_eq!(
            decode_initial(&no_pid, false).unwrap_err().to_string(),
            "invalid length of cancel request packet"
        );
    }

    #[test]
    fn unsupported_major_versions() {
        for (major, minor) in [(2u16, 0u16), (4, 0), (1234, 5681), (0, 0)] {
            let p = packet(ProtocolVersion::new(major, minor).as_u32(), b"user\0u\0\0");
            let err = decode_initial(&p, false).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2"
                )
            );
            assert_eq!(err.response().unwrap().code, "0A000");
        }
    }
}
