//! Receiving webhooks: check the signatures on the exact body bytes, check freshness, parse.
//!
//! Verify the raw body as received, before any JSON parsing: the signature covers those bytes,
//! and it then does not matter which encoding (`php` or `js`) the source was set to.
//!
//! ```
//! use byfly_client::webhook::Verifier;
//! use byfly_core::webhook::signature::SignedHeaders;
//! use http::HeaderMap;
//!
//! # let body = br#"{"event":"paid","transaction_id":"A3F5D9E2B1C8","amount":50000,"original_amount":50000,"paid_amount":50000,"actual_amount_received":50000,"remaining_amount":0,"currency":"KZT","status":"paid","description":null,"created_at":"2025-01-13 10:00:00","paid_at":"2025-01-13 10:05:00","metadata":[],"timestamp":1736762700,"event_id":"A3F5D9E2B1C8-1","refunded_amount":0,"overpaid_amount":0,"commission_amount":0,"payment_method":"kaspi_gold"}"#;
//! // In a receiver, `headers` and `body` come from the request; here we sign one ourselves.
//! let mut headers = HeaderMap::new();
//! for (name, value) in SignedHeaders::sign(b"your_secret_key", body, 1_736_762_700).pairs() {
//!     headers.insert(name, value.parse().unwrap());
//! }
//! let verifier = Verifier::new("your_secret_key");
//! let webhook = verifier.verify_at(&headers, body, 1_736_762_710).unwrap();
//! assert_eq!(webhook.payload.paid_amount.to_string(), "50000");
//! assert_eq!(webhook.id, "A3F5D9E2B1C8-1"); // de-duplicate on this
//! assert!(verifier.verify_at(&headers, b"{\"tampered\":1}", 1_736_762_710).is_err());
//! ```

use std::time::Duration;

use byfly_core::webhook::signature::{DEFAULT_TOLERANCE_SECS, ReceivedSignatures, VerifyError, verify};
use byfly_core::{Secret, WebhookEvent, WebhookPayload};
use http::HeaderMap;

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No signature, a wrong one, or a stale timestamp.
    #[error("{0}")]
    Signature(#[from] VerifyError),
    /// Correctly signed, but not a webhook body this SDK can read.
    #[error("not a webhook payload: {0}")]
    Payload(String),
}

/// A webhook whose signature and freshness were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedWebhook {
    /// The event's id, stable across retries: keep the ids you have processed and ignore repeats.
    /// Taken from the signed body (`event_id`), so it cannot be forged; `X-Webhook-Id` carries the same.
    pub id: String,
    /// What happened.
    pub event: WebhookEvent,
    /// The signed timestamp (unix seconds).
    pub timestamp: i64,
    /// The payment's figures after the event.
    pub payload: WebhookPayload,
}

/// Checks webhooks signed with one secret (the `webhook_secret` given at init).
#[derive(Debug, Clone)]
pub struct Verifier {
    secret: Secret<Vec<u8>>,
    tolerance_secs: i64,
}

impl Verifier {
    /// A verifier with the default freshness window (5 minutes either way).
    pub fn new(secret: impl Into<Vec<u8>>) -> Verifier {
        Verifier {
            secret: Secret::new(secret.into()),
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }

    /// How far the signed timestamp may be from the receiver's clock.
    pub fn tolerance(mut self, tolerance: Duration) -> Verifier {
        self.tolerance_secs = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Verifies against the system clock. Every signature header present must match the body
    /// (`X-Webhook-Signature`, `X-Webhook-Signature-V2` and the Standard Webhooks
    /// `webhook-signature` with its `webhook-id` and `webhook-timestamp`), at least one must be
    /// present, and the signed time must be fresh. A `whsec_…` secret keys the Standard
    /// Webhooks signature by its decoded base64, as the standard libraries do.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<VerifiedWebhook, WebhookError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX));
        self.verify_at(headers, body, now)
    }

    /// [`Verifier::verify`] at `now` (unix seconds), for tests and replays.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedWebhook, WebhookError> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        self.verify_signatures(ReceivedSignatures::from_headers(header), body, now)
    }

    /// The same check from header values taken out by other HTTP stacks.
    pub fn verify_signatures(
        &self,
        received: ReceivedSignatures<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedWebhook, WebhookError> {
        let timestamp = verify(self.secret.expose(), body, received, now, self.tolerance_secs)?;
        let payload: WebhookPayload =
            serde_json::from_slice(body).map_err(|err| WebhookError::Payload(err.to_string()))?;
        Ok(VerifiedWebhook {
            id: payload.event_id.clone(),
            event: payload.event,
            timestamp,
            payload,
        })
    }
}

#[cfg(feature = "axum")]
mod extractor {
    //! `VerifiedWebhook` as an axum extractor: the handler only runs for a signed, fresh webhook.

    use axum::body::Bytes;
    use axum::extract::{FromRef, FromRequest, Request};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};

    use super::{VerifiedWebhook, Verifier, WebhookError};

    /// Why the extractor refused a request: `401` for a missing, wrong or stale signature, `400`
    /// for an unreadable body. The answer is `{"error": "<reason>"}`.
    #[derive(Debug)]
    pub struct WebhookRejection {
        status: StatusCode,
        reason: String,
    }

    impl IntoResponse for WebhookRejection {
        fn into_response(self) -> Response {
            (
                self.status,
                axum::Json(serde_json::json!({ "error": self.reason })),
            )
                .into_response()
        }
    }

    /// Extracts a [`VerifiedWebhook`] with the [`Verifier`] of the router's state.
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use byfly_client::webhook::{VerifiedWebhook, Verifier};
    ///
    /// async fn on_webhook(webhook: VerifiedWebhook) -> &'static str {
    ///     println!("{} for {}", webhook.event, webhook.payload.transaction_id);
    ///     "OK"
    /// }
    /// let app: Router = Router::new()
    ///     .route("/webhooks/payment", post(on_webhook))
    ///     .with_state(Verifier::new("your_secret_key"));
    /// ```
    impl<S> FromRequest<S> for VerifiedWebhook
    where
        Verifier: FromRef<S>,
        S: Send + Sync,
    {
        type Rejection = WebhookRejection;

        async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
            let verifier = Verifier::from_ref(state);
            let headers = request.headers().clone();
            let body = Bytes::from_request(request, state)
                .await
                .map_err(|rejection| WebhookRejection {
                    status: StatusCode::BAD_REQUEST,
                    reason: rejection.body_text(),
                })?;
            verifier.verify(&headers, &body).map_err(|err| WebhookRejection {
                status: match err {
                    WebhookError::Signature(_) => StatusCode::UNAUTHORIZED,
                    WebhookError::Payload(_) => StatusCode::BAD_REQUEST,
                },
                reason: err.to_string(),
            })
        }
    }
}

#[cfg(feature = "axum")]
pub use extractor::WebhookRejection;
