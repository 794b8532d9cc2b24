//! Work that must outlive the request that started it — a `/kaspi` or a refund whose terminal may
//! already be running the operation — counted, so that a shutdown waits for it instead of the
//! runtime cancelling it halfway (which would leave a clean stop on the crash-recovery path).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The carried work of one server process.
#[derive(Debug)]
pub struct CarriedWork {
    /// How many pieces are running.
    running: Arc<watch::Sender<usize>>,
}

impl Default for CarriedWork {
    fn default() -> Self {
        CarriedWork {
            running: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// Counts a piece down when it ends, however it ends (done, panicked, cancelled).
struct Running(Arc<watch::Sender<usize>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|running| *running = running.saturating_sub(1));
    }
}

impl CarriedWork {
    /// Runs `work` in a task of its own, counted until it ends.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.running.send_modify(|running| *running += 1);
        let running = Running(self.running.clone());
        tokio::spawn(async move {
            let _running = running;
            work.await
        })
    }

    /// Waits until no piece runs, for at most `limit`: whether none does.
    pub async fn finished_within(&self, limit: Duration) -> bool {
        let mut running = self.running.subscribe();
        tokio::time::timeout(limit, running.wait_for(|running| *running == 0))
            .await
            .is_ok()
    }

    /// How many pieces are running now.
    pub fn running(&self) -> usize {
        *self.running.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shutdown_waits_for_carried_work_and_is_told_when_it_is_over() {
        let carried = CarriedWork::default();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let piece = carried.spawn(async move {
            finished.await.ok();
            7
        });
        assert_eq!(carried.running(), 1);
        assert!(!carried.finished_within(Duration::from_millis(50)).await);
        finish.send(()).ok();
        assert!(carried.finished_within(Duration::from_secs(10)).await);
        assert_eq!(piece.await.ok(), Some(7));
        // A piece that panics is counted down too.
        let panicked = carried.spawn(async { panic!("a bug in the work") });
        assert!(panicked.await.is_err());
        assert_eq!(carried.running(), 0);
    }
}
