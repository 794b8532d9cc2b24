//! The schema and the connection.

use std::path::Path;

use async_trait::async_trait;

use super::error::StoreError;
use super::ids::UnixSeconds;

/// What a backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backup {
    /// A consistent copy was written and read back: the file's size, the payments it holds.
    Copied { bytes: u64, payments: u64 },
    /// This backend is copied by its own tools (PostgreSQL: `pg_dump`), not by the server.
    ByTheDatabasesTools,
}

/// The figures every server process sharing the database must agree on, read from it together
/// (a few statements, not one snapshot: two figures may be a moment apart) — for `/metrics`: the
/// pool, the backlog and the queue are the deployment's, not one process's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// How many payments are in each status (statuses without any are absent).
    pub payments_by_status: Vec<(String, u64)>,
    /// The pool, each terminal counted once.
    pub terminals: TerminalFigures,
    /// Operations holding a terminal: started or being started, not yet finished.
    pub operations_in_flight: u64,
    /// Operations waiting for a person (`GET /api/admin/operations/review`).
    pub review_queue: u64,
    /// Webhook events neither delivered nor exhausted that will be sent (now or on a retry's time).
    pub outbox_pending: u64,
    /// Webhook events that exhausted their retry schedule and wait for an operator's recovery.
    pub outbox_exhausted: u64,
    /// When the longest-waiting sendable event became due (as readiness reads it).
    pub oldest_due_at: Option<UnixSeconds>,
}

/// The pool by state: every terminal in exactly one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerminalFigures {
    /// Registered, healthy, holding no operation.
    pub free: u64,
    /// Registered, healthy, holding an operation.
    pub busy: u64,
    /// Registered but failing its health check (an operation it holds is still followed).
    pub unhealthy: u64,
    /// Enabled but without tokens: an operator must register it with a cashier present.
    pub needs_registration: u64,
    /// Taken out of the pool by an operator.
    pub disabled: u64,
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

    /// The shared figures at `now`.
    async fn figures(&self, now: UnixSeconds) -> Result<Figures, StoreError>;
}
