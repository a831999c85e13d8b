//! Several server identities selected by SNI, with the semantics of PostgreSQL's
//! `pg_hosts.conf`: lines `HOSTNAME CERT KEY [CA [PASSPHRASE_CMD [RELOAD]]]`; `*` is the default
//! entry, `/no_sni/` the entry for clients that send no SNI; names match case-insensitively;
//! a name with no entry uses the default, else the handshake fails with an
//! `unrecognized_name` alert; no SNI and neither entry fails with `missing_extension`. Each
//! host keeps its own CA store.

use std::path::{Path, PathBuf};

use openssl::ssl::{NameType, SniError, SslAlert, SslContext, SslContextBuilder, SslVerifyMode};
use openssl::stack::Stack;
use openssl::x509::X509Name;

use super::identity::{HostEntry, Identity};
use crate::tls::error::{Reason, TlsError};
use crate::wire::parse_bool_str;

/// One host's context, and the CA names its CertificateRequest carries (OpenSSL keeps the
/// verify mode and the CA list of the context a connection started with, so they are set on
/// the connection when the host is selected).
struct Host {
    ctx: SslContext,
    client_cas: Option<Vec<X509Name>>,
}

/// The contexts of every host entry.
pub(crate) struct SniHosts {
    named: Vec<(String, Host)>,
    default: Option<Host>,
    no_sni: Option<Host>,
}

/// Splits a line into tokens: whitespace-separated, `"double quoted"` with `""` for a quote,
/// `#` starting a comment outside quotes.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '#' {
            break;
        }
        let mut tok = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        tok.push('"');
                    }
                    Some('"') => break,
                    Some(ch) => tok.push(ch),
                    None => return Err("unterminated quoted string".to_owned()),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == '#' {
                    break;
                }
                tok.push(ch);
                chars.next();
            }
        }
        tokens.push(tok);
    }
    Ok(tokens)
}

/// Parses the text of a hosts file.
pub fn parse_hosts(text: &str, path: &Path) -> Result<Vec<HostEntry>, TlsError> {
    let mut entries: Vec<HostEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |reason: String| TlsError::HostsFile {
            path: path.to_owned(),
            line: i + 1,
            reason: Reason::Text(reason),
        };
        let t = tokenize(line).map_err(err)?;
        if t.is_empty() {
            continue;
        }
        if !(3..=6).contains(&t.len()) {
            return Err(err(format!(
                "expected HOSTNAME CERT KEY [CA [PASSPHRASE_CMD [RELOAD]]], found {} fields",
                t.len()
            )));
        }
        let name = t[0].to_ascii_lowercase();
        if entries.iter().any(|e| e.name == name) {
            return Err(err(format!("duplicate entry for host \"{}\"", t[0])));
        }
        let supports_reload = match t.get(5) {
            Some(v) => parse_bool_str(v)
                .ok_or_else(|| err(format!("invalid boolean value \"{v}\" for RELOAD")))?,
            None => false,
        };
        entries.push(HostEntry {
            name,
            identity: Identity {
                cert_file: PathBuf::from(&t[1]),
                key_file: PathBuf::from(&t[2]),
                ca_file: t.get(3).filter(|s| !s.is_empty()).map(PathBuf::from),
                passphrase_command: t.get(4).cloned().unwrap_or_default(),
                passphrase_command_supports_reload: supports_reload,
            },
        });
    }
    Ok(entries)
}

impl SniHosts {
    /// Reads and parses a hosts file.
    pub(crate) fn read_file(path: &Path) -> Result<Vec<HostEntry>, TlsError> {
        let text = std::fs::read_to_string(path).map_err(|e| TlsError::HostsFile {
            path: path.to_owned(),
            line: 0,
            reason: e.into(),
        })?;
        parse_hosts(&text, path)
    }

    /// Builds a context per entry: `build` makes an identity's context (with every common
    /// setting applied), `resolve` gives a configured path as the server reads it.
    pub(crate) fn from_entries(
        entries: &[HostEntry],
        build: impl Fn(&Identity) -> Result<SslContextBuilder, TlsError>,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Result<SniHosts, TlsError> {
        let mut hosts = SniHosts {
            named: Vec::new(),
            default: None,
            no_sni: None,
        };
        for e in entries {
            let builder = build(&e.identity).map_err(|error| TlsError::Host {
                host: e.name.clone(),
                error: Box::new(error),
            })?;
            let client_cas = match &e.identity.ca_file {
                Some(f) => Some(
                    X509Name::load_client_ca_file(resolve(f))
                        .map_err(|err| TlsError::Host {
                            host: e.name.clone(),
                            error: Box::new(TlsError::CaFile {
                                path: f.clone(),
                                reason: err.into(),
                            }),
                        })?
                        .into_iter()
                        .collect(),
                ),
                None => None,
            };
            let host = Host {
                ctx: builder.build(),
                client_cas,
            };
            match e.name.as_str() {
                "*" => hosts.default = Some(host),
                "/no_sni/" => hosts.no_sni = Some(host),
                name => hosts.named.push((name.to_owned(), host)),
            }
        }
        Ok(hosts)
    }

    /// Installs the selection on the context every connection starts with.
    pub(crate) fn install(self: &std::sync::Arc<Self>, b: &mut SslContextBuilder) {
        let hosts = self.clone();
        b.set_servername_callback(move |ssl, alert| {
            let host = match ssl.servername(NameType::HOST_NAME) {
                Some(name) => {
                    let found = hosts
                        .named
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, c)| c);
                    match found.or(hosts.default.as_ref()) {
                        Some(c) => c,
                        None => {
                            *alert = SslAlert::UNRECOGNIZED_NAME;
                            return Err(SniError::ALERT_FATAL);
                        }
                    }
                }
                None => match hosts.no_sni.as_ref().or(hosts.default.as_ref()) {
                    Some(c) => c,
                    None => {
                        *alert = SslAlert::MISSING_EXTENSION;
                        return Err(SniError::ALERT_FATAL);
                    }
                },
            };
            ssl.set_ssl_context(&host.ctx)
                .map_err(|_| SniError::ALERT_FATAL)?;
            match &host.client_cas {
                Some(names) => {
                    let mut list = Stack::new().map_err(|_| SniError::ALERT_FATAL)?;
                    for n in names {
                        let n = openssl::x509::X509NameRef::to_owned(n)
                            .map_err(|_| SniError::ALERT_FATAL)?;
                        list.push(n).map_err(|_| SniError::ALERT_FATAL)?;
                    }
                    ssl.set_client_ca_list(list);
                    ssl.set_verify(SslVerifyMode::PEER | SslVerifyMode::CLIENT_ONCE);
                }
                None => ssl.set_verify(SslVerifyMode::NONE),
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg_hosts_lines() {
        let text = r#"
# comment
Example.COM   a.crt a.key
*             d.crt d.key root.crt "sh -c ""echo pw""" on
/no_sni/      n.crt n.key   # trailing comment
"#;
        let e = parse_hosts(text, Path::new("pg_hosts.conf")).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "example.com");
        assert_eq!(e[1].identity.passphrase_command, "sh -c \"echo pw\"");
        assert!(e[1].identity.passphrase_command_supports_reload);
        assert_eq!(
            e[1].identity.ca_file.as_deref(),
            Some(Path::new("root.crt"))
        );
        assert_eq!(e[2].name, "/no_sni/");
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let err = parse_hosts("a b\n", Path::new("h.conf")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid line 1 in hosts file \"h.conf\": expected HOSTNAME CERT KEY [CA [PASSPHRASE_CMD [RELOAD]]], found 2 fields"
        );
        let err = parse_hosts("a b c\nA d e\n", Path::new("h.conf")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
