//! The webhook outbox's part of the store (`spec/API.md` §6): events are appended in the
//! transaction of the change they report ([`super::Store`]'s writes do that); here they are
//! claimed in order, one delivery at a time, recorded by the claim's holder only, listed across
//! payments, recovered in bulk once exhausted, and their attempt logs purged after a while.

use async_trait::async_trait;

use super::{
    DeliveryAttempt, DeliveryLog, DeliveryOutcome, DueEvent, EventClaim, EventFilter, EventListing, Recorded,
    StoreError, StoredEvent,
};

/// The outbox, for the dispatcher and the admin API.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// The outbox events of a payment, oldest first.
    async fn webhook_events(&self, payment_id: i64) -> Result<Vec<StoredEvent>, StoreError>;
    /// Claims up to `limit` events whose next attempt is due and that are the oldest undelivered,
    /// unexhausted event of their payment (a later event never goes before an earlier one),
    /// leasing them to `token` for `lease` seconds.
    async fn claim_due_events(
        &self,
        now: i64,
        lease: i64,
        limit: u32,
        token: &str,
    ) -> Result<Vec<DueEvent>, StoreError>;
    /// Claims one event by its id for a manual attempt, through the same lease as automatic
    /// ones (never two deliveries of one event at once, never ahead of an earlier event).
    async fn claim_event(
        &self,
        event_id: &str,
        now: i64,
        lease: i64,
        token: &str,
    ) -> Result<EventClaim, StoreError>;
    /// Gives claims back without an attempt (their receivers' hosts have no free slot), in one
    /// transaction, to be claimed again from `retry_at`. Returns how many were still the caller's.
    async fn release_claims(&self, row_ids: &[i64], token: &str, retry_at: i64) -> Result<u64, StoreError>;
    /// Logs an attempt and records its outcome — only while `token` still holds the claim.
    async fn record_delivery(
        &self,
        row_id: i64,
        token: &str,
        attempt: &DeliveryAttempt,
        outcome: DeliveryOutcome,
    ) -> Result<Recorded, StoreError>;
    /// The delivery log of an event, oldest first.
    async fn delivery_log(&self, event_id: &str) -> Result<Vec<DeliveryLog>, StoreError>;
    /// Undelivered events across payments (pending, failed, exhausted), oldest first.
    async fn undelivered_events(&self, filter: &EventFilter) -> Result<Vec<EventListing>, StoreError>;
    /// Restarts the schedule of every failed or exhausted event of `source_id`'s payments created
    /// at or after `since`, due at `now` (delivered in order by the claim rule). Returns how many.
    async fn recover_events(&self, source_id: i64, since: i64, now: i64) -> Result<u64, StoreError>;
    /// Deletes attempt logs older than `before` (the events themselves are kept). Returns how many.
    async fn purge_delivery_logs(&self, before: i64) -> Result<u64, StoreError>;
}
