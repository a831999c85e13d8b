//! The I/O adapters and the examples over real sockets, in one binary: the blocking adapter,
//! the tokio adapter (feature `tokio`), the example binaries run as black boxes, and both
//! adapters and the examples against a scripted hostile server.

// `pub`: every binary uses a part of the shared tree, and what another binary uses is not dead
// code here (rustc treats public items as used).
#[path = "../support/mod.rs"]
pub mod support;

mod blocking_adapter;
mod doc_outputs;
mod examples;
mod hand_over;
mod haproxy;
mod hostile_server;
#[cfg(feature = "tokio")]
mod pgwire_server;
mod tokio_adapter;
// Not `tokio_postgres`: that is the crate's name.
#[cfg(feature = "tokio-postgres")]
#[path = "tokio_postgres.rs"]
mod tokio_postgres_connector;
