//! Captured output in the docs, checked against real runs: every fenced block preceded by an
//! HTML comment `<!-- doc-check: NAME -->` in README.md or docs/**/*.md is produced here by
//! running the same commands (the example binaries as black boxes, psql, psycopg, a real
//! PostgreSQL 15), and the two must be equal once ports, PIDs and temporary paths are masked
//! on both sides ([`mask`]). A change that alters a documented output fails here, naming the
//! doc and the block to update; [`every_marked_block_is_checked`] fails for a marker no test
//! checks.
//!
//! Needs what tests/adapters/examples.rs needs: psql, PostgreSQL 15 and psycopg (a missing one
//! is a failure saying how to install it; scripts/test.sh installs all three).

use crate::support::example_proc;
use crate::support::pg::Postgres;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use example_proc::{
    Example, Output, Running, cert, clean, example, manifest_dir, psql_command, psycopg, python,
    run, signal,
};

// ---------------------------------------------------------------------------------------------
// The mechanism

/// Every (doc, block) a test below checks; [`every_marked_block_is_checked`] holds the docs'
/// markers to this list.
const CHECKED: &[(&str, &str)] = &[
    ("README.md", "readme-server-start"),
    ("README.md", "readme-psql"),
    ("docs/examples/server.md", "server-log"),
    ("docs/examples/server.md", "server-other-lines"),
    ("docs/examples/server.md", "server-start-errors"),
    ("docs/examples/server.md", "server-psql"),
    ("docs/examples/server.md", "server-psql-client-cert"),
    ("docs/examples/server.md", "server-ssl-off-require"),
    ("docs/examples/server.md", "server-psycopg-script"),
    ("docs/examples/server.md", "server-psycopg"),
    ("docs/examples/connect.md", "connect-success-line"),
    ("docs/examples/connect.md", "connect-real-runs"),
    ("docs/examples/connect.md", "connect-hba-fatals"),
    ("docs/examples/proxy.md", "proxy-start-errors"),
    ("docs/examples/proxy.md", "proxy-log"),
    ("docs/examples/proxy.md", "proxy-psql"),
    ("docs/examples/proxy.md", "proxy-cancel"),
    ("docs/examples/proxy.md", "proxy-psycopg-script"),
    ("docs/examples/proxy.md", "proxy-psycopg"),
    ("docs/examples/proxy.md", "proxy-scram-error"),
    ("docs/examples/proxy.md", "proxy-upstream-refusal"),
];

const MARKER: &str = "<!-- doc-check: ";

/// The text of the fenced block that follows `<!-- doc-check: NAME -->` in `doc` (a path from
/// the crate's root), without its fences.
fn doc_block(doc: &str, name: &str) -> String {
    let text =
        std::fs::read_to_string(manifest_dir().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let marker = format!("{MARKER}{name} -->");
    let mut lines = text.lines().skip_while(|l| l.trim() != marker);
    assert!(
        lines.next().is_some(),
        "{doc} has no `{marker}` (tests/adapters/doc_outputs.rs checks that block)"
    );
    lines
        .next()
        .map(str::trim_start)
        .filter(|l| l.starts_with("```"))
        .unwrap_or_else(|| panic!("{doc}: `{marker}` must be followed by a fenced block"));
    let indent = text
        .lines()
        .skip_while(|l| l.trim() != marker)
        .nth(1)
        .map_or(0, |l| l.len() - l.trim_start().len());
    let mut out = String::new();
    for l in lines {
        if l.trim_start().starts_with("```") {
            return out;
        }
        out.push_str(l.get(indent..).unwrap_or(l.trim_start()));
        out.push('\n');
    }
    panic!("{doc}: the block after `{marker}` is not closed");
}

/// The variable parts of a run, replaced by placeholders: ports (after `port=`, `port `,
/// `127.0.0.1:`, `localhost:`, `PGPORT=`) by `<PORT>`, process ids (after `pid `, `process `)
/// by `<PID>`, and a temporary directory (`/tmp/…/`, up to the last `/` of the path) by
/// `<TMP>/`. Applied to both the doc and the run, so the docs keep realistic values.
fn mask(text: &str) -> String {
    let tmp = std::env::temp_dir().display().to_string();
    let text = if tmp != "/tmp" && !tmp.is_empty() {
        text.replace(&tmp, "/tmp")
    } else {
        text.to_owned()
    };
    let mut s = mask_tmp(&text);
    for (key, placeholder) in [
        ("port=", "<PORT>"),
        ("port ", "<PORT>"),
        ("127.0.0.1:", "<PORT>"),
        ("localhost:", "<PORT>"),
        ("PGPORT=", "<PORT>"),
        ("pid ", "<PID>"),
        ("process ", "<PID>"),
    ] {
        s = mask_numbers_after(&s, key, placeholder);
    }
    s.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

/// Replaces the digits right after each `key` by `placeholder`.
fn mask_numbers_after(s: &str, key: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(key) {
        let after = &rest[i + key.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&rest[..i + key.len()]);
        if digits > 0 {
            out.push_str(placeholder);
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// `/tmp/a/b/file` → `<TMP>/file` (a path ends at a blank, a quote or a closing parenthesis).
fn mask_tmp(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("/tmp/") {
        out.push_str(&rest[..i]);
        let path = &rest[i..];
        let end = path
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')'))
            .unwrap_or(path.len());
        let last = path[..end].rfind('/').unwrap_or(4);
        out.push_str("<TMP>");
        rest = &path[last..];
    }
    out.push_str(rest);
    out
}

/// Asserts that the block `name` of `doc` equals `actual` (both masked), or fails with what to
/// change.
fn check(doc: &str, name: &str, actual: &str) {
    let want = mask(&doc_block(doc, name));
    let got = mask(actual);
    if want == got {
        return;
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut diff = String::new();
    for i in 0..w.len().max(g.len()) {
        match (w.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => diff.push_str(&format!("  {a}\n")),
            (a, b) => {
                if let Some(a) = a {
                    diff.push_str(&format!("- {a}\n"));
                }
                if let Some(b) = b {
                    diff.push_str(&format!("+ {b}\n"));
                }
            }
        }
    }
    panic!(
        "{doc}: the block after `<!-- doc-check: {name} -->` no longer matches a real run; \
         update the doc (ports, PIDs and /tmp paths are masked: `-` is the doc, `+` the run, \
         after masking):\n{diff}\nthe run, unmasked:\n{actual}"
    );
}

#[test]
fn every_marked_block_is_checked() {
    for doc in ["README.md", "docs/client-tls.md", "docs/server-tls.md"]
        .into_iter()
        .map(str::to_owned)
        .chain(
            std::fs::read_dir(manifest_dir().join("docs/examples"))
                .expect("docs/examples")
                .map(|e| format!("docs/examples/{}", e.unwrap().file_name().to_string_lossy())),
        )
    {
        let text = std::fs::read_to_string(manifest_dir().join(&doc)).unwrap();
        for line in text.lines().filter(|l| l.trim().starts_with(MARKER)) {
            let name = line.trim()[MARKER.len()..].trim_end_matches("-->").trim();
            assert!(
                CHECKED.contains(&(doc.as_str(), name)),
                "{doc}: `{}` is checked by no test in tests/adapters/doc_outputs.rs (add it to CHECKED and to a test)",
                line.trim()
            );
        }
    }
    for (doc, name) in CHECKED {
        doc_block(doc, name);
    }
}

#[test]
fn mask_masks_what_varies() {
    assert_eq!(
        mask(
            "LOG:  connection received: host=127.0.0.1 port=37694\nsslrootcert=/tmp/pgssl-example-server-5135/server.crt\" (pid 42) process 42"
        ),
        "LOG:  connection received: host=127.0.0.1 port=<PORT>\nsslrootcert=<TMP>/server.crt\" (pid <PID>) process <PID>"
    );
    assert_eq!(mask("/tmp/…/server.crt"), "<TMP>/server.crt");
    assert_eq!(mask("x   \n\n"), "x");
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The first line of `log` that starts with each prefix, or a panic with the log.
fn lines_starting(log: &str, prefixes: &[&str]) -> String {
    let mut out = String::new();
    for p in prefixes {
        let line = log
            .lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no line starting {p:?} in the log:\n{log}"));
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `psql ARGS…` with psql's exact arguments (no `-w`; stdin is empty).
fn psql_args(args: &[&str]) -> Output {
    let mut c = psql_command();
    c.args(args);
    run(&mut c, &format!("psql {args:?}"))
}

/// The connect example with `args`, under `env`.
fn connect_run(env: &[(&str, String)], args: &[&str]) -> Output {
    let mut c = clean(example("connect"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c, &format!("connect {args:?}"))
}

/// `python -c SCRIPT`, with psycopg (libpq 17 or later).
fn run_python(script: &str) -> Output {
    let mut c = clean(python());
    c.args(["-c", script]);
    run(&mut c, "python (a doc's psycopg script)")
}

/// The doc's script with its `port=N` and `/tmp/…/server.crt` replaced by this run's.
fn fill(script: &str, port: u16, crt: &Path) -> String {
    let s = mask_numbers_after(&mask_tmp(script), "port=", "<PORT>");
    s.replace("<PORT>", &port.to_string())
        .replace("<TMP>/server.crt", &crt.display().to_string())
}

/// A plaintext TCP connection to `port` that sends `bytes` and reads until the server closes.
fn raw(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

/// Runs the example `name` with `args` to its end (it must fail at start).
fn start_error(name: &str, args: &[&str]) -> Output {
    let mut c = clean(example(name));
    c.args(["--listen", "127.0.0.1:0"]).args(args);
    let out = run(&mut c, &format!("{name} {args:?}"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name} {args:?}: exit status 1\n{out}"
    );
    out
}

/// Stops an example with SIGTERM and returns its whole log.
fn stop(mut ex: Example) -> String {
    signal(ex.proc.pid(), "TERM");
    let out = ex.proc.wait(Duration::from_secs(10));
    assert!(out.success(), "exit status 0 after SIGTERM: {out}");
    out.stderr
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A copy of a key of the PKI named `to`, mode 0600.
fn key_as(dir: &Path, name: &str, to: &str) -> String {
    let p = dir.join(to);
    std::fs::copy(cert(name), &p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

const SSL_QUERY: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
const SCRAM_USER: &str = "scramuser";
const SCRAM_PASSWORD: &str = "scram-secret";
const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "proxy-secret";

/// PostgreSQL 15 with ssl=on (server-localhost), SCRAM passwords, `scramuser` and `proxyuser`.
fn postgres(hba: &str) -> Postgres {
    let pg = Postgres::builder("server-localhost+server_ca.crt", "server-localhost.key")
        .setting("password_encryption", "scram-sha-256")
        .hba(hba)
        .start();
    pg.psql_admin(&format!(
        "CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'; \
         CREATE ROLE {PROXY_USER} LOGIN PASSWORD '{PROXY_PASSWORD}';"
    ));
    pg
}

/// Waits until the query `sql` is active on `pg`.
fn wait_active(pg: &Postgres, sql: &str, client: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = pg.psql_admin(&format!(
            "select count(*) from pg_stat_activity where query = '{sql}' and state = 'active'"
        ));
        if n.trim() == "1" {
            return;
        }
        assert!(
            client.exited().is_none(),
            "the client exited before its query ran: {}",
            client.stderr()
        );
        assert!(Instant::now() < deadline, "{sql:?} never became active");
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// README.md and docs/examples/server.md

/// README's quick start, and the server's main log with psql and psycopg.
#[test]
fn doc_server_log_and_clients() {
    let server = Example::server(&[]);
    let port = server.port;
    let crt = server.cert().to_path_buf();
    let crt_s = crt.display().to_string();
    let start = server.log();
    check("README.md", "readme-server-start", &start);

    // README: psql with the printed line, aligned output.
    let conninfo =
        format!("host=localhost port={port} user=postgres sslmode=verify-full sslrootcert={crt_s}");
    let out = psql_args(&[&conninfo, "-c", "select 1"]);
    assert!(out.success(), "{out}");
    check(
        "README.md",
        "readme-psql",
        &format!("$ psql \"{conninfo}\" -c 'select 1'\n{}", out.stdout),
    );

    // server.md, Connecting to it: psql verify-full and disable.
    let mut session = String::new();
    for conninfo in [
        conninfo.clone(),
        format!("host=localhost port={port} user=postgres sslmode=disable"),
    ] {
        let out = psql_args(&[&conninfo, "-X", "-A", "-t", "-c", "select 1"]);
        assert!(out.success(), "{out}");
        session.push_str(&format!(
            "$ psql \"{conninfo}\" -X -A -t -c 'select 1'\n{}",
            out.stdout
        ));
    }
    check("docs/examples/server.md", "server-psql", &session);

    // server.md, psycopg: the doc's own script, then its output.
    let script = fill(
        &doc_block("docs/examples/server.md", "server-psycopg-script"),
        port,
        &crt,
    );
    let out = run_python(&script);
    assert!(out.success(), "{out}");
    check("docs/examples/server.md", "server-psycopg", &out.stdout);

    // server.md, the main log: a fresh server, psql disable and verify-full, psycopg direct,
    // SIGTERM.
    drop(server);
    let server = Example::server(&[]);
    let port = server.port;
    let crt = server.cert().display().to_string();
    let base = format!("host=localhost port={port} user=postgres");
    let mark = server.mark();
    assert!(
        psql_args(&[
            &format!("{base} sslmode=disable"),
            "-X",
            "-A",
            "-t",
            "-c",
            "select 1"
        ])
        .success()
    );
    server.wait_log(mark, "connection authorized");
    let mark = server.mark();
    assert!(
        psql_args(&[
            &format!("{base} sslmode=verify-full sslrootcert={crt}"),
            "-X",
            "-A",
            "-t",
            "-c",
            "select 1"
        ])
        .success()
    );
    server.wait_log(mark, "connection authorized");
    let mark = server.mark();
    let out = psycopg(&format!(
        "{base} sslmode=verify-full sslrootcert={crt} sslnegotiation=direct"
    ));
    assert!(out.success(), "{out}");
    server.wait_log(mark, "connection authorized");
    thread::sleep(Duration::from_millis(200));
    let log = stop(server);
    check(
        "docs/examples/server.md",
        "server-log",
        &format!("$ target/debug/examples/server --listen 127.0.0.1:{port}\n{log}"),
    );
}

/// server.md: the other log lines, the client-certificate row, `-c ssl=off`, and connect.md's
/// FATALs relayed from the server's --hba.
#[test]
fn doc_server_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let hba = write_file(
        dir.path(),
        "hba.conf",
        "host all alice 127.0.0.1/32 password\n\
         host all bob 127.0.0.1/32 reject\n\
         host all carol 127.0.0.1/32 trust\n\
         hostssl all ssltestuser 127.0.0.1/32 cert\n",
    );
    let root = cert("root+client_ca.crt").display().to_string();
    let key = key_as(dir.path(), "client.key", "client.key");
    let client_crt = cert("client.crt").display().to_string();

    // A: ssl=off.
    let off = Example::server(&["-c", "ssl=off"]);
    let out = psql_args(&[
        &format!(
            "host=localhost port={} user=postgres sslmode=prefer",
            off.port
        ),
        "-X",
        "-A",
        "-t",
        "-c",
        "select 1",
    ]);
    assert!(out.success(), "{out}");
    let out = psql_args(&[
        &format!(
            "host=localhost port={} user=postgres sslmode=require",
            off.port
        ),
        "-X",
        "-A",
        "-t",
        "-c",
        "select 1",
    ]);
    assert!(!out.success());
    check(
        "docs/examples/server.md",
        "server-ssl-off-require",
        &out.stderr,
    );
    let off_log = stop(off);

    // B: --hba with password, reject, trust and cert lines.
    let b = Example::server(&[
        "--hba",
        &hba,
        "--password",
        "alice=s3cret",
        "-c",
        &format!("ssl_ca_file={root}"),
    ]);
    let p = b.port;
    let q = |conninfo: String| psql_args(&[&conninfo, "-X", "-A", "-t", "-c", "select 1"]);
    assert!(
        q(format!(
            "host=localhost port={p} user=alice password=s3cret sslmode=disable"
        ))
        .success()
    );
    let row = psql_args(&[
        &format!(
            "host=localhost port={p} user=ssltestuser sslmode=require sslcert={client_crt} sslkey={key}"
        ),
        "-X",
        "-x",
        "-c",
        "select 1",
    ]);
    assert!(row.success(), "{row}");
    check(
        "docs/examples/server.md",
        "server-psql-client-cert",
        &row.stdout,
    );
    let mut fatals = String::new();
    for args in [
        vec![format!(
            "host=localhost hostaddr=127.0.0.1 port={p} user=postgres dbname=postgres sslmode=disable"
        )],
        vec![format!(
            "host=localhost hostaddr=127.0.0.1 port={p} user=alice dbname=postgres password=wrong sslmode=disable"
        )],
    ] {
        let out = connect_run(&[], &[&args[0]]);
        assert_eq!(out.status.code(), Some(1), "{out}");
        fatals.push_str(&out.stderr);
    }
    check("docs/examples/connect.md", "connect-hba-fatals", &fatals);
    assert!(!q(format!("host=localhost port={p} user=bob sslmode=disable")).success());
    assert!(
        !q(format!(
            "host=localhost port={p} user=ssltestuser sslmode=require"
        ))
        .success()
    );
    // A StartupMessage without a user.
    raw(p, &[0, 0, 0, 9, 0, 3, 0, 0, 0]);
    // A cancel request with the right key: psycopg's conn.cancel() over plaintext.
    let out = run_python(&format!(
        "import psycopg\nc = psycopg.connect('host=localhost port={p} user=carol sslmode=disable')\nc.cancel()\nc.close()\n"
    ));
    assert!(out.success(), "{out}");
    b.wait_log(0, "accepted");
    thread::sleep(Duration::from_millis(200));
    let b_log = stop(b);

    // C: given certificate files, TLSv1.3 at least, authentication_timeout=1.
    let crt = dir.path().join("s.crt");
    std::fs::copy(cert("server-localhost.crt"), &crt).unwrap();
    let skey = key_as(dir.path(), "server-localhost.key", "s.key");
    let c = Example::server(&[
        "-c",
        &format!("ssl_cert_file={}", crt.display()),
        "-c",
        &format!("ssl_key_file={skey}"),
        "-c",
        "ssl_min_protocol_version=TLSv1.3",
        "-c",
        "authentication_timeout=1",
    ]);
    let out = psql_args(&[
        &format!(
            "host=localhost port={} user=postgres sslmode=require ssl_max_protocol_version=TLSv1.2",
            c.port
        ),
        "-X",
        "-A",
        "-t",
        "-c",
        "select 1",
    ]);
    assert!(!out.success());
    let mark = c.mark();
    {
        let _silent = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
        c.wait_log(mark, "canceling authentication due to timeout");
    }
    let mark = c.mark();
    signal(c.proc.pid(), "HUP");
    c.wait_log(mark, "SSL configuration reloaded");
    std::fs::write(&crt, "garbage\n").unwrap();
    let mark = c.mark();
    signal(c.proc.pid(), "HUP");
    c.wait_log(mark, "SSL configuration was not reloaded");
    let c_log = stop(c);

    let mut lines = lines_starting(&off_log, &["LOG:  SSLRequest rejected"]);
    lines.push_str(&lines_starting(
        &b_log,
        &[
            "LOG:  connection authenticated: identity=\"alice\"",
            "LOG:  connection authenticated: identity=\"CN=",
            "FATAL:  no pg_hba.conf entry",
            "FATAL:  pg_hba.conf rejects",
            "FATAL:  password authentication failed",
            "LOG:  connection requires a valid client certificate",
            "FATAL:  connection requires a valid client certificate",
            "FATAL:  no PostgreSQL user name",
        ],
    ));
    lines.push_str(&lines_starting(
        &c_log,
        &[
            "LOG:  could not accept SSL connection",
            "LOG:  canceling authentication due to timeout",
        ],
    ));
    lines.push_str(&lines_starting(
        &b_log,
        &[
            "LOG:  cancel request received",
            "LOG:  cancel request for process",
        ],
    ));
    lines.push_str(&lines_starting(
        &c_log,
        &[
            "LOG:  received SIGHUP",
            "LOG:  SSL configuration reloaded",
            "LOG:  could not load server certificate file",
            "LOG:  SSL configuration was not reloaded",
        ],
    ));
    check("docs/examples/server.md", "server-other-lines", &lines);
}

/// server.md: the start-up errors (exit status 1, PostgreSQL's FATAL).
#[test]
fn doc_server_start_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hba = write_file(dir.path(), "hba.conf", "local all all trust\n");
    let mut text = String::new();
    for (shown, args) in [
        ("-c ssl_ciphers=NOPE", vec!["-c", "ssl_ciphers=NOPE"]),
        (
            "-c authentication_timeout=0",
            vec!["-c", "authentication_timeout=0"],
        ),
        (
            "--hba hba.conf            # local all all trust",
            vec!["--hba", &hba],
        ),
    ] {
        let out = start_error("server", &args);
        text.push_str(&format!("$ server {shown}\n{}", out.stderr));
    }
    check("docs/examples/server.md", "server-start-errors", &text);
}

// ---------------------------------------------------------------------------------------------
// docs/examples/connect.md

/// One run of connect.md's block: environment, conninfo, `--query`, a comment after the command.
type Run<'a> = (Vec<(&'a str, String)>, String, Option<&'a str>, &'a str);

#[test]
fn doc_connect_real_runs() {
    let server = Example::server(&[]);
    let off = Example::server(&["-c", "ssl=off"]);
    let pg = postgres(&format!(
        "hostssl all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n\
         hostnossl all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n"
    ));
    let (p, poff, ppg) = (server.port, off.port, pg.port);
    let crt = server.cert().display().to_string();
    let root = "tests/certs/root_ca.crt";
    let select_row = "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()";
    // (environment, conninfo, query, comment)
    let runs: Vec<Run> = vec![
        (
            vec![],
            format!("host=localhost port={p} user=postgres sslmode=verify-full sslrootcert={crt}"),
            Some("select 1"),
            "",
        ),
        (
            vec![],
            format!(
                "hostaddr=127.0.0.1 host=wrong.example port={p} user=postgres sslmode=verify-full sslrootcert={crt}"
            ),
            None,
            "",
        ),
        (
            vec![],
            format!("host=localhost port={poff} user=postgres sslmode=require"),
            None,
            "          # server with -c ssl=off",
        ),
        (
            vec![],
            format!(
                "postgresql://{SCRAM_USER}:{SCRAM_PASSWORD}@localhost:{ppg}/postgres?sslmode=verify-full&sslrootcert={root}&channel_binding=require"
            ),
            Some(select_row),
            "",
        ),
        (
            vec![
                ("PGHOST", "localhost".to_owned()),
                ("PGPORT", ppg.to_string()),
                ("PGUSER", SCRAM_USER.to_owned()),
                ("PGPASSWORD", SCRAM_PASSWORD.to_owned()),
                ("PGDATABASE", "postgres".to_owned()),
                ("PGSSLMODE", "require".to_owned()),
            ],
            String::new(),
            Some("select current_user"),
            "",
        ),
        (
            vec![],
            format!(
                "host=localhost hostaddr=127.0.0.1 port={ppg} user={SCRAM_USER} dbname=postgres password={SCRAM_PASSWORD} sslmode=disable channel_binding=require"
            ),
            None,
            "",
        ),
        (
            vec![],
            format!("host=localhost port={ppg} user={SCRAM_USER} dbname=postgres sslmode=require"),
            None,
            "",
        ),
        (
            vec![],
            format!(
                "host=localhost port={ppg} user={SCRAM_USER} dbname=postgres password={SCRAM_PASSWORD} sslmode=require sslnegotiation=direct"
            ),
            None,
            "",
        ),
        (vec![], "host=localhost port=1 user=x".to_owned(), None, ""),
        (vec![], "sslmode=bogus".to_owned(), None, ""),
        (
            vec![],
            format!(
                "host=localhost hostaddr=127.0.0.1 port={ppg} user={SCRAM_USER} dbname=postgres password={SCRAM_PASSWORD} sslmode=disable"
            ),
            Some("select 1/0"),
            "",
        ),
    ];
    let mut text = String::new();
    for (i, (env, conninfo, query, comment)) in runs.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let env_shown: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        let mut args = vec![conninfo.as_str()];
        let mut shown = format!("$ {env_shown}connect \"{conninfo}\"");
        if let Some(q) = query {
            args.extend(["--query", q]);
            shown.push_str(&format!(" --query '{q}'"));
        }
        let out = connect_run(env, &args);
        text.push_str(&format!("{shown}{comment}\n{}{}", out.stdout, out.stderr));
        if i == 0 {
            check(
                "docs/examples/connect.md",
                "connect-success-line",
                out.stdout.lines().next().unwrap_or(""),
            );
        }
    }
    check("docs/examples/connect.md", "connect-real-runs", &text);
}

// ---------------------------------------------------------------------------------------------
// docs/examples/proxy.md

#[test]
fn doc_proxy_start_errors() {
    let out = start_error(
        "proxy",
        &[
            "--upstream",
            "host=db.example sslmode=prefer sslnegotiation=direct",
        ],
    );
    check(
        "docs/examples/proxy.md",
        "proxy-start-errors",
        &format!(
            "$ proxy --upstream 'host=db.example sslmode=prefer sslnegotiation=direct'\n{}",
            out.stderr
        ),
    );
}

#[test]
fn doc_proxy_log_and_clients() {
    let pg = postgres(&format!(
        "hostssl all {PROXY_USER} 127.0.0.1/32 password\n\
         hostssl all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n"
    ));
    let upstream = format!(
        "host=localhost port={} sslmode=verify-full sslrootcert=tests/certs/root_ca.crt",
        pg.port
    );
    let proxy = Example::start("proxy", &["--upstream", &upstream], "connect with:");
    let port = proxy.port;
    let crt = proxy.cert().to_path_buf();
    let crt_s = crt.display().to_string();
    let conninfo = format!(
        "host=localhost port={port} dbname=postgres user={PROXY_USER} password={PROXY_PASSWORD} sslmode=verify-full sslrootcert={crt_s}"
    );
    let settle = || thread::sleep(Duration::from_millis(300));

    // psql through the proxy.
    let out = psql_args(&[&conninfo, "-X", "-A", "-t", "-c", SSL_QUERY]);
    assert!(out.success(), "{out}\n{}", proxy.log());
    check(
        "docs/examples/proxy.md",
        "proxy-psql",
        &format!(
            "$ psql \"{conninfo}\" -X -A -t -c '{SSL_QUERY}'\n{}",
            out.stdout
        ),
    );
    settle();
    // Plaintext to the proxy.
    let plain = conninfo.replace(
        &format!("sslmode=verify-full sslrootcert={crt_s}"),
        "sslmode=disable",
    );
    assert!(psql_args(&[&plain, "-X", "-A", "-t", "-c", SSL_QUERY]).success());
    settle();
    // A wrong password, an unknown user.
    let wrong = conninfo.replace(PROXY_PASSWORD, "wrong");
    assert!(!psql_args(&[&wrong, "-X", "-A", "-t", "-c", "select 1"]).success());
    settle();
    let nobody = conninfo.replace(&format!("user={PROXY_USER}"), "user=nobody");
    let out = psql_args(&[&nobody, "-X", "-A", "-t", "-c", "select 1"]);
    assert!(!out.success(), "{out}");
    check(
        "docs/examples/proxy.md",
        "proxy-upstream-refusal",
        &out.stderr,
    );
    settle();
    // psql's Ctrl-C during pg_sleep(30).
    let mut cmd = psql_command();
    cmd.args([&conninfo, "-X", "-c", "select pg_sleep(30)"]);
    let mut sleeper = Running::spawn(&mut cmd, "psql -c 'select pg_sleep(30)'");
    wait_active(&pg, "select pg_sleep(30)", &mut sleeper);
    let mark = proxy.mark();
    signal(sleeper.pid(), "INT");
    let out = sleeper.wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{out}");
    check(
        "docs/examples/proxy.md",
        "proxy-cancel",
        &format!(
            "$ psql \"… same conninfo …\" -X -c 'select pg_sleep(30)' & sleep 1.5; kill -INT $!\n{}",
            out.stderr
        ),
    );
    proxy.wait_log(mark, "forwarded upstream");
    settle();
    let log_mark = proxy.mark();

    // Not in the log block: psycopg and the SCRAM refusal.
    let script = fill(
        &doc_block("docs/examples/proxy.md", "proxy-psycopg-script"),
        port,
        &crt,
    );
    let out = run_python(&script);
    assert!(out.success(), "{out}\n{}", proxy.log());
    check("docs/examples/proxy.md", "proxy-psycopg", &out.stdout);
    let scram = conninfo.replace(
        &format!("user={PROXY_USER} password={PROXY_PASSWORD}"),
        &format!("user={SCRAM_USER} password={SCRAM_PASSWORD}"),
    );
    let out = psql_args(&[&scram, "-X", "-A", "-t", "-c", SSL_QUERY]);
    assert!(!out.success(), "{out}");
    check("docs/examples/proxy.md", "proxy-scram-error", &out.stderr);

    let log = stop(proxy);
    let (before, after) = log.split_at(log_mark);
    // SIGTERM's lines, without those of psycopg and the SCRAM refusal.
    let tail: String = after
        .lines()
        .skip_while(|l| !l.contains("fast shutdown"))
        .map(|l| format!("{l}\n"))
        .collect();
    check(
        "docs/examples/proxy.md",
        "proxy-log",
        &format!(
            "$ target/debug/examples/proxy --listen 127.0.0.1:{port} --upstream \"{upstream}\"\n{before}{tail}"
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// The error-text tables of docs/client-tls.md and docs/server-tls.md

/// Error texts of the tables that no test asserts yet (each one a gap to close; the test fails
/// when one of them becomes asserted, so the list only shrinks). Empty: every text of the
/// tables is asserted; a new text needs its test.
const UNASSERTED: &[&str] = &[];

/// The backticked texts in the last column ("errors") of the tables of `doc` whose header's
/// last cell is `errors`.
fn error_texts(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(manifest_dir().join(doc)).unwrap();
    let mut out = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        let last = cells.last().map_or("", |c| c.trim());
        if last == "errors" {
            in_table = true;
            continue;
        }
        if !in_table || last.starts_with("---") {
            continue;
        }
        // `a`; `b` (…): every backticked span that reads like a message.
        for (i, span) in last.split('`').enumerate() {
            if i % 2 == 1 && span.contains(' ') {
                out.push(span.to_owned());
            }
        }
    }
    out
}

/// The longest literal part of a message with printf placeholders (`%s`, `%d`, `"%s"`).
fn literal_part(message: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    // The docs write a newline inside a message as `\n`.
    let message = message.replace("\\n", "\n");
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            chars.next();
            parts.push(std::mem::take(&mut cur));
        } else if c == '…' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| {
            p.trim_matches(|c: char| c == '"' || c == ' ' || c == ':')
                .to_owned()
        })
        .max_by_key(String::len)
        .unwrap_or_default()
}

/// The test code of the crate: tests/**/*.rs (of this file only [`table_texts_of_the_parsers`])
/// and what follows `#[cfg(test)]` in src/ and examples/.
fn test_sources() -> String {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut all = String::new();
    for (dir, whole) in [("tests", true), ("src", false), ("examples", false)] {
        let mut files = Vec::new();
        walk(&manifest_dir().join(dir), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let text = if f.ends_with("doc_outputs.rs") {
                // This file: only its tests of the tables' texts, not the lists above.
                let from = ["fn table_texts", "_of_the_parsers"].concat();
                text.find(&from).map_or("", |i| &text[i..])
            } else if whole {
                text.as_str()
            } else {
                text.find("#[cfg(test)]").map_or("", |i| &text[i..])
            };
            // Rust string escapes and continuation lines as the doc writes them.
            let text = text.replace("\\\"", "\"").replace("\\n", "\n");
            let mut joined = String::with_capacity(text.len());
            let mut lines = text.split("\\\n");
            joined.push_str(lines.next().unwrap_or(""));
            for l in lines {
                joined.push_str(l.trim_start());
            }
            all.push_str(&joined.replace("\\\\", "\\"));
        }
    }
    all
}

/// Every error text of the two tables is asserted by some test (the longest literal part of
/// the text appears in test code), or is listed in [`UNASSERTED`].
#[test]
fn error_tables_are_asserted() {
    let sources = test_sources();
    let mut missing = Vec::new();
    let mut found_listed = Vec::new();
    let mut total = 0;
    for doc in ["docs/client-tls.md", "docs/server-tls.md"] {
        let texts = error_texts(doc);
        total += texts.len();
        assert!(texts.len() > 10, "{doc}: the errors columns were not found");
        for t in texts {
            let lit = literal_part(&t);
            let asserted = sources.contains(&lit);
            let listed = UNASSERTED.contains(&t.as_str());
            if !asserted && !listed {
                missing.push(format!("{doc}: `{t}` (looked for {lit:?})"));
            }
            if asserted && listed {
                found_listed.push(t);
            }
        }
    }
    println!(
        "{total} error texts, {} listed as not asserted",
        UNASSERTED.len()
    );
    assert!(
        missing.is_empty() && found_listed.is_empty(),
        "error texts of the docs' tables that no test asserts (add a test, or list them in UNASSERTED):\n{}\n\nlisted in UNASSERTED but now asserted (remove them):\n{}",
        missing.join("\n"),
        found_listed.join("\n")
    );
}

/// Two texts of the tables that only the configuration parsers produce.
#[test]
fn table_texts_of_the_parsers() {
    let e = pgssl::tls::ClientTlsConfig::from_conninfo("channel_binding=maybe").unwrap_err();
    assert_eq!(e.to_string(), "invalid channel_binding value: \"maybe\"");
    let e = pgssl::tls::ServerTlsConfig::new()
        .set("ssl_max_protocol_version", "TLSv9")
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value for parameter \"ssl_max_protocol_version\": \"TLSv9\"\nHINT:  Available values: , TLSv1, TLSv1.1, TLSv1.2, TLSv1.3."
    );
}
