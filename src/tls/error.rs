//! The OpenSSL layer's errors, in PostgreSQL's words.
//!
//! Every variant names the file or the setting and the reason. The OpenSSL reason is the one
//! PostgreSQL prints (`ERR_reason_error_string` of the earliest error in the queue); the error
//! itself stays reachable through [`Reason::openssl_error`].
//!
//! A variant either shows its cause in its text (a leaf: the [`Reason`] is part of PostgreSQL's
//! message, and `source()` is None) or wraps another error and returns it from `source()`
//! without repeating it; [`TlsError::report`] prints the whole chain on one line.

use std::path::PathBuf;
use std::sync::Arc;

use openssl::error::ErrorStack;

/// Why a file or an OpenSSL call failed: shown as the text PostgreSQL prints, with the
/// underlying error kept for callers that want it.
///
/// Two reasons are equal when their texts are.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Reason {
    /// OpenSSL's error queue; shown as PostgreSQL shows it (the reason string of the earliest
    /// error, or the `strerror` text of a system error OpenSSL recorded).
    OpenSsl(ErrorStack),
    /// An operating-system error; shown as `strerror` alone, as PostgreSQL's `%m`.
    Io(Arc<std::io::Error>),
    /// A text of pgssl's own (or PostgreSQL's, where no library error is behind it).
    Text(String),
}

impl Reason {
    /// OpenSSL's error queue, when OpenSSL failed.
    pub fn openssl_error(&self) -> Option<&ErrorStack> {
        match self {
            Reason::OpenSsl(e) => Some(e),
            _ => None,
        }
    }

    /// The operating-system error, when one failed.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Reason::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::OpenSsl(e) => f.write_str(&reason(e)),
            Reason::Io(e) => f.write_str(&io_reason(e)),
            Reason::Text(t) => f.write_str(t),
        }
    }
}

impl PartialEq for Reason {
    fn eq(&self, other: &Reason) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Reason {}

impl From<ErrorStack> for Reason {
    fn from(e: ErrorStack) -> Reason {
        Reason::OpenSsl(e)
    }
}

impl From<std::io::Error> for Reason {
    fn from(e: std::io::Error) -> Reason {
        Reason::Io(Arc::new(e))
    }
}

impl From<String> for Reason {
    fn from(t: String) -> Reason {
        Reason::Text(t)
    }
}

impl From<&str> for Reason {
    fn from(t: &str) -> Reason {
        Reason::Text(t.to_owned())
    }
}

/// Why a TLS configuration could not be built, set or reloaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A setting name pgssl does not know.
    #[error("unrecognized configuration parameter \"{name}\"")]
    UnknownSetting {
        /// The name given.
        name: String,
    },
    /// A value a setting does not accept.
    #[error("invalid value for parameter \"{name}\": \"{value}\"{}", hint.as_ref().map(|h| format!("\nHINT:  {h}")).unwrap_or_default())]
    InvalidValue {
        /// The setting.
        name: String,
        /// The value given.
        value: String,
        /// PostgreSQL's hint, such as the accepted values.
        hint: Option<String>,
    },
    /// A `%` placeholder `ssl_passphrase_command` does not know.
    #[error("invalid value for parameter \"{name}\": \"{value}\"\nDETAIL:  {detail}")]
    InvalidPlaceholder {
        /// The setting.
        name: String,
        /// The value given.
        value: String,
        /// PostgreSQL's detail.
        detail: String,
    },
    /// A boolean setting given something else.
    #[error("parameter \"{name}\" requires a Boolean value")]
    NotABoolean {
        /// The setting.
        name: String,
    },
    /// The certificate (chain) file could not be loaded.
    #[error("could not load server certificate file \"{}\": {reason}", path.display())]
    CertificateFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// The private key file could not be examined.
    #[error("could not access private key file \"{}\": {reason}", path.display())]
    KeyFileAccess {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// The private key file is not a regular file.
    #[error("private key file \"{}\" is not a regular file", path.display())]
    KeyFileNotRegular {
        /// The file.
        path: PathBuf,
    },
    /// The private key file belongs to someone else.
    #[error("private key file \"{}\" must be owned by the database user or root", path.display())]
    KeyFileOwner {
        /// The file.
        path: PathBuf,
    },
    /// The private key file is readable by others.
    #[error("private key file \"{}\" has group or world access\nDETAIL:  File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root.", path.display())]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
    },
    /// The private key could not be loaded (bad file, wrong passphrase…).
    #[error("could not load private key file \"{}\": {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// A protected key on reload, without `ssl_passphrase_command_supports_reload`.
    #[error("private key file \"{}\" cannot be reloaded because it requires a passphrase", path.display())]
    KeyNeedsPassphraseOnReload {
        /// The file.
        path: PathBuf,
    },
    /// The key does not belong to the certificate.
    #[error("check of private key failed: {reason}")]
    KeyMismatch {
        /// Why.
        reason: Reason,
    },
    /// The CA file could not be loaded.
    #[error("could not load root certificate file \"{}\": {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// The CRL file could not be loaded.
    #[error("could not load SSL certificate revocation list file \"{}\": {reason}", path.display())]
    CrlFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// The CRL directory could not be loaded.
    #[error("could not load SSL certificate revocation list directory \"{}\": {reason}", path.display())]
    CrlDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// `ssl_min_protocol_version` is above `ssl_max_protocol_version`.
    #[error(
        "could not set SSL protocol version range\nDETAIL:  \"ssl_min_protocol_version\" cannot be higher than \"ssl_max_protocol_version\""
    )]
    ProtocolRange,
    /// `ssl_ciphers` selects nothing.
    #[error("could not set the TLSv1.2 cipher list (no valid ciphers available)")]
    Ciphers,
    /// `ssl_tls13_ciphers` selects nothing.
    #[error("could not set the TLSv1.3 cipher suites (no valid ciphers available)")]
    Tls13Ciphers,
    /// `ssl_groups` names an unknown group.
    #[error("failed to set group names specified in ssl_groups: {reason}")]
    Groups {
        /// Why.
        reason: Reason,
    },
    /// The DH parameters file could not be loaded or is unusable.
    #[error("could not load DH parameters file \"{}\": {reason}", path.display())]
    DhParamsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: Reason,
    },
    /// `ssl_passphrase_command` could not be run or failed.
    #[error("command \"{command}\" failed: {reason}")]
    PassphraseCommand {
        /// The command, with `%p` substituted.
        command: String,
        /// Why.
        reason: Reason,
    },
    /// A `pg_hosts.conf` line is malformed.
    #[error("invalid line {line} in hosts file \"{}\": {reason}", path.display())]
    HostsFile {
        /// The file.
        path: PathBuf,
        /// The line number (1-based).
        line: usize,
        /// Why.
        reason: Reason,
    },
    /// A host entry's configuration failed; the cause (`source()`) names the file.
    #[error("SSL configuration for host \"{host}\"")]
    Host {
        /// The host name of the entry.
        host: String,
        /// What failed.
        #[source]
        error: Box<TlsError>,
    },
    /// OpenSSL refused an operation that has no setting of its own.
    #[error("{context}: {reason}")]
    OpenSsl {
        /// What pgssl was doing.
        context: &'static str,
        /// OpenSSL's reason.
        reason: Reason,
    },
    /// A reload failed; the context in force stays. PostgreSQL logs the cause (`source()`),
    /// then this line.
    #[error("SSL configuration was not reloaded")]
    NotReloaded {
        /// Why the new configuration could not be built.
        #[source]
        cause: Box<TlsError>,
    },
}

impl TlsError {
    /// The reason of a leaf error (the file's or OpenSSL's), if it has one; for a wrapping
    /// error, that of its innermost cause.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            TlsError::CertificateFile { reason, .. }
            | TlsError::KeyFileAccess { reason, .. }
            | TlsError::KeyFile { reason, .. }
            | TlsError::KeyMismatch { reason }
            | TlsError::CaFile { reason, .. }
            | TlsError::CrlFile { reason, .. }
            | TlsError::CrlDir { reason, .. }
            | TlsError::Groups { reason }
            | TlsError::DhParamsFile { reason, .. }
            | TlsError::PassphraseCommand { reason, .. }
            | TlsError::HostsFile { reason, .. }
            | TlsError::OpenSsl { reason, .. } => Some(reason),
            TlsError::Host { error, .. } => error.reason(),
            TlsError::NotReloaded { cause } => cause.reason(),
            _ => None,
        }
    }

    /// OpenSSL's error queue behind this error (or its innermost cause), if OpenSSL failed.
    pub fn openssl_error(&self) -> Option<&ErrorStack> {
        self.reason().and_then(Reason::openssl_error)
    }

    /// The message followed by each cause, joined by ": " (one line, for a log).
    pub fn report(&self) -> String {
        report(self)
    }
}

/// An error and its `source()` chain, joined by ": ".
pub(crate) fn report(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        out.push_str(": ");
        out.push_str(&c.to_string());
        next = c.source();
    }
    out
}

/// The text PostgreSQL's `%m` gives for an I/O error ("No such file or directory").
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    // std appends " (os error N)"; PostgreSQL prints strerror alone.
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The reason PostgreSQL prints for an OpenSSL failure: the reason string of the earliest error
/// in the queue, else "SSL error code N", else "no SSL error reported".
pub(crate) fn reason(stack: &openssl::error::ErrorStack) -> String {
    const ERR_SYSTEM_FLAG: std::os::raw::c_ulong = 0x8000_0000;
    match stack.errors().first() {
        // OpenSSL 3 files system errors (fopen failing) with the errno in the low bits.
        Some(e) if e.code() & ERR_SYSTEM_FLAG != 0 => {
            let errno = (e.code() & !ERR_SYSTEM_FLAG) as i32;
            io_reason(&std::io::Error::from_raw_os_error(errno))
        }
        Some(e) => match e.reason() {
            Some(r) => r.to_owned(),
            None => format!("SSL error code {}", e.code()),
        },
        None => "no SSL error reported".to_owned(),
    }
}
