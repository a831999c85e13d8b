//! What a server allows on one connection.

use std::net::IpAddr;
use std::sync::Arc;

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
    peer: Option<IpAddr>,
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

    /// The client's address, named in the plaintext refusal (`[local]` when unset).
    pub fn peer_addr(mut self, addr: IpAddr) -> Self {
        self.peer = Some(addr);
        self
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

    /// The message refusing a plaintext StartupMessage from `user` for `database`, or None when
    /// plaintext is allowed.
    pub(crate) fn plaintext_refusal(&self, user: &str, database: &str) -> Option<String> {
        match &self.plaintext {
            Plaintext::Allowed => None,
            Plaintext::Refused(Some(m)) => Some(m.to_string()),
            Plaintext::Refused(None) => {
                let host = match self.peer {
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
