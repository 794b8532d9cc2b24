//! The terminal pool: one client per terminal (built from its stored settings and tokens) and the
//! health check that keeps each terminal's `healthy` flag true to life.
//!
//! A terminal is healthy when it answers `deviceinfo` with our token. A terminal never registered
//! is registered first (a cashier accepts on its screen); tokens the terminal issues — at register
//! or through an automatic refresh — are stored at once, so every server process shares them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use byfly_terminal::{Terminal, TerminalConfig, TerminalError, TlsMode, Tokens};

use crate::store::{Store, StoreError, TerminalRecord, TerminalTls};

/// Clients of the pool's terminals, cached by terminal id and rebuilt when its settings change.
#[derive(Debug)]
pub struct TerminalPool {
    store: Arc<dyn Store>,
    /// terminal id → (the settings the client was built from, the client).
    clients: Mutex<HashMap<i64, (String, Arc<Terminal>)>>,
    /// Timeouts of terminal calls.
    connect_timeout: Duration,
    request_timeout: Duration,
}

/// Why a health check failed, as stored in `last_error`.
fn describe(error: &TerminalError) -> String {
    error.to_string().chars().take(500).collect()
}

/// Whether tokens read from the database are newer than a client's: another process refreshed
/// them (its refresh token is then spent, so this client must not refresh with its own). Different
/// tokens count as newer unless they expire strictly earlier (a record read before this process's
/// own refresh) — expiries have whole-second resolution, and tokens issued in one second tie.
fn newer_than(stored: &Tokens, current: Option<&Tokens>) -> bool {
    match current {
        None => true,
        Some(current) if current == stored => false,
        Some(current) => match (stored.expires_at, current.expires_at) {
            (Some(stored_expiry), Some(current_expiry)) => stored_expiry >= current_expiry,
            _ => true,
        },
    }
}

impl TerminalPool {
    /// A pool over the terminals of `store`, with the spec's default timeouts (3 s / 10 s).
    pub fn new(store: Arc<dyn Store>) -> TerminalPool {
        TerminalPool::with_timeouts(store, Duration::from_secs(3), Duration::from_secs(10))
    }

    /// A pool with explicit call timeouts.
    pub fn with_timeouts(
        store: Arc<dyn Store>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> TerminalPool {
        TerminalPool {
            store,
            clients: Mutex::new(HashMap::new()),
            connect_timeout,
            request_timeout,
        }
    }

    fn config(&self, record: &TerminalRecord) -> TerminalConfig {
        let mut config = TerminalConfig::new(record.terminal.base_url.clone());
        config.tls = match &record.terminal.tls {
            TerminalTls::Verify { server_name: None } => TlsMode::Verify,
            TerminalTls::Verify {
                server_name: Some(name),
            } => TlsMode::VerifyAs {
                server_name: name.clone(),
            },
            TerminalTls::Insecure => TlsMode::Insecure,
        };
        config.connect_timeout = self.connect_timeout;
        config.request_timeout = self.request_timeout;
        config
    }

    /// The client of a terminal (cached while its settings are unchanged).
    pub fn client(&self, record: &TerminalRecord) -> Result<Arc<Terminal>, TerminalError> {
        let signature = format!("{:?}", record.terminal);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built_from, client)) = clients.get(&record.id)
            && *built_from == signature
        {
            if let Some(stored) = &record.tokens
                && newer_than(stored, client.tokens().as_ref())
            {
                client.adopt_tokens(stored.clone());
            }
            return Ok(client.clone());
        }
        let client = Arc::new(Terminal::new(&self.config(record), record.tokens.clone())?);
        client.set_terminal_id(record.device_terminal_id.clone());
        clients.insert(record.id, (signature, client.clone()));
        Ok(client)
    }

    /// Stores tokens the client obtained by an automatic refresh.
    pub async fn persist_refreshed_tokens(&self, id: i64, client: &Terminal) -> Result<(), StoreError> {
        match client.take_refreshed_tokens() {
            Some(tokens) => self.store.save_terminal_tokens(id, &tokens).await,
            None => Ok(()),
        }
    }

    /// Checks one terminal (registering it first if it never was) and records the result.
    pub async fn check(&self, record: &TerminalRecord) -> Result<bool, StoreError> {
        let outcome = self.probe(record).await;
        let (healthy, error, device_id) = match &outcome {
            Ok(device_id) => (true, None, device_id.clone()),
            Err(err) => (false, Some(describe(err)), None),
        };
        if let Err(err) = &outcome {
            tracing::warn!(terminal = record.id, name = %record.terminal.name, error = %err, "terminal unhealthy");
        }
        self.store
            .record_health(record.id, healthy, error.as_deref(), device_id.as_deref())
            .await?;
        Ok(healthy)
    }

    async fn probe(&self, record: &TerminalRecord) -> Result<Option<String>, TerminalError> {
        let client = self.client(record)?;
        if client.tokens().is_none() {
            let tokens = client.register().await?;
            self.store
                .save_terminal_tokens(record.id, &tokens)
                .await
                .map_err(|err| TerminalError::Config(err.to_string()))?;
        }
        let info = client.device_info().await;
        self.persist_refreshed_tokens(record.id, &client)
            .await
            .map_err(|err| TerminalError::Config(err.to_string()))?;
        Ok(info?.terminal_id)
    }

    /// One round of the health checker: every enabled terminal not checked for `interval` seconds.
    /// Returns how many were checked.
    pub async fn check_due(&self, now: i64, interval: i64) -> Result<usize, StoreError> {
        let due = self.store.claim_health_checks(now, interval).await?;
        for record in &due {
            self.check(record).await?;
        }
        Ok(due.len())
    }
}
