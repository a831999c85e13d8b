//! What a server allows on one connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::proxy_networks::ProxyNetworks;
use crate::wire::proxy::ProxyLimits;

/// The server side's policy for one connection. Cheap to clone (no allocation), so one policy
/// can be built at start-up and cloned per connection.
///
/// The defaults are PostgreSQL's: `ssl = off`, plaintext allowed, direct SSL accepted whenever
/// TLS is available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPolicy {
    /// None until set: the I/O adapters then follow the TLS context they are given.
    tls: Option<bool>,
    direct_ssl: bool,
    plaintext: Plaintext,
    peer: Option<SocketAddr>,
    proxy_networks: ProxyNetworks,
    proxy_limits: ProxyLimits,
    log_connections: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Plaintext {
    Allowed,
    Refused(Option<Arc<str>>),
}

impl Default for ServerPolicy {
    fn default() -> Self {
        ServerPolicy::new()
    }
}

impl ServerPolicy {
    /// PostgreSQL's defaults: no TLS, plaintext allowed, direct SSL allowed once TLS is on.
    pub fn new() -> Self {
        ServerPolicy {
            tls: None,
            direct_ssl: true,
            plaintext: Plaintext::Allowed,
            peer: None,
            proxy_networks: ProxyNetworks::none(),
            proxy_limits: ProxyLimits::new(),
            log_connections: false,
        }
    }

    /// Whether TLS is available (`ssl = on` with a usable context). Without it an SSLRequest is
    /// answered `N` and a direct SSL connection is closed.
    ///
    /// The I/O adapters (`pgssl::io`) take the TLS context itself: there, leave this unset
    /// and TLS is on exactly when a context is given. Setting it to a value that contradicts
    /// the context is refused by the adapter rather than silently overridden.
    pub fn tls(mut self, available: bool) -> Self {
        self.tls = Some(available);
        self
    }

    /// Whether PostgreSQL 17 direct SSL is accepted (when TLS is available). Turning it off
    /// behaves as a server before PostgreSQL 17: the connection is closed without a reply.
    pub fn direct_ssl(mut self, allowed: bool) -> Self {
        self.direct_ssl = allowed;
        self
    }

    /// Refuse plaintext StartupMessages with PostgreSQL's FATAL 28000 "no pg_hba.conf entry for
    /// host \"%s\", user \"%s\", database \"%s\", no encryption", as when only `hostssl` rules
    /// match.
    pub fn refuse_plaintext(mut self) -> Self {
        self.plaintext = Plaintext::Refused(None);
        self
    }

    /// Refuse plaintext StartupMessages with FATAL 28000 and this message (managed services
    /// say "SSL connection is required. Please specify SSL options and retry.").
    pub fn refuse_plaintext_with(mut self, message: impl Into<Arc<str>>) -> Self {
        self.plaintext = Plaintext::Refused(Some(message.into()));
        self
    }

    /// Allow plaintext StartupMessages (the default).
    pub fn allow_plaintext(mut self) -> Self {
        self.plaintext = Plaintext::Allowed;
        self
    }

    /// The connection's peer: the address and port `accept` returned (unset for a Unix
    /// socket: `[local]`). It is the client's address in the plaintext refusal and the
    /// `connection received` line, unless a trusted proxy names another one (see
    /// [`proxy_networks`](ServerPolicy::proxy_networks)); it decides whether the peer is
    /// trusted to send a PROXY protocol header.
    pub fn peer_addr(mut self, addr: SocketAddr) -> Self {
        self.peer = Some(addr);
        self
    }

    /// The load balancers trusted to send a PROXY protocol header (v1 or v2) before the first
    /// packet: a connection whose peer is in `networks` must begin with one, and the client
    /// address it carries replaces the peer's; a connection from anywhere else that begins
    /// with a header is refused (closed without a reply, logged). Empty (the default): the
    /// PROXY protocol is off and a header is refused as the malformed packet it then is.
    ///
    /// ```
    /// use pgssl::server::{ProxyNetworks, ServerPolicy};
    ///
    /// let peer = "10.1.2.3:40000".parse().unwrap(); // what accept() returned
    /// let policy = ServerPolicy::new()
    ///     .peer_addr(peer)
    ///     .proxy_networks(ProxyNetworks::parse_list("10.0.0.0/8, 192.168.7.5").unwrap())
    ///     .log_connections(true);
    /// assert!(policy.expects_proxy_header());
    /// ```
    pub fn proxy_networks(mut self, networks: ProxyNetworks) -> Self {
        self.proxy_networks = networks;
        self
    }

    /// The bounds on a PROXY protocol header (the v2 length, 4096 bytes after the fixed part
    /// by default).
    pub fn proxy_limits(mut self, limits: ProxyLimits) -> Self {
        self.proxy_limits = limits;
        self
    }

    /// PostgreSQL's `log_connections`: log `connection received: host=… port=…` once the
    /// client's address is known (at once, or after a trusted proxy's header). Off by default.
    pub fn log_connections(mut self, on: bool) -> Self {
        self.log_connections = on;
        self
    }

    /// The connection's peer, as given to [`peer_addr`](ServerPolicy::peer_addr).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The networks trusted to send a PROXY protocol header.
    pub fn trusted_proxies(&self) -> &ProxyNetworks {
        &self.proxy_networks
    }

    /// The bounds on a PROXY protocol header.
    pub fn proxy_header_limits(&self) -> &ProxyLimits {
        &self.proxy_limits
    }

    /// Whether `connection received` is logged.
    pub fn logs_connections(&self) -> bool {
        self.log_connections
    }

    /// Whether the peer must begin with a PROXY protocol header (it is in a trusted network).
    pub fn expects_proxy_header(&self) -> bool {
        !self.proxy_networks.is_empty()
            && self
                .peer
                .is_some_and(|p| self.proxy_networks.contains(p.ip()))
    }

    /// Whether TLS is available.
    pub fn tls_available(&self) -> bool {
        self.tls.unwrap_or(false)
    }

    /// Whether [`tls`](ServerPolicy::tls) was set, and to what (None: never set, which reads
    /// as `ssl = off`).
    pub fn tls_setting(&self) -> Option<bool> {
        self.tls
    }

    /// Whether a direct SSL connection would be accepted.
    pub fn direct_ssl_available(&self) -> bool {
        self.tls_available() && self.direct_ssl
    }

    /// Whether plaintext StartupMessages are allowed.
    pub fn plaintext_allowed(&self) -> bool {
        self.plaintext == Plaintext::Allowed
    }

    /// The message refusing a plaintext StartupMessage from `user` for `database` connecting
    /// from `host`, or None when plaintext is allowed.
    pub(crate) fn plaintext_refusal(
        &self,
        host: Option<IpAddr>,
        user: &str,
        database: &str,
    ) -> Option<String> {
        match &self.plaintext {
            Plaintext::Allowed => None,
            Plaintext::Refused(Some(m)) => Some(m.to_string()),
            Plaintext::Refused(None) => {
                let host = match host {
                    Some(a) => a.to_string(),
                    None => "[local]".to_owned(),
                };
                Some(format!(
                    "no pg_hba.conf entry for host \"{host}\", user \"{user}\", database \"{database}\", no encryption"
                ))
            }
        }
    }
}
