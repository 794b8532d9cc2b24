//! [`Sources`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::store::sources::Sources;
use byfly_core::BodyEncoding;
use byfly_core::ids::TokenHash;

use super::SqlStore;
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::ids::*;
use crate::store::records::*;

#[async_trait]
impl Sources for SqlStore {
    async fn create_source(
        &self,
        name: &str,
        token_hash: &TokenHash,
        webhook_json: BodyEncoding,
        now: UnixSeconds,
    ) -> Result<SourceRecord, StoreError> {
        let row = self.q(
            "INSERT INTO sources (name, token_hash, webhook_json, active, created_at) VALUES (?, ?, ?, 1, ?) \
             RETURNING id, name, webhook_json, active, created_at",
        )
        .bind(name)
        .bind(token_hash.as_str())
        .bind(webhook_json.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Self::source_row(&row)
    }

    async fn source_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SourceRecord>, StoreError> {
        let row = self.q(
            "SELECT id, name, webhook_json, active, created_at FROM sources WHERE token_hash = ? AND active = 1",
        )
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::source_row).transpose()
    }

    async fn source(&self, id: SourceId) -> Result<Option<SourceRecord>, StoreError> {
        self.by_id(
            "SELECT id, name, webhook_json, active, created_at FROM sources WHERE id = ?",
            id,
            Self::source_row,
        )
        .await
    }

    async fn sources(&self) -> Result<Vec<SourceRecord>, StoreError> {
        self.all(
            "SELECT id, name, webhook_json, active, created_at FROM sources ORDER BY id",
            Self::source_row,
        )
        .await
    }

    async fn update_source(
        &self,
        id: SourceId,
        webhook_json: Option<BodyEncoding>,
        active: Option<bool>,
    ) -> Result<Option<SourceRecord>, StoreError> {
        let row = self.q(
            "UPDATE sources SET webhook_json = COALESCE(?, webhook_json), active = COALESCE(?, active) WHERE id = ? \
             RETURNING id, name, webhook_json, active, created_at",
        )
        .bind(webhook_json.map(BodyEncoding::as_str))
        .bind(active.map(i64::from))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::source_row).transpose()
    }
}
