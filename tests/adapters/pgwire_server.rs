//! examples/pgwire_server.rs as a black box: pgssl negotiates, pgwire serves. Real clients —
//! psql (libpq 15), psycopg (libpq 18: direct SSL, cancel) and pgbench (50 clients) — against
//! it, and the hand-off's guard against StartupMessage parameters that would shadow the TLS
//! facts in pgwire's metadata.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::example_proc::{
    Example, SERVER_READY, START_TIMEOUT, cert, clean, key_copy, psql, python_with_libpq, run,
};

/// The pgwire example with these arguments (after `--listen`).
fn pgwire_server(args: &[&str]) -> Example {
    Example::try_start("pgwire_server", args, SERVER_READY, None, START_TIMEOUT).unwrap_or_else(
        |(status, log)| {
            panic!("the pgwire_server example exited before it was ready: {status}\n{log}")
        },
    )
}

fn base(ex: &Example) -> String {
    format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres",
        ex.port
    )
}

/// `select * from pg_stat_ssl` as psql prints it (`-A -t`): `pid|ssl|version|cipher|bits|
/// client_dn|client_serial|issuer_dn|alpn|sni`.
fn ssl_row(conninfo: &str) -> Vec<String> {
    let out = psql(conninfo, "select * from pg_stat_ssl");
    assert!(out.success(), "{out}");
    out.stdout.trim().split('|').map(str::to_owned).collect()
}

#[test]
fn psql_require_and_verify_full_with_the_generated_certificate() {
    let ex = pgwire_server(&[]);
    let require = format!("{} sslmode=require", base(&ex));
    let out = psql(&require, "select 1");
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "1");
    let row = ssl_row(&require);
    assert_eq!(
        row[1..4],
        ["t", "TLSv1.3", "TLS_AES_256_GCM_SHA384"],
        "{row:?}"
    );
    // libpq 15 sends SNI (localhost), no ALPN; no client certificate.
    assert_eq!(row[5..10], ["", "", "", "", "localhost"], "{row:?}");

    let full = format!(
        "{} sslmode=verify-full sslrootcert={}",
        base(&ex),
        ex.cert().display()
    );
    assert_eq!(ssl_row(&full)[1], "t");
    ex.wait_log(
        0,
        "connection authorized: user=postgres database=postgres SSL enabled (protocol=TLSv1.3",
    );

    // Plaintext is allowed (PostgreSQL's default): pgwire sees is_secure() false, no facts.
    let row = ssl_row(&format!("{} sslmode=disable", base(&ex)));
    assert_eq!(row[1..], ["f", "", "", "", "", "", "", "", ""], "{row:?}");
}

#[test]
fn psql_verify_full_with_given_certificate_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_copy(dir.path(), "server-localhost.key");
    let client_key = key_copy(dir.path(), "client.key");
    let crt = cert("server-localhost+server_ca.crt");
    let ca = cert("root+client_ca.crt");
    let args = [
        format!("ssl_cert_file={}", crt.display()),
        format!("ssl_key_file={}", key.display()),
        format!("ssl_ca_file={}", ca.display()),
    ];
    let args: Vec<&str> = args.iter().flat_map(|a| ["-c", a.as_str()]).collect();
    let ex = pgwire_server(&args).keeping(dir);
    let conninfo = format!(
        "{} sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
        base(&ex),
        cert("root_ca.crt").display(),
        cert("client.crt").display(),
        client_key.display()
    );
    let row = ssl_row(&conninfo);
    assert_eq!(row[1], "t", "{row:?}");
    // The client certificate's facts reached pgwire's metadata: pg_stat_ssl's client_dn,
    // client_serial and issuer_dn.
    assert_eq!(row[5], "/CN=ssltestuser", "{row:?}");
    assert!(row[6].parse::<u128>().is_ok(), "{row:?}");
    assert!(row[7].contains("client certs"), "{row:?}");
}

/// Runs a psycopg script with the conninfo as argv[1].
fn psycopg_script(script: &str, conninfo: &str) -> crate::support::example_proc::Output {
    let py = python_with_libpq(
        18,
        "the pgwire example's psycopg tests (sslnegotiation=direct)",
    );
    let mut c = clean(py);
    c.args(["-c", script, conninfo]);
    run(&mut c, &format!("psycopg {conninfo:?}"))
}

/// The extended protocol (psycopg's `execute`): `select 1` and pg_stat_ssl's row.
const PSYCOPG_ROWS: &str = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as c:
    print(c.execute("select 1").fetchone()[0])
    print("|".join("" if v is None else str(v) for v in c.execute("select * from pg_stat_ssl").fetchone()))
"#;

#[test]
fn psycopg_require_verify_full_and_direct_ssl() {
    let ex = pgwire_server(&[]);
    let root = ex.cert().display().to_string();
    for (mode, alpn) in [
        ("sslmode=require", "postgresql"),
        (
            &*format!("sslmode=verify-full sslrootcert={root}"),
            "postgresql",
        ),
        (
            &*format!("sslmode=verify-full sslrootcert={root} sslnegotiation=direct"),
            "postgresql",
        ),
    ] {
        let mark = ex.mark();
        let out = psycopg_script(PSYCOPG_ROWS, &format!("{} {mode}", base(&ex)));
        assert!(out.success(), "{mode}: {out}");
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[0], "1", "{mode}: {out}");
        let row: Vec<&str> = lines[1].split('|').collect();
        assert_eq!(
            row[1..5],
            ["True", "TLSv1.3", "TLS_AES_256_GCM_SHA384", "256"],
            "{mode}"
        );
        assert_eq!(row[8..10], [alpn, "localhost"], "{mode}: {row:?}");
        let how = if mode.contains("direct") {
            "direct SSL connection accepted"
        } else {
            "SSLRequest accepted"
        };
        ex.wait_log(mark, how);
    }
}

/// `conn.cancel()` during `select pg_sleep(10)`: the CancelRequest reaches pgssl, then
/// pgwire's ConnectionManager, and the query ends with 57014.
const PSYCOPG_CANCEL: &str = r#"
import sys, threading, time, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as c:
    threading.Timer(0.5, c.cancel).start()
    t = time.monotonic()
    try:
        c.execute("select pg_sleep(10)")
        print("not canceled")
    except psycopg.errors.QueryCanceled as e:
        print(e.sqlstate, str(e).strip(), round(time.monotonic() - t) < 5)
    print(c.execute("select 1").fetchone()[0])
"#;

#[test]
fn psycopg_cancel_reaches_pgwire() {
    let ex = pgwire_server(&[]);
    let mark = ex.mark();
    let out = psycopg_script(PSYCOPG_CANCEL, &format!("{} sslmode=require", base(&ex)));
    assert!(out.success(), "{out}");
    assert_eq!(
        out.stdout.trim(),
        "57014 canceling statement due to user request True\n1",
        "{out}"
    );
    let log = ex.wait_log(mark, "cancel request for process");
    assert!(log.contains("accepted"), "{log}");
}

/// pgbench, or a panic saying how to install it.
fn pgbench() -> PathBuf {
    let pg15 = PathBuf::from("/usr/lib/postgresql/15/bin/pgbench");
    if pg15.is_file() {
        return pg15;
    }
    let found = Command::new("pgbench").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "pgbench is missing: `apt-get install postgresql` (it ships /usr/lib/postgresql/15/bin/pgbench; scripts/test.sh installs it)"
    );
    PathBuf::from("pgbench")
}

#[test]
fn pgbench_50_clients_over_tls() {
    let ex = pgwire_server(&[]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("select1.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let mut c = clean(pgbench());
    c.arg(format!("{} sslmode=require", base(&ex)))
        .args(["-n", "-c", "50", "-j", "2", "-t", "20", "-f"])
        .arg(&script);
    let out = run(&mut c, "pgbench -c 50");
    assert!(out.success(), "{out}");
    assert!(
        out.stdout
            .contains("number of transactions actually processed: 1000/1000"),
        "{out}"
    );
    assert!(
        out.stdout.contains("number of failed transactions: 0"),
        "{out}"
    );
    // The figures, for the record (`cargo test -- --nocapture`).
    for line in out.stdout.lines().filter(|l| {
        l.starts_with("latency average")
            || l.starts_with("initial connection")
            || l.starts_with("tps")
    }) {
        println!("pgbench -c 50 -j 2 -t 20 sslmode=require: {line}");
    }
}

/// Reads what the server sends until it closes (or 5 s pass).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn startup_parameters_named_like_tls_facts_are_refused_and_gssenc_is_declined() {
    let ex = pgwire_server(&[]);
    // A plaintext client claiming a TLS session through a StartupMessage parameter: refused
    // as PostgreSQL refuses a parameter it does not know, before pgwire copies it.
    let mut s = TcpStream::connect(("127.0.0.1", ex.port)).unwrap();
    s.write_all(&crate::support::startup(&[
        ("user", "postgres"),
        ("ssl_version", "TLSv1.3"),
    ]))
    .unwrap();
    let reply = read_all(&mut s);
    assert_eq!(reply.first(), Some(&b'E'), "{reply:?}");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("42704"), "{text}");
    assert!(
        text.contains("unrecognized configuration parameter \"ssl_version\""),
        "{text}"
    );

    // GSSENCRequest: 'N', then a plaintext StartupMessage is served by pgwire.
    let mut s = TcpStream::connect(("127.0.0.1", ex.port)).unwrap();
    s.write_all(&crate::support::packet(80877104, &[])).unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).unwrap();
    assert_eq!(&n, b"N");
    s.write_all(&crate::support::startup(&[("user", "postgres")]))
        .unwrap();
    let mut first = [0u8; 9];
    s.read_exact(&mut first).unwrap();
    // AuthenticationOk.
    assert_eq!(first, [b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
}
