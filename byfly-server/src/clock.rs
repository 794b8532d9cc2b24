//! Business time: what "now" is for expiry, deadlines, leases and retries. Injected, so a test can
//! hold time still or move it; the server runs on [`SystemClock`]. (The stale-start sweep asks the
//! database's own clock instead: one clock for every process sharing the database.)

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::store::UnixSeconds;

/// A source of "now", in Unix seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix seconds now.
    fn now(&self) -> UnixSeconds;
}

/// The clock services share.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixSeconds {
        UnixSeconds(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)),
        )
    }
}

impl SystemClock {
    /// The wall clock as the shared clock of a server.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// The wall clock's Unix seconds, for wiring that has no [`crate::app::App`] at hand (and tests).
pub fn unix_now() -> UnixSeconds {
    SystemClock.now()
}

/// A clock that moves only when told: starts at the wall clock's now, then [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock(AtomicI64::new(SystemClock.now().get()))
    }
}

impl ManualClock {
    /// Moves time forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixSeconds {
        UnixSeconds(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::default();
        let start = clock.now();
        assert!((start - SystemClock.now()).abs() <= 1);
        assert_eq!(clock.now(), start);
        clock.advance(90);
        assert_eq!(clock.now(), start + 90);
    }
}
