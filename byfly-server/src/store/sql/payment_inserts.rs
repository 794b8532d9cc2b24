//! New payments on SQLite — every `init` without an `Idempotency-Key`, the busiest write — inserted
//! many to a statement: requests queue their rows, one task takes all that are waiting and inserts
//! them with one `INSERT … VALUES (…), (…), …`, and answers each once that insert committed. When
//! no other write is under way the round is a transaction of its own — the insert alone, in
//! autocommit mode, one round trip ([`GroupCommit::run_alone`]); otherwise it joins the open batch
//! of the group commit as one member.
//!
//! Why: a member of the group commit is a chain of handoffs (the batch's lock to its task, its
//! statement to sqlx's SQLite thread, the answer back, the committer's turn), and members take
//! turns, so thirty-two inits waited for thirty-two such chains and one fsync — the server sat
//! half idle in those waits (BENCHMARKS.md). Joining a batch as one member was not enough (still
//! five handoffs a round); a round alone is one.
//!
//! What each request is told is what it would have been told alone: `Inserted::Yes` only once the
//! row is on disk, `IdCollision` when its transaction id is taken (also by an earlier row of the
//! same round), an error when its row was refused — a statement that fails is retried row by row,
//! so one bad row fails only its own request — or when the batch did not commit. A request that
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
use crate::store::Inserted;
use crate::store::error::StoreError;
use crate::store::records::NewPaymentRow;

/// The start of a new payment's insert: its columns (a literal, for `concat!`).
macro_rules! insert_payment_into {
    () => {
        "INSERT INTO payments (transaction_id, source_id, status, original_amount_minor, currency, \
         description, customer_name, customer_phone, customer_email, payment_method_id, webhook_url, \
         webhook_secret, metadata, created_at, expires_at, updated_at) VALUES "
    };
}

/// One new payment's values, in `bind_new_payment`'s order.
macro_rules! new_payment_values {
    () => {
        "(?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    };
}

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

    /// Inserts `row` with the others waiting; answered once its batch committed.
    pub(super) async fn insert(&self, row: &NewPaymentRow) -> Result<Inserted, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.waiting().push(Waiting {
            row: row.clone(),
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
    let mut rows = Vec::with_capacity(round.len());
    for waiting in round {
        if waiting.answer.is_closed() {
            continue;
        }
        if ids.insert(waiting.row.transaction_id.clone()) {
            rows.push(waiting);
        } else {
            // Taken by an earlier row of this round: the caller draws another id.
            waiting.answer.send(Ok(Inserted::IdCollision)).ok();
        }
    }
    if rows.is_empty() {
        return;
    }
    let answers = inserted(group, &rows).await;
    for (waiting, answer) in rows.into_iter().zip(answers) {
        waiting.answer.send(answer).ok();
    }
}

/// What each of `rows` is told. Alone — no batch open — the round is a transaction of its own:
/// one statement in autocommit mode, one round trip. Otherwise, or when that statement is
/// refused, the rows join the open batch as one member, row by row after a refusal.
async fn inserted(group: &GroupCommit, rows: &[Waiting]) -> Vec<Result<Inserted, StoreError>> {
    let sql = insert_together(rows.len());
    let alone = bind_rows(sqlx::query(AssertSqlSafe(sql.clone())), rows);
    let refused = match group.run_alone(alone).await {
        Some(Ok(inserted)) => return answers(rows, &inserted),
        // Refused as a whole: the rows go in one at a time, so only the refused one fails.
        Some(Err(err)) if is_refusal(&err) => true,
        // The lock not had, the disk full, the connection gone: nothing was kept.
        Some(Err(err)) => return not_committed(rows, &err),
        // Another write is under way: join its batch.
        None => false,
    };
    let mut write = match group.begin().await {
        Ok(write) => write,
        Err(err) => return not_committed(rows, &err),
    };
    let answers = if refused {
        one_by_one(&mut write, rows).await
    } else {
        match bind_rows(sqlx::query(AssertSqlSafe(sql)), rows)
            .fetch_all(&mut *write)
            .await
            .map_err(StoreError::from)
        {
            Ok(inserted) => answers(rows, &inserted),
            Err(err) if is_refusal(&err) => one_by_one(&mut write, rows).await,
            // What SQLite may answer by rolling the whole transaction back (a full disk, an I/O
            // error): dropped, the write is cleaned up with its batch; nothing is claimed kept.
            Err(err) => return not_committed(rows, &err),
        }
    };
    match write.commit().await {
        Ok(()) => answers,
        Err(err) => not_committed(rows, &err),
    }
}

/// Every row told that nothing of it was kept.
fn not_committed(rows: &[Waiting], why: &dyn std::fmt::Display) -> Vec<Result<Inserted, StoreError>> {
    rows.iter()
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
    rows: &'q [Waiting],
) -> Query<'q, Any, AnyArguments> {
    for waiting in rows {
        query = bind_new_payment(query, &waiting.row);
    }
    query
}

/// Each row's answer from the transaction ids its statement returned.
fn answers(rows: &[Waiting], inserted: &[AnyRow]) -> Vec<Result<Inserted, StoreError>> {
    let taken: Result<HashSet<String>, StoreError> = inserted
        .iter()
        .map(|row| Ok(row.try_get::<String, _>("transaction_id")?))
        .collect();
    match taken {
        Ok(taken) => rows
            .iter()
            .map(|waiting| {
                Ok(if taken.contains(waiting.row.transaction_id.as_str()) {
                    Inserted::Yes
                } else {
                    Inserted::IdCollision
                })
            })
            .collect(),
        Err(err) => rows
            .iter()
            .map(|_| Err(StoreError::Corrupt(err.to_string())))
            .collect(),
    }
}

/// Each row on its own after a refused statement: a refusal fails its row and the next goes on;
/// anything else (which may have rolled the whole transaction back) fails every row left.
async fn one_by_one(
    connection: &mut sqlx::AnyConnection,
    rows: &[Waiting],
) -> Vec<Result<Inserted, StoreError>> {
    let mut answers = Vec::with_capacity(rows.len());
    for (n, waiting) in rows.iter().enumerate() {
        match insert_alone(connection, &waiting.row).await {
            Err(err) if !is_refusal(&err) => {
                answers.extend(not_committed(&rows[n..], &err));
                break;
            }
            answer => answers.push(answer),
        }
    }
    answers
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
mod tests {
    use super::super::SqlStore;
    use crate::store::ids::{SourceId, UnixSeconds};
    use crate::store::records::NewPaymentRow;
    use crate::store::{Database, Inserted, Payments, Sources};
    use byfly_core::ids::TokenHash;
    use byfly_core::{BodyEncoding, Money, TransactionId};

    async fn store(test: &str) -> (SqlStore, SourceId) {
        let store = SqlStore::open(&super::super::temp_sqlite_url(test))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let source = store
            .create_source(
                "CRM",
                &TokenHash::of("bf_inserts_token"),
                BodyEncoding::Php,
                UnixSeconds(0),
            )
            .await
            .unwrap();
        (store, source.id)
    }

    fn row(id: &str, source_id: SourceId, tenge: i64) -> NewPaymentRow {
        NewPaymentRow {
            transaction_id: TransactionId::parse(id).unwrap(),
            source_id,
            payment: byfly_core::wire::NewPayment {
                amount: Money::from_tenge(tenge),
                currency: "KZT".to_owned(),
                description: Some(format!("payment {id}")),
                customer_name: None,
                customer_phone: None,
                customer_email: None,
                payment_method_id: None,
                webhook_url: None,
                webhook_secret: None,
                metadata: None,
            },
            created_at: UnixSeconds(100),
            expires_at: UnixSeconds(3700),
        }
    }

    /// Inserts every row at once, each from a task of its own, as concurrent requests would.
    async fn insert_together(store: &SqlStore, rows: Vec<NewPaymentRow>) -> Vec<Result<Inserted, String>> {
        let tasks: Vec<_> = rows
            .into_iter()
            .map(|row| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .insert_payment(&row, None)
                        .await
                        .map_err(|err| err.to_string())
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_new_payments_are_each_stored_and_readable_once_answered() {
        let (store, source) = store("inserts-concurrent").await;
        let rows: Vec<_> = (0..150)
            .map(|n| row(&format!("{n:012X}"), source, 1000 + n))
            .collect();
        let answers = insert_together(&store, rows.clone()).await;
        assert!(
            answers.iter().all(|answer| matches!(answer, Ok(Inserted::Yes))),
            "{answers:?}"
        );
        for row in &rows {
            let stored = store
                .payment(&row.transaction_id)
                .await
                .unwrap()
                .expect("answered Yes, so stored");
            assert_eq!(stored.original_amount, row.payment.amount);
            assert_eq!(stored.description, row.payment.description);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_taken_id_collides_whether_stored_before_or_earlier_in_the_same_round() {
        let (store, source) = store("inserts-collisions").await;
        assert!(matches!(
            store
                .insert_payment(&row("00000000000A", source, 500), None)
                .await,
            Ok(Inserted::Yes)
        ));
        let answers = insert_together(
            &store,
            vec![
                row("00000000000A", source, 600),
                row("00000000000B", source, 700),
                row("00000000000B", source, 800),
                row("00000000000C", source, 900),
            ],
        )
        .await;
        assert!(matches!(answers[0], Ok(Inserted::IdCollision)), "{answers:?}");
        let b: Vec<_> = answers[1..3]
            .iter()
            .filter(|answer| matches!(answer, Ok(Inserted::Yes)))
            .collect();
        assert_eq!(
            b.len(),
            1,
            "one of the two B rows is stored, the other collides: {answers:?}"
        );
        assert!(
            answers[1..3]
                .iter()
                .any(|answer| matches!(answer, Ok(Inserted::IdCollision)))
        );
        assert!(matches!(answers[3], Ok(Inserted::Yes)), "{answers:?}");
        let first = store
            .payment(&TransactionId::parse("00000000000A").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            first.original_amount,
            Money::from_tenge(500),
            "a collision changes nothing stored"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_row_fails_its_own_request_and_no_other() {
        let (store, source) = store("inserts-refused").await;
        let mut rows: Vec<_> = (0..20).map(|n| row(&format!("{n:012X}"), source, 1000)).collect();
        // No such source: the foreign key refuses the row.
        rows[7].source_id = SourceId(999);
        let answers = insert_together(&store, rows.clone()).await;
        for (n, answer) in answers.iter().enumerate() {
            if n == 7 {
                assert!(answer.is_err(), "the refused row: {answer:?}");
                assert!(store.payment(&rows[n].transaction_id).await.unwrap().is_none());
            } else {
                assert!(matches!(answer, Ok(Inserted::Yes)), "row {n}: {answer:?}");
                assert!(store.payment(&rows[n].transaction_id).await.unwrap().is_some());
            }
        }
    }
}
