//! Refunds: through the terminal that took the money, naming its `transactionId` and method,
//! confirmed by the customer (a QR refund) and followed by the poller like a payment.

use byfly_core::error::ApiError;
use byfly_core::ledger::LedgerError;
use byfly_core::wire::{RefundStatus, RefundView};
use byfly_core::{ErrorCode, Money, PaymentStatus};
use byfly_terminal::TerminalError;

use crate::http::{AppState, HttpError, now};
use crate::operations::{Start, event_id, read_operation_qr, release, start_process, terminals_busy};
use crate::settle::{OpState, OperationRecord, ledger_of};
use crate::store::{PaymentRecord, RefundClaim};

/// The answer for a refund operation.
pub fn refund_view(payment: &PaymentRecord, op: &OperationRecord, state: &AppState) -> RefundView {
    let status = match op.state {
        OpState::Starting | OpState::InFlight => RefundStatus::WaitingConfirmation,
        OpState::Succeeded => RefundStatus::Completed,
        OpState::Failed | OpState::StartFailed => RefundStatus::Failed,
    };
    RefundView {
        refund_id: op.refund_id.clone().unwrap_or_default(),
        transaction_id: payment.transaction_id.clone(),
        amount: op.quote.base,
        status,
        refund_url: op
            .payment_url
            .clone()
            .filter(|_| status == RefundStatus::WaitingConfirmation),
        qr_code: op
            .qr_code
            .clone()
            .filter(|_| status == RefundStatus::WaitingConfirmation),
        created_at: state.settings.offset.format(op.started_at),
    }
}

/// `POST /api/payment/{id}/refund`: gives back `requested` (default: everything received and not
/// yet refunded) through the terminal that took the money, naming its `transactionId` and method.
/// The customer confirms a QR refund in the Kaspi app; the answer carries the confirmation link.
pub async fn start_refund(
    state: &AppState,
    payment: PaymentRecord,
    requested: Option<Money>,
) -> Result<RefundView, HttpError> {
    // Terminals move whole tenge: a refund of tiyn could not be made as asked.
    if let Some(amount) = requested
        && Money::from_tenge(amount.ceil_tenge()) != amount
    {
        return Err(HttpError(ApiError::with_message(
            ErrorCode::ValidationError,
            "Сумма возврата должна быть целым числом тенге",
        )));
    }
    let operations = state.store.operations(payment.id).await?;
    let (ledger, _) = ledger_of(&payment, &operations);
    // Allowed from every status that holds money not yet refunded (paid, partially paid, a
    // cancelled payment that had received some, a refunded one paid again).
    if ledger.refundable().is_zero() {
        return Err(HttpError::code(match payment.status {
            PaymentStatus::Refunded => ErrorCode::PaymentRefunded,
            PaymentStatus::Paid | PaymentStatus::PartiallyPaid => ErrorCode::NothingToRefund,
            _ => ErrorCode::InvalidStatus,
        }));
    }
    let amount = ledger.plan_refund(requested).map_err(|err| match err {
        LedgerError::RefundTooLarge { .. } => HttpError::code(ErrorCode::RefundTooLarge),
        _ if requested.is_some() => HttpError(ApiError::with_message(
            ErrorCode::ValidationError,
            "Сумма возврата должна быть больше 0",
        )),
        _ => HttpError::code(ErrorCode::NothingToRefund),
    })?;
    // Refunds already made (or running) against each payment operation.
    let refunded_from = |id: i64| -> Money {
        operations
            .iter()
            .filter(|op| {
                op.refund_of == Some(id) && !matches!(op.state, OpState::Failed | OpState::StartFailed)
            })
            .map(|op| op.quote.base)
            .sum()
    };
    let source = operations
        .iter()
        .rev()
        .filter(|op| {
            !op.is_refund() && op.state == OpState::Succeeded && op.terminal_transaction_id.is_some()
        })
        .find(|op| {
            op.credited
                .unwrap_or(Money::ZERO)
                .saturating_sub(refunded_from(op.id))
                >= amount
        })
        .ok_or_else(|| {
            HttpError(ApiError::with_message(
                ErrorCode::RefundTooLarge,
                "Сумма возврата больше суммы, полученной одной операцией: верните частями",
            ))
        })?;
    let terminal = state.store.terminal(source.terminal_id).await?;
    let terminal = terminal.ok_or_else(|| HttpError::internal("operation without terminal"))?;
    let mut id_bytes = [0u8; 8];
    rand::fill(&mut id_bytes);
    let refund_id = format!("rf_{}", hex::encode(id_bytes));
    let started = now();
    let claim = state
        .store
        .claim_refund(
            payment.status,
            source,
            amount,
            &refund_id,
            started,
            started + state.timing.operation_deadline,
        )
        .await?;
    let operation_id = match claim {
        RefundClaim::Claimed(id) => id,
        RefundClaim::TerminalBusy => return Err(terminals_busy(state).await?),
        RefundClaim::PaymentChanged => return Err(HttpError::code(ErrorCode::InvalidStatus)),
    };
    let client = match state.pool.client(&terminal) {
        Ok(client) => client,
        Err(err) => {
            release(state, operation_id, &err).await?;
            return Err(HttpError::code(ErrorCode::TerminalUnavailable));
        }
    };
    let method = source.cheque_method.clone().unwrap_or_else(|| "qr".to_owned());
    let transaction_id = source.terminal_transaction_id.clone().unwrap_or_default();
    let whole = amount.ceil_tenge();
    let start = start_process(state, &terminal, &client, || {
        client.refund(&method, whole, &transaction_id, false)
    });
    let process = match start.await {
        Start::Started(process) => process,
        Start::Refused(err) => {
            let busy = matches!(err, TerminalError::Busy(_));
            release(state, operation_id, &err).await?;
            return Err(HttpError::code(if busy {
                ErrorCode::TerminalsBusy
            } else {
                ErrorCode::TerminalUnavailable
            }));
        }
        Start::Uncertain(reason) => {
            // Never sent again blindly: the terminal may be refunding already. It stays held
            // until the deadline, then an operator checks the terminal's history.
            tracing::warn!(terminal = terminal.id, operation_id, %reason, "refund start uncertain: terminal held");
            let reason = format!("/v2/refund без ответа: терминал мог начать возврат ({reason})");
            state
                .store
                .start_uncertain(operation_id, &reason, now(), &event_id())
                .await?;
            return Err(HttpError::code(ErrorCode::TerminalUnavailable));
        }
    };
    state
        .store
        .operation_started(
            operation_id,
            &process.process_id,
            now(),
            payment.status,
            payment.status,
        )
        .await?
        .then_some(())
        .ok_or_else(|| HttpError::internal("refund answered after its claim was given up"))?;
    // A card refund shows no QR (the card is presented at the terminal); a QR refund's
    // confirmation QR appears after a few seconds, while the screen may still show the payment's.
    if method != "card"
        && let Err(err) = read_operation_qr(state, &terminal, operation_id, None).await?
    {
        // The refund still runs and is followed by the poller; the customer confirms in the app.
        tracing::warn!(operation_id, %err, "refund confirmation QR not read");
    }
    let op = state
        .store
        .refund_operation(&refund_id)
        .await?
        .ok_or_else(|| HttpError::internal("refund vanished"))?;
    Ok(refund_view(&payment, &op, state))
}
