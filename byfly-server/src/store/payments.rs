//! Payments, the methods they are paid with, and the decisions that end them without a terminal (cancel, expiry).

use async_trait::async_trait;

use super::decisions::*;
use super::error::StoreError;
use super::idempotency::IdempotencyClaim;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::*;
use byfly_core::ids::EventId;
use byfly_core::{PaymentMethod, PaymentStatus, TransactionId};

/// Payments, the methods they are paid with, and the decisions that end them without a terminal (cancel, expiry).
#[async_trait]
pub trait Payments: Send + Sync {
    /// Payment methods with their active flag, by id.
    async fn payment_methods(&self) -> Result<Vec<(PaymentMethod, bool)>, StoreError>;

    /// Inserts a payment and, in the same transaction, claims its `Idempotency-Key` with the
    /// answer to replay: neither is stored without the other ([`Inserted::KeyTaken`] when the
    /// key is live, [`Inserted::IdCollision`] when the transaction id is taken).
    async fn insert_payment(
        &self,
        row: &NewPaymentRow,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Inserted, StoreError>;

    /// A payment by its public id.
    async fn payment(&self, id: &TransactionId) -> Result<Option<PaymentRecord>, StoreError>;

    /// A payment and its operations (oldest first), read in one query: what a status read needs.
    async fn payment_and_operations(
        &self,
        id: &TransactionId,
    ) -> Result<Option<(PaymentRecord, Vec<OperationRecord>)>, StoreError>;

    /// Changes the given fields of a payment method; `None` for an unknown id.
    async fn update_method(
        &self,
        id: i64,
        patch: &byfly_core::wire::UpdateMethodRequest,
    ) -> Result<Option<(PaymentMethod, bool)>, StoreError>;

    /// A payment by its row id.
    async fn payment_by_row_id(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StoreError>;

    /// Cancels a payment as `decide` says from a snapshot read in the same transaction (byfly-core
    /// refuses it in some statuses): its current operation abandoned (still followed; money it
    /// takes is still credited) and `cancelled` appended. Returns the operations still running on
    /// a terminal, or `None` when refused.
    async fn cancel_payment(
        &self,
        payment_id: PaymentId,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<Option<Vec<OperationRecord>>, StoreError>;

    /// Expires up to `limit` payments past `expires_at`, each as `decide` says from its snapshot
    /// (byfly-core: never while an operation holds a terminal or after money arrived), with its
    /// `expired` event. Returns how many.
    async fn expire_due(
        &self,
        now: UnixSeconds,
        limit: u32,
        event_ids: &(dyn Fn() -> EventId + Sync),
        decide: Decide<'_>,
    ) -> Result<usize, StoreError>;

    /// Payments that pass `filter`, newest first, with row ids below `before`.
    async fn list_payments(
        &self,
        filter: &PaymentFilter,
        before: Option<PaymentId>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError>;
}

/// Which payments a list shows; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    /// One source's (the public list always sets it).
    pub source_id: Option<SourceId>,
    /// In this status.
    pub status: Option<PaymentStatus>,
    /// Created at or after.
    pub created_from: Option<UnixSeconds>,
    /// Created at or before.
    pub created_until: Option<UnixSeconds>,
    /// What an operator types to find a payment: its transaction id, or text in its description,
    /// the customer's name or e-mail, digits of the customer's phone (spaces, `+`, `-` and
    /// brackets ignored on both sides), or the metadata's `order_id` exactly.
    pub text: Option<String>,
}
