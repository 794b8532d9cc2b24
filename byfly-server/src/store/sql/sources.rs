//! [`Sources`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::store::sources::Sources;
use byfly_core::BodyEncoding;
use byfly_core::ids::TokenHash;

use super::FetchWritten;
use super::SqlStore;
use super::read_cache::KeyUse;
use crate::store::KEY_USE_RESOLUTION;
use sqlx::Row;

/// The columns of an [`ApiKeyRecord`], in every query that reads one (a macro: queries are
/// `&'static str`, put together by `concat!`).
macro_rules! key_columns {
    () => {
        "id, source_id, name, hint, created_at, expires_at, revoked_at, last_used_at"
    };
}
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
        let mut tx = self.begin_write().await?;
        let row = self.q(
            "INSERT INTO sources (name, token_hash, webhook_json, active, created_at) VALUES (?, ?, ?, 1, ?) \
             RETURNING id, name, webhook_json, active, created_at",
        )
        .bind(name)
        .bind(token_hash.as_str())
        .bind(webhook_json.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let source = Self::source_row(&row)?;
        self.q(
            "INSERT INTO api_keys (source_id, name, token_hash, hint, created_at) VALUES (?, 'initial', ?, '', ?)",
        )
        .bind(source.id)
        .bind(token_hash.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.cache.clear();
        Ok(source)
    }

    async fn source_by_token_hash(
        &self,
        hash: &TokenHash,
        now: UnixSeconds,
    ) -> Result<Option<SourceRecord>, StoreError> {
        self.revalidate_cache().await?;
        let found = match self.cache.source(hash) {
            Some(cached) => Some(cached),
            None => {
                let generation = self.cache.generation();
                let row = self
                    .q("SELECT s.id, s.name, s.webhook_json, s.active, s.created_at, \
                         k.id AS key_id, k.expires_at, k.last_used_at \
                         FROM api_keys k JOIN sources s ON s.id = k.source_id \
                         WHERE k.token_hash = ? AND k.revoked_at IS NULL AND s.active = 1")
                    .bind(hash.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    None => None,
                    Some(row) => {
                        let source = Self::source_row(&row)?;
                        let key = KeyUse {
                            id: row.try_get("key_id")?,
                            expires_at: row.try_get("expires_at")?,
                            last_used_at: row.try_get("last_used_at")?,
                        };
                        self.cache.keep_source(hash, &source, key, generation);
                        Some((source, key))
                    }
                }
            }
        };
        let Some((source, key)) = found else {
            return Ok(None);
        };
        if key.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        if key.last_used_at.is_none_or(|at| now - at >= KEY_USE_RESOLUTION) {
            self.q("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                .bind(now)
                .bind(key.id)
                .execute(&self.pool)
                .await?;
            self.cache.note_key_use(hash, now);
        }
        Ok(Some(source))
    }

    async fn api_keys(&self, source_id: SourceId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = self
            .q(concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE source_id = ? ORDER BY id"
            ))
            .bind(source_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::api_key_row).collect()
    }

    async fn create_api_key(
        &self,
        source_id: SourceId,
        key: NewApiKey<'_>,
        now: UnixSeconds,
    ) -> Result<ApiKeyRecord, StoreError> {
        let row = self
            .q(concat!(
                "INSERT INTO api_keys (source_id, name, token_hash, hint, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING ",
                key_columns!()
            ))
            .bind(source_id)
            .bind(key.name)
            .bind(key.token_hash.as_str())
            .bind(key.hint)
            .bind(now)
            .bind(key.expires_at)
            .fetch_written_one(&self.pool)
            .await?;
        self.cache.clear();
        Self::api_key_row(&row)
    }

    async fn revoke_api_key(
        &self,
        source_id: SourceId,
        key_id: ApiKeyId,
        now: UnixSeconds,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = self
            .q(concat!(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND source_id = ? \
                 RETURNING ",
                key_columns!()
            ))
            .bind(now)
            .bind(key_id)
            .bind(source_id)
            .fetch_written(&self.pool)
            .await?;
        // At once in this process; the others notice through `cache_generation`.
        self.cache.clear();
        row.as_ref().map(Self::api_key_row).transpose()
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
        .fetch_written(&self.pool)
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
    async fn a_source_rotates_its_key_and_every_process_follows() {
        let url = super::super::temp_sqlite_url("key-rotation");
        let operator = process(&url, CACHE_RECHECK).await;
        operator.migrate().await.unwrap();
        let patient = process(&url, Duration::from_secs(3600)).await;
        let eager = process(&url, Duration::ZERO).await;
        let old = TokenHash::of("bf_rotation_old_token");
        let source = operator
            .create_source("CRM", &old, BodyEncoding::Php, UnixSeconds(100))
            .await
            .unwrap();
        let keys = operator.api_keys(source.id).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!((keys[0].name.as_str(), keys[0].last_used_at), ("initial", None));
        // The new key works beside the old one; it expires at 5000.
        let new = TokenHash::of("bf_rotation_new_token");
        let created = operator
            .create_api_key(
                source.id,
                NewApiKey {
                    name: "CRM 2027",
                    token_hash: &new,
                    hint: "oken",
                    expires_at: Some(UnixSeconds(5000)),
                },
                UnixSeconds(200),
            )
            .await
            .unwrap();
        for store in [&operator, &patient, &eager] {
            for hash in [&old, &new] {
                assert_eq!(
                    store.source_by_token_hash(hash, UnixSeconds(1000)).await.unwrap(),
                    Some(source.clone())
                );
            }
        }
        // A use is written once a minute per key, not once a request.
        let used = || async { operator.api_keys(source.id).await.unwrap()[1].last_used_at };
        assert_eq!(used().await, Some(UnixSeconds(1000)));
        operator
            .source_by_token_hash(&new, UnixSeconds(1059))
            .await
            .unwrap();
        assert_eq!(used().await, Some(UnixSeconds(1000)));
        operator
            .source_by_token_hash(&new, UnixSeconds(1060))
            .await
            .unwrap();
        assert_eq!(used().await, Some(UnixSeconds(1060)));
        // Revoking the old key: refused at once here and wherever the database is asked; the
        // new key goes on working everywhere.
        let revoked = operator
            .revoke_api_key(source.id, keys[0].id, UnixSeconds(2000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(UnixSeconds(2000)));
        assert!(!revoked.is_live(UnixSeconds(2000)));
        assert_eq!(
            operator
                .source_by_token_hash(&old, UnixSeconds(2000))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            eager.source_by_token_hash(&old, UnixSeconds(2000)).await.unwrap(),
            None
        );
        assert_eq!(
            eager.source_by_token_hash(&new, UnixSeconds(2000)).await.unwrap(),
            Some(source.clone())
        );
        // Revoking again keeps the first time; another source's key id is not this source's.
        let again = operator
            .revoke_api_key(source.id, keys[0].id, UnixSeconds(3000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.revoked_at, Some(UnixSeconds(2000)));
        assert_eq!(
            operator
                .revoke_api_key(SourceId(source.id.get() + 1), created.id, UnixSeconds(3000))
                .await
                .unwrap(),
            None
        );
        // An expired key is refused even from a cache that has not asked the database since.
        assert_eq!(
            patient
                .source_by_token_hash(&new, UnixSeconds(4999))
                .await
                .unwrap(),
            Some(source.clone())
        );
        assert_eq!(
            patient
                .source_by_token_hash(&new, UnixSeconds(5000))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            operator
                .source_by_token_hash(&new, UnixSeconds(5000))
                .await
                .unwrap(),
            None
        );
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
                store.source_by_token_hash(&hash, UnixSeconds(0)).await.unwrap(),
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
        assert_eq!(
            operator
                .source_by_token_hash(&hash, UnixSeconds(0))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            eager.source_by_token_hash(&hash, UnixSeconds(0)).await.unwrap(),
            None
        );
        assert_eq!(
            patient.source_by_token_hash(&hash, UnixSeconds(0)).await.unwrap(),
            Some(source)
        );
        // Unknown tokens are never cached as unknown: a new source is found at once.
        let later = TokenHash::of("bf_cache_test_later");
        assert_eq!(
            patient
                .source_by_token_hash(&later, UnixSeconds(0))
                .await
                .unwrap(),
            None
        );
        let created = operator
            .create_source("Shop", &later, BodyEncoding::Js, UnixSeconds(0))
            .await
            .unwrap();
        assert_eq!(
            patient
                .source_by_token_hash(&later, UnixSeconds(0))
                .await
                .unwrap(),
            Some(created)
        );

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
