//! Helpers for the OpenSSL layer's tests: the test PKI, a threaded test server built on
//! `pgssl::io::blocking::accept`, and a minimal PostgreSQL client over OpenSSL.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};
use pgssl::io::blocking::{Accepted, accept};
use pgssl::server::ServerPolicy;
use pgssl::tls::{ServerTls, ServerTlsConfig, SessionInfo, server_end_point};
use pgssl::wire::{ErrorResponse, SSL_REQUEST};

/// The committed test PKI.
pub fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs")
}

/// A file of the PKI.
pub fn cert(name: &str) -> PathBuf {
    certs().join(name)
}

/// Copies a key of the PKI into `dir` with `mode` (git does not keep 0600).
pub fn key_copy(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(cert(name), &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    to
}

/// A server configuration for `server-localhost` (with its intermediate) and a 0600 key copy.
pub fn localhost_config(dir: &Path) -> ServerTlsConfig {
    let mut c = ServerTlsConfig::new();
    c.ssl(true)
        .cert_file(cert("server-localhost+server_ca.crt"))
        .key_file(key_copy(dir, "server-localhost.key", 0o600));
    c
}

/// What the test server saw on one connection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Seen {
    Startup {
        user: String,
        tls: bool,
        session: Option<SessionInfo>,
        end_point: Option<Vec<u8>>,
    },
    Cancel,
    Refused(String),
    Error(String),
}

/// A server on 127.0.0.1 that negotiates each connection with `accept`, answers a
/// StartupMessage with a FATAL that describes the session (so psql prints it), and reports
/// what it saw. `tls` gives the context for each new connection.
pub struct TestServer {
    pub port: u16,
    pub seen: mpsc::Receiver<Seen>,
}

pub const FATAL_MARKER: &str = "pgssl test server";

impl TestServer {
    pub fn start(
        policy: ServerPolicy,
        tls: impl Fn() -> Option<std::sync::Arc<ServerTls>> + Send + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                sock.set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let ctx = tls();
                let seen = match accept(sock, policy.clone(), ctx.as_deref()) {
                    Ok(Accepted::Startup {
                        mut stream,
                        startup,
                        session,
                        ..
                    }) => {
                        let end_point = stream.ssl().and_then(|s| server_end_point(s).ok());
                        let desc = match &session {
                            Some(s) => format!(
                                "{FATAL_MARKER}: ssl=on version={} cipher={} bits={} alpn={} user={}",
                                s.version,
                                s.cipher,
                                s.bits,
                                s.alpn
                                    .as_deref()
                                    .map(|a| String::from_utf8_lossy(a).into_owned())
                                    .unwrap_or_else(|| "none".into()),
                                startup.user_lossy()
                            ),
                            None => {
                                format!("{FATAL_MARKER}: ssl=off user={}", startup.user_lossy())
                            }
                        };
                        let _ = stream.write_all(&ErrorResponse::fatal("28000", desc).to_bytes());
                        let _ = stream.flush();
                        Seen::Startup {
                            user: startup.user_lossy().into_owned(),
                            tls: session.is_some(),
                            session,
                            end_point,
                        }
                    }
                    Ok(Accepted::Cancel { mut stream, .. }) => {
                        let _ = stream.shutdown();
                        Seen::Cancel
                    }
                    Ok(Accepted::Refused(r)) => Seen::Refused(r.error().to_string()),
                    Err(e) => Seen::Error(e.to_string()),
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        TestServer { port, seen: rx }
    }

    /// A server that always uses one context.
    pub fn with(policy: ServerPolicy, tls: ServerTls) -> TestServer {
        let tls = std::sync::Arc::new(tls);
        TestServer::start(policy, move || Some(tls.clone()))
    }

    /// What the server saw on the next connection.
    pub fn next(&self) -> Seen {
        self.seen
            .recv_timeout(Duration::from_secs(30))
            .expect("the server saw a connection")
    }
}

/// How the in-process client negotiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    SslRequest,
    Direct,
}

/// An OpenSSL client connector with the PKI's root as trust anchor, no hostname check (the
/// tests that need one use libpq), and the given ALPN list.
pub fn connector(alpn: Option<&[u8]>) -> openssl::ssl::SslConnectorBuilder {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(cert("root_ca.crt")).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    if let Some(a) = alpn {
        b.set_alpn_protos(a).unwrap();
    }
    b
}

/// Connects to the test server, negotiates, handshakes with `connector`, sends a
/// StartupMessage for `user`, and returns the server's first message as an ErrorResponse.
pub fn pg_connect(
    port: u16,
    how: How,
    builder: openssl::ssl::SslConnectorBuilder,
    sni: Option<&str>,
    user: &str,
) -> Result<(ErrorResponse, SslStream<TcpStream>), String> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    if how == How::SslRequest {
        sock.write_all(&SSL_REQUEST).unwrap();
        let mut b = [0u8; 1];
        sock.read_exact(&mut b).map_err(|e| e.to_string())?;
        if b[0] != b'S' {
            return Err(format!("reply {}", b[0] as char));
        }
    }
    let connector = builder.build();
    let mut cfg = connector.configure().unwrap().verify_hostname(false);
    if sni.is_none() {
        cfg = cfg.use_server_name_indication(false);
    }
    let mut tls = cfg
        .connect(sni.unwrap_or("localhost"), sock)
        .map_err(|e| format!("handshake: {e}"))?;
    let mut startup = bytes::BytesMut::new();
    pgssl::wire::encode_startup_message(
        &mut startup,
        pgssl::wire::ProtocolVersion::V3_0,
        [("user", user)],
    );
    tls.write_all(&startup).map_err(|e| e.to_string())?;
    let mut msg = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(pgssl::wire::Decoded::Complete(r, _)) = ErrorResponse::decode(&msg) {
            return Ok((r, tls));
        }
        let n = tls.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed".into());
        }
        msg.extend_from_slice(&chunk[..n]);
    }
}

/// A CA and a certificate signed by it for `cn` (no SAN), written to `dir` as ca.crt,
/// leaf.crt and leaf.key (0600).
pub fn one_name_pki(dir: &Path, cn: &str) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::BasicConstraints;
    use openssl::x509::{X509, X509NameBuilder};

    let key = || {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    };
    let name = |cn: &str| {
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        n.build()
    };
    let cert =
        |serial: u32, subject: &str, issuer: &str, key: &PKey<_>, signer: &PKey<_>, ca: bool| {
            let mut b = X509::builder().unwrap();
            b.set_version(2).unwrap();
            b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
                .unwrap();
            b.set_subject_name(&name(subject)).unwrap();
            b.set_issuer_name(&name(issuer)).unwrap();
            b.set_pubkey(key).unwrap();
            b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
                .unwrap();
            b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
                .unwrap();
            if ca {
                b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                    .unwrap();
            }
            b.sign(signer, MessageDigest::sha256()).unwrap();
            b.build()
        };
    let ca_key = key();
    let ca = cert(1, "NUL test CA", "NUL test CA", &ca_key, &ca_key, true);
    let leaf_key = key();
    let leaf = cert(2, cn, "NUL test CA", &leaf_key, &ca_key, false);
    std::fs::write(dir.join("ca.crt"), ca.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("leaf.crt"), leaf.to_pem().unwrap()).unwrap();
    let k = dir.join("leaf.key");
    std::fs::write(&k, leaf_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
}
