//! Background workers. Each is a loop of "claim due rows in the database, do the work, write the
//! result", so any number of server processes can run them side by side, and each stops between
//! iterations when told to.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::http::{AppState, now};
use crate::pool::TerminalPool;

/// How often a worker looks for due work at most; due-ness itself is decided by the claims.
const MAX_TICK: Duration = Duration::from_secs(5);

/// Checks every enabled terminal once per `interval` (`deviceinfo`, refreshing tokens that are
/// about to expire; never registering).
pub async fn health_checker(pool: Arc<TerminalPool>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let interval_secs = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
    let tick = interval.min(MAX_TICK);
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(err) = pool.check_due(now(), interval_secs).await {
            tracing::error!(%err, "terminal health check round failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Follows every operation in flight: asks its terminal when due, settles it when final; then
/// starts the next part of refund requests whose last part completed.
pub async fn operation_poller(state: AppState, mut stop: watch::Receiver<bool>) {
    let tick = Duration::from_millis(250);
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(err) = crate::poll::poll_due(&state, None).await {
            tracing::error!(%err, "operation poll round failed");
        }
        if let Err(err) = crate::refunds::continue_open(&state).await {
            tracing::error!(%err, "refund continuation round failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => {}
        }
    }
}

/// How often the webhook attempt log is purged of entries past their retention.
const LOG_PURGE_EVERY: Duration = Duration::from_secs(600);

/// Sends due webhooks, and now and then purges the attempt log past its retention; on stop,
/// waits for the deliveries in flight.
pub async fn webhook_dispatcher(dispatcher: crate::webhooks::Dispatcher, mut stop: watch::Receiver<bool>) {
    let tick = Duration::from_millis(250);
    let mut purged_at: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(err) = dispatcher.dispatch_due().await {
            tracing::error!(%err, "webhook dispatch round failed");
        }
        if purged_at.is_none_or(|at| at.elapsed() >= LOG_PURGE_EVERY) {
            purged_at = Some(std::time::Instant::now());
            match dispatcher.purge_logs().await {
                Ok(0) => {}
                Ok(purged) => {
                    tracing::info!(purged, "webhook attempt log entries past their retention deleted")
                }
                Err(err) => tracing::error!(%err, "webhook attempt log purge failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = dispatcher.delivery_finished() => {}
            _ = stop.changed() => {}
        }
    }
    dispatcher.drain().await;
}

/// How long an operation may stay `starting` (claimed, `/v2/payment` not yet answered) before it
/// is taken for the leftover of a process that died in the middle of `/kaspi`: far longer than
/// any terminal call of a live process may take.
pub const STALE_START_SECS: i64 = 120;

/// One round of the sweeper: expires payments past `expires_at` (never while an operation holds a
/// terminal) with their `expired` event; frees terminals held by operations a dead process left
/// `starting` (the payment never left its status for them; an abandoned predecessor becomes
/// current again); and frees, for review, the terminals of payment starts that got no answer once
/// their deadline passed (the terminal has ended any such operation by itself). Rows are never
/// deleted. A start is stale after `stale_start_secs` (normally [`STALE_START_SECS`]) by the
/// database's clock.
pub async fn sweep(
    store: &dyn crate::store::Store,
    now: i64,
    stale_start_secs: i64,
) -> Result<(), crate::store::StoreError> {
    store
        .expire_due(now, 100, &crate::operations::event_id, &crate::settle::on_expiry)
        .await?;
    for operation_id in store.stale_starts(stale_start_secs).await? {
        tracing::warn!(
            operation_id,
            "operation left starting by a stopped process: terminal freed"
        );
        store.start_failed(operation_id, None).await?;
    }
    for operation_id in store.release_uncertain_starts(now).await? {
        tracing::warn!(
            operation_id,
            "terminal freed after the deadline of a payment start that got no answer: review"
        );
    }
    Ok(())
}

/// Runs [`sweep`] every few seconds.
pub async fn expiry_sweeper(store: std::sync::Arc<dyn crate::store::Store>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(err) = sweep(store.as_ref(), now(), STALE_START_SECS).await {
            tracing::error!(%err, "expiry sweep failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(MAX_TICK) => {}
            _ = stop.changed() => {}
        }
    }
}
