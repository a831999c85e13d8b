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
//!
//! The protocol messages are postgres-protocol's (`message::backend` decodes what the server
//! sends, `message::frontend` encodes the replies), and so are SCRAM-SHA-256(-PLUS)
//! (`authentication::sasl::ScramSha256`, behind libpq's checks in support/scram.rs) and md5
//! (`authentication::md5_hash`). What stays by hand is where libpq's rules differ from what
//! postgres-protocol checks: the bounded read of each message (support/pgwire.rs), the
//! AuthenticationRequest's length and code read before decoding, and the order of libpq's
//! checks.

#[path = "support/pgwire.rs"]
mod pgwire;
#[path = "support/scram.rs"]
mod scram;

use std::io::{Read, Write};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use pgssl::io::blocking::{Connected, connect_with};
use pgssl::io::{AuthFailure, ConnectError};
use pgssl::tls::{ChannelBinding, ClientTlsConfig, peer_end_point};
use pgwire::Message;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::message::{backend, frontend};
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

/// An encoder's refusal (postgres-protocol's `frontend` refuses a NUL inside a C string).
fn encode_failure(e: std::io::Error) -> AuthFailure {
    fail(e.to_string())
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

    /// AuthenticationCleartextPassword, or AuthenticationMD5Password with its salt: the
    /// PasswordMessage.
    fn password_message(&mut self, md5_salt: Option<[u8; 4]>) -> Result<BytesMut, AuthFailure> {
        let pw = self.password()?.to_owned();
        let sent = match md5_salt {
            None => {
                self.used = "password";
                pw.as_bytes().to_vec()
            }
            Some(salt) => {
                self.used = "md5";
                // libpq hashes with the user the StartupMessage named (the OS user by default).
                let user = self.config.effective_user();
                md5_hash(user.as_bytes(), pw.as_bytes(), salt).into_bytes()
            }
        };
        self.finished = true;
        let mut out = BytesMut::new();
        frontend::password_message(&sent, &mut out).map_err(encode_failure)?;
        Ok(out)
    }

    /// AuthenticationSASL: picks the mechanism as libpq's `pg_SASL_init` does and returns
    /// the SASLInitialResponse.
    fn sasl_init(
        &mut self,
        c: &Connected,
        mut mechanisms: backend::SaslMechanisms<'_>,
    ) -> Result<BytesMut, AuthFailure> {
        if self.scram.is_some() {
            return Err(fail("duplicate SASL authentication request"));
        }
        let tls = c.stream.ssl().is_some();
        let cb = self.config.channel_binding;
        let mut offers_plus = false;
        let mut offers_plain = false;
        // postgres-protocol's list is stricter than libpq's in two ways, both refused with
        // libpq's text for a malformed list: bytes after the empty name that ends it, and a
        // name that is not UTF-8 (libpq ignores both).
        let invalid_list = || {
            fail(
                "fe_sendauth: invalid authentication request from server: invalid list of authentication mechanisms",
            )
        };
        while let Some(m) = mechanisms.next().map_err(|_| invalid_list())? {
            match m {
                scram::SCRAM_SHA_256_PLUS => {
                    if !tls {
                        return Err(fail(
                            "server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection",
                        ));
                    }
                    offers_plus = true;
                }
                scram::SCRAM_SHA_256 => offers_plain = true,
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
        let (client, first) = ScramClient::start(&password, binding);
        self.used = client.mechanism();
        let mut out = BytesMut::new();
        frontend::sasl_initial_response(client.mechanism(), &first, &mut out)
            .map_err(encode_failure)?;
        self.scram = Some(client);
        Ok(out)
    }

    /// AuthenticationSASLContinue / AuthenticationSASLFinal.
    fn sasl_continue(
        &mut self,
        data: &[u8],
        is_final: bool,
    ) -> Result<Option<BytesMut>, AuthFailure> {
        let s = self.scram.as_mut().ok_or_else(|| {
            fail("fe_sendauth: invalid authentication request from server: AUTH_REQ_SASL_CONT without AUTH_REQ_SASL")
        })?;
        let reply = s.exchange(data, is_final).map_err(fail)?;
        self.finished = s.finished();
        let Some(reply) = reply else {
            return Ok(None);
        };
        let mut out = BytesMut::new();
        frontend::sasl_response(&reply, &mut out).map_err(encode_failure)?;
        Ok(Some(out))
    }

    /// One AuthenticationRequest: its code, and the reply to send, if any.
    ///
    /// libpq's checks come before postgres-protocol decodes the message: the length (8 ..=
    /// 2000), then the code, read here because postgres-protocol refuses the codes it does not
    /// know (1, 4, 13 …) where libpq names each method, and libpq's channel_binding rules.
    fn request(
        &mut self,
        c: &Connected,
        body: &[u8],
    ) -> Result<(u32, Option<BytesMut>), AuthFailure> {
        let invalid = || fail("received invalid authentication request");
        if !AUTH_REQUEST_LEN.contains(&(body.len() + 4)) {
            return Err(invalid());
        }
        let code = u32::from_be_bytes(*body.first_chunk().ok_or_else(invalid)?);
        self.check_expected(code)?;
        let read = match code {
            areq::OK | areq::PASSWORD => 4,
            areq::MD5 => {
                // libpq asks for the password before it reads the salt.
                self.password()?;
                body.len().min(8)
            }
            areq::SASL | areq::SASL_CONT | areq::SASL_FIN => body.len(),
            areq::KRB4 => return Err(fail("Kerberos 4 authentication not supported")),
            areq::KRB5 => return Err(fail("Kerberos 5 authentication not supported")),
            areq::CRYPT => return Err(fail("Crypt authentication not supported")),
            areq::GSS | areq::GSS_CONT => return Err(fail("GSSAPI authentication not supported")),
            areq::SSPI => return Err(fail("SSPI authentication not supported")),
            other => return Err(fail(format!("authentication method {other} not supported"))),
        };
        // libpq reads the code (and MD5's salt) and ignores what follows; postgres-protocol
        // refuses trailing bytes, so it is given what libpq reads.
        let reply = match pgwire::parse_backend(b'R', &body[..read]) {
            Ok(backend::Message::AuthenticationOk) => {
                if let (Some(t), Some(ssl)) = (&c.tls, c.stream.ssl()) {
                    t.check_cert_mode(ssl)
                        .map_err(|e| AuthFailure::Abort(e.into()))?;
                }
                None
            }
            Ok(backend::Message::AuthenticationCleartextPassword) => {
                Some(self.password_message(None)?)
            }
            Ok(backend::Message::AuthenticationMd5Password(m)) => {
                Some(self.password_message(Some(m.salt()))?)
            }
            Err(_) if code == areq::MD5 => {
                return Err(fail("fe_sendauth: error sending password authentication"));
            }
            Ok(backend::Message::AuthenticationSasl(m)) => Some(self.sasl_init(c, m.mechanisms())?),
            Ok(backend::Message::AuthenticationSaslContinue(m)) => {
                self.sasl_continue(m.data(), false)?
            }
            Ok(backend::Message::AuthenticationSaslFinal(m)) => {
                self.sasl_continue(m.data(), true)?
            }
            _ => return Err(invalid()),
        };
        Ok((code, reply))
    }
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
                let (code, reply) = auth.request(c, &m.body)?;
                if let Some(out) = reply {
                    pgwire::send(&mut c.stream, &out)?;
                }
                authenticated = code == areq::OK;
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
    frontend::query(sql, &mut out).map_err(|e| e.to_string())?;
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
                let row = data_row(&m).ok_or("insufficient data in \"D\" message")?;
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

/// The values of a DataRow as text (None: NULL, as libpq reads any negative length); `None`
/// when the body is shorter than its column count and lengths say, or longer.
fn data_row(m: &Message) -> Option<Vec<Option<String>>> {
    let Ok(backend::Message::DataRow(row)) = m.backend() else {
        return None;
    };
    row.ranges()
        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&row.buffer()[r]).into_owned())))
        .collect()
        .ok()
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
    frontend::terminate(&mut out);
    let _ = pgwire::send(&mut conn.stream, &out);
}
