//! Identifiers and secrets: transaction ids, API tokens and their stored hashes.
//!
//! The deployed system kept tokens in clear and compared them with `==`. Here a token exists in
//! clear only at creation (shown once), is stored as its SHA-256, and is checked in constant time.
//! Randomness comes from the caller through [`SecureRandom`], so this crate stays pure and tests
//! stay reproducible.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A source of cryptographically secure random bytes, given by the caller (the server wraps the
/// operating system's generator; tests may pass a fixed sequence).
pub trait SecureRandom {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

/// A webhook event's id: `evt_` and 128 random bits in hex, stable across the event's delivery
/// attempts (receivers de-duplicate by it; it is `X-Webhook-Id` and the body's `event_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// A new, random id.
    pub fn generate(random: &mut impl SecureRandom) -> EventId {
        let mut bytes = [0u8; 16];
        random.fill(&mut bytes);
        EventId(format!("evt_{}", hex::encode(bytes)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An id as stored or as named in a request (looked up, never trusted to be well formed).
impl From<String> for EventId {
    fn from(text: String) -> EventId {
        EventId(text)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new refund request id: `rf_` and 64 random bits in hex.
pub fn refund_id(random: &mut impl SecureRandom) -> String {
    let mut bytes = [0u8; 8];
    random.fill(&mut bytes);
    format!("rf_{}", hex::encode(bytes))
}

/// A payment's public id: 12 uppercase hex characters (`A3F5D9E2B1C8`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionId(String);

/// A text that is not a transaction id (the API answers 404 for it, not 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a transaction id: {0:?}")]
pub struct InvalidTransactionId(pub String);

impl TransactionId {
    /// Length of every id.
    pub const LEN: usize = 12;

    /// A new id from 48 random bits.
    pub fn generate(random: &mut impl SecureRandom) -> TransactionId {
        let mut bytes = [0u8; Self::LEN / 2];
        random.fill(&mut bytes);
        TransactionId(hex::encode_upper(bytes))
    }

    /// Accepts exactly 12 characters of `0-9A-F`; lowercase is refused, since ids are shown and
    /// compared as issued.
    pub fn parse(text: &str) -> Result<TransactionId, InvalidTransactionId> {
        let valid = text.len() == Self::LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
        if valid {
            Ok(TransactionId(text.to_owned()))
        } else {
            Err(InvalidTransactionId(text.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({})", self.0)
    }
}

impl Serialize for TransactionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TransactionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TransactionId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A value that must never appear in logs: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The secret itself, for the one place that needs it (signing, sending a header).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Read as the value itself (a configuration file's token); written nowhere.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret<T>, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Secret<T> {
        Secret(value)
    }
}

/// A source's API token in clear: 64 characters of `[A-Za-z0-9]`. It exists only between its
/// generation and the one answer that shows it; the database keeps its [`TokenHash`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(Secret<String>);

const TOKEN_ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl ApiToken {
    /// Length of every token.
    pub const LEN: usize = 64;

    /// A new token, uniformly distributed over the 62-character alphabet (bytes ≥ 248 are
    /// rejected so that `byte % 62` carries no bias).
    pub fn generate(random: &mut impl SecureRandom) -> ApiToken {
        let mut token = String::with_capacity(Self::LEN);
        let mut buffer = [0u8; 64];
        while token.len() < Self::LEN {
            random.fill(&mut buffer);
            for byte in buffer {
                if byte < 248 && token.len() < Self::LEN {
                    token.push(char::from(TOKEN_ALPHABET[usize::from(byte % 62)]));
                }
            }
        }
        ApiToken(Secret::new(token))
    }

    /// Accepts a token as presented in `X-API-Token` or `Authorization: Bearer`; `None` when it
    /// cannot be a token (so no hash lookup is made for it).
    pub fn parse(text: &str) -> Option<ApiToken> {
        let valid = text.len() == Self::LEN && text.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then(|| ApiToken(Secret::new(text.to_owned())))
    }

    /// The token in clear, to show it once.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The hash the database stores and looks tokens up by.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken([redacted])")
    }
}

/// SHA-256 of a token, as lowercase hex. Tokens carry 380 bits of entropy, so a plain hash (no
/// salt, no stretching) is enough and allows an indexed lookup.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// The hash of any presented text (admin tokens from configuration need not follow the
    /// 64-character format).
    pub fn of(token: &str) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(token.as_bytes())))
    }

    /// A stored hash, as read back from the database.
    pub fn from_stored(hex: String) -> TokenHash {
        TokenHash(hex)
    }

    /// The hash as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` hashes to this, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let candidate = TokenHash::of(presented);
        candidate.0.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not a secret, but a prefix is enough to tell two apart.
        write!(f, "TokenHash({}…)", self.0.get(..8).unwrap_or(""))
    }
}

/// Constant-time equality of two byte strings (length is not hidden).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic "random" source for tests: a counter.
    pub(crate) struct Counter(pub u8);

    impl SecureRandom for Counter {
        fn fill(&mut self, dest: &mut [u8]) {
            for byte in dest {
                *byte = self.0;
                self.0 = self.0.wrapping_add(37);
            }
        }
    }

    #[test]
    fn transaction_ids_are_12_uppercase_hex() {
        let id = TransactionId::generate(&mut Counter(0xA3));
        assert_eq!(id.as_str().len(), 12);
        assert_eq!(TransactionId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
        assert!(TransactionId::parse("A3F5D9E2B1C8").is_ok());
        for bad in [
            "a3f5d9e2b1c8",
            "A3F5D9E2B1C",
            "A3F5D9E2B1C8D",
            "G3F5D9E2B1C8",
            "",
            "A3F5D9E2B1C/",
            "А3F5D9E2B1C8",
        ] {
            assert!(TransactionId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_and_refund_ids_are_prefixed_hex_of_fresh_random_bits() {
        let mut random = Counter(3);
        let (first, second) = (EventId::generate(&mut random), EventId::generate(&mut random));
        for id in [&first, &second] {
            let hex = id.as_str().strip_prefix("evt_").unwrap();
            assert_eq!(hex.len(), 32);
            assert!(
                hex.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        assert_ne!(first, second);
        assert_eq!(EventId::from(first.to_string()), first);
        let refund = refund_id(&mut random);
        let hex = refund.strip_prefix("rf_").unwrap();
        assert_eq!(hex.len(), 16);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(refund, refund_id(&mut random));
    }

    #[test]
    fn tokens_are_64_alphanumerics_and_use_the_whole_alphabet() {
        let token = ApiToken::generate(&mut Counter(1));
        assert_eq!(token.expose().len(), 64);
        assert!(token.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
        let mut seen = std::collections::HashSet::new();
        let mut counter = Counter(7);
        for _ in 0..50 {
            seen.extend(ApiToken::generate(&mut counter).expose().bytes());
        }
        assert_eq!(seen.len(), 62);
        assert!(ApiToken::parse(token.expose()).is_some());
        assert!(ApiToken::parse("short").is_none());
        assert!(ApiToken::parse(&"a-".repeat(32)).is_none());
    }

    #[test]
    fn hashes_match_only_their_token() {
        let token = ApiToken::generate(&mut Counter(9));
        let hash = token.hash();
        assert_eq!(hash.as_str().len(), 64);
        assert!(hash.matches(token.expose()));
        assert!(!hash.matches(&token.expose().to_lowercase()));
        assert!(!hash.matches(""));
        assert_eq!(
            TokenHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"diff"));
    }

    #[test]
    fn secrets_never_print_themselves() {
        let token = ApiToken::generate(&mut Counter(3));
        assert_eq!(format!("{token:?}"), "ApiToken([redacted])");
        let secret = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }
}
