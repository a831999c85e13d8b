//! Building the server's OpenSSL context from a [`ServerTlsConfig`], in PostgreSQL's order and
//! with PostgreSQL's errors (be-secure-openssl.c, `be_tls_init`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openssl::dh::Dh;
use openssl::pkey::PKey;
use openssl::ssl::{
    AlpnError, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions,
    SslSessionCacheMode, SslVerifyMode, select_next_proto,
};
use openssl::x509::X509Name;
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509VerifyFlags;

use super::config::{PassphraseCallback, ServerTlsConfig};
use super::identity::{BuildMode, Identity};
use super::key_file::{PASSPHRASE_PROMPT, check_permissions, run_passphrase_command};
use super::sni::SniHosts;
use crate::tls::error::{Reason, TlsError};
use crate::tls::openssl_conf;
use crate::tls::version::TlsVersion;
use crate::wire::ALPN_WIRE;

/// RFC 7919's ffdhe2048 group, used when `ssl_dh_params_file` is empty (PostgreSQL also
/// ships a built-in 2048-bit group).
const FFDHE2048_PEM: &[u8] = b"-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// What the built context enforces, for the host to report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EffectiveSettings {
    /// The lowest protocol accepted: the stricter of `ssl_min_protocol_version` and the
    /// OpenSSL configuration file's MinProtocol.
    pub min_protocol: TlsVersion,
    /// The highest protocol accepted, if limited: the stricter of `ssl_max_protocol_version`
    /// and the configuration file's MaxProtocol.
    pub max_protocol: Option<TlsVersion>,
    /// Whether a CA store was loaded (client certificates requested and verifiable).
    pub ca_loaded: bool,
    /// Whether revocation lists are checked.
    pub crl_loaded: bool,
    /// The OpenSSL configuration file in force.
    pub openssl_conf: openssl_conf::ConfigFile,
}

/// A ready server TLS configuration: hands out one [`openssl::ssl::Ssl`] per connection.
#[derive(Clone)]
pub struct ServerTls {
    context: SslContext,
    effective: EffectiveSettings,
    _hosts: Option<Arc<SniHosts>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("effective", &self.effective)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// A new TLS session for one accepted connection, server side.
    pub fn new_ssl(&self) -> Result<openssl::ssl::Ssl, TlsError> {
        openssl::ssl::Ssl::new(&self.context).map_err(|e| TlsError::OpenSsl {
            context: "could not initialize SSL connection",
            reason: e.into(),
        })
    }

    /// The context (SNI may switch a connection to a host's own context).
    pub fn context(&self) -> &SslContext {
        &self.context
    }

    /// What the context enforces.
    pub fn effective(&self) -> &EffectiveSettings {
        &self.effective
    }

    /// Whether a CA store is loaded for the default identity; without one, PostgreSQL refuses
    /// `clientcert` and `cert`: "client certificates can only be checked if a root certificate
    /// store is available". With SNI hosts, use the connection's
    /// [`SessionInfo::ca_loaded`](crate::tls::SessionInfo::ca_loaded), which
    /// [`check_client_certificate`](crate::tls::check_client_certificate) reads.
    pub fn ca_loaded(&self) -> bool {
        self.effective.ca_loaded
    }
}

impl ServerTlsConfig {
    /// Reads every file and builds the server context, as PostgreSQL does at start; the error
    /// names the file or setting and the reason, in PostgreSQL's words. `ssl = off` is not
    /// checked here: see [`ServerTlsConfig::build_if_enabled`].
    pub fn build(&self) -> Result<ServerTls, TlsError> {
        self.build_mode(BuildMode::Start)
    }

    /// [`build`](Self::build) when `ssl` is on, None when it is off.
    pub fn build_if_enabled(&self) -> Result<Option<ServerTls>, TlsError> {
        if self.ssl {
            self.build().map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn build_mode(&self, mode: BuildMode) -> Result<ServerTls, TlsError> {
        openssl_conf::init();
        let (mut builder, effective) = self.context_builder(&self.identity, mode)?;
        let mut entries = match &self.hosts_file {
            Some(file) => SniHosts::read_file(&self.resolve(file))?,
            None => Vec::new(),
        };
        entries.extend(self.hosts.iter().cloned());
        let hosts = if entries.is_empty() {
            None
        } else {
            let hosts = Arc::new(SniHosts::from_entries(
                &entries,
                |id| self.context_builder(id, mode).map(|(b, _)| b),
                |p| self.resolve(p),
            )?);
            hosts.install(&mut builder);
            Some(hosts)
        };
        Ok(ServerTls {
            context: builder.build(),
            effective,
            _hosts: hosts,
        })
    }

    /// One identity's context with every common setting applied.
    pub(crate) fn context_builder(
        &self,
        id: &Identity,
        mode: BuildMode,
    ) -> Result<(SslContextBuilder, EffectiveSettings), TlsError> {
        let ossl = |context: &'static str| {
            move |e: openssl::error::ErrorStack| TlsError::OpenSsl {
                context,
                reason: e.into(),
            }
        };
        // A plain server context: the OpenSSL configuration file's system_default section is
        // applied here, and pgssl only ever tightens what it set.
        let mut b = SslContextBuilder::new(SslMethod::tls_server())
            .map_err(ossl("could not create SSL context"))?;
        let file_min = b.min_proto_version().and_then(TlsVersion::from_openssl);
        let file_max = b.max_proto_version().and_then(TlsVersion::from_openssl);
        b.set_mode(SslMode::RELEASE_BUFFERS | SslMode::ACCEPT_MOVING_WRITE_BUFFER);

        // The certificate chain, leaf first; the rest is sent to clients.
        let cert_path = self.resolve(&id.cert_file);
        b.set_certificate_chain_file(&cert_path)
            .map_err(|e| TlsError::CertificateFile {
                path: id.cert_file.clone(),
                reason: e.into(),
            })?;

        // The private key: permissions first, then the file, with the passphrase if needed.
        let key_path = self.resolve(&id.key_file);
        check_permissions(&key_path).map_err(|e| rename_key_error(e, &id.key_file))?;
        let pem = std::fs::read(&key_path).map_err(|e| TlsError::KeyFile {
            path: id.key_file.clone(),
            reason: e.into(),
        })?;
        let key = self.load_key(id, &pem, mode)?;
        b.set_private_key(&key).map_err(|e| TlsError::KeyFile {
            path: id.key_file.clone(),
            reason: e.into(),
        })?;
        b.check_private_key()
            .map_err(|e| TlsError::KeyMismatch { reason: e.into() })?;

        // The protocol range: PostgreSQL's settings, never looser than the configuration file.
        if let Some(max) = self.max_protocol
            && self.min_protocol > max
        {
            return Err(TlsError::ProtocolRange);
        }
        let min = file_min.map_or(self.min_protocol, |f| f.max(self.min_protocol));
        let max = match (file_max, self.max_protocol) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(max) = max
            && min > max
        {
            return Err(TlsError::OpenSsl {
                context: "could not set SSL protocol version range",
                reason: Reason::Text(format!(
                    "the effective minimum {min} is above the effective maximum {max} (ssl_min_protocol_version, ssl_max_protocol_version and the OpenSSL configuration file combined)"
                )),
            });
        }
        b.set_min_proto_version(Some(min.to_openssl()))
            .map_err(ossl("could not set minimum SSL protocol version"))?;
        b.set_max_proto_version(max.map(TlsVersion::to_openssl))
            .map_err(ossl("could not set maximum SSL protocol version"))?;

        // No tickets, no session cache, no compression, no renegotiation.
        b.set_num_tickets(0)
            .map_err(ossl("could not disable session tickets"))?;
        b.set_options(
            SslOptions::NO_TICKET | SslOptions::NO_COMPRESSION | SslOptions::NO_RENEGOTIATION,
        );
        b.set_session_cache_mode(SslSessionCacheMode::OFF);

        // Ephemeral DH and ECDH.
        let dh = match &self.dh_params_file {
            Some(file) => {
                let bytes =
                    std::fs::read(self.resolve(file)).map_err(|e| TlsError::DhParamsFile {
                        path: file.clone(),
                        reason: e.into(),
                    })?;
                Dh::params_from_pem(&bytes).map_err(|e| TlsError::DhParamsFile {
                    path: file.clone(),
                    reason: e.into(),
                })?
            }
            None => {
                Dh::params_from_pem(FFDHE2048_PEM).map_err(ossl("could not load DH parameters"))?
            }
        };
        b.set_tmp_dh(&dh).map_err(|e| TlsError::OpenSsl {
            context: "DH: could not set DH parameters",
            reason: e.into(),
        })?;
        b.set_groups_list(&self.groups)
            .map_err(|e| TlsError::Groups { reason: e.into() })?;

        // Ciphers.
        b.set_cipher_list(&self.ciphers)
            .map_err(|_| TlsError::Ciphers)?;
        if !self.tls13_ciphers.is_empty() {
            b.set_ciphersuites(&self.tls13_ciphers)
                .map_err(|_| TlsError::Tls13Ciphers)?;
        }
        if self.prefer_server_ciphers {
            b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
        }

        // Client certificates: requested, not required, verified against the CA file.
        let ca_loaded = match &id.ca_file {
            Some(file) => {
                let path = self.resolve(file);
                let ca_err = |e: openssl::error::ErrorStack| TlsError::CaFile {
                    path: file.clone(),
                    reason: e.into(),
                };
                b.set_ca_file(&path).map_err(ca_err)?;
                let names = X509Name::load_client_ca_file(&path).map_err(ca_err)?;
                b.set_client_ca_list(names);
                b.set_verify(SslVerifyMode::PEER | SslVerifyMode::CLIENT_ONCE);
                true
            }
            None => false,
        };

        // Revocation lists.
        let crl_loaded = self.load_crls(&mut b)?;

        // ALPN: "postgresql" or a fatal no_application_protocol alert. A client that offers
        // no ALPN at all is not asked (older libpq); the negotiator enforces direct SSL's rule.
        b.set_alpn_select_callback(|_, client| {
            select_next_proto(ALPN_WIRE, client).ok_or(AlpnError::ALERT_FATAL)
        });

        Ok((
            b,
            EffectiveSettings {
                min_protocol: min,
                max_protocol: max,
                ca_loaded,
                crl_loaded,
                openssl_conf: openssl_conf::config_file(),
            },
        ))
    }

    fn load_crls(&self, b: &mut SslContextBuilder) -> Result<bool, TlsError> {
        if self.crl_file.is_none() && self.crl_dir.is_none() {
            return Ok(false);
        }
        let store = b.cert_store_mut();
        if let Some(file) = &self.crl_file {
            let path = self.resolve(file);
            let crl_err = |e: openssl::error::ErrorStack| TlsError::CrlFile {
                path: file.clone(),
                reason: e.into(),
            };
            if !path.is_file() {
                return Err(TlsError::CrlFile {
                    path: file.clone(),
                    reason: match std::fs::metadata(&path) {
                        Err(e) => e.into(),
                        Ok(_) => "not a regular file".into(),
                    },
                });
            }
            let lookup = store.add_lookup(X509Lookup::file()).map_err(crl_err)?;
            lookup
                .load_crl_file(&path, SslFiletype::PEM)
                .map_err(crl_err)?;
        }
        if let Some(dir) = &self.crl_dir {
            let path = self.resolve(dir);
            let dir_err = |reason: Reason| TlsError::CrlDir {
                path: dir.clone(),
                reason,
            };
            if !path.is_dir() {
                return Err(dir_err(match std::fs::metadata(&path) {
                    Err(e) => e.into(),
                    Ok(_) => "not a directory".into(),
                }));
            }
            let lookup = store
                .add_lookup(X509Lookup::hash_dir())
                .map_err(|e| dir_err(e.into()))?;
            let name = path
                .to_str()
                .ok_or_else(|| dir_err("path is not valid UTF-8".into()))?;
            lookup
                .add_dir(name, SslFiletype::PEM)
                .map_err(|e| dir_err(e.into()))?;
        }
        // X509_STORE_set_flags ORs the flags in and returns 1 in every OpenSSL version, so
        // there is no failure to report; PostgreSQL ignores its result too.
        let flags = store.set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL);
        debug_assert!(flags.is_ok(), "X509_STORE_set_flags cannot fail");
        Ok(true)
    }

    /// Parses the PEM key, asking for a passphrase only if it is encrypted.
    fn load_key(
        &self,
        id: &Identity,
        pem: &[u8],
        mode: BuildMode,
    ) -> Result<PKey<openssl::pkey::Private>, TlsError> {
        let asked = Mutex::new(None::<TlsError>);
        let source = PassphraseSource::choose(id, self.passphrase_callback.as_ref(), mode);
        let key = PKey::private_key_from_pem_callback(pem, |buf| {
            let pass = match source.get() {
                Ok(p) => p,
                Err(e) => {
                    *asked.lock().unwrap() = Some(e);
                    return Ok(0);
                }
            };
            let n = pass.len().min(buf.len());
            buf[..n].copy_from_slice(&pass[..n]);
            Ok(n)
        });
        match key {
            Ok(k) => Ok(k),
            Err(e) => Err(match asked.into_inner().unwrap() {
                Some(TlsError::KeyNeedsPassphraseOnReload { .. }) => {
                    TlsError::KeyNeedsPassphraseOnReload {
                        path: id.key_file.clone(),
                    }
                }
                Some(other) => other,
                None => TlsError::KeyFile {
                    path: id.key_file.clone(),
                    reason: e.into(),
                },
            }),
        }
    }
}

/// Where a protected key's passphrase comes from, decided once per key.
enum PassphraseSource<'a> {
    Command(&'a str),
    Callback(&'a PassphraseCallback),
    /// A reload with a command that does not support reloads.
    RefuseOnReload,
    None(&'a Path),
}

impl<'a> PassphraseSource<'a> {
    fn choose(id: &'a Identity, callback: Option<&'a PassphraseCallback>, mode: BuildMode) -> Self {
        if !id.passphrase_command.is_empty() {
            if mode == BuildMode::Reload && !id.passphrase_command_supports_reload {
                PassphraseSource::RefuseOnReload
            } else {
                PassphraseSource::Command(&id.passphrase_command)
            }
        } else if let Some(cb) = callback {
            PassphraseSource::Callback(cb)
        } else if mode == BuildMode::Reload {
            PassphraseSource::RefuseOnReload
        } else {
            PassphraseSource::None(&id.key_file)
        }
    }

    fn get(&self) -> Result<Vec<u8>, TlsError> {
        match self {
            PassphraseSource::Command(cmd) => run_passphrase_command(cmd),
            PassphraseSource::Callback(cb) => cb(PASSPHRASE_PROMPT).map_err(|reason| {
                TlsError::OpenSsl {
                    context: "passphrase callback failed",
                    reason: Reason::Text(reason),
                }
            }),
            PassphraseSource::RefuseOnReload => Err(TlsError::KeyNeedsPassphraseOnReload {
                path: PathBuf::new(),
            }),
            PassphraseSource::None(path) => Err(TlsError::KeyFile {
                path: path.to_path_buf(),
                reason: "the key is protected by a passphrase, and neither ssl_passphrase_command nor a passphrase callback is set".into(),
            }),
        }
    }
}

/// Permission errors name the key as configured, not as resolved.
fn rename_key_error(e: TlsError, configured: &Path) -> TlsError {
    let path = configured.to_owned();
    match e {
        TlsError::KeyFileAccess { reason, .. } => TlsError::KeyFileAccess { path, reason },
        TlsError::KeyFileNotRegular { .. } => TlsError::KeyFileNotRegular { path },
        TlsError::KeyFileOwner { .. } => TlsError::KeyFileOwner { path },
        TlsError::KeyFilePermissions { .. } => TlsError::KeyFilePermissions { path },
        other => other,
    }
}
