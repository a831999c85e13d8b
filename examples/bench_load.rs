//! The minimal servers scripts/loadbench.sh runs side by side (docs/performance.md, "Whole
//! connections"). All three do the same work per connection with the same OpenSSL context
//! (built by pgssl from the same `-c` settings, so the certificate, protocol range, groups,
//! ciphers, no tickets and no session cache are the same):
//!
//! SSLRequest → `S` → TLS handshake → StartupMessage → AuthenticationOk, two ParameterStatus,
//! ReadyForQuery → each simple Query answered with one row (`1`) → Terminate or end of stream.
//!
//! ```text
//! bench_load raw|blocking|tokio|tokio-st --listen ADDR --cert FILE --key FILE [-c NAME=VALUE]...
//! ```
//!
//! * `raw`: the floor. No pgssl on the connection path: it reads the 8-byte SSLRequest itself,
//!   writes `S` and runs `openssl::ssl::Ssl::accept` on the context, on a pool of threads that
//!   all block in `accept(2)` (no thread created per connection).
//! * `blocking`: `pgssl::io::blocking::accept`, a thread per connection (64 KiB stack).
//! * `tokio`: `pgssl::io::tokio::accept` on tokio's multi-threaded runtime (a worker per
//!   core), a task per connection; `tokio-st`: the same on a current-thread runtime.
//!
//! It prints `ready` on stderr once it listens, and logs nothing per connection.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use pgssl::server::ServerPolicy;
use pgssl::tls::{ServerTls, ServerTlsConfig};

/// AuthenticationOk, server_version, client_encoding, ReadyForQuery(idle).
fn login_reply() -> Vec<u8> {
    let mut out = Vec::new();
    msg(&mut out, b'R', &0u32.to_be_bytes());
    for (n, v) in [("server_version", "15.0"), ("client_encoding", "UTF8")] {
        let mut b = Vec::new();
        cstr(&mut b, n);
        cstr(&mut b, v);
        msg(&mut out, b'S', &b);
    }
    msg(&mut out, b'Z', b"I");
    out
}

/// RowDescription (one int4 column), DataRow `1`, CommandComplete, ReadyForQuery(idle).
fn query_reply() -> Vec<u8> {
    let mut out = Vec::new();
    let mut t = 1u16.to_be_bytes().to_vec();
    cstr(&mut t, "?column?");
    t.extend_from_slice(&0u32.to_be_bytes()); // table oid
    t.extend_from_slice(&0u16.to_be_bytes()); // attnum
    t.extend_from_slice(&23u32.to_be_bytes()); // int4
    t.extend_from_slice(&4i16.to_be_bytes());
    t.extend_from_slice(&(-1i32).to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes()); // text
    msg(&mut out, b'T', &t);
    let mut d = 1u16.to_be_bytes().to_vec();
    d.extend_from_slice(&1u32.to_be_bytes());
    d.push(b'1');
    msg(&mut out, b'D', &d);
    let mut c = Vec::new();
    cstr(&mut c, "SELECT 1");
    msg(&mut out, b'C', &c);
    msg(&mut out, b'Z', b"I");
    out
}

fn msg(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

struct Replies {
    login: Vec<u8>,
    query: Vec<u8>,
}

/// After the login reply: answers every Query until Terminate or end of stream.
fn serve_blocking<S: Read + Write>(s: &mut S, r: &Replies) -> io::Result<()> {
    s.write_all(&r.login)?;
    s.flush()?;
    let mut body = Vec::new();
    loop {
        let mut head = [0u8; 5];
        if s.read_exact(&mut head).is_err() {
            return Ok(());
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=1 << 20).contains(&len) {
            return Ok(());
        }
        body.resize(len - 4, 0);
        s.read_exact(&mut body)?;
        match head[0] {
            b'Q' => {
                s.write_all(&r.query)?;
                s.flush()?;
            }
            _ => return Ok(()),
        }
    }
}

/// The floor: SSLRequest, `S`, OpenSSL's handshake, the StartupMessage read whole, then the
/// same replies as the others.
fn raw_connection(sock: TcpStream, tls: &ServerTls, r: &Replies) -> io::Result<()> {
    let mut sock = sock;
    let mut req = [0u8; 8];
    sock.read_exact(&mut req)?;
    if req != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
        return Ok(());
    }
    sock.write_all(b"S")?;
    let ssl = openssl::ssl::Ssl::new(tls.context()).map_err(io::Error::other)?;
    let mut s = ssl
        .accept(sock)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if !(8..=10_000).contains(&len) {
        return Ok(());
    }
    let mut startup = vec![0u8; len - 4];
    s.read_exact(&mut startup)?;
    serve_blocking(&mut s, r)?;
    let _ = s.shutdown();
    Ok(())
}

fn blocking_connection(sock: TcpStream, tls: &ServerTls, r: &Replies) -> io::Result<()> {
    match pgssl::io::blocking::accept(sock, ServerPolicy::new(), Some(tls))? {
        pgssl::io::blocking::Accepted::Startup { mut stream, .. } => {
            serve_blocking(&mut stream, r)?;
            let _ = stream.shutdown();
        }
        pgssl::io::blocking::Accepted::Cancel { mut stream, .. } => {
            let _ = stream.shutdown();
        }
        pgssl::io::blocking::Accepted::Refused(_) => {}
    }
    Ok(())
}

async fn tokio_connection(
    sock: tokio::net::TcpStream,
    tls: &ServerTls,
    r: &Replies,
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        match pgssl::io::tokio::accept(sock, ServerPolicy::new(), Some(tls), None).await? {
            pgssl::io::tokio::Accepted::Startup { stream, .. } => stream,
            pgssl::io::tokio::Accepted::Cancel { mut stream, .. } => {
                let _ = stream.shutdown().await;
                return Ok(());
            }
            pgssl::io::tokio::Accepted::Refused(_) => return Ok(()),
        };
    stream.write_all(&r.login).await?;
    stream.flush().await?;
    let mut body = Vec::new();
    loop {
        let mut head = [0u8; 5];
        if stream.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if !(4..=1 << 20).contains(&len) {
            break;
        }
        body.resize(len - 4, 0);
        stream.read_exact(&mut body).await?;
        match head[0] {
            b'Q' => {
                stream.write_all(&r.query).await?;
                stream.flush().await?;
            }
            _ => break,
        }
    }
    let _ = stream.shutdown().await;
    Ok(())
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_load raw|blocking|tokio|tokio-st --listen ADDR --cert FILE --key FILE [-c NAME=VALUE]... [--threads N]"
    );
    std::process::exit(2);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let mut listen = "127.0.0.1:5440".to_owned();
    let mut threads = 16usize;
    let mut config = ServerTlsConfig::new();
    config.ssl(true);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--listen" => listen = val(),
            "--cert" => {
                config.cert_file(val());
            }
            "--key" => {
                config.key_file(val());
            }
            "--threads" => threads = val().parse().unwrap_or_else(|_| usage()),
            "-c" => {
                let kv = val();
                let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
                config.set(k, v)?;
            }
            _ => usage(),
        }
    }
    let tls = Arc::new(config.build()?);
    let replies = Arc::new(Replies {
        login: login_reply(),
        query: query_reply(),
    });
    match mode.as_str() {
        "raw" => {
            let listener = Arc::new(TcpListener::bind(&listen)?);
            eprintln!("ready");
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (l, tls, r) = (listener.clone(), tls.clone(), replies.clone());
                    std::thread::spawn(move || {
                        loop {
                            if let Ok((sock, _)) = l.accept() {
                                let _ = raw_connection(sock, &tls, &r);
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.join();
            }
        }
        "blocking" => {
            let listener = TcpListener::bind(&listen)?;
            eprintln!("ready");
            loop {
                let Ok((sock, _)) = listener.accept() else {
                    continue;
                };
                let (tls, r) = (tls.clone(), replies.clone());
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let _ = blocking_connection(sock, &tls, &r);
                    })?;
            }
        }
        "tokio" | "tokio-st" => {
            let rt = if mode == "tokio" {
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            };
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen).await?;
                eprintln!("ready");
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let (tls, r) = (tls.clone(), replies.clone());
                    let fut = async move {
                        let _ = tokio_connection(sock, &tls, &r).await;
                    };
                    if std::env::var_os("BENCH_SIZES").is_some() {
                        eprintln!("connection future: {} bytes", std::mem::size_of_val(&fut));
                    }
                    tokio::spawn(fut);
                }
                #[allow(unreachable_code)]
                Ok::<(), io::Error>(())
            })?;
        }
        _ => usage(),
    }
    Ok(())
}
