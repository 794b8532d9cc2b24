//! The write side of decisions: a payment's snapshot read in the write transaction, the plan
//! persisted with its outbox event, and operations that stop being current.

use byfly_core::ids::EventId;
use byfly_core::{Figures, MethodCode, Money, PaymentStatus, WebhookEvent};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use super::SqlStore;
use crate::store::decisions::*;
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::ids::{OperationId, PaymentId};
use crate::store::records::*;

/// An outbox event to append.
pub(super) struct NewEvent<'a> {
    event: WebhookEvent,
    status: PaymentStatus,
    figures: &'a Figures,
    actual: Money,
    method: Option<String>,
}

impl SqlStore {
    /// Runs `update` — an `UPDATE … RETURNING payment_id, replaces_operation_id` that stops
    /// `operation` being current — in one write transaction with what follows: the operation it
    /// replaced becomes current again if it still runs; otherwise `decide` (byfly-core's decision
    /// for a given-up operation) sets the payment's status, with its event if one is due.
    pub(super) async fn end_current(
        &self,
        operation: OperationId,
        update: Query<'_, Any, AnyArguments>,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.lock_payment_of(&mut tx, operation).await?;
        if let Some(row) = update.fetch_optional(&mut *tx).await? {
            let payment_id: PaymentId = row.try_get("payment_id")?;
            let replaced: Option<i64> = row.try_get("replaces_operation_id")?;
            let restored = match replaced {
                Some(replaced) => self
                    .q("UPDATE operations SET is_current = 1 WHERE id = ? AND state = 'in_flight'")
                    .bind(replaced)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                None => 0,
            };
            if restored == 0 {
                let snapshot = self.snapshot(&mut tx, payment_id).await?;
                if let Some(plan) = decide(&snapshot) {
                    self.persist(&mut tx, &snapshot, &plan, now, event_id).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// What a decision about `payment_id` is made from, read inside `tx`.
    pub(super) async fn snapshot(
        &self,
        tx: &mut AnyConnection,
        payment_id: PaymentId,
    ) -> Result<Snapshot, StoreError> {
        let (payment, operations) = self.payment_with_operations(tx, payment_id).await?;
        let methods = self
            .q("SELECT * FROM payment_methods")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Self::method(row).map(|(method, _)| method))
            .collect::<Result<Vec<_>, _>>()?;
        let reported = self.last_reported(tx, payment_id).await?;
        Ok(Snapshot {
            payment,
            operations,
            methods,
            reported,
        })
    }

    /// Writes a decision about the payment of `snapshot`: the abandoned current operation, the
    /// refunded amount, the status (with `paid_at` on entering `paid`) and the event, in `tx`.
    pub(super) async fn persist(
        &self,
        tx: &mut AnyConnection,
        snapshot: &Snapshot,
        plan: &SettlementPlan,
        now: UnixSeconds,
        event_id: &EventId,
    ) -> Result<(), StoreError> {
        let payment_id = snapshot.payment.id;
        if let Some(current) = plan.abandon_current {
            // Still followed on its terminal: money it takes is credited.
            self.q("UPDATE operations SET is_current = 0 WHERE id = ? AND is_current = 1")
                .bind(current)
                .execute(&mut *tx)
                .await?;
        }
        if plan.refunded.is_positive() {
            self.q("UPDATE payments SET refunded_amount_minor = refunded_amount_minor + ? WHERE id = ?")
                .bind(plan.refunded.to_minor())
                .bind(payment_id)
                .execute(&mut *tx)
                .await?;
        }
        self.q(
            "UPDATE payments SET status = ?, paid_at = CASE WHEN ? THEN ? ELSE paid_at END, updated_at = ? WHERE id = ?",
        )
        .bind(plan.status.as_str())
        .bind(plan.becomes_paid)
        .bind(now)
        .bind(now)
        .bind(payment_id)
        .execute(&mut *tx)
        .await?;
        if let Some(event) = plan.event {
            let new = NewEvent {
                event,
                status: plan.status,
                figures: &plan.figures,
                actual: plan.credited,
                method: plan.event_method.as_ref().map(MethodCode::to_string),
            };
            self.append_event(tx, payment_id, &new, now, event_id).await?;
        }
        Ok(())
    }

    /// Appends an event to the outbox inside the transaction of the change it reports.
    pub(super) async fn append_event(
        &self,
        tx: &mut AnyConnection,
        payment_id: PaymentId,
        new: &NewEvent<'_>,
        now: UnixSeconds,
        event_id: &EventId,
    ) -> Result<(), StoreError> {
        let f = new.figures;
        self.q(
            "INSERT INTO webhook_events (event_id, payment_id, event, status, amount_minor, paid_minor, \
         actual_received_minor, remaining_minor, overpaid_minor, commission_minor, refunded_minor, \
         payment_method, paid_at, created_at, next_attempt_at, sequence) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT paid_at FROM payments WHERE id = ?), ?, ?, \
         (SELECT COALESCE(MAX(sequence), 0) + 1 FROM webhook_events WHERE payment_id = ?))",
        )
        .bind(event_id.as_str())
        .bind(payment_id)
        .bind(new.event.as_str())
        .bind(new.status.as_str())
        .bind(f.amount.to_minor())
        .bind(f.paid_amount.to_minor())
        .bind(new.actual.to_minor())
        .bind(f.remaining_amount.to_minor())
        .bind(f.overpaid_amount.to_minor())
        .bind(f.commission_amount.to_minor())
        .bind(f.refunded_amount.to_minor())
        .bind(&new.method)
        .bind(payment_id)
        .bind(now)
        .bind(now)
        .bind(payment_id)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// A payment and its operations, read inside a transaction.
    /// The status and figures the payment's last event reported, if any.
    pub(super) async fn last_reported(
        &self,
        tx: &mut AnyConnection,
        payment_id: PaymentId,
    ) -> Result<Reported, StoreError> {
        let row = self
            .q("SELECT * FROM webhook_events WHERE payment_id = ? ORDER BY id DESC LIMIT 1")
            .bind(payment_id)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row
            .as_ref()
            .map(SqlStore::stored_event)
            .transpose()?
            .map(|event| (event.status, event.figures)))
    }

    pub(super) async fn payment_with_operations(
        &self,
        tx: &mut AnyConnection,
        payment_id: PaymentId,
    ) -> Result<(PaymentRecord, Vec<OperationRecord>), StoreError> {
        let payment = self
            .q(select_payments!("id = ?"))
            .bind(payment_id)
            .fetch_one(&mut *tx)
            .await?;
        let operations = self
            .q("SELECT * FROM operations WHERE payment_id = ? ORDER BY id")
            .bind(payment_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(SqlStore::operation)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((SqlStore::payment_row(&payment)?, operations))
    }
}
