//! ByFly Payment Center reference server.
//!
//! # Layout
//!
//! - [`config`]: defaults → TOML file → `BYFLY_*` environment → checked [`config::Settings`].
//! - [`store`]: the [`store::Store`] trait (and its webhook part, [`store::Outbox`]) with their
//!   implementation on SQLite or PostgreSQL (migrations embedded per backend, money in tiyn,
//!   durable commits, writers serialized); it persists decisions, [`settle`] makes them.
//! - [`http`]: the router of `spec/API.md`, the error envelope for every failure, extractors.
//! - [`random`]: the operating system's CSPRNG behind byfly-core's `SecureRandom`.
//! - [`pool`]: clients of the pool's terminals, their health check and token refresh, and the
//!   operator's registration (which waits for a cashier at the terminal).
//! - [`operations`]: starting an operation for `/kaspi` (claim a terminal, start it — asking
//!   again when the answer was lost —, read its QR, never a stale one).
//! - [`poll`]: following operations to their final answer (`101` and `unknown` go to review).
//! - [`refunds`]: refunds through the terminals that took the money, one request split over the
//!   operations that received it, its parts run one after another.
//! - [`settle`]: from stored operations to byfly-core's ledger and its total decisions, made from
//!   a snapshot the store reads in the transaction that writes them.
//! - [`webhooks`]: delivery from the outbox — in order per payment, one claim holder at a time,
//!   fair across receiving hosts, through a resolver that refuses internal addresses.
//! - [`workers`]: background loops of "claim due rows, work, write back".
//! - [`demo`]: the whole system on one machine with simulated terminals (`byfly-server demo`, and
//!   a throwaway server for the SDK's and the CLI's tests).
//!

pub mod config;
pub mod demo;
pub mod http;
pub mod openapi;
pub mod operations;
pub mod poll;
pub mod pool;
pub mod random;
pub mod refunds;
pub mod settle;
pub mod store;
pub mod webhooks;
pub mod workers;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::http::AppState;
use crate::store::{SqlStore, Store};

/// Opens the configured database and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqlStore::open(&settings.database_url).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// Serves the API on an already bound listener until `shutdown` resolves; requests in flight are
/// finished first.
pub async fn run(
    listener: TcpListener,
    store: Arc<dyn Store>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let pool = Arc::new(pool::TerminalPool::with_timing(store.clone(), settings.terminals));
    let dispatcher =
        webhooks::Dispatcher::new(store.clone(), settings.delivery.clone()).map_err(std::io::Error::other)?;
    let health = tokio::spawn(workers::health_checker(
        pool.clone(),
        settings.health_check_interval,
        workers_stopped.clone(),
    ));
    let sender = tokio::spawn(workers::webhook_dispatcher(
        dispatcher.clone(),
        workers_stopped.clone(),
    ));
    let sweeper = tokio::spawn(workers::expiry_sweeper(store.clone(), workers_stopped.clone()));
    let timing = settings.timing;
    let settings_rate = settings.kaspi_rate;
    let state = AppState {
        store,
        settings: Arc::new(settings),
        pool,
        timing,
        dispatcher,
        kaspi_limiter: Arc::new(http::KaspiLimiter::new(settings_rate)),
        demo_inbox: Arc::default(),
    };
    let poller = tokio::spawn(workers::operation_poller(state.clone(), workers_stopped));
    let app = http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    // Requests are done; let each worker finish its iteration (and deliveries in flight).
    stop_workers.send(true).ok();
    for worker in [health, poller, sender, sweeper] {
        worker.await.ok();
    }
    served
}
