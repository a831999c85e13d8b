//! pgssl's client side against a scripted hostile server (tests/support/hostile.rs), with
//! psql 15 as the reference for what a client must do:
//!
//! 1. 'S' followed by more bytes in the same segment: "received unencrypted data after SSL
//!    response", no fallback (exactly one TCP connection, `prefer` included);
//! 2. ReadyForQuery as the first message after the startup: "expected authentication request
//!    from server, but received Z";
//! 3. (examples/connect) `channel_binding=require` and a server that skips the SCRAM exchange:
//!    AuthenticationOk right after SASLInitialResponse, or a SASLFinal with an empty `v=`;
//! 4. `connect_timeout=2` as a whole-connect deadline against a trickled handshake, an 'S'
//!    followed by silence and an unanswered SSLRequest: "timeout expired", no plaintext retry;
//! 5. a server certificate whose CN contains a NUL byte: accepted by `require` and `verify-ca`
//!    (names are only checked by verify-full), refused by `verify-full`;
//! 6. (examples/connect, examples/proxy) malformed authentication messages and a short DataRow:
//!    an error, never a panic; a DataRow length of -2 is NULL (examples/connect), as in libpq;
//! 7. (examples/proxy) an upstream that completes TLS and then stays silent: the client is
//!    closed at the proxy's authentication_timeout with an error naming the upstream;
//! 8. close_notify before the first message: "SSL connection has been closed unexpectedly";
//! 9. (examples/proxy) a client's malformed password message (length 0xFFFFFFFF) is not
//!    blamed on the upstream.
//!
//! Rows 1, 2, 4, 5 and 8 run against both adapters (`pgssl::io::blocking::connect` and
//! `pgssl::io::tokio::connect`, the latter with the `tokio` feature); the `psql_*` tests run
//! psql 15 against the same scripts, so that the expected texts are libpq's own. Every wait is
//! bounded; the assertions use only `Ok`/`Err`, the error's text and the harness's connection
//! count, so that they survive the adapters' redesign.

use crate::support::{example_proc, hostile};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use example_proc::{Example, Output, cert};
use hostile::{Message, Server, Step, Tls};
use pgssl::tls::ClientTlsConfig;

// ---------------------------------------------------------------------------------------------
// The two adapters, behind one signature (adapt these two functions when the API changes)

/// `pgssl::io::blocking::connect`: `Ok` once the server's first message is accepted.
fn blocking_connect(conninfo: &str) -> Result<(), String> {
    pgssl::io::blocking::connect(&config(conninfo))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `pgssl::io::tokio::connect` on a runtime of its own.
#[cfg(feature = "tokio")]
fn tokio_connect(conninfo: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(pgssl::io::tokio::connect(&config(conninfo)))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A client configuration from a conninfo, with no home directory (so no `~/.postgresql`
/// file applies).
fn config(conninfo: &str) -> ClientTlsConfig {
    let mut c = ClientTlsConfig::from_conninfo(conninfo)
        .unwrap_or_else(|e| panic!("conninfo {conninfo:?}: {e}"));
    c.home = None;
    c
}

type Connect = fn(&str) -> Result<(), String>;

/// How long one connect may take before the test gives up on it (a hung connect fails the
/// test instead of hanging it).
const CONNECT_BOUND: Duration = Duration::from_secs(25);

/// `connect` to `server` with `params` appended to its host, port and user, on a thread of
/// its own, bounded by [`CONNECT_BOUND`]; its result and how long it took.
fn connect_to(connect: Connect, server: &Server, params: &str) -> (Result<(), String>, Duration) {
    let conninfo = format!("host=127.0.0.1 port={} user=u {params}", server.port());
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(connect(&conninfo));
    });
    let result = rx.recv_timeout(CONNECT_BOUND).unwrap_or_else(|_| {
        Err(format!(
            "connect did not return within {CONNECT_BOUND:?} (still running)"
        ))
    });
    (result, start.elapsed())
}

/// Asserts that `result` is an error containing `needle`.
fn expect_err(result: &Result<(), String>, needle: &str, server: &Server, case: &str) {
    match result {
        Ok(()) => panic!(
            "{case}: connect succeeded, expected an error containing {needle:?}\nserver: {:?}",
            server.logs()
        ),
        Err(e) => assert!(
            e.contains(needle),
            "{case}: expected an error containing {needle:?}, got {e:?}\nserver: {:?}",
            server.logs()
        ),
    }
}

/// Generates `NAME::blocking` and `NAME::tokio`, each running `case` with its adapter.
macro_rules! both_adapters {
    ($name:ident, $case:ident) => {
        mod $name {
            #[test]
            fn blocking() {
                super::$case(super::blocking_connect)
            }
            #[cfg(feature = "tokio")]
            #[test]
            fn tokio() {
                super::$case(super::tokio_connect)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Protocol messages and scripts

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// An authentication request: `R`, the code, then `extra`.
fn auth(code: u32, extra: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(extra);
    message(b'R', &body)
}

/// ReadyForQuery, idle: `Z\0\0\0\x05I`.
fn ready() -> Vec<u8> {
    message(b'Z', b"I")
}

/// AuthenticationOk then ReadyForQuery.
fn auth_ok_ready() -> Vec<u8> {
    [auth(0, &[]), ready()].concat()
}

/// AuthenticationSASL offering SCRAM-SHA-256-PLUS and SCRAM-SHA-256.
fn sasl_plus() -> Vec<u8> {
    auth(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0")
}

/// AuthenticationSASL offering SCRAM-SHA-256 only.
fn sasl() -> Vec<u8> {
    auth(10, b"SCRAM-SHA-256\0\0")
}

/// RowDescription: one int4 column `?column?`.
fn row_description() -> Vec<u8> {
    let mut desc = 1u16.to_be_bytes().to_vec();
    desc.extend_from_slice(b"?column?\0");
    desc.extend_from_slice(&0u32.to_be_bytes()); // table
    desc.extend_from_slice(&0u16.to_be_bytes()); // column
    desc.extend_from_slice(&23u32.to_be_bytes()); // int4
    desc.extend_from_slice(&4u16.to_be_bytes());
    desc.extend_from_slice(&(-1i32).to_be_bytes());
    desc.extend_from_slice(&0u16.to_be_bytes());
    message(b'T', &desc)
}

/// The answer to `select 1`: one int4 column `?column?`, one row `1`.
fn select_one() -> Vec<u8> {
    let mut row = 1u16.to_be_bytes().to_vec();
    row.extend_from_slice(&1u32.to_be_bytes());
    row.push(b'1');
    [
        row_description(),
        message(b'D', &row),
        message(b'C', b"SELECT 1\0"),
        ready(),
    ]
    .concat()
}

/// The test PKI's `server-localhost` (with its intermediate) as the server's TLS.
fn localhost_tls() -> Tls {
    Tls::new(
        cert("server-localhost+server_ca.crt"),
        cert("server-localhost.key"),
    )
}

/// Read the SSLRequest, say 'S', complete TLS.
fn tls_prefix(tls: Tls) -> Vec<Step> {
    vec![
        Step::ReadSslRequest,
        Step::Write(b"S".to_vec()),
        Step::StartTls(tls),
    ]
}

/// How long a script waits at its end for the client to close.
const LINGER: Duration = Duration::from_secs(10);

/// `steps` after [`tls_prefix`] with `server-localhost`.
fn over_tls(steps: Vec<Step>) -> Vec<Step> {
    let mut s = tls_prefix(localhost_tls());
    s.extend(steps);
    s
}

// ---------------------------------------------------------------------------------------------
// Row 1: 'S' and more bytes in the same segment

/// 'S' followed, in the same write, by a forged AuthenticationOk and ReadyForQuery (the
/// CVE-2021-23222 injection), then a real TLS handshake: libpq 15 makes its check once the
/// handshake has completed (the injected bytes wait in its buffer, OpenSSL reads the socket),
/// so without the handshake psql would report the stalled handshake instead.
fn s_with_trailing_bytes() -> Server {
    let mut reply = b"S".to_vec();
    reply.extend(auth_ok_ready());
    Server::start(vec![
        Step::ReadSslRequest,
        Step::Write(reply),
        Step::StartTls(localhost_tls()),
        Step::Stall(LINGER),
    ])
}

const UNENCRYPTED_AFTER_S: &str = "received unencrypted data after SSL response";

fn s_with_trailing_bytes_is_refused(connect: Connect, mode: &str) {
    let server = s_with_trailing_bytes();
    let (r, _) = connect_to(connect, &server, &format!("sslmode={mode}"));
    assert_eq!(
        server.connections(),
        1,
        "sslmode={mode}: no fallback, exactly one TCP connection ({r:?}): {:?}",
        server.logs()
    );
    expect_err(&r, UNENCRYPTED_AFTER_S, &server, mode);
}

fn s_with_trailing_bytes_prefer(connect: Connect) {
    s_with_trailing_bytes_is_refused(connect, "prefer");
}
both_adapters!(
    row1_s_with_trailing_bytes_prefer,
    s_with_trailing_bytes_prefer
);

fn s_with_trailing_bytes_require(connect: Connect) {
    s_with_trailing_bytes_is_refused(connect, "require");
}
both_adapters!(
    row1_s_with_trailing_bytes_require,
    s_with_trailing_bytes_require
);

// ---------------------------------------------------------------------------------------------
// Row 2: ReadyForQuery instead of an authentication request

const NOT_AUTH: &str = "expected authentication request from server, but received Z";

fn ready_first_over_tls() -> Server {
    Server::start(over_tls(vec![
        Step::ReadStartup,
        Step::Write(ready()),
        Step::Stall(LINGER),
    ]))
}

fn ready_first_in_plaintext() -> Server {
    Server::start(vec![
        Step::ReadStartup,
        Step::Write(ready()),
        Step::Stall(LINGER),
    ])
}

fn ready_for_query_first_over_tls(connect: Connect) {
    let server = ready_first_over_tls();
    let (r, _) = connect_to(connect, &server, "sslmode=require");
    expect_err(&r, NOT_AUTH, &server, "sslmode=require");
}
both_adapters!(
    row2_ready_for_query_first_tls,
    ready_for_query_first_over_tls
);

fn ready_for_query_first_in_plaintext(connect: Connect) {
    let server = ready_first_in_plaintext();
    let (r, _) = connect_to(connect, &server, "sslmode=disable");
    expect_err(&r, NOT_AUTH, &server, "sslmode=disable");
}
both_adapters!(
    row2_ready_for_query_first_plain,
    ready_for_query_first_in_plaintext
);

// ---------------------------------------------------------------------------------------------
// Row 4: connect_timeout=2 bounds the whole connect

const TIMEOUT: &str = "timeout expired";
/// connect_timeout=2 plus generous slack: a deadline, not a performance figure (the trickled
/// handshake would take minutes, the stalls last 30 s).
const TIMEOUT_BOUND: Duration = Duration::from_secs(5);
const STALL: Duration = Duration::from_secs(30);

fn trickled_handshake() -> Server {
    Server::start(vec![
        Step::ReadSslRequest,
        Step::Write(b"S".to_vec()),
        Step::StartTls(localhost_tls().trickled(Duration::from_secs(1))),
        Step::Stall(STALL),
    ])
}

fn silent_after_s() -> Server {
    Server::start(vec![
        Step::ReadSslRequest,
        Step::Write(b"S".to_vec()),
        Step::Stall(STALL),
    ])
}

fn ssl_request_unanswered() -> Server {
    Server::start(vec![Step::ReadSslRequest, Step::Stall(STALL)])
}

/// Each wait under 2 s, their sum over it: 1.8 s before the 'S', 1.8 s between the startup
/// packet and the first message (an authentication request). A per-step timeout never fires.
fn slow_at_every_step() -> Server {
    let pause = Duration::from_millis(1800);
    Server::start(vec![
        Step::ReadSslRequest,
        Step::Stall(pause),
        Step::Write(b"S".to_vec()),
        Step::StartTls(localhost_tls()),
        Step::ReadStartup,
        Step::Stall(pause),
        Step::Write(auth(3, &[])),
        Step::Stall(LINGER),
    ])
}

/// `connect_timeout=2` against `server` under `mode`: "timeout expired" within
/// [`TIMEOUT_BOUND`], over exactly one TCP connection.
fn times_out(connect: Connect, server: &Server, mode: &str) {
    let (r, took) = connect_to(
        connect,
        server,
        &format!("sslmode={mode} connect_timeout=2"),
    );
    expect_err(&r, TIMEOUT, server, mode);
    assert!(
        took < TIMEOUT_BOUND,
        "sslmode={mode}: connect_timeout=2 expired after {took:?}"
    );
    assert_eq!(
        server.connections(),
        1,
        "sslmode={mode}: no retry after the timeout: {:?}",
        server.logs()
    );
}

fn trickled_handshake_times_out(connect: Connect) {
    times_out(connect, &trickled_handshake(), "require");
}
both_adapters!(row4_trickled_handshake, trickled_handshake_times_out);

fn silence_after_s_times_out(connect: Connect) {
    times_out(connect, &silent_after_s(), "prefer");
}
both_adapters!(row4_silence_after_s, silence_after_s_times_out);

fn unanswered_ssl_request_times_out(connect: Connect) {
    times_out(connect, &ssl_request_unanswered(), "prefer");
}
both_adapters!(
    row4_unanswered_ssl_request,
    unanswered_ssl_request_times_out
);

fn slow_steps_time_out(connect: Connect) {
    times_out(connect, &slow_at_every_step(), "require");
}
both_adapters!(row4_slow_at_every_step, slow_steps_time_out);

// ---------------------------------------------------------------------------------------------
// Row 5: a NUL byte in the server certificate's CN

/// The CN: `127.0.0.1`, a NUL, then another name.
const NUL_CN: &str = "127.0.0.1\0.evil.example";
const EMBEDDED_NULL: &str = "SSL certificate's name contains embedded null";

/// Files of a CA and of a server certificate it signed whose CN is [`NUL_CN`].
struct NulPki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    tls: Tls,
}

fn ec_key() -> openssl::pkey::PKey<openssl::pkey::Private> {
    use openssl::ec::{EcGroup, EcKey};
    let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    openssl::pkey::PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut b = openssl::x509::X509NameBuilder::new().unwrap();
    b.append_entry_by_nid(openssl::nid::Nid::ORGANIZATIONNAME, "pgssl hostile tests")
        .unwrap();
    b.append_entry_by_nid(openssl::nid::Nid::COMMONNAME, cn)
        .unwrap();
    b.build()
}

/// A certificate for `subject`'s `key`, signed by `issuer` (itself when `None`).
fn certificate(
    subject: &openssl::x509::X509NameRef,
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    issuer: Option<(
        &openssl::x509::X509Ref,
        &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    )>,
    serial: u32,
) -> openssl::x509::X509 {
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
    let mut b = openssl::x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(subject).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    match issuer {
        None => {
            b.set_issuer_name(subject).unwrap();
            let ca = BasicConstraints::new().critical().ca().build().unwrap();
            b.append_extension(ca).unwrap();
            let usage = KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build();
            b.append_extension(usage.unwrap()).unwrap();
            b.sign(key, openssl::hash::MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            let leaf = BasicConstraints::new().critical().build().unwrap();
            b.append_extension(leaf).unwrap();
            let usage = KeyUsage::new().critical().digital_signature().build();
            b.append_extension(usage.unwrap()).unwrap();
            let eku = ExtendedKeyUsage::new().server_auth().build().unwrap();
            b.append_extension(eku).unwrap();
            b.sign(ca_key, openssl::hash::MessageDigest::sha256())
                .unwrap();
        }
    }
    b.build()
}

fn nul_pki() -> NulPki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = ec_key();
    let ca = certificate(&name("pgssl hostile test CA"), &ca_key, None, 1);
    let key = ec_key();
    let leaf = certificate(&name(NUL_CN), &key, Some((&ca, &ca_key)), 2);
    assert!(
        leaf.subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .any(|e| e.data().as_slice().contains(&0)),
        "the CN keeps its NUL byte"
    );
    let write = |file: &str, pem: Vec<u8>| -> PathBuf {
        let p = dir.path().join(file);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let ca_file = write("ca.crt", ca.to_pem().unwrap());
    let crt = write("server.crt", leaf.to_pem().unwrap());
    let key_file = write("server.key", key.private_key_to_pem_pkcs8().unwrap());
    NulPki {
        ca: ca_file,
        tls: Tls::new(crt, key_file),
        _dir: dir,
    }
}

/// TLS with the NUL-CN certificate, then AuthenticationOk, ReadyForQuery and the answer to one
/// query.
fn nul_cn_server(pki: &NulPki) -> Server {
    let mut script = tls_prefix(pki.tls.clone());
    script.extend([
        Step::ReadStartup,
        Step::Write(auth_ok_ready()),
        Step::reply(|_| select_one()),
        Step::Stall(LINGER),
    ]);
    Server::start(script)
}

/// `sslmode=MODE sslrootcert=CA` (no root certificate for `require`) against the NUL-CN
/// server: the connect's result.
fn connect_nul_cn(connect: Connect, mode: &str) -> (Result<(), String>, Server) {
    let pki = nul_pki();
    let params = match mode {
        "require" => "sslmode=require".to_owned(),
        _ => format!("sslmode={mode} sslrootcert={}", pki.ca.display()),
    };
    let server = nul_cn_server(&pki);
    let (r, _) = connect_to(connect, &server, &params);
    (r, server)
}

fn nul_in_common_name_require(connect: Connect) {
    let (r, _) = connect_nul_cn(connect, "require");
    assert!(r.is_ok(), "require does not check names, got {r:?}");
}
both_adapters!(row5_nul_in_common_name_require, nul_in_common_name_require);

fn nul_in_common_name_verify_ca(connect: Connect) {
    let (r, _) = connect_nul_cn(connect, "verify-ca");
    assert!(r.is_ok(), "verify-ca does not check names, got {r:?}");
}
both_adapters!(
    row5_nul_in_common_name_verify_ca,
    nul_in_common_name_verify_ca
);

fn nul_in_common_name_verify_full(connect: Connect) {
    let (r, server) = connect_nul_cn(connect, "verify-full");
    expect_err(&r, EMBEDDED_NULL, &server, "verify-full");
}
both_adapters!(
    row5_nul_in_common_name_verify_full,
    nul_in_common_name_verify_full
);

// ---------------------------------------------------------------------------------------------
// Row 8: close_notify before the first message

const CLOSED_UNEXPECTEDLY: &str = "SSL connection has been closed unexpectedly";

fn close_notify_first() -> Server {
    Server::start(over_tls(vec![
        Step::ReadStartup,
        Step::CloseTls,
        Step::Stall(LINGER),
    ]))
}

fn close_notify_before_first_message(connect: Connect) {
    let server = close_notify_first();
    let (r, _) = connect_to(connect, &server, "sslmode=require");
    expect_err(&r, CLOSED_UNEXPECTEDLY, &server, "sslmode=require");
}
both_adapters!(row8_close_notify_first, close_notify_before_first_message);

// ---------------------------------------------------------------------------------------------
// psql 15 against the same scripts: the expected texts are libpq's

/// `psql` against `server` with `params`, running `select 1`.
fn psql_to(server: &Server, params: &str) -> (Output, Duration) {
    let conninfo = format!(
        "host=127.0.0.1 port={} user=u dbname=d gssencmode=disable {params}",
        server.port()
    );
    let start = Instant::now();
    let out = example_proc::psql(&conninfo, "select 1");
    (out, start.elapsed())
}

fn psql_fails(server: &Server, params: &str, needle: &str) -> Duration {
    let (out, took) = psql_to(server, params);
    // Shown with --nocapture: libpq's own words, for comparison.
    eprintln!("psql {params} ({took:?}): {}", out.stderr.trim());
    assert!(
        !out.success() && out.stderr.contains(needle),
        "psql {params}: expected {needle:?}: {out}\nserver: {:?}",
        server.logs()
    );
    took
}

#[test]
fn psql_row1_s_with_trailing_bytes() {
    for mode in ["prefer", "require"] {
        let server = s_with_trailing_bytes();
        psql_fails(&server, &format!("sslmode={mode}"), UNENCRYPTED_AFTER_S);
        assert_eq!(server.connections(), 1, "psql sslmode={mode}");
    }
}

#[test]
fn psql_row2_ready_for_query_first() {
    psql_fails(&ready_first_over_tls(), "sslmode=require", NOT_AUTH);
    psql_fails(&ready_first_in_plaintext(), "sslmode=disable", NOT_AUTH);
}

#[test]
fn psql_row4_connect_timeout() {
    for (server, mode) in [
        (trickled_handshake(), "require"),
        (silent_after_s(), "prefer"),
        (ssl_request_unanswered(), "prefer"),
        (slow_at_every_step(), "require"),
    ] {
        let took = psql_fails(
            &server,
            &format!("sslmode={mode} connect_timeout=2"),
            TIMEOUT,
        );
        assert!(took < TIMEOUT_BOUND, "psql sslmode={mode}: {took:?}");
        assert_eq!(server.connections(), 1, "psql sslmode={mode}");
    }
}

#[test]
fn psql_row5_nul_in_common_name() {
    let pki = nul_pki();
    let ca = pki.ca.display();
    for params in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-ca sslrootcert={ca}"),
    ] {
        let (out, _) = psql_to(&nul_cn_server(&pki), &params);
        assert!(
            out.success() && out.stdout.trim() == "1",
            "psql {params}: {out}"
        );
    }
    let params = format!("sslmode=verify-full sslrootcert={ca}");
    psql_fails(&nul_cn_server(&pki), &params, EMBEDDED_NULL);
}

#[test]
fn psql_row8_close_notify_first() {
    psql_fails(
        &close_notify_first(),
        "sslmode=require",
        CLOSED_UNEXPECTEDLY,
    );
}

// ---------------------------------------------------------------------------------------------
// Row 3: channel_binding=require against a server that skips the SCRAM exchange
// (examples/connect; psql as the reference)

const CB_PARAMS: &str = "password=pw sslmode=require channel_binding=require";
const CB_WITHOUT_BINDING: &str =
    "channel binding required, but server authenticated client without channel binding";
const MALFORMED_SCRAM: &str = "malformed SCRAM message";

/// SCRAM-SHA-256-PLUS offered, then AuthenticationOk right after the SASLInitialResponse.
fn ok_after_initial_response() -> Server {
    Server::start(over_tls(vec![
        Step::ReadStartup,
        Step::Write(sasl_plus()),
        Step::ReadMessage,
        Step::Write(auth_ok_ready()),
        Step::Stall(LINGER),
    ]))
}

/// SCRAM-SHA-256-PLUS offered, then a SASLFinal with an empty `v=` right after the
/// SASLInitialResponse, AuthenticationOk and ReadyForQuery.
fn empty_server_final() -> Server {
    Server::start(over_tls(vec![
        Step::ReadStartup,
        Step::Write(sasl_plus()),
        Step::ReadMessage,
        Step::Write([auth(12, b"v="), auth_ok_ready()].concat()),
        Step::Stall(LINGER),
    ]))
}

/// The connect example against `server` with `params` (and `--query` when given).
fn connect_example(server: &Server, params: &str, query: Option<&str>) -> Output {
    let conninfo = format!("host=127.0.0.1 port={} user=u {params}", server.port());
    example_proc::connect(&conninfo, query)
}

/// Exit status 1, no panic, and `needle` (if any) in stderr.
fn expect_clean_failure(out: &Output, needle: Option<&str>, server: &Server, case: &str) {
    assert!(
        !out.stderr.contains("panicked at"),
        "{case}: the connect example panicked: {out}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{case}: expected exit status 1: {out}\nserver: {:?}",
        server.logs()
    );
    if let Some(n) = needle {
        assert!(out.stderr.contains(n), "{case}: expected {n:?}: {out}");
    }
}

#[test]
fn row3_channel_binding_ok_after_initial_response() {
    let server = ok_after_initial_response();
    let out = connect_example(&server, CB_PARAMS, None);
    expect_clean_failure(&out, Some(CB_WITHOUT_BINDING), &server, "AuthenticationOk");
    assert_not_connected(&out, "AuthenticationOk");
}

#[test]
fn row3_channel_binding_empty_server_final() {
    let server = empty_server_final();
    let out = connect_example(&server, CB_PARAMS, None);
    expect_clean_failure(&out, Some(MALFORMED_SCRAM), &server, "empty v=");
    assert_not_connected(&out, "empty v=");
}

#[test]
fn psql_row3_channel_binding() {
    psql_fails(&ok_after_initial_response(), CB_PARAMS, CB_WITHOUT_BINDING);
    psql_fails(&empty_server_final(), CB_PARAMS, MALFORMED_SCRAM);
}

// ---------------------------------------------------------------------------------------------
// Row 6: malformed authentication messages and a short DataRow (examples/connect)

/// After a plaintext startup: `steps`.
fn plain(steps: Vec<Step>) -> Server {
    let mut s = vec![Step::ReadStartup];
    s.extend(steps);
    s.push(Step::Stall(LINGER));
    Server::start(s)
}

const PLAIN: &str = "password=pw sslmode=disable";

/// The connect example against `server` must fail cleanly (no panic, exit status 1).
/// Without a query, it must not have connected either (with one, the query is what fails).
fn connect_fails_cleanly(server: Server, query: Option<&str>, case: &str) {
    let out = connect_example(&server, PLAIN, query);
    expect_clean_failure(&out, None, &server, case);
    if query.is_none() {
        assert_not_connected(&out, case);
    }
}

/// The connect example did not print its `ssl=…` line.
fn assert_not_connected(out: &Output, case: &str) {
    assert!(!out.stdout.contains("ssl="), "{case}: it connected: {out}");
}

/// A SCRAM server-first message continuing the client's nonce, with `iterations`.
fn server_first(client_first: &Message, iterations: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(&client_first.body);
    let nonce = text
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .unwrap_or("")
        .trim_end_matches('\0');
    auth(
        11,
        format!("r={nonce}srv,s=c2FsdHNhbHQ=,i={iterations}").as_bytes(),
    )
}

/// An 'R' with an empty body (length 4).
fn empty_authentication_request() -> Server {
    plain(vec![Step::Write(message(b'R', &[]))])
}

/// An MD5 password request without its salt.
fn md5_without_salt() -> Server {
    plain(vec![Step::Write(auth(5, &[]))])
}

/// A SCRAM server-first message whose first attribute is not ASCII.
fn scram_non_ascii_attribute() -> Server {
    plain(vec![
        Step::Write(sasl()),
        Step::ReadMessage,
        Step::Write(auth(11, "\u{20ac}=x,r=abc,s=c2FsdA==,i=4096".as_bytes())),
    ])
}

/// A SCRAM server-first message with this iteration count.
fn scram_iterations(iterations: &'static str) -> Server {
    plain(vec![
        Step::Write(sasl()),
        Step::reply(move |m| server_first(m, iterations)),
    ])
}

/// Trust, then a DataRow of one byte in answer to the query.
fn short_data_row() -> Server {
    let answer = [
        row_description(),
        message(b'D', &[0]),
        message(b'C', b"SELECT 1\0"),
        ready(),
    ]
    .concat();
    plain(vec![
        Step::Write(auth_ok_ready()),
        Step::reply(move |_| answer.clone()),
    ])
}

#[test]
fn row6_connect_empty_authentication_request() {
    connect_fails_cleanly(empty_authentication_request(), None, "'R' with length 4");
}

#[test]
fn row6_connect_md5_without_salt() {
    connect_fails_cleanly(md5_without_salt(), None, "MD5 request without salt");
}

#[test]
fn row6_connect_scram_non_ascii_attribute() {
    let case = "server-first with a non-ASCII first attribute";
    connect_fails_cleanly(scram_non_ascii_attribute(), None, case);
}

#[test]
fn row6_connect_scram_iterations_past_u32() {
    let case = "iteration count 4294967296";
    connect_fails_cleanly(scram_iterations("4294967296"), None, case);
}

#[test]
fn row6_connect_scram_zero_iterations() {
    connect_fails_cleanly(scram_iterations("0"), None, "iteration count 0");
}

#[test]
fn row6_connect_short_data_row() {
    let case = "a DataRow of one byte";
    connect_fails_cleanly(short_data_row(), Some("select 1"), case);
}

/// Trust, then three text columns in answer to the query: `1`, a value whose length is -2 and
/// `x`. libpq reads any negative length as NULL (fe-protocol3.c, getAnotherTuple).
fn data_row_with_length_minus_two() -> Server {
    let mut desc = 3u16.to_be_bytes().to_vec();
    for name in ["a", "b", "c"] {
        desc.extend_from_slice(name.as_bytes());
        desc.push(0);
        desc.extend_from_slice(&0u32.to_be_bytes()); // table
        desc.extend_from_slice(&0u16.to_be_bytes()); // column
        desc.extend_from_slice(&25u32.to_be_bytes()); // text
        desc.extend_from_slice(&(-1i16).to_be_bytes());
        desc.extend_from_slice(&(-1i32).to_be_bytes());
        desc.extend_from_slice(&0u16.to_be_bytes());
    }
    let mut row = 3u16.to_be_bytes().to_vec();
    row.extend_from_slice(&1i32.to_be_bytes());
    row.push(b'1');
    row.extend_from_slice(&(-2i32).to_be_bytes());
    row.extend_from_slice(&1i32.to_be_bytes());
    row.push(b'x');
    let answer = [
        message(b'T', &desc),
        message(b'D', &row),
        message(b'C', b"SELECT 1\0"),
        ready(),
    ]
    .concat();
    plain(vec![
        Step::Write(auth_ok_ready()),
        Step::reply(move |_| answer.clone()),
    ])
}

/// A DataRow value with a negative length other than -1 is NULL for the connect example, as
/// for psql (both print NULL as an empty field: `1||x`).
#[test]
fn row6_negative_data_row_length_is_null_as_in_libpq() {
    let server = data_row_with_length_minus_two();
    let out = connect_example(&server, PLAIN, Some("select 1"));
    assert!(out.success(), "connect example: {out}");
    assert_eq!(out.stdout, "ssl=off\n1||x\n", "connect example: {out}");
    let server = data_row_with_length_minus_two();
    let (out, _) = psql_to(&server, PLAIN);
    assert!(out.success(), "psql: {out}");
    assert_eq!(out.stdout, "1||x\n", "psql: {out}");
}

/// psql fails on each of them with an error (libpq's words are printed with --nocapture).
#[test]
fn psql_row6_malformed_messages() {
    for (server, needle) in [
        (
            empty_authentication_request(),
            "expected authentication request",
        ),
        (md5_without_salt(), ""),
        (scram_non_ascii_attribute(), "malformed SCRAM message"),
        (scram_iterations("4294967296"), "malformed SCRAM message"),
        (scram_iterations("0"), "malformed SCRAM message"),
        (short_data_row(), ""),
    ] {
        psql_fails(&server, PLAIN, needle);
    }
}

// ---------------------------------------------------------------------------------------------
// Rows 6, 7 and 9 through examples/proxy (a raw client in front)

/// The proxy example in front of `upstream` (`params` appended to its conninfo), plaintext on
/// the client side, with `authentication_timeout` in seconds.
fn proxy(upstream: &Server, params: &str, authentication_timeout: u32) -> Example {
    let conninfo = format!("host=127.0.0.1 port={} {params}", upstream.port());
    let timeout = format!("authentication_timeout={authentication_timeout}");
    Example::start(
        "proxy",
        &["--upstream", &conninfo, "-c", "ssl=off", "-c", &timeout],
        "listening on",
    )
}

/// A plaintext client of the proxy that has sent its StartupMessage (user u, database d).
fn front(proxy: &Example) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect to the proxy");
    let mut body = 196_608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0u\0database\0d\0\0");
    let mut packet = (body.len() as u32 + 4).to_be_bytes().to_vec();
    packet.extend(body);
    s.write_all(&packet).expect("send the StartupMessage");
    s
}

/// How the proxy's side of a front connection ended.
#[derive(Debug, PartialEq)]
enum Ending {
    Closed,
    TimedOut,
    Error(String),
}

/// Reads what the proxy sends until it closes, or `limit` passes: the messages, how it
/// ended, and when.
fn read_to_end(s: &mut TcpStream, limit: Duration) -> (Vec<Message>, Ending, Duration) {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let ending = loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            break Ending::TimedOut;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break Ending::Closed,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Ending::Closed,
            Err(e) => break Ending::Error(e.to_string()),
        }
    };
    (split_messages(&bytes), ending, start.elapsed())
}

/// Reads one message from the proxy within `limit`.
fn read_one(s: &mut TcpStream, limit: Duration) -> Message {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("a message from the proxy");
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body).expect("the message's body");
    Message { tag: head[0], body }
}

fn split_messages(mut b: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while b.len() >= 5 {
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        if len < 4 || b.len() < 1 + len {
            break;
        }
        out.push(Message {
            tag: b[0],
            body: b[5..1 + len].to_vec(),
        });
        b = &b[1 + len..];
    }
    out
}

/// The `M` fields of the ErrorResponses among `messages`.
fn error_texts(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.tag == b'E')
        .filter_map(|m| {
            m.body
                .split(|&b| b == 0)
                .find_map(|f| f.strip_prefix(b"M"))
                .map(|t| String::from_utf8_lossy(t).into_owned())
        })
        .collect()
}

#[test]
fn row6_proxy_empty_authentication_request() {
    let upstream = plain(vec![Step::Write(message(b'R', &[]))]);
    let proxy = proxy(&upstream, "sslmode=disable", 10);
    let mark = proxy.mark();
    let mut client = front(&proxy);
    let (messages, ending, _) = read_to_end(&mut client, Duration::from_secs(15));
    // Give a panic message time to reach the log.
    thread::sleep(Duration::from_millis(300));
    let log = proxy.log()[mark..].to_owned();
    assert!(
        !log.contains("panicked at"),
        "the proxy's connection thread panicked:\n{log}"
    );
    assert_eq!(ending, Ending::Closed, "{messages:?}\n{log}");
    assert!(
        !error_texts(&messages).is_empty(),
        "the client was closed without an ErrorResponse: {messages:?}\n{log}"
    );
}

#[test]
fn row7_proxy_silent_upstream_meets_authentication_timeout() {
    let upstream = Server::start(over_tls(vec![
        Step::ReadStartup,
        Step::Stall(Duration::from_secs(40)),
    ]));
    let proxy = proxy(&upstream, "sslmode=require", 2);
    let mut client = front(&proxy);
    let (messages, ending, took) = read_to_end(&mut client, Duration::from_secs(15));
    let errors = error_texts(&messages);
    assert!(
        ending == Ending::Closed && took < Duration::from_secs(8),
        "the proxy did not close the client at authentication_timeout=2 ({ending:?} after {took:?}): {messages:?}\n{}",
        proxy.log()
    );
    assert!(
        errors.iter().any(|e| e.contains("upstream")),
        "the error does not name the upstream: {errors:?}\n{}",
        proxy.log()
    );
    upstream
        .wait_log(0, "peer closed", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("the proxy kept the upstream connection: {e}"));
}

#[test]
fn row9_proxy_blames_the_client_for_its_malformed_message() {
    let upstream = Server::start(over_tls(vec![
        Step::ReadStartup,
        Step::Write(auth(3, &[])),
        Step::Stall(Duration::from_secs(20)),
    ]));
    let proxy = proxy(&upstream, "sslmode=require", 10);
    let mut client = front(&proxy);
    let request = read_one(&mut client, Duration::from_secs(10));
    assert_eq!(
        request.tag, b'R',
        "the relayed password request: {request:?}"
    );
    client
        .write_all(b"p\xff\xff\xff\xff")
        .expect("send the malformed password message");
    let (messages, ending, _) = read_to_end(&mut client, Duration::from_secs(15));
    let errors = error_texts(&messages);
    let log = proxy.log();
    assert_eq!(ending, Ending::Closed, "{messages:?}\n{log}");
    assert!(
        errors.iter().all(|e| !e.contains("upstream")),
        "the client's malformed message is blamed on the upstream: {errors:?}\n{log}"
    );
    assert!(
        !log.contains("could not connect to the upstream server"),
        "the proxy logs the client's malformed message as an upstream failure:\n{log}"
    );
}
