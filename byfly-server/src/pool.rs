//! The terminal pool: one client per terminal (built from its stored settings and tokens), the
//! health check that keeps each terminal's `healthy` flag true to life and its tokens fresh, and
//! the operator's registration.
//!
//! A terminal is healthy when it answers `deviceinfo` with our token. Registration is never done
//! by a health check or a payment: on a real terminal it puts an approval prompt on the screen and
//! waits for a cashier, and a late approval leaves the name taken (`105`) until someone clears it
//! on the device. So a terminal without tokens waits, as `needs_registration`, for an operator's
//! [`TerminalPool::register`]. Tokens the terminal issues — at register or through a refresh — are
//! stored at once, so every server process shares them; the health checker refreshes them before
//! they expire (`spec/KASPI_TERMINAL.md` §1), so a payment never waits on a refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use byfly_core::time::DisplayOffset;
use byfly_terminal::{Terminal, TerminalConfig, TerminalError, TlsMode, Tokens};

use crate::http::now;
use crate::store::{RegistrationState, Store, StoreError, TerminalRecord, TerminalTls};

/// Timeouts of terminal calls, the registration wait and the token refresh margin.
#[derive(Debug, Clone, Copy)]
pub struct TerminalTiming {
    /// To connect (beyond it the terminal is unreachable).
    pub connect_timeout: Duration,
    /// For a whole call (beyond it the terminal may still have acted).
    pub request_timeout: Duration,
    /// For a cashier to accept a registration on the screen.
    pub register_timeout: Duration,
    /// Seconds before expiry at which the health checker refreshes tokens.
    pub refresh_before: i64,
    /// The terminals' clock: `expirationDate` has no zone and is read in this offset.
    pub offset: DisplayOffset,
}

impl Default for TerminalTiming {
    fn default() -> Self {
        TerminalTiming {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            register_timeout: Duration::from_secs(180),
            refresh_before: 3600,
            offset: DisplayOffset::utc(),
        }
    }
}

/// How long tokens are assumed to live when the terminal's `expirationDate` cannot be read.
const ASSUMED_TOKEN_LIFETIME: i64 = 24 * 3600;

/// What a health check tells an operator about a terminal without tokens.
pub const NEEDS_REGISTRATION: &str = "needs registration: an operator starts it (admin API or \
     `byfly admin terminals register`) and a cashier accepts on the terminal's screen";

/// Clients of the pool's terminals, cached by terminal id and rebuilt when its settings change.
#[derive(Debug)]
pub struct TerminalPool {
    store: Arc<dyn Store>,
    /// terminal id → (the settings the client was built from, the client).
    clients: Mutex<HashMap<i64, (String, Arc<Terminal>)>>,
    timing: TerminalTiming,
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

/// A store failure met in the middle of terminal work, carried as a terminal error.
fn store_failure(err: StoreError) -> TerminalError {
    TerminalError::Config(err.to_string())
}

impl TerminalPool {
    /// A pool over the terminals of `store`, with the spec's default timing.
    pub fn new(store: Arc<dyn Store>) -> TerminalPool {
        TerminalPool::with_timing(store, TerminalTiming::default())
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
        )
    }

    /// A pool with the given timing.
    pub fn with_timing(store: Arc<dyn Store>, timing: TerminalTiming) -> TerminalPool {
        TerminalPool {
            store,
            clients: Mutex::new(HashMap::new()),
            timing,
        }
    }

    /// The timing the pool was built with.
    pub fn timing(&self) -> TerminalTiming {
        self.timing
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
        config.connect_timeout = self.timing.connect_timeout;
        config.request_timeout = self.timing.request_timeout;
        config.register_timeout = self.timing.register_timeout;
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
    pub async fn persist_refreshed_tokens(&self, id: i64, client: &Terminal) -> Result<(), StoreError> {
        match client.take_refreshed_tokens() {
            Some(tokens) => self.store.save_terminal_tokens(id, &tokens, now()).await,
            None => Ok(()),
        }
    }

    /// The terminal refused the client's tokens for good. Unless another process stored newer
    /// tokens meanwhile (then they are adopted: `true`, ask again), the tokens are dropped and the
    /// terminal waits for an operator's registration (`false`).
    pub async fn tokens_refused(&self, id: i64, client: &Terminal, why: &str) -> Result<bool, StoreError> {
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
                tracing::warn!(terminal = id, %why, "terminal refused our tokens: it needs registering again");
            }
        }
        client.forget_tokens();
        Ok(false)
    }

    /// Whether the health checker should refresh the tokens now: less than `refresh_before`
    /// seconds left, by the terminal's `expirationDate` or, when that is unreadable, by an
    /// assumed 24 h lifetime from when they were obtained.
    fn refresh_due(&self, record: &TerminalRecord, now: i64) -> bool {
        let Some(tokens) = &record.tokens else {
            return false;
        };
        let stated = tokens.expires_at.and_then(|at| {
            self.timing
                .offset
                .parse_datetime(&at.format("%Y-%m-%d %H:%M:%S").to_string())
        });
        let assumed = record.tokens_obtained_at.map(|at| at + ASSUMED_TOKEN_LIFETIME);
        let expiry = match (stated, assumed) {
            (Some(stated), Some(assumed)) => stated.min(assumed),
            (Some(at), None) | (None, Some(at)) => at,
            (None, None) => return false,
        };
        expiry - now < self.timing.refresh_before
    }

    /// Checks one terminal and records the result. A terminal without tokens is never registered
    /// here: it is recorded as needing registration.
    pub async fn check(&self, record: &TerminalRecord) -> Result<bool, StoreError> {
        if record.needs_registration() {
            self.store
                .record_health(record.id, false, Some(NEEDS_REGISTRATION), None)
                .await?;
            return Ok(false);
        }
        let outcome = self.probe(record).await;
        let (healthy, error, device_id) = match &outcome {
            Ok(device_id) => (true, None, device_id.clone()),
            Err(TerminalError::NeedsRegistration(_)) => (false, Some(NEEDS_REGISTRATION.to_owned()), None),
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
        if self.refresh_due(record, now()) {
            match client.refresh().await {
                Ok(_) => tracing::info!(terminal = record.id, "terminal tokens refreshed ahead of expiry"),
                Err(TerminalError::NeedsRegistration(why)) => {
                    self.tokens_refused(record.id, &client, &why)
                        .await
                        .map_err(store_failure)?;
                }
                Err(err) => return Err(err),
            }
            self.persist_refreshed_tokens(record.id, &client)
                .await
                .map_err(store_failure)?;
        }
        let mut info = client.device_info().await;
        self.persist_refreshed_tokens(record.id, &client)
            .await
            .map_err(store_failure)?;
        if let Err(TerminalError::NeedsRegistration(why)) = &info
            && self
                .tokens_refused(record.id, &client, why)
                .await
                .map_err(store_failure)?
        {
            info = client.device_info().await;
            self.persist_refreshed_tokens(record.id, &client)
                .await
                .map_err(store_failure)?;
        }
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

    /// An operator's registration of a terminal that [`Store::begin_registration`] marked
    /// pending: waits (up to the register timeout) for the cashier to accept on the screen, records
    /// the outcome with what to do about it, and checks the terminal once approved.
    pub async fn register(&self, record: &TerminalRecord) -> Result<RegistrationState, StoreError> {
        let name = self.config(record).integration_name;
        let answer = match self.client(record) {
            Ok(client) => client.register().await,
            Err(err) => Err(err),
        };
        let (state, message, tokens) = match answer {
            Ok(tokens) => (RegistrationState::Approved, None, Some(tokens)),
            Err(TerminalError::AlreadyRegistered(text)) => (
                RegistrationState::AlreadyRegistered,
                Some(format!(
                    "Имя интеграции «{name}» уже разрешено на этом терминале ({text}). На терминале: \
                     Панель администратора → «Защита интеграции» → «Запретить», затем зарегистрируйте снова."
                )),
                None,
            ),
            Err(TerminalError::RegistrationDeclined(text)) => (
                RegistrationState::Declined,
                Some(format!("Кассир отклонил запрос на терминале ({text})")),
                None,
            ),
            Err(TerminalError::Timeout(text)) => (
                RegistrationState::TimedOut,
                Some(format!(
                    "Кассир не подтвердил запрос за {} с ({text}). Если запрос подтвердят позже, \
                     имя окажется занятым: тогда его нужно запретить на терминале.",
                    self.timing.register_timeout.as_secs()
                )),
                None,
            ),
            Err(err) => (RegistrationState::Failed, Some(describe(&err)), None),
        };
        tracing::info!(
            terminal = record.id,
            state = state.as_str(),
            "terminal registration ended"
        );
        self.store
            .finish_registration(record.id, state, message.as_deref(), tokens.as_ref(), now())
            .await?;
        if state == RegistrationState::Approved
            && let Some(registered) = self.store.terminal(record.id).await?
        {
            self.check(&registered).await?;
        }
        Ok(state)
    }
}
