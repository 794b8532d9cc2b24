//! A process on a terminal, as payments and refunds share it: starting it (asking again when the
//! answer was lost), reading its QR from the camera, holding a terminal whose start is uncertain,
//! releasing one that never started, and asking a terminal to end an abandoned one.

use std::time::Duration;

use byfly_terminal::protocol::ProcessStarted;
use byfly_terminal::{Camera, CameraError, Terminal, TerminalError, payment_url, read_new_qr};

use crate::app::App;
use crate::carried::CarriedWork;
use crate::random::event_id;
use crate::store::OperationId;
use crate::store::{OperationRecord, PreviousScreen, StoreError, TerminalRecord};

use super::error::ServiceError;
use super::settle::on_given_up;

/// Runs `work` to its end even when the client that asked for it goes away (axum drops a handler's
/// future on disconnect): once a terminal may be running the operation, what it does must be
/// recorded, not abandoned halfway. The task is counted in `carried_work`, so a shutdown waits for
/// it.
///
/// A failure inside that nobody is left to answer (the client went away) is logged here, in the
/// request's span; one that is answered is logged by the HTTP layer.
pub async fn carried_on<T: Send + 'static>(
    carried_work: &CarriedWork,
    work: impl std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
) -> Result<T, ServiceError> {
    use tracing::Instrument;
    let (answer, answered) = tokio::sync::oneshot::channel();
    let carried = async move {
        if let Err(Err(ServiceError::Internal(cause))) = answer.send(work.await) {
            tracing::error!(%cause, "internal error after the client left");
        }
    };
    carried_work.spawn(carried.instrument(tracing::Span::current()));
    answered.await.map_err(ServiceError::internal)?
}

/// Why a start on one terminal did not go through.
pub(crate) enum Failure {
    /// This terminal could not start it; the operation was released: try another terminal.
    TryNext(String),
    /// Stop with this answer.
    Stop(ServiceError),
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
    app: &App,
    terminal: &TerminalRecord,
    client: &Terminal,
    call: impl Fn() -> F,
) -> Start
where
    F: std::future::Future<Output = Result<ProcessStarted, TerminalError>>,
{
    let mut answer = call().await;
    if let Err(TerminalError::NeedsRegistration(why)) = &answer {
        match app.pool.tokens_refused(terminal.id, client, why).await {
            Ok(true) => answer = call().await,
            Ok(false) => {}
            Err(err) => {
                tracing::error!(terminal = terminal.id.get(), %err, "could not record refused tokens")
            }
        }
    }
    let answer = match answer {
        Err(first) if first.may_have_acted() => {
            tracing::warn!(terminal = terminal.id.get(), %first, "a start may have acted without an answer; asking again");
            match call().await {
                Ok(process) => {
                    tracing::info!(
                        terminal = terminal.id.get(),
                        "the first call had not started anything"
                    );
                    Ok(process)
                }
                Err(second) => Err(format!("{first}; asked again: {second}")),
            }
        }
        Ok(process) => Ok(process),
        Err(err) => {
            persist_tokens(app, terminal, client).await;
            return Start::Refused(err);
        }
    };
    persist_tokens(app, terminal, client).await;
    match answer {
        Ok(process) => Start::Started(process),
        Err(reason) => Start::Uncertain(reason),
    }
}

/// Stores tokens a refresh during a call produced, at once: another process still holding the old
/// ones must find them (a refresh token works once).
async fn persist_tokens(app: &App, terminal: &TerminalRecord, client: &Terminal) {
    if let Err(err) = app.pool.persist_refreshed_tokens(terminal.id, client).await {
        tracing::error!(terminal = terminal.id.get(), %err, "could not store refreshed tokens");
    }
}

/// How long a terminal's screen may still show the previous operation's QR after a new one
/// starts (the terminal spec's §7 says about 1.5 s): waited out when that QR was never read.
const UNKNOWN_SCREEN_REDRAW: Duration = Duration::from_millis(2_000);

/// Reads the QR the terminal shows for `operation_id` from its camera — never the one read for its
/// previous operation, nor `on_screen_before` (what the screen showed before it started), which
/// the screen may still show — and stores it with its payment link.
pub(crate) async fn read_operation_qr(
    app: &App,
    terminal: &TerminalRecord,
    operation_id: OperationId,
    on_screen_before: Option<&str>,
) -> Result<Result<(), CameraError>, StoreError> {
    let previous = app.store.previous_qr(terminal.id, operation_id).await?;
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
    match read_new_qr(&camera, app.timing.qr_scan, &stale).await {
        Ok(qr) => {
            app.store
                .operation_qr(operation_id, &qr, &payment_url(&qr))
                .await?;
            Ok(Ok(()))
        }
        Err(err) => Ok(Err(err)),
    }
}

/// A start that got no answer we could read: the operation keeps its terminal until its deadline
/// (then an operator checks the terminal's history) and stops deciding the payment.
pub(crate) async fn hold_uncertain(
    app: &App,
    operation_id: OperationId,
    reason: &str,
) -> Result<(), StoreError> {
    app.store
        .start_uncertain(
            operation_id,
            reason,
            app.now(),
            &event_id(),
            &on_given_up(operation_id),
        )
        .await
}

/// `/v2/payment` could not start on the claimed terminal: the operation is released and the next
/// terminal is to be tried. An unreachable or broken terminal leaves the pool until its health check
/// passes; a busy one (someone else uses it) stays healthy.
pub(crate) async fn release(
    app: &App,
    operation_id: OperationId,
    err: &TerminalError,
) -> Result<Failure, StoreError> {
    let unhealthy = !matches!(err, TerminalError::Busy(_));
    app.store
        .start_failed(operation_id, unhealthy.then(|| err.to_string()).as_deref())
        .await?;
    Ok(Failure::TryNext(err.to_string()))
}

/// Asks the terminal to end an abandoned operation early; the operation still holds the terminal
/// until the terminal reports a final status (a customer may be paying right now).
pub async fn cancel_on_terminal(app: &App, terminal: &TerminalRecord, op: &OperationRecord) {
    if let (Ok(client), Some(process)) = (app.pool.client(terminal), op.process_id.as_deref())
        && let Err(err) = client.cancel(process).await
    {
        tracing::info!(operation = op.id.get(), %err, "terminal cancel not accepted; the operation is followed to its end");
    }
}
