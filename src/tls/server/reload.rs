//! A server context that can be rebuilt while connections are live.

use std::sync::{Arc, RwLock};

use super::config::ServerTlsConfig;
use super::context::ServerTls;
use super::identity::BuildMode;
use crate::tls::error::TlsError;

/// A shared, swappable [`ServerTls`]. Each connection takes the context in force when it starts
/// ([`ReloadableServerTls::current`]) and keeps it; a reload affects only later connections. A
/// reload that fails keeps the old context and says why, as PostgreSQL's SIGHUP does.
#[derive(Debug)]
pub struct ReloadableServerTls {
    current: RwLock<Arc<ServerTls>>,
}

impl ReloadableServerTls {
    /// Builds the first context, with start semantics (a protected key's passphrase command
    /// runs even without `ssl_passphrase_command_supports_reload`).
    pub fn new(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        Ok(ReloadableServerTls {
            current: RwLock::new(Arc::new(config.build_mode(BuildMode::Start)?)),
        })
    }

    /// Wraps an already built context.
    pub fn from_built(tls: ServerTls) -> Self {
        ReloadableServerTls {
            current: RwLock::new(Arc::new(tls)),
        }
    }

    /// The context in force.
    pub fn current(&self) -> Arc<ServerTls> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds from `config` with reload semantics and swaps it in if the build succeeded
    /// completely; otherwise keeps the old context and returns
    /// [`TlsError::NotReloaded`] ("SSL configuration was not reloaded", the cause as its
    /// `source()`). Either way it logs as PostgreSQL's SIGHUP does: "SSL configuration
    /// reloaded" at info, or the cause and then "SSL configuration was not reloaded" at warn.
    pub fn reload(&self, config: &ServerTlsConfig) -> Result<(), TlsError> {
        match config.build_mode(BuildMode::Reload) {
            Ok(tls) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tls);
                log::info!("SSL configuration reloaded");
                Ok(())
            }
            Err(cause) => {
                log::warn!("{}", cause.report());
                let e = TlsError::NotReloaded {
                    cause: Box::new(cause),
                };
                log::warn!("{e}");
                Err(e)
            }
        }
    }
}
