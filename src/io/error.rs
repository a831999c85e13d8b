//! What the adapters return when a connect fails, and the texts of their timeouts.

use std::io;

use crate::error::ClientError;
use crate::tls::{ClientConfigError, ClientTlsError, SessionError};
use crate::wire::ErrorResponse;

/// PostgreSQL's text when `authentication_timeout` expires on the server side ("canceling
/// authentication due to timeout"); the error's kind is [`io::ErrorKind::TimedOut`].
pub const TIMEOUT_MESSAGE: &str = "canceling authentication due to timeout";

/// libpq's text when `connect_timeout` expires ("timeout expired").
pub const CONNECT_TIMEOUT_MESSAGE: &str = "timeout expired";

/// Why a client connect failed, with libpq's message.
///
/// One match tells why: the configuration ([`Config`](ConnectError::Config), before any
/// connection is made), the server's refusal ([`Server`](ConnectError::Server)), the
/// negotiation ([`Negotiation`](ConnectError::Negotiation)), TLS
/// ([`Tls`](ConnectError::Tls)), the deadline ([`Timeout`](ConnectError::Timeout)) or the
/// network ([`Io`](ConnectError::Io)). Each wrapping variant displays its cause's text and
/// exposes the cause's own source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid; nothing was sent.
    #[error(transparent)]
    Config(#[from] ClientConfigError),
    /// The server refused with this ErrorResponse (pg_hba.conf, authentication, start-up), and
    /// libpq's plan had no method left to try.
    #[error("{0}")]
    Server(ErrorResponse),
    /// The negotiation failed: the server's reply to an SSLRequest, its first message, ALPN.
    #[error(transparent)]
    Negotiation(ClientError),
    /// The TLS setup or handshake failed (the last attempt's reason), or TLS failed after it.
    #[error(transparent)]
    Tls(#[from] ClientTlsError),
    /// The TLS session's facts could not be read after the handshake.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// `connect_timeout` expired ("timeout expired"). libpq gives up at once: no fallback.
    #[error("{CONNECT_TIMEOUT_MESSAGE}")]
    Timeout,
    /// The TCP connection, or a read or write on it, failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<ClientError> for ConnectError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Server { response } => ConnectError::Server(response),
            e => ConnectError::Negotiation(e),
        }
    }
}

impl ConnectError {
    /// The server's ErrorResponse, when the server refused.
    pub fn server_response(&self) -> Option<&ErrorResponse> {
        match self {
            ConnectError::Server(r) => Some(r),
            _ => None,
        }
    }
}

/// A failure during authentication, as the host's callback reports it to `connect_with`.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The server refused with this ErrorResponse: libpq's fallback may reconnect with the
    /// next method (an ErrorResponse during authentication is CONNECTION_FAILED in libpq).
    Server(ErrorResponse),
    /// Give up with this error.
    Abort(ConnectError),
}

impl From<io::Error> for AuthFailure {
    fn from(e: io::Error) -> Self {
        AuthFailure::Abort(e.into())
    }
}

impl From<ConnectError> for AuthFailure {
    fn from(e: ConnectError) -> Self {
        AuthFailure::Abort(e)
    }
}

/// OpenSSL's error stack inside an I/O error from a TLS stream (what the openssl crate and
/// tokio-openssl wrap), when it has one.
pub(crate) fn ssl_error_stack(e: &io::Error) -> Option<&openssl::error::ErrorStack> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>())
        .and_then(openssl::ssl::Error::ssl_error)
        .filter(|stack| !stack.errors().is_empty())
}
