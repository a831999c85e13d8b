//! The OpenSSL layer's errors, in PostgreSQL's words.
//!
//! Every variant names the file or the setting and the reason. The OpenSSL reason is the one
//! PostgreSQL prints (`ERR_reason_error_string` of the earliest error in the queue).

use std::path::PathBuf;

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
        reason: String,
    },
    /// The private key file could not be examined.
    #[error("could not access private key file \"{}\": {reason}", path.display())]
    KeyFileAccess {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
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
        reason: String,
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
        reason: String,
    },
    /// The CA file could not be loaded.
    #[error("could not load root certificate file \"{}\": {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The CRL file could not be loaded.
    #[error("could not load SSL certificate revocation list file \"{}\": {reason}", path.display())]
    CrlFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The CRL directory could not be loaded.
    #[error("could not load SSL certificate revocation list directory \"{}\": {reason}", path.display())]
    CrlDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
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
        reason: String,
    },
    /// The DH parameters file could not be loaded or is unusable.
    #[error("could not load DH parameters file \"{}\": {reason}", path.display())]
    DhParamsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `ssl_passphrase_command` could not be run or failed.
    #[error("command \"{command}\" failed: {reason}")]
    PassphraseCommand {
        /// The command, with `%p` substituted.
        command: String,
        /// Why.
        reason: String,
    },
    /// A `pg_hosts.conf` line is malformed.
    #[error("invalid line {line} in hosts file \"{}\": {reason}", path.display())]
    HostsFile {
        /// The file.
        path: PathBuf,
        /// The line number (1-based).
        line: usize,
        /// Why.
        reason: String,
    },
    /// A host entry's configuration failed; the inner error names the file.
    #[error("SSL configuration for host \"{host}\": {error}")]
    Host {
        /// The host name of the entry.
        host: String,
        /// What failed.
        error: Box<TlsError>,
    },
    /// OpenSSL refused an operation that has no setting of its own.
    #[error("{context}: {reason}")]
    OpenSsl {
        /// What pgssl was doing.
        context: &'static str,
        /// OpenSSL's reason.
        reason: String,
    },
    /// A reload failed; the context in force stays.
    #[error("SSL configuration was not reloaded: {cause}")]
    NotReloaded {
        /// Why the new configuration could not be built.
        cause: Box<TlsError>,
    },
}

/// The reason PostgreSQL prints for an OpenSSL failure: the reason string of the earliest error
/// in the queue, else "SSL error code N", else "no SSL error reported".
pub(crate) fn reason(stack: &openssl::error::ErrorStack) -> String {
    const ERR_SYSTEM_FLAG: std::os::raw::c_ulong = 0x8000_0000;
    match stack.errors().first() {
        // OpenSSL 3 files system errors (fopen failing) with the errno in the low bits.
        Some(e) if e.code() & ERR_SYSTEM_FLAG != 0 => {
            let errno = (e.code() & !ERR_SYSTEM_FLAG) as i32;
            super::key_file::io_reason(&std::io::Error::from_raw_os_error(errno))
        }
        Some(e) => match e.reason() {
            Some(r) => r.to_owned(),
            None => format!("SSL error code {}", e.code()),
        },
        None => "no SSL error reported".to_owned(),
    }
}
