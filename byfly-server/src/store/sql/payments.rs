//! [`Payments`] on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::store::payments::{PaymentFilter, Payments};
use byfly_core::ids::EventId;
use byfly_core::{PaymentMethod, PaymentStatus, TransactionId};

use super::FetchWritten;
use super::idempotency::{bind_claim, bind_claim_limits, claim_keys_into, claim_values, unless_live};
use super::payment_inserts::{INSERT_PAYMENT, bind_new_payment, insert_payment_columns, new_payment_values};
use super::rows::{SqliteRow, StoredRow};
use super::status_reads::{Found, StatusReads};
use super::{Dialect, SqlStore};
use crate::store::IdempotencyClaim;
use crate::store::decisions::*;
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::ids::*;
use crate::store::records::*;

/// The condition of the payments list around its one clause the dialects write differently (the
/// metadata's `order_id`): source, status, creation time (from inclusive, until inclusive), the
/// searched text, the cursor.
macro_rules! listed_where {
    ($order_id:literal) => {
        concat!(
            "(? IS NULL OR source_id = ?) AND (? IS NULL OR status = ?) ",
            "AND (? IS NULL OR created_at >= ?) AND (? IS NULL OR created_at <= ?) ",
            "AND (? IS NULL OR transaction_id = UPPER(?) ",
            "OR (LOWER(COALESCE(description, '') || ' ' || COALESCE(customer_name, '') || ' ' || COALESCE(customer_email, '')) LIKE ? ESCAPE '!') ",
            "OR (COALESCE(description, '') || ' ' || COALESCE(customer_name, '') || ' ' || COALESCE(customer_email, '')) LIKE ? ESCAPE '!' ",
            "OR (COALESCE(description, '') || ' ' || COALESCE(customer_name, '') || ' ' || COALESCE(customer_email, '')) LIKE ? ESCAPE '!' ",
            "OR REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(COALESCE(customer_phone, ''), ' ', ''), '-', ''), '+', ''), '(', ''), ')', '') LIKE ? ",
            "OR ",
            $order_id,
            ") AND id < ? ORDER BY id DESC LIMIT ?"
        )
    };
}

/// A payment (its columns prefixed `p_`) with its operations (theirs as they are), up to the
/// condition: one row per operation, or one row of NULL operation columns for a payment without
/// any (a literal, for `concat!`).
macro_rules! payment_and_operations {
    () => {
        "SELECT p.id AS p_id, p.transaction_id AS p_transaction_id, \
         p.source_id AS p_source_id, p.status AS p_status, p.original_amount_minor AS p_original_amount_minor, \
         p.refunded_amount_minor AS p_refunded_amount_minor, p.currency AS p_currency, \
         p.description AS p_description, p.customer_name AS p_customer_name, \
         p.customer_phone AS p_customer_phone, p.customer_email AS p_customer_email, \
         p.payment_method_id AS p_payment_method_id, p.webhook_url AS p_webhook_url, \
         p.webhook_secret AS p_webhook_secret, p.metadata AS p_metadata, p.created_at AS p_created_at, \
         p.expires_at AS p_expires_at, p.paid_at AS p_paid_at, o.* \
         FROM payments p LEFT JOIN operations o ON o.payment_id = p.id "
    };
}

/// One payment with its operations, oldest first.
const PAYMENT_AND_OPERATIONS: &str = concat!(
    payment_and_operations!(),
    "WHERE p.transaction_id = ? ORDER BY o.id"
);

/// The rows of [`PAYMENT_AND_OPERATIONS`] gathered, whichever driver read them.
#[derive(Default)]
struct Joined {
    payment: Option<PaymentRecord>,
    operations: Vec<OperationRecord>,
}

impl Joined {
    fn add(&mut self, row: &impl StoredRow) -> Result<(), StoreError> {
        if self.payment.is_none() {
            self.payment = Some(SqlStore::joined_payment_row(row)?);
        }
        if row.value::<Option<i64>>("id")?.is_some() {
            self.operations.push(SqlStore::operation(row)?);
        }
        Ok(())
    }

    fn finish(self) -> Option<(PaymentRecord, Vec<OperationRecord>)> {
        Some((self.payment?, self.operations))
    }
}

impl SqlStore {
    /// PostgreSQL's status reads, gathered many to a query ([`StatusReads`]).
    pub(super) fn start_status_reads(pool: &AnyPool) -> Arc<StatusReads> {
        StatusReads::start(pool.clone(), |pool, ids| Box::pin(payments_together(pool, ids)))
    }
}

/// The payments of `ids` (distinct transaction ids) with their operations, in one query: the
/// query of a round of [`StatusReads`].
async fn payments_together(pool: AnyPool, ids: Vec<String>) -> Result<Found, StoreError> {
    let mut sql = String::from(concat!(payment_and_operations!(), "WHERE p.transaction_id IN ("));
    for n in 1..=ids.len() {
        if n > 1 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&n.to_string());
    }
    // Each payment's operations oldest first (only the count varies: one prepared statement per
    // count, kept by sqlx).
    sql.push_str(") ORDER BY p.id, o.id");
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for id in &ids {
        query = query.bind(id.as_str());
    }
    let rows = query.fetch_all(&pool).await?;
    let mut joined: HashMap<String, Result<Joined, String>> = HashMap::new();
    for row in &rows {
        let id: String = row.try_get("p_transaction_id")?;
        let payment = joined.entry(id).or_insert_with(|| Ok(Joined::default()));
        if let Ok(gathered) = payment
            && let Err(err) = gathered.add(row)
        {
            *payment = Err(err.to_string());
        }
    }
    Ok(joined
        .into_iter()
        .filter_map(|(id, payment)| match payment {
            Ok(gathered) => gathered.finish().map(|payment| (id, Ok(payment))),
            Err(why) => Some((id, Err(why))),
        })
        .collect())
}

/// PostgreSQL's keyed init as one statement: the key claimed with its answer unless it is live,
/// and the payment inserted only if it was. Without `ON CONFLICT` on the payment: a taken
/// transaction id fails the statement, so the claim is not kept either.
const CLAIM_THEN_INSERT: &str = concat!(
    "WITH claimed AS (",
    claim_keys_into!(),
    claim_values!(),
    unless_live!(),
    ") ",
    insert_payment_columns!(),
    "SELECT * FROM (VALUES ",
    new_payment_values!(),
    ") AS new_payment WHERE EXISTS (SELECT 1 FROM claimed) RETURNING transaction_id"
);

/// The expiry sweep's candidates: payments of an expirable status past `expires_at` (read by the
/// index of migration 0014) whose operations hold no terminal.
const EXPIRY_CANDIDATES: &str = "SELECT p.id FROM payments p WHERE p.expires_at <= ? \
     AND p.status IN (?, ?, ?, ?, ?, ?, ?, ?) \
     AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.payment_id = p.id AND o.holds_terminal = 1) \
     ORDER BY p.expires_at LIMIT ? FOR NO KEY UPDATE OF p SKIP LOCKED";

#[async_trait]
impl Payments for SqlStore {
    async fn payment_methods(&self) -> Result<Vec<(PaymentMethod, bool)>, StoreError> {
        self.revalidate_cache().await?;
        if let Some(cached) = self.cache.methods() {
            return Ok(cached);
        }
        let generation = self.cache.generation();
        let methods = self
            .all("SELECT * FROM payment_methods ORDER BY id", Self::method)
            .await?;
        self.cache.keep_methods(&methods, generation);
        Ok(methods)
    }

    async fn insert_payment(
        &self,
        row: &NewPaymentRow,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Inserted, StoreError> {
        if let Some(inserts) = &self.payment_inserts {
            return inserts.insert(row, claim).await;
        }
        // PostgreSQL: one statement in autocommit mode, a transaction of its own — one round trip
        // where `BEGIN`, the statements and `COMMIT` were three or four.
        let Some(claim) = claim else {
            let inserted = bind_new_payment(self.q(INSERT_PAYMENT), row)
                .execute(&self.pool)
                .await?;
            return Ok(if inserted.rows_affected() == 0 {
                Inserted::IdCollision
            } else {
                Inserted::Yes
            });
        };
        let statement = bind_new_payment(
            bind_claim_limits(bind_claim(self.q(CLAIM_THEN_INSERT), claim)),
            row,
        );
        match statement.fetch_written(&self.pool).await {
            Ok(Some(_)) => Ok(Inserted::Yes),
            Ok(None) => Ok(Inserted::KeyTaken),
            // The transaction id is taken: the statement failed as a whole, the claim with it.
            Err(sqlx::Error::Database(db))
                if matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) =>
            {
                Ok(Inserted::IdCollision)
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn payment(&self, id: &TransactionId) -> Result<Option<PaymentRecord>, StoreError> {
        const BY_TRANSACTION_ID: &str = select_payments!("transaction_id = ?");
        if let Some(reads) = &self.sqlite_reads {
            return reads.read(|connection| {
                let mut statement = connection.prepare_cached(BY_TRANSACTION_ID)?;
                let mut rows = statement.query([id.as_str()])?;
                rows.next()?
                    .map(|row| Self::payment_row(&SqliteRow::new(row)))
                    .transpose()
            });
        }
        let row = self
            .q(BY_TRANSACTION_ID)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::payment_row).transpose()
    }

    async fn update_method(
        &self,
        id: i64,
        patch: &byfly_core::wire::UpdateMethodRequest,
    ) -> Result<Option<(PaymentMethod, bool)>, StoreError> {
        let text = |percent: Option<byfly_core::Percent>| percent.map(|p| p.to_string());
        let row = self.q(
            "UPDATE payment_methods SET commission_percent = COALESCE(?, commission_percent), \
             credit_commission_percent = COALESCE(?, credit_commission_percent), \
             installment_commission_percent = COALESCE(?, installment_commission_percent), \
             add_commission_to_amount = COALESCE(?, add_commission_to_amount), is_active = COALESCE(?, is_active) \
             WHERE id = ? RETURNING *",
        )
        .bind(text(patch.commission_percent))
        .bind(text(patch.credit_commission_percent))
        .bind(text(patch.installment_commission_percent))
        .bind(patch.add_commission_to_amount.map(i64::from))
        .bind(patch.is_active.map(i64::from))
        .bind(id)
        .fetch_written(&self.pool)
        .await?;
        // At once in this process; the others notice through `cache_generation`.
        self.cache.clear();
        row.as_ref().map(Self::method).transpose()
    }

    async fn payment_and_operations(
        &self,
        id: &TransactionId,
    ) -> Result<Option<(PaymentRecord, Vec<OperationRecord>)>, StoreError> {
        if let Some(reads) = &self.sqlite_reads {
            return reads.read(|connection| {
                let mut statement = connection.prepare_cached(PAYMENT_AND_OPERATIONS)?;
                let mut rows = statement.query([id.as_str()])?;
                let mut joined = Joined::default();
                while let Some(row) = rows.next()? {
                    joined.add(&SqliteRow::new(row))?;
                }
                Ok(joined.finish())
            });
        }
        if let Some(reads) = &self.status_reads {
            return reads.read(id).await;
        }
        let rows = self
            .q(PAYMENT_AND_OPERATIONS)
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut joined = Joined::default();
        for row in &rows {
            joined.add(row)?;
        }
        Ok(joined.finish())
    }

    async fn payment_by_row_id(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StoreError> {
        self.by_id(select_payments!("id = ?"), id, Self::payment_row)
            .await
    }

    async fn cancel_payment(
        &self,
        payment_id: PaymentId,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<Option<Vec<OperationRecord>>, StoreError> {
        let mut tx = self.begin_write().await?;
        self.lock_payment(&mut tx, payment_id).await?;
        let snapshot = self.snapshot(&mut tx, payment_id).await?;
        let Some(plan) = decide(&snapshot) else {
            tx.rollback().await?;
            return Ok(None);
        };
        self.persist(&mut tx, &snapshot, &plan, now, event_id).await?;
        tx.commit().await?;
        Ok(Some(
            snapshot
                .operations
                .into_iter()
                .filter(|op| op.holds_terminal && op.process_id.is_some())
                .collect(),
        ))
    }

    async fn expire_due(
        &self,
        now: UnixSeconds,
        limit: u32,
        event_ids: &(dyn Fn() -> EventId + Sync),
        decide: Decide<'_>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        // Narrowing only: byfly-core decides each payment from its snapshot. A payment whose
        // operation holds a terminal is left out here as there (it would be refused each round).
        // One slot per status (PaymentStatus::ALL has 8): the expirable ones bound, the rest NULL,
        // which `IN` never matches.
        let expirable = PaymentStatus::expirable();
        let mut query = self.scalar(EXPIRY_CANDIDATES);
        query = query.bind(now);
        let slots: [PaymentStatus; 8] = PaymentStatus::ALL;
        for status in slots {
            query = query.bind(expirable.contains(&status).then(|| status.as_str()));
        }
        let due: Vec<PaymentId> = query.bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        let mut expired = 0;
        for payment_id in due {
            let snapshot = self.snapshot(&mut tx, payment_id).await?;
            if let Some(plan) = decide(&snapshot) {
                self.persist(&mut tx, &snapshot, &plan, now, &event_ids()).await?;
                expired += 1;
            }
        }
        tx.commit().await?;
        Ok(expired)
    }

    async fn list_payments(
        &self,
        filter: &PaymentFilter,
        before: Option<PaymentId>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let status = filter.status.map(PaymentStatus::as_str);
        let text = filter
            .text
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty());
        // The description, the customer's name and e-mail, searched as one text: lowercased (as
        // far as the database lowercases: ASCII only in SQLite), and as typed and capitalized (so
        // «Айгерим» and «айгерим» both find «Айгерим», whose case SQLite cannot fold).
        let patterns = text.map(|text| {
            let capitalized: String = text
                .chars()
                .take(1)
                .flat_map(char::to_uppercase)
                .chain(text.chars().skip(1))
                .collect();
            [text.to_lowercase(), text.to_owned(), capitalized]
                .map(|variant| format!("%{}%", escape_like(&variant)))
        });
        let [lowered, typed, capitalized] =
            patterns.map_or([None, None, None], |[a, b, c]| [Some(a), Some(b), Some(c)]);
        // A phone is matched by its digits when the text has enough of them to mean one.
        let digits: Option<String> = text
            .map(|text| text.chars().filter(char::is_ascii_digit).collect::<String>())
            .filter(|digits| digits.len() >= 4);
        // A Kazakh number is written `+7 701 …` or `8 701 …`: its last ten digits (the national
        // number) find it written either way.
        let phone = digits.map(|digits| {
            let national = match digits.as_bytes() {
                [b'7' | b'8', ..] if digits.len() == 11 => &digits[1..],
                _ => digits.as_str(),
            };
            format!("%{national}%")
        });
        // The metadata's `order_id` (a string or a number), read as JSON: never an error for a
        // merchant's odd metadata (PostgreSQL's jsonb refuses `\u0000`: see migration 0012).
        let sql = match self.dialect {
            Dialect::Sqlite => select_payments!(listed_where!(
                "(json_valid(metadata) AND CAST(json_extract(metadata, '$.order_id') AS TEXT) = ?)"
            )),
            Dialect::Postgres => select_payments!(listed_where!("byfly_metadata_order_id(metadata) = ?")),
        };
        let rows = self
            .q(sql)
            .bind(filter.source_id)
            .bind(filter.source_id)
            .bind(status)
            .bind(status)
            .bind(filter.created_from)
            .bind(filter.created_from)
            .bind(filter.created_until)
            .bind(filter.created_until)
            .bind(text)
            .bind(text)
            .bind(lowered.as_deref())
            .bind(typed.as_deref())
            .bind(capitalized.as_deref())
            .bind(phone.as_deref())
            .bind(text)
            .bind(before.map_or(i64::MAX, PaymentId::get))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::payment_row).collect()
    }
}

/// `text` for a `LIKE … ESCAPE '!'` pattern: its `%`, `_` and `!` match only themselves (`!`, not
/// a backslash, whose meaning in a string literal depends on PostgreSQL's settings).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            escaped.push('!');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::super::dialect::without_row_locks;
    use super::super::{SqlStore, temp_sqlite_url};
    use super::EXPIRY_CANDIDATES;
    use crate::store::Database;

    /// The sweep runs inside a write transaction, on SQLite the only writer's: a scan of every
    /// payment there would stall all writes, longer as the table grows.
    #[tokio::test]
    async fn the_expiry_sweep_finds_its_candidates_by_index_not_by_scanning_payments() {
        let store = SqlStore::open(&temp_sqlite_url("expiry-plan")).await.unwrap();
        store.migrate().await.unwrap();
        let plan = store
            .sqlite_reads
            .as_ref()
            .expect("a SQLite file gets its readers")
            .read(|connection| {
                let mut statement = connection.prepare(&format!(
                    "EXPLAIN QUERY PLAN {}",
                    without_row_locks(EXPIRY_CANDIDATES)
                ))?;
                let unbound = std::iter::repeat_n(rusqlite::types::Null, statement.parameter_count());
                let details = statement
                    .query_map(rusqlite::params_from_iter(unbound), |row| row.get::<_, String>(3))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(details)
            })
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("payments_by_status_expiry")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|step| step.starts_with("SCAN p")), "{plan:?}");
    }
}
