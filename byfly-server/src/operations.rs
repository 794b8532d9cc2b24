//! Terminal operations: starting one for `/kaspi` (claim a terminal, start the payment, read the
//! QR), and following each one to its final answer (the poller, and `/status` on demand).

use std::time::Duration;

use byfly_core::error::ApiError;
use byfly_core::error::RetryHint;
use byfly_core::ledger::LedgerError;
use byfly_core::wire::{KaspiResponse, RefundStatus, RefundView};
use byfly_core::{ErrorCode, MethodCode, Money, PaymentEvent, PaymentMethod, PaymentStatus};
use byfly_terminal::protocol::ProcessStarted;
use byfly_terminal::{
    Camera, CameraError, ProcessStatus, QrScan, Terminal, TerminalError, payment_url, read_new_qr,
};

use crate::http::{AppState, HttpError, now};
use crate::settle::{FinalAnswer, OpState, OperationRecord, ledger_of};
use crate::store::{
    ClaimOutcome, PaymentRecord, PollNote, RefundClaim, StoreError, TerminalClaim, TerminalRecord,
};

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

/// Runs `work` to its end even when the client that asked for it goes away (axum drops a handler's
/// future on disconnect): once a terminal may be running the operation, what it does must be
/// recorded, not abandoned halfway.
pub async fn carried_on<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, HttpError>> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::spawn(work).await.map_err(HttpError::internal)?
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
                // Only an operation still starting or running: never a finished one's QR and amount.
                return match operations
                    .iter()
                    .find(|op| op.is_current && matches!(op.state, OpState::Starting | OpState::InFlight))
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
    if counts.healthy == 0 {
        return Ok(HttpError::code(ErrorCode::TerminalUnavailable));
    }
    terminals_busy(state).await
}

/// `terminals_busy`, telling when the first terminal is expected to be free: an abandoned or
/// unpaid operation keeps its terminal until the terminal itself ends it (a real terminal has no
/// working remote cancel), at the latest at the operation's deadline.
pub async fn terminals_busy(state: &AppState) -> Result<HttpError, StoreError> {
    let mut error = ApiError::new(ErrorCode::TerminalsBusy);
    let t = now();
    if let Some(free_at) = state.store.earliest_release(t).await? {
        // Never "now": a terminal is polled about once a second before it is seen free.
        let after = u64::try_from((free_at - t).max(1)).unwrap_or(1);
        error = error.with_retry(RetryHint {
            after_secs: after,
            at: state.settings.offset.format(free_at.max(t + 1)),
        });
    }
    Ok(HttpError(error))
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

/// What asking a terminal to start a payment came to.
enum Start {
    /// It runs, with this process id.
    Started(ProcessStarted),
    /// It refused or could not be reached: nothing runs.
    Refused(TerminalError),
    /// No answer we could read, and asking again did not prove nothing runs.
    Uncertain(String),
}

/// Asks the terminal to start a process (`/v2/payment` or `/v2/refund`, made by `call`). A call
/// whose answer was lost or unreadable may have started it under a process id we never learnt:
/// the terminal is asked once more — it runs one operation at a time, so the second call either
/// starts the only one (the first never did) or is refused as busy (the first did). Tokens the
/// terminal refused for good are dropped, unless another process stored newer ones (then the
/// call is made once more with them).
async fn start_process<F>(
    state: &AppState,
    terminal: &TerminalRecord,
    client: &Terminal,
    call: impl Fn() -> F,
) -> Start
where
    F: std::future::Future<Output = Result<ProcessStarted, TerminalError>>,
{
    let mut answer = call().await;
    if let Err(TerminalError::NeedsRegistration(why)) = &answer {
        match state.pool.tokens_refused(terminal.id, client, why).await {
            Ok(true) => answer = call().await,
            Ok(false) => {}
            Err(err) => tracing::error!(terminal = terminal.id, %err, "could not record refused tokens"),
        }
    }
    let answer = match answer {
        Err(first) if first.may_have_acted() => {
            tracing::warn!(terminal = terminal.id, %first, "a start may have acted without an answer; asking again");
            match call().await {
                Ok(process) => {
                    tracing::info!(terminal = terminal.id, "the first call had not started anything");
                    Ok(process)
                }
                Err(second) => Err(format!("{first}; asked again: {second}")),
            }
        }
        Ok(process) => Ok(process),
        Err(err) => {
            persist_tokens(state, terminal, client).await;
            return Start::Refused(err);
        }
    };
    persist_tokens(state, terminal, client).await;
    match answer {
        Ok(process) => Start::Started(process),
        Err(reason) => Start::Uncertain(reason),
    }
}

/// Stores tokens a refresh during a call produced, at once: another process still holding the old
/// ones must find them (a refresh token works once).
async fn persist_tokens(state: &AppState, terminal: &TerminalRecord, client: &Terminal) {
    if let Err(err) = state.pool.persist_refreshed_tokens(terminal.id, client).await {
        tracing::error!(terminal = terminal.id, %err, "could not store refreshed tokens");
    }
}

/// Starts the payment on the claimed terminal and reads its QR — never the QR its screen still
/// shows for the terminal's previous operation.
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
    // What the screen shows before the payment starts: if it lingers, it is not the new QR (also
    // when it is the QR of an operation whose QR we never read).
    let camera = Camera::new(terminal.terminal.camera_url.clone(), Duration::from_secs(5)).ok();
    let on_screen = match &camera {
        Some(camera) => byfly_terminal::qr_on_screen(camera).await,
        None => None,
    };
    let process = match start_process(state, terminal, &client, || client.payment(amount, false)).await {
        Start::Started(process) => process,
        Start::Refused(err) => return Err(release(state, operation_id, &err).await?),
        Start::Uncertain(reason) => {
            // Never the next terminal while this one may be running the payment: it stays held
            // until the operation's deadline, then goes to review.
            tracing::warn!(terminal = terminal.id, operation_id, %reason, "payment start uncertain: terminal held");
            let reason = format!("/v2/payment без ответа: терминал мог начать операцию ({reason})");
            state
                .store
                .start_uncertain(operation_id, &reason, now(), &event_id())
                .await?;
            return Err(Failure::Stop(HttpError::code(ErrorCode::TerminalUnavailable)));
        }
    };
    if !state
        .store
        .operation_started(operation_id, &process.process_id, now(), from, to)
        .await?
    {
        // Far slower than any terminal call may be: the claim was given up. The terminal may run a
        // process nobody holds; it ends by itself, and its terminal answers 107 meanwhile.
        tracing::error!(operation_id, process = %process.process_id, "terminal answered after its claim was given up");
        return Err(Failure::Stop(HttpError::code(ErrorCode::TerminalUnavailable)));
    }
    match read_operation_qr(state, terminal, operation_id, on_screen.as_deref()).await? {
        Ok(()) => Ok(()),
        Err(err) => {
            tracing::warn!(terminal = terminal.id, %err, "QR not read from the camera");
            state
                .store
                .abandon_unreadable(operation_id, now(), &event_id())
                .await?;
            client.cancel(&process.process_id).await.ok();
            Err(Failure::Stop(HttpError::code(ErrorCode::QrNotFound)))
        }
    }
}

/// Reads the QR the terminal shows for `operation_id` from its camera — never the one read for its
/// previous operation, nor `on_screen_before` (what the screen showed before it started), which
/// the screen may still show — and stores it with its payment link.
async fn read_operation_qr(
    state: &AppState,
    terminal: &TerminalRecord,
    operation_id: i64,
    on_screen_before: Option<&str>,
) -> Result<Result<(), CameraError>, StoreError> {
    let previous = state.store.previous_qr(terminal.id, operation_id).await?;
    let stale: Vec<&str> = previous.as_deref().into_iter().chain(on_screen_before).collect();
    let camera = match Camera::new(terminal.terminal.camera_url.clone(), Duration::from_secs(5)) {
        Ok(camera) => camera,
        Err(err) => return Ok(Err(err)),
    };
    match read_new_qr(&camera, state.timing.qr_scan, &stale).await {
        Ok(qr) => {
            state
                .store
                .operation_qr(operation_id, &qr, &payment_url(&qr))
                .await?;
            Ok(Ok(()))
        }
        Err(err) => Ok(Err(err)),
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
    // `actualize` only while the terminal says `unknown` (it refuses others with 103).
    let asked = if op.unknown_since.is_some() {
        client.actualize(process).await
    } else {
        client.status(process).await
    };
    state.pool.persist_refreshed_tokens(terminal.id, &client).await?;
    let answer = match asked {
        Ok(answer) => answer,
        Err(TerminalError::ProcessNotFound(text))
            if !(op.shown || op.qr_code.is_some() || op.unknown_since.is_some()) =>
        {
            // Never shown to a customer (no QR read, no `wait` seen): nobody could have paid it.
            let raw = serde_json::json!({ "error": "process not found", "text": text }).to_string();
            state
                .store
                .settle(op.id, &FinalAnswer::Failed, &raw, t, &event_id())
                .await?;
            return Ok(());
        }
        Err(TerminalError::ProcessNotFound(text)) => {
            // Terminals forget finished processes, and all of them on a reboot: a customer may
            // have paid this one. An operator decides; the terminal stays held until then (or
            // until an actualize gives a final answer).
            if !op.needs_review {
                tracing::warn!(
                    operation = op.id,
                    "terminal forgot an operation a customer could have paid: review"
                );
            }
            let note = PollNote {
                raw_answer: serde_json::json!({ "error": "process not found", "text": text }).to_string(),
                next_poll_at: t + state.timing.actualize_interval,
                unknown_since: op.unknown_since,
                shown: true,
                review: Some(FORGOTTEN_REVIEW.to_owned()),
            };
            state.store.record_poll(op.id, &note).await?;
            return Ok(());
        }
        Err(TerminalError::CannotActualize(_)) => {
            // No longer unknown: ask with status next time.
            let note = PollNote {
                raw_answer: "{}".to_owned(),
                next_poll_at: t + state.timing.poll_interval,
                unknown_since: None,
                shown: true,
                review: None,
            };
            state.store.record_poll(op.id, &note).await?;
            return Ok(());
        }
        Err(err) => {
            if let TerminalError::NeedsRegistration(why) = &err {
                state.pool.tokens_refused(terminal.id, &client, why).await?;
            }
            tracing::warn!(operation = op.id, %err, "poll failed; will ask again");
            let note = PollNote {
                raw_answer: serde_json::json!({ "error": err.to_string() }).to_string(),
                next_poll_at: t + state.timing.poll_interval.max(2),
                unknown_since: op.unknown_since,
                shown: false,
                review: None,
            };
            state.store.record_poll(op.id, &note).await?;
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
            let note = PollNote {
                raw_answer: raw,
                next_poll_at: t + state.timing.poll_interval,
                unknown_since: None,
                shown: true,
                review: None,
            };
            state.store.record_poll(op.id, &note).await?;
        }
        ProcessStatus::Unknown => {
            let since = op.unknown_since.unwrap_or(t);
            let review = (t - since >= state.timing.unknown_review_after).then(|| UNKNOWN_REVIEW.to_owned());
            let note = PollNote {
                raw_answer: raw,
                next_poll_at: t + state.timing.actualize_interval,
                unknown_since: Some(since),
                shown: true,
                review,
            };
            state.store.record_poll(op.id, &note).await?;
        }
    }
    Ok(())
}

/// Why an operation the terminal forgot (`101`) after a customer could have paid waits for an operator.
pub const FORGOTTEN_REVIEW: &str = "101: терминал больше не знает операцию, которую мог оплатить \
     покупатель (перезагрузка или давно завершена); проверьте историю операций на терминале";

/// Why a long `unknown` waits for an operator.
pub const UNKNOWN_REVIEW: &str =
    "unknown: терминал не знает, списаны ли деньги; проверьте историю операций на терминале";

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
