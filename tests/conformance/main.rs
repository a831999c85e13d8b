//! The conformance suites against real peers, in one binary: libpq's negotiation matrix and the
//! certificate suites against real clients and PostgreSQL servers, the other peers (PgBouncer,
//! the Python drivers) and psql against the server negotiator. Each suite writes its results to
//! target/conformance/ (scripts/conformance.sh).

// `pub`: every binary uses a part of the shared tree, and what another binary uses is not dead
// code here (rustc treats public items as used).
#[path = "../support/mod.rs"]
pub mod support;

mod conformance_certs;
mod conformance_matrix;
mod conformance_peers;
mod psql_peer;
