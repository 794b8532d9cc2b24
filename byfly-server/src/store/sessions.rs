//! Sessions of the operator's console (`/admin`): see `migrations/*/0012_admin_sessions.sql`.

use async_trait::async_trait;
use byfly_core::ids::TokenHash;

use super::error::StoreError;
use super::ids::UnixSeconds;

/// A console session as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSessionRecord {
    /// Row id, for the log.
    pub id: i64,
    /// When the operator logged in.
    pub created_at: UnixSeconds,
    /// When a request last used it, to the minute ([`SESSION_SEEN_RESOLUTION`]).
    pub last_seen_at: UnixSeconds,
    /// When it ends however busy it is.
    pub expires_at: UnixSeconds,
    /// The address it was opened from.
    pub client: Option<String>,
    /// The name the operator gave at login: what their review decisions are recorded under.
    pub operator: Option<String>,
}

/// A session's `last_seen_at` is written only when the stored one is older than this (or a
/// quarter of the idle limit, if that is shorter), so a console clicking through pages costs no
/// write per request and a session never ends early by more than that.
pub const SESSION_SEEN_RESOLUTION: i64 = 60;

/// Console sessions.
#[async_trait]
pub trait AdminSessions: Send + Sync {
    /// Opens a session whose token hashes to `token_hash`, for the admin token `issued_for`
    /// fingerprints; also forgets sessions ended before `now`.
    async fn create_admin_session(
        &self,
        token_hash: &TokenHash,
        issued_for: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
        client: Option<&str>,
        operator: Option<&str>,
    ) -> Result<AdminSessionRecord, StoreError>;

    /// The live session of `token_hash`: opened for the admin token `issued_for` fingerprints, not
    /// past `expires_at`, seen within `idle` seconds. Notes the use (see [`SESSION_SEEN_RESOLUTION`]).
    async fn admin_session(
        &self,
        token_hash: &TokenHash,
        issued_for: &str,
        now: UnixSeconds,
        idle: i64,
    ) -> Result<Option<AdminSessionRecord>, StoreError>;

    /// Ends the session of `token_hash` (logout); nothing when there is none.
    async fn end_admin_session(&self, token_hash: &TokenHash) -> Result<(), StoreError>;
}
