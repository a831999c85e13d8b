//! The bytes of the first packets of a PostgreSQL connection.
//!
//! This module knows the frames and nothing of policy: [`decode_initial`] turns the first bytes
//! of a connection (or the first decrypted bytes after TLS) into an [`InitialPacket`], borrowing
//! from the input, and the `encode_*` functions and constants produce the requests and replies.
//! Which packet is allowed when is decided by [`crate::server`] and [`crate::client`].
//!
//! Every initial packet starts with an `int32` length that counts itself, then an `int32` that is
//! either a request code or a protocol version. A valid packet is
//! [`MIN_PACKET_LEN`]`..=`[`MAX_PACKET_LEN`] bytes long, as in PostgreSQL.
//!
//! [`proxy`] decodes and encodes the PROXY protocol header (v1 and v2) a load balancer may send
//! before all of that.

mod codes;
mod decode;
mod decode_error;
mod encode;
mod error_response;
pub mod proxy;
mod startup;

pub(crate) use codes::be_u32;
pub use codes::{
    ALPN_PROTOCOL, ALPN_WIRE, CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, MAX_CANCEL_KEY_LEN,
    MAX_PACKET_LEN, MIN_PACKET_LEN, ProtocolVersion, SSL_REQUEST_CODE, TLS_HANDSHAKE_RECORD,
    sqlstate,
};
pub(crate) use decode::check_length;
pub use decode::{CancelRequest, Decoded, InitialPacket, decode_initial};
pub use decode_error::{DecodeError, REPLICATION_HINT};
pub use encode::{
    GSSENC_REQUEST, REPLY_GSS_REJECTED, REPLY_SSL_ACCEPTED, REPLY_SSL_REJECTED, SSL_REQUEST,
    encode_cancel_request, encode_negotiate_protocol_version, encode_startup_message,
};
pub use error_response::{ErrorResponse, Severity};
#[cfg(feature = "openssl")]
pub(crate) use startup::parse_bool_str;
pub use startup::{Parameter, Parameters, StartupMessage};
