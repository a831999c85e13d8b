//! The server side of PostgreSQL's src/test/ssl/t/001_ssltests.pl, published as data: client
//! certificates presented to the example server (examples/server.rs, built on pgssl) and to a
//! real PostgreSQL 15 configured the same way, by the same client, case by case.
//!
//! * Every group starts the example server (`--listen`, `-c` with the PKI's files, `--hba`) and
//!   a PostgreSQL 15 (tests/support/pg.rs) with the same certificate, key, CA, CRL and an
//!   equivalent pg_hba.conf (the same lines; PostgreSQL's databases and roles are created).
//! * Every case runs one client twice with the same conninfo, once per server: psql (libpq 15),
//!   or psycopg (its bundled libpq 18) where libpq 15 cannot (sslcertmode). The query is
//!   `select ssl, client_dn, client_serial, issuer_dn from pg_stat_ssl where pid =
//!   pg_backend_pid()`; the example server answers any query with one row that has those
//!   columns (and more), so both rows are compared column by column.
//! * An outcome is `connected: ssl=…, client_dn=…, client_serial=…, issuer_dn=…` or `failed:
//!   <the client's error>` (libpq's "connection to server at … failed:" prefix dropped, the
//!   PKI and key directories written `{certs}` and `{keys}`), or for the server-start cases
//!   `started` / `did not start: FATAL:  …` (the data directory written `{datadir}`).
//! * A case passes when both outcomes meet its expectation and are the same text; a deliberate
//!   difference would be declared on the case (`Case::difference`) with what PostgreSQL 15 gives
//!   and why (none is needed today: every case gives the same text on both servers).
//! * A case is named after its 001_ssltests.pl counterpart (PostgreSQL 15's file, and 16+'s for
//!   sslcertmode), with what differs from 001 in parentheses; cases 001 does not have describe
//!   themselves. Each case is appended as one JSON line to
//!   `target/conformance/certs-server.jsonl` (truncated once per run of this binary): suite,
//!   case, counterpart (001's test name or ""), postgresql, pgssl, match, difference.
//!
//! Every wait is bounded (clients 20 s, server start 20 s) and every child is killed when its
//! guard drops. Needs psql, the PostgreSQL 15 server and its `postgres` user, psycopg and the
//! openssl CLI: scripts/test.sh installs them. `PGSSL_TEST_VERBOSE=1` prints every case.

use crate::support::example_proc;
use crate::support::pg;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use example_proc::{
    CLIENT_TIMEOUT, Example, ResultsFile, Running, SERVER_READY, certs, clean, key_copy,
    manifest_dir, psql_command, python_with_libpq,
};
use pg::{PgConfig, Postgres};

/// How long the example server may take to say it is ready (or to exit).
const START_TIMEOUT: Duration = Duration::from_secs(20);

const QUERY: &str =
    "select ssl, client_dn, client_serial, issuer_dn from pg_stat_ssl where pid = pg_backend_pid()";
const COLUMNS: [&str; 4] = ["ssl", "client_dn", "client_serial", "issuer_dn"];
const SUITE: &str = "certificates, server side";

/// client-dn.crt's subject in RFC 2253 form: the user name `clientname=DN` wants.
const DN_USER: &str = "CN=ssltestuser-dn,OU=Testing,OU=Engineering,O=PGDG";
const CLIENT_CA_DN: &str = "/CN=Test CA for PostgreSQL SSL regression test client certs";

/// Every client's base conninfo (before the case's options): no host name check (the server
/// certificate is server-cn-only's), the server chain verified, no GSS attempt.
const BASE: &str = "host=localhost hostaddr=127.0.0.1 gssencmode=disable connect_timeout=10 sslmode=require sslrootcert={certs}/root+server_ca.crt";

fn cert(name: &str) -> String {
    example_proc::cert(name).display().to_string()
}

// ---------------------------------------------------------------------------------------------
// The example server

/// Starts the example server with these `-c` settings and pg_hba.conf text (written into
/// `dir`); `Err` with what it printed if it exits instead of getting ready.
fn start_example(settings: &[(String, String)], hba: &str, dir: &Path) -> Result<Example, String> {
    let hba_file = dir.join("pg_hba.conf");
    std::fs::write(&hba_file, hba).expect("pg_hba.conf for the example written");
    let mut args = Vec::new();
    for (k, v) in settings {
        args.push("-c".to_owned());
        args.push(format!("{k}={v}"));
    }
    args.push("--hba".to_owned());
    args.push(hba_file.display().to_string());
    Example::try_start("server", &args, SERVER_READY, None, START_TIMEOUT).map_err(|(_, log)| log)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL 15

/// Starts PostgreSQL; `Err` with the server's log when it does not start (pg.rs panics with it:
/// the panic is caught and its message returned).
fn start_pg(config: PgConfig) -> Result<Postgres, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.start())).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

/// The roles and databases 001_ssltests.pl's configure_test_server_for_ssl creates (pg.rs
/// creates ssltestuser and anotheruser), plus the two names of client-dn.crt.
fn prepare_pg(pg: &Postgres, databases: &[&str]) {
    pg.psql_admin(&format!(
        "CREATE ROLE yetanotheruser LOGIN; CREATE ROLE \"ssltestuser-dn\" LOGIN; CREATE ROLE \"{DN_USER}\" LOGIN;"
    ));
    for db in databases {
        pg.psql_admin(&format!("CREATE DATABASE {db}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// psql (libpq 15).
    Psql,
    /// psycopg with its bundled libpq 18.
    Psycopg,
    /// No client: the case is whether the servers start.
    Start,
}

/// The Python interpreter that has psycopg with libpq 16 or later (sslcertmode).
fn python() -> &'static str {
    python_with_libpq(16, "sslcertmode")
}

/// Prints the header and the row, `\x1f`-separated, as psql is told to: NULL as `NULL`, booleans
/// as `t`/`f` (PostgreSQL's `ssl` column is a boolean, the example server's is text).
const PSYCOPG_SCRIPT: &str = r#"
import sys, psycopg
def text(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "t" if v else "f"
    return str(v)
try:
    with psycopg.connect(sys.argv[1]) as c:
        cur = c.execute(sys.argv[2])
        row = cur.fetchone()
        print("\x1f".join(d.name for d in cur.description))
        print("\x1f".join(text(v) for v in row))
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(1)
"#;

/// How one attempt ended: the text compared and published.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Connected(Vec<(String, String)>),
    Failed(String),
    Started,
    DidNotStart(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Connected(cols) => {
                let cols: Vec<String> = cols.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "connected: {}", cols.join(", "))
            }
            Outcome::Failed(e) => write!(f, "failed: {e}"),
            Outcome::Started => write!(f, "started"),
            Outcome::DidNotStart(e) => write!(f, "did not start: {e}"),
        }
    }
}

/// Paths written the same way whichever server the client talked to.
struct Masks {
    keys: String,
}

impl Masks {
    fn apply(&self, s: &str) -> String {
        s.replace(&self.keys, "{keys}")
            .replace(&certs().display().to_string(), "{certs}")
    }
}

/// A client's error without libpq's per-attempt prefix ("psql: error: ", psycopg's
/// "connection failed: ", `connection to server at "…" (…), port N failed: `).
fn client_error(stderr: &str, masks: &Masks) -> String {
    let mut s = stderr.trim().to_owned();
    for prefix in ["psql: error: ", "connection failed: "] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.to_owned();
        }
    }
    while let Some(i) = s.find("connection to server at ") {
        match s[i..].find(" failed: ") {
            Some(j) => s.replace_range(i..i + j + " failed: ".len(), ""),
            None => break,
        }
    }
    masks.apply(s.trim())
}

/// The four compared columns of a `\x1f`-separated header line and row line.
fn row(stdout: &str) -> Result<Vec<(String, String)>, String> {
    let mut lines = stdout.lines();
    let (Some(head), Some(values)) = (lines.next(), lines.next()) else {
        return Err(format!("unexpected output {stdout:?}"));
    };
    let map: HashMap<&str, &str> = head.split('\x1f').zip(values.split('\x1f')).collect();
    COLUMNS
        .iter()
        .map(|c| match map.get(c) {
            Some(v) => Ok(((*c).to_owned(), (*v).to_owned())),
            None => Err(format!("no column {c} in {stdout:?}")),
        })
        .collect()
}

fn run_client(client: Client, conninfo: &str, masks: &Masks) -> Outcome {
    let mut cmd = match client {
        Client::Psql => {
            let mut c = psql_command();
            c.arg(conninfo).args([
                "-X",
                "-w",
                "-A",
                "-F",
                "\x1f",
                "-P",
                "footer=off",
                "-P",
                "null=NULL",
                "-c",
                QUERY,
            ]);
            c
        }
        Client::Psycopg => {
            let mut c = clean(python());
            c.args(["-c", PSYCOPG_SCRIPT, conninfo, QUERY]);
            c
        }
        Client::Start => unreachable!("no client for a start case"),
    };
    let what = format!("{client:?} {conninfo:?}");
    let Some(out) = Running::spawn(&mut cmd, &what).wait_timeout(CLIENT_TIMEOUT) else {
        return Outcome::Failed(format!(
            "{what} timed out after {CLIENT_TIMEOUT:?} (killed)"
        ));
    };
    if !out.status.success() {
        return Outcome::Failed(client_error(&out.stderr, masks));
    }
    match row(&out.stdout) {
        Ok(cols) => Outcome::Connected(cols),
        Err(e) => Outcome::Failed(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

/// What a case must give.
#[derive(Clone, Debug)]
enum Expect {
    /// Connected over SSL, with these column values.
    Connects(Vec<(&'static str, String)>),
    /// Failed, the error containing this text.
    Fails(&'static str),
    /// The server started.
    Starts,
    /// The server did not start, its FATAL containing this text.
    DoesNotStart(&'static str),
}

fn meets(expect: &Expect, o: &Outcome) -> bool {
    match (expect, o) {
        (Expect::Connects(want), Outcome::Connected(cols)) => {
            cols.iter().any(|(k, v)| k == "ssl" && v == "t")
                && want
                    .iter()
                    .all(|(k, v)| cols.iter().any(|(ck, cv)| ck == k && cv == v))
        }
        (Expect::Fails(text), Outcome::Failed(e)) => e.contains(text),
        (Expect::Starts, Outcome::Started) => true,
        (Expect::DoesNotStart(text), Outcome::DidNotStart(e)) => e.contains(text),
        _ => false,
    }
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    /// 001_ssltests.pl's test name, or "".
    counterpart: &'static str,
    client: Client,
    /// After BASE; `{certs}` and `{keys}` are replaced.
    opts: String,
    expect: Expect,
    /// A deliberate difference: what PostgreSQL 15 gives instead, and why.
    difference: Option<(Expect, &'static str)>,
}

fn case(
    name: impl Into<String>,
    counterpart: &'static str,
    opts: impl Into<String>,
    expect: Expect,
) -> Case {
    Case {
        name: name.into(),
        counterpart,
        client: Client::Psql,
        opts: opts.into(),
        expect,
        difference: None,
    }
}

impl Case {
    fn psycopg(mut self) -> Self {
        self.client = Client::Psycopg;
        self.name.push_str(" (psycopg, libpq 18)");
        self
    }
    fn start(mut self) -> Self {
        self.client = Client::Start;
        self
    }
    /// Declares a deliberate difference: PostgreSQL 15 gives `postgresql` instead, for reason
    /// `why` (published, and printed when the tests run). No case needs one today.
    #[allow(dead_code)]
    fn difference(mut self, postgresql: Expect, why: &'static str) -> Self {
        self.difference = Some((postgresql, why));
        self
    }
}

/// Connected with this client certificate in pg_stat_ssl.
fn connects_as(client_dn: &str) -> Expect {
    Expect::Connects(vec![
        ("client_dn", client_dn.to_owned()),
        ("issuer_dn", CLIENT_CA_DN.to_owned()),
    ])
}

fn no_client_cert() -> Expect {
    Expect::Connects(vec![
        ("client_dn", "NULL".to_owned()),
        ("client_serial", "NULL".to_owned()),
        ("issuer_dn", "NULL".to_owned()),
    ])
}

/// client.crt's serial number in decimal, from `openssl x509 -serial` (hexadecimal).
fn client_serial() -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(certs().join("client.crt"))
        .stdin(Stdio::null())
        .output()
        .expect("the openssl CLI (apt-get install openssl)");
    assert!(out.status.success(), "openssl x509 -serial failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().trim_start_matches("serial=");
    u128::from_str_radix(hex, 16)
        .unwrap_or_else(|e| panic!("serial {hex:?}: {e}"))
        .to_string()
}

/// `sslcert=… sslkey=…` for a certificate of the PKI and a key copy.
fn with_cert(crt: &str, key: &str) -> String {
    format!("sslcert={{certs}}/{crt} sslkey={{keys}}/{key}")
}

// ---------------------------------------------------------------------------------------------
// Results

/// One JSON line per case in target/conformance/certs-server.jsonl, truncated once per run.
static RESULTS: ResultsFile = ResultsFile::new(SUITE, || {
    manifest_dir().join("target/conformance/certs-server.jsonl")
});

// ---------------------------------------------------------------------------------------------
// Groups

/// One server configuration, for both servers.
struct Group {
    name: &'static str,
    /// The example's `-c` settings; `{dir}` is the example's private directory, where its key
    /// copy (`server.key`, 0600) is.
    example: Vec<(&'static str, String)>,
    /// The PKI key the example's `server.key` is a copy of.
    example_key: &'static str,
    pg: PgConfig,
    hba: &'static str,
    databases: &'static [&'static str],
    cases: Vec<Case>,
}

/// A server's start, as a start case sees it: the FATAL line of what it printed.
fn start_outcome<T>(r: &Result<T, String>) -> Outcome {
    match r {
        Ok(_) => Outcome::Started,
        Err(text) => Outcome::DidNotStart(
            text.lines()
                .find_map(|l| l.find("FATAL:").map(|i| l[i..].to_owned()))
                .unwrap_or_else(|| text.clone()),
        ),
    }
}

/// A start failure's text with `mask` applied.
fn mask_start(o: Outcome, mask: impl Fn(&str) -> String) -> Outcome {
    match o {
        Outcome::DidNotStart(t) => Outcome::DidNotStart(mask(&t)),
        o => o,
    }
}

/// Replaces a data directory (`<prefix><random>/data` for PostgreSQL, the example's directory)
/// with `{datadir}`.
fn mask_datadir(s: &str, prefix: &str) -> String {
    let mut out = s.to_owned();
    while let Some(i) = out.find(prefix) {
        let rest = &out[i + prefix.len()..];
        let end = rest.find('/').unwrap_or(rest.len());
        let mut stop = i + prefix.len() + end;
        if out[stop..].starts_with("/data") {
            stop += "/data".len();
        }
        out.replace_range(i..stop, "{datadir}");
    }
    out
}

fn run_group(group: Group) {
    let started = Instant::now();
    let ex_dir = tempfile::Builder::new()
        .prefix("pgssl-conformance-example.")
        .tempdir()
        .expect("a temporary directory");
    let keys = tempfile::tempdir().expect("a temporary directory");
    let ex_key = ex_dir.path().join("server.key");
    std::fs::copy(certs().join(group.example_key), &ex_key).unwrap();
    std::fs::set_permissions(&ex_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    for k in [
        "client.key",
        "client-der.key",
        "client-encrypted-pem.key",
        "client-encrypted-der.key",
        "client-revoked.key",
        "client-other-ca.key",
        "client-dn.key",
    ] {
        key_copy(keys.path(), k);
    }
    let loose = keys.path().join("client_wrongperms.key");
    std::fs::copy(certs().join("client.key"), &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();

    let ex_dir_text = ex_dir.path().display().to_string();
    let settings: Vec<(String, String)> = group
        .example
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                v.replace("{dir}", &ex_dir_text)
                    .replace("{certs}", &certs().display().to_string()),
            )
        })
        .collect();
    let hba = group.hba;
    let databases = group.databases;
    let pg_config = group.pg.hba(hba);
    // Both servers start at once.
    let (example, postgres) = thread::scope(|s| {
        let pg = s.spawn(move || {
            let pg = start_pg(pg_config);
            if let Ok(pg) = &pg {
                prepare_pg(pg, databases);
            }
            pg
        });
        let ex = start_example(&settings, hba, ex_dir.path());
        (ex, pg.join().expect("PostgreSQL start thread"))
    });
    let pg_prefix = std::env::temp_dir().join("pgssl-pg.").display().to_string();
    let masks = Masks {
        keys: keys.path().display().to_string(),
    };
    let verbose = std::env::var_os("PGSSL_TEST_VERBOSE").is_some();

    let mut failures = Vec::new();
    let mut differences = Vec::new();
    for c in &group.cases {
        let (pgssl, postgresql) = match c.client {
            Client::Start => (start_outcome(&example), start_outcome(&postgres)),
            client => {
                let opts = format!("{BASE} {}", c.opts)
                    .replace("{certs}", &certs().display().to_string())
                    .replace("{keys}", &masks.keys);
                let on = |port: Option<u16>| match port {
                    Some(port) => run_client(client, &format!("port={port} {opts}"), &masks),
                    None => Outcome::Failed("the server did not start".to_owned()),
                };
                (
                    on(example.as_ref().ok().map(|e| e.port)),
                    on(postgres.as_ref().ok().map(|p| p.port)),
                )
            }
        };
        // The example's directory holds only its key; PostgreSQL's is its data directory.
        let pgssl = mask_start(pgssl, |t| t.replace(&ex_dir_text, "{datadir}"));
        let postgresql = mask_start(postgresql, |t| mask_datadir(t, &pg_prefix));
        let pg_expect = c.difference.as_ref().map_or(&c.expect, |(e, _)| e);
        let matched = pgssl == postgresql;
        let mut problems = Vec::new();
        if !meets(&c.expect, &pgssl) {
            problems.push(format!("pgssl does not give the expected {:?}", c.expect));
        }
        if !meets(pg_expect, &postgresql) {
            problems.push(format!(
                "PostgreSQL 15 does not give the expected {pg_expect:?}"
            ));
        }
        match (&c.difference, matched) {
            (None, false) => problems.push("the two servers' outcomes differ".to_owned()),
            (Some((_, why)), false) => differences.push(format!("{}: {why}", c.name)),
            (Some(_), true) => {
                problems.push("a difference is declared but both servers gave the same".to_owned())
            }
            (None, true) => {}
        }
        let (pgssl_text, pg_text) = (pgssl.to_string(), postgresql.to_string());
        RESULTS.append(
            &c.name,
            c.counterpart,
            &pg_text,
            &pgssl_text,
            matched,
            c.difference.as_ref().map(|(_, why)| *why),
        );
        if verbose {
            eprintln!(
                "[{}] {}\n  pgssl (example server): {pgssl_text}\n  PostgreSQL 15: {pg_text}",
                group.name, c.name
            );
        }
        if !problems.is_empty() {
            failures.push(format!(
                "[{}] case {:?} [001: {:?}]\n  client: {:?}, options: {}\n  expected: {:?}\n  pgssl (example server): {pgssl_text}\n  PostgreSQL 15: {pg_text}\n  problems: {}",
                group.name,
                c.name,
                c.counterpart,
                c.client,
                c.opts,
                c.expect,
                problems.join("; ")
            ));
        }
    }
    if let Ok(ex) = &example
        && verbose
    {
        eprintln!("[{}] example server log:\n{}", group.name, ex.proc.stderr());
    }
    eprintln!(
        "[{}] {} cases in {:.1?}, {} deliberate differences, {} failed",
        group.name,
        group.cases.len(),
        started.elapsed(),
        differences.len(),
        failures.len()
    );
    for d in &differences {
        eprintln!("  difference: {d}");
    }
    if !failures.is_empty() {
        let logs = format!(
            "\n\nexample server log:\n{}\nPostgreSQL log:\n{}",
            example
                .as_ref()
                .map(|e| e.proc.stderr())
                .unwrap_or_else(|e| e.clone()),
            postgres
                .as_ref()
                .map(|p| p.log())
                .unwrap_or_else(|e| e.clone())
        );
        panic!(
            "[{}] {} of {} cases failed:\n\n{}{logs}",
            group.name,
            failures.len(),
            group.cases.len(),
            failures.join("\n\n")
        );
    }
}

/// server-cn-only (with its intermediate) and its key, the same on both servers.
fn cn_only(extra: &[(&'static str, String)]) -> (Vec<(&'static str, String)>, PgConfig) {
    let mut example = vec![
        ("ssl_cert_file", cert("server-cn-only+server_ca.crt")),
        ("ssl_key_file", "{dir}/server.key".to_owned()),
    ];
    let mut pg = Postgres::builder("server-cn-only+server_ca.crt", "server-cn-only.key");
    for (k, v) in extra {
        example.push((k, v.clone()));
        // pg.rs sets ssl_ca_file to its copy of root+client_ca.crt: later lines win.
        pg = pg.setting(k, v);
    }
    (example, pg)
}

/// configure_test_server_for_ssl's lines, plus certdb_cn with an explicit clientname=CN (and
/// the `cert` lines without a map: the user name is the CN, or the DN itself).
const HBA: &str = "\
hostssl trustdb all 127.0.0.1/32 trust
hostssl certdb all 127.0.0.1/32 cert
hostssl certdb_dn all 127.0.0.1/32 cert clientname=DN
hostssl certdb_cn all 127.0.0.1/32 cert clientname=CN
hostssl verifydb ssltestuser 127.0.0.1/32 trust clientcert=verify-full
hostssl verifydb anotheruser 127.0.0.1/32 trust clientcert=verify-full
hostssl verifydb yetanotheruser 127.0.0.1/32 trust clientcert=verify-ca
";
const ALL_DATABASES: &[&str] = &["trustdb", "certdb", "certdb_dn", "certdb_cn", "verifydb"];

const CERTDB: &str = "dbname=certdb user=ssltestuser";

// ---------------------------------------------------------------------------------------------
// The tests

/// ssl_ca_file=root+client_ca.crt, ssl_crl_file=root+client.crl: 001's "running server tests".
#[test]
fn client_certificates() {
    let (example, pg) = cn_only(&[
        ("ssl_ca_file", cert("root+client_ca.crt")),
        ("ssl_crl_file", cert("root+client.crl")),
    ]);
    let serial = client_serial();
    let cases = vec![
        case(
            "certificate authorization fails without client cert",
            "certificate authorization fails without client cert",
            format!("{CERTDB} sslcert=invalid"),
            Expect::Fails("FATAL:  connection requires a valid client certificate"),
        ),
        case(
            "certificate authorization succeeds with correct client cert in PEM format",
            "certificate authorization succeeds with correct client cert in PEM format",
            format!("{CERTDB} {}", with_cert("client.crt", "client.key")),
            connects_as("/CN=ssltestuser"),
        ),
        case(
            "certificate authorization succeeds with correct client cert in DER format",
            "certificate authorization succeeds with correct client cert in DER format",
            format!("{CERTDB} {}", with_cert("client.crt", "client-der.key")),
            connects_as("/CN=ssltestuser"),
        ),
        case(
            "certificate authorization succeeds with correct client cert in encrypted PEM format",
            "certificate authorization succeeds with correct client cert in encrypted PEM format",
            format!(
                "{CERTDB} {} sslpassword='dUmmyP^#+'",
                with_cert("client-encrypted.crt", "client-encrypted-pem.key")
            ),
            connects_as("/CN=ssltestuser"),
        ),
        // 001 expects success where libpq's OpenSSL can decrypt an encrypted DER key; libpq 15
        // (and 18) with OpenSSL 3 cannot, before any byte reaches a server.
        case(
            "certificate authorization succeeds with correct client cert in encrypted DER format (libpq with OpenSSL 3 cannot load the key: fails before any server is involved)",
            "certificate authorization succeeds with correct client cert in encrypted DER format",
            format!(
                "{CERTDB} {} sslpassword='dUmmyP^#+'",
                with_cert("client-encrypted.crt", "client-encrypted-der.key")
            ),
            Expect::Fails("could not load private key file \"{keys}/client-encrypted-der.key\""),
        ),
        case(
            "certificate authorization fails with correct client cert and wrong password in encrypted PEM format",
            "certificate authorization fails with correct client cert and wrong password in encrypted PEM format",
            format!(
                "{CERTDB} {} sslpassword='wrong'",
                with_cert("client-encrypted.crt", "client-encrypted-pem.key")
            ),
            Expect::Fails("private key file \"{keys}/client-encrypted-pem.key\": bad decrypt"),
        ),
        case(
            "certificate authorization fails because of file permissions",
            "certificate authorization fails because of file permissions",
            format!("{CERTDB} {}", with_cert("client.crt", "client_wrongperms.key")),
            Expect::Fails(
                "private key file \"{keys}/client_wrongperms.key\" has group or world access",
            ),
        ),
        case(
            "pg_stat_ssl with client certificate",
            "pg_stat_ssl with client certificate",
            format!("{CERTDB} {}", with_cert("client.crt", "client.key")),
            Expect::Connects(vec![
                ("client_dn", "/CN=ssltestuser".to_owned()),
                ("client_serial", serial),
                ("issuer_dn", CLIENT_CA_DN.to_owned()),
            ]),
        ),
        case(
            "pg_stat_ssl view without client certificate",
            "pg_stat_ssl view without client certificate",
            "dbname=trustdb user=ssltestuser sslcert=invalid",
            no_client_cert(),
        ),
        case(
            "certificate authorization fails with client cert belonging to another user",
            "certificate authorization fails with client cert belonging to another user",
            format!(
                "dbname=certdb user=anotheruser {}",
                with_cert("client.crt", "client.key")
            ),
            Expect::Fails("FATAL:  certificate authentication failed for user \"anotheruser\""),
        ),
        case(
            "certificate authorization fails with revoked client cert",
            "certificate authorization fails with revoked client cert",
            format!(
                "{CERTDB} {}",
                with_cert("client-revoked.crt", "client-revoked.key")
            ),
            Expect::Fails("SSL error: sslv3 alert certificate revoked"),
        ),
        case(
            "client certificate from an unknown CA (client-other-ca.crt)",
            "",
            format!(
                "{CERTDB} {}",
                with_cert("client-other-ca.crt", "client-other-ca.key")
            ),
            Expect::Fails("SSL error: tlsv1 alert unknown ca"),
        ),
        case(
            "auth_option clientcert=verify-full succeeds with matching username and Common Name",
            "auth_option clientcert=verify-full succeeds with matching username and Common Name",
            format!(
                "dbname=verifydb user=ssltestuser {}",
                with_cert("client.crt", "client.key")
            ),
            connects_as("/CN=ssltestuser"),
        ),
        case(
            "auth_option clientcert=verify-full fails with mismatching username and Common Name",
            "auth_option clientcert=verify-full fails with mismatching username and Common Name",
            format!(
                "dbname=verifydb user=anotheruser {}",
                with_cert("client.crt", "client.key")
            ),
            Expect::Fails("FATAL:  \"trust\" authentication failed for user \"anotheruser\""),
        ),
        case(
            "auth_option clientcert=verify-full fails without a client certificate",
            "",
            "dbname=verifydb user=anotheruser sslcert=invalid",
            Expect::Fails("FATAL:  connection requires a valid client certificate"),
        ),
        case(
            "auth_option clientcert=verify-ca succeeds with mismatching username and Common Name",
            "auth_option clientcert=verify-ca succeeds with mismatching username and Common Name",
            format!(
                "dbname=verifydb user=yetanotheruser {}",
                with_cert("client.crt", "client.key")
            ),
            connects_as("/CN=ssltestuser"),
        ),
        case(
            "auth_option clientcert=verify-ca fails without a client certificate",
            "",
            "dbname=verifydb user=yetanotheruser sslcert=invalid",
            Expect::Fails("FATAL:  connection requires a valid client certificate"),
        ),
        // 001 maps the DN to ssltestuser with pg_ident.conf (map=dn); without a map the user
        // name is the DN itself.
        case(
            "certificate authorization succeeds with DN mapping (no pg_ident map: the user name is the DN)",
            "certificate authorization succeeds with DN mapping",
            format!(
                "dbname=certdb_dn user='{DN_USER}' {}",
                with_cert("client-dn.crt", "client-dn.key")
            ),
            connects_as("/O=PGDG/OU=Engineering/OU=Testing/CN=ssltestuser-dn"),
        ),
        case(
            "clientname=DN fails when the DN is not the user name (client-dn.crt as ssltestuser)",
            "",
            format!(
                "dbname=certdb_dn user=ssltestuser {}",
                with_cert("client-dn.crt", "client-dn.key")
            ),
            Expect::Fails("FATAL:  certificate authentication failed for user \"ssltestuser\""),
        ),
        case(
            "clientname=DN compares the whole DN (client.crt, DN CN=ssltestuser, as ssltestuser)",
            "",
            format!(
                "dbname=certdb_dn user=ssltestuser {}",
                with_cert("client.crt", "client.key")
            ),
            Expect::Fails("FATAL:  certificate authentication failed for user \"ssltestuser\""),
        ),
        case(
            "certificate authorization succeeds with CN mapping (no pg_ident map: the user name is the CN)",
            "certificate authorization succeeds with CN mapping",
            format!(
                "dbname=certdb_cn user=ssltestuser-dn {}",
                with_cert("client-dn.crt", "client-dn.key")
            ),
            connects_as("/O=PGDG/OU=Engineering/OU=Testing/CN=ssltestuser-dn"),
        ),
        case(
            "cert compares the CN by default (client-dn.crt, CN ssltestuser-dn, as ssltestuser)",
            "",
            format!("{CERTDB} {}", with_cert("client-dn.crt", "client-dn.key")),
            Expect::Fails("FATAL:  certificate authentication failed for user \"ssltestuser\""),
        ),
        // sslcertmode (libpq 16+): psycopg.
        case(
            "certificate authorization succeeds with correct client cert and sslcertmode=require",
            "certificate authorization succeeds with correct client cert and sslcertmode=require",
            format!(
                "{CERTDB} sslcertmode=require {}",
                with_cert("client.crt", "client.key")
            ),
            connects_as("/CN=ssltestuser"),
        )
        .psycopg(),
        case(
            "certificate authorization succeeds with correct client cert and sslcertmode=allow",
            "certificate authorization succeeds with correct client cert and sslcertmode=allow",
            format!(
                "{CERTDB} sslcertmode=allow {}",
                with_cert("client.crt", "client.key")
            ),
            connects_as("/CN=ssltestuser"),
        )
        .psycopg(),
        case(
            "certificate authorization fails with correct client cert and sslcertmode=disable",
            "certificate authorization fails with correct client cert and sslcertmode=disable",
            format!(
                "{CERTDB} sslcertmode=disable {}",
                with_cert("client.crt", "client.key")
            ),
            Expect::Fails("FATAL:  connection requires a valid client certificate"),
        )
        .psycopg(),
        case(
            "connect with sslcertmode=require fails without a client certificate (the server requests one, accepts none)",
            "connect with sslcertmode=require fails without a client certificate",
            "dbname=trustdb user=ssltestuser sslcertmode=require sslcert=invalid",
            Expect::Fails("server accepted connection without a valid SSL certificate"),
        )
        .psycopg(),
        case(
            "certificate authorization fails with revoked client cert",
            "certificate authorization fails with revoked client cert",
            format!(
                "{CERTDB} {}",
                with_cert("client-revoked.crt", "client-revoked.key")
            ),
            Expect::Fails("SSL error: ssl/tls alert certificate revoked"),
        )
        .psycopg(),
    ];
    run_group(Group {
        name: "client certificates",
        example,
        example_key: "server-cn-only.key",
        pg: pg.crl("root+client.crl"),
        hba: HBA,
        databases: ALL_DATABASES,
        cases,
    });
}

/// ssl_crl_dir=root+client-crldir (no ssl_crl_file).
#[test]
fn server_crl_directory() {
    let (example, pg) = cn_only(&[
        ("ssl_ca_file", cert("root+client_ca.crt")),
        ("ssl_crl_dir", cert("root+client-crldir")),
    ]);
    let cases = vec![
        case(
            "certificate authorization fails with revoked client cert with server-side CRL directory",
            "certificate authorization fails with revoked client cert with server-side CRL directory",
            format!(
                "{CERTDB} {}",
                with_cert("client-revoked.crt", "client-revoked.key")
            ),
            Expect::Fails("SSL error: sslv3 alert certificate revoked"),
        ),
        case(
            "certificate authorization succeeds with a non-revoked client cert with server-side CRL directory",
            "",
            format!("{CERTDB} {}", with_cert("client.crt", "client.key")),
            connects_as("/CN=ssltestuser"),
        ),
    ];
    run_group(Group {
        name: "server CRL directory",
        example,
        example_key: "server-cn-only.key",
        pg,
        hba: HBA,
        databases: &["certdb"],
        cases,
    });
}

/// ssl_ca_file=root_ca.crt: the client must send its intermediate.
#[test]
fn client_intermediate() {
    let (example, pg) = cn_only(&[("ssl_ca_file", cert("root_ca.crt"))]);
    let cases = vec![
        case(
            "intermediate client certificate is provided by client",
            "intermediate client certificate is provided by client",
            format!(
                "{CERTDB} {}",
                with_cert("client+client_ca.crt", "client.key")
            ),
            connects_as("/CN=ssltestuser"),
        ),
        case(
            "intermediate client certificate is missing",
            "intermediate client certificate is missing",
            format!("{CERTDB} {}", with_cert("client.crt", "client.key")),
            Expect::Fails("SSL error: tlsv1 alert unknown ca"),
        ),
    ];
    run_group(Group {
        name: "client intermediate",
        example,
        example_key: "server-cn-only.key",
        pg,
        hba: HBA,
        databases: &["certdb"],
        cases,
    });
}

/// ssl_ca_file=server-cn-only.crt: a store that cannot verify the client's chain at all.
#[test]
fn client_intermediate_untrusted() {
    let (example, pg) = cn_only(&[("ssl_ca_file", cert("server-cn-only.crt"))]);
    let cases = vec![case(
        "intermediate client certificate is untrusted",
        "intermediate client certificate is untrusted",
        format!(
            "{CERTDB} {}",
            with_cert("client+client_ca.crt", "client.key")
        ),
        Expect::Fails("SSL error: tlsv1 alert unknown ca"),
    )];
    run_group(Group {
        name: "client intermediate untrusted",
        example,
        example_key: "server-cn-only.key",
        pg,
        hba: HBA,
        databases: &["certdb"],
        cases,
    });
}

/// ssl_ca_file='': no client certificate is requested, and none can be checked.
#[test]
fn no_root_store() {
    let (example, pg) = cn_only(&[("ssl_ca_file", String::new())]);
    const NO_STORE: &str =
        "FATAL:  client certificates can only be checked if a root certificate store is available";
    let cases = vec![
        case(
            "cert authentication without ssl_ca_file",
            "",
            format!("{CERTDB} {}", with_cert("client.crt", "client.key")),
            Expect::Fails(NO_STORE),
        ),
        case(
            "auth_option clientcert=verify-ca without ssl_ca_file",
            "",
            format!(
                "dbname=verifydb user=yetanotheruser {}",
                with_cert("client.crt", "client.key")
            ),
            Expect::Fails(NO_STORE),
        ),
        case(
            "no ssl_ca_file: no client certificate requested, none in pg_stat_ssl",
            "",
            format!(
                "dbname=trustdb user=ssltestuser {}",
                with_cert("client.crt", "client.key")
            ),
            no_client_cert(),
        ),
        case(
            "sslcertmode=require against a server that requests no client certificate",
            "",
            format!(
                "dbname=trustdb user=ssltestuser sslcertmode=require {}",
                with_cert("client.crt", "client.key")
            ),
            Expect::Fails("server did not request an SSL certificate"),
        )
        .psycopg(),
    ];
    run_group(Group {
        name: "no root store",
        example,
        example_key: "server-cn-only.key",
        pg,
        hba: HBA,
        databases: &["certdb", "verifydb", "trustdb"],
        cases,
    });
}

fn password_key(command: &str) -> (Vec<(&'static str, String)>, PgConfig) {
    (
        vec![
            ("ssl_cert_file", cert("server-password.crt")),
            ("ssl_key_file", "{dir}/server.key".to_owned()),
            ("ssl_passphrase_command", command.to_owned()),
        ],
        Postgres::builder("server-password.crt", "server-password.key")
            .setting("ssl_passphrase_command", command),
    )
}

/// server-password.key unlocked by ssl_passphrase_command='echo secret1'.
#[test]
fn passphrase_command() {
    let (example, pg) = password_key("echo secret1");
    let cases = vec![
        case(
            "restart succeeds with password-protected key file",
            "restart succeeds with password-protected key file",
            "",
            Expect::Starts,
        )
        .start(),
        case(
            "connection to the server with the password-protected key file",
            "",
            "dbname=postgres user=ssltestuser",
            no_client_cert(),
        ),
    ];
    run_group(Group {
        name: "ssl_passphrase_command",
        example,
        example_key: "server-password.key",
        pg,
        hba: "hostssl all all 127.0.0.1/32 trust\n",
        databases: &[],
        cases,
    });
}

/// server-password.key with ssl_passphrase_command='echo wrongpassword': no start.
#[test]
fn passphrase_command_wrong() {
    let (example, pg) = password_key("echo wrongpassword");
    let cases = vec![
        case(
            "restart fails with password-protected key file with wrong password",
            "restart fails with password-protected key file with wrong password",
            "",
            Expect::DoesNotStart(
                "FATAL:  could not load private key file \"{datadir}/server.key\"",
            ),
        )
        .start(),
    ];
    run_group(Group {
        name: "wrong ssl_passphrase_command",
        example,
        example_key: "server-password.key",
        pg,
        hba: "hostssl all all 127.0.0.1/32 trust\n",
        databases: &[],
        cases,
    });
}
