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
    IdempotencyCompletion, IdempotencyStart, Inserted, NewPaymentRow, NewTerminal, PaymentRecord, PoolCounts,
    SourceRecord, Store, StoreError, StoredResponse, TerminalRecord, TerminalTls,
};
use byfly_terminal::Tokens;

/// How token expiry times are stored (the terminal's local time, as it gave them).
const TOKEN_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The migrations, embedded in the binary.
const MIGRATIONS: [(i64, &str, &str); 2] = [
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "terminals",
        include_str!("../../migrations/sqlite/0002_terminals.sql"),
    ),
];

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

    fn terminal(row: &SqliteRow) -> Result<TerminalRecord, StoreError> {
        let mode: String = row.try_get("tls_mode")?;
        let tls = match mode.as_str() {
            "verify" => TerminalTls::Verify {
                server_name: row.try_get("tls_server_name")?,
            },
            "insecure" => TerminalTls::Insecure,
            other => return Err(corrupt(format!("tls_mode {other:?}"))),
        };
        let access: Option<String> = row.try_get("access_token")?;
        let tokens = match access {
            Some(access_token) => Some(Tokens {
                access_token,
                refresh_token: row
                    .try_get::<Option<String>, _>("refresh_token")?
                    .unwrap_or_default(),
                expires_at: row
                    .try_get::<Option<String>, _>("token_expires_at")?
                    .and_then(|text| chrono::NaiveDateTime::parse_from_str(&text, TOKEN_TIME_FORMAT).ok()),
            }),
            None => None,
        };
        Ok(TerminalRecord {
            id: row.try_get("id")?,
            terminal: NewTerminal {
                name: row.try_get("name")?,
                base_url: row.try_get("base_url")?,
                camera_url: row.try_get("camera_url")?,
                tls,
            },
            enabled: row.try_get("enabled")?,
            healthy: row.try_get("healthy")?,
            last_error: row.try_get("last_error")?,
            tokens,
            device_terminal_id: row.try_get("device_terminal_id")?,
            last_used_at: row.try_get("last_used_at")?,
            last_checked_at: row.try_get("last_checked_at")?,
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

    async fn add_terminal(
        &self,
        terminal: &NewTerminal,
        now: i64,
    ) -> Result<Option<TerminalRecord>, StoreError> {
        let (mode, server_name) = match &terminal.tls {
            TerminalTls::Verify { server_name } => ("verify", server_name.as_deref()),
            TerminalTls::Insecure => ("insecure", None),
        };
        let row = sqlx::query(
            "INSERT INTO terminals (name, base_url, camera_url, tls_mode, tls_server_name, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING *",
        )
        .bind(&terminal.name)
        .bind(&terminal.base_url)
        .bind(&terminal.camera_url)
        .bind(mode)
        .bind(server_name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::terminal).transpose()
    }

    async fn terminals(&self) -> Result<Vec<TerminalRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM terminals ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::terminal).collect()
    }

    async fn claim_health_checks(&self, now: i64, interval: i64) -> Result<Vec<TerminalRecord>, StoreError> {
        let rows = sqlx::query(
            "UPDATE terminals SET last_checked_at = ? \
             WHERE enabled = 1 AND (last_checked_at IS NULL OR last_checked_at <= ?) RETURNING *",
        )
        .bind(now)
        .bind(now - interval)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::terminal).collect()
    }

    async fn record_health(
        &self,
        id: i64,
        healthy: bool,
        error: Option<&str>,
        device_terminal_id: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE terminals SET healthy = ?, last_error = ?, \
             device_terminal_id = COALESCE(?, device_terminal_id) WHERE id = ?",
        )
        .bind(healthy)
        .bind(error)
        .bind(device_terminal_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn save_terminal_tokens(&self, id: i64, tokens: &Tokens) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE terminals SET access_token = ?, refresh_token = ?, token_expires_at = ? WHERE id = ?",
        )
        .bind(&tokens.access_token)
        .bind(&tokens.refresh_token)
        .bind(
            tokens
                .expires_at
                .map(|at| at.format(TOKEN_TIME_FORMAT).to_string()),
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pool_counts(&self) -> Result<PoolCounts, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(enabled), 0) AS enabled, COALESCE(SUM(enabled AND healthy), 0) AS healthy FROM terminals",
        )
        .fetch_one(&self.pool)
        .await?;
        let count = |column: &str| -> Result<u32, StoreError> {
            u32::try_from(row.try_get::<i64, _>(column)?).map_err(corrupt)
        };
        Ok(PoolCounts {
            enabled: count("enabled")?,
            healthy: count("healthy")?,
        })
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
