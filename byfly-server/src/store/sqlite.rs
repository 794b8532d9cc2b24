//! The embedded default: one SQLite file, WAL journal, `synchronous = FULL` (an acknowledged write
//! survives a power cut), `busy_timeout` so concurrent writers wait instead of failing, and write
//! transactions begun `IMMEDIATE` so two writers never deadlock upgrading a read lock.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use byfly_core::ids::{Secret, TokenHash};
use byfly_core::{BodyEncoding, Money, PaymentMethod, PaymentStatus, Percent, TransactionId};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlStr, SqlitePool};

use super::{
    IdempotencyCompletion, IdempotencyStart, Inserted, NewPaymentRow, PaymentRecord, SourceRecord, Store,
    StoreError, StoredResponse,
};

/// The migrations, embedded in the binary.
const MIGRATIONS: [(i64, &str, &str); 1] = [(
    1,
    "initial",
    include_str!("../../migrations/sqlite/0001_initial.sql"),
)];

/// How long idempotency records are kept.
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

/// A SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

impl SqliteStore {
    /// Opens (creating the file if needed) the database at `url` (`sqlite://path` or `sqlite::memory:`).
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    fn percent(row: &SqliteRow, column: &str) -> Result<Percent, StoreError> {
        let text: String = row.try_get(column)?;
        Percent::parse(&text).map_err(|err| corrupt(format!("{column}: {err}")))
    }

    fn method(row: &SqliteRow) -> Result<(PaymentMethod, bool), StoreError> {
        let method = PaymentMethod {
            id: row.try_get("id")?,
            code: byfly_core::MethodCode::new(row.try_get::<String, _>("code")?),
            name: row.try_get("name")?,
            kind: row.try_get("type")?,
            provider: row.try_get("provider")?,
            country_id: row.try_get("country_id")?,
            payment_currency: row.try_get("payment_currency")?,
            icon_emoji: row.try_get("icon_emoji")?,
            commission_percent: Self::percent(row, "commission_percent")?,
            has_credit: row.try_get("has_credit")?,
            credit_commission_percent: Self::percent(row, "credit_commission_percent")?,
            has_installment: row.try_get("has_installment")?,
            installment_months: row.try_get("installment_months")?,
            installment_commission_percent: Self::percent(row, "installment_commission_percent")?,
            add_commission_to_amount: row.try_get("add_commission_to_amount")?,
        };
        Ok((method, row.try_get("is_active")?))
    }

    fn source(row: &SqliteRow) -> Result<SourceRecord, StoreError> {
        let encoding: String = row.try_get("webhook_json")?;
        Ok(SourceRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            webhook_json: BodyEncoding::parse(&encoding)
                .ok_or_else(|| corrupt(format!("webhook_json {encoding:?}")))?,
            active: row.try_get("active")?,
            created_at: row.try_get("created_at")?,
        })
    }

    fn payment_row(row: &SqliteRow) -> Result<PaymentRecord, StoreError> {
        let transaction_id: String = row.try_get("transaction_id")?;
        let status: String = row.try_get("status")?;
        Ok(PaymentRecord {
            id: row.try_get("id")?,
            transaction_id: TransactionId::parse(&transaction_id).map_err(corrupt)?,
            source_id: row.try_get("source_id")?,
            status: PaymentStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?,
            original_amount: Money::from_minor(row.try_get("original_amount_minor")?),
            refunded_amount: Money::from_minor(row.try_get("refunded_amount_minor")?),
            currency: row.try_get("currency")?,
            description: row.try_get("description")?,
            customer_name: row.try_get("customer_name")?,
            customer_phone: row.try_get("customer_phone")?,
            customer_email: row.try_get("customer_email")?,
            payment_method_id: row.try_get("payment_method_id")?,
            webhook_url: row.try_get("webhook_url")?,
            webhook_secret: row
                .try_get::<Option<String>, _>("webhook_secret")?
                .map(Secret::new),
            metadata: row.try_get("metadata")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            paid_at: row.try_get("paid_at")?,
        })
    }

    async fn seed_methods(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payment_methods")
            .fetch_one(&mut *tx)
            .await?;
        if count == 0 {
            for method in PaymentMethod::seeded() {
                sqlx::query(
                    "INSERT INTO payment_methods (id, code, name, type, provider, country_id, payment_currency, \
                     icon_emoji, commission_percent, has_credit, credit_commission_percent, has_installment, \
                     installment_months, installment_commission_percent, add_commission_to_amount, is_active) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                )
                .bind(method.id)
                .bind(method.code.as_str())
                .bind(&method.name)
                .bind(&method.kind)
                .bind(&method.provider)
                .bind(method.country_id)
                .bind(&method.payment_currency)
                .bind(&method.icon_emoji)
                .bind(method.commission_percent.to_string())
                .bind(method.has_credit)
                .bind(method.credit_commission_percent.to_string())
                .bind(method.has_installment)
                .bind(&method.installment_months)
                .bind(method.installment_commission_percent.to_string())
                .bind(method.add_commission_to_amount)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The columns [`SqliteStore::payment_row`] reads, as a literal so queries stay static strings.
macro_rules! select_payments {
    ($condition:literal) => {
        concat!(
            "SELECT id, transaction_id, source_id, status, original_amount_minor, refunded_amount_minor, currency, ",
            "description, customer_name, customer_phone, customer_email, payment_method_id, webhook_url, ",
            "webhook_secret, metadata, created_at, expires_at, paid_at FROM payments WHERE ",
            $condition
        )
    };
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations).run(&self.pool).await?;
        self.seed_methods().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_source(
        &self,
        name: &str,
        token_hash: &TokenHash,
        webhook_json: BodyEncoding,
        now: i64,
    ) -> Result<SourceRecord, StoreError> {
        let row = sqlx::query(
            "INSERT INTO sources (name, token_hash, webhook_json, active, created_at) VALUES (?, ?, ?, 1, ?) \
             RETURNING id, name, webhook_json, active, created_at",
        )
        .bind(name)
        .bind(token_hash.as_str())
        .bind(webhook_json.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Self::source(&row)
    }

    async fn source_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SourceRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, webhook_json, active, created_at FROM sources WHERE token_hash = ? AND active = 1",
        )
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::source).transpose()
    }

    async fn payment_methods(&self) -> Result<Vec<(PaymentMethod, bool)>, StoreError> {
        let rows = sqlx::query("SELECT * FROM payment_methods ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::method).collect()
    }

    async fn begin_idempotent(
        &self,
        source_id: i64,
        key: &str,
        request_hash: &str,
        now: i64,
        stale_after: i64,
    ) -> Result<IdempotencyStart, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE source_id = ? AND key = ? AND created_at < ?")
            .bind(source_id)
            .bind(key)
            .bind(now - IDEMPOTENCY_TTL_SECS)
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query(
            "SELECT request_hash, status_code, response_body, created_at FROM idempotency_keys WHERE source_id = ? AND key = ?",
        )
        .bind(source_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let start = match existing {
            None => {
                sqlx::query("INSERT INTO idempotency_keys (source_id, key, request_hash, created_at) VALUES (?, ?, ?, ?)")
                    .bind(source_id)
                    .bind(key)
                    .bind(request_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                IdempotencyStart::Fresh
            }
            Some(row) => {
                let stored_hash: String = row.try_get("request_hash")?;
                let status: Option<i64> = row.try_get("status_code")?;
                let created_at: i64 = row.try_get("created_at")?;
                match status {
                    _ if stored_hash != request_hash => IdempotencyStart::Conflict,
                    Some(status) => IdempotencyStart::Replay(StoredResponse {
                        status: u16::try_from(status).map_err(corrupt)?,
                        body: row
                            .try_get::<Option<String>, _>("response_body")?
                            .unwrap_or_default(),
                    }),
                    None if now - created_at > stale_after => {
                        sqlx::query(
                            "UPDATE idempotency_keys SET created_at = ? WHERE source_id = ? AND key = ?",
                        )
                        .bind(now)
                        .bind(source_id)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                        IdempotencyStart::Fresh
                    }
                    None => IdempotencyStart::InFlight,
                }
            }
        };
        tx.commit().await?;
        Ok(start)
    }

    async fn complete_idempotent(&self, completion: IdempotencyCompletion) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        complete(&mut tx, &completion).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_idempotent(&self, source_id: i64, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE source_id = ? AND key = ? AND status_code IS NULL")
            .bind(source_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_payment(
        &self,
        row: &NewPaymentRow,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let payment = &row.payment;
        let inserted = sqlx::query(
            "INSERT INTO payments (transaction_id, source_id, status, original_amount_minor, currency, description, \
             customer_name, customer_phone, customer_email, payment_method_id, webhook_url, webhook_secret, metadata, \
             created_at, expires_at, updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (transaction_id) DO NOTHING",
        )
        .bind(row.transaction_id.as_str())
        .bind(row.source_id)
        .bind(payment.amount.to_minor())
        .bind(&payment.currency)
        .bind(&payment.description)
        .bind(&payment.customer_name)
        .bind(&payment.customer_phone)
        .bind(&payment.customer_email)
        .bind(payment.payment_method_id)
        .bind(payment.webhook_url.as_ref().map(|url| url.as_str()))
        .bind(payment.webhook_secret.as_ref().map(|secret| secret.expose().as_str()))
        .bind(&payment.metadata)
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(Inserted::IdCollision);
        }
        if let Some(completion) = completion {
            complete(&mut tx, completion).await?;
        }
        tx.commit().await?;
        Ok(Inserted::Yes)
    }

    async fn payment(&self, id: &TransactionId) -> Result<Option<PaymentRecord>, StoreError> {
        let row = sqlx::query(select_payments!("transaction_id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::payment_row).transpose()
    }

    async fn list_payments(
        &self,
        source_id: i64,
        status: Option<PaymentStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let status = status.map(PaymentStatus::as_str);
        let rows = sqlx::query(select_payments!(
            "source_id = ? AND (? IS NULL OR status = ?) AND id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(source_id)
        .bind(status)
        .bind(status)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::payment_row).collect()
    }
}

async fn complete(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    completion: &IdempotencyCompletion,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = ?, response_body = ? WHERE source_id = ? AND key = ?",
    )
    .bind(i64::from(completion.response.status))
    .bind(&completion.response.body)
    .bind(completion.source_id)
    .bind(&completion.key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
