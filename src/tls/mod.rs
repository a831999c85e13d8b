//! The OpenSSL layer (feature `openssl`, on by default): server contexts built from
//! PostgreSQL's settings, what a handshake established, and PostgreSQL's client-certificate
//! checks.
//!
//! * [`ServerTlsConfig`] holds PostgreSQL's SSL settings with their defaults, fillable by typed
//!   setters, by `(name, value)` pairs with the GUC names, or from a data directory; its
//!   [`build`](ServerTlsConfig::build) reads every file and returns a [`ServerTls`] or an
//!   error in PostgreSQL's words.
//! * [`ReloadableServerTls`] swaps contexts on reload, keeping the old one when the new one
//!   fails.
//! * [`SessionInfo`] is the pg_stat_ssl row and more; [`tls_server_end_point`] is the
//!   channel-binding data of SCRAM-SHA-256-PLUS.
//! * [`check_client_certificate`] applies `clientcert` and the `cert` method.
//! * [`openssl_conf`] says which openssl.cnf is in force; pgssl never loosens its policy.

mod client;
mod client_cert;
mod client_config;
mod conninfo;
mod error;
mod ffi;
mod hostname;
mod key_file;
pub mod openssl_conf;
mod reload;
mod server;
mod server_config;
mod session;
mod sni;
mod version;

pub use client::{ClientTls, ClientTlsError, cert_request, check_host};
pub use client_cert::{
    AuthMethod, ClientCertMode, ClientCertRefusal, ClientName, check_client_certificate,
};
pub use client_config::{
    ChannelBinding, ClientConfigError, ClientTlsConfig, ENVIRONMENT, LIBPQ_KEYWORDS, SslCertMode,
};
pub use conninfo::{ConninfoError, is_uri, parse_conninfo, parse_uri};
pub use error::TlsError;
pub(crate) use error::reason as openssl_reason;
pub use hostname::{HostnameError, PresentedName, host_ip, inet_aton, verify_host};
pub use key_file::PASSPHRASE_PROMPT;
pub(crate) use key_file::io_reason;
pub use reload::ReloadableServerTls;
pub use server::{EffectiveSettings, ServerTls};
pub use server_config::{
    DEFAULT_CIPHERS, DEFAULT_GROUPS, PassphraseCallback, SETTING_NAMES, ServerTlsConfig,
};
pub use session::{
    PeerCertificate, SessionError, SessionInfo, peer_end_point, server_end_point,
    tls_server_end_point,
};
pub use sni::{HostEntry, parse_hosts};
pub use version::TlsVersion;
