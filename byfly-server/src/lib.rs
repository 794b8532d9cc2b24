//! ByFly Payment Center reference server.
//!
//! # Layout
//!
//! Which room holds what (each directory's front door, its `mod.rs`, says more; its files reach
//! each other by name, the rest of the crate goes through the front door):
//!
//! - [`app`]: the services' shared state, [`app::App`] — database, settings, clock, terminal pool,
//!   webhook dispatcher — wired once per process; [`carried`]: work that outlives its request,
//!   which a shutdown waits for. [`clock`]: business time, injected (tests hold it
//!   or move it). [`random`]: the OS generator behind byfly-core's `SecureRandom` (and the event and
//!   refund ids byfly-core makes with it).
//! - [`config`]: the documented defaults (`deploy/byfly.example.toml`) → an optional TOML file →
//!   `BYFLY_*` environment → checked [`config::Settings`], grouped by the room that reads them.
//! - [`http`]: the router and its state, the error envelope of every failure (an internal one
//!   logged once, with its request id, by a middleware), our extractors, `/kaspi`'s rate limits,
//!   the OpenAPI document, and the handlers of each area. Only the wiring — this file and
//!   [`demo`] — reaches into it.
//! - [`services`]: what the server does — `/kaspi`, following operations, settlement, refunds,
//!   cancel, the expiry sweep — answering values or a [`services::ServiceError`], never HTTP.
//! - [`terminals`]: the pool's clients, their health check and the operator's registration.
//! - [`outbox`]: webhook delivery — the dispatcher (in order, once at a time, fair across hosts),
//!   an event's body, the retry schedule as data, the resolver that refuses internal addresses.
//! - [`store`]: one small trait per aggregate composed into [`store::Store`], their records as
//!   plain data, and their SQL on SQLite or PostgreSQL (`store/sql/`, one file per aggregate plus
//!   the dialect, row decoding, the write side of decisions, SQLite's group commit, the read cache
//!   and PostgreSQL's row locks; migrations embedded by `sqlx::migrate!`). It persists decisions; [`services::settle`] makes them.
//! - [`metrics`]: what `/metrics` reports — this process's counters and the shared figures read
//!   from the database at each scrape.
//! - [`workers`]: the background loops, each one `every(tick, stop, …)` over a service's round;
//!   [`heartbeats`]: when each last finished one, for readiness.
//! - [`demo`] (feature `demo`, on by default): the whole system on one machine with simulated
//!   terminals (`byfly-server demo`, and a throwaway server for the SDK's and the CLI's tests).
//!
//! One payment's way through: `http/router.rs` → `http/payments.rs` (`init`; `store/sql/payments.rs`)
//! → `http/payments.rs` (`kaspi`) → `services/kaspi.rs` (claim: `store/sql/operations.rs`; the
//! terminal's client: `terminals/pool.rs`; start and QR: `services/process.rs`) → `workers.rs` →
//! `services/poll.rs` → `services/settle.rs` (the decision) → `store/sql/operations.rs` and
//! `store/sql/ledger.rs` (persisted with its outbox event) → `outbox/dispatcher.rs` (claim:
//! `store/sql/outbox.rs`; body: `outbox/payload.rs`; connect: `outbox/resolver.rs`; on failure:
//! `outbox/schedule.rs`).
//!
//! `tests/server/layout.rs` holds the layout: no file over 600 lines, no circle of files, nothing
//! outside `http/` but the wiring importing it.

pub mod app;
pub mod carried;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod heartbeats;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod random;
pub mod services;
pub mod store;
pub mod terminals;
pub mod workers;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::App;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::http::AppState;
use crate::store::{Database, SqlStore, Store};
use crate::workers::Workers;

/// Opens the configured database and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqlStore::open(settings.database_url.expose()).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// Serves the API on an already bound listener (and `/metrics` on `metrics_bind` when set) until
/// `shutdown` resolves, on the wall clock; requests in flight are given `shutdown_grace_secs` to
/// finish, then the workers finish their round.
pub async fn run(
    listener: TcpListener,
    store: Arc<dyn Store>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_clock(listener, store, settings, SystemClock::shared(), shutdown).await
}

/// [`run`] on `clock` (a test's clock that moves when told).
pub async fn run_with_clock(
    listener: TcpListener,
    store: Arc<dyn Store>,
    settings: Settings,
    clock: SharedClock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics_listener = match settings.metrics_bind {
        Some(address) => Some(TcpListener::bind(address).await?),
        None => None,
    };
    let limits = settings.serve;
    let app = App::new(store, settings, clock).map_err(std::io::Error::other)?;
    let workers = Workers::start(&app);
    let carried = app.carried.clone();
    let state = AppState::new(app);
    // One signal, heard by the API's server and by the metrics' own.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop.send_replace(true);
    });
    let stop_signal = move || {
        let mut stopped = stopped.clone();
        async move {
            stopped.wait_for(|stop| *stop).await.ok();
        }
    };
    let metrics_served = metrics_listener.map(|listener| {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "serving /metrics");
        }
        tokio::spawn(http::serve(
            listener,
            http::metrics_router(state.clone()),
            limits,
            stop_signal(),
        ))
    });
    http::serve(listener, http::router(state), limits, stop_signal()).await;
    if let Some(served) = metrics_served {
        served.await.ok();
    }
    // A /kaspi or refund whose client was cut off at the deadline goes on in its own task: let it
    // record what the terminal did (as long again as the requests were given).
    if !carried.finished_within(limits.shutdown_grace).await {
        tracing::warn!(
            running = carried.running(),
            "terminal work still running at shutdown: left to the next start's recovery"
        );
    }
    // Requests are done; let each worker finish its round (and deliveries in flight).
    workers.stop().await;
    Ok(())
}
