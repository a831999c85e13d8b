//! `pgssl::tokio_postgres` (feature `tokio-postgres`) against a real PostgreSQL 15 server, with
//! psql (libpq 15) run side by side on the same connection string: both must connect with the
//! same `ssl` (pg_stat_ssl), or both fail with psql's output containing the first line of
//! pgssl's message. One accepted difference, as in tests/tls/client_tls.rs: pgssl appends
//! OpenSSL's verification reason to "SSL error: certificate verify failed" (`…: certificate
//! revoked`), which libpq 15 does not print.
//!
//! Needs the PostgreSQL 15 server and psql (`apt-get install postgresql`; scripts/test.sh
//! installs them): a missing one fails the test with that hint, never skips it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::pg::Postgres;

use ::tokio_postgres::SimpleQueryMessage;
use pgssl::tls::ClientTlsConfig;
use pgssl::tokio_postgres::{Error, MakeTlsConnector, connect, connect_config};

const QUERY: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
const CN_HOST: &str = "common-name.pg-ssltest.test";

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs")
}

fn cert(name: &str) -> String {
    certs().join(name).to_str().unwrap().to_owned()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Connected { ssl: bool },
    Failed(String),
}

/// `ssl` of pg_stat_ssl for the client's session.
async fn ssl_of(client: &::tokio_postgres::Client) -> Result<bool, String> {
    let rows = client
        .simple_query(QUERY)
        .await
        .map_err(|e| e.to_string())?;
    let ssl = rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or("no row")?;
    Ok(ssl == "t")
}

/// pgssl::tokio_postgres with `conninfo`, `HOME` an empty directory (no ~/.postgresql files).
fn pgssl_outcome(conninfo: &str) -> Outcome {
    let home = tempfile::tempdir().unwrap();
    let mut config = match ClientTlsConfig::from_conninfo(conninfo) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    config.home = Some(home.path().to_path_buf());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        match connect_config(&config).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                match ssl_of(&client).await {
                    Ok(ssl) => Outcome::Connected { ssl },
                    Err(e) => Outcome::Failed(format!("query failed: {e}")),
                }
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    })
}

/// psql with `conninfo`, `HOME` an empty directory, no PG* variables, English messages.
fn psql_outcome(conninfo: &str) -> Outcome {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args([
        "-k", "5", "60", "psql", conninfo, "-X", "-w", "-A", "-t", "-c", QUERY,
    ]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home.path())
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .stdin(Stdio::null());
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("could not run psql ({e}): `apt-get install postgresql-client` (scripts/test.sh installs it)")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(
        out.status.code(),
        Some(127),
        "psql is not installed: `apt-get install postgresql-client` (scripts/test.sh installs it)\n{stderr}"
    );
    if !out.status.success() {
        return Outcome::Failed(stderr);
    }
    match stdout.as_str() {
        "t" => Outcome::Connected { ssl: true },
        "f" => Outcome::Connected { ssl: false },
        other => Outcome::Failed(format!("unexpected psql output {other:?}\n{stderr}")),
    }
}

/// Runs both clients; checks the expected outcome (`Err(text)`: a failure whose first line is
/// `text`) and that they agree. Returns both outcomes, for the report.
fn side_by_side(conninfo: &str, expect: Result<bool, &str>) -> (Outcome, Outcome) {
    let pgssl = pgssl_outcome(conninfo);
    let psql = psql_outcome(conninfo);
    println!("{conninfo}\n  pgssl: {pgssl:?}\n  psql:  {psql:?}");
    match (&expect, &pgssl) {
        (Ok(ssl), Outcome::Connected { ssl: got }) if ssl == got => {}
        (Err(text), Outcome::Failed(e)) if e.lines().next() == Some(*text) => {}
        _ => panic!("{conninfo}: expected {expect:?}, pgssl gave {pgssl:?} (psql: {psql:?})"),
    }
    match (&pgssl, &psql) {
        (Outcome::Connected { ssl: a }, Outcome::Connected { ssl: b }) => {
            assert_eq!(a, b, "{conninfo}: ssl differs; psql: {psql:?}")
        }
        (Outcome::Failed(p), Outcome::Failed(l)) => {
            let line = p.lines().next().unwrap_or("");
            // The one accepted difference (see the module documentation).
            let libpq15 = line
                .strip_prefix("SSL error: certificate verify failed: ")
                .map(|_| "SSL error: certificate verify failed");
            assert!(
                l.contains(line) || libpq15.is_some_and(|t| l.contains(&format!("{t}\n"))),
                "{conninfo}: psql's output does not contain pgssl's first line {line:?}\n  psql: {l}"
            );
        }
        _ => panic!("{conninfo}: pgssl {pgssl:?}, psql {psql:?}"),
    }
    (pgssl, psql)
}

/// A server with the CN-only certificate (and its intermediate): `scramuser` (password
/// `scram-pw`) by SCRAM over TLS only, `ssluser` over TLS only, `nossluser` over plaintext
/// only, `postgres` either way.
fn server() -> Postgres {
    let pg = Postgres::builder("server-cn-only+server_ca.crt", "server-cn-only.key")
        .hba(
            "hostssl all scramuser 127.0.0.1/32 scram-sha-256
hostssl all ssluser 127.0.0.1/32 trust
hostnossl all nossluser 127.0.0.1/32 trust
host all postgres 127.0.0.1/32 trust
",
        )
        .setting("password_encryption", "scram-sha-256")
        .start();
    pg.psql_admin("CREATE ROLE scramuser LOGIN PASSWORD 'scram-pw'");
    pg
}

fn base(pg: &Postgres, host: &str, user: &str) -> String {
    format!(
        "host={host} hostaddr=127.0.0.1 port={} user={user} dbname=postgres",
        pg.port
    )
}

#[test]
fn verify_full_with_scram_sha_256_plus_and_channel_binding_require() {
    let pg = server();
    let root = cert("root+server_ca.crt");
    let conninfo = format!(
        "{} password=scram-pw sslmode=verify-full sslrootcert={root} channel_binding=require",
        base(&pg, CN_HOST, "scramuser")
    );
    side_by_side(&conninfo, Ok(true));

    // connect() itself (the PG* environment applied first) from a spawned task: the future is
    // Send; channel_binding=require means tokio-postgres authenticated with
    // SCRAM-SHA-256-PLUS over the tls-server-end-point of the server's certificate.
    let conninfo: &'static str = Box::leak(conninfo.into_boxed_str());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ssl = rt.block_on(async {
        let (client, connection) = tokio::spawn(connect(conninfo))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(connection);
        ssl_of(&client).await
    });
    assert_eq!(ssl, Ok(true));

    // The wrong password: the server's refusal, in psql's words.
    let wrong = format!(
        "{} password=nope sslmode=verify-full sslrootcert={root} channel_binding=require",
        base(&pg, CN_HOST, "scramuser")
    );
    side_by_side(
        &wrong,
        Err("FATAL:  password authentication failed for user \"scramuser\""),
    );
}

#[test]
fn verify_full_failures_read_as_psql_reads_them() {
    let pg = server();
    let root = cert("root+server_ca.crt");
    // The wrong host name.
    side_by_side(
        &format!(
            "{} sslmode=verify-full sslrootcert={root}",
            base(&pg, "wronghost.test", "postgres")
        ),
        Err(
            "server certificate for \"common-name.pg-ssltest.test\" does not match host name \"wronghost.test\"",
        ),
    );
    // The wrong CA.
    side_by_side(
        &format!(
            "{} sslmode=verify-full sslrootcert={}",
            base(&pg, CN_HOST, "postgres"),
            cert("other_ca.crt")
        ),
        Err("SSL error: certificate verify failed: unable to get local issuer certificate"),
    );
    // require with a root file verifies the chain (libpq: as verify-ca), not the name.
    side_by_side(
        &format!(
            "{} sslmode=require sslrootcert={}",
            base(&pg, CN_HOST, "postgres"),
            cert("other_ca.crt")
        ),
        Err("SSL error: certificate verify failed: unable to get local issuer certificate"),
    );
    side_by_side(
        &format!(
            "{} sslmode=require sslrootcert={root}",
            base(&pg, "wronghost.test", "postgres")
        ),
        Ok(true),
    );
}

#[test]
fn revoked_server_certificate_with_sslcrl() {
    let pg = Postgres::builder("server-revoked.crt", "server-revoked.key").start();
    let root = cert("root+server_ca.crt");
    let crl = cert("root+server.crl");
    side_by_side(
        &format!(
            "{} sslmode=verify-full sslrootcert={root} sslcrl={crl}",
            base(&pg, CN_HOST, "postgres")
        ),
        Err("SSL error: certificate verify failed: certificate revoked"),
    );
    // Without the CRL it connects; under prefer the failed handshake falls back to plaintext.
    side_by_side(
        &format!(
            "{} sslmode=verify-full sslrootcert={root}",
            base(&pg, CN_HOST, "postgres")
        ),
        Ok(true),
    );
    side_by_side(
        &format!(
            "{} sslmode=prefer sslrootcert={root} sslcrl={crl}",
            base(&pg, CN_HOST, "postgres")
        ),
        Ok(false),
    );
}

#[test]
fn prefer_and_allow_fall_back_over_a_new_connection() {
    let pg = server();
    // prefer: TLS refused by pg_hba.conf (hostnossl only), then plaintext.
    side_by_side(
        &format!("{} sslmode=prefer", base(&pg, CN_HOST, "nossluser")),
        Ok(false),
    );
    // require: no fallback.
    side_by_side(
        &format!("{} sslmode=require", base(&pg, CN_HOST, "nossluser")),
        Err(
            "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"nossluser\", database \"postgres\", SSL encryption",
        ),
    );
    // allow: plaintext first, refused (hostssl only), then TLS.
    side_by_side(
        &format!("{} sslmode=allow", base(&pg, CN_HOST, "ssluser")),
        Ok(true),
    );
    side_by_side(
        &format!("{} sslmode=allow", base(&pg, CN_HOST, "nossluser")),
        Ok(false),
    );
    // disable: no TLS, no fallback.
    side_by_side(
        &format!("{} sslmode=disable", base(&pg, CN_HOST, "ssluser")),
        Err(
            "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"ssluser\", database \"postgres\", no encryption",
        ),
    );
    side_by_side(
        &format!("{} sslmode=prefer", base(&pg, CN_HOST, "ssluser")),
        Ok(true),
    );
}

/// A TLS context that cannot be built (a root certificate file with no certificate in it) is a
/// failed TLS attempt: `prefer` goes on in plaintext over a new connection, `require` fails
/// with the file's error, as libpq (whose initialize_SSL fails the same way).
#[test]
fn prefer_falls_back_to_plaintext_when_the_tls_context_cannot_be_built() {
    let pg = server();
    let not_a_cert = cert("README.md");
    side_by_side(
        &format!(
            "{} sslmode=prefer sslrootcert={not_a_cert}",
            base(&pg, CN_HOST, "postgres")
        ),
        Ok(false),
    );
    let failed = format!(
        "could not read root certificate file \"{not_a_cert}\": no certificate or crl found"
    );
    side_by_side(
        &format!(
            "{} sslmode=require sslrootcert={not_a_cert}",
            base(&pg, CN_HOST, "postgres")
        ),
        Err(&failed),
    );
}

/// A client certificate the server refuses (from a CA its ssl_ca_file does not hold): with TLS
/// 1.3 the client's handshake is over before the server's alert, which arrives on the first
/// read and reads `SSL error: <OpenSSL's reason>`, as in libpq.
#[test]
fn refused_client_certificate_reads_as_an_ssl_error() {
    use std::os::unix::fs::PermissionsExt;
    let pg = server();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("client-other-ca.key");
    std::fs::copy(certs().join("client-other-ca.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    side_by_side(
        &format!(
            "{} sslmode=require sslcert={} sslkey={}",
            base(&pg, CN_HOST, "ssluser"),
            cert("client-other-ca.crt"),
            key.display()
        ),
        Err("SSL error: tlsv1 alert unknown ca"),
    );
}

/// The connector alone, under tokio-postgres's own `Config::connect` (its sslmode decides
/// whether TLS is used; the connector verifies as its configuration says, with the host name
/// tokio-postgres gives it).
#[test]
fn make_tls_connector_under_tokio_postgres_config_connect() {
    let pg = server();
    let root = cert("root+server_ca.crt");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let make = MakeTlsConnector::new(
        ClientTlsConfig::from_conninfo(&format!("sslmode=verify-full sslrootcert={root}"))
            .unwrap()
            .home(tempfile::tempdir().unwrap().path()),
    )
    .unwrap();
    let run = |host: &str| {
        let config: ::tokio_postgres::Config = format!(
            "host={host} hostaddr=127.0.0.1 port={} user=scramuser password=scram-pw dbname=postgres sslmode=require channel_binding=require",
            pg.port
        )
        .parse()
        .unwrap();
        let make = make.clone();
        rt.block_on(async move {
            let (client, connection) = config.connect(make).await.map_err(|e| {
                let mine = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<Error>());
                mine.map_or_else(|| e.to_string(), ToString::to_string)
            })?;
            tokio::spawn(connection);
            ssl_of(&client).await
        })
    };
    assert_eq!(run(CN_HOST), Ok(true));
    assert_eq!(
        run("wronghost.test"),
        Err(
            "server certificate for \"common-name.pg-ssltest.test\" does not match host name \"wronghost.test\""
                .to_owned()
        )
    );
}

/// What tokio-postgres cannot express is refused before any connection, saying so.
#[test]
fn unsupported_parameters_are_refused_with_a_reason() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refused = |conninfo: &str| match rt.block_on(connect(conninfo)) {
        Err(e @ Error::Unsupported(_)) => e.to_string(),
        Err(e) => panic!("{conninfo}: {e:?}"),
        Ok(_) => panic!("{conninfo}: connected"),
    };
    assert_eq!(
        refused("host=127.0.0.1 port=1 gssencmode=require"),
        "gssencmode value \"require\" invalid when GSSAPI support is not compiled in"
    );
    assert!(
        refused("host=127.0.0.1 port=1 target_session_attrs=read-write").starts_with(
            "target_session_attrs=\"read-write\" cannot be honoured over tokio-postgres"
        )
    );
    // A keyword libpq does not know is refused as libpq refuses it.
    match rt.block_on(connect("host=127.0.0.1 port=1 nonsense=1")) {
        Err(e @ Error::Config(_)) => {
            assert_eq!(e.to_string(), "invalid connection option \"nonsense\"")
        }
        other => panic!("{:?}", other.err()),
    }
}

/// `sslnegotiation=direct` (PostgreSQL 17; PostgreSQL 15 and psql 15 have none): against
/// pgssl's own test server, which answers the StartupMessage with a FATAL describing the
/// session. tokio-postgres starts TLS at once through pgssl's connector, ALPN "postgresql"
/// selected, verify-full passed, and the StartupMessage arrives over TLS; the weak modes are
/// refused with libpq's text.
#[test]
fn direct_ssl_through_the_connector() {
    use crate::support::tls::{Seen, TestServer, localhost_config};
    let d = tempfile::tempdir().unwrap();
    let srv = TestServer::with(
        pgssl::server::ServerPolicy::new().direct_ssl(true),
        localhost_config(d.path()).build().unwrap(),
    );
    let conninfo = format!(
        "host=localhost port={} user=u sslmode=verify-full sslnegotiation=direct sslrootcert={}",
        srv.port,
        cert("root_ca.crt")
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(pgssl::tokio_postgres::connect(&conninfo))
        .err()
        .expect("the test server refuses every StartupMessage");
    assert!(matches!(e, Error::Server(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("FATAL:  pgssl test server: ssl=on version=TLSv1.3"),
        "{e}"
    );
    assert!(e.to_string().ends_with("alpn=postgresql user=u"), "{e}");
    match srv.next() {
        Seen::Startup {
            tls: true,
            session: Some(s),
            ..
        } => assert_eq!(s.alpn.as_deref(), Some(&b"postgresql"[..])),
        other => panic!("{other:?}"),
    }
    let weak = format!(
        "host=localhost port={} sslmode=prefer sslnegotiation=direct",
        srv.port
    );
    match rt.block_on(pgssl::tokio_postgres::connect(&weak)) {
        Err(e @ Error::Config(_)) => assert_eq!(
            e.to_string(),
            "weak sslmode \"prefer\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")"
        ),
        other => panic!("{:?}", other.err()),
    }
}
