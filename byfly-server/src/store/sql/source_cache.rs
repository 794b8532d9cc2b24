//! The token cache in front of `sources` (see [`SourceCache`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use byfly_core::ids::TokenHash;

use crate::store::records::SourceRecord;

/// The active sources this process has looked up by token hash, so that an API request costs no
/// token query.
///
/// Why it cannot serve a revoked token for long: every change to `sources` — by any process, the
/// CLI or by hand — increments `sources_generation` (a trigger), and the cache compares that
/// number with the one it was filled under at most every `recheck`, dropping everything when it
/// moved. A change made through this process clears it at once. Only found sources are kept, so
/// the cache is as large as the set of active tokens, and an unknown token always asks the
/// database.
#[derive(Debug)]
pub(super) struct SourceCache {
    recheck: Duration,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// The database's generation the entries belong to (`None`: not read yet).
    generation: Option<i64>,
    checked_at: Option<Instant>,
    by_hash: HashMap<String, SourceRecord>,
}

/// How long another process's revoke can go unnoticed here.
pub(super) const SOURCES_RECHECK: Duration = Duration::from_secs(1);

impl SourceCache {
    pub(super) fn new(recheck: Duration) -> SourceCache {
        SourceCache {
            recheck,
            state: Mutex::new(CacheState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // A panic elsewhere while holding it leaves nothing half-written worth refusing.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the database's generation should be read before trusting the entries.
    pub(super) fn due_for_check(&self) -> bool {
        let state = self.state();
        state
            .checked_at
            .is_none_or(|checked_at| checked_at.elapsed() >= self.recheck)
    }

    /// Records the database's generation, dropping the entries if it moved.
    pub(super) fn checked(&self, generation: i64) {
        let mut state = self.state();
        if state.generation != Some(generation) {
            state.by_hash.clear();
            state.generation = Some(generation);
        }
        state.checked_at = Some(Instant::now());
    }

    pub(super) fn generation(&self) -> Option<i64> {
        self.state().generation
    }

    pub(super) fn get(&self, hash: &TokenHash) -> Option<SourceRecord> {
        self.state().by_hash.get(hash.as_str()).cloned()
    }

    /// Keeps `source`, found while the cache was at `generation`, unless the cache moved since.
    pub(super) fn insert(&self, hash: &TokenHash, source: &SourceRecord, generation: Option<i64>) {
        let mut state = self.state();
        if state.generation.is_some() && state.generation == generation {
            state.by_hash.insert(hash.as_str().to_owned(), source.clone());
        }
    }

    /// Forgets everything, and reads the generation again on the next lookup.
    pub(super) fn clear(&self) {
        let mut state = self.state();
        state.by_hash.clear();
        state.generation = None;
        state.checked_at = None;
    }
}
