//! What a decision about one payment is made from and what it writes: the store reads a
//! [`Snapshot`] inside its write transaction, hands it to a [`Decide`] (the services' settlement
//! makes them), and persists the [`SettlementPlan`] it gets back.

use byfly_core::{MethodCode, Money, PaymentMethod, PaymentStatus, WebhookEvent};

use super::ids::OperationId;
use super::records::{OperationRecord, PaymentRecord};

/// What the payment's last webhook event told the merchant: its status and figures.
pub type Reported = Option<(PaymentStatus, byfly_core::Figures)>;

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

/// What one decision about a payment writes, in the transaction that read its snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlementPlan {
    /// R (zero for a failure and for every decision that is not a payment's final answer).
    pub credited: Money,
    /// What a refund's final answer adds to the refunded amount.
    pub refunded: Money,
    /// The method the event names (the settled operation's).
    pub event_method: Option<MethodCode>,
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
    /// The current operation that stops being current: what is owed without it is paid, or the
    /// payment was cancelled.
    pub abandon_current: Option<OperationId>,
}

/// What a decision about one payment is made from, read inside the write transaction that
/// persists the decision, so that nothing changes between reading and writing.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The payment as stored.
    pub payment: PaymentRecord,
    /// Its operations, oldest first.
    pub operations: Vec<OperationRecord>,
    /// The payment methods (a product's percent decides what a customer's payment is worth).
    pub methods: Vec<PaymentMethod>,
    /// What the payment's last event told the merchant.
    pub reported: Reported,
}

/// A decision about one payment from its snapshot; `None` = nothing to write (the request is
/// refused in this status, or another caller already made the change).
pub type Decide<'a> = &'a (dyn Fn(&Snapshot) -> Option<SettlementPlan> + Sync);
