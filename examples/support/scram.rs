//! The client side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS with libpq's rules. Shared by the
//! examples through `#[path]`.
//!
//! postgres-protocol's `ScramSha256` runs the exchange: the nonce, SASLprep, PBKDF2, the client
//! proof, the GS2 header and channel-binding data (`ChannelBinding::tls_server_end_point`,
//! `unrequested` for libpq's `y`, `unsupported` for `n`) and the server signature's
//! constant-time check. This file keeps only what libpq (fe-auth-scram.c) does beyond it:
//!
//! - **libpq's parser in front of it.** Each server message is first checked as libpq reads it
//!   ([`check_server_first`], [`check_server_final`]), so that a malformed one fails with
//!   libpq's `malformed SCRAM message (…)` / `invalid SCRAM response (nonce mismatch)` texts
//!   (postgres-protocol's errors are its own: "unexpected character at byte 0 …", "invalid
//!   nonce"), and so that an iteration count libpq refuses (0, past `i32::MAX`), a NUL inside a
//!   message or an `e=` error from the server get libpq's treatment. Only a message that passed
//!   is handed to `ScramSha256::update` / `finish`.
//! - **The state libpq keeps** (`fe_scram_state_enum`): SASLFinal before the server-first
//!   message is refused with libpq's text, a message after the exchange with "invalid SCRAM
//!   exchange state", and the exchange counts as finished (and channel-bound) only once
//!   `ScramSha256::finish` accepted the server signature: connect.rs accepts AuthenticationOk
//!   after a SCRAM exchange only then. The state also guarantees `ScramSha256::message` is
//!   called only when it has a message (it panics after `finish` or a failed `update`).
//!
//! Where postgres-protocol is stricter than libpq, its refusal stands and is reported as libpq
//! reports a failure to build the client-final-message, `could not calculate client proof:
//! REASON`: an iteration count above 100000 (postgres-protocol's cap against a server forcing
//! an unbounded PBKDF2 loop; libpq accepts up to 2147483647), a nonce outside RFC 5802's
//! printable characters, or a salt whose base64 has non-zero padding bits.
#![allow(dead_code)]

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

pub use postgres_protocol::authentication::sasl::{SCRAM_SHA_256, SCRAM_SHA_256_PLUS};

/// SCRAM-SHA-256's key length (SHA-256 output).
const KEY_LEN: usize = 32;

/// Where the exchange is, as libpq's `fe_scram_state_enum`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// client-first-message sent; expecting server-first-message.
    NonceSent,
    /// client-final-message sent; expecting server-final-message.
    ProofSent,
    /// Server signature verified.
    Finished,
    /// A message was refused: the exchange is over (and `ScramSha256` may have no message).
    Failed,
}

/// How the client binds to the channel: the GS2 header's flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `p=tls-server-end-point`, with the certificate hash (SCRAM-SHA-256-PLUS).
    Plus(Vec<u8>),
    /// `y`: the client could bind over TLS, but the server did not offer it.
    CouldBind,
    /// `n`: no TLS, or `channel_binding=disable`.
    No,
}

/// One SCRAM exchange on the client side.
pub struct ScramClient {
    scram: ScramSha256,
    state: State,
    plus: bool,
    /// The nonce in the client-first-message, for libpq's nonce check.
    client_nonce: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange (postgres-protocol draws the nonce); returns the state and the
    /// client-first-message to send in SASLInitialResponse.
    pub fn start(password: &str, binding: Binding) -> (ScramClient, Vec<u8>) {
        let plus = matches!(binding, Binding::Plus(_));
        let binding = match binding {
            Binding::Plus(hash) => ChannelBinding::tls_server_end_point(hash),
            Binding::CouldBind => ChannelBinding::unrequested(),
            Binding::No => ChannelBinding::unsupported(),
        };
        let scram = ScramSha256::new(password.as_bytes(), binding);
        // client-first-message: GS2 header, then "n=,r=" and the nonce.
        let first = scram.message().to_vec();
        let client_nonce = first
            .windows(5)
            .position(|w| w == b"n=,r=")
            .map(|at| first[at + 5..].to_vec())
            .unwrap_or_default();
        let client = ScramClient {
            scram,
            state: State::NonceSent,
            plus,
            client_nonce,
        };
        (client, first)
    }

    /// The mechanism this exchange runs.
    pub fn mechanism(&self) -> &'static str {
        if self.plus {
            SCRAM_SHA_256_PLUS
        } else {
            SCRAM_SHA_256
        }
    }

    /// The nonce of the client-first-message.
    pub fn client_nonce(&self) -> &[u8] {
        &self.client_nonce
    }

    /// Whether the server signature was verified (libpq's `client_finished_auth` for SCRAM).
    pub fn finished(&self) -> bool {
        self.state == State::Finished
    }

    /// libpq's `scram_channel_bound`: SCRAM-SHA-256-PLUS was used *and* the exchange
    /// completed with a verified server signature.
    pub fn channel_bound(&self) -> bool {
        self.finished() && self.plus
    }

    /// Handles the data of an AuthenticationSASLContinue (`is_final` false) or
    /// AuthenticationSASLFinal (`is_final` true); returns what to send back in a
    /// SASLResponse, if anything. Errors are libpq's texts.
    pub fn exchange(&mut self, input: &[u8], is_final: bool) -> Result<Option<Vec<u8>>, String> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        check_input(input)?;
        match state {
            State::NonceSent => {
                check_server_first(input, &self.client_nonce)?;
                self.scram
                    .update(input)
                    .map_err(|e| format!("could not calculate client proof: {e}"))?;
                if is_final {
                    return Err("AuthenticationSASLFinal received from server, but SASL authentication was not completed".into());
                }
                self.state = State::ProofSent;
                Ok(Some(self.scram.message().to_vec()))
            }
            State::ProofSent => {
                check_server_final(input)?;
                // The message is well-formed (checked above): a refusal here is the
                // signature's.
                self.scram
                    .finish(input)
                    .map_err(|_| "incorrect server signature".to_owned())?;
                self.state = State::Finished;
                Ok(None)
            }
            State::Finished | State::Failed => Err("invalid SCRAM exchange state".into()),
        }
    }
}

/// libpq's checks on any server message after the first: not empty, and no NUL inside
/// (libpq compares the message length with its C string length).
fn check_input(input: &[u8]) -> Result<(), String> {
    if input.is_empty() {
        return Err("malformed SCRAM message (empty message)".into());
    }
    if input.contains(&0) {
        return Err("malformed SCRAM message (length mismatch)".into());
    }
    Ok(())
}

/// Reads `attr=value` at the start of `input` and moves past it and a following comma
/// (libpq's `read_attr_value`).
fn read_attr<'a>(input: &mut &'a [u8], attr: u8) -> Result<&'a [u8], String> {
    let rest = *input;
    if rest.first() != Some(&attr) {
        return Err(format!(
            "malformed SCRAM message (attribute \"{}\" expected)",
            attr as char
        ));
    }
    if rest.get(1) != Some(&b'=') {
        return Err(format!(
            "malformed SCRAM message (expected character \"=\" for attribute \"{}\")",
            attr as char
        ));
    }
    let value = &rest[2..];
    match value.iter().position(|&c| c == b',') {
        Some(comma) => {
            *input = &value[comma + 1..];
            Ok(&value[..comma])
        }
        None => {
            *input = &[];
            Ok(value)
        }
    }
}

/// Checks a server-first-message (`r=…,s=…,i=…`) for a client that sent `client_nonce` as
/// libpq's `read_server_first_message` does.
pub fn check_server_first(input: &[u8], client_nonce: &[u8]) -> Result<(), String> {
    check_input(input)?;
    let mut rest = input;
    let nonce = read_attr(&mut rest, b'r')?;
    let ours = nonce.get(..client_nonce.len());
    if !ours.is_some_and(|n| openssl::memcmp::eq(n, client_nonce)) {
        return Err("invalid SCRAM response (nonce mismatch)".into());
    }
    let salt = read_attr(&mut rest, b's')?;
    decode_base64(salt).ok_or("malformed SCRAM message (invalid salt)")?;
    let iterations = read_attr(&mut rest, b'i')?;
    std::str::from_utf8(iterations)
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|&i| i >= 1)
        .ok_or("malformed SCRAM message (invalid iteration count)")?;
    if !rest.is_empty() {
        return Err("malformed SCRAM message (garbage at end of server-first-message)".into());
    }
    Ok(())
}

/// Checks a server-final-message (`v=…`, or `e=…` for the server's error) as libpq's
/// `read_server_final_message` does: `v=` must carry 32 bytes of base64.
pub fn check_server_final(input: &[u8]) -> Result<(), String> {
    check_input(input)?;
    let mut rest = input;
    if input.first() == Some(&b'e') {
        let e = read_attr(&mut rest, b'e')?;
        return Err(format!(
            "error received from server in SCRAM exchange: {}",
            String::from_utf8_lossy(e)
        ));
    }
    let v = read_attr(&mut rest, b'v')?;
    if !rest.is_empty() {
        return Err("malformed SCRAM message (garbage at end of server-final-message)".into());
    }
    match decode_base64(v) {
        Some(signature) if signature.len() == KEY_LEN => Ok(()),
        _ => Err("malformed SCRAM message (invalid server signature)".into()),
    }
}

/// Strict base64 (the alphabet, `=` padding, a length that is a multiple of 4), as
/// PostgreSQL's `pg_b64_decode` accepts; `None` otherwise.
fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    let ok = s.len().is_multiple_of(4)
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=');
    let text = std::str::from_utf8(s).ok().filter(|_| ok)?;
    openssl::base64::decode_block(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &[u8] = b"rOprNGfwEbeRWgbNEkqO";

    fn client() -> ScramClient {
        ScramClient::start("pencil", Binding::No).0
    }

    /// A server-first-message continuing `c`'s nonce.
    fn server_first(c: &ScramClient, rest: &str) -> Vec<u8> {
        [b"r=", c.client_nonce(), b"srv", rest.as_bytes()].concat()
    }

    #[test]
    fn client_first_message_is_libpqs() {
        for (binding, header, mechanism) in [
            (Binding::No, "n,,", SCRAM_SHA_256),
            (Binding::CouldBind, "y,,", SCRAM_SHA_256),
            (
                Binding::Plus(vec![1; 32]),
                "p=tls-server-end-point,,",
                SCRAM_SHA_256_PLUS,
            ),
        ] {
            let (c, first) = ScramClient::start("pencil", binding);
            let want = [header.as_bytes(), b"n=,r=", c.client_nonce()].concat();
            assert_eq!(first, want);
            assert_eq!(c.client_nonce().len(), 24);
            assert_eq!(c.mechanism(), mechanism);
        }
    }

    #[test]
    fn server_first_ok() {
        check_server_first(
            b"r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            NONCE,
        )
        .unwrap();
        let mut c = client();
        let reply = c
            .exchange(
                &server_first(&c, ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
                false,
            )
            .unwrap()
            .unwrap();
        let want = [b"c=biws,r=", c.client_nonce(), b"srv,p="].concat();
        assert!(reply.starts_with(&want), "{reply:?}");
        assert!(!c.finished());
    }

    #[test]
    fn server_first_errors_are_libpq_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "malformed SCRAM message (empty message)"),
            (b"r=x\0", "malformed SCRAM message (length mismatch)"),
            (
                "\u{e9}=x".as_bytes(),
                "malformed SCRAM message (attribute \"r\" expected)",
            ),
            (
                "\u{20ac}=x,r=abc,s=c2FsdA==,i=4096".as_bytes(),
                "malformed SCRAM message (attribute \"r\" expected)",
            ),
            (
                b"rx",
                "malformed SCRAM message (expected character \"=\" for attribute \"r\")",
            ),
            (
                b"r=other,s=AAAA,i=1",
                "invalid SCRAM response (nonce mismatch)",
            ),
            (b"r=rOpr", "invalid SCRAM response (nonce mismatch)"),
            (
                b"r=rOprNGfwEbeRWgbNEkqO,s=!!!!,i=1",
                "malformed SCRAM message (invalid salt)",
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqO,s=AAAA,i=0",
                "malformed SCRAM message (invalid iteration count)",
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqO,s=AAAA,i=4294967296",
                "malformed SCRAM message (invalid iteration count)",
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqO,s=AAAA,i=4294967297",
                "malformed SCRAM message (invalid iteration count)",
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqO,s=AAAA,i=-1",
                "malformed SCRAM message (invalid iteration count)",
            ),
            (
                b"r=rOprNGfwEbeRWgbNEkqO,s=AAAA,i=1,x",
                "malformed SCRAM message (garbage at end of server-first-message)",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                check_server_first(input, NONCE).unwrap_err(),
                *want,
                "{input:?}"
            );
        }
    }

    /// The same messages through the exchange, with this client's nonce: libpq's texts, not
    /// postgres-protocol's.
    #[test]
    fn exchange_errors_are_libpq_texts() {
        for (rest, want) in [
            (",s=!!!!,i=1", "malformed SCRAM message (invalid salt)"),
            (
                ",s=AAAA,i=0",
                "malformed SCRAM message (invalid iteration count)",
            ),
            (
                ",s=AAAA,i=4294967296",
                "malformed SCRAM message (invalid iteration count)",
            ),
            (
                ",s=AAAA,i=1,x",
                "malformed SCRAM message (garbage at end of server-first-message)",
            ),
        ] {
            let mut c = client();
            let e = c.exchange(&server_first(&c, rest), false).unwrap_err();
            assert_eq!(e, want, "{rest}");
            assert_eq!(
                c.exchange(b"v=AAAA", true).unwrap_err(),
                "invalid SCRAM exchange state"
            );
        }
    }

    /// postgres-protocol's cap on the iteration count stands, reported as libpq reports a
    /// client proof it could not compute.
    #[test]
    fn iteration_cap_is_postgres_protocols() {
        let mut c = client();
        let e = c
            .exchange(&server_first(&c, ",s=AAAA,i=100001"), false)
            .unwrap_err();
        assert!(e.starts_with("could not calculate client proof: "), "{e}");
        assert!(!c.finished());
    }

    #[test]
    fn server_final_errors_are_libpq_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"v=", "malformed SCRAM message (invalid server signature)"),
            (
                b"v=AAAA",
                "malformed SCRAM message (invalid server signature)",
            ),
            (b"x=1", "malformed SCRAM message (attribute \"v\" expected)"),
            (
                b"e=invalid-proof",
                "error received from server in SCRAM exchange: invalid-proof",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(check_server_final(input).unwrap_err(), *want, "{input:?}");
            let mut c = client();
            c.exchange(&server_first(&c, ",s=AAAA,i=1"), false).unwrap();
            assert_eq!(c.exchange(input, true).unwrap_err(), *want, "{input:?}");
            assert!(!c.finished() && !c.channel_bound());
        }
    }

    #[test]
    fn final_before_first_is_refused() {
        let mut c = client();
        let e = c
            .exchange(&server_first(&c, ",s=AAAA,i=1"), true)
            .unwrap_err();
        assert_eq!(
            e,
            "AuthenticationSASLFinal received from server, but SASL authentication was not completed"
        );
        assert!(!c.finished());
    }

    #[test]
    fn wrong_signature_is_refused_and_not_finished() {
        for binding in [Binding::No, Binding::Plus(vec![7; 32])] {
            let (mut c, _) = ScramClient::start("pencil", binding);
            c.exchange(&server_first(&c, ",s=AAAA,i=1"), false).unwrap();
            let sig = openssl::base64::encode_block(&[0u8; 32]);
            let e = c.exchange(format!("v={sig}").as_bytes(), true).unwrap_err();
            assert_eq!(e, "incorrect server signature");
            assert!(!c.finished() && !c.channel_bound());
            assert_eq!(
                c.exchange(b"v=AAAA", true).unwrap_err(),
                "invalid SCRAM exchange state"
            );
        }
    }

    /// Arbitrary and truncated inputs, at every step, never panic (a small deterministic fuzz
    /// loop): postgres-protocol's parser and `ScramSha256::message` included.
    #[test]
    fn arbitrary_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..3000 {
            let mut c = client();
            let valid = server_first(&c, ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1");
            let mut input: Vec<u8> = if i % 2 == 0 {
                valid[..(next() as usize) % (valid.len() + 1)].to_vec()
            } else {
                (0..next() % 40).map(|_| next() as u8).collect()
            };
            if i % 3 == 0 && !input.is_empty() {
                let at = next() as usize % input.len();
                input[at] = next() as u8;
            }
            let _ = check_server_first(&input, NONCE);
            let _ = check_server_final(&input);
            let _ = c.exchange(&input, i % 5 == 0);
            let _ = c.exchange(&input, true);
            let _ = c.exchange(&input, false);
            // A valid first message, then arbitrary final ones.
            let mut c = client();
            let valid = server_first(&c, ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1");
            if c.exchange(&valid, false).is_ok() {
                let mut fin = b"v=".to_vec();
                fin.extend_from_slice(&input);
                let _ = c.exchange(&fin, i % 2 == 0);
                let _ = c.exchange(&input, true);
            }
        }
    }
}
