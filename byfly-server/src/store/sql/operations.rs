//! [`Operations`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::store::operations::Operations;
use byfly_core::ids::EventId;
use byfly_core::{MethodCode, PaymentStatus};
use sqlx::Row;

use super::{SqlStore, flag, readable};
use crate::store::decisions::*;
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::ids::*;
use crate::store::records::*;

#[async_trait]
impl Operations for SqlStore {
    async fn previous_qr(
        &self,
        terminal_id: TerminalId,
        before_operation: OperationId,
    ) -> Result<PreviousScreen, StoreError> {
        let latest: Option<Option<String>> = self
            .scalar(
                "SELECT qr_code FROM operations WHERE terminal_id = ? AND id < ? AND process_id IS NOT NULL \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(terminal_id)
            .bind(before_operation)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match latest {
            None => PreviousScreen::Nothing,
            Some(Some(qr)) => PreviousScreen::Qr(qr),
            Some(None) => PreviousScreen::Unknown,
        })
    }

    async fn operations(&self, payment_id: PaymentId) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = self
            .q("SELECT * FROM operations WHERE payment_id = ? ORDER BY id")
            .bind(payment_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::operation).collect()
    }

    async fn claim_terminal(&self, claim: &TerminalClaim) -> Result<ClaimOutcome, StoreError> {
        // PostgreSQL may end the claim as a deadlock's victim (seen once in the two-process test,
        // beside a health-check round): the transaction was rolled back whole, so it is tried again.
        let mut attempt = 1;
        loop {
            match self.claim_terminal_once(claim).await {
                Err(err) if err.is_deadlock_victim() && attempt < CLAIM_ATTEMPTS => {
                    tracing::warn!(
                        attempt,
                        "terminal claim chosen as a deadlock's victim: trying again"
                    );
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn start_failed(
        &self,
        operation_id: OperationId,
        unhealthy: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.lock_payment_of(&mut tx, operation_id).await?;
        let row = self
            .q(
                "UPDATE operations SET state = 'start_failed', is_current = 0, holds_terminal = 0 \
             WHERE id = ? AND state = 'starting' RETURNING terminal_id, replaces_operation_id, is_current",
            )
            .bind(operation_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row {
            let replaced: Option<i64> = row.try_get("replaces_operation_id")?;
            // Its predecessor decides the payment again only if it itself still did (a later
            // request may have replaced it meanwhile).
            let was_current = flag(&row, "is_current")?;
            if let Some(replaced) = replaced.filter(|_| was_current) {
                self.q("UPDATE operations SET is_current = 1 WHERE id = ? AND state = 'in_flight'")
                    .bind(replaced)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(reason) = unhealthy {
                self.q("UPDATE terminals SET healthy = 0, last_error = ? WHERE id = ?")
                    .bind(reason)
                    .bind(row.try_get::<i64, _>("terminal_id")?)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn stale_starts(&self, older_than_secs: i64) -> Result<Vec<OperationId>, StoreError> {
        // Rows claimed before claimed_db_at existed fall back to the claiming host's clock.
        Ok(self
            .scalar(
                "SELECT id FROM operations WHERE state = 'starting' AND start_uncertain = 0 \
                 AND COALESCE(claimed_db_at, started_at) < unixepoch() - ? ORDER BY id",
            )
            .bind(older_than_secs)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn operation_started(
        &self,
        operation_id: OperationId,
        process_id: &str,
        now: UnixSeconds,
        from: PaymentStatus,
        to: PaymentStatus,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        self.lock_payment_of(&mut tx, operation_id).await?;
        // Only from `starting`: an operation the stale-start sweeper freed meanwhile must not come
        // back in flight on a terminal the pool thinks is free.
        let payment_id: Option<PaymentId> = self
            .scalar(
                "UPDATE operations SET state = 'in_flight', process_id = ?, next_poll_at = ? \
                 WHERE id = ? AND state = 'starting' RETURNING payment_id",
            )
            .bind(process_id)
            .bind(now + 1)
            .bind(operation_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(payment_id) = payment_id else {
            tx.rollback().await?;
            return Ok(false);
        };
        self.q("UPDATE payments SET status = ?, updated_at = ? WHERE id = ? AND status = ?")
            .bind(to.as_str())
            .bind(now)
            .bind(payment_id)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn start_uncertain(
        &self,
        operation_id: OperationId,
        reason: &str,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<(), StoreError> {
        self.q("UPDATE operations SET start_uncertain = 1, review_reason = ? WHERE id = ? AND state = 'starting'")
            .bind(reason)
            .bind(operation_id)
            .execute(&self.pool)
            .await?;
        // Only while it still decides the payment (a method switch may have replaced it).
        self.end_current(
            operation_id,
            self.q(
                "UPDATE operations SET is_current = 0 WHERE id = ? AND state = 'starting' AND is_current = 1 \
                 RETURNING payment_id, replaces_operation_id",
            )
            .bind(operation_id),
            now,
            event_id,
            decide,
        )
        .await
    }

    async fn release_uncertain_starts(&self, now: UnixSeconds) -> Result<Vec<OperationId>, StoreError> {
        Ok(self
            .scalar(
                // In id order and skipping rows another transaction holds, like every sweep over
                // several rows: two processes' sweeps then cannot lock them in opposite orders.
                "UPDATE operations SET state = 'start_failed', holds_terminal = 0, needs_review = 1, finished_at = ? \
                 WHERE id IN (SELECT id FROM operations WHERE start_uncertain = 1 AND state = 'starting' \
                 AND deadline_at < ? ORDER BY id FOR NO KEY UPDATE SKIP LOCKED) RETURNING id",
            )
            .bind(now)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn operation_qr(
        &self,
        operation_id: OperationId,
        qr_code: &str,
        payment_url: &str,
    ) -> Result<(), StoreError> {
        self.q("UPDATE operations SET qr_code = ?, payment_url = ?, shown = 1 WHERE id = ?")
            .bind(qr_code)
            .bind(payment_url)
            .bind(operation_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn abandon_unreadable(
        &self,
        operation_id: OperationId,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<(), StoreError> {
        self.end_current(
            operation_id,
            self.q(
                "UPDATE operations SET is_current = 0 WHERE id = ? AND is_current = 1 \
             RETURNING payment_id, replaces_operation_id",
            )
            .bind(operation_id),
            now,
            event_id,
            decide,
        )
        .await
    }

    async fn claim_due_operations(
        &self,
        now: UnixSeconds,
        lease: i64,
        payment_id: Option<PaymentId>,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        // The rows locked as they are picked (PostgreSQL): without it two processes could pick the
        // same rows, and waiting on each other's would be no better.
        let mut tx = self.begin_write().await?;
        let rows = self.q(
            "UPDATE operations SET next_poll_at = ? WHERE id IN (\
               SELECT id FROM operations WHERE holds_terminal = 1 AND state = 'in_flight' AND next_poll_at <= ? \
               AND (? IS NULL OR payment_id = ?) ORDER BY next_poll_at LIMIT ? FOR NO KEY UPDATE SKIP LOCKED) RETURNING *",
        )
        .bind(now + lease)
        .bind(now)
        .bind(payment_id)
        .bind(payment_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(readable(&rows, "operation", Self::operation))
    }

    async fn record_poll(&self, operation_id: OperationId, note: &PollNote) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = self
            .q(
                "UPDATE operations SET last_answer = ?, next_poll_at = ?, unknown_since = ?, \
             shown = CASE WHEN ? THEN 1 ELSE shown END, \
             needs_review = CASE WHEN ? IS NULL THEN needs_review ELSE 1 END, \
             review_reason = COALESCE(?, review_reason) WHERE id = ? AND holds_terminal = 1",
            )
            .bind(&note.raw_answer)
            .bind(note.next_poll_at)
            .bind(note.unknown_since)
            .bind(note.shown)
            .bind(note.review.as_deref())
            .bind(note.review.as_deref())
            .bind(operation_id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() > 0 {
            self.log_answer(&mut tx, operation_id, &note.raw_answer, note.answered_at)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn settle(
        &self,
        operation_id: OperationId,
        answer: &FinalAnswer,
        raw_answer: &str,
        decision: Option<&ReviewDecision>,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<Option<SettlementPlan>, StoreError> {
        let mut tx = self.begin_write().await?;
        let payment_id: Option<PaymentId> = self
            .scalar(super::locks::PAYMENT_OF_OPERATION)
            .bind(operation_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(payment_id) = payment_id else {
            tx.rollback().await?;
            return Ok(None);
        };
        let snapshot = self.snapshot(&mut tx, payment_id).await?;
        let Some(plan) = decide(&snapshot) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let (transaction_id, cheque_method) = match answer {
            FinalAnswer::Succeeded {
                transaction_id,
                cheque_method,
                ..
            } => (transaction_id.clone(), cheque_method.clone()),
            FinalAnswer::Failed => (None, None),
        };
        let (state, gross) = match answer {
            FinalAnswer::Succeeded { gross, .. } => (OpState::Succeeded, Some(gross.to_minor())),
            FinalAnswer::Failed => (OpState::Failed, None),
        };
        let updated = self.q(
            "UPDATE operations SET state = ?, holds_terminal = 0, gross_minor = ?, product_method = ?, \
             credited_minor = ?, terminal_transaction_id = ?, cheque_method = ?, last_answer = ?, finished_at = ? \
             WHERE id = ? AND state = 'in_flight'",
        )
        .bind(state.as_str())
        .bind(gross)
        .bind(plan.product_method.as_ref().map(MethodCode::as_str))
        .bind(plan.credited.to_minor())
        .bind(transaction_id)
        .bind(cheque_method)
        .bind(raw_answer)
        .bind(now)
        .bind(operation_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        match decision {
            Some(decision) => self.record_decision(&mut tx, operation_id, decision, now).await?,
            None => self.log_answer(&mut tx, operation_id, raw_answer, now).await?,
        }
        self.persist(&mut tx, &snapshot, &plan, now, event_id).await?;
        tx.commit().await?;
        Ok(Some(plan))
    }

    async fn operations_needing_review(&self) -> Result<Vec<OperationRecord>, StoreError> {
        self.all(
            "SELECT * FROM operations WHERE needs_review = 1 AND (holds_terminal = 1 OR start_uncertain = 1) \
             ORDER BY id",
            Self::operation,
        )
        .await
    }

    async fn operation(&self, id: OperationId) -> Result<Option<OperationRecord>, StoreError> {
        self.by_id("SELECT * FROM operations WHERE id = ?", id, Self::operation)
            .await
    }

    async fn acknowledge_review(
        &self,
        id: OperationId,
        decision: &ReviewDecision,
        now: UnixSeconds,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = self
            .q("UPDATE operations SET needs_review = 0 WHERE id = ? AND needs_review = 1 AND holds_terminal = 0")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        self.record_decision(&mut tx, id, decision, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn terminal_answers(&self, payment_id: PaymentId) -> Result<Vec<TerminalAnswerRecord>, StoreError> {
        self.answers_of_payment(payment_id).await
    }

    async fn terminal_holds(&self) -> Result<Vec<TerminalHold>, StoreError> {
        self.holds().await
    }

    async fn review_decisions(&self, payment_id: PaymentId) -> Result<Vec<ReviewDecisionRecord>, StoreError> {
        self.decisions_of_payment(payment_id).await
    }
}

/// How often a claim is tried when PostgreSQL picks it as a deadlock's victim.
const CLAIM_ATTEMPTS: u32 = 3;

impl SqlStore {
    /// One attempt of [`Operations::claim_terminal`], in one transaction.
    async fn claim_terminal_once(&self, claim: &TerminalClaim) -> Result<ClaimOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> = self
            .scalar("SELECT status FROM payments WHERE id = ? FOR NO KEY UPDATE")
            .bind(claim.payment_id)
            .fetch_optional(&mut *tx)
            .await?;
        if status.as_deref() != Some(claim.expected_status.as_str()) {
            tx.rollback().await?;
            return Ok(ClaimOutcome::PaymentChanged);
        }
        if let Some(replaced) = claim.replace_operation {
            self.q("UPDATE operations SET is_current = 0 WHERE id = ? AND payment_id = ?")
                .bind(replaced)
                .bind(claim.payment_id)
                .execute(&mut *tx)
                .await?;
        }
        // The free terminals, least recently used first; those this request already tried are
        // skipped here (a pool is a handful of terminals).
        let free = self
            .q("SELECT * FROM terminals t WHERE t.enabled = 1 AND t.healthy = 1 \
                AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.terminal_id = t.id AND o.holds_terminal = 1) \
                ORDER BY t.last_used_at, t.id")
            .fetch_all(&mut *tx)
            .await?;
        let mut candidates = Vec::with_capacity(free.len());
        for row in &free {
            let terminal = Self::terminal(row)?;
            if !claim.excluded_terminals.contains(&terminal.id) {
                candidates.push(terminal);
            }
        }
        let Some(terminal) = self.take_first_free(&mut tx, candidates).await? else {
            tx.rollback().await?;
            return Ok(ClaimOutcome::NoFreeTerminal);
        };
        let quote = &claim.quote;
        let inserted = self.q(
            "INSERT INTO operations (payment_id, terminal_id, method_code, percent, base_minor, commission_minor, \
             charge_minor, terminal_amount, state, is_current, holds_terminal, replaces_operation_id, previous_status, \
             started_at, deadline_at, next_poll_at, claimed_db_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'starting', 1, 1, ?, ?, ?, ?, ?, unixepoch()) RETURNING id",
        )
        .bind(claim.payment_id)
        .bind(terminal.id)
        .bind(quote.method.as_str())
        .bind(quote.percent.to_string())
        .bind(quote.base.to_minor())
        .bind(quote.commission.to_minor())
        .bind(quote.charge.to_minor())
        .bind(claim.terminal_amount)
        .bind(claim.replace_operation)
        .bind(claim.expected_status.as_str())
        .bind(claim.now)
        .bind(claim.deadline_at)
        .bind(i64::MAX)
        .fetch_one(&mut *tx)
        .await;
        let operation_id: OperationId = match inserted {
            Ok(row) => row.try_get("id")?,
            // A unique index refused it: another request opened an operation on this payment.
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                tx.rollback().await?;
                return Ok(ClaimOutcome::PaymentChanged);
            }
            Err(err) => return Err(err.into()),
        };
        self.q("UPDATE terminals SET last_used_at = ? WHERE id = ?")
            .bind(claim.now)
            .bind(terminal.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ClaimOutcome::Claimed {
            operation_id,
            terminal: Box::new(terminal),
        })
    }
}
