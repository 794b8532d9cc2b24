//! [`AdminSessions`] on SQLite and PostgreSQL.

use async_trait::async_trait;
use byfly_core::ids::TokenHash;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::FetchWritten;
use super::SqlStore;
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::sessions::{AdminSessionRecord, AdminSessions, SESSION_SEEN_RESOLUTION};

fn session_row(row: &AnyRow) -> Result<AdminSessionRecord, StoreError> {
    Ok(AdminSessionRecord {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
        client: row.try_get("client")?,
        operator: row.try_get("operator")?,
    })
}

#[async_trait]
impl AdminSessions for SqlStore {
    async fn create_admin_session(
        &self,
        token_hash: &TokenHash,
        issued_for: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
        client: Option<&str>,
        operator: Option<&str>,
    ) -> Result<AdminSessionRecord, StoreError> {
        self.q("DELETE FROM admin_sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let row = self
            .q(
                "INSERT INTO admin_sessions (token_hash, issued_for, created_at, last_seen_at, expires_at, client, operator) \
                VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id, created_at, last_seen_at, expires_at, client, operator",
            )
            .bind(token_hash.as_str())
            .bind(issued_for)
            .bind(now)
            .bind(now)
            .bind(expires_at)
            .bind(client)
            .bind(operator)
            .fetch_written_one(&self.pool)
            .await?;
        session_row(&row)
    }

    async fn admin_session(
        &self,
        token_hash: &TokenHash,
        issued_for: &str,
        now: UnixSeconds,
        idle: i64,
    ) -> Result<Option<AdminSessionRecord>, StoreError> {
        let row = self
            .q(
                "SELECT id, created_at, last_seen_at, expires_at, client, operator FROM admin_sessions \
                WHERE token_hash = ? AND issued_for = ? AND expires_at > ? AND last_seen_at > ?",
            )
            .bind(token_hash.as_str())
            .bind(issued_for)
            .bind(now)
            .bind(now - idle)
            .fetch_optional(&self.pool)
            .await?;
        let Some(mut session) = row.as_ref().map(session_row).transpose()? else {
            return Ok(None);
        };
        if now - session.last_seen_at >= SESSION_SEEN_RESOLUTION.min(idle / 4).max(1) {
            self.q("UPDATE admin_sessions SET last_seen_at = ? WHERE id = ?")
                .bind(now)
                .bind(session.id)
                .execute(&self.pool)
                .await?;
            session.last_seen_at = now;
        }
        Ok(Some(session))
    }

    async fn end_admin_session(&self, token_hash: &TokenHash) -> Result<(), StoreError> {
        self.q("DELETE FROM admin_sessions WHERE token_hash = ?")
            .bind(token_hash.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
