//! A scripted hostile PostgreSQL server for the client-side tests (tests/adapters/hostile_server.rs).
//!
//! [`Server`] binds 127.0.0.1:0 and runs a script of [`Step`]s on every accepted connection, in
//! a thread of its own: read the SSLRequest, a startup packet, a protocol message or n bytes;
//! write bytes in one `write()` (the socket has TCP_NODELAY, so they leave in one segment) or
//! trickled one byte per interval; stall; start TLS as the server (the `openssl` crate, with a
//! certificate and key from files, ALPN "postgresql" optional, the handshake optionally
//! trickled); close TLS cleanly (close_notify), close, or reset (SO_LINGER 0). It counts the
//! connections it accepted, so that a test can assert "exactly one TCP connection" (no
//! fallback), and keeps a log of what each connection's script did.
//!
//! Everything is bounded: every read waits at most [`STEP_LIMIT`], every stall and trickle at
//! most [`STALL_LIMIT`], so the connection threads end on their own; the accept loop stops when
//! the [`Server`] is dropped.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use openssl::ssl::{AlpnError, SslAcceptor, SslFiletype, SslMethod, SslStream, select_next_proto};

/// The longest a read step waits for the client.
pub const STEP_LIMIT: Duration = Duration::from_secs(10);
/// The longest a stall or a trickle lasts, whatever its script says.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);
/// The largest protocol message a read step accepts.
const MAX_MESSAGE: usize = 1 << 20;

/// The SSLRequest packet: length 8, code 80877103.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The server side of a TLS handshake.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The certificate chain file (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key file (PEM).
    pub key: PathBuf,
    /// Select ALPN "postgresql" when the client offers it.
    pub alpn: bool,
    /// Write the handshake one byte per this interval.
    pub trickle: Option<Duration>,
}

impl Tls {
    /// A handshake at full speed with ALPN "postgresql".
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Tls {
        Tls {
            cert: cert.into(),
            key: key.into(),
            alpn: true,
            trickle: None,
        }
    }

    /// The same, written one byte per `interval`.
    pub fn trickled(mut self, interval: Duration) -> Tls {
        self.trickle = Some(interval);
        self
    }
}

/// One protocol message the client sent: its type byte and body.
#[derive(Clone, Debug)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
}

/// What a [`Step::Reply`] writes in answer to the message it read.
pub type Responder = Arc<dyn Fn(&Message) -> Vec<u8> + Send + Sync>;

/// One step of a connection's script.
#[derive(Clone)]
pub enum Step {
    /// Read 8 bytes, which must be an SSLRequest.
    ReadSslRequest,
    /// Read exactly this many bytes.
    ReadExact(usize),
    /// Read a whole startup packet (length-prefixed, 8..=10000 bytes).
    ReadStartup,
    /// Read one protocol message (type byte, length, body).
    ReadMessage,
    /// Read one protocol message and write what the responder makes of it, in one write.
    Reply(Responder),
    /// Write these bytes in one `write()`.
    Write(Vec<u8>),
    /// Write these bytes one per interval.
    Trickle(Vec<u8>, Duration),
    /// Wait this long (at most [`STALL_LIMIT`]) or until the client closes, discarding
    /// whatever it sends; logs "peer closed" or "stall limit reached".
    Stall(Duration),
    /// Start TLS as the server.
    StartTls(Tls),
    /// Send close_notify and shut the TCP write side.
    CloseTls,
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (SO_LINGER 0, then close: RST).
    Reset,
}

impl Step {
    /// A [`Step::Reply`] from a closure.
    pub fn reply(f: impl Fn(&Message) -> Vec<u8> + Send + Sync + 'static) -> Step {
        Step::Reply(Arc::new(f))
    }
}

/// The TCP stream under TLS, which can write one byte per interval (for a trickled
/// handshake) until a deadline.
#[derive(Debug)]
struct Link {
    tcp: TcpStream,
    trickle: Option<Duration>,
    until: Instant,
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(interval) = self.trickle else {
            return self.tcp.write(buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        if Instant::now() >= self.until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "trickle limit reached",
            ));
        }
        let n = self.tcp.write(&buf[..1])?;
        thread::sleep(interval);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A connection in the state its script left it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<SslStream<Link>>),
    Closed,
}

impl Conn {
    fn tcp(&self) -> io::Result<&TcpStream> {
        match self {
            Conn::Plain(s) => Ok(s),
            Conn::Tls(s) => Ok(&s.get_ref().tcp),
            Conn::Closed => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "already closed",
            )),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Closed => Ok(0),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Closed => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "already closed",
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Closed => Ok(()),
        }
    }
}

/// The accepted connections' logs, one list of lines per connection in accept order.
type Logs = Arc<Mutex<Vec<Vec<String>>>>;

/// A scripted server on 127.0.0.1; the accept loop stops when it is dropped.
pub struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    logs: Logs,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Runs `script` on every connection.
    pub fn start(script: Vec<Step>) -> Server {
        Server::with(move |_| script.clone())
    }

    /// Runs `script(n)` on the n-th connection (from 0).
    pub fn with(script: impl Fn(usize) -> Vec<Step> + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let logs: Logs = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (a, l, s) = (accepted.clone(), logs.clone(), stop.clone());
        let acceptor = thread::spawn(move || accept_loop(&listener, &script, &a, &l, &s));
        Server {
            addr,
            accepted,
            logs,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many TCP connections it has accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Each connection's log so far.
    pub fn logs(&self) -> Vec<Vec<String>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to `limit` for a log line of connection `conn` containing `needle`; `Err` with
    /// all the logs otherwise.
    pub fn wait_log(&self, conn: usize, needle: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let logs = self.logs();
            if logs
                .get(conn)
                .is_some_and(|l| l.iter().any(|line| line.contains(needle)))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "connection {conn} did not log {needle:?} within {limit:?}: {logs:?}"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    script: &(impl Fn(usize) -> Vec<Step> + Send + 'static),
    accepted: &AtomicUsize,
    logs: &Logs,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((tcp, _)) => {
                let n = accepted.fetch_add(1, Ordering::SeqCst);
                logs.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Vec::new());
                let (steps, logs) = (script(n), logs.clone());
                thread::spawn(move || {
                    let log =
                        |line: String| logs.lock().unwrap_or_else(|e| e.into_inner())[n].push(line);
                    run(tcp, steps, &log);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs one connection's script, logging each step's outcome; stops at the first failure.
fn run(tcp: TcpStream, steps: Vec<Step>, log: &dyn Fn(String)) {
    let setup = tcp
        .set_nonblocking(false)
        .and_then(|()| tcp.set_nodelay(true))
        .and_then(|()| tcp.set_read_timeout(Some(STEP_LIMIT)))
        .and_then(|()| tcp.set_write_timeout(Some(STEP_LIMIT)));
    if let Err(e) = setup {
        log(format!("socket setup failed: {e}"));
        return;
    }
    let mut conn = Conn::Plain(tcp);
    for (i, step) in steps.into_iter().enumerate() {
        match perform(&mut conn, step) {
            Ok(line) => log(line),
            Err(e) => {
                log(format!("step {i} failed: {e}"));
                return;
            }
        }
    }
    log("script done".to_owned());
}

fn perform(conn: &mut Conn, step: Step) -> io::Result<String> {
    match step {
        Step::ReadSslRequest => {
            let got = read_exact(conn, 8)?;
            if got != SSL_REQUEST {
                return Err(io::Error::other(format!(
                    "expected SSLRequest, got {got:?}"
                )));
            }
            Ok("read SSLRequest".to_owned())
        }
        Step::ReadExact(n) => Ok(format!("read {:?}", read_exact(conn, n)?)),
        Step::ReadStartup => {
            let len = be32(&read_exact(conn, 4)?) as usize;
            if !(8..=10_000).contains(&len) {
                return Err(io::Error::other(format!("startup packet length {len}")));
            }
            read_exact(conn, len - 4)?;
            Ok(format!("read startup packet ({len} bytes)"))
        }
        Step::ReadMessage => {
            let m = read_message(conn)?;
            Ok(format!(
                "read message '{}' ({} bytes)",
                m.tag as char,
                m.body.len()
            ))
        }
        Step::Reply(f) => {
            let m = read_message(conn)?;
            let out = f(&m);
            write_once(conn, &out)?;
            Ok(format!(
                "read message '{}', wrote {} bytes",
                m.tag as char,
                out.len()
            ))
        }
        Step::Write(bytes) => {
            write_once(conn, &bytes)?;
            Ok(format!("wrote {} bytes", bytes.len()))
        }
        Step::Trickle(bytes, interval) => {
            let until = Instant::now() + STALL_LIMIT;
            for b in &bytes {
                if Instant::now() >= until {
                    return Err(io::Error::other("trickle limit reached"));
                }
                write_once(conn, &[*b])?;
                thread::sleep(interval);
            }
            Ok(format!("trickled {} bytes", bytes.len()))
        }
        Step::Stall(limit) => stall(conn, limit.min(STALL_LIMIT)),
        Step::StartTls(tls) => start_tls(conn, &tls),
        Step::CloseTls => {
            let Conn::Tls(s) = conn else {
                return Err(io::Error::other("CloseTls without TLS"));
            };
            s.shutdown().map_err(io::Error::other)?;
            s.get_ref().tcp.shutdown(Shutdown::Write)?;
            Ok("sent close_notify".to_owned())
        }
        Step::Close => {
            let _ = conn.tcp()?.shutdown(Shutdown::Both);
            *conn = Conn::Closed;
            Ok("closed".to_owned())
        }
        Step::Reset => {
            set_linger_zero(conn.tcp()?)?;
            *conn = Conn::Closed;
            Ok("reset".to_owned())
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn read_exact(conn: &mut Conn, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    conn.read_exact(&mut buf)?;
    Ok(buf)
}

fn read_message(conn: &mut Conn) -> io::Result<Message> {
    let head = read_exact(conn, 5)?;
    let len = be32(&head[1..]) as usize;
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(io::Error::other(format!(
            "message '{}' with length {len}",
            head[0] as char
        )));
    }
    let body = read_exact(conn, len - 4)?;
    Ok(Message { tag: head[0], body })
}

/// Writes `bytes` with a single `write()` (one TLS record under TLS); a short write is an
/// error, not a second write.
fn write_once(conn: &mut Conn, bytes: &[u8]) -> io::Result<()> {
    let n = conn.write(bytes)?;
    if n != bytes.len() {
        return Err(io::Error::other(format!(
            "short write: {n} of {} bytes",
            bytes.len()
        )));
    }
    conn.flush()
}

/// Waits up to `limit` for the client to close, discarding what it sends.
fn stall(conn: &mut Conn, limit: Duration) -> io::Result<String> {
    let deadline = Instant::now() + limit;
    let mut sink = [0u8; 4096];
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "stall limit reached".to_owned();
        }
        conn.tcp()?.set_read_timeout(Some(left))?;
        match conn.read(&mut sink) {
            Ok(0) => break "peer closed".to_owned(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break format!("peer closed ({e})"),
        }
    };
    if let Ok(tcp) = conn.tcp() {
        tcp.set_read_timeout(Some(STEP_LIMIT))?;
    }
    Ok(outcome)
}

fn acceptor(tls: &Tls) -> io::Result<SslAcceptor> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(&tls.cert)?;
    b.set_private_key_file(&tls.key, SslFiletype::PEM)?;
    b.check_private_key()?;
    if tls.alpn {
        b.set_alpn_select_callback(|_, offered| {
            select_next_proto(b"\x0apostgresql", offered).ok_or(AlpnError::NOACK)
        });
    }
    Ok(b.build())
}

fn start_tls(conn: &mut Conn, tls: &Tls) -> io::Result<String> {
    let Conn::Plain(tcp) = std::mem::replace(conn, Conn::Closed) else {
        return Err(io::Error::other(
            "TLS can only start on a plaintext connection",
        ));
    };
    let link = Link {
        tcp,
        trickle: tls.trickle,
        until: Instant::now() + STALL_LIMIT,
    };
    let mut s = acceptor(tls)?
        .accept(link)
        .map_err(|e| io::Error::other(format!("TLS handshake failed: {e}")))?;
    s.get_mut().trickle = None;
    *conn = Conn::Tls(Box::new(s));
    Ok("TLS started".to_owned())
}

/// SO_LINGER with a zero timeout: closing then sends RST instead of FIN.
#[cfg(target_os = "linux")]
fn set_linger_zero(tcp: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    unsafe extern "C" {
        fn setsockopt(
            fd: i32,
            level: i32,
            name: i32,
            value: *const std::ffi::c_void,
            len: u32,
        ) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let value = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open (borrowed from `tcp`), and `value` is a valid `struct
    // linger` that outlives the call, whose size is passed with it.
    let r = unsafe {
        setsockopt(
            tcp.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            (&raw const value).cast(),
            std::mem::size_of::<Linger>() as u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_linger_zero(_: &TcpStream) -> io::Result<()> {
    Err(io::Error::other(
        "Step::Reset is implemented for Linux only",
    ))
}
