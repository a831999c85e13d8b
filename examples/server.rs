//! A small Postgres-compatible server built on pgssl.
//!
//! ```text
//! cargo run --example server -- [--listen ADDR] [-c NAME=VALUE]... [--hba FILE] [--password USER=PASS]...
//! ```
//!
//! With no options it listens on 127.0.0.1:5433 with TLS on, using an ECDSA P-256 certificate
//! it generates (CN and SAN localhost, SAN 127.0.0.1), and prints a `psql` command that
//! connects to it. `-c` takes PostgreSQL's SSL settings by name (`ssl=off` included); `--hba`
//! a pg_hba.conf subset (host/hostssl/hostnossl; trust, reject, password, cert;
//! clientcert=verify-ca|verify-full, clientname=CN|DN). Every query is answered with one row
//! describing the connection's TLS. SIGHUP reloads the TLS settings; SIGINT/SIGTERM stop it.

#[path = "support/pgwire.rs"]
mod pgwire;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use pgssl::io::blocking::{Accepted, PgStream, accept_with_deadline};
use pgssl::server::ServerPolicy;
use pgssl::tls::{
    AuthMethod, ClientCertMode, ClientName, ReloadableServerTls, ServerTlsConfig, SessionInfo,
    check_client_certificate,
};
use pgssl::wire::ErrorResponse;

/// PostgreSQL's authentication_timeout.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Logging: one line per event on stderr, in PostgreSQL's words.

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = r.args().to_string();
        if msg.starts_with("FATAL:") {
            eprintln!("{msg}");
        } else {
            eprintln!("LOG:  {msg}");
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

// ---------------------------------------------------------------------------------------------
// pg_hba.conf subset.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnType {
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Trust,
    Reject,
    Password,
    Cert,
}

#[derive(Clone, Debug)]
struct HbaLine {
    conn: ConnType,
    databases: Vec<String>,
    users: Vec<String>,
    address: Option<(IpAddr, u8)>,
    method: Method,
    clientcert: ClientCertMode,
    clientname: ClientName,
}

fn parse_hba(text: &str) -> Result<Vec<HbaLine>, String> {
    let mut lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |m: &str| format!("invalid pg_hba.conf line {}: {m}: {raw}", n + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            return Err(err("expected TYPE DATABASE USER ADDRESS METHOD [OPTIONS]"));
        }
        let conn = match f[0] {
            "host" => ConnType::Host,
            "hostssl" => ConnType::HostSsl,
            "hostnossl" => ConnType::HostNoSsl,
            _ => return Err(err("unsupported connection type")),
        };
        let address = if f[3] == "all" {
            None
        } else {
            let (ip, bits) = f[3]
                .split_once('/')
                .ok_or_else(|| err("address must be all or a CIDR"))?;
            let ip: IpAddr = ip.parse().map_err(|_| err("invalid IP address"))?;
            let bits: u8 = bits.parse().map_err(|_| err("invalid CIDR mask"))?;
            Some((ip, bits))
        };
        let method = match f[4] {
            "trust" => Method::Trust,
            "reject" => Method::Reject,
            "password" => Method::Password,
            "cert" => Method::Cert,
            _ => return Err(err("unsupported authentication method")),
        };
        let mut clientcert = ClientCertMode::Off;
        let mut clientname = ClientName::Cn;
        for opt in &f[5..] {
            match opt.split_once('=') {
                Some(("clientcert", "verify-ca")) => clientcert = ClientCertMode::VerifyCa,
                Some(("clientcert", "verify-full")) => clientcert = ClientCertMode::VerifyFull,
                Some(("clientname", "CN")) => clientname = ClientName::Cn,
                Some(("clientname", "DN")) => clientname = ClientName::Dn,
                _ => return Err(err("unsupported option")),
            }
        }
        let list = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        lines.push(HbaLine {
            conn,
            databases: list(f[1]),
            users: list(f[2]),
            address,
            method,
            clientcert,
            clientname,
        });
    }
    Ok(lines)
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits.min(32))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits.min(128))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn hba_match<'a>(
    hba: &'a [HbaLine],
    tls: bool,
    db: &str,
    user: &str,
    ip: IpAddr,
) -> Option<&'a HbaLine> {
    hba.iter().find(|l| {
        let conn_ok = match l.conn {
            ConnType::Host => true,
            ConnType::HostSsl => tls,
            ConnType::HostNoSsl => !tls,
        };
        let any = |v: &[String], x: &str| v.iter().any(|e| e == "all" || e == x);
        conn_ok
            && any(&l.databases, db)
            && any(&l.users, user)
            && l.address.is_none_or(|(net, bits)| in_cidr(ip, net, bits))
    })
}

// ---------------------------------------------------------------------------------------------
// The server.

struct Shared {
    tls: Option<ReloadableServerTls>,
    settings: Vec<(String, String)>,
    generated: Option<(PathBuf, PathBuf)>,
    hba: Vec<HbaLine>,
    passwords: HashMap<String, String>,
    backends: Mutex<HashMap<u32, [u8; 4]>>,
    next_pid: AtomicU32,
}

fn tls_config(
    settings: &[(String, String)],
    generated: &Option<(PathBuf, PathBuf)>,
) -> Result<ServerTlsConfig, String> {
    let mut c = ServerTlsConfig::new().ssl(true);
    if let Some((crt, key)) = generated {
        c = c.cert_file(crt).key_file(key);
    }
    for (n, v) in settings {
        c.set(n, v).map_err(|e| e.to_string())?;
    }
    Ok(c)
}

/// An ECDSA P-256 certificate for localhost, written to a private temporary directory.
fn generate_certificate() -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "localhost")?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(std::process::id())?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(365)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(&key, MessageDigest::sha256())?;
    let cert = b.build();
    let dir = std::env::temp_dir().join(format!("pgssl-example-server-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir)?;
    let crt = dir.join("server.crt");
    let keyf = dir.join("server.key");
    std::fs::write(&crt, cert.to_pem()?)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&keyf)?
        .write_all(&key.private_key_to_pem_pkcs8()?)?;
    Ok((crt, keyf))
}

fn fatal<W: Write>(w: &mut W, code: &str, message: String) {
    log::warn!("FATAL:  {message}");
    let _ = w.write_all(&ErrorResponse::fatal(code, message).to_bytes());
    let _ = w.flush();
}

fn serve(shared: Arc<Shared>, sock: TcpStream, peer: SocketAddr) {
    log::info!(
        "connection received: host={} port={}",
        peer.ip(),
        peer.port()
    );
    let tls = shared.tls.as_ref().map(|t| t.current());
    let policy = ServerPolicy::new().peer_addr(peer.ip());
    let accepted =
        match accept_with_deadline(sock, policy, tls.as_deref(), Some(AUTHENTICATION_TIMEOUT)) {
            Ok(a) => a,
            Err(e) => {
                log::warn!("{e}");
                return;
            }
        };
    match accepted {
        Accepted::Startup {
            mut stream,
            startup,
            session,
            ..
        } => {
            if let Err(e) = session_main(&shared, &mut stream, &startup, session, peer.ip()) {
                log::info!("could not receive data from client: {e}");
            }
        }
        Accepted::Cancel(c) => {
            let known = shared.backends.lock().unwrap().get(&c.pid()).copied();
            match known {
                Some(key) if key.as_slice() == c.key() => {
                    log::info!("cancel request for process {} accepted", c.pid())
                }
                Some(_) => log::info!("wrong key in cancel request for process {}", c.pid()),
                None => log::info!(
                    "PID {} in cancel request did not match any process",
                    c.pid()
                ),
            }
        }
        Accepted::Refused(_) => {}
        _ => {}
    }
}

type Stream = PgStream<pgssl::io::blocking::Deadline<TcpStream>>;

fn session_main(
    shared: &Shared,
    stream: &mut Stream,
    startup: &pgssl::server::Startup,
    session: Option<SessionInfo>,
    ip: IpAddr,
) -> io::Result<()> {
    let user = startup.user();
    let db = startup.database();
    let tls = session.is_some();
    let enc = if tls {
        "SSL encryption"
    } else {
        "no encryption"
    };
    let Some(line) = hba_match(&shared.hba, tls, &db, &user, ip) else {
        fatal(
            stream,
            "28000",
            format!(
                "no pg_hba.conf entry for host \"{ip}\", user \"{user}\", database \"{db}\", {enc}"
            ),
        );
        return Ok(());
    };
    let method = match line.method {
        Method::Reject => {
            fatal(
                stream,
                "28000",
                format!(
                    "pg_hba.conf rejects connection for host \"{ip}\", user \"{user}\", database \"{db}\", {enc}"
                ),
            );
            return Ok(());
        }
        Method::Trust => AuthMethod::Trust,
        Method::Password => AuthMethod::Password,
        Method::Cert => AuthMethod::Cert,
    };
    // clientcert and the cert method.
    if line.clientcert != ClientCertMode::Off || method == AuthMethod::Cert {
        let s = session.clone().unwrap_or_default();
        let ca = s.client_cert_requested;
        match check_client_certificate(&s, &user, method, line.clientcert, line.clientname, ca) {
            Ok(Some(identity)) => {
                log::info!("connection authenticated: identity=\"{identity}\" method=cert")
            }
            Ok(None) => {}
            Err(refusal) => {
                log::info!("{}", refusal.log);
                fatal(
                    stream,
                    &refusal.response.code,
                    refusal.response.message.clone(),
                );
                return Ok(());
            }
        }
    }
    if method == AuthMethod::Password {
        let mut out = BytesMut::new();
        pgwire::auth(&mut out, 3, &[]);
        pgwire::send(stream, &out)?;
        let given = match pgwire::read_message(stream, 10_000)? {
            Some(m) if m.tag == b'p' => {
                let mut pos = 0;
                pgwire::get_cstr(&m.body, &mut pos).unwrap_or_default()
            }
            _ => return Ok(()),
        };
        if shared.passwords.get(&user) != Some(&given) {
            fatal(
                stream,
                "28P01",
                format!("password authentication failed for user \"{user}\""),
            );
            return Ok(());
        }
        log::info!("connection authenticated: identity=\"{user}\" method=password");
    }
    // Authentication is over: PostgreSQL's authentication_timeout no longer applies.
    stream.clear_deadline()?;
    let pid = shared.next_pid.fetch_add(1, Ordering::SeqCst);
    let mut key = [0u8; 4];
    openssl::rand::rand_bytes(&mut key).map_err(io::Error::other)?;
    shared.backends.lock().unwrap().insert(pid, key);
    let mut out = BytesMut::new();
    pgwire::auth(&mut out, 0, &[]);
    for (n, v) in [
        ("server_version", "17.0 (pgssl example)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("is_superuser", "off"),
        ("session_authorization", user.as_str()),
        (
            "application_name",
            startup.message().get_str("application_name").unwrap_or(""),
        ),
    ] {
        pgwire::parameter_status(&mut out, n, v);
    }
    pgwire::backend_key_data(&mut out, pid, &key);
    pgwire::ready_for_query(&mut out);
    pgwire::send(stream, &out)?;
    match &session {
        Some(s) => log::info!(
            "connection authorized: user={user} database={db} SSL enabled (protocol={}, cipher={}, bits={})",
            s.version,
            s.cipher,
            s.bits
        ),
        None => log::info!("connection authorized: user={user} database={db} SSL off"),
    }
    let result = query_loop(stream, &session);
    shared.backends.lock().unwrap().remove(&pid);
    result
}

const COLUMNS: [&str; 9] = [
    "ssl",
    "version",
    "cipher",
    "bits",
    "client_dn",
    "client_serial",
    "issuer_dn",
    "alpn",
    "sni",
];

fn row(session: &Option<SessionInfo>) -> Vec<Option<String>> {
    match session {
        None => {
            let mut v = vec![Some("f".to_owned())];
            v.extend(std::iter::repeat_n(None, COLUMNS.len() - 1));
            v
        }
        Some(s) => vec![
            Some("t".to_owned()),
            Some(s.version.clone()),
            Some(s.cipher.clone()),
            Some(s.bits.to_string()),
            s.peer.as_ref().map(|p| p.subject.clone()),
            s.peer.as_ref().map(|p| p.serial.clone()),
            s.peer.as_ref().map(|p| p.issuer.clone()),
            s.alpn
                .as_ref()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            s.sni.clone(),
        ],
    }
}

fn query_loop<S: Read + Write>(stream: &mut S, session: &Option<SessionInfo>) -> io::Result<()> {
    let mut in_error = false;
    loop {
        let Some(m) = pgwire::read_message(stream, 1 << 20)? else {
            return Ok(());
        };
        let mut out = BytesMut::new();
        match m.tag {
            b'X' => return Ok(()),
            b'Q' => {
                pgwire::row_description(&mut out, &COLUMNS);
                pgwire::data_row(&mut out, &row(session));
                pgwire::command_complete(&mut out, "SELECT 1");
                pgwire::ready_for_query(&mut out);
            }
            // The extended protocol, enough for drivers that always use it.
            b'P' if !in_error => pgwire::put(&mut out, b'1', &[]),
            b'B' if !in_error => pgwire::put(&mut out, b'2', &[]),
            b'D' if !in_error => {
                if m.body.first() == Some(&b'S') {
                    pgwire::put(&mut out, b't', &0u16.to_be_bytes());
                }
                pgwire::row_description(&mut out, &COLUMNS);
            }
            b'E' if !in_error => {
                pgwire::data_row(&mut out, &row(session));
                pgwire::command_complete(&mut out, "SELECT 1");
            }
            b'C' if !in_error => pgwire::put(&mut out, b'3', &[]),
            b'S' => {
                in_error = false;
                pgwire::ready_for_query(&mut out);
            }
            b'H' => {}
            b'P' | b'B' | b'D' | b'E' | b'C' => {}
            other => {
                let e = ErrorResponse {
                    severity: pgssl::wire::Severity::Error,
                    code: "0A000".into(),
                    message: format!("unsupported frontend message type {}", other as char),
                    detail: None,
                    hint: None,
                };
                e.encode(&mut out);
                in_error = true;
            }
        }
        if !out.is_empty() {
            pgwire::send(stream, &out)?;
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: server [--listen ADDR] [-c NAME=VALUE]... [--hba FILE] [--password USER=PASS]..."
    );
    std::process::exit(2);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    let mut listen = "127.0.0.1:5433".to_owned();
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut hba_text = "host all all all trust\n".to_owned();
    let mut passwords = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "-c" => {
                let kv = args.next().unwrap_or_else(|| usage());
                let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
                settings.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "--hba" => hba_text = std::fs::read_to_string(args.next().unwrap_or_else(|| usage()))?,
            "--password" => {
                let kv = args.next().unwrap_or_else(|| usage());
                let (u, p) = kv.split_once('=').unwrap_or_else(|| usage());
                passwords.insert(u.to_owned(), p.to_owned());
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let hba = parse_hba(&hba_text)?;
    let ssl = settings
        .iter()
        .rev()
        .find(|(k, _)| k == "ssl")
        .map(|(_, v)| !matches!(v.as_str(), "off" | "false" | "0" | "no"))
        .unwrap_or(true);
    let uses_files = settings
        .iter()
        .any(|(k, _)| k == "ssl_cert_file" || k == "ssl_key_file");
    let generated = if ssl && !uses_files {
        Some(generate_certificate()?)
    } else {
        None
    };
    let tls = if ssl {
        let config = tls_config(&settings, &generated)?;
        match ReloadableServerTls::new(&config) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("FATAL:  {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let listener = TcpListener::bind(&listen)?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        tls,
        settings,
        generated,
        hba,
        passwords,
        backends: Mutex::new(HashMap::new()),
        next_pid: AtomicU32::new(std::process::id() * 10),
    });

    let hup = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;

    log::info!(
        "listening on IPv4 address \"{}\", port {}",
        addr.ip(),
        addr.port()
    );
    match (&shared.tls, &shared.generated) {
        (Some(_), Some((crt, _))) => eprintln!(
            "connect with: psql \"host=localhost port={} user=postgres sslmode=verify-full sslrootcert={}\"",
            addr.port(),
            crt.display()
        ),
        (Some(_), None) => eprintln!(
            "connect with: psql \"host=localhost port={} user=postgres sslmode=require\"",
            addr.port()
        ),
        (None, _) => eprintln!(
            "connect with: psql \"host=localhost port={} user=postgres sslmode=disable\"",
            addr.port()
        ),
    }
    log::info!("database system is ready to accept connections");

    while !stop.load(Ordering::SeqCst) {
        if hup.swap(false, Ordering::SeqCst) {
            log::info!("received SIGHUP, reloading configuration files");
            if let Some(t) = &shared.tls {
                match tls_config(&shared.settings, &shared.generated) {
                    Ok(c) => {
                        let _ = t.reload(&c);
                    }
                    Err(e) => log::warn!("SSL configuration was not reloaded: {e}"),
                }
            }
        }
        match listener.accept() {
            Ok((sock, peer)) => {
                sock.set_nonblocking(false)?;
                let shared = shared.clone();
                std::thread::spawn(move || serve(shared, sock, peer));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => log::warn!("could not accept new connection: {e}"),
        }
    }
    log::info!("received fast shutdown request");
    if let Some((crt, _)) = &shared.generated {
        if let Some(dir) = crt.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    log::info!("database system is shut down");
    Ok(())
}
