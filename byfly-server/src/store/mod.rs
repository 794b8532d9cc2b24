//! Storage: the [`Store`] trait the services use, and [`SqlStore`], its implementation on SQLite
//! and on PostgreSQL.
//!
//! Money is stored as integer minor units (tiyn); a 2xx answer means the change is on disk
//! (SQLite: WAL with `synchronous = FULL`; PostgreSQL: `synchronous_commit = on`). Every method
//! that changes state does so in one transaction, so a crash leaves either all of a change or none
//! of it; write transactions are serialized across every process sharing the database.

mod outbox;
mod records;
mod sql;

use async_trait::async_trait;
use byfly_core::ids::TokenHash;
use byfly_core::{BodyEncoding, Money, PaymentMethod, PaymentStatus, TransactionId};
use byfly_terminal::Tokens;

use crate::settle::{Decide, FinalAnswer, OperationRecord, SettlementPlan};

pub use outbox::Outbox;
pub use records::*;
pub use sql::{Dialect, SqlStore};

/// A storage failure. Callers answer 500 (or 503) and log it; details never reach clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value no longer parses (a bug or a hand edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Everything the services need from a database (the webhook outbox's part is [`Outbox`]).
#[async_trait]
pub trait Store: Outbox + Send + Sync + std::fmt::Debug {
    /// Creates or upgrades the schema and seeds the payment methods of a new installation.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Answers when the database does.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates a source with the hash of its new token.
    async fn create_source(
        &self,
        name: &str,
        token_hash: &TokenHash,
        webhook_json: BodyEncoding,
        now: i64,
    ) -> Result<SourceRecord, StoreError>;
    /// The active source whose token hashes to `hash`.
    async fn source_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SourceRecord>, StoreError>;

    /// Payment methods with their active flag, by id.
    async fn payment_methods(&self) -> Result<Vec<(PaymentMethod, bool)>, StoreError>;

    /// Starts a request guarded by an `Idempotency-Key`. An in-flight claim older than
    /// `stale_after` seconds is taken over (its process died before completing it); records older
    /// than 24 h are forgotten.
    async fn begin_idempotent(
        &self,
        source_id: i64,
        key: &str,
        request_hash: &str,
        now: i64,
        stale_after: i64,
    ) -> Result<IdempotencyStart, StoreError>;
    /// Stores the answer of a guarded request that changed nothing (a validation error).
    async fn complete_idempotent(&self, completion: IdempotencyCompletion) -> Result<(), StoreError>;
    /// Forgets an in-flight claim whose request failed for a reason a retry may not meet (5xx).
    async fn release_idempotent(&self, source_id: i64, key: &str) -> Result<(), StoreError>;

    /// Inserts a payment and, in the same transaction, completes its idempotency record.
    async fn insert_payment(
        &self,
        row: &NewPaymentRow,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<Inserted, StoreError>;
    /// A payment by its public id.
    async fn payment(&self, id: &TransactionId) -> Result<Option<PaymentRecord>, StoreError>;
    /// Adds a terminal (names are unique: `None` when the name is taken).
    async fn add_terminal(
        &self,
        terminal: &NewTerminal,
        now: i64,
    ) -> Result<Option<TerminalRecord>, StoreError>;
    /// Adds a terminal, or points the terminal of that name at new URLs (its stored tokens are
    /// dropped: a different device needs its own registration).
    async fn upsert_terminal(&self, terminal: &NewTerminal, now: i64) -> Result<TerminalRecord, StoreError>;
    /// A source by id.
    async fn source(&self, id: i64) -> Result<Option<SourceRecord>, StoreError>;
    /// Every source, by id.
    async fn sources(&self) -> Result<Vec<SourceRecord>, StoreError>;
    /// Changes a source's encoding and/or active flag; `None` for an unknown id.
    async fn update_source(
        &self,
        id: i64,
        webhook_json: Option<BodyEncoding>,
        active: Option<bool>,
    ) -> Result<Option<SourceRecord>, StoreError>;
    /// Points a terminal at new settings; a new base URL drops its tokens (another device must
    /// register). `None` for an unknown id.
    async fn edit_terminal(
        &self,
        id: i64,
        terminal: &NewTerminal,
    ) -> Result<Option<TerminalRecord>, StoreError>;
    /// Takes a terminal out of the pool or back in; `None` for an unknown id.
    async fn set_terminal_enabled(
        &self,
        id: i64,
        enabled: bool,
    ) -> Result<Option<TerminalRecord>, StoreError>;
    /// Changes the given fields of a payment method; `None` for an unknown id.
    async fn update_method(
        &self,
        id: i64,
        patch: &byfly_core::wire::UpdateMethodRequest,
    ) -> Result<Option<(PaymentMethod, bool)>, StoreError>;
    /// One terminal.
    async fn terminal(&self, id: i64) -> Result<Option<TerminalRecord>, StoreError>;
    /// Every terminal, by id.
    async fn terminals(&self) -> Result<Vec<TerminalRecord>, StoreError>;
    /// Claims the enabled terminals whose last health check is at least `interval` seconds old,
    /// marking them checked now, atomically — so several processes never check one terminal twice.
    async fn claim_health_checks(&self, now: i64, interval: i64) -> Result<Vec<TerminalRecord>, StoreError>;
    /// Records a health check's result.
    async fn record_health(
        &self,
        id: i64,
        healthy: bool,
        error: Option<&str>,
        device_terminal_id: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Stores tokens the terminal issued (register, or a refresh) at `now`.
    async fn save_terminal_tokens(&self, id: i64, tokens: &Tokens, now: i64) -> Result<(), StoreError>;
    /// Drops a terminal's tokens after the terminal refused them for good — only if they are still
    /// `access_token` (another process may have stored new ones) — marking it unhealthy with
    /// `reason`. Returns whether they were dropped.
    async fn forget_terminal_tokens(
        &self,
        id: i64,
        access_token: &str,
        reason: &str,
    ) -> Result<bool, StoreError>;
    /// Marks a registration pending, unless another one is pending and started after
    /// `stale_before` (a process that died while waiting leaves an older one behind).
    async fn begin_registration(
        &self,
        id: i64,
        now: i64,
        stale_before: i64,
    ) -> Result<RegistrationStart, StoreError>;
    /// Records how a registration ended; approved ones store their tokens in the same write.
    async fn finish_registration(
        &self,
        id: i64,
        state: RegistrationState,
        message: Option<&str>,
        tokens: Option<&Tokens>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// What the screen of `terminal_id` may still show when `before_operation` starts: the QR read
    /// for the latest operation it ran before, or that it showed one nobody read.
    async fn previous_qr(
        &self,
        terminal_id: i64,
        before_operation: i64,
    ) -> Result<PreviousScreen, StoreError>;
    /// Unix seconds when the first busy, enabled, healthy terminal is expected to be free: the
    /// earliest deadline after `now` of the operations holding them (one held past its deadline
    /// waits for a final answer or an operator: no time can be promised). `None` when none.
    async fn earliest_release(&self, now: i64) -> Result<Option<i64>, StoreError>;
    /// Counts for `/api/health`.
    async fn pool_counts(&self) -> Result<PoolCounts, StoreError>;

    /// A payment's operations, in start order.
    async fn operations(&self, payment_id: i64) -> Result<Vec<OperationRecord>, StoreError>;
    /// Claims the least recently used free, healthy, enabled terminal and opens an operation on it.
    async fn claim_terminal(&self, claim: &TerminalClaim) -> Result<ClaimOutcome, StoreError>;
    /// `/v2/payment` failed: the operation never existed on the terminal; the terminal is free
    /// (and marked unhealthy with `unhealthy` as the reason, when given); an abandoned predecessor
    /// becomes current again.
    async fn start_failed(&self, operation_id: i64, unhealthy: Option<&str>) -> Result<(), StoreError>;
    /// Operations still `starting` (claimed, terminal not yet known to have started them) for more
    /// than `older_than_secs` by the database's clock: left by a process that died in the middle of
    /// `/kaspi`. One clock judges the age, whichever host claimed and whichever sweeps. Uncertain
    /// starts are not among them.
    async fn stale_starts(&self, older_than_secs: i64) -> Result<Vec<i64>, StoreError>;
    /// `/v2/payment` got no answer we could read, and asking again did not prove it never started:
    /// the terminal may run it under a process id we never learnt. The operation stops being
    /// current (the payment's status is what `decide` says of a given-up operation) but keeps its
    /// terminal until its deadline, when [`Store::release_uncertain_starts`] frees it for review.
    async fn start_uncertain(
        &self,
        operation_id: i64,
        reason: &str,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<(), StoreError>;
    /// Frees the terminals of uncertain starts whose deadline passed (a terminal ends an unpaid
    /// operation by itself by then) and flags them for an operator, who checks the terminal's own
    /// history. Returns their ids.
    async fn release_uncertain_starts(&self, now: i64) -> Result<Vec<i64>, StoreError>;
    /// The terminal started the process: store its id (polling resumes from it after a restart)
    /// and move the payment from `from` to `to`. `false` when the operation was no longer
    /// `starting` (the stale-start sweeper freed it): nothing is written.
    async fn operation_started(
        &self,
        operation_id: i64,
        process_id: &str,
        now: i64,
        from: PaymentStatus,
        to: PaymentStatus,
    ) -> Result<bool, StoreError>;
    /// The QR was read from the camera.
    async fn operation_qr(
        &self,
        operation_id: i64,
        qr_code: &str,
        payment_url: &str,
    ) -> Result<(), StoreError>;
    /// The QR could not be read: the operation is abandoned (still followed until final) and the
    /// payment's status is what `decide` says of a given-up operation (`event_id` names the event
    /// if one is due).
    async fn abandon_unreadable(
        &self,
        operation_id: i64,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<(), StoreError>;
    /// Claims operations holding a terminal whose next poll is due (of one payment, or all),
    /// pushing their next poll `lease` seconds ahead so no other caller polls them meanwhile.
    async fn claim_due_operations(
        &self,
        now: i64,
        lease: i64,
        payment_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError>;
    /// Records a non-final answer: the raw JSON, when to ask again, since when it is `unknown`,
    /// whether it showed the operation to a customer, and why it needs review.
    async fn record_poll(&self, operation_id: i64, note: &PollNote) -> Result<(), StoreError>;
    /// Records a final answer, in one transaction: the operation, the freed terminal, and what
    /// `decide` (made from a snapshot read in that transaction) says of the payment's status and
    /// webhook event. `None` when the operation was already settled.
    async fn settle(
        &self,
        operation_id: i64,
        answer: &FinalAnswer,
        raw_answer: &str,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<Option<SettlementPlan>, StoreError>;
    /// Opens a refund part of `amount` on the terminal that took `of_operation`'s money, if that
    /// terminal is free, the payment is still in `expected` status and no other refund of it runs;
    /// a new request is recorded with its first part (and refused while another request of the
    /// payment is open), a later part only while its request is open.
    #[allow(clippy::too_many_arguments)]
    async fn claim_refund(
        &self,
        expected: PaymentStatus,
        of_operation: &OperationRecord,
        amount: Money,
        request: RefundPartOf<'_>,
        now: i64,
        deadline_at: i64,
    ) -> Result<RefundClaim, StoreError>;
    /// A refund request by its public id.
    async fn refund_request(&self, refund_id: &str) -> Result<Option<RefundRequestRecord>, StoreError>;
    /// The payment's request that may still start parts, if any (one at a time per payment).
    async fn open_refund_request(&self, payment_id: i64) -> Result<Option<RefundRequestRecord>, StoreError>;
    /// Requests that may still start parts, oldest first.
    async fn open_refund_requests(&self, limit: i64) -> Result<Vec<RefundRequestRecord>, StoreError>;
    /// No more parts of this request will start. Returns whether it was open.
    async fn close_refund_request(&self, id: i64) -> Result<bool, StoreError>;
    /// Operations waiting for an operator: `unknown` past the review deadline, forgotten by their
    /// terminal after a customer could have paid (`101`), or started without an answer.
    async fn operations_needing_review(&self) -> Result<Vec<OperationRecord>, StoreError>;
    /// One operation.
    async fn operation(&self, id: i64) -> Result<Option<OperationRecord>, StoreError>;
    /// An operator looked at an operation under review that no longer holds a terminal and found
    /// nothing to settle: it leaves the review queue. Returns whether it was waiting.
    async fn acknowledge_review(&self, id: i64) -> Result<bool, StoreError>;
    /// A payment by its row id.
    async fn payment_by_row_id(&self, id: i64) -> Result<Option<PaymentRecord>, StoreError>;
    /// Cancels a payment as `decide` says from a snapshot read in the same transaction (byfly-core
    /// refuses it in some statuses): its current operation abandoned (still followed; money it
    /// takes is still credited) and `cancelled` appended. Returns the operations still running on
    /// a terminal, or `None` when refused.
    async fn cancel_payment(
        &self,
        payment_id: i64,
        now: i64,
        event_id: &str,
        decide: Decide<'_>,
    ) -> Result<Option<Vec<OperationRecord>>, StoreError>;
    /// Expires up to `limit` payments past `expires_at`, each as `decide` says from its snapshot
    /// (byfly-core: never while an operation holds a terminal or after money arrived), with its
    /// `expired` event. Returns how many.
    async fn expire_due(
        &self,
        now: i64,
        limit: u32,
        event_ids: &(dyn Fn() -> String + Sync),
        decide: Decide<'_>,
    ) -> Result<usize, StoreError>;

    /// Payments (of one source, or all), newest first, optionally in one status, with row ids
    /// below `before`.
    async fn list_payments(
        &self,
        source_id: Option<i64>,
        status: Option<PaymentStatus>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError>;
}
