//! Clients of the pool's terminals, built from their stored settings and tokens and rebuilt when
//! those change; tokens a call refreshed are stored at once for every process sharing them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use byfly_terminal::{CallObserver, Terminal, TerminalConfig, TerminalError, TlsMode, Tokens};

use crate::clock::{SharedClock, SystemClock};
use crate::config::TerminalTiming;
use crate::store::TerminalId;
use crate::store::{Store, StoreError, TerminalRecord, TerminalTls};

/// What a health check tells an operator about a terminal without tokens.
pub const NEEDS_REGISTRATION: &str = "needs registration: an operator starts it (admin API or \
     `byfly admin terminals register`) and a cashier accepts on the terminal's screen";

/// Clients of the pool's terminals, cached by terminal id and rebuilt when its settings change.
#[derive(Debug)]
pub struct TerminalPool {
    pub(super) store: Arc<dyn Store>,
    /// terminal id → (the settings the client was built from, the client).
    clients: Mutex<HashMap<TerminalId, (String, Arc<Terminal>)>>,
    pub(super) timing: TerminalTiming,
    pub(super) clock: SharedClock,
    /// Told of every terminal call (the server's metrics).
    observer: Option<Arc<dyn CallObserver>>,
}

/// Why a health check failed, as stored in `last_error`.
pub(super) fn describe(error: &TerminalError) -> String {
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

/// A store failure met in the middle of terminal work, carried as a terminal error.
pub(super) fn store_failure(err: StoreError) -> TerminalError {
    TerminalError::Config(err.to_string())
}

impl TerminalPool {
    /// A pool over the terminals of `store`, with the spec's default timing.
    pub fn new(store: Arc<dyn Store>) -> TerminalPool {
        TerminalPool::with_timing(store, TerminalTiming::default(), SystemClock::shared())
    }

    /// A pool with explicit call timeouts (and the default registration wait).
    pub fn with_timeouts(
        store: Arc<dyn Store>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> TerminalPool {
        TerminalPool::with_timing(
            store,
            TerminalTiming {
                connect_timeout,
                request_timeout,
                ..TerminalTiming::default()
            },
            SystemClock::shared(),
        )
    }

    /// A pool with the given timing, on `clock`.
    pub fn with_timing(store: Arc<dyn Store>, timing: TerminalTiming, clock: SharedClock) -> TerminalPool {
        TerminalPool {
            store,
            clients: Mutex::new(HashMap::new()),
            timing,
            clock,
            observer: None,
        }
    }

    /// The pool, its clients telling `observer` of every call.
    pub fn observed_by(self, observer: Arc<dyn CallObserver>) -> TerminalPool {
        TerminalPool {
            observer: Some(observer),
            ..self
        }
    }

    /// The timing the pool was built with.
    pub fn timing(&self) -> TerminalTiming {
        self.timing
    }

    pub(super) fn config(&self, record: &TerminalRecord) -> TerminalConfig {
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
        config.connect_timeout = self.timing.connect_timeout;
        config.request_timeout = self.timing.request_timeout;
        config.register_timeout = self.timing.register_timeout;
        config.observer = self.observer.clone();
        config
    }

    /// The client of a terminal (cached while its settings are unchanged), holding the stored
    /// tokens when they are newer than its own.
    pub fn client(&self, record: &TerminalRecord) -> Result<Arc<Terminal>, TerminalError> {
        let signature = format!("{:?}", record.terminal);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built_from, client)) = clients.get(&record.id)
            && *built_from == signature
        {
            match &record.tokens {
                Some(stored) if newer_than(stored, client.tokens().as_ref()) => {
                    client.adopt_tokens(stored.clone());
                }
                // Dropped in the database (refused for good, or a new device): drop them here too.
                None => client.forget_tokens(),
                Some(_) => {}
            }
            return Ok(client.clone());
        }
        let client = Arc::new(Terminal::new(&self.config(record), record.tokens.clone())?);
        client.set_terminal_id(record.device_terminal_id.clone());
        clients.insert(record.id, (signature, client.clone()));
        Ok(client)
    }

    /// Stores tokens the client obtained by an automatic refresh.
    pub async fn persist_refreshed_tokens(
        &self,
        id: TerminalId,
        client: &Terminal,
    ) -> Result<(), StoreError> {
        match client.take_refreshed_tokens() {
            Some(tokens) => {
                self.store
                    .save_terminal_tokens(id, &tokens, self.clock.now())
                    .await
            }
            None => Ok(()),
        }
    }

    /// The terminal refused the client's tokens for good. Unless another process stored newer
    /// tokens meanwhile (then they are adopted: `true`, ask again), the tokens are dropped and the
    /// terminal waits for an operator's registration (`false`).
    pub async fn tokens_refused(
        &self,
        id: TerminalId,
        client: &Terminal,
        why: &str,
    ) -> Result<bool, StoreError> {
        let used = client.tokens();
        let stored = self.store.terminal(id).await?.and_then(|record| record.tokens);
        if let Some(stored) = stored
            && Some(&stored) != used.as_ref()
        {
            client.adopt_tokens(stored);
            return Ok(true);
        }
        if let Some(used) = used {
            let reason = format!("{NEEDS_REGISTRATION} (the terminal refused our tokens: {why})");
            if self
                .store
                .forget_terminal_tokens(id, &used.access_token, &reason)
                .await?
            {
                tracing::warn!(terminal = %id, %why, "terminal refused our tokens: it needs registering again");
            }
        }
        client.forget_tokens();
        Ok(false)
    }
}
