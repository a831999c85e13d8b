//! The example binaries (`examples/server.rs`, `examples/connect.rs`, `examples/proxy.rs`) and
//! the clients run against them as child processes, for the tests that treat them as black
//! boxes (tests/adapters/examples.rs, tests/conformance/):
//!
//! * [`example`]: a binary next to the test's own (`target/<profile>/examples/`), built once per
//!   test binary with `cargo build --examples` and the test's profile and features (`cargo test
//!   --test NAME` does not build the examples, and would run stale or missing binaries).
//! * [`Running`]: a child with its stdout and stderr (or a log file) collected, killed and
//!   reaped when dropped; every wait on it is bounded.
//! * [`Example`]: a server or proxy example on a free port of 127.0.0.1 (retried if another
//!   process takes it first), ready once its log says so, stopped with SIGTERM (then SIGKILL)
//!   when dropped; [`wait_log`] waits for a log line with a deadline.
//! * [`clean`]: a client command with no `PG*` variables, an empty `HOME`, English messages and
//!   no stdin, so nothing outside the test changes what it does; [`run`] runs it under
//!   [`CLIENT_TIMEOUT`]. [`psql`], [`connect`] and [`psycopg`] are the usual clients.
//! * [`ResultsFile`], [`Record`] and [`json_str`]: the conformance suites' JSON lines.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a client (psql, psycopg, the connect example, …) may run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server or proxy may take to say it is ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a log line may take to appear.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server example logs once it accepts connections.
pub const SERVER_READY: &str = "database system is ready to accept connections";

// ---------------------------------------------------------------------------------------------
// Files, binaries, environment

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The committed test PKI.
pub fn certs() -> PathBuf {
    manifest_dir().join("tests/certs")
}

/// A file of the committed test PKI.
pub fn cert(name: &str) -> PathBuf {
    certs().join(name)
}

/// `target/<profile>/`: this test's binary is in its `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps/")
        .to_path_buf()
}

/// An example's binary: `target/<profile>/examples/NAME`, next to `target/<profile>/deps/`
/// where this test's binary is. The examples are built (once per test binary) with this
/// test's profile and features: a plain `cargo test` builds them before the tests, but
/// `cargo test --test NAME` does not, and would run stale or missing binaries.
pub fn example(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut c = Command::new(cargo);
        c.args(["build", "--examples", "--quiet", "--manifest-path"])
            .arg(manifest_dir().join("Cargo.toml"))
            .stdin(Stdio::null());
        // The same features as this test binary, so that nothing is rebuilt for nothing.
        if cfg!(feature = "tokio") {
            c.args(["--features", "tokio"]);
        }
        if !cfg!(debug_assertions) {
            c.arg("--release");
        }
        let out = Running::spawn(&mut c, "cargo build --examples").wait(Duration::from_secs(600));
        assert!(out.success(), "cargo build --examples failed: {out}");
        profile_dir().join("examples")
    });
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing after `cargo build --examples`",
        bin.display()
    );
    bin
}

/// A `HOME` with nothing in it, so that no `~/.postgresql/` file (a `root.crt` turns require
/// into verify-ca) or `~/.pgpass` applies.
pub fn empty_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let p = std::env::temp_dir().join("pgssl-tests-empty-home");
        std::fs::create_dir_all(&p).expect("the empty HOME");
        assert!(
            !p.join(".postgresql").exists() && !p.join(".pgpass").exists(),
            "{} must stay empty",
            p.display()
        );
        p
    })
}

/// A command with no `PG*` variables (nor `SSLKEYLOGFILE`), the empty `HOME`, English messages
/// and no stdin, run in the crate's directory (so `tests/certs/…` works as a relative path).
pub fn clean(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            c.env_remove(k);
        }
    }
    c.env("HOME", empty_home())
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .env_remove("SSLKEYLOGFILE")
        .current_dir(manifest_dir())
        .stdin(Stdio::null());
    c
}

/// Copies a key of the PKI into `dir` with mode 0600 (git keeps 0644).
pub fn key_copy(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(cert(name), &to).expect("copy a key");
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    to
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Sends `signal` (a name such as `HUP`) to `pid` with kill(1), which must succeed.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Sends `signal` (`TERM`, `KILL`) to `pid` with kill(1), if it is still there.
pub fn try_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ---------------------------------------------------------------------------------------------
// Child processes under a timeout

/// What a finished process printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Collects a pipe into a shared string, line by line (invalid UTF-8 replaced), on its own
/// thread, which drops its handle on the string at EOF.
fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(r.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            b.lock().unwrap().push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
    buf
}

/// Where a child's stderr goes.
enum Stderr {
    /// A pipe, collected.
    Pipe(Arc<Mutex<String>>),
    /// A file, read back (the child's unbuffered writes are in it as soon as they are made).
    File(PathBuf),
}

/// Why a child did not log what was waited for.
pub enum NotReady {
    /// It exited first: its status and all its stderr.
    Exited(ExitStatus, String),
    /// It still runs at the deadline: its stderr so far.
    TimedOut(String),
}

/// A running child with its stdout and stderr collected; killed (SIGKILL) and reaped when
/// dropped.
pub struct Running {
    what: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Stderr,
}

impl Running {
    /// Runs `cmd` with its stdout and stderr piped and collected.
    pub fn spawn(cmd: &mut Command, what: &str) -> Running {
        Running::start(cmd.stderr(Stdio::piped()), what, None)
    }

    /// Runs `cmd` with its stderr written to the new file `log` (its stdout collected).
    pub fn spawn_logging_to(cmd: &mut Command, what: &str, log: &Path) -> Running {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("the log file {}: {e}", log.display()));
        Running::start(cmd.stderr(Stdio::from(file)), what, Some(log))
    }

    fn start(cmd: &mut Command, what: &str, log: Option<&Path>) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = match log {
            Some(path) => Stderr::File(path.to_owned()),
            None => Stderr::Pipe(collect(child.stderr.take().unwrap())),
        };
        Running {
            what: what.to_owned(),
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Its stderr (or log file) so far.
    pub fn stderr(&self) -> String {
        match &self.stderr {
            Stderr::Pipe(s) => s.lock().unwrap().clone(),
            Stderr::File(path) => std::fs::read(path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
        }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the exit within `timeout`; `None` (after killing it) if it did not exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Output> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                // The reader threads finish at EOF, right after the exit (bounded, in case a
                // grandchild still holds a pipe).
                let until = Instant::now() + Duration::from_secs(2);
                while self.readers_left() && Instant::now() < until {
                    thread::sleep(Duration::from_millis(5));
                }
                return Some(Output {
                    status,
                    stdout: self.stdout(),
                    stderr: self.stderr(),
                });
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn readers_left(&self) -> bool {
        Arc::strong_count(&self.stdout) > 1
            || matches!(&self.stderr, Stderr::Pipe(s) if Arc::strong_count(s) > 1)
    }

    /// Waits for the exit, panicking (with what it printed) after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Output {
        match self.wait_timeout(timeout) {
            Some(o) => o,
            None => panic!(
                "{} did not exit within {timeout:?} (killed)\n--- stdout ---\n{}--- stderr ---\n{}",
                self.what,
                self.stdout(),
                self.stderr()
            ),
        }
    }

    /// Waits until its stderr contains `needle` (all of it then), or it exits, or `timeout`
    /// passes.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> Result<String, NotReady> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return Ok(log);
            }
            if let Some(status) = self.exited() {
                return Err(NotReady::Exited(status, self.wait(LOG_TIMEOUT).stderr));
            }
            if Instant::now() >= deadline {
                return Err(NotReady::TimedOut(log));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a client command to its end, panicking (with what it printed) after [`CLIENT_TIMEOUT`].
pub fn run(cmd: &mut Command, what: &str) -> Output {
    Running::spawn(cmd, what).wait(CLIENT_TIMEOUT)
}

/// Waits until `log()` after byte `from` contains `needle`; that part of the log, or `Err` with
/// it after [`LOG_TIMEOUT`].
pub fn wait_log(log: impl Fn() -> String, from: usize, needle: &str) -> Result<String, String> {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let part = log().get(from..).unwrap_or("").to_owned();
        if part.contains(needle) {
            return Ok(part);
        }
        if Instant::now() >= deadline {
            return Err(part);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// The example server and proxy

/// A running server or proxy example, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Example {
    pub proc: Running,
    pub port: u16,
    /// The generated certificate, from the "connect with:" line.
    pub cert: Option<PathBuf>,
    /// Directories the example uses (its key copies, its log), removed once it has stopped.
    keep: Vec<tempfile::TempDir>,
}

impl Example {
    /// `NAME --listen 127.0.0.1:PORT ARGS…` on a free port (five tries), ready once its log
    /// contains `ready` within `timeout` (a panic otherwise); its stderr goes to a file in
    /// `log_dir` if given. `Err` with its exit status and log if it exits before it is ready
    /// for another reason than a taken port.
    pub fn try_start<S: AsRef<OsStr>>(
        name: &str,
        args: &[S],
        ready: &str,
        log_dir: Option<&Path>,
        timeout: Duration,
    ) -> Result<Example, (ExitStatus, String)> {
        let what = format!("the {name} example");
        let mut last = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let mut cmd = clean(example(name));
            cmd.arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(args);
            let mut proc = match log_dir {
                Some(dir) => {
                    let log = dir.join(format!("{name}-{attempt}.log"));
                    Running::spawn_logging_to(&mut cmd, &what, &log)
                }
                None => Running::spawn(&mut cmd, &what),
            };
            match proc.wait_stderr(ready, timeout) {
                Ok(log) => {
                    let cert = log
                        .split("sslrootcert=")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                        .map(PathBuf::from);
                    return Ok(Example {
                        proc,
                        port,
                        cert,
                        keep: Vec::new(),
                    });
                }
                Err(NotReady::TimedOut(log)) => {
                    panic!("{what} did not log {ready:?} within {timeout:?}:\n{log}")
                }
                Err(NotReady::Exited(status, log)) => {
                    if !log.contains("Address already in use") {
                        return Err((status, log));
                    }
                    last = format!("{status}\n{log}");
                }
            }
        }
        panic!("{what} found no free port after 5 tries: {last}");
    }

    /// Starts `name --listen 127.0.0.1:PORT ARGS…` and waits for `ready` in its log.
    pub fn start<S: AsRef<OsStr>>(name: &str, args: &[S], ready: &str) -> Example {
        Example::try_start(name, args, ready, None, START_TIMEOUT).unwrap_or_else(
            |(status, log)| {
                panic!("the {name} example exited before it was ready: {status}\n{log}")
            },
        )
    }

    /// The example server with these arguments (after `--listen`).
    pub fn server(args: &[&str]) -> Example {
        Example::start("server", args, SERVER_READY)
    }

    /// Keeps `dir` until the example has stopped.
    pub fn keeping(mut self, dir: tempfile::TempDir) -> Example {
        self.keep.push(dir);
        self
    }

    /// The generated certificate's path.
    pub fn cert(&self) -> &Path {
        self.cert
            .as_deref()
            .expect("the example printed the generated certificate's path")
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.proc.stderr()
    }

    /// Where the log ends now: later lines are those of what follows.
    pub fn mark(&self) -> usize {
        self.log().len()
    }

    /// The log after `from` once it contains `needle` (`Err` with what it has after
    /// [`LOG_TIMEOUT`]).
    pub fn try_wait_log(&self, from: usize, needle: &str) -> Result<String, String> {
        wait_log(|| self.log(), from, needle)
    }

    /// Waits until the log after `from` contains `needle`; returns that part of the log.
    pub fn wait_log(&self, from: usize, needle: &str) -> String {
        self.try_wait_log(from, needle).unwrap_or_else(|part| {
            panic!("the log did not say {needle:?} within {LOG_TIMEOUT:?}:\n{part}")
        })
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if self.proc.exited().is_none() {
            // SIGTERM lets it remove its generated certificate; SIGKILL if it does not stop.
            try_signal(self.proc.pid(), "TERM");
            let _ = self.proc.wait_timeout(Duration::from_secs(5));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A clean `psql` command, or a panic saying how to install psql.
pub fn psql_command() -> Command {
    static FOUND: OnceLock<()> = OnceLock::new();
    FOUND.get_or_init(|| {
        if Command::new("psql")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            panic!(
                "psql is missing: `apt-get install postgresql-client` (scripts/test.sh installs it)"
            );
        }
    });
    clean("psql")
}

/// `psql CONNINFO -X -w -A -t -c SQL` (libpq 15).
pub fn psql(conninfo: &str, sql: &str) -> Output {
    let mut c = psql_command();
    c.arg(conninfo).args(["-X", "-w", "-A", "-t", "-c", sql]);
    run(&mut c, &format!("psql {conninfo:?}"))
}

/// The connect example: `connect CONNINFO [--query SQL]`.
pub fn connect(conninfo: &str, query: Option<&str>) -> Output {
    let mut c = clean(example("connect"));
    c.arg(conninfo);
    if let Some(q) = query {
        c.args(["--query", q]);
    }
    run(&mut c, &format!("connect {conninfo:?}"))
}

/// The Python interpreter that has psycopg and its libpq's version (`180002` for 18.2),
/// resolved once with the real environment (so that shims that need `HOME` still work), or a
/// panic saying how to install psycopg.
fn psycopg_python() -> &'static (String, u32) {
    static PYTHON: OnceLock<(String, u32)> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, psycopg; print(sys.executable); print(psycopg.pq.version())",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("python3 is missing ({e}): install python3 and then `pip install 'psycopg[binary]'` (scripts/test.sh installs both)"));
        assert!(
            out.status.success(),
            "psycopg is missing: pip install 'psycopg[binary]' (scripts/test.sh installs it)\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let exe = lines.next().unwrap_or("python3").to_owned();
        let libpq: u32 = lines.next().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        (exe, libpq)
    })
}

/// The Python interpreter that has psycopg with libpq `major` or later, which `needed_for`
/// needs, or a panic saying how to install it.
pub fn python_with_libpq(major: u32, needed_for: &str) -> &'static str {
    let (exe, libpq) = psycopg_python();
    assert!(
        *libpq >= major * 10000,
        "psycopg's libpq is {libpq}: {needed_for} needs libpq {major} or later (pip install -U 'psycopg[binary]')"
    );
    exe
}

/// The Python interpreter that has psycopg with libpq 17 or later (direct SSL).
pub fn python() -> &'static str {
    python_with_libpq(17, "direct SSL (sslnegotiation=direct)")
}

/// The major version of psycopg's libpq.
pub fn psycopg_libpq_major() -> u32 {
    psycopg_python().1 / 10000
}

/// Connects with psycopg, runs `select 1`, prints the row with `|` separators (NULL empty).
const PSYCOPG_SCRIPT: &str = r#"
import sys, psycopg
try:
    with psycopg.connect(sys.argv[1]) as c:
        row = c.execute("select 1").fetchone()
        print("|".join("" if v is None else str(v) for v in row))
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(1)
"#;

/// psycopg (its bundled libpq, 17 or later) with the conninfo: `select 1`, or the error.
pub fn psycopg(conninfo: &str) -> Output {
    let mut c = clean(python());
    c.args(["-c", PSYCOPG_SCRIPT, conninfo]);
    run(&mut c, &format!("psycopg {conninfo:?}"))
}

// ---------------------------------------------------------------------------------------------
// Conformance results (target/conformance/*.jsonl)

/// A JSON string.
pub fn json_str(s: &str) -> String {
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

/// One case of a conformance suite, as scripts/conformance-report.py reads it.
pub struct Record<'a> {
    pub suite: &'a str,
    pub case: &'a str,
    /// The counterpart in PostgreSQL's own tests, or what the case exercises.
    pub counterpart: &'a str,
    /// What PostgreSQL (or libpq) gives.
    pub postgresql: &'a str,
    /// What pgssl gives.
    pub pgssl: &'a str,
    pub matched: bool,
    pub difference: Option<&'a str>,
}

impl Record<'_> {
    /// The JSON object on one line; `spaced` puts a space after every `:` and `,`.
    pub fn to_json(&self, spaced: bool) -> String {
        let sep = if spaced { " " } else { "" };
        let fields = [
            ("suite", json_str(self.suite)),
            ("case", json_str(self.case)),
            ("counterpart", json_str(self.counterpart)),
            ("postgresql", json_str(self.postgresql)),
            ("pgssl", json_str(self.pgssl)),
            ("match", self.matched.to_string()),
            (
                "difference",
                self.difference.map_or("null".to_owned(), json_str),
            ),
        ];
        let fields: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\":{sep}{v}"))
            .collect();
        format!("{{{}}}", fields.join(&format!(",{sep}")))
    }
}

/// A conformance suite's results: one JSON line ([`Record`]) a case, in a file created (or
/// truncated) when this test binary writes its first line.
pub struct ResultsFile {
    suite: &'static str,
    path: fn() -> PathBuf,
    file: OnceLock<Mutex<File>>,
}

impl ResultsFile {
    /// The results of `suite`, written to `path()`.
    pub const fn new(suite: &'static str, path: fn() -> PathBuf) -> ResultsFile {
        ResultsFile {
            suite,
            path,
            file: OnceLock::new(),
        }
    }

    /// Appends one case (and flushes it, so that a test that fails later has written it).
    pub fn append(
        &self,
        case: &str,
        counterpart: &str,
        postgresql: &str,
        pgssl: &str,
        matched: bool,
        difference: Option<&str>,
    ) {
        let path = (self.path)();
        let file = self.file.get_or_init(|| {
            let dir = path.parent().expect("the results file's directory");
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            Mutex::new(File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        });
        let record = Record {
            suite: self.suite,
            case,
            counterpart,
            postgresql,
            pgssl,
            matched,
            difference,
        };
        let line = format!("{}\n", record.to_json(false));
        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(line.as_bytes())
            .and_then(|()| f.flush())
            .unwrap_or_else(|e| panic!("a line of {} written: {e}", path.display()));
    }
}
