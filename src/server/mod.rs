//! The server side: one accepted connection, from its first byte to a decided outcome.
//!
//! [`ServerNegotiator`] is a sans-IO state machine. The host owns the socket and the TLS
//! library and drives it with this loop:
//!
//! 1. call [`poll_output`](ServerNegotiator::poll_output) and act on what it returns, until
//!    it returns [`ServerOutput::NeedInput`] (read, then call
//!    [`handle_input`](ServerNegotiator::handle_input) or
//!    [`handle_eof`](ServerNegotiator::handle_eof)) or
//!    [`ServerOutput::StartTls`] (run the handshake, then call
//!    [`handle_tls_established`](ServerNegotiator::handle_tls_established) or
//!    [`handle_tls_failed`](ServerNegotiator::handle_tls_failed));
//! 2. repeat until it returns [`ServerOutput::Done`] with the [`ServerOutcome`]: a
//!    StartupMessage, a CancelRequest, or a refusal.
//!
//! After TLS is up the host keeps feeding `handle_input`, now with the decrypted bytes.
//!
//! Behind a load balancer, [`ServerPolicy::proxy_networks`] names the balancers trusted to
//! send a PROXY protocol header (v1 or v2) first: a connection whose peer
//! ([`ServerPolicy::peer_addr`]) is in them must begin with one, which the negotiator reads
//! before the first packet (`NeedInput { max }` never reaches past it), and the client address
//! it carries becomes the connection's ([`ServerNegotiator::client_addr`], the plaintext
//! refusal, `connection received`, [`Startup::client_addr`]). Any other peer that begins with
//! a header is refused. A refused header gets no reply at all: the connection is closed, and
//! the reason logged. The negotiation that follows is unchanged.
//!
//! The rules are PostgreSQL's (backend_startup.c), with two deliberate tightenings, both of
//! which only refuse what no conforming client sends:
//!
//! * Bytes received after an SSLRequest or a GSSENCRequest, before its reply is acted on, are
//!   refused at once, in plaintext, with FATAL 08P01 "received unencrypted data after SSL
//!   request" (or "… after GSSAPI encryption request"); no plaintext byte ever reaches TLS.
//! * At most one SSLRequest and one GSSENCRequest per connection, and none once TLS is up
//!   (direct SSL included): a second one is FATAL 0A000 "unsupported frontend protocol
//!   1234.5679: server supports 3.0 to 3.2".

mod header_buf;
mod outcome;
mod packet_buf;
mod policy;
mod proxied;
mod proxy_networks;

pub use outcome::{Cancel, NegotiationEvent, Refusal, Reply, ServerOutcome, ServerOutput, Startup};
pub use policy::ServerPolicy;
pub use proxied::ProxyInfo;
pub use proxy_networks::{IpNetwork, NetworkError, ProxyNetworks};

use std::net::SocketAddr;
use std::sync::Arc;

use log::{debug, info, warn};

use crate::channel::{Channel, HandshakeInfo, StartTls};
use crate::error::{DecodeError, ServerError};
use crate::wire::proxy::{ProxyCommand, ProxyHeader, starts_with_proxy_header};
use crate::wire::{
    ALPN_PROTOCOL, Decoded, GSSENC_REQUEST_CODE, InitialPacket, MAX_PACKET_LEN, MIN_PACKET_LEN,
    ProtocolVersion, SSL_REQUEST_CODE, StartupMessage, decode_initial,
};
use header_buf::{HeaderBuf, HeaderFill};
use packet_buf::{Assembled, Fill, PacketBuf};

#[allow(clippy::large_enum_variant)] // holds the outcome, a Cancel inline
#[derive(Clone, Debug)]
enum State {
    /// Reading the PROXY protocol header a trusted proxy sends first.
    ProxyHeader,
    /// Reading a packet, from the socket or (once `channel` is TLS) from the TLS stream.
    Reading,
    /// Waiting for the host's TLS handshake.
    AwaitTls { direct: bool },
    /// Decided: the outcome, returned by every later poll.
    Finished(ServerOutcome),
}

/// One connection's server-side negotiation. See the [module documentation](self) for the
/// call order.
#[derive(Clone, Debug)]
pub struct ServerNegotiator {
    policy: ServerPolicy,
    state: State,
    reply: Option<Reply>,
    channel: Channel,
    /// No byte has arrived yet: a leading 0x16 means direct SSL.
    at_first_byte: bool,
    ssl_done: bool,
    gss_done: bool,
    buf: PacketBuf,
    /// The PROXY protocol header while it arrives (empty unless the peer is a trusted proxy).
    header: HeaderBuf,
    /// The header a trusted proxy sent, once it is in.
    proxy: Option<ProxyInfo>,
    /// The client's address: the policy's peer, or the one a trusted proxy named.
    client_addr: Option<SocketAddr>,
    /// Each kind of event happens at most once per connection, so one slot per kind holds
    /// every sequence: none is ever dropped.
    events: [Option<NegotiationEvent>; NegotiationEvent::KINDS],
}

impl ServerNegotiator {
    /// A negotiator for a connection just accepted, under `policy`.
    ///
    /// With [`ServerPolicy::log_connections`] on, `connection received: host=… port=…` is
    /// logged here, or after the PROXY protocol header when the peer is a trusted proxy.
    pub fn new(policy: ServerPolicy) -> Self {
        let expect_header = policy.expects_proxy_header();
        let neg = ServerNegotiator {
            client_addr: policy.peer(),
            policy,
            state: if expect_header {
                State::ProxyHeader
            } else {
                State::Reading
            },
            reply: None,
            channel: Channel::Plaintext,
            at_first_byte: true,
            ssl_done: false,
            gss_done: false,
            buf: PacketBuf::default(),
            header: HeaderBuf::default(),
            proxy: None,
            events: [None; NegotiationEvent::KINDS],
        };
        if !expect_header {
            neg.log_connection();
        }
        neg
    }

    /// The next thing the host must do. Drain it after every `handle_*` call until it asks for
    /// input or for a TLS handshake, or returns [`ServerOutput::Done`].
    #[must_use]
    pub fn poll_output(&mut self) -> ServerOutput {
        if let Some(reply) = self.reply.take() {
            return ServerOutput::Transmit(reply);
        }
        match &mut self.state {
            State::ProxyHeader => ServerOutput::NeedInput {
                max: self.header.wanted(),
            },
            State::Reading => ServerOutput::NeedInput {
                max: self.buf.wanted(),
            },
            State::AwaitTls { direct } => ServerOutput::StartTls(StartTls { direct: *direct }),
            // A Cancel is copied straight into the output (it is `Copy`, and large).
            State::Finished(ServerOutcome::Cancel(c)) => {
                ServerOutput::Done(ServerOutcome::Cancel(*c))
            }
            State::Finished(outcome) => ServerOutput::Done(outcome.clone()),
        }
    }

    /// Bytes received: from the socket before TLS, decrypted from the TLS stream after.
    ///
    /// Returns how many bytes of `data` were consumed. The rest belong to what follows and stay
    /// with the caller: the client's TLS handshake for direct SSL (replay them into TLS), or the
    /// protocol after a StartupMessage (the first regular messages). Bytes that arrive where the
    /// protocol allows none (after an SSLRequest or a GSSENCRequest) are consumed and refuse
    /// the connection.
    #[must_use = "the bytes not consumed belong to what follows (TLS, or the protocol)"]
    pub fn handle_input(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        match self.state {
            State::ProxyHeader => self.read_header(data),
            State::Reading => self.read(data),
            State::AwaitTls { direct } => {
                // Plaintext handed to the negotiator while TLS is to start: on the SSLRequest
                // path these are stuffed bytes; on the direct path, a host error. Either way
                // they must not become TLS input.
                let error = if direct {
                    ServerError::UnencryptedDataAfterHandshake
                } else {
                    ServerError::UnencryptedDataAfterSslRequest
                };
                self.refuse(error);
                data.len()
            }
            State::Finished(_) => {
                debug!("input after the negotiation finished ignored");
                0
            }
        }
    }

    /// The peer closed the stream (a read returned 0 bytes).
    pub fn handle_eof(&mut self) {
        match self.state {
            State::ProxyHeader => {
                let peer = self.policy.peer();
                if self.header.len() == 0 {
                    // A balancer's TCP health check: connect, close.
                    debug!("connection from a trusted proxy closed before a PROXY header");
                    self.finish_refusal(ServerError::ClosedByClient, false);
                } else {
                    self.refuse(ServerError::ProxyHeaderMissing { peer });
                }
            }
            State::Reading => {
                if self.buf.is_empty() {
                    debug!("connection closed before a startup packet");
                    self.finish_refusal(ServerError::ClosedByClient, false);
                } else {
                    // PostgreSQL stays quiet about a partial length word after a negotiation.
                    let quiet = self.buf.len() < 4 && (self.ssl_done || self.gss_done);
                    self.finish_refusal(ServerError::IncompletePacket, !quiet);
                }
            }
            State::AwaitTls { direct } => {
                if direct {
                    self.event(NegotiationEvent::DirectSslRejected);
                }
                self.refuse(ServerError::TlsHandshake {
                    reason: "EOF detected".to_owned(),
                });
            }
            State::Finished(_) => {}
        }
    }

    /// The TLS handshake the negotiator asked for completed. For direct SSL, ALPN
    /// "postgresql" must have been negotiated and no plaintext left unread.
    pub fn handle_tls_established(&mut self, info: HandshakeInfo<'_>) {
        let State::AwaitTls { direct } = self.state else {
            warn!("TLS handshake reported while none was requested; ignored");
            return;
        };
        let error = match info.alpn() {
            Some(p) if p != ALPN_PROTOCOL => Some(ServerError::UnexpectedAlpn),
            None if direct => Some(ServerError::DirectSslWithoutAlpn),
            _ if direct && info.unread_plaintext() > 0 => {
                Some(ServerError::UnencryptedDataAfterHandshake)
            }
            _ => None,
        };
        if let Some(error) = error {
            if direct {
                self.event(NegotiationEvent::DirectSslRejected);
            }
            // TLS is up, but the refusals here are logged only, as in PostgreSQL.
            self.channel = Channel::Tls { direct };
            self.refuse(error);
            return;
        }
        if direct {
            self.event(NegotiationEvent::DirectSslAccepted);
        }
        self.channel = Channel::Tls { direct };
        self.ssl_done = true;
        self.gss_done = true;
        self.state = State::Reading;
    }

    /// The TLS handshake failed (the TLS library has sent its alert). `reason` is logged.
    pub fn handle_tls_failed(&mut self, reason: &str) {
        let State::AwaitTls { direct } = self.state else {
            warn!("TLS failure reported while no handshake was requested; ignored");
            return;
        };
        if direct {
            self.event(NegotiationEvent::DirectSslRejected);
        }
        self.refuse(ServerError::TlsHandshake {
            reason: reason.to_owned(),
        });
    }

    /// The handshake completed but the host refuses what it established, with PostgreSQL's
    /// `message` (a client certificate whose names hold a NUL, say): logged as given, and the
    /// connection is closed without a reply, as PostgreSQL closes it.
    pub fn handle_tls_rejected(&mut self, message: &str) {
        let State::AwaitTls { direct } = self.state else {
            warn!("TLS rejection reported while no handshake was requested; ignored");
            return;
        };
        if direct {
            self.event(NegotiationEvent::DirectSslRejected);
        }
        self.channel = Channel::Tls { direct };
        self.refuse(ServerError::TlsRejected {
            message: message.to_owned(),
        });
    }

    /// The channel the connection is on now.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The policy in force.
    pub fn policy(&self) -> &ServerPolicy {
        &self.policy
    }

    /// The negotiation events so far, in order.
    pub fn events(&self) -> impl Iterator<Item = NegotiationEvent> + '_ {
        self.events.iter().flatten().copied()
    }

    /// Whether an outcome has been decided.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished(_))
    }

    /// How many bytes the negotiator holds (a partial PROXY header or a partial packet, never
    /// both); never more than 10004, or 16 + the policy's v2 length bound while a trusted
    /// proxy's header arrives.
    pub fn buffered_len(&self) -> usize {
        self.buf.held() + self.header.len()
    }

    /// The client's address: what a trusted proxy's PROXY header named, else the policy's
    /// peer. This is the address in the plaintext refusal and the `connection received` line.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client_addr
    }

    /// The PROXY protocol header a trusted proxy sent, once it is in.
    pub fn proxy(&self) -> Option<&ProxyInfo> {
        self.proxy.as_ref()
    }

    fn log_connection(&self) {
        if !self.policy.logs_connections() {
            return;
        }
        match self.client_addr {
            Some(a) => info!("connection received: host={} port={}", a.ip(), a.port()),
            None => info!("connection received: host=[local]"),
        }
    }

    /// Input while the trusted proxy's header is expected.
    fn read_header(&mut self, data: &[u8]) -> usize {
        let peer = self.policy.peer();
        let fill = self.header.push(data, self.policy.proxy_header_limits());
        let used = match fill {
            Ok(HeaderFill::Incomplete { taken }) => return taken,
            Ok(HeaderFill::Complete { header, used }) => {
                let info = accepted_header(&header, peer);
                self.on_proxy_header(info);
                used
            }
            Err(crate::wire::proxy::ProxyError::NotProxy) => {
                self.refuse(ServerError::ProxyHeaderMissing { peer });
                return data.len();
            }
            Err(error) => {
                self.refuse(ServerError::ProxyHeader { error, peer });
                return data.len();
            }
        };
        if used < data.len() {
            used + self.read(&data[used..])
        } else {
            used
        }
    }

    fn on_proxy_header(&mut self, info: ProxyInfo) {
        self.header.clear();
        if let Some(source) = info.source() {
            self.client_addr = Some(source);
        }
        self.proxy = Some(info);
        self.state = State::Reading;
        self.log_connection();
    }

    fn read(&mut self, data: &[u8]) -> usize {
        // A leading 0x16 is direct SSL only as the connection's very first byte (after a
        // trusted proxy's header).
        let first_byte = std::mem::take(&mut self.at_first_byte);
        if first_byte
            && !self.policy.trusted_proxies().is_empty()
            && self.proxy.is_none()
            && starts_with_proxy_header(data) != Some(false)
        {
            // `P` or CR first: no packet or TLS record begins so; with the PROXY protocol on,
            // it is a header from a peer that may not send one.
            self.refuse(ServerError::ProxyHeaderUntrusted {
                peer: self.policy.peer(),
            });
            return data.len();
        }
        if self.buf.is_empty() {
            // Fast path: a whole packet in hand is decoded in place, without copying.
            match decode_initial(data, first_byte) {
                Ok(Decoded::Complete(packet, n)) => {
                    return n + self.on_packet(packet, &data[..n], &data[n..]);
                }
                Ok(Decoded::Partial(_)) => {}
                Err(e) => {
                    self.refuse(e.into());
                    return data.len();
                }
            }
        }
        match self.buf.push(data) {
            Err(e) => {
                self.refuse(e.into());
                data.len()
            }
            Ok((taken, Fill::Incomplete)) => taken,
            Ok((taken, Fill::Complete)) => {
                let rest = &data[taken..];
                taken
                    + match self.buf.take() {
                        Assembled::Heap(v) => self.dispatch(&v, rest),
                        Assembled::Inline(array, len) => self.dispatch(&array[..len], rest),
                    }
            }
        }
    }

    /// Decodes an assembled packet and acts on it; returns how much of `rest` was consumed.
    fn dispatch(&mut self, packet: &[u8], rest: &[u8]) -> usize {
        match decode_initial(packet, false) {
            Ok(Decoded::Complete(p, _)) => self.on_packet(p, packet, rest),
            Ok(Decoded::Partial(_)) => unreachable!("an assembled packet is complete"),
            Err(e) => {
                self.refuse(e.into());
                rest.len()
            }
        }
    }

    /// Acts on one whole packet. `rest` is what followed it in the same input. Returns how
    /// many bytes of `rest` were consumed.
    fn on_packet(&mut self, packet: InitialPacket<'_>, raw: &[u8], rest: &[u8]) -> usize {
        match packet {
            InitialPacket::SslRequest => self.on_ssl_request(rest),
            InitialPacket::GssEncRequest => self.on_gss_request(rest),
            InitialPacket::CancelRequest(c) => {
                info!("cancel request received (pid {})", c.pid);
                self.finish(ServerOutcome::Cancel(Cancel::new(
                    c.pid,
                    c.key,
                    self.channel,
                    self.client_addr,
                )));
                0
            }
            InitialPacket::Startup(m) => {
                self.on_startup(m, raw);
                0
            }
            InitialPacket::DirectTls => {
                // Every byte belongs to the ClientHello: none is consumed.
                self.direct_ssl();
                0
            }
        }
    }

    fn on_ssl_request(&mut self, rest: &[u8]) -> usize {
        if self.ssl_done || self.channel.is_tls() {
            self.refuse(unsupported(SSL_REQUEST_CODE));
            return rest.len();
        }
        self.ssl_done = true;
        if !rest.is_empty() {
            self.refuse(ServerError::UnencryptedDataAfterSslRequest);
            return rest.len();
        }
        if self.policy.tls_available() {
            self.event(NegotiationEvent::SslRequestAccepted);
            self.reply = Some(Reply::SslAccepted);
            self.state = State::AwaitTls { direct: false };
        } else {
            self.event(NegotiationEvent::SslRequestRejected);
            self.reply = Some(Reply::SslRejected);
        }
        0
    }

    fn on_gss_request(&mut self, rest: &[u8]) -> usize {
        if self.gss_done || self.channel.is_tls() {
            self.refuse(unsupported(GSSENC_REQUEST_CODE));
            return rest.len();
        }
        self.gss_done = true;
        if !rest.is_empty() {
            self.refuse(ServerError::UnencryptedDataAfterGssRequest);
            return rest.len();
        }
        self.event(NegotiationEvent::GssEncRequestRejected);
        self.reply = Some(Reply::GssRejected);
        0
    }

    fn on_startup(&mut self, m: StartupMessage<'_>, raw: &[u8]) {
        if let Err(e) = m.check_user() {
            self.refuse(e.into());
            return;
        }
        if !self.channel.is_tls() && !self.policy.plaintext_allowed() {
            let lossy =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            let host = self.client_addr.map(|a| a.ip());
            if let Some(message) =
                self.policy
                    .plaintext_refusal(host, &lossy(m.user()), &lossy(m.database()))
            {
                self.refuse(ServerError::PlaintextRefused { message });
                return;
            }
        }
        let version = m.version();
        let packet: Arc<[u8]> = Arc::from(raw);
        debug_assert!((MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&packet.len()));
        self.finish(ServerOutcome::Startup(Startup::new(
            packet,
            version,
            self.channel,
            self.client_addr,
            self.proxy.clone(),
        )));
    }

    fn direct_ssl(&mut self) {
        if self.policy.direct_ssl_available() {
            self.state = State::AwaitTls { direct: true };
        } else {
            // The event line is PostgreSQL's only log line for this case.
            self.event(NegotiationEvent::DirectSslRejected);
            self.finish_refusal(ServerError::DirectSslUnavailable, false);
        }
    }

    fn event(&mut self, e: NegotiationEvent) {
        info!("{e}");
        let slot = self.events.iter_mut().find(|s| s.is_none());
        debug_assert!(slot.is_some(), "each event kind happens once");
        if let Some(slot) = slot {
            *slot = Some(e);
        }
    }

    fn refuse(&mut self, error: ServerError) {
        self.finish_refusal(error, true);
    }

    fn finish_refusal(&mut self, error: ServerError, log_it: bool) {
        if log_it {
            match error.response() {
                Some(r) => warn!("FATAL:  {}", r.message),
                None => warn!("{error}"),
            }
        }
        self.reply = None;
        let channel = self.channel;
        self.finish(ServerOutcome::Refuse(Refusal::new(error, channel)));
    }

    #[inline]
    fn finish(&mut self, outcome: ServerOutcome) {
        self.buf.clear();
        self.header.clear();
        self.state = State::Finished(outcome);
    }
}

/// The header's facts, logged: a v2 LOCAL (a health check) keeps the peer's address.
fn accepted_header(header: &ProxyHeader<'_>, peer: Option<SocketAddr>) -> ProxyInfo {
    let info = ProxyInfo::from_header(header);
    match (info.command(), info.source()) {
        (ProxyCommand::Local, _) => debug!("PROXY protocol LOCAL header from the trusted proxy"),
        (_, Some(src)) => debug!(
            "PROXY protocol header: client host={} port={} via the trusted proxy {}",
            src.ip(),
            src.port(),
            peer.map_or_else(|| "[local]".to_owned(), |p| p.to_string())
        ),
        (_, None) => debug!("PROXY protocol header without addresses (UNKNOWN)"),
    }
    info
}

fn unsupported(code: u32) -> ServerError {
    DecodeError::UnsupportedProtocol {
        version: ProtocolVersion::from_u32(code),
    }
    .into()
}
