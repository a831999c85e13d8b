//! Conformance, part 3: other real clients and servers than libpq.
//!
//! The examples built on pgssl (`examples/server.rs`, `examples/connect.rs`) against peers with
//! their own protocol code:
//!
//! 1. asyncpg (pure Python/Cython protocol code) against the example server: `ssl='require'`,
//!    an `ssl.SSLContext` that verifies the generated certificate (verify-full), and asyncpg's
//!    direct TLS (`direct_tls=True`), with and without ALPN.
//! 2. pg8000 (pure Python): an `ssl.SSLContext` (verify-full), its default (an SSLRequest, TLS
//!    without verification) and `ssl_context=False` (plaintext).
//! 3. PgBouncer 1.18 (Debian's `pgbouncer`), (a) as a TLS *client* of the example server
//!    (`server_tls_sslmode=verify-full`), with psql in front of it in plaintext; (b) as a TLS
//!    *server* (`client_tls_sslmode=require`, and `disable`) for the connect example, with psql
//!    (libpq 15) and psycopg (libpq 18) run with the same connection strings as the reference.
//! 4. tokio-postgres with postgres-openssl (Rust), `SslMode::Require` through an SSLRequest and
//!    direct SSL with ALPN, `simple_query`.
//!
//! Every case also appends a JSON line to `target/conformance/peers.jsonl` (truncated when this
//! test binary writes its first line): `suite`, `case`, `counterpart` (what it exercises),
//! `postgresql` (what a real PostgreSQL, or libpq, gives), `pgssl` (what was observed), `match`
//! and `difference` (null, or why not). A test writes all its lines before it fails.
//!
//! * The example binaries are found next to this test's binary (`target/<profile>/examples/`),
//!   built once with `cargo build --examples` (a `cargo test --test conformance` does not
//!   build them); tests/support/example_proc.rs has these helpers.
//! * Every server listens on a free port of 127.0.0.1; every child runs under a timeout and is
//!   killed when its guard drops; clients run with no `PG*` variables and an empty `HOME`.
//!
//! Needs: `python3 -m pip install asyncpg pg8000 'psycopg[binary]'`, `apt-get install -y
//! pgbouncer postgresql-client util-linux` (PgBouncer refuses to run as root: it runs as the
//! `postgres` user through `runuser`).

use crate::support::example_proc;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use example_proc::{
    CLIENT_TIMEOUT, Example, Output, ResultsFile, Running, SERVER_READY, START_TIMEOUT, cert,
    clean, free_port, key_copy, profile_dir, psycopg, run, try_signal, wait_log,
};

const SUITE: &str = "other clients and servers";
const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A private temporary directory.
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pgssl-conformance-peers-")
        .tempdir()
        .expect("a temporary directory")
}

// ---------------------------------------------------------------------------------------------
// The report: target/conformance/peers.jsonl

/// The report file (under the target directory), truncated when this test binary writes its
/// first line.
static REPORT: ResultsFile = ResultsFile::new(SUITE, || {
    profile_dir()
        .parent()
        .expect("target/ above target/<profile>/")
        .join("conformance/peers.jsonl")
});

/// The verdicts of one test: every case is written to the report at once; the failures are
/// asserted at the end, so that a failing case does not hide the others.
#[derive(Default)]
struct Verdicts {
    failures: Vec<String>,
}

impl Verdicts {
    /// Records a case; `difference` is `None` when pgssl's side behaved as PostgreSQL's does.
    fn record(
        &mut self,
        case: &str,
        counterpart: &str,
        postgresql: &str,
        pgssl: &str,
        difference: Option<String>,
    ) {
        let matched = difference.is_none();
        let diff = difference.as_deref();
        REPORT.append(case, counterpart, postgresql, pgssl, matched, diff);
        if let Some(d) = difference {
            self.failures.push(format!(
                "{case}\n  postgresql: {postgresql}\n  pgssl:      {pgssl}\n  difference: {d}"
            ));
        }
    }

    fn assert_all(self) {
        assert!(
            self.failures.is_empty(),
            "{} case(s) differ from PostgreSQL:\n\n{}",
            self.failures.len(),
            self.failures.join("\n\n")
        );
    }
}

/// Each of `needles` missing from `log`, as a difference.
fn log_lacks(log: &str, needles: &[&str]) -> Vec<String> {
    needles
        .iter()
        .filter(|n| !log.contains(*n))
        .map(|n| format!("the log lacks {n:?}"))
        .collect()
}

fn joined(mut parts: Vec<String>) -> Option<String> {
    parts.retain(|p| !p.is_empty());
    (!parts.is_empty()).then(|| parts.join("; "))
}

// ---------------------------------------------------------------------------------------------
// The example server

/// The example server (stopped with SIGTERM, then SIGKILL, when dropped).
type ExampleServer = Example;

impl ExampleServer {
    /// With its generated certificate.
    fn generated() -> ExampleServer {
        let s = ExampleServer::server(&[]);
        assert!(
            s.cert.as_deref().is_some_and(Path::is_file),
            "the server example printed its generated certificate's path:\n{}",
            s.log()
        );
        s
    }

    /// With the PKI's `server-localhost+server_ca.crt` and a 0600 copy of its key (kept until
    /// the server stops), so that a client trusting `root_ca.crt` verifies it.
    fn pki() -> ExampleServer {
        let dir = temp_dir();
        let key = key_copy(dir.path(), "server-localhost.key");
        let args = [
            "-c".to_owned(),
            format!(
                "ssl_cert_file={}",
                cert("server-localhost+server_ca.crt").display()
            ),
            "-c".to_owned(),
            format!("ssl_key_file={}", key.display()),
        ];
        ExampleServer::start("server", &args, SERVER_READY).keeping(dir)
    }
}

/// The example server's row as `|`-separated text (NULL empty), split.
fn fields(line: &str) -> Vec<&str> {
    line.trim().split('|').collect()
}

/// What the row says, for the report: `ssl=t version=… alpn=… sni=…`.
fn describe_row(line: &str) -> String {
    let f = fields(line);
    if f.len() != 9 {
        return format!("unexpected row {:?}", line.trim());
    }
    let or_null = |s: &str| {
        if s.is_empty() {
            "NULL".to_owned()
        } else {
            s.to_owned()
        }
    };
    format!(
        "ssl={} version={} alpn={} sni={}",
        f[0],
        or_null(f[1]),
        or_null(f[7]),
        or_null(f[8])
    )
}

/// The first line of a client's stderr (its error), for the report.
fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Python clients

/// The interpreter that has `module`, resolved once per module with the real environment (so
/// pyenv shims work), or a panic saying which pip command installs it.
fn python_with(module: &'static str, pip: &'static str) -> String {
    static FOUND: OnceLock<Mutex<Vec<(&'static str, String)>>> = OnceLock::new();
    let found = FOUND.get_or_init(Default::default);
    if let Some((_, exe)) = found.lock().unwrap().iter().find(|(m, _)| *m == module) {
        return exe.clone();
    }
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import sys, {module}; print(sys.executable)"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is missing ({e}): install python3, then `python3 -m pip install {pip}`")
        });
    assert!(
        out.status.success(),
        "{module} is missing: python3 -m pip install {pip} (scripts/test.sh must install it)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    found.lock().unwrap().push((module, exe.clone()));
    exe
}

/// Runs `script ARGS…` with the interpreter that has `module`.
fn python(module: &'static str, pip: &'static str, script: &str, args: &[&str]) -> Output {
    let mut c = clean(python_with(module, pip));
    c.arg("-c").arg(script).args(args);
    run(&mut c, &format!("python3 ({module}) {args:?}"))
}

/// asyncpg: connects to localhost:PORT as postgres with the keyword arguments of MODE, runs
/// `select 1` (asyncpg prepares it: Parse/Describe/Bind/Execute), prints the row.
const ASYNCPG_SCRIPT: &str = r#"
import asyncio, ssl, sys
import asyncpg

mode, port, crt, other_ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def context(cafile, alpn):
    # CERT_REQUIRED and check_hostname: verify-full.
    c = ssl.create_default_context(cafile=cafile)
    if alpn:
        c.set_alpn_protocols(["postgresql"])
    return c

kwargs = {
    "require": dict(ssl="require"),
    "context": dict(ssl=context(crt, False)),
    "context-wrong-ca": dict(ssl=context(other_ca, False)),
    "direct-require": dict(ssl="require", direct_tls=True),
    "direct-context": dict(ssl=context(crt, True), direct_tls=True),
    "direct-context-no-alpn": dict(ssl=context(crt, False), direct_tls=True),
}[mode]

async def main():
    c = await asyncpg.connect(host="localhost", port=port, user="postgres",
                              database="postgres", timeout=10, **kwargs)
    try:
        row = await asyncio.wait_for(c.fetchrow("select 1"), 10)
        print("|".join("" if v is None else str(v) for v in row.values()))
    finally:
        await c.close(timeout=5)

try:
    asyncio.run(main())
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
"#;

/// pg8000 (native API): MODE `context` passes an SSLContext that verifies CRT (verify-full),
/// `default` nothing (pg8000 then tries an SSLRequest without verification, like `prefer`),
/// `off` `ssl_context=False` (plaintext); `select 1` (extended protocol), prints the row.
const PG8000_SCRIPT: &str = r#"
import ssl, sys
import pg8000.native

mode, port, crt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kwargs = {
    "context": {"ssl_context": ssl.create_default_context(cafile=crt)},
    "default": {},
    "off": {"ssl_context": False},
}[mode]
try:
    c = pg8000.native.Connection("postgres", host="localhost", port=port,
                                 database="postgres", timeout=10, **kwargs)
    rows = c.run("select 1")
    c.close()
    print("|".join("" if v is None else str(v) for v in rows[0]))
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
"#;

// ---------------------------------------------------------------------------------------------
// 1. asyncpg

/// One asyncpg connection that should get the row over TLS; `alpn` is the ALPN column the row
/// must show, `event` the example server's log line for the negotiation.
fn asyncpg_ok(
    v: &mut Verdicts,
    server: &ExampleServer,
    mode: &str,
    case: &str,
    counterpart: &str,
    alpn: &str,
    event: &str,
) {
    let mark = server.mark();
    let crt = server.cert().display().to_string();
    let other = cert("root_ca.crt").display().to_string();
    let port = server.port.to_string();
    let out = python(
        "asyncpg",
        "asyncpg",
        ASYNCPG_SCRIPT,
        &[mode, &port, &crt, &other],
    );
    let shown_alpn = if alpn.is_empty() { "NULL" } else { alpn };
    let postgresql = format!("ssl=t version=TLSv1.3 alpn={shown_alpn} sni=localhost; {event}");
    if !out.success() {
        let log = server.log().get(mark..).unwrap_or("").to_owned();
        v.record(
            case,
            counterpart,
            &postgresql,
            &format!("asyncpg failed: {}", first_line(&out.stderr)),
            Some(format!(
                "asyncpg could not run the query: {}\nserver log:\n{log}",
                out.stderr.trim()
            )),
        );
        return;
    }
    let line = out.stdout.trim().to_owned();
    let f = fields(&line);
    let log = server
        .try_wait_log(mark, "connection authorized:")
        .unwrap_or_else(|l| l);
    let mut diff = Vec::new();
    if f.len() != 9 || f[0] != "t" || f[1] != "TLSv1.3" || f[7] != alpn || f[8] != "localhost" {
        diff.push(format!(
            "the row is {line:?}, not ssl=t, TLSv1.3, alpn={alpn:?}, sni=localhost"
        ));
    }
    diff.extend(log_lacks(&log, &[event, "SSL enabled (protocol=TLSv1.3"]));
    v.record(
        case,
        counterpart,
        &postgresql,
        &format!("{}; log: {event}", describe_row(&line)),
        joined(diff),
    );
}

#[test]
fn asyncpg_against_the_example_server() {
    let server = ExampleServer::generated();
    let mut v = Verdicts::default();

    asyncpg_ok(
        &mut v,
        &server,
        "require",
        "asyncpg ssl='require'",
        "asyncpg's SSLRequest and its own TLS context (ALPN postgresql, no verification)",
        "postgresql",
        "SSLRequest accepted",
    );
    asyncpg_ok(
        &mut v,
        &server,
        "context",
        "asyncpg ssl=SSLContext (verify-full, server_hostname localhost)",
        "asyncpg's SSLRequest with a caller's ssl.SSLContext that verifies the generated certificate and the host name",
        "",
        "SSLRequest accepted",
    );
    asyncpg_ok(
        &mut v,
        &server,
        "direct-require",
        "asyncpg direct_tls=True ssl='require'",
        "asyncpg's direct TLS (no SSLRequest) with its own context, which offers ALPN postgresql",
        "postgresql",
        "direct SSL connection accepted",
    );
    asyncpg_ok(
        &mut v,
        &server,
        "direct-context",
        "asyncpg direct_tls=True ssl=SSLContext with ALPN postgresql (verify-full)",
        "asyncpg's direct TLS with a caller's verifying context offering ALPN postgresql",
        "postgresql",
        "direct SSL connection accepted",
    );

    // Direct TLS without ALPN: PostgreSQL 17 closes the connection after the handshake and logs
    // "received direct SSL connection request without ALPN protocol negotiation extension".
    {
        let mark = server.mark();
        let crt = server.cert().display().to_string();
        let other = cert("root_ca.crt").display().to_string();
        let port = server.port.to_string();
        let out = python(
            "asyncpg",
            "asyncpg",
            ASYNCPG_SCRIPT,
            &["direct-context-no-alpn", &port, &crt, &other],
        );
        let needle =
            "received direct SSL connection request without ALPN protocol negotiation extension";
        let log = server.try_wait_log(mark, needle).unwrap_or_else(|l| l);
        let mut diff = Vec::new();
        if out.success() {
            diff.push(format!(
                "asyncpg got a row ({:?}) over direct TLS without ALPN",
                out.stdout.trim()
            ));
        }
        diff.extend(log_lacks(&log, &[needle]));
        v.record(
            "asyncpg direct_tls=True ssl=SSLContext without ALPN",
            "asyncpg's direct TLS with a caller's context that offers no ALPN (asyncpg adds ALPN only to its own contexts)",
            &format!("connection closed after the handshake; the server logs \"{needle}\""),
            &format!(
                "asyncpg: {}; log: {}",
                if out.success() {
                    "got a row".to_owned()
                } else {
                    first_line(&out.stderr).to_owned()
                },
                if log.contains(needle) {
                    needle
                } else {
                    "(no such line)"
                }
            ),
            joined(diff),
        );
    }

    // A context that trusts another CA: the client refuses the generated certificate.
    {
        let crt = server.cert().display().to_string();
        let other = cert("root_ca.crt").display().to_string();
        let port = server.port.to_string();
        let out = python(
            "asyncpg",
            "asyncpg",
            ASYNCPG_SCRIPT,
            &["context-wrong-ca", &port, &crt, &other],
        );
        let diff = if out.success() {
            Some(format!(
                "asyncpg accepted a certificate its context does not trust: {:?}",
                out.stdout.trim()
            ))
        } else if !out.stderr.contains("certificate verify failed") {
            Some(format!(
                "asyncpg failed otherwise: {}",
                first_line(&out.stderr)
            ))
        } else {
            None
        };
        v.record(
            "asyncpg ssl=SSLContext trusting another CA",
            "asyncpg's certificate verification of the example server's generated certificate",
            "the client refuses the certificate: certificate verify failed",
            &if out.success() {
                format!("got a row: {}", out.stdout.trim())
            } else {
                first_line(&out.stderr).to_owned()
            },
            diff,
        );
    }
    v.assert_all();
}

// ---------------------------------------------------------------------------------------------
// 2. pg8000

#[test]
fn pg8000_against_the_example_server() {
    let server = ExampleServer::generated();
    let mut v = Verdicts::default();
    let crt = server.cert().display().to_string();
    let port = server.port.to_string();
    // (mode, case, counterpart, ssl column, log line)
    let cases = [
        (
            "context",
            "pg8000 ssl_context=SSLContext (verify-full)",
            "pg8000's SSLRequest with an ssl.SSLContext that verifies the generated certificate and the host name; extended-protocol select 1",
            "t",
            "SSL enabled (protocol=TLSv1.3",
        ),
        (
            "default",
            "pg8000 default ssl_context (None)",
            "pg8000's default: an SSLRequest, then TLS without verification (libpq's prefer without a root certificate)",
            "t",
            "SSL enabled (protocol=TLSv1.3",
        ),
        (
            "off",
            "pg8000 ssl_context=False",
            "pg8000's plaintext startup (no SSLRequest) against a server with ssl=on and a host line",
            "f",
            "SSL off",
        ),
    ];
    for (mode, case, counterpart, ssl, event) in cases {
        let mark = server.mark();
        let out = python("pg8000", "pg8000", PG8000_SCRIPT, &[mode, &port, &crt]);
        let postgresql = if ssl == "t" {
            "ssl=t version=TLSv1.3 alpn=NULL sni=localhost; SSLRequest accepted".to_owned()
        } else {
            "ssl=f; no SSLRequest".to_owned()
        };
        if !out.success() {
            v.record(
                case,
                counterpart,
                &postgresql,
                &format!("pg8000 failed: {}", first_line(&out.stderr)),
                Some(format!(
                    "pg8000 could not run the query: {}\nserver log:\n{}",
                    out.stderr.trim(),
                    server.log().get(mark..).unwrap_or("")
                )),
            );
            continue;
        }
        let line = out.stdout.trim().to_owned();
        let f = fields(&line);
        let log = server
            .try_wait_log(mark, "connection authorized:")
            .unwrap_or_else(|l| l);
        let mut diff = Vec::new();
        let row_ok = if ssl == "t" {
            f.len() == 9 && f[0] == "t" && f[1] == "TLSv1.3" && f[8] == "localhost"
        } else {
            f.len() == 9 && f[0] == "f"
        };
        if !row_ok {
            diff.push(format!("the row is {line:?}"));
        }
        diff.extend(log_lacks(&log, &[event]));
        if ssl == "t" {
            diff.extend(log_lacks(&log, &["SSLRequest accepted"]));
        } else if log.contains("SSLRequest") {
            diff.push("the server saw an SSLRequest".into());
        }
        v.record(
            case,
            counterpart,
            &postgresql,
            &format!("{}; log: {event}", describe_row(&line)),
            joined(diff),
        );
    }
    v.assert_all();
}

// ---------------------------------------------------------------------------------------------
// 3. PgBouncer

/// `uid:gid` of the `postgres` user, or a panic saying how to get it.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .stdin(Stdio::null())
            .output()
            .expect("id(1) runs");
        assert!(
            out.status.success(),
            "there is no postgres user (PgBouncer refuses to run as root): `apt-get install -y pgbouncer postgresql` creates it"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

/// A PgBouncer run as `postgres` through runuser, with its configuration in a temporary
/// directory (0755, owned by postgres); stopped (its pidfile's pid, then runuser) when dropped.
struct PgBouncer {
    proc: Running,
    port: u16,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// A PgBouncer for database `postgres` at 127.0.0.1:`upstream`, trust authentication,
    /// session pooling, with `settings` added to `[pgbouncer]`. `client_key` (a PKI key name)
    /// is copied into its directory as `client.key` (0600, owned by postgres) and becomes
    /// `client_tls_key_file`.
    fn start(upstream: u16, settings: &[(&str, String)], client_key: Option<&str>) -> PgBouncer {
        assert!(
            Path::new(PGBOUNCER).is_file(),
            "{PGBOUNCER} is missing: apt-get install -y pgbouncer (scripts/test.sh must install it)"
        );
        assert!(
            Command::new("runuser")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "runuser is missing: apt-get install -y util-linux"
        );
        let (uid, gid) = postgres_ids();
        let mut last = String::new();
        for _ in 0..5 {
            let dir = temp_dir();
            let chown = |p: &Path| {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown postgres {}: {e}", p.display()))
            };
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            chown(dir.path());
            let mut settings = settings.to_vec();
            if let Some(name) = client_key {
                let to = dir.path().join("client.key");
                std::fs::copy(cert(name), &to).expect("copy the key");
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
                chown(&to);
                settings.push(("client_tls_key_file", to.display().to_string()));
            }
            let port = free_port();
            let auth = dir.path().join("userlist.txt");
            std::fs::write(&auth, "\"postgres\" \"\"\n").unwrap();
            let mut ini = format!(
                "[databases]\npostgres = host=127.0.0.1 port={upstream} dbname=postgres\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = session\npidfile = {}\n",
                auth.display(),
                dir.path().join("pgbouncer.pid").display()
            );
            for (k, val) in &settings {
                ini.push_str(&format!("{k} = {val}\n"));
            }
            let config = dir.path().join("pgbouncer.ini");
            std::fs::write(&config, &ini).unwrap();
            for f in [&auth, &config] {
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
            let mut cmd = clean("runuser");
            cmd.args(["-u", "postgres", "--", PGBOUNCER]).arg(&config);
            let mut proc = Running::spawn(&mut cmd, "pgbouncer");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let log = proc.stderr();
                if log.contains("process up") {
                    return PgBouncer { proc, port, dir };
                }
                if log.contains("FATAL") || proc.exited().is_some() {
                    let mut b = PgBouncer { proc, port, dir };
                    b.stop();
                    last = b.log();
                    break;
                }
                if Instant::now() >= deadline {
                    let mut b = PgBouncer { proc, port, dir };
                    b.stop();
                    panic!(
                        "pgbouncer did not log \"process up\" within {START_TIMEOUT:?}:\n{}",
                        b.log()
                    );
                }
                thread::sleep(Duration::from_millis(20));
            }
            if !last.contains("in use") && !last.contains("nowhere to listen") {
                panic!("pgbouncer exited before it was ready:\n{last}\nconfiguration:\n{ini}");
            }
        }
        panic!("pgbouncer found no free port after 5 tries:\n{last}");
    }

    fn log(&self) -> String {
        self.proc.stderr()
    }

    fn mark(&self) -> usize {
        self.log().len()
    }

    fn wait_log(&self, from: usize, needle: &str) -> Result<String, String> {
        wait_log(|| self.log(), from, needle)
    }

    /// The pid in PgBouncer's pidfile, if it is still a pgbouncer process.
    fn daemon_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "pgbouncer").then_some(pid)
    }

    /// SIGTERM to PgBouncer (immediate shutdown), or to runuser (which passes it on); SIGKILL
    /// to both after 5 s.
    fn stop(&mut self) {
        if self.proc.exited().is_some() {
            return;
        }
        match self.daemon_pid() {
            Some(pid) => try_signal(pid, "TERM"),
            None => try_signal(self.proc.pid(), "TERM"),
        }
        if self.proc.wait_timeout(Duration::from_secs(5)).is_none() {
            // wait_timeout killed runuser; PgBouncer may be left.
            if let Some(pid) = self.daemon_pid() {
                try_signal(pid, "KILL");
            }
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `psql CONNINFO -X -w -A -t -c 'select 1'` (libpq 15).
fn psql(conninfo: &str) -> Output {
    example_proc::psql(conninfo, "select 1")
}

/// The connect example: `connect CONNINFO --query 'select 1'`.
fn connect(conninfo: &str) -> Output {
    example_proc::connect(conninfo, Some("select 1"))
}

/// A libpq error without its "connection to server at … failed: " prefix (psycopg resolves
/// the host itself and names the address, libpq and the connect example name the host).
fn libpq_reason(stderr: &str) -> String {
    let s = stderr.trim();
    let after = s.find(", port ").map_or(0, |i| i + 7);
    match s[after..].find(" failed: ") {
        Some(i) => s[after + i + 8..].trim().to_owned(),
        None => s.to_owned(),
    }
}

#[test]
fn pgbouncer_as_a_tls_client_of_the_example_server() {
    let server = ExampleServer::pki();
    let bouncer = PgBouncer::start(
        server.port,
        &[
            ("server_tls_sslmode", "verify-full".to_owned()),
            (
                "server_tls_ca_file",
                cert("root_ca.crt").display().to_string(),
            ),
            ("client_tls_sslmode", "disable".to_owned()),
        ],
        None,
    );
    let mut v = Verdicts::default();

    // (a) psql → PgBouncer (plaintext) → the example server (TLS, verified).
    {
        let mark = server.mark();
        let bmark = bouncer.mark();
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable connect_timeout=10",
            bouncer.port
        );
        let out = psql(&conninfo);
        let line = out.stdout.trim().to_owned();
        let log = server
            .try_wait_log(mark, "connection authorized:")
            .unwrap_or_else(|l| l);
        let blog = bouncer
            .wait_log(bmark, "SSL established")
            .unwrap_or_else(|l| l);
        let f = fields(&line);
        let mut diff = Vec::new();
        if !out.success() {
            diff.push(format!("psql failed: {}", out.stderr.trim()));
        } else if f.len() != 9 || f[0] != "t" || f[1] != "TLSv1.3" {
            diff.push(format!("the row is {line:?}"));
        }
        diff.extend(log_lacks(
            &log,
            &["SSLRequest accepted", "SSL enabled (protocol=TLSv1.3"],
        ));
        if !blog.contains("SSL established: TLSv1.3") {
            diff.push(format!(
                "PgBouncer did not log \"SSL established: TLSv1.3\":\n{blog}"
            ));
        }
        v.record(
            "PgBouncer server_tls_sslmode=verify-full → example server",
            "PgBouncer 1.18 (libusual TLS) as a client: SSLRequest, handshake, verification of server-localhost+server_ca.crt against root_ca.crt for host 127.0.0.1; psql in front in plaintext",
            "ssl=t version=TLSv1.3 (the pooled server connection); the server logs SSLRequest accepted; PgBouncer logs SSL established",
            &if out.success() {
                format!(
                    "{}; server log: {}; PgBouncer log: {}",
                    describe_row(&line),
                    if log.contains("SSLRequest accepted") {
                        "SSLRequest accepted"
                    } else {
                        "(no SSLRequest accepted)"
                    },
                    blog.lines()
                        .find(|l| l.contains("SSL established"))
                        .and_then(|l| l.split("SSL established").nth(1))
                        .map(|s| format!("SSL established{s}"))
                        .unwrap_or_else(|| "(no SSL established)".into())
                )
            } else {
                format!("psql failed: {}", first_line(&out.stderr))
            },
            joined(diff),
        );
    }

    // (b, disable) PgBouncer with client_tls_sslmode=disable answers the SSLRequest with N:
    // the connect example with sslmode=require fails with libpq's words, as psql does.
    {
        let conninfo = format!(
            "host=localhost port={} user=postgres sslmode=require connect_timeout=10",
            bouncer.port
        );
        let ours = connect(&conninfo);
        let theirs = psql(&conninfo);
        let expected = "server does not support SSL, but SSL was required";
        let mut diff = Vec::new();
        if ours.success() {
            diff.push(format!(
                "the connect example connected: {}",
                ours.stdout.trim()
            ));
        } else if libpq_reason(&ours.stderr) != expected {
            diff.push(format!("the connect example says {:?}", ours.stderr.trim()));
        }
        if theirs.success() || libpq_reason(&theirs.stderr) != expected {
            diff.push(format!(
                "psql (the reference) said something else: {}",
                theirs.stderr.trim()
            ));
        }
        v.record(
            "connect sslmode=require → PgBouncer client_tls_sslmode=disable",
            "PgBouncer's 'N' to an SSLRequest, seen by the connect example (pgssl's client)",
            &format!("libpq (psql 15): {}", theirs.stderr.trim()),
            &format!("connect example: {}", ours.stderr.trim()),
            joined(diff),
        );
    }
    v.assert_all();
}

#[test]
fn pgbouncer_as_a_tls_server_for_the_connect_example() {
    let server = ExampleServer::pki();
    let bouncer = PgBouncer::start(
        server.port,
        &[
            ("server_tls_sslmode", "verify-full".to_owned()),
            (
                "server_tls_ca_file",
                cert("root_ca.crt").display().to_string(),
            ),
            ("client_tls_sslmode", "require".to_owned()),
            (
                "client_tls_cert_file",
                cert("server-localhost+server_ca.crt").display().to_string(),
            ),
        ],
        Some("server-localhost.key"),
    );
    let mut v = Verdicts::default();
    let port = bouncer.port;

    // (b) The connect example, verify-full against PgBouncer's certificate.
    {
        let bmark = bouncer.mark();
        let conninfo = format!(
            "host=localhost port={port} user=postgres sslmode=verify-full sslrootcert=tests/certs/root_ca.crt connect_timeout=10"
        );
        let ours = connect(&conninfo);
        let theirs = psql(&conninfo);
        let blog = bouncer
            .wait_log(
                bmark,
                "login attempt: db=postgres user=postgres tls=TLSv1.3",
            )
            .unwrap_or_else(|l| l);
        let mut lines = ours.stdout.lines();
        let status = lines.next().unwrap_or("").to_owned();
        let row = lines.next().unwrap_or("").to_owned();
        let mut diff = Vec::new();
        if !ours.success() {
            diff.push(format!(
                "the connect example failed: {}",
                ours.stderr.trim()
            ));
        } else {
            if !status.starts_with("ssl=on protocol=TLSv1.3 ") {
                diff.push(format!("the connect example printed {status:?}"));
            }
            if fields(&row).first() != Some(&"t") {
                diff.push(format!("the row through PgBouncer is {row:?}"));
            }
        }
        if !blog.contains("login attempt: db=postgres user=postgres tls=TLSv1.3") {
            diff.push(format!("PgBouncer did not log a TLS login:\n{blog}"));
        }
        if !theirs.success() || fields(&theirs.stdout).first() != Some(&"t") {
            diff.push(format!("psql (the reference) failed: {theirs}"));
        }
        v.record(
            "connect sslmode=verify-full → PgBouncer client_tls_sslmode=require",
            "PgBouncer 1.18 as a TLS server (server-localhost+server_ca.crt): the connect example's SSLRequest, handshake and verify-full against root_ca.crt",
            &format!(
                "libpq (psql 15) connects over TLS and gets the row: {}",
                theirs.stdout.trim()
            ),
            &if ours.success() {
                format!("{status}; row: {row}")
            } else {
                format!("failed: {}", ours.stderr.trim())
            },
            joined(diff),
        );
    }

    // sslmode=disable against client_tls_sslmode=require: PgBouncer's FATAL, as libpq shows it.
    {
        let conninfo =
            format!("host=localhost port={port} user=postgres sslmode=disable connect_timeout=10");
        let ours = connect(&conninfo);
        let theirs = psql(&conninfo);
        let (a, b) = (libpq_reason(&ours.stderr), libpq_reason(&theirs.stderr));
        let diff = if ours.success() {
            Some(format!(
                "the connect example connected: {}",
                ours.stdout.trim()
            ))
        } else if theirs.success() {
            Some(format!(
                "psql (the reference) connected: {}",
                theirs.stdout.trim()
            ))
        } else if a != b {
            Some(format!("the connect example says {a:?}, libpq says {b:?}"))
        } else {
            None
        };
        v.record(
            "connect sslmode=disable → PgBouncer client_tls_sslmode=require",
            "PgBouncer's FATAL \"SSL required\" to a plaintext startup, reported by the connect example",
            &format!("libpq (psql 15): {}", theirs.stderr.trim()),
            &format!("connect example: {}", ours.stderr.trim()),
            diff,
        );
    }

    // sslnegotiation=direct against PgBouncer 1.18, which has no direct SSL: it reads the
    // ClientHello as a startup packet and closes the connection. libpq 18 (psycopg) is the
    // reference for the error text.
    {
        let conninfo = format!(
            "host=localhost port={port} user=postgres sslmode=verify-full sslrootcert=tests/certs/root_ca.crt sslnegotiation=direct connect_timeout=10"
        );
        let ours = connect(&conninfo);
        let theirs = psycopg(&conninfo);
        let (a, b) = (libpq_reason(&ours.stderr), libpq_reason(&theirs.stderr));
        let diff = if ours.success() {
            Some(format!(
                "the connect example connected: {}",
                ours.stdout.trim()
            ))
        } else if theirs.success() {
            Some(format!(
                "psycopg (the reference) connected: {}",
                theirs.stdout.trim()
            ))
        } else if a != b {
            Some(format!(
                "the connect example says {a:?}, libpq 18 says {b:?}"
            ))
        } else {
            None
        };
        v.record(
            "connect sslnegotiation=direct → PgBouncer 1.18 (no direct SSL)",
            "a server without direct SSL answering a direct ClientHello: the connect example's handshake error text",
            &format!("libpq 18 (psycopg): {b}"),
            &format!("connect example: {a}"),
            diff,
        );
    }
    v.assert_all();
}

// ---------------------------------------------------------------------------------------------
// 4. tokio-postgres with postgres-openssl

/// Connects with tokio-postgres (`SslMode::Require`, a connector trusting `crt` with host name
/// verification; direct SSL with ALPN postgresql when `direct`), runs `simple_query("select 1")`
/// and returns the row, all within `CLIENT_TIMEOUT`.
fn tokio_postgres_row(port: u16, crt: PathBuf, direct: bool) -> Result<Vec<String>, String> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use tokio_postgres::SimpleQueryMessage;
    use tokio_postgres::config::{SslMode, SslNegotiation};

    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let result = (|| -> Result<Vec<String>, String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let mut b =
                    SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
                b.set_ca_file(&crt).map_err(|e| e.to_string())?;
                b.set_verify(SslVerifyMode::PEER);
                if direct {
                    postgres_openssl::set_postgresql_alpn(&mut b).map_err(|e| e.to_string())?;
                }
                let tls = postgres_openssl::MakeTlsConnector::new(b.build());
                let mut config = tokio_postgres::Config::new();
                config
                    .host("localhost")
                    .port(port)
                    .user("postgres")
                    .dbname("postgres")
                    .ssl_mode(SslMode::Require)
                    .connect_timeout(Duration::from_secs(10));
                if direct {
                    config.ssl_negotiation(SslNegotiation::Direct);
                }
                let (client, connection) =
                    config.connect(tls).await.map_err(|e| format!("{e:?}"))?;
                let conn = tokio::spawn(connection);
                let messages = client
                    .simple_query("select 1")
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                let row = messages
                    .iter()
                    .find_map(|m| match m {
                        SimpleQueryMessage::Row(r) => Some(
                            (0..r.len())
                                .map(|i| r.get(i).unwrap_or("").to_owned())
                                .collect::<Vec<_>>(),
                        ),
                        _ => None,
                    })
                    .ok_or_else(|| format!("no row in {} messages", messages.len()))?;
                drop(client);
                let _ = conn.await;
                Ok(row)
            })
        })();
        let _ = tx.send(result);
    });
    rx.recv_timeout(CLIENT_TIMEOUT)
        .unwrap_or_else(|_| Err(format!("no answer within {CLIENT_TIMEOUT:?}")))
}

#[test]
fn tokio_postgres_against_the_example_server() {
    let server = ExampleServer::generated();
    let mut v = Verdicts::default();
    // (direct, case, counterpart, alpn, log line)
    let cases = [
        (
            false,
            "tokio-postgres SslMode::Require (postgres-openssl, trusting the generated certificate)",
            "tokio-postgres' SSLRequest and postgres-openssl's handshake with host name verification; simple_query",
            "",
            "SSLRequest accepted",
        ),
        (
            true,
            "tokio-postgres SslNegotiation::Direct with ALPN postgresql",
            "tokio-postgres' direct SSL (postgres_openssl::set_postgresql_alpn); simple_query",
            "postgresql",
            "direct SSL connection accepted",
        ),
    ];
    for (direct, case, counterpart, alpn, event) in cases {
        let mark = server.mark();
        let result = tokio_postgres_row(server.port, server.cert().to_path_buf(), direct);
        let shown_alpn = if alpn.is_empty() { "NULL" } else { alpn };
        let postgresql = format!("ssl=t version=TLSv1.3 alpn={shown_alpn} sni=localhost; {event}");
        match result {
            Ok(row) => {
                let line = row.join("|");
                let log = server
                    .try_wait_log(mark, "connection authorized:")
                    .unwrap_or_else(|l| l);
                let mut diff = Vec::new();
                if row.len() != 9
                    || row[0] != "t"
                    || row[1] != "TLSv1.3"
                    || row[7] != alpn
                    || row[8] != "localhost"
                {
                    diff.push(format!("the row is {line:?}"));
                }
                diff.extend(log_lacks(&log, &[event]));
                v.record(
                    case,
                    counterpart,
                    &postgresql,
                    &format!("{}; log: {event}", describe_row(&line)),
                    joined(diff),
                );
            }
            Err(e) => v.record(
                case,
                counterpart,
                &postgresql,
                &format!("tokio-postgres failed: {e}"),
                Some(format!(
                    "tokio-postgres failed: {e}\nserver log:\n{}",
                    server.log().get(mark..).unwrap_or("")
                )),
            ),
        }
    }
    v.assert_all();
}
