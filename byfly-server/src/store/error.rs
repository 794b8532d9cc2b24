//! What can go wrong in the store.

/// A storage failure. Callers answer 500 (or 503) and log it; details never reach clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite failed a read on the calling thread (`sql::sqlite_reads`).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The write was rolled back with the rest of its batch (see `sql::group_commit`): nothing of
    /// it was kept.
    #[error("not committed: {0}")]
    NotCommitted(String),
    /// A backup could not be written or does not read back as a sound database.
    #[error("backup: {0}")]
    Backup(String),
    /// A stored value no longer parses (a bug or a hand edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A read made for several requests at once failed (see `sql::status_reads`): the
    /// database's error, as text, for each of them.
    #[error("shared read: {0}")]
    SharedRead(String),
}

impl StoreError {
    /// PostgreSQL ended the transaction to break a deadlock (SQLSTATE 40P01): it was rolled back
    /// whole, and trying it again is what the database asks for.
    pub fn is_deadlock_victim(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(err)) if err.code().as_deref() == Some("40P01"))
    }
}
