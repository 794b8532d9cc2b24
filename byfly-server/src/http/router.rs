//! The router of `spec/API.md`: every route, the demo's when in demo mode, and `/metrics`, served
//! with the layers of `guard.rs`.

use axum::Router;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[cfg(feature = "demo")]
use super::dev;
use super::guard::served;
use super::state::AppState;
use super::{
    admin, admin_payments, console, health, init, keys, metrics, openapi, outbox, page, payments, review,
};

/// The whole API. Every failure — unknown route, wrong method, bad body, panic — answers with the
/// envelope of `spec/API.md` §1.
pub fn router(state: AppState) -> Router {
    let (site, document) = documented_routes(&state).split_for_parts();
    let site = site.layer(axum::Extension(openapi::finish(document)));
    served(site, state)
}

/// Every route, each registered through its handler's `#[utoipa::path]` (`routes!` takes the
/// path and method from there), so the OpenAPI document is this router's own.
fn documented_routes(state: &AppState) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(init::init))
        .routes(routes!(payments::show))
        .routes(routes!(payments::status))
        .routes(routes!(payments::kaspi))
        .routes(routes!(page::quotes))
        .routes(routes!(page::qr_svg))
        .routes(routes!(payments::cancel))
        .routes(routes!(payments::refund))
        .routes(routes!(payments::refund_status))
        .routes(routes!(payments::active_methods))
        .routes(routes!(payments::list))
        .routes(routes!(health::health))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::docs))
        .routes(routes!(console::session, console::login, console::logout))
        .routes(routes!(admin::sources, admin::create_source))
        .routes(routes!(admin::update_source))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(admin::terminals, admin::add_terminal))
        .routes(routes!(admin::terminal, admin::update_terminal))
        .routes(routes!(admin::methods))
        .routes(routes!(admin::update_method))
        .routes(routes!(admin::register_terminal))
        .routes(routes!(admin_payments::payments))
        .routes(routes!(admin_payments::payment))
        .routes(routes!(admin_payments::cancel))
        .routes(routes!(admin_payments::refund))
        .routes(routes!(outbox::payment_webhooks))
        .routes(routes!(outbox::undelivered_webhooks))
        .routes(routes!(outbox::recover_webhooks))
        .routes(routes!(review::review))
        .routes(routes!(review::resolve_operation))
        .routes(routes!(outbox::retry_webhook));
    #[cfg(feature = "demo")]
    let api = if state.settings.demo_mode {
        api.routes(routes!(dev::simulate)).merge(
            OpenApiRouter::new()
                .routes(routes!(dev::receive_webhook, dev::received_webhooks))
                .layer(axum::Extension(dev::DemoInbox::default())),
        )
    } else {
        api
    };
    let site = OpenApiRouter::with_openapi(openapi::base())
        .nest("/api", api)
        .routes(routes!(page::pay_page))
        .routes(routes!(page::script))
        .routes(routes!(page::style))
        .routes(routes!(console::shell))
        .routes(routes!(console::script))
        .routes(routes!(console::style));
    if state.settings.metrics_bind.is_none() {
        site.routes(routes!(metrics::metrics))
    } else {
        site
    }
}

/// `GET /metrics` alone, for `metrics_bind`: a scraper's own address, apart from the API's.
pub fn metrics_router(state: AppState) -> Router {
    served(Router::new().route("/metrics", get(metrics::metrics)), state)
}
