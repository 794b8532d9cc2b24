//! Webhooks: the events, the payload in the guide's field order, its body encodings and signatures.
//!
//! The server builds a [`WebhookPayload`] from the payment at delivery time, encodes it with the
//! source's [`BodyEncoding`], signs the exact bytes ([`signature`]) and sends them; receivers verify
//! with [`signature::verify`] and parse the same type back.

pub mod encoding;
pub mod signature;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use encoding::{BodyEncoding, Json};
pub use signature::{ReceivedSignatures, SignedHeaders, VerifyError};

use crate::ids::TransactionId;
use crate::money::Money;
use crate::status::PaymentStatus;

/// A webhook event, with the guide's names (`expired` is our addition).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// Fully paid (within tolerance).
    Paid,
    /// Money received, a top-up is needed.
    PartiallyPaid,
    /// The operation failed and nothing was received.
    Failed,
    /// Cancelled by the merchant.
    Cancelled,
    /// A refund was confirmed (partial or full; `refunded_amount` says how much in all).
    Refunded,
    /// Not paid in time.
    Expired,
    /// Money arrived on a payment already paid (an abandoned operation the customer paid anyway):
    /// the status stays `paid`, `overpaid_amount` grows (addition).
    Overpaid,
}

impl WebhookEvent {
    /// Every event.
    pub const ALL: [WebhookEvent; 7] = [
        WebhookEvent::Paid,
        WebhookEvent::PartiallyPaid,
        WebhookEvent::Failed,
        WebhookEvent::Cancelled,
        WebhookEvent::Refunded,
        WebhookEvent::Expired,
        WebhookEvent::Overpaid,
    ];

    /// The event's name, as in `X-Webhook-Event`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Paid => "paid",
            WebhookEvent::PartiallyPaid => "partially_paid",
            WebhookEvent::Failed => "failed",
            WebhookEvent::Cancelled => "cancelled",
            WebhookEvent::Refunded => "refunded",
            WebhookEvent::Expired => "expired",
            WebhookEvent::Overpaid => "overpaid",
        }
    }

    /// Parses an event name.
    pub fn parse(text: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|event| event.as_str() == text)
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of a webhook: the guide's fields in the guide's order, then our additions.
///
/// `metadata` is the merchant's object, kept with its key order; when the payment has none it is
/// an empty object, which the PHP encoding writes as `[]` (as the deployed system did) and the
/// JavaScript one as `{}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// What happened.
    pub event: WebhookEvent,
    /// The payment.
    pub transaction_id: TransactionId,
    /// A₀ + commissions (see the ledger).
    pub amount: Money,
    /// A₀.
    pub original_amount: Money,
    /// Σ R of successful operations.
    pub paid_amount: Money,
    /// R of the operation that caused this event; 0 for events no payment caused.
    pub actual_amount_received: Money,
    /// max(0, amount − paid).
    pub remaining_amount: Money,
    /// `KZT`.
    pub currency: String,
    /// The payment's status after the event.
    pub status: PaymentStatus,
    /// The merchant's description.
    pub description: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
    /// `YYYY-MM-DD HH:MM:SS` once paid.
    pub paid_at: Option<String>,
    /// The merchant's metadata, verbatim (PHP receivers may see `[]` for an empty one).
    pub metadata: RawJson,
    /// Unix seconds of this delivery attempt; also `X-Webhook-Timestamp` and V2's `t`.
    pub timestamp: i64,
    /// Addition: the event's id, stable across retries (`X-Webhook-Id`), for de-duplication.
    pub event_id: String,
    /// Addition: Σ confirmed refunds.
    pub refunded_amount: Money,
    /// Addition: max(0, paid − amount).
    pub overpaid_amount: Money,
    /// Addition: commissions included in `amount`.
    pub commission_amount: Money,
    /// Addition: the method of the operation that caused the event, if any.
    pub payment_method: Option<String>,
    /// Addition: 1, 2, … per payment, in the order its events happened (and are delivered), so a
    /// receiver can order them itself.
    #[serde(default)]
    pub sequence: u64,
    /// Addition: `YYYY-MM-DD HH:MM:SS` when the event happened (`timestamp` is the attempt's time).
    #[serde(default)]
    pub event_created_at: String,
}

impl WebhookPayload {
    /// The exact body bytes for a source with this encoding.
    pub fn encode(&self, encoding: BodyEncoding) -> Result<String, serde_json::Error> {
        encoding.encode_text(&serde_json::to_string(self)?)
    }
}

/// A JSON text kept exactly as received (the merchant's metadata), compared by its text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Wraps a JSON text after checking that it is one JSON value.
    pub fn parse(text: &str) -> Result<RawJson, serde_json::Error> {
        RawValue::from_string(text.trim().to_owned()).map(RawJson)
    }

    /// `{}`: the metadata of a payment created without any.
    pub fn empty_object() -> RawJson {
        RawJson::parse("{}").unwrap_or_else(|_| unreachable!("{{}} is JSON"))
    }

    /// The text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guide_example() -> WebhookPayload {
        let metadata = r#"{"order_id":"12345","tour_name":"Дубай 7 дней","customer_id":"CU-456"}"#;
        WebhookPayload {
            event: WebhookEvent::Paid,
            transaction_id: TransactionId::parse("A3F5D9E2B1C8").unwrap(),
            amount: Money::parse("57000").unwrap(),
            original_amount: Money::parse("50000").unwrap(),
            paid_amount: Money::parse("57000").unwrap(),
            actual_amount_received: Money::parse("57000").unwrap(),
            remaining_amount: Money::ZERO,
            currency: "KZT".to_owned(),
            status: PaymentStatus::Paid,
            description: Some("Оплата тура в Дубай #12345".to_owned()),
            created_at: "2026-01-13 14:30:00".to_owned(),
            paid_at: Some("2026-01-13 14:35:00".to_owned()),
            metadata: RawJson::parse(metadata).unwrap(),
            timestamp: 1_736_775_000,
            event_id: "evt_1".to_owned(),
            refunded_amount: Money::ZERO,
            overpaid_amount: Money::ZERO,
            commission_amount: Money::parse("7000").unwrap(),
            payment_method: Some("kaspi_kredit".to_owned()),
            sequence: 1,
            event_created_at: "2026-01-13 14:35:00".to_owned(),
        }
    }

    #[test]
    fn js_body_is_the_guides_example_in_order_then_additions() {
        let body = guide_example().encode(BodyEncoding::Js).unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"event":"paid","transaction_id":"A3F5D9E2B1C8","amount":57000,"original_amount":50000,"#,
                r#""paid_amount":57000,"actual_amount_received":57000,"remaining_amount":0,"currency":"KZT","#,
                r#""status":"paid","description":"Оплата тура в Дубай #12345","created_at":"2026-01-13 14:30:00","#,
                r#""paid_at":"2026-01-13 14:35:00","metadata":{"order_id":"12345","tour_name":"Дубай 7 дней","#,
                r#""customer_id":"CU-456"},"timestamp":1736775000,"event_id":"evt_1","refunded_amount":0,"#,
                r#""overpaid_amount":0,"commission_amount":7000,"payment_method":"kaspi_kredit","sequence":1,"#,
                r#""event_created_at":"2026-01-13 14:35:00"}"#
            )
        );
    }

    #[test]
    fn php_body_escapes_like_php() {
        let body = guide_example().encode(BodyEncoding::Php).unwrap();
        assert!(
            body.contains(r#""description":"\u041e\u043f\u043b\u0430\u0442\u0430 "#),
            "{body}"
        );
        assert!(body.contains(r#""metadata":{"order_id":"12345""#), "{body}");
        let mut empty = guide_example();
        empty.metadata = RawJson::empty_object();
        assert!(
            empty
                .encode(BodyEncoding::Php)
                .unwrap()
                .contains(r#""metadata":[]"#)
        );
        assert!(
            empty
                .encode(BodyEncoding::Js)
                .unwrap()
                .contains(r#""metadata":{}"#)
        );
    }

    #[test]
    fn payload_parses_back_from_either_body() {
        let payload = guide_example();
        for encoding in [BodyEncoding::Js, BodyEncoding::Php] {
            let body = payload.encode(encoding).unwrap();
            let back: WebhookPayload = serde_json::from_str(&body).unwrap();
            // Metadata comes back in the receiver's encoding; everything else is identical.
            assert_eq!(
                back.metadata.get(),
                encoding.encode_text(payload.metadata.get()).unwrap()
            );
            assert_eq!(
                WebhookPayload {
                    metadata: payload.metadata.clone(),
                    ..back
                },
                payload,
                "{encoding:?}"
            );
        }
    }

    #[test]
    fn event_names() {
        for event in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(event.as_str()), Some(event));
            assert_eq!(serde_json::to_string(&event).unwrap(), format!("\"{event}\""));
        }
    }
}
