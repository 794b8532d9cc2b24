//! What every API request would otherwise read again: the active sources by token hash (and by
//! id, for a payment's merchant name) and the payment methods (see [`ReadCache`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use byfly_core::PaymentMethod;
use byfly_core::ids::TokenHash;

use crate::store::ids::{ApiKeyId, SourceId, UnixSeconds};
use crate::store::records::SourceRecord;

/// The active sources this process has looked up by token hash (with the key each hash is) and
/// the payment methods, so that an API request costs neither a token query nor a methods query.
///
/// Why it cannot serve a revoked token (or an old commission) for long: every change to `sources`,
/// `api_keys` (but a key's `last_used_at`) or `payment_methods` — by any process, the CLI or by
/// hand — increments `cache_generation` (a trigger), and the cache compares that number with the
/// one it was filled under at most every `recheck`, dropping everything when it moved. A change
/// made through this process clears it at once; an expired key is refused from the cache by its
/// `expires_at`. Only found sources are kept, so the cache is as large as the set of active tokens, and an
/// unknown token always asks the database.
#[derive(Debug)]
pub(super) struct ReadCache {
    recheck: Duration,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// The database's generation the entries belong to (`None`: not read yet).
    generation: Option<i64>,
    checked_at: Option<Instant>,
    sources_by_hash: HashMap<String, (SourceRecord, KeyUse)>,
    /// Every source looked up by id (a payment's merchant name), active or not.
    sources_by_id: HashMap<SourceId, SourceRecord>,
    methods: Option<Vec<(PaymentMethod, bool)>>,
}

/// What the cache keeps of the key a token hash belongs to: enough to refuse it once it expires
/// and to note its use without a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyUse {
    pub(super) id: ApiKeyId,
    pub(super) expires_at: Option<UnixSeconds>,
    pub(super) last_used_at: Option<UnixSeconds>,
}

/// How long another process's change can go unnoticed here.
pub(super) const CACHE_RECHECK: Duration = Duration::from_secs(1);

impl ReadCache {
    pub(super) fn new(recheck: Duration) -> ReadCache {
        ReadCache {
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
            state.sources_by_hash.clear();
            state.sources_by_id.clear();
            state.methods = None;
            state.generation = Some(generation);
        }
        state.checked_at = Some(Instant::now());
    }

    /// The generation entries read now are kept under (see [`ReadCache::keep_source`]).
    pub(super) fn generation(&self) -> Option<i64> {
        self.state().generation
    }

    pub(super) fn source(&self, hash: &TokenHash) -> Option<(SourceRecord, KeyUse)> {
        self.state().sources_by_hash.get(hash.as_str()).cloned()
    }

    /// Keeps `source` and its key, read while the cache was at `generation`, unless the cache
    /// moved since.
    pub(super) fn keep_source(
        &self,
        hash: &TokenHash,
        source: &SourceRecord,
        key: KeyUse,
        generation: Option<i64>,
    ) {
        let mut state = self.state();
        if state.generation.is_some() && state.generation == generation {
            state
                .sources_by_hash
                .insert(hash.as_str().to_owned(), (source.clone(), key));
        }
    }

    /// Records that the key of `hash` was used at `at` (written to the database by the caller).
    pub(super) fn note_key_use(&self, hash: &TokenHash, at: UnixSeconds) {
        if let Some((_, key)) = self.state().sources_by_hash.get_mut(hash.as_str()) {
            key.last_used_at = Some(at);
        }
    }

    pub(super) fn source_by_id(&self, id: SourceId) -> Option<SourceRecord> {
        self.state().sources_by_id.get(&id).cloned()
    }

    /// Keeps `source`, read by id while the cache was at `generation`, unless the cache moved.
    pub(super) fn keep_source_by_id(&self, source: &SourceRecord, generation: Option<i64>) {
        let mut state = self.state();
        if state.generation.is_some() && state.generation == generation {
            state.sources_by_id.insert(source.id, source.clone());
        }
    }

    pub(super) fn methods(&self) -> Option<Vec<(PaymentMethod, bool)>> {
        self.state().methods.clone()
    }

    /// Keeps the methods, read while the cache was at `generation`, unless the cache moved since.
    pub(super) fn keep_methods(&self, methods: &[(PaymentMethod, bool)], generation: Option<i64>) {
        let mut state = self.state();
        if state.generation.is_some() && state.generation == generation {
            state.methods = Some(methods.to_vec());
        }
    }

    /// Forgets everything, and reads the generation again on the next lookup.
    pub(super) fn clear(&self) {
        let mut state = self.state();
        state.sources_by_hash.clear();
        state.sources_by_id.clear();
        state.methods = None;
        state.generation = None;
        state.checked_at = None;
    }
}
