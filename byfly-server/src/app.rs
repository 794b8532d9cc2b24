//! The services' shared state: the database, the settings, the clock, the terminal pool, the
//! webhook dispatcher and the metrics, wired once per server process and cloned cheaply into every task. The
//! HTTP layer wraps it with what only requests need (rate limits, the demo inbox).

use std::sync::Arc;

use crate::carried::CarriedWork;
use crate::clock::SharedClock;
use crate::config::{OperationTiming, Settings};
use crate::heartbeats::Heartbeats;
use crate::metrics::Metrics;
use crate::outbox::Dispatcher;
use crate::store::Store;
use crate::terminals::TerminalPool;

/// What every service can reach.
#[derive(Debug, Clone)]
pub struct App {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Checked configuration.
    pub settings: Arc<Settings>,
    /// Business time.
    pub clock: SharedClock,
    /// Clients of the terminals.
    pub pool: Arc<TerminalPool>,
    /// Timing of terminal operations.
    pub timing: OperationTiming,
    /// Webhook sender (manual retries go through it too).
    pub dispatcher: Dispatcher,
    /// When each background worker of this process last finished a round.
    pub heartbeats: Arc<Heartbeats>,
    /// What `/metrics` reports of this process.
    pub metrics: Arc<Metrics>,
    /// Work that outlives its request, which a shutdown waits for.
    pub carried: Arc<CarriedWork>,
}

impl App {
    /// Wires the services of one server process on `store`.
    pub fn new(store: Arc<dyn Store>, settings: Settings, clock: SharedClock) -> Result<App, reqwest::Error> {
        let metrics = Arc::new(Metrics::new());
        let pool = Arc::new(
            TerminalPool::with_timing(store.clone(), settings.terminals, clock.clone())
                .observed_by(metrics.clone()),
        );
        let dispatcher = Dispatcher::new(store.clone(), settings.delivery.clone(), clock.clone())?
            .counted_by(metrics.clone());
        Ok(App {
            store,
            timing: settings.timing,
            settings: Arc::new(settings),
            clock,
            pool,
            dispatcher,
            heartbeats: Arc::default(),
            metrics,
            carried: Arc::default(),
        })
    }

    /// Now, by the injected clock.
    pub fn now(&self) -> crate::store::UnixSeconds {
        self.clock.now()
    }
}
