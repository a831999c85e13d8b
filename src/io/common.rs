//! What the blocking and the async adapters share: the client's StartupMessage, the reading of
//! the server's first message, and libpq's wording of TLS errors met after the handshake.

use std::io;

use super::blocking::ConnectError;
use crate::tls::ClientTlsConfig;

/// libpq bounds the messages it accepts during connection startup (`MAX_ERRLEN`).
const MAX_STARTUP_REPLY: usize = 30_000;

/// The StartupMessage for `config`: `user` (the OS user by default, as libpq), `database` and
/// `application_name`.
pub(crate) fn startup_message(config: &ClientTlsConfig) -> bytes::BytesMut {
    let mut startup = bytes::BytesMut::new();
    let user = config.effective_user();
    let mut params = vec![("user", user.as_str())];
    if let Some(db) = &config.dbname {
        params.push(("database", db));
    }
    if let Some(app) = &config.application_name {
        params.push(("application_name", app));
    }
    crate::wire::encode_startup_message(&mut startup, crate::wire::ProtocolVersion::V3_0, params);
    startup
}

/// The body length announced by a message header (type byte and length), refused beyond what
/// libpq accepts during startup.
pub(crate) fn reply_body_len(head: &[u8; 5]) -> io::Result<usize> {
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=MAX_STARTUP_REPLY).contains(&len) {
        return Err(io::Error::other(format!(
            "expected authentication request from server, but received {}",
            head[0] as char
        )));
    }
    Ok(len - 4)
}

/// An end of stream while reading the reply, in libpq's words.
pub(crate) fn closed_as_libpq(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            crate::ClientError::ServerClosed.to_string(),
        )
    } else {
        e
    }
}

/// An I/O error on a TLS stream in libpq's form: "SSL error: <OpenSSL's reason>" (a refused
/// client certificate arrives as an alert after the handshake), "SSL SYSCALL error: …".
pub(crate) fn tls_io_error(e: io::Error, tls: bool) -> ConnectError {
    if !tls {
        return e.into();
    }
    let ssl = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>());
    match ssl.and_then(|s| s.ssl_error()) {
        Some(stack) if !stack.errors().is_empty() => {
            crate::tls::ClientTlsError::handshake(stack).into()
        }
        _ => match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                crate::tls::ClientTlsError::Syscall("EOF detected".to_owned()).into()
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                crate::tls::ClientTlsError::Syscall(crate::tls::io_reason(&e)).into()
            }
            _ => e.into(),
        },
    }
}
