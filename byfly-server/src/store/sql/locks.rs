//! Row locks on PostgreSQL: what a write transaction decides from, held by it alone.
//!
//! SQLite runs one writer at a time (the batches of [`super::group_commit`]), so every
//! read-then-write is atomic there already and these cost nothing. On PostgreSQL writers of
//! different payments and terminals run side by side, in every process, and each decision locks
//! exactly what it reads to decide:
//! - a payment's row (`FOR NO KEY UPDATE`: the lock an update of it takes, which leaves the
//!   foreign-key checks of rows pointing at it free), taken before its snapshot is read and held to the commit, so
//!   the decisions about one payment follow each other and its events are appended in the order of
//!   their `sequence`;
//! - a terminal's row while a new operation is put on it, and then a fresh look at whether an
//!   operation holds it (the unique index `operations_one_per_terminal` stays the backstop);
//! - due rows (polls, deliveries, expiries) claimed with `SKIP LOCKED`, so two processes take
//!   different rows instead of the same ones or waiting on each other.
//!
//! Order, so that no two transactions wait on each other in a circle: a payment's row first (one
//! waited for at a time; the expiry sweep takes several but skips any that is held), then its
//! operations, a terminal, events. Nothing that holds a terminal or an operation waits for a
//! payment.

use sqlx::{Any, AnyConnection, Executor};

use super::{Dialect, SqlStore};
use crate::store::error::StoreError;
use crate::store::ids::{OperationId, PaymentId, TerminalId};
use crate::store::records::TerminalRecord;

/// The payment of an operation (`?`), its row locked.
pub(super) const PAYMENT_OF_OPERATION: &str = "SELECT p.id FROM payments p JOIN operations o ON o.payment_id = p.id WHERE o.id = ? FOR NO KEY UPDATE OF p";

impl SqlStore {
    /// Runs `lock` — a `SELECT … FOR NO KEY UPDATE` of the rows of `key` — on PostgreSQL; the locks are
    /// held until the transaction ends. Nothing on SQLite.
    pub(super) async fn lock_rows<K>(
        &self,
        tx: &mut AnyConnection,
        lock: &'static str,
        key: K,
    ) -> Result<(), StoreError>
    where
        K: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send + 'static,
    {
        if self.dialect == Dialect::Postgres {
            self.q(lock).bind(key).fetch_all(&mut *tx).await?;
        }
        Ok(())
    }

    /// Locks the payment's row (PostgreSQL).
    pub(super) async fn lock_payment(&self, tx: &mut AnyConnection, id: PaymentId) -> Result<(), StoreError> {
        self.lock_rows(tx, "SELECT id FROM payments WHERE id = ? FOR NO KEY UPDATE", id)
            .await
    }

    /// Locks the terminal's row (PostgreSQL) and tells whether it is free of operations, whatever
    /// its health (a refund goes to the terminal that took the money): `false` while one holds
    /// it, read rather than left to the unique index, whose insert would wait for a transaction
    /// freeing the terminal while that one waits for this lock. SQLite: `true` (its one writer
    /// leaves the index to decide).
    pub(super) async fn lock_unheld_terminal(
        &self,
        tx: &mut AnyConnection,
        id: TerminalId,
    ) -> Result<bool, StoreError> {
        if self.dialect == Dialect::Sqlite {
            return Ok(true);
        }
        self.lock_rows(tx, "SELECT id FROM terminals WHERE id = ? FOR NO KEY UPDATE", id)
            .await?;
        Ok(!self.terminal_held(tx, id).await?)
    }

    /// Locks the row of the payment an operation belongs to (PostgreSQL).
    pub(super) async fn lock_payment_of(
        &self,
        tx: &mut AnyConnection,
        operation: OperationId,
    ) -> Result<(), StoreError> {
        self.lock_rows(tx, PAYMENT_OF_OPERATION, operation).await
    }

    /// Whether a new operation may be put on the terminal in this transaction: on PostgreSQL its
    /// row is locked — behind another transaction holding it if `wait`, else not at all (`false`)
    /// — and, the lock held, no operation holds the terminal and it is still enabled and healthy.
    /// Another claimer's operation is seen here once it committed, and until then it holds the row.
    /// A terminal not taken is let go at once (its lock rolled back to a savepoint): a transaction
    /// holds at most the one terminal it takes and waits for none while holding one, so claimers
    /// never wait on each other in a circle.
    pub(super) async fn take_terminal(
        &self,
        tx: &mut AnyConnection,
        terminal_id: TerminalId,
        wait: bool,
    ) -> Result<bool, StoreError> {
        if self.dialect == Dialect::Sqlite {
            return Ok(true);
        }
        let lock = if wait {
            "SELECT id FROM terminals WHERE id = ? AND enabled = 1 AND healthy = 1 FOR NO KEY UPDATE"
        } else {
            "SELECT id FROM terminals WHERE id = ? AND enabled = 1 AND healthy = 1 FOR NO KEY UPDATE SKIP LOCKED"
        };
        tx.execute("SAVEPOINT take_terminal").await?;
        let locked: Option<i64> = self
            .scalar(lock)
            .bind(terminal_id)
            .fetch_optional(&mut *tx)
            .await?;
        let free = match locked {
            None => false,
            Some(_) => !self.terminal_held(tx, terminal_id).await?,
        };
        tx.execute(if free {
            "RELEASE SAVEPOINT take_terminal"
        } else {
            "ROLLBACK TO SAVEPOINT take_terminal; RELEASE SAVEPOINT take_terminal"
        })
        .await?;
        Ok(free)
    }

    /// Whether an operation holds the terminal, as committed (a plain read, which waits for no
    /// one: an operation whose release is not committed yet still holds it).
    pub(super) async fn terminal_held(
        &self,
        tx: &mut AnyConnection,
        terminal_id: TerminalId,
    ) -> Result<bool, StoreError> {
        Ok(self
            .scalar::<i64>("SELECT id FROM operations WHERE terminal_id = ? AND holds_terminal = 1")
            .bind(terminal_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some())
    }

    /// The first of `candidates` (in order) [taken](Self::take_terminal) in this transaction.
    /// Those another transaction holds are passed over first, so that concurrent claimers spread
    /// over the pool, then waited for: a terminal held for a moment by a health check or a
    /// claimer that ends up not using it is still free, and "no free terminal" must be true.
    pub(super) async fn take_first_free(
        &self,
        tx: &mut AnyConnection,
        candidates: Vec<TerminalRecord>,
    ) -> Result<Option<TerminalRecord>, StoreError> {
        let mut passed_over = Vec::new();
        for terminal in candidates {
            if self.take_terminal(tx, terminal.id, false).await? {
                return Ok(Some(terminal));
            }
            passed_over.push(terminal);
        }
        for terminal in passed_over {
            if self.take_terminal(tx, terminal.id, true).await? {
                return Ok(Some(terminal));
            }
        }
        Ok(None)
    }
}
