//! The PROXY protocol codec (`pgssl::wire::proxy`): every rule of the v1 and v2 decoders, the
//! encoders' round trips, split input, hostile input, and properties over arbitrary bytes.
//!
//! The v2 headers of the rule tests are written by hand (`v2()`), not with the crate's encoder.

use std::net::SocketAddr;

use bytes::BytesMut;
use proptest::prelude::*;

use pgssl::wire::Decoded;
use pgssl::wire::proxy::{
    ProxyCommand, ProxyError, ProxyHeader, ProxyLimits, ProxyVersion, SslSubTlv, SslTlv, Tlv,
    V1_MAX_LEN, V2_SIGNATURE, decode_proxy_header, encode_proxy_v1, encode_proxy_v2,
    starts_with_proxy_header, tlv_type,
};

fn limits() -> ProxyLimits {
    ProxyLimits::default()
}

fn decode(buf: &[u8]) -> Result<Decoded<ProxyHeader<'_>>, ProxyError> {
    decode_proxy_header(buf, &limits())
}

fn complete(buf: &[u8]) -> ProxyHeader<'_> {
    match decode(buf) {
        Ok(Decoded::Complete(h, n)) => {
            assert_eq!(h.len, n);
            h
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn err(buf: &[u8]) -> ProxyError {
    match decode(buf) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A v2 header by hand: version/command byte, family byte, address block, TLV area; the length
/// field is computed unless `len` is given.
fn v2(ver_cmd: u8, family: u8, addrs: &[u8], tlvs: &[u8], len: Option<u16>) -> Vec<u8> {
    let mut v = V2_SIGNATURE.to_vec();
    v.push(ver_cmd);
    v.push(family);
    let len = len.unwrap_or((addrs.len() + tlvs.len()) as u16);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(addrs);
    v.extend_from_slice(tlvs);
    v
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    v.extend_from_slice(value);
    v
}

const TCP4_ADDRS: [u8; 12] = [192, 0, 2, 1, 10, 0, 0, 2, 0xdc, 0x04, 0x15, 0x38];

/// The header split at every byte: every prefix is `Partial` (or the same error, when the
/// header is refused early), asking for no more than `header_len` bytes in all (the header's
/// length, or the version's bound for a malformed one).
fn check_split(buf: &[u8], header_len: usize) {
    let whole = decode(buf);
    for k in 0..header_len.min(buf.len()) {
        match decode(&buf[..k]) {
            Ok(Decoded::Partial(n)) => {
                assert!(n >= 1);
                assert!(
                    k + n <= header_len,
                    "prefix {k} asks for {n} of {header_len}"
                );
            }
            other => {
                assert!(whole.is_err(), "prefix {k}: {other:?}");
                assert_eq!(other.unwrap_err(), whole.clone().unwrap_err());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Detection

#[test]
fn postgres_and_tls_first_bytes_are_not_proxy() {
    for first in [
        &[0u8, 0, 0, 8, 4, 0xd2, 0x16, 0x2f][..],
        &[0x16, 3, 1, 0, 5],
        b"GET / ",
    ] {
        assert_eq!(starts_with_proxy_header(first), Some(false));
        assert_eq!(err(first), ProxyError::NotProxy);
    }
    assert_eq!(starts_with_proxy_header(b"PRO"), None);
    assert_eq!(starts_with_proxy_header(b"\r\n"), None);
    assert_eq!(starts_with_proxy_header(b"PROXY TCP4"), Some(true));
    assert_eq!(err(b"PROXY\t"), ProxyError::NotProxy);
    assert_eq!(err(b"\r\n\r\n\0\r\nQUIT\r"), ProxyError::NotProxy);
    assert_eq!(
        ProxyError::NotProxy.to_string(),
        "not a PROXY protocol header"
    );
    assert!(matches!(decode(b""), Ok(Decoded::Partial(n)) if n >= 1));
}

// ---------------------------------------------------------------------------------------------
// v1

#[test]
fn v1_tcp4_tcp6_unknown() {
    let h = complete(b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 5432\r\n");
    assert_eq!(h.version, ProxyVersion::V1);
    assert_eq!(h.command, ProxyCommand::Proxy);
    assert_eq!(
        h.addresses,
        Some((addr("192.0.2.1:56324"), addr("10.0.0.2:5432")))
    );
    let h = complete(b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.2 0 65535\r\nSSL");
    assert_eq!(
        h.addresses,
        Some((addr("[2001:db8::1]:0"), addr("[::ffff:10.0.0.2]:65535")))
    );
    assert_eq!(h.len, 48);
    let h = complete(b"PROXY UNKNOWN\r\n");
    assert_eq!((h.addresses, h.len), (None, 15));
    let h = complete(b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
    assert_eq!(h.addresses, None);
}

#[test]
fn v1_length_bound() {
    // 107 bytes including CRLF is accepted...
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_LEN - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(complete(&line).len, V1_MAX_LEN);
    // ... 108 is not, and 107 bytes without a line feed is refused without reading on.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN - 1, b'x');
    long.extend_from_slice(b"\r\n");
    let e = err(&long);
    assert_eq!(
        e.to_string(),
        "invalid PROXY protocol v1 header: no CRLF within 107 bytes"
    );
    assert_eq!(err(&long[..V1_MAX_LEN]), e);
    assert!(matches!(
        decode(&long[..V1_MAX_LEN - 1]),
        Ok(Decoded::Partial(1))
    ));
}

#[test]
fn v1_strict_syntax() {
    let bad: &[&[u8]] = &[
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",        // LF without CR
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",    // stray CR
        b"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",     // tab
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",     // double space
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",     // trailing space
        b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",     // double space after PROXY
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",        // missing field
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",    // extra field
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",  // port too big
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",     // port with a leading zero
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",     // sign
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",     // sign
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n", // too many digits
        b"PROXY TCP4 010.0.0.1 5.6.7.8 1 2\r\n",    // octet with a leading zero
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",    // octet too big
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",        // three octets
        b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",    // five octets
        b"PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n",       // empty octet
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",          // IPv6 in TCP4
        b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",          // IPv6 in TCP4
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",          // IPv4 in TCP6
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",     // zone index
        b"PROXY TCP6 1::2::3 ::1 1 2\r\n",          // two ::
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",      // unknown protocol
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",      // lower case
        b"PROXY UNKNOWNX\r\n",                      // not UNKNOWN
        b"PROXY \r\n",                              // no protocol
        b"PROXY UNKNOWN \r\r\n",                    // CR inside UNKNOWN's tail
    ];
    for line in bad {
        let e = err(line);
        assert!(
            matches!(e, ProxyError::InvalidV1 { .. }),
            "{:?}: {e:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            e.to_string()
                .starts_with("invalid PROXY protocol v1 header: "),
            "{e}"
        );
        // Not a panic and the same answer when split, never asking past 107 bytes.
        check_split(line, V1_MAX_LEN);
    }
    // The texts name the field.
    for (line, text) in [
        (
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"[..],
            "invalid port",
        ),
        (
            b"PROXY TCP4 010.0.0.1 5.6.7.8 1 2\r\n",
            "invalid IPv4 address",
        ),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "invalid IPv6 address"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "single spaces"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            "line feed without a carriage return",
        ),
    ] {
        assert!(err(line).to_string().contains(text), "{}", err(line));
    }
    // The bounds that are fine.
    let h = complete(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
    assert_eq!(
        h.addresses,
        Some((addr("0.0.0.0:0"), addr("255.255.255.255:65535")))
    );
}

#[test]
fn v1_split_at_every_byte() {
    for line in [
        &b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 5432\r\n"[..],
        b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
        b"PROXY UNKNOWN\r\n",
    ] {
        check_split(line, line.len());
        let mut more = line.to_vec();
        more.extend_from_slice(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]);
        assert_eq!(complete(&more), complete(line));
    }
}

// ---------------------------------------------------------------------------------------------
// v2

#[test]
fn v2_tcp4_and_tcp6() {
    let h4 = v2(0x21, 0x11, &TCP4_ADDRS, &[], None);
    let h = complete(&h4);
    assert_eq!(
        (h.version, h.command, h.len),
        (ProxyVersion::V2, ProxyCommand::Proxy, 28)
    );
    assert_eq!(
        h.addresses,
        Some((addr("192.0.2.1:56324"), addr("10.0.0.2:5432")))
    );
    assert!(h.tlvs.is_empty());

    let mut a6 = Vec::new();
    a6.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    a6.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    a6.extend_from_slice(&[0x12, 0x34, 0x15, 0x38]);
    let h6 = v2(0x21, 0x21, &a6, &[], None);
    let h = complete(&h6);
    assert_eq!(
        h.addresses,
        Some((addr("[2001:db8::1]:4660"), addr("[2001:db8::2]:5432")))
    );
    assert_eq!(h.len, 52);
    check_split(&h4, h4.len());
    check_split(&h6, h6.len());
}

#[test]
fn v2_local() {
    // LOCAL with UNSPEC: no addresses.
    let b = v2(0x20, 0x00, &[], &[], None);
    let h = complete(&b);
    assert_eq!(
        (h.command, h.addresses, h.len),
        (ProxyCommand::Local, None, 16)
    );
    // LOCAL with TCP4 (or even UNIX): the addresses are skipped and ignored, TLVs still read.
    let b = v2(0x20, 0x11, &TCP4_ADDRS, &tlv(tlv_type::NOOP, b""), None);
    let h = complete(&b);
    assert_eq!(h.addresses, None);
    assert_eq!(h.tlvs.iter().collect::<Vec<_>>(), [Tlv::Noop(b"")]);
    let b = v2(0x20, 0x31, &[0; 216], &[], None);
    let h = complete(&b);
    assert_eq!((h.addresses, h.len), (None, 232));
}

#[test]
fn v2_unsupported_families_are_named() {
    for (family, name) in [
        (0x00, "UNSPEC"),
        (0x12, "UDP over IPv4"),
        (0x22, "UDP over IPv6"),
        (0x31, "UNIX stream"),
        (0x32, "UNIX datagram"),
        (0x13, "unknown"),
        (0x41, "unknown"),
    ] {
        let b = v2(0x21, family, &[0; 216], &[], None);
        let e = err(&b);
        assert_eq!(e, ProxyError::UnsupportedFamily { family });
        assert_eq!(
            e.to_string(),
            format!("PROXY protocol v2 address family {name} (0x{family:02x}) is not supported")
        );
        // Refused as soon as the family byte is there.
        assert_eq!(err(&b[..14]), e);
    }
    // An undefined family with LOCAL too.
    assert_eq!(
        err(&v2(0x20, 0x13, &[], &[], None)),
        ProxyError::UnsupportedFamily { family: 0x13 }
    );
}

#[test]
fn v2_version_and_command() {
    for ver_cmd in [0x11u8, 0x31, 0x01, 0xf1] {
        let b = v2(ver_cmd, 0x11, &TCP4_ADDRS, &[], None);
        assert_eq!(
            err(&b[..13]),
            ProxyError::UnsupportedVersion {
                version: ver_cmd >> 4
            }
        );
    }
    assert_eq!(
        err(&v2(0x11, 0x11, &TCP4_ADDRS, &[], None)).to_string(),
        "unsupported PROXY protocol version 1 in a v2 header (expected 2)"
    );
    for ver_cmd in [0x22u8, 0x2f] {
        let b = v2(ver_cmd, 0x11, &TCP4_ADDRS, &[], None);
        assert_eq!(
            err(&b[..13]),
            ProxyError::InvalidCommand {
                command: ver_cmd & 0xf
            }
        );
    }
    assert_eq!(
        err(&v2(0x22, 0x11, &TCP4_ADDRS, &[], None)).to_string(),
        "invalid PROXY protocol v2 command 0x2"
    );
}

#[test]
fn v2_length_bounds() {
    // Above the limit: refused from the 16 fixed bytes alone.
    let b = v2(0x21, 0x11, &TCP4_ADDRS, &[], Some(65535));
    let e = err(&b[..16]);
    assert_eq!(
        e,
        ProxyError::V2TooLong {
            len: 65535,
            max: 4096
        }
    );
    assert_eq!(
        e.to_string(),
        "PROXY protocol v2 header too long (65535 bytes after the 16-byte fixed part, at most 4096)"
    );
    // 4096 is the default bound; a lower limit applies.
    let pad = tlv(tlv_type::NOOP, &vec![0; 4096 - 12 - 3]);
    let b = v2(0x21, 0x11, &TCP4_ADDRS, &pad, None);
    assert_eq!(complete(&b).len, 16 + 4096);
    let strict = ProxyLimits::new().max_v2_len(100);
    assert_eq!(
        decode_proxy_header(&b, &strict),
        Err(ProxyError::V2TooLong {
            len: 4096,
            max: 100
        })
    );
    // The bound itself is accepted, one more byte is not.
    let at = |n: usize| {
        v2(
            0x21,
            0x11,
            &TCP4_ADDRS,
            &tlv(tlv_type::NOOP, &vec![0; n - 15]),
            None,
        )
    };
    let strict = ProxyLimits::new().max_v2_len(100);
    assert_eq!(
        decode_proxy_header(&at(100), &strict).map(|d| matches!(d, Decoded::Complete(..))),
        Ok(true)
    );
    assert_eq!(
        decode_proxy_header(&at(101), &strict),
        Err(ProxyError::V2TooLong { len: 101, max: 100 })
    );
    assert_eq!(
        err(&at(4097)),
        ProxyError::V2TooLong {
            len: 4097,
            max: 4096
        }
    );
    let huge = ProxyLimits::new().max_v2_len(u16::MAX);
    assert!(matches!(
        decode_proxy_header(&b[..16], &huge),
        Ok(Decoded::Partial(4096))
    ));
    // Shorter than the address block.
    for (family, needed) in [(0x11u8, 12usize), (0x21, 36)] {
        let b = v2(0x21, family, &[], &[], Some(needed as u16 - 1));
        let e = err(&b);
        assert_eq!(
            e,
            ProxyError::V2AddressesTruncated {
                len: needed - 1,
                needed
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                "invalid PROXY protocol v2 header: length {} is shorter than the {needed}-byte address block",
                needed - 1
            )
        );
    }
}

#[test]
fn v2_tlvs_borrowed() {
    let mut ssl = vec![SslTlv::CLIENT_SSL | SslTlv::CLIENT_CERT_CONN, 0, 0, 0, 0];
    ssl.extend(tlv(tlv_type::SSL_VERSION, b"TLSv1.3"));
    ssl.extend(tlv(tlv_type::SSL_CN, b"alice"));
    ssl.extend(tlv(tlv_type::SSL_CIPHER, b"TLS_AES_256_GCM_SHA384"));
    ssl.extend(tlv(tlv_type::SSL_SIG_ALG, b"SHA256"));
    ssl.extend(tlv(tlv_type::SSL_KEY_ALG, b"RSA2048"));
    ssl.extend(tlv(0x26, b"?"));
    let mut area = Vec::new();
    area.extend(tlv(tlv_type::ALPN, b"postgresql"));
    area.extend(tlv(tlv_type::AUTHORITY, b"db.example.com"));
    area.extend(tlv(tlv_type::UNIQUE_ID, &[7; 128]));
    area.extend(tlv(tlv_type::SSL, &ssl));
    area.extend(tlv(tlv_type::NETNS, b"blue"));
    area.extend(tlv(0xe0, b"custom"));
    area.extend(tlv(tlv_type::NOOP, &[0; 3]));
    let b = v2(0x21, 0x11, &TCP4_ADDRS, &area, None);
    let h = complete(&b);
    assert_eq!(h.tlvs.raw(), &area[..]);
    assert_eq!(h.tlvs.alpn(), Some(&b"postgresql"[..]));
    assert_eq!(h.tlvs.authority(), Some(&b"db.example.com"[..]));
    assert_eq!(h.tlvs.unique_id(), Some(&[7; 128][..]));
    assert_eq!(h.tlvs.netns(), Some(&b"blue"[..]));
    assert_eq!(h.tlvs.get(0xe0), Some(&b"custom"[..]));
    assert_eq!(h.tlvs.get(0xe1), None);
    let s = h.tlvs.ssl().unwrap();
    assert!(s.client_ssl() && s.client_cert_verified());
    assert_eq!(s.version(), Some(&b"TLSv1.3"[..]));
    assert_eq!(s.cn(), Some(&b"alice"[..]));
    assert_eq!(s.cipher(), Some(&b"TLS_AES_256_GCM_SHA384"[..]));
    assert_eq!(s.sig_alg(), Some(&b"SHA256"[..]));
    assert_eq!(s.key_alg(), Some(&b"RSA2048"[..]));
    assert_eq!(s.sub_tlvs().count(), 6);
    let kinds: Vec<_> = h.tlvs.iter().map(|t| std::mem::discriminant(&t)).collect();
    assert_eq!(kinds.len(), 7);
    assert!(matches!(
        h.tlvs.iter().last(),
        Some(Tlv::Noop(v)) if v == [0; 3]
    ));
    assert!(h.tlvs.iter().any(|t| t
        == Tlv::Other {
            kind: 0xe0,
            value: b"custom"
        }));
    // The values point into the input.
    let alpn = h.tlvs.alpn().unwrap();
    assert!(b.as_ptr_range().contains(&alpn.as_ptr()));
    check_split(&b, b.len());

    // Sub-TLVs are SSL sub-TLVs, never read as top-level ones: an SSL or CRC32C type inside
    // is just another sub-TLV (this input made the fuzzer panic once).
    let mut nested = vec![1, 0, 0, 0, 0];
    nested.extend(tlv(tlv_type::SSL, b"\r\n"));
    nested.extend(tlv(tlv_type::CRC32C, b"x"));
    nested.extend(tlv(tlv_type::SSL_CN, b"bob"));
    let b = v2(0x21, 0x11, &TCP4_ADDRS, &tlv(tlv_type::SSL, &nested), None);
    let s = complete(&b).tlvs.ssl().unwrap();
    assert_eq!(
        s.sub_tlvs().collect::<Vec<_>>(),
        [
            SslSubTlv::Other {
                kind: 0x20,
                value: b"\r\n"
            },
            SslSubTlv::Other {
                kind: 0x03,
                value: b"x"
            },
            SslSubTlv::Cn(b"bob"),
        ]
    );
    assert_eq!(s.get(0x03), Some(&b"x"[..]));
    assert_eq!(s.cn(), Some(&b"bob"[..]));

    // An unverified certificate.
    let b = v2(
        0x21,
        0x11,
        &TCP4_ADDRS,
        &tlv(tlv_type::SSL, &[3, 0, 0, 0, 1]),
        None,
    );
    let s = complete(&b).tlvs.ssl().unwrap();
    assert!(s.client_ssl() && !s.client_cert_verified());
    assert_eq!(s.verify, 1);
}

#[test]
fn v2_hostile_tlvs() {
    let cases: Vec<(Vec<u8>, u8, &str)> = vec![
        (
            tlv(0x01, b"abc")[..5].to_vec(),
            0x01,
            "value overruns its container",
        ),
        (vec![0x01, 0x00], 0x01, "truncated TLV header"),
        (vec![0x42], 0x42, "truncated TLV header"),
        (
            tlv(tlv_type::UNIQUE_ID, &[0; 129]),
            0x05,
            "a UNIQUE_ID is at most 128 bytes",
        ),
        (
            tlv(tlv_type::SSL, &[1, 0, 0, 0]),
            0x20,
            "an SSL TLV starts with 5 bytes",
        ),
        (
            tlv(tlv_type::SSL, &[1, 0, 0, 0, 0, 0x22, 0, 9, b'x']),
            0x22,
            "value overruns its container",
        ),
        (
            tlv(tlv_type::SSL, &[1, 0, 0, 0, 0, 0x22]),
            0x22,
            "truncated TLV header",
        ),
        (
            tlv(tlv_type::CRC32C, &[0; 3]),
            0x03,
            "a CRC32C value is 4 bytes",
        ),
    ];
    for (area, kind, reason) in cases {
        let b = v2(0x21, 0x11, &TCP4_ADDRS, &area, None);
        let e = err(&b);
        assert!(
            matches!(e, ProxyError::InvalidTlv { kind: k, .. } if k == kind),
            "{area:?}: {e:?}"
        );
        assert!(
            e.to_string().starts_with(&format!(
                "invalid PROXY protocol v2 TLV 0x{kind:02x}: {reason}"
            )),
            "{e}"
        );
        check_split(&b, b.len());
    }
}

#[test]
fn v2_crc32c() {
    let mut buf = BytesMut::new();
    let addrs = Some((addr("192.0.2.1:56324"), addr("10.0.0.2:5432")));
    encode_proxy_v2(
        &mut buf,
        ProxyCommand::Proxy,
        addrs,
        &[(tlv_type::ALPN, b"postgresql")],
        true,
    );
    let h = complete(&buf);
    let crc = h.tlvs.iter().filter_map(|t| match t {
        Tlv::Crc32c(c) => Some(c),
        _ => None,
    });
    assert_eq!(crc.count(), 1);
    // Any byte changed, in the addresses, the TLVs or the checksum itself, is a mismatch.
    for i in 16..buf.len() {
        if (28..31).contains(&i) || (41..44).contains(&i) {
            continue; // TLV type and length bytes: other answers.
        }
        let mut bad = buf.to_vec();
        bad[i] ^= 0x01;
        match decode(&bad) {
            Err(ProxyError::Crc32cMismatch { .. }) => {}
            other => panic!("byte {i}: {other:?}"),
        }
    }
    let mut bad = buf.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(
        err(&bad)
            .to_string()
            .starts_with("PROXY protocol v2 CRC32C mismatch (header says 0x")
    );
    // A header whose checksum was computed by hand: the value zeroed, then CRC32C (Castagnoli).
    let mut by_hand = v2(0x20, 0x00, &[], &tlv(tlv_type::CRC32C, &[0; 4]), None);
    let c = crc32c_reference(&by_hand);
    let n = by_hand.len();
    by_hand[n - 4..].copy_from_slice(&c.to_be_bytes());
    assert_eq!(complete(&by_hand).tlvs.iter().next(), Some(Tlv::Crc32c(c)));
    // Two checksums are refused.
    let mut two = tlv(tlv_type::CRC32C, &[0; 4]);
    two.extend(tlv(tlv_type::CRC32C, &[0; 4]));
    assert_eq!(
        err(&v2(0x20, 0x00, &[], &two, None)).to_string(),
        "invalid PROXY protocol v2 TLV 0x03: more than one CRC32C TLV"
    );
}

/// Bitwise CRC32C, independent of the crate's table.
fn crc32c_reference(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32c_reference_check_value() {
    assert_eq!(crc32c_reference(b"123456789"), 0xE306_9283);
}

// ---------------------------------------------------------------------------------------------
// Encoding

#[test]
fn v1_round_trips() {
    for (src, dst, text) in [
        (
            "192.0.2.1:56324",
            "10.0.0.2:5432",
            "PROXY TCP4 192.0.2.1 10.0.0.2 56324 5432\r\n",
        ),
        (
            "[2001:db8::1]:0",
            "[::1]:65535",
            "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n",
        ),
        ("192.0.2.1:1", "[::1]:2", "PROXY UNKNOWN\r\n"),
    ] {
        let mut b = BytesMut::new();
        encode_proxy_v1(&mut b, addr(src), addr(dst));
        assert_eq!(&b[..], text.as_bytes());
        let h = complete(&b);
        if text.contains("UNKNOWN") {
            assert_eq!(h.addresses, None);
        } else {
            assert_eq!(h.addresses, Some((addr(src), addr(dst))));
        }
    }
    // The longest v1 header fits in 107 bytes.
    let src = addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    let mut b = BytesMut::new();
    encode_proxy_v1(&mut b, src, src);
    assert_eq!(b.len(), 104);
    assert_eq!(complete(&b).addresses, Some((src, src)));
}

#[test]
fn v2_round_trips() {
    let mixed = (addr("192.0.2.1:1"), addr("[2001:db8::2]:2"));
    for (command, addrs, expect) in [
        (
            ProxyCommand::Proxy,
            Some((addr("192.0.2.1:56324"), addr("10.0.0.2:5432"))),
            None,
        ),
        (
            ProxyCommand::Proxy,
            Some((addr("[2001:db8::1]:1"), addr("[2001:db8::2]:2"))),
            None,
        ),
        (
            ProxyCommand::Proxy,
            Some(mixed),
            Some(Some((addr("[::ffff:192.0.2.1]:1"), mixed.1))),
        ),
        (ProxyCommand::Local, None, None),
    ] {
        for with_crc in [false, true] {
            for tlvs in [
                &[][..],
                &[(tlv_type::ALPN, &b"postgresql"[..]), (0xe5, &b""[..])][..],
            ] {
                let mut b = BytesMut::from(&b"before"[..]);
                encode_proxy_v2(&mut b, command, addrs, tlvs, with_crc);
                let h = complete(&b[6..]);
                assert_eq!(h.command, command);
                assert_eq!(h.addresses, expect.unwrap_or(addrs));
                assert_eq!(h.len, b.len() - 6);
                let got: Vec<_> = h
                    .tlvs
                    .iter()
                    .filter(|t| !matches!(t, Tlv::Crc32c(_)))
                    .map(|t| match t {
                        Tlv::Alpn(v) => (tlv_type::ALPN, v),
                        Tlv::Other { kind, value } => (kind, value),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(got, tlvs);
                assert_eq!(h.tlvs.iter().any(|t| matches!(t, Tlv::Crc32c(_))), with_crc);
                check_split(&b[6..], h.len);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

/// What every answer must satisfy, for input `buf` under `limits`.
fn check_answer(buf: &[u8], limits: &ProxyLimits) {
    match decode_proxy_header(buf, limits) {
        Ok(Decoded::Complete(h, n)) => {
            assert_eq!(h.len, n);
            assert!(n <= buf.len());
            match h.version {
                ProxyVersion::V1 => assert!(n <= V1_MAX_LEN && buf[..n].ends_with(b"\r\n")),
                ProxyVersion::V2 => assert!(n <= 16 + usize::from(limits.max_v2_len)),
            }
            for t in h.tlvs {
                if let Tlv::Ssl(s) = t {
                    let _ = (s.version(), s.cn(), s.sub_tlvs().count());
                }
            }
            let _ = (h.tlvs.alpn(), h.tlvs.ssl(), h.tlvs.unique_id());
        }
        Ok(Decoded::Partial(k)) => {
            assert!(k >= 1);
            let bound = if buf.first() == Some(&b'P') {
                V1_MAX_LEN
            } else {
                16 + usize::from(limits.max_v2_len)
            };
            assert!(buf.len() + k <= bound, "{} + {k} > {bound}", buf.len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn any_header() -> impl Strategy<Value = Vec<u8>> {
    let v4 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)));
    let v6 = (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)));
    let a = prop_oneof![v4, v6];
    (
        a.clone(),
        a,
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(
            (
                any::<u8>().prop_filter("checked types", |k| *k != 0x03 && *k != 0x20),
                proptest::collection::vec(any::<u8>(), 0..40),
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(s, d, is_v1, local, tlvs, crc)| {
            let mut b = BytesMut::new();
            if is_v1 {
                encode_proxy_v1(&mut b, s, d);
            } else {
                let tlvs: Vec<(u8, &[u8])> = tlvs.iter().map(|(k, v)| (*k, &v[..])).collect();
                let (cmd, addrs) = if local {
                    (ProxyCommand::Local, None)
                } else {
                    (ProxyCommand::Proxy, Some((s, d)))
                };
                encode_proxy_v2(&mut b, cmd, addrs, &tlvs, crc);
            }
            b.to_vec()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes, after either signature or none, under any limit: no panic, and the
    /// answer keeps its bounds; every prefix too.
    #[test]
    fn arbitrary_bytes(
        start in prop_oneof![Just(&b""[..]), Just(&b"PROXY "[..]), Just(&b"PROXY TCP4 "[..]), Just(&V2_SIGNATURE[..])],
        rest in proptest::collection::vec(any::<u8>(), 0..300),
        max in any::<u16>(),
        split in any::<proptest::sample::Index>(),
    ) {
        let mut buf = start.to_vec();
        buf.extend(rest);
        let limits = ProxyLimits::new().max_v2_len(max);
        check_answer(&buf, &limits);
        let k = split.index(buf.len() + 1);
        check_answer(&buf[..k], &limits);
        // A prefix never contradicts the whole: it is Partial, or the whole's own answer.
        let whole = decode_proxy_header(&buf, &limits);
        match decode_proxy_header(&buf[..k], &limits) {
            Ok(Decoded::Partial(_)) => {}
            other => prop_assert_eq!(other, whole),
        }
    }

    /// Encoded headers decode, whole and after any split, to the same header, followed by
    /// anything.
    #[test]
    fn encoded_headers(
        header in any_header(),
        tail in proptest::collection::vec(any::<u8>(), 0..20),
        split in any::<proptest::sample::Index>(),
    ) {
        let mut buf = header.clone();
        buf.extend(tail);
        let whole = decode(&buf);
        let Ok(Decoded::Complete(h, n)) = whole.clone() else {
            return Err(TestCaseError::fail(format!("{whole:?}")));
        };
        prop_assert_eq!(n, header.len());
        prop_assert_eq!(&complete(&header), &h);
        let k = split.index(n);
        match decode(&buf[..k]) {
            Ok(Decoded::Partial(m)) => prop_assert!(k + m <= n),
            other => return Err(TestCaseError::fail(format!("prefix {k}: {other:?}"))),
        }
    }
}
