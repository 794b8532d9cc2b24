//! From stored operations to byfly-core's ledger, and the decisions about a payment: what a
//! terminal's final answer, a cancel, an expiry or a given-up operation changes. Pure: a store
//! reads a `Snapshot` inside its write transaction, hands it to a `Decide` made here, and
//! persists the [`SettlementPlan`] it gets back — the store decides nothing itself.

use byfly_core::ledger::{Ledger, Operation, OperationState, TerminalOutcome};
use byfly_core::{Money, MoneyEvent, PaymentEvent, PaymentMethod, PaymentStatus, Percent, Settlement};

use crate::store::OperationId;
use crate::store::{
    FinalAnswer, OpState, OperationRecord, PaymentRecord, Reported, SettlementPlan, Snapshot,
};

/// The ledger of a payment: operations that exist on a terminal, in start order.
pub fn ledger_of(payment: &PaymentRecord, operations: &[OperationRecord]) -> (Ledger, Vec<OperationId>) {
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

/// A plan that moves the payment to `settlement.to` with its event, and nothing else.
fn status_plan(snapshot: &Snapshot, settlement: &Settlement, figures: byfly_core::Figures) -> SettlementPlan {
    SettlementPlan {
        credited: Money::ZERO,
        refunded: Money::ZERO,
        event_method: None,
        product_method: None,
        status: settlement.to,
        becomes_paid: settlement.to == PaymentStatus::Paid && snapshot.payment.status != PaymentStatus::Paid,
        event: settlement.webhook,
        figures,
        abandon_current: None,
    }
}

/// The decision for a terminal's final answer about operation `operation_id` (payment or refund).
pub fn on_final_answer(
    operation_id: OperationId,
    answer: &FinalAnswer,
) -> impl Fn(&Snapshot) -> Option<SettlementPlan> + Sync + '_ {
    move |snapshot| {
        let operation = snapshot.operations.iter().find(|op| op.id == operation_id)?;
        if operation.is_refund() {
            if operation.state != OpState::InFlight {
                return None;
            }
            // What a terminal refund gave back: what the terminal reports moving.
            let refunded = match answer {
                FinalAnswer::Succeeded { gross, .. } => Some(*gross),
                FinalAnswer::Failed => None,
            };
            return Some(plan_refund_settlement(snapshot, refunded));
        }
        let mut plan = plan_settlement(snapshot, operation_id, answer)?;
        plan.event_method = Some(operation.quote.method.clone());
        Some(plan)
    }
}

/// The decision once the current operation `operation_id` was given up before anyone could pay it
/// (QR unreadable, a start without an answer) and no predecessor became current again: the status
/// it had before the operation, unless money arrived meanwhile (then what it paid for, with its
/// event).
pub fn on_given_up(operation_id: OperationId) -> impl Fn(&Snapshot) -> Option<SettlementPlan> + Sync {
    move |snapshot| {
        let previous = snapshot
            .operations
            .iter()
            .find(|op| op.id == operation_id)?
            .previous_status;
        let (ledger, _) = ledger_of(&snapshot.payment, &snapshot.operations);
        let settlement = follow(
            snapshot.payment.status,
            MoneyEvent::CurrentGivenUp { previous },
            &ledger,
            snapshot.reported,
        );
        Some(status_plan(snapshot, &settlement, ledger.figures()))
    }
}

/// The decision for a merchant's cancel: byfly-core's rule for the status, the current operation
/// abandoned (still followed: money it takes is credited), the `cancelled` event with the figures
/// without that operation's commission.
pub fn on_cancel(snapshot: &Snapshot) -> Option<SettlementPlan> {
    let transition = snapshot.payment.status.apply(&PaymentEvent::Cancelled).ok()?;
    let current = snapshot
        .operations
        .iter()
        .find(|op| op.is_current)
        .map(|op| op.id);
    let (mut ledger, _) = ledger_of(&snapshot.payment, &snapshot.operations);
    ledger.abandon_current();
    let settlement = Settlement {
        to: transition.to,
        webhook: transition.webhook,
        abandon_current: false,
    };
    let mut plan = status_plan(snapshot, &settlement, ledger.figures());
    plan.abandon_current = current;
    Some(plan)
}

/// The decision for the expiry sweeper: byfly-core's rule for the status, and never while an
/// operation holds a terminal or after anything was received (§5).
pub fn on_expiry(snapshot: &Snapshot) -> Option<SettlementPlan> {
    let busy_or_paid = snapshot
        .operations
        .iter()
        .any(|op| op.holds_terminal || (!op.is_refund() && op.state == OpState::Succeeded));
    if busy_or_paid {
        return None;
    }
    let transition = snapshot.payment.status.apply(&PaymentEvent::Expired).ok()?;
    let (ledger, _) = ledger_of(&snapshot.payment, &snapshot.operations);
    let settlement = Settlement {
        to: transition.to,
        webhook: transition.webhook,
        abandon_current: false,
    };
    Some(status_plan(snapshot, &settlement, ledger.figures()))
}

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
fn plan_settlement(
    snapshot: &Snapshot,
    operation_id: OperationId,
    answer: &FinalAnswer,
) -> Option<SettlementPlan> {
    let (payment, methods, reported) = (&snapshot.payment, &snapshot.methods, snapshot.reported);
    let (mut ledger, ids) = ledger_of(payment, &snapshot.operations);
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
        refunded: Money::ZERO,
        event_method: None,
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
fn plan_refund_settlement(snapshot: &Snapshot, refunded: Option<Money>) -> SettlementPlan {
    let (mut ledger, _) = ledger_of(&snapshot.payment, &snapshot.operations);
    let status = snapshot.payment.status;
    let settlement = match refunded {
        Some(amount) => {
            let event = ledger.record_refund(amount);
            follow(status, event, &ledger, snapshot.reported)
        }
        None => Settlement {
            to: status,
            webhook: None,
            abandon_current: false,
        },
    };
    let mut plan = status_plan(snapshot, &settlement, ledger.figures());
    plan.becomes_paid = false;
    plan.refunded = refunded.unwrap_or(Money::ZERO);
    plan
}
