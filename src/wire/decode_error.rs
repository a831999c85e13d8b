//! [`DecodeError`]: what is wrong with a malformed initial packet, with PostgreSQL's texts.

use super::codes::{ProtocolVersion, sqlstate};

/// The hint PostgreSQL attaches to a bad `replication` value.
pub const REPLICATION_HINT: &str = "Valid values are: \"false\", 0, \"true\", 1, \"database\".";

/// A malformed initial packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length word is outside 8..=10004. Logged; the connection closes with no reply.
    #[error("invalid length of startup packet")]
    InvalidLength {
        /// The length the client announced.
        length: u32,
    },
    /// A CancelRequest too short to hold a process id. Closed with no reply.
    #[error("invalid length of cancel request packet")]
    InvalidCancelLength,
    /// A CancelRequest whose key is empty or longer than 256 bytes. Closed with no reply.
    #[error("invalid length of cancel key in cancel request packet")]
    InvalidCancelKeyLength {
        /// The key length received.
        length: usize,
    },
    /// A version whose major is not 3, or a request code where it is not allowed (a second
    /// SSLRequest, or a request inside TLS). FATAL 0A000.
    #[error(
        "unsupported frontend protocol {version}: server supports {}.0 to {}",
        ProtocolVersion::EARLIEST.major(),
        ProtocolVersion::LATEST
    )]
    UnsupportedProtocol {
        /// The version word received, shown as major.minor.
        version: ProtocolVersion,
    },
    /// The parameters of a StartupMessage are not `name\0value\0…\0`. FATAL 08P01.
    #[error("invalid startup packet layout: expected terminator as last byte")]
    InvalidLayout,
    /// The `replication` parameter is neither a boolean nor `database`. FATAL 22023.
    #[error("invalid value for parameter \"replication\": \"{value}\"")]
    InvalidReplication {
        /// The value received (lossily converted to UTF-8).
        value: String,
    },
    /// No `user` parameter, or an empty one. FATAL 28000.
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUserName,
    /// A message that should be an ErrorResponse is malformed or too long.
    #[error("invalid ErrorResponse message")]
    InvalidErrorResponse,
}

impl DecodeError {
    /// The SQLSTATE PostgreSQL reports with this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            DecodeError::UnsupportedProtocol { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
            DecodeError::InvalidReplication { .. } => sqlstate::INVALID_PARAMETER_VALUE,
            DecodeError::NoUserName => sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }
}
