//! The OpenSSL layer (feature `openssl`, on by default): server and client contexts built from
//! PostgreSQL's and libpq's settings, what a handshake established, and PostgreSQL's
//! client-certificate checks.
//!
//! * [`server`]: [`ServerTlsConfig`] holds PostgreSQL's SSL settings with their defaults,
//!   fillable by typed setters, by `(name, value)` pairs with the GUC names, or from a data
//!   directory; its [`build`](ServerTlsConfig::build) reads every file and returns a
//!   [`ServerTls`] or an error in PostgreSQL's words. [`ReloadableServerTls`] swaps contexts
//!   on reload, keeping the old one when the new one fails; [`check_client_certificate`]
//!   applies `clientcert` and the `cert` method.
//! * [`client`]: [`ClientTlsConfig`] holds libpq's parameters (from a conninfo string, a URI,
//!   the PG* environment) and [`ClientTls`] applies libpq's rules to each handshake.
//! * Shared by both: [`SessionInfo`] is the pg_stat_ssl row and more;
//!   [`tls_server_end_point`] is the channel-binding data of SCRAM-SHA-256-PLUS;
//!   [`TlsVersion`] names protocol versions; [`openssl_conf`] says which openssl.cnf is in
//!   force (pgssl never loosens its policy); [`TlsError`] and [`Reason`] are the errors.
//!
//! Every public name is also re-exported here, so `pgssl::tls::ServerTlsConfig` and
//! `pgssl::tls::server::ServerTlsConfig` are the same type.

pub mod client;
mod error;
mod ffi;
pub mod openssl_conf;
pub mod server;
mod session;
mod version;

pub use client::{
    CertRequest, ChannelBinding, ClientConfigError, ClientTls, ClientTlsConfig, ClientTlsError,
    ConninfoError, ENVIRONMENT, HostnameError, LIBPQ_KEYWORDS, PresentedName, ProtocolBound,
    RootCert, SslCertMode, cert_request, check_host, is_uri, parse_conninfo, parse_uri,
    verify_host,
};
pub use error::{Reason, TlsError};
pub(crate) use error::{io_reason, reason as openssl_reason};
pub use server::{
    AuthMethod, ClientCertMode, ClientCertRefusal, ClientName, DEFAULT_CIPHERS, DEFAULT_GROUPS,
    EffectiveSettings, HostEntry, Identity, PASSPHRASE_PROMPT, PassphraseCallback,
    ReloadableServerTls, SETTING_NAMES, ServerTls, ServerTlsConfig, check_client_certificate,
    parse_hosts,
};
pub use session::{
    METADATA_KEYS, PeerCertificate, SessionError, SessionInfo, peer_end_point, server_end_point,
    server_end_point_metadata, tls_server_end_point,
};
pub use version::TlsVersion;
