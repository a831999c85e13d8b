//! The server side of the OpenSSL layer, PostgreSQL's way (be-secure-openssl.c,
//! be-secure-common.c, auth.c).
//!
//! * [`ServerTlsConfig`]: PostgreSQL's SSL settings (`ssl_cert_file` … `ssl_passphrase_command`)
//!   with their defaults; [`build`](ServerTlsConfig::build) reads every file in PostgreSQL's
//!   order and returns a [`ServerTls`], which hands out one [`openssl::ssl::Ssl`] per
//!   connection.
//! * [`Identity`] and [`HostEntry`]: a certificate, its key and CA, for the default identity
//!   and for each SNI host of a `pg_hosts.conf`-style file ([`parse_hosts`]).
//! * [`ReloadableServerTls`]: a context that can be rebuilt while connections are live.
//! * [`check_client_certificate`]: `clientcert=verify-ca|verify-full` and the `cert` method.
//!
//! Private keys are checked as PostgreSQL checks them (owner and mode) before they are read.

mod client_cert;
mod config;
mod context;
mod identity;
mod key_file;
mod reload;
mod sni;

pub use client_cert::{
    AuthMethod, ClientCertMode, ClientCertRefusal, ClientName, check_client_certificate,
};
pub use config::{
    DEFAULT_CIPHERS, DEFAULT_GROUPS, PassphraseCallback, SETTING_NAMES, ServerTlsConfig,
};
pub use context::{EffectiveSettings, ServerTls};
pub use identity::{HostEntry, Identity};
pub use key_file::PASSPHRASE_PROMPT;
pub(crate) use key_file::{Verdict, verdict};
pub use reload::ReloadableServerTls;
pub use sni::parse_hosts;
