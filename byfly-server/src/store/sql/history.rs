//! What the console shows of operations beyond their rows (migration 0013): the log of the
//! terminals' answers, the operators' decisions, and which operation holds which terminal.

use sqlx::Row;

use super::{SqlStore, corrupt, flag, readable};
use crate::store::error::StoreError;
use crate::store::ids::*;
use crate::store::records::*;

impl SqlStore {
    /// Appends a terminal's answer to the operation's log, or, when it is the same answer as the
    /// last one logged, counts it there (see migration 0013).
    pub(super) async fn log_answer(
        &self,
        tx: &mut sqlx::AnyConnection,
        operation_id: OperationId,
        answer: &str,
        at: UnixSeconds,
    ) -> Result<(), StoreError> {
        let answer = &answer[..answer.floor_char_boundary(TERMINAL_ANSWER_MAX_BYTES)];
        let repeated = self
            .q(
                "UPDATE terminal_answers SET last_at = ?, times = times + 1 WHERE id = \
                 (SELECT MAX(id) FROM terminal_answers WHERE operation_id = ?) AND answer = ?",
            )
            .bind(at)
            .bind(operation_id)
            .bind(answer)
            .execute(&mut *tx)
            .await?;
        if repeated.rows_affected() == 0 {
            self.q(
                "INSERT INTO terminal_answers (operation_id, first_at, last_at, answer) VALUES (?, ?, ?, ?)",
            )
            .bind(operation_id)
            .bind(at)
            .bind(at)
            .bind(answer)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// Records an operator's decision, in the transaction that applies it.
    pub(super) async fn record_decision(
        &self,
        tx: &mut sqlx::AnyConnection,
        operation_id: OperationId,
        decision: &ReviewDecision,
        at: UnixSeconds,
    ) -> Result<(), StoreError> {
        self.q(
            "INSERT INTO review_decisions (operation_id, outcome, amount_minor, terminal_transaction_id, \
             decided_by, decided_at, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(operation_id)
        .bind(&decision.outcome)
        .bind(decision.amount_minor)
        .bind(decision.terminal_transaction_id.as_deref())
        .bind(&decision.decided_by)
        .bind(at)
        .bind(decision.note.as_deref())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// See `Operations::terminal_answers`.
    pub(super) async fn answers_of_payment(
        &self,
        payment_id: PaymentId,
    ) -> Result<Vec<TerminalAnswerRecord>, StoreError> {
        let rows = self
            .q(
                "SELECT * FROM (SELECT a.* FROM terminal_answers a JOIN operations o ON o.id = a.operation_id \
                 WHERE o.payment_id = ? ORDER BY a.id DESC LIMIT ?) newest ORDER BY id",
            )
            .bind(payment_id)
            .bind(i64::from(crate::store::operations::ANSWERS_PER_PAYMENT))
            .fetch_all(&self.pool)
            .await?;
        Ok(readable(&rows, "terminal answer", |row| {
            Ok(TerminalAnswerRecord {
                operation_id: row.try_get("operation_id")?,
                first_at: row.try_get("first_at")?,
                last_at: row.try_get("last_at")?,
                times: row.try_get("times")?,
                answer: row.try_get("answer")?,
            })
        }))
    }

    /// See `Operations::terminal_holds`.
    pub(super) async fn holds(&self) -> Result<Vec<TerminalHold>, StoreError> {
        self.all(
            "SELECT o.id, o.terminal_id, o.refund_id, o.state, o.started_at, o.needs_review, p.transaction_id \
             FROM operations o JOIN payments p ON p.id = o.payment_id WHERE o.holds_terminal = 1 ORDER BY o.terminal_id",
            |row| {
                let state: String = row.try_get("state")?;
                let transaction_id: String = row.try_get("transaction_id")?;
                Ok(TerminalHold {
                    terminal_id: row.try_get("terminal_id")?,
                    operation_id: row.try_get("id")?,
                    transaction_id: byfly_core::TransactionId::parse(&transaction_id).map_err(corrupt)?,
                    refund: row.try_get::<Option<String>, _>("refund_id")?.is_some(),
                    state: OpState::parse(&state).ok_or_else(|| corrupt(format!("operation state {state:?}")))?,
                    started_at: row.try_get("started_at")?,
                    needs_review: flag(row, "needs_review")?,
                })
            },
        )
        .await
    }

    /// See `Operations::review_decisions`.
    pub(super) async fn decisions_of_payment(
        &self,
        payment_id: PaymentId,
    ) -> Result<Vec<ReviewDecisionRecord>, StoreError> {
        let rows = self
            .q(
                "SELECT d.* FROM review_decisions d JOIN operations o ON o.id = d.operation_id \
                 WHERE o.payment_id = ? ORDER BY d.id",
            )
            .bind(payment_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(readable(&rows, "review decision", |row| {
            Ok(ReviewDecisionRecord {
                operation_id: row.try_get("operation_id")?,
                decided_at: row.try_get("decided_at")?,
                decision: ReviewDecision {
                    outcome: row.try_get("outcome")?,
                    amount_minor: row.try_get("amount_minor")?,
                    terminal_transaction_id: row.try_get("terminal_transaction_id")?,
                    decided_by: row.try_get("decided_by")?,
                    note: row.try_get("note")?,
                },
            })
        }))
    }
}
