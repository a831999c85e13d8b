//! What the server and proxy examples share: logging in PostgreSQL's words, the pg_hba.conf
//! subset, and the TLS settings (with a generated certificate by default).
#![allow(dead_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use pgssl::tls::{ClientCertMode, ClientName, ServerTlsConfig};

// ---------------------------------------------------------------------------------------------
// Logging: one line per event on stderr, in PostgreSQL's words.

pub struct StderrLog;

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

pub static LOGGER: StderrLog = StderrLog;

// ---------------------------------------------------------------------------------------------
// pg_hba.conf subset.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnType {
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Trust,
    Reject,
    Password,
    Cert,
}

#[derive(Clone, Debug)]
pub struct HbaLine {
    pub conn: ConnType,
    pub databases: Vec<String>,
    pub users: Vec<String>,
    pub address: Option<(IpAddr, u8)>,
    pub method: Method,
    pub clientcert: ClientCertMode,
    pub clientname: ClientName,
}

pub fn parse_hba(text: &str) -> Result<Vec<HbaLine>, String> {
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

pub fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
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

pub fn hba_match<'a>(
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

pub fn tls_config(
    settings: &[(String, String)],
    generated: &Option<(PathBuf, PathBuf)>,
) -> Result<ServerTlsConfig, String> {
    let mut c = ServerTlsConfig::new();
    c.ssl(true);
    if let Some((crt, key)) = generated {
        c.cert_file(crt).key_file(key);
    }
    for (n, v) in settings {
        c.set(n, v).map_err(|e| e.to_string())?;
    }
    Ok(c)
}

/// An ECDSA P-256 certificate for localhost, written to a private temporary directory.
pub fn generate_certificate() -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
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
    let dir = generated_dir();
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

/// Removes `authentication_timeout` from the `-c` settings and returns it (PostgreSQL's default
/// 60 s; a number of seconds, or with `s` or `min`; 1 s to 10 min).
pub fn take_authentication_timeout(
    settings: &mut Vec<(String, String)>,
) -> Result<std::time::Duration, String> {
    let mut secs = 60u64;
    for (_, v) in settings
        .iter()
        .filter(|(k, _)| k == "authentication_timeout")
    {
        let (num, mult) = if let Some(n) = v.strip_suffix("min") {
            (n, 60)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1)
        } else {
            (v.as_str(), 1)
        };
        let n: u64 = num.trim().parse().map_err(|_| {
            format!("invalid value for parameter \"authentication_timeout\": \"{v}\"")
        })?;
        secs = n * mult;
        if !(1..=600).contains(&secs) {
            return Err(format!(
                "{secs} s is outside the valid range for parameter \"authentication_timeout\" (1 s .. 600 s)"
            ));
        }
    }
    settings.retain(|(k, _)| k != "authentication_timeout");
    Ok(std::time::Duration::from_secs(secs))
}

/// Where the generated certificate goes (one directory per process).
pub fn generated_dir() -> PathBuf {
    std::env::temp_dir().join(format!("pgssl-example-server-{}", std::process::id()))
}

/// Removes the generated certificate's directory, if any.
pub fn remove_generated() {
    let _ = std::fs::remove_dir_all(generated_dir());
}

// ---------------------------------------------------------------------------------------------
// The client-facing side both examples run: TLS, pg_hba.conf, the accept loop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pgssl::io::blocking::{Accepted, Deadline, accept_with_deadline};
use pgssl::server::{ProxyNetworks, ServerPolicy, Startup};
use pgssl::tls::{AuthMethod, ReloadableServerTls, SessionInfo, check_client_certificate};
use pgssl::wire::ErrorResponse;

/// Sends a FATAL and logs it, as PostgreSQL does.
pub fn fatal<W: Write>(w: &mut W, code: &str, message: String) {
    log::warn!("FATAL:  {message}");
    let _ = w.write_all(&ErrorResponse::fatal(code, message).to_bytes());
    let _ = w.flush();
}

/// The TLS context, the pg_hba.conf lines and authentication_timeout, from the `-c` settings
/// and the hba file's text.
pub struct Frontend {
    pub tls: Option<ReloadableServerTls>,
    pub generated: Option<(PathBuf, PathBuf)>,
    pub authentication_timeout: std::time::Duration,
    pub hba: Vec<HbaLine>,
    /// The load balancers trusted to send a PROXY protocol header (none: off).
    pub proxy_networks: ProxyNetworks,
    settings: Vec<(String, String)>,
}

impl Frontend {
    /// Every `-c` setting is checked by pgssl (so `ssl` takes PostgreSQL's boolean spellings);
    /// with `ssl` on and no certificate file, a certificate is generated.
    pub fn new(
        mut settings: Vec<(String, String)>,
        hba_text: &str,
    ) -> Result<Frontend, Box<dyn std::error::Error>> {
        // Setting names are case-insensitive, as PostgreSQL's (and pgssl's `set`): the
        // example's own checks below compare lower-case names.
        for (name, _) in &mut settings {
            name.make_ascii_lowercase();
        }
        let authentication_timeout = take_authentication_timeout(&mut settings)?;
        let hba = parse_hba(hba_text)?;
        let ssl = tls_config(&settings, &None)?.ssl_enabled();
        let uses_files = settings
            .iter()
            .any(|(k, _)| k == "ssl_cert_file" || k == "ssl_key_file");
        let generated = if ssl && !uses_files {
            Some(generate_certificate()?)
        } else {
            None
        };
        let tls = if ssl {
            Some(ReloadableServerTls::new(&tls_config(
                &settings, &generated,
            )?)?)
        } else {
            None
        };
        Ok(Frontend {
            tls,
            generated,
            authentication_timeout,
            hba,
            proxy_networks: ProxyNetworks::none(),
            settings,
        })
    }

    /// SIGHUP: the TLS files are read again; on failure the old context stays.
    pub fn reload(&self) {
        log::info!("received SIGHUP, reloading configuration files");
        if let Some(t) = &self.tls {
            match tls_config(&self.settings, &self.generated) {
                Ok(c) => {
                    let _ = t.reload(&c);
                }
                Err(e) => log::warn!("SSL configuration was not reloaded: {e}"),
            }
        }
    }

    /// Negotiates one accepted connection under authentication_timeout; None when it ended
    /// in an error (logged). pgssl logs `connection received` (with the client's address a
    /// trusted proxy's PROXY header gives, if any).
    pub fn accept(
        &self,
        sock: TcpStream,
        peer: SocketAddr,
    ) -> Option<Accepted<Deadline<TcpStream>>> {
        let tls = self.tls.as_ref().map(|t| t.current());
        let policy = ServerPolicy::new()
            .peer_addr(peer)
            .proxy_networks(self.proxy_networks.clone())
            .log_connections(true);
        match accept_with_deadline(
            sock,
            policy,
            tls.as_deref(),
            Some(self.authentication_timeout),
        ) {
            Ok(a) => Some(a),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    }

    /// pg_hba.conf for this StartupMessage: the first matching line, `reject`, and the client
    /// certificate checks (`clientcert`, `cert`). Returns the line's method, or None after
    /// sending the FATAL. `password` lines give `password`.
    pub fn authorize<W: Write>(
        &self,
        w: &mut W,
        startup: &Startup,
        session: &Option<SessionInfo>,
        ip: IpAddr,
    ) -> Option<AuthMethod> {
        let (user, db) = (startup.user_lossy(), startup.database_lossy());
        let enc = if session.is_some() {
            "SSL encryption"
        } else {
            "no encryption"
        };
        let Some(line) = hba_match(&self.hba, session.is_some(), &db, &user, ip) else {
            fatal(
                w,
                "28000",
                format!(
                    "no pg_hba.conf entry for host \"{ip}\", user \"{user}\", database \"{db}\", {enc}"
                ),
            );
            return None;
        };
        let method = match line.method {
            Method::Reject => {
                fatal(
                    w,
                    "28000",
                    format!(
                        "pg_hba.conf rejects connection for host \"{ip}\", user \"{user}\", database \"{db}\", {enc}"
                    ),
                );
                return None;
            }
            Method::Trust => AuthMethod::Trust,
            Method::Password => AuthMethod::Password,
            Method::Cert => AuthMethod::Cert,
        };
        if line.clientcert != ClientCertMode::Off || method == AuthMethod::Cert {
            let Some(s) = session else {
                // No TLS: no certificate store is in force for this connection.
                let m = "client certificates can only be checked if a root certificate store is available";
                log::info!("{m}");
                fatal(w, "F0000", m.to_owned());
                return None;
            };
            match check_client_certificate(s, &user, method, line.clientcert, line.clientname) {
                Ok(Some(identity)) => {
                    log::info!("connection authenticated: identity=\"{identity}\" method=cert")
                }
                Ok(None) => {}
                Err(refusal) => {
                    log::info!("{}", refusal.log);
                    fatal(w, &refusal.response.code, refusal.response.message.clone());
                    return None;
                }
            }
        }
        Some(method)
    }

    /// Prints the psql command that connects to this server on `port`: verify-full with the
    /// generated certificate, require with a given one, disable with `ssl` off.
    pub fn print_connect_command(&self, port: u16) {
        let base = format!("host=localhost port={port} user=postgres");
        match (&self.tls, &self.generated) {
            (Some(_), Some((crt, _))) => eprintln!(
                "connect with: psql \"{base} sslmode=verify-full sslrootcert={}\"",
                crt.display()
            ),
            (Some(_), None) => eprintln!("connect with: psql \"{base} sslmode=require\""),
            (None, _) => eprintln!("connect with: psql \"{base} sslmode=disable\""),
        }
    }

    /// Serves `listener` until SIGINT or SIGTERM, a thread per connection, reloading TLS on
    /// SIGHUP; then removes the generated certificate.
    ///
    /// The accept blocks (no polling): a signal thread reloads on SIGHUP, and on SIGINT or
    /// SIGTERM sets the stop flag and wakes the accept with a connection of its own.
    pub fn run(
        self: &Arc<Self>,
        listener: TcpListener,
        serve: impl Fn(Arc<Frontend>, TcpStream, SocketAddr) + Clone + Send + 'static,
        ready: impl FnOnce(SocketAddr),
    ) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
        {
            let (me, stop) = (self.clone(), stop.clone());
            std::thread::spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        me.reload();
                        continue;
                    }
                    stop.store(true, Ordering::SeqCst);
                    let wake = std::time::Duration::from_secs(5);
                    if TcpStream::connect_timeout(&wake_address(addr), wake).is_err() {
                        // The accept cannot be woken: stop from here.
                        log::info!("received fast shutdown request");
                        if me.generated.is_some() {
                            remove_generated();
                        }
                        std::process::exit(0);
                    }
                    break;
                }
            });
        }
        log_listening(addr);
        ready(addr);
        let workers = Arc::new(Workers::default());
        loop {
            match listener.accept() {
                Ok(_) if stop.load(Ordering::SeqCst) => break,
                Ok((sock, peer)) => {
                    let (me, serve) = (self.clone(), serve.clone());
                    if let Err(e) = workers.run(Box::new(move || serve(me, sock, peer))) {
                        log::warn!("could not fork new process for connection: {e}");
                    }
                }
                Err(_) if stop.load(Ordering::SeqCst) => break,
                Err(e) => {
                    log::warn!("could not accept new connection: {e}");
                    // Out of descriptors or memory: give the live connections time to end.
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        log::info!("received fast shutdown request");
        if self.generated.is_some() {
            remove_generated();
        }
        Ok(())
    }
}

/// Each connection's thread stack: the handshake and the query loop need far less than the
/// 2 MiB default (only the pages touched are resident; this bounds the address space of many
/// idle connections).
const CONNECTION_STACK: usize = 256 * 1024;

/// How long a connection thread waits for the next connection before it exits.
const WORKER_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

type Job = Box<dyn FnOnce() + Send>;

/// The connection threads: one per connection, as PostgreSQL has a process per connection,
/// but a thread whose connection ended waits [`WORKER_IDLE`] for the next one instead of
/// exiting, so that a busy server does not create and tear down a thread (and its stack
/// mapping) for every connection.
#[derive(Default)]
struct Workers {
    /// The threads waiting for a connection, each by its channel.
    idle: std::sync::Mutex<Vec<std::sync::mpsc::Sender<Job>>>,
}

impl Workers {
    /// Runs `job` on an idle thread, or on a new one.
    fn run(self: &Arc<Self>, mut job: Job) -> std::io::Result<()> {
        loop {
            let Some(worker) = self.idle.lock().unwrap().pop() else {
                break;
            };
            // A worker that timed out meanwhile has dropped its receiver: try the next.
            match worker.send(job) {
                Ok(()) => return Ok(()),
                Err(std::sync::mpsc::SendError(back)) => job = back,
            }
        }
        let me = self.clone();
        std::thread::Builder::new()
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                job();
                loop {
                    let (tx, rx) = std::sync::mpsc::channel();
                    me.idle.lock().unwrap().push(tx);
                    match rx.recv_timeout(WORKER_IDLE) {
                        Ok(next) => next(),
                        Err(_) => return,
                    }
                }
            })
            .map(drop)
    }
}

/// Where the signal thread connects to wake the accept: the listening address, loopback for an
/// unspecified one.
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// PostgreSQL's log line for a listening socket.
pub fn log_listening(addr: SocketAddr) {
    log::info!(
        "listening on {} address \"{}\", port {}",
        if addr.is_ipv6() { "IPv6" } else { "IPv4" },
        addr.ip(),
        addr.port()
    );
}
