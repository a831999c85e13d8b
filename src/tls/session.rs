//! What a handshake established: the pg_stat_ssl row, ALPN, SNI, the peer's names, and the
//! tls-server-end-point channel-binding data.

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ssl::{NameType, SslRef};
use openssl::x509::{X509NameRef, X509Ref, X509VerifyResult};

use super::error::{TlsError, reason};
use super::ffi;

/// Why a session's facts could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer's CN has a NUL byte (CVE-2009-4034).
    #[error("SSL certificate's common name contains embedded null")]
    CommonNameNul,
    /// The peer's DN has a NUL byte.
    #[error("SSL certificate's distinguished name contains embedded null")]
    DistinguishedNameNul,
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
    OpenSsl(String),
}

/// One TLS session as PostgreSQL reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// The protocol version, as pg_stat_ssl shows it (`TLSv1.3`).
    pub version: String,
    /// The cipher's OpenSSL name (`TLS_AES_256_GCM_SHA384`).
    pub cipher: String,
    /// The cipher's secret bits.
    pub bits: i32,
    /// The ALPN protocol negotiated.
    pub alpn: Option<Vec<u8>>,
    /// The SNI host name the client sent.
    pub sni: Option<String>,
    /// The peer certificate, if one was presented (see [`PeerCertificate::verified`]).
    pub peer: Option<PeerCertificate>,
    /// Server side: whether this connection asked for a client certificate, i.e. whether the
    /// selected identity has a CA store (with SNI hosts this is per host). Pass it as
    /// `ca_loaded` to [`crate::tls::check_client_certificate`].
    pub client_cert_requested: bool,
}

/// The peer's certificate, as PostgreSQL reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The first CN of the subject (None if there is none).
    pub cn: Option<String>,
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

impl SessionInfo {
    /// Reads the facts of an established session. `peer` is the server's view (the client
    /// certificate); on the client side pass the session too, and read the server's
    /// certificate from [`SessionInfo::peer`].
    pub fn from_ssl(ssl: &SslRef) -> Result<SessionInfo, SessionError> {
        let (version, cipher, bits) = match ssl.current_cipher() {
            Some(c) => (
                ssl.version_str().to_owned(),
                c.name().to_owned(),
                c.bits().secret,
            ),
            None => (ssl.version_str().to_owned(), String::new(), 0),
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
            client_cert_requested: ssl
                .verify_mode()
                .contains(openssl::ssl::SslVerifyMode::PEER),
        })
    }
}

impl PeerCertificate {
    /// Reads a certificate's names and serial as PostgreSQL does.
    pub fn read(cert: &X509Ref, verified: bool) -> Result<PeerCertificate, SessionError> {
        let cn = match cert.subject_name().entries_by_nid(Nid::COMMONNAME).next() {
            Some(e) => {
                let raw = e.data().as_slice();
                if raw.contains(&0) {
                    return Err(SessionError::CommonNameNul);
                }
                Some(String::from_utf8_lossy(raw).into_owned())
            }
            None => None,
        };
        let dn = ffi::name_rfc2253(cert.subject_name())
            .map_err(|e| SessionError::OpenSsl(reason(&e)))?;
        if dn.contains(&0) {
            return Err(SessionError::DistinguishedNameNul);
        }
        let serial = cert
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_dec_str().map(|s| s.to_string()))
            .map_err(|e| SessionError::OpenSsl(reason(&e)))?;
        Ok(PeerCertificate {
            cn,
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
            .map_err(|e| SessionError::OpenSsl(reason(&e)))?;
        out.push('/');
        out.push_str(field);
        out.push('=');
        let v = ffi::asn1_string_pg(e.data()).map_err(|e| SessionError::OpenSsl(reason(&e)))?;
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
            SessionError::OpenSsl(
                "could not determine server certificate signature algorithm".to_owned(),
            )
        })?;
    let md = match digest_nid {
        Nid::MD5 | Nid::SHA1 => MessageDigest::sha256(),
        other => MessageDigest::from_nid(other).ok_or_else(|| SessionError::NoDigest {
            nid: other.short_name().unwrap_or("UNDEF").to_owned(),
        })?,
    };
    cert.digest(md)
        .map(|d| d.to_vec())
        .map_err(|e| SessionError::OpenSsl(reason(&e)))
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
            reason: e.to_string(),
        }
    }
}
