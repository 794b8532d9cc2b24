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

use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::{Query, QueryScalar};
use sqlx::{Any, AnyPool, Executor, Row};

use crate::store::error::StoreError;
use crate::store::records::TerminalTls;

pub use dialect::Dialect;

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

/// The key of the advisory lock that serializes PostgreSQL write transactions ("BYFLY" on a keypad).
const WRITE_LOCK_KEY: i64 = 29_359;

/// How long idempotency records are kept.
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

mod database;
mod dialect;
mod idempotency;
mod ledger;
mod operations;
mod outbox;
mod payments;
mod refunds;
mod rows;
mod sources;
mod terminals;

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
    async fn by_id<T, I>(
        &self,
        sql: &'static str,
        id: I,
        decode: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError>
    where
        I: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send + 'static,
    {
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
