//! The sweeper's round: payments past `expires_at` end as `expired` (never while an operation
//! holds a terminal, never after money arrived: byfly-core decides each), and terminals held by
//! work nobody finishes are freed — starts a dead process left behind, and uncertain starts whose
//! deadline passed (those for an operator's review).

use super::settle::on_expiry;
use crate::random::event_id;
use crate::store::UnixSeconds;
use crate::store::{Store, StoreError};

/// How long an operation may stay `starting` (claimed, `/v2/payment` not yet answered) before it
/// is taken for the leftover of a process that died in the middle of `/kaspi`: far longer than
/// any terminal call of a live process may take.
pub const STALE_START_SECS: i64 = 120;

/// One round of the sweeper: expires payments past `expires_at` with their `expired` event; frees
/// terminals held by operations a dead process left `starting` (the payment never left its status
/// for them; an abandoned predecessor becomes current again); and frees, for review, the
/// terminals of payment starts that got no answer once their deadline passed (the terminal has
/// ended any such operation by itself). Rows are never deleted. A start is stale after
/// `stale_start_secs` (normally [`STALE_START_SECS`]) by the database's clock.
pub async fn sweep(store: &dyn Store, now: UnixSeconds, stale_start_secs: i64) -> Result<(), StoreError> {
    store.expire_due(now, 100, &event_id, &on_expiry).await?;
    for operation_id in store.stale_starts(stale_start_secs).await? {
        tracing::warn!(
            operation_id = operation_id.get(),
            "operation left starting by a stopped process: terminal freed"
        );
        store.start_failed(operation_id, None).await?;
    }
    for operation_id in store.release_uncertain_starts(now).await? {
        tracing::warn!(
            operation_id = operation_id.get(),
            "terminal freed after the deadline of a payment start that got no answer: review"
        );
    }
    Ok(())
}
