//! The storage, on either backend through sqlx's `Any` driver, with one set of queries:
//!
//! - **SQLite** (the embedded default): one file, WAL journal, `synchronous = FULL` (an acknowledged
//!   write survives a power cut), `busy_timeout` so concurrent writers wait instead of failing, and
//!   write transactions begun `IMMEDIATE` so two writers never deadlock upgrading a read lock.
//! - **PostgreSQL** (several server processes): `synchronous_commit` as the server sets it (on by
//!   default); every write transaction first takes one transaction-scoped advisory lock, so write
//!   transactions are serialized across all processes exactly as SQLite serializes them — every
//!   read-then-write (claim a free terminal, settle an operation and append its event, claim due
//!   outbox rows) is atomic across processes, with nothing else to reason about.
//!
//! The SQL is written once in the dialect both accept (`ON CONFLICT`, `RETURNING`, `COALESCE`,
//! `CASE`, flags as 0/1 integers, money as integer tiyn) with `?` placeholders, which
//! [`Dialect::sql`] turns into `$1, $2, …` for PostgreSQL. Each backend has its own migrations.

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use byfly_core::ids::{Secret, TokenHash};
use byfly_core::{BodyEncoding, Money, PaymentMethod, PaymentStatus, Percent, TransactionId};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::query::{Query, QueryScalar};
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, Row, SqlSafeStr, SqlStr};

use super::{
    ClaimOutcome, DueEvent, IdempotencyCompletion, IdempotencyStart, Inserted, NewPaymentRow, NewTerminal,
    PaymentRecord, PollNote, PoolCounts, PreviousScreen, RefundClaim, RefundPartOf, RefundRequestRecord,
    RegistrationRecord, RegistrationStart, RegistrationState, SourceRecord, Store, StoreError, StoredEvent,
    StoredResponse, TerminalClaim, TerminalRecord, TerminalTls,
};
use crate::settle::{
    Decide, FinalAnswer, OpState, OperationRecord, SettlementPlan, Snapshot, expirable_statuses,
};
use byfly_core::ledger::OperationQuote;
use byfly_core::{Figures, MethodCode, WebhookEvent};
use byfly_terminal::Tokens;

mod outbox;

/// How token expiry times are stored (the terminal's local time, as it gave them).
const TOKEN_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The columns [`SqlStore::payment_row`] reads, as a literal so queries stay static strings.
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

/// One backend's migrations, embedded in the binary: `(version, description, SQL)`.
type Migrations = [(i64, &'static str, &'static str); 9];

/// SQLite's migrations.
const SQLITE_MIGRATIONS: Migrations = [
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
    (
        3,
        "operations",
        include_str!("../../migrations/sqlite/0003_operations.sql"),
    ),
    (
        4,
        "webhook delivery",
        include_str!("../../migrations/sqlite/0004_webhook_delivery.sql"),
    ),
    (
        5,
        "refunds",
        include_str!("../../migrations/sqlite/0005_refunds.sql"),
    ),
    (
        6,
        "terminal realism",
        include_str!("../../migrations/sqlite/0006_terminal_realism.sql"),
    ),
    (
        7,
        "paid per entry",
        include_str!("../../migrations/sqlite/0007_paid_per_entry.sql"),
    ),
    (
        8,
        "refund requests",
        include_str!("../../migrations/sqlite/0008_refund_requests.sql"),
    ),
    (
        9,
        "webhook order",
        include_str!("../../migrations/sqlite/0009_webhook_order.sql"),
    ),
];

/// PostgreSQL's migrations: the same schema, in its types.
const POSTGRES_MIGRATIONS: Migrations = [
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "terminals",
        include_str!("../../migrations/postgres/0002_terminals.sql"),
    ),
    (
        3,
        "operations",
        include_str!("../../migrations/postgres/0003_operations.sql"),
    ),
    (
        4,
        "webhook delivery",
        include_str!("../../migrations/postgres/0004_webhook_delivery.sql"),
    ),
    (
        5,
        "refunds",
        include_str!("../../migrations/postgres/0005_refunds.sql"),
    ),
    (
        6,
        "terminal realism",
        include_str!("../../migrations/postgres/0006_terminal_realism.sql"),
    ),
    (
        7,
        "paid per entry",
        include_str!("../../migrations/postgres/0007_paid_per_entry.sql"),
    ),
    (
        8,
        "refund requests",
        include_str!("../../migrations/postgres/0008_refund_requests.sql"),
    ),
    (
        9,
        "webhook order",
        include_str!("../../migrations/postgres/0009_webhook_order.sql"),
    ),
];

/// The key of the advisory lock that serializes PostgreSQL write transactions ("BYFLY" on a keypad).
const WRITE_LOCK_KEY: i64 = 29_359;

/// How long idempotency records are kept.
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `sqlite://path`.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl Dialect {
    /// The backend a database URL names, if it is one of ours.
    pub fn of_url(url: &str) -> Option<Dialect> {
        if url.starts_with("sqlite:") {
            Some(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Dialect::Postgres)
        } else {
            None
        }
    }

    /// `sql` as this backend takes it: `?` placeholders numbered `$1, $2, …` for PostgreSQL (a `?`
    /// inside a quoted literal is left alone).
    fn sql(self, sql: &'static str) -> SqlStr {
        match self {
            Dialect::Sqlite => SqlStr::from_static(sql),
            Dialect::Postgres => {
                let mut numbered = String::with_capacity(sql.len() + 16);
                let (mut n, mut quoted) = (0, false);
                for c in sql.chars() {
                    match c {
                        '\'' => {
                            quoted = !quoted;
                            numbered.push(c);
                        }
                        '?' if !quoted => {
                            n += 1;
                            numbered.push('$');
                            numbered.push_str(&n.to_string());
                        }
                        other => numbered.push(other),
                    }
                }
                AssertSqlSafe(numbered).into_sql_str()
            }
        }
    }
}

/// A SQLite or PostgreSQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A 0/1 integer column as a flag.
fn flag(row: &AnyRow, column: &str) -> Result<bool, StoreError> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

impl SqlStore {
    /// Opens the database at `url`: `sqlite://path` (the file is created if needed) or
    /// `postgres://user@host/db` (the database must exist).
    pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)
            .ok_or_else(|| StoreError::Corrupt(format!("unsupported database URL {url:?}")))?;
        let pool = match dialect {
            Dialect::Sqlite => {
                // Created on first start, as the SQLite default promises.
                let url = match (url.contains("mode="), url.contains('?')) {
                    (true, _) => url.to_owned(),
                    (false, true) => format!("{url}&mode=rwc"),
                    (false, false) => format!("{url}?mode=rwc"),
                };
                AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            connection
                                .execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                                )
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?
            }
        };
        Ok(SqlStore { pool, dialect })
    }

    /// Which backend this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A query of `sql` in this backend's placeholders.
    fn q<'q>(&self, sql: &'static str) -> Query<'q, Any, AnyArguments> {
        sqlx::query(self.dialect.sql(sql))
    }

    /// A one-column query of `sql` in this backend's placeholders.
    fn scalar<'q, T>(&self, sql: &'static str) -> QueryScalar<'q, Any, T, AnyArguments>
    where
        T: sqlx::Type<Any> + for<'r> sqlx::Decode<'r, Any>,
    {
        sqlx::query_scalar(self.dialect.sql(sql))
    }

    /// The row `sql` finds for `id` (its one placeholder), decoded.
    async fn by_id<T>(
        &self,
        sql: &'static str,
        id: i64,
        decode: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = self.q(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every row `sql` finds, decoded.
    async fn all<T>(
        &self,
        sql: &'static str,
        decode: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.q(sql).fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// A write transaction, serialized against every other writer (all processes included).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                self.q("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(?)) AS lock")
                    .bind(WRITE_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    fn refund_request_row(row: &AnyRow) -> Result<RefundRequestRecord, StoreError> {
        Ok(RefundRequestRecord {
            id: row.try_get("id")?,
            refund_id: row.try_get("refund_id")?,
            payment_id: row.try_get("payment_id")?,
            amount: Money::from_minor(row.try_get("amount_minor")?),
            created_at: row.try_get("created_at")?,
            open: row.try_get::<i64, _>("open")? == 1,
        })
    }

    fn percent(row: &AnyRow, column: &str) -> Result<Percent, StoreError> {
        let text: String = row.try_get(column)?;
        Percent::parse(&text).map_err(|err| corrupt(format!("{column}: {err}")))
    }

    fn method(row: &AnyRow) -> Result<(PaymentMethod, bool), StoreError> {
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
            has_credit: flag(row, "has_credit")?,
            credit_commission_percent: Self::percent(row, "credit_commission_percent")?,
            has_installment: flag(row, "has_installment")?,
            installment_months: row.try_get("installment_months")?,
            installment_commission_percent: Self::percent(row, "installment_commission_percent")?,
            add_commission_to_amount: flag(row, "add_commission_to_amount")?,
        };
        Ok((method, flag(row, "is_active")?))
    }

    fn source_row(row: &AnyRow) -> Result<SourceRecord, StoreError> {
        let encoding: String = row.try_get("webhook_json")?;
        Ok(SourceRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            webhook_json: BodyEncoding::parse(&encoding)
                .ok_or_else(|| corrupt(format!("webhook_json {encoding:?}")))?,
            active: flag(row, "active")?,
            created_at: row.try_get("created_at")?,
        })
    }

    fn payment_row(row: &AnyRow) -> Result<PaymentRecord, StoreError> {
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

    fn terminal(row: &AnyRow) -> Result<TerminalRecord, StoreError> {
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
            enabled: flag(row, "enabled")?,
            healthy: flag(row, "healthy")?,
            last_error: row.try_get("last_error")?,
            tokens,
            device_terminal_id: row.try_get("device_terminal_id")?,
            last_used_at: row.try_get("last_used_at")?,
            last_checked_at: row.try_get("last_checked_at")?,
            tokens_obtained_at: row.try_get("tokens_obtained_at")?,
            registration: Self::registration(row)?,
        })
    }

    fn registration(row: &AnyRow) -> Result<Option<RegistrationRecord>, StoreError> {
        let Some(state) = row.try_get::<Option<String>, _>("registration_state")? else {
            return Ok(None);
        };
        Ok(Some(RegistrationRecord {
            state: RegistrationState::parse(&state)
                .ok_or_else(|| corrupt(format!("registration_state {state:?}")))?,
            message: row.try_get("registration_message")?,
            started_at: row
                .try_get::<Option<i64>, _>("registration_started_at")?
                .unwrap_or_default(),
            finished_at: row.try_get("registration_finished_at")?,
        }))
    }

    fn operation(row: &AnyRow) -> Result<OperationRecord, StoreError> {
        let money =
            |column: &str| -> Result<Money, StoreError> { Ok(Money::from_minor(row.try_get(column)?)) };
        let optional_money = |column: &str| -> Result<Option<Money>, StoreError> {
            Ok(row.try_get::<Option<i64>, _>(column)?.map(Money::from_minor))
        };
        let state: String = row.try_get("state")?;
        let previous: String = row.try_get("previous_status")?;
        Ok(OperationRecord {
            id: row.try_get("id")?,
            payment_id: row.try_get("payment_id")?,
            terminal_id: row.try_get("terminal_id")?,
            quote: OperationQuote {
                method: MethodCode::new(row.try_get::<String, _>("method_code")?),
                percent: Self::percent(row, "percent")?,
                base: money("base_minor")?,
                commission: money("commission_minor")?,
                charge: money("charge_minor")?,
            },
            terminal_amount: row.try_get("terminal_amount")?,
            state: OpState::parse(&state).ok_or_else(|| corrupt(format!("operation state {state:?}")))?,
            is_current: flag(row, "is_current")?,
            holds_terminal: flag(row, "holds_terminal")?,
            previous_status: PaymentStatus::parse(&previous)
                .ok_or_else(|| corrupt(format!("status {previous:?}")))?,
            process_id: row.try_get("process_id")?,
            qr_code: row.try_get("qr_code")?,
            payment_url: row.try_get("payment_url")?,
            credited: optional_money("credited_minor")?,
            gross: optional_money("gross_minor")?,
            product_method: row
                .try_get::<Option<String>, _>("product_method")?
                .map(MethodCode::new),
            started_at: row.try_get("started_at")?,
            deadline_at: row.try_get("deadline_at")?,
            unknown_since: row.try_get("unknown_since")?,
            refund_id: row.try_get("refund_id")?,
            refund_of: row.try_get("refund_of_operation_id")?,
            terminal_transaction_id: row.try_get("terminal_transaction_id")?,
            cheque_method: row.try_get("cheque_method")?,
            needs_review: flag(row, "needs_review")?,
            review_reason: row.try_get("review_reason")?,
            shown: flag(row, "shown")?,
            start_uncertain: flag(row, "start_uncertain")?,
        })
    }

    fn stored_event(row: &AnyRow) -> Result<StoredEvent, StoreError> {
        let money =
            |column: &str| -> Result<Money, StoreError> { Ok(Money::from_minor(row.try_get(column)?)) };
        let event: String = row.try_get("event")?;
        let status: String = row.try_get("status")?;
        let amount = money("amount_minor")?;
        let commission = money("commission_minor")?;
        Ok(StoredEvent {
            event_id: row.try_get("event_id")?,
            payment_id: row.try_get("payment_id")?,
            event: WebhookEvent::parse(&event).ok_or_else(|| corrupt(format!("event {event:?}")))?,
            status: PaymentStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?,
            figures: Figures {
                original_amount: amount - commission,
                commission_amount: commission,
                amount,
                paid_amount: money("paid_minor")?,
                remaining_amount: money("remaining_minor")?,
                overpaid_amount: money("overpaid_minor")?,
                refunded_amount: money("refunded_minor")?,
                tolerance: byfly_core::ledger::tolerance(amount),
            },
            actual_amount_received: money("actual_received_minor")?,
            payment_method: row.try_get("payment_method")?,
            paid_at: row.try_get("paid_at")?,
            created_at: row.try_get("created_at")?,
            delivered_at: row.try_get("delivered_at")?,
            sequence: u64::try_from(row.try_get::<Option<i64>, _>("sequence")?.unwrap_or(0))
                .map_err(corrupt)?,
            exhausted_at: row.try_get("exhausted_at")?,
        })
    }

    /// The payment and source encoding an event's delivery needs.
    async fn due(&self, row: &AnyRow) -> Result<DueEvent, StoreError> {
        let event = Self::stored_event(row)?;
        let payment = self
            .q(select_payments!("id = ?"))
            .bind(event.payment_id)
            .fetch_one(&self.pool)
            .await?;
        let payment = Self::payment_row(&payment)?;
        let encoding: String = self
            .scalar("SELECT webhook_json FROM sources WHERE id = ?")
            .bind(payment.source_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(DueEvent {
            row_id: row.try_get("id")?,
            attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).map_err(corrupt)?,
            schedule_step: u32::try_from(row.try_get::<i64, _>("schedule_step")?).map_err(corrupt)?,
            claim_token: row
                .try_get::<Option<String>, _>("claim_token")?
                .unwrap_or_default(),
            event,
            payment,
            encoding: BodyEncoding::parse(&encoding)
                .ok_or_else(|| corrupt(format!("webhook_json {encoding:?}")))?,
        })
    }

    async fn seed_methods(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let count: i64 = self
            .scalar("SELECT COUNT(*) FROM payment_methods")
            .fetch_one(&mut *tx)
            .await?;
        if count == 0 {
            for method in PaymentMethod::seeded() {
                self.q(
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
                .bind(i64::from(method.has_credit))
                .bind(method.credit_commission_percent.to_string())
                .bind(i64::from(method.has_installment))
                .bind(&method.installment_months)
                .bind(method.installment_commission_percent.to_string())
                .bind(i64::from(method.add_commission_to_amount))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        }
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
        self.q("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_source(
        &self,
        name: &str,
        token_hash: &TokenHash,
        webhook_json: BodyEncoding,
        now: i64,
    ) -> Result<SourceRecord, StoreError> {
        let row = self.q(
            "INSERT INTO sources (name, token_hash, webhook_json, active, created_at) VALUES (?, ?, ?, 1, ?) \
             RETURNING id, name, webhook_json, active, created_at",
        )
        .bind(name)
        .bind(token_hash.as_str())
        .bind(webhook_json.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Self::source_row(&row)
    }

    async fn source_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SourceRecord>, StoreError> {
        let row = self.q(
            "SELECT id, name, webhook_json, active, created_at FROM sources WHERE token_hash = ? AND active = 1",
        )
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::source_row).transpose()
    }

    async fn payment_methods(&self) -> Result<Vec<(PaymentMethod, bool)>, StoreError> {
        self.all("SELECT * FROM payment_methods ORDER BY id", Self::method)
            .await
    }

    async fn begin_idempotent(
        &self,
        source_id: i64,
        key: &str,
        request_hash: &str,
        now: i64,
        stale_after: i64,
    ) -> Result<IdempotencyStart, StoreError> {
        let mut tx = self.begin_write().await?;
        self.q("DELETE FROM idempotency_keys WHERE source_id = ? AND key = ? AND created_at < ?")
            .bind(source_id)
            .bind(key)
            .bind(now - IDEMPOTENCY_TTL_SECS)
            .execute(&mut *tx)
            .await?;
        let existing = self.q(
            "SELECT request_hash, status_code, response_body, created_at FROM idempotency_keys WHERE source_id = ? AND key = ?",
        )
        .bind(source_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let start = match existing {
            None => {
                self.q("INSERT INTO idempotency_keys (source_id, key, request_hash, created_at) VALUES (?, ?, ?, ?)")
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
                        self.q("UPDATE idempotency_keys SET created_at = ? WHERE source_id = ? AND key = ?")
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
        let mut tx = self.begin_write().await?;
        self.complete(&mut tx, &completion).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_idempotent(&self, source_id: i64, key: &str) -> Result<(), StoreError> {
        self.q("DELETE FROM idempotency_keys WHERE source_id = ? AND key = ? AND status_code IS NULL")
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
        let mut tx = self.begin_write().await?;
        let payment = &row.payment;
        let inserted = self.q(
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
            self.complete(&mut tx, completion).await?;
        }
        tx.commit().await?;
        Ok(Inserted::Yes)
    }

    async fn payment(&self, id: &TransactionId) -> Result<Option<PaymentRecord>, StoreError> {
        let row = self
            .q(select_payments!("transaction_id = ?"))
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
        let (mode, server_name) = tls_columns(&terminal.tls);
        let row = self
            .q(
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

    async fn upsert_terminal(&self, terminal: &NewTerminal, now: i64) -> Result<TerminalRecord, StoreError> {
        let (mode, server_name) = tls_columns(&terminal.tls);
        let row = self.q(
            "INSERT INTO terminals (name, base_url, camera_url, tls_mode, tls_server_name, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET base_url = excluded.base_url, \
             camera_url = excluded.camera_url, tls_mode = excluded.tls_mode, tls_server_name = excluded.tls_server_name, \
             access_token = NULL, refresh_token = NULL, token_expires_at = NULL, healthy = 0, last_checked_at = NULL \
             RETURNING *",
        )
        .bind(&terminal.name)
        .bind(&terminal.base_url)
        .bind(&terminal.camera_url)
        .bind(mode)
        .bind(server_name)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Self::terminal(&row)
    }

    async fn source(&self, id: i64) -> Result<Option<SourceRecord>, StoreError> {
        self.by_id(
            "SELECT id, name, webhook_json, active, created_at FROM sources WHERE id = ?",
            id,
            Self::source_row,
        )
        .await
    }

    async fn sources(&self) -> Result<Vec<SourceRecord>, StoreError> {
        self.all(
            "SELECT id, name, webhook_json, active, created_at FROM sources ORDER BY id",
            Self::source_row,
        )
        .await
    }

    async fn update_source(
        &self,
        id: i64,
        webhook_json: Option<BodyEncoding>,
        active: Option<bool>,
    ) -> Result<Option<SourceRecord>, StoreError> {
        let row = self.q(
            "UPDATE sources SET webhook_json = COALESCE(?, webhook_json), active = COALESCE(?, active) WHERE id = ? \
             RETURNING id, name, webhook_json, active, created_at",
        )
        .bind(webhook_json.map(BodyEncoding::as_str))
        .bind(active.map(i64::from))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::source_row).transpose()
    }

    async fn edit_terminal(
        &self,
        id: i64,
        terminal: &NewTerminal,
    ) -> Result<Option<TerminalRecord>, StoreError> {
        let (mode, server_name) = tls_columns(&terminal.tls);
        let row = self
            .q("UPDATE terminals SET \
               access_token = CASE WHEN base_url = ? THEN access_token ELSE NULL END, \
               refresh_token = CASE WHEN base_url = ? THEN refresh_token ELSE NULL END, \
               healthy = CASE WHEN base_url = ? THEN healthy ELSE 0 END, \
               base_url = ?, camera_url = ?, tls_mode = ?, tls_server_name = ? WHERE id = ? RETURNING *")
            .bind(&terminal.base_url)
            .bind(&terminal.base_url)
            .bind(&terminal.base_url)
            .bind(&terminal.base_url)
            .bind(&terminal.camera_url)
            .bind(mode)
            .bind(server_name)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::terminal).transpose()
    }

    async fn set_terminal_enabled(
        &self,
        id: i64,
        enabled: bool,
    ) -> Result<Option<TerminalRecord>, StoreError> {
        let row = self
            .q("UPDATE terminals SET enabled = ? WHERE id = ? RETURNING *")
            .bind(i64::from(enabled))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::terminal).transpose()
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
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::method).transpose()
    }

    async fn terminal(&self, id: i64) -> Result<Option<TerminalRecord>, StoreError> {
        self.by_id("SELECT * FROM terminals WHERE id = ?", id, Self::terminal)
            .await
    }

    async fn terminals(&self) -> Result<Vec<TerminalRecord>, StoreError> {
        self.all("SELECT * FROM terminals ORDER BY id", Self::terminal)
            .await
    }

    async fn claim_health_checks(&self, now: i64, interval: i64) -> Result<Vec<TerminalRecord>, StoreError> {
        let rows = self
            .q("UPDATE terminals SET last_checked_at = ? \
             WHERE enabled = 1 AND (last_checked_at IS NULL OR last_checked_at <= ?) RETURNING *")
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
        self.q("UPDATE terminals SET healthy = ?, last_error = ?, \
             device_terminal_id = COALESCE(?, device_terminal_id) WHERE id = ?")
            .bind(i64::from(healthy))
            .bind(error)
            .bind(device_terminal_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn save_terminal_tokens(&self, id: i64, tokens: &Tokens, now: i64) -> Result<(), StoreError> {
        self.tokens_update(id, tokens, now).execute(&self.pool).await?;
        Ok(())
    }

    async fn forget_terminal_tokens(
        &self,
        id: i64,
        access_token: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let done = self
            .q(
                "UPDATE terminals SET access_token = NULL, refresh_token = NULL, token_expires_at = NULL, \
                healthy = 0, last_error = ? WHERE id = ? AND access_token = ?",
            )
            .bind(reason)
            .bind(id)
            .bind(access_token)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn begin_registration(
        &self,
        id: i64,
        now: i64,
        stale_before: i64,
    ) -> Result<RegistrationStart, StoreError> {
        let row = self
            .q("UPDATE terminals SET registration_state = 'pending', registration_message = NULL, \
                registration_started_at = ?, registration_finished_at = NULL WHERE id = ? \
                AND (registration_state IS NULL OR registration_state <> 'pending' OR registration_started_at < ?) \
                RETURNING *")
            .bind(now)
            .bind(id)
            .bind(stale_before)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = row {
            return Ok(RegistrationStart::Started(Box::new(Self::terminal(&row)?)));
        }
        Ok(match self.terminal(id).await? {
            Some(terminal) => RegistrationStart::AlreadyPending(Box::new(terminal)),
            None => RegistrationStart::NotFound,
        })
    }

    async fn finish_registration(
        &self,
        id: i64,
        state: RegistrationState,
        message: Option<&str>,
        tokens: Option<&Tokens>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.q(
            "UPDATE terminals SET registration_state = ?, registration_message = ?, \
                registration_finished_at = ? WHERE id = ?",
        )
        .bind(state.as_str())
        .bind(message)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(tokens) = tokens {
            self.tokens_update(id, tokens, now).execute(&mut *tx).await?;
            // The terminal has just answered and issued tokens: it is reachable and usable, and the
            // operator reading "approved" must not see the health of before the registration.
            self.q("UPDATE terminals SET healthy = 1, last_error = NULL WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn previous_qr(
        &self,
        terminal_id: i64,
        before_operation: i64,
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

    async fn earliest_release(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .scalar(
                "SELECT MIN(o.deadline_at) FROM operations o JOIN terminals t ON t.id = o.terminal_id \
                 WHERE o.holds_terminal = 1 AND t.enabled = 1 AND t.healthy = 1 AND o.deadline_at > ?",
            )
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn pool_counts(&self) -> Result<PoolCounts, StoreError> {
        let row = self
            .q("SELECT CAST(COALESCE(SUM(enabled), 0) AS BIGINT) AS enabled, \
             CAST(COALESCE(SUM(enabled * healthy), 0) AS BIGINT) AS healthy, \
             CAST(COALESCE(SUM(CASE WHEN enabled = 1 AND access_token IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) \
             AS needs_registration, \
             (SELECT COUNT(*) FROM operations WHERE holds_terminal = 1) AS busy FROM terminals")
            .fetch_one(&self.pool)
            .await?;
        let count = |column: &str| -> Result<u32, StoreError> {
            u32::try_from(row.try_get::<i64, _>(column)?).map_err(corrupt)
        };
        Ok(PoolCounts {
            enabled: count("enabled")?,
            healthy: count("healthy")?,
            busy: count("busy")?,
            needs_registration: count("needs_registration")?,
        })
    }

    async fn operations(&self, payment_id: i64) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = self
            .q("SELECT * FROM operations WHERE payment_id = ? ORDER BY id")
            .bind(payment_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::operation).collect()
    }

    async fn claim_terminal(&self, claim: &TerminalClaim) -> Result<ClaimOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let status: Option<String> = self
            .scalar("SELECT status FROM payments WHERE id = ?")
            .bind(claim.payment_id)
            .fetch_optional(&mut *tx)
            .await?;
        if status.as_deref() != Some(claim.expected_status.as_str()) {
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
        let terminal = free
            .iter()
            .map(Self::terminal)
            .find(|terminal| {
                terminal
                    .as_ref()
                    .map_or(true, |t| !claim.excluded_terminals.contains(&t.id))
            })
            .transpose()?;
        let Some(terminal) = terminal else {
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
        let operation_id: i64 = match inserted {
            Ok(row) => row.try_get("id")?,
            // A unique index refused it: another request opened an operation on this payment.
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
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

    async fn start_failed(&self, operation_id: i64, unhealthy: Option<&str>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
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

    async fn stale_starts(&self, older_than_secs: i64) -> Result<Vec<i64>, StoreError> {
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
        operation_id: i64,
        process_id: &str,
        now: i64,
        from: PaymentStatus,
        to: PaymentStatus,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // Only from `starting`: an operation the stale-start sweeper freed meanwhile must not come
        // back in flight on a terminal the pool thinks is free.
        let payment_id: Option<i64> = self
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
        operation_id: i64,
        reason: &str,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<(), StoreError> {
        self.q("UPDATE operations SET start_uncertain = 1, review_reason = ? WHERE id = ? AND state = 'starting'")
            .bind(reason)
            .bind(operation_id)
            .execute(&self.pool)
            .await?;
        // Only while it still decides the payment (a method switch may have replaced it).
        self.end_current(
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

    async fn release_uncertain_starts(&self, now: i64) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .scalar(
                "UPDATE operations SET state = 'start_failed', holds_terminal = 0, needs_review = 1, finished_at = ? \
                 WHERE start_uncertain = 1 AND state = 'starting' AND deadline_at < ? RETURNING id",
            )
            .bind(now)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn operation_qr(
        &self,
        operation_id: i64,
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
        operation_id: i64,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<(), StoreError> {
        self.end_current(
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
        now: i64,
        lease: i64,
        payment_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        // In a write transaction: on PostgreSQL the sub-select alone would let two processes pick
        // the same rows.
        let mut tx = self.begin_write().await?;
        let rows = self.q(
            "UPDATE operations SET next_poll_at = ? WHERE id IN (\
               SELECT id FROM operations WHERE holds_terminal = 1 AND state = 'in_flight' AND next_poll_at <= ? \
               AND (? IS NULL OR payment_id = ?) ORDER BY next_poll_at LIMIT ?) RETURNING *",
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

    async fn record_poll(&self, operation_id: i64, note: &PollNote) -> Result<(), StoreError> {
        self.q(
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn settle(
        &self,
        operation_id: i64,
        answer: &FinalAnswer,
        raw_answer: &str,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<Option<SettlementPlan>, StoreError> {
        let mut tx = self.begin_write().await?;
        let payment_id: Option<i64> = self
            .scalar("SELECT payment_id FROM operations WHERE id = ?")
            .bind(operation_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(payment_id) = payment_id else {
            return Ok(None);
        };
        let snapshot = self.snapshot(&mut tx, payment_id).await?;
        let Some(plan) = decide(&snapshot) else {
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
            return Ok(None);
        }
        self.persist(&mut tx, &snapshot, &plan, now, event_id).await?;
        tx.commit().await?;
        Ok(Some(plan))
    }

    async fn claim_refund(
        &self,
        expected: PaymentStatus,
        of_operation: &OperationRecord,
        amount: Money,
        request: RefundPartOf<'_>,
        now: i64,
        deadline_at: i64,
    ) -> Result<RefundClaim, StoreError> {
        let mut tx = self.begin_write().await?;
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
            return Ok(RefundClaim::PaymentChanged);
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
        let id: i64 = match inserted {
            Ok(row) => row.try_get("id")?,
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
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

    async fn open_refund_request(&self, payment_id: i64) -> Result<Option<RefundRequestRecord>, StoreError> {
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
        let done = self
            .q("UPDATE refund_requests SET open = 0 WHERE id = ? AND open = 1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn operations_needing_review(&self) -> Result<Vec<OperationRecord>, StoreError> {
        self.all(
            "SELECT * FROM operations WHERE needs_review = 1 AND (holds_terminal = 1 OR start_uncertain = 1) \
             ORDER BY id",
            Self::operation,
        )
        .await
    }

    async fn operation(&self, id: i64) -> Result<Option<OperationRecord>, StoreError> {
        self.by_id("SELECT * FROM operations WHERE id = ?", id, Self::operation)
            .await
    }

    async fn acknowledge_review(&self, id: i64) -> Result<bool, StoreError> {
        let done = self
            .q("UPDATE operations SET needs_review = 0 WHERE id = ? AND needs_review = 1 AND holds_terminal = 0")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn payment_by_row_id(&self, id: i64) -> Result<Option<PaymentRecord>, StoreError> {
        self.by_id(select_payments!("id = ?"), id, Self::payment_row)
            .await
    }

    async fn cancel_payment(
        &self,
        payment_id: i64,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<Option<Vec<OperationRecord>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let snapshot = self.snapshot(&mut tx, payment_id).await?;
        let Some(plan) = decide(&snapshot) else {
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
        now: i64,
        limit: u32,
        event_ids: &(dyn Fn() -> String + Sync),
        decide: Decide<'_>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        // Narrowing only: byfly-core decides each payment from its snapshot. A payment whose
        // operation holds a terminal is left out here as there (it would be refused each round).
        // One slot per status (PaymentStatus::ALL has 8): the expirable ones bound, the rest NULL,
        // which `IN` never matches.
        let expirable = expirable_statuses();
        let mut query = self.scalar(
            "SELECT p.id FROM payments p WHERE p.expires_at <= ? \
             AND p.status IN (?, ?, ?, ?, ?, ?, ?, ?) \
             AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.payment_id = p.id AND o.holds_terminal = 1) \
             ORDER BY p.expires_at LIMIT ?",
        );
        query = query.bind(now);
        let slots: [PaymentStatus; 8] = PaymentStatus::ALL;
        for status in slots {
            query = query.bind(expirable.contains(&status).then(|| status.as_str()));
        }
        let due: Vec<i64> = query.bind(i64::from(limit)).fetch_all(&mut *tx).await?;
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
        source_id: Option<i64>,
        status: Option<PaymentStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let status = status.map(PaymentStatus::as_str);
        let rows = self.q(select_payments!(
            "(? IS NULL OR source_id = ?) AND (? IS NULL OR status = ?) AND id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(source_id)
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

/// `tls_mode` and `tls_server_name` of a terminal row.
fn tls_columns(tls: &TerminalTls) -> (&'static str, Option<&str>) {
    match tls {
        TerminalTls::Verify { server_name } => ("verify", server_name.as_deref()),
        TerminalTls::Insecure => ("insecure", None),
    }
}

/// The rows of a batch that decode; one that does not (a bug, a hand edit) is logged for the
/// operator and skipped, never failing the others.
fn readable<T>(rows: &[AnyRow], what: &str, decode: impl Fn(&AnyRow) -> Result<T, StoreError>) -> Vec<T> {
    rows.iter()
        .filter_map(|row| match decode(row) {
            Ok(value) => Some(value),
            Err(err) => {
                skip_unreadable(what, row, &err);
                None
            }
        })
        .collect()
}

fn skip_unreadable(what: &str, row: &AnyRow, err: &StoreError) {
    let id: Option<i64> = row.try_get("id").ok();
    tracing::error!(what, id, %err, "a stored row cannot be read: skipped (check it by hand)");
}

/// An outbox event to append.
struct NewEvent<'a> {
    event: WebhookEvent,
    status: PaymentStatus,
    figures: &'a Figures,
    actual: Money,
    method: Option<String>,
}

impl SqlStore {
    /// The statement that stores a terminal's tokens, obtained at `now`.
    fn tokens_update<'q>(&self, id: i64, tokens: &'q Tokens, now: i64) -> Query<'q, Any, AnyArguments> {
        self.q(
            "UPDATE terminals SET access_token = ?, refresh_token = ?, token_expires_at = ?, \
             tokens_obtained_at = ? WHERE id = ?",
        )
        .bind(&tokens.access_token)
        .bind(&tokens.refresh_token)
        .bind(
            tokens
                .expires_at
                .map(|at| at.format(TOKEN_TIME_FORMAT).to_string()),
        )
        .bind(now)
        .bind(id)
    }

    /// Runs `update` — an `UPDATE … RETURNING payment_id, replaces_operation_id` that stops an
    /// operation being current — in one write transaction with what follows: the operation it
    /// replaced becomes current again if it still runs; otherwise `decide` (byfly-core's decision
    /// for a given-up operation) sets the payment's status, with its event if one is due.
    async fn end_current(
        &self,
        update: Query<'_, Any, AnyArguments>,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(row) = update.fetch_optional(&mut *tx).await? {
            let payment_id: i64 = row.try_get("payment_id")?;
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
    async fn snapshot(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        payment_id: i64,
    ) -> Result<Snapshot, StoreError> {
        let (payment, operations) = self.payment_with_operations(tx, payment_id).await?;
        let methods = self
            .q("SELECT * FROM payment_methods")
            .fetch_all(&mut **tx)
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
    async fn persist(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        snapshot: &Snapshot,
        plan: &SettlementPlan,
        now: i64,
        event_id: &str,
    ) -> Result<(), StoreError> {
        let payment_id = snapshot.payment.id;
        if let Some(current) = plan.abandon_current {
            // Still followed on its terminal: money it takes is credited.
            self.q("UPDATE operations SET is_current = 0 WHERE id = ? AND is_current = 1")
                .bind(current)
                .execute(&mut **tx)
                .await?;
        }
        if plan.refunded.is_positive() {
            self.q("UPDATE payments SET refunded_amount_minor = refunded_amount_minor + ? WHERE id = ?")
                .bind(plan.refunded.to_minor())
                .bind(payment_id)
                .execute(&mut **tx)
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
        .execute(&mut **tx)
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
    async fn append_event(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        payment_id: i64,
        new: &NewEvent<'_>,
        now: i64,
        event_id: &str,
    ) -> Result<(), StoreError> {
        let f = new.figures;
        self.q(
            "INSERT INTO webhook_events (event_id, payment_id, event, status, amount_minor, paid_minor, \
         actual_received_minor, remaining_minor, overpaid_minor, commission_minor, refunded_minor, \
         payment_method, paid_at, created_at, next_attempt_at, sequence) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT paid_at FROM payments WHERE id = ?), ?, ?, \
         (SELECT COALESCE(MAX(sequence), 0) + 1 FROM webhook_events WHERE payment_id = ?))",
        )
        .bind(event_id)
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
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A payment and its operations, read inside a transaction.
    /// The status and figures the payment's last event reported, if any.
    async fn last_reported(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        payment_id: i64,
    ) -> Result<crate::settle::Reported, StoreError> {
        let row = self
            .q("SELECT * FROM webhook_events WHERE payment_id = ? ORDER BY id DESC LIMIT 1")
            .bind(payment_id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row
            .as_ref()
            .map(SqlStore::stored_event)
            .transpose()?
            .map(|event| (event.status, event.figures)))
    }

    async fn payment_with_operations(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        payment_id: i64,
    ) -> Result<(PaymentRecord, Vec<OperationRecord>), StoreError> {
        let payment = self
            .q(select_payments!("id = ?"))
            .bind(payment_id)
            .fetch_one(&mut **tx)
            .await?;
        let operations = self
            .q("SELECT * FROM operations WHERE payment_id = ? ORDER BY id")
            .bind(payment_id)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(SqlStore::operation)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((SqlStore::payment_row(&payment)?, operations))
    }

    async fn complete(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        completion: &IdempotencyCompletion,
    ) -> Result<(), StoreError> {
        self.q(
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
}
