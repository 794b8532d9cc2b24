//! A source cancels its own payment: byfly-core decides from a snapshot read in the write
//! transaction (refused once paid, cancelled, expired or refunded); the current operation is
//! abandoned — still followed to its end, money it takes is credited — and its terminal is asked
//! to end it (a real terminal may not: it then keeps the terminal until its deadline).

use byfly_core::{ErrorCode, PaymentStatus};

use super::error::ServiceError;
use super::process::cancel_on_terminal;
use super::settle::on_cancel;
use crate::app::App;
use crate::random::event_id;
use crate::store::PaymentRecord;

/// Cancels `payment`.
pub async fn cancel(app: &App, payment: &PaymentRecord) -> Result<(), ServiceError> {
    let refused = match payment.status {
        PaymentStatus::Paid => Some(ErrorCode::AlreadyPaid),
        PaymentStatus::Cancelled => Some(ErrorCode::PaymentCancelled),
        PaymentStatus::Expired => Some(ErrorCode::PaymentExpired),
        PaymentStatus::Refunded => Some(ErrorCode::PaymentRefunded),
        _ => None,
    };
    if let Some(code) = refused {
        return Err(ServiceError::code(code));
    }
    let abandoned = app
        .store
        .cancel_payment(payment.id, app.now(), &event_id(), &on_cancel)
        .await?
        .ok_or_else(|| ServiceError::code(ErrorCode::InvalidStatus))?;
    let terminals = app.store.terminals().await?;
    for op in &abandoned {
        if let Some(terminal) = terminals.iter().find(|t| t.id == op.terminal_id) {
            cancel_on_terminal(app, terminal, op).await;
        }
    }
    Ok(())
}
