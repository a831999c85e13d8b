//! The client side of the OpenSSL layer, libpq's way (fe-secure-openssl.c,
//! fe-secure-common.c, fe-connect.c).
//!
//! * [`ClientTlsConfig`]: libpq's connection parameters that matter for SSL (`sslmode`,
//!   `sslrootcert` incl. `system`, `sslcert`, `sslkey`, …), with libpq's defaults under
//!   `~/.postgresql/`, fillable from a conninfo string or URI ([`parse_conninfo`],
//!   [`parse_uri`]) and the PG* environment.
//! * [`ClientTls`]: the context built from those files, and libpq's rules for each handshake:
//!   when the chain is verified, SNI, ALPN, `sslcertmode` ([`cert_request`]) and the
//!   verify-full host name check ([`check_host`], [`verify_host`]).

mod config;
mod conninfo;
mod context;
mod hostname;

pub use config::{
    ChannelBinding, ClientConfigError, ClientTlsConfig, ENVIRONMENT, LIBPQ_KEYWORDS, RootCert,
    SslCertMode,
};
pub use conninfo::{ConninfoError, is_uri, parse_conninfo, parse_uri};
pub use context::{
    CertRequest, ClientTls, ClientTlsError, ProtocolBound, cert_request, check_host,
};
pub use hostname::{HostnameError, PresentedName, verify_host};
