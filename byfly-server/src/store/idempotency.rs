//! Requests guarded by an `Idempotency-Key`.

use async_trait::async_trait;

use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;

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

/// The answer stored for an `Idempotency-Key`, replayed to repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes (JSON text).
    pub body: String,
}

/// What a live `Idempotency-Key` holds for a request that could not claim it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// Nothing live: the record is gone or past its 24 h (or an abandoned claim): claim it again.
    Fresh,
    /// Done before with the same body: answer this again.
    Replay(StoredResponse),
    /// Used before with another body.
    Conflict,
    /// Claimed by a request still running: a claim without its answer, as servers built before
    /// claims carried their answers stored one first (a process of such a build may share the
    /// database during an upgrade). The repeat is told to come back.
    InFlight,
}

/// An `Idempotency-Key` claimed together with the answer of the request it guards, in that
/// request's own transaction: the key is never stored without its answer, so a repeat finds
/// either nothing (and runs as the first) or the answer to replay. The claim is refused while the
/// key is live: used within the last 24 h, or claimed without an answer less than a minute ago.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Owner.
    pub source_id: SourceId,
    /// The key.
    pub key: String,
    /// SHA-256 of the request's body, hex: a repeat with another body is a conflict.
    pub request_hash: String,
    /// When the request came (Unix seconds): the 24 h count from here.
    pub claimed_at: UnixSeconds,
    /// The answer to replay.
    pub response: StoredResponse,
}
