//! Fuzzes the PROXY protocol decoder, `wire::proxy::decode_proxy_header`.
//!
//! Input layout: two bytes (big-endian) give `ProxyLimits::max_v2_len`, one byte a split
//! point (modulo the length of the rest + 1); the rest is the connection's first bytes.
//!
//! Besides "never panics", it checks what the decoder promises: a complete header is no longer
//! than the input, is what `len` says, fits its version's bound (107 bytes for v1, ending in
//! CRLF; 16 + `max_v2_len` for v2), has addresses only for `Proxy`, and its TLVs can be walked;
//! `Partial(k)` asks for at least one byte and never past those bounds; a prefix of the input
//! is `Partial` or the same answer as the whole (so a host can decode as bytes arrive);
//! `starts_with_proxy_header` agrees with `NotProxy`; a decoded v2 header with addresses
//! re-encodes to a header that decodes to the same addresses.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgssl::wire::Decoded;
use pgssl::wire::proxy::{
    ProxyCommand, ProxyError, ProxyLimits, ProxyVersion, Tlv, V1_MAX_LEN, V2_FIXED_LEN,
    decode_proxy_header, encode_proxy_v1, encode_proxy_v2, starts_with_proxy_header,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limits = ProxyLimits::new().max_v2_len(u16::from_be_bytes([data[0], data[1]]));
    let split = usize::from(data[2]);
    let buf = &data[3..];

    let whole = decode_proxy_header(buf, &limits);
    check(buf, &limits, &whole);
    let k = split % (buf.len() + 1);
    let prefix = decode_proxy_header(&buf[..k], &limits);
    check(&buf[..k], &limits, &prefix);
    if !matches!(prefix, Ok(Decoded::Partial(_))) {
        assert_eq!(prefix, whole, "prefix {k} contradicts the whole input");
    }
    match starts_with_proxy_header(buf) {
        Some(false) => assert_eq!(whole, Err(ProxyError::NotProxy)),
        Some(true) => assert_ne!(whole, Err(ProxyError::NotProxy)),
        None => assert!(matches!(whole, Ok(Decoded::Partial(_)))),
    }
});

fn check(
    buf: &[u8],
    limits: &ProxyLimits,
    answer: &Result<Decoded<pgssl::wire::proxy::ProxyHeader<'_>>, ProxyError>,
) {
    let v2_bound = V2_FIXED_LEN + usize::from(limits.max_v2_len);
    match answer {
        Ok(Decoded::Complete(h, n)) => {
            assert_eq!(h.len, *n);
            assert!(*n <= buf.len());
            match h.version {
                ProxyVersion::V1 => {
                    assert!(*n <= V1_MAX_LEN && buf[..*n].ends_with(b"\r\n"));
                    assert!(h.tlvs.is_empty());
                }
                ProxyVersion::V2 => assert!(*n <= v2_bound),
            }
            if h.command == ProxyCommand::Local {
                assert!(h.addresses.is_none());
            }
            for t in h.tlvs {
                if let Tlv::Ssl(s) = t {
                    let _ = (s.version(), s.cn(), s.cipher(), s.sub_tlvs().count());
                }
            }
            let _ = (h.tlvs.alpn(), h.tlvs.authority(), h.tlvs.ssl(), h.tlvs.unique_id());
            if let Some((src, dst)) = h.addresses {
                let mut again = BytesMut::new();
                match h.version {
                    ProxyVersion::V1 => encode_proxy_v1(&mut again, src, dst),
                    ProxyVersion::V2 => {
                        encode_proxy_v2(&mut again, h.command, h.addresses, &[], true)
                    }
                }
                match decode_proxy_header(&again, &ProxyLimits::default()) {
                    Ok(Decoded::Complete(h2, m)) => {
                        assert_eq!(m, again.len());
                        assert_eq!(h2.addresses, h.addresses);
                    }
                    other => panic!("re-encoded {h:?}: {other:?}"),
                }
            }
        }
        Ok(Decoded::Partial(k)) => {
            assert!(*k >= 1);
            let bound = if buf.first() == Some(&b'P') {
                V1_MAX_LEN
            } else {
                v2_bound
            };
            assert!(buf.len() + k <= bound, "{} + {k} > {bound}", buf.len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
