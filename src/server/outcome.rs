//! What the server negotiator decides: its outputs and the owned outcomes they carry.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::proxied::ProxyInfo;
use crate::channel::{Channel, StartTls};
use crate::error::ServerError;
use crate::wire::{
    ErrorResponse, MAX_CANCEL_KEY_LEN, ProtocolVersion, REPLY_GSS_REJECTED, REPLY_SSL_ACCEPTED,
    REPLY_SSL_REJECTED, StartupMessage,
};

/// What the host must do next, from [`ServerNegotiator::poll_output`](super::ServerNegotiator::poll_output).
///
/// Four cases, in the manner of str0m's outputs: three instructions, and [`ServerOutput::Done`]
/// once the negotiation is decided — returned on every later poll too, with the same outcome,
/// so a host loop needs no arm for "already finished".
// A Cancel carries its key inline (no allocation on the cancel path), so this enum is large.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOutput {
    /// Write this one-byte reply to the client (in plaintext: replies are only ever sent
    /// before TLS).
    Transmit(Reply),
    /// Read at most `max` bytes (from the socket before TLS, from the TLS stream after) and
    /// pass them to `handle_input`, or call `handle_eof` on end of stream. Reading exactly
    /// `max` bytes never reads past the current packet.
    NeedInput {
        /// The most bytes the negotiator can use now without over-reading.
        max: usize,
    },
    /// Run the TLS server handshake now, then call `handle_tls_established` or
    /// `handle_tls_failed`. Returned again on every poll until one of them is called.
    StartTls(StartTls),
    /// Decided. Nothing more is read or sent by the negotiator.
    Done(ServerOutcome),
}

/// How a connection's negotiation ended: the three outcomes a host acts on. Closed, so a
/// `match` on it needs no catch-all arm.
// A Cancel carries its key inline (no allocation on the cancel path), so this enum is large.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOutcome {
    /// A StartupMessage arrived. The bytes after it are those `handle_input` did not consume.
    Startup(Startup),
    /// A CancelRequest arrived. Nothing is sent back; close the connection.
    Cancel(Cancel),
    /// Refuse the connection. Send [`Refusal::response_bytes`] if there is one (on the current
    /// channel), then close.
    Refuse(Refusal),
}

/// A one-byte reply to a negotiation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reply {
    /// `S`: TLS will start.
    SslAccepted,
    /// `N`: no TLS; the client may continue in plaintext.
    SslRejected,
    /// `N`: no GSS encryption.
    GssRejected,
}

impl Reply {
    /// The byte to send.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Reply::SslAccepted => REPLY_SSL_ACCEPTED,
            Reply::SslRejected => REPLY_SSL_REJECTED,
            Reply::GssRejected => REPLY_GSS_REJECTED,
        }
    }
}

/// A negotiation event, logged in PostgreSQL's words (its `trace_connection_negotiation`
/// messages) and kept for the host to inspect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NegotiationEvent {
    /// "SSLRequest accepted".
    SslRequestAccepted,
    /// "SSLRequest rejected".
    SslRequestRejected,
    /// "GSSENCRequest rejected".
    GssEncRequestRejected,
    /// "direct SSL connection accepted".
    DirectSslAccepted,
    /// "direct SSL connection rejected".
    DirectSslRejected,
}

impl NegotiationEvent {
    /// How many kinds of event there are.
    pub(crate) const KINDS: usize = 5;
}

impl std::fmt::Display for NegotiationEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NegotiationEvent::SslRequestAccepted => "SSLRequest accepted",
            NegotiationEvent::SslRequestRejected => "SSLRequest rejected",
            NegotiationEvent::GssEncRequestRejected => "GSSENCRequest rejected",
            NegotiationEvent::DirectSslAccepted => "direct SSL connection accepted",
            NegotiationEvent::DirectSslRejected => "direct SSL connection rejected",
        })
    }
}

/// A StartupMessage that was accepted by the negotiation, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Startup {
    /// The whole packet, length word included; shared, so that cloning the outcome costs no
    /// allocation.
    packet: Arc<[u8]>,
    version: ProtocolVersion,
    channel: Channel,
    client_addr: Option<SocketAddr>,
    proxy: Option<ProxyInfo>,
}

impl Startup {
    pub(crate) fn new(
        packet: Arc<[u8]>,
        version: ProtocolVersion,
        channel: Channel,
        client_addr: Option<SocketAddr>,
        proxy: Option<ProxyInfo>,
    ) -> Self {
        Startup {
            packet,
            version,
            channel,
            client_addr,
            proxy,
        }
    }

    /// The client's address and port: what a trusted proxy's PROXY header named, else the
    /// connection's peer (`None` when the policy was given none: a Unix socket). This is the
    /// address pg_hba.conf rules match and logs name.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client_addr
    }

    /// The PROXY protocol header the connection began with, when it came through a trusted
    /// proxy (the TCP peer is then the proxy's address).
    pub fn proxy(&self) -> Option<&ProxyInfo> {
        self.proxy.as_ref()
    }

    /// The message, borrowing its parameters.
    pub fn message(&self) -> StartupMessage<'_> {
        StartupMessage::parse(self.version, &self.packet[8..])
            .expect("checked when the packet was decoded")
    }

    /// The channel it arrived on.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The packet's bytes, length word included (what a proxy forwards upstream).
    pub fn packet(&self) -> &[u8] {
        &self.packet
    }

    /// The `user` parameter, as [`StartupMessage::user`] gives it (always there: a
    /// StartupMessage without a user is refused).
    pub fn user(&self) -> Option<&[u8]> {
        self.message().user()
    }

    /// The `database` parameter, as [`StartupMessage::database`] gives it (the user name when
    /// absent or empty, as PostgreSQL defaults it).
    pub fn database(&self) -> Option<&[u8]> {
        self.message().database()
    }

    /// The `user` parameter as text (invalid UTF-8 replaced), for logs and messages.
    pub fn user_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.user().unwrap_or_default())
    }

    /// The `database` parameter as text (invalid UTF-8 replaced), defaulting to the user.
    pub fn database_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.database().unwrap_or_default())
    }
}

/// A CancelRequest, owned without allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancel {
    pid: u32,
    key: [u8; MAX_CANCEL_KEY_LEN],
    key_len: u16,
    channel: Channel,
    client_addr: Option<SocketAddr>,
}

impl Cancel {
    #[inline]
    pub(crate) fn new(
        pid: u32,
        key: &[u8],
        channel: Channel,
        client_addr: Option<SocketAddr>,
    ) -> Self {
        let mut k = [0; MAX_CANCEL_KEY_LEN];
        k[..key.len()].copy_from_slice(key);
        Cancel {
            pid,
            key: k,
            key_len: key.len() as u16,
            channel,
            client_addr,
        }
    }

    /// The client's address: a trusted proxy's PROXY header's, else the connection's peer.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client_addr
    }

    /// The process id of the backend to cancel.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The secret key (compare it in constant time).
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len as usize]
    }

    /// The key as the `i32` that protocol 3.0 clients send (and tokio-postgres and pgwire keep
    /// for it), for a 4-byte key; None for the longer keys of protocol 3.2.
    pub fn key_i32(&self) -> Option<i32> {
        <[u8; 4]>::try_from(self.key()).ok().map(i32::from_be_bytes)
    }

    /// The channel it arrived on.
    pub fn channel(&self) -> Channel {
        self.channel
    }
}

/// A refused connection: why, and what to send before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    error: ServerError,
    channel: Channel,
}

impl Refusal {
    pub(crate) fn new(error: ServerError, channel: Channel) -> Self {
        Refusal { error, channel }
    }

    /// Why the connection is refused.
    pub fn error(&self) -> &ServerError {
        &self.error
    }

    /// The channel the response goes out on (TLS if the refusal came after the handshake).
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The ErrorResponse to send, or None where PostgreSQL closes without a reply.
    pub fn response(&self) -> Option<ErrorResponse> {
        self.error.response()
    }

    /// The encoded ErrorResponse to send, if any.
    pub fn response_bytes(&self) -> Option<Bytes> {
        self.response().map(|r| r.to_bytes())
    }
}
