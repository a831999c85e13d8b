//! OpenSSL's configuration file (openssl.cnf) as a pgssl server meets it: the file's
//! `system_default` policy is in force and pgssl never loosens it, and
//! [`pgssl::tls::ServerTls::effective`] reports what is enforced and which file is read.
//!
//! OpenSSL reads its configuration once per process, so every scenario runs in a child
//! process: this binary re-executed with `--child SCENARIO`, with `OPENSSL_CONF` naming a
//! file the parent wrote into a temporary directory (or removed, for the baseline). The child
//! builds a server, serves it on 127.0.0.1 with `pgssl::io::blocking::accept`, connects to it
//! with in-process OpenSSL clients over the SSLRequest path (each client's protocol range set
//! explicitly, so that the file cannot hide the server's behaviour), and prints `key=value`
//! lines. The parent checks those lines and the child's exit status, prints one line per
//! scenario and a final `N passed, M failed`.
//!
//! The same way, two scenarios run pgssl's client with `sslrootcert=system` and the parent's
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` (which OpenSSL also reads from the environment).

#[path = "support/mod.rs"]
pub mod support;
use support::tls as tls_support;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use openssl::ssl::SslVersion;
use pgssl::server::ServerPolicy;
use pgssl::tls::{
    ClientTls, ClientTlsConfig, ServerTls, ServerTlsConfig, TlsError, TlsVersion, openssl_conf,
};
use tls_support::{
    FATAL_MARKER, How, Seen, TestServer, cert, certs, connector, key_copy, localhost_config,
};

/// How long one child may take before it is killed and the scenario failed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(15);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--child") {
        Some(i) => child(args.get(i + 1).map(String::as_str).unwrap_or("")),
        None => parent(),
    }
}

// ---------------------------------------------------------------------------------------------
// Output between child and parent: one `key=value` per line, the value with `\` and newlines
// escaped.

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unesc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn put(key: &str, value: impl Display) {
    println!("{key}={}", esc(&value.to_string()));
}

// ---------------------------------------------------------------------------------------------
// The child: one scenario, in a process whose OpenSSL read the file the parent chose.

fn child(scenario: &str) -> ExitCode {
    let d = tempfile::tempdir().expect("a temporary directory");
    put(
        "env.OPENSSL_CONF",
        std::env::var_os("OPENSSL_CONF")
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_else(|| "<unset>".to_owned()),
    );
    match scenario {
        // A server for server-localhost with PostgreSQL's defaults (min TLSv1.2, no max).
        "min13" | "max12" | "env" | "env-missing" => {
            let srv = localhost_server(d.path());
            client(&srv, "tls12", SslVersion::TLS1_2, SslVersion::TLS1_2);
            client(&srv, "tls13", SslVersion::TLS1_3, SslVersion::TLS1_3);
            client(&srv, "default", SslVersion::TLS1_2, SslVersion::TLS1_3);
            if scenario == "min13" {
                // ssl_max_protocol_version = TLSv1.2 under the file's MinProtocol = TLSv1.3.
                let mut c = localhost_config(d.path());
                c.max_protocol_version(Some(TlsVersion::Tls1_2));
                put("max12.build", outcome(&c.build()));
            }
            if scenario == "max12" {
                // ssl_max_protocol_version = TLSv1.3 under the file's MaxProtocol = TLSv1.2.
                let mut c = localhost_config(d.path());
                c.max_protocol_version(Some(TlsVersion::Tls1_3));
                let tls = c
                    .build()
                    .unwrap_or_else(|e| panic!("building the server: {e}"));
                put(
                    "max13.effective.max",
                    tls.effective()
                        .max_protocol
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "none".to_owned()),
                );
                let srv = TestServer::with(ServerPolicy::new(), tls);
                client(&srv, "max13_tls13", SslVersion::TLS1_3, SslVersion::TLS1_3);
            }
        }
        // sslrootcert=system: OpenSSL's default store, as SSL_CERT_FILE and SSL_CERT_DIR (set
        // by the parent) name it, against the server-localhost server.
        "system-roots" => {
            let tls = localhost_config(d.path())
                .build()
                .unwrap_or_else(|e| panic!("building the server: {e}"));
            let srv = TestServer::with(ServerPolicy::new(), tls);
            let conninfo = format!(
                "host=localhost hostaddr=127.0.0.1 port={} user=u dbname=postgres sslmode=verify-full sslrootcert=system",
                srv.port
            );
            let mut config = ClientTlsConfig::from_conninfo(&conninfo).expect("the conninfo");
            config.home = Some(d.path().to_path_buf());
            put(
                "client.build",
                match ClientTls::new(&config) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("err {e}"),
                },
            );
            // The test server answers the StartupMessage with a FATAL that describes the
            // session, so a connection that got through TLS fails with that text.
            put(
                "client.connect",
                match pgssl::io::blocking::connect(&config) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("err {e}"),
                },
            );
            let seen = match srv.next() {
                Seen::Startup {
                    session: Some(s), ..
                } => format!("tls {}", s.version),
                Seen::Refused(r) => format!("refused {r}"),
                other => format!("{other:?}"),
            };
            put("server", seen);
        }
        "seclevel4" => {
            let c = openssl_conf::config_file();
            put("conf.path", c.path.display());
            put("conf.from_env", c.from_env);
            put("conf.exists", c.exists);
            let key = key_copy(d.path(), "server-ecdsa.key", 0o600);
            let mut abs = ServerTlsConfig::new();
            abs.ssl(true)
                .cert_file(cert("server-ecdsa.crt"))
                .key_file(&key);
            put("ecdsa.build", outcome(&abs.build()));
            // Named relative to the data directory: the error names it as configured.
            let mut rel = ServerTlsConfig::new();
            rel.ssl(true)
                .data_dir(certs())
                .cert_file("server-ecdsa.crt")
                .key_file(&key);
            put("ecdsa_rel.build", outcome(&rel.build()));
            // RSA 2048 is 112 bits of security, below level 4's 192 as well.
            put("rsa.build", outcome(&localhost_config(d.path()).build()));
        }
        "baseline" => {
            let srv = localhost_server(d.path());
            client(&srv, "tls12", SslVersion::TLS1_2, SslVersion::TLS1_2);
            client(&srv, "default", SslVersion::TLS1_2, SslVersion::TLS1_3);
            // The ECDSA certificate as committed builds…
            let key = key_copy(d.path(), "server-ecdsa.key", 0o600);
            let mut ecdsa = ServerTlsConfig::new();
            ecdsa
                .ssl(true)
                .cert_file(cert("server-ecdsa.crt"))
                .key_file(&key);
            put("ecdsa.build", outcome(&ecdsa.build()));
            // …and serves, with its intermediate appended so that the client can verify it
            // against root_ca.crt.
            let chain = d.path().join("server-ecdsa+server_ca.crt");
            let mut pem = std::fs::read(cert("server-ecdsa.crt")).unwrap();
            pem.extend(std::fs::read(cert("server_ca.crt")).unwrap());
            std::fs::write(&chain, pem).unwrap();
            match ecdsa.cert_file(&chain).build() {
                Ok(tls) => {
                    let srv = TestServer::with(ServerPolicy::new(), tls);
                    client(&srv, "ecdsa", SslVersion::TLS1_2, SslVersion::TLS1_3);
                }
                Err(e) => put("ecdsa_chain.build", format!("err {e}")),
            }
        }
        other => {
            eprintln!("unknown scenario {other:?}");
            return ExitCode::from(2);
        }
    }
    put("done", "yes");
    ExitCode::SUCCESS
}

fn outcome(r: &Result<ServerTls, TlsError>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("err {e}"),
    }
}

/// Builds the server-localhost server with PostgreSQL's defaults, reports its effective
/// settings, and serves it.
fn localhost_server(dir: &Path) -> TestServer {
    let tls = localhost_config(dir)
        .build()
        .unwrap_or_else(|e| panic!("building the server: {e}"));
    let eff = tls.effective();
    put("effective.min", eff.min_protocol);
    put(
        "effective.max",
        eff.max_protocol
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none".to_owned()),
    );
    put("conf.path", eff.openssl_conf.path.display());
    put("conf.from_env", eff.openssl_conf.from_env);
    put("conf.exists", eff.openssl_conf.exists);
    TestServer::with(ServerPolicy::new(), tls)
}

/// Connects one OpenSSL client with the protocol range `min..=max` and reports both sides:
/// `NAME.client=ok VERSION` or `err …`, and `NAME.server=tls VERSION` or `refused …`.
fn client(srv: &TestServer, name: &str, min: SslVersion, max: SslVersion) {
    let mut b = connector(None);
    b.set_min_proto_version(Some(min)).unwrap();
    b.set_max_proto_version(Some(max)).unwrap();
    match tls_support::pg_connect(srv.port, How::SslRequest, b, None, name) {
        Ok((_, tls)) => put(
            &format!("{name}.client"),
            format!("ok {}", tls.ssl().version_str()),
        ),
        Err(e) => put(&format!("{name}.client"), format!("err {e}")),
    }
    let seen = match srv.next() {
        Seen::Startup {
            session: Some(s), ..
        } => format!("tls {} {}", s.version, s.cipher),
        Seen::Startup { session: None, .. } => "plaintext".to_owned(),
        Seen::Refused(r) => format!("refused {r}"),
        Seen::Cancel => "cancel".to_owned(),
        Seen::Error(e) => format!("error {e}"),
    };
    put(&format!("{name}.server"), seen);
}

// ---------------------------------------------------------------------------------------------
// The parent: writes the files, runs the children, checks what they printed.

/// What a child printed and how it ended.
struct Run {
    vars: BTreeMap<String, String>,
    ok: bool,
    raw: String,
}

impl Run {
    fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .map(String::as_str)
            .unwrap_or("<missing>")
    }
}

/// Collects the failed expectations of one scenario.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn eq(&mut self, run: &Run, key: &str, want: &str) {
        let got = run.get(key);
        if got != want {
            self.0
                .push(format!("{key}: expected {want:?}, got {got:?}"));
        }
    }
    fn starts(&mut self, run: &Run, key: &str, prefix: &str) {
        let got = run.get(key);
        if !got.starts_with(prefix) {
            self.0
                .push(format!("{key}: expected {prefix:?}…, got {got:?}"));
        }
    }
    fn that(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }
}

/// The usual shape of an openssl.cnf that sets the `system_default` policy.
fn system_default(lines: &str) -> String {
    format!(
        "openssl_conf = default_conf\n\n[default_conf]\nssl_conf = ssl_sect\n\n[ssl_sect]\nsystem_default = system_default_sect\n\n[system_default_sect]\n{lines}\n"
    )
}

/// Runs `--child scenario` with `OPENSSL_CONF` set to `conf`, or removed, and `env` set.
fn run_child(scenario: &str, conf: Option<&Path>, env: &[(&str, String)]) -> Result<Run, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["--child", scenario])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match conf {
        Some(p) => cmd.env("OPENSSL_CONF", p),
        None => cmd.env_remove("OPENSSL_CONF"),
    };
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    // The outputs are small (well under a pipe buffer), so they are read after the exit.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            break s;
        }
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("child timed out after {CHILD_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .ok();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .ok();
    let vars = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), unesc(v)))
        .collect();
    Ok(Run {
        vars,
        ok: status.success(),
        raw: format!("status: {status}\n--- stdout\n{stdout}--- stderr\n{stderr}"),
    })
}

struct Scenario {
    name: &'static str,
    /// The child's scenario.
    child: &'static str,
    /// The configuration file's contents; None runs without OPENSSL_CONF.
    conf: Option<String>,
    /// Whether OPENSSL_CONF names a file that does not exist.
    missing: bool,
    /// More environment for the child (SSL_CERT_FILE and SSL_CERT_DIR are removed otherwise).
    env: Vec<(&'static str, String)>,
    check: fn(&Run, &Path, &mut Checks),
}

fn parent() -> ExitCode {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Named by SSL_CERT_FILE / SSL_CERT_DIR, never created.
    let nowhere = dir.path().join("nowhere");
    let scenarios = [
        Scenario {
            name: "MinProtocol = TLSv1.3 in the file: a TLS 1.2 client is refused, though ssl_min_protocol_version is TLSv1.2",
            child: "min13",
            conf: Some(system_default("MinProtocol = TLSv1.3")),
            missing: false,
            env: Vec::new(),
            check: check_min13,
        },
        Scenario {
            name: "MaxProtocol = TLSv1.2 in the file, ssl_max_protocol_version empty: a TLS 1.3 client lands on TLSv1.2",
            child: "max12",
            conf: Some(system_default("MaxProtocol = TLSv1.2")),
            missing: false,
            env: Vec::new(),
            check: check_max12,
        },
        Scenario {
            name: "CipherString = DEFAULT@SECLEVEL=4: a P-256 certificate is refused",
            child: "seclevel4",
            conf: Some(system_default("CipherString = DEFAULT@SECLEVEL=4")),
            missing: false,
            env: Vec::new(),
            check: check_seclevel4,
        },
        Scenario {
            name: "baseline without OPENSSL_CONF: TLS 1.2, TLS 1.3 and ECDSA all work",
            child: "baseline",
            conf: None,
            missing: false,
            env: Vec::new(),
            check: check_baseline,
        },
        Scenario {
            name: "OPENSSL_CONF names a file without an ssl section: reported, settings unchanged",
            child: "env",
            conf: Some(
                "# no ssl_conf here\nopenssl_conf = default_conf\n\n[default_conf]\n".to_owned(),
            ),
            missing: false,
            env: Vec::new(),
            check: check_env,
        },
        Scenario {
            name: "OPENSSL_CONF names a missing file: reported as missing, OpenSSL's defaults apply",
            child: "env-missing",
            conf: Some(String::new()),
            missing: true,
            env: Vec::new(),
            check: check_env_missing,
        },
        Scenario {
            name: "sslrootcert=system with SSL_CERT_FILE naming the test root: verify-full succeeds",
            child: "system-roots",
            conf: None,
            missing: false,
            env: vec![
                ("SSL_CERT_FILE", cert("root_ca.crt").display().to_string()),
                ("SSL_CERT_DIR", nowhere.join("certs").display().to_string()),
            ],
            check: check_system_roots_from_env,
        },
        Scenario {
            name: "sslrootcert=system with SSL_CERT_FILE and SSL_CERT_DIR naming nothing: the context builds, the chain fails",
            child: "system-roots",
            conf: None,
            missing: false,
            env: vec![
                (
                    "SSL_CERT_FILE",
                    nowhere.join("cert.pem").display().to_string(),
                ),
                ("SSL_CERT_DIR", nowhere.join("certs").display().to_string()),
            ],
            check: check_system_roots_missing,
        },
    ];
    let (mut passed, mut failed) = (0, 0);
    for (i, s) in scenarios.iter().enumerate() {
        let file = dir.path().join(format!("{}-{i}.cnf", s.child));
        if let (Some(text), false) = (&s.conf, s.missing) {
            std::fs::write(&file, text).expect("writing the configuration file");
        }
        let conf = s.conf.as_ref().map(|_| file.as_path());
        let mut checks = Checks::default();
        let raw = match run_child(s.child, conf, &s.env) {
            Ok(run) => {
                checks.that(run.ok, "the child did not exit successfully");
                checks.eq(&run, "done", "yes");
                (s.check)(&run, &file, &mut checks);
                run.raw
            }
            Err(e) => {
                checks.0.push(e);
                String::new()
            }
        };
        if checks.0.is_empty() {
            passed += 1;
            println!("ok   {}: {}", s.child, s.name);
        } else {
            failed += 1;
            println!("FAIL {}: {}", s.child, s.name);
            for f in &checks.0 {
                println!("       {f}");
            }
            for l in raw.lines() {
                println!("     | {l}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// OPENSSL_CONF is reported as the file, from the environment.
fn check_conf_from_env(run: &Run, file: &Path, exists: bool, c: &mut Checks) {
    let path = file.display().to_string();
    c.eq(run, "env.OPENSSL_CONF", &path);
    c.eq(run, "conf.path", &path);
    c.eq(run, "conf.from_env", "true");
    c.eq(run, "conf.exists", if exists { "true" } else { "false" });
}

fn check_min13(run: &Run, file: &Path, c: &mut Checks) {
    check_conf_from_env(run, file, true, c);
    // pgssl keeps the file's minimum; PostgreSQL 15 would set its own TLSv1.2 over it and
    // let the TLS 1.2 client in.
    c.eq(run, "effective.min", "TLSv1.3");
    c.eq(run, "effective.max", "none");
    c.starts(run, "tls12.client", "err handshake: ");
    c.starts(run, "tls12.server", "refused ");
    c.that(
        run.get("tls12.server").contains("unsupported protocol"),
        format!(
            "tls12.server: expected OpenSSL's \"unsupported protocol\", got {:?}",
            run.get("tls12.server")
        ),
    );
    c.eq(run, "tls13.client", "ok TLSv1.3");
    c.starts(run, "tls13.server", "tls TLSv1.3 ");
    c.eq(run, "default.client", "ok TLSv1.3");
    // ssl_max_protocol_version = TLSv1.2 is below the file's minimum: the build stops (where
    // PostgreSQL would set TLSv1.2..TLSv1.2 over the file).
    c.eq(
        run,
        "max12.build",
        "err could not set SSL protocol version range: the effective minimum TLSv1.3 is above the effective maximum TLSv1.2 (ssl_min_protocol_version, ssl_max_protocol_version and the OpenSSL configuration file combined)",
    );
}

fn check_max12(run: &Run, file: &Path, c: &mut Checks) {
    check_conf_from_env(run, file, true, c);
    c.eq(run, "effective.min", "TLSv1.2");
    c.eq(run, "effective.max", "TLSv1.2");
    c.eq(run, "default.client", "ok TLSv1.2");
    c.starts(run, "default.server", "tls TLSv1.2 ");
    c.eq(run, "tls12.client", "ok TLSv1.2");
    c.starts(run, "tls13.client", "err handshake: ");
    c.starts(run, "tls13.server", "refused ");
    // ssl_max_protocol_version = TLSv1.3 does not lift the file's MaxProtocol (PostgreSQL would
    // allow TLS 1.3).
    c.eq(run, "max13.effective.max", "TLSv1.2");
    c.starts(run, "max13_tls13.client", "err handshake: ");
    c.starts(run, "max13_tls13.server", "refused ");
}

fn check_seclevel4(run: &Run, file: &Path, c: &mut Checks) {
    check_conf_from_env(run, file, true, c);
    c.eq(
        run,
        "ecdsa.build",
        &format!(
            "err could not load server certificate file \"{}\": ee key too small",
            cert("server-ecdsa.crt").display()
        ),
    );
    c.eq(
        run,
        "ecdsa_rel.build",
        "err could not load server certificate file \"server-ecdsa.crt\": ee key too small",
    );
    c.eq(
        run,
        "rsa.build",
        &format!(
            "err could not load server certificate file \"{}\": ee key too small",
            cert("server-localhost+server_ca.crt").display()
        ),
    );
}

fn check_baseline(run: &Run, _file: &Path, c: &mut Checks) {
    // Nothing leaks from the parent's environment.
    c.eq(run, "env.OPENSSL_CONF", "<unset>");
    c.eq(run, "conf.from_env", "false");
    let path = run.get("conf.path");
    c.that(
        path.starts_with('/') && path.ends_with("/openssl.cnf"),
        format!("conf.path: expected OPENSSLDIR/openssl.cnf, got {path:?}"),
    );
    c.eq(run, "effective.min", "TLSv1.2");
    c.eq(run, "effective.max", "none");
    c.eq(run, "tls12.client", "ok TLSv1.2");
    c.starts(run, "tls12.server", "tls TLSv1.2 ");
    c.eq(run, "default.client", "ok TLSv1.3");
    c.starts(run, "default.server", "tls TLSv1.3 ");
    c.eq(run, "ecdsa.build", "ok");
    c.eq(run, "ecdsa.client", "ok TLSv1.3");
    c.starts(run, "ecdsa.server", "tls TLSv1.3 ");
}

fn check_env(run: &Run, file: &Path, c: &mut Checks) {
    check_conf_from_env(run, file, true, c);
    c.eq(run, "effective.min", "TLSv1.2");
    c.eq(run, "effective.max", "none");
    c.eq(run, "tls12.client", "ok TLSv1.2");
    c.eq(run, "tls13.client", "ok TLSv1.3");
}

fn check_env_missing(run: &Run, file: &Path, c: &mut Checks) {
    check_conf_from_env(run, file, false, c);
    c.eq(run, "effective.min", "TLSv1.2");
    c.eq(run, "effective.max", "none");
    c.eq(run, "tls12.client", "ok TLSv1.2");
    c.eq(run, "default.client", "ok TLSv1.3");
}

fn check_system_roots_from_env(run: &Run, _file: &Path, c: &mut Checks) {
    c.eq(run, "client.build", "ok");
    let connect = run.get("client.connect");
    c.that(
        connect.contains(FATAL_MARKER) && connect.contains("ssl=on"),
        format!("client.connect: expected the test server's FATAL over SSL, got {connect:?}"),
    );
    c.starts(run, "server", "tls TLSv1.");
}

/// OpenSSL ignores default paths that name nothing (X509_STORE_set_default_paths fails only
/// when it cannot allocate its lookups), as it does for libpq: the context builds, without
/// "could not load system root certificate paths", and the server's chain then fails.
fn check_system_roots_missing(run: &Run, _file: &Path, c: &mut Checks) {
    c.eq(run, "client.build", "ok");
    let connect = run.get("client.connect");
    c.that(
        connect.starts_with("err ")
            && connect.contains(
                "SSL error: certificate verify failed: unable to get local issuer certificate",
            ),
        format!(
            "client.connect: expected \"SSL error: certificate verify failed: unable to get local issuer certificate\", got {connect:?}"
        ),
    );
    c.starts(run, "server", "refused ");
}
