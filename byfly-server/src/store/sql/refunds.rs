//! [`Refunds`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::store::refunds::Refunds;
use byfly_core::{Money, PaymentStatus};
use sqlx::Row;

use super::SqlStore;
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::ids::*;
use crate::store::records::*;

#[async_trait]
impl Refunds for SqlStore {
    async fn claim_refund(
        &self,
        expected: PaymentStatus,
        of_operation: &OperationRecord,
        amount: Money,
        request: RefundPartOf<'_>,
        now: UnixSeconds,
        deadline_at: UnixSeconds,
    ) -> Result<RefundClaim, StoreError> {
        let mut tx = self.begin_write().await?;
        self.lock_payment(&mut tx, of_operation.payment_id).await?;
        let (refund_id, request_open) = match request {
            RefundPartOf::New { refund_id, .. } => {
                let open: i64 = self
                    .scalar("SELECT COUNT(*) FROM refund_requests WHERE payment_id = ? AND open = 1")
                    .bind(of_operation.payment_id)
                    .fetch_one(&mut *tx)
                    .await?;
                (refund_id, open == 0)
            }
            RefundPartOf::Open(request) => {
                let open: Option<i64> = self
                    .scalar("SELECT open FROM refund_requests WHERE id = ?")
                    .bind(request.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                (request.refund_id.as_str(), open == Some(1))
            }
        };
        let status: Option<String> = self
            .scalar("SELECT status FROM payments WHERE id = ?")
            .bind(of_operation.payment_id)
            .fetch_optional(&mut *tx)
            .await?;
        let running: i64 = self.scalar(
            "SELECT COUNT(*) FROM operations WHERE payment_id = ? AND refund_id IS NOT NULL AND holds_terminal = 1",
        )
        .bind(of_operation.payment_id)
        .fetch_one(&mut *tx)
        .await?;
        if status.as_deref() != Some(expected.as_str()) || running > 0 || !request_open {
            tx.rollback().await?;
            return Ok(RefundClaim::PaymentChanged);
        }
        // On the terminal that took the money (a refund cannot move to another); busy if an
        // operation holds it (here, or by the unique index below).
        if !self
            .lock_unheld_terminal(&mut tx, of_operation.terminal_id)
            .await?
        {
            tx.rollback().await?;
            return Ok(RefundClaim::TerminalBusy);
        }
        let inserted = self.q(
            "INSERT INTO operations (payment_id, terminal_id, method_code, percent, base_minor, commission_minor, \
             charge_minor, terminal_amount, state, is_current, holds_terminal, previous_status, started_at, deadline_at, \
             next_poll_at, kind, refund_id, refund_of_operation_id, claimed_db_at) \
             VALUES (?, ?, ?, '0', ?, 0, ?, ?, 'starting', 0, 1, ?, ?, ?, ?, 'refund', ?, ?, unixepoch()) RETURNING id",
        )
        .bind(of_operation.payment_id)
        .bind(of_operation.terminal_id)
        .bind(of_operation.quote.method.as_str())
        .bind(amount.to_minor())
        .bind(amount.to_minor())
        .bind(amount.ceil_tenge())
        .bind(expected.as_str())
        .bind(now)
        .bind(deadline_at)
        .bind(i64::MAX)
        .bind(refund_id)
        .bind(of_operation.id)
        .fetch_one(&mut *tx)
        .await;
        let id: OperationId = match inserted {
            Ok(row) => row.try_get("id")?,
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                tx.rollback().await?;
                return Ok(RefundClaim::TerminalBusy);
            }
            Err(err) => return Err(err.into()),
        };
        if let RefundPartOf::New { refund_id, total } = request {
            self.q(
                "INSERT INTO refund_requests (refund_id, payment_id, amount_minor, created_at, open) \
                 VALUES (?, ?, ?, ?, 1)",
            )
            .bind(refund_id)
            .bind(of_operation.payment_id)
            .bind(total.to_minor())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RefundClaim::Claimed(id))
    }

    async fn refund_request(&self, refund_id: &str) -> Result<Option<RefundRequestRecord>, StoreError> {
        let row = self
            .q("SELECT * FROM refund_requests WHERE refund_id = ?")
            .bind(refund_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::refund_request_row).transpose()
    }

    async fn open_refund_request(
        &self,
        payment_id: PaymentId,
    ) -> Result<Option<RefundRequestRecord>, StoreError> {
        let row = self
            .q("SELECT * FROM refund_requests WHERE payment_id = ? AND open = 1")
            .bind(payment_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::refund_request_row).transpose()
    }

    async fn open_refund_requests(&self, limit: i64) -> Result<Vec<RefundRequestRecord>, StoreError> {
        let rows = self
            .q("SELECT * FROM refund_requests WHERE open = 1 ORDER BY id LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::refund_request_row).collect()
    }

    async fn close_refund_request(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // A request's parts are claimed with its payment locked (`claim_refund`).
        self.lock_rows(
            &mut tx,
            "SELECT p.id FROM payments p JOIN refund_requests r ON r.payment_id = p.id WHERE r.id = ? \
             FOR NO KEY UPDATE OF p",
            id,
        )
        .await?;
        let done = self
            .q("UPDATE refund_requests SET open = 0 WHERE id = ? AND open = 1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
