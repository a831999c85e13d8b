//! TLS protocol versions as PostgreSQL's and libpq's settings name them.

use std::str::FromStr;

use openssl::ssl::SslVersion;

/// A TLS protocol version, as `ssl_min_protocol_version` and `ssl_max_protocol_version` name it,
/// and as a session reports it ([`SessionInfo::version`](crate::tls::SessionInfo::version)).
///
/// The settings accept the four TLS versions ([`TlsVersion::ALL`]); the others exist so that
/// every version OpenSSL can report for a session is representable. Versions order oldest
/// first; the DTLS versions sort after every TLS version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// `SSLv3` (never accepted by pgssl's settings; OpenSSL may still report it).
    Ssl3,
    /// `TLSv1` (1.0).
    Tls1,
    /// `TLSv1.1`.
    Tls1_1,
    /// `TLSv1.2`.
    Tls1_2,
    /// `TLSv1.3`.
    Tls1_3,
    /// `DTLSv1` (DTLS 1.0; a session over a datagram method).
    Dtls1,
    /// `DTLSv1.2`.
    Dtls1_2,
}

impl TlsVersion {
    /// Every version the settings accept, oldest first.
    pub const ALL: [TlsVersion; 4] = [
        TlsVersion::Tls1,
        TlsVersion::Tls1_1,
        TlsVersion::Tls1_2,
        TlsVersion::Tls1_3,
    ];

    /// The name the settings use (`TLSv1.2`), which is also OpenSSL's version string (what
    /// pg_stat_ssl shows).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "SSLv3",
            TlsVersion::Dtls1 => "DTLSv1",
            TlsVersion::Dtls1_2 => "DTLSv1.2",
            TlsVersion::Tls1 => "TLSv1",
            TlsVersion::Tls1_1 => "TLSv1.1",
            TlsVersion::Tls1_2 => "TLSv1.2",
            TlsVersion::Tls1_3 => "TLSv1.3",
        }
    }

    /// The OpenSSL constant.
    pub fn to_openssl(self) -> SslVersion {
        match self {
            TlsVersion::Ssl3 => SslVersion::SSL3,
            TlsVersion::Dtls1 => SslVersion::DTLS1,
            TlsVersion::Dtls1_2 => SslVersion::DTLS1_2,
            TlsVersion::Tls1 => SslVersion::TLS1,
            TlsVersion::Tls1_1 => SslVersion::TLS1_1,
            TlsVersion::Tls1_2 => SslVersion::TLS1_2,
            TlsVersion::Tls1_3 => SslVersion::TLS1_3,
        }
    }

    /// The version for an OpenSSL constant.
    pub fn from_openssl(v: SslVersion) -> Option<TlsVersion> {
        [
            TlsVersion::Ssl3,
            TlsVersion::Tls1,
            TlsVersion::Tls1_1,
            TlsVersion::Tls1_2,
            TlsVersion::Tls1_3,
            TlsVersion::Dtls1,
            TlsVersion::Dtls1_2,
        ]
        .into_iter()
        .find(|t| t.to_openssl() == v)
    }

    /// The hint PostgreSQL gives with a bad value.
    pub(crate) fn hint() -> String {
        "Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.".to_owned()
    }
}

impl FromStr for TlsVersion {
    type Err = ();

    /// A setting's value: one of [`TlsVersion::ALL`], case-insensitive, as PostgreSQL's enum
    /// settings are.
    fn from_str(s: &str) -> Result<Self, ()> {
        TlsVersion::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
