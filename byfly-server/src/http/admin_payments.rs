//! The admin API's payments: every source's, searched the way an operator looks one up (the
//! customer's phone, name, e-mail, the order id, dates), and one payment with its operations.

use axum::Json;
use axum::extract::State;
use byfly_core::error::ApiError;
use byfly_core::wire::{
    AdminPaymentView, CancelResponse, Envelope, OperationView, PaymentList, PaymentListQuery, RefundRequest,
    RefundView, ReviewDecisionView, TerminalAnswerView,
};
use byfly_core::{ErrorCode, TransactionId};

use super::admin::Admin;
use super::errors::HttpError;
use super::extract::{JsonBodyOr, PaymentPath, datetime, invalid_query};
use super::openapi::errors::error_set;
use super::state::AppState;
use crate::store::{
    OperationRecord, PaymentFilter, PaymentId, ReviewDecisionRecord, SourceId, TerminalAnswerRecord,
};

/// What the terminals answered and the operators decided about one payment's operations: the
/// part of an operation's page that is not in its row.
pub(super) struct OperationHistory {
    answers: Vec<TerminalAnswerRecord>,
    decisions: Vec<ReviewDecisionRecord>,
}

impl OperationHistory {
    /// The history of `payment_id`'s operations.
    pub(super) async fn of(state: &AppState, payment_id: PaymentId) -> Result<Self, HttpError> {
        Ok(Self {
            answers: state.store.terminal_answers(payment_id).await?,
            decisions: state.store.review_decisions(payment_id).await?,
        })
    }
}

/// An operation as the admin API shows it, with its history.
pub(super) fn operation_view(
    op: &OperationRecord,
    transaction_id: &TransactionId,
    history: &OperationHistory,
    state: &AppState,
) -> OperationView {
    let offset = state.settings.offset;
    let answers = history
        .answers
        .iter()
        .filter(|answer| answer.operation_id == op.id)
        .map(|answer| TerminalAnswerView {
            first_at: offset.format(answer.first_at),
            last_at: offset.format(answer.last_at),
            times: answer.times,
            answer: answer.answer.clone(),
        })
        .collect();
    let decision = history
        .decisions
        .iter()
        .find(|decided| decided.operation_id == op.id)
        .map(|decided| ReviewDecisionView {
            outcome: decided.decision.outcome.clone(),
            amount: decided.decision.amount_minor.map(byfly_core::Money::from_minor),
            transaction_id: decided.decision.terminal_transaction_id.clone(),
            decided_by: decided.decision.decided_by.clone(),
            decided_at: offset.format(decided.decided_at),
            note: decided.decision.note.clone(),
        });
    OperationView {
        id: op.id.get(),
        transaction_id: transaction_id.clone(),
        kind: if op.is_refund() { "refund" } else { "payment" }.to_owned(),
        terminal_id: op.terminal_id.get(),
        method: op.quote.method.to_string(),
        amount: op.quote.charge,
        base_amount: op.quote.base,
        commission_amount: op.quote.commission,
        state: op.state.as_str().to_owned(),
        current: op.is_current,
        process_id: op.process_id.clone(),
        gross_amount: op.gross,
        credited_amount: op.credited,
        started_at: offset.format(op.started_at),
        unknown_since: op.unknown_since.map(|at| offset.format(at)),
        needs_review: op.needs_review,
        review_reason: op.review_reason.clone(),
        holds_terminal: op.holds_terminal,
        answers,
        decision,
    }
}

error_set!(AdminPaymentErrors: [ADMIN, PAYMENT]);

/// `GET /api/admin/payments/{id}`: the payment (any source's) with its operations.
#[utoipa::path(
    get, path = "/admin/payments/{id}", tag = "admin: payments", operation_id = "getAdminPayment", summary = "A payment (any source's) with its operations",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    security(("admin_token" = [])),
    responses((status = 200, description = "The payment", body = Envelope<AdminPaymentView>), AdminPaymentErrors)
)]
pub async fn payment(
    _: Admin,
    State(state): State<AppState>,
    PaymentPath(record): PaymentPath,
) -> Result<Json<Envelope<AdminPaymentView>>, HttpError> {
    let operations = state.store.operations(record.id).await?;
    let history = OperationHistory::of(&state, record.id).await?;
    let view = AdminPaymentView {
        payment: super::payments::view(&record, &state).await?,
        source_id: record.source_id.get(),
        operations: operations
            .iter()
            .map(|op| operation_view(op, &record.transaction_id, &history, &state))
            .collect(),
        customer: super::payments::customer_of(&record),
        metadata: record
            .metadata
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
    };
    Ok(Json(Envelope::data(view)))
}

/// `GET /api/admin/payments` query: the public list's filters, plus a source, dates and text.
#[derive(Debug, Default, serde::Deserialize)]
pub struct AdminPaymentsQuery {
    /// Only this source's payments.
    source_id: Option<i64>,
    /// What an operator types: transaction id, description, customer name, e-mail or phone,
    /// metadata `order_id` ([`PaymentFilter::text`]).
    q: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`: created at or after.
    from: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`: created at or before.
    to: Option<String>,
    /// Only payments in this status.
    status: Option<byfly_core::PaymentStatus>,
    /// Page size, 1..=100 (default 20).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

error_set!(AdminPaymentsErrors: [ADMIN, QUERY]);

/// `GET /api/admin/payments`: every source's payments, newest first, with the same filters and
/// paging as `/api/payments` plus `source_id`.
#[utoipa::path(
    get, path = "/admin/payments", tag = "admin: payments", operation_id = "listAdminPayments", summary = "Every source's payments, newest first",
    params(
        ("source_id" = Option<i64>, Query, description = "Only this source's payments"),
        ("q" = Option<String>, Query, max_length = 255, description = "Transaction id, or text in the description, customer name or e-mail, digits of the customer's phone, or the metadata's order_id"),
        ("from" = Option<String>, Query, description = "`YYYY-MM-DD HH:MM:SS`: created at or after"),
        ("to" = Option<String>, Query, description = "`YYYY-MM-DD HH:MM:SS`: created at or before"),
        PaymentListQuery
    ),
    security(("admin_token" = [])),
    responses((status = 200, description = "One page", body = Envelope<PaymentList>), AdminPaymentsErrors)
)]
pub async fn payments(
    _: Admin,
    State(state): State<AppState>,
    query: Result<axum::extract::Query<AdminPaymentsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Envelope<byfly_core::wire::PaymentList>>, HttpError> {
    let axum::extract::Query(query) = query.map_err(invalid_query)?;
    let moment = |field: &str, text: &Option<String>| {
        text.as_deref()
            .map(|text| datetime(&state, field, text))
            .transpose()
    };
    let filter = PaymentFilter {
        source_id: query.source_id.map(SourceId),
        status: None,
        created_from: moment("from", &query.from)?,
        created_until: moment("to", &query.to)?,
        text: query.q.clone(),
    };
    if query.q.as_ref().is_some_and(|q| q.chars().count() > 255) {
        return Err(HttpError::from(ApiError::with_message(
            ErrorCode::ValidationError,
            "q: не длиннее 255 символов",
        )));
    }
    let page_query = byfly_core::wire::PaymentListQuery {
        status: query.status,
        limit: query.limit,
        cursor: query.cursor,
    };
    Ok(Json(Envelope::data(
        super::payments::page(&state, filter, page_query, super::payments::Reader::Operator).await?,
    )))
}

error_set!(AdminCancelErrors: [ADMIN, PAYMENT] AlreadyPaid, PaymentCancelled, PaymentExpired, PaymentRefunded, InvalidStatus);

/// `POST /api/admin/payments/{id}/cancel`: an operator cancels any source's payment, as the
/// source would (a running terminal operation is asked to end and still followed).
#[utoipa::path(
    post, path = "/admin/payments/{id}/cancel", tag = "admin: payments", operation_id = "adminCancelPayment", summary = "Cancel a payment (operator)",
    params(("id" = String, Path, description = "The payment's transaction_id")),
    security(("admin_token" = [])),
    responses((status = 200, description = "Платеж отменен", body = Envelope<CancelResponse>), AdminCancelErrors)
)]
pub async fn cancel(
    _: Admin,
    State(state): State<AppState>,
    PaymentPath(record): PaymentPath,
) -> Result<Json<Envelope<CancelResponse>>, HttpError> {
    super::payments::cancelled(&state, record).await
}

error_set!(AdminRefundErrors: [ADMIN, PAYMENT, BODY] InvalidAmount, ValidationError, RefundTooLarge, NothingToRefund, PaymentRefunded, InvalidStatus, TerminalsBusy, TerminalUnavailable);

/// `POST /api/admin/payments/{id}/refund`: an operator refunds all or part of any source's
/// payment, as the source would (the customer confirms each part in the Kaspi app).
#[utoipa::path(
    post, path = "/admin/payments/{id}/refund", tag = "admin: payments", operation_id = "adminRefundPayment", summary = "Refund a payment (operator)",
    params(("id" = String, Path, description = "The payment's transaction_id")),
    request_body = Option<RefundRequest>,
    security(("admin_token" = [])),
    responses((status = 200, description = "Возврат создан", body = Envelope<RefundView>), AdminRefundErrors)
)]
pub async fn refund(
    _: Admin,
    State(state): State<AppState>,
    PaymentPath(record): PaymentPath,
    JsonBodyOr(request): JsonBodyOr<RefundRequest>,
) -> Result<Json<Envelope<RefundView>>, HttpError> {
    super::payments::refunded(state, record, request).await
}
