//! SQLite's hot point reads (a payment by its transaction id, with its operations), run on the
//! calling thread through rusqlite instead of through sqlx.
//!
//! Why: sqlx runs every SQLite connection on a worker thread of its own, and each statement is a
//! round trip to it — a channel send, a thread woken, the answer sent back, the request's task
//! woken again. Under load that handoff cost several times what the read itself costs (a
//! `/status` was a third of the throughput of a route reading nothing; BENCHMARKS.md). A read by
//! a unique key takes microseconds in SQLite and, in WAL mode, never waits for the writer: a
//! reader sees the last commit and takes no lock a writer holds. So it is cheaper to do it where
//! the request already runs than to hand it over.
//!
//! What that costs: the read blocks its runtime thread for its duration. It is bounded by the
//! read (an index lookup and a few rows) and, in the rare moments SQLite makes a reader wait
//! (another connection recovering the WAL after a crash), by `busy_timeout`. Writes stay on
//! sqlx (the group commit, `BEGIN IMMEDIATE`, `synchronous = FULL`), and so does every other
//! read; these connections are opened read-only and could not write if asked.
//!
//! They see exactly what sqlx's readers see: a write is acknowledged only after its batch
//! committed, so a read that follows an acknowledged write finds it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::error::StoreError;

/// How long a read waits on a database another connection keeps busy (recovering the WAL).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept for the next reads; more are opened while more read at once (each
/// runtime thread reads one at a time, so this is rarely reached).
const IDLE_KEPT: usize = 8;

/// Read-only connections to one SQLite file, each used by one read at a time.
#[derive(Debug)]
pub(super) struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReads {
    /// Readers of the database file at `path` (one is opened now, so a file that cannot be read
    /// is found at start).
    pub(super) fn open(path: &Path) -> Result<SqliteReads, StoreError> {
        let reads = SqliteReads {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        let first = reads.connect()?;
        reads.idle_connections().push(first);
        Ok(reads)
    }

    /// `read` on an idle connection (a new one if none is idle).
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle_connections().pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let result = read(&connection);
        let mut idle = self.idle_connections();
        if idle.len() < IDLE_KEPT {
            idle.push(connection);
        }
        result
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        Ok(connection)
    }

    /// The idle list; a read that panicked while holding it left nothing half-done in a `Vec`.
    fn idle_connections(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::super::SqlStore;
    use crate::store::{Database, Payments};

    #[tokio::test]
    async fn a_file_database_reads_on_the_calling_thread_and_those_readers_cannot_write() {
        let store = SqlStore::open(&super::super::temp_sqlite_url("calling-thread-reads"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let reads = store
            .sqlite_reads
            .as_ref()
            .expect("a SQLite file gets its readers");
        let methods: i64 = reads
            .read(|connection| {
                Ok(connection.query_row("SELECT COUNT(*) FROM payment_methods", [], |row| row.get(0))?)
            })
            .unwrap();
        assert!(methods > 0, "the readers see what the migration wrote");
        let write = reads.read(|connection| Ok(connection.execute("DELETE FROM payment_methods", [])?));
        assert!(write.is_err(), "a reader refused to write: {write:?}");
        assert_eq!(
            store.payment_methods().await.unwrap().len(),
            usize::try_from(methods).unwrap()
        );
    }
}
