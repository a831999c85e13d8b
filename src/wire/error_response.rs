//! ErrorResponse (`E`), the message a server sends when it refuses a connection.

use bytes::{BufMut, Bytes, BytesMut};

use super::codes::be_u32;
use super::decode::Decoded;
use super::decode_error::{DecodeError, REPLICATION_HINT};

/// libpq refuses an ErrorResponse longer than this during connection startup (`MAX_ERRLEN`).
const MAX_ERROR_MESSAGE_LEN: usize = 30_000;

/// The severity of an ErrorResponse, as sent in its `S` and `V` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// `ERROR`: the current command failed.
    Error,
    /// `FATAL`: the session ends; every refusal during the negotiation is FATAL.
    Fatal,
    /// `PANIC`: the server is shutting down all sessions.
    Panic,
}

impl Severity {
    /// The non-localized name PostgreSQL sends.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
        }
    }

    fn parse(s: &str) -> Option<Severity> {
        match s {
            "ERROR" => Some(Severity::Error),
            "FATAL" => Some(Severity::Fatal),
            "PANIC" => Some(Severity::Panic),
            _ => None,
        }
    }
}

/// An ErrorResponse: severity, SQLSTATE, message, and the optional detail and hint. May grow
/// fields (PostgreSQL has more): build one with [`fatal`](ErrorResponse::fatal) or
/// [`new`](ErrorResponse::new).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorResponse {
    /// The severity (`S` and `V`).
    pub severity: Severity,
    /// The SQLSTATE code (`C`), five characters.
    pub code: String,
    /// The primary message (`M`).
    pub message: String,
    /// The detail (`D`).
    pub detail: Option<String>,
    /// The hint (`H`).
    pub hint: Option<String>,
}

impl ErrorResponse {
    /// An error of `severity` with `code` and `message`.
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        ErrorResponse {
            severity,
            code: code.to_owned(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// A FATAL error with `code` and `message`.
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        ErrorResponse::new(Severity::Fatal, code, message)
    }

    /// The same error with a detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The same error with a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Appends the message (`E`, length, fields, terminator) to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_u8(b'E');
        buf.put_u32(0);
        let mut field = |tag: u8, value: &str| {
            buf.put_u8(tag);
            // A NUL inside a field would end it early; PostgreSQL never sends one.
            buf.extend(value.bytes().filter(|&b| b != 0));
            buf.put_u8(0);
        };
        field(b'S', self.severity.as_str());
        field(b'V', self.severity.as_str());
        field(b'C', &self.code);
        field(b'M', &self.message);
        if let Some(d) = &self.detail {
            field(b'D', d);
        }
        if let Some(h) = &self.hint {
            field(b'H', h);
        }
        buf.put_u8(0);
        let len = (buf.len() - start - 1) as u32;
        buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    }

    /// The encoded message.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32 + self.message.len());
        self.encode(&mut b);
        b.freeze()
    }

    /// Decodes an ErrorResponse at the start of `buf` (its first byte must be `E`). Unknown
    /// fields are skipped; a missing severity reads as FATAL and a missing code as `XX000`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<ErrorResponse>, DecodeError> {
        if buf.is_empty() {
            return Ok(Decoded::Partial(5));
        }
        if buf[0] != b'E' {
            return Err(DecodeError::InvalidErrorResponse);
        }
        if buf.len() < 5 {
            return Ok(Decoded::Partial(5 - buf.len()));
        }
        let len = be_u32(&buf[1..5]) as usize;
        if !(5..=MAX_ERROR_MESSAGE_LEN).contains(&len) {
            return Err(DecodeError::InvalidErrorResponse);
        }
        if buf.len() < len + 1 {
            return Ok(Decoded::Partial(len + 1 - buf.len()));
        }
        let mut fields = &buf[5..len + 1];
        let mut resp = ErrorResponse::fatal("XX000", "");
        let mut severity_seen = false;
        loop {
            match fields.split_first() {
                Some((0, [])) => break,
                Some((&tag, rest)) if tag != 0 => {
                    let end = rest
                        .iter()
                        .position(|&b| b == 0)
                        .ok_or(DecodeError::InvalidErrorResponse)?;
                    let value = String::from_utf8_lossy(&rest[..end]).into_owned();
                    fields = &rest[end + 1..];
                    match tag {
                        b'V' => {
                            if let Some(s) = Severity::parse(&value) {
                                resp.severity = s;
                                severity_seen = true;
                            }
                        }
                        b'S' if !severity_seen => {
                            if let Some(s) = Severity::parse(&value) {
                                resp.severity = s;
                            }
                        }
                        b'C' => resp.code = value,
                        b'M' => resp.message = value,
                        b'D' => resp.detail = Some(value),
                        b'H' => resp.hint = Some(value),
                        _ => {}
                    }
                }
                _ => return Err(DecodeError::InvalidErrorResponse),
            }
        }
        Ok(Decoded::Complete(resp, len + 1))
    }
}

impl std::fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:  {}", self.severity.as_str(), self.message)?;
        if let Some(d) = &self.detail {
            write!(f, "\nDETAIL:  {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nHINT:  {h}")?;
        }
        Ok(())
    }
}

impl DecodeError {
    /// The ErrorResponse PostgreSQL sends for this error, or `None` where it only logs it and
    /// closes the connection (its COMMERROR cases).
    pub fn response(&self) -> Option<ErrorResponse> {
        match self {
            DecodeError::UnsupportedProtocol { .. }
            | DecodeError::InvalidLayout
            | DecodeError::NoUserName => {
                Some(ErrorResponse::fatal(self.sqlstate(), self.to_string()))
            }
            DecodeError::InvalidReplication { .. } => Some(
                ErrorResponse::fatal(self.sqlstate(), self.to_string()).with_hint(REPLICATION_HINT),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = ErrorResponse::fatal("08P01", "received unencrypted data after SSL request")
            .with_detail("d")
            .with_hint("h");
        let b = e.to_bytes();
        assert_eq!(b[0], b'E');
        assert_eq!(be_u32(&b[1..5]) as usize, b.len() - 1);
        assert_eq!(b[b.len() - 1], 0);
        assert_eq!(
            ErrorResponse::decode(&b).unwrap(),
            Decoded::Complete(e, b.len())
        );
        assert_eq!(
            ErrorResponse::decode(&b[..7]).unwrap(),
            Decoded::Partial(b.len() - 7)
        );
    }

    #[test]
    fn the_fields_postgres_sends() {
        let b = ErrorResponse::fatal("28000", "m").to_bytes();
        assert_eq!(&b[5..], b"SFATAL\0VFATAL\0C28000\0Mm\0\0");
    }

    #[test]
    fn hostile_input() {
        assert!(ErrorResponse::decode(b"X").is_err());
        assert!(ErrorResponse::decode(b"E\0\0\0\x04").is_err());
        assert!(ErrorResponse::decode(b"E\x7f\0\0\0").is_err());
        assert!(ErrorResponse::decode(b"E\0\0\0\x07Mab").is_err());
    }
}
