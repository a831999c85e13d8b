//! PostgreSQL's checks of a private key file before it is read, and the passphrase command.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::tls::error::{Reason, TlsError, io_reason};

/// The prompt PostgreSQL substitutes for `%p` (OpenSSL's PEM prompt).
pub const PASSPHRASE_PROMPT: &str = "Enter PEM pass phrase:";

/// What the ownership and mode rule says of a key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    WrongOwner,
    GroupOrWorldAccess,
}

/// PostgreSQL's rule (be-secure-common.c): the file must belong to the server's user or to
/// root; owned by the user, no group or world bits (0600 or less); owned by root, at most
/// u=rw,g=r (0640). When the server runs as root, the first clause applies to it.
pub(crate) fn verdict(file_uid: u32, mode: u32, euid: u32) -> Verdict {
    if file_uid != euid && file_uid != 0 {
        return Verdict::WrongOwner;
    }
    let group_world = mode & 0o077 != 0;
    let root_loose = mode & (0o020 | 0o010 | 0o007) != 0;
    if (file_uid == euid && group_world) || (file_uid == 0 && root_loose) {
        return Verdict::GroupOrWorldAccess;
    }
    Verdict::Ok
}

/// Checks `path` as PostgreSQL does before loading a server key.
pub(crate) fn check_permissions(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::KeyFileAccess {
        path: path.to_owned(),
        reason: e.into(),
    })?;
    if !meta.is_file() {
        return Err(TlsError::KeyFileNotRegular {
            path: path.to_owned(),
        });
    }
    match verdict(
        meta.uid(),
        meta.permissions().mode(),
        crate::tls::ffi::effective_uid(),
    ) {
        Verdict::Ok => Ok(()),
        Verdict::WrongOwner => Err(TlsError::KeyFileOwner {
            path: path.to_owned(),
        }),
        Verdict::GroupOrWorldAccess => Err(TlsError::KeyFilePermissions {
            path: path.to_owned(),
        }),
    }
}

/// Substitutes `%p` (the prompt) and `%%` in `ssl_passphrase_command`, refusing other
/// placeholders as PostgreSQL does.
pub(crate) fn substitute(command: &str, prompt: &str) -> Result<String, TlsError> {
    let mut out = String::with_capacity(command.len() + prompt.len());
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('p') => out.push_str(prompt),
            Some('%') => out.push('%'),
            other => {
                let detail = match other {
                    Some(c) => format!("String contains unexpected placeholder \"%{c}\"."),
                    None => "String ends unexpectedly after escape character \"%\".".to_owned(),
                };
                return Err(TlsError::InvalidPlaceholder {
                    name: "ssl_passphrase_command".to_owned(),
                    value: command.to_owned(),
                    detail,
                });
            }
        }
    }
    Ok(out)
}

/// Runs `ssl_passphrase_command` with `%p` replaced by the prompt and returns the first line of
/// its output without the line ending, as PostgreSQL does. A command that fails is an error
/// naming it.
pub(crate) fn run_passphrase_command(command: &str) -> Result<Vec<u8>, TlsError> {
    let cmd = substitute(command, PASSPHRASE_PROMPT)?;
    let fail = |reason: String| TlsError::PassphraseCommand {
        command: cmd.clone(),
        reason: Reason::Text(reason),
    };
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("could not execute command: {}", io_reason(&e))))?;
    let mut line = Vec::new();
    {
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut reader = BufReader::new(stdout);
        // PostgreSQL reads one line into OpenSSL's 1024-byte buffer.
        (&mut reader)
            .take(1024)
            .read_until(b'\n', &mut line)
            .map_err(|e| fail(format!("could not read from command: {}", io_reason(&e))))?;
        // Drain the rest so the command does not die of SIGPIPE.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    }
    let status = child.wait().map_err(|e| {
        fail(format!(
            "could not close pipe to external command: {}",
            io_reason(&e)
        ))
    })?;
    if !status.success() {
        line.iter_mut().for_each(|b| *b = 0);
        let reason = match status.code() {
            Some(code) => format!("child process exited with exit code {code}"),
            None => "child process was terminated by a signal".to_owned(),
        };
        return Err(fail(reason));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_mode_rules() {
        let me = 1000;
        assert_eq!(verdict(me, 0o100600, me), Verdict::Ok);
        assert_eq!(verdict(me, 0o100400, me), Verdict::Ok);
        assert_eq!(verdict(me, 0o100640, me), Verdict::GroupOrWorldAccess);
        assert_eq!(verdict(me, 0o100604, me), Verdict::GroupOrWorldAccess);
        assert_eq!(verdict(0, 0o100640, me), Verdict::Ok);
        assert_eq!(verdict(0, 0o100600, me), Verdict::Ok);
        assert_eq!(verdict(0, 0o100660, me), Verdict::GroupOrWorldAccess);
        assert_eq!(verdict(0, 0o100644, me), Verdict::GroupOrWorldAccess);
        assert_eq!(verdict(0, 0o100650, me), Verdict::GroupOrWorldAccess);
        assert_eq!(verdict(1234, 0o100600, me), Verdict::WrongOwner);
        // Running as root, root's own key falls under the owner's rule.
        assert_eq!(verdict(0, 0o100640, 0), Verdict::GroupOrWorldAccess);
        assert_eq!(verdict(0, 0o100600, 0), Verdict::Ok);
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            substitute("echo '%p' 100%%", PASSPHRASE_PROMPT).unwrap(),
            "echo 'Enter PEM pass phrase:' 100%"
        );
        let e = substitute("echo %x", PASSPHRASE_PROMPT).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for parameter \"ssl_passphrase_command\": \"echo %x\"\nDETAIL:  String contains unexpected placeholder \"%x\"."
        );
        let e = substitute("echo 100%", PASSPHRASE_PROMPT).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("DETAIL:  String ends unexpectedly after escape character \"%\".")
        );
    }

    #[test]
    fn passphrase_command_first_line_without_newline() {
        assert_eq!(
            run_passphrase_command("printf 'secret1\\r\\nsecond\\n'").unwrap(),
            b"secret1"
        );
        assert_eq!(
            run_passphrase_command("echo \"%p\"").unwrap(),
            PASSPHRASE_PROMPT.as_bytes()
        );
        let e = run_passphrase_command("echo x; exit 3").unwrap_err();
        assert_eq!(
            e.to_string(),
            "command \"echo x; exit 3\" failed: child process exited with exit code 3"
        );
    }
}
