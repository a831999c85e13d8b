//! The StartupMessage: its layout, its parameters, and PostgreSQL's checks of them.

use super::codes::ProtocolVersion;
use super::decode_error::DecodeError;

/// A protocol 3.x StartupMessage whose layout has been checked, borrowing its parameters.
///
/// Parameters are kept as the client sent them (bytes in the client's encoding); the accessors
/// return the last occurrence of a name, as PostgreSQL does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartupMessage<'a> {
    version: ProtocolVersion,
    /// The `name\0value\0` pairs and the final `\0`.
    params: &'a [u8],
}

/// One `name`/`value` pair of a StartupMessage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parameter<'a> {
    /// The parameter's name, without its terminator.
    pub name: &'a [u8],
    /// The parameter's value, without its terminator.
    pub value: &'a [u8],
}

/// Iterator over the parameters of a [`StartupMessage`], in the order sent.
#[derive(Clone, Debug)]
pub struct Parameters<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Parameters<'a> {
    type Item = Parameter<'a>;

    fn next(&mut self) -> Option<Parameter<'a>> {
        let name_end = self.rest.iter().position(|&b| b == 0)?;
        if name_end == 0 {
            return None;
        }
        let name = &self.rest[..name_end];
        let after = &self.rest[name_end + 1..];
        let value_end = after.iter().position(|&b| b == 0)?;
        let value = &after[..value_end];
        self.rest = &after[value_end + 1..];
        Some(Parameter { name, value })
    }
}

impl<'a> StartupMessage<'a> {
    /// Parses the parameter area of a StartupMessage (the bytes after the version), applying
    /// PostgreSQL's layout rule ("invalid startup packet layout: expected terminator as last
    /// byte") and its check of the `replication` parameter, in PostgreSQL's order.
    pub fn parse(version: ProtocolVersion, params: &'a [u8]) -> Result<Self, DecodeError> {
        let mut offset = 0;
        loop {
            let name_len = match params[offset.min(params.len())..]
                .iter()
                .position(|&b| b == 0)
            {
                Some(0) => break, // the terminator
                Some(n) => n,
                None => return Err(DecodeError::InvalidLayout),
            };
            let value_start = offset + name_len + 1;
            let value_len = match params[value_start.min(params.len())..]
                .iter()
                .position(|&b| b == 0)
            {
                Some(n) => n,
                None => return Err(DecodeError::InvalidLayout),
            };
            let name = &params[offset..offset + name_len];
            let value = &params[value_start..value_start + value_len];
            if name == b"replication" && !valid_replication_value(value) {
                return Err(DecodeError::InvalidReplication {
                    value: String::from_utf8_lossy(value).into_owned(),
                });
            }
            offset = value_start + value_len + 1;
        }
        if offset + 1 != params.len() {
            return Err(DecodeError::InvalidLayout);
        }
        Ok(StartupMessage { version, params })
    }

    /// The protocol version the client asked for.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The raw parameter area: `name\0value\0` pairs and the final `\0`.
    pub fn raw_parameters(&self) -> &'a [u8] {
        self.params
    }

    /// The parameters in the order sent.
    pub fn parameters(&self) -> Parameters<'a> {
        Parameters { rest: self.params }
    }

    /// The value of the last parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.parameters()
            .filter(|p| p.name == name.as_bytes())
            .last()
            .map(|p| p.value)
    }

    /// The value of `name` as UTF-8 text, if present and valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `user` parameter, if present and not empty.
    pub fn user(&self) -> Option<&'a [u8]> {
        self.get("user").filter(|u| !u.is_empty())
    }

    /// The `database` parameter; PostgreSQL defaults it to the user name when absent or empty.
    pub fn database(&self) -> Option<&'a [u8]> {
        self.get("database")
            .filter(|d| !d.is_empty())
            .or_else(|| self.user())
    }

    /// The `_pq_.`-prefixed protocol options, which PostgreSQL does not recognise and names in
    /// a NegotiateProtocolVersion message.
    pub fn protocol_options(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.parameters()
            .map(|p| p.name)
            .filter(|n| n.starts_with(b"_pq_."))
    }

    /// Whether the server must answer with NegotiateProtocolVersion (a minor version newer than
    /// 3.2, or any `_pq_.` option), as PostgreSQL 18 does. Sending it is the host's business;
    /// see [`crate::wire::encode_negotiate_protocol_version`].
    pub fn needs_protocol_negotiation(&self) -> bool {
        self.version.minor() > ProtocolVersion::LATEST.minor()
            || self.protocol_options().next().is_some()
    }

    /// PostgreSQL's check that a user name was given: FATAL 28000 "no PostgreSQL user name
    /// specified in startup packet".
    pub fn check_user(&self) -> Result<(), DecodeError> {
        match self.user() {
            Some(_) => Ok(()),
            None => Err(DecodeError::NoUserName),
        }
    }
}

/// PostgreSQL accepts `database` or any boolean spelling (`parse_bool`) for `replication`.
fn valid_replication_value(v: &[u8]) -> bool {
    v == b"database" || parse_bool(v).is_some()
}

/// PostgreSQL's `parse_bool` over text (used for boolean settings).
#[cfg(feature = "openssl")]
pub(crate) fn parse_bool_str(v: &str) -> Option<bool> {
    parse_bool(v.as_bytes())
}

/// PostgreSQL's `parse_bool`: case-insensitive unique prefixes of true/false/yes/no, "on",
/// "off" (at least two letters), "1" and "0".
pub(crate) fn parse_bool(v: &[u8]) -> Option<bool> {
    fn prefix_of(v: &[u8], word: &[u8], min: usize) -> bool {
        v.len() >= min && v.len() <= word.len() && v.eq_ignore_ascii_case(&word[..v.len()])
    }
    match v.first()?.to_ascii_lowercase() {
        b't' if prefix_of(v, b"true", 1) => Some(true),
        b'f' if prefix_of(v, b"false", 1) => Some(false),
        b'y' if prefix_of(v, b"yes", 1) => Some(true),
        b'n' if prefix_of(v, b"no", 1) => Some(false),
        b'o' if prefix_of(v, b"on", 2) && v.len() == 2 => Some(true),
        b'o' if prefix_of(v, b"off", 2) => Some(false),
        b'1' if v.len() == 1 => Some(true),
        b'0' if v.len() == 1 => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &[u8]) -> Result<StartupMessage<'_>, DecodeError> {
        StartupMessage::parse(ProtocolVersion::V3_0, p)
    }

    #[test]
    fn layout() {
        let m = parse(b"user\0alice\0database\0db\0\0").unwrap();
        assert_eq!(m.user(), Some(&b"alice"[..]));
        assert_eq!(m.database(), Some(&b"db"[..]));
        assert_eq!(m.parameters().count(), 2);
        // Empty values are fine.
        assert!(parse(b"user\0alice\0options\0\0\0").is_ok());
        // Just the terminator.
        assert!(parse(b"\0").is_ok());
        for bad in [
            &b""[..],
            b"user\0alice\0",
            b"user\0alice",
            b"user",
            b"user\0alice\0\0x",
            b"user\0alice\0\0\0",
            b"\0\0",
        ] {
            assert_eq!(
                parse(bad).unwrap_err().to_string(),
                "invalid startup packet layout: expected terminator as last byte",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn last_occurrence_wins_and_database_defaults_to_user() {
        let m = parse(b"user\0a\0user\0b\0\0").unwrap();
        assert_eq!(m.user(), Some(&b"b"[..]));
        assert_eq!(m.database(), Some(&b"b"[..]));
        let m = parse(b"user\0a\0database\0\0\0").unwrap();
        assert_eq!(m.database(), Some(&b"a"[..]));
    }

    #[test]
    fn user_is_required() {
        let e = parse(b"database\0d\0\0").unwrap().check_user().unwrap_err();
        assert_eq!(
            e.to_string(),
            "no PostgreSQL user name specified in startup packet"
        );
        assert_eq!(e.response().unwrap().code, "28000");
        assert!(parse(b"user\0\0\0").unwrap().check_user().is_err());
    }

    #[test]
    fn replication_values() {
        for ok in [
            &b"database"[..],
            b"true",
            b"t",
            b"TRUE",
            b"on",
            b"off",
            b"of",
            b"1",
            b"0",
            b"no",
            b"yes",
            b"false",
        ] {
            let mut p = b"user\0u\0replication\0".to_vec();
            p.extend_from_slice(ok);
            p.extend_from_slice(b"\0\0");
            assert!(parse(&p).is_ok(), "{ok:?}");
        }
        for bad in [&b"o"[..], b"2", b"truex", b"", b"databases", b"onn"] {
            let mut p = b"user\0u\0replication\0".to_vec();
            p.extend_from_slice(bad);
            p.extend_from_slice(b"\0\0");
            let e = parse(&p).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "invalid value for parameter \"replication\": \"{}\"",
                    String::from_utf8_lossy(bad)
                )
            );
            let r = e.response().unwrap();
            assert_eq!(r.code, "22023");
            assert_eq!(
                r.hint.as_deref(),
                Some("Valid values are: \"false\", 0, \"true\", 1, \"database\".")
            );
        }
    }

    #[test]
    fn protocol_negotiation_is_reported() {
        let m = parse(b"user\0u\0\0").unwrap();
        assert!(!m.needs_protocol_negotiation());
        let m = StartupMessage::parse(ProtocolVersion::new(3, 3), b"user\0u\0\0").unwrap();
        assert!(m.needs_protocol_negotiation());
        let m = parse(b"user\0u\0_pq_.x\0y\0\0").unwrap();
        assert!(m.needs_protocol_negotiation());
        assert_eq!(
            m.protocol_options().collect::<Vec<_>>(),
            vec![&b"_pq_.x"[..]]
        );
    }
}
