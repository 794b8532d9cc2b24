//! Background workers: loops only. Each round is a service's "claim due rows in the database, do
//! the work, write the result", so any number of server processes can run them side by side; each
//! loop stops between rounds when told to.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::heartbeats::Heartbeats;
use crate::outbox::Dispatcher;
use crate::services::expiry::{STALE_START_SECS, sweep};
use crate::services::{poll, refund};

/// How often a worker looks for due work at most; due-ness itself is decided by the claims.
const MAX_TICK: Duration = Duration::from_secs(5);

/// How often the operation poller and the webhook sender look for due work.
const FAST_TICK: Duration = Duration::from_millis(250);

/// How often the webhook attempt log is purged of entries past their retention.
const LOG_PURGE_EVERY: Duration = Duration::from_secs(600);

/// Runs `round` until `stop` is set: after each round, waits `tick`, or until `wake` resolves
/// (work may be due at once), or until told to stop. `beat` after every round.
async fn every<R, W>(
    tick: Duration,
    mut stop: watch::Receiver<bool>,
    mut wake: impl FnMut() -> W,
    mut round: impl FnMut() -> R,
    beat: impl Fn(),
) where
    R: Future<Output = ()>,
    W: Future<Output = ()>,
{
    loop {
        if *stop.borrow() {
            break;
        }
        round().await;
        beat();
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = wake() => {}
            // A dropped sender stops the loop as a stop would.
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}

/// No early wake-up: the next round comes after the tick.
fn never() -> std::future::Pending<()> {
    std::future::pending()
}

/// Checks every enabled terminal once per `interval` (`deviceinfo`, refreshing tokens that are
/// about to expire; never registering).
pub async fn health_checker(app: App, interval: Duration, stop: watch::Receiver<bool>) {
    let interval_secs = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
    let app = &app;
    every(
        interval.min(MAX_TICK),
        stop,
        never,
        || async move {
            if let Err(err) = app.pool.check_due(app.now(), interval_secs).await {
                tracing::error!(%err, "terminal health check round failed");
            }
        },
        || app.heartbeats.beat(HEALTH_CHECKER),
    )
    .await;
}

/// Follows every operation in flight: asks its terminal when due, settles it when final; then
/// starts the next part of refund requests whose last part completed.
pub async fn operation_poller(app: App, stop: watch::Receiver<bool>) {
    let app = &app;
    every(
        FAST_TICK,
        stop,
        never,
        || async move {
            if let Err(err) = poll::poll_due(app, None).await {
                tracing::error!(%err, "operation poll round failed");
            }
            if let Err(err) = refund::continue_open(app).await {
                tracing::error!(%err, "refund continuation round failed");
            }
        },
        || app.heartbeats.beat(OPERATION_POLLER),
    )
    .await;
}

/// Sends due webhooks — looking again as soon as a delivery ends —, and now and then purges the
/// attempt log past its retention; on stop, waits for the deliveries in flight.
pub async fn webhook_dispatcher(
    dispatcher: Dispatcher,
    heartbeats: &Heartbeats,
    stop: watch::Receiver<bool>,
) {
    let purged_at = &std::sync::Mutex::new(None::<std::time::Instant>);
    let dispatcher = &dispatcher;
    every(
        FAST_TICK,
        stop,
        || dispatcher.delivery_finished(),
        || async move {
            if let Err(err) = dispatcher.dispatch_due().await {
                tracing::error!(%err, "webhook dispatch round failed");
            }
            let purge_due = {
                let mut last = purged_at
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let due = last.is_none_or(|at| at.elapsed() >= LOG_PURGE_EVERY);
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            };
            if purge_due {
                match dispatcher.purge_logs().await {
                    Ok(0) => {}
                    Ok(purged) => {
                        tracing::info!(purged, "webhook attempt log entries past their retention deleted")
                    }
                    Err(err) => tracing::error!(%err, "webhook attempt log purge failed"),
                }
            }
        },
        || heartbeats.beat(WEBHOOK_DISPATCHER),
    )
    .await;
    dispatcher.drain().await;
}

/// Runs the sweeper's round ([`sweep`]) every few seconds.
pub async fn expiry_sweeper(app: App, stop: watch::Receiver<bool>) {
    let app = &app;
    every(
        MAX_TICK,
        stop,
        never,
        || async move {
            if let Err(err) = sweep(app.store.as_ref(), app.now(), STALE_START_SECS).await {
                tracing::error!(%err, "expiry sweep failed");
            }
        },
        || app.heartbeats.beat(EXPIRY_SWEEPER),
    )
    .await;
}

/// The workers' names, as readiness reports them.
const HEALTH_CHECKER: &str = "health_checker";
const OPERATION_POLLER: &str = "operation_poller";
const WEBHOOK_DISPATCHER: &str = "webhook_dispatcher";
const EXPIRY_SWEEPER: &str = "expiry_sweeper";

/// The handles of a server's workers, stopped together.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    running: Vec<tokio::task::JoinHandle<()>>,
    heartbeats: std::sync::Arc<Heartbeats>,
}

impl Workers {
    /// Starts every worker of one server process.
    pub fn start(app: &App) -> Workers {
        let (stop, stopped) = watch::channel(false);
        let heartbeats = app.heartbeats.clone();
        for worker in [
            HEALTH_CHECKER,
            OPERATION_POLLER,
            WEBHOOK_DISPATCHER,
            EXPIRY_SWEEPER,
        ] {
            heartbeats.beat(worker);
        }
        let dispatcher = app.dispatcher.clone();
        let dispatcher_beats = heartbeats.clone();
        let dispatcher_stop = stopped.clone();
        let running = vec![
            tokio::spawn(health_checker(
                app.clone(),
                app.settings.health_check_interval,
                stopped.clone(),
            )),
            tokio::spawn(operation_poller(app.clone(), stopped.clone())),
            tokio::spawn(
                async move { webhook_dispatcher(dispatcher, &dispatcher_beats, dispatcher_stop).await },
            ),
            tokio::spawn(expiry_sweeper(app.clone(), stopped)),
        ];
        Workers {
            stop,
            running,
            heartbeats,
        }
    }

    /// Tells every worker to stop and waits for each to finish its round (and the webhook sender
    /// for its deliveries in flight).
    pub async fn stop(self) {
        self.stop.send(true).ok();
        for worker in self.running {
            worker.await.ok();
        }
        self.heartbeats.clear();
    }
}
