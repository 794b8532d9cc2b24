//! Liveness of the background workers: when each last finished a round.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a worker's round may take before readiness reports it stalled: far above any round's
/// own bounds (terminal calls time out in seconds, side by side), so only a hung round reaches it.
pub const WORKER_STALL: Duration = Duration::from_secs(120);

/// When each worker of this process last finished a round (or started): a worker stuck in a round
/// — a call that never returns, a database that never answers — shows here, for readiness.
#[derive(Debug, Default)]
pub struct Heartbeats(Mutex<Vec<(&'static str, Instant)>>);

impl Heartbeats {
    /// `worker` is alive now.
    pub fn beat(&self, worker: &'static str) {
        let mut beats = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match beats.iter_mut().find(|(name, _)| *name == worker) {
            Some((_, at)) => *at = now,
            None => beats.push((worker, now)),
        }
    }

    /// The workers whose last beat is older than `max_age`; `None` when no worker runs in this
    /// process (not started, or stopped).
    pub fn stalled(&self, max_age: Duration) -> Option<Vec<&'static str>> {
        let beats = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if beats.is_empty() {
            return None;
        }
        Some(
            beats
                .iter()
                .filter(|(_, at)| at.elapsed() > max_age)
                .map(|(name, _)| *name)
                .collect(),
        )
    }

    /// No worker runs any more.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
