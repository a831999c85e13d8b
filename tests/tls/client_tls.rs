//! pgssl's client (`pgssl::io::blocking::connect`) and libpq 15 (`psql`) against the same real
//! PostgreSQL 15 server with ssl=on and the test PKI, case by case: the client side of
//! PostgreSQL's src/test/ssl/t/001_ssltests.pl and CONFORMANCE §4.
//!
//! Every case runs twice with the same conninfo (`host=<name under test> hostaddr=127.0.0.1`,
//! since libpq checks `host`, never `hostaddr`) and the same empty `HOME` (unless the case is
//! about `~/.postgresql/`):
//!
//! * pgssl: `ClientTlsConfig::from_conninfo` with `home` set, then `connect`; success is `Ok`,
//!   and `session.is_some()` says whether SSL is in use;
//! * libpq: `psql "<conninfo>" -X -w -A -t -c "select ssl from pg_stat_ssl where pid =
//!   pg_backend_pid()"`.
//!
//! Both must give the case's expected outcome, and agree: both connected with the same `ssl`,
//! or both failed with psql's output containing the first line of pgssl's message (libpq 15's
//! hint lines differ from newer libpq's, which pgssl follows: see `agree`). Documented
//! differences are declared per case (`Case::libpq15`) and printed; `PGSSL_TEST_VERBOSE=1` prints
//! every case with both outcomes.
//!
//! One server per certificate configuration, shared by the cases of a group; every failure of
//! a group is collected before the group's test fails, each naming the case and both outcomes.
//!
//! Differences from libpq 15 that are accepted (and printed when the tests run):
//!
//! * hint lines: libpq 15 says "Either provide the file or change sslmode to disable server
//!   certificate verification."; pgssl (as libpq 16+) "Either provide the file, use the system's
//!   trusted roots with sslrootcert=system, or change sslmode to disable server certificate
//!   verification." Only first lines are compared;
//! * `SSL error: certificate verify failed` gets OpenSSL's verification reason appended by pgssl
//!   (`…: certificate revoked`, docs/client-tls.md);
//! * `invalid "ssl_min_protocol_version" value: "x"` (libpq 16+, pgssl) is
//!   `invalid ssl_min_protocol_version value: "x"` in libpq 15;
//! * an encrypted DER key with sslpassword loads in pgssl, not in libpq 15 (docs/client-tls.md);
//! * `sslcrl=<missing file> sslcrldir=<good dir>`: libpq 15 checks no CRL at all, pgssl uses the
//!   directory (stricter).
//!
//! Cases that fail because pgssl differs from libpq where it should not (src/ bugs, left
//! failing on purpose) are commented "src/ bug" below.
//!
//! Every case (the SNI and tls-server-end-point ones too) is also published as one JSON line in
//! `target/conformance/certs-client.jsonl` (truncated once per run of this binary): suite
//! ("certificates, client side"), case (its name without the `[001: …]` part), counterpart
//! (that 001_ssltests.pl test name, or ""), postgresql (psql's outcome: libpq 15 against
//! PostgreSQL 15), pgssl (pgssl's outcome, with the number of connections it made), match (the
//! same outcome, in the same words), difference (null, or the reason of the accepted difference:
//! a `Case::libpq15` declaration, a note `agree` prints, or one of the differences listed above
//! that `agree` tolerates silently: the hint line, every attempt's error after a fallback).
//! Temporary paths are written `{certs}`, `{keys}` and `{home}`, and libpq's "connection to
//! server at … failed:" prefixes are dropped.
//!
//! Needs the PostgreSQL 15 server (`apt-get install postgresql`), psql and the openssl CLI;
//! scripts/test.sh installs them.

use crate::support::pg;
use crate::support::tls as tls_support;

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use pg::{PgConfig, Postgres};
use pgssl::io::blocking::connect;
use pgssl::server::ServerPolicy;
use pgssl::tls::{ClientTlsConfig, peer_end_point};
use tls_support::{FATAL_MARKER, Seen, TestServer, localhost_config};

const QUERY: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
const CN_HOST: &str = "common-name.pg-ssltest.test";

/// `host all all 127.0.0.1/32 trust`, for the groups that are not about pg_hba.conf.
const TRUST_ALL: &str = "host all all 127.0.0.1/32 trust";

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs")
}

// ---------------------------------------------------------------------------------------------
// Cases and outcomes

/// What a client must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Connected over SSL.
    Ssl,
    /// Connected without SSL.
    Plain,
    /// Failed, the message containing this text.
    Fail(&'static str),
}

/// One connection attempt, run with pgssl and with psql.
#[derive(Clone, Debug)]
struct Case {
    /// What is tested, with its 001_ssltests.pl counterpart where there is one.
    name: String,
    /// The group's server to use ("" when the group has one).
    server: &'static str,
    /// `host` (the name SNI and verify-full use; the address is always `hostaddr=127.0.0.1`).
    host: &'static str,
    user: &'static str,
    /// The case's options; `{certs}`, `{keys}` and `{home}` are replaced by the PKI directory,
    /// the group's directory of key copies (0600, and `client-0644.key`) and the case's HOME.
    opts: String,
    /// Files placed in `$HOME/.postgresql/`: (name there, file of the PKI; keys get 0600).
    home: Vec<(&'static str, &'static str)>,
    expect: Expect,
    /// pgssl's `Connected::connections`, when it matters (fallbacks).
    connections: Option<u32>,
    /// A documented difference: what libpq 15 does instead, and why.
    libpq15: Option<(Expect, &'static str)>,
}

fn case(name: impl Into<String>, opts: impl Into<String>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        server: "",
        host: CN_HOST,
        user: "ssltestuser",
        opts: opts.into(),
        home: Vec::new(),
        expect,
        connections: None,
        libpq15: None,
    }
}

impl Case {
    fn server(mut self, s: &'static str) -> Self {
        self.server = s;
        self
    }
    fn host(mut self, h: &'static str) -> Self {
        self.host = h;
        self
    }
    fn user(mut self, u: &'static str) -> Self {
        self.user = u;
        self
    }
    fn home(mut self, files: &[(&'static str, &'static str)]) -> Self {
        self.home = files.to_vec();
        self
    }
    fn connections(mut self, n: u32) -> Self {
        self.connections = Some(n);
        self
    }
    fn libpq15(mut self, e: Expect, why: &'static str) -> Self {
        self.libpq15 = Some((e, why));
        self
    }
}

/// How one client's attempt ended.
#[derive(Clone, Debug)]
enum Outcome {
    Connected { ssl: bool, connections: Option<u32> },
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Connected { ssl, connections } => {
                write!(f, "connected, ssl={}", if *ssl { "on" } else { "off" })?;
                if let Some(n) = connections {
                    write!(f, " ({n} connection(s))")?;
                }
                Ok(())
            }
            Outcome::Failed(e) => write!(f, "failed: {}", e.trim_end().replace('\n', "\n    | ")),
        }
    }
}

fn meets(expect: Expect, o: &Outcome) -> bool {
    match (expect, o) {
        (Expect::Ssl, Outcome::Connected { ssl, .. }) => *ssl,
        (Expect::Plain, Outcome::Connected { ssl, .. }) => !*ssl,
        (Expect::Fail(text), Outcome::Failed(e)) => e.contains(text),
        _ => false,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Whether the two outcomes agree; `Ok(Some(note))` when they agree only modulo a known
/// libpq-version difference in the text.
fn agree(pgssl: &Outcome, psql: &Outcome) -> Result<Option<String>, String> {
    match (pgssl, psql) {
        (Outcome::Connected { ssl: a, .. }, Outcome::Connected { ssl: b, .. }) if a == b => {
            Ok(None)
        }
        (Outcome::Failed(p), Outcome::Failed(l)) => {
            // Only the first line: libpq 15's hint after the newline differs from newer
            // libpq's, which pgssl follows ("Either provide the file or change sslmode to
            // disable server certificate verification." vs "Either provide the file, use the
            // system's trusted roots with sslrootcert=system, or change sslmode to disable
            // server certificate verification."). After a fallback libpq prints every attempt's
            // error and pgssl only the last one's, which psql's output contains.
            let line = first_line(p);
            if l.contains(line) {
                return Ok(None);
            }
            // pgssl appends OpenSSL's verification reason to "certificate verify failed"
            // (docs/client-tls.md, "The handshake"); libpq prints OpenSSL's reason alone.
            if let Some(rest) = line.strip_prefix("SSL error: certificate verify failed: ")
                && l.contains("SSL error: certificate verify failed")
            {
                return Ok(Some(format!(
                    "pgssl appends the verification reason \"{rest}\" that libpq 15 does not print"
                )));
            }
            // OpenSSL 3.2 renamed the alert reasons ("sslv3 alert …" became "ssl/tls alert …"):
            // pgssl built with `vendored` (a newer OpenSSL) words them so, psql on the system's
            // OpenSSL 3.0 the old way. Both pass OpenSSL's text through unchanged.
            if let Some(alert) = line.strip_prefix("SSL error: ssl/tls alert ")
                && l.contains(&format!("SSL error: sslv3 alert {alert}"))
            {
                return Ok(Some(format!(
                    "the linked OpenSSL says \"ssl/tls alert {alert}\", psql's (3.0) \"sslv3 alert {alert}\""
                )));
            }
            // libpq 16+ quotes the parameter name (`invalid "ssl_min_protocol_version" value:
            // "x"`), as pgssl does; libpq 15 wrote `invalid ssl_min_protocol_version value: "x"`.
            if let Some((name, rest)) = line
                .strip_prefix("invalid \"")
                .and_then(|r| r.split_once("\" value: "))
                && l.contains(&format!("invalid {name} value: {rest}"))
            {
                return Ok(Some(format!(
                    "libpq 15 does not quote the parameter name {name} (libpq 16+ does, as pgssl)"
                )));
            }
            Err(format!(
                "psql's output does not contain pgssl's first line {line:?}"
            ))
        }
        _ => Err("one connected, the other did not (or ssl differs)".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Published results

/// One case's result, appended to target/conformance/certs-client.jsonl.
struct Published<'a> {
    case: &'a str,
    counterpart: &'a str,
    postgresql: String,
    pgssl: String,
    matched: bool,
    difference: Option<String>,
}

/// Appends `r` as one JSON line; the file is truncated the first time in this test binary.
fn publish(r: Published<'_>) {
    static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/conformance");
        std::fs::create_dir_all(&dir).expect("target/conformance created");
        Mutex::new(
            std::fs::File::create(dir.join("certs-client.jsonl")).expect("certs-client.jsonl"),
        )
    });
    let line = format!(
        "{{\"suite\":{},\"case\":{},\"counterpart\":{},\"postgresql\":{},\"pgssl\":{},\"match\":{},\"difference\":{}}}\n",
        json("certificates, client side"),
        json(r.case),
        json(r.counterpart),
        json(&r.postgresql),
        json(&r.pgssl),
        r.matched,
        r.difference.as_deref().map_or("null".to_owned(), json)
    );
    file.lock()
        .unwrap()
        .write_all(line.as_bytes())
        .expect("a line of certs-client.jsonl written");
}

/// A JSON string.
fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A case name split into (name without its `[001: …]` part, that 001_ssltests.pl test name).
fn split_counterpart(name: &str) -> (String, &str) {
    let Some(start) = name.find("[001: ") else {
        return (name.to_owned(), "");
    };
    let inner = &name[start + "[001: ".len()..];
    let Some(end) = inner.find(']') else {
        return (name.to_owned(), "");
    };
    let rest = &inner[end + 1..];
    let case = format!("{}{rest}", &name[..start]);
    (
        case.split_whitespace().collect::<Vec<_>>().join(" "),
        &inner[..end],
    )
}

/// Why two published outcomes that `agree` accepts are not the same text, if they are not
/// (pgssl's connection count, which psql does not report, aside).
fn tolerated_difference(pgssl: &str, psql: &str) -> Option<&'static str> {
    let pgssl = match pgssl.rfind(" (") {
        Some(i) if pgssl.ends_with(" connection(s))") => &pgssl[..i],
        _ => pgssl,
    };
    if pgssl == psql {
        None
    } else if psql.contains("Either provide the file or change sslmode")
        && pgssl.contains("with sslrootcert=system")
    {
        Some(
            "hint line: libpq 15 says \"Either provide the file or change sslmode to disable server certificate verification.\"; pgssl (as libpq 16+) \"Either provide the file, use the system's trusted roots with sslrootcert=system, or change sslmode to disable server certificate verification.\" Only first lines are compared",
        )
    } else if psql.lines().count() > pgssl.lines().count() {
        Some(
            "after a fallback libpq prints every attempt's error and pgssl only the last one's, which psql's output contains",
        )
    } else {
        Some("psql's output contains pgssl's first line; the rest differs")
    }
}

/// An outcome as published: temporary paths replaced by `{certs}`, `{keys}`, `{home}`, libpq's
/// "psql: error: " and per-attempt "connection to server at … failed: " prefixes dropped.
fn published_outcome(o: &Outcome, paths: &[(&Path, &str)]) -> String {
    let text = match o {
        Outcome::Connected { .. } => o.to_string(),
        Outcome::Failed(e) => {
            let mut e = e.trim().to_owned();
            if let Some(rest) = e.strip_prefix("psql: error: ") {
                e = rest.to_owned();
            }
            while let Some(i) = e.find("connection to server at ") {
                match e[i..].find(" failed: ") {
                    Some(j) => e.replace_range(i..i + j + " failed: ".len(), ""),
                    None => break,
                }
            }
            format!("failed: {}", e.trim())
        }
    };
    paths
        .iter()
        .chain([(certs().as_path(), "{certs}")].iter())
        .fold(text, |t, (p, name)| t.replace(p.to_str().unwrap(), name))
}

// ---------------------------------------------------------------------------------------------
// Running the two clients

fn pgssl_outcome(conninfo: &str, home: &Path) -> Outcome {
    let mut config = match ClientTlsConfig::from_conninfo(conninfo) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    config.home = Some(home.to_path_buf());
    match connect(&config) {
        Ok(c) => Outcome::Connected {
            ssl: c.session.is_some(),
            connections: Some(c.connections),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// psql with HOME set to `home`, no PG* variables, English messages; killed after 60 s.
fn psql_command(conninfo: &str, home: &Path) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "-k", "5", "60", "psql", conninfo, "-X", "-w", "-A", "-t", "-c", QUERY,
    ]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .stdin(Stdio::null());
    cmd
}

fn psql_outcome(conninfo: &str, home: &Path) -> Outcome {
    let out = psql_command(conninfo, home).output().unwrap_or_else(|e| {
        panic!("could not run psql ({e}): `apt-get install postgresql-client` (scripts/test.sh installs it)")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() == Some(124) {
        return Outcome::Failed(format!("psql timed out\n{stderr}"));
    }
    if !out.status.success() {
        return Outcome::Failed(stderr);
    }
    match stdout.as_str() {
        "t" => Outcome::Connected {
            ssl: true,
            connections: None,
        },
        "f" => Outcome::Connected {
            ssl: false,
            connections: None,
        },
        other => Outcome::Failed(format!("unexpected psql output {other:?}\n{stderr}")),
    }
}

/// The directory of key copies a group's cases refer to as `{keys}`: every client key at 0600,
/// and `client-0644.key` (client.key at 0644).
fn key_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for k in [
        "client.key",
        "client-der.key",
        "client-encrypted-pem.key",
        "client-encrypted-der.key",
        "client-revoked.key",
        "client-other-ca.key",
        "client-dn.key",
    ] {
        tls_support::key_copy(d.path(), k, 0o600);
    }
    let loose = d.path().join("client-0644.key");
    std::fs::copy(certs().join("client.key"), &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    d
}

/// Runs every case of a group against its servers (`ports` by label) and fails with all the
/// problems at once.
fn run_group(group: &str, ports: &HashMap<&'static str, u16>, cases: &[Case]) {
    let keys = key_dir();
    let started = std::time::Instant::now();
    let results: Vec<Result<Option<String>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(2).max(1))
            .map(|chunk| {
                let keys = keys.path();
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|c| run_case(group, ports, keys, c))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("case thread"))
            .collect()
    });
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for r in results {
        match r {
            Ok(Some(note)) => notes.push(note),
            Ok(None) => {}
            Err(f) => failures.push(f),
        }
    }
    eprintln!(
        "[{group}] {} cases in {:.1?}, {} with a libpq 15 difference, {} failed",
        cases.len(),
        started.elapsed(),
        notes.len(),
        failures.len()
    );
    for n in &notes {
        eprintln!("  difference: {n}");
    }
    assert!(
        failures.is_empty(),
        "[{group}] {} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn run_case(
    group: &str,
    ports: &HashMap<&'static str, u16>,
    keys: &Path,
    c: &Case,
) -> Result<Option<String>, String> {
    let port = ports[c.server];
    let home = tempfile::tempdir().unwrap();
    if !c.home.is_empty() {
        let dot = home.path().join(".postgresql");
        std::fs::create_dir(&dot).unwrap();
        for (name, from) in &c.home {
            let to = dot.join(name);
            std::fs::copy(certs().join(from), &to).unwrap();
            let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    let opts = c
        .opts
        .replace("{certs}", certs().to_str().unwrap())
        .replace("{keys}", keys.to_str().unwrap())
        .replace("{home}", home.path().to_str().unwrap());
    let conninfo = format!(
        "host='{}' hostaddr=127.0.0.1 port={port} user={} dbname=postgres gssencmode=disable {opts}",
        c.host, c.user
    );
    let pgssl = pgssl_outcome(&conninfo, home.path());
    let psql = psql_outcome(&conninfo, home.path());
    let libpq_expect = c.libpq15.map_or(c.expect, |(e, _)| e);
    let mut problems = Vec::new();
    if !meets(c.expect, &pgssl) {
        problems.push(format!("pgssl does not give the expected {:?}", c.expect));
    }
    if let (Some(n), Outcome::Connected { connections, .. }) = (c.connections, &pgssl)
        && *connections != Some(n)
    {
        problems.push(format!(
            "pgssl made {connections:?} connections, expected {n}"
        ));
    }
    if !meets(libpq_expect, &psql) {
        problems.push(format!("psql does not give the expected {libpq_expect:?}"));
    }
    if std::env::var_os("PGSSL_TEST_VERBOSE").is_some() {
        eprintln!(
            "[{group}] {}\n  conninfo: {conninfo}\n  pgssl: {pgssl}\n  psql: {psql}",
            c.name
        );
    }
    let mut agreed = None;
    let note = match c.libpq15 {
        Some((_, why)) => Some(why.to_owned()),
        None => match agree(&pgssl, &psql) {
            Ok(n) => {
                agreed = Some(n.clone());
                n
            }
            Err(e) => {
                problems.push(e);
                None
            }
        },
    };
    // Published: a declared libpq 15 difference, `agree`'s note or a text difference `agree`
    // tolerates is a difference with its reason; the same outcome is a match; anything else
    // (a problem below) is neither.
    let (case_name, counterpart) = split_counterpart(&c.name);
    let paths = [(keys, "{keys}"), (home.path(), "{home}")];
    let (postgresql, pgssl_text) = (
        published_outcome(&psql, &paths),
        published_outcome(&pgssl, &paths),
    );
    let (matched, difference) = match (c.libpq15, agreed) {
        (Some((_, why)), _) => (false, Some(why.to_owned())),
        (None, Some(Some(n))) => (false, Some(n)),
        (None, Some(None)) => match tolerated_difference(&pgssl_text, &postgresql) {
            Some(why) => (false, Some(why.to_owned())),
            None => (true, None),
        },
        (None, None) => (false, None),
    };
    publish(Published {
        case: &case_name,
        counterpart,
        postgresql,
        pgssl: pgssl_text,
        matched,
        difference,
    });
    if problems.is_empty() {
        Ok(note.map(|n| format!("{}: {n}", c.name)))
    } else {
        Err(format!(
            "[{group}] case {:?}\n  conninfo: {conninfo}\n  expected: {:?}{}\n  pgssl: {pgssl}\n  psql (libpq 15): {psql}\n  problems: {}",
            c.name,
            c.expect,
            c.libpq15
                .map(|(e, _)| format!(" (libpq 15: {e:?})"))
                .unwrap_or_default(),
            problems.join("; ")
        ))
    }
}

/// Starts the servers of a group in parallel.
fn start_servers(configs: Vec<(&'static str, PgConfig)>) -> HashMap<&'static str, Postgres> {
    std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .into_iter()
            .map(|(label, config)| s.spawn(move || (label, config.start())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("server start"))
            .collect()
    })
}

fn ports(servers: &HashMap<&'static str, Postgres>) -> HashMap<&'static str, u16> {
    servers.iter().map(|(k, v)| (*k, v.port)).collect()
}

/// server-cn-only with its intermediate: `sslrootcert=root_ca.crt` is enough to verify it.
fn cn_only_server() -> PgConfig {
    Postgres::builder("server-cn-only+server_ca.crt", "server-cn-only.key")
}

const VERIFY_FAILED: Expect = Expect::Fail("certificate verify failed");
const NO_ROOT_IN_HOME: Expect = Expect::Fail("/.postgresql/root.crt\" does not exist");

// ---------------------------------------------------------------------------------------------
// The groups

/// Every sslmode with no root certificate, a missing one, the right ones and wrong ones.
#[test]
fn sslmode_and_root_certificates() {
    #[derive(Clone, Copy, PartialEq)]
    enum Root {
        None,
        Missing,
        Good,
        Wrong,
    }
    let roots: [(&str, Option<&str>, Root); 7] = [
        ("no sslrootcert, empty ~/.postgresql", None, Root::None),
        ("sslrootcert=invalid", Some("invalid"), Root::Missing),
        (
            "sslrootcert=root_ca.crt (the server sends its intermediate)",
            Some("{certs}/root_ca.crt"),
            Root::Good,
        ),
        (
            "sslrootcert=root+server_ca.crt",
            Some("{certs}/root+server_ca.crt"),
            Root::Good,
        ),
        (
            "sslrootcert=server_ca.crt (the intermediate, not the root)",
            Some("{certs}/server_ca.crt"),
            Root::Wrong,
        ),
        (
            "sslrootcert=client_ca.crt (wrong CA)",
            Some("{certs}/client_ca.crt"),
            Root::Wrong,
        ),
        (
            "sslrootcert=other_ca.crt (unrelated CA)",
            Some("{certs}/other_ca.crt"),
            Root::Wrong,
        ),
    ];
    let mut cases = Vec::new();
    for mode in [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ] {
        for (label, file, root) in roots {
            let verifies = mode.starts_with("verify");
            let (expect, connections) = match (mode, root) {
                ("disable" | "allow", _) => (Expect::Plain, Some(1)),
                ("prefer", Root::Wrong) => (Expect::Plain, Some(2)),
                (_, Root::None) if verifies => (NO_ROOT_IN_HOME, None),
                (_, Root::Missing) if verifies => (
                    Expect::Fail("root certificate file \"invalid\" does not exist"),
                    None,
                ),
                (_, Root::Wrong) => (VERIFY_FAILED, None),
                _ => (Expect::Ssl, Some(1)),
            };
            let counterpart = match (mode, label) {
                ("require" | "verify-ca" | "verify-full", l)
                    if l.starts_with("sslrootcert=invalid") =>
                {
                    format!(" [001: connect without server root cert sslmode={mode}]")
                }
                ("require" | "verify-ca" | "verify-full", l) if l.contains("client_ca") => {
                    format!(" [001: connect with wrong server root cert sslmode={mode}]")
                }
                ("verify-ca", l) if l.contains("server_ca.crt (the intermediate") => {
                    " [001: connect with server CA cert, without root CA]".to_owned()
                }
                ("require" | "verify-ca" | "verify-full", l) if l.contains("root+server_ca") => {
                    format!(" [001: connect with correct server CA cert file sslmode={mode}]")
                }
                ("verify-ca", l) if l.contains("root_ca.crt (") => {
                    " [001: intermediate CA sent by the server, root_ca.crt on the client]"
                        .to_owned()
                }
                _ => String::new(),
            };
            let mut opts = format!("sslmode={mode}");
            if let Some(f) = file {
                opts.push_str(&format!(" sslrootcert={f}"));
            }
            let mut c = case(
                format!("sslmode={mode}, {label}{counterpart}"),
                opts,
                expect,
            );
            if let Some(n) = connections {
                c = c.connections(n);
            }
            cases.push(c);
        }
    }
    let servers = start_servers(vec![("", cn_only_server().hba(TRUST_ALL))]);
    run_group("sslmode × sslrootcert", &ports(&servers), &cases);
}

/// `~/.postgresql/root.crt` (and root.crl) as libpq's defaults: require then verifies the chain.
#[test]
fn home_postgresql_defaults() {
    let cases = vec![
        case(
            "~/.postgresql empty: require does not verify",
            "sslmode=require",
            Expect::Ssl,
        ),
        case(
            "~/.postgresql empty: verify-full needs ~/.postgresql/root.crt",
            "sslmode=verify-full",
            NO_ROOT_IN_HOME,
        ),
        case(
            "root.crt = root_ca.crt: require verifies and connects",
            "sslmode=require",
            Expect::Ssl,
        )
        .home(&[("root.crt", "root_ca.crt")]),
        case(
            "root.crt = root_ca.crt: verify-full connects",
            "sslmode=verify-full",
            Expect::Ssl,
        )
        .home(&[("root.crt", "root_ca.crt")]),
        case(
            "root.crt = other_ca.crt: require verifies the chain and fails",
            "sslmode=require",
            VERIFY_FAILED,
        )
        .home(&[("root.crt", "other_ca.crt")]),
        case(
            "root.crt = client_ca.crt: verify-ca fails",
            "sslmode=verify-ca",
            VERIFY_FAILED,
        )
        .home(&[("root.crt", "client_ca.crt")]),
        case(
            "root.crt = other_ca.crt: prefer falls back to plaintext",
            "sslmode=prefer",
            Expect::Plain,
        )
        .home(&[("root.crt", "other_ca.crt")])
        .connections(2),
        case(
            "root.crt = other_ca.crt: allow connects in plaintext first",
            "sslmode=allow",
            Expect::Plain,
        )
        .home(&[("root.crt", "other_ca.crt")])
        .connections(1),
        case(
            "root.crt = other_ca.crt: disable never looks at it",
            "sslmode=disable",
            Expect::Plain,
        )
        .home(&[("root.crt", "other_ca.crt")]),
        case(
            "root.crt = other_ca.crt, sslrootcert=root_ca.crt given: the parameter wins",
            "sslmode=require sslrootcert={certs}/root_ca.crt",
            Expect::Ssl,
        )
        .home(&[("root.crt", "other_ca.crt")]),
        case(
            "root.crt = root_ca.crt: verify-full checks the host name",
            "sslmode=verify-full",
            Expect::Fail(
                "server certificate for \"common-name.pg-ssltest.test\" does not match host name \"wronghost.test\"",
            ),
        )
        .host("wronghost.test")
        .home(&[("root.crt", "root_ca.crt")]),
        case(
            "root.crt = root_ca.crt, root.crl = client.crl (no CRL for server_ca): require fails",
            "sslmode=require",
            VERIFY_FAILED,
        )
        .home(&[("root.crt", "root_ca.crt"), ("root.crl", "client.crl")]),
        case(
            "root.crt = root_ca.crt, root.crl = root+server.crl (not revoked): require connects",
            "sslmode=require",
            Expect::Ssl,
        )
        .home(&[("root.crt", "root_ca.crt"), ("root.crl", "root+server.crl")]),
    ];
    let servers = start_servers(vec![("", cn_only_server().hba(TRUST_ALL))]);
    run_group("~/.postgresql defaults", &ports(&servers), &cases);
}

/// libpq's verify-full host name rules over the PKI's server certificates.
#[test]
fn hostname_verify_full() {
    const FULL: &str = "sslmode=verify-full sslrootcert={certs}/root+server_ca.crt";
    fn mismatch(first_and_others: &str, host: &str) -> String {
        format!("server certificate for \"{first_and_others} does not match host name \"{host}\"")
    }
    // Cases whose expected text is built at run time are leaked into 'static (a test binary).
    fn fail(s: String) -> Expect {
        Expect::Fail(Box::leak(s.into_boxed_str()))
    }
    let cn = "common-name.pg-ssltest.test\"";
    let dns1_2 = "dns1.alt-name.pg-ssltest.test\" (and 2 other names)";
    let dns1_1 = "dns1.alt-name.pg-ssltest.test\" (and 1 other name)";
    let single = "single.alt-name.pg-ssltest.test\"";
    let ip_1 = "192.0.2.1\" (and 1 other name)";
    let ip_2 = "192.0.2.1\" (and 2 other names)";
    let ip = "192.0.2.1\"";
    let wild = "*.pg-ssltest.test\"";
    let h = |name: &str, server: &'static str, host: &'static str, expect: Expect| {
        case(
            format!("{server}: host={host} {name}"),
            if server == "server-cn-only" {
                "sslmode=verify-full sslrootcert={certs}/root_ca.crt"
            } else {
                FULL
            },
            expect,
        )
        .server(server)
        .host(host)
    };
    let cases = vec![
        // server-cn-only (sent with its intermediate)
        h("[001: CN match]", "server-cn-only", CN_HOST, Expect::Ssl),
        h(
            "(case-insensitive)",
            "server-cn-only",
            "COMMON-NAME.PG-SSLTEST.TEST",
            Expect::Ssl,
        ),
        case(
            "server-cn-only: host=wronghost.test, sslmode=require [001: mismatch between host name and server certificate sslmode=require]",
            "sslmode=require sslrootcert={certs}/root_ca.crt",
            Expect::Ssl,
        )
        .server("server-cn-only")
        .host("wronghost.test"),
        case(
            "server-cn-only: host=wronghost.test, sslmode=verify-ca [001: mismatch between host name and server certificate sslmode=verify-ca]",
            "sslmode=verify-ca sslrootcert={certs}/root_ca.crt",
            Expect::Ssl,
        )
        .server("server-cn-only")
        .host("wronghost.test"),
        h(
            "[001: mismatch between host name and server certificate sslmode=verify-full]",
            "server-cn-only",
            "wronghost.test",
            fail(mismatch(cn, "wronghost.test")),
        ),
        h(
            "(an IP host falls back to the CN)",
            "server-cn-only",
            "127.0.0.1",
            fail(mismatch(cn, "127.0.0.1")),
        ),
        h(
            "(only hostaddr)",
            "server-cn-only",
            "",
            Expect::Fail("host name must be specified for a verified SSL connection"),
        ),
        // server-multiple-alt-names
        h(
            "[001: host name matching with X.509 Subject Alternative Names 1]",
            "server-multiple-alt-names",
            "dns1.alt-name.pg-ssltest.test",
            Expect::Ssl,
        ),
        h(
            "[001: host name matching with X.509 Subject Alternative Names 2]",
            "server-multiple-alt-names",
            "dns2.alt-name.pg-ssltest.test",
            Expect::Ssl,
        ),
        h(
            "[001: host name matching with X.509 Subject Alternative Names wildcard]",
            "server-multiple-alt-names",
            "foo.wildcard.pg-ssltest.test",
            Expect::Ssl,
        ),
        h(
            "[001: host name not matching with X.509 Subject Alternative Names]",
            "server-multiple-alt-names",
            "wronghost.alt-name.pg-ssltest.test",
            fail(mismatch(dns1_2, "wronghost.alt-name.pg-ssltest.test")),
        ),
        h(
            "[001: host name not matching with X.509 Subject Alternative Names wildcard] (two labels)",
            "server-multiple-alt-names",
            "deep.subdomain.wildcard.pg-ssltest.test",
            fail(mismatch(dns1_2, "deep.subdomain.wildcard.pg-ssltest.test")),
        ),
        h(
            "(the wildcard needs a label)",
            "server-multiple-alt-names",
            "wildcard.pg-ssltest.test",
            fail(mismatch(dns1_2, "wildcard.pg-ssltest.test")),
        ),
        // server-single-alt-name
        h(
            "[001: host name matching with a single X.509 Subject Alternative Name]",
            "server-single-alt-name",
            "single.alt-name.pg-ssltest.test",
            Expect::Ssl,
        ),
        h(
            "[001: host name not matching with a single X.509 Subject Alternative Name]",
            "server-single-alt-name",
            "wronghost.alt-name.pg-ssltest.test",
            fail(mismatch(single, "wronghost.alt-name.pg-ssltest.test")),
        ),
        h(
            "[001: host name not matching with a single X.509 Subject Alternative Name wildcard]",
            "server-single-alt-name",
            "deep.subdomain.wildcard.pg-ssltest.test",
            fail(mismatch(single, "deep.subdomain.wildcard.pg-ssltest.test")),
        ),
        // server-cn-and-alt-names
        h(
            "[001: certificate with both a CN and SANs 1]",
            "server-cn-and-alt-names",
            "dns1.alt-name.pg-ssltest.test",
            Expect::Ssl,
        ),
        h(
            "[001: certificate with both a CN and SANs 2]",
            "server-cn-and-alt-names",
            "dns2.alt-name.pg-ssltest.test",
            Expect::Ssl,
        ),
        h(
            "[001: certificate with both a CN and SANs ignores CN]",
            "server-cn-and-alt-names",
            CN_HOST,
            fail(mismatch(dns1_1, CN_HOST)),
        ),
        // server-no-names
        case(
            "server-no-names: host=common-name.pg-ssltest.test, sslmode=verify-ca [001: server certificate without CN or SANs sslmode=verify-ca]",
            "sslmode=verify-ca sslrootcert={certs}/root+server_ca.crt",
            Expect::Ssl,
        )
        .server("server-no-names"),
        h(
            "[001: server certificate without CN or SANs sslmode=verify-full]",
            "server-no-names",
            CN_HOST,
            Expect::Fail("could not get server's host name from server certificate"),
        ),
        // server-ip-cn-only
        h(
            "[001: IP address in the Common Name]",
            "server-ip-cn-only",
            "192.0.2.1",
            Expect::Ssl,
        ),
        h(
            "[001: mismatch between host name and server certificate IP address] (a CN is compared as text)",
            "server-ip-cn-only",
            "192.000.002.001",
            fail(mismatch(ip, "192.000.002.001")),
        ),
        h(
            "",
            "server-ip-cn-only",
            "192.0.2.2",
            fail(mismatch(ip, "192.0.2.2")),
        ),
        // server-ip-alt-names
        h(
            "[001: host matching an IPv4 address (Subject Alternative Name 1)]",
            "server-ip-alt-names",
            "192.0.2.1",
            Expect::Ssl,
        ),
        h(
            "[001: host matching an IPv4 address in alternate form (Subject Alternative Name 1)]",
            "server-ip-alt-names",
            "192.000.002.001",
            Expect::Ssl,
        ),
        h(
            "[001: host not matching an IPv4 address (Subject Alternative Name 1)]",
            "server-ip-alt-names",
            "192.0.2.2",
            fail(mismatch(ip_1, "192.0.2.2")),
        ),
        h(
            "[001: IPv4 host with CIDR mask does not match]",
            "server-ip-alt-names",
            "192.0.2.1/32",
            fail(mismatch(ip_1, "192.0.2.1/32")),
        ),
        h(
            "[001: host matching an IPv6 address (Subject Alternative Name 2)]",
            "server-ip-alt-names",
            "2001:DB8::1",
            Expect::Ssl,
        ),
        h(
            "[001: host matching an IPv6 address in alternate form (Subject Alternative Name 2)]",
            "server-ip-alt-names",
            "2001:db8:0:0:0:0:0:1",
            Expect::Ssl,
        ),
        h(
            "[001: host matching an IPv6 address in mixed form (Subject Alternative Name 2)]",
            "server-ip-alt-names",
            "2001:db8::0.0.0.1",
            Expect::Ssl,
        ),
        h(
            "[001: host not matching an IPv6 address (Subject Alternative Name 2)]",
            "server-ip-alt-names",
            "::1",
            fail(mismatch(ip_1, "::1")),
        ),
        h(
            "[001: IPv6 host with CIDR mask does not match]",
            "server-ip-alt-names",
            "2001:DB8::1/128",
            fail(mismatch(ip_1, "2001:DB8::1/128")),
        ),
        // server-ip-in-dnsname
        h(
            "[001: IP address in a dNSName] (dNSNames are compared as text whatever the host)",
            "server-ip-in-dnsname",
            "192.0.2.1",
            Expect::Ssl,
        ),
        h(
            "(a dNSName is not parsed as an address)",
            "server-ip-in-dnsname",
            "192.000.002.001",
            fail(mismatch(ip, "192.000.002.001")),
        ),
        // server-cn-and-ip-alt-names
        h(
            "[001: certificate with both a CN and IP SANs matches CN]",
            "server-cn-and-ip-alt-names",
            CN_HOST,
            Expect::Ssl,
        ),
        h(
            "[001: certificate with both a CN and IP SANs matches SAN 1]",
            "server-cn-and-ip-alt-names",
            "192.0.2.1",
            Expect::Ssl,
        ),
        h(
            "[001: certificate with both a CN and IP SANs matches SAN 2]",
            "server-cn-and-ip-alt-names",
            "2001:db8::1",
            Expect::Ssl,
        ),
        h(
            "(an IP host does not fall back to the CN when IP SANs exist)",
            "server-cn-and-ip-alt-names",
            "192.0.2.2",
            fail(mismatch(ip_1, "192.0.2.2")),
        ),
        h(
            "(a DNS host: both IP SANs and the CN examined)",
            "server-cn-and-ip-alt-names",
            "wronghost.test",
            fail(mismatch(ip_2, "wronghost.test")),
        ),
        // server-ip-cn-and-alt-names
        h(
            "[001: certificate with both an IP CN and IP SANs 1]",
            "server-ip-cn-and-alt-names",
            "192.0.2.1",
            Expect::Ssl,
        ),
        h(
            "[001: certificate with both an IP CN and IP SANs 2] (its DNS SAN)",
            "server-ip-cn-and-alt-names",
            "dns1.alt-name.pg-ssltest.test",
            Expect::Ssl,
        ),
        h(
            "[001: certificate with both an IP CN and IP SANs ignores CN]",
            "server-ip-cn-and-alt-names",
            "192.0.2.2",
            fail(mismatch(ip_1, "192.0.2.2")),
        ),
        h(
            "(a DNS host with a DNS SAN ignores the CN)",
            "server-ip-cn-and-alt-names",
            CN_HOST,
            fail(mismatch(ip_1, CN_HOST)),
        ),
        // server-wildcard
        h(
            "(one label)",
            "server-wildcard",
            "foo.pg-ssltest.test",
            Expect::Ssl,
        ),
        h(
            "(one label, upper case)",
            "server-wildcard",
            "FOO.PG-SSLTEST.TEST",
            Expect::Ssl,
        ),
        h(
            "(two labels)",
            "server-wildcard",
            "a.b.pg-ssltest.test",
            fail(mismatch(wild, "a.b.pg-ssltest.test")),
        ),
        h(
            "(no label)",
            "server-wildcard",
            "pg-ssltest.test",
            fail(mismatch(wild, "pg-ssltest.test")),
        ),
    ];
    let configs = [
        "server-cn-only",
        "server-multiple-alt-names",
        "server-single-alt-name",
        "server-cn-and-alt-names",
        "server-no-names",
        "server-ip-cn-only",
        "server-ip-alt-names",
        "server-ip-in-dnsname",
        "server-cn-and-ip-alt-names",
        "server-ip-cn-and-alt-names",
        "server-wildcard",
    ]
    .into_iter()
    .map(|name| {
        let chain = format!("{name}+server_ca.crt");
        let cert = if certs().join(&chain).exists() {
            chain
        } else {
            format!("{name}.crt")
        };
        (
            name,
            Postgres::builder(&cert, &format!("{name}.key")).hba(TRUST_ALL),
        )
    })
    .collect();
    let servers = start_servers(configs);
    run_group("verify-full host names", &ports(&servers), &cases);
}

/// Client-side CRLs (sslcrl, sslcrldir, ~/.postgresql/root.crl) against a revoked server
/// certificate and a good one.
#[test]
fn server_crl() {
    const ROOT: &str = "sslrootcert={certs}/root+server_ca.crt";
    let revoked = |name: &str, opts: &str, expect: Expect| {
        case(
            format!("server-revoked: {name}"),
            format!("{ROOT} {opts}"),
            expect,
        )
        .server("revoked")
    };
    let good = |name: &str, opts: &str, expect: Expect| {
        case(
            format!("server-cn-only: {name}"),
            format!("{ROOT} {opts}"),
            expect,
        )
        .server("good")
    };
    let cases = vec![
        revoked(
            "no CRL [001: connects without client-side CRL]",
            "sslmode=verify-ca",
            Expect::Ssl,
        ),
        revoked(
            "sslcrl=root+server.crl [001: does not connect with client-side CRL file]",
            "sslmode=verify-ca sslcrl={certs}/root+server.crl",
            VERIFY_FAILED,
        ),
        revoked(
            "sslcrldir=root+server-crldir [001: does not connect with client-side CRL directory]",
            "sslmode=verify-ca sslcrldir={certs}/root+server-crldir",
            VERIFY_FAILED,
        ),
        revoked(
            "sslcrl=root+server.crl, verify-full",
            "sslmode=verify-full sslcrl={certs}/root+server.crl",
            VERIFY_FAILED,
        ),
        revoked(
            "sslcrl=root+server.crl, require (a root file makes require verify)",
            "sslmode=require sslcrl={certs}/root+server.crl",
            VERIFY_FAILED,
        ),
        revoked(
            "sslcrl=root+server.crl, prefer falls back to plaintext",
            "sslmode=prefer sslcrl={certs}/root+server.crl",
            Expect::Plain,
        )
        .connections(2),
        revoked(
            "sslcrl=server.crl only (no CRL for the root: CRL_CHECK_ALL)",
            "sslmode=verify-ca sslcrl={certs}/server.crl",
            VERIFY_FAILED,
        ),
        case(
            "server-revoked: ~/.postgresql/root.crt + root.crl, require",
            "sslmode=require",
            VERIFY_FAILED,
        )
        .server("revoked")
        .home(&[
            ("root.crt", "root+server_ca.crt"),
            ("root.crl", "root+server.crl"),
        ]),
        good(
            "sslcrl=root+server.crl [001: CRL with a non-revoked cert]",
            "sslmode=verify-ca sslcrl={certs}/root+server.crl",
            Expect::Ssl,
        ),
        good(
            "sslcrldir=root+server-crldir [001: directory CRL with a non-revoked cert]",
            "sslmode=verify-ca sslcrldir={certs}/root+server-crldir",
            Expect::Ssl,
        ),
        good(
            "sslcrl=client.crl [001: CRL belonging to a different CA]",
            "sslmode=verify-ca sslcrl={certs}/client.crl",
            VERIFY_FAILED,
        ),
        good(
            "sslcrldir=root+client-crldir [001: directory CRL belonging to a different CA]",
            "sslmode=verify-ca sslcrldir={certs}/root+client-crldir",
            VERIFY_FAILED,
        ),
        good(
            "sslcrl=invalid [001: sslcrl option with invalid file name]",
            "sslmode=verify-ca sslcrl=invalid",
            Expect::Ssl,
        ),
        good(
            "sslcrl=invalid sslcrldir=invalid [001: sslcrldir option with invalid directory name (001's $default_ssl_connstr sets both)]",
            "sslmode=verify-ca sslcrl=invalid sslcrldir=invalid",
            Expect::Ssl,
        ),
        // libpq hands sslcrldir to X509_STORE_load_locations(store, NULL, dir), which succeeds
        // for a directory that does not exist (a hash-directory lookup is only recorded), so
        // CRL_CHECK|CRL_CHECK_ALL are set with no CRL to find and the handshake fails ("unable
        // to get certificate CRL"). pgssl does the same: it fails closed, as libpq.
        good(
            "sslcrldir=invalid alone: libpq turns CRL checks on and finds no CRL",
            "sslmode=verify-ca sslcrldir=invalid",
            VERIFY_FAILED,
        ),
        revoked(
            "sslcrl=root+server.crl sslcrldir=invalid",
            "sslmode=verify-ca sslcrl={certs}/root+server.crl sslcrldir=invalid",
            VERIFY_FAILED,
        ),
        // libpq calls X509_STORE_load_locations(store, file, dir), which fails as soon as the
        // file does not load, before the directory: no CRL check at all, so a revoked
        // certificate is accepted. pgssl does the same (and logs a warning).
        revoked(
            "sslcrl=invalid sslcrldir=root+server-crldir",
            "sslmode=verify-ca sslcrl=invalid sslcrldir={certs}/root+server-crldir",
            Expect::Ssl,
        ),
    ];
    let servers = start_servers(vec![
        (
            "revoked",
            Postgres::builder("server-revoked.crt", "server-revoked.key").hba(TRUST_ALL),
        ),
        ("good", cn_only_server().hba(TRUST_ALL)),
    ]);
    run_group("server CRL", &ports(&servers), &cases);
}

/// A path whose last component (292 bytes) is longer than NAME_MAX (255).
const LONG_NAME: &str = concat!(
    "/tmp/",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxx.crt"
);

/// Client certificates: the `cert` method, keys in every form, loose permissions, a revoked
/// certificate (the server's ssl_crl_file) and clientcert=verify-full on a trust line.
#[test]
fn client_certificates() {
    const BASE: &str = "sslmode=require sslrootcert={certs}/root+server_ca.crt";
    let c = |name: &str, opts: &str, expect: Expect| {
        case(name.to_owned(), format!("{BASE} {opts}"), expect)
    };
    let cases = vec![
        c(
            "no client certificate [001: certificate authorization fails without client cert]",
            "",
            Expect::Fail("connection requires a valid client certificate"),
        ),
        c(
            "client.crt, client.key PEM 0600 [001: certificate authorization succeeds with correct client cert in PEM format]",
            "sslcert={certs}/client.crt sslkey={keys}/client.key",
            Expect::Ssl,
        ),
        c(
            "client.crt, client-der.key [001: certificate authorization succeeds with correct client cert in DER format]",
            "sslcert={certs}/client.crt sslkey={keys}/client-der.key",
            Expect::Ssl,
        ),
        c(
            "client-encrypted-pem.key with sslpassword [001: certificate authorization succeeds with correct client cert in encrypted PEM format]",
            "sslcert={certs}/client-encrypted.crt sslkey={keys}/client-encrypted-pem.key sslpassword='dUmmyP^#+'",
            Expect::Ssl,
        ),
        c(
            "client-encrypted-der.key with sslpassword [001: certificate authorization succeeds with correct client cert in encrypted DER format]",
            "sslcert={certs}/client-encrypted.crt sslkey={keys}/client-encrypted-der.key sslpassword='dUmmyP^#+'",
            Expect::Ssl,
        )
        .libpq15(
            Expect::Fail("could not load private key file"),
            "encrypted DER key: pgssl decrypts it with sslpassword, libpq 15 (OpenSSL 3) fails with \"unsupported\" (docs/client-tls.md, \"Where pgssl differs from libpq\")",
        ),
        c(
            "client-encrypted-pem.key with a wrong sslpassword [001: certificate authorization fails with correct client cert and wrong password in encrypted PEM format]",
            "sslcert={certs}/client-encrypted.crt sslkey={keys}/client-encrypted-pem.key sslpassword='wrong'",
            Expect::Fail("could not load private key file"),
        ),
        c(
            "client.key at 0644 [001: certificate authorization fails because of file permissions]",
            "sslcert={certs}/client.crt sslkey={keys}/client-0644.key",
            Expect::Fail("has group or world access"),
        ),
        // src/ bug: after a TLS 1.3 handshake the server's alert (revoked / unknown CA client
        // certificate) reaches pgssl while it writes the StartupMessage or reads the reply, and
        // `connect` returns the I/O error as is: OpenSSL's raw "error:0A000414:SSL
        // routines:ssl3_read_bytes:sslv3 alert certificate revoked:…:SSL alert number 44" or,
        // when the server's close turned into a reset first, "Connection reset by peer (os error
        // 104)". libpq 15 says "SSL error: sslv3 alert certificate revoked" (it keeps reading
        // after a failed write, and words TLS errors as "SSL error: <reason>").
        c(
            "client-revoked.crt, server ssl_crl_file=root+client.crl [001: certificate authorization fails with revoked client cert]",
            "sslcert={certs}/client-revoked.crt sslkey={keys}/client-revoked.key",
            Expect::Fail("certificate revoked"),
        ),
        c(
            "client-other-ca.crt (an unknown CA)",
            "sslcert={certs}/client-other-ca.crt sslkey={keys}/client-other-ca.key",
            Expect::Fail("unknown ca"),
        ),
        c(
            "client-dn.crt (CN=ssltestuser-dn) [001: certificate authorization fails with client cert belonging to another user]",
            "sslcert={certs}/client-dn.crt sslkey={keys}/client-dn.key",
            Expect::Fail("certificate authentication failed for user \"ssltestuser\""),
        ),
        // libpq loads the key with SSL_use_PrivateKey_file, which already checks it against the
        // certificate: "could not load private key file \"…\": key values mismatch".
        c(
            "client.crt with client-dn.key (another key)",
            "sslcert={certs}/client.crt sslkey={keys}/client-dn.key",
            Expect::Fail("key values mismatch"),
        ),
        // stat() failing otherwise than "no such file" (here ENAMETOOLONG: a path component
        // longer than NAME_MAX) is an error, not "no certificate", as in libpq.
        c(
            "sslcert naming a file stat() cannot reach (a name too long)",
            &format!("sslcert={LONG_NAME}"),
            Expect::Fail(Box::leak(
                format!("could not open certificate file \"{LONG_NAME}\": File name too long")
                    .into_boxed_str(),
            )),
        ),
        c(
            "client.crt without its key file",
            "sslcert={certs}/client.crt sslkey={keys}/missing.key",
            Expect::Fail("certificate present, but not private key file"),
        ),
        c(
            "clientcert=verify-full, CN = user [001: auth_option clientcert=verify-full succeeds with matching username and Common Name]",
            "dbname=template1 sslcert={certs}/client.crt sslkey={keys}/client.key",
            Expect::Ssl,
        ),
        c(
            "clientcert=verify-full on trust for anotheruser, CN ssltestuser [001: auth_option clientcert=verify-full fails with mismatching username and Common Name]",
            "sslcert={certs}/client.crt sslkey={keys}/client.key",
            Expect::Fail("\"trust\" authentication failed for user \"anotheruser\""),
        )
        .user("anotheruser"),
        c(
            "clientcert=verify-full on trust for anotheruser, no certificate",
            "",
            Expect::Fail("connection requires a valid client certificate"),
        )
        .user("anotheruser"),
        c(
            "~/.postgresql/postgresql.crt and postgresql.key as defaults",
            "",
            Expect::Ssl,
        )
        .home(&[("postgresql.crt", "client.crt"), ("postgresql.key", "client.key")]),
    ];
    let hba = "\
hostssl template1 ssltestuser 127.0.0.1/32 trust clientcert=verify-full
hostssl all ssltestuser 127.0.0.1/32 cert
hostssl all anotheruser 127.0.0.1/32 trust clientcert=verify-full
";
    let servers = start_servers(vec![("", cn_only_server().hba(hba).crl("root+client.crl"))]);
    run_group("client certificates", &ports(&servers), &cases);
}

/// libpq's fallbacks over a new connection when pg_hba.conf refuses the first attempt.
#[test]
fn fallbacks() {
    const NO_ENTRY: &str = "no pg_hba.conf entry for host \"127.0.0.1\"";
    let cases = vec![
        case(
            "allow as ssluser: plaintext refused, then SSL",
            "sslmode=allow",
            Expect::Ssl,
        )
        .user("ssluser")
        .connections(2),
        case(
            "prefer as nossluser: SSL refused, then plaintext",
            "sslmode=prefer",
            Expect::Plain,
        )
        .user("nossluser")
        .connections(2),
        case(
            "require as nossluser: no fallback",
            "sslmode=require",
            Expect::Fail(
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"nossluser\", database \"postgres\", SSL encryption",
            ),
        )
        .user("nossluser"),
        case(
            "disable as ssluser [001: server doesn't accept non-SSL connections]",
            "sslmode=disable",
            Expect::Fail(
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"ssluser\", database \"postgres\", no encryption",
            ),
        )
        .user("ssluser"),
        case("prefer as ssluser", "sslmode=prefer", Expect::Ssl)
            .user("ssluser")
            .connections(1),
        case("allow as nossluser", "sslmode=allow", Expect::Plain)
            .user("nossluser")
            .connections(1),
        case("require as ssluser", "sslmode=require", Expect::Ssl)
            .user("ssluser")
            .connections(1),
        case("disable as nossluser", "sslmode=disable", Expect::Plain)
            .user("nossluser")
            .connections(1),
        case(
            "allow as anotheruser (no entry at all): both attempts refused",
            "sslmode=allow",
            Expect::Fail(NO_ENTRY),
        )
        .user("anotheruser"),
        case(
            "prefer as anotheruser (no entry at all): both attempts refused",
            "sslmode=prefer",
            Expect::Fail(NO_ENTRY),
        )
        .user("anotheruser"),
    ];
    let hba = "\
hostssl all ssluser 127.0.0.1/32 trust
hostnossl all nossluser 127.0.0.1/32 trust
";
    let servers = start_servers(vec![("", cn_only_server().hba(hba))]);
    run_group("fallbacks", &ports(&servers), &cases);
}

/// ssl_min_protocol_version / ssl_max_protocol_version on the client, against a default server
/// and one with ssl_min_protocol_version=TLSv1.3.
#[test]
fn protocol_versions() {
    let cases = vec![
        case(
            "client ssl_min_protocol_version=TLSv1.3",
            "sslmode=require ssl_min_protocol_version=TLSv1.3",
            Expect::Ssl,
        )
        .server("default"),
        case(
            "client ssl_max_protocol_version=TLSv1.2",
            "sslmode=require ssl_max_protocol_version=TLSv1.2",
            Expect::Ssl,
        )
        .server("default"),
        case(
            "client TLSv1.2..TLSv1.2 [001: connection success with correct range of TLS protocol versions]",
            "sslmode=require ssl_min_protocol_version=TLSv1.2 ssl_max_protocol_version=TLSv1.2",
            Expect::Ssl,
        )
        .server("default"),
        case(
            "client TLSv1.3..TLSv1.2 [001: connection failure with incorrect range of TLS protocol versions]",
            "sslmode=require ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2",
            Expect::Fail("invalid SSL protocol version range"),
        )
        .server("default"),
        case(
            "client ssl_min_protocol_version=incorrect_tls [001: connection failure with an incorrect SSL protocol minimum bound]",
            "sslmode=require ssl_min_protocol_version=incorrect_tls",
            Expect::Fail("ssl_min_protocol_version"),
        )
        .server("default"),
        case(
            "client ssl_max_protocol_version=incorrect_tls [001: connection failure with an incorrect SSL protocol maximum bound]",
            "sslmode=require ssl_max_protocol_version=incorrect_tls",
            Expect::Fail("ssl_max_protocol_version"),
        )
        .server("default"),
        // libpq's hint names the client's range (ssl_min_protocol_version's default TLSv1.2).
        case(
            "server TLSv1.3 only, client ssl_max_protocol_version=TLSv1.2: require fails",
            "sslmode=require ssl_max_protocol_version=TLSv1.2",
            Expect::Fail(
                "SSL error: tlsv1 alert protocol version\nThis may indicate that the server does not support any SSL protocol version between TLSv1.2 and TLSv1.2.",
            ),
        )
        .server("tls1.3"),
        case(
            "server TLSv1.3 only, client ssl_max_protocol_version=TLSv1.2: prefer falls back",
            "sslmode=prefer ssl_max_protocol_version=TLSv1.2",
            Expect::Plain,
        )
        .server("tls1.3")
        .connections(2),
        case(
            "server TLSv1.3 only, client ssl_min_protocol_version=TLSv1.3",
            "sslmode=require ssl_min_protocol_version=TLSv1.3",
            Expect::Ssl,
        )
        .server("tls1.3"),
        case(
            "server TLSv1.3 only, client defaults",
            "sslmode=require",
            Expect::Ssl,
        )
        .server("tls1.3"),
    ];
    let servers = start_servers(vec![
        ("default", cn_only_server().hba(TRUST_ALL)),
        (
            "tls1.3",
            cn_only_server()
                .hba(TRUST_ALL)
                .setting("ssl_min_protocol_version", "TLSv1.3"),
        ),
    ]);
    run_group("protocol versions", &ports(&servers), &cases);
}

/// SNI, as a pgssl test server sees it (PostgreSQL 15 does not expose the client's SNI): sent
/// for a DNS host, not for an IP literal (libpq's digits-and-dots or colon test), not with
/// sslsni=0; psql shows that libpq 15 does the same.
#[test]
fn sni_seen_by_a_pgssl_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with(
        ServerPolicy::new(),
        localhost_config(dir.path()).build().unwrap(),
    );
    let home = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str, Option<&str>); 7] = [
        ("a DNS host", CN_HOST, "", Some(CN_HOST)),
        ("localhost", "localhost", "", Some("localhost")),
        ("an IPv4 literal", "127.0.0.1", "", None),
        (
            "an IPv4 literal in lenient form",
            "192.000.002.001",
            "",
            None,
        ),
        ("an IPv6 literal", "::1", "", None),
        (
            "a host inet_aton reads as IPv4 but with letters (0x7f.1): libpq's test sends it",
            "0x7f.1",
            "",
            Some("0x7f.1"),
        ),
        ("a DNS host with sslsni=0", CN_HOST, "sslsni=0", None),
    ];
    let mut failures = Vec::new();
    let sni_of = |client: &str, failed: &str| -> Result<Option<String>, String> {
        if !failed.contains(FATAL_MARKER) || !failed.contains("ssl=on") {
            return Err(format!(
                "{client} did not reach the test server over SSL: {failed}"
            ));
        }
        match server.next() {
            Seen::Startup {
                tls: true,
                session: Some(s),
                ..
            } => Ok(s.sni),
            other => Err(format!("the server saw {other:?} from {client}")),
        }
    };
    for (name, host, extra, expected) in cases {
        let conninfo = format!(
            "host='{host}' hostaddr=127.0.0.1 port={} user=ssltestuser dbname=postgres gssencmode=disable sslmode=require {extra}",
            server.port
        );
        let pgssl = match pgssl_outcome(&conninfo, home.path()) {
            Outcome::Failed(e) => sni_of("pgssl", &e),
            o => Err(format!("pgssl: {o}")),
        };
        let psql = match psql_outcome(&conninfo, home.path()) {
            Outcome::Failed(e) => sni_of("psql", &e),
            o => Err(format!("psql: {o}")),
        };
        let want = Ok(expected.map(str::to_owned));
        let sni_text = |r: &Result<Option<String>, String>| match r {
            Ok(Some(sni)) => format!("SNI sent: {sni}"),
            Ok(None) => "no SNI sent".to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        publish(Published {
            case: &format!(
                "SNI seen by a pgssl server: {name}{}",
                if extra.is_empty() {
                    String::new()
                } else {
                    format!(" ({extra})")
                }
            ),
            counterpart: "",
            postgresql: sni_text(&psql),
            pgssl: sni_text(&pgssl),
            matched: pgssl.is_ok() && pgssl == psql,
            difference: None,
        });
        if pgssl != want || psql != want {
            failures.push(format!(
                "case {name:?} ({conninfo}): expected SNI {expected:?}\n  pgssl: {pgssl:?}\n  psql (libpq 15): {psql:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// tls-server-end-point on the client (`peer_end_point`) equals the openssl CLI's hash of the
/// server's certificate (SHA-256 for SHA-1 signatures, else the signature's digest).
#[test]
fn tls_server_end_point() {
    let certs_of = [
        // server-sha1 (SHA-256 for SHA-1 signatures) cannot be tested here: PostgreSQL 15 with
        // OpenSSL 3's default security level refuses to load it ("ca md too weak").
        (
            "server-cn-only+server_ca.crt",
            "server-cn-only",
            CN_HOST,
            "sha256",
        ),
        ("server-sha384.crt", "server-sha384", "localhost", "sha384"),
        ("server-sha512.crt", "server-sha512", "localhost", "sha512"),
    ];
    let servers = start_servers(
        certs_of
            .iter()
            .map(|(chain, name, _, _)| {
                (
                    *name,
                    Postgres::builder(chain, &format!("{name}.key")).hba(TRUST_ALL),
                )
            })
            .collect(),
    );
    let home = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (_, name, host, digest) in certs_of {
        let port = servers[name].port;
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(certs().join(format!("{name}.crt")))
            .output()
            .expect("the openssl CLI (apt-get install openssl)");
        assert!(der.status.success(), "openssl x509 failed for {name}");
        let mut dgst = Command::new("openssl")
            .args(["dgst", &format!("-{digest}"), "-binary"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl dgst");
        {
            use std::io::Write;
            dgst.stdin.take().unwrap().write_all(&der.stdout).unwrap();
        }
        let expected = dgst.wait_with_output().unwrap().stdout;
        let conninfo = format!(
            "host={host} hostaddr=127.0.0.1 port={port} user=ssltestuser dbname=postgres gssencmode=disable sslmode=verify-full sslrootcert={}/root+server_ca.crt",
            certs().display()
        );
        let mut config = ClientTlsConfig::from_conninfo(&conninfo).unwrap();
        config.home = Some(home.path().to_path_buf());
        let got = match connect(&config) {
            Ok(c) => c
                .stream
                .ssl()
                .map(|ssl| peer_end_point(ssl).map_err(|e| e.to_string()))
                .unwrap_or_else(|| Err("no TLS session".into())),
            Err(e) => Err(format!("connect failed: {e}")),
        };
        let psql = psql_outcome(&conninfo, home.path());
        let ok = got.as_deref() == Ok(&expected[..]) && meets(Expect::Ssl, &psql);
        publish(Published {
            case: &format!("tls-server-end-point of {name} ({digest})"),
            counterpart: "",
            postgresql: format!(
                "{}; openssl CLI {digest} of the certificate: {}",
                published_outcome(&psql, &[(home.path(), "{home}")]),
                hex(&expected)
            ),
            pgssl: match &got {
                Ok(g) => format!("peer_end_point: {}", hex(g)),
                Err(e) => format!("failed: {e}"),
            },
            matched: ok,
            difference: None,
        });
        if !ok {
            failures.push(format!(
                "{name} ({digest}): openssl CLI {}, pgssl peer_end_point {:?}, psql: {psql}",
                hex(&expected),
                got.map(|g| hex(&g))
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// A server certificate whose CN holds a NUL byte (CVE-2009-4034)

/// libpq reads the server's names only under verify-full: under `require` and `verify-ca` a CN
/// with an embedded NUL does not stop the connection (the test server's FATAL after the
/// StartupMessage shows TLS was established); under verify-full it is refused with libpq's
/// text.
#[test]
fn server_common_name_with_embedded_null() {
    let pki = tempfile::tempdir().unwrap();
    tls_support::one_name_pki(pki.path(), "localhost\0.evil.example");
    let mut server = pgssl::tls::ServerTlsConfig::new();
    server
        .ssl(true)
        .cert_file(pki.path().join("leaf.crt"))
        .key_file(pki.path().join("leaf.key"));
    let srv = TestServer::with(ServerPolicy::new(), server.build().unwrap());
    let home = tempfile::tempdir().unwrap();
    let root = pki.path().join("ca.crt");
    for (mode, expect) in [
        ("require", FATAL_MARKER),
        ("verify-ca", FATAL_MARKER),
        (
            "verify-full",
            "SSL certificate's name contains embedded null",
        ),
    ] {
        let conninfo = format!(
            "host=localhost hostaddr=127.0.0.1 port={} user=u sslmode={mode} sslrootcert={} connect_timeout=10",
            srv.port,
            root.display()
        );
        let mut config = ClientTlsConfig::from_conninfo(&conninfo).unwrap();
        config.home(home.path());
        let e = match connect(&config) {
            Ok(_) => panic!("{mode}: the test server always answers with a FATAL"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(expect), "{mode}: {e}");
        if mode == "verify-full" {
            assert!(!e.contains(FATAL_MARKER), "{mode}: {e}");
        } else {
            assert!(e.contains("ssl=on"), "{mode}: {e}");
        }
    }
}
