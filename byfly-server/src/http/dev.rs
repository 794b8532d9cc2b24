//! Demo mode only:
//! - `POST /api/dev/simulate/{transaction_id}` makes the simulated customer act on the terminal
//!   running that payment's current operation. The body is the simulator's `/sim/pay` body
//!   (`{"product": "Loan", "amount"?: N, "outcome"?: "success"|"fail"|"unknown", "after_ms"?}`).
//! - `POST /api/dev/webhooks` is a webhook receiver that verifies both signatures with the secret
//!   [`DEMO_WEBHOOK_SECRET`], and `GET /api/dev/webhooks` lists what it received, so the demo shows a
//!   payment's webhook arriving and verifying without any other program.

use super::openapi::errors::error_set;
use axum::Extension;
use axum::Json;
use axum::extract::State;
use byfly_core::ErrorCode;
use byfly_core::error::ApiError;
use byfly_core::wire::Envelope;
use serde_json::Value;

use super::errors::HttpError;
use super::extract::{JsonBytes, PaymentPath};
use super::state::AppState;
use crate::store::OpState;

error_set!(SimulateErrors: [PAYMENT, BODY] ValidationError, InvalidStatus, TerminalUnavailable);

/// Forwards the body to the current operation's simulated terminal.
#[utoipa::path(
    post, path = "/dev/simulate/{id}", tag = "demo", operation_id = "simulateCustomer", summary = "The simulated customer acts on the payment's terminal (demo mode only)",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    request_body = Option<serde_json::Value>,
    responses((status = 200, description = "`{\"success\": true, \"data\": <the simulator's answer>}`", content_type = "application/json"), SimulateErrors)
)]
pub async fn simulate(
    State(state): State<AppState>,
    PaymentPath(payment): PaymentPath,
    JsonBytes(body): JsonBytes,
) -> Result<Json<Envelope<Value>>, HttpError> {
    let operations = state.store.operations(payment.id).await?;
    let current = operations
        .iter()
        .rev()
        .find(|op| op.state == OpState::InFlight && op.holds_terminal);
    let Some(op) = current else {
        return Err(HttpError::from(ApiError::with_message(
            ErrorCode::InvalidStatus,
            "Нет операции на терминале: сначала вызовите /kaspi",
        )));
    };
    let terminal = state.store.terminal(op.terminal_id).await?;
    let terminal = terminal.ok_or_else(|| HttpError::internal("operation without terminal"))?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        bytes_of("{}")
    } else {
        body
    };
    let response = reqwest::Client::new()
        .post(format!(
            "{}/sim/pay",
            terminal.terminal.base_url.trim_end_matches('/')
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|_| HttpError::code(ErrorCode::TerminalUnavailable))?;
    let ok = response.status().is_success();
    let answer: Value = response
        .json()
        .await
        .map_err(|_| HttpError::code(ErrorCode::TerminalUnavailable))?;
    if !ok {
        let reason = answer["error"].as_str().unwrap_or("отказ симулятора").to_owned();
        return Err(HttpError::from(ApiError::with_message(
            ErrorCode::ValidationError,
            format!("Симулятор: {reason}"),
        )));
    }
    Ok(Json(Envelope::data(answer)))
}

/// The webhook secret the demo's walkthrough uses with its own receiver.
pub const DEMO_WEBHOOK_SECRET: &str = "demo-webhook-secret";

/// What the demo receiver got.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DemoDelivery {
    /// `X-Webhook-Event`.
    pub event: String,
    /// `X-Webhook-Id`.
    pub event_id: String,
    /// Both signatures matched the exact body and the timestamp is fresh.
    pub verified: bool,
    /// Why not, when not.
    pub error: Option<String>,
    /// The body as received.
    pub body: Value,
}

/// What the demo receiver keeps (the last 50 deliveries), shared by its two routes.
pub type DemoInbox = std::sync::Arc<std::sync::Mutex<Vec<DemoDelivery>>>;

error_set!(ReceiveWebhookErrors: [] ValidationError);

/// `POST /api/dev/webhooks`: verifies and keeps the last 50 deliveries. One whose signatures do not
/// verify is kept too (the walkthrough shows `"verified": false`) and refused with 400, as a
/// merchant's receiver should refuse it.
#[utoipa::path(
    post, path = "/dev/webhooks", tag = "demo", operation_id = "demoReceiveWebhook", summary = "The demo's webhook receiver: verifies and keeps the last 50 deliveries",
    request_body(content = serde_json::Value, description = "A delivery, as the server sends it"),
    responses((status = 200, description = "Verified and kept", content_type = "text/plain", body = String), ReceiveWebhookErrors)
)]
pub async fn receive_webhook(
    State(state): State<AppState>,
    Extension(inbox): Extension<DemoInbox>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<&'static str, HttpError> {
    use byfly_core::webhook::signature::{
        DEFAULT_TOLERANCE_SECS, ReceivedSignatures, headers as names, verify,
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let received = ReceivedSignatures::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    let verified = verify(
        DEMO_WEBHOOK_SECRET.as_bytes(),
        &body,
        received,
        state.now().get(),
        DEFAULT_TOLERANCE_SECS,
    );
    let delivery = DemoDelivery {
        event: header(names::EVENT).unwrap_or_default(),
        event_id: header(names::ID).unwrap_or_default(),
        verified: verified.is_ok(),
        error: verified.as_ref().err().map(ToString::to_string),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    tracing::info!(event = %delivery.event, verified = delivery.verified, "demo receiver got a webhook");
    let mut inbox = inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    inbox.push(delivery);
    let excess = inbox.len().saturating_sub(50);
    inbox.drain(..excess);
    match verified {
        Ok(_) => Ok("OK"),
        Err(err) => Err(HttpError::from(ApiError::with_message(
            ErrorCode::ValidationError,
            format!("Подпись вебхука не прошла проверку: {err}"),
        ))),
    }
}

error_set!(ReceivedWebhooksErrors: []);

/// `GET /api/dev/webhooks`: what the demo receiver got, oldest first.
#[utoipa::path(
    get, path = "/dev/webhooks", tag = "demo", operation_id = "demoReceivedWebhooks", summary = "What the demo's receiver got",
    responses((status = 200, description = "The last 50 deliveries", body = Envelope<Vec<DemoDelivery>>), ReceivedWebhooksErrors)
)]
pub async fn received_webhooks(Extension(inbox): Extension<DemoInbox>) -> Json<Envelope<Vec<DemoDelivery>>> {
    let inbox = inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(Envelope::data(inbox.clone()))
}

fn bytes_of(text: &'static str) -> axum::body::Bytes {
    axum::body::Bytes::from_static(text.as_bytes())
}
