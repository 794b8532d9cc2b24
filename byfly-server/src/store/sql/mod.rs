//! The storage, on either backend through sqlx's `Any` driver, with one set of queries:
//!
//! - **SQLite** (the embedded default): one file, WAL journal, `synchronous = FULL` (an acknowledged
//!   write survives a power cut), write transactions begun `IMMEDIATE` so two writers never
//!   deadlock upgrading a read lock, and grouped ([`group_commit`]): concurrent writers share one
//!   transaction and one fsync, each answered after it committed; `busy_timeout` covers another
//!   process on the same file. The WAL is checkpointed every 10 000 pages ([`SQLITE_PRAGMAS`]).
//! - **PostgreSQL** (several server processes): `synchronous_commit = on` and lock, statement and
//!   idle-transaction timeouts on every connection ([`POSTGRES_SESSION`]); write transactions run
//!   side by side and lock the rows they decide from ([`locks`]: a payment's row for a decision
//!   about it, a terminal's row to put an operation on it, `SKIP LOCKED` for claims of due rows),
//!   so every read-then-write (claim a free terminal, settle an operation and append its event,
//!   claim due outbox rows) is atomic across processes without one lock for all of them.
//!
//! Two reads on SQLite — a payment by its transaction id, alone or with its operations, which
//! every `/status` and `/payment/{id}` make — run on the calling thread through rusqlite
//! ([`sqlite_reads`]), with the same SQL and the same row decoding ([`rows::StoredRow`]).
//!
//! The SQL is written once in the dialect both accept (`ON CONFLICT`, `RETURNING`, `COALESCE`,
//! `CASE`, flags as 0/1 integers, money as integer tiyn) with `?` placeholders, which
//! [`Dialect::sql`] turns into `$1, $2, …` for PostgreSQL. Each backend has its own migrations.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::{Query, QueryScalar};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row};

use crate::store::error::StoreError;
use crate::store::records::TerminalTls;

pub use dialect::Dialect;
use group_commit::{BatchedWrite, GroupCommit};
use payment_inserts::PaymentInserts;
use read_cache::ReadCache;
use sqlite_reads::SqliteReads;
use status_reads::StatusReads;

/// How token expiry times are stored (the terminal's local time, as it gave them).
const TOKEN_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The columns [`SqlStore::payment_row`] reads, as a literal so queries stay static strings.
macro_rules! select_payments {
    ($condition:expr) => {
        concat!(
            "SELECT id, transaction_id, source_id, status, original_amount_minor, refunded_amount_minor, currency, ",
            "description, customer_name, customer_phone, customer_email, payment_method_id, webhook_url, ",
            "webhook_secret, metadata, created_at, expires_at, paid_at FROM payments WHERE ",
            $condition
        )
    };
}

/// Every PostgreSQL connection's limits, so that one stalled holder cannot block writers
/// everywhere: a lock waited for longer than 10 s, a statement running longer than 30 s, or a
/// transaction left idle for 30 s (a process frozen mid-transaction) is ended by the database
/// with an error, and the request answers 500 instead of hanging; commits wait for the WAL flush
/// whatever the database's default says (an acknowledged write survives a crash).
const POSTGRES_SESSION: &str = "SET lock_timeout = '10s'; SET statement_timeout = '30s'; \
     SET idle_in_transaction_session_timeout = '30s'; SET synchronous_commit = on";

/// How long idempotency records are kept.
const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;
/// How long a key claimed without its answer (by a server built before claims carried their
/// answers) stays in flight before another request takes it over: its process died.
const IDEMPOTENCY_STALE_SECS: i64 = 60;

mod database;
mod dialect;
mod group_commit;
mod history;
mod idempotency;
mod ledger;
mod locks;
mod operations;
mod outbox;
mod payment_inserts;
mod payments;
mod read_cache;
mod refunds;
mod rows;
mod sessions;
mod sources;
mod sqlite_reads;
mod status_reads;
mod terminals;

/// Every SQLite connection's settings. `wal_autocheckpoint`: the pages the WAL grows by before
/// the connection that commits copies them back into the database file (SQLite's default is
/// 1000; here 10 000).
///
/// Why more: that connection is the group commit's only writer, so a checkpoint (the pages
/// copied, then the file's fsync) stalls one batch and every request queued behind it. A batch of
/// new payments writes whole pages — the table's last leaf and a leaf of each index, the random
/// transaction ids' spread over the whole index — about 1.7 pages a payment, so at 1000 pages the
/// writer checkpointed over ten times a second under steady `init`, and those stalls were the
/// p99. Ten times the pages means a tenth of the checkpoints, each copying the hot pages once for
/// many commits (BENCHMARKS.md: `init`s over 10 ms in the server 3.7–4.1 % → 0.7–1.0 %). The WAL
/// file then stays under about 40 MB; SQLite reuses it from its start after each checkpoint.
///
/// Not measured better: checkpoints on a thread of their own beside the writer. Their fsync
/// contends with the commits' own on the same disk, and with the writer's checkpoint off they
/// never finish under load, so the WAL is never restarted and grows without bound.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 10000;";

/// A SQLite or PostgreSQL database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// SQLite's writers, grouped into batches (`None` on PostgreSQL).
    group: Option<GroupCommit>,
    /// Active sources by token hash, and the payment methods.
    cache: Arc<ReadCache>,
    /// SQLite's new payments, inserted many to a statement (`None` on PostgreSQL).
    payment_inserts: Option<Arc<PaymentInserts>>,
    /// SQLite's hot reads on the calling thread (`None` on PostgreSQL and for a database that is
    /// no file).
    sqlite_reads: Option<Arc<SqliteReads>>,
    /// PostgreSQL's status reads, gathered many to a query (`None` on SQLite).
    status_reads: Option<Arc<StatusReads>>,
}

/// A write transaction: on SQLite a member of a batch, on PostgreSQL a transaction of its own.
/// Every answer decided in it ends with [`WriteTx::commit`] or [`WriteTx::rollback`]; dropped
/// (an error's `?`), its changes are rolled back.
#[derive(Debug)]
enum WriteTx {
    Batched(BatchedWrite),
    Own(sqlx::Transaction<'static, Any>),
}

impl WriteTx {
    /// Keeps the changes; `Ok` once they are durable.
    async fn commit(self) -> Result<(), StoreError> {
        match self {
            WriteTx::Batched(write) => write.commit().await,
            WriteTx::Own(tx) => Ok(tx.commit().await?),
        }
    }

    /// Keeps nothing; `Ok` once what it read is known to hold (its batch committed). For an
    /// answer decided inside the transaction without writing, e.g. "no free terminal".
    async fn rollback(self) -> Result<(), StoreError> {
        match self {
            WriteTx::Batched(write) => write.rollback().await,
            WriteTx::Own(tx) => Ok(tx.rollback().await?),
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            WriteTx::Batched(write) => write,
            WriteTx::Own(tx) => tx,
        }
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteTx::Batched(write) => write,
            WriteTx::Own(tx) => tx,
        }
    }
}

/// A write run on the pool — a transaction of its own, in autocommit mode — whose answer is what
/// it returns, read to the end of its exchange with the database: the statement commits only as
/// it ends. sqlx's `Any` driver answers `fetch_optional` and `fetch_one` at the first row, which
/// PostgreSQL sends before its commit (and the WAL's flush) is done, so an answer built on that
/// row could acknowledge a write that a crash then loses, or that another connection does not
/// see yet. Inside a transaction `fetch_optional` is fine: its `COMMIT` is awaited.
trait FetchWritten {
    /// The row the write returned, if any, once it committed.
    fn fetch_written(
        self,
        pool: &AnyPool,
    ) -> impl Future<Output = Result<Option<AnyRow>, sqlx::Error>> + Send;

    /// [`FetchWritten::fetch_written`] for a write that always returns its row.
    fn fetch_written_one(self, pool: &AnyPool) -> impl Future<Output = Result<AnyRow, sqlx::Error>> + Send
    where
        Self: Sized + Send,
    {
        async move { self.fetch_written(pool).await?.ok_or(sqlx::Error::RowNotFound) }
    }
}

impl FetchWritten for Query<'_, Any, AnyArguments> {
    async fn fetch_written(self, pool: &AnyPool) -> Result<Option<AnyRow>, sqlx::Error> {
        Ok(self.fetch_all(pool).await?.into_iter().next())
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A 0/1 integer column as a flag.
fn flag(row: &impl rows::StoredRow, column: &str) -> Result<bool, StoreError> {
    Ok(row.value::<i64>(column)? != 0)
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
                    // Eight for readers, one kept for the batches of writes.
                    .max_connections(9)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            connection.execute(SQLITE_PRAGMAS).await?;
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
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            connection.execute(POSTGRES_SESSION).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
        };
        let (group, sqlite_reads) = match dialect {
            Dialect::Sqlite => (
                Some(GroupCommit::start(&pool).await?),
                Self::sqlite_file(&pool)
                    .await?
                    .map(|path| SqliteReads::open(&path).map(Arc::new))
                    .transpose()?,
            ),
            Dialect::Postgres => (None, None),
        };
        let payment_inserts = group.clone().map(PaymentInserts::start);
        let status_reads = (dialect == Dialect::Postgres).then(|| Self::start_status_reads(&pool));
        Ok(SqlStore {
            pool,
            dialect,
            group,
            cache: Arc::new(ReadCache::new(read_cache::CACHE_RECHECK)),
            payment_inserts,
            sqlite_reads,
            status_reads,
        })
    }

    /// The file of SQLite's main database, as SQLite itself resolved the URL (`None` for one in
    /// memory).
    async fn sqlite_file(pool: &AnyPool) -> Result<Option<std::path::PathBuf>, StoreError> {
        let row = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_optional(pool)
            .await?;
        let file: Option<String> = match row {
            Some(row) => row.try_get("file")?,
            None => None,
        };
        Ok(file.filter(|file| !file.is_empty()).map(std::path::PathBuf::from))
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

    /// A write transaction: on SQLite serialized against every other writer (all processes
    /// included); on PostgreSQL it locks what it decides from ([`locks`]).
    async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        if let Some(group) = &self.group {
            return Ok(WriteTx::Batched(group.begin().await?));
        }
        Ok(WriteTx::Own(self.pool.begin().await?))
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

/// A fresh SQLite database file for a unit test, in a folder named after it.
#[cfg(test)]
fn temp_sqlite_url(test: &str) -> String {
    let dir = std::env::temp_dir().join(format!("byfly-store-{}-{test}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}?mode=rwc", dir.join("byfly.sqlite").display())
}

#[cfg(test)]
mod tests {
    use super::{SqlStore, temp_sqlite_url};

    #[tokio::test]
    async fn every_sqlite_connection_syncs_fully_and_checkpoints_every_ten_thousand_pages() {
        let store = SqlStore::open(&temp_sqlite_url("pragmas")).await.unwrap();
        // Two connections held at once: the pool's second one is set up like its first.
        let mut first = store.pool.acquire().await.unwrap();
        let mut second = store.pool.acquire().await.unwrap();
        for connection in [&mut *first, &mut *second] {
            let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
                .fetch_one(&mut *connection)
                .await
                .unwrap();
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *connection)
                .await
                .unwrap();
            assert_eq!((pages, synchronous), (10_000, 2), "2 is FULL");
        }
    }
}
