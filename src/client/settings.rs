//! libpq's `sslmode` and `sslnegotiation`, and the rules that tie them together.

use std::str::FromStr;

use crate::error::SettingsError;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SslMode {
    /// Only plaintext.
    Disable,
    /// Plaintext first; SSL if the server refuses plaintext.
    Allow,
    /// SSL first; plaintext if the server does not support SSL, the handshake fails, or the
    /// server refuses the SSL connection. libpq's default.
    #[default]
    Prefer,
    /// SSL only; the chain is verified only if a root certificate file exists.
    Require,
    /// SSL only, with the chain verified.
    VerifyCa,
    /// SSL only, with the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    /// Every mode, weakest first.
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The name libpq uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a plaintext connection is acceptable (disable, allow, prefer).
    pub fn allows_plaintext(self) -> bool {
        self <= SslMode::Prefer
    }

    /// Whether an SSL connection is acceptable (every mode but disable).
    pub fn allows_ssl(self) -> bool {
        self != SslMode::Disable
    }

    /// Whether the server's certificate chain must be verified (verify-ca, verify-full).
    pub fn verifies_chain(self) -> bool {
        self >= SslMode::VerifyCa
    }

    /// Whether the server's host name must be verified (verify-full).
    pub fn verifies_host(self) -> bool {
        self == SslMode::VerifyFull
    }
}

impl FromStr for SslMode {
    type Err = SettingsError;

    fn from_str(s: &str) -> Result<Self, SettingsError> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| SettingsError::InvalidSslMode {
                value: s.to_owned(),
            })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// libpq's `sslnegotiation` (PostgreSQL 17).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SslNegotiation {
    /// Send an SSLRequest and start TLS after `S`. The default.
    #[default]
    Postgres,
    /// Start TLS at once, with ALPN "postgresql" (PostgreSQL 17 servers and newer).
    Direct,
}

impl SslNegotiation {
    /// The name libpq uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SslNegotiation::Postgres => "postgres",
            SslNegotiation::Direct => "direct",
        }
    }
}

impl FromStr for SslNegotiation {
    type Err = SettingsError;

    fn from_str(s: &str) -> Result<Self, SettingsError> {
        match s {
            "postgres" => Ok(SslNegotiation::Postgres),
            "direct" => Ok(SslNegotiation::Direct),
            _ => Err(SettingsError::InvalidSslNegotiation {
                value: s.to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for SslNegotiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client settings the negotiation depends on, before libpq's consistency checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientSettings {
    sslmode: Option<SslMode>,
    sslnegotiation: SslNegotiation,
    system_root: bool,
}

impl ClientSettings {
    /// libpq's defaults: sslmode unset (prefer), sslnegotiation postgres.
    pub fn new() -> Self {
        ClientSettings::default()
    }

    /// Sets `sslmode` explicitly.
    pub fn sslmode(mut self, mode: SslMode) -> Self {
        self.sslmode = Some(mode);
        self
    }

    /// Sets `sslnegotiation`.
    pub fn sslnegotiation(mut self, negotiation: SslNegotiation) -> Self {
        self.sslnegotiation = negotiation;
        self
    }

    /// Declares `sslrootcert=system`, which makes the default sslmode verify-full and forbids
    /// weaker explicit modes.
    pub fn sslrootcert_system(mut self, system: bool) -> Self {
        self.system_root = system;
        self
    }

    /// Applies libpq's rules and returns the effective mode and negotiation, or libpq's error:
    /// "weak sslmode \"%s\" may not be used with sslrootcert=system (use \"verify-full\")" and
    /// "weak sslmode \"%s\" may not be used with sslnegotiation=direct (use \"require\",
    /// \"verify-ca\", or \"verify-full\")".
    pub fn resolve(&self) -> Result<(SslMode, SslNegotiation), SettingsError> {
        let mode = match (self.sslmode, self.system_root) {
            (Some(m), true) if m != SslMode::VerifyFull => {
                return Err(SettingsError::WeakSslModeWithSystemRoot { mode: m.as_str() });
            }
            (Some(m), _) => m,
            (None, true) => SslMode::VerifyFull,
            (None, false) => SslMode::Prefer,
        };
        if self.sslnegotiation == SslNegotiation::Direct && mode.allows_plaintext() {
            return Err(SettingsError::WeakSslModeWithDirect {
                mode: mode.as_str(),
            });
        }
        Ok((mode, self.sslnegotiation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for m in SslMode::ALL {
            assert_eq!(m.as_str().parse::<SslMode>().unwrap(), m);
        }
        assert_eq!(
            "Require".parse::<SslMode>().unwrap_err().to_string(),
            "invalid sslmode value: \"Require\""
        );
        assert_eq!(
            "tls".parse::<SslNegotiation>().unwrap_err().to_string(),
            "invalid sslnegotiation value: \"tls\""
        );
    }

    #[test]
    fn direct_needs_a_strong_mode() {
        for m in [SslMode::Disable, SslMode::Allow, SslMode::Prefer] {
            let e = ClientSettings::new()
                .sslmode(m)
                .sslnegotiation(SslNegotiation::Direct)
                .resolve()
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "weak sslmode \"{m}\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")"
                )
            );
        }
        // The default mode is prefer, so direct alone is refused too.
        assert!(
            ClientSettings::new()
                .sslnegotiation(SslNegotiation::Direct)
                .resolve()
                .is_err()
        );
        for m in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert!(
                ClientSettings::new()
                    .sslmode(m)
                    .sslnegotiation(SslNegotiation::Direct)
                    .resolve()
                    .is_ok()
            );
        }
    }

    #[test]
    fn system_root_means_verify_full() {
        let s = ClientSettings::new().sslrootcert_system(true);
        assert_eq!(s.resolve().unwrap().0, SslMode::VerifyFull);
        let e = s.sslmode(SslMode::Require).resolve().unwrap_err();
        assert_eq!(
            e.to_string(),
            "weak sslmode \"require\" may not be used with sslrootcert=system (use \"verify-full\")"
        );
        // With system roots and direct, the default verify-full is strong enough.
        assert!(
            ClientSettings::new()
                .sslrootcert_system(true)
                .sslnegotiation(SslNegotiation::Direct)
                .resolve()
                .is_ok()
        );
    }
}
