//! Merchant systems and their tokens.

use async_trait::async_trait;

use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::*;
use byfly_core::BodyEncoding;
use byfly_core::ids::TokenHash;

/// Merchant systems and their tokens.
#[async_trait]
pub trait Sources: Send + Sync {
    /// Creates a source with the hash of its new token.
    async fn create_source(
        &self,
        name: &str,
        token_hash: &TokenHash,
        webhook_json: BodyEncoding,
        now: UnixSeconds,
    ) -> Result<SourceRecord, StoreError>;

    /// The active source whose token hashes to `hash`.
    async fn source_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SourceRecord>, StoreError>;

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
