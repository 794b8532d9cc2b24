//! The router of `spec/API.md`: every route, the demo's when in demo mode, `/metrics`, and the
//! layers every request passes (request id, tracing span, failure log, request count, panic
//! guard, request timeout).

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[cfg(feature = "demo")]
use super::dev;
use super::state::AppState;
use super::{
    admin, admin_payments, console, errors, health, keys, metrics, openapi, outbox, page, payments, review,
    serve,
};

/// The whole API. Every failure — unknown route, wrong method, bad body, panic — answers with the
/// envelope of `spec/API.md` §1.
pub fn router(state: AppState) -> Router {
    let (site, document) = documented_routes(&state).split_for_parts();
    let site = site
        .layer(axum::Extension(openapi::finish(document)))
        .layer(axum::middleware::from_fn(console::no_store_for_admin));
    served(site, state)
}

/// Every route, each registered through its handler's `#[utoipa::path]` (`routes!` takes the
/// path and method from there), so the OpenAPI document is this router's own.
fn documented_routes(state: &AppState) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(payments::init))
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

/// `routes` with what every request passes: the envelope for unknown routes and methods, the
/// request timeout, the request's count for `/metrics`, the panic guard, the failure log, the
/// request id and the request's log line.
fn served(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(errors::route_not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.settings.serve.request_timeout,
            serve::request_timeout,
        ))
        .layer(CatchPanicLayer::custom(errors::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::count_request,
        ))
        .layer(axum::middleware::from_fn(errors::log_failures))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<axum::body::Body>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // Routing runs before the router's layers: the route that matched is known.
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("-", MatchedPath::as_str);
                    tracing::info_span!(
                        "request",
                        id,
                        method = %request.method(),
                        path = %request.uri().path(),
                        route = %route,
                    )
                })
                .on_request(())
                .on_response(log_request)
                // A failure's cause is logged by `log_failures`, its status by `log_request`.
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .with_state(state)
}

/// One line per request at info, in its span (request id, method, path, route): the status and
/// how long the answer took. Nothing of the request's headers or body: tokens and secrets travel
/// there.
fn log_request(response: &Response, latency: Duration, _span: &tracing::Span) {
    tracing::info!(
        status = response.status().as_u16(),
        duration_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
}

/// A request id for every request that does not bring its own `X-Request-Id`: 64 random bits in
/// hex. It is on every log line of the request (its tracing span) and in the answer's headers.
#[derive(Debug, Clone, Copy, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let mut bytes = [0u8; 8];
        rand::fill(&mut bytes);
        HeaderValue::from_str(&hex::encode(bytes))
            .ok()
            .map(RequestId::new)
    }
}
