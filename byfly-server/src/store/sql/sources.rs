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
        self.cache.clear();
        Self::source_row(&row)
    }

    async fn source_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SourceRecord>, StoreError> {
        self.revalidate_cache().await?;
        if let Some(cached) = self.cache.source(hash) {
            return Ok(Some(cached));
        }
        let generation = self.cache.generation();
        let row = self.q(
            "SELECT id, name, webhook_json, active, created_at FROM sources WHERE token_hash = ? AND active = 1",
        )
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let source = row.as_ref().map(Self::source_row).transpose()?;
        if let Some(source) = &source {
            self.cache.keep_source(hash, source, generation);
        }
        Ok(source)
    }

    async fn source(&self, id: SourceId) -> Result<Option<SourceRecord>, StoreError> {
        self.revalidate_cache().await?;
        if let Some(cached) = self.cache.source_by_id(id) {
            return Ok(Some(cached));
        }
        let generation = self.cache.generation();
        let source = self
            .by_id(
                "SELECT id, name, webhook_json, active, created_at FROM sources WHERE id = ?",
                id,
                Self::source_row,
            )
            .await?;
        if let Some(source) = &source {
            self.cache.keep_source_by_id(source, generation);
        }
        Ok(source)
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
        // At once in this process; the others notice through `cache_generation`.
        self.cache.clear();
        row.as_ref().map(Self::source_row).transpose()
    }
}

impl SqlStore {
    /// Drops the [`ReadCache`](super::read_cache::ReadCache) if `cache_generation` moved (asked
    /// at most once per recheck interval).
    pub(super) async fn revalidate_cache(&self) -> Result<(), StoreError> {
        if self.cache.due_for_check() {
            let generation: i64 = self
                .scalar("SELECT generation FROM cache_generation")
                .fetch_one(&self.pool)
                .await?;
            self.cache.checked(generation);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::read_cache::{CACHE_RECHECK, ReadCache};
    use super::*;
    use crate::store::{Database, Payments};

    /// A store of its own on the database at `url`, as another process would have, whose cache
    /// asks the database about changes every `recheck`.
    async fn process(url: &str, recheck: Duration) -> SqlStore {
        let mut store = SqlStore::open(url).await.unwrap();
        store.cache = std::sync::Arc::new(ReadCache::new(recheck));
        store
    }

    #[tokio::test]
    async fn a_revoke_or_a_new_commission_reaches_every_process_through_the_database() {
        let url = super::super::temp_sqlite_url("source-cache");
        let operator = process(&url, CACHE_RECHECK).await;
        operator.migrate().await.unwrap();
        // `patient` trusts its cache for an hour, `eager` asks about changes on every lookup.
        let patient = process(&url, Duration::from_secs(3600)).await;
        let eager = process(&url, Duration::ZERO).await;
        let hash = TokenHash::of("bf_cache_test_token");
        let source = operator
            .create_source("CRM", &hash, BodyEncoding::Js, UnixSeconds(0))
            .await
            .unwrap();
        for store in [&operator, &patient, &eager] {
            assert_eq!(
                store.source_by_token_hash(&hash).await.unwrap(),
                Some(source.clone())
            );
        }

        for store in [&operator, &patient, &eager] {
            assert!(store.source(source.id).await.unwrap().unwrap().active);
        }

        operator
            .update_source(source.id, None, Some(false))
            .await
            .unwrap();
        assert!(!eager.source(source.id).await.unwrap().unwrap().active);
        assert!(!operator.source(source.id).await.unwrap().unwrap().active);
        // The process that revoked refuses the token at once; another one as soon as it asks
        // the database about changes; one that has not asked yet still answers from its cache
        // (which is what saves the query: the window is `CACHE_RECHECK`).
        assert_eq!(operator.source_by_token_hash(&hash).await.unwrap(), None);
        assert_eq!(eager.source_by_token_hash(&hash).await.unwrap(), None);
        assert_eq!(patient.source_by_token_hash(&hash).await.unwrap(), Some(source));
        // Unknown tokens are never cached as unknown: a new source is found at once.
        let later = TokenHash::of("bf_cache_test_later");
        assert_eq!(patient.source_by_token_hash(&later).await.unwrap(), None);
        let created = operator
            .create_source("Shop", &later, BodyEncoding::Js, UnixSeconds(0))
            .await
            .unwrap();
        assert_eq!(patient.source_by_token_hash(&later).await.unwrap(), Some(created));

        // The payment methods the same way.
        let percent = |store: SqlStore| async move {
            let methods = store.payment_methods().await.unwrap();
            (methods[0].0.commission_percent, store)
        };
        let (before, eager) = percent(eager).await;
        let (_, patient) = percent(patient).await;
        let changed = byfly_core::wire::UpdateMethodRequest {
            commission_percent: Some(serde_json::from_str("2.5").unwrap()),
            ..Default::default()
        };
        let id = operator.payment_methods().await.unwrap()[0].0.id;
        operator.update_method(id, &changed).await.unwrap().unwrap();
        assert_eq!(percent(operator).await.0, changed.commission_percent.unwrap());
        assert_eq!(percent(eager).await.0, changed.commission_percent.unwrap());
        assert_eq!(percent(patient).await.0, before);
    }
}
