//! Starting terminal operations for `/kaspi`: claim a terminal, start the payment (asking again when
//! its answer was lost), read the QR — and what payments and refunds share for that. Following them
//! to their end is `poll`; refunds are `refunds`.

use std::time::Duration;

use byfly_core::error::ApiError;
use byfly_core::error::RetryHint;
use byfly_core::wire::KaspiResponse;
use byfly_core::{ErrorCode, MethodCode, PaymentEvent, PaymentMethod, PaymentStatus};
use byfly_terminal::protocol::ProcessStarted;
use byfly_terminal::{Camera, CameraError, QrScan, Terminal, TerminalError, payment_url, read_new_qr};

use crate::http::{AppState, HttpError, now};
use crate::settle::{OpState, OperationRecord, ledger_of, on_given_up};
use crate::store::{ClaimOutcome, PaymentRecord, PreviousScreen, StoreError, TerminalClaim, TerminalRecord};

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

pub(crate) enum Failure {
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
pub(crate) enum Start {
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
pub(crate) async fn start_process<F>(
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
            hold_uncertain(state, operation_id, &reason).await?;
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
                .abandon_unreadable(operation_id, now(), &event_id(), &on_given_up(operation_id))
                .await?;
            client.cancel(&process.process_id).await.ok();
            Err(Failure::Stop(HttpError::code(ErrorCode::QrNotFound)))
        }
    }
}

/// Reads the QR the terminal shows for `operation_id` from its camera — never the one read for its
/// previous operation, nor `on_screen_before` (what the screen showed before it started), which
/// the screen may still show — and stores it with its payment link.
/// How long a terminal's screen may still show the previous operation's QR after a new one
/// starts (the terminal spec's §7 says about 1.5 s): waited out when that QR was never read.
const UNKNOWN_SCREEN_REDRAW: Duration = Duration::from_millis(2_000);

pub(crate) async fn read_operation_qr(
    state: &AppState,
    terminal: &TerminalRecord,
    operation_id: i64,
    on_screen_before: Option<&str>,
) -> Result<Result<(), CameraError>, StoreError> {
    let previous = state.store.previous_qr(terminal.id, operation_id).await?;
    if previous == PreviousScreen::Unknown {
        // The last QR this screen showed was never read, so it cannot be told from the new one by
        // its text: let the screen redraw before reading, rather than hand out a stale QR.
        tokio::time::sleep(UNKNOWN_SCREEN_REDRAW).await;
    }
    let previous = match &previous {
        PreviousScreen::Qr(qr) => Some(qr.as_str()),
        PreviousScreen::Nothing | PreviousScreen::Unknown => None,
    };
    let stale: Vec<&str> = previous.into_iter().chain(on_screen_before).collect();
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
/// A start that got no answer we could read: the operation keeps its terminal until its deadline
/// (then an operator checks the terminal's history) and stops deciding the payment.
pub(crate) async fn hold_uncertain(
    state: &AppState,
    operation_id: i64,
    reason: &str,
) -> Result<(), StoreError> {
    state
        .store
        .start_uncertain(
            operation_id,
            reason,
            now(),
            &event_id(),
            &on_given_up(operation_id),
        )
        .await
}

pub(crate) async fn release(
    state: &AppState,
    operation_id: i64,
    err: &TerminalError,
) -> Result<Failure, StoreError> {
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
