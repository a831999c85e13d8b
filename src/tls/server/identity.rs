//! One server identity (a certificate, its key, its CA, and how to unlock the key), and the
//! SNI host entries that each hold one.

use std::path::PathBuf;

/// Whether a context is built at start or on a reload; PostgreSQL treats a protected key
/// differently on reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BuildMode {
    Start,
    Reload,
}

/// One server identity: the default one from the settings (`ssl_cert_file`, `ssl_key_file`,
/// `ssl_ca_file`, `ssl_passphrase_command`, `ssl_passphrase_command_supports_reload`), or one
/// line of the SNI hosts file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The certificate (chain) file: the certificate first, then intermediates.
    pub cert_file: PathBuf,
    /// The private key file.
    pub key_file: PathBuf,
    /// The CA file client certificates are verified against (None: none are requested).
    pub ca_file: Option<PathBuf>,
    /// The passphrase command (empty: none); `%p` is replaced by the prompt.
    pub passphrase_command: String,
    /// Whether that command may be run on reload.
    pub passphrase_command_supports_reload: bool,
}

impl Identity {
    /// A certificate and its key, with no CA and no passphrase command.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Identity {
        Identity {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            ca_file: None,
            passphrase_command: String::new(),
            passphrase_command_supports_reload: false,
        }
    }

    /// With this CA file.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Identity {
        self.ca_file = Some(path.into());
        self
    }

    /// With this passphrase command, and whether it may run on reload.
    pub fn passphrase_command(
        mut self,
        command: impl Into<String>,
        supports_reload: bool,
    ) -> Identity {
        self.passphrase_command = command.into();
        self.passphrase_command_supports_reload = supports_reload;
        self
    }
}

/// One line of the hosts file: a host name and its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostEntry {
    /// The host name (lower-cased), `*` (the default entry) or `/no_sni/` (the entry for
    /// clients that send no SNI).
    pub name: String,
    /// The host's certificate, key, CA and passphrase command.
    pub identity: Identity,
}

impl HostEntry {
    /// An entry for `name` (lower-cased; `*` and `/no_sni/` are the special entries).
    pub fn new(name: &str, identity: Identity) -> HostEntry {
        HostEntry {
            name: name.to_ascii_lowercase(),
            identity,
        }
    }
}
