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

use std::io::{Read, Write};

use bytes::BytesMut;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::PKey;
use openssl::sign::Signer;
use pgssl::io::blocking::{Connected, connect_with};
use pgssl::io::{AuthFailure, ConnectError};
use pgssl::tls::{ChannelBinding, ClientTlsConfig, peer_end_point};
use pgssl::wire::{Decoded, ErrorResponse};

fn fail(msg: impl Into<String>) -> AuthFailure {
    AuthFailure::Abort(ConnectError::Io(std::io::Error::other(msg.into())))
}

fn server_error(body: &[u8]) -> AuthFailure {
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(body);
    match ErrorResponse::decode(&msg) {
        Ok(Decoded::Complete(r, _)) => AuthFailure::Server(r),
        _ => fail("invalid ErrorResponse"),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = PKey::hmac(key).expect("HMAC key");
    let mut s = Signer::new(MessageDigest::sha256(), &k).expect("HMAC");
    s.update(data).expect("HMAC");
    s.sign_to_vec().expect("HMAC")
}

/// Authenticates on a connection the plan made; returns the mechanism used.
fn authenticate(c: &mut Connected, config: &ClientTlsConfig) -> Result<String, AuthFailure> {
    let user = config.user.clone().unwrap_or_default();
    let password = config.password.clone();
    let mut first = Some(c.first_message.clone());
    let mut used = "trust".to_owned();
    let mut scram: Option<Scram> = None;
    loop {
        let (tag, body) = match first.take() {
            Some(m) => (m.tag(), m.body().to_vec()),
            None => match pgwire::read_message(&mut c.stream, 1 << 20)? {
                Some(m) => (m.tag, m.body),
                None => return Err(fail("server closed the connection unexpectedly")),
            },
        };
        match tag {
            b'E' => return Err(server_error(&body)),
            b'R' => {
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let mut out = BytesMut::new();
                match code {
                    0 => {
                        if let (Some(t), Some(ssl)) = (&c.tls, c.stream.ssl()) {
                            t.check_cert_mode(ssl)
                                .map_err(|e| AuthFailure::Abort(e.into()))?;
                        }
                        if config.channel_binding == ChannelBinding::Require
                            && used != "SCRAM-SHA-256-PLUS"
                        {
                            return Err(fail(
                                "channel binding required, but server authenticated client without channel binding",
                            ));
                        }
                    }
                    3 | 5 => {
                        let Some(pw) = &password else {
                            return Err(fail("fe_sendauth: no password supplied"));
                        };
                        if config.channel_binding == ChannelBinding::Require {
                            return Err(fail(
                                "channel binding required but not supported by server's authentication request",
                            ));
                        }
                        let sent = if code == 3 {
                            used = "password".into();
                            pw.clone()
                        } else {
                            used = "md5".into();
                            let inner =
                                hash(MessageDigest::md5(), format!("{pw}{user}").as_bytes())
                                    .unwrap();
                            let inner: String = inner.iter().map(|b| format!("{b:02x}")).collect();
                            let mut salted = inner.into_bytes();
                            salted.extend_from_slice(&body[4..8]);
                            let outer = hash(MessageDigest::md5(), &salted).unwrap();
                            format!(
                                "md5{}",
                                outer.iter().map(|b| format!("{b:02x}")).collect::<String>()
                            )
                        };
                        let mut b = Vec::new();
                        pgwire::cstr(&mut b, &sent);
                        pgwire::put(&mut out, b'p', &b);
                    }
                    10 => {
                        let Some(pw) = &password else {
                            return Err(fail("fe_sendauth: no password supplied"));
                        };
                        let mut mechs = Vec::new();
                        let mut pos = 4;
                        while let Some(m) = pgwire::get_cstr(&body, &mut pos) {
                            if m.is_empty() {
                                break;
                            }
                            mechs.push(m);
                        }
                        let tls = c.stream.ssl().is_some();
                        let plus = tls
                            && config.channel_binding != ChannelBinding::Disable
                            && mechs.iter().any(|m| m == "SCRAM-SHA-256-PLUS");
                        if config.channel_binding == ChannelBinding::Require && !plus {
                            return Err(fail(
                                "channel binding is required, but server did not offer an authentication method that supports channel binding",
                            ));
                        }
                        let (mech, cb) = if plus {
                            let data = peer_end_point(c.stream.ssl().unwrap())
                                .map_err(|e| fail(e.to_string()))?;
                            ("SCRAM-SHA-256-PLUS", Some(data))
                        } else {
                            ("SCRAM-SHA-256", None)
                        };
                        // "y": we could bind but the server did not offer it over TLS.
                        let gs2 = match (
                            &cb,
                            tls && config.channel_binding != ChannelBinding::Disable,
                        ) {
                            (Some(_), _) => "p=tls-server-end-point,,",
                            (None, true) => "y,,",
                            (None, false) => "n,,",
                        };
                        let mut nonce = [0u8; 18];
                        openssl::rand::rand_bytes(&mut nonce).unwrap();
                        let nonce = openssl::base64::encode_block(&nonce);
                        let first_bare = format!("n=,r={nonce}");
                        let msg = format!("{gs2}{first_bare}");
                        let mut b = Vec::new();
                        pgwire::cstr(&mut b, mech);
                        b.extend_from_slice(&(msg.len() as i32).to_be_bytes());
                        b.extend_from_slice(msg.as_bytes());
                        pgwire::put(&mut out, b'p', &b);
                        used = mech.to_owned();
                        scram = Some(Scram {
                            password: pw.clone(),
                            gs2: gs2.to_owned(),
                            cb,
                            nonce,
                            first_bare,
                            server_signature: Vec::new(),
                        });
                    }
                    11 => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| fail("unexpected SASL message"))?;
                        let server_first = String::from_utf8_lossy(&body[4..]).into_owned();
                        let reply = s.client_final(&server_first)?;
                        pgwire::put(&mut out, b'p', reply.as_bytes());
                    }
                    12 => {
                        let s = scram
                            .as_ref()
                            .ok_or_else(|| fail("unexpected SASL message"))?;
                        let text = String::from_utf8_lossy(&body[4..]).into_owned();
                        let v = text
                            .strip_prefix("v=")
                            .ok_or_else(|| fail("malformed SCRAM message"))?;
                        let sig = openssl::base64::decode_block(v)
                            .map_err(|_| fail("malformed SCRAM message"))?;
                        if sig != s.server_signature {
                            return Err(fail("incorrect server signature"));
                        }
                    }
                    other => {
                        return Err(fail(format!("authentication method {other} not supported")));
                    }
                }
                if !out.is_empty() {
                    pgwire::send(&mut c.stream, &out)?;
                }
            }
            // ParameterStatus, BackendKeyData, notices: until ReadyForQuery.
            b'S' | b'K' | b'N' | b'v' => {}
            b'Z' => return Ok(used),
            other => {
                return Err(fail(format!(
                    "unexpected message type \"{}\"",
                    other as char
                )));
            }
        }
    }
}

struct Scram {
    password: String,
    gs2: String,
    cb: Option<Vec<u8>>,
    nonce: String,
    first_bare: String,
    server_signature: Vec<u8>,
}

impl Scram {
    fn client_final(&mut self, server_first: &str) -> Result<String, AuthFailure> {
        let mut r = None;
        let mut salt = None;
        let mut iter = None;
        for part in server_first.split(',') {
            match part.split_at(2.min(part.len())) {
                ("r=", v) => r = Some(v.to_owned()),
                ("s=", v) => salt = openssl::base64::decode_block(v).ok(),
                ("i=", v) => iter = v.parse::<usize>().ok(),
                _ => {}
            }
        }
        let (Some(r), Some(salt), Some(iter)) = (r, salt, iter) else {
            return Err(fail("malformed SCRAM message"));
        };
        if !r.starts_with(&self.nonce) {
            return Err(fail("invalid SCRAM response (nonce mismatch)"));
        }
        let mut cbind = self.gs2.clone().into_bytes();
        if let Some(cb) = &self.cb {
            cbind.extend_from_slice(cb);
        }
        let without_proof = format!("c={},r={r}", openssl::base64::encode_block(&cbind));
        let mut salted = [0u8; 32];
        openssl::pkcs5::pbkdf2_hmac(
            self.password.as_bytes(),
            &salt,
            iter,
            MessageDigest::sha256(),
            &mut salted,
        )
        .map_err(|e| fail(e.to_string()))?;
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = hash(MessageDigest::sha256(), &client_key).unwrap();
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_sig = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_sig)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = hmac(&server_key, auth_message.as_bytes());
        Ok(format!(
            "{without_proof},p={}",
            openssl::base64::encode_block(&proof)
        ))
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
            .map_err(|e| e.to_string())?
            .ok_or("server closed the connection unexpectedly")?;
        match m.tag {
            b'D' if first_row.is_none() => {
                let n = u16::from_be_bytes([m.body[0], m.body[1]]) as usize;
                let mut pos = 2;
                let mut row = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = i32::from_be_bytes(m.body[pos..pos + 4].try_into().unwrap());
                    pos += 4;
                    if len < 0 {
                        row.push(None);
                    } else {
                        row.push(Some(
                            String::from_utf8_lossy(&m.body[pos..pos + len as usize]).into_owned(),
                        ));
                        pos += len as usize;
                    }
                }
                first_row = Some(row);
            }
            b'E' => error = Some(pgwire::error_fields(&m.body)),
            b'Z' => break,
            _ => {}
        }
    }
    match error {
        Some((sev, _, msg)) => Err(format!("{sev}:  {msg}")),
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
            if let ConnectError::Io(io) = &e {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    msg = "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?".into();
                }
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
