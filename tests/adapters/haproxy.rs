//! The PROXY protocol with a real load balancer: HAProxy (Debian's `haproxy`) in TCP mode in
//! front of the example server, sending `send-proxy` (v1) or `send-proxy-v2` headers from its
//! own source address 127.0.0.5, with PostgreSQL health checks (`option pgsql-check`, sent
//! with `check-send-proxy`: a v2 check is a LOCAL header). And the proxy example sending the
//! header itself (`--send-proxy`).
//!
//! The pg_hba.conf of these tests rejects every user but `healthcheck` from the balancer's
//! address and trusts 127.0.0.1: a client gets through only if matching uses the address the
//! header carries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::example_proc::{Example, Running, free_port, psql, psycopg};

const HAPROXY: &str = "/usr/sbin/haproxy";
const BALANCER_IP: &str = "127.0.0.5";
const HBA: &str = "host all healthcheck 127.0.0.5/32 trust\n\
                   host all all 127.0.0.5/32 reject\n\
                   host all all 127.0.0.1/32 trust\n";

/// A running HAProxy, stopped when dropped.
struct Haproxy {
    proc: Running,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// HAProxy on a free port of 127.0.0.1, relaying to `backend_port` with `send_proxy`
    /// (`send-proxy` or `send-proxy-v2`) from 127.0.0.5, health-checking it as PostgreSQL.
    /// Ready once the backend is up (a health check went through).
    fn start(backend_port: u16, send_proxy: &str, server: &Example) -> Haproxy {
        assert!(
            Path::new(HAPROXY).exists(),
            "haproxy is missing: `apt-get install haproxy` (scripts/test.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let cfg = dir.path().join("haproxy.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "global\n    log stderr format raw local0 info\n\
                     defaults\n    mode tcp\n    log global\n    timeout connect 5s\n    \
                     timeout client 30s\n    timeout server 30s\n\
                     frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
                     backend be\n    option pgsql-check user healthcheck\n    \
                     server s1 127.0.0.1:{backend_port} source {BALANCER_IP} {send_proxy} \
                     check check-send-proxy inter 200ms\n"
                ),
            )
            .unwrap();
            let mark = server.mark();
            let mut cmd = Command::new(HAPROXY);
            cmd.arg("-f").arg(&cfg).arg("-db").stdin(Stdio::null());
            let mut proc =
                Running::spawn_logging_to(&mut cmd, "haproxy", &dir.path().join("haproxy.log"));
            std::thread::sleep(Duration::from_millis(300));
            if proc.exited().is_some() {
                assert!(
                    proc.stderr().contains("cannot bind"),
                    "haproxy exited: {}",
                    proc.stderr()
                );
                continue;
            }
            // A health check reached the server: the backend is up.
            server.wait_log(mark, "user=healthcheck database=healthcheck");
            return Haproxy {
                proc,
                port,
                _dir: dir,
            };
        }
        panic!("haproxy found no free port after 5 tries");
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        crate::support::example_proc::try_signal(self.proc.pid(), "TERM");
        let _ = self.proc.wait_timeout(Duration::from_secs(5));
    }
}

fn hba_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg_hba.conf");
    std::fs::write(&path, HBA).unwrap();
    (dir, path)
}

/// The example server trusting `networks` to send PROXY headers, with [`HBA`].
fn server(networks: &str) -> Example {
    let (dir, hba) = hba_file();
    Example::server(&[
        "--hba",
        hba.to_str().unwrap(),
        "--proxy-protocol-networks",
        networks,
    ])
    .keeping(dir)
}

/// The row's last two columns: the client's address as the server sees it, and the TCP peer's.
fn addresses(row: &str) -> (String, String) {
    let cols: Vec<&str> = row.trim().split('|').collect();
    assert_eq!(cols.len(), 11, "{row:?}");
    (cols[9].to_owned(), cols[10].to_owned())
}

fn ip_of(addr: &str) -> &str {
    addr.rsplit_once(':').expect("ip:port").0
}

/// The connection went through the balancer (peer 127.0.0.5), its client is 127.0.0.1, and
/// the server logged `connection received` with the client's address and port.
fn assert_proxied(server: &Example, mark: usize, row: &str) {
    let (client, peer) = addresses(row);
    assert_eq!(ip_of(&client), "127.0.0.1", "{row}");
    assert_eq!(ip_of(&peer), BALANCER_IP, "{row}");
    let (ip, port) = client.rsplit_once(':').unwrap();
    server.wait_log(
        mark,
        &format!("LOG:  connection received: host={ip} port={port}\n"),
    );
}

#[test]
fn haproxy_send_proxy_v1_and_v2_psql_require_and_verify_full() {
    for send_proxy in ["send-proxy", "send-proxy-v2"] {
        let server = server("127.0.0.5/32");
        let balancer = Haproxy::start(server.port, send_proxy, &server);
        let crt = server.cert().display().to_string();
        for conninfo in [
            format!(
                "host=127.0.0.1 port={} user=postgres sslmode=require",
                balancer.port
            ),
            format!(
                "host=localhost port={} user=postgres sslmode=verify-full sslrootcert={crt}",
                balancer.port
            ),
        ] {
            let mark = server.mark();
            let out = psql(&conninfo, "select 1");
            assert!(out.success(), "{send_proxy} {conninfo}: {}", out.stderr);
            assert!(out.stdout.starts_with("t|TLSv1.3|"), "{}", out.stdout);
            assert_proxied(&server, mark, &out.stdout);
        }
        // The health checks (v1: a header with the balancer's addresses; v2: LOCAL) matched
        // pg_hba.conf by the balancer's own address, and broke nothing.
        let log = server.log();
        assert!(
            log.contains("LOG:  connection received: host=127.0.0.5 port="),
            "{log}"
        );
        assert!(!log.contains("PROXY protocol"), "{send_proxy}: {log}");
    }
}

#[test]
fn haproxy_psycopg_direct_ssl() {
    let server = server("127.0.0.5");
    let balancer = Haproxy::start(server.port, "send-proxy-v2", &server);
    let crt = server.cert().display().to_string();
    let mark = server.mark();
    let out = psycopg(&format!(
        "host=localhost port={} user=postgres sslmode=verify-full sslrootcert={crt} sslnegotiation=direct",
        balancer.port
    ));
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stdout.starts_with("t|TLSv1.3|"), "{}", out.stdout);
    let log = server.wait_log(mark, "direct SSL connection accepted");
    assert!(log.contains("direct SSL connection accepted"), "{log}");
    assert_proxied(&server, mark, &out.stdout);
}

#[test]
fn a_forged_header_from_an_untrusted_peer_is_refused_without_reply() {
    let server = server("127.0.0.5/32");
    // 127.0.0.1 is not a trusted proxy: it cannot claim to be 127.0.0.5's client.
    for header in [
        &b"PROXY TCP4 10.9.8.7 127.0.0.1 4000 5432\r\n"[..],
        &b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x0a\x09\x08\x07\x7f\x00\x00\x01\x0f\xa0\x15\x38"
            [..],
    ] {
        let mark = server.mark();
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[header, &pgssl::wire::SSL_REQUEST[..]].concat())
            .unwrap();
        let mut reply = Vec::new();
        let start = Instant::now();
        let _ = s.read_to_end(&mut reply);
        assert!(start.elapsed() < Duration::from_secs(10), "not closed");
        assert_eq!(reply, b"", "no reply at all");
        let log = server.wait_log(mark, "which is not a trusted proxy");
        assert!(
            log.contains("PROXY protocol header from host=127.0.0.1 port="),
            "{log}"
        );
        assert!(!log.contains("10.9.8.7"), "{log}");
    }
    // Straight to the server without a header, the same client is served as itself.
    let out = psql(
        &format!(
            "host=127.0.0.1 port={} user=postgres sslmode=require",
            server.port
        ),
        "select 1",
    );
    assert!(out.success(), "{}", out.stderr);
    let (client, peer) = addresses(&out.stdout);
    assert_eq!(client, peer);
}

#[test]
fn proxy_example_send_proxy_in_front_of_the_server() {
    for version in ["v1", "v2"] {
        // The proxy's upstream connections come from 127.0.0.1, which the server trusts.
        let server = server("127.0.0.1/32");
        let upstream = format!("host=127.0.0.1 port={} sslmode=require", server.port);
        let proxy = Example::start(
            "proxy",
            &["--upstream", &upstream, "--send-proxy", version],
            "connect with:",
        );
        let (mark_p, mark_s) = (proxy.mark(), server.mark());
        let out = psql(
            &format!(
                "host=localhost port={} user=postgres sslmode=verify-full sslrootcert={}",
                proxy.port,
                proxy.cert().display()
            ),
            "select 1",
        );
        assert!(out.success(), "{version}: {}", out.stderr);
        let (client, peer) = addresses(&out.stdout);
        // The server sees psql's own address and port, which the proxy logged as its client.
        let (ip, port) = client.rsplit_once(':').unwrap();
        proxy.wait_log(
            mark_p,
            &format!("LOG:  connection received: host={ip} port={port}\n"),
        );
        server.wait_log(
            mark_s,
            &format!("LOG:  connection received: host={ip} port={port}\n"),
        );
        assert_ne!(
            client, peer,
            "{version}: the peer is the proxy's upstream socket"
        );
    }
}
