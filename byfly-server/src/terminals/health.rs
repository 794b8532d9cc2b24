//! The health checker's work on one terminal: `deviceinfo` with our token, refreshing tokens
//! about to expire first (a payment never waits on a refresh), and recording whether the terminal
//! answers. A terminal without tokens is never registered here: it waits for an operator.

use byfly_terminal::TerminalError;
use futures_util::stream::{self, StreamExt};

use super::pool::{NEEDS_REGISTRATION, TerminalPool, describe, store_failure};
use crate::store::UnixSeconds;
use crate::store::{StoreError, TerminalRecord};

/// How many terminals one health round checks at once.
pub const HEALTH_CONCURRENCY: usize = 8;

/// How long tokens are assumed to live when the terminal's `expirationDate` cannot be read.
const ASSUMED_TOKEN_LIFETIME: i64 = 24 * 3600;

impl TerminalPool {
    async fn probe(&self, record: &TerminalRecord) -> Result<Option<String>, TerminalError> {
        let client = self.client(record)?;
        if self.refresh_due(record, self.clock.now()) {
            match client.refresh().await {
                Ok(_) => tracing::info!(
                    terminal = record.id.get(),
                    "terminal tokens refreshed ahead of expiry"
                ),
                Err(TerminalError::NeedsRegistration(why)) => {
                    self.tokens_refused(record.id, &client, &why)
                        .await
                        .map_err(store_failure)?;
                }
                Err(err) => return Err(err),
            }
            self.persist_refreshed_tokens(record.id, &client)
                .await
                .map_err(store_failure)?;
        }
        let mut info = client.device_info().await;
        self.persist_refreshed_tokens(record.id, &client)
            .await
            .map_err(store_failure)?;
        if let Err(TerminalError::NeedsRegistration(why)) = &info
            && self
                .tokens_refused(record.id, &client, why)
                .await
                .map_err(store_failure)?
        {
            info = client.device_info().await;
            self.persist_refreshed_tokens(record.id, &client)
                .await
                .map_err(store_failure)?;
        }
        Ok(info?.terminal_id)
    }

    /// Whether the health checker should refresh the tokens now: less than `refresh_before`
    /// seconds left, by the terminal's `expirationDate` or, when that is unreadable, by an
    /// assumed 24 h lifetime from when they were obtained.
    fn refresh_due(&self, record: &TerminalRecord, now: UnixSeconds) -> bool {
        let Some(tokens) = &record.tokens else {
            return false;
        };
        let stated = tokens.expires_at.and_then(|at| {
            self.timing
                .offset
                .parse_datetime(&at.format("%Y-%m-%d %H:%M:%S").to_string())
                .map(UnixSeconds)
        });
        let assumed = record.tokens_obtained_at.map(|at| at + ASSUMED_TOKEN_LIFETIME);
        let expiry = match (stated, assumed) {
            (Some(stated), Some(assumed)) => stated.min(assumed),
            (Some(at), None) | (None, Some(at)) => at,
            (None, None) => return false,
        };
        expiry - now < self.timing.refresh_before
    }

    /// Checks one terminal and records the result. A terminal without tokens is never registered
    /// here: it is recorded as needing registration.
    pub async fn check(&self, record: &TerminalRecord) -> Result<bool, StoreError> {
        if record.needs_registration() {
            self.store
                .record_health(record.id, false, Some(NEEDS_REGISTRATION), None)
                .await?;
            return Ok(false);
        }
        let outcome = self.probe(record).await;
        let (healthy, error, device_id) = match &outcome {
            Ok(device_id) => (true, None, device_id.clone()),
            Err(TerminalError::NeedsRegistration(_)) => (false, Some(NEEDS_REGISTRATION.to_owned()), None),
            Err(err) => (false, Some(describe(err)), None),
        };
        if let Err(err) = &outcome {
            tracing::warn!(terminal = record.id.get(), name = %record.terminal.name, error = %err, "terminal unhealthy");
        }
        self.store
            .record_health(record.id, healthy, error.as_deref(), device_id.as_deref())
            .await?;
        Ok(healthy)
    }

    /// One round of the health checker: every enabled terminal not checked for `interval` seconds,
    /// up to [`HEALTH_CONCURRENCY`] at once, so that a terminal that takes its timeout to answer
    /// does not delay the others' checks (nor their token refreshes). A store failure on one does
    /// not stop the rest: the first is the round's answer, the others are logged here. Returns how
    /// many were checked.
    pub async fn check_due(&self, now: UnixSeconds, interval: i64) -> Result<usize, StoreError> {
        let due = self.store.claim_health_checks(now, interval).await?;
        let count = due.len();
        // Owned records: a stream of futures borrowing them is not `Send` to the compiler.
        let mut checks = stream::iter(due)
            .map(|record| async move { (record.id, self.check(&record).await) })
            .buffer_unordered(HEALTH_CONCURRENCY);
        let mut first_failure = None;
        while let Some((terminal, checked)) = checks.next().await {
            match checked {
                Ok(_) => {}
                Err(err) if first_failure.is_none() => first_failure = Some(err),
                Err(err) => tracing::error!(terminal = terminal.get(), %err, "terminal health check failed"),
            }
        }
        match first_failure {
            None => Ok(count),
            Some(err) => Err(err),
        }
    }
}
