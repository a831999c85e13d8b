//! The sans-IO core's integration tests, in one binary: the server's and the client's rules,
//! libpq's negotiation matrix in memory, property tests, the negotiator's log lines and the
//! PROXY protocol codec.
//!
//! `tests/allocations.rs` stays a binary of its own: the `allocation-counter` crate replaces the
//! global allocator of the whole binary, and its zero-allocation checks need no logger
//! installed, while `logging` here installs one for the whole process.

// `pub`: every binary uses a part of the shared tree, and what another binary uses is not dead
// code here (rustc treats public items as used).
#[path = "../support/mod.rs"]
pub mod support;

mod client_rules;
mod logging;
mod matrix;
mod properties;
mod proxied_negotiation;
mod proxy_protocol;
mod server_rules;
