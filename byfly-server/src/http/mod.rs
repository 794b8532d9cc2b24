//! The HTTP layer: the router, the error envelope for every failure, and the extractors.

mod admin;
mod dev;
mod errors;
mod extract;
mod payments;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, patch, post};
use tower_http::catch_panic::CatchPanicLayer;

pub use errors::HttpError;

use crate::config::Settings;
use crate::operations::OperationTiming;
use crate::pool::TerminalPool;
use crate::store::Store;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Checked configuration.
    pub settings: Arc<Settings>,
    /// Clients of the terminals.
    pub pool: Arc<TerminalPool>,
    /// Timing of terminal operations.
    pub timing: OperationTiming,
    /// Webhook sender (manual retries go through it too).
    pub dispatcher: crate::webhooks::Dispatcher,
}

/// Unix seconds now. The one place the server reads the wall clock for business time.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

/// The whole API. Every failure — unknown route, wrong method, bad body, panic — answers with the
/// envelope of `spec/API.md` §1.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/payment/init", post(payments::init))
        .route("/payment/{id}", get(payments::show))
        .route("/payment/{id}/status", get(payments::status))
        .route("/payment/{id}/kaspi", post(payments::kaspi))
        .route("/payment/{id}/cancel", post(payments::cancel))
        .route("/payment-methods/active", get(payments::active_methods))
        .route("/payments", get(payments::list))
        .route("/health", get(payments::health))
        .route("/admin/sources", get(admin::sources).post(admin::create_source))
        .route("/admin/sources/{id}", patch(admin::update_source))
        .route(
            "/admin/terminals",
            get(admin::terminals).post(admin::add_terminal),
        )
        .route("/admin/terminals/{id}", patch(admin::update_terminal))
        .route("/admin/payment-methods", get(admin::methods))
        .route("/admin/payment-methods/{id}", patch(admin::update_method))
        .route("/admin/payments/{id}/webhooks", get(admin::payment_webhooks))
        .route("/admin/webhooks/{event_id}/retry", post(admin::retry_webhook));
    let api = if state.settings.demo_mode {
        api.route("/dev/simulate/{id}", post(dev::simulate))
    } else {
        api
    };
    Router::new()
        .nest("/api", api)
        .fallback(errors::route_not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .layer(CatchPanicLayer::custom(errors::panic_response))
        .with_state(state)
}
