//! Refunds: through the terminal that took the money, naming its `transactionId` and method,
//! confirmed by the customer (a QR refund) and followed by the poller like a payment. A request
//! larger than what one operation received is split over the operations that received it, largest
//! first (`spec/API.md` §3.4); its parts run one after another: the first from the request itself,
//! each next one from [`continue_open`] once the one before has completed. A part that fails ends
//! the request (the customer declined, or the terminal refused): the rest is not started, and the
//! merchant sees `partially_completed` with what did move.

use byfly_core::error::ApiError;
use byfly_core::ledger::{LedgerError, split_refund};
use byfly_core::wire::{RefundPart, RefundStatus, RefundView};
use byfly_core::{ErrorCode, Money, PaymentStatus};
use byfly_terminal::TerminalError;

use super::error::ServiceError;
use super::kaspi::terminals_busy;
use super::process::{Start, hold_uncertain, read_operation_qr, release, start_process};
use super::settle::ledger_of;
use crate::app::App;
use crate::random::refund_id;
use crate::store::OperationId;
use crate::store::{
    OpState, OperationRecord, PaymentRecord, RefundClaim, RefundPartOf, RefundRequestRecord, StoreError,
};

/// How many open requests one round of [`continue_open`] looks at.
const OPEN_REQUESTS_PER_ROUND: i64 = 50;

/// What each successful payment operation still holds for refunds: what it received minus the
/// refunds made or running against it. Only an operation with the terminal's `transactionId` can
/// be named in `/v2/refund`.
fn refund_sources(operations: &[OperationRecord]) -> Vec<(&OperationRecord, Money)> {
    let given_back = |id: OperationId| -> Money {
        operations
            .iter()
            .filter(|op| op.refund_of == Some(id) && !part_failed(op))
            .map(|op| op.quote.base)
            .sum()
    };
    operations
        .iter()
        .filter(|op| {
            !op.is_refund() && op.state == OpState::Succeeded && op.terminal_transaction_id.is_some()
        })
        .map(|op| {
            (
                op,
                op.credited
                    .unwrap_or(Money::ZERO)
                    .saturating_sub(given_back(op.id)),
            )
        })
        .collect()
}

/// [`split_refund`] over the operations that can still give money back.
fn split_over_sources(
    amount: Money,
    operations: &[OperationRecord],
) -> Result<Vec<(&OperationRecord, Money)>, LedgerError> {
    let sources = refund_sources(operations);
    let by_index: Vec<(usize, Money)> = sources
        .iter()
        .enumerate()
        .map(|(at, (_, held))| (at, *held))
        .collect();
    Ok(split_refund(amount, &by_index)?
        .into_iter()
        .map(|(at, part)| (sources[at].0, part))
        .collect())
}

/// A part ended without giving anything back (and no operator still has to decide it).
fn part_failed(op: &OperationRecord) -> bool {
    matches!(op.state, OpState::Failed | OpState::StartFailed) && !part_undecided(op)
}

/// A part still running on its terminal, or waiting for an operator's decision.
fn part_undecided(op: &OperationRecord) -> bool {
    op.holds_terminal || op.needs_review || matches!(op.state, OpState::Starting | OpState::InFlight)
}

fn part_status(op: &OperationRecord) -> RefundStatus {
    if part_undecided(op) {
        RefundStatus::WaitingConfirmation
    } else if op.state == OpState::Succeeded {
        RefundStatus::Completed
    } else {
        RefundStatus::Failed
    }
}

/// What a completed part gave back: what its terminal reported moving.
fn moved(op: &OperationRecord) -> Money {
    if op.state == OpState::Succeeded {
        op.gross.unwrap_or(op.quote.base)
    } else {
        Money::ZERO
    }
}

/// The parts of `request` started so far, in the order they ran.
fn started_parts<'a>(
    request: &RefundRequestRecord,
    operations: &'a [OperationRecord],
) -> Vec<&'a OperationRecord> {
    operations
        .iter()
        .filter(|op| op.refund_id.as_deref() == Some(request.refund_id.as_str()))
        .collect()
}

/// What of the request no part has taken on yet (parts that failed took nothing).
fn not_yet_started(request: &RefundRequestRecord, parts: &[&OperationRecord]) -> Money {
    let taken: Money = parts
        .iter()
        .filter(|op| !part_failed(op))
        .map(|op| op.quote.base)
        .sum();
    request.amount.saturating_sub(taken)
}

/// The answer for a refund request: its parts so far, the ones still queued, and where it stands.
pub fn refund_view(
    payment: &PaymentRecord,
    request: &RefundRequestRecord,
    operations: &[OperationRecord],
    app: &App,
) -> RefundView {
    let started = started_parts(request, operations);
    let mut parts: Vec<RefundPart> = started
        .iter()
        .map(|op| {
            let status = part_status(op);
            let waiting = status == RefundStatus::WaitingConfirmation;
            RefundPart {
                amount: op.quote.base,
                status,
                refund_url: op.payment_url.clone().filter(|_| waiting),
                qr_code: op.qr_code.clone().filter(|_| waiting),
            }
        })
        .collect();
    let stopped = started.iter().any(|op| part_failed(op));
    let left = not_yet_started(request, &started);
    if request.open && !stopped && left.is_positive() {
        let queued = split_over_sources(left, operations).unwrap_or_default();
        parts.extend(queued.into_iter().map(|(_, amount)| RefundPart {
            amount,
            status: RefundStatus::Queued,
            refund_url: None,
            qr_code: None,
        }));
    }
    let refunded_amount: Money = started.iter().map(|op| moved(op)).sum();
    let running = parts
        .iter()
        .find(|part| part.status == RefundStatus::WaitingConfirmation);
    let status = if running.is_some() || parts.iter().any(|part| part.status == RefundStatus::Queued) {
        RefundStatus::WaitingConfirmation
    } else if refunded_amount >= request.amount {
        RefundStatus::Completed
    } else if refunded_amount.is_positive() {
        RefundStatus::PartiallyCompleted
    } else {
        RefundStatus::Failed
    };
    RefundView {
        refund_id: request.refund_id.clone(),
        transaction_id: payment.transaction_id.clone(),
        amount: request.amount,
        status,
        refund_url: running.and_then(|part| part.refund_url.clone()),
        qr_code: running.and_then(|part| part.qr_code.clone()),
        created_at: app.settings.offset.format(request.created_at),
        refunded_amount,
        parts,
    }
}

/// `POST /api/payment/{id}/refund`: gives back `requested` (default: everything received and not
/// yet refunded) through the terminals that took the money, naming each `transactionId` and
/// method. The customer confirms a QR refund in the Kaspi app; the answer carries the first
/// part's confirmation link.
pub async fn start_refund(
    app: &App,
    payment: PaymentRecord,
    requested: Option<Money>,
) -> Result<RefundView, ServiceError> {
    // Terminals move whole tenge: a refund of tiyn could not be made as asked.
    if let Some(amount) = requested
        && Money::from_tenge(amount.ceil_tenge()) != amount
    {
        return Err(ServiceError::Refused(ApiError::with_message(
            ErrorCode::ValidationError,
            "Сумма возврата должна быть целым числом тенге",
        )));
    }
    if app.store.open_refund_request(payment.id).await?.is_some() {
        return Err(refund_running());
    }
    let operations = app.store.operations(payment.id).await?;
    let (ledger, _) = ledger_of(&payment, &operations);
    // Allowed from every status that holds money not yet refunded (paid, partially paid, a
    // cancelled payment that had received some, a refunded one paid again).
    if ledger.refundable().is_zero() {
        return Err(ServiceError::code(match payment.status {
            PaymentStatus::Refunded => ErrorCode::PaymentRefunded,
            PaymentStatus::Paid | PaymentStatus::PartiallyPaid => ErrorCode::NothingToRefund,
            _ => ErrorCode::InvalidStatus,
        }));
    }
    let amount = ledger.plan_refund(requested).map_err(|err| match err {
        LedgerError::RefundTooLarge { .. } => ServiceError::code(ErrorCode::RefundTooLarge),
        _ if requested.is_some() => ServiceError::Refused(ApiError::with_message(
            ErrorCode::ValidationError,
            "Сумма возврата должна быть больше 0",
        )),
        _ => ServiceError::code(ErrorCode::NothingToRefund),
    })?;
    // The default (everything held) may include tiyn no terminal can give back.
    let amount = if requested.is_none() {
        amount.floor_tenge()
    } else {
        amount
    };
    let parts = split_over_sources(amount, &operations).map_err(|_| {
        ServiceError::Refused(ApiError::with_message(
            ErrorCode::RefundTooLarge,
            "Сумма возврата больше той, что терминалы могут вернуть по операциям платежа",
        ))
    })?;
    let (source, first) = parts[0];
    let refund_id = refund_id();
    let request = RefundPartOf::New {
        refund_id: &refund_id,
        total: amount,
    };
    let operation_id = match claim_part(app, &payment, source, first, request).await? {
        RefundClaim::Claimed(id) => id,
        RefundClaim::TerminalBusy => return Err(terminals_busy(app).await?),
        RefundClaim::PaymentChanged => return Err(refund_running()),
    };
    run_part(app, payment.status, source, operation_id).await?;
    let request = app
        .store
        .refund_request(&refund_id)
        .await?
        .ok_or_else(|| ServiceError::internal("refund request vanished"))?;
    let operations = app.store.operations(payment.id).await?;
    Ok(refund_view(&payment, &request, &operations, app))
}

/// Another refund of the payment runs (or the payment changed while this one was being claimed).
fn refund_running() -> ServiceError {
    ServiceError::Refused(ApiError::with_message(
        ErrorCode::InvalidStatus,
        "По платежу уже выполняется возврат (или его статус изменился): дождитесь его завершения",
    ))
}

async fn claim_part(
    app: &App,
    payment: &PaymentRecord,
    source: &OperationRecord,
    amount: Money,
    request: RefundPartOf<'_>,
) -> Result<RefundClaim, StoreError> {
    let started = app.now();
    app.store
        .claim_refund(
            payment.status,
            source,
            amount,
            request,
            started,
            started + app.timing.operation_deadline,
        )
        .await
}

/// Starts a claimed part on the terminal that took `source`'s money and reads its confirmation QR.
/// A part whose start got no answer is "possibly started": held, never sent again blindly.
async fn run_part(
    app: &App,
    payment_status: PaymentStatus,
    source: &OperationRecord,
    operation_id: OperationId,
) -> Result<(), ServiceError> {
    let terminal = app.store.terminal(source.terminal_id).await?;
    let terminal = terminal.ok_or_else(|| ServiceError::internal("operation without terminal"))?;
    let client = match app.pool.client(&terminal) {
        Ok(client) => client,
        Err(err) => {
            release(app, operation_id, &err).await?;
            return Err(ServiceError::code(ErrorCode::TerminalUnavailable));
        }
    };
    let part = app
        .store
        .operation(operation_id)
        .await?
        .ok_or_else(|| ServiceError::internal("refund part vanished"))?;
    let method = source.cheque_method.clone().unwrap_or_else(|| "qr".to_owned());
    let transaction_id = source.terminal_transaction_id.clone().unwrap_or_default();
    let whole = part.quote.base.ceil_tenge();
    let start = start_process(app, &terminal, &client, || {
        client.refund(&method, whole, &transaction_id, false)
    });
    let process = match start.await {
        Start::Started(process) => process,
        Start::Refused(err) => {
            let busy = matches!(err, TerminalError::Busy(_));
            release(app, operation_id, &err).await?;
            return Err(ServiceError::code(if busy {
                ErrorCode::TerminalsBusy
            } else {
                ErrorCode::TerminalUnavailable
            }));
        }
        Start::Uncertain(reason) => {
            // Never sent again blindly: the terminal may be refunding already. It stays held
            // until the deadline, then an operator checks the terminal's history.
            tracing::warn!(terminal = terminal.id.get(), operation_id = operation_id.get(), %reason, "refund start uncertain: terminal held");
            let reason = format!("/v2/refund без ответа: терминал мог начать возврат ({reason})");
            hold_uncertain(app, operation_id, &reason).await?;
            return Err(ServiceError::code(ErrorCode::TerminalUnavailable));
        }
    };
    app.store
        .operation_started(
            operation_id,
            &process.process_id,
            app.now(),
            payment_status,
            payment_status,
        )
        .await?
        .then_some(())
        .ok_or_else(|| ServiceError::internal("refund answered after its claim was given up"))?;
    // A card refund shows no QR (the card is presented at the terminal); a QR refund's
    // confirmation QR appears after a few seconds, while the screen may still show the payment's.
    if method != "card"
        && let Err(err) = read_operation_qr(app, &terminal, operation_id, None).await?
    {
        // The refund still runs and is followed by the poller; the customer confirms in the app.
        tracing::warn!(operation_id = operation_id.get(), %err, "refund confirmation QR not read");
    }
    Ok(())
}

/// One round of moving open refund requests on: each whose last part completed starts its next
/// part (on a busy terminal it waits for the next round); each that is done, or stopped by a
/// failed part, is closed.
pub async fn continue_open(app: &App) -> Result<(), StoreError> {
    for request in app.store.open_refund_requests(OPEN_REQUESTS_PER_ROUND).await? {
        continue_request(app, &request).await?;
    }
    Ok(())
}

/// Moves one open request on (see [`continue_open`]).
pub async fn continue_request(app: &App, request: &RefundRequestRecord) -> Result<(), StoreError> {
    let Some(payment) = app.store.payment_by_row_id(request.payment_id).await? else {
        return Ok(());
    };
    let operations = app.store.operations(payment.id).await?;
    let parts = started_parts(request, &operations);
    if parts.iter().any(|op| part_undecided(op)) {
        return Ok(());
    }
    let left = not_yet_started(request, &parts);
    if parts.iter().any(|op| part_failed(op)) || !left.is_positive() {
        app.store.close_refund_request(request.id).await?;
        return Ok(());
    }
    let next = match split_over_sources(left, &operations) {
        Ok(next) => next,
        Err(err) => {
            // Money held moved meanwhile (an operator's decision): what is left cannot be given back.
            tracing::warn!(refund_id = %request.refund_id, %err, "refund request stopped: nothing left to give back");
            app.store.close_refund_request(request.id).await?;
            return Ok(());
        }
    };
    let (source, amount) = next[0];
    let operation_id = match claim_part(app, &payment, source, amount, RefundPartOf::Open(request)).await? {
        RefundClaim::Claimed(id) => id,
        RefundClaim::TerminalBusy | RefundClaim::PaymentChanged => return Ok(()),
    };
    // Started apart from the poller's round: reading the confirmation QR takes seconds, and the
    // round has other operations to follow. The claim is made: nothing else starts this part.
    let (app, status, source, refund_id) = (
        app.clone(),
        payment.status,
        source.clone(),
        request.refund_id.clone(),
    );
    tokio::spawn(async move {
        match run_part(&app, status, &source, operation_id).await {
            Ok(()) => {}
            Err(ServiceError::Internal(cause)) => {
                tracing::error!(%refund_id, operation_id = operation_id.get(), %cause, "refund part failed inside");
            }
            Err(err) => {
                tracing::warn!(%refund_id, operation_id = operation_id.get(), %err, "refund part did not start")
            }
        }
    });
    Ok(())
}
