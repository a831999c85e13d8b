//! A real PostgreSQL 15 server per test, for the conformance tests that compare pgssl's client
//! with libpq against the same server.
//!
//! ```ignore
//! let pg = Postgres::builder("server-cn-only+server_ca.crt", "server-cn-only.key")
//!     .hba("hostssl all all 127.0.0.1/32 trust")
//!     .setting("ssl_min_protocol_version", "TLSv1.3")
//!     .start();
//! // connect to 127.0.0.1:pg.port; the server is stopped (`pg_ctl stop -m immediate`) on drop.
//! ```
//!
//! * `initdb` runs once per test binary (`std::sync::OnceLock`) into a template data directory,
//!   removed when the binary exits; every server copies it (`cp -a`) into its own temporary
//!   directory, which also holds its unix socket and log, so servers can run in parallel (each
//!   on its own free port, retried if another process takes it first).
//! * The server runs as the `postgres` user (PostgreSQL refuses to run as root): the binaries in
//!   `/usr/lib/postgresql/15/bin` and that user come with `apt-get install postgresql`
//!   (`scripts/test.sh` installs it).
//! * postgresql.conf: listen on 127.0.0.1 only, fsync off, ssl on with the given certificate and
//!   key (copied in, the key owned by postgres and 0600), `ssl_ca_file` = the PKI's
//!   `root+client_ca.crt`, an optional `ssl_crl_file`, and the test's extra settings.
//! * pg_hba.conf is the test's text after one line for the harness itself
//!   (`local all postgres trust`); the roles in [`ROLES`] are created over the unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Where Debian's PostgreSQL 15 server binaries live.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The operating-system user the server runs as.
pub const SERVER_USER: &str = "postgres";

/// The login roles every server has (besides the superuser `postgres`).
pub const ROLES: &[&str] = &["ssltestuser", "anotheruser", "ssluser", "nossluser"];

const INSTALL_HINT: &str = "install PostgreSQL 15 with `apt-get install postgresql` (scripts/test.sh installs it), which provides the server binaries in /usr/lib/postgresql/15/bin and the `postgres` user";

/// The committed test PKI.
fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs")
}

fn bin(name: &str) -> PathBuf {
    Path::new(PG_BIN).join(name)
}

/// The uid and gid of the `postgres` user; panics with how to get it when it is missing.
fn server_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, SERVER_USER])
                .output()
                .unwrap_or_else(|e| panic!("could not run `id`: {e}"));
            if !out.status.success() {
                panic!(
                    "there is no `{SERVER_USER}` user to run the PostgreSQL server as (it refuses to run as root): {INSTALL_HINT}"
                );
            }
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("`id` prints a number")
        };
        (id("-u"), id("-g"))
    })
}

fn check_prerequisites() {
    for b in ["initdb", "pg_ctl", "postgres", "psql"] {
        if !bin(b).is_file() {
            panic!("{} is missing: {INSTALL_HINT}", bin(b).display());
        }
    }
    if Command::new("runuser")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        panic!(
            "`runuser` is needed to run the server as {SERVER_USER}; it is in util-linux (`apt-get install util-linux`)"
        );
    }
    server_ids();
}

fn chown_to_server(path: &Path) {
    let (uid, gid) = server_ids();
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("could not chown {} to {SERVER_USER}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("could not chmod {}: {e}", path.display()));
}

/// A command run as the `postgres` user, in the C locale (English messages).
fn as_server(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", SERVER_USER, "--"])
        .arg(program)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .stdin(Stdio::null());
    c
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Removes the template directory when the test binary exits (statics are never dropped).
extern "C" fn remove_template() {
    if let Some(parent) = TEMPLATE.get().and_then(|data| data.parent()) {
        let _ = std::fs::remove_dir_all(parent);
    }
}

/// The template data directory: `initdb` once per test binary.
fn template() -> &'static Path {
    TEMPLATE.get_or_init(|| {
        check_prerequisites();
        let base = tempfile::Builder::new()
            .prefix("pgssl-pg-template.")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        // SAFETY: registers a plain `extern "C" fn` with the C library; it only reads a
        // `OnceLock` that is set by the time the process exits.
        unsafe {
            atexit(remove_template);
        }
        chmod(&base, 0o755);
        chown_to_server(&base);
        let data = base.join("data");
        run(
            as_server(&bin("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                // 1 MB WAL segments instead of 16: every server copies the template.
                "--wal-segsize=1",
            ]),
            "initdb",
        );
        data
    })
}

/// What a server is started with.
#[derive(Clone, Debug)]
pub struct PgConfig {
    cert: String,
    key: String,
    crl: Option<String>,
    hba: String,
    settings: Vec<(String, String)>,
}

impl PgConfig {
    /// pg_hba.conf's lines (after the harness's own `local all postgres trust`).
    pub fn hba(mut self, text: &str) -> Self {
        self.hba = text.to_owned();
        self
    }

    /// `ssl_crl_file`: a CRL file of the PKI.
    pub fn crl(mut self, file: &str) -> Self {
        self.crl = Some(file.to_owned());
        self
    }

    /// Another postgresql.conf setting (the value is written quoted).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the server; panics with its log if it does not start.
    pub fn start(self) -> Postgres {
        Postgres::start(self)
    }
}

/// A running PostgreSQL 15 server on 127.0.0.1, stopped on drop.
pub struct Postgres {
    /// The TCP port (on 127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
    data: PathBuf,
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Postgres {
    /// A server with this certificate (chain) and key, both files of the PKI.
    pub fn builder(cert_file: &str, key_file: &str) -> PgConfig {
        PgConfig {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
            crl: None,
            hba: "host all all 127.0.0.1/32 trust\n".to_owned(),
            settings: Vec::new(),
        }
    }

    fn start(config: PgConfig) -> Postgres {
        let template = template();
        let dir = tempfile::Builder::new()
            .prefix("pgssl-pg.")
            .tempdir()
            .expect("a temporary directory");
        chmod(dir.path(), 0o755);
        chown_to_server(dir.path());
        let data = dir.path().join("data");
        run(
            Command::new("cp").arg("-a").arg(template).arg(&data),
            "cp -a of the template data directory",
        );

        // The SSL files, copied in and owned by postgres; the key 0600.
        let copy = |from: &str, to: &str, mode: u32| -> PathBuf {
            let dest = data.join(to);
            std::fs::copy(certs().join(from), &dest)
                .unwrap_or_else(|e| panic!("could not copy {from}: {e}"));
            chmod(&dest, mode);
            chown_to_server(&dest);
            dest
        };
        let cert = copy(&config.cert, "server.crt", 0o644);
        let key = copy(&config.key, "server.key", 0o600);
        let ca = copy("root+client_ca.crt", "root.crt", 0o644);
        let mut conf = String::from("\n# pgssl test harness\n");
        let mut set = |name: &str, value: &str| {
            conf.push_str(&format!("{name} = {}\n", quote(value)));
        };
        set("listen_addresses", "127.0.0.1");
        set(
            "unix_socket_directories",
            dir.path().to_str().expect("UTF-8 path"),
        );
        set("fsync", "off");
        set("shared_buffers", "16MB");
        set("max_connections", "20");
        set("autovacuum", "off");
        set("ssl", "on");
        set("ssl_cert_file", cert.to_str().expect("UTF-8 path"));
        set("ssl_key_file", key.to_str().expect("UTF-8 path"));
        set("ssl_ca_file", ca.to_str().expect("UTF-8 path"));
        if let Some(crl) = &config.crl {
            let crl = copy(crl, "root.crl", 0o644);
            set("ssl_crl_file", crl.to_str().expect("UTF-8 path"));
        }
        for (name, value) in &config.settings {
            set(name, value);
        }
        // Appended: later settings win over initdb's.
        let conf_file = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).expect("postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_file, text).expect("postgresql.conf written");
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "# pgssl test harness\nlocal all postgres trust\n{}\n",
                config.hba
            ),
        )
        .expect("pg_hba.conf written");

        let log = dir.path().join("log");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let out = as_server(&bin("pg_ctl"))
                .arg("-w")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(format!("-p {port}"))
                .arg("start")
                .output()
                .expect("could not run pg_ctl");
            if out.status.success() {
                let pg = Postgres { port, dir, data };
                pg.create_roles();
                return pg;
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            let port_taken = last_log.contains("could not bind")
                || last_log.contains("Address already in use")
                || last_log.contains("could not create any TCP/IP sockets");
            if !port_taken {
                panic!(
                    "pg_ctl start failed ({}):\n{}{}\nserver log:\n{last_log}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        panic!("the server found no free port after 5 tries:\n{last_log}");
    }

    fn create_roles(&self) {
        let sql: String = ROLES
            .iter()
            .map(|r| format!("CREATE ROLE {r} LOGIN;"))
            .collect();
        self.psql_admin(&sql);
    }

    /// Runs SQL as the superuser over the unix socket (as the `postgres` user); returns
    /// psql's unaligned, tuples-only output.
    pub fn psql_admin(&self, sql: &str) -> String {
        let out = run(
            as_server(&bin("psql"))
                .arg("-h")
                .arg(self.dir.path())
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", "postgres", "-d", "postgres", "-X", "-q", "-A", "-t"])
                .args(["-v", "ON_ERROR_STOP=1", "-c", sql]),
            "psql (as the superuser, over the unix socket)",
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_server(&bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
