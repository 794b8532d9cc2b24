//! The terminal pool: devices, their health, tokens and registration.

use async_trait::async_trait;

use super::error::StoreError;
use super::ids::UnixSeconds;
use super::ids::*;
use super::records::*;
use byfly_terminal::Tokens;

/// The terminal pool: devices, their health, tokens and registration.
#[async_trait]
pub trait Terminals: Send + Sync {
    /// Adds a terminal (names are unique: `None` when the name is taken).
    async fn add_terminal(
        &self,
        terminal: &NewTerminal,
        now: UnixSeconds,
    ) -> Result<Option<TerminalRecord>, StoreError>;

    /// Adds a terminal, or points the terminal of that name at new URLs (its stored tokens are
    /// dropped: a different device needs its own registration).
    async fn upsert_terminal(
        &self,
        terminal: &NewTerminal,
        now: UnixSeconds,
    ) -> Result<TerminalRecord, StoreError>;

    /// Points a terminal at new settings; a new base URL drops its tokens (another device must
    /// register). `None` for an unknown id.
    async fn edit_terminal(
        &self,
        id: TerminalId,
        terminal: &NewTerminal,
    ) -> Result<Option<TerminalRecord>, StoreError>;

    /// Takes a terminal out of the pool or back in; `None` for an unknown id.
    async fn set_terminal_enabled(
        &self,
        id: TerminalId,
        enabled: bool,
    ) -> Result<Option<TerminalRecord>, StoreError>;

    /// One terminal.
    async fn terminal(&self, id: TerminalId) -> Result<Option<TerminalRecord>, StoreError>;

    /// Every terminal, by id.
    async fn terminals(&self) -> Result<Vec<TerminalRecord>, StoreError>;

    /// Claims the enabled terminals whose last health check is at least `interval` seconds old,
    /// marking them checked now, atomically — so several processes never check one terminal twice.
    async fn claim_health_checks(
        &self,
        now: UnixSeconds,
        interval: i64,
    ) -> Result<Vec<TerminalRecord>, StoreError>;

    /// Records a health check's result.
    async fn record_health(
        &self,
        id: TerminalId,
        healthy: bool,
        error: Option<&str>,
        device_terminal_id: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Stores tokens the terminal issued (register, or a refresh) at `now`.
    async fn save_terminal_tokens(
        &self,
        id: TerminalId,
        tokens: &Tokens,
        now: UnixSeconds,
    ) -> Result<(), StoreError>;

    /// Drops a terminal's tokens after the terminal refused them for good — only if they are still
    /// `access_token` (another process may have stored new ones) — marking it unhealthy with
    /// `reason`. Returns whether they were dropped.
    async fn forget_terminal_tokens(
        &self,
        id: TerminalId,
        access_token: &str,
        reason: &str,
    ) -> Result<bool, StoreError>;

    /// Marks a registration pending, unless another one is pending and started after
    /// `stale_before` (a process that died while waiting leaves an older one behind).
    async fn begin_registration(
        &self,
        id: TerminalId,
        now: UnixSeconds,
        stale_before: UnixSeconds,
    ) -> Result<RegistrationStart, StoreError>;

    /// Records how a registration ended; approved ones store their tokens in the same write.
    async fn finish_registration(
        &self,
        id: TerminalId,
        state: RegistrationState,
        message: Option<&str>,
        tokens: Option<&Tokens>,
        now: UnixSeconds,
    ) -> Result<(), StoreError>;

    /// Unix seconds when the first busy, enabled, healthy terminal is expected to be free: the
    /// earliest deadline after `now` of the operations holding them (one held past its deadline
    /// waits for a final answer or an operator: no time can be promised). `None` when none.
    async fn earliest_release(&self, now: UnixSeconds) -> Result<Option<UnixSeconds>, StoreError>;

    /// Counts for `/api/health`.
    async fn pool_counts(&self) -> Result<PoolCounts, StoreError>;
}
