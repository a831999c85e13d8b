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

/// Reads one message (type, int32 length, body), refusing lengths over `max`.
pub fn read_message<R: Read>(r: &mut R, max: usize) -> io::Result<Option<Message>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len < 4 || len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid message length {len}"),
        ));
    }
    let mut body = vec![0u8; len - 4];
    r.read_exact(&mut body)?;
    Ok(Some(Message { tag: head[0], body }))
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
    let end = b[*pos..].iter().position(|&c| c == 0)? + *pos;
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

/// The fields of an ErrorResponse or NoticeResponse body: (severity, code, message).
pub fn error_fields(body: &[u8]) -> (String, String, String) {
    let (mut sev, mut code, mut msg) = (String::new(), String::new(), String::new());
    let mut pos = 0;
    while pos < body.len() && body[pos] != 0 {
        let tag = body[pos];
        pos += 1;
        let v = get_cstr(body, &mut pos).unwrap_or_default();
        match tag {
            b'S' => sev = v,
            b'C' => code = v,
            b'M' => msg = v,
            _ => {}
        }
    }
    (sev, code, msg)
}

/// A stream whose first bytes come from `prefix`: what the negotiation read past the
/// StartupMessage (a client that pipelines), served before the socket's.
pub struct Prefixed<'a, S> {
    prefix: Vec<u8>,
    pos: usize,
    pub inner: &'a mut S,
}

impl<'a, S> Prefixed<'a, S> {
    pub fn new(prefix: Vec<u8>, inner: &'a mut S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The prefix bytes not read yet.
    pub fn rest(&mut self) -> Vec<u8> {
        let rest = self.prefix[self.pos..].to_vec();
        self.pos = self.prefix.len();
        rest
    }
}

impl<S: Read> Read for Prefixed<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.prefix.len() {
            let n = out.len().min(self.prefix.len() - self.pos);
            out[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(out)
    }
}

impl<S: Write> Write for Prefixed<'_, S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
