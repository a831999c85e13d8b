//! What a handshake established: the pg_stat_ssl row, ALPN, SNI, the peer's names, and the
//! tls-server-end-point channel-binding data.

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ssl::{NameType, SslRef, SslVerifyMode};
use openssl::x509::{X509NameRef, X509Ref, X509VerifyResult};

use super::error::{Reason, TlsError};
use super::ffi;
use super::version::TlsVersion;
use crate::server::Startup;
use crate::wire::ErrorResponse;

/// Why a session's facts could not be read, or why PostgreSQL refuses a client's names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The client certificate's CN has a NUL byte (CVE-2009-4034); PostgreSQL closes the
    /// connection. See [`SessionInfo::check_client_names`].
    #[error("SSL certificate's common name contains embedded null")]
    CommonNameNul,
    /// No handshake has completed: OpenSSL reports no protocol version.
    #[error("no SSL session established")]
    NotEstablished,
    /// No certificate to hash.
    #[error("no certificate for channel binding")]
    NoCertificate,
    /// The certificate's signature has no digest (Ed25519, RSA-PSS): tls-server-end-point is
    /// undefined, and SCRAM-SHA-256-PLUS must not be offered.
    #[error("could not find digest for NID {nid}")]
    NoDigest {
        /// The short name of the signature algorithm.
        nid: String,
    },
    /// OpenSSL failed.
    #[error("{0}")]
    OpenSsl(Reason),
}

/// One TLS session as PostgreSQL reports it: the pg_stat_ssl row, ALPN, SNI, and (server side)
/// whether the identity in force could check a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The protocol version; its `Display` is what pg_stat_ssl shows (`TLSv1.3`).
    pub version: TlsVersion,
    /// The cipher's OpenSSL name (`TLS_AES_256_GCM_SHA384`).
    pub cipher: String,
    /// The cipher's secret bits.
    pub bits: i32,
    /// The ALPN protocol negotiated, as sent (see [`SessionInfo::alpn_str`]).
    pub alpn: Option<Vec<u8>>,
    /// The SNI host name the client sent.
    pub sni: Option<String>,
    /// The peer certificate, if one was presented (see [`PeerCertificate::verified`]).
    pub peer: Option<PeerCertificate>,
    /// Server side: whether the identity in force for this connection (the default one, or
    /// the SNI host's) has a CA store, i.e. whether a client certificate was requested and can
    /// be verified. [`crate::tls::check_client_certificate`] reads it. Always false on the
    /// client side.
    pub ca_loaded: bool,
}

/// The peer's certificate, as PostgreSQL reads it.
///
/// Reading never fails on what the names contain: a NUL byte in the CN is kept (as U+0000) and
/// flagged ([`cn_has_nul`](Self::cn_has_nul)); the DN is RFC 2253 text, where a NUL is `\00`.
/// libpq connects to such a server under `sslmode=require` and `verify-ca` (only verify-full
/// checks names, and refuses them there); PostgreSQL refuses such a client, which
/// [`SessionInfo::check_client_names`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCertificate {
    /// The first CN of the subject (None if there is none), invalid UTF-8 replaced.
    pub cn: Option<String>,
    /// Whether that CN contains a NUL byte.
    pub cn_has_nul: bool,
    /// The subject in RFC 2253 form (`CN=ssltestuser-dn,OU=Testing,OU=Engineering,O=PGDG`),
    /// what `clientname=DN` compares.
    pub dn: String,
    /// pg_stat_ssl's `client_dn` (`/CN=ssltestuser`).
    pub subject: String,
    /// pg_stat_ssl's `client_serial`, in decimal.
    pub serial: String,
    /// pg_stat_ssl's `issuer_dn` (`/CN=Test CA…`).
    pub issuer: String,
    /// Whether the chain verified (always true when a CA store requested it and the
    /// handshake completed).
    pub verified: bool,
}

fn ossl(e: openssl::error::ErrorStack) -> SessionError {
    SessionError::OpenSsl(Reason::OpenSsl(e))
}

impl SessionInfo {
    /// A session with these facts and nothing else (no ALPN, no SNI, no peer certificate, no
    /// CA store); for tests and for hosts that get their facts elsewhere.
    pub fn new(version: TlsVersion, cipher: impl Into<String>, bits: i32) -> SessionInfo {
        SessionInfo {
            version,
            cipher: cipher.into(),
            bits,
            alpn: None,
            sni: None,
            peer: None,
            ca_loaded: false,
        }
    }

    /// With this peer certificate.
    pub fn with_peer(mut self, peer: PeerCertificate) -> SessionInfo {
        self.peer = Some(peer);
        self
    }

    /// With `ca_loaded` set (server side: the identity in force has a CA store).
    pub fn with_ca_loaded(mut self, ca_loaded: bool) -> SessionInfo {
        self.ca_loaded = ca_loaded;
        self
    }

    /// Reads the facts of an established session, on either side. It never fails because of
    /// what the peer's names contain (see [`PeerCertificate`]); a server must then call
    /// [`check_client_names`](Self::check_client_names), as PostgreSQL refuses a client
    /// certificate whose CN or DN has an embedded NUL. On the server side,
    /// [`ca_loaded`](Self::ca_loaded) is whether the identity SNI chose (or the default one)
    /// requested client certificates.
    ///
    /// Fails only if no handshake completed ([`SessionError::NotEstablished`]) or OpenSSL
    /// cannot print a name or a serial.
    pub fn from_ssl(ssl: &SslRef) -> Result<SessionInfo, SessionError> {
        let version = ssl
            .version2()
            .and_then(TlsVersion::from_openssl)
            .ok_or(SessionError::NotEstablished)?;
        let (cipher, bits) = match ssl.current_cipher() {
            Some(c) => (c.name().to_owned(), c.bits().secret),
            None => (String::new(), 0),
        };
        let peer = match ssl.peer_certificate() {
            Some(cert) => Some(PeerCertificate::read(
                &cert,
                ssl.verify_result() == X509VerifyResult::OK,
            )?),
            None => None,
        };
        Ok(SessionInfo {
            version,
            cipher,
            bits,
            alpn: ssl.selected_alpn_protocol().map(<[u8]>::to_vec),
            sni: ssl.servername(NameType::HOST_NAME).map(str::to_owned),
            peer,
            // The server context (and the SNI callback, per host) asks for a peer certificate
            // exactly when the identity has a CA file.
            ca_loaded: ssl.is_server() && ssl.verify_mode().contains(SslVerifyMode::PEER),
        })
    }

    /// The ALPN protocol as text (`postgresql`), if one was negotiated and it is UTF-8.
    pub fn alpn_str(&self) -> Option<&str> {
        self.alpn
            .as_deref()
            .and_then(|a| std::str::from_utf8(a).ok())
    }

    /// PostgreSQL's check of a client certificate's names once the handshake is done
    /// (be-secure-openssl.c): a CN with an embedded NUL closes the connection, with "SSL
    /// certificate's common name contains embedded null" in the log. (PostgreSQL checks the
    /// DN the same way, but its RFC 2253 form escapes a NUL as `\00`, as pgssl's does, so that
    /// check can never fire and pgssl has none.) Server side only: a client (libpq) checks
    /// names only under verify-full, with [`crate::tls::ClientTls::check_established`].
    pub fn check_client_names(&self) -> Result<(), SessionError> {
        match &self.peer {
            Some(p) if p.cn_has_nul => Err(SessionError::CommonNameNul),
            _ => Ok(()),
        }
    }
}

/// The keys of [`SessionInfo::metadata`] (and of [`server_end_point_metadata`]), for a
/// wire-protocol library's per-connection string map (pgwire's `ClientInfo::metadata_mut`).
/// Stable: named after pg_stat_ssl's columns, each with an `ssl_` prefix.
pub const METADATA_KEYS: [&str; 11] = [
    "ssl_version",
    "ssl_cipher",
    "ssl_bits",
    "ssl_alpn",
    "ssl_sni",
    "ssl_client_cn",
    "ssl_client_dn",
    "ssl_client_dn_rfc2253",
    "ssl_client_serial",
    "ssl_issuer_dn",
    "ssl_server_end_point",
];

impl SessionInfo {
    /// The session's facts as `(key, value)` text pairs, for a wire-protocol library's
    /// per-connection metadata (pgwire keeps a `HashMap<String, String>`; it has no TLS facts
    /// of its own when pgssl runs TLS). Only the facts there are, in this order:
    ///
    /// | key | value |
    /// |---|---|
    /// | `ssl_version` | pg_stat_ssl's `version` (`TLSv1.3`) |
    /// | `ssl_cipher` | pg_stat_ssl's `cipher` (`TLS_AES_256_GCM_SHA384`) |
    /// | `ssl_bits` | pg_stat_ssl's `bits` (`256`) |
    /// | `ssl_alpn` | the ALPN protocol (`postgresql`), if one was negotiated |
    /// | `ssl_sni` | the SNI host name, if the client sent one |
    /// | `ssl_client_cn` | the client certificate's CN (what `clientname=CN` compares) |
    /// | `ssl_client_dn` | pg_stat_ssl's `client_dn` (`/CN=ssltestuser`) |
    /// | `ssl_client_dn_rfc2253` | the DN in RFC 2253 form (what `clientname=DN` compares) |
    /// | `ssl_client_serial` | pg_stat_ssl's `client_serial`, in decimal |
    /// | `ssl_issuer_dn` | pg_stat_ssl's `issuer_dn` |
    ///
    /// The `ssl_client_*` and `ssl_issuer_dn` keys are there when the client presented a
    /// certificate; as with PostgreSQL, a certificate is only accepted once its chain has
    /// verified, so their presence means a verified certificate on a server whose identity
    /// has a CA store ([`ca_loaded`](Self::ca_loaded)). The channel-binding data needs the
    /// session itself: [`server_end_point_metadata`].
    ///
    /// A client can send a StartupMessage parameter with any name, and a library that copies
    /// the StartupMessage's parameters into the same map (pgwire does) lets it overwrite
    /// these: refuse such a StartupMessage first, with
    /// [`check_startup_parameters`](Self::check_startup_parameters).
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        let mut m = vec![
            ("ssl_version", self.version.to_string()),
            ("ssl_cipher", self.cipher.clone()),
            ("ssl_bits", self.bits.to_string()),
        ];
        if let Some(alpn) = &self.alpn {
            m.push(("ssl_alpn", String::from_utf8_lossy(alpn).into_owned()));
        }
        if let Some(sni) = &self.sni {
            m.push(("ssl_sni", sni.clone()));
        }
        if let Some(p) = &self.peer {
            if let Some(cn) = &p.cn {
                m.push(("ssl_client_cn", cn.clone()));
            }
            m.push(("ssl_client_dn", p.subject.clone()));
            m.push(("ssl_client_dn_rfc2253", p.dn.clone()));
            m.push(("ssl_client_serial", p.serial.clone()));
            m.push(("ssl_issuer_dn", p.issuer.clone()));
        }
        m
    }

    /// Refuses a StartupMessage that sets a parameter named like one of [`METADATA_KEYS`], as
    /// PostgreSQL refuses a parameter it does not know: FATAL 42704 `unrecognized
    /// configuration parameter "ssl_version"`. Call it on every connection, TLS or not, before
    /// handing it to a library that copies the StartupMessage's parameters into the map that
    /// holds [`metadata`](Self::metadata): otherwise a plaintext client could claim a TLS
    /// session, or a TLS client a certificate it does not have.
    pub fn check_startup_parameters(startup: &Startup) -> Result<(), ErrorResponse> {
        let message = startup.message();
        match message
            .parameters()
            .find(|p| METADATA_KEYS.iter().any(|k| k.as_bytes() == p.name))
        {
            Some(p) => Err(ErrorResponse::fatal(
                "42704",
                format!(
                    "unrecognized configuration parameter \"{}\"",
                    String::from_utf8_lossy(p.name)
                ),
            )),
            None => Ok(()),
        }
    }
}

/// The session's tls-server-end-point channel-binding data (server side), as
/// `("ssl_server_end_point", base64)`: the form SCRAM-SHA-256-PLUS compares (pgwire's SCRAM
/// authenticator keeps it base64-encoded too). None when the server certificate's signature
/// has no digest (Ed25519, Ed448) or there is no certificate: then PLUS must not be offered,
/// as PostgreSQL does not offer it.
pub fn server_end_point_metadata(ssl: &SslRef) -> Option<(&'static str, String)> {
    server_end_point(ssl)
        .ok()
        .map(|h| ("ssl_server_end_point", openssl::base64::encode_block(&h)))
}

impl PeerCertificate {
    /// Reads a certificate's names and serial as PostgreSQL does. It does not fail on NUL
    /// bytes in the names: they are flagged instead.
    pub fn read(cert: &X509Ref, verified: bool) -> Result<PeerCertificate, SessionError> {
        let (cn, cn_has_nul) = match cert.subject_name().entries_by_nid(Nid::COMMONNAME).next() {
            Some(e) => {
                let raw = e.data().as_slice();
                (
                    Some(String::from_utf8_lossy(raw).into_owned()),
                    raw.contains(&0),
                )
            }
            None => (None, false),
        };
        let dn = ffi::name_rfc2253(cert.subject_name()).map_err(ossl)?;
        let serial = cert
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_dec_str().map(|s| s.to_string()))
            .map_err(ossl)?;
        Ok(PeerCertificate {
            cn,
            cn_has_nul,
            dn: String::from_utf8_lossy(&dn).into_owned(),
            subject: pg_name(cert.subject_name())?,
            serial,
            issuer: pg_name(cert.issuer_name())?,
            verified,
        })
    }
}

/// A name as pg_stat_ssl prints it: `/SN=value` per entry, values escaped as RFC 2253 asks,
/// UTF-8 kept.
fn pg_name(name: &X509NameRef) -> Result<String, SessionError> {
    let mut out = String::new();
    for e in name.entries() {
        let nid = e.object().nid();
        let field = nid
            .short_name()
            .or_else(|_| nid.long_name())
            .map_err(ossl)?;
        out.push('/');
        out.push_str(field);
        out.push('=');
        let v = ffi::asn1_string_pg(e.data()).map_err(ossl)?;
        out.push_str(&String::from_utf8_lossy(&v));
    }
    Ok(out)
}

/// RFC 5929 tls-server-end-point for SCRAM-SHA-256-PLUS: the hash of `cert` (the server's
/// certificate) with its signature's digest, SHA-256 where that digest is MD5 or SHA-1. The
/// digest is found as PostgreSQL finds it with OpenSSL 1.1.1 and later
/// (`X509_get_signature_info`), so an RSA-PSS signature uses the hash of its parameters. A
/// signature without a digest (Ed25519, Ed448) is an error, as in PostgreSQL, and PLUS must
/// not be offered.
pub fn tls_server_end_point(cert: &X509Ref) -> Result<Vec<u8>, SessionError> {
    let digest_nid = ffi::signature_digest_nid(cert)
        .map(Nid::from_raw)
        .ok_or_else(|| {
            SessionError::OpenSsl(Reason::Text(
                "could not determine server certificate signature algorithm".to_owned(),
            ))
        })?;
    let md = match digest_nid {
        Nid::MD5 | Nid::SHA1 => MessageDigest::sha256(),
        other => MessageDigest::from_nid(other).ok_or_else(|| SessionError::NoDigest {
            nid: other.short_name().unwrap_or("UNDEF").to_owned(),
        })?,
    };
    cert.digest(md).map(|d| d.to_vec()).map_err(ossl)
}

/// tls-server-end-point of the server's own certificate in this session (server side).
pub fn server_end_point(ssl: &SslRef) -> Result<Vec<u8>, SessionError> {
    tls_server_end_point(ssl.certificate().ok_or(SessionError::NoCertificate)?)
}

/// tls-server-end-point of the peer's certificate in this session (client side).
pub fn peer_end_point(ssl: &SslRef) -> Result<Vec<u8>, SessionError> {
    let cert = ssl.peer_certificate().ok_or(SessionError::NoCertificate)?;
    tls_server_end_point(&cert)
}

impl From<SessionError> for TlsError {
    fn from(e: SessionError) -> TlsError {
        TlsError::OpenSsl {
            context: "could not read the SSL session",
            reason: match e {
                SessionError::OpenSsl(r) => r,
                other => Reason::Text(other.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerCertificate {
        PeerCertificate {
            cn: Some("ssltestuser".to_owned()),
            cn_has_nul: false,
            dn: "CN=ssltestuser".to_owned(),
            subject: "/CN=ssltestuser".to_owned(),
            serial: "42".to_owned(),
            issuer: "/CN=Test CA".to_owned(),
            verified: true,
        }
    }

    #[test]
    fn metadata_has_only_the_facts_there_are_under_the_stable_keys() {
        let s = SessionInfo::new(TlsVersion::Tls1_3, "TLS_AES_256_GCM_SHA384", 256);
        assert_eq!(
            s.metadata(),
            [
                ("ssl_version", "TLSv1.3".to_owned()),
                ("ssl_cipher", "TLS_AES_256_GCM_SHA384".to_owned()),
                ("ssl_bits", "256".to_owned()),
            ]
        );
        let mut s = s.with_peer(peer());
        s.alpn = Some(b"postgresql".to_vec());
        s.sni = Some("db.example".to_owned());
        let m = s.metadata();
        let keys: Vec<&str> = m.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, METADATA_KEYS[..10]);
        let get = |k: &str| m.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ssl_alpn"), Some("postgresql"));
        assert_eq!(get("ssl_sni"), Some("db.example"));
        assert_eq!(get("ssl_client_cn"), Some("ssltestuser"));
        assert_eq!(get("ssl_client_dn"), Some("/CN=ssltestuser"));
        assert_eq!(get("ssl_client_dn_rfc2253"), Some("CN=ssltestuser"));
        assert_eq!(get("ssl_client_serial"), Some("42"));
        assert_eq!(get("ssl_issuer_dn"), Some("/CN=Test CA"));
    }
}
