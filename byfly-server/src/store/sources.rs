//! Merchant systems and their API keys.

use async_trait::async_trait;

use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::*;
use byfly_core::BodyEncoding;
use byfly_core::ids::TokenHash;

/// How precisely a key's `last_used_at` is kept: a use is written only when the stored one is
/// older, so an API request costs no write for it but once a minute per key.
pub const KEY_USE_RESOLUTION: i64 = 60;

/// Merchant systems and their API keys.
#[async_trait]
pub trait Sources: Send + Sync {
    /// Creates a source with the hash of its new token, which becomes its first key, "initial".
    async fn create_source(
        &self,
        name: &str,
        token_hash: &TokenHash,
        webhook_json: BodyEncoding,
        now: UnixSeconds,
    ) -> Result<SourceRecord, StoreError>;

    /// The active source one of whose live keys (not revoked, not expired at `now`) has a token
    /// hashing to `hash`. Notes the key's use, at most once per [`KEY_USE_RESOLUTION`].
    async fn source_by_token_hash(
        &self,
        hash: &TokenHash,
        now: UnixSeconds,
    ) -> Result<Option<SourceRecord>, StoreError>;

    /// A source's keys, oldest first.
    async fn api_keys(&self, source_id: SourceId) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Adds a key to a source (which must exist).
    async fn create_api_key(
        &self,
        source_id: SourceId,
        key: NewApiKey<'_>,
        now: UnixSeconds,
    ) -> Result<ApiKeyRecord, StoreError>;

    /// Revokes a source's key at `now` (a key already revoked keeps its time); `None` when the
    /// source has no such key. Every process stops accepting it within the cache's recheck.
    async fn revoke_api_key(
        &self,
        source_id: SourceId,
        key_id: ApiKeyId,
        now: UnixSeconds,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// A source by id.
    async fn source(&self, id: SourceId) -> Result<Option<SourceRecord>, StoreError>;

    /// Every source, by id.
    async fn sources(&self) -> Result<Vec<SourceRecord>, StoreError>;

    /// Changes a source's encoding and/or active flag; `None` for an unknown id.
    async fn update_source(
        &self,
        id: SourceId,
        webhook_json: Option<BodyEncoding>,
        active: Option<bool>,
    ) -> Result<Option<SourceRecord>, StoreError>;
}
