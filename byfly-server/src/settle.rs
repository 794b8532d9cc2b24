//! From stored operations to byfly-core's ledger, and the plan of what a terminal's final answer
//! changes. Pure, so every storage backend runs the same decision inside its own transaction.

use byfly_core::ledger::{Ledger, Operation, OperationQuote, OperationState, TerminalOutcome};
use byfly_core::{
    MethodCode, Money, MoneyEvent, PaymentMethod, PaymentStatus, Percent, Settlement, WebhookEvent,
};

use crate::store::PaymentRecord;

/// Where an operation stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    /// A terminal is claimed; the terminal has not answered `/v2/payment` yet.
    Starting,
    /// The terminal runs it (`processId` known).
    InFlight,
    /// Paid.
    Succeeded,
    /// Definitively failed.
    Failed,
    /// `/v2/payment` itself failed: it never existed on the terminal.
    StartFailed,
}

impl OpState {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Starting => "starting",
            OpState::InFlight => "in_flight",
            OpState::Succeeded => "succeeded",
            OpState::Failed => "failed",
            OpState::StartFailed => "start_failed",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<OpState> {
        [
            OpState::Starting,
            OpState::InFlight,
            OpState::Succeeded,
            OpState::Failed,
            OpState::StartFailed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// An operation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    /// Id.
    pub id: i64,
    /// Its payment.
    pub payment_id: i64,
    /// The terminal running it.
    pub terminal_id: i64,
    /// Price fixed at start.
    pub quote: OperationQuote,
    /// Whole tenge asked of the terminal.
    pub terminal_amount: i64,
    /// Progress.
    pub state: OpState,
    /// Decides the payment's status (false once abandoned).
    pub is_current: bool,
    /// Holds its terminal until the terminal's final answer.
    pub holds_terminal: bool,
    /// The payment's status before this operation started.
    pub previous_status: PaymentStatus,
    /// The terminal's process id.
    pub process_id: Option<String>,
    /// QR text read from the camera.
    pub qr_code: Option<String>,
    /// Customer's Kaspi link.
    pub payment_url: Option<String>,
    /// R, once succeeded.
    pub credited: Option<Money>,
    /// G, once succeeded.
    pub gross: Option<Money>,
    /// Method of the product used, once succeeded.
    pub product_method: Option<MethodCode>,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds: when the terminal gives up on it.
    pub deadline_at: i64,
    /// Unix seconds since the terminal answered `unknown`.
    pub unknown_since: Option<i64>,
    /// A refund operation: its public id (`None` for payments).
    pub refund_id: Option<String>,
    /// The payment operation a refund gives money back from.
    pub refund_of: Option<i64>,
    /// The terminal's `transactionId` of a successful payment (what a refund names).
    pub terminal_transaction_id: Option<String>,
    /// `chequeInfo.method` of a successful payment (`qr`, `card`, `alaqan`).
    pub cheque_method: Option<String>,
    /// Waits for an operator (see `review_reason`).
    pub needs_review: bool,
    /// Why it waits for an operator.
    pub review_reason: Option<String>,
    /// A customer could have seen it (QR read, or `wait`/`unknown` answered): a `101` for it is
    /// no proof that nothing was paid.
    pub shown: bool,
    /// `/v2/payment` got no readable answer: the terminal may run it under an unknown process id.
    pub start_uncertain: bool,
}

impl OperationRecord {
    /// True for refund operations.
    pub fn is_refund(&self) -> bool {
        self.refund_id.is_some()
    }
}

/// The ledger of a payment: operations that exist on a terminal, in start order.
pub fn ledger_of(payment: &PaymentRecord, operations: &[OperationRecord]) -> (Ledger, Vec<i64>) {
    let mut ledger = Ledger::new(payment.original_amount);
    ledger.refunded_amount = payment.refunded_amount;
    let mut ids = Vec::new();
    for op in operations.iter().filter(|op| !op.is_refund()) {
        let state = match op.state {
            OpState::InFlight => OperationState::InFlight,
            OpState::Failed => OperationState::Failed,
            OpState::Succeeded => OperationState::Succeeded {
                gross: op.gross.unwrap_or(Money::ZERO),
                product_method: op
                    .product_method
                    .clone()
                    .unwrap_or_else(|| op.quote.method.clone()),
                credited: op.credited.unwrap_or(Money::ZERO),
            },
            OpState::Starting | OpState::StartFailed => continue,
        };
        ledger.operations.push(Operation {
            quote: op.quote.clone(),
            current: op.is_current,
            state,
        });
        ids.push(op.id);
    }
    (ledger, ids)
}

/// A terminal's final answer about an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum FinalAnswer {
    /// Paid: the gross amount and the product, as the terminal reported them.
    Succeeded {
        /// G.
        gross: Money,
        /// The product's method, when the terminal named a known product.
        product_method: Option<MethodCode>,
        /// The terminal's `transactionId` (what a refund names).
        transaction_id: Option<String>,
        /// `chequeInfo.method`.
        cheque_method: Option<String>,
    },
    /// Definitively failed (or unknown to a healthy terminal).
    Failed,
}

/// What one settlement writes.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlementPlan {
    /// R (zero for a failure).
    pub credited: Money,
    /// The product's method (succeeded only).
    pub product_method: Option<MethodCode>,
    /// The payment's status afterwards.
    pub status: PaymentStatus,
    /// `paid_at` to set (only when the payment becomes paid).
    pub becomes_paid: bool,
    /// The webhook event to append, with the figures afterwards.
    pub event: Option<WebhookEvent>,
    /// The payment's figures afterwards.
    pub figures: byfly_core::Figures,
    /// The current in-flight operation that stops being current: what is owed without it is paid.
    pub abandon_current: Option<i64>,
}

/// What the payment's last webhook event told the merchant: its status and figures.
pub type Reported = Option<(PaymentStatus, byfly_core::Figures)>;

/// byfly-core's total [`PaymentStatus::follow`], with "nothing changed for the merchant" judged
/// against what was last reported.
fn follow(status: PaymentStatus, event: MoneyEvent, ledger: &Ledger, reported: Reported) -> Settlement {
    let mut standing = ledger.standing();
    let first = status.follow(event, &standing);
    if reported == Some((first.to, ledger.figures())) {
        standing.unchanged_for_merchant = true;
        return status.follow(event, &standing);
    }
    first
}

/// Decides what `answer` about operation `operation_id` changes. `None` when the operation is not
/// open (already settled by another caller: nothing to do, nothing doubled). Money is never
/// ignored: whatever the payment's status, what the terminal took is credited, the status follows
/// it and an event reports it.
pub fn plan_settlement(
    payment: &PaymentRecord,
    operations: &[OperationRecord],
    operation_id: i64,
    answer: &FinalAnswer,
    methods: &[PaymentMethod],
    reported: Reported,
) -> Option<SettlementPlan> {
    let (mut ledger, ids) = ledger_of(payment, operations);
    let index = ids.iter().position(|id| *id == operation_id)?;
    let operation = &ledger.operations[index];
    let outcome = match answer {
        FinalAnswer::Succeeded {
            gross,
            product_method,
            ..
        } => {
            let method = product_method
                .clone()
                .unwrap_or_else(|| operation.quote.method.clone());
            let percent = methods
                .iter()
                .find(|m| m.code == method)
                .map_or(operation.quote.percent, PaymentMethod::effective_percent);
            TerminalOutcome::Succeeded {
                gross: *gross,
                product_method: method,
                product_percent: percent,
            }
        }
        FinalAnswer::Failed => TerminalOutcome::Failed,
    };
    let product_method = match &outcome {
        TerminalOutcome::Succeeded { product_method, .. } => Some(product_method.clone()),
        TerminalOutcome::Failed => None,
    };
    let event = ledger.settle(index, outcome).ok()?;
    let credited = ledger.operations[index].credited();
    let settlement = match event {
        Some(event) => follow(payment.status, event, &ledger, reported),
        // An abandoned operation ended without money: nothing changed.
        None => Settlement {
            to: payment.status,
            webhook: None,
            abandon_current: false,
        },
    };
    let mut abandon_current = None;
    if settlement.abandon_current {
        abandon_current = ledger
            .operations
            .iter()
            .position(|op| op.current && op.in_flight())
            .map(|current| ids[current]);
        ledger.abandon_current();
    }
    Some(SettlementPlan {
        credited,
        product_method,
        status: settlement.to,
        becomes_paid: settlement.to == PaymentStatus::Paid && payment.status != PaymentStatus::Paid,
        event: settlement.webhook,
        figures: ledger.figures(),
        abandon_current,
    })
}

/// The percent text stored for an operation.
pub fn percent_text(percent: Percent) -> String {
    percent.to_string()
}

/// What a refund operation's final answer changes: on success the refunded amount grows by what
/// the terminal gave back and the payment's status follows (`refunded` once everything received
/// is refunded), with a `refunded` event; a failed refund changes nothing.
pub fn plan_refund_settlement(
    payment: &PaymentRecord,
    operations: &[OperationRecord],
    refunded: Option<Money>,
    reported: Reported,
) -> SettlementPlan {
    let (mut ledger, _) = ledger_of(payment, operations);
    let settlement = match refunded {
        Some(amount) => {
            let event = ledger.record_refund(amount);
            follow(payment.status, event, &ledger, reported)
        }
        None => Settlement {
            to: payment.status,
            webhook: None,
            abandon_current: false,
        },
    };
    SettlementPlan {
        credited: Money::ZERO,
        product_method: None,
        status: settlement.to,
        becomes_paid: false,
        event: settlement.webhook,
        figures: ledger.figures(),
        abandon_current: None,
    }
}

/// The payment's status once its current operation was given up before anyone could pay it (QR
/// unreadable, a start without an answer) and no predecessor became current again: as before
/// the operation, unless money arrived meanwhile (then what it paid for, with its event).
pub fn plan_given_up(
    payment: &PaymentRecord,
    operations: &[OperationRecord],
    previous: PaymentStatus,
    reported: Reported,
) -> Settlement {
    let (ledger, _) = ledger_of(payment, operations);
    follow(
        payment.status,
        MoneyEvent::CurrentGivenUp { previous },
        &ledger,
        reported,
    )
}
