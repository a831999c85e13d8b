//! OpenSSL's configuration file (openssl.cnf), as PostgreSQL lets OpenSSL load it.
//!
//! OpenSSL reads its configuration when libssl is initialised: the file named by the
//! `OPENSSL_CONF` environment variable, else `openssl.cnf` in OpenSSL's directory (`openssl
//! version -d`). Its `system_default` section applies to every new context. pgssl initialises
//! OpenSSL before it makes any context, so the file is always in force, and then only ever
//! tightens what the file set: see [`crate::tls::EffectiveSettings`].

use std::path::PathBuf;

/// Which configuration file OpenSSL reads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigFile {
    /// The file's path (it may not exist, in which case OpenSSL's built-in defaults apply).
    pub path: PathBuf,
    /// Whether it was named by `OPENSSL_CONF`.
    pub from_env: bool,
    /// Whether the file exists.
    pub exists: bool,
}

/// Initialises OpenSSL so that its configuration file is loaded. Idempotent; every context
/// pgssl builds calls it first.
pub(crate) fn init() {
    openssl::init();
}

/// The configuration file OpenSSL reads in this process.
pub fn config_file() -> ConfigFile {
    let (path, from_env) = match std::env::var_os("OPENSSL_CONF") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (openssl_dir().join("openssl.cnf"), false),
    };
    let exists = path.is_file();
    ConfigFile {
        path,
        from_env,
        exists,
    }
}

/// OpenSSL's directory, from `OpenSSL_version(OPENSSL_DIR)` (`OPENSSLDIR: "/usr/lib/ssl"`).
fn openssl_dir() -> PathBuf {
    let s = openssl::version::dir();
    let inner = s
        .split_once('"')
        .and_then(|(_, rest)| rest.rsplit_once('"').map(|(d, _)| d))
        .unwrap_or(s);
    PathBuf::from(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_parsed_from_the_version_string() {
        let d = openssl_dir();
        assert!(d.is_absolute(), "{d:?}");
        assert!(!d.to_string_lossy().contains('"'));
    }
}
