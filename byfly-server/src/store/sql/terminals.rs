//! [`Terminals`] on SQLite and PostgreSQL.

use async_trait::async_trait;

use crate::store::terminals::Terminals;
use byfly_terminal::Tokens;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::FetchWritten;
use super::{SqlStore, TOKEN_TIME_FORMAT, corrupt, tls_columns};
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::ids::*;
use crate::store::records::*;

#[async_trait]
impl Terminals for SqlStore {
    async fn add_terminal(
        &self,
        terminal: &NewTerminal,
        now: UnixSeconds,
    ) -> Result<Option<TerminalRecord>, StoreError> {
        let (mode, server_name) = tls_columns(&terminal.tls);
        let row = self
            .q(
                "INSERT INTO terminals (name, base_url, camera_url, tls_mode, tls_server_name, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING *",
            )
            .bind(&terminal.name)
            .bind(&terminal.base_url)
            .bind(&terminal.camera_url)
            .bind(mode)
            .bind(server_name)
            .bind(now)
            .fetch_written(&self.pool)
            .await?;
        row.as_ref().map(Self::terminal).transpose()
    }

    async fn upsert_terminal(
        &self,
        terminal: &NewTerminal,
        now: UnixSeconds,
    ) -> Result<TerminalRecord, StoreError> {
        let (mode, server_name) = tls_columns(&terminal.tls);
        let row = self.q(
            "INSERT INTO terminals (name, base_url, camera_url, tls_mode, tls_server_name, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET base_url = excluded.base_url, \
             camera_url = excluded.camera_url, tls_mode = excluded.tls_mode, tls_server_name = excluded.tls_server_name, \
             access_token = NULL, refresh_token = NULL, token_expires_at = NULL, healthy = 0, last_checked_at = NULL \
             RETURNING *",
        )
        .bind(&terminal.name)
        .bind(&terminal.base_url)
        .bind(&terminal.camera_url)
        .bind(mode)
        .bind(server_name)
        .bind(now)
        .fetch_written_one(&self.pool)
        .await?;
        Self::terminal(&row)
    }

    async fn edit_terminal(
        &self,
        id: TerminalId,
        terminal: &NewTerminal,
    ) -> Result<Option<TerminalRecord>, StoreError> {
        let (mode, server_name) = tls_columns(&terminal.tls);
        let row = self
            .q("UPDATE terminals SET \
               access_token = CASE WHEN base_url = ? THEN access_token ELSE NULL END, \
               refresh_token = CASE WHEN base_url = ? THEN refresh_token ELSE NULL END, \
               healthy = CASE WHEN base_url = ? THEN healthy ELSE 0 END, \
               base_url = ?, camera_url = ?, tls_mode = ?, tls_server_name = ? WHERE id = ? RETURNING *")
            .bind(&terminal.base_url)
            .bind(&terminal.base_url)
            .bind(&terminal.base_url)
            .bind(&terminal.base_url)
            .bind(&terminal.camera_url)
            .bind(mode)
            .bind(server_name)
            .bind(id)
            .fetch_written(&self.pool)
            .await?;
        row.as_ref().map(Self::terminal).transpose()
    }

    async fn set_terminal_enabled(
        &self,
        id: TerminalId,
        enabled: bool,
    ) -> Result<Option<TerminalRecord>, StoreError> {
        let row = self
            .q("UPDATE terminals SET enabled = ? WHERE id = ? RETURNING *")
            .bind(i64::from(enabled))
            .bind(id)
            .fetch_written(&self.pool)
            .await?;
        row.as_ref().map(Self::terminal).transpose()
    }

    async fn terminal(&self, id: TerminalId) -> Result<Option<TerminalRecord>, StoreError> {
        self.by_id("SELECT * FROM terminals WHERE id = ?", id, Self::terminal)
            .await
    }

    async fn terminals(&self) -> Result<Vec<TerminalRecord>, StoreError> {
        self.all("SELECT * FROM terminals ORDER BY id", Self::terminal)
            .await
    }

    async fn claim_health_checks(
        &self,
        now: UnixSeconds,
        interval: i64,
    ) -> Result<Vec<TerminalRecord>, StoreError> {
        // Rows picked in id order and skipped while another transaction holds them (PostgreSQL):
        // one UPDATE over rows in heap order, run by two processes at once, could lock them in
        // opposite orders and deadlock — with the claims queued on those rows as victims (seen in
        // CI as three `/kaspi` 500s). A skipped terminal is checked on the next tick; two
        // processes share the due terminals instead of both asking each.
        let rows = self
            .q("UPDATE terminals SET last_checked_at = ? WHERE id IN (\
               SELECT id FROM terminals WHERE enabled = 1 AND (last_checked_at IS NULL OR last_checked_at <= ?) \
               ORDER BY id FOR NO KEY UPDATE SKIP LOCKED) RETURNING *")
            .bind(now)
            .bind(now - interval)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::terminal).collect()
    }

    async fn record_health(
        &self,
        id: TerminalId,
        healthy: bool,
        error: Option<&str>,
        device_terminal_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.q("UPDATE terminals SET healthy = ?, last_error = ?, \
             device_terminal_id = COALESCE(?, device_terminal_id) WHERE id = ?")
            .bind(i64::from(healthy))
            .bind(error)
            .bind(device_terminal_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn save_terminal_tokens(
        &self,
        id: TerminalId,
        tokens: &Tokens,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        self.tokens_update(id, tokens, now).execute(&self.pool).await?;
        Ok(())
    }

    async fn forget_terminal_tokens(
        &self,
        id: TerminalId,
        access_token: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let done = self
            .q(
                "UPDATE terminals SET access_token = NULL, refresh_token = NULL, token_expires_at = NULL, \
                healthy = 0, last_error = ? WHERE id = ? AND access_token = ?",
            )
            .bind(reason)
            .bind(id)
            .bind(access_token)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn begin_registration(
        &self,
        id: TerminalId,
        now: UnixSeconds,
        stale_before: UnixSeconds,
    ) -> Result<RegistrationStart, StoreError> {
        let row = self
            .q("UPDATE terminals SET registration_state = 'pending', registration_message = NULL, \
                registration_started_at = ?, registration_finished_at = NULL WHERE id = ? \
                AND (registration_state IS NULL OR registration_state <> 'pending' OR registration_started_at < ?) \
                RETURNING *")
            .bind(now)
            .bind(id)
            .bind(stale_before)
            .fetch_written(&self.pool)
            .await?;
        if let Some(row) = row {
            return Ok(RegistrationStart::Started(Box::new(Self::terminal(&row)?)));
        }
        Ok(match self.terminal(id).await? {
            Some(terminal) => RegistrationStart::AlreadyPending(Box::new(terminal)),
            None => RegistrationStart::NotFound,
        })
    }

    async fn finish_registration(
        &self,
        id: TerminalId,
        state: RegistrationState,
        message: Option<&str>,
        tokens: Option<&Tokens>,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        self.q(
            "UPDATE terminals SET registration_state = ?, registration_message = ?, \
                registration_finished_at = ? WHERE id = ?",
        )
        .bind(state.as_str())
        .bind(message)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(tokens) = tokens {
            self.tokens_update(id, tokens, now).execute(&mut *tx).await?;
            // The terminal has just answered and issued tokens: it is reachable and usable, and the
            // operator reading "approved" must not see the health of before the registration.
            self.q("UPDATE terminals SET healthy = 1, last_error = NULL WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn earliest_release(&self, now: UnixSeconds) -> Result<Option<UnixSeconds>, StoreError> {
        Ok(self
            .scalar(
                "SELECT MIN(o.deadline_at) FROM operations o JOIN terminals t ON t.id = o.terminal_id \
                 WHERE o.holds_terminal = 1 AND t.enabled = 1 AND t.healthy = 1 AND o.deadline_at > ?",
            )
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn pool_counts(&self) -> Result<PoolCounts, StoreError> {
        let row = self
            .q("SELECT CAST(COALESCE(SUM(enabled), 0) AS BIGINT) AS enabled, \
             CAST(COALESCE(SUM(enabled * healthy), 0) AS BIGINT) AS healthy, \
             CAST(COALESCE(SUM(CASE WHEN enabled = 1 AND access_token IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) \
             AS needs_registration, \
             (SELECT COUNT(*) FROM operations WHERE holds_terminal = 1) AS busy FROM terminals")
            .fetch_one(&self.pool)
            .await?;
        let count = |column: &str| -> Result<u32, StoreError> {
            u32::try_from(row.try_get::<i64, _>(column)?).map_err(corrupt)
        };
        Ok(PoolCounts {
            enabled: count("enabled")?,
            healthy: count("healthy")?,
            busy: count("busy")?,
            needs_registration: count("needs_registration")?,
        })
    }
}

impl SqlStore {
    /// The statement that stores a terminal's tokens, obtained at `now`.
    fn tokens_update<'q>(
        &self,
        id: TerminalId,
        tokens: &'q Tokens,
        now: UnixSeconds,
    ) -> Query<'q, Any, AnyArguments> {
        self.q(
            "UPDATE terminals SET access_token = ?, refresh_token = ?, token_expires_at = ?, \
             tokens_obtained_at = ? WHERE id = ?",
        )
        .bind(&tokens.access_token)
        .bind(&tokens.refresh_token)
        .bind(
            tokens
                .expires_at
                .map(|at| at.format(TOKEN_TIME_FORMAT).to_string()),
        )
        .bind(now)
        .bind(id)
    }
}
