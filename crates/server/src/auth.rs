//! Users and their passwords, from a users file.
//!
//! A line per user, `NAME:SECRET`, where the secret is PostgreSQL's SCRAM-SHA-256 verifier
//! (what `pg_authid` stores, RFC 5803 / RFC 7677):
//!
//! ```text
//! # comment
//! alice:SCRAM-SHA-256$4096:<salt, base64>$<StoredKey, base64>:<ServerKey, base64>
//! ```
//!
//! The password itself is never stored. `mito user add NAME` prints such a line. One verifier
//! serves HTTP (Basic, or `Token`/`Bearer` with `user:password` as InfluxDB 1.8's v2 API
//! takes it), and a PostgreSQL SCRAM exchange can be checked against the same keys.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use snafu::{ResultExt, Snafu};

/// PBKDF2 rounds of new verifiers (PostgreSQL's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Fewest PBKDF2 rounds a users file may use.
const MIN_ITERATIONS: u32 = 4096;

/// Most rounds accepted (a verifier must not make each login cost seconds).
const MAX_ITERATIONS: u32 = 1_000_000;

/// What is wrong with a users file.
#[derive(Debug, Snafu)]
pub enum UsersError {
    /// The file could not be read.
    #[snafu(display("cannot read the users file {}: {source}", path.display()))]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a user.
    #[snafu(display("users file {}, line {line}: {reason}", path.display()))]
    Line {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file names no user.
    #[snafu(display("the users file {} names no user", path.display()))]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// A SCRAM-SHA-256 verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 rounds.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl Verifier {
    /// The verifier of `password` with `salt` and `iterations` rounds.
    pub fn new(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or("the secret is not a SCRAM-SHA-256 verifier (make one with `mito user add`)")?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or("the verifier lacks its keys after a second '$'")?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or("the verifier lacks ':' between rounds and salt")?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| format!("'{iterations}' is not a number of rounds"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "{iterations} rounds is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            ));
        }
        let salt = B64
            .decode(salt)
            .map_err(|e| format!("the salt is not base64: {e}"))?;
        if salt.is_empty() {
            return Err("the salt is empty".into());
        }
        let (stored, server) = keys
            .split_once(':')
            .ok_or("the verifier lacks ':' between its two keys")?;
        let key = |k: &str, what: &str| -> Result<[u8; 32], String> {
            B64.decode(k)
                .map_err(|e| format!("the {what} is not base64: {e}"))?
                .try_into()
                .map_err(|_| format!("the {what} is not 32 bytes"))
        };
        Ok(Self {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey")?,
            server_key: key(server, "ServerKey")?,
        })
    }

    /// Whether `password` is the one this verifier was made from (constant time in the keys).
    pub fn check(&self, password: &str) -> bool {
        let other = Self::new(password, &self.salt, self.iterations);
        same_key(&other.stored_key, &self.stored_key)
    }
}

/// Whether two keys are equal, in time independent of where they differ.
fn same_key(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The server side of one SCRAM-SHA-256 exchange (RFC 5802 / RFC 7677, without channel
/// binding), as PostgreSQL runs it: the client's first message, the server's challenge, the
/// client's proof, the server's signature. The user comes from the startup message (the
/// name inside the SCRAM message is ignored, as PostgreSQL ignores it). An unknown user gets
/// a challenge all the same, with a salt derived from the name, and fails at the proof, so
/// the exchange does not tell which users exist.
#[derive(Debug)]
pub struct ScramServer {
    verifier: Option<Verifier>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// A message does not follow RFC 5802.
    Malformed(String),
    /// The proof does not match: a wrong password or an unknown user.
    Rejected,
}

impl std::fmt::Display for ScramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed SCRAM message: {why}"),
            Self::Rejected => f.write_str("password authentication failed"),
        }
    }
}

impl std::error::Error for ScramError {}

impl ScramServer {
    /// Reads the client's first message (`n,,n=...,r=NONCE`) and answers with the challenge
    /// (`r=NONCE+SERVER,s=SALT,i=ROUNDS`); `server_nonce` is fresh randomness (printable, no
    /// commas).
    pub fn start(
        verifier: Option<&Verifier>,
        user: &str,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(Self, String), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        // gs2 header: "n" (no channel binding) or "y" (client could but thinks we cannot),
        // an empty authzid.
        let bare = text
            .strip_prefix("n,,")
            .or_else(|| text.strip_prefix("y,,"))
            .ok_or_else(|| {
                ScramError::Malformed(
                    "expected a gs2 header of \"n,,\" (channel binding is not offered)".into(),
                )
            })?;
        let client_nonce = attribute(bare, 'r')
            .ok_or_else(|| ScramError::Malformed("the first message lacks r=".into()))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ScramError::Malformed(
                "the client nonce is not printable".into(),
            ));
        }
        let (salt, iterations) = match verifier {
            Some(v) => (v.salt.clone(), v.iterations),
            None => {
                let digest: [u8; 32] = Sha256::digest(format!("mito unknown user {user}")).into();
                (
                    digest.get(..16).unwrap_or(&digest).to_vec(),
                    DEFAULT_ITERATIONS,
                )
            }
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        Ok((
            Self {
                verifier: verifier.cloned(),
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client's final message (`c=biws,r=NONCE,p=PROOF`); on success, the
    /// server's final message (`v=SIGNATURE`).
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| ScramError::Malformed("the final message lacks p=".into()))?;
        let binding = attribute(without_proof, 'c')
            .ok_or_else(|| ScramError::Malformed("the final message lacks c=".into()))?;
        // base64 of the gs2 header "n,," or "y,,".
        if binding != "biws" && binding != "eSws" {
            return Err(ScramError::Malformed(
                "channel binding data does not match the gs2 header".into(),
            ));
        }
        if attribute(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("the nonce does not match".into()));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| ScramError::Malformed("the proof is not 32 bytes of base64".into()))?;
        let Some(verifier) = &self.verifier else {
            return Err(ScramError::Rejected);
        };
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key
            .iter_mut()
            .zip(proof.iter().zip(signature.iter()))
        {
            *k = p ^ s;
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !same_key(&stored, &verifier.stored_key) {
            return Err(ScramError::Rejected);
        }
        let server_signature = hmac(&verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// The value of attribute `name` (`name=value`) in a comma-separated SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| part.get(2..))?
    })
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// A users-file line for `name` with a new random salt.
pub fn user_line(name: &str, password: &str) -> Result<String, String> {
    check_name(name)?;
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let salt: [u8; 16] = rand::random();
    Ok(format!(
        "{name}:{}",
        Verifier::new(password, &salt, DEFAULT_ITERATIONS)
    ))
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the user name is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("the user name may not contain {c:?}"));
    }
    Ok(())
}

/// Verified logins kept before the set is cleared (each is a hash, not a password).
const KEPT_LOGINS: usize = 4096;

/// The users of a server.
#[derive(Debug)]
pub struct Users {
    users: HashMap<String, Verifier>,
    /// SHA-256 of `name \0 password` of logins that passed, so a client sending the same
    /// credentials on every request pays PBKDF2 once.
    passed: Mutex<HashSet<[u8; 32]>>,
}

impl Users {
    /// Reads a users file.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = std::fs::read_to_string(path).context(ReadSnafu { path })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a users file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, UsersError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: String| UsersError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let (name, secret) = line
                .split_once(':')
                .ok_or_else(|| fail("expected NAME:SECRET".into()))?;
            check_name(name).map_err(fail)?;
            let verifier = Verifier::parse(secret).map_err(fail)?;
            if users.insert(name.to_string(), verifier).is_some() {
                return Err(fail(format!("user '{name}' is named twice")));
            }
        }
        if users.is_empty() {
            return EmptySnafu { path }.fail();
        }
        Ok(Self {
            users,
            passed: Mutex::new(HashSet::new()),
        })
    }

    /// The verifier of `name` (for a SCRAM exchange).
    pub fn verifier(&self, name: &str) -> Option<&Verifier> {
        self.users.get(name)
    }

    /// Whether `name` has `password`.
    pub fn check(&self, name: &str, password: &str) -> bool {
        let Some(verifier) = self.users.get(name) else {
            return false;
        };
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let lock = |m: &Mutex<HashSet<[u8; 32]>>| {
            m.lock()
                .map(|g| g.contains(&key))
                .unwrap_or_else(|p| p.into_inner().contains(&key))
        };
        if lock(&self.passed) {
            return true;
        }
        if !verifier.check(password) {
            return false;
        }
        let mut passed = self
            .passed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if passed.len() >= KEPT_LOGINS {
            passed.clear();
        }
        passed.insert(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_round_trips_and_checks_only_its_password() {
        let line = user_line("alice", "s3cret").unwrap();
        let (name, secret) = line.split_once(':').unwrap();
        assert_eq!(name, "alice");
        let v = Verifier::parse(secret).unwrap();
        assert_eq!(v.to_string(), secret);
        assert!(v.check("s3cret"));
        assert!(!v.check("s3cret "));
        assert!(!v.check(""));
    }

    #[test]
    fn the_verifier_is_postgres_scram() {
        // RFC 7677's example: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
        // 4096 rounds; its ServerSignature implies these keys (as PostgreSQL computes them).
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::new("pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = hmac(&v.server_key, auth_message.as_bytes());
        assert_eq!(
            B64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn bad_users_files_name_the_line() {
        let p = Path::new("users");
        for (text, want) in [
            ("", "names no user"),
            ("alice", "line 1: expected NAME:SECRET"),
            ("# c\nalice:plain", "line 2: the secret is not a SCRAM"),
            ("a:SCRAM-SHA-256$10:AAAA$AA==:AA==", "outside"),
            ("a:SCRAM-SHA-256$4096:AAAA$AA==:AA==", "not 32 bytes"),
        ] {
            let e = Users::parse(text, p).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let line = user_line("bob", "pw").unwrap();
        let e = Users::parse(&format!("{line}\n{line}\n"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("named twice"), "{e}");
        assert!(user_line("a:b", "pw").is_err());
        assert!(user_line("a", "").is_err());
    }

    #[test]
    fn logins_pass_only_with_the_right_password() {
        let text = format!(
            "{}\n{}\n",
            user_line("alice", "one").unwrap(),
            user_line("bob", "two").unwrap()
        );
        let users = Users::parse(&text, Path::new("users")).unwrap();
        for _ in 0..2 {
            assert!(users.check("alice", "one"));
            assert!(users.check("bob", "two"));
            assert!(!users.check("alice", "two"));
            assert!(!users.check("carol", "one"));
        }
    }

    #[test]
    fn a_scram_exchange_follows_rfc_7677() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::new("pencil", &salt, 4096);
        let (server, first) = ScramServer::start(
            Some(&v),
            "user",
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                   p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            server.finish(fin.as_bytes()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // A wrong proof, a replayed nonce, an unknown user, garbage: refused, no panic.
        let wrong = fin.replace("p=dHzb", "p=dHzc");
        assert_eq!(server.finish(wrong.as_bytes()), Err(ScramError::Rejected));
        let other_nonce = fin.replace("k0,", "k1,");
        assert!(matches!(
            server.finish(other_nonce.as_bytes()),
            Err(ScramError::Malformed(_))
        ));
        let (unknown, _) = ScramServer::start(
            None,
            "eve",
            b"n,,n=,r=rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(unknown.finish(fin.as_bytes()), Err(ScramError::Rejected));
        for junk in [
            &b""[..],
            b"n,,",
            b"p=x",
            b"\xff\xfe",
            b"n,,r=",
            b"c=biws,r=x,p=!!",
        ] {
            let _ = ScramServer::start(Some(&v), "user", junk, "abc");
            let _ = server.finish(junk);
        }
    }
}
