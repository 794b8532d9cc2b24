//! Requests guarded by an `Idempotency-Key`.

use async_trait::async_trait;

use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::*;

/// Requests guarded by an `Idempotency-Key`.
#[async_trait]
pub trait Idempotency: Send + Sync {
    /// Starts a request guarded by an `Idempotency-Key`. An in-flight claim older than
    /// `stale_after` seconds is taken over (its process died before completing it); records older
    /// than 24 h are forgotten.
    async fn begin_idempotent(
        &self,
        source_id: SourceId,
        key: &str,
        request_hash: &str,
        now: UnixSeconds,
        stale_after: i64,
    ) -> Result<IdempotencyStart, StoreError>;

    /// Stores the answer of a guarded request that changed nothing (a validation error).
    async fn complete_idempotent(&self, completion: IdempotencyCompletion) -> Result<(), StoreError>;

    /// Forgets an in-flight claim whose request failed for a reason a retry may not meet (5xx).
    async fn release_idempotent(&self, source_id: SourceId, key: &str) -> Result<(), StoreError>;
}
