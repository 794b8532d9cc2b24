//! The review queue of the admin API: operations the terminal cannot answer for, and the
//! operator's decision about each, settled like the terminal's own final answer.

use super::openapi::errors::error_set;
use axum::Json;
use axum::extract::State;
use byfly_core::ErrorCode;
use byfly_core::error::ApiError;
use byfly_core::wire::{Envelope, OperationView, ResolveOperationRequest};

use super::admin::{Admin, not_found};
use super::admin_payments::{OperationHistory, operation_view};
use super::errors::HttpError;
use super::extract::{JsonBody, RowId};
use super::state::AppState;
use crate::store::{FinalAnswer, OpState, OperationId, ReviewDecision};

/// The longest note a decision takes, in characters.
pub const NOTE_MAX_CHARS: usize = 1000;

error_set!(ReviewErrors: [ADMIN]);

/// `GET /api/admin/operations/review`: operations waiting for an operator — `unknown` for longer
/// than `unknown_review_after`, forgotten by their terminal (`101`) after a customer could have
/// paid, or started without an answer — each with its `review_reason`.
#[utoipa::path(
    get, path = "/admin/operations/review", tag = "admin: review", operation_id = "reviewQueue", summary = "Operations waiting for an operator",
    description = "Long `unknown`, forgotten by the terminal after a customer could have paid, or started without an answer; each with its `review_reason`.",
    security(("admin_token" = [])),
    responses((status = 200, description = "The queue", body = Envelope<Vec<OperationView>>), ReviewErrors)
)]
pub async fn review(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Envelope<Vec<OperationView>>>, HttpError> {
    let mut views = Vec::new();
    for op in state.store.operations_needing_review().await? {
        if let Some(payment) = state.store.payment_by_row_id(op.payment_id).await? {
            let history = OperationHistory::of(&state, payment.id).await?;
            views.push(operation_view(&op, &payment.transaction_id, &history, &state));
        }
    }
    Ok(Json(Envelope::data(views)))
}

error_set!(ResolveErrors: [ADMIN, ROW, BODY] ValidationError, InvalidStatus);

/// `POST /api/admin/operations/{id}/resolve`: an operator's decision about an operation waiting
/// for review — `paid` (with the amount the terminal's history shows) or `not_paid` — applied
/// like the terminal's own final answer: it frees the terminal, settles the payment and sends its
/// webhook.
#[utoipa::path(
    post, path = "/admin/operations/{id}/resolve", tag = "admin: review", operation_id = "resolveOperation", summary = "An operator's decision: paid (amount) or not paid",
    description = "Applied like the terminal's own final answer: frees the terminal, settles the payment and sends its webhook.",
    params(("id" = i64, Path, minimum = 1, description = "The operation's id")),
    request_body = ResolveOperationRequest,
    security(("admin_token" = [])),
    responses((status = 200, description = "The operation", body = Envelope<OperationView>), ResolveErrors)
)]
pub async fn resolve_operation(
    admin: Admin,
    State(state): State<AppState>,
    RowId(id): RowId<OperationId>,
    JsonBody(request): JsonBody<ResolveOperationRequest>,
) -> Result<Json<Envelope<OperationView>>, HttpError> {
    let op = state.store.operation(id).await?.ok_or_else(not_found)?;
    let invalid =
        |message: &str| HttpError::from(ApiError::with_message(ErrorCode::ValidationError, message));
    let answer = match (request.outcome.as_str(), request.amount, &request.transaction_id) {
        // The terminal's transactionId is what a refund of this money will have to name.
        ("paid", Some(amount), Some(transaction_id))
            if amount.is_positive() && !transaction_id.is_empty() =>
        {
            FinalAnswer::Succeeded {
                gross: amount,
                product_method: None,
                transaction_id: Some(transaction_id.clone()),
                cheque_method: Some(request.method.clone().unwrap_or_else(|| "qr".to_owned())),
            }
        }
        ("paid", _, _) => {
            return Err(invalid(
                "для paid нужны amount больше 0 и transaction_id из истории терминала",
            ));
        }
        ("not_paid", _, _) => FinalAnswer::Failed,
        _ => return Err(invalid("outcome: paid или not_paid")),
    };
    let note = request
        .note
        .as_deref()
        .map(str::trim)
        .filter(|note| !note.is_empty());
    if note.is_some_and(|note| note.chars().count() > NOTE_MAX_CHARS) {
        return Err(invalid("note: до 1000 символов"));
    }
    let paid = matches!(answer, FinalAnswer::Succeeded { .. });
    let decision = ReviewDecision {
        outcome: request.outcome.clone(),
        amount_minor: request.amount.filter(|_| paid).map(|amount| amount.to_minor()),
        terminal_transaction_id: request.transaction_id.clone().filter(|_| paid),
        decided_by: admin.actor.clone(),
        note: note.map(str::to_owned),
    };
    let not_waiting = || {
        HttpError::from(ApiError::with_message(
            ErrorCode::InvalidStatus,
            "Операция не ждёт решения оператора",
        ))
    };
    if op.needs_review && op.start_uncertain && !op.holds_terminal {
        // A start that got no answer, its terminal already free: the operator records what the
        // terminal's history shows. Money found there cannot be attached to this payment from here.
        if matches!(answer, FinalAnswer::Succeeded { .. }) {
            return Err(HttpError::from(ApiError::with_message(
                ErrorCode::InvalidStatus,
                "Операция без ответа терминала: деньги по ней зачислить нельзя, верните их через терминал",
            )));
        }
        if !state.store.acknowledge_review(id, &decision, state.now()).await? {
            return Err(not_waiting());
        }
    } else {
        if !(op.needs_review && op.state == OpState::InFlight) {
            return Err(not_waiting());
        }
        let raw = serde_json::json!({
            "resolved_by": "operator",
            "outcome": request.outcome,
            "amount": request.amount,
            "transaction_id": request.transaction_id,
            "note": decision.note,
            "decided_by": decision.decided_by,
        })
        .to_string();
        let settled =
            crate::services::poll::settle_final(&state, id, &answer, &raw, Some(&decision), state.now())
                .await?;
        // Settled meanwhile by the terminal's own answer: that one stands.
        if settled.is_none() {
            return Err(not_waiting());
        }
    }
    tracing::warn!(operation = %id, outcome = %request.outcome, by = %admin.actor, "operation resolved by an operator");
    let resolved = state.store.operation(id).await?.ok_or_else(not_found)?;
    let payment = state
        .store
        .payment_by_row_id(resolved.payment_id)
        .await?
        .ok_or_else(not_found)?;
    let history = OperationHistory::of(&state, payment.id).await?;
    Ok(Json(Envelope::data(operation_view(
        &resolved,
        &payment.transaction_id,
        &history,
        &state,
    ))))
}
