//! The router of `spec/API.md`: every route, the demo's when in demo mode, `/metrics`, and the
//! layers every request passes (request id, tracing span, failure log, request count, panic
//! guard, request timeout).

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use axum::routing::{get, patch, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

#[cfg(feature = "demo")]
use super::dev;
use super::state::AppState;
use super::{admin, errors, health, metrics, outbox, page, payments, review, serve};

/// The whole API. Every failure — unknown route, wrong method, bad body, panic — answers with the
/// envelope of `spec/API.md` §1.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/payment/init", post(payments::init))
        .route("/payment/{id}", get(payments::show))
        .route("/payment/{id}/status", get(payments::status))
        .route("/payment/{id}/kaspi", post(payments::kaspi))
        .route("/payment/{id}/quotes", get(page::quotes))
        .route("/payment/{id}/qr.svg", get(page::qr_svg))
        .route("/payment/{id}/cancel", post(payments::cancel))
        .route("/payment/{id}/refund", post(payments::refund))
        .route("/payment/{id}/refund/{refund_id}", get(payments::refund_status))
        .route("/payment-methods/active", get(payments::active_methods))
        .route("/payments", get(payments::list))
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/openapi.json", get(super::openapi::document))
        .route("/admin/sources", get(admin::sources).post(admin::create_source))
        .route("/admin/sources/{id}", patch(admin::update_source))
        .route(
            "/admin/terminals",
            get(admin::terminals).post(admin::add_terminal),
        )
        .route(
            "/admin/terminals/{id}",
            get(admin::terminal).patch(admin::update_terminal),
        )
        .route("/admin/payment-methods", get(admin::methods))
        .route("/admin/payment-methods/{id}", patch(admin::update_method))
        .route("/admin/terminals/{id}/register", post(admin::register_terminal))
        .route("/admin/payments", get(admin::payments))
        .route("/admin/payments/{id}", get(admin::payment))
        .route("/admin/payments/{id}/webhooks", get(outbox::payment_webhooks))
        .route("/admin/webhooks", get(outbox::undelivered_webhooks))
        .route("/admin/webhooks/recover", post(outbox::recover_webhooks))
        .route("/admin/operations/review", get(review::review))
        .route("/admin/operations/{id}/resolve", post(review::resolve_operation))
        .route("/admin/webhooks/{event_id}/retry", post(outbox::retry_webhook));
    #[cfg(feature = "demo")]
    let api = if state.settings.demo_mode {
        api.route("/dev/simulate/{id}", post(dev::simulate)).route(
            "/dev/webhooks",
            post(dev::receive_webhook)
                .get(dev::received_webhooks)
                .layer(axum::Extension(dev::DemoInbox::default())),
        )
    } else {
        api
    };
    let site = Router::new()
        .nest("/api", api)
        .route("/pay/{id}", get(page::pay_page))
        .route("/pay/assets/pay.js", get(page::script))
        .route("/pay/assets/pay.css", get(page::style));
    let site = if state.settings.metrics_bind.is_none() {
        site.route("/metrics", get(metrics::metrics))
    } else {
        site
    };
    served(site, state)
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
