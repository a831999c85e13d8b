//! PostgreSQL's SSL/TLS negotiation, on both sides of a connection, with PostgreSQL's own
//! semantics.
//!
//! pgssl is layered. At the bottom is a **sans-IO core** — [`wire`], [`server`], [`client`] —
//! that reads the first bytes of a connection and decides, exactly as PostgreSQL and libpq
//! decide, what happens next: reply `S` or `N` to an SSLRequest, decline GSS encryption, start
//! TLS at the first byte for PostgreSQL 17 direct SSL, accept a StartupMessage or a
//! CancelRequest, or refuse with PostgreSQL's ErrorResponse. It has no sockets, no clock and no
//! TLS library inside; it builds with `--no-default-features`.
//!
//! # Layers
//!
//! | layer | modules | what it is |
//! |---|---|---|
//! | sans-IO core | [`wire`], [`server`], [`client`], [`error`] | bytes in, decisions out; builds without OpenSSL |
//! | OpenSSL layer (feature `openssl`) | `tls::server`, `tls::client`, `tls` | contexts from PostgreSQL's and libpq's settings, session facts, reload |
//! | I/O adapters | `io` (one shared driver), `io::blocking`, `io::tokio` (feature `tokio`) | the core and the TLS layer over real streams |
//!
//! Each layer uses only the ones below it. The crates whose types appear in the signatures are
//! re-exported (`pgssl::openssl`, and `pgssl::tokio_openssl` with the `tokio` feature), so no
//! version-matched dependency of your own is needed.
//!
//! # The call order
//!
//! Both negotiators follow one contract, in the manner of quinn-proto and str0m:
//!
//! * inputs are `handle_*` methods (`handle_input`, `handle_eof`, `handle_tls_established`,
//!   `handle_tls_failed`, and on the client `handle_server_error`);
//! * the output is `poll_output`, which returns one instruction at a time;
//! * **after every `handle_*` call, drain `poll_output` until it asks for input**
//!   (`NeedInput`), asks for a TLS handshake (`StartTls`), or returns an outcome.
//!
//! `handle_input` returns how many bytes it consumed. `NeedInput { max }` tells the host how
//! many bytes it may read without reading past the current packet; a host that reads more is
//! still handled correctly (bytes after a StartupMessage are left unconsumed for the host;
//! bytes after an SSLRequest refuse the connection, as they must).
//!
//! # A server, driven over a blocking socket
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use pgssl::server::{ServerNegotiator, ServerOutcome, ServerOutput, ServerPolicy};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = std::net::TcpListener::bind("127.0.0.1:5433")?;
//! let (mut sock, _) = listener.accept()?;
//! let mut neg = ServerNegotiator::new(ServerPolicy::new()); // ssl = off
//! let mut buf = [0u8; 8192];
//! loop {
//!     match neg.poll_output() {
//!         ServerOutput::Transmit(reply) => sock.write_all(reply.as_bytes())?,
//!         ServerOutput::NeedInput { max } => {
//!             let n = sock.read(&mut buf[..max])?;
//!             if n == 0 {
//!                 neg.handle_eof();
//!             } else {
//!                 let used = neg.handle_input(&buf[..n]);
//!                 // Bytes not consumed follow a StartupMessage: the protocol's first messages.
//!                 let _pipelined = &buf[used..n];
//!             }
//!         }
//!         ServerOutput::StartTls(_) => break, // never with ssl = off
//!         ServerOutput::Done(ServerOutcome::Startup(startup)) => {
//!             println!("user {} wants database {}", startup.user_lossy(), startup.database_lossy());
//!             break; // authenticate, then serve
//!         }
//!         ServerOutput::Done(ServerOutcome::Refuse(refusal)) => {
//!             if let Some(bytes) = refusal.response_bytes() { sock.write_all(&bytes)?; }
//!             break;
//!         }
//!         ServerOutput::Done(ServerOutcome::Cancel(cancel)) => {
//!             println!("cancel request for backend {}", cancel.pid());
//!             break;
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//!
//! The core exists for its security rules: bytes received after an SSLRequest and before TLS
//! are refused (CVE-2021-23214), as are bytes received with or after the `S` reply on the
//! client side (CVE-2021-23222); a second SSLRequest, or any request once TLS is up, is a
//! protocol violation; an `E` reply to an SSLRequest is never read (CVE-2024-10977); and no
//! input, however hostile or however split, makes it panic or hold more than one bounded
//! packet (10004 bytes).

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod channel;
pub mod client;
pub mod error;
#[cfg(feature = "openssl")]
pub mod io;
pub mod server;
#[cfg(feature = "openssl")]
pub mod tls;
#[cfg(feature = "tokio-postgres")]
pub mod tokio_postgres;
pub mod wire;

#[cfg(feature = "openssl")]
pub use openssl;
#[cfg(feature = "tokio")]
pub use tokio_openssl;

pub use channel::{Channel, HandshakeInfo, StartTls};
pub use client::{ClientNegotiator, ClientOutcome, ClientOutput, SslMode, SslNegotiation};
pub use error::{ClientError, DecodeError, ServerError, SettingsError};
pub use server::{ServerNegotiator, ServerOutcome, ServerOutput, ServerPolicy};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
