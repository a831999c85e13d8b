//! libpq's connection strings: `key=value` conninfo (with its quoting) and `postgresql://`
//! URIs (percent-decoding, IPv6 literals, query parameters), with libpq's error texts.

/// Why a connection string could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConninfoError {
    /// `key` without `=`.
    #[error("missing \"=\" after \"{0}\" in connection info string")]
    MissingEquals(String),
    /// A quote that never closes.
    #[error("unterminated quoted string in connection info string")]
    UnterminatedQuote,
    /// An unknown keyword.
    #[error("invalid connection option \"{0}\"")]
    InvalidOption(String),
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoded token: \"{0}\"")]
    BadPercent(String),
    /// `%00`.
    #[error("forbidden value %00 in percent-encoded value: \"{0}\"")]
    PercentNul(String),
    /// A query parameter with two `=`.
    #[error("extra key/value separator \"=\" in URI query parameter: \"{0}\"")]
    ExtraEquals(String),
    /// A query parameter without `=`.
    #[error("missing key/value separator \"=\" in URI query parameter: \"{0}\"")]
    MissingSeparator(String),
    /// An unknown query parameter.
    #[error("invalid URI query parameter: \"{0}\"")]
    InvalidQueryParameter(String),
    /// `[` without `]`.
    #[error(
        "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"{0}\""
    )]
    UnterminatedIpv6(String),
    /// `[]`.
    #[error("IPv6 host address may not be empty in URI: \"{0}\"")]
    EmptyIpv6(String),
    /// Something after a host that is neither `:` nor `/` (nor `,` or `?`).
    #[error(
        "unexpected character \"{ch}\" at position {pos} in URI (expected \":\" or \"/\"): \"{uri}\""
    )]
    UnexpectedCharacter {
        /// The character.
        ch: char,
        /// Its 1-based position.
        pos: usize,
        /// The URI.
        uri: String,
    },
}

/// Parses a libpq `key=value` string into pairs, in order. Values may be single-quoted, with
/// `\'` and `\\` escapes; unquoted values end at whitespace and may use backslash escapes too.
pub fn parse_conninfo(s: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_ascii_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(ConninfoError::MissingEquals(key));
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(ConninfoError::UnterminatedQuote),
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(ConninfoError::UnterminatedQuote),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_ascii_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// Whether `s` is a URI libpq would parse as one.
pub fn is_uri(s: &str) -> bool {
    s.starts_with("postgresql://") || s.starts_with("postgres://")
}

fn percent_decode(s: &str) -> Result<String, ConninfoError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    let v = (h * 16 + l) as u8;
                    if v == 0 {
                        return Err(ConninfoError::PercentNul(s.to_owned()));
                    }
                    out.push(v);
                    i += 3;
                }
                _ => return Err(ConninfoError::BadPercent(s.to_owned())),
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Parses a `postgresql://` or `postgres://` URI into conninfo pairs: `user`, `password`,
/// `host` and `port` (comma-separated when several), `dbname`, then the query parameters
/// (`ssl=true` is read as `sslmode=require`, as libpq does for JDBC compatibility).
pub fn parse_uri(uri: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let rest = uri
        .strip_prefix("postgresql://")
        .or_else(|| uri.strip_prefix("postgres://"))
        .unwrap_or(uri);
    let prefix_len = uri.len() - rest.len();
    let mut out = Vec::new();
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    // userinfo@ applies only if '@' comes before the first '/'.
    let path_start = before_query.find('/').unwrap_or(before_query.len());
    let (authority, path) = before_query.split_at(path_start);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    if let Some(ui) = userinfo {
        let (u, p) = match ui.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (ui, None),
        };
        if !u.is_empty() {
            out.push(("user".to_owned(), percent_decode(u)?));
        }
        if let Some(p) = p {
            out.push(("password".to_owned(), percent_decode(p)?));
        }
    }
    let hosts_offset = prefix_len + userinfo.map_or(0, |u| u.len() + 1);
    let mut host_list = Vec::new();
    let mut port_list = Vec::new();
    let hb = hosts.as_bytes();
    let mut i = 0;
    let mut any = false;
    while i < hb.len() || !any {
        any = true;
        let host;
        if hb.get(i) == Some(&b'[') {
            let close = hosts[i..]
                .find(']')
                .ok_or_else(|| ConninfoError::UnterminatedIpv6(uri.to_owned()))?;
            host = &hosts[i + 1..i + close];
            if host.is_empty() {
                return Err(ConninfoError::EmptyIpv6(uri.to_owned()));
            }
            i += close + 1;
        } else {
            let end = hosts[i..].find([':', ',']).map_or(hosts.len(), |e| i + e);
            host = &hosts[i..end];
            i = end;
        }
        let mut port = "";
        match hb.get(i) {
            Some(b':') => {
                let end = hosts[i + 1..].find(',').map_or(hosts.len(), |e| i + 1 + e);
                port = &hosts[i + 1..end];
                i = end;
            }
            Some(b',') | None => {}
            Some(&c) => {
                return Err(ConninfoError::UnexpectedCharacter {
                    ch: c as char,
                    pos: hosts_offset + i + 1,
                    uri: uri.to_owned(),
                });
            }
        }
        host_list.push(percent_decode(host)?);
        port_list.push(percent_decode(port)?);
        if hb.get(i) == Some(&b',') {
            i += 1;
            if i == hb.len() {
                host_list.push(String::new());
                port_list.push(String::new());
            }
        }
    }
    if host_list.iter().any(|h| !h.is_empty()) {
        out.push(("host".to_owned(), host_list.join(",")));
    }
    if port_list.iter().any(|p| !p.is_empty()) {
        out.push(("port".to_owned(), port_list.join(",")));
    }
    let db = path.strip_prefix('/').unwrap_or(path);
    if !db.is_empty() {
        out.push(("dbname".to_owned(), percent_decode(db)?));
    }
    if let Some(q) = query {
        for param in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = param
                .split_once('=')
                .ok_or_else(|| ConninfoError::MissingSeparator(param.to_owned()))?;
            if v.contains('=') {
                return Err(ConninfoError::ExtraEquals(param.to_owned()));
            }
            let (k, v) = (percent_decode(k)?, percent_decode(v)?);
            if k == "ssl" && v == "true" {
                out.push(("sslmode".to_owned(), "require".to_owned()));
            } else {
                out.push((k, v));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn conninfo_quoting() {
        assert_eq!(
            parse_conninfo(" host = localhost  sslmode=verify-full password='it''s' x='a b\\'c'")
                .unwrap_err(),
            ConninfoError::MissingEquals("'s'".into())
        );
        assert_eq!(
            parse_conninfo(
                "host=localhost sslmode = verify-full  password='a b\\'c\\\\' app=x\\ y"
            )
            .unwrap(),
            pairs(&[
                ("host", "localhost"),
                ("sslmode", "verify-full"),
                ("password", "a b'c\\"),
                ("app", "x y")
            ])
        );
        assert_eq!(
            parse_conninfo("a='x").unwrap_err(),
            ConninfoError::UnterminatedQuote
        );
        assert_eq!(
            parse_conninfo("host").unwrap_err().to_string(),
            "missing \"=\" after \"host\" in connection info string"
        );
        assert_eq!(parse_conninfo("a= b=''").unwrap(), pairs(&[("a", "b=''")]));
    }

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("postgresql://us%40er:p%3Ass@db.example:5433/my%20db?sslmode=verify-full&application_name=x").unwrap(),
            pairs(&[
                ("user", "us@er"),
                ("password", "p:ss"),
                ("host", "db.example"),
                ("port", "5433"),
                ("dbname", "my db"),
                ("sslmode", "verify-full"),
                ("application_name", "x"),
            ])
        );
        assert_eq!(
            parse_uri("postgres://[2001:db8::1]:5432,[::1]/d").unwrap(),
            pairs(&[
                ("host", "2001:db8::1,::1"),
                ("port", "5432,"),
                ("dbname", "d")
            ])
        );
        assert_eq!(parse_uri("postgresql://").unwrap(), pairs(&[]));
        assert_eq!(
            parse_uri("postgresql://h?ssl=true").unwrap(),
            pairs(&[("host", "h"), ("sslmode", "require")])
        );
        assert_eq!(
            parse_uri("postgresql://[::1").unwrap_err().to_string(),
            "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"postgresql://[::1\""
        );
        assert_eq!(
            parse_uri("postgresql://[]/").unwrap_err().to_string(),
            "IPv6 host address may not be empty in URI: \"postgresql://[]/\""
        );
        assert_eq!(
            parse_uri("postgresql://h/d?a=b=c").unwrap_err().to_string(),
            "extra key/value separator \"=\" in URI query parameter: \"a=b=c\""
        );
        assert_eq!(
            parse_uri("postgresql://h/d?a").unwrap_err().to_string(),
            "missing key/value separator \"=\" in URI query parameter: \"a\""
        );
        assert_eq!(
            parse_uri("postgresql://h%zz").unwrap_err().to_string(),
            "invalid percent-encoded token: \"h%zz\""
        );
        assert_eq!(
            parse_uri("postgresql://h%00").unwrap_err().to_string(),
            "forbidden value %00 in percent-encoded value: \"h%00\""
        );
        assert_eq!(
            parse_uri("postgresql://[::1]x/").unwrap_err().to_string(),
            "unexpected character \"x\" at position 19 in URI (expected \":\" or \"/\"): \"postgresql://[::1]x/\""
        );
    }
}
