//! Adapters that drive the sans-IO core and the OpenSSL layer over real streams.

pub mod blocking;
