//! The core's errors, with PostgreSQL's and libpq's texts.
//!
//! Each enum is `#[non_exhaustive]` and carries structured fields; `Display` gives the message
//! a PostgreSQL user already knows. Errors the peer must see expose the [`ErrorResponse`] to send
//! through `response()`.

use std::net::SocketAddr;

use crate::wire::proxy::ProxyError;
pub use crate::wire::{DecodeError, REPLICATION_HINT};
use crate::wire::{ErrorResponse, sqlstate};

/// The detail PostgreSQL attaches to the buffer-stuffing refusals.
pub const MITM_DETAIL: &str = "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.";

/// Why the server side refused a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A malformed or misplaced packet.
    #[error(transparent)]
    Packet(#[from] DecodeError),
    /// The client closed the connection in the middle of a packet. Logged, no reply.
    #[error("incomplete startup packet")]
    IncompletePacket,
    /// The client closed the connection between packets. PostgreSQL closes silently.
    #[error("connection closed by the client before a startup packet")]
    ClosedByClient,
    /// Bytes arrived after an SSLRequest, before TLS (CVE-2021-23214). FATAL 08P01.
    #[error("received unencrypted data after SSL request")]
    UnencryptedDataAfterSslRequest,
    /// Bytes arrived after a GSSENCRequest, before its reply was acted on. FATAL 08P01.
    #[error("received unencrypted data after GSSAPI encryption request")]
    UnencryptedDataAfterGssRequest,
    /// Bytes read in plaintext before a direct SSL handshake were left over after it. Logged,
    /// no reply.
    #[error("buffered unencrypted data remains after negotiating SSL connection")]
    UnencryptedDataAfterHandshake,
    /// A plaintext StartupMessage where the policy requires TLS. FATAL 28000.
    #[error("{message}")]
    PlaintextRefused {
        /// The message sent to the client.
        message: String,
    },
    /// A direct SSL ClientHello where TLS (or direct SSL) is not available. Closed with no
    /// reply.
    #[error("direct SSL connection rejected: SSL is not available")]
    DirectSslUnavailable,
    /// A direct SSL handshake that did not negotiate ALPN "postgresql". Logged, no reply.
    #[error("received direct SSL connection request without ALPN protocol negotiation extension")]
    DirectSslWithoutAlpn,
    /// A handshake that negotiated an ALPN protocol other than "postgresql" (the TLS layer
    /// should have refused it with an alert already). Logged, no reply.
    #[error("SSL connection was established with unexpected ALPN protocol")]
    UnexpectedAlpn,
    /// The TLS handshake failed; the TLS library has sent its alert.
    #[error("could not accept SSL connection: {reason}")]
    TlsHandshake {
        /// What the TLS layer reported.
        reason: String,
    },
    /// The handshake completed, but what it established is refused, as PostgreSQL's
    /// `be_tls_open_server` refuses it: a client certificate whose common name holds a NUL
    /// ("SSL certificate's common name contains embedded null"). Logged, no reply.
    #[error("{message}")]
    TlsRejected {
        /// PostgreSQL's log message.
        message: String,
    },
    /// A trusted proxy's PROXY protocol header is malformed or unsupported. Logged, closed
    /// without a reply (nothing a PostgreSQL client could take for the server's answer).
    #[error("{error} (from the trusted proxy at {})", host_port(.peer))]
    ProxyHeader {
        /// What is wrong with the header.
        error: ProxyError,
        /// The proxy's address.
        peer: Option<SocketAddr>,
    },
    /// A connection from a trusted proxy did not begin with a PROXY protocol header, or ended
    /// inside it. Logged, closed without a reply.
    #[error("connection from the trusted proxy at {} did not begin with a complete PROXY protocol header", host_port(.peer))]
    ProxyHeaderMissing {
        /// The proxy's address.
        peer: Option<SocketAddr>,
    },
    /// A PROXY protocol header from a peer outside the trusted proxy networks: anyone could
    /// claim any address with one. Logged, closed without a reply.
    #[error("PROXY protocol header from {}, which is not a trusted proxy: connection refused", host_port(.peer))]
    ProxyHeaderUntrusted {
        /// The peer's address.
        peer: Option<SocketAddr>,
    },
}

/// `host=… port=…`, as PostgreSQL names a client in its log.
fn host_port(peer: &Option<SocketAddr>) -> String {
    match peer {
        Some(p) => format!("host={} port={}", p.ip(), p.port()),
        None => "host=[local]".to_owned(),
    }
}

impl ServerError {
    /// The SQLSTATE PostgreSQL reports with this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ServerError::Packet(e) => e.sqlstate(),
            ServerError::PlaintextRefused { .. } => sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }

    /// The ErrorResponse to send before closing, or `None` where PostgreSQL closes without a
    /// reply.
    pub fn response(&self) -> Option<ErrorResponse> {
        match self {
            ServerError::Packet(e) => e.response(),
            ServerError::UnencryptedDataAfterSslRequest
            | ServerError::UnencryptedDataAfterGssRequest => Some(
                ErrorResponse::fatal(self.sqlstate(), self.to_string()).with_detail(MITM_DETAIL),
            ),
            ServerError::PlaintextRefused { message } => {
                Some(ErrorResponse::fatal(self.sqlstate(), message.clone()))
            }
            _ => None,
        }
    }
}

/// Why client settings are refused before any connection is made, in libpq's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// `sslmode` is not one of libpq's six values.
    #[error("invalid sslmode value: \"{value}\"")]
    InvalidSslMode {
        /// The value given.
        value: String,
    },
    /// `sslnegotiation` is neither `postgres` nor `direct`.
    #[error("invalid sslnegotiation value: \"{value}\"")]
    InvalidSslNegotiation {
        /// The value given.
        value: String,
    },
    /// `sslnegotiation=direct` with `disable`, `allow` or `prefer`.
    #[error(
        "weak sslmode \"{mode}\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")"
    )]
    WeakSslModeWithDirect {
        /// The sslmode given.
        mode: &'static str,
    },
    /// `sslrootcert=system` with a mode weaker than `verify-full`.
    #[error(
        "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")"
    )]
    WeakSslModeWithSystemRoot {
        /// The sslmode given.
        mode: &'static str,
    },
}

/// Why the client side could not connect, in libpq's words: what happened on the
/// connections (settings are checked before, with [`SettingsError`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered `N` to the SSLRequest and the mode requires SSL.
    #[error("server does not support SSL, but SSL was required")]
    SslNotSupported,
    /// The server answered `E` to the SSLRequest. Its text is deliberately not read: the server
    /// is not authenticated yet (CVE-2024-10977).
    #[error("server sent an error response during SSL exchange")]
    ErrorDuringSslExchange,
    /// The server answered the SSLRequest with a byte other than `S`, `N` or `E`.
    #[error("received invalid response to SSL negotiation: {}", char::from(*byte))]
    InvalidSslResponse {
        /// The byte received.
        byte: u8,
    },
    /// Bytes arrived with or after the `S` reply, before TLS (CVE-2021-23222).
    #[error("received unencrypted data after SSL response")]
    UnencryptedDataAfterSslResponse,
    /// The server closed the connection during the negotiation.
    #[error(
        "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request."
    )]
    ServerClosed,
    /// The server's first message after the StartupMessage is neither an authentication
    /// request, a NegotiateProtocolVersion nor an ErrorResponse (a ReadyForQuery with no
    /// authentication, say).
    #[error("expected authentication request from server, but received {}", char::from(*byte))]
    UnexpectedFirstMessage {
        /// The message type received.
        byte: u8,
    },
    /// An authentication request whose length libpq does not accept (8 to 2000 bytes).
    #[error("received invalid authentication request")]
    InvalidAuthenticationRequest,
    /// A NegotiateProtocolVersion whose length libpq does not accept (8 to 2000 bytes).
    #[error("received invalid protocol negotiation message")]
    InvalidProtocolNegotiation,
    /// An ErrorResponse during start-up that is too short, too long or malformed.
    #[error("received invalid error message")]
    InvalidErrorMessage,
    /// The server closed TLS cleanly (close_notify) before its first message.
    #[error("SSL connection has been closed unexpectedly")]
    SslConnectionClosed,
    /// A direct SSL handshake completed without ALPN.
    #[error("direct SSL connection was established without ALPN protocol negotiation extension")]
    DirectSslWithoutAlpn,
    /// A handshake completed with an ALPN protocol other than "postgresql".
    #[error("SSL connection was established with unexpected ALPN protocol")]
    UnexpectedAlpn,
    /// The TLS handshake failed, with the TLS layer's reason (certificate verification
    /// included).
    #[error("{reason}")]
    TlsHandshake {
        /// What the TLS layer reported.
        reason: String,
    },
    /// The server refused the connection after the negotiation (authentication, pg_hba.conf).
    #[error("{}", .response)]
    Server {
        /// The server's ErrorResponse.
        response: ErrorResponse,
    },
}
