//! `POST /api/payment/init`: a payment validated, then stored — with its `Idempotency-Key`
//! claimed in the same transaction, together with the answer a repeat is given.
//!
//! Why the key is claimed with the answer, not before the work: a claim committed on its own was
//! a durable write of its own (a second fsync per request, half of what an init cost), and a
//! claim without its answer is a state a repeat can only be told to come back from. Validation
//! changes nothing, so it runs first; then one transaction either stores the payment and the key
//! with its `201` (or, for a refused request, the key with its refusal), or finds the key live and
//! answers from what it holds. A repeat that comes while the first request's transaction is open
//! waits for it (PostgreSQL's unique index) or is told after it (SQLite's round of inserts), and
//! gets the first one's answer.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use byfly_core::error::ApiError;
use byfly_core::wire::{Envelope, InitPaymentInput, InitPaymentRequest, InitPaymentResponse, WebhookUrl};
use byfly_core::{ErrorCode, PaymentStatus, TransactionId};
use sha2::{Digest, Sha256};

use super::errors::{HttpError, json_response};
use super::extract::{JsonBytes, Source};
use super::openapi::errors::error_set;
use super::payments::active;
use super::state::AppState;
use crate::random::OsRandom;
use crate::store::{IdempotencyClaim, IdempotencyStart, Inserted, NewPaymentRow, SourceId, StoredResponse};

/// Longest `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// How many times init stores again: after its transaction id was taken (48 random bits: a
/// collision is rare, and a new id settles it), or after its key stopped being live between the
/// claim that found it and the read of what it held (expired or taken over meanwhile).
const ATTEMPTS: usize = 5;

/// Refuses webhook hosts that resolve to internal addresses unless configured otherwise. A host
/// that does not resolve now is accepted: DNS may be down for a moment, and delivery checks again.
async fn check_webhook_host(url: &WebhookUrl, state: &AppState) -> Result<(), HttpError> {
    if !state.settings.allow_private_webhook_hosts
        && crate::outbox::resolves_to_internal(url, state.settings.delivery.dns_timeout).await
    {
        return Err(HttpError::code(ErrorCode::WebhookHostNotAllowed));
    }
    Ok(())
}

/// The `201` answer of init, encoded once so a replay is byte-identical.
fn created_body(record: &NewPaymentRow, state: &AppState) -> String {
    let data = InitPaymentResponse {
        transaction_id: record.transaction_id.clone(),
        amount: record.payment.amount,
        currency: record.payment.currency.clone(),
        status: PaymentStatus::Pending,
        expires_at: state.settings.offset.format(record.expires_at),
        payment_page_url: state
            .settings
            .public_base_url
            .as_ref()
            .map(|base| format!("{base}/pay/{}", record.transaction_id)),
    };
    serde_json::to_string(&Envelope::with_message("Платеж создан", data)).unwrap_or_default()
}

fn error_body(error: &ApiError) -> StoredResponse {
    StoredResponse {
        status: error.code.http_status(),
        body: serde_json::to_string(&error.envelope()).unwrap_or_default(),
    }
}

/// A new payment validated, with its transaction id drawn: what init stores.
async fn create(state: &AppState, source_id: SourceId, body: &[u8]) -> Result<NewPaymentRow, HttpError> {
    let methods = active(state.store.payment_methods().await?);
    let payment = InitPaymentInput::from_json(body)?.validate(&state.settings.limits, &methods)?;
    if let Some(url) = &payment.webhook_url {
        check_webhook_host(url, state).await?;
    }
    let created_at = state.now();
    let ttl = i64::try_from(state.settings.payment_ttl.as_secs()).unwrap_or(i64::MAX);
    Ok(NewPaymentRow {
        transaction_id: TransactionId::generate(&mut OsRandom),
        source_id,
        payment,
        created_at,
        expires_at: created_at + ttl,
    })
}

error_set!(InitErrors: [TOKEN, BODY] InvalidAmount, AmountTooLarge, InvalidCurrency, InvalidPaymentMethod, InvalidWebhookUrl, WebhookHostNotAllowed, FieldTooLong, InvalidMetadata, ValidationError, InvalidIdempotencyKey, IdempotencyConflict, IdempotencyInFlight);

/// `POST /api/payment/init`.
#[utoipa::path(
    post, path = "/payment/init", tag = "payments", operation_id = "initPayment", summary = "Create a payment",
    description = "The guide's «Создание платежа». With an `Idempotency-Key`, a repeated request answers the first one's answer byte for byte (the same body) or 409 (another body).",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, description = "Makes a retried request safe: the same key and body create one payment")),
    request_body(content = InitPaymentRequest, example = json!({
        "amount": 50000, "currency": "KZT", "description": "Оплата тура в Дубай #12345",
        "customer_name": "Иванов Иван Иванович", "customer_phone": "+77001234567",
        "customer_email": "ivan@example.com", "payment_method_id": 1,
        "webhook_url": "https://your-system.com/webhooks/payment", "webhook_secret": "your_secret_key_for_hmac",
        "metadata": {"order_id": "12345", "tour_name": "Дубай 7 дней", "customer_id": "CU-456"}
    })),
    security(("api_token" = [])),
    responses((status = 201, description = "Платеж создан", body = Envelope<InitPaymentResponse>, example = json!({
        "success": true, "message": "Платеж создан",
        "data": {"transaction_id": "A3F5D9E2B1C8", "amount": 50000, "currency": "KZT", "status": "pending", "expires_at": "2026-01-13 15:30:00"}
    })), InitErrors)
)]
pub async fn init(
    State(state): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, HttpError> {
    let key = idempotency_key(&headers)?.map(|key| Key {
        source_id: source.id,
        request_hash: hex::encode(Sha256::digest(&body)),
        key,
    });
    // Validated once: a retry below draws a new transaction id, it does not validate again.
    match create(&state, source.id, &body).await {
        Ok(row) => store_created(&state, row, key.as_ref()).await,
        Err(failure) => remember_refusal(&state, failure, key.as_ref()).await,
    }
}

/// The request's key, whose body hashed to `request_hash`.
struct Key {
    source_id: SourceId,
    key: String,
    request_hash: String,
}

impl Key {
    /// The key claimed with `response`, now.
    fn claim(&self, state: &AppState, response: StoredResponse) -> IdempotencyClaim {
        IdempotencyClaim {
            source_id: self.source_id,
            key: self.key.clone(),
            request_hash: self.request_hash.clone(),
            claimed_at: state.now(),
            response,
        }
    }

    /// The answer the key holds while it is live (a replay, or a 409); `None` when it no longer
    /// is (claim it again).
    async fn held_answer(&self, state: &AppState) -> Result<Option<Response>, HttpError> {
        let held = state
            .store
            .idempotent_answer(self.source_id, &self.key, &self.request_hash, state.now())
            .await?;
        match held {
            IdempotencyStart::Fresh => Ok(None),
            IdempotencyStart::Replay(stored) => Ok(Some(json_response(stored.status, stored.body))),
            IdempotencyStart::Conflict => Err(HttpError::code(ErrorCode::IdempotencyConflict)),
            IdempotencyStart::InFlight => Err(HttpError::code(ErrorCode::IdempotencyInFlight)),
        }
    }
}

/// Stores the validated payment `row` (and claims `key` with its `201`), answering `201`; or
/// answers what the live key holds.
async fn store_created(
    state: &AppState,
    mut row: NewPaymentRow,
    key: Option<&Key>,
) -> Result<Response, HttpError> {
    for _ in 0..ATTEMPTS {
        let body = created_body(&row, state);
        let claim = key.map(|key| {
            key.claim(
                state,
                StoredResponse {
                    status: 201,
                    body: body.clone(),
                },
            )
        });
        match state.store.insert_payment(&row, claim.as_ref()).await? {
            Inserted::Yes => return Ok(json_response(201, body)),
            Inserted::IdCollision => row.transaction_id = TransactionId::generate(&mut OsRandom),
            Inserted::KeyTaken => {
                let Some(key) = key else {
                    return Err(HttpError::internal("a key taken by a request without one"));
                };
                if let Some(answer) = key.held_answer(state).await? {
                    return Ok(answer);
                }
            }
        }
    }
    Err(HttpError::internal(
        "init could not store its payment in five attempts (transaction ids taken, or its key changing)",
    ))
}

/// A refused request (4xx) is answered the same way when repeated: its key is claimed with the
/// refusal, or the live key's answer is given. A failure of ours (5xx) is not remembered, so a
/// retry can succeed.
async fn remember_refusal(
    state: &AppState,
    failure: HttpError,
    key: Option<&Key>,
) -> Result<Response, HttpError> {
    let Some(key) = key else { return Err(failure) };
    if failure.error().code.http_status() >= 500 {
        return Err(failure);
    }
    let claim = key.claim(state, error_body(failure.error()));
    for _ in 0..ATTEMPTS {
        if state.store.claim_idempotent(&claim).await? {
            return Err(failure);
        }
        if let Some(answer) = key.held_answer(state).await? {
            return Ok(answer);
        }
    }
    Err(HttpError::internal(
        "init could not claim its key in five attempts (its key changing)",
    ))
}

/// The request's `Idempotency-Key`, trimmed: 1 to 255 characters, or none.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map(str::trim).unwrap_or("");
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(HttpError::code(ErrorCode::InvalidIdempotencyKey));
    }
    Ok(Some(key.to_owned()))
}
