//! A libpq-compatible client built on pgssl.
//!
//! ```text
//! cargo run --example connect -- 'CONNINFO' [--query SQL]
//! ```
//!
//! CONNINFO is a libpq `key=value` string or a `postgresql://` URI; the PG* environment and the
//! `~/.postgresql` defaults apply as in libpq. It runs libpq's attempt plan, the startup and
//! authentication (trust, cleartext, md5, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS with
//! `channel_binding`), then prints `ssl=on protocol=… cipher=… bits=… alpn=…` or `ssl=off`, and
//! with `--query` the first row of the result. On failure it prints libpq's message and exits 1.

#[path = "support/pgwire.rs"]
mod pgwire;
#[path = "support/scram.rs"]
mod scram;

use std::io::{Read, Write};

use bytes::BytesMut;
use openssl::hash::{MessageDigest, hash};
use pgssl::io::blocking::{Connected, connect_with};
use pgssl::io::{AuthFailure, ConnectError};
use pgssl::tls::{ChannelBinding, ClientTlsConfig, peer_end_point};
use pgwire::{Message, Reader};
use scram::{Binding, ScramClient};

/// libpq's bound on messages during the startup (`30000`, as for anything but rows).
const MAX_STARTUP_MESSAGE: usize = 30_000;
/// libpq refuses an authentication request outside 8 ..= 2000 bytes (its length word).
const AUTH_REQUEST_LEN: std::ops::RangeInclusive<usize> = 8..=2000;

/// AuthenticationRequest codes (the `R` message's Int32).
mod areq {
    pub const OK: u32 = 0;
    pub const KRB4: u32 = 1;
    pub const KRB5: u32 = 2;
    pub const PASSWORD: u32 = 3;
    pub const CRYPT: u32 = 4;
    pub const MD5: u32 = 5;
    pub const GSS: u32 = 7;
    pub const GSS_CONT: u32 = 8;
    pub const SSPI: u32 = 9;
    pub const SASL: u32 = 10;
    pub const SASL_CONT: u32 = 11;
    pub const SASL_FIN: u32 = 12;
}

fn fail(msg: impl Into<String>) -> AuthFailure {
    AuthFailure::Abort(ConnectError::Io(std::io::Error::other(msg.into())))
}

/// A read error in libpq's words: a bad length word is lost synchronization.
fn read_failure(e: std::io::Error) -> AuthFailure {
    match pgwire::bad_length(&e) {
        Some(bad) => fail(bad.libpq_text()),
        None => e.into(),
    }
}

/// The next message: the connection's first (already read by the plan), then the stream's.
fn next_message(c: &mut Connected, first: &mut Option<Vec<u8>>) -> Result<Message, AuthFailure> {
    let m = match first.take() {
        Some(raw) => pgwire::read_message(&mut raw.as_slice(), MAX_STARTUP_MESSAGE),
        None => pgwire::read_message(&mut c.stream, MAX_STARTUP_MESSAGE),
    };
    m.map_err(read_failure)?
        .ok_or_else(|| fail("server closed the connection unexpectedly"))
}

/// Where the authentication is (libpq's `sasl_state`, `client_finished_auth`).
struct Auth<'a> {
    config: &'a ClientTlsConfig,
    /// The mechanism name for the caller ("trust" when the server asked for nothing).
    used: &'static str,
    scram: Option<ScramClient>,
    /// The client sent its last authentication message (password) or verified the server
    /// (SCRAM).
    finished: bool,
}

impl Auth<'_> {
    /// libpq's `check_expected_areq` for channel_binding=require, and the rule that a SCRAM
    /// exchange once begun must complete before AuthenticationOk.
    fn check_expected(&self, code: u32) -> Result<(), AuthFailure> {
        let require = self.config.channel_binding == ChannelBinding::Require;
        match code {
            areq::SASL | areq::SASL_CONT | areq::SASL_FIN => Ok(()),
            areq::OK if require && !self.scram.as_ref().is_some_and(ScramClient::channel_bound) => {
                Err(fail(
                    "channel binding required, but server authenticated client without channel binding",
                ))
            }
            areq::OK if self.scram.is_some() && !self.finished => {
                Err(fail("server did not complete authentication"))
            }
            areq::OK => Ok(()),
            _ if require => Err(fail(
                "channel binding required but not supported by server's authentication request",
            )),
            _ => Ok(()),
        }
    }

    fn password(&self) -> Result<&str, AuthFailure> {
        match self.config.password.as_deref() {
            Some(p) if !p.is_empty() => Ok(p),
            _ => Err(fail("fe_sendauth: no password supplied")),
        }
    }

    /// AuthenticationCleartextPassword or AuthenticationMD5Password (with its salt).
    fn password_message(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, AuthFailure> {
        let pw = self.password()?.to_owned();
        let sent = if code == areq::PASSWORD {
            self.used = "password";
            pw.clone()
        } else {
            // libpq reads the 4-byte salt; without it, its password step fails.
            let salt = Reader::new(data)
                .bytes(4)
                .ok_or_else(|| fail("fe_sendauth: error sending password authentication"))?;
            self.used = "md5";
            let user = self.config.user.clone().unwrap_or_default();
            md5_password(&pw, &user, salt)
        };
        self.finished = true;
        let mut b = Vec::new();
        pgwire::cstr(&mut b, &sent);
        Ok(b)
    }

    /// AuthenticationSASL: picks the mechanism as libpq's `pg_SASL_init` does and returns
    /// the SASLInitialResponse body.
    fn sasl_init(&mut self, c: &Connected, data: &[u8]) -> Result<Vec<u8>, AuthFailure> {
        if self.scram.is_some() {
            return Err(fail("duplicate SASL authentication request"));
        }
        let tls = c.stream.ssl().is_some();
        let cb = self.config.channel_binding;
        let mut offers_plus = false;
        let mut offers_plain = false;
        let mut list = Reader::new(data);
        loop {
            let m = list.cstr().ok_or_else(|| {
                fail("fe_sendauth: invalid authentication request from server: invalid list of authentication mechanisms")
            })?;
            match m {
                b"" => break,
                m if m == scram::SCRAM_SHA_256_PLUS.as_bytes() => {
                    if !tls {
                        return Err(fail(
                            "server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection",
                        ));
                    }
                    offers_plus = true;
                }
                m if m == scram::SCRAM_SHA_256.as_bytes() => offers_plain = true,
                _ => {}
            }
        }
        let plus = offers_plus && cb != ChannelBinding::Disable;
        if !plus && !offers_plain {
            return Err(fail(
                "none of the server's SASL authentication mechanisms are supported",
            ));
        }
        if cb == ChannelBinding::Require && !plus {
            return Err(fail(
                "channel binding is required, but server did not offer an authentication method that supports channel binding",
            ));
        }
        let password = self.password()?.to_owned();
        let binding = match (plus, c.stream.ssl()) {
            (true, Some(ssl)) => {
                Binding::Plus(peer_end_point(ssl).map_err(|e| fail(e.to_string()))?)
            }
            (false, Some(_)) if cb != ChannelBinding::Disable => Binding::CouldBind,
            _ => Binding::No,
        };
        let (client, first) = ScramClient::start(&password, binding).map_err(fail)?;
        self.used = client.mechanism();
        let mut b = Vec::new();
        pgwire::cstr(&mut b, client.mechanism());
        b.extend_from_slice(&(first.len() as i32).to_be_bytes());
        b.extend_from_slice(&first);
        self.scram = Some(client);
        Ok(b)
    }

    /// AuthenticationSASLContinue / AuthenticationSASLFinal.
    fn sasl_continue(
        &mut self,
        data: &[u8],
        is_final: bool,
    ) -> Result<Option<Vec<u8>>, AuthFailure> {
        let s = self.scram.as_mut().ok_or_else(|| {
            fail("fe_sendauth: invalid authentication request from server: AUTH_REQ_SASL_CONT without AUTH_REQ_SASL")
        })?;
        let reply = s.exchange(data, is_final).map_err(fail)?;
        self.finished = s.finished();
        Ok(reply)
    }

    /// One AuthenticationRequest: what to send back (a `p` body), if anything.
    fn request(&mut self, c: &Connected, body: &[u8]) -> Result<Option<Vec<u8>>, AuthFailure> {
        if !AUTH_REQUEST_LEN.contains(&(body.len() + 4)) {
            return Err(fail("received invalid authentication request"));
        }
        let mut r = Reader::new(body);
        let code = r
            .u32()
            .ok_or_else(|| fail("received invalid authentication request"))?;
        let data = r.rest();
        self.check_expected(code)?;
        match code {
            areq::OK => {
                if let (Some(t), Some(ssl)) = (&c.tls, c.stream.ssl()) {
                    t.check_cert_mode(ssl)
                        .map_err(|e| AuthFailure::Abort(e.into()))?;
                }
                Ok(None)
            }
            areq::PASSWORD | areq::MD5 => self.password_message(code, data).map(Some),
            areq::SASL => self.sasl_init(c, data).map(Some),
            areq::SASL_CONT | areq::SASL_FIN => self.sasl_continue(data, code == areq::SASL_FIN),
            areq::KRB4 => Err(fail("Kerberos 4 authentication not supported")),
            areq::KRB5 => Err(fail("Kerberos 5 authentication not supported")),
            areq::CRYPT => Err(fail("Crypt authentication not supported")),
            areq::GSS | areq::GSS_CONT => Err(fail("GSSAPI authentication not supported")),
            areq::SSPI => Err(fail("SSPI authentication not supported")),
            other => Err(fail(format!("authentication method {other} not supported"))),
        }
    }
}

/// `md5` + md5(md5(password + user) in hex + salt) in hex, as libpq's `pg_md5_encrypt` twice.
fn md5_password(password: &str, user: &str, salt: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let inner = hash(MessageDigest::md5(), format!("{password}{user}").as_bytes())
        .expect("MD5 is available");
    let mut salted = hex(&inner).into_bytes();
    salted.extend_from_slice(salt);
    let outer = hash(MessageDigest::md5(), &salted).expect("MD5 is available");
    format!("md5{}", hex(&outer))
}

/// Authenticates on a connection the plan made, up to ReadyForQuery; returns the mechanism
/// used. Every server message is bounds-checked; every refusal is libpq's text.
fn authenticate(c: &mut Connected, config: &ClientTlsConfig) -> Result<String, AuthFailure> {
    let mut first = Some(c.first_message.as_bytes().to_vec());
    let mut auth = Auth {
        config,
        used: "trust",
        scram: None,
        finished: false,
    };
    let mut authenticated = false;
    loop {
        let m = next_message(c, &mut first)?;
        match m.tag {
            b'E' => {
                return Err(match pgwire::error_response(&m) {
                    Some(r) => AuthFailure::Server(r),
                    None => fail("received invalid error message"),
                });
            }
            b'R' if !authenticated => {
                let reply = auth.request(c, &m.body)?;
                if let Some(body) = reply {
                    let mut out = BytesMut::new();
                    pgwire::put(&mut out, b'p', &body);
                    pgwire::send(&mut c.stream, &out)?;
                }
                authenticated = Reader::new(&m.body).u32() == Some(areq::OK);
            }
            // NegotiateProtocolVersion: the crate's startup asks for 3.0 only.
            b'v' if !authenticated => {}
            tag if !authenticated => {
                return Err(fail(format!(
                    "expected authentication request from server, but received {}",
                    tag as char
                )));
            }
            // ParameterStatus, BackendKeyData, notices: until ReadyForQuery.
            b'S' | b'K' | b'N' => {}
            b'Z' => return Ok(auth.used.to_owned()),
            _ => return Err(fail("unexpected message from server during startup")),
        }
    }
}

fn simple_query<S: Read + Write>(
    s: &mut S,
    sql: &str,
) -> Result<Option<Vec<Option<String>>>, String> {
    let mut out = BytesMut::new();
    let mut b = Vec::new();
    pgwire::cstr(&mut b, sql);
    pgwire::put(&mut out, b'Q', &b);
    pgwire::send(s, &out).map_err(|e| e.to_string())?;
    let mut first_row = None;
    let mut error = None;
    loop {
        let m = pgwire::read_message(s, 1 << 26)
            .map_err(|e| match pgwire::bad_length(&e) {
                Some(bad) => bad.libpq_text(),
                None => e.to_string(),
            })?
            .ok_or("server closed the connection unexpectedly")?;
        match m.tag {
            b'D' if first_row.is_none() => {
                let row =
                    pgwire::parse_data_row(&m.body).ok_or("insufficient data in \"D\" message")?;
                first_row = Some(row);
            }
            b'E' => {
                error = Some(
                    pgwire::error_response(&m)
                        .map(|e| format!("{}:  {}", e.severity.as_str(), e.message))
                        .unwrap_or_else(|| "received invalid error message".into()),
                )
            }
            b'Z' => break,
            _ => {}
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(first_row),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(conninfo) = args.next() else {
        eprintln!("usage: connect 'CONNINFO' [--query SQL]");
        std::process::exit(2);
    };
    let mut query = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--query" | "-c" => query = args.next(),
            _ => {
                eprintln!("usage: connect 'CONNINFO' [--query SQL]");
                std::process::exit(2);
            }
        }
    }
    let config = match ClientTlsConfig::from_env_and_conninfo(&conninfo) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connect: error: {e}");
            std::process::exit(1);
        }
    };
    let host = if config.host.is_empty() {
        "localhost".to_owned()
    } else {
        config.host.clone()
    };
    let target = config.hostaddr.clone().unwrap_or_else(|| host.clone());
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(target.as_str(), config.port))
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| target.clone());
    let result = connect_with(&config, |c| authenticate(c, &config));
    let (mut conn, _mechanism) = match result {
        Ok(c) => c,
        Err(e) => {
            let mut msg = e.to_string();
            if let ConnectError::Io(io) = &e
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                msg = "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?".into();
            }
            eprintln!(
                "connection to server at \"{host}\" ({addr}), port {} failed: {msg}",
                config.port
            );
            std::process::exit(1);
        }
    };
    match &conn.session {
        Some(s) => println!(
            "ssl=on protocol={} cipher={} bits={} alpn={}",
            s.version,
            s.cipher,
            s.bits,
            s.alpn
                .as_deref()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_else(|| "none".into())
        ),
        None => println!("ssl=off"),
    }
    if let Some(sql) = query {
        match simple_query(&mut conn.stream, &sql) {
            Ok(Some(row)) => println!(
                "{}",
                row.iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("|")
            ),
            Ok(None) => {}
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    let mut out = BytesMut::new();
    pgwire::put(&mut out, b'X', &[]);
    let _ = pgwire::send(&mut conn.stream, &out);
}
