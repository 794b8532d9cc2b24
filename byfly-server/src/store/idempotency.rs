//! Requests guarded by an `Idempotency-Key`.

use async_trait::async_trait;

use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::*;

/// Requests guarded by an `Idempotency-Key`. A request that creates a payment claims its key in
/// the same transaction ([`super::Payments::insert_payment`]); these are the rest.
#[async_trait]
pub trait Idempotency: Send + Sync {
    /// Claims the key of a request that changed nothing (refused by validation) with that
    /// refusal as its answer: `false`, and nothing stored, while the key is live.
    async fn claim_idempotent(&self, claim: &IdempotencyClaim) -> Result<bool, StoreError>;

    /// What a live key holds, for a request whose claim was refused; [`IdempotencyStart::Fresh`]
    /// when nothing live is there any more (claim again).
    async fn idempotent_answer(
        &self,
        source_id: SourceId,
        key: &str,
        request_hash: &str,
        now: UnixSeconds,
    ) -> Result<IdempotencyStart, StoreError>;
}
