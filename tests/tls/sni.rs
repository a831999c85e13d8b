//! Several server identities selected by SNI, with pg_hosts.conf's semantics (CONFORMANCE §2,
//! "Server-side SNI").

use crate::support::tls as tls_support;

use std::path::Path;

use openssl::nid::Nid;
use openssl::ssl::SslStream;
use pgssl::server::ServerPolicy;
use pgssl::tls::ServerTlsConfig;
use tls_support::*;

fn cn(s: &SslStream<std::net::TcpStream>) -> String {
    s.ssl()
        .peer_certificate()
        .unwrap()
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|e| e.data().to_string().unwrap())
        .unwrap_or_default()
}

/// A hosts file in `dir` with these lines (key names are copied to 0600 files first).
fn hosts(dir: &Path, lines: &[(&str, &str, &str, Option<&str>)]) -> ServerTlsConfig {
    let mut text = String::from("# pgssl SNI hosts\n");
    for (name, crt, key, ca) in lines {
        let k = key_copy(dir, key, 0o600);
        text.push_str(&format!(
            "{name}  \"{}\"  \"{}\"  {}\n",
            cert(crt).display(),
            k.display(),
            ca.map(|c| format!("\"{}\"", cert(c).display()))
                .unwrap_or_default()
        ));
    }
    let file = dir.join("pg_hosts.conf");
    std::fs::write(&file, text).unwrap();
    let mut c = localhost_config(dir);
    c.hosts_file(file);
    c
}

fn serve(c: ServerTlsConfig) -> TestServer {
    TestServer::with(ServerPolicy::new(), c.build().unwrap())
}

#[test]
fn names_select_identities_case_insensitively_with_default_and_no_sni_entries() {
    let d = tempfile::tempdir().unwrap();
    let c = hosts(
        d.path(),
        &[
            (
                "common-name.pg-ssltest.test",
                "server-cn-only+server_ca.crt",
                "server-cn-only.key",
                None,
            ),
            ("*", "server-wildcard.crt", "server-wildcard.key", None),
            (
                "/no_sni/",
                "server-single-alt-name.crt",
                "server-single-alt-name.key",
                None,
            ),
        ],
    );
    let srv = serve(c);
    let (_, s) = pg_connect(
        srv.port,
        How::SslRequest,
        connector(None),
        Some("Common-Name.PG-SSLTEST.test"),
        "a",
    )
    .unwrap();
    assert_eq!(cn(&s), "common-name.pg-ssltest.test");
    let Seen::Startup {
        session: Some(info),
        ..
    } = srv.next()
    else {
        panic!()
    };
    assert_eq!(
        info.sni.as_deref(),
        Some("Common-Name.PG-SSLTEST.test"),
        "the SNI is reported"
    );

    let mut wildcard_ok = connector(None);
    wildcard_ok.set_ca_file(cert("root+server_ca.crt")).unwrap();
    let (_, s) = pg_connect(
        srv.port,
        How::SslRequest,
        wildcard_ok,
        Some("other.example"),
        "a",
    )
    .unwrap();
    assert_eq!(
        cn(&s),
        "*.pg-ssltest.test",
        "an unknown name gets the default entry"
    );
    let _ = srv.next();

    let mut no_sni = connector(None);
    no_sni.set_ca_file(cert("root+server_ca.crt")).unwrap();
    let (_, s) = pg_connect(
        srv.port,
        How::Direct,
        {
            let mut b = no_sni;
            b.set_alpn_protos(b"\x0apostgresql").unwrap();
            b
        },
        None,
        "a",
    )
    .unwrap();
    assert_eq!(
        cn(&s),
        "",
        "no SNI gets the /no_sni/ entry (a certificate without CN)"
    );
    let san = s
        .ssl()
        .peer_certificate()
        .unwrap()
        .subject_alt_names()
        .unwrap();
    assert_eq!(
        san.iter().next().unwrap().dnsname(),
        Some("single.alt-name.pg-ssltest.test")
    );
    let _ = srv.next();
}

#[test]
fn unknown_name_without_default_is_unrecognized_name() {
    let d = tempfile::tempdir().unwrap();
    let c = hosts(
        d.path(),
        &[(
            "localhost",
            "server-localhost+server_ca.crt",
            "server-localhost.key",
            None,
        )],
    );
    let srv = serve(c);
    let (_, s) = pg_connect(
        srv.port,
        How::SslRequest,
        connector(None),
        Some("LOCALHOST"),
        "a",
    )
    .unwrap();
    assert_eq!(cn(&s), "localhost");
    let _ = srv.next();
    let e = pg_connect(
        srv.port,
        How::SslRequest,
        connector(None),
        Some("nobody.example"),
        "a",
    )
    .unwrap_err();
    assert!(e.contains("unrecognized name"), "{e}");
    assert!(matches!(srv.next(), Seen::Refused(_)));
    // No SNI and neither `*` nor `/no_sni/`: missing_extension.
    let e = pg_connect(srv.port, How::SslRequest, connector(None), None, "a").unwrap_err();
    assert!(e.contains("missing extension"), "{e}");
    assert!(matches!(srv.next(), Seen::Refused(_)));
}

#[test]
fn each_host_keeps_its_own_ca_store() {
    let d = tempfile::tempdir().unwrap();
    let c = hosts(
        d.path(),
        &[
            (
                "localhost",
                "server-localhost+server_ca.crt",
                "server-localhost.key",
                Some("root+client_ca.crt"),
            ),
            (
                "*",
                "server-cn-only+server_ca.crt",
                "server-cn-only.key",
                None,
            ),
        ],
    );
    let srv = serve(c);
    let with_cert = || {
        let mut b = connector(None);
        b.set_certificate_chain_file(cert("client.crt")).unwrap();
        b.set_private_key_file(
            key_copy(d.path(), "client.key", 0o600),
            openssl::ssl::SslFiletype::PEM,
        )
        .unwrap();
        b
    };
    // The host with a CA asks for, verifies and reports the client certificate.
    pg_connect(
        srv.port,
        How::SslRequest,
        with_cert(),
        Some("localhost"),
        "a",
    )
    .unwrap();
    let Seen::Startup {
        session: Some(info),
        ..
    } = srv.next()
    else {
        panic!()
    };
    assert_eq!(
        info.peer.expect("requested").cn.as_deref(),
        Some("ssltestuser")
    );
    // The default host has no CA: no certificate is requested.
    pg_connect(
        srv.port,
        How::SslRequest,
        with_cert(),
        Some("elsewhere.example"),
        "a",
    )
    .unwrap();
    let Seen::Startup {
        session: Some(info),
        ..
    } = srv.next()
    else {
        panic!()
    };
    assert!(info.peer.is_none());
}

#[test]
fn a_broken_host_entry_names_the_host_and_file() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("pg_hosts.conf");
    std::fs::write(
        &file,
        "db.example /nonexistent/db.crt /nonexistent/db.key\n",
    )
    .unwrap();
    let e = localhost_config(d.path())
        .hosts_file(&file)
        .build()
        .unwrap_err();
    assert_eq!(e.to_string(), "SSL configuration for host \"db.example\"");
    assert_eq!(
        e.report(),
        "SSL configuration for host \"db.example\": could not load server certificate file \"/nonexistent/db.crt\": No such file or directory"
    );
}

#[test]
fn identities_given_in_code() {
    use pgssl::tls::{HostEntry, Identity};
    let d = tempfile::tempdir().unwrap();
    let entry = HostEntry::new(
        "common-name.pg-ssltest.test",
        Identity::new(
            cert("server-cn-only+server_ca.crt"),
            key_copy(d.path(), "server-cn-only.key", 0o600),
        ),
    );
    let mut c = localhost_config(d.path());
    c.hosts(vec![entry]);
    let srv = serve(c);
    let (_, s) = pg_connect(
        srv.port,
        How::SslRequest,
        connector(None),
        Some("common-name.pg-ssltest.test"),
        "a",
    )
    .unwrap();
    assert_eq!(cn(&s), "common-name.pg-ssltest.test");
    let _ = srv.next();
    let e = pg_connect(
        srv.port,
        How::SslRequest,
        connector(None),
        Some("localhost"),
        "a",
    )
    .unwrap_err();
    assert!(e.contains("unrecognized name"), "{e}");
}
