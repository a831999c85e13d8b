//! The client side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677), with libpq's
//! rules from fe-auth-scram.c: the server's messages are parsed as bytes with every bound
//! checked, each malformed one is an error with libpq's text, the server signature is compared
//! in constant time, and the exchange only counts as complete once that signature verified.
//! Shared by the examples through `#[path]`.
#![allow(dead_code)]

use openssl::hash::{MessageDigest, hash};
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// SCRAM-SHA-256's key length (SHA-256 output).
const KEY_LEN: usize = 32;

/// The mechanism names.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The channel-binding variant.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Where the exchange is, as libpq's `fe_scram_state_enum`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// client-first-message sent; expecting server-first-message.
    NonceSent,
    /// client-final-message sent; expecting server-final-message.
    ProofSent,
    /// Server signature verified.
    Finished,
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

impl Binding {
    fn gs2_header(&self) -> &'static str {
        match self {
            Binding::Plus(_) => "p=tls-server-end-point,,",
            Binding::CouldBind => "y,,",
            Binding::No => "n,,",
        }
    }
}

/// One SCRAM exchange on the client side.
pub struct ScramClient {
    state: State,
    password: String,
    binding: Binding,
    client_nonce: Vec<u8>,
    client_first_bare: Vec<u8>,
    salted_password: [u8; KEY_LEN],
    /// client-first-message-bare "," server-first-message "," client-final-without-proof.
    auth_message: Vec<u8>,
}

/// What the server-first-message carries.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerFirst<'a> {
    /// The combined nonce (client's, then server's).
    pub nonce: &'a [u8],
    /// The decoded salt.
    pub salt: Vec<u8>,
    /// The iteration count (1 ..= i32::MAX, as libpq's `int`).
    pub iterations: u32,
}

impl ScramClient {
    /// Starts an exchange with a fresh 18-byte nonce; returns the state and the
    /// client-first-message to send in SASLInitialResponse.
    pub fn start(password: &str, binding: Binding) -> Result<(ScramClient, Vec<u8>), String> {
        let mut raw = [0u8; 18];
        openssl::rand::rand_bytes(&mut raw).map_err(|_| "could not generate nonce".to_owned())?;
        let nonce = openssl::base64::encode_block(&raw);
        Ok(ScramClient::with_nonce(password, binding, nonce.as_bytes()))
    }

    /// [`ScramClient::start`] with a given nonce (for tests).
    pub fn with_nonce(password: &str, binding: Binding, nonce: &[u8]) -> (ScramClient, Vec<u8>) {
        let mut bare = b"n=,r=".to_vec();
        bare.extend_from_slice(nonce);
        let mut first = binding.gs2_header().as_bytes().to_vec();
        first.extend_from_slice(&bare);
        let c = ScramClient {
            state: State::NonceSent,
            password: password.to_owned(),
            binding,
            client_nonce: nonce.to_vec(),
            client_first_bare: bare,
            salted_password: [0; KEY_LEN],
            auth_message: Vec::new(),
        };
        (c, first)
    }

    /// The mechanism this exchange runs.
    pub fn mechanism(&self) -> &'static str {
        match self.binding {
            Binding::Plus(_) => SCRAM_SHA_256_PLUS,
            _ => SCRAM_SHA_256,
        }
    }

    /// Whether the server signature was verified (libpq's `client_finished_auth` for SCRAM).
    pub fn finished(&self) -> bool {
        self.state == State::Finished
    }

    /// libpq's `scram_channel_bound`: SCRAM-SHA-256-PLUS was used *and* the exchange
    /// completed with a verified server signature.
    pub fn channel_bound(&self) -> bool {
        self.finished() && matches!(self.binding, Binding::Plus(_))
    }

    /// Handles the data of an AuthenticationSASLContinue (`is_final` false) or
    /// AuthenticationSASLFinal (`is_final` true); returns what to send back in a
    /// SASLResponse, if anything. Errors are libpq's texts.
    pub fn exchange(&mut self, input: &[u8], is_final: bool) -> Result<Option<Vec<u8>>, String> {
        check_input(input)?;
        match self.state {
            State::NonceSent => {
                let reply = self.client_final(input)?;
                if is_final {
                    return Err("AuthenticationSASLFinal received from server, but SASL authentication was not completed".into());
                }
                self.state = State::ProofSent;
                Ok(Some(reply))
            }
            State::ProofSent => {
                let signature = parse_server_final(input)?;
                if !self.verify(&signature) {
                    return Err("incorrect server signature".into());
                }
                self.state = State::Finished;
                Ok(None)
            }
            State::Finished => Err("invalid SCRAM exchange state".into()),
        }
    }

    /// Parses the server-first-message and builds the client-final-message.
    fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let first = parse_server_first(server_first, &self.client_nonce)?;
        let mut cbind = self.binding.gs2_header().as_bytes().to_vec();
        if let Binding::Plus(hash) = &self.binding {
            cbind.extend_from_slice(hash);
        }
        let mut without_proof = b"c=".to_vec();
        without_proof.extend_from_slice(openssl::base64::encode_block(&cbind).as_bytes());
        without_proof.extend_from_slice(b",r=");
        without_proof.extend_from_slice(first.nonce);
        openssl::pkcs5::pbkdf2_hmac(
            self.password.as_bytes(),
            &first.salt,
            first.iterations as usize,
            MessageDigest::sha256(),
            &mut self.salted_password,
        )
        .map_err(|e| format!("could not calculate client proof: {e}"))?;
        self.auth_message = [
            &self.client_first_bare[..],
            b",",
            server_first,
            b",",
            &without_proof,
        ]
        .concat();
        let client_key = hmac(&self.salted_password, b"Client Key")?;
        let stored_key = hash(MessageDigest::sha256(), &client_key)
            .map_err(|e| format!("could not calculate client proof: {e}"))?;
        let client_signature = hmac(&stored_key, &self.auth_message)?;
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let mut out = without_proof;
        out.extend_from_slice(b",p=");
        out.extend_from_slice(openssl::base64::encode_block(&proof).as_bytes());
        Ok(out)
    }

    /// Compares the server's signature with the expected one in constant time.
    fn verify(&self, signature: &[u8; KEY_LEN]) -> bool {
        let Ok(server_key) = hmac(&self.salted_password, b"Server Key") else {
            return false;
        };
        match hmac(&server_key, &self.auth_message) {
            Ok(expected) => expected.len() == KEY_LEN && openssl::memcmp::eq(&expected, signature),
            Err(_) => false,
        }
    }
}

/// HMAC-SHA-256.
fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let fail = |e: openssl::error::ErrorStack| format!("could not calculate client proof: {e}");
    let k = PKey::hmac(key).map_err(fail)?;
    let mut s = Signer::new(MessageDigest::sha256(), &k).map_err(fail)?;
    s.update(data).map_err(fail)?;
    s.sign_to_vec().map_err(fail)
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

/// Parses a server-first-message (`r=…,s=…,i=…`) for a client that sent `client_nonce`.
pub fn parse_server_first<'a>(
    input: &'a [u8],
    client_nonce: &[u8],
) -> Result<ServerFirst<'a>, String> {
    check_input(input)?;
    let mut rest = input;
    let nonce = read_attr(&mut rest, b'r')?;
    let ours = nonce.get(..client_nonce.len());
    if !ours.is_some_and(|n| openssl::memcmp::eq(n, client_nonce)) {
        return Err("invalid SCRAM response (nonce mismatch)".into());
    }
    let salt = read_attr(&mut rest, b's')?;
    let salt = decode_base64(salt).ok_or("malformed SCRAM message (invalid salt)")?;
    let iterations = read_attr(&mut rest, b'i')?;
    let iterations = std::str::from_utf8(iterations)
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|&i| i >= 1)
        .ok_or("malformed SCRAM message (invalid iteration count)")?;
    if !rest.is_empty() {
        return Err("malformed SCRAM message (garbage at end of server-first-message)".into());
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations: iterations as u32,
    })
}

/// Parses a server-final-message (`v=…`, or `e=…` for the server's error) into the
/// 32-byte server signature.
pub fn parse_server_final(input: &[u8]) -> Result<[u8; KEY_LEN], String> {
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
    decode_base64(v)
        .and_then(|sig| <[u8; KEY_LEN]>::try_from(sig).ok())
        .ok_or_else(|| "malformed SCRAM message (invalid server signature)".into())
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
        ScramClient::with_nonce("pencil", Binding::No, NONCE).0
    }

    #[test]
    fn server_first_ok() {
        let f = parse_server_first(
            b"r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            NONCE,
        )
        .unwrap();
        assert_eq!(f.nonce, b"rOprNGfwEbeRWgbNEkqOsrv");
        assert_eq!(f.iterations, 4096);
        assert_eq!(f.salt.len(), 16);
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
                parse_server_first(input, NONCE).unwrap_err(),
                *want,
                "{input:?}"
            );
        }
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
            assert_eq!(parse_server_final(input).unwrap_err(), *want, "{input:?}");
        }
    }

    #[test]
    fn final_before_first_is_refused() {
        let mut c = client();
        let e = c
            .exchange(b"r=rOprNGfwEbeRWgbNEkqOx,s=AAAA,i=1", true)
            .unwrap_err();
        assert_eq!(
            e,
            "AuthenticationSASLFinal received from server, but SASL authentication was not completed"
        );
        assert!(!c.finished());
    }

    #[test]
    fn wrong_signature_is_refused_and_not_finished() {
        let mut c = client();
        c.exchange(b"r=rOprNGfwEbeRWgbNEkqOx,s=AAAA,i=1", false)
            .unwrap();
        let sig = openssl::base64::encode_block(&[0u8; 32]);
        let e = c.exchange(format!("v={sig}").as_bytes(), true).unwrap_err();
        assert_eq!(e, "incorrect server signature");
        assert!(!c.finished() && !c.channel_bound());
    }

    /// Arbitrary and truncated inputs never panic (a small deterministic fuzz loop).
    #[test]
    fn arbitrary_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid = b"r=rOprNGfwEbeRWgbNEkqOsrv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1";
        for i in 0..4000 {
            let mut input: Vec<u8> = if i % 2 == 0 {
                valid[..(next() as usize) % (valid.len() + 1)].to_vec()
            } else {
                (0..next() % 40).map(|_| next() as u8).collect()
            };
            if i % 3 == 0 && !input.is_empty() {
                let at = next() as usize % input.len();
                input[at] = next() as u8;
            }
            let _ = parse_server_first(&input, NONCE);
            let _ = parse_server_final(&input);
            let mut c = client();
            let _ = c.exchange(&input, i % 5 == 0);
            let _ = c.exchange(&input, true);
        }
    }
}
