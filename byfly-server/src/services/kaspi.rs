//! `/kaspi`: claim a terminal, start the payment on it (asking again when its answer was lost),
//! read its QR — never a stale one — and answer with it; or answer with the operation already
//! running. Following the operation to its end is [`super::poll`].

use std::time::Duration;

use byfly_core::error::{ApiError, RetryHint};
use byfly_core::wire::KaspiResponse;
use byfly_core::{ErrorCode, MethodCode, PaymentEvent, PaymentMethod, PaymentStatus};
use byfly_terminal::Camera;

use crate::app::App;
use crate::random::event_id;
use crate::store::OperationId;
use crate::store::UnixSeconds;
use crate::store::{
    ClaimOutcome, OpState, OperationRecord, PaymentRecord, StoreError, TerminalClaim, TerminalRecord,
};

use super::error::ServiceError;
use super::process::{
    Failure, Start, cancel_on_terminal, hold_uncertain, read_operation_qr, release, start_process,
};
use super::settle::{ledger_of, on_given_up};

/// The `/kaspi` answer for an operation whose QR was read.
fn answer(payment: &PaymentRecord, op: &OperationRecord, app: &App) -> Result<KaspiResponse, ServiceError> {
    let (Some(qr), Some(url)) = (op.qr_code.clone(), op.payment_url.clone()) else {
        return Err(ServiceError::internal(format!("operation {} has no QR", op.id)));
    };
    Ok(KaspiResponse {
        transaction_id: payment.transaction_id.clone(),
        amount: op.quote.charge,
        original_amount: op.quote.base,
        commission_amount: op.quote.commission,
        commission_percent: op.quote.charged_percent(),
        payment_url: url,
        qr_code: qr,
        terminal_id: op.terminal_id.get(),
        expires_at: Some(app.settings.offset.format(op.deadline_at)),
    })
}

/// Refuses `/kaspi` on a payment that cannot take money any more.
fn refuse_final(payment: &PaymentRecord, now: UnixSeconds) -> Result<(), ServiceError> {
    let code = match payment.status {
        PaymentStatus::Paid => ErrorCode::AlreadyPaid,
        PaymentStatus::Cancelled => ErrorCode::PaymentCancelled,
        PaymentStatus::Expired => ErrorCode::PaymentExpired,
        PaymentStatus::Refunded => ErrorCode::PaymentRefunded,
        PaymentStatus::Pending | PaymentStatus::Failed if payment.expires_at <= now => {
            ErrorCode::PaymentExpired
        }
        _ => return Ok(()),
    };
    Err(ServiceError::code(code))
}

/// `POST /api/payment/{id}/kaspi`: starts (or tops up, or switches) the payment's operation.
pub async fn start(
    app: &App,
    payment: PaymentRecord,
    requested: Option<&str>,
) -> Result<KaspiResponse, ServiceError> {
    let code = MethodCode::resolve(requested);
    let methods: Vec<PaymentMethod> = app
        .store
        .payment_methods()
        .await?
        .into_iter()
        .filter(|(_, active)| *active)
        .map(|(m, _)| m)
        .collect();
    let method = methods.iter().find(|m| m.code == code).ok_or_else(|| {
        ServiceError::Refused(ApiError::with_message(
            ErrorCode::InvalidPaymentMethod,
            format!("Неизвестный способ оплаты: {code}"),
        ))
    })?;
    refuse_final(&payment, app.now())?;
    let operations = app.store.operations(payment.id).await?;
    let current = operations
        .iter()
        .find(|op| op.is_current && matches!(op.state, OpState::InFlight | OpState::Starting));
    if let Some(current) = current
        && current.quote.method == method.code
    {
        // The same method again: the operation already running is the answer (no new terminal call).
        return wait_for_qr(app, &payment, current.id).await;
    }
    let (ledger, _) = ledger_of(&payment, &operations);
    let quote = ledger
        .quote_next(method)
        .map_err(|_| ServiceError::code(ErrorCode::AlreadyPaid))?;
    let target = payment
        .status
        .apply(&PaymentEvent::OperationStarted)
        .map_err(|_| ServiceError::code(ErrorCode::InvalidStatus))?
        .to;
    let mut tried = Vec::new();
    loop {
        let started = app.now();
        let claim = TerminalClaim {
            payment_id: payment.id,
            expected_status: payment.status,
            quote: quote.clone(),
            terminal_amount: quote.terminal_amount(),
            excluded_terminals: tried.clone(),
            replace_operation: current.map(|op| op.id),
            now: started,
            deadline_at: started + app.timing.operation_deadline,
        };
        let (operation_id, terminal) = match app.store.claim_terminal(&claim).await? {
            ClaimOutcome::Claimed {
                operation_id,
                terminal,
            } => (operation_id, terminal),
            ClaimOutcome::PaymentChanged => {
                // Another request opened an operation first: answer with it once its QR is read.
                let operations = app.store.operations(payment.id).await?;
                // Only an operation still starting or running: never a finished one's QR and amount.
                return match operations
                    .iter()
                    .find(|op| op.is_current && matches!(op.state, OpState::Starting | OpState::InFlight))
                {
                    Some(op) => wait_for_qr(app, &payment, op.id).await,
                    None => Err(ServiceError::code(ErrorCode::TerminalsBusy)),
                };
            }
            ClaimOutcome::NoFreeTerminal if tried.is_empty() => return Err(no_terminal(app).await?),
            ClaimOutcome::NoFreeTerminal => return Err(ServiceError::code(ErrorCode::TerminalUnavailable)),
        };
        match run_on_terminal(
            app,
            &terminal,
            operation_id,
            quote.terminal_amount(),
            payment.status,
            target,
        )
        .await
        {
            Ok(()) => {}
            Err(Failure::TryNext(reason)) => {
                tracing::warn!(terminal = terminal.id.get(), %reason, "terminal failed to start a payment; trying the next");
                tried.push(terminal.id);
                continue;
            }
            Err(Failure::Stop(error)) => return Err(error),
        }
        if let Some(replaced) = current
            && let Some(old_terminal) = app.store.terminal(replaced.terminal_id).await?
        {
            // The abandoned operation keeps its terminal until the terminal reports it final.
            cancel_on_terminal(app, &old_terminal, replaced).await;
        }
        let operations = app.store.operations(payment.id).await?;
        let op = operations
            .iter()
            .find(|op| op.id == operation_id)
            .ok_or_else(|| ServiceError::internal("operation vanished"))?;
        return answer(&payment, op, app);
    }
}

/// Why no terminal could be claimed: all busy, or none healthy.
async fn no_terminal(app: &App) -> Result<ServiceError, StoreError> {
    let counts = app.store.pool_counts().await?;
    if counts.healthy == 0 {
        return Ok(ServiceError::code(ErrorCode::TerminalUnavailable));
    }
    terminals_busy(app).await
}

/// `terminals_busy`, telling when the first terminal is expected to be free: an abandoned or
/// unpaid operation keeps its terminal until the terminal itself ends it (a real terminal has no
/// working remote cancel), at the latest at the operation's deadline.
pub async fn terminals_busy(app: &App) -> Result<ServiceError, StoreError> {
    let mut error = ApiError::new(ErrorCode::TerminalsBusy);
    let t = app.now();
    if let Some(free_at) = app.store.earliest_release(t).await? {
        // Never "now": a terminal is polled about once a second before it is seen free.
        let after = u64::try_from((free_at - t).max(1)).unwrap_or(1);
        error = error.with_retry(RetryHint {
            after_secs: after,
            at: app.settings.offset.format(free_at.max(t + 1)),
        });
    }
    Ok(ServiceError::Refused(error))
}

/// Starts the payment on the claimed terminal and reads its QR — never the QR its screen still
/// shows for the terminal's previous operation.
async fn run_on_terminal(
    app: &App,
    terminal: &TerminalRecord,
    operation_id: OperationId,
    amount: i64,
    from: PaymentStatus,
    to: PaymentStatus,
) -> Result<(), Failure> {
    let client = match app.pool.client(terminal) {
        Ok(client) => client,
        Err(err) => return Err(release(app, operation_id, &err).await?),
    };
    // What the screen shows before the payment starts: if it lingers, it is not the new QR (also
    // when it is the QR of an operation whose QR we never read).
    let camera = Camera::new(terminal.terminal.camera_url.clone(), Duration::from_secs(5)).ok();
    let on_screen = match &camera {
        Some(camera) => byfly_terminal::qr_on_screen(camera).await,
        None => None,
    };
    let process = match start_process(app, terminal, &client, || client.payment(amount, false)).await {
        Start::Started(process) => process,
        Start::Refused(err) => return Err(release(app, operation_id, &err).await?),
        Start::Uncertain(reason) => {
            // Never the next terminal while this one may be running the payment: it stays held
            // until the operation's deadline, then goes to review.
            tracing::warn!(terminal = terminal.id.get(), operation_id = operation_id.get(), %reason, "payment start uncertain: terminal held");
            let reason = format!("/v2/payment без ответа: терминал мог начать операцию ({reason})");
            hold_uncertain(app, operation_id, &reason).await?;
            return Err(Failure::Stop(ServiceError::code(ErrorCode::TerminalUnavailable)));
        }
    };
    if !app
        .store
        .operation_started(operation_id, &process.process_id, app.now(), from, to)
        .await?
    {
        // Far slower than any terminal call may be: the claim was given up. The terminal may run a
        // process nobody holds; it ends by itself, and its terminal answers 107 meanwhile.
        tracing::error!(operation_id = operation_id.get(), process = %process.process_id, "terminal answered after its claim was given up");
        return Err(Failure::Stop(ServiceError::code(ErrorCode::TerminalUnavailable)));
    }
    match read_operation_qr(app, terminal, operation_id, on_screen.as_deref()).await? {
        Ok(()) => Ok(()),
        Err(err) => {
            tracing::warn!(terminal = terminal.id.get(), %err, "QR not read from the camera");
            app.store
                .abandon_unreadable(operation_id, app.now(), &event_id(), &on_given_up(operation_id))
                .await?;
            client.cancel(&process.process_id).await.ok();
            Err(Failure::Stop(ServiceError::code(ErrorCode::QrNotFound)))
        }
    }
}

/// Waits (bounded) until another request's operation has its QR, then answers with it.
async fn wait_for_qr(
    app: &App,
    payment: &PaymentRecord,
    operation_id: OperationId,
) -> Result<KaspiResponse, ServiceError> {
    let deadline = std::time::Instant::now() + app.timing.qr_scan.deadline + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        let operations = app.store.operations(payment.id).await?;
        let Some(op) = operations.iter().find(|op| op.id == operation_id) else {
            break;
        };
        if op.qr_code.is_some() {
            return answer(payment, op, app);
        }
        if !op.is_current || op.state == OpState::StartFailed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ServiceError::code(ErrorCode::TerminalsBusy))
}
