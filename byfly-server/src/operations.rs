//! Terminal operations: starting one for `/kaspi` (claim a terminal, start the payment, read the
//! QR), and following each one to its final answer (the poller, and `/status` on demand).

use std::time::Duration;

use byfly_core::error::ApiError;
use byfly_core::ledger::LedgerError;
use byfly_core::wire::{KaspiResponse, RefundStatus, RefundView};
use byfly_core::{ErrorCode, MethodCode, Money, PaymentEvent, PaymentMethod, PaymentStatus};
use byfly_terminal::{Camera, ProcessStatus, QrScan, TerminalError, payment_url, read_qr};

use crate::http::{AppState, HttpError, now};
use crate::settle::{FinalAnswer, OpState, OperationRecord, ledger_of};
use crate::store::{ClaimOutcome, PaymentRecord, RefundClaim, StoreError, TerminalClaim, TerminalRecord};

/// Timing of operations (`spec/KASPI_TERMINAL.md` §4–§5).
#[derive(Debug, Clone, Copy)]
pub struct OperationTiming {
    /// Camera frames: interval and deadline.
    pub qr_scan: QrScan,
    /// Seconds between polls of an operation in flight.
    pub poll_interval: i64,
    /// Seconds between `actualize` calls while the terminal says `unknown`.
    pub actualize_interval: i64,
    /// Seconds of `unknown` after which an operation is flagged for manual review.
    pub unknown_review_after: i64,
    /// Seconds the terminal gives a customer (QR scan + confirmation).
    pub operation_deadline: i64,
}

impl Default for OperationTiming {
    fn default() -> Self {
        OperationTiming {
            qr_scan: QrScan::default(),
            poll_interval: 1,
            actualize_interval: 10,
            unknown_review_after: 180,
            operation_deadline: 300,
        }
    }
}

/// A new outbox event id (`evt_` + 128 random bits), stable across the event's delivery attempts.
pub fn event_id() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    format!("evt_{}", hex::encode(bytes))
}

/// The `/kaspi` answer for an operation whose QR was read.
fn answer(
    payment: &PaymentRecord,
    op: &OperationRecord,
    state: &AppState,
) -> Result<KaspiResponse, HttpError> {
    let (Some(qr), Some(url)) = (op.qr_code.clone(), op.payment_url.clone()) else {
        return Err(HttpError::internal(format!("operation {} has no QR", op.id)));
    };
    Ok(KaspiResponse {
        transaction_id: payment.transaction_id.clone(),
        amount: op.quote.charge,
        original_amount: op.quote.base,
        commission_amount: op.quote.commission,
        commission_percent: op.quote.charged_percent(),
        payment_url: url,
        qr_code: qr,
        terminal_id: op.terminal_id,
        expires_at: Some(state.settings.offset.format(op.deadline_at)),
    })
}

/// Refuses `/kaspi` on a payment that cannot take money any more.
fn refuse_final(payment: &PaymentRecord, now: i64) -> Result<(), HttpError> {
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
    Err(HttpError::code(code))
}

/// `POST /api/payment/{id}/kaspi`: starts (or tops up, or switches) the payment's operation.
pub async fn start(
    state: &AppState,
    payment: PaymentRecord,
    requested: Option<&str>,
) -> Result<KaspiResponse, HttpError> {
    let code = MethodCode::resolve(requested);
    let methods: Vec<PaymentMethod> = state
        .store
        .payment_methods()
        .await?
        .into_iter()
        .filter(|(_, active)| *active)
        .map(|(m, _)| m)
        .collect();
    let method = methods.iter().find(|m| m.code == code).ok_or_else(|| {
        HttpError(ApiError::with_message(
            ErrorCode::InvalidPaymentMethod,
            format!("Неизвестный способ оплаты: {code}"),
        ))
    })?;
    refuse_final(&payment, now())?;
    let operations = state.store.operations(payment.id).await?;
    let current = operations
        .iter()
        .find(|op| op.is_current && matches!(op.state, OpState::InFlight | OpState::Starting));
    if let Some(current) = current
        && current.quote.method == method.code
    {
        // The same method again: the operation already running is the answer (no new terminal call).
        return wait_for_qr(state, &payment, current.id).await;
    }
    let (ledger, _) = ledger_of(&payment, &operations);
    let quote = ledger
        .quote_next(method)
        .map_err(|_| HttpError::code(ErrorCode::AlreadyPaid))?;
    let target = payment
        .status
        .apply(&PaymentEvent::OperationStarted)
        .map_err(|_| HttpError::code(ErrorCode::InvalidStatus))?
        .to;
    let mut tried = Vec::new();
    loop {
        let started = now();
        let claim = TerminalClaim {
            payment_id: payment.id,
            expected_status: payment.status,
            quote: quote.clone(),
            terminal_amount: quote.terminal_amount(),
            excluded_terminals: tried.clone(),
            replace_operation: current.map(|op| op.id),
            now: started,
            deadline_at: started + state.timing.operation_deadline,
        };
        let (operation_id, terminal) = match state.store.claim_terminal(&claim).await? {
            ClaimOutcome::Claimed {
                operation_id,
                terminal,
            } => (operation_id, terminal),
            ClaimOutcome::PaymentChanged => {
                // Another request opened an operation first: answer with it once its QR is read.
                let operations = state.store.operations(payment.id).await?;
                return match operations
                    .iter()
                    .find(|op| op.is_current && op.state != OpState::StartFailed)
                {
                    Some(op) => wait_for_qr(state, &payment, op.id).await,
                    None => Err(HttpError::code(ErrorCode::TerminalsBusy)),
                };
            }
            ClaimOutcome::NoFreeTerminal if tried.is_empty() => return Err(no_terminal(state).await?),
            ClaimOutcome::NoFreeTerminal => return Err(HttpError::code(ErrorCode::TerminalUnavailable)),
        };
        match run_on_terminal(
            state,
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
                tracing::warn!(terminal = terminal.id, %reason, "terminal failed to start a payment; trying the next");
                tried.push(terminal.id);
                continue;
            }
            Err(Failure::Stop(error)) => return Err(error),
        }
        if let Some(replaced) = current
            && let Some(old_terminal) = state.store.terminal(replaced.terminal_id).await?
        {
            // The abandoned operation keeps its terminal until the terminal reports it final.
            cancel_on_terminal(state, &old_terminal, replaced).await;
        }
        let operations = state.store.operations(payment.id).await?;
        let op = operations
            .iter()
            .find(|op| op.id == operation_id)
            .ok_or_else(|| HttpError::internal("operation vanished"))?;
        return answer(&payment, op, state);
    }
}

/// Why no terminal could be claimed: all busy, or none healthy.
async fn no_terminal(state: &AppState) -> Result<HttpError, StoreError> {
    let counts = state.store.pool_counts().await?;
    Ok(HttpError::code(if counts.healthy > 0 {
        ErrorCode::TerminalsBusy
    } else {
        ErrorCode::TerminalUnavailable
    }))
}

enum Failure {
    /// This terminal could not start it; the operation was released: try another terminal.
    TryNext(String),
    /// Stop with this answer.
    Stop(HttpError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Stop(error.into())
    }
}

/// Starts the payment on the claimed terminal and reads its QR.
async fn run_on_terminal(
    state: &AppState,
    terminal: &TerminalRecord,
    operation_id: i64,
    amount: i64,
    from: PaymentStatus,
    to: PaymentStatus,
) -> Result<(), Failure> {
    let client = match state.pool.client(terminal) {
        Ok(client) => client,
        Err(err) => return Err(release(state, operation_id, &err).await?),
    };
    if client.tokens().is_none() {
        match client.register().await {
            Ok(tokens) => state.store.save_terminal_tokens(terminal.id, &tokens).await?,
            Err(err) => return Err(release(state, operation_id, &err).await?),
        }
    }
    let started = client.payment(amount, false).await;
    state.pool.persist_refreshed_tokens(terminal.id, &client).await?;
    let process = match started {
        Ok(process) => process,
        Err(err) => return Err(release(state, operation_id, &err).await?),
    };
    state
        .store
        .operation_started(operation_id, &process.process_id, now(), from, to)
        .await?;
    let camera = Camera::new(terminal.terminal.camera_url.clone(), Duration::from_secs(5))
        .map_err(|err| Failure::Stop(HttpError::internal(err)))?;
    match read_qr(&camera, state.timing.qr_scan).await {
        Ok(qr) => {
            state
                .store
                .operation_qr(operation_id, &qr, &payment_url(&qr))
                .await?;
            Ok(())
        }
        Err(err) => {
            tracing::warn!(terminal = terminal.id, %err, "QR not read from the camera");
            state.store.abandon_unreadable(operation_id).await?;
            client.cancel(&process.process_id).await.ok();
            Err(Failure::Stop(HttpError::code(ErrorCode::QrNotFound)))
        }
    }
}

/// `/v2/payment` could not start on the claimed terminal: the operation is released and the next
/// terminal is to be tried. An unreachable or broken terminal leaves the pool until its health check
/// passes; a busy one (someone else uses it) stays healthy.
async fn release(state: &AppState, operation_id: i64, err: &TerminalError) -> Result<Failure, StoreError> {
    let unhealthy = !matches!(err, TerminalError::Busy(_));
    state
        .store
        .start_failed(operation_id, unhealthy.then(|| err.to_string()).as_deref())
        .await?;
    Ok(Failure::TryNext(err.to_string()))
}

/// Asks the terminal to end an abandoned operation early; the operation still holds the terminal
/// until the terminal reports a final status (a customer may be paying right now).
pub async fn cancel_on_terminal(state: &AppState, terminal: &TerminalRecord, op: &OperationRecord) {
    if let (Ok(client), Some(process)) = (state.pool.client(terminal), op.process_id.as_deref())
        && let Err(err) = client.cancel(process).await
    {
        tracing::info!(operation = op.id, %err, "terminal cancel not accepted; the operation is followed to its end");
    }
}

/// Waits (bounded) until another request's operation has its QR, then answers with it.
async fn wait_for_qr(
    state: &AppState,
    payment: &PaymentRecord,
    operation_id: i64,
) -> Result<KaspiResponse, HttpError> {
    let deadline = std::time::Instant::now() + state.timing.qr_scan.deadline + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        let operations = state.store.operations(payment.id).await?;
        let Some(op) = operations.iter().find(|op| op.id == operation_id) else {
            break;
        };
        if op.qr_code.is_some() {
            return answer(payment, op, state);
        }
        if !op.is_current || op.state == OpState::StartFailed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(HttpError::code(ErrorCode::TerminalsBusy))
}

/// Asks the terminal about one operation and records the answer; settles it when final.
pub async fn poll(state: &AppState, op: &OperationRecord) -> Result<(), StoreError> {
    let Some(process) = op.process_id.as_deref() else {
        return Ok(());
    };
    let Some(terminal) = state.store.terminal(op.terminal_id).await? else {
        return Ok(());
    };
    let client = match state.pool.client(&terminal) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(operation = op.id, %err, "terminal client");
            return Ok(());
        }
    };
    let t = now();
    let asked = if op.unknown_since.is_some() {
        client.actualize(process).await
    } else {
        client.status(process).await
    };
    state.pool.persist_refreshed_tokens(terminal.id, &client).await?;
    let answer = match asked {
        Ok(answer) => answer,
        Err(TerminalError::ProcessNotFound(text)) if terminal.healthy => {
            // A healthy terminal that no longer knows the process: it never took money for it.
            let raw = serde_json::json!({ "error": "process not found", "text": text }).to_string();
            state
                .store
                .settle(op.id, &FinalAnswer::Failed, &raw, t, &event_id())
                .await?;
            return Ok(());
        }
        Err(TerminalError::CannotActualize(_)) => {
            // No longer unknown: ask with status next time.
            state
                .store
                .record_poll(op.id, "{}", t + state.timing.poll_interval, None, false)
                .await?;
            return Ok(());
        }
        Err(err) => {
            tracing::warn!(operation = op.id, %err, "poll failed; will ask again");
            state
                .store
                .record_poll(
                    op.id,
                    "{}",
                    t + state.timing.poll_interval.max(2),
                    op.unknown_since,
                    false,
                )
                .await?;
            return Ok(());
        }
    };
    let raw = answer.raw.to_string();
    match answer.status {
        ProcessStatus::Success => {
            let gross = answer
                .amount
                .filter(|a| a.is_positive())
                .unwrap_or(byfly_core::Money::from_tenge(op.terminal_amount));
            let product_method = answer.add_info.product.map(byfly_core::ProductType::method_code);
            state
                .store
                .settle(
                    op.id,
                    &FinalAnswer::Succeeded {
                        gross,
                        product_method,
                        transaction_id: answer.transaction_id.clone(),
                        cheque_method: answer.cheque.method.clone(),
                    },
                    &raw,
                    t,
                    &event_id(),
                )
                .await?;
        }
        ProcessStatus::Fail => {
            state
                .store
                .settle(op.id, &FinalAnswer::Failed, &raw, t, &event_id())
                .await?;
        }
        ProcessStatus::Wait => {
            state
                .store
                .record_poll(op.id, &raw, t + state.timing.poll_interval, None, false)
                .await?;
        }
        ProcessStatus::Unknown => {
            let since = op.unknown_since.unwrap_or(t);
            let review = t - since >= state.timing.unknown_review_after;
            state
                .store
                .record_poll(
                    op.id,
                    &raw,
                    t + state.timing.actualize_interval,
                    Some(since),
                    review,
                )
                .await?;
        }
    }
    Ok(())
}

/// Polls the due operations (of one payment, or all) once. Returns how many were asked.
pub async fn poll_due(state: &AppState, payment_id: Option<i64>) -> Result<usize, StoreError> {
    let lease = 15;
    let due = state
        .store
        .claim_due_operations(now(), lease, payment_id, 20)
        .await?;
    for op in &due {
        poll(state, op).await?;
    }
    Ok(due.len())
}

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
    match payment.status {
        PaymentStatus::Paid | PaymentStatus::PartiallyPaid => {}
        PaymentStatus::Refunded => return Err(HttpError::code(ErrorCode::PaymentRefunded)),
        _ => return Err(HttpError::code(ErrorCode::InvalidStatus)),
    }
    let operations = state.store.operations(payment.id).await?;
    let (ledger, _) = ledger_of(&payment, &operations);
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
        RefundClaim::TerminalBusy => return Err(HttpError::code(ErrorCode::TerminalsBusy)),
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
    let process = match client
        .refund(&method, amount.ceil_tenge(), &transaction_id, false)
        .await
    {
        Ok(process) => process,
        Err(err) => {
            let busy = matches!(err, TerminalError::Busy(_));
            release(state, operation_id, &err).await?;
            return Err(HttpError::code(if busy {
                ErrorCode::TerminalsBusy
            } else {
                ErrorCode::TerminalUnavailable
            }));
        }
    };
    state.pool.persist_refreshed_tokens(terminal.id, &client).await?;
    state
        .store
        .operation_started(
            operation_id,
            &process.process_id,
            now(),
            payment.status,
            payment.status,
        )
        .await?;
    let camera = Camera::new(terminal.terminal.camera_url.clone(), Duration::from_secs(5))
        .map_err(HttpError::internal)?;
    // A card refund may show no QR: the refund still runs and is followed by the poller.
    if let Ok(qr) = read_qr(&camera, state.timing.qr_scan).await {
        state
            .store
            .operation_qr(operation_id, &qr, &payment_url(&qr))
            .await?;
    }
    let op = state
        .store
        .refund_operation(&refund_id)
        .await?
        .ok_or_else(|| HttpError::internal("refund vanished"))?;
    Ok(refund_view(&payment, &op, state))
}
