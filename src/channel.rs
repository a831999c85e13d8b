//! The types both negotiators share: which channel a connection speaks over, the instruction to
//! start TLS, and what the host reports once a handshake is done.

use crate::wire::ALPN_PROTOCOL;

/// How the bytes of a connection travel once the negotiation has decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Unencrypted.
    Plaintext,
    /// Inside TLS.
    Tls {
        /// Whether TLS started at the first byte (PostgreSQL 17 direct SSL) rather than after
        /// an SSLRequest.
        direct: bool,
    },
}

impl Channel {
    /// Whether the channel is TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Channel::Tls { .. })
    }
}

/// The instruction to run a TLS handshake now.
///
/// On the server, the handshake is an accept; on the client, a connect that offers ALPN
/// "postgresql". For direct SSL on the server side, the bytes that
/// [`ServerNegotiator::handle_input`](crate::server::ServerNegotiator::handle_input) did not
/// consume are the start of the client's TLS handshake and must be given to the TLS library
/// before any further socket byte. On the SSLRequest path there are none: nothing received in
/// plaintext is ever handed to TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartTls {
    /// Whether this is a direct SSL connection.
    pub direct: bool,
}

/// What a completed TLS handshake established, as far as the negotiation cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeInfo<'a> {
    alpn: Option<&'a [u8]>,
    unread_plaintext: usize,
}

impl<'a> HandshakeInfo<'a> {
    /// A handshake that negotiated `alpn` (None when no ALPN was negotiated).
    pub fn new(alpn: Option<&'a [u8]>) -> Self {
        HandshakeInfo {
            alpn,
            unread_plaintext: 0,
        }
    }

    /// A handshake that negotiated ALPN "postgresql".
    pub fn postgresql() -> Self {
        HandshakeInfo::new(Some(ALPN_PROTOCOL))
    }

    /// Server side, direct SSL: how many of the bytes read before the handshake the TLS library
    /// left unread. Anything but zero refuses the connection, as PostgreSQL does.
    pub fn with_unread_plaintext(mut self, bytes: usize) -> Self {
        self.unread_plaintext = bytes;
        self
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<&'a [u8]> {
        self.alpn
    }

    /// The bytes read before a direct SSL handshake that TLS left unread.
    pub fn unread_plaintext(&self) -> usize {
        self.unread_plaintext
    }
}
