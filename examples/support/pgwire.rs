//! What the examples add to postgres-protocol for the messages after the negotiation. Shared by
//! the examples through `#[path]`.
//!
//! postgres-protocol decodes the server's messages (`message::backend::Message::parse`) and
//! encodes the client's (`message::frontend`); the examples use it for both. What it does not
//! do, and this file keeps by hand:
//!
//! - reading one message from a blocking stream with a bound on its length, refused before
//!   anything is allocated ([`read_message`]): `Message::parse` works on a buffer and checks
//!   only that the length word is at least 4;
//! - the server-side messages the server and proxy examples send (AuthenticationRequest,
//!   ParameterStatus, BackendKeyData, RowDescription, DataRow, …): postgres-protocol has no
//!   encoder for backend messages, and no decoder for frontend ones ([`get_cstr`] reads the
//!   password message's C string).
#![allow(dead_code)]

use std::io::{self, Read, Write};

use bytes::{BufMut, BytesMut};
use postgres_protocol::message::backend;

/// One message: its type byte and body.
#[derive(Clone, Debug)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Message {
    /// The server message decoded by postgres-protocol (`Err` for a malformed body or a type
    /// it does not know, never a panic).
    pub fn backend(&self) -> io::Result<backend::Message> {
        parse_backend(self.tag, &self.body)
    }
}

/// `tag` and `body` framed again and decoded by postgres-protocol's `Message::parse`.
pub fn parse_backend(tag: u8, body: &[u8]) -> io::Result<backend::Message> {
    let mut frame = BytesMut::with_capacity(body.len() + 5);
    put(&mut frame, tag, body);
    backend::Message::parse(&mut frame)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete message"))
}

/// A message whose length word is below 4 or above what the reader allows: the peer is not
/// speaking the protocol (or is hostile), and the stream cannot be resynchronised.
///
/// It travels inside an [`io::Error`] of kind [`io::ErrorKind::InvalidData`]; find it with
/// [`bad_length`]. `Display` is PostgreSQL's server-side text ("invalid message length").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLength {
    /// The message type byte.
    pub tag: u8,
    /// The length word as sent.
    pub len: u32,
}

impl std::fmt::Display for BadLength {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid message length")
    }
}

impl std::error::Error for BadLength {}

impl BadLength {
    /// libpq's text for a server message with this length ("lost synchronization with
    /// server: got message type "Z", length -1"; libpq prints the length as a signed int).
    pub fn libpq_text(&self) -> String {
        format!(
            "lost synchronization with server: got message type \"{}\", length {}",
            self.tag as char, self.len as i32
        )
    }
}

/// The [`BadLength`] inside `e`, if that is why a read failed.
pub fn bad_length(e: &io::Error) -> Option<BadLength> {
    e.get_ref()?.downcast_ref::<BadLength>().copied()
}

/// Reads one message (type, int32 length, body), refusing a length word below 4 or above
/// `max` (the whole message minus its type byte, as the length word counts) with a
/// [`BadLength`] error before allocating anything. `Ok(None)`: the peer closed before the
/// first byte of a message.
pub fn read_message<R: Read>(r: &mut R, max: usize) -> io::Result<Option<Message>> {
    let mut tag = [0u8; 1];
    match r.read_exact(&mut tag) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut word = [0u8; 4];
    r.read_exact(&mut word)?;
    let len = u32::from_be_bytes(word);
    if len < 4 || len as usize > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            BadLength { tag: tag[0], len },
        ));
    }
    let mut body = vec![0u8; len as usize - 4];
    r.read_exact(&mut body)?;
    Ok(Some(Message { tag: tag[0], body }))
}

/// The crate's [`pgssl::wire::ErrorResponse`] decoder over an `E` (or `N`) message read by
/// [`read_message`]; `None` when the fields are malformed.
pub fn error_response(m: &Message) -> Option<pgssl::wire::ErrorResponse> {
    let mut raw = Vec::with_capacity(m.body.len() + 5);
    raw.push(b'E');
    raw.extend_from_slice(&((m.body.len() + 4) as u32).to_be_bytes());
    raw.extend_from_slice(&m.body);
    match pgssl::wire::ErrorResponse::decode(&raw) {
        Ok(pgssl::wire::Decoded::Complete(r, _)) => Some(r),
        _ => None,
    }
}

/// Appends a message with `tag` and `body`.
pub fn put(buf: &mut BytesMut, tag: u8, body: &[u8]) {
    buf.put_u8(tag);
    buf.put_u32((body.len() + 4) as u32);
    buf.put_slice(body);
}

/// A C string.
pub fn cstr(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

/// Reads a C string at `*pos`.
pub fn get_cstr(b: &[u8], pos: &mut usize) -> Option<String> {
    let end = b.get(*pos..)?.iter().position(|&c| c == 0)? + *pos;
    let s = String::from_utf8_lossy(&b[*pos..end]).into_owned();
    *pos = end + 1;
    Some(s)
}

/// AuthenticationRequest with `code` and extra data.
pub fn auth(buf: &mut BytesMut, code: u32, extra: &[u8]) {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(extra);
    put(buf, b'R', &body);
}

/// ParameterStatus.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let mut body = Vec::new();
    cstr(&mut body, name);
    cstr(&mut body, value);
    put(buf, b'S', &body);
}

/// BackendKeyData.
pub fn backend_key_data(buf: &mut BytesMut, pid: u32, key: &[u8]) {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(key);
    put(buf, b'K', &body);
}

/// ReadyForQuery (idle).
pub fn ready_for_query(buf: &mut BytesMut) {
    put(buf, b'Z', b"I");
}

/// RowDescription of text columns.
pub fn row_description(buf: &mut BytesMut, columns: &[&str]) {
    let mut body = (columns.len() as u16).to_be_bytes().to_vec();
    for c in columns {
        cstr(&mut body, c);
        body.extend_from_slice(&0u32.to_be_bytes()); // table oid
        body.extend_from_slice(&0u16.to_be_bytes()); // column number
        body.extend_from_slice(&25u32.to_be_bytes()); // text
        body.extend_from_slice(&(-1i16).to_be_bytes()); // size
        body.extend_from_slice(&(-1i32).to_be_bytes()); // typmod
        body.extend_from_slice(&0u16.to_be_bytes()); // text format
    }
    put(buf, b'T', &body);
}

/// DataRow of text values (None: NULL).
pub fn data_row(buf: &mut BytesMut, values: &[Option<String>]) {
    let mut body = (values.len() as u16).to_be_bytes().to_vec();
    for v in values {
        match v {
            Some(s) => {
                body.extend_from_slice(&(s.len() as i32).to_be_bytes());
                body.extend_from_slice(s.as_bytes());
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    put(buf, b'D', &body);
}

/// CommandComplete.
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    let mut body = Vec::new();
    cstr(&mut body, tag);
    put(buf, b'C', &body);
}

/// Writes and flushes.
pub fn send<W: Write>(w: &mut W, buf: &BytesMut) -> io::Result<()> {
    w.write_all(buf)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fallible_iterator::FallibleIterator;

    #[test]
    fn bad_lengths_are_refused_before_allocating() {
        for (raw, len) in [
            (&b"p\xff\xff\xff\xff"[..], u32::MAX),
            (b"R\x00\x00\x00\x03", 3),
            (b"R\x00\x00\x00\x00", 0),
        ] {
            let e = read_message(&mut &raw[..], 1 << 20).unwrap_err();
            assert_eq!(bad_length(&e), Some(BadLength { tag: raw[0], len }));
        }
        let e = read_message(&mut &b"p\xff\xff\xff\xff"[..], 1 << 20).unwrap_err();
        assert_eq!(
            bad_length(&e).unwrap().libpq_text(),
            "lost synchronization with server: got message type \"p\", length -1"
        );
        assert!(read_message(&mut &b""[..], 10).unwrap().is_none());
    }

    /// The hand-written backend messages are what postgres-protocol decodes.
    #[test]
    fn backend_writers_round_trip_through_postgres_protocol() {
        let mut b = BytesMut::new();
        data_row(&mut b, &[Some("a".into()), None]);
        let m = read_message(&mut &b[..], 1 << 20).unwrap().unwrap();
        let Ok(backend::Message::DataRow(row)) = m.backend() else {
            panic!("not a DataRow")
        };
        let ranges: Vec<_> = row.ranges().collect().unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!(&row.buffer()[ranges[0].clone().unwrap()], b"a");
        assert!(ranges[1].is_none());

        let mut b = BytesMut::new();
        row_description(&mut b, &["ssl", "version"]);
        parameter_status(&mut b, "server_version", "17.0");
        backend_key_data(&mut b, 7, &[1, 2, 3, 4]);
        command_complete(&mut b, "SELECT 1");
        ready_for_query(&mut b);
        auth(&mut b, 5, b"salt");
        let mut r = &b[..];
        let mut seen = Vec::new();
        while let Some(m) = read_message(&mut r, 1 << 20).unwrap() {
            seen.push(match m.backend() {
                Ok(backend::Message::RowDescription(d)) => d.fields().count().unwrap(),
                Ok(backend::Message::ParameterStatus(p)) => {
                    assert_eq!(p.name().unwrap(), "server_version");
                    assert_eq!(p.value().unwrap(), "17.0");
                    1
                }
                Ok(backend::Message::BackendKeyData(k)) => {
                    assert_eq!((k.process_id(), k.secret_key()), (7, 0x0102_0304));
                    1
                }
                Ok(backend::Message::CommandComplete(c)) => {
                    assert_eq!(c.tag().unwrap(), "SELECT 1");
                    1
                }
                Ok(backend::Message::ReadyForQuery(z)) => usize::from(z.status() == b'I'),
                Ok(backend::Message::AuthenticationMd5Password(m)) => {
                    usize::from(&m.salt() == b"salt")
                }
                _ => panic!("{:?} not decoded", m.tag as char),
            });
        }
        assert_eq!(seen, [2, 1, 1, 1, 1, 1]);
    }

    /// postgres-protocol's decoder on the hostile servers' messages (an empty 'R', MD5 without
    /// its salt, a short DataRow) and on truncated or arbitrary bodies of every type: an
    /// error, never a panic.
    #[test]
    fn postgres_protocol_decoder_never_panics() {
        for (tag, body) in [
            (b'R', &b""[..]),
            (b'R', b"\0\0\0\x05"),
            (b'R', b"\0\0\0\x05ab"),
            (b'R', b"\0\0\0\x0a"),
            (b'R', b"\0\0\0\x0aSCRAM-SHA-256"),
            (b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0x"),
            (b'D', b"\0"),
            (b'D', b"\0\x01\0\0\0\x05ab"),
            (b'D', b"\xff\xff\0\0\0\x01"),
            (b'v', b"\0\0\0\0"),
        ] {
            assert!(!decodes(tag, body), "{:?} {body:?}", tag as char);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let tags = b"123AcCdDEGHIKnNRsStTZv";
        for i in 0..20_000 {
            let tag = tags[i % tags.len()];
            let len = (next() % 24) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if tag == b'R' && body.len() >= 4 {
                body[..3].fill(0);
                body[3] %= 14;
            }
            let _ = decodes(tag, &body);
        }
    }

    /// Whether postgres-protocol decodes the message, its rows, lists and fields included.
    fn decodes(tag: u8, body: &[u8]) -> bool {
        match parse_backend(tag, body) {
            Ok(backend::Message::DataRow(row)) => row.ranges().count().is_ok(),
            Ok(backend::Message::AuthenticationSasl(list)) => list.mechanisms().count().is_ok(),
            Ok(backend::Message::ErrorResponse(e)) => e.fields().count().is_ok(),
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// Truncated and arbitrary bodies never panic the C string reader.
    #[test]
    fn get_cstr_never_panics() {
        for body in [&b""[..], b"a", b"a\0", b"\0\0"] {
            for pos in 0..4 {
                let mut p = pos;
                let _ = get_cstr(body, &mut p);
            }
        }
        let mut p = 100;
        assert_eq!(get_cstr(b"a\0", &mut p), None);
    }
}
