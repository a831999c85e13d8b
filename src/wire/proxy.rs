//! The PROXY protocol, versions 1 and 2 (HAProxy's `doc/proxy-protocol.txt`): a header a
//! load balancer or a pooler sends before the first byte of the connection it relays, carrying
//! the original client's address.
//!
//! This module is the codec only, sans-IO and allocation-free when decoding:
//! [`decode_proxy_header`] reads a header at the start of a buffer, borrowing from it, in the
//! manner of [`decode_initial`](super::decode_initial) ([`Decoded::Partial`] while the header is
//! incomplete, never asking past its end or past the limits); [`encode_proxy_v1`] and
//! [`encode_proxy_v2`] write one.
//!
//! What is accepted:
//!
//! - **v1**: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, `PROXY TCP6 …\r\n` and
//!   `PROXY UNKNOWN…\r\n`, at most [`V1_MAX_LEN`] (107) bytes including the CRLF. The syntax is
//!   strict: single spaces, IPv4 addresses as dotted quads of decimal octets 0..=255 without
//!   leading zeros (`010.0.0.1` is refused: it reads as octal in some parsers and decimal in
//!   others), IPv6 addresses in the textual forms of RFC 4291 (as Rust's `Ipv6Addr` parses
//!   them; no zone index) and of the family the protocol word names, ports in decimal
//!   0..=65535 without leading zeros (`0` itself is fine). `UNKNOWN` may be followed by a space
//!   and anything but CR or LF; its addresses are ignored. The line ends at the first LF,
//!   which must follow a CR.
//! - **v2**: the 12-byte signature [`V2_SIGNATURE`], version 2, command `LOCAL` or `PROXY`,
//!   TCP over IPv4 (0x11) or IPv6 (0x21). `LOCAL` accepts every family of the specification and
//!   ignores the addresses (as the specification asks); `PROXY` refuses UNSPEC (0x00, no
//!   address to report), UDP (0x12, 0x22) and UNIX sockets (0x31, 0x32) with
//!   [`ProxyError::UnsupportedFamily`]. The length field is bounded by
//!   [`ProxyLimits::max_v2_len`] and must cover the address block. The TLVs after the addresses
//!   are checked when decoding (every TLV and SSL sub-TLV inside its container, a UNIQUE_ID of
//!   at most 128 bytes, at most one CRC32C of 4 bytes, verified over the whole header) and then
//!   exposed by [`Tlvs`], an iterator that cannot fail.
//!
//! No PostgreSQL initial packet (its length word starts with 0x00) and no TLS record (0x16)
//! starts like a PROXY header (`P` or `\r`), so a server can tell them apart from the first
//! byte: see [`starts_with_proxy_header`].

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};

use super::decode::Decoded;

/// The first bytes of a v1 header.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest v1 header, CRLF included (the specification's 107 bytes).
pub const V1_MAX_LEN: usize = 107;
/// The shortest v1 header: `PROXY UNKNOWN\r\n`.
pub const V1_MIN_LEN: usize = 15;
/// The 12-byte signature that starts a v2 header.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version and command, family, length.
pub const V2_FIXED_LEN: usize = 16;
/// The default bound on a v2 header's length field.
pub const DEFAULT_MAX_V2_LEN: u16 = 4096;
/// The longest UNIQUE_ID TLV value the specification allows.
pub const MAX_UNIQUE_ID_LEN: usize = 128;

/// TLV types of the v2 header (`PP2_TYPE_*`).
pub mod tlv_type {
    /// Application-Layer Protocol Negotiation: the protocol the client asked for.
    pub const ALPN: u8 = 0x01;
    /// The host name the client used (TLS SNI or Host header), UTF-8.
    pub const AUTHORITY: u8 = 0x02;
    /// A CRC32C checksum of the whole header, 4 bytes big-endian.
    pub const CRC32C: u8 = 0x03;
    /// Padding, to be ignored.
    pub const NOOP: u8 = 0x04;
    /// An opaque connection identifier, at most 128 bytes.
    pub const UNIQUE_ID: u8 = 0x05;
    /// What the proxy learnt from the client's TLS connection.
    pub const SSL: u8 = 0x20;
    /// SSL sub-TLV: the TLS version, US-ASCII (`TLSv1.3`).
    pub const SSL_VERSION: u8 = 0x21;
    /// SSL sub-TLV: the Common Name of the client certificate's subject, UTF-8.
    pub const SSL_CN: u8 = 0x22;
    /// SSL sub-TLV: the cipher name, US-ASCII.
    pub const SSL_CIPHER: u8 = 0x23;
    /// SSL sub-TLV: the algorithm that signed the client certificate, US-ASCII.
    pub const SSL_SIG_ALG: u8 = 0x24;
    /// SSL sub-TLV: the algorithm of the client certificate's key, US-ASCII.
    pub const SSL_KEY_ALG: u8 = 0x25;
    /// The network namespace name, US-ASCII.
    pub const NETNS: u8 = 0x30;
}

/// Bounds on what [`decode_proxy_header`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyLimits {
    /// The largest v2 length field accepted: the bytes after the 16-byte fixed part (addresses
    /// and TLVs). Default [`DEFAULT_MAX_V2_LEN`] (4096); the field itself cannot exceed 65535.
    pub max_v2_len: u16,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_v2_len: DEFAULT_MAX_V2_LEN,
        }
    }
}

impl ProxyLimits {
    /// The default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// These limits with another bound on the v2 length field.
    pub fn max_v2_len(mut self, max: u16) -> Self {
        self.max_v2_len = max;
        self
    }
}

/// The version of a PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    /// The human-readable v1.
    V1,
    /// The binary v2.
    V2,
}

/// What the sender says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyCommand {
    /// The connection is relayed for a client: the addresses are the client's. Every v1 header
    /// (`UNKNOWN` included) says this.
    Proxy,
    /// The proxy speaks for itself (a health check, say): use the connection's own addresses.
    Local,
}

/// A decoded PROXY header, borrowing from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyHeader<'a> {
    /// v1 or v2.
    pub version: ProxyVersion,
    /// `Proxy` or `Local` (v2 only).
    pub command: ProxyCommand,
    /// The original (source, destination) addresses; `None` for v1 `UNKNOWN` and v2 `LOCAL`.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// The TLVs of a v2 header (none for v1), already checked.
    pub tlvs: Tlvs<'a>,
    /// How many bytes the header took.
    pub len: usize,
}

/// A malformed or unsupported PROXY header. The texts are meant for a server's log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The bytes cannot start a PROXY header (of either version).
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A v1 header that breaks the syntax.
    #[error("invalid PROXY protocol v1 header: {reason}")]
    InvalidV1 {
        /// What is wrong.
        reason: &'static str,
    },
    /// A v2 header whose version nibble is not 2.
    #[error("unsupported PROXY protocol version {version} in a v2 header (expected 2)")]
    UnsupportedVersion {
        /// The high nibble of byte 13.
        version: u8,
    },
    /// A v2 command other than LOCAL (0x0) and PROXY (0x1).
    #[error("invalid PROXY protocol v2 command 0x{command:x}")]
    InvalidCommand {
        /// The low nibble of byte 13.
        command: u8,
    },
    /// A v2 address family and protocol pgssl does not decode.
    #[error(
        "PROXY protocol v2 address family {} (0x{family:02x}) is not supported",
        family_name(*family)
    )]
    UnsupportedFamily {
        /// Byte 14: family in the high nibble, transport protocol in the low one.
        family: u8,
    },
    /// A v2 length field above [`ProxyLimits::max_v2_len`].
    #[error(
        "PROXY protocol v2 header too long ({len} bytes after the 16-byte fixed part, at most {max})"
    )]
    V2TooLong {
        /// The length field.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A v2 length field shorter than the address block of its family.
    #[error(
        "invalid PROXY protocol v2 header: length {len} is shorter than the {needed}-byte address block"
    )]
    V2AddressesTruncated {
        /// The length field.
        len: usize,
        /// The size of the address block.
        needed: usize,
    },
    /// A TLV that overruns its container, or whose value breaks its type's rules.
    #[error("invalid PROXY protocol v2 TLV 0x{kind:02x}: {reason}")]
    InvalidTlv {
        /// The TLV's type.
        kind: u8,
        /// What is wrong.
        reason: &'static str,
    },
    /// The CRC32C TLV does not match the header.
    #[error(
        "PROXY protocol v2 CRC32C mismatch (header says 0x{received:08x}, computed 0x{computed:08x})"
    )]
    Crc32cMismatch {
        /// The checksum in the TLV.
        received: u32,
        /// The checksum of the header with the TLV's value zeroed.
        computed: u32,
    },
}

fn family_name(family: u8) -> &'static str {
    match family {
        0x00 => "UNSPEC",
        0x11 => "TCP over IPv4",
        0x12 => "UDP over IPv4",
        0x21 => "TCP over IPv6",
        0x22 => "UDP over IPv6",
        0x31 => "UNIX stream",
        0x32 => "UNIX datagram",
        _ => "unknown",
    }
}

/// The size of the address block of a v2 family, `None` for a byte the specification does not
/// define.
fn address_block_len(family: u8) -> Option<usize> {
    match family {
        0x00 => Some(0),
        0x11 | 0x12 => Some(12),
        0x21 | 0x22 => Some(36),
        0x31 | 0x32 => Some(216),
        _ => None,
    }
}

/// Whether `buf` starts a PROXY header: `Some(true)` once the v1 prefix `PROXY ` or the v2
/// signature is complete, `Some(false)` as soon as a byte rules both out, `None` while `buf`
/// is a strict prefix of either (an empty buffer included).
pub fn starts_with_proxy_header(buf: &[u8]) -> Option<bool> {
    let mut undecided = false;
    for sig in [&V1_PREFIX[..], &V2_SIGNATURE[..]] {
        let n = buf.len().min(sig.len());
        if buf[..n] == sig[..n] {
            if n == sig.len() {
                return Some(true);
            }
            undecided = true;
        }
    }
    if undecided { None } else { Some(false) }
}

/// Decodes the PROXY header (v1 or v2) at the start of `buf`.
///
/// [`ProxyError::NotProxy`] as soon as the bytes cannot start a header. While the header is
/// incomplete, `Partial(n)`: at least `n` more bytes are needed, and `buf.len() + n` never
/// exceeds the header's end, [`V1_MAX_LEN`] for v1, or 16 + `limits.max_v2_len` for v2. Errors
/// in the fixed part of a v2 header (version, command, family, length) are reported as soon as
/// their byte is there, without waiting for the rest; a v1 line without a CRLF within 107 bytes
/// is refused.
///
/// ```
/// use pgssl::wire::Decoded;
/// use pgssl::wire::proxy::{ProxyLimits, decode_proxy_header};
///
/// let buf = b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 5432\r\n\x00\x00\x00\x08\x04\xd2\x16\x2f";
/// match decode_proxy_header(buf, &ProxyLimits::default()).unwrap() {
///     Decoded::Complete(header, used) => {
///         assert_eq!(header.addresses.unwrap().0.to_string(), "192.0.2.1:56324");
///         assert_eq!(&buf[used..], b"\x00\x00\x00\x08\x04\xd2\x16\x2f"); // the SSLRequest
///     }
///     Decoded::Partial(more) => { /* read at least `more` bytes and call again */ let _ = more; }
/// }
/// ```
pub fn decode_proxy_header<'a>(
    buf: &'a [u8],
    limits: &ProxyLimits,
) -> Result<Decoded<ProxyHeader<'a>>, ProxyError> {
    match buf.first() {
        Some(b'P') => decode_v1(buf),
        Some(b'\r') => decode_v2(buf, limits),
        Some(_) => Err(ProxyError::NotProxy),
        None => Ok(Decoded::Partial(V1_MIN_LEN.min(V2_FIXED_LEN))),
    }
}

// ---------------------------------------------------------------------------------------------
// v1

fn v1_err(reason: &'static str) -> ProxyError {
    ProxyError::InvalidV1 { reason }
}

fn decode_v1(buf: &[u8]) -> Result<Decoded<ProxyHeader<'_>>, ProxyError> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if window.len() == V1_MAX_LEN {
            return Err(v1_err("no CRLF within 107 bytes"));
        }
        return Ok(Decoded::Partial(
            V1_MIN_LEN.saturating_sub(buf.len()).max(1),
        ));
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(v1_err("line feed without a carriage return"));
    }
    let len = lf + 1;
    let line = &buf[V1_PREFIX.len()..lf - 1];
    let addresses = parse_v1_line(line)?;
    Ok(Decoded::Complete(
        ProxyHeader {
            version: ProxyVersion::V1,
            command: ProxyCommand::Proxy,
            addresses,
            tlvs: Tlvs::EMPTY,
            len,
        },
        len,
    ))
}

/// Parses what follows `PROXY ` up to the CR.
fn parse_v1_line(line: &[u8]) -> Result<Option<(SocketAddr, SocketAddr)>, ProxyError> {
    if let Some(rest) = line.strip_prefix(b"UNKNOWN") {
        return match rest.first() {
            None | Some(b' ') if !rest.contains(&b'\r') => Ok(None),
            None | Some(b' ') => Err(v1_err("carriage return inside the line")),
            Some(_) => Err(v1_err("unknown protocol (expected TCP4, TCP6 or UNKNOWN)")),
        };
    }
    let mut fields = line.split(|&b| b == b' ');
    let proto = fields.next().unwrap_or_default();
    let v6 = match proto {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(v1_err("unknown protocol (expected TCP4, TCP6 or UNKNOWN)")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(v1_err(
            "expected exactly four fields after the protocol, separated by single spaces",
        ));
    };
    let (sport, dport) = (parse_port(sport)?, parse_port(dport)?);
    let (src, dst) = if v6 {
        (
            SocketAddr::V6(SocketAddrV6::new(parse_ipv6(src)?, sport, 0, 0)),
            SocketAddr::V6(SocketAddrV6::new(parse_ipv6(dst)?, dport, 0, 0)),
        )
    } else {
        (
            SocketAddr::V4(SocketAddrV4::new(parse_ipv4(src)?, sport)),
            SocketAddr::V4(SocketAddrV4::new(parse_ipv4(dst)?, dport)),
        )
    };
    Ok(Some((src, dst)))
}

/// A decimal number of 1..=`max_digits` digits, without a leading zero unless it is `0`.
fn parse_decimal(field: &[u8], max_digits: usize) -> Option<u32> {
    if field.is_empty()
        || field.len() > max_digits
        || (field.len() > 1 && field[0] == b'0')
        || !field.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    Some(
        field
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0')),
    )
}

fn parse_port(field: &[u8]) -> Result<u16, ProxyError> {
    parse_decimal(field, 5)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(v1_err(
            "invalid port (expected 0..=65535 in decimal without leading zeros)",
        ))
}

fn parse_ipv4(field: &[u8]) -> Result<Ipv4Addr, ProxyError> {
    let err = || v1_err("invalid IPv4 address (expected a dotted quad without leading zeros)");
    let mut octets = [0u8; 4];
    let mut parts = field.split(|&b| b == b'.');
    for o in &mut octets {
        let part = parts.next().ok_or_else(err)?;
        *o = parse_decimal(part, 3)
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(err)?;
    }
    if parts.next().is_some() {
        return Err(err());
    }
    Ok(Ipv4Addr::from(octets))
}

fn parse_ipv6(field: &[u8]) -> Result<Ipv6Addr, ProxyError> {
    let err = || v1_err("invalid IPv6 address");
    // Only hex digits, ':' and '.' (an embedded IPv4 tail); std parses the rest strictly.
    if !field
        .iter()
        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err(err());
    }
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(err)
}

// ---------------------------------------------------------------------------------------------
// v2

fn decode_v2<'a>(
    buf: &'a [u8],
    limits: &ProxyLimits,
) -> Result<Decoded<ProxyHeader<'a>>, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::NotProxy);
    }
    let command = match buf.get(12) {
        None => return Ok(Decoded::Partial(V2_FIXED_LEN - buf.len())),
        Some(&b) if b >> 4 != 2 => return Err(ProxyError::UnsupportedVersion { version: b >> 4 }),
        Some(&b) => match b & 0x0f {
            0 => ProxyCommand::Local,
            1 => ProxyCommand::Proxy,
            command => return Err(ProxyError::InvalidCommand { command }),
        },
    };
    let Some(&family) = buf.get(13) else {
        return Ok(Decoded::Partial(V2_FIXED_LEN - buf.len()));
    };
    let block = match (command, address_block_len(family)) {
        (ProxyCommand::Proxy, _) if family != 0x11 && family != 0x21 => {
            return Err(ProxyError::UnsupportedFamily { family });
        }
        (_, Some(block)) => block,
        (_, None) => return Err(ProxyError::UnsupportedFamily { family }),
    };
    if buf.len() < V2_FIXED_LEN {
        return Ok(Decoded::Partial(V2_FIXED_LEN - buf.len()));
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let max = usize::from(limits.max_v2_len);
    if len > max {
        return Err(ProxyError::V2TooLong { len, max });
    }
    if len < block {
        return Err(ProxyError::V2AddressesTruncated { len, needed: block });
    }
    let total = V2_FIXED_LEN + len;
    if buf.len() < total {
        return Ok(Decoded::Partial(total - buf.len()));
    }
    let header = &buf[..total];
    let addrs = &header[V2_FIXED_LEN..V2_FIXED_LEN + block];
    let addresses = match command {
        ProxyCommand::Local => None,
        ProxyCommand::Proxy if family == 0x11 => Some((
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]),
                u16::from_be_bytes([addrs[8], addrs[9]]),
            )),
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]),
                u16::from_be_bytes([addrs[10], addrs[11]]),
            )),
        )),
        ProxyCommand::Proxy => {
            let ip = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
            Some((
                SocketAddr::V6(SocketAddrV6::new(
                    ip(&addrs[..16]),
                    u16::from_be_bytes([addrs[32], addrs[33]]),
                    0,
                    0,
                )),
                SocketAddr::V6(SocketAddrV6::new(
                    ip(&addrs[16..32]),
                    u16::from_be_bytes([addrs[34], addrs[35]]),
                    0,
                    0,
                )),
            ))
        }
    };
    let tlv_start = V2_FIXED_LEN + block;
    check_tlvs(header, tlv_start)?;
    Ok(Decoded::Complete(
        ProxyHeader {
            version: ProxyVersion::V2,
            command,
            addresses,
            tlvs: Tlvs {
                rest: &header[tlv_start..],
            },
            len: total,
        },
        total,
    ))
}

/// Splits the first TLV off `rest`: (type, value, what follows).
fn split_tlv(rest: &[u8]) -> Result<(u8, &[u8], &[u8]), ProxyError> {
    let kind = rest[0];
    if rest.len() < 3 {
        return Err(ProxyError::InvalidTlv {
            kind,
            reason: "truncated TLV header",
        });
    }
    let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
    if rest.len() - 3 < len {
        return Err(ProxyError::InvalidTlv {
            kind,
            reason: "value overruns its container",
        });
    }
    Ok((kind, &rest[3..3 + len], &rest[3 + len..]))
}

/// Checks every TLV of `header` from `start`, and the CRC32C if there is one.
fn check_tlvs(header: &[u8], start: usize) -> Result<(), ProxyError> {
    let mut rest = &header[start..];
    let mut crc: Option<(usize, u32)> = None;
    while !rest.is_empty() {
        let offset = header.len() - rest.len();
        let (kind, value, next) = split_tlv(rest)?;
        let bad = |reason| Err(ProxyError::InvalidTlv { kind, reason });
        match kind {
            tlv_type::CRC32C => {
                if value.len() != 4 {
                    return bad("a CRC32C value is 4 bytes");
                }
                if crc.is_some() {
                    return bad("more than one CRC32C TLV");
                }
                let received = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                crc = Some((offset + 3, received));
            }
            tlv_type::UNIQUE_ID if value.len() > MAX_UNIQUE_ID_LEN => {
                return bad("a UNIQUE_ID is at most 128 bytes");
            }
            tlv_type::SSL => {
                if value.len() < 5 {
                    return bad("an SSL TLV starts with 5 bytes of client flags and verify result");
                }
                let mut sub = &value[5..];
                while !sub.is_empty() {
                    sub = split_tlv(sub)?.2;
                }
            }
            _ => {}
        }
        rest = next;
    }
    if let Some((at, received)) = crc {
        let computed = crc32c_update(
            crc32c_update(crc32c_update(!0, &header[..at]), &[0; 4]),
            &header[at + 4..],
        ) ^ !0;
        if computed != received {
            return Err(ProxyError::Crc32cMismatch { received, computed });
        }
    }
    Ok(())
}

/// The TLVs of a v2 header, checked when the header was decoded; [`Tlvs::iter`] yields them as
/// [`Tlv`]s in their order on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
}

impl<'a> Tlvs<'a> {
    const EMPTY: Tlvs<'static> = Tlvs { rest: &[] };

    /// TLVs from an area that [`decode_proxy_header`] already checked (taken from
    /// [`Tlvs::raw`]). On any other bytes the iterator stops at the first malformed TLV.
    pub(crate) fn from_checked(rest: &'a [u8]) -> Self {
        Tlvs { rest }
    }

    /// The raw TLV area (after the addresses), as received.
    pub fn raw(&self) -> &'a [u8] {
        self.rest
    }

    /// An iterator over the TLVs, in wire order.
    pub fn iter(&self) -> TlvIter<'a> {
        TlvIter { rest: self.rest }
    }

    /// Whether there are no TLVs.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The value of the first TLV of type `kind`, raw.
    pub fn get(&self, kind: u8) -> Option<&'a [u8]> {
        let mut rest = self.rest;
        while let Ok((k, value, next)) = split_tlv_checked(rest) {
            if k == kind {
                return Some(value);
            }
            rest = next;
        }
        None
    }

    /// The ALPN TLV's value.
    pub fn alpn(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::ALPN)
    }

    /// The AUTHORITY TLV's value (the host name the client asked for).
    pub fn authority(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::AUTHORITY)
    }

    /// The UNIQUE_ID TLV's value.
    pub fn unique_id(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::UNIQUE_ID)
    }

    /// The NETNS TLV's value.
    pub fn netns(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::NETNS)
    }

    /// The SSL TLV.
    pub fn ssl(&self) -> Option<SslTlv<'a>> {
        self.get(tlv_type::SSL).map(SslTlv::from_checked)
    }
}

/// `split_tlv` on an area that was checked: fails only at its end.
fn split_tlv_checked(rest: &[u8]) -> Result<(u8, &[u8], &[u8]), ()> {
    if rest.is_empty() {
        return Err(());
    }
    split_tlv(rest).map_err(|_| ())
}

impl<'a> IntoIterator for Tlvs<'a> {
    type Item = Tlv<'a>;
    type IntoIter = TlvIter<'a>;

    fn into_iter(self) -> TlvIter<'a> {
        self.iter()
    }
}

/// An iterator over [`Tlvs`], in wire order.
#[derive(Clone, Debug)]
pub struct TlvIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Tlv<'a>;

    fn next(&mut self) -> Option<Tlv<'a>> {
        let (kind, value, next) = split_tlv_checked(self.rest).ok()?;
        self.rest = next;
        Some(match kind {
            tlv_type::ALPN => Tlv::Alpn(value),
            tlv_type::AUTHORITY => Tlv::Authority(value),
            tlv_type::CRC32C => {
                Tlv::Crc32c(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
            }
            tlv_type::NOOP => Tlv::Noop(value),
            tlv_type::UNIQUE_ID => Tlv::UniqueId(value),
            tlv_type::SSL => Tlv::Ssl(SslTlv::from_checked(value)),
            tlv_type::NETNS => Tlv::NetNs(value),
            kind => Tlv::Other { kind, value },
        })
    }
}

/// One TLV of a v2 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tlv<'a> {
    /// ALPN (0x01): the application protocol the client negotiated, e.g. `postgresql`.
    Alpn(&'a [u8]),
    /// AUTHORITY (0x02): the host name the client used (SNI), UTF-8.
    Authority(&'a [u8]),
    /// CRC32C (0x03): the header's checksum, already verified.
    Crc32c(u32),
    /// NOOP (0x04): padding.
    Noop(&'a [u8]),
    /// UNIQUE_ID (0x05): an opaque connection id, at most 128 bytes.
    UniqueId(&'a [u8]),
    /// SSL (0x20): the client's TLS connection to the proxy.
    Ssl(SslTlv<'a>),
    /// NETNS (0x30): a network namespace name.
    NetNs(&'a [u8]),
    /// Any other type (0x06, 0xE0..=0xEF custom, 0xEE experimental, …), raw.
    Other {
        /// The type byte.
        kind: u8,
        /// The value.
        value: &'a [u8],
    },
}

/// The SSL TLV: the client flags, the verify result and the sub-TLVs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SslTlv<'a> {
    /// The client bit field: [`SslTlv::CLIENT_SSL`], [`SslTlv::CLIENT_CERT_CONN`],
    /// [`SslTlv::CLIENT_CERT_SESS`].
    pub client: u8,
    /// The verify result: 0 when the client presented a certificate that was verified.
    pub verify: u32,
    sub: &'a [u8],
}

impl<'a> SslTlv<'a> {
    /// Client bit: the client connected over SSL/TLS.
    pub const CLIENT_SSL: u8 = 0x01;
    /// Client bit: the client gave a certificate on this connection.
    pub const CLIENT_CERT_CONN: u8 = 0x02;
    /// Client bit: the client gave a certificate at least once in this TLS session.
    pub const CLIENT_CERT_SESS: u8 = 0x04;

    fn from_checked(value: &'a [u8]) -> Self {
        SslTlv {
            client: value[0],
            verify: u32::from_be_bytes([value[1], value[2], value[3], value[4]]),
            sub: &value[5..],
        }
    }

    /// Whether the client connected over TLS.
    pub fn client_ssl(&self) -> bool {
        self.client & Self::CLIENT_SSL != 0
    }

    /// Whether the client presented a certificate on this connection and it was verified.
    pub fn client_cert_verified(&self) -> bool {
        self.client & Self::CLIENT_CERT_CONN != 0 && self.verify == 0
    }

    /// The sub-TLVs, in wire order.
    pub fn sub_tlvs(&self) -> SslSubTlvs<'a> {
        SslSubTlvs { rest: self.sub }
    }

    /// The raw value of the first sub-TLV of type `kind`.
    pub fn get(&self, kind: u8) -> Option<&'a [u8]> {
        Tlvs { rest: self.sub }.get(kind)
    }

    /// SSL_VERSION (0x21), e.g. `TLSv1.3`.
    pub fn version(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::SSL_VERSION)
    }

    /// SSL_CN (0x22): the client certificate's Common Name.
    pub fn cn(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::SSL_CN)
    }

    /// SSL_CIPHER (0x23).
    pub fn cipher(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::SSL_CIPHER)
    }

    /// SSL_SIG_ALG (0x24).
    pub fn sig_alg(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::SSL_SIG_ALG)
    }

    /// SSL_KEY_ALG (0x25).
    pub fn key_alg(&self) -> Option<&'a [u8]> {
        self.get(tlv_type::SSL_KEY_ALG)
    }
}

/// The sub-TLVs of an [`SslTlv`], in wire order.
#[derive(Clone, Debug)]
pub struct SslSubTlvs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SslSubTlvs<'a> {
    type Item = SslSubTlv<'a>;

    fn next(&mut self) -> Option<SslSubTlv<'a>> {
        let (kind, value, next) = split_tlv_checked(self.rest).ok()?;
        self.rest = next;
        Some(match kind {
            tlv_type::SSL_VERSION => SslSubTlv::Version(value),
            tlv_type::SSL_CN => SslSubTlv::Cn(value),
            tlv_type::SSL_CIPHER => SslSubTlv::Cipher(value),
            tlv_type::SSL_SIG_ALG => SslSubTlv::SigAlg(value),
            tlv_type::SSL_KEY_ALG => SslSubTlv::KeyAlg(value),
            kind => SslSubTlv::Other { kind, value },
        })
    }
}

/// One sub-TLV of the SSL TLV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslSubTlv<'a> {
    /// SSL_VERSION (0x21): the TLS version, e.g. `TLSv1.3`.
    Version(&'a [u8]),
    /// SSL_CN (0x22): the client certificate's Common Name.
    Cn(&'a [u8]),
    /// SSL_CIPHER (0x23): the cipher name.
    Cipher(&'a [u8]),
    /// SSL_SIG_ALG (0x24): the algorithm that signed the client certificate.
    SigAlg(&'a [u8]),
    /// SSL_KEY_ALG (0x25): the algorithm of the client certificate's key.
    KeyAlg(&'a [u8]),
    /// Any other type, raw (an SSL TLV's sub-TLVs are not interpreted as top-level TLVs).
    Other {
        /// The type byte.
        kind: u8,
        /// The value.
        value: &'a [u8],
    },
}

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Feeds `data` into a running (pre-inverted) CRC32C.
fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The CRC32C of `data`.
fn crc32c(data: &[u8]) -> u32 {
    crc32c_update(!0, data) ^ !0
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends a v1 header for a connection from `src` to `dst`: `TCP4` or `TCP6`, or
/// `PROXY UNKNOWN\r\n` when the two are of different families.
pub fn encode_proxy_v1(buf: &mut BytesMut, src: SocketAddr, dst: SocketAddr) {
    let proto = match (src, dst) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => "TCP4",
        (SocketAddr::V6(_), SocketAddr::V6(_)) => "TCP6",
        _ => {
            buf.put_slice(b"PROXY UNKNOWN\r\n");
            return;
        }
    };
    buf.reserve(V1_MAX_LEN);
    // Writing into a BytesMut cannot fail.
    let _ = write!(
        buf,
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    );
}

/// Appends a v2 header: `command`, the (source, destination) addresses, the `(type, value)`
/// TLVs in order, and with `with_crc32c` a CRC32C TLV last, computed over the whole header.
///
/// Addresses of one family give TCP over IPv4 or IPv6; mixed families are both written as IPv6
/// (the IPv4 one mapped, `::ffff:a.b.c.d`); `None` gives UNSPEC with no address block, which
/// is what `Local` wants (pgssl's decoder refuses UNSPEC with `Proxy`).
///
/// # Panics
///
/// If a TLV value is longer than 65535 bytes or the header after its fixed part would be.
pub fn encode_proxy_v2(
    buf: &mut BytesMut,
    command: ProxyCommand,
    addrs: Option<(SocketAddr, SocketAddr)>,
    tlvs: &[(u8, &[u8])],
    with_crc32c: bool,
) {
    let start = buf.len();
    buf.put_slice(V2_SIGNATURE);
    buf.put_u8(match command {
        ProxyCommand::Local => 0x20,
        ProxyCommand::Proxy => 0x21,
    });
    let family_at = buf.len();
    buf.put_u8(0);
    buf.put_u16(0);
    let family = match addrs {
        None => 0x00,
        Some((SocketAddr::V4(s), SocketAddr::V4(d))) => {
            buf.put_slice(&s.ip().octets());
            buf.put_slice(&d.ip().octets());
            buf.put_u16(s.port());
            buf.put_u16(d.port());
            0x11
        }
        Some((s, d)) => {
            let v6 = |a: SocketAddr| match a.ip() {
                std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                std::net::IpAddr::V6(ip) => ip,
            };
            buf.put_slice(&v6(s).octets());
            buf.put_slice(&v6(d).octets());
            buf.put_u16(s.port());
            buf.put_u16(d.port());
            0x21
        }
    };
    for &(kind, value) in tlvs {
        let len = u16::try_from(value.len()).expect("a TLV value is at most 65535 bytes");
        buf.put_u8(kind);
        buf.put_u16(len);
        buf.put_slice(value);
    }
    if with_crc32c {
        buf.put_u8(tlv_type::CRC32C);
        buf.put_u16(4);
        buf.put_u32(0);
    }
    let len = u16::try_from(buf.len() - start - V2_FIXED_LEN)
        .expect("a PROXY v2 header is at most 65535 bytes after its fixed part");
    buf[family_at] = family;
    buf[family_at + 1..family_at + 3].copy_from_slice(&len.to_be_bytes());
    if with_crc32c {
        let end = buf.len();
        let crc = crc32c(&buf[start..end]);
        buf[end - 4..end].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ProxyLimits {
        ProxyLimits::default()
    }

    fn v1(s: &str) -> Result<Decoded<ProxyHeader<'_>>, ProxyError> {
        decode_proxy_header(s.as_bytes(), &limits())
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // Streaming gives the same as one pass.
        let split = crc32c_update(crc32c_update(!0, b"1234"), b"56789") ^ !0;
        assert_eq!(split, 0xE306_9283);
    }

    #[test]
    fn detection() {
        assert_eq!(starts_with_proxy_header(b""), None);
        assert_eq!(starts_with_proxy_header(b"PROX"), None);
        assert_eq!(starts_with_proxy_header(b"PROXY "), Some(true));
        assert_eq!(starts_with_proxy_header(b"PROXY"), None);
        assert_eq!(starts_with_proxy_header(b"PROXX"), Some(false));
        assert_eq!(starts_with_proxy_header(b"\r\n\r\n\0\r\nQUI"), None);
        assert_eq!(starts_with_proxy_header(V2_SIGNATURE), Some(true));
        assert_eq!(starts_with_proxy_header(&[0, 0, 0, 8]), Some(false));
        assert_eq!(starts_with_proxy_header(&[0x16, 3, 1]), Some(false));
        assert_eq!(
            decode_proxy_header(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f], &limits()),
            Err(ProxyError::NotProxy)
        );
        assert_eq!(
            decode_proxy_header(b"PROXZ", &limits()),
            Err(ProxyError::NotProxy)
        );
        assert_eq!(
            decode_proxy_header(b"\r\n\r\n\0\r\nQUIX", &limits()),
            Err(ProxyError::NotProxy)
        );
    }

    #[test]
    fn v1_tcp4() {
        let s = "PROXY TCP4 192.168.0.1 10.0.0.2 56324 5432\r\nrest";
        let Decoded::Complete(h, n) = v1(s).unwrap() else {
            panic!()
        };
        assert_eq!(n, s.len() - 4);
        assert_eq!(h.len, n);
        assert_eq!(
            h.addresses,
            Some((
                "192.168.0.1:56324".parse().unwrap(),
                "10.0.0.2:5432".parse().unwrap()
            ))
        );
        assert_eq!(
            (h.version, h.command),
            (ProxyVersion::V1, ProxyCommand::Proxy)
        );
        assert!(h.tlvs.is_empty());
    }

    #[test]
    fn v1_errors_name_their_reason() {
        assert_eq!(
            v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n")
                .unwrap_err()
                .to_string(),
            "invalid PROXY protocol v1 header: invalid port (expected 0..=65535 in decimal without leading zeros)"
        );
    }
}
