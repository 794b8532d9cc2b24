//! The schema and the connection.

use std::path::Path;

use async_trait::async_trait;

use super::error::StoreError;

/// What a backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backup {
    /// A consistent copy was written and read back: the file's size, the payments it holds.
    Copied { bytes: u64, payments: u64 },
    /// This backend is copied by its own tools (PostgreSQL: `pg_dump`), not by the server.
    ByTheDatabasesTools,
}

/// The schema and the connection.
#[async_trait]
pub trait Database: Send + Sync {
    /// Creates or upgrades the schema and seeds the payment methods of a new installation.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Answers when the database does.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether every migration this build carries has been applied (a process of an older build
    /// may run against a newer schema, never the other way round).
    async fn schema_current(&self) -> Result<bool, StoreError>;

    /// Writes a consistent copy of the whole database to `destination` (a new file) while the
    /// server keeps running, and checks the copy: the ledger's one file must be copyable without
    /// stopping payments, and a copy nobody has read back is not a backup.
    async fn backup(&self, destination: &Path) -> Result<Backup, StoreError>;
}
