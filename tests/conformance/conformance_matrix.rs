//! Conformance, part 1: the negotiation matrix of PostgreSQL's
//! src/test/libpq_encryption/t/001_negotiate_encryption.pl (without GSS), run against real
//! clients and real servers.
//!
//! * **pgssl's side:** the server example (`examples/server.rs`) started twice, with ssl=on (its
//!   generated certificate) and with `-c ssl=off`, with the matrix's pg_hba.conf ([`HBA`]):
//!   `testuser` may connect either way, `ssluser` only over SSL, `nossluser` only without.
//! * **Clients:** psql (libpq 15: no `sslnegotiation`, so only the `postgres` rows) and
//!   psycopg's bundled libpq 18, every sslmode × sslnegotiation × user; `verify-*` get
//!   `sslrootcert` = the server's certificate and `host=localhost`.
//! * **What is observed:** the server's log lines for the client's connections give the event
//!   sequence, parsed as 001's `parse_log_events` does (one event per matching line):
//!   "connection received" → connect (reconnect after the first event), "SSLRequest
//!   accepted/rejected" → sslaccept/sslreject, "direct SSL connection accepted/rejected" →
//!   directsslaccept/directsslreject, "connection authorized" → authok, a FATAL line →
//!   authfail. The outcome (plain, ssl, fail) is the client's: psycopg's
//!   `conn.pgconn.ssl_in_use`, the `ssl` column for psql; a failed connect is fail.
//! * **References:** libpq 18 against the expected table ([`TABLE`], the ssl=on and ssl=off
//!   rows of tests/core/matrix.rs, i.e. PostgreSQL 17's table). libpq 15 against what it does with a
//!   live PostgreSQL 15 server (tests/support/pg.rs, ssl on with
//!   `server-localhost+server_ca.crt`, and ssl off) with the same pg_hba.conf — libpq 15 does
//!   not follow PostgreSQL 17's table (under `allow` it continues in plaintext after `N` on
//!   the SSL retry). The libpq 18 `postgres` rows are compared with the live PostgreSQL 15 too
//!   (direct SSL does not exist there). PostgreSQL 15 logs no SSLRequest lines, so those
//!   comparisons use what both logs show: the connections, authok/authfail, whether the
//!   authorized connection has SSL (`authok(ssl)`, `authok(plain)`), plus the client's outcome.
//!
//! Every case appends a JSON line to target/conformance/matrix.jsonl (truncated first) for
//! scripts/conformance-report.py; any difference fails the test, listing every differing case.
//!
//! Needs psql, the PostgreSQL 15 server with its `postgres` user (`apt-get install
//! postgresql-client postgresql`) and psycopg (`pip install 'psycopg[binary]'`);
//! scripts/test.sh installs them.

use crate::support::example_proc;
use crate::support::pg;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use example_proc::{
    CLIENT_TIMEOUT, Example, SERVER_READY, START_TIMEOUT, cert, clean, example, manifest_dir,
    psycopg_libpq_major, python,
};
use pg::Postgres;

/// Expected results (PostgreSQL 17), shared with tests/core/matrix.rs; the rows of servers this test
/// does not run (the pre-17 `ssl=on,nodirect`) are skipped.
/// Columns: server, user, sslmode (comma list), sslnegotiation, events, outcome. `-` means no
/// event (the connect is refused before connecting).
const TABLE: &str = include_str!("../support/libpq_encryption.table");

/// The matrix's pg_hba.conf, for the example server and for PostgreSQL 15 alike.
const HBA: &str = "host all testuser all trust\n\
                   hostssl all ssluser all trust\n\
                   hostnossl all nossluser all trust\n";

const SERVERS: [&str; 2] = ["ssl=on", "ssl=off"];
const USERS: [&str; 3] = ["testuser", "ssluser", "nossluser"];
const MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
const NEGOTIATIONS: [&str; 2] = ["postgres", "direct"];

/// The suite's name in the results.
const SUITE: &str = "negotiation matrix";

/// A log is complete once it has not grown for this long. Every line of a case is written
/// before the client can see its effect (the example logs to a file, unbuffered; PostgreSQL
/// logs before it replies), so this only guards against a late line landing in the next case.
const SETTLE: Duration = Duration::from_millis(30);

/// The live reference server: libpq 15's rows and libpq 18's postgres rows are compared with it.
const PG15: &str = "PostgreSQL 15";

// ---------------------------------------------------------------------------------------------
// Clients

/// A client's view of one connect.
struct ClientResult {
    /// plain, ssl or fail.
    outcome: &'static str,
    /// The error (or anything unexpected), for the failure report.
    message: String,
}

/// psql's major version (its libpq is the system's; `sslnegotiation` is refused by libpq 15).
fn psql_version() -> u32 {
    static VERSION: OnceLock<u32> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = Command::new("psql")
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("psql is missing ({e}): apt-get install postgresql-client (scripts/test.sh installs it)")
            });
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .find_map(|w| w.split('.').next().and_then(|m| m.parse().ok()))
            .unwrap_or_else(|| panic!("could not read psql's version from {text:?}"))
    })
}

/// `psql CONNINFO -X -w -A -t -c "select ssl from pg_stat_ssl …"`: the example answers any
/// query with its row, whose first column is `ssl` too.
fn psql(conninfo: &str) -> ClientResult {
    let out = example_proc::psql(
        conninfo,
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    );
    if !out.status.success() {
        return ClientResult {
            outcome: "fail",
            message: one_line(&out.stderr),
        };
    }
    let first = out
        .stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .split('|')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    match first.as_str() {
        "t" => ClientResult {
            outcome: "ssl",
            message: String::new(),
        },
        "f" => ClientResult {
            outcome: "plain",
            message: String::new(),
        },
        _ => ClientResult {
            outcome: "unknown",
            message: format!("unexpected psql output: {out}"),
        },
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Connects once per conninfo line on stdin; answers `ok ssl`, `ok plain` or `fail MESSAGE`.
const PSYCOPG_WORKER: &str = r#"
import sys, psycopg
for line in sys.stdin:
    conninfo = line.rstrip("\n")
    try:
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute("select 1").fetchone()
            out = "ok ssl" if c.pgconn.ssl_in_use else "ok plain"
    except Exception as e:
        out = "fail " + " | ".join(str(e).splitlines())
    print(out, flush=True)
"#;

/// One Python process with psycopg (libpq 18) connecting on request: importing psycopg takes
/// longer than a connect, so it is done once per server.
struct Psycopg {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Psycopg {
    fn start() -> Psycopg {
        let mut child = clean(python())
            .args(["-c", PSYCOPG_WORKER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start python with psycopg: {e}"));
        let stdin = child.stdin.take();
        let (tx, replies) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let buf = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut b = buf.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
            }
        });
        Psycopg {
            child,
            stdin,
            replies,
            stderr,
        }
    }

    fn connect(&mut self, conninfo: &str) -> ClientResult {
        let stdin = self.stdin.as_mut().expect("the worker's stdin");
        stdin
            .write_all(format!("{conninfo}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "the psycopg worker is gone ({e}):\n{}",
                    self.stderr.lock().unwrap()
                )
            });
        let reply = self
            .replies
            .recv_timeout(CLIENT_TIMEOUT)
            .unwrap_or_else(|e| {
                panic!(
                    "psycopg did not answer for {conninfo:?} within {CLIENT_TIMEOUT:?} ({e}):\n{}",
                    self.stderr.lock().unwrap()
                )
            });
        match reply.split_once(' ') {
            Some(("ok", "ssl")) => ClientResult {
                outcome: "ssl",
                message: String::new(),
            },
            Some(("ok", "plain")) => ClientResult {
                outcome: "plain",
                message: String::new(),
            },
            Some(("fail", msg)) => ClientResult {
                outcome: "fail",
                message: msg.to_owned(),
            },
            _ => ClientResult {
                outcome: "unknown",
                message: format!("unexpected psycopg worker reply {reply:?}"),
            },
        }
    }
}

impl Drop for Psycopg {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the worker's loop ends.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ClientKind {
    /// psql, with the system's libpq (15).
    Psql,
    /// psycopg's bundled libpq (18).
    Psycopg,
}

impl ClientKind {
    fn label(self) -> String {
        match self {
            ClientKind::Psql => format!("libpq{}", psql_version()),
            ClientKind::Psycopg => format!("libpq{}", psycopg_libpq_major()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

/// The server example, its stderr going to a file (unbuffered writes: a line is in the file
/// before the client can see what it reports), with the matrix's pg_hba.conf and ssl on or off.
fn start_example(ssl: bool) -> Example {
    let dir = tempfile::Builder::new()
        .prefix("pgssl-conformance-matrix.")
        .tempdir()
        .expect("a temporary directory");
    let hba = dir.path().join("pg_hba.conf");
    std::fs::write(&hba, HBA).expect("pg_hba.conf written");
    let mut args = vec!["--hba".to_owned(), hba.display().to_string()];
    if !ssl {
        args.extend(["-c".to_owned(), "ssl=off".to_owned()]);
    }
    let example = Example::try_start(
        "server",
        &args,
        SERVER_READY,
        Some(dir.path()),
        START_TIMEOUT,
    )
    .unwrap_or_else(|(status, log)| panic!("the server example exited at start: {status}\n{log}"));
    assert_eq!(
        example.cert.is_some(),
        ssl,
        "the generated certificate on the \"connect with:\" line:\n{}",
        example.log()
    );
    example.keeping(dir)
}

/// PostgreSQL 15 with the matrix's pg_hba.conf, log_connections on, and ssl on or off.
fn postgres15(ssl: bool) -> Postgres {
    let mut config = Postgres::builder("server-localhost+server_ca.crt", "server-localhost.key")
        .hba(HBA)
        .setting("log_connections", "on");
    if !ssl {
        config = config.setting("ssl", "off");
    }
    let pg = config.start();
    // The harness creates ssluser and nossluser; the matrix also needs testuser.
    pg.psql_admin("CREATE ROLE testuser LOGIN;");
    pg
}

enum Server {
    Example(Example),
    Pg(Postgres),
}

impl Server {
    fn port(&self) -> u16 {
        match self {
            Server::Example(e) => e.port,
            Server::Pg(p) => p.port,
        }
    }

    fn log(&self) -> String {
        match self {
            Server::Example(e) => e.log(),
            Server::Pg(p) => p.log(),
        }
    }

    /// The log once it has stopped growing.
    fn settled_log(&self) -> String {
        let mut last = self.log();
        for _ in 0..100 {
            thread::sleep(SETTLE);
            let now = self.log();
            if now.len() == last.len() {
                return now;
            }
            last = now;
        }
        last
    }

    /// The root certificate for verify-ca and verify-full.
    fn rootcert(&self) -> PathBuf {
        match self {
            Server::Example(Example { cert: Some(c), .. }) => c.clone(),
            // ssl=off: never reached by a handshake, but an existing file.
            Server::Example(_) | Server::Pg(_) => cert("root+server_ca.crt"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events

#[derive(Clone, Debug)]
struct Event {
    name: &'static str,
    /// For authok: whether the authorized connection has SSL.
    ssl: Option<bool>,
}

/// The events of these log lines, as 001_negotiate_encryption.pl's `parse_log_events` finds
/// them (every pattern is tried on every line), with PostgreSQL 15's and the example's
/// "connection authorized" for authok and a FATAL line for authfail.
fn parse_events(log: &str) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    for line in log.lines() {
        if line.contains("connection received") {
            let name = if events.is_empty() {
                "connect"
            } else {
                "reconnect"
            };
            events.push(Event { name, ssl: None });
        }
        let mut push = |name: &'static str, ssl: Option<bool>| events.push(Event { name, ssl });
        for (pattern, name) in [
            ("SSLRequest accepted", "sslaccept"),
            ("SSLRequest rejected", "sslreject"),
            ("direct SSL connection accepted", "directsslaccept"),
            ("direct SSL connection rejected", "directsslreject"),
        ] {
            if line.contains(pattern) {
                push(name, None);
            }
        }
        if line.contains("FATAL:") {
            push("authfail", None);
        }
        if line.contains("connection authorized") {
            push("authok", Some(line.contains("SSL enabled")));
        }
    }
    events
}

/// What one client connect did against one server.
struct Observed {
    events: Vec<Event>,
    outcome: &'static str,
    /// The client's error, for the failure report.
    message: String,
    /// The log lines of the case, for the failure report.
    log: String,
}

fn join_events<'a>(names: impl Iterator<Item = std::borrow::Cow<'a, str>>) -> String {
    let v: Vec<_> = names.collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(", ")
    }
}

impl Observed {
    /// "connect, sslaccept, authok -> ssl": 001's notation.
    fn full(&self) -> String {
        let events = join_events(self.events.iter().map(|e| e.name.into()));
        format!("{events} -> {}", self.outcome)
    }

    /// What a PostgreSQL 15 log shows too: "connect, authfail, reconnect, authok(ssl) -> ssl".
    fn visible_in_pg15(&self) -> String {
        let events = join_events(self.events.iter().filter_map(|e| match (e.name, e.ssl) {
            ("authok", Some(true)) => Some("authok(ssl)".into()),
            ("authok", _) => Some("authok(plain)".into()),
            ("connect" | "reconnect" | "authfail", _) => Some(e.name.into()),
            _ => None,
        }));
        format!("{events} -> {}", self.outcome)
    }
}

// ---------------------------------------------------------------------------------------------
// The expected table

type Key = (&'static str, &'static str, &'static str, &'static str);

/// (server, user, sslmode, sslnegotiation) → "events -> outcome" in 001's notation.
fn expected() -> BTreeMap<Key, String> {
    let mut map = BTreeMap::new();
    for line in TABLE.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&'static str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 6, "bad table line: {line}");
        if !SERVERS.contains(&cols[0]) {
            continue; // a server this test does not run (the pre-17 one)
        }
        let events = if cols[4] == "-" {
            "-".to_owned()
        } else {
            cols[4].split(',').collect::<Vec<_>>().join(", ")
        };
        for mode in cols[2].split(',') {
            let key = (cols[0], cols[1], mode, cols[3]);
            let old = map.insert(key, format!("{events} -> {}", cols[5]));
            assert!(old.is_none(), "duplicate table row for {key:?}");
        }
    }
    assert_eq!(
        map.len(),
        SERVERS.len() * USERS.len() * MODES.len() * NEGOTIATIONS.len()
    );
    map
}

/// The row of 001_negotiate_encryption.pl this case stands for: "USER GSSENCMODE SSLMODE
/// SSLNEGOTIATION" (gssencmode disable).
fn counterpart(server: &str, user: &str, mode: &str, negotiation: &str) -> String {
    let verify = mode.starts_with("verify-");
    let mut row = format!(
        "{user} disable {} {negotiation}",
        if verify { "require" } else { mode }
    );
    let mut notes = Vec::new();
    if verify {
        notes.push(format!("001 has no {mode} rows: its require row"));
    }
    if server == "ssl=off" && user != "testuser" {
        notes.push("001 runs ssl=off with testuser only: tests/core/matrix.rs's row".to_owned());
    }
    if !notes.is_empty() {
        let _ = write!(row, " ({})", notes.join("; "));
    }
    row
}

// ---------------------------------------------------------------------------------------------
// Running the cases

/// (server config, against, client, user, sslmode, sslnegotiation); `against` is "pgssl" or
/// PG15.
type RunKey = (
    &'static str,
    &'static str,
    ClientKind,
    &'static str,
    &'static str,
    &'static str,
);

/// Runs `cases` against `server`, one at a time, each with the log lines written during its
/// connect.
fn run_cases(
    server: &Server,
    server_name: &'static str,
    against: &'static str,
    cases: &[(ClientKind, &'static str, &'static str, &'static str)],
) -> Vec<(RunKey, Observed)> {
    let mut worker: Option<Psycopg> = None;
    let mut results = Vec::new();
    let mut mark = server.settled_log().len();
    for &(client, user, mode, negotiation) in cases {
        let mut conninfo = format!(
            "host=localhost port={} dbname=postgres user={user} sslmode={mode} connect_timeout=10",
            server.port()
        );
        if client == ClientKind::Psycopg {
            let _ = write!(conninfo, " sslnegotiation={negotiation}");
        }
        if mode.starts_with("verify-") {
            let _ = write!(conninfo, " sslrootcert={}", server.rootcert().display());
        }
        let result = match client {
            ClientKind::Psql => psql(&conninfo),
            ClientKind::Psycopg => worker.get_or_insert_with(Psycopg::start).connect(&conninfo),
        };
        let log = server.settled_log();
        let part = log.get(mark..).unwrap_or("").to_owned();
        mark = log.len();
        results.push((
            (server_name, against, client, user, mode, negotiation),
            Observed {
                events: parse_events(&part),
                outcome: result.outcome,
                message: format!("{conninfo}: {}", result.message),
                log: part,
            },
        ));
    }
    results
}

/// One line of target/conformance/matrix.jsonl.
struct Record {
    case: String,
    counterpart: String,
    postgresql: String,
    pgssl: String,
    difference: Option<String>,
}

impl Record {
    fn matches(&self) -> bool {
        self.postgresql == self.pgssl
    }

    fn to_json(&self) -> String {
        example_proc::Record {
            suite: SUITE,
            case: &self.case,
            counterpart: &self.counterpart,
            postgresql: &self.postgresql,
            pgssl: &self.pgssl,
            matched: self.matches(),
            difference: self.difference.as_deref(),
        }
        .to_json(true)
    }
}

#[test]
fn negotiation_matrix_against_real_clients() {
    let started = Instant::now();
    // Results: truncated first, so a run that stops early leaves no stale lines.
    let results_dir = manifest_dir().join("target/conformance");
    std::fs::create_dir_all(&results_dir).expect("target/conformance");
    let results_file = results_dir.join("matrix.jsonl");
    std::fs::File::create(&results_file).expect("target/conformance/matrix.jsonl truncated");

    // Fail early, with how to install what is missing.
    psql_version();
    python();
    example("server");

    let table = expected();

    // Every client case, against pgssl's example server and against PostgreSQL 15.
    let mut pgssl_cases = Vec::new();
    let mut pg15_cases = Vec::new();
    for user in USERS {
        for mode in MODES {
            pgssl_cases.push((ClientKind::Psql, user, mode, "postgres"));
            pg15_cases.push((ClientKind::Psql, user, mode, "postgres"));
            for negotiation in NEGOTIATIONS {
                pgssl_cases.push((ClientKind::Psycopg, user, mode, negotiation));
            }
            pg15_cases.push((ClientKind::Psycopg, user, mode, "postgres"));
        }
    }

    // The four servers run side by side, each with its cases one at a time.
    let observed: BTreeMap<RunKey, Observed> = thread::scope(|s| {
        let mut handles = Vec::new();
        for server_name in SERVERS {
            let ssl = server_name == "ssl=on";
            let cases = &pgssl_cases;
            handles.push(s.spawn(move || {
                let server = Server::Example(start_example(ssl));
                run_cases(&server, server_name, "pgssl", cases)
            }));
            let cases = &pg15_cases;
            handles.push(s.spawn(move || {
                let server = Server::Pg(postgres15(ssl));
                run_cases(&server, server_name, PG15, cases)
            }));
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });

    let get = |server, against, client, user, mode, negotiation| -> &Observed {
        observed
            .get(&(server, against, client, user, mode, negotiation))
            .expect("every case was run")
    };
    let mut records = Vec::new();
    let mut details = Vec::new();
    let mut push = |record: Record, details_of: Vec<&Observed>| {
        if !record.matches() {
            let mut d = format!(
                "{}: PostgreSQL {}, pgssl {}",
                record.case, record.postgresql, record.pgssl
            );
            for o in details_of {
                let _ = write!(
                    d,
                    "\n    client: {}\n    log:\n{}",
                    o.message,
                    o.log
                        .lines()
                        .map(|l| format!("      {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            details.push(d);
        }
        records.push(record);
    };

    // 1. libpq 18 against PostgreSQL 17's table: every event and the outcome.
    let libpq18 = ClientKind::Psycopg.label();
    let libpq15 = ClientKind::Psql.label();
    for server in SERVERS {
        for user in USERS {
            for mode in MODES {
                for negotiation in NEGOTIATIONS {
                    let got = get(
                        server,
                        "pgssl",
                        ClientKind::Psycopg,
                        user,
                        mode,
                        negotiation,
                    );
                    push(
                        Record {
                            case: format!("{server} {user} {mode} {negotiation} {libpq18}"),
                            counterpart: counterpart(server, user, mode, negotiation),
                            postgresql: table[&(server, user, mode, negotiation)].clone(),
                            pgssl: got.full(),
                            difference: None,
                        },
                        vec![got],
                    );
                }
            }
        }
    }
    // 2. libpq 18's postgres rows against what it does with a live PostgreSQL 15.
    for server in SERVERS {
        for user in USERS {
            for mode in MODES {
                let reference = get(server, PG15, ClientKind::Psycopg, user, mode, "postgres");
                let got = get(server, "pgssl", ClientKind::Psycopg, user, mode, "postgres");
                push(
                    Record {
                        case: format!("{server} {user} {mode} postgres {libpq18} vs {PG15}"),
                        counterpart: counterpart(server, user, mode, "postgres"),
                        postgresql: reference.visible_in_pg15(),
                        pgssl: got.visible_in_pg15(),
                        difference: None,
                    },
                    vec![reference, got],
                );
            }
        }
    }
    // 3. libpq 15 (psql) against what it does with a live PostgreSQL 15.
    for server in SERVERS {
        for user in USERS {
            for mode in MODES {
                let reference = get(server, PG15, ClientKind::Psql, user, mode, "postgres");
                let got = get(server, "pgssl", ClientKind::Psql, user, mode, "postgres");
                push(
                    Record {
                        case: format!("{server} {user} {mode} postgres {libpq15}"),
                        counterpart: counterpart(server, user, mode, "postgres"),
                        postgresql: reference.visible_in_pg15(),
                        pgssl: got.visible_in_pg15(),
                        difference: None,
                    },
                    vec![reference, got],
                );
            }
        }
    }

    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .open(&results_file)
        .expect("target/conformance/matrix.jsonl");
    for r in &records {
        writeln!(out, "{}", r.to_json()).expect("a result line written");
    }
    let matching = records.iter().filter(|r| r.matches()).count();
    eprintln!(
        "{SUITE}: {} cases, {matching} matching, {} different, in {:.1?}; results in {}",
        records.len(),
        records.len() - matching,
        started.elapsed(),
        results_file.display()
    );
    assert!(
        details.is_empty(),
        "{} of {} cases differ from PostgreSQL:\n{}",
        details.len(),
        records.len(),
        details.join("\n")
    );
}
