//! Adapters that drive the sans-IO core and the OpenSSL layer over real streams.
//!
//! One shared driver makes every decision — the negotiator's replies, what a read may take
//! (exact packets, plus what has already arrived behind them so stuffed bytes are seen), what
//! is replayed into TLS, the TLS contexts, libpq's attempt plan, `connect_timeout` as one
//! deadline, the checks of the server's first message — and two adapters run it:
//!
//! * [`blocking`]: `std::io` streams ([`blocking::accept`], [`blocking::connect`]);
//! * `tokio` (feature `tokio`): tokio streams, through tokio-openssl.
//!
//! Both return the same types, generic over the stream: [`PgStream`], [`Accepted`],
//! [`Connected`], and fail with the same [`ConnectError`].

mod accept;
pub mod blocking;
mod connect;
mod error;
mod replay;
mod stream;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use accept::Accepted;
pub use connect::{Connected, FirstMessage, Negotiated};
pub use error::{AuthFailure, CONNECT_TIMEOUT_MESSAGE, ConnectError, TIMEOUT_MESSAGE};
pub use stream::{PgStream, TlsLayer};
