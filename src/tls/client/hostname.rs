//! libpq's server host name check for `sslmode=verify-full` (fe-secure-common.c and
//! fe-secure-openssl.c), which differs from OpenSSL's own checking in places; libpq's rules win.
//!
//! * The host is an IP address if it parses as IPv4 the lenient way `inet_aton` does
//!   (`192.000.002.001`, `0x7f.1`) or as IPv6.
//! * Every SAN is examined: dNSName entries by case-insensitive comparison with a leading
//!   one-label `*.` wildcard, iPAddress entries by bytes.
//! * The CN is consulted only when the certificate has no SAN of the host's type: a DNS host
//!   with only IP SANs falls back to the CN, and so does an IP host with only DNS SANs.
//! * A name with an embedded NUL is an error, not a mismatch.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One name presented by the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresentedName {
    /// A dNSName SAN, as raw bytes.
    Dns(Vec<u8>),
    /// An iPAddress SAN, 4 or 16 bytes (any other length is an error).
    Ip(Vec<u8>),
}

/// Why a verify-full host name check failed, in libpq's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostnameError {
    /// `host` is empty (only `hostaddr` was given).
    #[error("host name must be specified for a verified SSL connection")]
    NoHost,
    /// No name matched; the first name examined is shown, and how many others there were.
    #[error("{}", mismatch_text(first, *others, host))]
    Mismatch {
        /// The first name examined.
        first: String,
        /// How many other names were examined.
        others: usize,
        /// The host connected to.
        host: String,
    },
    /// The certificate has no SAN of any kind and no CN.
    #[error("could not get server's host name from server certificate")]
    NoNames,
    /// A name contains a NUL byte (CVE-2009-4034).
    #[error("SSL certificate's name contains embedded null")]
    EmbeddedNull,
    /// An iPAddress SAN that is neither 4 nor 16 bytes.
    #[error("certificate contains IP address with invalid length {0}")]
    BadIpLength(usize),
}

fn mismatch_text(first: &str, others: usize, host: &str) -> String {
    match others {
        0 => format!("server certificate for \"{first}\" does not match host name \"{host}\""),
        1 => format!(
            "server certificate for \"{first}\" (and 1 other name) does not match host name \"{host}\""
        ),
        n => format!(
            "server certificate for \"{first}\" (and {n} other names) does not match host name \"{host}\""
        ),
    }
}

/// glibc's `inet_aton`: one to four parts separated by dots, each decimal, octal (leading 0)
/// or hexadecimal (0x); the last part fills the remaining bytes; trailing whitespace ends the
/// address.
pub(crate) fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
    let (addr, _) = s.split_at(end);
    if addr.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(4);
    for p in addr.split('.') {
        if parts.len() == 4 {
            return None;
        }
        parts.push(parse_part(p)?);
    }
    let last = *parts.last()?;
    let max_last: u64 = match parts.len() {
        1 => 0xffff_ffff,
        2 => 0x00ff_ffff,
        3 => 0xffff,
        _ => 0xff,
    };
    if last > max_last || parts[..parts.len() - 1].iter().any(|&p| p > 0xff) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, p) in parts[..parts.len() - 1].iter().enumerate() {
        v |= p << (24 - 8 * i);
    }
    Some(Ipv4Addr::from((v | last) as u32))
}

fn parse_part(p: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0 for glibc; an empty part is invalid.
        return if radix == 16 { Some(0) } else { None };
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|&v| v <= 0xffff_ffff)
}

/// The host as an IP address, if libpq would treat it as one.
pub(crate) fn host_ip(host: &str) -> Option<std::net::IpAddr> {
    inet_aton(host)
        .map(std::net::IpAddr::V4)
        .or_else(|| host.parse::<Ipv6Addr>().ok().map(std::net::IpAddr::V6))
}

/// libpq's wildcard rule: only a leading `*.`, matching exactly one label.
fn wildcard_match(pattern: &[u8], host: &[u8]) -> bool {
    if pattern.len() < 3 || pattern[0] != b'*' || pattern[1] != b'.' {
        return false;
    }
    if pattern.len() > host.len() {
        return false;
    }
    let suffix = &host[host.len() - (pattern.len() - 1)..];
    if !suffix.eq_ignore_ascii_case(&pattern[1..]) {
        return false;
    }
    let start = host.len() - pattern.len();
    match host.iter().position(|&b| b == b'.') {
        Some(dot) => dot >= start,
        None => true,
    }
}

fn name_matches(name: &[u8], host: &str) -> Result<bool, HostnameError> {
    if name.contains(&0) {
        return Err(HostnameError::EmbeddedNull);
    }
    Ok(name.eq_ignore_ascii_case(host.as_bytes()) || wildcard_match(name, host.as_bytes()))
}

fn ip_matches(ip: &[u8], host: &str) -> Result<(bool, String), HostnameError> {
    match ip.len() {
        4 => {
            let shown = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string();
            Ok((inet_aton(host).is_some_and(|a| a.octets() == ip), shown))
        }
        16 => {
            let octets: [u8; 16] = ip.try_into().expect("16 bytes");
            let shown = Ipv6Addr::from(octets).to_string();
            Ok((
                host.parse::<Ipv6Addr>().is_ok_and(|a| a.octets() == octets),
                shown,
            ))
        }
        n => Err(HostnameError::BadIpLength(n)),
    }
}

/// Checks `host` against the certificate's SANs (in order) and first CN, libpq's way.
pub fn verify_host(
    host: &str,
    sans: &[PresentedName],
    common_name: Option<&[u8]>,
) -> Result<(), HostnameError> {
    if host.is_empty() {
        return Err(HostnameError::NoHost);
    }
    let host_is_ip = host_ip(host).is_some();
    let mut check_cn = true;
    let mut examined = 0usize;
    let mut first: Option<String> = None;
    for san in sans {
        let same_type = matches!(san, PresentedName::Ip(_)) == host_is_ip;
        if same_type {
            check_cn = false;
        }
        examined += 1;
        let (matched, shown) = match san {
            PresentedName::Dns(n) => (
                name_matches(n, host)?,
                String::from_utf8_lossy(n).into_owned(),
            ),
            PresentedName::Ip(ip) => ip_matches(ip, host)?,
        };
        first.get_or_insert(shown);
        if matched {
            return Ok(());
        }
    }
    if check_cn && let Some(cn) = common_name {
        examined += 1;
        let matched = name_matches(cn, host)?;
        first.get_or_insert_with(|| String::from_utf8_lossy(cn).into_owned());
        if matched {
            return Ok(());
        }
    }
    match first {
        Some(first) => Err(HostnameError::Mismatch {
            first,
            others: examined - 1,
            host: host.to_owned(),
        }),
        None => Err(HostnameError::NoNames),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(s: &str) -> PresentedName {
        PresentedName::Dns(s.as_bytes().to_vec())
    }

    #[test]
    fn inet_aton_is_lenient_like_glibc() {
        let a = |s| inet_aton(s).map(|a| a.to_string());
        assert_eq!(a("192.0.2.1").as_deref(), Some("192.0.2.1"));
        assert_eq!(a("192.000.002.001").as_deref(), Some("192.0.2.1"));
        assert_eq!(a("0x7f.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(a("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(a("3221225985").as_deref(), Some("192.0.2.1"));
        assert_eq!(a("0300.0.2.1").as_deref(), Some("192.0.2.1"));
        assert_eq!(a("192.0.2.1 trailing").as_deref(), Some("192.0.2.1"));
        for bad in [
            "",
            "256.0.0.1",
            "1.2.3.4.5",
            "a.b.c.d",
            "08.0.0.1",
            "1..2",
            "host.example",
        ] {
            assert_eq!(a(bad), None, "{bad}");
        }
    }

    #[test]
    fn wildcards_match_one_leading_label() {
        assert!(wildcard_match(b"*.pg-ssltest.test", b"foo.pg-ssltest.test"));
        assert!(wildcard_match(b"*.pg-ssltest.test", b"FOO.PG-SSLTEST.TEST"));
        assert!(!wildcard_match(
            b"*.pg-ssltest.test",
            b"a.b.pg-ssltest.test"
        ));
        assert!(!wildcard_match(b"*.pg-ssltest.test", b"pg-ssltest.test"));
        assert!(!wildcard_match(b"foo.*.test", b"foo.bar.test"));
        assert!(!wildcard_match(b"*", b"anything"));
    }

    #[test]
    fn cn_is_used_only_without_a_san_of_the_hosts_type() {
        let cn = Some(&b"common-name.pg-ssltest.test"[..]);
        // DNS host, only IP SANs: the CN is checked.
        let ips = [PresentedName::Ip(vec![192, 0, 2, 1])];
        assert!(verify_host("common-name.pg-ssltest.test", &ips, cn).is_ok());
        // DNS host with DNS SANs: the CN is ignored.
        let both = [dns("dns1.alt-name.pg-ssltest.test")];
        let e = verify_host("common-name.pg-ssltest.test", &both, cn).unwrap_err();
        assert_eq!(
            e.to_string(),
            "server certificate for \"dns1.alt-name.pg-ssltest.test\" does not match host name \"common-name.pg-ssltest.test\""
        );
        // IP host with only DNS SANs: the CN is checked even though DNS SANs exist.
        let ip_cn = Some(&b"192.0.2.1"[..]);
        assert!(verify_host("192.0.2.1", &both, ip_cn).is_ok());
        // An IP in a DNS SAN matches by string.
        assert!(verify_host("192.0.2.1", &[dns("192.0.2.1")], None).is_ok());
    }

    #[test]
    fn counts_other_names() {
        let sans = [
            dns("a.example"),
            dns("b.example"),
            PresentedName::Ip(vec![192, 0, 2, 9]),
        ];
        let e = verify_host("c.example", &sans, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "server certificate for \"a.example\" (and 2 other names) does not match host name \"c.example\""
        );
        let e = verify_host("c.example", &sans[..2], None).unwrap_err();
        assert!(e.to_string().contains("(and 1 other name)"));
        assert_eq!(
            verify_host("x", &[], None).unwrap_err().to_string(),
            "could not get server's host name from server certificate"
        );
        assert_eq!(
            verify_host("", &sans, None).unwrap_err(),
            HostnameError::NoHost
        );
    }

    #[test]
    fn ipv6_and_nul_and_bad_lengths() {
        let v6 = PresentedName::Ip("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec());
        assert!(verify_host("2001:DB8:0::1", std::slice::from_ref(&v6), None).is_ok());
        let e = verify_host("2001:db8::2", &[v6], None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "server certificate for \"2001:db8::1\" does not match host name \"2001:db8::2\""
        );
        assert_eq!(
            verify_host("a", &[dns("a\0.evil")], None).unwrap_err(),
            HostnameError::EmbeddedNull
        );
        assert_eq!(
            verify_host("a", &[PresentedName::Ip(vec![1, 2, 3])], None).unwrap_err(),
            HostnameError::BadIpLength(3)
        );
    }
}
