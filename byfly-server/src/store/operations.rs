//! Operations on terminals: claiming a terminal, following the process, settling its final answer, review.

use async_trait::async_trait;

use super::decisions::*;
use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::*;
use byfly_core::PaymentStatus;
use byfly_core::ids::EventId;

/// How many logged terminal answers a payment's page shows at most.
pub const ANSWERS_PER_PAYMENT: u32 = 200;

/// Operations on terminals: claiming a terminal, following the process, settling its final answer, review.
#[async_trait]
pub trait Operations: Send + Sync {
    /// What the screen of `terminal_id` may still show when `before_operation` starts: the QR read
    /// for the latest operation it ran before, or that it showed one nobody read.
    async fn previous_qr(
        &self,
        terminal_id: TerminalId,
        before_operation: OperationId,
    ) -> Result<PreviousScreen, StoreError>;

    /// A payment's operations, in start order.
    async fn operations(&self, payment_id: PaymentId) -> Result<Vec<OperationRecord>, StoreError>;

    /// Claims the least recently used free, healthy, enabled terminal and opens an operation on it.
    async fn claim_terminal(&self, claim: &TerminalClaim) -> Result<ClaimOutcome, StoreError>;

    /// `/v2/payment` failed: the operation never existed on the terminal; the terminal is free
    /// (and marked unhealthy with `unhealthy` as the reason, when given); an abandoned predecessor
    /// becomes current again.
    async fn start_failed(
        &self,
        operation_id: OperationId,
        unhealthy: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Operations still `starting` (claimed, terminal not yet known to have started them) for more
    /// than `older_than_secs` by the database's clock: left by a process that died in the middle of
    /// `/kaspi`. One clock judges the age, whichever host claimed and whichever sweeps. Uncertain
    /// starts are not among them.
    async fn stale_starts(&self, older_than_secs: i64) -> Result<Vec<OperationId>, StoreError>;

    /// `/v2/payment` got no answer we could read, and asking again did not prove it never started:
    /// the terminal may run it under a process id we never learnt. The operation stops being
    /// current (the payment's status is what `decide` says of a given-up operation) but keeps its
    /// terminal until its deadline, when [`Operations::release_uncertain_starts`] frees it for review.
    async fn start_uncertain(
        &self,
        operation_id: OperationId,
        reason: &str,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<(), StoreError>;

    /// Frees the terminals of uncertain starts whose deadline passed (a terminal ends an unpaid
    /// operation by itself by then) and flags them for an operator, who checks the terminal's own
    /// history. Returns their ids.
    async fn release_uncertain_starts(&self, now: UnixSeconds) -> Result<Vec<OperationId>, StoreError>;

    /// The terminal started the process: store its id (polling resumes from it after a restart)
    /// and move the payment from `from` to `to`. `false` when the operation was no longer
    /// `starting` (the stale-start sweeper freed it): nothing is written.
    async fn operation_started(
        &self,
        operation_id: OperationId,
        process_id: &str,
        now: UnixSeconds,
        from: PaymentStatus,
        to: PaymentStatus,
    ) -> Result<bool, StoreError>;

    /// The QR was read from the camera.
    async fn operation_qr(
        &self,
        operation_id: OperationId,
        qr_code: &str,
        payment_url: &str,
    ) -> Result<(), StoreError>;

    /// The QR could not be read: the operation is abandoned (still followed until final) and the
    /// payment's status is what `decide` says of a given-up operation (`event_id` names the event
    /// if one is due).
    async fn abandon_unreadable(
        &self,
        operation_id: OperationId,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<(), StoreError>;

    /// Claims operations holding a terminal whose next poll is due (of one payment, or all),
    /// pushing their next poll `lease` seconds ahead so no other caller polls them meanwhile.
    async fn claim_due_operations(
        &self,
        now: UnixSeconds,
        lease: i64,
        payment_id: Option<PaymentId>,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError>;

    /// Records a non-final answer: the raw JSON, when to ask again, since when it is `unknown`,
    /// whether it showed the operation to a customer, and why it needs review.
    /// Also logs the answer ([`TerminalAnswerRecord`]).
    async fn record_poll(&self, operation_id: OperationId, note: &PollNote) -> Result<(), StoreError>;

    /// Records a final answer, in one transaction: the operation, the freed terminal, and what
    /// `decide` (made from a snapshot read in that transaction) says of the payment's status and
    /// webhook event; and either the terminal's answer in the log or, when an operator gave the
    /// answer, their `decision`. `None` when the operation was already settled.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        operation_id: OperationId,
        answer: &FinalAnswer,
        raw_answer: &str,
        decision: Option<&ReviewDecision>,
        now: UnixSeconds,
        event_id: &EventId,
        decide: Decide<'_>,
    ) -> Result<Option<SettlementPlan>, StoreError>;

    /// Operations waiting for an operator: `unknown` past the review deadline, forgotten by their
    /// terminal after a customer could have paid (`101`), or started without an answer.
    async fn operations_needing_review(&self) -> Result<Vec<OperationRecord>, StoreError>;

    /// One operation.
    async fn operation(&self, id: OperationId) -> Result<Option<OperationRecord>, StoreError>;

    /// An operator looked at an operation under review that no longer holds a terminal and found
    /// nothing to settle: it leaves the review queue, with the `decision` recorded. Returns
    /// whether it was waiting.
    async fn acknowledge_review(
        &self,
        id: OperationId,
        decision: &ReviewDecision,
        now: UnixSeconds,
    ) -> Result<bool, StoreError>;

    /// What the terminals answered about a payment's operations, oldest first (at most
    /// [`ANSWERS_PER_PAYMENT`], the newest kept).
    async fn terminal_answers(&self, payment_id: PaymentId) -> Result<Vec<TerminalAnswerRecord>, StoreError>;

    /// Every operation holding a terminal.
    async fn terminal_holds(&self) -> Result<Vec<TerminalHold>, StoreError>;

    /// The operators' decisions about a payment's operations.
    async fn review_decisions(&self, payment_id: PaymentId) -> Result<Vec<ReviewDecisionRecord>, StoreError>;
}
