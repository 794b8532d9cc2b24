//! The webhook outbox's part of the store (`spec/API.md` §6): events are appended in the
//! transaction of the change they report ([`super::Store`]'s writes do that); here they are
//! claimed in order, one delivery at a time, recorded by the claim's holder only, listed across
//! payments, recovered in bulk once exhausted, and their attempt logs purged after a while.

use async_trait::async_trait;

use byfly_core::ids::EventId;
use byfly_core::{BodyEncoding, Figures, Money, PaymentStatus, TransactionId, WebhookEvent};

use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::PaymentRecord;

/// The outbox, for the dispatcher and the admin API.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// The outbox events of a payment, oldest first.
    async fn webhook_events(&self, payment_id: PaymentId) -> Result<Vec<StoredEvent>, StoreError>;
    /// Claims up to `limit` events whose next attempt is due and that are the oldest undelivered,
    /// unexhausted event of their payment (a later event never goes before an earlier one),
    /// leasing them to `token` for `lease` seconds.
    async fn claim_due_events(
        &self,
        now: UnixSeconds,
        lease: i64,
        limit: u32,
        token: &str,
    ) -> Result<Vec<DueEvent>, StoreError>;
    /// Claims one event by its id for a manual attempt, through the same lease as automatic
    /// ones (never two deliveries of one event at once, never ahead of an earlier event).
    async fn claim_event(
        &self,
        event_id: &EventId,
        now: UnixSeconds,
        lease: i64,
        token: &str,
    ) -> Result<EventClaim, StoreError>;
    /// Gives claims back without an attempt (their receivers' hosts have no free slot), in one
    /// transaction, to be claimed again from `retry_at`. Returns how many were still the caller's.
    async fn release_claims(
        &self,
        row_ids: &[i64],
        token: &str,
        retry_at: UnixSeconds,
    ) -> Result<u64, StoreError>;
    /// Logs an attempt and records its outcome — only while `token` still holds the claim.
    async fn record_delivery(
        &self,
        row_id: i64,
        token: &str,
        attempt: &DeliveryAttempt,
        outcome: DeliveryOutcome,
    ) -> Result<Recorded, StoreError>;
    /// The delivery log of an event, oldest first.
    async fn delivery_log(&self, event_id: &EventId) -> Result<Vec<DeliveryLog>, StoreError>;
    /// Undelivered events across payments (pending, failed, exhausted), oldest first.
    async fn undelivered_events(&self, filter: &EventFilter) -> Result<Vec<EventListing>, StoreError>;
    /// Restarts the schedule of every failed or exhausted event of `source_id`'s payments created
    /// at or after `since`, due at `now` (delivered in order by the claim rule). Returns how many.
    async fn recover_events(
        &self,
        source_id: SourceId,
        since: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<u64, StoreError>;
    /// Deletes attempt logs older than `before` (the events themselves are kept). Returns how many.
    async fn purge_delivery_logs(&self, before: UnixSeconds) -> Result<u64, StoreError>;

    /// When the longest-waiting event that could be sent now became due (`None`: nothing waits).
    /// Events waiting on a retry's time or behind an earlier event of their payment are not due:
    /// a receiver that is down does not make the sender look stuck.
    async fn oldest_due_event(&self, now: UnixSeconds) -> Result<Option<UnixSeconds>, StoreError>;
}

/// A webhook event of the outbox, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Stable id (`X-Webhook-Id`).
    pub event_id: EventId,
    /// Its payment.
    pub payment_id: PaymentId,
    /// The event.
    pub event: WebhookEvent,
    /// The payment's status then.
    pub status: PaymentStatus,
    /// The payment's figures then.
    pub figures: Figures,
    /// R of the operation that caused it.
    pub actual_amount_received: Money,
    /// Method of the operation that caused it.
    pub payment_method: Option<String>,
    /// `paid_at` of the payment then (Unix seconds).
    pub paid_at: Option<UnixSeconds>,
    /// Unix seconds.
    pub created_at: UnixSeconds,
    /// Unix seconds of the successful delivery.
    pub delivered_at: Option<UnixSeconds>,
    /// 1, 2, … per payment: the order its events happened and are delivered in.
    pub sequence: u64,
    /// Unix seconds when its retry schedule ran out (until an operator recovers it).
    pub exhausted_at: Option<UnixSeconds>,
}

/// Where an outbox event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Not attempted yet (or waiting behind an earlier event of its payment).
    Pending,
    /// Attempted without success; retried on the schedule.
    Failed,
    /// The schedule ran out: waits for an operator's recovery.
    Exhausted,
    /// A receiver answered 2xx.
    Delivered,
}

impl EventState {
    /// The stored event's state.
    pub fn of(event: &StoredEvent, attempts: u32) -> EventState {
        if event.delivered_at.is_some() {
            EventState::Delivered
        } else if event.exhausted_at.is_some() {
            EventState::Exhausted
        } else if attempts == 0 {
            EventState::Pending
        } else {
            EventState::Failed
        }
    }

    /// The name in the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::Failed => "failed",
            EventState::Exhausted => "exhausted",
            EventState::Delivered => "delivered",
        }
    }
}

/// Which undelivered events the admin list shows (all of them when nothing is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventFilter {
    /// Only events of this source's payments.
    pub source_id: Option<SourceId>,
    /// Only events in this state (`Delivered` lists nothing: the list is of undelivered events).
    pub state: Option<EventState>,
    /// Only events created at or after this (Unix seconds).
    pub since: Option<UnixSeconds>,
    /// Only events after this row id (the previous page's last).
    pub after: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// An undelivered event across payments, for the admin list.
#[derive(Debug, Clone, PartialEq)]
pub struct EventListing {
    /// Row id (the paging cursor).
    pub row_id: i64,
    /// The event.
    pub event: StoredEvent,
    /// Its payment's public id.
    pub transaction_id: TransactionId,
    /// Its payment's source.
    pub source_id: SourceId,
    /// Attempts made.
    pub attempts: u32,
    /// When the next automatic attempt is due (none once exhausted).
    pub next_attempt_at: Option<UnixSeconds>,
    /// What the last attempt got: the receiver's status code, or the error.
    pub last_result: Option<String>,
}

/// What became of a delivery attempt, as the claim's holder records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx answer.
    Delivered,
    /// Failed; the schedule's next attempt is at this time.
    RetryAt(UnixSeconds),
    /// Failed, and that was the schedule's last attempt.
    Exhausted,
    /// A manual attempt failed: the automatic schedule stays as it was.
    ManualFailed,
    /// The payment has no webhook URL: never attempted again, and not listed as a failure.
    NoReceiver,
}

/// What recording an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded.
    Done,
    /// Recorded, and the event is now exhausted (reported once, by the one who recorded it).
    NowExhausted,
    /// The claim was no longer this caller's (its lease ran out and another took it): nothing
    /// recorded.
    NotHolder,
}

/// What a claim of one event (a manual retry) found.
#[derive(Debug, Clone, PartialEq)]
pub enum EventClaim {
    /// Claimed for this caller.
    Claimed(Box<DueEvent>),
    /// Another delivery of it runs right now.
    Busy,
    /// An earlier event of its payment is neither delivered nor exhausted: in order, that one first.
    Blocked,
    /// No such event.
    NotFound,
}

/// An event claimed for delivery, with what the body needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DueEvent {
    /// Row id (the log refers to it).
    pub row_id: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Failed attempts since the schedule (re)started: which delay comes next.
    pub schedule_step: u32,
    /// The claim's token: only its holder records the attempt.
    pub claim_token: String,
    /// The event and its figures then.
    pub event: StoredEvent,
    /// The payment (description, metadata, webhook URL and secret).
    pub payment: PaymentRecord,
    /// The source's body encoding.
    pub encoding: BodyEncoding,
}

/// One delivery attempt, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// `automatic` or `manual`.
    pub manual: bool,
    /// Where it was sent.
    pub url: String,
    /// The exact body.
    pub request_body: String,
    /// HTTP status, when an answer came.
    pub response_code: Option<u16>,
    /// First 64 KiB of the answer.
    pub response_body: Option<String>,
    /// Transport error or refusal reason.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
    /// Unix seconds.
    pub at: UnixSeconds,
}

/// A logged attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLog {
    /// 1-based attempt number.
    pub attempt: u32,
    /// The attempt.
    pub details: DeliveryAttempt,
}
