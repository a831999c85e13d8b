//! PostgreSQL's client-certificate checks (`clientcert=verify-ca|verify-full` and the `cert`
//! method, auth.c), so a host implements them in one call.

use crate::tls::session::SessionInfo;
use crate::wire::{ErrorResponse, sqlstate};

/// `clientcert` of a pg_hba.conf line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCertMode {
    /// No client certificate needed (the default, except for the `cert` method).
    Off,
    /// A certificate that verifies against the CA store.
    VerifyCa,
    /// Also its CN (or DN) must be the user name.
    VerifyFull,
}

/// `clientname`: which part of the certificate names the user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientName {
    /// The subject's CN (the default).
    #[default]
    Cn,
    /// The subject DN in RFC 2253 form.
    Dn,
}

/// The authentication method of the pg_hba.conf line, for the FATAL that names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `trust`.
    Trust,
    /// `reject`.
    Reject,
    /// `password`, `md5` or `scram-sha-256`.
    Password,
    /// `cert`: implies `clientcert=verify-full`.
    Cert,
}

impl AuthMethod {
    fn failed_message(self, user: &str) -> (&'static str, String) {
        match self {
            AuthMethod::Trust => (
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                format!("\"trust\" authentication failed for user \"{user}\""),
            ),
            AuthMethod::Reject => (
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                format!("authentication failed for user \"{user}\": host rejected"),
            ),
            AuthMethod::Password => (
                sqlstate::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            ),
            AuthMethod::Cert => (
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                format!("certificate authentication failed for user \"{user}\""),
            ),
        }
    }
}

/// A refused client certificate: the FATAL to send and the line PostgreSQL logs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientCertRefusal {
    /// What the client is sent.
    pub response: Box<ErrorResponse>,
    /// What the server logs (more precise than the response, as in PostgreSQL).
    pub log: String,
}

impl std::fmt::Display for ClientCertRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.response.message)
    }
}

impl std::error::Error for ClientCertRefusal {}

/// Applies `clientcert` (and the `cert` method's own check) to an established session.
///
/// Whether a CA store is available is the session's
/// [`ca_loaded`](SessionInfo::ca_loaded): that of the identity SNI chose, or the default one.
/// Returns the identity the certificate authenticated (the DN for `cert`, as PostgreSQL's
/// `authn_id`), or the refusal.
pub fn check_client_certificate(
    session: &SessionInfo,
    user: &str,
    method: AuthMethod,
    mode: ClientCertMode,
    name: ClientName,
) -> Result<Option<String>, ClientCertRefusal> {
    let mode = if method == AuthMethod::Cert {
        ClientCertMode::VerifyFull
    } else {
        mode
    };
    if mode == ClientCertMode::Off {
        return Ok(None);
    }
    if !session.ca_loaded {
        let m = "client certificates can only be checked if a root certificate store is available";
        return Err(ClientCertRefusal {
            response: Box::new(ErrorResponse::fatal("F0000", m)),
            log: m.to_owned(),
        });
    }
    let Some(peer) = session.peer.as_ref().filter(|p| p.verified) else {
        let m = "connection requires a valid client certificate";
        return Err(ClientCertRefusal {
            response: Box::new(ErrorResponse::fatal(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                m,
            )),
            log: m.to_owned(),
        });
    };
    if mode == ClientCertMode::VerifyCa {
        return Ok(None);
    }
    let presented = match name {
        ClientName::Cn => peer.cn.as_deref().unwrap_or(""),
        ClientName::Dn => peer.dn.as_str(),
    };
    let (code, message) = method.failed_message(user);
    let refuse = |log: String| ClientCertRefusal {
        response: Box::new(ErrorResponse::fatal(code, message.clone())),
        log,
    };
    if presented.is_empty() {
        return Err(refuse(format!(
            "certificate authentication failed for user \"{user}\": client certificate contains no user name"
        )));
    }
    if presented != user {
        let field = match name {
            ClientName::Cn => "CN",
            ClientName::Dn => "DN",
        };
        let log = if method == AuthMethod::Cert {
            format!(
                "provided user name ({user}) and authenticated user name ({presented}) do not match"
            )
        } else {
            format!(
                "certificate validation (clientcert=verify-full) failed for user \"{user}\": {field} mismatch"
            )
        };
        return Err(refuse(log));
    }
    Ok((method == AuthMethod::Cert).then(|| peer.dn.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TlsVersion;
    use crate::tls::session::PeerCertificate;

    fn bare(ca_loaded: bool) -> SessionInfo {
        SessionInfo::new(TlsVersion::Tls1_3, "TLS_AES_256_GCM_SHA384", 256)
            .with_ca_loaded(ca_loaded)
    }

    fn session(cn: &str, dn: &str) -> SessionInfo {
        bare(true).with_peer(PeerCertificate {
            cn: Some(cn.to_owned()),
            cn_has_nul: false,
            dn: dn.to_owned(),
            subject: format!("/CN={cn}"),
            serial: "1".to_owned(),
            issuer: "/CN=ca".to_owned(),
            verified: true,
        })
    }

    #[test]
    fn verify_ca_needs_a_certificate_and_a_store() {
        let none = bare(true);
        let e = check_client_certificate(
            &none,
            "u",
            AuthMethod::Trust,
            ClientCertMode::VerifyCa,
            ClientName::Cn,
        )
        .unwrap_err();
        assert_eq!(
            e.response.message,
            "connection requires a valid client certificate"
        );
        assert_eq!(e.response.code, "28000");
        let e = check_client_certificate(
            &bare(false),
            "u",
            AuthMethod::Trust,
            ClientCertMode::VerifyCa,
            ClientName::Cn,
        )
        .unwrap_err();
        assert_eq!(
            e.response.message,
            "client certificates can only be checked if a root certificate store is available"
        );
        let s = session("anyone", "CN=anyone");
        assert_eq!(
            check_client_certificate(
                &s,
                "u",
                AuthMethod::Trust,
                ClientCertMode::VerifyCa,
                ClientName::Cn
            ),
            Ok(None)
        );
    }

    #[test]
    fn verify_full_and_cert_compare_the_name() {
        let s = session(
            "ssltestuser",
            "CN=ssltestuser-dn,OU=Testing,OU=Engineering,O=PGDG",
        );
        assert!(
            check_client_certificate(
                &s,
                "ssltestuser",
                AuthMethod::Trust,
                ClientCertMode::VerifyFull,
                ClientName::Cn
            )
            .is_ok()
        );
        let e = check_client_certificate(
            &s,
            "other",
            AuthMethod::Trust,
            ClientCertMode::VerifyFull,
            ClientName::Cn,
        )
        .unwrap_err();
        assert_eq!(
            e.response.message,
            "\"trust\" authentication failed for user \"other\""
        );
        assert_eq!(
            e.log,
            "certificate validation (clientcert=verify-full) failed for user \"other\": CN mismatch"
        );
        let e = check_client_certificate(
            &s,
            "other",
            AuthMethod::Cert,
            ClientCertMode::Off,
            ClientName::Cn,
        )
        .unwrap_err();
        assert_eq!(
            e.response.message,
            "certificate authentication failed for user \"other\""
        );
        let dn = "CN=ssltestuser-dn,OU=Testing,OU=Engineering,O=PGDG";
        assert_eq!(
            check_client_certificate(
                &s,
                dn,
                AuthMethod::Cert,
                ClientCertMode::Off,
                ClientName::Dn
            ),
            Ok(Some(dn.to_owned()))
        );
    }
}
