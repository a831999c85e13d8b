//! The few PostgreSQL protocol messages the examples need beyond the negotiation: framing,
//! authentication, parameter status, rows. Shared by the examples through `#[path]`.
#![allow(dead_code)]

use std::io::{self, Read, Write};

use bytes::{BufMut, BytesMut};

/// One message: its type byte and body.
#[derive(Clone, Debug)]
pub struct Message {
    pub tag: u8,
    pub body: Vec<u8>,
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

/// A bounds-checked cursor over a message body: every getter returns `None` past the end
/// instead of panicking, and consumes nothing then.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `body`.
    pub fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    /// A big-endian Int16.
    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian Int32, unsigned.
    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian Int32, signed.
    pub fn i32(&mut self) -> Option<i32> {
        self.u32().map(|v| v as i32)
    }

    /// A NUL-terminated string, without its NUL; `None` when no NUL is left.
    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|&c| c == 0)?;
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Some(s)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
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

/// The values of a DataRow body as text (None: NULL); `None` when the body is shorter than
/// its column count and lengths say, or longer (libpq: `insufficient data in "D" message`).
pub fn parse_data_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let mut r = Reader::new(body);
    let n = r.u16()?;
    let mut row = Vec::with_capacity(usize::from(n).min(body.len() / 4));
    for _ in 0..n {
        let len = r.i32()?;
        let value = match usize::try_from(len) {
            Ok(len) => Some(String::from_utf8_lossy(r.bytes(len)?).into_owned()),
            Err(_) if len == -1 => None,
            Err(_) => return None,
        };
        row.push(value);
    }
    r.is_empty().then_some(row)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn data_row_is_bounds_checked() {
        let mut b = BytesMut::new();
        data_row(&mut b, &[Some("a".into()), None]);
        let body = &b[5..];
        assert_eq!(parse_data_row(body), Some(vec![Some("a".to_owned()), None]));
        for cut in 0..body.len() {
            assert_eq!(parse_data_row(&body[..cut]), None);
        }
        assert_eq!(parse_data_row(b"\xff\xff\x00\x00\x00\x01"), None);
    }

    /// Truncated and arbitrary bodies never panic the cursor.
    #[test]
    fn reader_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let body: Vec<u8> = seed.to_le_bytes()[..(seed % 9) as usize].to_vec();
            let mut r = Reader::new(&body);
            let _ = (r.u16(), r.i32(), r.cstr(), r.bytes(3), r.u32());
            let _ = parse_data_row(&body);
            let _ = get_cstr(&body, &mut 100);
        }
    }
}
