//! TLS protocol versions as PostgreSQL's and libpq's settings name them.

use std::str::FromStr;

use openssl::ssl::SslVersion;

/// A TLS protocol version, as `ssl_min_protocol_version` and `ssl_max_protocol_version` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// `TLSv1` (1.0).
    Tls1,
    /// `TLSv1.1`.
    Tls1_1,
    /// `TLSv1.2`.
    Tls1_2,
    /// `TLSv1.3`.
    Tls1_3,
}

impl TlsVersion {
    /// Every version, oldest first.
    pub const ALL: [TlsVersion; 4] = [
        TlsVersion::Tls1,
        TlsVersion::Tls1_1,
        TlsVersion::Tls1_2,
        TlsVersion::Tls1_3,
    ];

    /// The name the settings use (`TLSv1.2`), which is also OpenSSL's version string.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls1 => "TLSv1",
            TlsVersion::Tls1_1 => "TLSv1.1",
            TlsVersion::Tls1_2 => "TLSv1.2",
            TlsVersion::Tls1_3 => "TLSv1.3",
        }
    }

    /// The OpenSSL constant.
    pub fn to_openssl(self) -> SslVersion {
        match self {
            TlsVersion::Tls1 => SslVersion::TLS1,
            TlsVersion::Tls1_1 => SslVersion::TLS1_1,
            TlsVersion::Tls1_2 => SslVersion::TLS1_2,
            TlsVersion::Tls1_3 => SslVersion::TLS1_3,
        }
    }

    /// The version for an OpenSSL constant, if it is one of these four.
    pub fn from_openssl(v: SslVersion) -> Option<TlsVersion> {
        TlsVersion::ALL.into_iter().find(|t| t.to_openssl() == v)
    }

    /// The hint PostgreSQL gives with a bad value.
    pub(crate) fn hint() -> String {
        "Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.".to_owned()
    }
}

impl FromStr for TlsVersion {
    type Err = ();

    /// Case-insensitive, as PostgreSQL's enum settings are.
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
