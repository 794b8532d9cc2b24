//! [`Idempotency`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::store::idempotency::Idempotency;
use sqlx::Row;

use super::{IDEMPOTENCY_TTL_SECS, SqlStore, corrupt};
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::ids::*;
use crate::store::records::*;

#[async_trait]
impl Idempotency for SqlStore {
    async fn begin_idempotent(
        &self,
        source_id: SourceId,
        key: &str,
        request_hash: &str,
        now: UnixSeconds,
        stale_after: i64,
    ) -> Result<IdempotencyStart, StoreError> {
        let mut tx = self.begin_write().await?;
        // The usual case — a key never seen, or one older than the TTL (which counts as never
        // seen) — is this one statement; only a key in use reads what it holds.
        let claimed = self
            .q(
                "INSERT INTO idempotency_keys (source_id, key, request_hash, created_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (source_id, key) DO UPDATE SET request_hash = excluded.request_hash, \
                 created_at = excluded.created_at, status_code = NULL, response_body = NULL \
                 WHERE idempotency_keys.created_at < ? RETURNING created_at",
            )
            .bind(source_id)
            .bind(key)
            .bind(request_hash)
            .bind(now)
            .bind(now - IDEMPOTENCY_TTL_SECS)
            .fetch_optional(&mut *tx)
            .await?;
        let existing = match claimed {
            Some(_) => None,
            None => {
                self.q(
                    "SELECT request_hash, status_code, response_body, created_at FROM idempotency_keys \
                     WHERE source_id = ? AND key = ? FOR NO KEY UPDATE",
                )
                .bind(source_id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let start = match existing {
            None => IdempotencyStart::Fresh,
            Some(row) => {
                let stored_hash: String = row.try_get("request_hash")?;
                let status: Option<i64> = row.try_get("status_code")?;
                let created_at: UnixSeconds = row.try_get("created_at")?;
                match status {
                    _ if stored_hash != request_hash => IdempotencyStart::Conflict,
                    Some(status) => IdempotencyStart::Replay(StoredResponse {
                        status: u16::try_from(status).map_err(corrupt)?,
                        body: row
                            .try_get::<Option<String>, _>("response_body")?
                            .unwrap_or_default(),
                    }),
                    None if now - created_at > stale_after => {
                        self.q("UPDATE idempotency_keys SET created_at = ? WHERE source_id = ? AND key = ?")
                            .bind(now)
                            .bind(source_id)
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                        IdempotencyStart::Fresh
                    }
                    None => IdempotencyStart::InFlight,
                }
            }
        };
        tx.commit().await?;
        Ok(start)
    }

    async fn complete_idempotent(&self, completion: IdempotencyCompletion) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.complete(&mut tx, &completion).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_idempotent(&self, source_id: SourceId, key: &str) -> Result<(), StoreError> {
        self.q("DELETE FROM idempotency_keys WHERE source_id = ? AND key = ? AND status_code IS NULL")
            .bind(source_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
