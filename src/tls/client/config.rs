//! `ClientTlsConfig`: libpq's connection parameters that matter for SSL, with libpq's
//! defaults, fillable from a conninfo string, a URI, the PG* environment variables and
//! `~/.postgresql/`.

use std::path::PathBuf;

use super::conninfo::{ConninfoError, is_uri, parse_conninfo, parse_uri};
use crate::client::{ClientSettings, SslMode, SslNegotiation};
use crate::error::SettingsError;
use crate::tls::version::TlsVersion;

/// libpq's `sslrootcert`: a file of trusted roots, or `system` for OpenSSL's default paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    /// `sslrootcert=system`: OpenSSL's default trust store; the default sslmode becomes
    /// verify-full and weaker modes are refused.
    System,
    /// A PEM file of trusted certificates.
    File(PathBuf),
}

impl RootCert {
    /// libpq's reading of the parameter: the literal `system`, else a file name.
    pub fn parse(value: &str) -> RootCert {
        if value == "system" {
            RootCert::System
        } else {
            RootCert::File(PathBuf::from(value))
        }
    }
}

/// libpq's `sslcertmode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslCertMode {
    /// Never send a client certificate.
    Disable,
    /// Send one if configured and asked for (the default).
    #[default]
    Allow,
    /// The server must ask for a certificate and one must be sent.
    Require,
}

impl SslCertMode {
    /// libpq's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SslCertMode::Disable => "disable",
            SslCertMode::Allow => "allow",
            SslCertMode::Require => "require",
        }
    }
}

/// libpq's `channel_binding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelBinding {
    /// Never use SCRAM-SHA-256-PLUS.
    Disable,
    /// Use it when offered over TLS (the default).
    #[default]
    Prefer,
    /// Require it.
    Require,
}

/// Why a client configuration is invalid, in libpq's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// A connection string problem.
    #[error(transparent)]
    Conninfo(#[from] ConninfoError),
    /// An sslmode / sslnegotiation / sslrootcert problem.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A bad value for an enumerated option.
    #[error("invalid {name} value: \"{value}\"")]
    InvalidValue {
        /// The option.
        name: &'static str,
        /// The value.
        value: String,
    },
    /// A bad protocol version.
    #[error("invalid \"{name}\" value: \"{value}\"")]
    InvalidProtocolVersion {
        /// The option.
        name: &'static str,
        /// The value.
        value: String,
    },
    /// min above max.
    #[error("invalid SSL protocol version range")]
    ProtocolRange,
    /// A bad integer.
    #[error("invalid integer value \"{value}\" for connection option \"{name}\"")]
    InvalidInteger {
        /// The option.
        name: &'static str,
        /// The value.
        value: String,
    },
}

/// Every keyword libpq accepts (so conninfo strings written for libpq parse); the ones pgssl
/// does not act on are kept in [`ClientTlsConfig::other`].
pub const LIBPQ_KEYWORDS: &[&str] = &[
    "service",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslmode",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslcertmode",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "replication",
    "target_session_attrs",
    "load_balance_hosts",
    "require_auth",
    "min_protocol_version",
    "max_protocol_version",
    "sslkeylogfile",
    "scram_client_key",
    "scram_server_key",
];

/// The PG* environment variables libpq reads, and their keywords.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGDATABASE", "dbname"),
    ("PGPASSWORD", "password"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGAPPNAME", "application_name"),
    ("PGCHANNELBINDING", "channel_binding"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLCRL", "sslcrl"),
    ("PGSSLCRLDIR", "sslcrldir"),
    ("PGSSLSNI", "sslsni"),
    ("PGSSLCERTMODE", "sslcertmode"),
    ("PGSSLMINPROTOCOLVERSION", "ssl_min_protocol_version"),
    ("PGSSLMAXPROTOCOLVERSION", "ssl_max_protocol_version"),
];

/// libpq's connection parameters for SSL, and the few others a connect needs.
///
/// Unset file parameters fall back to libpq's defaults under `~/.postgresql/` (`root.crt`,
/// `postgresql.crt`, `postgresql.key`, `root.crl`); a default file that does not exist means
/// no root certificate (no verification unless required), no client certificate, no CRL.
///
/// Fields can be read and assigned; the typed setters ([`sslmode`](Self::sslmode), …) chain,
/// and [`set`](Self::set) takes libpq's keywords.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTlsConfig {
    /// `host` (the name used for SNI and verify-full; only the first of a list is used).
    pub host: String,
    /// `hostaddr` (the address connected to; never used for the name check).
    pub hostaddr: Option<String>,
    /// `port` (5432).
    pub port: u16,
    /// `user`.
    pub user: Option<String>,
    /// `dbname`.
    pub dbname: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// `connect_timeout`, seconds (0 or unset: none).
    pub connect_timeout: Option<u64>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// `channel_binding`.
    pub channel_binding: ChannelBinding,
    /// `sslmode` as set (None: prefer, or verify-full with `sslrootcert=system`).
    pub sslmode: Option<SslMode>,
    /// `sslnegotiation`.
    pub sslnegotiation: SslNegotiation,
    /// `sslrootcert`: a file, or `system`.
    pub sslrootcert: Option<RootCert>,
    /// `sslcert`.
    pub sslcert: Option<PathBuf>,
    /// `sslkey`.
    pub sslkey: Option<PathBuf>,
    /// `sslpassword`.
    pub sslpassword: Option<String>,
    /// `sslcrl`.
    pub sslcrl: Option<PathBuf>,
    /// `sslcrldir`.
    pub sslcrldir: Option<PathBuf>,
    /// `sslsni` (true: send SNI unless the host is an IP literal).
    pub sslsni: bool,
    /// `sslcertmode`.
    pub sslcertmode: SslCertMode,
    /// `ssl_min_protocol_version` (TLSv1.2).
    pub ssl_min_protocol_version: Option<TlsVersion>,
    /// `ssl_max_protocol_version` (none).
    pub ssl_max_protocol_version: Option<TlsVersion>,
    /// `sslkeylogfile` (PostgreSQL 18): TLS secrets appended in NSS key log format.
    pub sslkeylogfile: Option<PathBuf>,
    /// The home directory whose `.postgresql/` holds the default files (`$HOME`).
    pub home: Option<PathBuf>,
    /// Other libpq keywords, kept as given.
    pub other: Vec<(String, String)>,
    /// Not a libpq setting: bytes written first on every TCP connection of the connect (each
    /// fallback included), before any PostgreSQL packet: the PROXY protocol header a pooler or
    /// proxy sends an upstream that trusts it, naming the client it connects for (see
    /// [`encode_proxy_v1`](crate::wire::proxy::encode_proxy_v1) and
    /// [`encode_proxy_v2`](crate::wire::proxy::encode_proxy_v2)). None by default.
    pub proxy_header: Option<bytes::Bytes>,
}

impl std::fmt::Debug for ClientTlsConfig {
    /// Prints every parameter but the secrets (`password`, `sslpassword`), which show as
    /// `<set>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| if s.is_some() { "<set>" } else { "" };
        f.debug_struct("ClientTlsConfig")
            .field("host", &self.host)
            .field("hostaddr", &self.hostaddr)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &secret(&self.password))
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .field("channel_binding", &self.channel_binding)
            .field("sslmode", &self.sslmode)
            .field("sslnegotiation", &self.sslnegotiation)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("sslpassword", &secret(&self.sslpassword))
            .field("sslcrl", &self.sslcrl)
            .field("sslcrldir", &self.sslcrldir)
            .field("sslsni", &self.sslsni)
            .field("sslcertmode", &self.sslcertmode)
            .field("ssl_min_protocol_version", &self.ssl_min_protocol_version)
            .field("ssl_max_protocol_version", &self.ssl_max_protocol_version)
            .field("sslkeylogfile", &self.sslkeylogfile)
            .field("home", &self.home)
            .field("other", &self.other)
            .field("proxy_header", &self.proxy_header.as_ref().map(|h| h.len()))
            .finish()
    }
}

impl ClientTlsConfig {
    /// libpq's defaults, with `$HOME` for the default files.
    pub fn new() -> Self {
        ClientTlsConfig {
            port: 5432,
            sslsni: true,
            ssl_min_protocol_version: Some(TlsVersion::Tls1_2),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            ..ClientTlsConfig::default()
        }
    }

    /// Parses a conninfo string or a `postgresql://` URI over libpq's defaults (no
    /// environment).
    pub fn from_conninfo(s: &str) -> Result<Self, ClientConfigError> {
        let mut c = ClientTlsConfig::new();
        c.apply_conninfo(s)?;
        Ok(c)
    }

    /// As libpq does: the environment first, then the conninfo string over it.
    pub fn from_env_and_conninfo(s: &str) -> Result<Self, ClientConfigError> {
        let mut c = ClientTlsConfig::new();
        c.apply_env(|k| std::env::var(k).ok())?;
        c.apply_conninfo(s)?;
        Ok(c)
    }

    /// Applies the PG* variables that `get` returns.
    pub fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<&mut Self, ClientConfigError> {
        for (var, key) in ENVIRONMENT {
            if let Some(v) = get(var) {
                self.set(key, &v)?;
            }
        }
        Ok(self)
    }

    /// Applies a conninfo string or URI.
    pub fn apply_conninfo(&mut self, s: &str) -> Result<&mut Self, ClientConfigError> {
        let pairs = if is_uri(s) {
            let pairs = parse_uri(s)?;
            for (k, _) in &pairs {
                if !LIBPQ_KEYWORDS.contains(&k.as_str()) {
                    return Err(ConninfoError::InvalidQueryParameter(k.clone()).into());
                }
            }
            pairs
        } else {
            parse_conninfo(s)?
        };
        for (k, v) in pairs {
            self.set(&k, &v)?;
        }
        Ok(self)
    }

    /// Sets one libpq keyword, refusing unknown keywords and bad values with libpq's texts.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self, ClientConfigError> {
        let path = |v: &str| {
            if v.is_empty() {
                None
            } else {
                Some(PathBuf::from(v))
            }
        };
        let text = |v: &str| {
            if v.is_empty() {
                None
            } else {
                Some(v.to_owned())
            }
        };
        let version = |name: &'static str, v: &str| {
            if v.is_empty() {
                Ok(None)
            } else {
                v.parse::<TlsVersion>().map(Some).map_err(|()| {
                    ClientConfigError::InvalidProtocolVersion {
                        name,
                        value: v.to_owned(),
                    }
                })
            }
        };
        match key {
            "host" => self.host = value.split(',').next().unwrap_or("").to_owned(),
            "hostaddr" => self.hostaddr = text(value.split(',').next().unwrap_or("")),
            "port" => {
                let first = value.split(',').next().unwrap_or("");
                self.port = if first.is_empty() {
                    5432
                } else {
                    first
                        .parse()
                        .map_err(|_| ClientConfigError::InvalidInteger {
                            name: "port",
                            value: value.to_owned(),
                        })?
                }
            }
            "user" => self.user = text(value),
            "dbname" => self.dbname = text(value),
            "password" => self.password = text(value),
            "application_name" => self.application_name = text(value),
            "connect_timeout" => {
                self.connect_timeout =
                    if value.is_empty() {
                        None
                    } else {
                        Some(value.trim().parse().map_err(|_| {
                            ClientConfigError::InvalidInteger {
                                name: "connect_timeout",
                                value: value.to_owned(),
                            }
                        })?)
                    }
            }
            "channel_binding" => {
                self.channel_binding = match value {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    _ => {
                        return Err(ClientConfigError::InvalidValue {
                            name: "channel_binding",
                            value: value.to_owned(),
                        });
                    }
                }
            }
            "sslmode" => self.sslmode = Some(value.parse()?),
            "sslnegotiation" => self.sslnegotiation = value.parse()?,
            "sslrootcert" => self.sslrootcert = (!value.is_empty()).then(|| RootCert::parse(value)),
            "sslcert" => self.sslcert = path(value),
            "sslkey" => self.sslkey = path(value),
            "sslpassword" => self.sslpassword = Some(value.to_owned()),
            "sslcrl" => self.sslcrl = path(value),
            "sslcrldir" => self.sslcrldir = path(value),
            "sslsni" => self.sslsni = value.starts_with('1'),
            "sslcertmode" => {
                self.sslcertmode = match value {
                    "disable" => SslCertMode::Disable,
                    "allow" => SslCertMode::Allow,
                    "require" => SslCertMode::Require,
                    _ => {
                        return Err(ClientConfigError::InvalidValue {
                            name: "sslcertmode",
                            value: value.to_owned(),
                        });
                    }
                }
            }
            "ssl_min_protocol_version" => {
                self.ssl_min_protocol_version = version("ssl_min_protocol_version", value)?
            }
            "ssl_max_protocol_version" => {
                self.ssl_max_protocol_version = version("ssl_max_protocol_version", value)?
            }
            "sslkeylogfile" => self.sslkeylogfile = path(value),
            k if LIBPQ_KEYWORDS.contains(&k) => {
                self.other.retain(|(o, _)| o != k);
                self.other.push((k.to_owned(), value.to_owned()));
            }
            _ => return Err(ConninfoError::InvalidOption(key.to_owned()).into()),
        }
        Ok(self)
    }

    /// libpq's consistency checks: the sslmode × sslnegotiation × sslrootcert rules and the
    /// protocol range. Returns the effective mode and negotiation.
    pub fn validate(&self) -> Result<(SslMode, SslNegotiation), ClientConfigError> {
        if let (Some(min), Some(max)) =
            (self.ssl_min_protocol_version, self.ssl_max_protocol_version)
            && min > max
        {
            return Err(ClientConfigError::ProtocolRange);
        }
        let mut s = ClientSettings::new()
            .sslnegotiation(self.sslnegotiation)
            .sslrootcert_system(self.sslrootcert == Some(RootCert::System));
        if let Some(m) = self.sslmode {
            s = s.sslmode(m);
        }
        Ok(s.resolve()?)
    }

    /// The user to connect as: `user`, else the operating system's name for the effective user
    /// (as libpq), else `$USER`.
    pub fn effective_user(&self) -> String {
        if let Some(u) = &self.user {
            return u.clone();
        }
        let uid = crate::tls::ffi::effective_uid().to_string();
        std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| {
                p.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 2 && f[2] == uid).then(|| f[0].to_owned())
                })
            })
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_default()
    }

    // Typed setters: each sets one parameter and returns `self` to chain.

    /// Sets `host` (the name used for SNI and verify-full).
    pub fn host(&mut self, v: impl Into<String>) -> &mut Self {
        self.host = v.into();
        self
    }

    /// Sets `hostaddr` (the address connected to).
    pub fn hostaddr(&mut self, v: impl Into<String>) -> &mut Self {
        self.hostaddr = Some(v.into());
        self
    }

    /// Sets `port`.
    pub fn port(&mut self, v: u16) -> &mut Self {
        self.port = v;
        self
    }

    /// Sets `user`.
    pub fn user(&mut self, v: impl Into<String>) -> &mut Self {
        self.user = Some(v.into());
        self
    }

    /// Sets `dbname`.
    pub fn dbname(&mut self, v: impl Into<String>) -> &mut Self {
        self.dbname = Some(v.into());
        self
    }

    /// Sets `password`.
    pub fn password(&mut self, v: impl Into<String>) -> &mut Self {
        self.password = Some(v.into());
        self
    }

    /// Sets `connect_timeout`, seconds (None: none).
    pub fn connect_timeout(&mut self, v: Option<u64>) -> &mut Self {
        self.connect_timeout = v;
        self
    }

    /// Sets `application_name`.
    pub fn application_name(&mut self, v: impl Into<String>) -> &mut Self {
        self.application_name = Some(v.into());
        self
    }

    /// Sets `channel_binding`.
    pub fn channel_binding(&mut self, v: ChannelBinding) -> &mut Self {
        self.channel_binding = v;
        self
    }

    /// Sets `sslmode`.
    pub fn sslmode(&mut self, v: SslMode) -> &mut Self {
        self.sslmode = Some(v);
        self
    }

    /// Sets `sslnegotiation`.
    pub fn sslnegotiation(&mut self, v: SslNegotiation) -> &mut Self {
        self.sslnegotiation = v;
        self
    }

    /// Sets `sslrootcert`: a file, or [`RootCert::System`].
    pub fn sslrootcert(&mut self, v: RootCert) -> &mut Self {
        self.sslrootcert = Some(v);
        self
    }

    /// Sets `sslcert`.
    pub fn sslcert(&mut self, v: impl Into<PathBuf>) -> &mut Self {
        self.sslcert = Some(v.into());
        self
    }

    /// Sets `sslkey`.
    pub fn sslkey(&mut self, v: impl Into<PathBuf>) -> &mut Self {
        self.sslkey = Some(v.into());
        self
    }

    /// Sets `sslpassword`.
    pub fn sslpassword(&mut self, v: impl Into<String>) -> &mut Self {
        self.sslpassword = Some(v.into());
        self
    }

    /// Sets `sslcrl`.
    pub fn sslcrl(&mut self, v: impl Into<PathBuf>) -> &mut Self {
        self.sslcrl = Some(v.into());
        self
    }

    /// Sets `sslcrldir`.
    pub fn sslcrldir(&mut self, v: impl Into<PathBuf>) -> &mut Self {
        self.sslcrldir = Some(v.into());
        self
    }

    /// Sets `sslsni`.
    pub fn sslsni(&mut self, v: bool) -> &mut Self {
        self.sslsni = v;
        self
    }

    /// Sets `sslcertmode`.
    pub fn sslcertmode(&mut self, v: SslCertMode) -> &mut Self {
        self.sslcertmode = v;
        self
    }

    /// Sets `ssl_min_protocol_version` (None: OpenSSL's minimum).
    pub fn ssl_min_protocol_version(&mut self, v: Option<TlsVersion>) -> &mut Self {
        self.ssl_min_protocol_version = v;
        self
    }

    /// Sets `ssl_max_protocol_version` (None: no limit).
    pub fn ssl_max_protocol_version(&mut self, v: Option<TlsVersion>) -> &mut Self {
        self.ssl_max_protocol_version = v;
        self
    }

    /// Sets `sslkeylogfile`.
    pub fn sslkeylogfile(&mut self, v: impl Into<PathBuf>) -> &mut Self {
        self.sslkeylogfile = Some(v.into());
        self
    }

    /// Sets the home directory whose `.postgresql/` holds the default files.
    pub fn home(&mut self, v: impl Into<PathBuf>) -> &mut Self {
        self.home = Some(v.into());
        self
    }

    /// A default file under `~/.postgresql/`.
    pub(crate) fn default_file(&self, name: &str) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(".postgresql").join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = ClientTlsConfig::from_conninfo("password=hunter2 sslpassword=topsecret").unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("topsecret"), "{d}");
        assert!(d.contains("<set>"));
    }

    #[test]
    fn defaults() {
        let c = ClientTlsConfig::new();
        assert_eq!(c.port, 5432);
        assert!(c.sslsni);
        assert_eq!(c.sslmode, None);
        assert_eq!(
            c.validate().unwrap(),
            (SslMode::Prefer, SslNegotiation::Postgres)
        );
        assert_eq!(c.ssl_min_protocol_version, Some(TlsVersion::Tls1_2));
        assert_eq!(c.sslcertmode, SslCertMode::Allow);
    }

    #[test]
    fn conninfo_and_uri() {
        let c = ClientTlsConfig::from_conninfo(
            "host=db.example port=6432 sslmode=verify-full sslrootcert=/r.crt sslsni=0 target_session_attrs=any",
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("db.example", 6432));
        assert_eq!(c.sslmode, Some(SslMode::VerifyFull));
        assert!(!c.sslsni);
        assert_eq!(c.other, vec![("target_session_attrs".into(), "any".into())]);
        let c = ClientTlsConfig::from_conninfo(
            "postgresql://u@[2001:db8::1]:5433/d?sslmode=require&sslnegotiation=direct",
        )
        .unwrap();
        assert_eq!(c.host, "2001:db8::1");
        assert_eq!(
            c.validate().unwrap(),
            (SslMode::Require, SslNegotiation::Direct)
        );
    }

    #[test]
    fn errors_name_the_option() {
        let e = |s: &str| ClientTlsConfig::from_conninfo(s).unwrap_err().to_string();
        assert_eq!(e("sslmod=require"), "invalid connection option \"sslmod\"");
        assert_eq!(
            e("postgresql://h/?sslmod=require"),
            "invalid URI query parameter: \"sslmod\""
        );
        assert_eq!(e("sslmode=on"), "invalid sslmode value: \"on\"");
        assert_eq!(
            e("sslcertmode=always"),
            "invalid sslcertmode value: \"always\""
        );
        assert_eq!(
            e("ssl_min_protocol_version=TLSv9"),
            "invalid \"ssl_min_protocol_version\" value: \"TLSv9\""
        );
        assert_eq!(
            e("port=x"),
            "invalid integer value \"x\" for connection option \"port\""
        );
        let c = ClientTlsConfig::from_conninfo(
            "ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2",
        )
        .unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid SSL protocol version range"
        );
        let c = ClientTlsConfig::from_conninfo("sslrootcert=system sslmode=require").unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "weak sslmode \"require\" may not be used with sslrootcert=system (use \"verify-full\")"
        );
    }

    #[test]
    fn environment_then_conninfo() {
        let mut c = ClientTlsConfig::new();
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-ca".to_owned()),
            "PGHOST" => Some("envhost".to_owned()),
            "PGSSLCERTMODE" => Some("require".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        c.apply_conninfo("host=given").unwrap();
        assert_eq!(c.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(c.host, "given");
        assert_eq!(c.sslcertmode, SslCertMode::Require);
    }
}
