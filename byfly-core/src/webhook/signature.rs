//! Webhook signatures and their verification.
//!
//! - `X-Webhook-Signature`: lowercase hex HMAC-SHA256(secret, body) — the guide's scheme. It proves
//!   origin but not freshness: a captured request can be replayed.
//! - `X-Webhook-Signature-V2`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` — our
//!   addition; the timestamp is signed, so a receiver can refuse stale or replayed requests.
//! - Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
//!   HMAC-SHA256(key, "<id>.<t>.<body>")>`), so the official `standardwebhooks` and Svix libraries
//!   verify our requests unmodified. Their key convention applies to this signature: a secret
//!   `whsec_<base64>` signs with the decoded bytes ([`standard_key`]), any other secret with its own
//!   bytes. The guide's two signatures keep using the secret's text as it is, so one secret works
//!   with a receiver written from the guide and with the standard libraries at once.
//!
//! Verification takes `now` from the caller (no clock here) and a tolerance in seconds; freshness
//! comes from V2's `t` when present, else from the `timestamp` field of the signed body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header names, as sent.
pub mod headers {
    /// The guide's signature header.
    pub const SIGNATURE: &str = "X-Webhook-Signature";
    /// Our replay-safe signature header.
    pub const SIGNATURE_V2: &str = "X-Webhook-Signature-V2";
    /// The payload's `timestamp`, repeated.
    pub const TIMESTAMP: &str = "X-Webhook-Timestamp";
    /// The event name (`paid`).
    pub const EVENT: &str = "X-Webhook-Event";
    /// The event id, stable across retries, for de-duplication.
    pub const ID: &str = "X-Webhook-Id";
    /// The user agent of the deployed system, kept for receivers that filter on it.
    pub const USER_AGENT: &str = "ByFly-Payment-Center/1.0";
    /// Standard Webhooks: the event id.
    pub const STANDARD_ID: &str = "webhook-id";
    /// Standard Webhooks: the signed unix seconds.
    pub const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
    /// Standard Webhooks: `v1,<base64>` (several, space-separated, during a secret rotation).
    pub const STANDARD_SIGNATURE: &str = "webhook-signature";
}

/// The Standard Webhooks prefix of a secret whose key is the base64 after it.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// The HMAC key of the Standard Webhooks signature: the decoded base64 of a `whsec_<base64>`
/// secret, else the secret's own bytes.
pub fn standard_key(secret: &[u8]) -> Vec<u8> {
    secret
        .strip_prefix(STANDARD_SECRET_PREFIX.as_bytes())
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .unwrap_or_else(|| secret.to_vec())
}

fn standard_mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = mac(key);
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `webhook-signature`: `v1,<base64 HMAC-SHA256(standard_key(secret), "<id>.<timestamp>.<body>")>`.
pub fn sign_standard(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = standard_mac(&standard_key(secret), id, timestamp, body)
        .finalize()
        .into_bytes();
    format!("v1,{}", BASE64.encode(digest))
}

/// The default freshness window of verification: 5 minutes either way.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

#[allow(clippy::expect_used)] // HMAC is defined for keys of any length: this cannot fail.
fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// `X-Webhook-Signature`: lowercase hex HMAC-SHA256 over the exact body bytes.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn v2_mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = mac(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `X-Webhook-Signature-V2`: `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign_v2(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = v2_mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// The signature headers of one delivery, as the server sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `X-Webhook-Signature`.
    pub signature: String,
    /// `X-Webhook-Signature-V2`.
    pub signature_v2: String,
    /// `X-Webhook-Timestamp`.
    pub timestamp: String,
}

impl SignedHeaders {
    /// Signs `body` at `timestamp` (the payload's own `timestamp`). Receivers' tests use it to make
    /// valid headers for any body.
    pub fn sign(secret: &[u8], body: &[u8], timestamp: i64) -> SignedHeaders {
        SignedHeaders {
            signature: sign(secret, body),
            signature_v2: sign_v2(secret, timestamp, body),
            timestamp: timestamp.to_string(),
        }
    }

    /// The Standard Webhooks headers of event `id` (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`), sent alongside [`SignedHeaders::pairs`].
    pub fn standard(secret: &[u8], id: &str, body: &[u8], timestamp: i64) -> [(&'static str, String); 3] {
        [
            (headers::STANDARD_ID, id.to_owned()),
            (headers::STANDARD_TIMESTAMP, timestamp.to_string()),
            (
                headers::STANDARD_SIGNATURE,
                sign_standard(secret, id, timestamp, body),
            ),
        ]
    }

    /// The three headers as `(name, value)` pairs.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (headers::SIGNATURE, &self.signature),
            (headers::SIGNATURE_V2, &self.signature_v2),
            (headers::TIMESTAMP, &self.timestamp),
        ]
    }
}

/// The signature headers a receiver got (any may be missing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceivedSignatures<'a> {
    /// `X-Webhook-Signature`.
    pub signature: Option<&'a str>,
    /// `X-Webhook-Signature-V2`.
    pub signature_v2: Option<&'a str>,
    /// The Standard Webhooks headers, when all three came.
    pub standard: Option<StandardSignature<'a>>,
}

impl<'a> ReceivedSignatures<'a> {
    /// The signature headers of a request, looked up by name through `header` (HTTP header names
    /// are case-insensitive: the lookup's business). The Standard Webhooks ones count only when
    /// all three came.
    pub fn from_headers(header: impl Fn(&str) -> Option<&'a str>) -> ReceivedSignatures<'a> {
        let standard = match (
            header(headers::STANDARD_ID),
            header(headers::STANDARD_TIMESTAMP),
            header(headers::STANDARD_SIGNATURE),
        ) {
            (Some(id), Some(timestamp), Some(signature)) => Some(StandardSignature {
                id,
                timestamp,
                signature,
            }),
            _ => None,
        };
        ReceivedSignatures {
            signature: header(headers::SIGNATURE),
            signature_v2: header(headers::SIGNATURE_V2),
            standard,
        }
    }
}

/// The Standard Webhooks headers a receiver got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardSignature<'a> {
    /// `webhook-id`.
    pub id: &'a str,
    /// `webhook-timestamp`.
    pub timestamp: &'a str,
    /// `webhook-signature`.
    pub signature: &'a str,
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signature header was present.
    #[error("the request carries no webhook signature")]
    Missing,
    /// A header is not of the documented form.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// A signature does not match the body and secret.
    #[error("signature mismatch ({0})")]
    Mismatch(&'static str),
    /// The signed timestamp is outside the tolerance window.
    #[error("timestamp {timestamp} is {age} s away from now (tolerance {tolerance} s)")]
    Stale {
        timestamp: i64,
        age: i64,
        tolerance: i64,
    },
    /// Freshness could not be established: no V2 header and no numeric `timestamp` in the body.
    #[error("no signed timestamp to check freshness against")]
    NoTimestamp,
}

fn verify_hex(mac: HmacSha256, hex_signature: &str, which: &'static str) -> Result<(), VerifyError> {
    let expected = hex::decode(hex_signature.trim()).map_err(|_| VerifyError::Malformed(which))?;
    mac.verify_slice(&expected)
        .map_err(|_| VerifyError::Mismatch(which))
}

/// Parses `t=…,v1=…[,v1=…]` (several `v1` are allowed, for secret rotation).
fn parse_v2(header: &str) -> Result<(i64, Vec<&str>), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse()
                        .map_err(|_| VerifyError::Malformed(headers::SIGNATURE_V2))?,
                )
            }
            Some(("v1", value)) => signatures.push(value),
            Some(_) => {} // unknown schemes are skipped, so new ones can be added later
            None => return Err(VerifyError::Malformed(headers::SIGNATURE_V2)),
        }
    }
    match timestamp {
        Some(t) if !signatures.is_empty() => Ok((t, signatures)),
        _ => Err(VerifyError::Malformed(headers::SIGNATURE_V2)),
    }
}

fn check_fresh(timestamp: i64, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    let age = now.saturating_sub(timestamp);
    if age.abs() > tolerance {
        return Err(VerifyError::Stale {
            timestamp,
            age,
            tolerance,
        });
    }
    Ok(())
}

/// The `timestamp` field of a JSON body, when it is an integer.
fn body_timestamp(body: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Stamped {
        timestamp: i64,
    }
    serde_json::from_slice::<Stamped>(body)
        .ok()
        .map(|stamped| stamped.timestamp)
}

/// Verifies a received webhook: every signature header present must match the exact body bytes,
/// at least one must be present, and the signed timestamp must be within `tolerance` seconds of
/// `now`. Returns the signed timestamp.
///
/// ```
/// use byfly_core::webhook::signature::{verify, ReceivedSignatures, SignedHeaders, DEFAULT_TOLERANCE_SECS};
///
/// let body = br#"{"event":"paid","timestamp":1736775000}"#;
/// // What the server sends (and what a receiver's own tests can produce):
/// let sent = SignedHeaders::sign(b"secret", body, 1_736_775_000);
/// let received = ReceivedSignatures {
///     signature: Some(&sent.signature),
///     signature_v2: Some(&sent.signature_v2),
///     standard: None,
/// };
/// assert_eq!(verify(b"secret", body, received, 1_736_775_030, DEFAULT_TOLERANCE_SECS), Ok(1_736_775_000));
/// assert!(verify(b"wrong", body, received, 1_736_775_030, DEFAULT_TOLERANCE_SECS).is_err());
/// ```
pub fn verify(
    secret: &[u8],
    body: &[u8],
    received: ReceivedSignatures<'_>,
    now: i64,
    tolerance: i64,
) -> Result<i64, VerifyError> {
    if received.signature.is_none() && received.signature_v2.is_none() && received.standard.is_none() {
        return Err(VerifyError::Missing);
    }
    if let Some(signature) = received.signature {
        let mut mac = mac(secret);
        mac.update(body);
        verify_hex(mac, signature, headers::SIGNATURE)?;
    }
    let v2_timestamp = match received.signature_v2 {
        Some(header) => {
            let (timestamp, signatures) = parse_v2(header)?;
            let matched = signatures.iter().any(|candidate| {
                verify_hex(v2_mac(secret, timestamp, body), candidate, headers::SIGNATURE_V2).is_ok()
            });
            if !matched {
                return Err(VerifyError::Mismatch(headers::SIGNATURE_V2));
            }
            Some(timestamp)
        }
        None => None,
    };
    let standard_timestamp = received
        .standard
        .map(|standard| verify_standard(secret, body, standard))
        .transpose()?;
    // Freshness from a signed timestamp: V2's, the standard one, else the signed body's.
    let timestamp = match v2_timestamp.or(standard_timestamp) {
        Some(timestamp) => timestamp,
        None => body_timestamp(body).ok_or(VerifyError::NoTimestamp)?,
    };
    check_fresh(timestamp, now, tolerance)?;
    Ok(timestamp)
}

/// Checks the Standard Webhooks signature (any of the space-separated `v1,<base64>` entries may
/// match); returns its signed timestamp.
fn verify_standard(secret: &[u8], body: &[u8], standard: StandardSignature<'_>) -> Result<i64, VerifyError> {
    let timestamp: i64 = standard
        .timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed(headers::STANDARD_TIMESTAMP))?;
    let key = standard_key(secret);
    let matched = standard.signature.split_whitespace().any(|entry| {
        let Some(("v1", encoded)) = entry.split_once(',') else {
            return false;
        };
        BASE64.decode(encoded).is_ok_and(|expected| {
            standard_mac(&key, standard.id, timestamp, body)
                .verify_slice(&expected)
                .is_ok()
        })
    });
    if !matched {
        return Err(VerifyError::Mismatch(headers::STANDARD_SIGNATURE));
    }
    Ok(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"your_secret_key";
    const BODY: &[u8] = br#"{"event":"paid","timestamp":1736775000}"#;
    const NOW: i64 = 1_736_775_010;

    fn received(headers: &SignedHeaders) -> ReceivedSignatures<'_> {
        ReceivedSignatures {
            signature: Some(&headers.signature),
            signature_v2: Some(&headers.signature_v2),
            standard: None,
        }
    }

    #[test]
    fn standard_webhooks_signature_and_key_convention() {
        // The Standard Webhooks specification's own example: secret, id, timestamp, body, signature.
        let secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign_standard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(standard_key(b"plain"), b"plain".to_vec());
        assert_eq!(
            standard_key(b"whsec_!!"),
            b"whsec_!!".to_vec(),
            "not base64: the bytes themselves"
        );
        let received = ReceivedSignatures {
            standard: Some(StandardSignature {
                id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                timestamp: "1614265330",
                signature: &format!("v1,bm90IGl0 {signature}"),
            }),
            ..ReceivedSignatures::default()
        };
        assert_eq!(
            verify(secret, body, received, 1_614_265_340, 300),
            Ok(1_614_265_330)
        );
        assert_eq!(
            verify(secret, br#"{"test": 1}"#, received, 1_614_265_340, 300),
            Err(VerifyError::Mismatch("webhook-signature"))
        );
        assert!(matches!(
            verify(secret, body, received, 1_614_266_340, 300),
            Err(VerifyError::Stale { .. })
        ));
    }

    #[test]
    fn known_hmac_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sign_v2(b"Jefe", 1, b"x"),
            format!("t=1,v1={}", sign(b"Jefe", b"1.x"))
        );
    }

    #[test]
    fn signed_headers_verify() {
        let headers = SignedHeaders::sign(SECRET, BODY, 1_736_775_000);
        assert_eq!(
            verify(SECRET, BODY, received(&headers), NOW, 300),
            Ok(1_736_775_000)
        );
        assert_eq!(headers.pairs()[2], ("X-Webhook-Timestamp", "1736775000"));
        // V1 alone: freshness from the signed body.
        let v1_only = ReceivedSignatures {
            signature: Some(&headers.signature),
            signature_v2: None,
            standard: None,
        };
        assert_eq!(verify(SECRET, BODY, v1_only, NOW, 300), Ok(1_736_775_000));
        // V2 alone.
        let v2_only = ReceivedSignatures {
            signature: None,
            signature_v2: Some(&headers.signature_v2),
            standard: None,
        };
        assert_eq!(verify(SECRET, BODY, v2_only, NOW, 300), Ok(1_736_775_000));
    }

    #[test]
    fn tampering_wrong_secret_and_staleness_are_refused() {
        let headers = SignedHeaders::sign(SECRET, BODY, 1_736_775_000);
        let tampered = br#"{"event":"paid","timestamp":1736775001}"#;
        assert_eq!(
            verify(SECRET, tampered, received(&headers), NOW, 300),
            Err(VerifyError::Mismatch("X-Webhook-Signature"))
        );
        assert_eq!(
            verify(b"other", BODY, received(&headers), NOW, 300),
            Err(VerifyError::Mismatch("X-Webhook-Signature"))
        );
        assert_eq!(
            verify(SECRET, BODY, received(&headers), NOW + 600, 300),
            Err(VerifyError::Stale {
                timestamp: 1_736_775_000,
                age: 610,
                tolerance: 300
            })
        );
        assert_eq!(
            verify(SECRET, BODY, ReceivedSignatures::default(), NOW, 300),
            Err(VerifyError::Missing)
        );
        let bad_hex = ReceivedSignatures {
            signature: Some("zz"),
            signature_v2: None,
            standard: None,
        };
        assert_eq!(
            verify(SECRET, BODY, bad_hex, NOW, 300),
            Err(VerifyError::Malformed("X-Webhook-Signature"))
        );
        let bad_v2 = ReceivedSignatures {
            signature: None,
            signature_v2: Some("v1=abc"),
            standard: None,
        };
        assert_eq!(
            verify(SECRET, BODY, bad_v2, NOW, 300),
            Err(VerifyError::Malformed("X-Webhook-Signature-V2"))
        );
        // A V2 signature replayed with a new `t` no longer matches.
        let replayed = headers.signature_v2.replace("t=1736775000", &format!("t={NOW}"));
        let replay = ReceivedSignatures {
            signature: None,
            signature_v2: Some(&replayed),
            standard: None,
        };
        assert_eq!(
            verify(SECRET, BODY, replay, NOW, 300),
            Err(VerifyError::Mismatch("X-Webhook-Signature-V2"))
        );
        // Without V2 and without a body timestamp there is nothing to check freshness against.
        let plain = b"{}";
        let v1 = sign(SECRET, plain);
        let v1_only = ReceivedSignatures {
            signature: Some(&v1),
            signature_v2: None,
            standard: None,
        };
        assert_eq!(
            verify(SECRET, plain, v1_only, NOW, 300),
            Err(VerifyError::NoTimestamp)
        );
    }

    #[test]
    fn rotation_accepts_any_v1_of_the_header() {
        let good = sign_v2(SECRET, 1_736_775_000, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=1736775000,v1={},v0=legacy,v1={v1}", "00".repeat(32));
        let rotated = ReceivedSignatures {
            signature: None,
            signature_v2: Some(&header),
            standard: None,
        };
        assert_eq!(verify(SECRET, BODY, rotated, NOW, 300), Ok(1_736_775_000));
    }
}
