//! The server's TLS (CONFORMANCE §1 ALPN, §2, §3): contexts built from PostgreSQL's settings,
//! their load errors, and real handshakes against OpenSSL clients, `openssl s_client` and psql.

use crate::support::tls as tls_support;

use std::process::Command;
use std::sync::Arc;

use pgssl::server::ServerPolicy;
use pgssl::tls::{ReloadableServerTls, ServerTlsConfig, TlsError, TlsVersion};
use tempfile::TempDir;
use tls_support::*;

fn dir() -> TempDir {
    tempfile::tempdir().unwrap()
}

fn build_err(c: &ServerTlsConfig) -> String {
    c.build().map(|_| ()).unwrap_err().to_string()
}

// ---------------------------------------------------------------------------------------------
// Load errors, each in PostgreSQL's words.

#[test]
fn missing_certificate_file() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.cert_file("/nonexistent/server.crt");
    assert_eq!(
        build_err(&c),
        "could not load server certificate file \"/nonexistent/server.crt\": No such file or directory"
    );
}

#[test]
fn certificate_file_that_is_not_pem() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.cert_file(cert("README.md"));
    let e = build_err(&c);
    assert!(
        e.starts_with(&format!(
            "could not load server certificate file \"{}\": ",
            cert("README.md").display()
        )),
        "{e}"
    );
    assert!(e.ends_with("no start line"), "{e}");
}

#[test]
fn missing_key_file() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.key_file("/nonexistent/server.key");
    assert_eq!(
        build_err(&c),
        "could not access private key file \"/nonexistent/server.key\": No such file or directory"
    );
}

#[test]
fn key_file_that_is_a_directory() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.key_file(d.path());
    assert_eq!(
        build_err(&c),
        format!(
            "private key file \"{}\" is not a regular file",
            d.path().display()
        )
    );
}

#[test]
fn key_file_0644_is_refused_and_0600_accepted() {
    let d = dir();
    let loose = dir();
    let key = key_copy(loose.path(), "server-localhost.key", 0o644);
    let mut c = localhost_config(d.path());
    c.key_file(&key);
    assert_eq!(
        build_err(&c),
        format!(
            "private key file \"{}\" has group or world access\nDETAIL:  File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root.",
            key.display()
        )
    );
    let key = key_copy(d.path(), "server-localhost.key", 0o600);
    assert!(localhost_config(d.path()).key_file(&key).build().is_ok());
    let key = key_copy(d.path(), "server-localhost.key", 0o400);
    assert!(localhost_config(d.path()).key_file(&key).build().is_ok());
}

#[test]
fn key_that_does_not_match_the_certificate() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.key_file(key_copy(d.path(), "server-cn-only.key", 0o600));
    // OpenSSL already compares the key with the certificate when the key is set, so the
    // error is the key file's, as with PostgreSQL's SSL_CTX_use_PrivateKey_file.
    let e = build_err(&c);
    assert_eq!(
        e,
        format!(
            "could not load private key file \"{}\": key values mismatch",
            d.path().join("server-cn-only.key").display()
        )
    );
}

/// A key of another type than the certificate's is set into OpenSSL's slot for its own type,
/// where no certificate is, so setting it succeeds; the check after it then finds the RSA
/// certificate without its key, as PostgreSQL's SSL_CTX_check_private_key does.
#[test]
fn key_of_another_type_fails_the_private_key_check() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.key_file(key_copy(d.path(), "server-ecdsa.key", 0o600));
    assert_eq!(
        build_err(&c),
        "check of private key failed: no certificate assigned"
    );
}

#[test]
fn key_file_with_garbage() {
    let d = dir();
    let garbage = d.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    std::fs::set_permissions(
        &garbage,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let e = build_err(localhost_config(d.path()).key_file(&garbage));
    assert!(
        e.starts_with(&format!(
            "could not load private key file \"{}\": ",
            garbage.display()
        )),
        "{e}"
    );
}

#[test]
fn missing_ca_file() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.ca_file("/nonexistent/root.crt");
    let e = build_err(&c);
    assert!(
        e.starts_with("could not load root certificate file \"/nonexistent/root.crt\": "),
        "{e}"
    );
}

#[test]
fn missing_crl_file_and_dir() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.crl_file("/nonexistent/root.crl");
    assert_eq!(
        build_err(&c),
        "could not load SSL certificate revocation list file \"/nonexistent/root.crl\": No such file or directory"
    );
    let mut c = localhost_config(d.path());
    c.crl_dir("/nonexistent/crldir");
    assert_eq!(
        build_err(&c),
        "could not load SSL certificate revocation list directory \"/nonexistent/crldir\": No such file or directory"
    );
}

#[test]
fn protocol_range_min_above_max() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.min_protocol_version(TlsVersion::Tls1_3)
        .max_protocol_version(Some(TlsVersion::Tls1_2));
    assert_eq!(
        build_err(&c),
        "could not set SSL protocol version range\nDETAIL:  \"ssl_min_protocol_version\" cannot be higher than \"ssl_max_protocol_version\""
    );
}

#[test]
fn cipher_lists_that_select_nothing() {
    let d = dir();
    assert_eq!(
        build_err(localhost_config(d.path()).ciphers("NOSUCHCIPHER")),
        "could not set the TLSv1.2 cipher list (no valid ciphers available)"
    );
    assert_eq!(
        build_err(localhost_config(d.path()).tls13_ciphers("TLS_NO_SUCH")),
        "could not set the TLSv1.3 cipher suites (no valid ciphers available)"
    );
}

#[test]
fn unknown_group() {
    let d = dir();
    let e = build_err(localhost_config(d.path()).groups("nosuchcurve"));
    assert!(
        e.starts_with("failed to set group names specified in ssl_groups: "),
        "{e}"
    );
}

/// An empty `ssl_groups`: OpenSSL before 3.5 refuses the list without queuing an error, and the
/// reason is PostgreSQL's fallback for an empty queue; OpenSSL 3.5 and later accept an empty
/// list (`tls1_set_groups_list` returns early for it).
#[test]
fn empty_group_list_has_no_ssl_error_to_report() {
    let d = dir();
    let mut c = localhost_config(d.path());
    c.groups("");
    if openssl::version::number() < 0x3050_0000 {
        assert_eq!(
            build_err(&c),
            "failed to set group names specified in ssl_groups: no SSL error reported"
        );
    } else {
        assert!(c.build().is_ok(), "{}", openssl::version::version());
    }
}

#[test]
fn dh_params_file_errors() {
    let d = dir();
    let e = build_err(localhost_config(d.path()).dh_params_file("/nonexistent/dh.pem"));
    assert_eq!(
        e,
        "could not load DH parameters file \"/nonexistent/dh.pem\": No such file or directory"
    );
    let e = build_err(localhost_config(d.path()).dh_params_file(cert("root_ca.crt")));
    assert!(e.starts_with("could not load DH parameters file"), "{e}");
}

/// Valid 512-bit DH parameters (`openssl dhparam 512`): they parse, and OpenSSL's security
/// level (1 and above: 80 bits, a 512-bit group has fewer) refuses them when they are set.
const DH_512: &str = "-----BEGIN DH PARAMETERS-----
MEYCQQCRql3Mse7Xun0a3og/QQCYnXSOBFhKpxD3A5lQHQRQcMskQ7g2l0VQhcdW
lqE5BiXxMKt9tcHDXBfaHVJzp0FvAgEC
-----END DH PARAMETERS-----
";

#[test]
fn dh_params_below_the_security_level_cannot_be_set() {
    let d = dir();
    let file = d.path().join("dh512.pem");
    std::fs::write(&file, DH_512).unwrap();
    // They are read (no "could not load DH parameters file" error)…
    assert_eq!(
        openssl::dh::Dh::params_from_pem(DH_512.as_bytes())
            .unwrap()
            .prime_p()
            .num_bits(),
        512
    );
    // …and refused when they are installed, for OpenSSL's reason: "dh key too small" from
    // the system's OpenSSL 3.0, "unknown security bits" from the vendored 3.6.
    let err = build_err(localhost_config(d.path()).dh_params_file(&file));
    assert!(
        [
            "DH: could not set DH parameters: dh key too small",
            "DH: could not set DH parameters: unknown security bits",
        ]
        .contains(&err.as_str()),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The passphrase command.

fn password_config(d: &std::path::Path) -> ServerTlsConfig {
    let mut c = ServerTlsConfig::new();
    c.ssl(true)
        .cert_file(cert("server-password.crt"))
        .key_file(key_copy(d, "server-password.key", 0o600));
    c
}

#[test]
fn passphrase_command_right_wrong_and_failing() {
    let d = dir();
    // %p is the prompt; the command checks it arrived.
    let mut ok = password_config(d.path());
    ok.passphrase_command("test \"%p\" = 'Enter PEM pass phrase:' && echo secret1");
    assert!(ok.build().is_ok());
    let mut wrong = password_config(d.path());
    wrong.passphrase_command("echo wrongpassword");
    let e = build_err(&wrong);
    assert!(e.starts_with("could not load private key file \""), "{e}");
    assert!(e.contains("bad decrypt"), "{e}");
    let mut failing = password_config(d.path());
    failing.passphrase_command("exit 7");
    assert_eq!(
        build_err(&failing),
        "command \"exit 7\" failed: child process exited with exit code 7"
    );
    let none = password_config(d.path());
    assert!(build_err(&none).contains("neither ssl_passphrase_command nor a passphrase callback"));
}

#[test]
fn passphrase_callback_from_the_host() {
    let d = dir();
    let mut c = password_config(d.path());
    c.passphrase_callback(|prompt| {
        assert_eq!(prompt, "Enter PEM pass phrase:");
        Ok(b"secret1".to_vec())
    });
    assert!(c.build().is_ok());
}

#[test]
fn protected_key_cannot_be_reloaded_without_supports_reload() {
    let d = dir();
    let mut c = password_config(d.path());
    c.passphrase_command("echo secret1");
    let live = ReloadableServerTls::new(&c).expect("start runs the command");
    let before = live.current();
    let e = live.reload(&c).unwrap_err();
    let key = d.path().join("server-password.key");
    assert_eq!(e.to_string(), "SSL configuration was not reloaded");
    assert_eq!(
        e.report(),
        format!(
            "SSL configuration was not reloaded: private key file \"{}\" cannot be reloaded because it requires a passphrase",
            key.display()
        )
    );
    assert!(
        Arc::ptr_eq(&before, &live.current()),
        "the old context stays"
    );
    c.passphrase_command_supports_reload(true);
    live.reload(&c).unwrap();
    assert!(!Arc::ptr_eq(&before, &live.current()));
}

// ---------------------------------------------------------------------------------------------
// Settings by GUC name and the data directory layout.

#[test]
fn configured_by_guc_names() {
    let d = dir();
    let key = key_copy(d.path(), "server-localhost.key", 0o600);
    let mut c = ServerTlsConfig::new();
    c.set_all([
        ("ssl", "on"),
        (
            "ssl_cert_file",
            cert("server-localhost+server_ca.crt").to_str().unwrap(),
        ),
        ("ssl_key_file", key.to_str().unwrap()),
        ("ssl_ca_file", cert("root+client_ca.crt").to_str().unwrap()),
        ("ssl_crl_file", cert("root+client.crl").to_str().unwrap()),
        ("ssl_ecdh_curve", "prime256v1"),
        ("ssl_min_protocol_version", "TLSv1.3"),
    ])
    .unwrap();
    let tls = c.build().unwrap();
    assert!(tls.ca_loaded());
    assert!(tls.effective().crl_loaded);
    assert_eq!(tls.effective().min_protocol, TlsVersion::Tls1_3);
}

#[test]
fn data_directory_layout() {
    let d = dir();
    for f in ["server.crt", "root.crt", "root.crl"] {
        std::fs::copy(cert("data-dir").join(f), d.path().join(f)).unwrap();
    }
    std::fs::copy(cert("data-dir/server.key"), d.path().join("server.key")).unwrap();
    std::fs::set_permissions(
        d.path().join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let tls = ServerTlsConfig::from_data_dir(d.path()).build().unwrap();
    assert!(tls.ca_loaded(), "root.crt turns on client certificates");
    assert!(
        tls.effective().crl_loaded,
        "root.crl turns on revocation checks"
    );
    // Without root.crt and root.crl, neither.
    std::fs::remove_file(d.path().join("root.crt")).unwrap();
    std::fs::remove_file(d.path().join("root.crl")).unwrap();
    let tls = ServerTlsConfig::from_data_dir(d.path()).build().unwrap();
    assert!(!tls.ca_loaded());
    assert!(!tls.effective().crl_loaded);
    // Relative names resolve against the data directory, and errors keep the name as set.
    let mut c = ServerTlsConfig::from_data_dir(d.path());
    c.set("ssl_cert_file", "missing.crt").unwrap();
    assert_eq!(
        build_err(&c),
        "could not load server certificate file \"missing.crt\": No such file or directory"
    );
}

// ---------------------------------------------------------------------------------------------
// Handshakes.

fn server(d: &std::path::Path) -> TestServer {
    TestServer::with(ServerPolicy::new(), localhost_config(d).build().unwrap())
}

#[test]
fn ssl_request_with_alpn_postgresql() {
    let d = dir();
    let srv = server(d.path());
    let (resp, tls) = pg_connect(
        srv.port,
        How::SslRequest,
        connector(Some(b"\x0apostgresql")),
        None,
        "alice",
    )
    .unwrap();
    assert!(resp.message.contains("ssl=on"), "{resp:?}");
    assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"postgresql"[..]));
    match srv.next() {
        Seen::Startup {
            tls: true,
            session: Some(s),
            user,
            ..
        } => {
            assert_eq!(user, "alice");
            assert_eq!(s.alpn.as_deref(), Some(&b"postgresql"[..]));
            assert_eq!(s.version.to_string(), "TLSv1.3");
            assert_eq!(s.version.as_str(), tls.ssl().version_str());
            assert_eq!(s.cipher, tls.ssl().current_cipher().unwrap().name());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ssl_request_without_alpn_is_accepted() {
    let d = dir();
    let srv = server(d.path());
    let (resp, tls) = pg_connect(srv.port, How::SslRequest, connector(None), None, "bob").unwrap();
    assert!(resp.message.contains("alpn=none"), "{resp:?}");
    assert_eq!(tls.ssl().selected_alpn_protocol(), None);
}

#[test]
fn wrong_alpn_gets_no_application_protocol_on_both_paths() {
    let d = dir();
    let srv = server(d.path());
    for how in [How::SslRequest, How::Direct] {
        let e = pg_connect(srv.port, how, connector(Some(b"\x02h2")), None, "eve").unwrap_err();
        assert!(e.contains("no application protocol"), "{how:?}: {e}");
        match srv.next() {
            Seen::Refused(r) => assert!(r.starts_with("could not accept SSL connection"), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn direct_ssl_with_alpn_is_accepted_and_without_it_refused() {
    let d = dir();
    let srv = server(d.path());
    let (resp, _) = pg_connect(
        srv.port,
        How::Direct,
        connector(Some(b"\x0apostgresql")),
        None,
        "dora",
    )
    .unwrap();
    assert!(resp.message.contains("alpn=postgresql"), "{resp:?}");
    assert!(matches!(srv.next(), Seen::Startup { tls: true, .. }));
    // Without ALPN the handshake completes, then the server closes without a word.
    let e = pg_connect(srv.port, How::Direct, connector(None), None, "dora").unwrap_err();
    assert!(e.contains("server closed") || e.starts_with("read"), "{e}");
    match srv.next() {
        Seen::Refused(r) => assert_eq!(
            r,
            "received direct SSL connection request without ALPN protocol negotiation extension"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn intermediates_from_the_chain_file_reach_the_client() {
    // The client trusts only the root; the handshake succeeds only if the server sends
    // server_ca from its certificate file.
    let d = dir();
    let srv = server(d.path());
    let (_, tls) = pg_connect(srv.port, How::SslRequest, connector(None), None, "a").unwrap();
    let chain = tls.ssl().peer_cert_chain().unwrap();
    assert_eq!(chain.len(), 2);
    // A leaf alone does not verify against the root.
    let bare = ServerTlsConfig::new()
        .cert_file(cert("server-localhost.crt"))
        .key_file(key_copy(d.path(), "server-localhost.key", 0o600))
        .build()
        .unwrap();
    let srv = TestServer::with(ServerPolicy::new(), bare);
    let e = pg_connect(srv.port, How::SslRequest, connector(None), None, "a").unwrap_err();
    assert!(e.contains("certificate verify failed"), "{e}");
}

fn cli_digest(file: &std::path::Path, digest: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -outform DER | openssl dgst {digest} -binary | od -An -tx1 | tr -d ' \\n'",
            file.display()
        ))
        .output()
        .expect("the openssl CLI is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn tls_server_end_point_matches_the_openssl_cli() {
    // RFC 5929: SHA-256 for MD5 and SHA-1 signatures, the signature's own digest otherwise.
    // The signature is the issuer's: an Ed25519 key signed by an RSA-SHA256 CA hashes with
    // SHA-256.
    for (name, digest) in [
        ("server-localhost", "-sha256"),
        ("server-sha1", "-sha256"),
        ("server-sha384", "-sha384"),
        ("server-sha512", "-sha512"),
        ("server-ecdsa", "-sha256"),
        ("server-ed25519", "-sha256"),
        // RSA-PSS: the hash of its parameters (SHA-256), as PostgreSQL with OpenSSL 1.1.1+.
        ("server-rsapss", "-sha256"),
    ] {
        let file = cert(&format!("{name}.crt"));
        let x = openssl::x509::X509::from_pem(&std::fs::read(&file).unwrap()).unwrap();
        let ep = pgssl::tls::tls_server_end_point(&x).unwrap();
        assert_eq!(hex(&ep), cli_digest(&file, digest), "{name}");
    }
}

#[test]
fn tls_server_end_point_of_a_live_session_on_both_sides() {
    let d = dir();
    let srv = server(d.path());
    let (_, tls) = pg_connect(srv.port, How::SslRequest, connector(None), None, "cb").unwrap();
    let Seen::Startup {
        end_point: Some(server_side),
        ..
    } = srv.next()
    else {
        panic!()
    };
    let client_side = pgssl::tls::peer_end_point(tls.ssl()).unwrap();
    assert_eq!(server_side, client_side);
    assert_eq!(
        hex(&server_side),
        cli_digest(&cert("server-localhost.crt"), "-sha256")
    );
}

#[test]
fn tls_server_end_point_is_undefined_without_a_signature_digest() {
    // A self-signed Ed25519 certificate.
    let key = openssl::pkey::PKey::generate_ed25519().unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "ed25519").unwrap();
    let name = name.build();
    let mut b = openssl::x509::X509::builder().unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.sign(&key, openssl::hash::MessageDigest::null()).unwrap();
    assert_eq!(
        pgssl::tls::tls_server_end_point(&b.build())
            .unwrap_err()
            .to_string(),
        "could not find digest for NID UNDEF"
    );
}

// ---------------------------------------------------------------------------------------------
// Client certificates.

fn client_ca_server(d: &std::path::Path, crl: Option<(&str, bool)>) -> TestServer {
    let mut c = localhost_config(d);
    c.ca_file(cert("root+client_ca.crt"));
    match crl {
        Some((f, false)) => {
            c.crl_file(cert(f));
        }
        Some((f, true)) => {
            c.crl_dir(cert(f));
        }
        None => {}
    }
    TestServer::with(ServerPolicy::new(), c.build().unwrap())
}

fn with_client_cert(
    d: &std::path::Path,
    crt: &str,
    key: &str,
) -> openssl::ssl::SslConnectorBuilder {
    let mut b = connector(None);
    // TLS 1.2, so that the server's verdict on the certificate arrives during the handshake
    // (with TLS 1.3 the client finishes first and may only see the connection reset).
    b.set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
        .unwrap();
    b.set_certificate_chain_file(cert(crt)).unwrap();
    b.set_private_key_file(key_copy(d, key, 0o600), openssl::ssl::SslFiletype::PEM)
        .unwrap();
    b
}

#[test]
fn client_certificate_facts() {
    let d = dir();
    let srv = client_ca_server(d.path(), None);
    pg_connect(
        srv.port,
        How::SslRequest,
        with_client_cert(d.path(), "client-dn.crt", "client-dn.key"),
        None,
        "x",
    )
    .unwrap();
    let Seen::Startup {
        session: Some(s), ..
    } = srv.next()
    else {
        panic!()
    };
    let p = s.peer.expect("a client certificate");
    assert!(p.verified);
    assert_eq!(p.cn.as_deref(), Some("ssltestuser-dn"));
    assert_eq!(p.dn, "CN=ssltestuser-dn,OU=Testing,OU=Engineering,O=PGDG");
    // pg_stat_ssl's forms, checked against the openssl CLI.
    let cli = |args: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl x509 -in '{}' -noout {args}",
                cert("client-dn.crt").display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert_eq!(
        p.subject,
        "/O=PGDG/OU=Engineering/OU=Testing/CN=ssltestuser-dn"
    );
    let serial_hex = cli("-serial").trim_start_matches("serial=").to_owned();
    assert_eq!(
        p.serial,
        u128::from_str_radix(&serial_hex, 16).unwrap().to_string()
    );
    let issuer = cli("-issuer -nameopt compat")
        .trim_start_matches("issuer=")
        .to_owned();
    assert_eq!(p.issuer, issuer);
    assert_eq!(
        format!("subject={}", p.dn),
        cli("-subject -nameopt RFC2253")
    );
}

#[test]
fn client_without_certificate_is_accepted_when_ca_is_set() {
    let d = dir();
    let srv = client_ca_server(d.path(), None);
    pg_connect(srv.port, How::SslRequest, connector(None), None, "x").unwrap();
    let Seen::Startup {
        session: Some(s), ..
    } = srv.next()
    else {
        panic!()
    };
    assert!(s.peer.is_none(), "requested, not required");
}

#[test]
fn client_certificate_from_an_unknown_ca_is_refused() {
    let d = dir();
    let srv = client_ca_server(d.path(), None);
    let e = pg_connect(
        srv.port,
        How::SslRequest,
        with_client_cert(d.path(), "client-other-ca.crt", "client-other-ca.key"),
        None,
        "x",
    )
    .unwrap_err();
    assert!(e.contains("unknown ca"), "{e}");
    match srv.next() {
        Seen::Refused(r) => assert!(r.contains("certificate verify failed"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn revoked_client_certificate_via_crl_file_and_crl_dir() {
    for crl in [("root+client.crl", false), ("root+client-crldir", true)] {
        let d = dir();
        let srv = client_ca_server(d.path(), Some(crl));
        let e = pg_connect(
            srv.port,
            How::SslRequest,
            with_client_cert(d.path(), "client-revoked.crt", "client-revoked.key"),
            None,
            "x",
        )
        .unwrap_err();
        assert!(e.contains("certificate revoked"), "{crl:?}: {e}");
        match srv.next() {
            Seen::Refused(r) => assert!(r.contains("certificate verify failed"), "{r}"),
            other => panic!("{other:?}"),
        }
        // A good certificate still passes the revocation check.
        pg_connect(
            srv.port,
            How::SslRequest,
            with_client_cert(d.path(), "client.crt", "client.key"),
            None,
            "x",
        )
        .unwrap();
        assert!(matches!(srv.next(), Seen::Startup { .. }));
    }
}

// ---------------------------------------------------------------------------------------------
// Real peers: psql (libpq 15, no ALPN) and openssl s_client.

fn psql(port: u16, conninfo: &str) -> String {
    let out = Command::new("psql")
        .arg(format!(
            "host=localhost port={port} user=alice connect_timeout=10 gssencmode=disable {conninfo}"
        ))
        .args(["-X", "-w", "-c", "select 1"])
        .output()
        .expect("psql is installed (scripts/test.sh installs postgresql-client)");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn psql_verify_full_against_the_server() {
    let d = dir();
    let srv = server(d.path());
    let root = cert("root_ca.crt");
    let err = psql(
        srv.port,
        &format!("sslmode=verify-full sslrootcert={}", root.display()),
    );
    assert!(
        err.contains(FATAL_MARKER) && err.contains("ssl=on"),
        "{err}"
    );
    assert!(err.contains("alpn=none"), "libpq 15 sends no ALPN: {err}");
    assert!(matches!(srv.next(), Seen::Startup { tls: true, .. }));
}

#[test]
fn psql_with_client_certificate_and_revocation() {
    let d = dir();
    let srv = client_ca_server(d.path(), Some(("root+client.crl", false)));
    let key = key_copy(d.path(), "client.key", 0o600);
    let err = psql(
        srv.port,
        &format!(
            "sslmode=require sslcert={} sslkey={}",
            cert("client.crt").display(),
            key.display()
        ),
    );
    assert!(err.contains(FATAL_MARKER), "{err}");
    let Seen::Startup {
        session: Some(s), ..
    } = srv.next()
    else {
        panic!()
    };
    assert_eq!(s.peer.unwrap().cn.as_deref(), Some("ssltestuser"));
    let key = key_copy(d.path(), "client-revoked.key", 0o600);
    let err = psql(
        srv.port,
        &format!(
            "sslmode=require sslcert={} sslkey={}",
            cert("client-revoked.crt").display(),
            key.display()
        ),
    );
    assert!(err.contains("certificate revoked"), "{err}");
}

#[test]
fn s_client_sees_what_pg_stat_ssl_reports() {
    let d = dir();
    let srv = server(d.path());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '' | openssl s_client -connect 127.0.0.1:{} -starttls postgres -CAfile '{}' -brief 2>&1",
            srv.port,
            cert("root_ca.crt").display()
        ))
        .output()
        .expect("the openssl CLI is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    // The handshake completed; s_client then closed without a StartupMessage.
    assert!(text.contains("Verification: OK"), "{text}");
    let proto = text
        .lines()
        .find_map(|l| l.strip_prefix("Protocol version: "))
        .expect("s_client prints the protocol");
    let cipher = text
        .lines()
        .find_map(|l| l.strip_prefix("Ciphersuite: "))
        .expect("s_client prints the cipher");
    // The same handshake from the library's view.
    let (_, tls) = pg_connect(srv.port, How::SslRequest, connector(None), None, "x").unwrap();
    let _ = srv.next();
    let Seen::Startup {
        session: Some(s), ..
    } = srv.next()
    else {
        panic!()
    };
    assert_eq!(s.version.as_str(), proto.trim());
    assert_eq!(s.cipher, cipher.trim());
    assert_eq!(s.bits, 256);
    drop(tls);
}

// ---------------------------------------------------------------------------------------------
// Reload under open connections.

#[test]
fn reload_under_open_connections() {
    let d = dir();
    let live = Arc::new(ReloadableServerTls::new(&localhost_config(d.path())).unwrap());
    let l2 = live.clone();
    let srv = TestServer::start(ServerPolicy::new(), move || Some(l2.current()));
    let (_, open) = pg_connect(srv.port, How::SslRequest, connector(None), None, "a").unwrap();
    let _ = srv.next();
    // A broken reload keeps the old context; new connections still succeed.
    let mut broken = localhost_config(d.path());
    broken.cert_file("/nonexistent/new.crt");
    let e = live.reload(&broken).unwrap_err();
    assert!(matches!(e, TlsError::NotReloaded { .. }));
    assert!(
        e.report().starts_with(
            "SSL configuration was not reloaded: could not load server certificate file"
        )
    );
    pg_connect(srv.port, How::SslRequest, connector(None), None, "b").unwrap();
    let _ = srv.next();
    // A good reload to another certificate applies to new connections only.
    let mut cn_only = ServerTlsConfig::new();
    cn_only
        .cert_file(cert("server-cn-only+server_ca.crt"))
        .key_file(key_copy(d.path(), "server-cn-only.key", 0o600));
    live.reload(&cn_only).unwrap();
    let (_, fresh) = pg_connect(srv.port, How::SslRequest, connector(None), None, "c").unwrap();
    let cn = |s: &openssl::ssl::SslStream<std::net::TcpStream>| {
        s.ssl()
            .peer_certificate()
            .unwrap()
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .unwrap()
            .data()
            .to_string()
            .unwrap()
    };
    assert_eq!(cn(&fresh), "common-name.pg-ssltest.test");
    assert_eq!(
        cn(&open),
        "localhost",
        "the open connection keeps its context"
    );
}

#[test]
fn clientcert_and_cert_method_on_real_sessions() {
    use pgssl::tls::{AuthMethod, ClientCertMode, ClientName, check_client_certificate};
    let d = dir();
    let srv = client_ca_server(d.path(), None);
    let session = |crt: &str, key: &str| {
        pg_connect(
            srv.port,
            How::SslRequest,
            with_client_cert(d.path(), crt, key),
            None,
            "x",
        )
        .unwrap();
        let Seen::Startup {
            session: Some(s), ..
        } = srv.next()
        else {
            panic!()
        };
        s
    };
    let cn_session = session("client.crt", "client.key");
    // clientcert=verify-full with trust: the CN must be the user.
    assert!(
        check_client_certificate(
            &cn_session,
            "ssltestuser",
            AuthMethod::Trust,
            ClientCertMode::VerifyFull,
            ClientName::Cn
        )
        .is_ok()
    );
    let e = check_client_certificate(
        &cn_session,
        "alice",
        AuthMethod::Trust,
        ClientCertMode::VerifyFull,
        ClientName::Cn,
    )
    .unwrap_err();
    assert_eq!(
        e.response.message,
        "\"trust\" authentication failed for user \"alice\""
    );
    // cert with clientname=DN: the RFC 2253 DN is the user, and the DN is the identity.
    let dn_session = session("client-dn.crt", "client-dn.key");
    let dn = "CN=ssltestuser-dn,OU=Testing,OU=Engineering,O=PGDG";
    assert_eq!(
        check_client_certificate(
            &dn_session,
            dn,
            AuthMethod::Cert,
            ClientCertMode::Off,
            ClientName::Dn
        ),
        Ok(Some(dn.to_owned()))
    );
    let e = check_client_certificate(
        &dn_session,
        "ssltestuser-dn",
        AuthMethod::Cert,
        ClientCertMode::Off,
        ClientName::Dn,
    )
    .unwrap_err();
    assert_eq!(
        e.response.message,
        "certificate authentication failed for user \"ssltestuser-dn\""
    );
    // verify-ca without a certificate.
    pg_connect(srv.port, How::SslRequest, connector(None), None, "x").unwrap();
    let Seen::Startup {
        session: Some(none),
        ..
    } = srv.next()
    else {
        panic!()
    };
    let e = check_client_certificate(
        &none,
        "x",
        AuthMethod::Trust,
        ClientCertMode::VerifyCa,
        ClientName::Cn,
    )
    .unwrap_err();
    assert_eq!(
        e.response.message,
        "connection requires a valid client certificate"
    );
}

/// PostgreSQL refuses a client certificate whose CN holds a NUL byte once the handshake is
/// done, logging "SSL certificate's common name contains embedded null": a refusal (no reply),
/// not an I/O error.
#[test]
fn client_common_name_with_embedded_null_is_refused() {
    let d = dir();
    let pki = dir();
    one_name_pki(pki.path(), "ssltestuser\0.evil.example");
    let mut c = localhost_config(d.path());
    c.ca_file(pki.path().join("ca.crt"));
    let srv = TestServer::with(ServerPolicy::new(), c.build().unwrap());
    let mut client = connector(None);
    client
        .set_certificate_file(pki.path().join("leaf.crt"), openssl::ssl::SslFiletype::PEM)
        .unwrap();
    client
        .set_private_key_file(pki.path().join("leaf.key"), openssl::ssl::SslFiletype::PEM)
        .unwrap();
    // Closed with close_notify (a read ends cleanly: libpq's "SSL connection has been closed
    // unexpectedly"), not a bare EOF (OpenSSL 3: "unexpected eof while reading").
    let seen = pg_connect(srv.port, How::SslRequest, client, None, "ssltestuser").err();
    assert_eq!(seen.as_deref(), Some("server closed"));
    match srv.next() {
        Seen::Refused(e) => assert_eq!(e, "SSL certificate's common name contains embedded null"),
        other => panic!("{other:?}"),
    }
}

/// Files that exist but are not what the setting needs, in PostgreSQL's and libpq's words.
#[test]
fn wrong_kinds_of_files_are_refused_with_the_file_and_the_reason() {
    let d = dir();
    let f = d.path().join("file");
    std::fs::write(&f, "not a certificate\n").unwrap();
    // ssl_crl_dir naming a file.
    let mut c = localhost_config(d.path());
    c.ca_file(tls_support::cert("root+client_ca.crt"))
        .crl_dir(&f);
    assert_eq!(
        build_err(&c),
        format!(
            "could not load SSL certificate revocation list directory \"{}\": not a directory",
            f.display()
        )
    );
    // The client's sslrootcert and sslcert holding no certificate.
    let client = |conninfo: String| {
        let config = pgssl::tls::ClientTlsConfig::from_conninfo(&conninfo).unwrap();
        pgssl::tls::ClientTls::new(&config)
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(
        client(format!("sslmode=require sslrootcert={}", f.display())),
        Some(format!(
            "could not read root certificate file \"{}\": no certificate or crl found",
            f.display()
        ))
    );
    assert_eq!(
        client(format!(
            "sslmode=require sslcert={} sslkey={}",
            f.display(),
            f.display()
        )),
        Some(format!(
            "could not read certificate file \"{}\": no start line",
            f.display()
        ))
    );
    // A client key readable by others (libpq's rule, as root: 0640 at most).
    let key = tls_support::key_copy(d.path(), "client.key", 0o644);
    assert_eq!(
        client(format!(
            "sslmode=require sslcert={} sslkey={}",
            tls_support::cert("client.crt").display(),
            key.display()
        )),
        Some(format!(
            "private key file \"{}\" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root",
            key.display()
        ))
    );
    // An ssl_crl_dir whose name is not UTF-8 (OpenSSL's lookup takes a C string of text).
    let odd = d
        .path()
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"crl\xff"));
    std::fs::create_dir(&odd).unwrap();
    let mut c = localhost_config(d.path());
    c.ca_file(tls_support::cert("root+client_ca.crt"))
        .crl_dir(&odd);
    assert_eq!(
        build_err(&c),
        format!(
            "could not load SSL certificate revocation list directory \"{}\": path is not valid UTF-8",
            odd.display()
        )
    );
}
