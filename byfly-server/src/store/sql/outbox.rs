//! [`Outbox`] in SQL, for both backends.
//!
//! The order rule lives in one place, `oldest_open!`: an event may be claimed only when no
//! earlier event of its payment is still neither delivered nor exhausted. Claims carry a token
//! and a lease; every write of a result is `… WHERE id = ? AND claim_token = ?`, so a delivery
//! whose lease ran out (and that another process took over) records nothing.

use async_trait::async_trait;
use byfly_core::TransactionId;
use byfly_core::ids::EventId;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{SqlStore, corrupt, skip_unreadable};
use crate::store::error::StoreError;
use crate::store::ids::*;
use crate::store::outbox::{
    DeliveryAttempt, DeliveryLog, DeliveryOutcome, DueEvent, EventClaim, EventFilter, EventListing,
    EventState, Outbox, Recorded, StoredEvent,
};

/// No earlier event of the same payment is still open: neither delivered nor exhausted.
macro_rules! oldest_open {
    ($alias:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM webhook_events earlier WHERE earlier.payment_id = ",
            $alias,
            ".payment_id AND earlier.id < ",
            $alias,
            ".id AND earlier.delivered_at IS NULL AND earlier.exhausted_at IS NULL)"
        )
    };
}

/// `next_attempt_at` of an event with no automatic attempt ahead.
pub(super) const NEVER: i64 = i64::MAX;

impl SqlStore {
    fn listing(row: &AnyRow) -> Result<EventListing, StoreError> {
        let code: Option<i64> = row.try_get("last_code")?;
        let error: Option<String> = row.try_get("last_error")?;
        let next: i64 = row.try_get("next_attempt_at")?;
        let transaction_id: String = row.try_get("transaction_id")?;
        Ok(EventListing {
            row_id: row.try_get("id")?,
            event: Self::stored_event(row)?,
            transaction_id: TransactionId::parse(&transaction_id)
                .map_err(|_| corrupt(format!("transaction id {transaction_id:?}")))?,
            source_id: row.try_get("source_id")?,
            attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).map_err(corrupt)?,
            next_attempt_at: (next != NEVER).then_some(UnixSeconds(next)),
            last_result: code.map(|code| format!("HTTP {code}")).or(error),
        })
    }

    /// The claimed rows as deliveries; a row that cannot be read is skipped (and logged), never
    /// failing the batch.
    async fn due_all(&self, rows: &[AnyRow]) -> Result<Vec<DueEvent>, StoreError> {
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            match self.due(row).await {
                Ok(event) => due.push(event),
                Err(err @ StoreError::Corrupt(_)) => skip_unreadable("webhook event", row, &err),
                Err(err) => return Err(err),
            }
        }
        Ok(due)
    }
}

#[async_trait]
impl Outbox for SqlStore {
    async fn webhook_events(&self, payment_id: PaymentId) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .q("SELECT * FROM webhook_events WHERE payment_id = ? ORDER BY id")
            .bind(payment_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::stored_event).collect()
    }

    async fn claim_due_events(
        &self,
        now: UnixSeconds,
        lease: i64,
        limit: u32,
        token: &str,
    ) -> Result<Vec<DueEvent>, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = self
            .q(concat!(
                "UPDATE webhook_events SET claimed_until = ?, claim_token = ? WHERE id IN (",
                "SELECT e.id FROM webhook_events e WHERE e.delivered_at IS NULL AND e.exhausted_at IS NULL ",
                "AND e.next_attempt_at <= ? AND (e.claimed_until IS NULL OR e.claimed_until < ?) AND ",
                oldest_open!("e"),
                " ORDER BY e.next_attempt_at, e.id LIMIT ? FOR NO KEY UPDATE SKIP LOCKED) RETURNING *"
            ))
            .bind(now + lease)
            .bind(token)
            .bind(now)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        self.due_all(&rows).await
    }

    async fn claim_event(
        &self,
        event_id: &EventId,
        now: UnixSeconds,
        lease: i64,
        token: &str,
    ) -> Result<EventClaim, StoreError> {
        let mut tx = self.begin_write().await?;
        // Held until the claim is written: no other claim of it in between (PostgreSQL).
        self.lock_rows(
            &mut tx,
            "SELECT id FROM webhook_events WHERE event_id = ? FOR NO KEY UPDATE",
            event_id.as_str().to_owned(),
        )
        .await?;
        let found: Option<(i64, bool, bool)> = self
            .q(concat!(
                "SELECT e.id, CASE WHEN e.claimed_until IS NOT NULL AND e.claimed_until >= ? THEN 1 ELSE 0 END AS busy, ",
                "CASE WHEN ",
                oldest_open!("e"),
                " THEN 1 ELSE 0 END AS in_turn FROM webhook_events e WHERE e.event_id = ?"
            ))
            .bind(now)
            .bind(event_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| -> Result<_, StoreError> {
                Ok((
                    row.try_get("id")?,
                    super::flag(&row, "busy")?,
                    super::flag(&row, "in_turn")?,
                ))
            })
            .transpose()?;
        let Some((row_id, busy, in_turn)) = found else {
            tx.rollback().await?;
            return Ok(EventClaim::NotFound);
        };
        if busy {
            tx.rollback().await?;
            return Ok(EventClaim::Busy);
        }
        if !in_turn {
            tx.rollback().await?;
            return Ok(EventClaim::Blocked);
        }
        let row = self
            .q("UPDATE webhook_events SET claimed_until = ?, claim_token = ? WHERE id = ? RETURNING *")
            .bind(now + lease)
            .bind(token)
            .bind(row_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(EventClaim::Claimed(Box::new(self.due(&row).await?)))
    }

    async fn release_claims(
        &self,
        row_ids: &[i64],
        token: &str,
        retry_at: UnixSeconds,
    ) -> Result<u64, StoreError> {
        if row_ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut released = 0;
        for row_id in row_ids {
            released += self
                .q(
                    "UPDATE webhook_events SET claimed_until = NULL, claim_token = NULL, next_attempt_at = ? \
                     WHERE id = ? AND claim_token = ?",
                )
                .bind(retry_at)
                .bind(row_id)
                .bind(token)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(released)
    }

    async fn record_delivery(
        &self,
        row_id: i64,
        token: &str,
        attempt: &DeliveryAttempt,
        outcome: DeliveryOutcome,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.begin_write().await?;
        // (delivered, next attempt: None = as it was, schedule advances, exhausted)
        let (delivered, next, advances, exhausts) = match outcome {
            DeliveryOutcome::Delivered => (true, Some(NEVER), false, false),
            DeliveryOutcome::RetryAt(at) => (false, Some(at.get()), true, false),
            DeliveryOutcome::Exhausted => (false, Some(NEVER), true, true),
            DeliveryOutcome::ManualFailed => (false, None, false, false),
            DeliveryOutcome::NoReceiver => (false, Some(NEVER), false, false),
        };
        let row = self
            .q(
                "UPDATE webhook_events SET attempts = attempts + 1, claimed_until = NULL, claim_token = NULL, \
                 delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END, \
                 exhausted_at = CASE WHEN ? THEN NULL WHEN ? THEN COALESCE(exhausted_at, ?) ELSE exhausted_at END, \
                 next_attempt_at = COALESCE(?, next_attempt_at), \
                 schedule_step = schedule_step + CASE WHEN ? THEN 1 ELSE 0 END \
                 WHERE id = ? AND claim_token = ? RETURNING attempts, exhausted_at",
            )
            .bind(delivered)
            .bind(attempt.at)
            .bind(delivered)
            .bind(exhausts)
            .bind(attempt.at)
            .bind(next)
            .bind(advances)
            .bind(row_id)
            .bind(token)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(Recorded::NotHolder);
        };
        let attempts: i64 = row.try_get("attempts")?;
        let exhausted_at: Option<UnixSeconds> = row.try_get("exhausted_at")?;
        self.q(
            "INSERT INTO webhook_logs (event_row_id, attempt, trigger, url, request_body, response_code, response_body, \
             error, duration_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row_id)
        .bind(attempts)
        .bind(if attempt.manual { "manual" } else { "automatic" })
        .bind(&attempt.url)
        .bind(&attempt.request_body)
        .bind(attempt.response_code.map(i64::from))
        .bind(&attempt.response_body)
        .bind(&attempt.error)
        .bind(attempt.duration_ms)
        .bind(attempt.at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if exhausts && exhausted_at == Some(attempt.at) {
            Recorded::NowExhausted
        } else {
            Recorded::Done
        })
    }

    async fn delivery_log(&self, event_id: &EventId) -> Result<Vec<DeliveryLog>, StoreError> {
        let rows = self
            .q(
                "SELECT l.* FROM webhook_logs l JOIN webhook_events e ON e.id = l.event_row_id \
                 WHERE e.event_id = ? ORDER BY l.id",
            )
            .bind(event_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let trigger: String = row.try_get("trigger")?;
                Ok(DeliveryLog {
                    attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).map_err(corrupt)?,
                    details: DeliveryAttempt {
                        manual: trigger == "manual",
                        url: row.try_get("url")?,
                        request_body: row.try_get("request_body")?,
                        response_code: row
                            .try_get::<Option<i64>, _>("response_code")?
                            .map(|code| u16::try_from(code).map_err(corrupt))
                            .transpose()?,
                        response_body: row.try_get("response_body")?,
                        error: row.try_get("error")?,
                        duration_ms: row.try_get("duration_ms")?,
                        at: row.try_get("created_at")?,
                    },
                })
            })
            .collect()
    }

    async fn undelivered_events(&self, filter: &EventFilter) -> Result<Vec<EventListing>, StoreError> {
        // The state's condition: 0 = any undelivered, 1 pending, 2 failed, 3 exhausted, 4 none.
        let state = match filter.state {
            None => 0_i64,
            Some(EventState::Pending) => 1,
            Some(EventState::Failed) => 2,
            Some(EventState::Exhausted) => 3,
            Some(EventState::Delivered) => 4,
        };
        let rows = self
            .q(
                "SELECT e.*, p.transaction_id, p.source_id, \
                 (SELECT l.response_code FROM webhook_logs l WHERE l.event_row_id = e.id ORDER BY l.id DESC LIMIT 1) AS last_code, \
                 (SELECT l.error FROM webhook_logs l WHERE l.event_row_id = e.id ORDER BY l.id DESC LIMIT 1) AS last_error \
                 FROM webhook_events e JOIN payments p ON p.id = e.payment_id \
                 WHERE e.delivered_at IS NULL AND p.webhook_url IS NOT NULL AND e.id > ? \
                 AND (? IS NULL OR p.source_id = ?) \
                 AND (? IS NULL OR e.created_at >= ?) \
                 AND (? = 0 OR (? = 1 AND e.exhausted_at IS NULL AND e.attempts = 0) \
                      OR (? = 2 AND e.exhausted_at IS NULL AND e.attempts > 0) OR (? = 3 AND e.exhausted_at IS NOT NULL)) \
                 ORDER BY e.id LIMIT ?",
            )
            .bind(filter.after.unwrap_or(0))
            .bind(filter.source_id)
            .bind(filter.source_id)
            .bind(filter.since)
            .bind(filter.since)
            .bind(state)
            .bind(state)
            .bind(state)
            .bind(state)
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        let mut listed = Vec::with_capacity(rows.len());
        for row in &rows {
            match Self::listing(row) {
                Ok(listing) => listed.push(listing),
                Err(err @ StoreError::Corrupt(_)) => skip_unreadable("webhook event", row, &err),
                Err(err) => return Err(err),
            }
        }
        Ok(listed)
    }

    async fn recover_events(
        &self,
        source_id: SourceId,
        since: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let recovered = self
            .q(
                "UPDATE webhook_events SET exhausted_at = NULL, schedule_step = 0, next_attempt_at = ? \
                 WHERE delivered_at IS NULL AND (exhausted_at IS NOT NULL OR attempts > 0) AND created_at >= ? \
                 AND (claimed_until IS NULL OR claimed_until < ?) \
                 AND payment_id IN (SELECT id FROM payments WHERE source_id = ?)",
            )
            .bind(now)
            .bind(since)
            .bind(now)
            .bind(source_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(recovered.rows_affected())
    }

    async fn oldest_due_event(&self, now: UnixSeconds) -> Result<Option<UnixSeconds>, StoreError> {
        Ok(self
            .scalar(concat!(
                "SELECT MIN(e.next_attempt_at) FROM webhook_events e WHERE e.delivered_at IS NULL ",
                "AND e.exhausted_at IS NULL AND e.next_attempt_at <= ? ",
                "AND (e.claimed_until IS NULL OR e.claimed_until < ?) AND ",
                oldest_open!("e")
            ))
            .bind(now)
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn purge_delivery_logs(&self, before: UnixSeconds) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let purged = self
            .q("DELETE FROM webhook_logs WHERE created_at < ?")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(purged.rows_affected())
    }
}
