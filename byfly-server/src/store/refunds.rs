//! Refund requests and their parts (refund operations on the terminals that took the money).

use async_trait::async_trait;

use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::*;
use byfly_core::{Money, PaymentStatus};

/// Refund requests and their parts (refund operations on the terminals that took the money).
#[async_trait]
pub trait Refunds: Send + Sync {
    /// Opens a refund part of `amount` on the terminal that took `of_operation`'s money, if that
    /// terminal is free, the payment is still in `expected` status and no other refund of it runs;
    /// a new request is recorded with its first part (and refused while another request of the
    /// payment is open), a later part only while its request is open.
    #[allow(clippy::too_many_arguments)]
    async fn claim_refund(
        &self,
        expected: PaymentStatus,
        of_operation: &OperationRecord,
        amount: Money,
        request: RefundPartOf<'_>,
        now: UnixSeconds,
        deadline_at: UnixSeconds,
    ) -> Result<RefundClaim, StoreError>;

    /// A refund request by its public id.
    async fn refund_request(&self, refund_id: &str) -> Result<Option<RefundRequestRecord>, StoreError>;

    /// The payment's request that may still start parts, if any (one at a time per payment).
    async fn open_refund_request(
        &self,
        payment_id: PaymentId,
    ) -> Result<Option<RefundRequestRecord>, StoreError>;

    /// Requests that may still start parts, oldest first.
    async fn open_refund_requests(&self, limit: i64) -> Result<Vec<RefundRequestRecord>, StoreError>;

    /// No more parts of this request will start. Returns whether it was open.
    async fn close_refund_request(&self, id: i64) -> Result<bool, StoreError>;
}
