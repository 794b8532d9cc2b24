//! Group commit on SQLite: concurrent write transactions share one database transaction and one
//! fsync, and each is answered only after that transaction committed.
//!
//! Why: with `synchronous = FULL` every commit waits for the disk, and SQLite has one writer at a
//! time; thirty-two requests each beginning `IMMEDIATE` and committing on their own take turns
//! through `busy_timeout` sleeps, which is where the write path's p99 came from. Here they queue
//! instead on one async mutex (first come, first served) around one connection:
//!
//! - the first writer of a batch begins the database transaction (`BEGIN IMMEDIATE`); each writer
//!   works inside a savepoint of its own, so a writer that fails or gives up rolls back only its
//!   own changes, exactly as its own transaction would have (see [`Batch`] for how the savepoint
//!   is kept open between members);
//! - a writer done with its work releases its savepoint, hands the connection on and asks the
//!   committer to commit; the committer queues for the connection like everyone else, so every
//!   writer already waiting joins the batch first, and the batch commits once for all of them;
//! - only then is each member told, so its `commit` returning `Ok` still means "on disk". A batch
//!   that fails to commit fails every member (none of them was acknowledged).
//!
//! A writer that decides to keep nothing rolls its savepoint back and still waits for the batch:
//! what it read of the members before it is true only once they committed. A writer dropped
//! half-way (an error returned with `?`, a request cancelled) leaves its savepoint open; the next
//! holder of the connection rolls it back before anything else. A batch is never
//! left open without a committer on its way, so another process waiting for SQLite's lock waits
//! for one batch, not for the next request.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Either, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, watch};

use crate::store::error::StoreError;

/// What a batch's members learn: committed, or why not.
type BatchOutcome = Option<Result<(), Arc<str>>>;

/// The group commit of one SQLite store (shared by its clones).
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    batch: Arc<Mutex<Batch>>,
    /// A member left without finishing: its savepoint is still open and must be rolled back.
    abandoned_savepoint: AtomicBool,
    /// Asks the committer to commit the open batch (capacity one: requests coalesce).
    wake_committer: mpsc::Sender<()>,
    /// Batches committed, for tests.
    commits: AtomicU64,
    /// Writers waiting for the connection, for tests.
    queued: AtomicU64,
}

/// The batches' connection and the batch open on it.
///
/// While a batch is open exactly one savepoint, `batch_member`, is open in it, empty whenever the
/// connection changes hands: begun with the batch, released and begun again in one statement
/// when a member keeps its changes, rolled back to (which keeps it open) when a member keeps
/// nothing or left half-way, and committed with the batch (`COMMIT` ends open savepoints too).
/// So a member costs one round trip to the database besides its own statements — the handoffs
/// to sqlx's SQLite worker thread, not SQLite, are what a statement costs here.
#[derive(Debug)]
struct Batch {
    pool: AnyPool,
    conn: PoolConnection<Any>,
    /// The open batch's outcome, published once; `None` between batches.
    open: Option<watch::Sender<BatchOutcome>>,
    /// Whether the open batch's `BEGIN` is known to have run (a writer cancelled while sending it
    /// leaves this false: the transaction may or may not be open).
    begun: bool,
}

impl GroupCommit {
    /// Takes the batches' connection from `pool` and starts the committer.
    pub(super) async fn start(pool: &AnyPool) -> Result<GroupCommit, StoreError> {
        let conn = pool.acquire().await?;
        let (wake_committer, wakes) = mpsc::channel(1);
        let inner = Arc::new(Inner {
            batch: Arc::new(Mutex::new(Batch {
                pool: pool.clone(),
                conn,
                open: None,
                begun: false,
            })),
            abandoned_savepoint: AtomicBool::new(false),
            wake_committer,
            commits: AtomicU64::new(0),
            queued: AtomicU64::new(0),
        });
        tokio::spawn(commit_batches(Arc::downgrade(&inner), wakes));
        Ok(GroupCommit { inner })
    }

    /// A write transaction: a savepoint in the open batch (one is begun if none is open).
    pub(super) async fn begin(&self) -> Result<BatchedWrite, StoreError> {
        self.inner.queued.fetch_add(1, Ordering::SeqCst);
        let guard = self.inner.batch.clone().lock_owned().await;
        self.inner.queued.fetch_sub(1, Ordering::SeqCst);
        // From here a drop (cancellation) still leads to a commit of whatever is open.
        let mut write = BatchedWrite {
            guard,
            inner: self.inner.clone(),
            outcome: None,
            stage: Stage::Joining,
        };
        write.guard.clean_up(&self.inner).await?;
        let outcome = write.guard.open_batch().await?;
        write.outcome = Some(outcome);
        // The savepoint is open already (see `Batch::open`): nothing to send.
        write.stage = Stage::InSavepoint;
        Ok(write)
    }

    /// Runs `statement` (one statement, its values bound) as a transaction of its own when no
    /// batch is open: in autocommit mode, where SQLite takes the write lock as the statement
    /// starts and commits (one fsync) as it ends, one round trip, and its rows come back once
    /// committed — for a write of many requests' rows at once (`payment_inserts`), where a
    /// member's handoffs would cost more than the statement. `None` when a batch is open (the
    /// caller joins it as a member instead); an error when the statement was refused or did not
    /// commit, and then SQLite kept nothing of it.
    ///
    /// Why not `BEGIN IMMEDIATE`, the statement, `COMMIT`: inside an explicit transaction SQLite
    /// keeps a statement journal for a statement of many rows that may fail half-way (a copy of
    /// every page it changes, so that the transaction can go on without it); alone, the
    /// statement is the transaction and needs none. That journal was a sixth of the writer
    /// thread's work (BENCHMARKS.md).
    pub(super) async fn run_alone(
        &self,
        statement: Query<'_, Any, AnyArguments>,
    ) -> Option<Result<Vec<AnyRow>, StoreError>> {
        let mut guard = self.inner.batch.clone().lock_owned().await;
        if let Err(err) = guard.clean_up(&self.inner).await {
            return Some(Err(err));
        }
        if guard.open.is_some() {
            return None;
        }
        // Read to the end even after an error: the statement commits only as it ends. Dropped
        // half-way (only the runtime shutting down drops its caller), sqlx's thread still runs
        // the statement to its end, and it commits or not on its own.
        let mut rows = Vec::new();
        let mut ended = false;
        let mut failed = None;
        {
            let mut results = guard.conn.fetch_many(statement);
            while let Some(result) = results.next().await {
                match result {
                    Ok(Either::Right(row)) => rows.push(row),
                    Ok(Either::Left(_)) => ended = true,
                    Err(err) => {
                        failed.get_or_insert(err);
                    }
                }
            }
        }
        Some(match (failed, ended) {
            (None, true) => {
                self.inner.commits.fetch_add(1, Ordering::SeqCst);
                Ok(rows)
            }
            // A failed autocommit statement is rolled back by SQLite: no transaction is left open.
            (Some(err), _) => Err(err.into()),
            (None, false) => Err(StoreError::NotCommitted(
                "the statement ended without its result".into(),
            )),
        })
    }

    /// How many batches have committed.
    #[cfg(test)]
    fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::SeqCst)
    }

    /// How many writers are waiting for the connection.
    #[cfg(test)]
    fn queued(&self) -> u64 {
        self.inner.queued.load(Ordering::SeqCst)
    }
}

impl Batch {
    /// Rolls back the savepoint of a member that left without finishing, and a batch whose
    /// `BEGIN` may not have run (its writer was cancelled while sending it; nothing of a member
    /// is in it).
    async fn clean_up(&mut self, inner: &Inner) -> Result<(), StoreError> {
        if self.open.is_some() && !self.begun {
            self.open = None;
            // Fails harmlessly when the transaction never began.
            self.conn.execute("ROLLBACK").await.ok();
        }
        if !inner.abandoned_savepoint.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        // The savepoint stays open, empty, for the next member.
        if let Err(err) = self.conn.execute("ROLLBACK TO batch_member").await {
            self.fail(&format!("an abandoned write could not be rolled back: {err}"))
                .await;
            return Err(err.into());
        }
        Ok(())
    }

    /// The open batch's outcome, beginning a batch if none is open.
    async fn open_batch(&mut self) -> Result<watch::Receiver<BatchOutcome>, StoreError> {
        if self.open.is_none() {
            self.begun = false;
            self.open = Some(watch::channel(None).0);
            if let Err(err) = self.conn.execute("BEGIN IMMEDIATE; SAVEPOINT batch_member").await {
                // Busy past `busy_timeout` (another process), or the savepoint failed after the
                // BEGIN: either way no batch is open.
                self.open = None;
                self.conn.execute("ROLLBACK").await.ok();
                return Err(err.into());
            }
            self.begun = true;
        }
        let open = self.open.get_or_insert_with(|| watch::channel(None).0);
        Ok(open.subscribe())
    }

    /// Commits the open batch (if any) and tells its members.
    async fn commit(&mut self, inner: &Inner) {
        if self.open.is_none() {
            return;
        }
        // Cleaning up may find that no batch was open after all.
        if self.clean_up(inner).await.is_err() || self.open.is_none() {
            return;
        }
        match self.conn.execute("COMMIT").await {
            Ok(_) => {
                inner.commits.fetch_add(1, Ordering::SeqCst);
                if let Some(open) = self.open.take() {
                    open.send_replace(Some(Ok(())));
                }
            }
            Err(err) => self.fail(&format!("the batch did not commit: {err}")).await,
        }
    }

    /// Rolls the open batch back and tells its members why; a connection that cannot roll back
    /// is replaced.
    async fn fail(&mut self, why: &str) {
        tracing::error!(
            why,
            "a batch of writes failed: its requests are answered with an error"
        );
        if let Some(open) = self.open.take() {
            open.send_replace(Some(Err(Arc::from(why))));
        }
        self.roll_back().await;
    }

    /// Rolls the open transaction back; a connection that cannot is replaced.
    async fn roll_back(&mut self) {
        if self.conn.execute("ROLLBACK").await.is_err() {
            match self.pool.acquire().await {
                Ok(fresh) => {
                    let broken = std::mem::replace(&mut self.conn, fresh);
                    broken.close().await.ok();
                }
                Err(err) => tracing::error!(%err, "no connection to replace the batches' one"),
            }
        }
    }
}

/// Commits open batches when asked, until the store is gone.
async fn commit_batches(inner: Weak<Inner>, mut wakes: mpsc::Receiver<()>) {
    while wakes.recv().await.is_some() {
        let Some(inner) = inner.upgrade() else { break };
        let mut batch = inner.batch.clone().lock_owned().await;
        batch.commit(&inner).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the batch to begin (no savepoint of ours yet).
    Joining,
    /// Working inside our savepoint.
    InSavepoint,
    /// Savepoint released: our changes are the batch's.
    Released,
}

/// One writer's part of a batch: the batches' connection, held until [`BatchedWrite::commit`]
/// (or a drop, which rolls its changes back).
#[derive(Debug)]
pub(super) struct BatchedWrite {
    guard: OwnedMutexGuard<Batch>,
    inner: Arc<Inner>,
    outcome: Option<watch::Receiver<BatchOutcome>>,
    stage: Stage,
}

impl BatchedWrite {
    /// Keeps this writer's changes and waits for its batch to commit.
    pub(super) async fn commit(self) -> Result<(), StoreError> {
        self.leave("RELEASE batch_member; SAVEPOINT batch_member").await
    }

    /// Drops this writer's changes, and still waits for its batch: what it read of the members
    /// before it (and decided from) is only true once they committed.
    pub(super) async fn rollback(self) -> Result<(), StoreError> {
        self.leave("ROLLBACK TO batch_member").await
    }

    /// Ends this member's part with `end` (which leaves an empty savepoint open for the next),
    /// hands the connection on and waits for the batch's outcome.
    async fn leave(mut self, end: &'static str) -> Result<(), StoreError> {
        if let Err(err) = self.guard.conn.execute(end).await {
            self.guard
                .fail(&format!("a write's savepoint could not be ended: {err}"))
                .await;
            self.stage = Stage::Released;
            return Err(err.into());
        }
        self.stage = Stage::Released;
        let outcome = self.outcome.take();
        // Hands the connection on (the drop asks the committer to commit).
        drop(self);
        let Some(mut outcome) = outcome else {
            return Err(StoreError::NotCommitted("the write joined no batch".into()));
        };
        let published = outcome.wait_for(Option::is_some).await.map(|seen| seen.clone());
        match published {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(why))) => Err(StoreError::NotCommitted(why.to_string())),
            Ok(None) | Err(_) => Err(StoreError::NotCommitted("the batch was abandoned".into())),
        }
    }
}

impl Drop for BatchedWrite {
    fn drop(&mut self) {
        if self.stage == Stage::InSavepoint {
            self.inner.abandoned_savepoint.store(true, Ordering::SeqCst);
        }
        // Whatever is open gets committed (or cleaned up) without waiting for the next writer.
        // A full channel means a request is already pending, which will see this batch.
        self.inner.wake_committer.try_send(()).ok();
    }
}

impl Deref for BatchedWrite {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.guard.conn
    }
}

impl DerefMut for BatchedWrite {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.guard.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::any::AnyPoolOptions;

    /// A fresh database of one table.
    async fn pool(test: &str) -> AnyPool {
        sqlx::any::install_default_drivers();
        let url = super::super::temp_sqlite_url(test);
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        pool.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER NOT NULL)")
            .await
            .unwrap();
        pool
    }

    async fn insert(group: &GroupCommit, n: i64) -> Result<(), StoreError> {
        let mut write = group.begin().await?;
        sqlx::query("INSERT INTO t (n) VALUES (?)")
            .bind(n)
            .execute(&mut *write)
            .await?;
        write.commit().await
    }

    async fn stored(pool: &AnyPool) -> Vec<i64> {
        sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// Waits until `n` writers queue for the connection.
    async fn until_queued(group: &GroupCommit, n: u64) {
        while group.queued() < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn writers_waiting_together_commit_once_and_each_only_after_it() {
        let pool = pool("together").await;
        let group = GroupCommit::start(&pool).await.unwrap();
        let mut first = group.begin().await.unwrap();
        sqlx::query("INSERT INTO t (n) VALUES (0)")
            .execute(&mut *first)
            .await
            .unwrap();
        let writers: Vec<_> = (1..=5)
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { insert(&group, n).await })
            })
            .collect();
        until_queued(&group, 5).await;
        // Nothing is visible outside the batch before it commits.
        assert_eq!(stored(&pool).await, Vec::<i64>::new());
        first.commit().await.unwrap();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        assert_eq!(stored(&pool).await, [0, 1, 2, 3, 4, 5]);
        assert_eq!(group.commits(), 1, "six writers, one commit");
    }

    #[tokio::test]
    async fn a_failing_or_cancelled_member_rolls_back_only_its_own_changes() {
        let pool = pool("failing").await;
        let group = GroupCommit::start(&pool).await.unwrap();
        let first = group.begin().await.unwrap();
        let failing = {
            let group = group.clone();
            tokio::spawn(async move {
                let mut write = group.begin().await?;
                sqlx::query("INSERT INTO t (n) VALUES (66)")
                    .execute(&mut *write)
                    .await?;
                // Refused half-way: dropped without commit.
                sqlx::query("INSERT INTO missing (n) VALUES (1)")
                    .execute(&mut *write)
                    .await?;
                write.commit().await
            })
        };
        let (wrote, written) = tokio::sync::oneshot::channel();
        let cancelled = {
            let group = group.clone();
            tokio::spawn(async move {
                let mut write = group.begin().await.unwrap();
                sqlx::query("INSERT INTO t (n) VALUES (77)")
                    .execute(&mut *write)
                    .await
                    .unwrap();
                wrote.send(()).unwrap();
                std::future::pending::<()>().await;
            })
        };
        let kept = {
            let group = group.clone();
            tokio::spawn(async move { insert(&group, 2).await })
        };
        until_queued(&group, 3).await;
        // Its batch commits only once every member has left the connection, the cancelled one too.
        let first = tokio::spawn(first.commit());
        assert!(failing.await.unwrap().is_err());
        // The request holding the connection goes away in the middle of its transaction.
        written.await.unwrap();
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        kept.await.unwrap().unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(stored(&pool).await, [2]);
        assert_eq!(group.commits(), 1);
        // The connection is clean: the next write commits on its own.
        insert(&group, 3).await.unwrap();
        assert_eq!(stored(&pool).await, [2, 3]);
    }
}
