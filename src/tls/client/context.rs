//! The client's TLS, libpq's way (fe-secure-openssl.c, `initialize_SSL` and
//! `open_client_SSL`): which files are loaded, when the chain is verified, the host name check,
//! SNI, ALPN, the client certificate and `sslcertmode`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslRef, SslVerifyMode,
};
use openssl::x509::X509Ref;
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509VerifyFlags;

use openssl::error::ErrorStack;
use openssl::x509::X509VerifyResult;

use super::config::{ClientConfigError, ClientTlsConfig, RootCert, SslCertMode};
use super::hostname::{HostnameError, PresentedName, verify_host};
use crate::client::{SslMode, SslNegotiation};
use crate::tls::error::{Reason, io_reason};
use crate::tls::ffi::{self, CertRequestFlags};
use crate::tls::server::{Verdict, verdict};
use crate::tls::version::TlsVersion;
use crate::wire::ALPN_WIRE;

const ROOT_HINT: &str = "Either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification.";

/// Why the client's TLS could not be set up or was refused, in libpq's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientTlsError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ClientConfigError),
    /// verify-ca / verify-full without a root certificate file.
    #[error("root certificate file \"{}\" does not exist\n{ROOT_HINT}", path.display())]
    NoRootCert {
        /// The file looked for.
        path: PathBuf,
    },
    /// verify-ca / verify-full with no file given and no home directory.
    #[error("could not get home directory to locate root certificate file\n{ROOT_HINT}")]
    NoHomeForRootCert,
    /// The root certificate file could not be read.
    #[error("could not read root certificate file \"{}\": {reason}", path.display())]
    RootCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// `sslrootcert=system` and OpenSSL's default paths failed.
    #[error("could not load system root certificate paths: {reason}")]
    SystemRoots {
        /// Why.
        reason: Reason,
    },
    /// The client certificate file exists but cannot be opened.
    #[error("could not open certificate file \"{}\": {reason}", path.display())]
    CertOpen {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// The client certificate file could not be read.
    #[error("could not read certificate file \"{}\": {reason}", path.display())]
    CertRead {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// A certificate without its key.
    #[error("certificate present, but not private key file \"{}\"", path.display())]
    NoKey {
        /// The key file looked for.
        path: PathBuf,
    },
    /// The key file could not be examined.
    #[error("could not stat private key file \"{}\": {reason}", path.display())]
    KeyStat {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// The key file is not a regular file.
    #[error("private key file \"{}\" is not a regular file", path.display())]
    KeyNotRegular {
        /// The file.
        path: PathBuf,
    },
    /// The key file is readable by others.
    #[error("private key file \"{}\" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root", path.display())]
    KeyPermissions {
        /// The file.
        path: PathBuf,
    },
    /// The key could not be loaded (format, wrong sslpassword…).
    #[error("could not load private key file \"{}\": {reason}", path.display())]
    KeyLoad {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// A protocol bound OpenSSL refused.
    #[error("could not set {which} SSL protocol version: {reason}")]
    ProtocolVersion {
        /// Which bound.
        which: ProtocolBound,
        /// Why.
        reason: Reason,
    },
    /// The handshake failed.
    #[error("SSL error: {reason}{}{}", verify.map(|v| format!(": {}", v.error_string())).unwrap_or_default(), hint.as_ref().map(|h| format!("\n{h}")).unwrap_or_default())]
    Handshake {
        /// OpenSSL's reason.
        reason: Reason,
        /// The chain verification's error, shown after "certificate verify failed".
        verify: Option<X509VerifyResult>,
        /// libpq's hint about protocol versions.
        hint: Option<String>,
    },
    /// The connection closed during the handshake.
    #[error("SSL SYSCALL error: {0}")]
    Syscall(String),
    /// The verify-full host name check failed.
    #[error(transparent)]
    Hostname(#[from] HostnameError),
    /// `sslcertmode=require` and the server did not ask for a certificate.
    #[error("server did not request an SSL certificate")]
    CertNotRequested,
    /// `sslcertmode=require` and none was sent.
    #[error("server accepted connection without a valid SSL certificate")]
    CertNotSent,
    /// OpenSSL failed elsewhere.
    #[error("{context}: {reason}")]
    OpenSsl {
        /// What was being done.
        context: &'static str,
        /// Why.
        reason: Reason,
    },
}

impl ClientTlsError {
    /// A failed handshake with OpenSSL's error queue, no verification detail and no hint.
    pub(crate) fn handshake(stack: &ErrorStack) -> ClientTlsError {
        ClientTlsError::Handshake {
            reason: Reason::OpenSsl(stack.clone()),
            verify: None,
            hint: None,
        }
    }

    /// The reason of an error that shows one (a file's or OpenSSL's).
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            ClientTlsError::RootCert { reason, .. }
            | ClientTlsError::SystemRoots { reason }
            | ClientTlsError::CertOpen { reason, .. }
            | ClientTlsError::CertRead { reason, .. }
            | ClientTlsError::KeyStat { reason, .. }
            | ClientTlsError::KeyLoad { reason, .. }
            | ClientTlsError::ProtocolVersion { reason, .. }
            | ClientTlsError::Handshake { reason, .. }
            | ClientTlsError::OpenSsl { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// OpenSSL's error queue behind this error, if OpenSSL failed.
    pub fn openssl_error(&self) -> Option<&ErrorStack> {
        self.reason().and_then(Reason::openssl_error)
    }
}

/// Which bound of the protocol range (`ssl_min_protocol_version`, `ssl_max_protocol_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolBound {
    /// The minimum.
    Minimum,
    /// The maximum.
    Maximum,
}

impl std::fmt::Display for ProtocolBound {
    /// libpq's word: "minimum" or "maximum".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProtocolBound::Minimum => "minimum",
            ProtocolBound::Maximum => "maximum",
        })
    }
}

/// Whether the server asked for a client certificate during the handshake, and whether one
/// was sent (libpq's `ssl_cert_requested` / `ssl_cert_sent`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertRequest {
    /// The server sent a CertificateRequest.
    pub requested: bool,
    /// A certificate was available and sent in reply.
    pub sent: bool,
}

/// A client TLS setup for one connect: the context built from the files, and the rules to apply
/// to each handshake.
pub struct ClientTls {
    ctx: SslContext,
    mode: SslMode,
    negotiation: SslNegotiation,
    have_rootcert: bool,
    host: String,
    sni: bool,
    cert_mode: SslCertMode,
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("mode", &self.mode)
            .field("negotiation", &self.negotiation)
            .field("have_rootcert", &self.have_rootcert)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

fn ossl(context: &'static str) -> impl Fn(openssl::error::ErrorStack) -> ClientTlsError {
    move |e| ClientTlsError::OpenSsl {
        context,
        reason: e.into(),
    }
}

impl ClientTls {
    /// Builds the context as libpq's `initialize_SSL` does: the protocol range, the root
    /// certificate (or `system`), the CRLs (a missing CRL is ignored), the client certificate
    /// and key (a missing certificate means none), ALPN and the key log.
    pub fn new(config: &ClientTlsConfig) -> Result<ClientTls, ClientTlsError> {
        let (mode, negotiation) = config.validate()?;
        ClientTls::build(config, mode, negotiation)
    }

    /// [`ClientTls::new`] for a configuration already validated into `mode` and
    /// `negotiation` (the I/O driver validates once, before any connection).
    pub(crate) fn build(
        config: &ClientTlsConfig,
        mode: SslMode,
        negotiation: SslNegotiation,
    ) -> Result<ClientTls, ClientTlsError> {
        crate::tls::openssl_conf::init();
        let mut b = SslContextBuilder::new(SslMethod::tls_client())
            .map_err(ossl("could not create SSL context"))?;
        b.set_options(SslOptions::NO_COMPRESSION);
        if let Some(v) = config.ssl_min_protocol_version {
            b.set_min_proto_version(Some(v.to_openssl())).map_err(|e| {
                ClientTlsError::ProtocolVersion {
                    which: ProtocolBound::Minimum,
                    reason: e.into(),
                }
            })?;
        }
        if let Some(v) = config.ssl_max_protocol_version {
            b.set_max_proto_version(Some(v.to_openssl())).map_err(|e| {
                ClientTlsError::ProtocolVersion {
                    which: ProtocolBound::Maximum,
                    reason: e.into(),
                }
            })?;
        }
        if let Some(file) = &config.sslkeylogfile {
            let file = file.clone();
            b.set_keylog_callback(move |_, line| append_key_log(&file, line));
        }
        b.set_alpn_protos(ALPN_WIRE)
            .map_err(ossl("could not send ALPN protocol list"))?;
        let have_rootcert = load_roots(&mut b, config, mode)?;
        load_client_cert(&mut b, config)?;
        b.set_verify(if have_rootcert {
            SslVerifyMode::PEER
        } else {
            SslVerifyMode::NONE
        });
        ffi::record_cert_requests(&mut b);
        Ok(ClientTls {
            ctx: b.build(),
            mode,
            negotiation,
            have_rootcert,
            host: config.host.clone(),
            sni: config.sslsni,
            cert_mode: config.sslcertmode,
            min: config.ssl_min_protocol_version,
            max: config.ssl_max_protocol_version,
        })
    }

    /// The effective sslmode.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The effective sslnegotiation.
    pub fn negotiation(&self) -> SslNegotiation {
        self.negotiation
    }

    /// Whether the server's chain is verified (a root certificate was loaded, so even
    /// `require` verifies it, as in libpq).
    pub fn verifies_chain(&self) -> bool {
        self.have_rootcert
    }

    /// A TLS session for one connection: SNI unless the host is an IP literal or `sslsni=0`,
    /// ALPN "postgresql".
    pub fn new_ssl(&self) -> Result<Ssl, ClientTlsError> {
        self.new_ssl_for_host(&self.host)
    }

    /// [`new_ssl`](Self::new_ssl) for a connection to `host` rather than the configuration's
    /// `host`: one context (its files read once) serving connections whose host name is given
    /// per connection, as tokio-postgres's `MakeTlsConnect` gives it. SNI follows libpq's rule
    /// for `host` (none for an IP literal, none with `sslsni=0`); check the handshake with
    /// [`check_established_for_host`](Self::check_established_for_host) and the same `host`.
    pub fn new_ssl_for_host(&self, host: &str) -> Result<Ssl, ClientTlsError> {
        let mut ssl = Ssl::new(&self.ctx).map_err(ossl("could not establish SSL connection"))?;
        let h = host;
        let is_ip = !h.is_empty()
            && (h.bytes().all(|c| c.is_ascii_digit() || c == b'.') || h.contains(':'));
        if self.sni && !h.is_empty() && !is_ip {
            ssl.set_hostname(h)
                .map_err(ossl("could not set SSL Server Name Indication (SNI)"))?;
        }
        let index =
            ffi::cert_request_index().map_err(ossl("could not establish SSL connection"))?;
        ssl.set_ex_data(index, CertRequestFlags::default());
        Ok(ssl)
    }

    /// libpq's checks once the handshake completed: the host name under verify-full, and
    /// nothing else. Under `require` and `verify-ca` the server's names are not read, so a
    /// CN with an embedded NUL does not stop the connection, as in libpq; under verify-full
    /// it is refused with libpq's "SSL certificate's name contains embedded null".
    pub fn check_established(&self, ssl: &SslRef) -> Result<(), ClientTlsError> {
        self.check_established_for_host(ssl, &self.host)
    }

    /// [`check_established`](Self::check_established) for a connection to `host` (the host
    /// given to [`new_ssl_for_host`](Self::new_ssl_for_host)): under verify-full the server's
    /// certificate must match `host`, with libpq's rules and texts.
    pub fn check_established_for_host(
        &self,
        ssl: &SslRef,
        host: &str,
    ) -> Result<(), ClientTlsError> {
        let Some(peer) = ssl.peer_certificate() else {
            return Err(ClientTlsError::OpenSsl {
                context: "certificate could not be obtained",
                reason: "no peer certificate".into(),
            });
        };
        if self.mode == SslMode::VerifyFull {
            check_host(host, &peer)?;
        }
        Ok(())
    }

    /// libpq's reading of a failed handshake: "SSL error: …" with the verification error when
    /// there is one, and the protocol-version hint.
    pub fn handshake_error(&self, e: &openssl::ssl::Error, ssl: Option<&SslRef>) -> ClientTlsError {
        match e.ssl_error() {
            Some(stack) if !stack.errors().is_empty() => {
                let r = Reason::OpenSsl(stack.clone());
                let verify = ssl.map(SslRef::verify_result).filter(|v| {
                    *v != X509VerifyResult::OK && r.to_string() == "certificate verify failed"
                });
                let first = &stack.errors()[0];
                let version_problem = matches!(
                    first.reason(),
                    Some(
                        "no protocols available"
                            | "unsupported protocol"
                            | "wrong version number"
                            | "tlsv1 alert protocol version"
                            | "version too high"
                            | "version too low"
                    )
                );
                let hint = version_problem.then(|| {
                    format!(
                        "This may indicate that the server does not support any SSL protocol version between {} and {}.",
                        self.min.map_or("TLSv1", TlsVersion::as_str),
                        self.max.map_or("TLSv1.3", TlsVersion::as_str)
                    )
                });
                ClientTlsError::Handshake {
                    reason: r,
                    verify,
                    hint,
                }
            }
            _ => match e.io_error() {
                Some(io) => ClientTlsError::Syscall(io_reason(io)),
                None => ClientTlsError::Syscall("EOF detected".to_owned()),
            },
        }
    }

    /// `sslcertmode=require`, checked when the server sends AuthenticationOk, as libpq does.
    pub fn check_cert_mode(&self, ssl: &SslRef) -> Result<(), ClientTlsError> {
        if self.cert_mode != SslCertMode::Require {
            return Ok(());
        }
        let r = cert_request(ssl);
        if !r.requested {
            Err(ClientTlsError::CertNotRequested)
        } else if !r.sent {
            Err(ClientTlsError::CertNotSent)
        } else {
            Ok(())
        }
    }
}

/// Whether the server asked for a client certificate during this client session's
/// handshake, and whether one was sent (both false for a session [`ClientTls`] did not make).
pub fn cert_request(ssl: &SslRef) -> CertRequest {
    ffi::cert_request_index()
        .ok()
        .and_then(|i| ssl.ex_data(i))
        .map(|f| CertRequest {
            requested: f.requested.load(Ordering::SeqCst),
            sent: f.sent.load(Ordering::SeqCst),
        })
        .unwrap_or_default()
}

/// libpq's verify-full name check over a certificate.
pub fn check_host(host: &str, cert: &X509Ref) -> Result<(), HostnameError> {
    let mut sans = Vec::new();
    if let Some(names) = cert.subject_alt_names() {
        for n in &names {
            match ffi::general_name_raw(n) {
                Some((openssl_sys::GEN_DNS, b)) => sans.push(PresentedName::Dns(b)),
                Some((_, b)) => sans.push(PresentedName::Ip(b)),
                None => {}
            }
        }
    }
    let cn = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|e| e.data().as_slice().to_vec());
    verify_host(host, &sans, cn.as_deref())
}

fn append_key_log(file: &Path, line: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let r = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = r {
        log::warn!(
            "could not write to SSL key logging file \"{}\": {}",
            file.display(),
            io_reason(&e)
        );
    }
}

/// The root certificate, libpq's way. Returns whether one was loaded.
fn load_roots(
    b: &mut SslContextBuilder,
    config: &ClientTlsConfig,
    mode: SslMode,
) -> Result<bool, ClientTlsError> {
    let file = match &config.sslrootcert {
        Some(RootCert::System) => {
            b.set_default_verify_paths()
                .map_err(|e| ClientTlsError::SystemRoots { reason: e.into() })?;
            return Ok(true);
        }
        Some(RootCert::File(f)) => Some(f.clone()),
        None => config.default_file("root.crt"),
    };
    match file {
        Some(f) if f.exists() => {
            b.set_ca_file(&f).map_err(|e| ClientTlsError::RootCert {
                path: f.clone(),
                reason: e.into(),
            })?;
            // CRLs, with libpq's X509_STORE_load_locations semantics: the file (given, or the
            // default root.crl when neither option is set) is loaded first, and if it cannot be
            // loaded nothing is checked, the directory included; a directory is taken as given,
            // so one that does not exist still turns checking on and every chain then fails
            // for want of a CRL (fail closed).
            let file = config.sslcrl.clone().or_else(|| {
                if config.sslcrldir.is_none() {
                    config.default_file("root.crl")
                } else {
                    None
                }
            });
            let store = b.cert_store_mut();
            let file_ok = match &file {
                Some(f) => {
                    let loaded = f.is_file()
                        && store
                            .add_lookup(X509Lookup::file())
                            .map(|l| l.load_crl_file(f, openssl::ssl::SslFiletype::PEM).is_ok())
                            .unwrap_or(false);
                    if !loaded && config.sslcrl.is_some() {
                        log::warn!(
                            "could not load SSL certificate revocation list file \"{}\"; as in libpq, no revocation list is checked",
                            f.display()
                        );
                    }
                    loaded
                }
                None => true,
            };
            let mut dir_ok = false;
            if file_ok
                && let Some(d) = config.sslcrldir.as_ref().and_then(|d| d.to_str())
                && let Ok(l) = store.add_lookup(X509Lookup::hash_dir())
            {
                dir_ok = l.add_dir(d, openssl::ssl::SslFiletype::PEM).is_ok();
            }
            if file_ok && (file.is_some() || dir_ok) {
                // X509_STORE_set_flags ORs the flags in and returns 1 in every OpenSSL
                // version, so there is no failure to report; libpq ignores its result too.
                let flags =
                    store.set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL);
                debug_assert!(flags.is_ok(), "X509_STORE_set_flags cannot fail");
            }
            Ok(true)
        }
        other if mode.verifies_chain() => Err(match other {
            Some(path) => ClientTlsError::NoRootCert { path },
            None => ClientTlsError::NoHomeForRootCert,
        }),
        _ => Ok(false),
    }
}

/// The client certificate and key. A missing certificate file means no certificate.
fn load_client_cert(
    b: &mut SslContextBuilder,
    config: &ClientTlsConfig,
) -> Result<(), ClientTlsError> {
    if config.sslcertmode == SslCertMode::Disable {
        return Ok(());
    }
    let Some(cert) = config
        .sslcert
        .clone()
        .or_else(|| config.default_file("postgresql.crt"))
    else {
        return Ok(());
    };
    match std::fs::metadata(&cert) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => {
            return Err(ClientTlsError::CertOpen {
                path: cert,
                reason: e.into(),
            });
        }
        Ok(_) => {}
    }
    b.set_certificate_chain_file(&cert)
        .map_err(|e| ClientTlsError::CertRead {
            path: cert.clone(),
            reason: e.into(),
        })?;
    let Some(key) = config
        .sslkey
        .clone()
        .or_else(|| config.default_file("postgresql.key"))
    else {
        return Ok(());
    };
    let meta = std::fs::metadata(&key).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ClientTlsError::NoKey { path: key.clone() }
        } else {
            ClientTlsError::KeyStat {
                path: key.clone(),
                reason: e.into(),
            }
        }
    })?;
    if !meta.is_file() {
        return Err(ClientTlsError::KeyNotRegular { path: key });
    }
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // libpq refuses loose keys it owns, or root's beyond 0640; another owner is allowed.
        let euid = ffi::effective_uid();
        let v = verdict(meta.uid(), meta.permissions().mode(), euid);
        if v == Verdict::GroupOrWorldAccess {
            return Err(ClientTlsError::KeyPermissions { path: key });
        }
    }
    let pkey = read_key(&key, config.sslpassword.as_deref())?;
    // Setting the key already compares it with the certificate; with OpenSSL 3 libpq meets a
    // mismatch there and reports it as the key file's error ("could not load private key file
    // \"%s\": key values mismatch"), so pgssl does too, whichever call notices it.
    let load_error = |e: openssl::error::ErrorStack| ClientTlsError::KeyLoad {
        path: key.clone(),
        reason: e.into(),
    };
    b.set_private_key(&pkey).map_err(load_error)?;
    b.check_private_key().map_err(load_error)?;
    Ok(())
}

/// A key in PEM (maybe encrypted) or DER (PKCS#1, or PKCS#8 maybe encrypted), with
/// `sslpassword`. On failure the PEM error is reported, as libpq does.
fn read_key(path: &Path, password: Option<&str>) -> Result<PKey<Private>, ClientTlsError> {
    let bytes = std::fs::read(path).map_err(|e| ClientTlsError::KeyLoad {
        path: path.to_owned(),
        reason: e.into(),
    })?;
    let pass = password.unwrap_or("").as_bytes();
    let pem = PKey::private_key_from_pem_callback(&bytes, |buf| {
        let n = pass.len().min(buf.len());
        buf[..n].copy_from_slice(&pass[..n]);
        Ok(n)
    });
    match pem {
        Ok(k) => Ok(k),
        Err(pem_err) => PKey::private_key_from_der(&bytes)
            .or_else(|_| PKey::private_key_from_pkcs8_passphrase(&bytes, pass))
            .map_err(|_| ClientTlsError::KeyLoad {
                path: path.to_owned(),
                reason: pem_err.into(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sslrootcert=system` fails only when OpenSSL cannot install its default lookups
    /// (X509_STORE_set_default_paths ignores default files and directories that name nothing;
    /// tests/openssl_conf.rs's system-roots scenarios show the context building then), so the
    /// text is checked here, with the reason OpenSSL 3.0 queues for that failure.
    #[test]
    fn system_roots_error_text() {
        let e = ClientTlsError::SystemRoots {
            reason: Reason::Text("malloc failure".to_owned()),
        };
        assert_eq!(
            e.to_string(),
            "could not load system root certificate paths: malloc failure"
        );
    }
}
