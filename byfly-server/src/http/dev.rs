//! Demo mode only: `POST /api/dev/simulate/{transaction_id}` makes the simulated customer act on
//! the terminal running that payment's current operation. The body is the simulator's `/sim/pay`
//! body (`{"product": "Loan", "amount"?: N, "outcome"?: "success"|"fail"|"unknown", "after_ms"?}`).

use axum::Json;
use axum::extract::{Path, State};
use byfly_core::error::ApiError;
use byfly_core::wire::Envelope;
use byfly_core::{ErrorCode, TransactionId};
use serde_json::Value;

use super::extract::JsonBytes;
use super::{AppState, HttpError};
use crate::settle::OpState;

/// Forwards the body to the current operation's simulated terminal.
pub async fn simulate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<Envelope<Value>>, HttpError> {
    let id = TransactionId::parse(&id).map_err(|_| HttpError::code(ErrorCode::TransactionNotFound))?;
    let payment = state
        .store
        .payment(&id)
        .await?
        .ok_or_else(|| HttpError::code(ErrorCode::TransactionNotFound))?;
    let operations = state.store.operations(payment.id).await?;
    let current = operations
        .iter()
        .rev()
        .find(|op| op.state == OpState::InFlight && op.holds_terminal);
    let Some(op) = current else {
        return Err(HttpError(ApiError::with_message(
            ErrorCode::InvalidStatus,
            "Нет операции на терминале: сначала вызовите /kaspi",
        )));
    };
    let terminal = state
        .store
        .terminals()
        .await?
        .into_iter()
        .find(|t| t.id == op.terminal_id);
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
        return Err(HttpError(ApiError::with_message(
            ErrorCode::ValidationError,
            format!("Симулятор: {reason}"),
        )));
    }
    Ok(Json(Envelope::data(answer)))
}

fn bytes_of(text: &'static str) -> axum::body::Bytes {
    axum::body::Bytes::from_static(text.as_bytes())
}
