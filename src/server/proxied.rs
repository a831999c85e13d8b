//! What a trusted proxy's PROXY protocol header said about a connection, owned.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::wire::proxy::{ProxyCommand, ProxyHeader, ProxyVersion, Tlvs};

/// A PROXY protocol header accepted from a trusted proxy, owned: the client's address as the
/// proxy saw it, and (v2) the TLVs it added. Cloning it costs no allocation (the TLVs are
/// shared); taking it from a header without TLVs allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyInfo {
    version: ProxyVersion,
    command: ProxyCommand,
    addresses: Option<(SocketAddr, SocketAddr)>,
    tlvs: Option<Arc<[u8]>>,
    len: usize,
}

impl ProxyInfo {
    /// Takes the facts out of a decoded header.
    pub fn from_header(header: &ProxyHeader<'_>) -> Self {
        let raw = header.tlvs.raw();
        ProxyInfo {
            version: header.version,
            command: header.command,
            addresses: header.addresses,
            tlvs: (!raw.is_empty()).then(|| Arc::from(raw)),
            len: header.len,
        }
    }

    /// v1 or v2.
    pub fn version(&self) -> ProxyVersion {
        self.version
    }

    /// `Proxy` (relayed for a client) or `Local` (the proxy's own connection, a health check).
    pub fn command(&self) -> ProxyCommand {
        self.command
    }

    /// The client's address and port, as the proxy saw them; `None` for a v2 `LOCAL` header
    /// and a v1 `UNKNOWN` one (then the connection's own peer stands).
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|(s, _)| s)
    }

    /// The address the client connected to on the proxy (its listening address and port).
    pub fn destination(&self) -> Option<SocketAddr> {
        self.addresses.map(|(_, d)| d)
    }

    /// The v2 TLVs (ALPN, AUTHORITY, UNIQUE_ID, SSL, NETNS, …), checked when the header was
    /// decoded; empty for v1.
    pub fn tlvs(&self) -> Tlvs<'_> {
        Tlvs::from_checked(self.tlvs.as_deref().unwrap_or_default())
    }

    /// How many bytes the header took on the wire.
    pub fn header_len(&self) -> usize {
        self.len
    }
}
