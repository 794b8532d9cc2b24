//! Following operations to their final answer: the poller's round and `/status` on demand ask each
//! terminal, record what it said, and settle the operation when its answer is final — `101` and
//! `unknown` going to review rather than being read as "nothing was paid".

use byfly_terminal::{ProcessStatus, TerminalError};

use super::settle::on_final_answer;
use crate::app::App;
use crate::random::event_id;
use crate::store::UnixSeconds;
use crate::store::{FinalAnswer, OperationRecord, PollNote, ReviewDecision, SettlementPlan, StoreError};
use crate::store::{OperationId, PaymentId};

/// Settles an operation with its final answer: byfly-core's decision from a snapshot the store
/// reads in the transaction that writes it. `None` when it was already settled. `decision`: the
/// operator's, when the answer is theirs rather than the terminal's.
pub(crate) async fn settle_final(
    app: &App,
    operation_id: OperationId,
    answer: &FinalAnswer,
    raw: &str,
    decision: Option<&ReviewDecision>,
    now: UnixSeconds,
) -> Result<Option<SettlementPlan>, StoreError> {
    app.store
        .settle(
            operation_id,
            answer,
            raw,
            decision,
            now,
            &event_id(),
            &on_final_answer(operation_id, answer),
        )
        .await
}

/// Asks the terminal about one operation and records the answer; settles it when final.
pub async fn poll(app: &App, op: &OperationRecord) -> Result<(), StoreError> {
    let Some(process) = op.process_id.as_deref() else {
        return Ok(());
    };
    let Some(terminal) = app.store.terminal(op.terminal_id).await? else {
        return Ok(());
    };
    let client = match app.pool.client(&terminal) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(operation = op.id.get(), %err, "terminal client");
            return Ok(());
        }
    };
    let t = app.now();
    // `actualize` only while the terminal says `unknown` (it refuses others with 103).
    let asked = if op.unknown_since.is_some() {
        client.actualize(process).await
    } else {
        client.status(process).await
    };
    app.pool.persist_refreshed_tokens(terminal.id, &client).await?;
    let answer = match asked {
        Ok(answer) => answer,
        Err(TerminalError::ProcessNotFound(text))
            if !(op.is_refund() || op.shown || op.qr_code.is_some() || op.unknown_since.is_some()) =>
        {
            // Never shown to a customer (no QR read, no `wait` seen): nobody could have paid it.
            // Never for a refund: read as "not refunded" when it was, it could be refunded twice.
            let raw = serde_json::json!({ "error": "process not found", "text": text }).to_string();
            settle_final(app, op.id, &FinalAnswer::Failed, &raw, None, t).await?;
            return Ok(());
        }
        Err(TerminalError::ProcessNotFound(text)) => {
            // Terminals forget finished processes, and all of them on a reboot: a customer may
            // have paid this one. An operator decides; the terminal stays held until then (or
            // until an actualize gives a final answer).
            if !op.needs_review {
                tracing::warn!(
                    operation = op.id.get(),
                    "terminal forgot an operation a customer could have paid: review"
                );
            }
            let note = PollNote {
                raw_answer: serde_json::json!({ "error": "process not found", "text": text }).to_string(),
                next_poll_at: t + app.timing.actualize_interval,
                unknown_since: op.unknown_since,
                shown: true,
                review: Some(FORGOTTEN_REVIEW.to_owned()),
                answered_at: t,
            };
            app.store.record_poll(op.id, &note).await?;
            return Ok(());
        }
        Err(TerminalError::CannotActualize(text)) => {
            // No longer unknown: ask with status next time. Said in the answers' log as it came,
            // so an operator reading it sees why the next answers are `status` ones.
            let note = PollNote {
                raw_answer:
                    serde_json::json!({ "error": "actualize refused: no longer unknown", "text": text })
                        .to_string(),
                next_poll_at: t + app.timing.poll_interval,
                unknown_since: None,
                shown: true,
                review: None,
                answered_at: t,
            };
            app.store.record_poll(op.id, &note).await?;
            return Ok(());
        }
        Err(err) => {
            if let TerminalError::NeedsRegistration(why) = &err {
                app.pool.tokens_refused(terminal.id, &client, why).await?;
            }
            tracing::warn!(operation = op.id.get(), %err, "poll failed; will ask again");
            let note = PollNote {
                raw_answer: serde_json::json!({ "error": err.to_string() }).to_string(),
                next_poll_at: t + app.timing.poll_interval.max(2),
                unknown_since: op.unknown_since,
                shown: false,
                review: None,
                answered_at: t,
            };
            app.store.record_poll(op.id, &note).await?;
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
            let paid = FinalAnswer::Succeeded {
                gross,
                product_method,
                transaction_id: answer.transaction_id.clone(),
                cheque_method: answer.cheque.method.clone(),
            };
            settle_final(app, op.id, &paid, &raw, None, t).await?;
        }
        ProcessStatus::Fail => {
            settle_final(app, op.id, &FinalAnswer::Failed, &raw, None, t).await?;
        }
        ProcessStatus::Wait => {
            let note = PollNote {
                raw_answer: raw,
                next_poll_at: t + app.timing.poll_interval,
                unknown_since: None,
                shown: true,
                review: None,
                answered_at: t,
            };
            app.store.record_poll(op.id, &note).await?;
        }
        ProcessStatus::Unknown => {
            let since = op.unknown_since.unwrap_or(t);
            let review = (t - since >= app.timing.unknown_review_after).then(|| UNKNOWN_REVIEW.to_owned());
            let note = PollNote {
                raw_answer: raw,
                next_poll_at: t + app.timing.actualize_interval,
                unknown_since: Some(since),
                shown: true,
                review,
                answered_at: t,
            };
            app.store.record_poll(op.id, &note).await?;
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
pub async fn poll_due(app: &App, payment_id: Option<PaymentId>) -> Result<usize, StoreError> {
    let lease = 15;
    let due = app
        .store
        .claim_due_operations(app.now(), lease, payment_id, 20)
        .await?;
    let count = due.len();
    // Payments are followed side by side (at most POLL_CONCURRENCY at once), so one slow or dead
    // terminal does not hold up the round; a payment's own operations stay in claim order.
    let mut by_payment: Vec<(PaymentId, Vec<OperationRecord>)> = Vec::new();
    for op in due {
        match by_payment.iter_mut().find(|(id, _)| *id == op.payment_id) {
            Some((_, ops)) => ops.push(op),
            None => by_payment.push((op.payment_id, vec![op])),
        }
    }
    let mut running = tokio::task::JoinSet::new();
    let mut failures = Vec::new();
    for (_, ops) in by_payment {
        if running.len() >= POLL_CONCURRENCY {
            collect(running.join_next().await, &mut failures);
        }
        let app = app.clone();
        running.spawn(async move {
            // A failure on one operation does not abandon the payment's next ones.
            let mut failed = Vec::new();
            for op in &ops {
                if let Err(err) = poll(&app, op).await {
                    failed.push((op.id, err));
                }
            }
            failed
        });
    }
    while let Some(done) = running.join_next().await {
        collect(Some(done), &mut failures);
    }
    // The first failure is the answer (its caller logs it, or answers 500); the others are logged
    // here, each once.
    let mut failures = failures.into_iter();
    let Some((_, first)) = failures.next() else {
        return Ok(count);
    };
    for (operation, err) in failures {
        tracing::error!(operation = operation.get(), %err, "operation poll failed");
    }
    Err(first)
}

/// How many payments' operations one round follows at once.
const POLL_CONCURRENCY: usize = 8;

/// Adds a finished poll task's failures to `failures` (a task that panicked is logged).
fn collect(
    done: Option<Result<Vec<(OperationId, StoreError)>, tokio::task::JoinError>>,
    failures: &mut Vec<(OperationId, StoreError)>,
) {
    match done {
        Some(Ok(failed)) => failures.extend(failed),
        Some(Err(panicked)) => tracing::error!(%panicked, "an operation poll task panicked"),
        None => {}
    }
}
