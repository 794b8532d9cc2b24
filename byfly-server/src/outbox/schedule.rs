//! The retry schedule as data: the configured delays before each retry (by default 1 min, 5 min,
//! 30 min, 2 h, 6 h, 12 h, 24 h), each spread by ±20 % so receivers recovering from an outage are
//! not hit by every sender at once; after the last one the event is exhausted.

/// The jitter is ±(delay / this).
const JITTER_DIVISOR: i64 = 5;

/// When the next attempt is due after a failure at `at`, with `failed_before` attempts of the
/// schedule failed before this one; `None` once the schedule has no delay left (exhausted).
/// `jitter(spread)` picks an offset in `-spread..=spread`.
pub fn next_attempt_at(
    delays: &[i64],
    failed_before: u32,
    at: i64,
    jitter: impl FnOnce(i64) -> i64,
) -> Option<i64> {
    let delay = *usize::try_from(failed_before)
        .ok()
        .and_then(|step| delays.get(step))?;
    let spread = delay / JITTER_DIVISOR;
    let offset = if spread > 0 {
        jitter(spread).clamp(-spread, spread)
    } else {
        0
    };
    Some(at.saturating_add(delay).saturating_add(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_waits_the_next_delay_within_its_jitter_then_the_schedule_ends() {
        let delays = [60, 300, 1];
        assert_eq!(next_attempt_at(&delays, 0, 1_000, |_| 0), Some(1_060));
        assert_eq!(next_attempt_at(&delays, 1, 1_000, |spread| spread), Some(1_360));
        assert_eq!(next_attempt_at(&delays, 1, 1_000, |spread| -spread), Some(1_240));
        // A jitter source that overshoots is held to the spread.
        assert_eq!(next_attempt_at(&delays, 0, 0, |_| 1_000), Some(72));
        // Too short to spread: exactly the delay.
        assert_eq!(next_attempt_at(&delays, 2, 0, |_| 7), Some(1));
        assert_eq!(next_attempt_at(&delays, 3, 0, |_| 0), None);
        assert_eq!(next_attempt_at(&[], 0, 0, |_| 0), None);
    }
}
