//! The OpenSSL layer's integration tests, in one binary: the server side (settings, key files,
//! ALPN, direct SSL, reloads), SNI, and the client against libpq's rules and a real PostgreSQL.

// `pub`: every binary uses a part of the shared tree, and what another binary uses is not dead
// code here (rustc treats public items as used).
#[path = "../support/mod.rs"]
pub mod support;

mod client_tls;
mod server_tls;
mod sni;
