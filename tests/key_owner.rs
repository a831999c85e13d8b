//! PostgreSQL's ownership rule for the server's private key, exercised by a server that runs
//! as a non-root user: a key owned by root may be readable by the group (0640 or less), one
//! owned by the server's own user may not (0600 or less), and one owned by anybody else is
//! refused.
//!
//! The tests run as root, which falls under the owner's clause, so the parent (root) prepares
//! key files with `chown`/`chmod` in a 0755 temporary directory and runs this binary again as
//! the `postgres` user (`runuser -u postgres -- EXE --child build CERT KEY`); the child builds
//! a `ServerTlsConfig` and prints the outcome. The parent checks each case, prints one line
//! per case and a final `N passed, M failed`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};

use pgssl::tls::ServerTlsConfig;

/// The user the child runs as (Debian's and PostgreSQL's packages create it).
const SERVER_USER: &str = "postgres";
/// A user other than root and the server's.
const OTHER_USER: &str = "nobody";

const DETAIL: &str = "\nDETAIL:  File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--child") {
        Some(i) => child(&args[i + 1..]),
        None => parent(),
    }
}

/// The effective uid of this process (the owner of its /proc directory).
fn euid() -> u32 {
    std::fs::metadata("/proc/self")
        .expect("/proc is mounted")
        .uid()
}

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

// ---------------------------------------------------------------------------------------------
// The child, as the server's user.

fn child(args: &[String]) -> ExitCode {
    println!("euid={}", euid());
    match args {
        [probe] if probe == "probe" => println!("result=probe"),
        [build, cert, key] if build == "build" => {
            let mut c = ServerTlsConfig::new();
            c.ssl(true).cert_file(cert).key_file(key);
            match c.build() {
                Ok(_) => println!("result=ok"),
                Err(e) => println!("result=err {}", esc(&e.to_string())),
            }
        }
        other => {
            eprintln!("bad child arguments {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// The parent, as root.

/// A user's uid and primary gid, from `id`.
fn user_ids(name: &str) -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, name])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("could not run id: {e}"))?;
        if !out.status.success() {
            return Err(format!("no user {name:?}"));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("id {flag} {name}: {e}"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// Runs the binary `exe` as the server's user with `args` after `--child`.
fn as_server_user(exe: &Path, args: &[&str]) -> Result<Output, String> {
    Command::new("runuser")
        .args(["-u", SERVER_USER, "--"])
        .arg(exe)
        .arg("--child")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run runuser: {e}"))
}

/// The child's `key=value` lines.
fn value<'a>(out: &'a Output, key: &str) -> Option<&'a str> {
    std::str::from_utf8(&out.stdout)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the environment must provide; an error says how to get it.
struct Setup {
    server: (u32, u32),
    other: (u32, u32),
    dir: tempfile::TempDir,
    exe: PathBuf,
    cert: PathBuf,
}

fn setup() -> Result<Setup, String> {
    if euid() != 0 {
        return Err(format!(
            "these tests chown key files and switch to the {SERVER_USER} user, so they must run as root (euid is {})",
            euid()
        ));
    }
    match Command::new("runuser")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => {
            return Err(format!(
                "runuser is needed to run the server as {SERVER_USER} ({e}); it is in util-linux: `apt-get install util-linux`"
            ));
        }
    }
    let server = user_ids(SERVER_USER).map_err(|e| {
        format!(
            "{e}: the server must run as the non-root user {SERVER_USER}; `apt-get install postgresql` creates it (or `useradd --system {SERVER_USER}`)"
        )
    })?;
    let other = user_ids(OTHER_USER).map_err(|e| {
        format!("{e}: a user other than root and {SERVER_USER} is needed (`useradd --system {OTHER_USER}`)")
    })?;
    if server.0 == 0 || other.0 == 0 || other.0 == server.0 {
        return Err(format!(
            "{SERVER_USER} (uid {}) and {OTHER_USER} (uid {}) must be distinct non-root users",
            server.0, other.0
        ));
    }

    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod 0755 {}: {e}", dir.path().display()))?;
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs");
    let cert = dir.path().join("server-localhost+server_ca.crt");
    std::fs::copy(certs.join("server-localhost+server_ca.crt"), &cert)
        .map_err(|e| format!("copying the certificate: {e}"))?;
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("chmod the certificate: {e}"))?;

    // The server's user must be able to run this binary; target/ may not be reachable for it.
    let mut exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let probe = |exe: &Path| {
        as_server_user(exe, &["probe"])
            .map(|o| o.status.success() && value(&o, "result") == Some("probe"))
            .unwrap_or(false)
    };
    if !probe(&exe) {
        let copy = dir.path().join("key_owner-child");
        std::fs::copy(&exe, &copy).map_err(|e| format!("copying the test binary: {e}"))?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod the test binary copy: {e}"))?;
        println!(
            "note: {SERVER_USER} cannot run {}; using a copy in {}",
            exe.display(),
            dir.path().display()
        );
        exe = copy;
        if !probe(&exe) {
            let out = as_server_user(&exe, &["probe"])?;
            return Err(format!(
                "{SERVER_USER} cannot run the test binary even from {}:\n{}",
                dir.path().display(),
                describe(&out)
            ));
        }
    }
    Ok(Setup {
        server,
        other,
        dir,
        exe,
        cert,
    })
}

/// Who owns the key file.
#[derive(Clone, Copy)]
enum Owner {
    Root,
    Server,
    Other,
}

/// One key file and the outcome PostgreSQL gives for it.
struct Case {
    name: &'static str,
    owner: Owner,
    /// The group is the server user's group (else root's).
    server_group: bool,
    mode: u32,
    /// None: the build succeeds; Some(f): it fails with f(key path).
    error: Option<fn(&str) -> String>,
}

fn run_case(s: &Setup, i: usize, case: &Case) -> Result<(), String> {
    let key = s.dir.path().join(format!("case{i}.key"));
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs");
    std::fs::copy(certs.join("server-localhost.key"), &key)
        .map_err(|e| format!("copying the key: {e}"))?;
    let uid = match case.owner {
        Owner::Root => 0,
        Owner::Server => s.server.0,
        Owner::Other => s.other.0,
    };
    let gid = match (case.server_group, case.owner) {
        (true, _) => s.server.1,
        (false, Owner::Other) => s.other.1,
        (false, _) => 0,
    };
    std::os::unix::fs::chown(&key, Some(uid), Some(gid))
        .map_err(|e| format!("chown {uid}:{gid}: {e}"))?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(case.mode))
        .map_err(|e| format!("chmod {:o}: {e}", case.mode))?;
    let meta = std::fs::metadata(&key).map_err(|e| e.to_string())?;
    let shown = format!("{}:{} {:04o}", meta.uid(), meta.gid(), meta.mode() & 0o7777);

    let key_str = key.display().to_string();
    let cert_str = s.cert.display().to_string();
    let out = as_server_user(&s.exe, &["build", &cert_str, &key_str])?;
    let fail = |what: String| Err(format!("key {shown}: {what}\n{}", describe(&out)));
    if !out.status.success() {
        return fail("the child failed".to_owned());
    }
    let want_euid = s.server.0.to_string();
    if value(&out, "euid") != Some(want_euid.as_str()) {
        return fail(format!("the child did not run as uid {want_euid}"));
    }
    let got = value(&out, "result").map(unesc).unwrap_or_default();
    let want = match case.error {
        None => "ok".to_owned(),
        Some(f) => format!("err {}", f(&key_str)),
    };
    if got != want {
        return fail(format!("expected {want:?}\n       got      {got:?}"));
    }
    Ok(())
}

fn group_or_world(key: &str) -> String {
    format!("private key file \"{key}\" has group or world access{DETAIL}")
}

fn wrong_owner(key: &str) -> String {
    format!("private key file \"{key}\" must be owned by the database user or root")
}

fn unreadable(key: &str) -> String {
    format!("could not load private key file \"{key}\": Permission denied")
}

fn parent() -> ExitCode {
    let setup = match setup() {
        Ok(s) => s,
        Err(e) => {
            println!("FAIL setup: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let cases = [
        Case {
            name: "root:postgres 0640, server runs as postgres: accepted",
            owner: Owner::Root,
            server_group: true,
            mode: 0o640,
            error: None,
        },
        Case {
            name: "postgres:postgres 0640: group access refused",
            owner: Owner::Server,
            server_group: true,
            mode: 0o640,
            error: Some(group_or_world),
        },
        Case {
            name: "root:postgres 0660: group write refused",
            owner: Owner::Root,
            server_group: true,
            mode: 0o660,
            error: Some(group_or_world),
        },
        Case {
            name: "nobody:nogroup 0600: wrong owner refused",
            owner: Owner::Other,
            server_group: false,
            mode: 0o600,
            error: Some(wrong_owner),
        },
        Case {
            name: "postgres:postgres 0600: accepted",
            owner: Owner::Server,
            server_group: true,
            mode: 0o600,
            error: None,
        },
        Case {
            name: "root:root 0640: allowed by the rule, but postgres cannot read it",
            owner: Owner::Root,
            server_group: false,
            mode: 0o640,
            error: Some(unreadable),
        },
    ];
    let (mut passed, mut failed) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        match run_case(&setup, i + 1, case) {
            Ok(()) => {
                passed += 1;
                println!("ok   case {}: {}", i + 1, case.name);
            }
            Err(e) => {
                failed += 1;
                println!("FAIL case {}: {}", i + 1, case.name);
                for l in e.lines() {
                    println!("     | {l}");
                }
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
