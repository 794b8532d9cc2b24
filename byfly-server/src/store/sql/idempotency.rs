//! [`Idempotency`] on SQLite and PostgreSQL, and the claim statement that new payments share.

use async_trait::async_trait;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use crate::store::idempotency::{Idempotency, IdempotencyClaim, IdempotencyStart, StoredResponse};

use super::{IDEMPOTENCY_STALE_SECS, IDEMPOTENCY_TTL_SECS, SqlStore, corrupt};
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::ids::*;

/// The start of a claim of keys with their answers (a literal, for `concat!`).
macro_rules! claim_keys_into {
    () => {
        "INSERT INTO idempotency_keys (source_id, key, request_hash, created_at, status_code, response_body) VALUES "
    };
}
pub(super) use claim_keys_into;

/// One claim's values, in [`bind_claim`]'s order.
macro_rules! claim_values {
    () => {
        "(?, ?, ?, ?, ?, ?)"
    };
}
pub(super) use claim_values;

/// A live key keeps what it holds: only a record past its 24 h, or a claim left without its
/// answer for longer than [`IDEMPOTENCY_STALE_SECS`] (its process died), is taken over. The keys
/// claimed are returned; [`bind_claim_limits`] binds the two ages.
macro_rules! unless_live {
    () => {
        " ON CONFLICT (source_id, key) DO UPDATE SET request_hash = excluded.request_hash, \
         created_at = excluded.created_at, status_code = excluded.status_code, \
         response_body = excluded.response_body \
         WHERE idempotency_keys.created_at < excluded.created_at - ? \
         OR (idempotency_keys.status_code IS NULL AND idempotency_keys.created_at < excluded.created_at - ?) \
         RETURNING source_id, key"
    };
}
pub(super) use unless_live;

/// One key claimed with its answer, unless it is live.
const CLAIM_KEY: &str = concat!(claim_keys_into!(), claim_values!(), unless_live!());

/// `query` with `claim`'s values for one `claim_values!()`.
pub(super) fn bind_claim<'q>(
    query: Query<'q, Any, AnyArguments>,
    claim: &'q IdempotencyClaim,
) -> Query<'q, Any, AnyArguments> {
    query
        .bind(claim.source_id)
        .bind(claim.key.as_str())
        .bind(claim.request_hash.as_str())
        .bind(claim.claimed_at)
        .bind(i64::from(claim.response.status))
        .bind(claim.response.body.as_str())
}

/// `query` with the two ages of `unless_live!()`.
pub(super) fn bind_claim_limits(query: Query<'_, Any, AnyArguments>) -> Query<'_, Any, AnyArguments> {
    query.bind(IDEMPOTENCY_TTL_SECS).bind(IDEMPOTENCY_STALE_SECS)
}

impl SqlStore {
    /// Claims `claim`'s key with its answer inside `tx`: `false` (nothing written) while it is live.
    pub(super) async fn claim_key(
        &self,
        tx: &mut AnyConnection,
        claim: &IdempotencyClaim,
    ) -> Result<bool, StoreError> {
        let claimed = bind_claim_limits(bind_claim(self.q(CLAIM_KEY), claim))
            .fetch_optional(&mut *tx)
            .await?;
        Ok(claimed.is_some())
    }
}

#[async_trait]
impl Idempotency for SqlStore {
    async fn claim_idempotent(&self, claim: &IdempotencyClaim) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let claimed = self.claim_key(&mut tx, claim).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn idempotent_answer(
        &self,
        source_id: SourceId,
        key: &str,
        request_hash: &str,
        now: UnixSeconds,
    ) -> Result<IdempotencyStart, StoreError> {
        let row = self
            .q(
                "SELECT request_hash, status_code, response_body, created_at FROM idempotency_keys \
                 WHERE source_id = ? AND key = ?",
            )
            .bind(source_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(IdempotencyStart::Fresh);
        };
        let stored_hash: String = row.try_get("request_hash")?;
        let status: Option<i64> = row.try_get("status_code")?;
        let age = now - row.try_get::<UnixSeconds, _>("created_at")?;
        Ok(match status {
            _ if age > IDEMPOTENCY_TTL_SECS => IdempotencyStart::Fresh,
            None if age > IDEMPOTENCY_STALE_SECS => IdempotencyStart::Fresh,
            _ if stored_hash != request_hash => IdempotencyStart::Conflict,
            Some(status) => IdempotencyStart::Replay(StoredResponse {
                status: u16::try_from(status).map_err(corrupt)?,
                body: row
                    .try_get::<Option<String>, _>("response_body")?
                    .unwrap_or_default(),
            }),
            None => IdempotencyStart::InFlight,
        })
    }
}
