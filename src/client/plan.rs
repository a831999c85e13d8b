//! libpq's attempt plan: which encryption method a connect tries, in which order, and what is
//! left after a failure (fe-connect.c's `select_next_encryption_method`).

use super::{SslMode, SslNegotiation};

/// An encryption method libpq can try on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// No encryption.
    Plaintext,
    /// SSL, negotiated as `sslnegotiation` says.
    Ssl,
}

impl Method {
    fn bit(self) -> u8 {
        match self {
            Method::Plaintext => 1,
            Method::Ssl => 2,
        }
    }
}

/// How one connection begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptKind {
    /// Send the StartupMessage in plaintext at once.
    Plaintext,
    /// Send an SSLRequest and read the one-byte reply.
    SslRequest,
    /// Start the TLS handshake at once (PostgreSQL 17 direct SSL).
    DirectSsl,
}

/// The order of methods for one connect, and which have failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptPlan {
    mode: SslMode,
    negotiation: SslNegotiation,
    failed: u8,
    current: Option<Method>,
}

impl AttemptPlan {
    /// The plan for an already validated mode and negotiation; the first method is selected.
    pub fn new(mode: SslMode, negotiation: SslNegotiation) -> Self {
        let mut plan = AttemptPlan {
            mode,
            negotiation,
            failed: 0,
            current: None,
        };
        plan.current = plan.select();
        plan
    }

    /// Whether `method` is allowed at all under the mode.
    pub fn allows(&self, method: Method) -> bool {
        match method {
            Method::Plaintext => self.mode.allows_plaintext(),
            Method::Ssl => self.mode.allows_ssl(),
        }
    }

    /// The method being tried, or None once every allowed method has failed.
    pub fn current(&self) -> Option<Method> {
        self.current
    }

    /// How a connection for `method` begins.
    pub fn kind(&self, method: Method) -> AttemptKind {
        match (method, self.negotiation) {
            (Method::Plaintext, _) => AttemptKind::Plaintext,
            (Method::Ssl, SslNegotiation::Postgres) => AttemptKind::SslRequest,
            (Method::Ssl, SslNegotiation::Direct) => AttemptKind::DirectSsl,
        }
    }

    /// The current method failed; selects and returns the next one, if any.
    pub fn fail_current(&mut self) -> Option<Method> {
        if let Some(m) = self.current {
            self.failed |= m.bit();
        }
        self.current = self.select();
        self.current
    }

    /// Every method this plan would try, in order, if each failed.
    pub fn order(&self) -> impl Iterator<Item = Method> {
        let mut plan = AttemptPlan::new(self.mode, self.negotiation);
        let mut next = plan.current;
        std::iter::from_fn(move || {
            let m = next?;
            next = plan.fail_current();
            Some(m)
        })
    }

    /// With sslmode=allow plaintext comes first; otherwise SSL first, then plaintext if allowed.
    fn select(&self) -> Option<Method> {
        let remaining = |m: Method| self.allows(m) && self.failed & m.bit() == 0;
        let order = if self.mode == SslMode::Allow {
            [Method::Plaintext, Method::Ssl]
        } else {
            [Method::Ssl, Method::Plaintext]
        };
        order.into_iter().find(|&m| remaining(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_orders() {
        use Method::*;
        let cases: [(SslMode, &[Method]); 6] = [
            (SslMode::Disable, &[Plaintext]),
            (SslMode::Allow, &[Plaintext, Ssl]),
            (SslMode::Prefer, &[Ssl, Plaintext]),
            (SslMode::Require, &[Ssl]),
            (SslMode::VerifyCa, &[Ssl]),
            (SslMode::VerifyFull, &[Ssl]),
        ];
        for (mode, order) in cases {
            let plan = AttemptPlan::new(mode, SslNegotiation::Postgres);
            assert_eq!(plan.order().collect::<Vec<_>>(), order, "{mode}");
        }
    }

    #[test]
    fn kinds() {
        let p = AttemptPlan::new(SslMode::Require, SslNegotiation::Direct);
        assert_eq!(p.kind(Method::Ssl), AttemptKind::DirectSsl);
        let p = AttemptPlan::new(SslMode::Prefer, SslNegotiation::Postgres);
        assert_eq!(p.kind(Method::Ssl), AttemptKind::SslRequest);
        assert_eq!(p.kind(Method::Plaintext), AttemptKind::Plaintext);
    }
}
