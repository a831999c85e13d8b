//! Adapters that drive the sans-IO core and the OpenSSL layer over real streams.

pub mod blocking;
mod common;
#[cfg(all(feature = "tokio", feature = "openssl"))]
pub mod tokio;
