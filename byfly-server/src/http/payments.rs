//! Payment endpoints: init (with `Idempotency-Key`), the public views, the source's list, the
//! active methods, and health.

use super::openapi::errors::error_set;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use byfly_core::Figures;
use byfly_core::error::ApiError;
use byfly_core::wire::{
    CancelResponse, CustomerView, Envelope, KaspiRequest, KaspiResponse, PaymentList, PaymentListQuery,
    PaymentStatusView, PaymentSummary, PaymentView, RefundRequest, RefundView,
};
use byfly_core::{ErrorCode, PaymentMethod, PaymentStatus};

use super::errors::HttpError;
use super::extract::{
    JsonBodyOr, JsonBytes, OwnPayment, PathSegments, Source, find_payment, find_payment_and_operations,
    invalid_query, parse_json_or_default,
};
use super::limits::Peer;
use super::state::AppState;
use crate::services::settle::ledger_of;
use crate::services::{cancel, kaspi, poll, process, refund};
use crate::store::PaymentRecord;
use crate::store::{OpState, OperationRecord};
use crate::store::{PaymentFilter, PaymentId};

/// The methods offered to customers, of the stored `(method, is_active)` pairs.
pub(super) fn active(methods: Vec<(PaymentMethod, bool)>) -> Vec<PaymentMethod> {
    methods
        .into_iter()
        .filter(|(_, is_active)| *is_active)
        .map(|(method, _)| method)
        .collect()
}

/// The payment as stored now (after a poll or a refund part changed it).
async fn reread(state: &AppState, record: &PaymentRecord) -> Result<PaymentRecord, HttpError> {
    state
        .store
        .payment(&record.transaction_id)
        .await?
        .ok_or_else(|| HttpError::code(ErrorCode::TransactionNotFound))
}

/// A payment's figures and its current operation, from its stored operations.
pub(super) async fn figures(
    state: &AppState,
    record: &PaymentRecord,
) -> Result<(Figures, Option<OperationRecord>), HttpError> {
    let operations = state.store.operations(record.id).await?;
    Ok(figures_of(record, operations))
}

/// [`figures`] from operations already read.
fn figures_of(
    record: &PaymentRecord,
    operations: Vec<OperationRecord>,
) -> (Figures, Option<OperationRecord>) {
    let (ledger, _) = ledger_of(record, &operations);
    let current = operations
        .into_iter()
        .rev()
        .find(|op| op.is_current && matches!(op.state, OpState::InFlight | OpState::Starting));
    (ledger.figures(), current)
}

pub(super) async fn view(record: &PaymentRecord, state: &AppState) -> Result<PaymentView, HttpError> {
    let operations = state.store.operations(record.id).await?;
    view_of(record, operations, state).await
}

/// [`view`] from operations already read.
async fn view_of(
    record: &PaymentRecord,
    operations: Vec<OperationRecord>,
    state: &AppState,
) -> Result<PaymentView, HttpError> {
    let (figures, current) = figures_of(record, operations);
    let merchant_name = state
        .store
        .source(record.source_id)
        .await?
        .map(|source| source.name);
    let offset = state.settings.offset;
    Ok(PaymentView {
        transaction_id: record.transaction_id.clone(),
        amount: figures.amount,
        currency: record.currency.clone(),
        status: record.status,
        description: record.description.clone(),
        payment_url: current.as_ref().and_then(|op| op.payment_url.clone()),
        qr_code: current.as_ref().and_then(|op| op.qr_code.clone()),
        paid_amount: figures.paid_amount,
        remaining_amount: figures.remaining_amount,
        created_at: offset.format(record.created_at),
        paid_at: record.paid_at.map(|at| offset.format(at)),
        original_amount: figures.original_amount,
        commission_amount: figures.commission_amount,
        overpaid_amount: figures.overpaid_amount,
        refunded_amount: figures.refunded_amount,
        expires_at: offset.format(record.expires_at),
        payment_method: current.as_ref().map(|op| op.quote.method.to_string()),
        operation_expires_at: current.as_ref().map(|op| offset.format(op.deadline_at)),
        operation_expires_in: current.as_ref().map(|op| (op.deadline_at - state.now()).max(0)),
        merchant_name,
    })
}

error_set!(ShowErrors: [PAYMENT]);

/// `GET /api/payment/{id}` (public).
#[utoipa::path(
    get, path = "/payment/{id}", tag = "payments", operation_id = "getPayment", summary = "The public view of a payment",
    description = "What the payment page shows: figures, status, the current operation (nothing of the customer).",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    responses((status = 200, description = "The payment", body = Envelope<PaymentView>), ShowErrors)
)]
pub async fn show(
    State(state): State<AppState>,
    path: PathSegments,
) -> Result<Json<Envelope<PaymentView>>, HttpError> {
    let (record, operations) = find_payment_and_operations(&state, path.get("id")).await?;
    Ok(Json(Envelope::data(view_of(&record, operations, &state).await?)))
}

error_set!(StatusErrors: [PAYMENT]);

/// `GET /api/payment/{id}/status` (public): a `processing` payment's terminal is asked first when
/// a poll of it is due (at most once per second per payment: concurrent callers share the one
/// call through its claim). Otherwise this is one read (the payment with its operations) and no
/// write.
#[utoipa::path(
    get, path = "/payment/{id}/status", tag = "payments", operation_id = "getPaymentStatus", summary = "Status and figures",
    description = "While `processing`, the terminal is asked first when a poll is due (at most once a second per payment).",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    responses((status = 200, description = "The status", body = Envelope<PaymentStatusView>, example = json!({
        "success": true,
        "data": {"transaction_id": "A3F5D9E2B1C8", "status": "paid", "amount": 57000, "paid_amount": 57000, "remaining_amount": 0}
    })), StatusErrors)
)]
pub async fn status(
    State(state): State<AppState>,
    path: PathSegments,
) -> Result<Json<Envelope<PaymentStatusView>>, HttpError> {
    let id = path.get("id");
    let (mut record, mut operations) = find_payment_and_operations(&state, id).await?;
    let now = state.now();
    if record.status == PaymentStatus::Processing && operations.iter().any(|op| op.is_poll_due(now)) {
        poll::poll_due(&state, Some(record.id)).await?;
        (record, operations) = find_payment_and_operations(&state, id).await?;
    }
    let (figures, _) = figures_of(&record, operations);
    Ok(Json(Envelope::data(PaymentStatusView {
        transaction_id: record.transaction_id.clone(),
        status: record.status,
        amount: figures.amount,
        paid_amount: figures.paid_amount,
        remaining_amount: figures.remaining_amount,
        original_amount: figures.original_amount,
        commission_amount: figures.commission_amount,
        overpaid_amount: figures.overpaid_amount,
        refunded_amount: figures.refunded_amount,
        paid_at: record.paid_at.map(|at| state.settings.offset.format(at)),
    })))
}

error_set!(KaspiErrors: [PAYMENT, BODY] AlreadyPaid, PaymentCancelled, PaymentExpired, PaymentRefunded, InvalidStatus, InvalidPaymentMethod, TerminalsBusy, TerminalUnavailable, QrNotFound, RateLimited);

/// `POST /api/payment/{id}/kaspi` (public).
#[utoipa::path(
    post, path = "/payment/{id}/kaspi", tag = "payments", operation_id = "startKaspiPayment", summary = "Start (or top up) the payment on a Kaspi terminal",
    description = "Claims a free terminal, asks it for a QR (read from its camera) and answers the QR link. A partially paid payment is topped up: the method applies to what remains. The body may be empty (Kaspi Gold).",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    request_body = Option<KaspiRequest>,
    responses((status = 200, description = "Платеж инициирован", body = Envelope<KaspiResponse>), KaspiErrors)
)]
pub async fn kaspi(
    State(state): State<AppState>,
    path: PathSegments,
    Peer(peer): Peer,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, HttpError> {
    let client = state.kaspi_limiter.client_address(peer, &headers);
    let id = path.get("id");
    if let Err(wait) = state.kaspi_limiter.check(client, id) {
        let mut refused = HttpError::code(ErrorCode::RateLimited).into_response();
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.max(1).to_string()) {
            refused
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return Ok(refused);
    }
    let record = find_payment(&state, id).await?;
    let request: KaspiRequest = parse_json_or_default(&body)?;
    let carried = state.carried.clone();
    let answer = process::carried_on(&carried, async move {
        kaspi::start(&state, record, request.payment_method.as_deref()).await
    })
    .await?;
    Ok(Json(Envelope::with_message("Платеж инициирован", answer)).into_response())
}

error_set!(CancelErrors: [TOKEN, PAYMENT] AlreadyPaid, PaymentCancelled, PaymentExpired, PaymentRefunded, InvalidStatus);

/// `POST /api/payment/{id}/cancel` (token): a source cancels its own payment; its terminal
/// operation, if any, is asked to end (and still followed: money it takes is credited).
#[utoipa::path(
    post, path = "/payment/{id}/cancel", tag = "payments", operation_id = "cancelPayment", summary = "Cancel a payment",
    description = "A source cancels its own payment; a running terminal operation is asked to end and still followed (money it takes is credited).",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    security(("api_token" = [])),
    responses((status = 200, description = "Платеж отменен", body = Envelope<CancelResponse>), CancelErrors)
)]
pub async fn cancel(
    State(state): State<AppState>,
    OwnPayment(record): OwnPayment,
) -> Result<Json<Envelope<CancelResponse>>, HttpError> {
    cancelled(&state, record).await
}

/// Cancels `record` (for its source, or an operator): the answer of both cancel routes.
pub(super) async fn cancelled(
    state: &AppState,
    record: PaymentRecord,
) -> Result<Json<Envelope<CancelResponse>>, HttpError> {
    cancel::cancel(state, &record).await?;
    let answer = CancelResponse {
        transaction_id: record.transaction_id,
        status: PaymentStatus::Cancelled,
    };
    Ok(Json(Envelope::with_message("Платеж отменен", answer)))
}

error_set!(RefundErrors: [TOKEN, PAYMENT, BODY] InvalidAmount, ValidationError, RefundTooLarge, NothingToRefund, PaymentRefunded, InvalidStatus, TerminalsBusy, TerminalUnavailable);

/// `POST /api/payment/{id}/refund` (token).
#[utoipa::path(
    post, path = "/payment/{id}/refund", tag = "refunds", operation_id = "refundPayment", summary = "Refund all or part of what was received",
    description = "Without `amount`, everything not yet refunded. The customer confirms each part in the Kaspi app; follow the refund with `GET /payment/{id}/refund/{refund_id}`.",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    request_body = Option<RefundRequest>,
    security(("api_token" = [])),
    responses((status = 200, description = "Возврат создан", body = Envelope<RefundView>), RefundErrors)
)]
pub async fn refund(
    State(state): State<AppState>,
    OwnPayment(record): OwnPayment,
    JsonBodyOr(request): JsonBodyOr<RefundRequest>,
) -> Result<Json<Envelope<RefundView>>, HttpError> {
    refunded(state, record, request).await
}

/// Starts refunding `record` (for its source, or an operator): the answer of both refund routes.
/// The refund carries on when the request is cut (shutdown waits for it).
pub(super) async fn refunded(
    state: AppState,
    record: PaymentRecord,
    request: RefundRequest,
) -> Result<Json<Envelope<RefundView>>, HttpError> {
    let carried = state.carried.clone();
    let view = process::carried_on(&carried, async move {
        refund::start_refund(&state, record, request.amount).await
    })
    .await?;
    Ok(Json(Envelope::with_message(
        "Возврат создан: клиент подтверждает его в приложении Kaspi",
        view,
    )))
}

error_set!(RefundStatusErrors: [TOKEN, PAYMENT] RefundNotFound);

/// `GET /api/payment/{id}/refund/{refund_id}` (token): where a refund stands (the terminal is
/// asked first while it waits).
#[utoipa::path(
    get, path = "/payment/{id}/refund/{refund_id}", tag = "refunds", operation_id = "getRefund", summary = "Where a refund stands",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8"), ("refund_id" = String, Path, description = "`refund_id` of the refund's answer")),
    security(("api_token" = [])),
    responses((status = 200, description = "The refund", body = Envelope<RefundView>), RefundStatusErrors)
)]
pub async fn refund_status(
    State(state): State<AppState>,
    OwnPayment(record): OwnPayment,
    path: PathSegments,
) -> Result<Json<Envelope<RefundView>>, HttpError> {
    let not_found = || HttpError::code(ErrorCode::RefundNotFound);
    let request = state
        .store
        .refund_request(path.get("refund_id"))
        .await?
        .filter(|request| request.payment_id == record.id)
        .ok_or_else(not_found)?;
    // While the request is open, ask the terminal first about the part that waits, and start the
    // next part if one is due (a closed request has nothing left on a terminal).
    if request.open {
        poll::poll_due(&state, Some(record.id)).await?;
        refund::continue_request(&state, &request).await?;
    }
    let request = state
        .store
        .refund_request(path.get("refund_id"))
        .await?
        .ok_or_else(not_found)?;
    let record = reread(&state, &record).await?;
    let operations = state.store.operations(record.id).await?;
    Ok(Json(Envelope::data(refund::refund_view(
        &record,
        &request,
        &operations,
        &state,
    ))))
}

error_set!(ActiveMethodsErrors: []);

/// `GET /api/payment-methods/active` (public).
#[utoipa::path(
    get, path = "/payment-methods/active", tag = "methods", operation_id = "activePaymentMethods", summary = "Active payment methods",
    responses((status = 200, description = "The methods offered", body = Envelope<Vec<PaymentMethod>>), ActiveMethodsErrors)
)]
pub async fn active_methods(
    State(state): State<AppState>,
) -> Result<Json<Envelope<Vec<PaymentMethod>>>, HttpError> {
    Ok(Json(Envelope::data(active(state.store.payment_methods().await?))))
}

/// Page size bounds of `GET /api/payments`.
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

error_set!(ListErrors: [TOKEN, QUERY]);

/// `GET /api/payments` (token): the source's own payments, newest first.
#[utoipa::path(
    get, path = "/payments", tag = "payments", operation_id = "listPayments", summary = "The source's payments, newest first",
    params(PaymentListQuery),
    security(("api_token" = [])),
    responses((status = 200, description = "One page", body = Envelope<PaymentList>), ListErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    Source(source): Source,
    query: Result<Query<PaymentListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Envelope<PaymentList>>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let filter = PaymentFilter {
        source_id: Some(source.id),
        ..PaymentFilter::default()
    };
    Ok(Json(Envelope::data(
        page(&state, filter, query, Reader::Source).await?,
    )))
}

/// The customer as the merchant gave them.
pub(super) fn customer_of(record: &PaymentRecord) -> CustomerView {
    CustomerView {
        name: record.customer_name.clone(),
        phone: record.customer_phone.clone(),
        email: record.customer_email.clone(),
    }
}

/// Whom a list is for: the source itself, or an operator (who also sees the customer and source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    Source,
    Operator,
}

/// One page of the payments `filter` lets through (of one source, or all for the admin API),
/// newest first; `query` gives the status, page size and cursor.
pub(super) async fn page(
    state: &AppState,
    mut filter: PaymentFilter,
    query: PaymentListQuery,
    reader: Reader,
) -> Result<PaymentList, HttpError> {
    filter.status = query.status;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(HttpError::from(ApiError::with_message(
            ErrorCode::ValidationError,
            "limit должен быть от 1 до 100",
        )));
    }
    let before = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(
            i64::from_str_radix(cursor, 16)
                .ok()
                .filter(|id| *id > 0)
                .map(PaymentId)
                .ok_or_else(|| {
                    HttpError::from(ApiError::with_message(
                        ErrorCode::ValidationError,
                        "Некорректный cursor",
                    ))
                })?,
        ),
    };
    let mut records = state.store.list_payments(&filter, before, limit + 1).await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    let next_cursor = more
        .then(|| records.last().map(|last| format!("{:x}", last.id.get())))
        .flatten();
    let offset = state.settings.offset;
    let mut items = Vec::with_capacity(records.len());
    for record in &records {
        let (figures, _) = figures(state, record).await?;
        items.push(PaymentSummary {
            transaction_id: record.transaction_id.clone(),
            status: record.status,
            amount: figures.amount,
            original_amount: figures.original_amount,
            paid_amount: figures.paid_amount,
            remaining_amount: figures.remaining_amount,
            currency: record.currency.clone(),
            description: record.description.clone(),
            created_at: offset.format(record.created_at),
            paid_at: record.paid_at.map(|at| offset.format(at)),
            customer: (reader == Reader::Operator).then(|| customer_of(record)),
            source_id: (reader == Reader::Operator).then(|| record.source_id.get()),
        });
    }
    Ok(PaymentList { items, next_cursor })
}
