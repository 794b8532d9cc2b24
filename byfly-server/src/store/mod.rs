//! Storage: the [`Store`] the services use — one small trait per aggregate ([`Sources`],
//! [`Idempotency`], [`Payments`], [`Terminals`], [`Operations`], [`Refunds`], [`Outbox`], and the
//! schema's [`Database`]) — and [`SqlStore`], their implementation on SQLite and on PostgreSQL
//! (`sql/`, one file per aggregate). Records are plain data (`records.rs`, the outbox's in
//! `outbox.rs`); a decision's snapshot and plan are in `decisions.rs`: the store persists
//! decisions, the services' settlement makes them.
//!
//! Money is stored as integer minor units (tiyn); a 2xx answer means the change is on disk
//! (SQLite: WAL with `synchronous = FULL`; PostgreSQL: `synchronous_commit = on`). Every method
//! that changes state does so in one transaction, so a crash leaves either all of a change or none
//! of it; write transactions are serialized across every process sharing the database.

mod database;
mod decisions;
mod error;
mod idempotency;
mod ids;
mod operations;
mod outbox;
mod payments;
mod records;
mod refunds;
mod sessions;
mod sources;
mod sql;
mod terminals;

pub use database::{Backup, Database, Figures, TerminalFigures};
pub use decisions::{Decide, FinalAnswer, Reported, SettlementPlan, Snapshot};
pub use error::StoreError;
pub use idempotency::{Idempotency, IdempotencyClaim, IdempotencyStart, StoredResponse};
pub use ids::{ApiKeyId, OperationId, PaymentId, SourceId, TerminalId, UnixSeconds};
pub use operations::Operations;
pub use outbox::*;
pub use payments::{PaymentFilter, Payments};
pub use records::*;
pub use refunds::Refunds;
pub use sessions::{AdminSessionRecord, AdminSessions, SESSION_SEEN_RESOLUTION};
pub use sources::{KEY_USE_RESOLUTION, Sources};
pub use sql::{Dialect, SqlStore};
pub use terminals::Terminals;

/// Everything the services need from a database: the small trait of each aggregate, composed.
/// Any type with all of them is a `Store`; services take `Arc<dyn Store>`.
pub trait Store:
    Database
    + Sources
    + AdminSessions
    + Idempotency
    + Payments
    + Terminals
    + Operations
    + Refunds
    + Outbox
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: Database
        + Sources
        + AdminSessions
        + Idempotency
        + Payments
        + Terminals
        + Operations
        + Refunds
        + Outbox
        + std::fmt::Debug
{
}
