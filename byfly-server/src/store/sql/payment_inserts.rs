//! New payments on SQLite — every `init`, the busiest write — inserted many to a statement:
//! requests queue their rows, one task takes all that are waiting and inserts them with one
//! `INSERT … VALUES (…), (…), …`, and answers each once that insert committed. When no other write
//! is under way and no row carries an `Idempotency-Key`, the round is a transaction of its own —
//! the insert alone, in autocommit mode, one round trip ([`GroupCommit::run_alone`]); otherwise
//! it joins the open batch of the group commit as one member, and the round's keys are claimed
//! (with the answers to replay) by one statement before its payments are inserted by another.
//!
//! Why: a member of the group commit is a chain of handoffs (the batch's lock to its task, its
//! statement to sqlx's SQLite thread, the answer back, the committer's turn), and members take
//! turns, so thirty-two inits waited for thirty-two such chains and one fsync — the server sat
//! half idle in those waits (BENCHMARKS.md). Joining a batch as one member was not enough (still
//! five handoffs a round); a round alone is one.
//!
//! What each request is told is what it would have been told alone: `Inserted::Yes` only once the
//! row (and its key's claim) is on disk, `IdCollision` when its transaction id is taken (also by
//! an earlier row of the same round; its key's claim is undone with it), `KeyTaken` when its key
//! is live (also when an earlier row of the same round claims it: that row's request is told
//! after the round, and finds what the round left), an error when its row was refused — a
//! statement that fails is retried row by row, so one bad row fails only its own request — or
//! when the batch did not commit. A request that
//! gave up before its round began (its answer no longer awaited: a request timeout, a client gone)
//! is left out, as its own transaction would never have begun.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use futures_util::FutureExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};
use tokio::sync::{Notify, oneshot};

use super::group_commit::GroupCommit;
use super::idempotency::{bind_claim, bind_claim_limits, claim_keys_into, claim_values, unless_live};
use crate::store::IdempotencyClaim;
use crate::store::Inserted;
use crate::store::error::StoreError;
use crate::store::ids::SourceId;
use crate::store::records::NewPaymentRow;

/// A new payment's insert up to its values: the columns (a literal, for `concat!`).
macro_rules! insert_payment_columns {
    () => {
        "INSERT INTO payments (transaction_id, source_id, status, original_amount_minor, currency, \
         description, customer_name, customer_phone, customer_email, payment_method_id, webhook_url, \
         webhook_secret, metadata, created_at, expires_at, updated_at) "
    };
}
pub(super) use insert_payment_columns;

/// The start of a new payment's insert: its columns (a literal, for `concat!`).
macro_rules! insert_payment_into {
    () => {
        concat!(insert_payment_columns!(), "VALUES ")
    };
}

/// One new payment's values, in `bind_new_payment`'s order.
macro_rules! new_payment_values {
    () => {
        "(?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    };
}
pub(super) use new_payment_values;

/// A transaction id already taken leaves its row out.
macro_rules! on_taken_id {
    () => {
        " ON CONFLICT (transaction_id) DO NOTHING"
    };
}

/// One new payment, left out if its transaction id is taken.
pub(super) const INSERT_PAYMENT: &str =
    concat!(insert_payment_into!(), new_payment_values!(), on_taken_id!());

/// Rows per statement at most (15 values each, far below SQLite's limit on parameters).
const ROWS_PER_STATEMENT: usize = 64;

/// `query` with `row`'s values for one `new_payment_values!()`.
pub(super) fn bind_new_payment<'q>(
    query: Query<'q, Any, AnyArguments>,
    row: &'q NewPaymentRow,
) -> Query<'q, Any, AnyArguments> {
    let payment = &row.payment;
    query
        .bind(row.transaction_id.as_str())
        .bind(row.source_id)
        .bind(payment.amount.to_minor())
        .bind(&payment.currency)
        .bind(&payment.description)
        .bind(&payment.customer_name)
        .bind(&payment.customer_phone)
        .bind(&payment.customer_email)
        .bind(payment.payment_method_id)
        .bind(payment.webhook_url.as_ref().map(|url| url.as_str()))
        .bind(
            payment
                .webhook_secret
                .as_ref()
                .map(|secret| secret.expose().as_str()),
        )
        .bind(&payment.metadata)
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(row.created_at)
}

/// A row waiting for its round, and where its answer goes.
struct Waiting {
    row: NewPaymentRow,
    claim: Option<IdempotencyClaim>,
    answer: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// The queue of one SQLite store's new payments (shared by its clones).
pub(super) struct PaymentInserts {
    queue: Mutex<Vec<Waiting>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for PaymentInserts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentInserts")
            .field("waiting", &self.waiting().len())
            .finish()
    }
}

impl PaymentInserts {
    /// The queue, and the task that inserts what it holds into `group`'s batches.
    pub(super) fn start(group: GroupCommit) -> Arc<PaymentInserts> {
        let wake = Arc::new(Notify::new());
        let inserts = Arc::new(PaymentInserts {
            queue: Mutex::new(Vec::new()),
            wake: wake.clone(),
        });
        tokio::spawn(insert_rounds(Arc::downgrade(&inserts), wake, group));
        inserts
    }

    /// Inserts `row` (and claims its key) with the others waiting; answered once its batch
    /// committed.
    pub(super) async fn insert(
        &self,
        row: &NewPaymentRow,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Inserted, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.waiting().push(Waiting {
            row: row.clone(),
            claim: claim.cloned(),
            answer,
        });
        self.wake.notify_one();
        answered.await.unwrap_or_else(|_| {
            Err(StoreError::NotCommitted(
                "the queue of new payments is gone".into(),
            ))
        })
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for PaymentInserts {
    fn drop(&mut self) {
        // The task finds the queue gone and ends.
        self.wake.notify_one();
    }
}

/// Takes what is waiting, round after round, until the store is gone.
async fn insert_rounds(inserts: Weak<PaymentInserts>, wake: Arc<Notify>, group: GroupCommit) {
    loop {
        let round: Vec<Waiting> = {
            let Some(inserts) = inserts.upgrade() else { return };
            let mut queue = inserts.waiting();
            let take = queue.len().min(ROWS_PER_STATEMENT);
            queue.drain(..take).collect()
        };
        if round.is_empty() {
            wake.notified().await;
            continue;
        }
        // A bug panicking in a round fails that round's requests (their answers are dropped with
        // it), not every request after it.
        let round = std::panic::AssertUnwindSafe(insert_round(&group, round));
        if round.catch_unwind().await.is_err() {
            tracing::error!("a round of new payments panicked: its requests are answered with an error");
        }
    }
}

/// One round: its rows inserted together (see [`inserted`]), each request answered after.
async fn insert_round(group: &GroupCommit, round: Vec<Waiting>) {
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    let mut rows = Vec::with_capacity(round.len());
    let mut same_key = Vec::new();
    for waiting in round {
        if waiting.answer.is_closed() {
            continue;
        }
        if !ids.insert(waiting.row.transaction_id.clone()) {
            // Taken by an earlier row of this round: the caller draws another id.
            waiting.answer.send(Ok(Inserted::IdCollision)).ok();
        } else if let Some(claim) = &waiting.claim
            && !keys.insert((claim.source_id, claim.key.clone()))
        {
            same_key.push(waiting);
        } else {
            rows.push(waiting);
        }
    }
    if !rows.is_empty() {
        let answers = inserted(group, &rows).await;
        for (waiting, answer) in rows.into_iter().zip(answers) {
            waiting.answer.send(answer).ok();
        }
    }
    // Claimed (or found live) by an earlier row of this round, whose outcome is now settled: the
    // caller reads what the key holds.
    for waiting in same_key {
        waiting.answer.send(Ok(Inserted::KeyTaken)).ok();
    }
}

/// What each of `rows` is told. Alone — no batch open, no key to claim — the round is a
/// transaction of its own: one statement in autocommit mode, one round trip. Otherwise, or when
/// that statement is refused, the rows join the open batch as one member ([`in_batch`]).
async fn inserted(group: &GroupCommit, rows: &[Waiting]) -> Vec<Result<Inserted, StoreError>> {
    let mut refused = false;
    if rows.iter().all(|waiting| waiting.claim.is_none()) {
        let sql = insert_together(rows.len());
        match group
            .run_alone(bind_rows(sqlx::query(AssertSqlSafe(sql)), rows))
            .await
        {
            Some(Ok(inserted)) => return answers(rows.iter(), &inserted),
            // Refused as a whole: the rows go in one at a time, so only the refused one fails.
            Some(Err(err)) if is_refusal(&err) => refused = true,
            // The lock not had, the disk full, the connection gone: nothing was kept.
            Some(Err(err)) => return not_committed(rows.len(), &err),
            // Another write is under way: join its batch.
            None => {}
        }
    }
    let mut write = match group.begin().await {
        Ok(write) => write,
        Err(err) => return not_committed(rows.len(), &err),
    };
    match in_batch(&mut write, rows, refused).await {
        // What SQLite may answer by rolling the whole transaction back (a full disk, an I/O
        // error): dropped, the write is cleaned up with its batch; nothing is claimed kept.
        Err(err) => not_committed(rows.len(), &err),
        Ok(answers) => match write.commit().await {
            Ok(()) => answers,
            Err(err) => not_committed(rows.len(), &err),
        },
    }
}

/// `rows` in an open batch: their keys claimed first (a row whose key is live is left out), then
/// the payments of the rest in one statement (row by row when `refused` already, or when that
/// statement is refused), then the claims of rows not stored undone. `Err`: the batch may have
/// lost this member's work; nothing of it is kept.
async fn in_batch(
    connection: &mut sqlx::AnyConnection,
    rows: &[Waiting],
    refused: bool,
) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
    let mut told: Vec<Option<Result<Inserted, StoreError>>> = rows.iter().map(|_| None).collect();
    let claimed = claim_keys(connection, rows, &mut told).await?;
    let stored: Vec<&Waiting> = rows
        .iter()
        .zip(&told)
        .filter(|(_, answer)| answer.is_none())
        .map(|(waiting, _)| waiting)
        .collect();
    let mut inserted = Vec::new();
    if !stored.is_empty() {
        let together = if refused {
            None
        } else {
            match bind_rows(
                sqlx::query(AssertSqlSafe(insert_together(stored.len()))),
                stored.iter().copied(),
            )
            .fetch_all(&mut *connection)
            .await
            .map_err(StoreError::from)
            {
                Ok(returned) => Some(answers(stored.iter().copied(), &returned)),
                Err(err) if is_refusal(&err) => None,
                Err(err) => return Err(err),
            }
        };
        inserted = match together {
            Some(inserted) => inserted,
            None => one_by_one(connection, &stored).await?,
        };
    }
    let mut inserted = inserted.into_iter();
    for (waiting, answer) in rows.iter().zip(&mut told) {
        if answer.is_none() {
            *answer = inserted.next();
        }
        let kept = matches!(answer, Some(Ok(Inserted::Yes)));
        if let Some(claim) = &waiting.claim
            && !kept
            && claimed.contains(&(claim.source_id, claim.key.as_str()))
        {
            // Its answer named a payment that is not stored.
            sqlx::query("DELETE FROM idempotency_keys WHERE source_id = ? AND key = ?")
                .bind(claim.source_id)
                .bind(claim.key.as_str())
                .execute(&mut *connection)
                .await?;
        }
    }
    Ok(told
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|| Err(StoreError::NotCommitted("no answer".into()))))
        .collect())
}

/// Claims the keys of `rows` with their answers in one statement (one at a time if it is
/// refused): the keys claimed; a row whose key is live is answered `KeyTaken` in `answers`, one
/// whose claim was refused with that refusal.
async fn claim_keys<'r>(
    connection: &mut sqlx::AnyConnection,
    rows: &'r [Waiting],
    answers: &mut [Option<Result<Inserted, StoreError>>],
) -> Result<HashSet<(SourceId, &'r str)>, StoreError> {
    let claims: Vec<&IdempotencyClaim> = rows.iter().filter_map(|waiting| waiting.claim.as_ref()).collect();
    let mut claimed = HashSet::new();
    if claims.is_empty() {
        return Ok(claimed);
    }
    let mut returned = Vec::new();
    match claim_query(&claims)
        .fetch_all(&mut *connection)
        .await
        .map_err(StoreError::from)
    {
        Ok(together) => returned = together,
        // Refused as a whole: each claim on its own, so only the refused one fails its row.
        Err(err) if is_refusal(&err) => {
            for (waiting, answer) in rows.iter().zip(answers.iter_mut()) {
                let Some(claim) = &waiting.claim else { continue };
                match claim_query(&[claim])
                    .fetch_all(&mut *connection)
                    .await
                    .map_err(StoreError::from)
                {
                    Ok(alone) => returned.extend(alone),
                    Err(err) if is_refusal(&err) => *answer = Some(Err(err)),
                    Err(err) => return Err(err),
                }
            }
        }
        Err(err) => return Err(err),
    }
    let keys: HashSet<(SourceId, String)> = returned
        .iter()
        .map(|row| {
            Ok((
                row.try_get::<SourceId, _>("source_id")?,
                row.try_get::<String, _>("key")?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    for (waiting, answer) in rows.iter().zip(answers.iter_mut()) {
        let Some(claim) = &waiting.claim else { continue };
        if answer.is_some() {
            continue;
        }
        if keys.contains(&(claim.source_id, claim.key.clone())) {
            claimed.insert((claim.source_id, claim.key.as_str()));
        } else {
            *answer = Some(Ok(Inserted::KeyTaken));
        }
    }
    Ok(claimed)
}

/// The statement claiming `claims` (only the count varies: one prepared statement per count).
fn claim_query<'q>(claims: &[&'q IdempotencyClaim]) -> Query<'q, Any, AnyArguments> {
    let mut sql = String::from(claim_keys_into!());
    for n in 0..claims.len() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(claim_values!());
    }
    sql.push_str(unless_live!());
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for claim in claims {
        query = bind_claim(query, claim);
    }
    bind_claim_limits(query)
}

/// Each of `count` rows told that nothing of it was kept.
fn not_committed(count: usize, why: &dyn std::fmt::Display) -> Vec<Result<Inserted, StoreError>> {
    (0..count)
        .map(|_| Err(StoreError::NotCommitted(why.to_string())))
        .collect()
}

/// A row the schema refuses (a unique, foreign-key, not-null or check constraint): SQLite undoes
/// that statement alone, and the transaction goes on.
fn is_refusal(err: &StoreError) -> bool {
    use sqlx::error::ErrorKind;
    matches!(err, StoreError::Database(sqlx::Error::Database(db)) if !matches!(db.kind(), ErrorKind::Other))
}

/// `query` with every row's values, in order.
fn bind_rows<'q>(
    mut query: Query<'q, Any, AnyArguments>,
    rows: impl IntoIterator<Item = &'q Waiting>,
) -> Query<'q, Any, AnyArguments> {
    for waiting in rows {
        query = bind_new_payment(query, &waiting.row);
    }
    query
}

/// Each row's answer from the transaction ids its statement returned.
fn answers<'r>(
    rows: impl ExactSizeIterator<Item = &'r Waiting> + Clone,
    inserted: &[AnyRow],
) -> Vec<Result<Inserted, StoreError>> {
    let taken: Result<HashSet<String>, StoreError> = inserted
        .iter()
        .map(|row| Ok(row.try_get::<String, _>("transaction_id")?))
        .collect();
    match taken {
        Ok(taken) => rows
            .map(|waiting| {
                Ok(if taken.contains(waiting.row.transaction_id.as_str()) {
                    Inserted::Yes
                } else {
                    Inserted::IdCollision
                })
            })
            .collect(),
        Err(err) => rows.map(|_| Err(StoreError::Corrupt(err.to_string()))).collect(),
    }
}

/// Each row on its own after a refused statement: a refusal fails its row and the next goes on;
/// anything else (which may have rolled the whole transaction back) fails the member.
async fn one_by_one(
    connection: &mut sqlx::AnyConnection,
    rows: &[&Waiting],
) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
    let mut answers = Vec::with_capacity(rows.len());
    for waiting in rows {
        match insert_alone(connection, &waiting.row).await {
            Err(err) if !is_refusal(&err) => return Err(err),
            answer => answers.push(answer),
        }
    }
    Ok(answers)
}

/// The statement inserting `count` rows, answering the transaction ids it inserted (only the
/// count varies: one prepared statement per count, kept by sqlx).
fn insert_together(count: usize) -> String {
    let mut sql = String::from(insert_payment_into!());
    for n in 0..count {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(new_payment_values!());
    }
    sql.push_str(concat!(on_taken_id!(), " RETURNING transaction_id"));
    sql
}

/// Inserts one row, as the fallback of a refused statement.
async fn insert_alone(
    connection: &mut sqlx::AnyConnection,
    row: &NewPaymentRow,
) -> Result<Inserted, StoreError> {
    let inserted = bind_new_payment(sqlx::query(INSERT_PAYMENT), row)
        .execute(&mut *connection)
        .await?;
    Ok(if inserted.rows_affected() == 0 {
        Inserted::IdCollision
    } else {
        Inserted::Yes
    })
}

#[cfg(test)]
mod tests;
