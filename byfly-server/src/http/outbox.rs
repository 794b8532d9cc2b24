//! The admin API's webhook outbox: a payment's events with their attempts, a manual retry through
//! the same claim as automatic deliveries, the list of undelivered events across payments, and
//! bulk recovery after a long receiver outage (`spec/API.md` §6).

use super::openapi::errors::error_set;
use axum::Json;
use axum::extract::{Query, State};
use byfly_core::ErrorCode;
use byfly_core::error::ApiError;
use byfly_core::wire::{
    Envelope, RecoverWebhooksRequest, RecoveredWebhooks, UndeliveredEventList, UndeliveredEventView,
    UndeliveredEventsQuery, UndeliveredState, WebhookAttemptView, WebhookEventView,
};

use super::admin::{Admin, not_found};
use super::errors::HttpError;
use super::extract::{JsonBody, PathSegments, PaymentPath, datetime, invalid_query};
use super::state::AppState;
use crate::outbox::ManualRetry;
use crate::store::{DeliveryLog, EventFilter, EventState, SourceId};
use byfly_core::ids::EventId;

fn attempt_view(log: DeliveryLog, state: &AppState) -> WebhookAttemptView {
    WebhookAttemptView {
        attempt: log.attempt,
        trigger: if log.details.manual { "manual" } else { "automatic" }.to_owned(),
        response_code: log.details.response_code,
        response_body: log.details.response_body,
        error: log.details.error,
        duration_ms: log.details.duration_ms,
        request_body: log.details.request_body,
        at: state.settings.offset.format(log.details.at),
    }
}

error_set!(PaymentWebhooksErrors: [ADMIN, PAYMENT]);

/// `GET /api/admin/payments/{id}/webhooks`: every event of a payment with its attempts.
#[utoipa::path(
    get, path = "/admin/payments/{id}/webhooks", tag = "admin: webhooks", operation_id = "paymentWebhooks", summary = "A payment's webhook events with every attempt",
    params(("id" = String, Path, description = "The payment's transaction_id: 12 uppercase hex characters", example = "A3F5D9E2B1C8")),
    security(("admin_token" = [])),
    responses((status = 200, description = "The events", body = Envelope<Vec<WebhookEventView>>), PaymentWebhooksErrors)
)]
pub async fn payment_webhooks(
    _: Admin,
    State(state): State<AppState>,
    PaymentPath(payment): PaymentPath,
) -> Result<Json<Envelope<Vec<WebhookEventView>>>, HttpError> {
    let mut views = Vec::new();
    for event in state.store.webhook_events(payment.id).await? {
        let attempts = state.store.delivery_log(&event.event_id).await?;
        let count = u32::try_from(attempts.len()).unwrap_or(u32::MAX);
        views.push(WebhookEventView {
            event_id: event.event_id.to_string(),
            event: event.event.as_str().to_owned(),
            created_at: state.settings.offset.format(event.created_at),
            delivered: event.delivered_at.is_some(),
            sequence: event.sequence,
            state: EventState::of(&event, count).as_str().to_owned(),
            attempts: attempts
                .into_iter()
                .map(|log| attempt_view(log, &state))
                .collect(),
        });
    }
    Ok(Json(Envelope::data(views)))
}

error_set!(RetryWebhookErrors: [ADMIN, ROW] InvalidStatus);

/// `POST /api/admin/webhooks/{event_id}/retry`: one manual attempt now, through the same claim and
/// bounds as automatic deliveries (also for an event already delivered — the receiver
/// de-duplicates by `X-Webhook-Id`). Answers the attempt.
#[utoipa::path(
    post, path = "/admin/webhooks/{event_id}/retry", tag = "admin: webhooks", operation_id = "retryWebhook", summary = "Send a webhook event again now",
    description = "One attempt through the same claim as automatic deliveries (also for an event already delivered: the receiver de-duplicates by `X-Webhook-Id`).",
    params(("event_id" = String, Path, description = "The event's `event_id`")),
    security(("admin_token" = [])),
    responses((status = 200, description = "The attempt", body = Envelope<WebhookAttemptView>), RetryWebhookErrors)
)]
pub async fn retry_webhook(
    _: Admin,
    State(state): State<AppState>,
    path: PathSegments,
) -> Result<Json<Envelope<WebhookAttemptView>>, HttpError> {
    let refused = |message: &str| HttpError::from(ApiError::with_message(ErrorCode::InvalidStatus, message));
    let event_id = EventId::from(path.get("event_id").to_owned());
    match state.dispatcher.retry(&event_id).await? {
        ManualRetry::Attempted => {}
        ManualRetry::NotFound => return Err(not_found()),
        ManualRetry::Busy => return Err(refused("Это событие сейчас доставляется: повторите позже")),
        ManualRetry::Blocked => {
            return Err(refused(
                "Сначала должно быть доставлено (или исчерпано) более раннее событие этого платежа",
            ));
        }
    }
    let last = state
        .store
        .delivery_log(&event_id)
        .await?
        .pop()
        .ok_or_else(|| HttpError::internal("attempt not logged"))?;
    Ok(Json(Envelope::data(attempt_view(last, &state))))
}

error_set!(UndeliveredErrors: [ADMIN, QUERY]);

/// `GET /api/admin/webhooks`: undelivered events across payments — pending, failed (retrying)
/// and exhausted — oldest first, with filters and paging.
#[utoipa::path(
    get, path = "/admin/webhooks", tag = "admin: webhooks", operation_id = "undeliveredWebhooks", summary = "Undelivered events across payments, oldest first",
    params(UndeliveredEventsQuery),
    security(("admin_token" = [])),
    responses((status = 200, description = "One page", body = Envelope<UndeliveredEventList>), UndeliveredErrors)
)]
pub async fn undelivered_webhooks(
    _: Admin,
    State(state): State<AppState>,
    query: Result<Query<UndeliveredEventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Envelope<UndeliveredEventList>>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let invalid =
        |message: &str| HttpError::from(ApiError::with_message(ErrorCode::ValidationError, message));
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit: от 1 до 100"));
    }
    let after = match query.cursor.as_deref() {
        Some(cursor) => Some(
            cursor
                .parse::<i64>()
                .map_err(|_| invalid("cursor: неизвестный курсор"))?,
        ),
        None => None,
    };
    let since = match query.since.as_deref() {
        Some(text) => Some(datetime(&state, "since", text)?),
        None => None,
    };
    let filter = EventFilter {
        source_id: query.source_id.map(SourceId),
        state: query.state.map(|state| match state {
            UndeliveredState::Pending => EventState::Pending,
            UndeliveredState::Failed => EventState::Failed,
            UndeliveredState::Exhausted => EventState::Exhausted,
        }),
        since,
        after,
        limit: limit + 1,
    };
    let mut listed = state.store.undelivered_events(&filter).await?;
    let more = listed.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    listed.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let offset = state.settings.offset;
    let next_cursor = more
        .then(|| listed.last().map(|last| last.row_id.to_string()))
        .flatten();
    let items = listed
        .into_iter()
        .map(|listing| UndeliveredEventView {
            state: EventState::of(&listing.event, listing.attempts)
                .as_str()
                .to_owned(),
            event_id: listing.event.event_id.to_string(),
            transaction_id: listing.transaction_id,
            source_id: listing.source_id.get(),
            event: listing.event.event.as_str().to_owned(),
            sequence: listing.event.sequence,
            attempts: listing.attempts,
            created_at: offset.format(listing.event.created_at),
            next_attempt_at: listing.next_attempt_at.map(|at| offset.format(at)),
            last_result: listing.last_result,
        })
        .collect();
    Ok(Json(Envelope::data(UndeliveredEventList { items, next_cursor })))
}

error_set!(RecoverErrors: [ADMIN, BODY, ROW] ValidationError);

/// `POST /api/admin/webhooks/recover`: every failed or exhausted event of the source's payments
/// created since `since` gets a fresh schedule, due now; each payment's events go out in order.
#[utoipa::path(
    post, path = "/admin/webhooks/recover", tag = "admin: webhooks", operation_id = "recoverWebhooks", summary = "Reschedule every failed or exhausted event of a source since a time",
    description = "Each payment's events go out again in order.",
    request_body = RecoverWebhooksRequest,
    security(("admin_token" = [])),
    responses((status = 200, description = "What was rescheduled", body = Envelope<RecoveredWebhooks>), RecoverErrors)
)]
pub async fn recover_webhooks(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RecoverWebhooksRequest>,
) -> Result<Json<Envelope<RecoveredWebhooks>>, HttpError> {
    let since = datetime(&state, "since", &request.since)?;
    let source_id = SourceId(request.source_id);
    if state.store.source(source_id).await?.is_none() {
        return Err(not_found());
    }
    let recovered = state.store.recover_events(source_id, since, state.now()).await?;
    tracing::info!(
        source_id = request.source_id,
        since = since.get(),
        recovered,
        "webhook events recovered"
    );
    Ok(Json(Envelope::data(RecoveredWebhooks { recovered })))
}
