//! `ServerTlsConfig`: PostgreSQL's SSL settings, with PostgreSQL's names and defaults.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::identity::{HostEntry, Identity};
use crate::tls::error::TlsError;
use crate::tls::version::TlsVersion;
use crate::wire::parse_bool_str;

/// PostgreSQL's default `ssl_ciphers`.
pub const DEFAULT_CIPHERS: &str = "HIGH:MEDIUM:+3DES:!aNULL";
/// PostgreSQL 18's default `ssl_groups`.
pub const DEFAULT_GROUPS: &str = "X25519:prime256v1";

/// A source of the private key's passphrase supplied by the host, called with the prompt. It
/// returns the passphrase, or an error text, reported as "passphrase callback failed: %s".
pub type PassphraseCallback = Arc<dyn Fn(&str) -> Result<Vec<u8>, String> + Send + Sync>;

/// The settings of PostgreSQL's server SSL, as `postgresql.conf` names them.
///
/// Relative paths are taken relative to the data directory when one is set
/// ([`ServerTlsConfig::data_dir`]), as PostgreSQL resolves them against its working directory
/// (the data directory); otherwise relative to the process's working directory.
#[derive(Clone)]
pub struct ServerTlsConfig {
    pub(crate) ssl: bool,
    /// The default identity: `ssl_cert_file`, `ssl_key_file`, `ssl_ca_file`,
    /// `ssl_passphrase_command`, `ssl_passphrase_command_supports_reload`.
    pub(crate) identity: Identity,
    pub(crate) crl_file: Option<PathBuf>,
    pub(crate) crl_dir: Option<PathBuf>,
    pub(crate) ciphers: String,
    pub(crate) tls13_ciphers: String,
    pub(crate) groups: String,
    pub(crate) prefer_server_ciphers: bool,
    pub(crate) min_protocol: TlsVersion,
    pub(crate) max_protocol: Option<TlsVersion>,
    pub(crate) dh_params_file: Option<PathBuf>,
    pub(crate) passphrase_callback: Option<PassphraseCallback>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) hosts_file: Option<PathBuf>,
    pub(crate) hosts: Vec<HostEntry>,
}

impl fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("ssl", &self.ssl)
            .field("ssl_cert_file", &self.identity.cert_file)
            .field("ssl_key_file", &self.identity.key_file)
            .field("ssl_ca_file", &self.identity.ca_file)
            .field("ssl_crl_file", &self.crl_file)
            .field("ssl_crl_dir", &self.crl_dir)
            .field("ssl_ciphers", &self.ciphers)
            .field("ssl_tls13_ciphers", &self.tls13_ciphers)
            .field("ssl_groups", &self.groups)
            .field("ssl_prefer_server_ciphers", &self.prefer_server_ciphers)
            .field("ssl_min_protocol_version", &self.min_protocol)
            .field("ssl_max_protocol_version", &self.max_protocol)
            .field("ssl_dh_params_file", &self.dh_params_file)
            // The command may carry the passphrase itself: never print it.
            .field(
                "ssl_passphrase_command",
                &if self.identity.passphrase_command.is_empty() {
                    ""
                } else {
                    "<set>"
                },
            )
            .field(
                "ssl_passphrase_command_supports_reload",
                &self.identity.passphrase_command_supports_reload,
            )
            .field("passphrase_callback", &self.passphrase_callback.is_some())
            .field("data_dir", &self.data_dir)
            .field("hosts_file", &self.hosts_file)
            .field(
                "hosts",
                &self
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for ServerTlsConfig {
    fn default() -> Self {
        ServerTlsConfig::new()
    }
}

/// Every setting name [`ServerTlsConfig::set`] accepts.
pub const SETTING_NAMES: &[&str] = &[
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_crl_file",
    "ssl_crl_dir",
    "ssl_ciphers",
    "ssl_tls13_ciphers",
    "ssl_groups",
    "ssl_ecdh_curve",
    "ssl_prefer_server_ciphers",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "ssl_dh_params_file",
    "ssl_passphrase_command",
    "ssl_passphrase_command_supports_reload",
    "hosts_file",
];

fn opt_path(v: &str) -> Option<PathBuf> {
    if v.is_empty() {
        None
    } else {
        Some(PathBuf::from(v))
    }
}

impl ServerTlsConfig {
    /// PostgreSQL's defaults: `ssl = off`, `server.crt`, `server.key`, no CA, no CRL,
    /// `HIGH:MEDIUM:+3DES:!aNULL`, OpenSSL's TLS 1.3 suites, `X25519:prime256v1`, server cipher
    /// preference, TLS 1.2 minimum, no maximum, the built-in DH group, no passphrase command.
    pub fn new() -> Self {
        ServerTlsConfig {
            ssl: false,
            identity: Identity::new("server.crt", "server.key"),
            crl_file: None,
            crl_dir: None,
            ciphers: DEFAULT_CIPHERS.to_owned(),
            tls13_ciphers: String::new(),
            groups: DEFAULT_GROUPS.to_owned(),
            prefer_server_ciphers: true,
            min_protocol: TlsVersion::Tls1_2,
            max_protocol: None,
            dh_params_file: None,
            passphrase_callback: None,
            data_dir: None,
            hosts_file: None,
            hosts: Vec::new(),
        }
    }

    /// The classic data-directory layout: `server.crt` and `server.key`; `root.crt`, if it
    /// exists, as `ssl_ca_file` (client certificates are then requested); `root.crl`, if it
    /// exists, as `ssl_crl_file` (revocation is then checked). `ssl` is turned on.
    pub fn from_data_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let mut c = ServerTlsConfig::new();
        c.data_dir(dir).ssl(true);
        if dir.join("root.crt").is_file() {
            c.identity.ca_file = Some(PathBuf::from("root.crt"));
        }
        if dir.join("root.crl").is_file() {
            c.crl_file = Some(PathBuf::from("root.crl"));
        }
        c
    }

    /// Sets a setting by its PostgreSQL name (`ssl_cert_file`, …, `ssl_ecdh_curve` as an alias
    /// of `ssl_groups`; `hosts_file` for the SNI hosts file). Unknown names and bad values are
    /// refused with PostgreSQL's texts.
    pub fn set(&mut self, name: &str, value: &str) -> Result<&mut Self, TlsError> {
        let bad = |hint: Option<String>| TlsError::InvalidValue {
            name: name.to_owned(),
            value: value.to_owned(),
            hint,
        };
        let boolean = || {
            parse_bool_str(value).ok_or_else(|| TlsError::NotABoolean {
                name: name.to_owned(),
            })
        };
        match name.to_ascii_lowercase().as_str() {
            "ssl" => self.ssl = boolean()?,
            "ssl_cert_file" => self.identity.cert_file = PathBuf::from(value),
            "ssl_key_file" => self.identity.key_file = PathBuf::from(value),
            "ssl_ca_file" => self.identity.ca_file = opt_path(value),
            "ssl_crl_file" => self.crl_file = opt_path(value),
            "ssl_crl_dir" => self.crl_dir = opt_path(value),
            "ssl_ciphers" => self.ciphers = value.to_owned(),
            "ssl_tls13_ciphers" => self.tls13_ciphers = value.to_owned(),
            "ssl_groups" | "ssl_ecdh_curve" => self.groups = value.to_owned(),
            "ssl_prefer_server_ciphers" => self.prefer_server_ciphers = boolean()?,
            "ssl_min_protocol_version" => {
                self.min_protocol = value.parse().map_err(|()| bad(Some(TlsVersion::hint())))?
            }
            "ssl_max_protocol_version" => {
                self.max_protocol = if value.is_empty() {
                    None
                } else {
                    Some(value.parse().map_err(|()| {
                        bad(Some(
                            "Available values: , TLSv1, TLSv1.1, TLSv1.2, TLSv1.3.".to_owned(),
                        ))
                    })?)
                }
            }
            "ssl_dh_params_file" => self.dh_params_file = opt_path(value),
            "ssl_passphrase_command" => self.identity.passphrase_command = value.to_owned(),
            "ssl_passphrase_command_supports_reload" => {
                self.identity.passphrase_command_supports_reload = boolean()?
            }
            "hosts_file" => self.hosts_file = opt_path(value),
            _ => {
                return Err(TlsError::UnknownSetting {
                    name: name.to_owned(),
                });
            }
        }
        Ok(self)
    }

    /// Sets every `(name, value)` pair, stopping at the first error.
    pub fn set_all<'a>(
        &mut self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<&mut Self, TlsError> {
        for (n, v) in pairs {
            self.set(n, v)?;
        }
        Ok(self)
    }

    /// The directory relative paths are resolved against.
    pub fn data_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// `ssl`.
    pub fn ssl(&mut self, on: bool) -> &mut Self {
        self.ssl = on;
        self
    }

    /// `ssl_cert_file`: the certificate first, then intermediates (sent to clients).
    pub fn cert_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.identity.cert_file = path.into();
        self
    }

    /// `ssl_key_file`.
    pub fn key_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.identity.key_file = path.into();
        self
    }

    /// `ssl_ca_file`: client certificates are requested (not required) and verified against
    /// it; its names are sent as the acceptable CA list.
    pub fn ca_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.identity.ca_file = Some(path.into());
        self
    }

    /// `ssl_crl_file`.
    pub fn crl_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.crl_file = Some(path.into());
        self
    }

    /// `ssl_crl_dir` (a directory of CRLs named by hash, as `openssl rehash` makes).
    pub fn crl_dir(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.crl_dir = Some(path.into());
        self
    }

    /// `ssl_ciphers` (TLS 1.2 and older).
    pub fn ciphers(&mut self, list: impl Into<String>) -> &mut Self {
        self.ciphers = list.into();
        self
    }

    /// `ssl_tls13_ciphers` (empty: OpenSSL's default suites).
    pub fn tls13_ciphers(&mut self, list: impl Into<String>) -> &mut Self {
        self.tls13_ciphers = list.into();
        self
    }

    /// `ssl_groups` (alias `ssl_ecdh_curve`).
    pub fn groups(&mut self, list: impl Into<String>) -> &mut Self {
        self.groups = list.into();
        self
    }

    /// `ssl_prefer_server_ciphers`.
    pub fn prefer_server_ciphers(&mut self, on: bool) -> &mut Self {
        self.prefer_server_ciphers = on;
        self
    }

    /// `ssl_min_protocol_version`.
    pub fn min_protocol_version(&mut self, v: TlsVersion) -> &mut Self {
        self.min_protocol = v;
        self
    }

    /// `ssl_max_protocol_version` (None: no limit).
    pub fn max_protocol_version(&mut self, v: Option<TlsVersion>) -> &mut Self {
        self.max_protocol = v;
        self
    }

    /// `ssl_dh_params_file`.
    pub fn dh_params_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.dh_params_file = Some(path.into());
        self
    }

    /// `ssl_passphrase_command`; `%p` is replaced by the prompt.
    pub fn passphrase_command(&mut self, command: impl Into<String>) -> &mut Self {
        self.identity.passphrase_command = command.into();
        self
    }

    /// `ssl_passphrase_command_supports_reload`.
    pub fn passphrase_command_supports_reload(&mut self, on: bool) -> &mut Self {
        self.identity.passphrase_command_supports_reload = on;
        self
    }

    /// A passphrase source supplied by the host, used when `ssl_passphrase_command` is empty.
    /// It is called on reloads too.
    pub fn passphrase_callback(
        &mut self,
        f: impl Fn(&str) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.passphrase_callback = Some(Arc::new(f));
        self
    }

    /// Server identities selected by SNI, given in code (the same semantics as the hosts file;
    /// when both are set, the file's entries come first).
    pub fn hosts(&mut self, entries: Vec<HostEntry>) -> &mut Self {
        self.hosts = entries;
        self
    }

    /// A `pg_hosts.conf`-style file of server identities selected by SNI.
    pub fn hosts_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.hosts_file = Some(path.into());
        self
    }

    /// Whether `ssl` is on.
    pub fn ssl_enabled(&self) -> bool {
        self.ssl
    }

    /// A path as the server resolves it.
    pub(crate) fn resolve(&self, p: &Path) -> PathBuf {
        match &self.data_dir {
            Some(d) if p.is_relative() => d.join(p),
            _ => p.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_postgres_defaults() {
        let c = ServerTlsConfig::new();
        assert!(!c.ssl);
        assert_eq!(c.identity.cert_file, PathBuf::from("server.crt"));
        assert_eq!(c.identity.key_file, PathBuf::from("server.key"));
        assert_eq!(c.ciphers, "HIGH:MEDIUM:+3DES:!aNULL");
        assert_eq!(c.groups, "X25519:prime256v1");
        assert!(c.prefer_server_ciphers);
        assert_eq!(c.min_protocol, TlsVersion::Tls1_2);
        assert_eq!(c.max_protocol, None);
        assert!(c.identity.ca_file.is_none() && c.crl_file.is_none() && c.crl_dir.is_none());
    }

    #[test]
    fn set_by_guc_name() {
        let mut c = ServerTlsConfig::new();
        c.set_all([
            ("ssl", "on"),
            ("ssl_cert_file", "a.crt"),
            ("ssl_ecdh_curve", "prime256v1"),
            ("ssl_min_protocol_version", "tlsv1.3"),
            ("ssl_max_protocol_version", ""),
            ("ssl_prefer_server_ciphers", "off"),
        ])
        .unwrap();
        assert!(c.ssl);
        assert_eq!(c.identity.cert_file, PathBuf::from("a.crt"));
        assert_eq!(c.groups, "prime256v1");
        assert_eq!(c.min_protocol, TlsVersion::Tls1_3);
        assert!(!c.prefer_server_ciphers);
    }

    #[test]
    fn bad_names_and_values_are_refused_by_name() {
        let mut c = ServerTlsConfig::new();
        assert_eq!(
            c.set("ssl_cert", "x").unwrap_err().to_string(),
            "unrecognized configuration parameter \"ssl_cert\""
        );
        assert_eq!(
            c.set("ssl", "maybe").unwrap_err().to_string(),
            "parameter \"ssl\" requires a Boolean value"
        );
        assert_eq!(
            c.set("ssl_min_protocol_version", "SSLv3")
                .unwrap_err()
                .to_string(),
            "invalid value for parameter \"ssl_min_protocol_version\": \"SSLv3\"\nHINT:  Available values: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3."
        );
    }
}
