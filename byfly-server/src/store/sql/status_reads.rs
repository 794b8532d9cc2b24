//! PostgreSQL's status reads — a payment with its operations, behind every `GET /status`, the
//! route a payment page polls — gathered many to a query: requests queue the transaction ids
//! they read, a few reader tasks each take what is waiting and read it with one
//! `… WHERE p.transaction_id IN (…)`, and hand each request its own rows.
//!
//! Why: on PostgreSQL each statement is a round trip to a backend process, which the kernel must
//! wake, and on a loaded machine those wake-ups, not the read, were most of a status read's cost
//! (a third of the server's samples in the scheduler; BENCHMARKS.md). Thirty-two polls in one
//! query wake one backend once. A read sees what a read of its own would have seen: every
//! request's read starts after the request asked (it waits for a round that begins after its
//! id was queued), and so after every write acknowledged before it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use byfly_core::TransactionId;
use futures_util::future::BoxFuture;
use sqlx::AnyPool;
use tokio::sync::{Notify, oneshot};

use crate::store::error::StoreError;
use crate::store::records::{OperationRecord, PaymentRecord};

/// Payments per query at most.
const READS_PER_QUERY: usize = 32;

/// Reader tasks: rounds under way at once (a slow round holds up only the reads in it).
const READERS: usize = 4;

/// What a status read is told.
type Answer = Result<Option<(PaymentRecord, Vec<OperationRecord>)>, StoreError>;

/// What one query found, by transaction id: each payment with its operations, or why its rows did
/// not decode (that payment's readers alone fail).
pub(super) type Found = HashMap<String, Result<(PaymentRecord, Vec<OperationRecord>), String>>;

/// The query of a round: the payments of these transaction ids (distinct), read from the pool.
/// The SQL is the store's (`payments.rs`); this module only gathers and hands out.
pub(super) type ReadTogether = fn(AnyPool, Vec<String>) -> BoxFuture<'static, Result<Found, StoreError>>;

/// A read waiting for its round, and where its answer goes.
struct Waiting {
    id: TransactionId,
    answer: oneshot::Sender<Answer>,
}

/// The queue of one PostgreSQL store's status reads (shared by its clones).
pub(super) struct StatusReads {
    queue: Mutex<Vec<Waiting>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for StatusReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusReads")
            .field("waiting", &self.waiting().len())
            .finish()
    }
}

impl StatusReads {
    /// The queue, and the tasks that read what it holds from `pool` with `read`.
    pub(super) fn start(pool: AnyPool, read: ReadTogether) -> Arc<StatusReads> {
        let wake = Arc::new(Notify::new());
        let reads = Arc::new(StatusReads {
            queue: Mutex::new(Vec::new()),
            wake: wake.clone(),
        });
        for _ in 0..READERS {
            tokio::spawn(read_rounds(
                Arc::downgrade(&reads),
                wake.clone(),
                pool.clone(),
                read,
            ));
        }
        reads
    }

    /// The payment `id` with its operations (oldest first), read with the others waiting.
    pub(super) async fn read(&self, id: &TransactionId) -> Answer {
        let (answer, answered) = oneshot::channel();
        self.waiting().push(Waiting {
            id: id.clone(),
            answer,
        });
        self.wake.notify_one();
        answered
            .await
            .unwrap_or_else(|_| Err(StoreError::SharedRead("the status readers are gone".into())))
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for StatusReads {
    fn drop(&mut self) {
        // The tasks find the queue gone and end.
        self.wake.notify_waiters();
    }
}

/// Takes what is waiting, round after round, until the store is gone.
async fn read_rounds(reads: Weak<StatusReads>, wake: Arc<Notify>, pool: AnyPool, read: ReadTogether) {
    loop {
        let round: Vec<Waiting> = {
            // Registered before the queue is looked at, so that the store's drop
            // (`notify_waiters`, which keeps no permit) between the look and the wait still ends
            // this task; dropped before the round is read, which passes a wake-up it took on to
            // an idle reader.
            let woken = wake.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            let Some(reads) = reads.upgrade() else { return };
            let round: Vec<Waiting> = {
                let mut queue = reads.waiting();
                let take = queue.len().min(READS_PER_QUERY);
                let round = queue.drain(..take).collect();
                if !queue.is_empty() {
                    // More than one round's worth: another reader takes the rest.
                    wake.notify_one();
                }
                round
            };
            drop(reads);
            if round.is_empty() {
                woken.await;
                continue;
            }
            round
        };
        read_round(&pool, read, round).await;
    }
}

/// One round: its payments read by one query, each request handed its own.
async fn read_round(pool: &AnyPool, read: ReadTogether, round: Vec<Waiting>) {
    let round: Vec<Waiting> = round
        .into_iter()
        .filter(|waiting| !waiting.answer.is_closed())
        .collect();
    let mut ids: Vec<String> = round
        .iter()
        .map(|waiting| waiting.id.as_str().to_owned())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let found = match read(pool.clone(), ids).await {
        Ok(found) => found,
        Err(err) => {
            let why = err.to_string();
            for waiting in round {
                waiting.answer.send(Err(StoreError::SharedRead(why.clone()))).ok();
            }
            return;
        }
    };
    for waiting in round {
        let answer = match found.get(waiting.id.as_str()) {
            None => Ok(None),
            Some(Ok(payment)) => Ok(Some(payment.clone())),
            Some(Err(why)) => Err(StoreError::Corrupt(why.clone())),
        };
        waiting.answer.send(answer).ok();
    }
}
