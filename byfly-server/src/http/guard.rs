//! What every request passes on its way in and its answer on its way out, stacked once for the
//! whole router: the request id, the request's tracing span and log line, and one middleware for
//! the rest (request timeout, the request's count for `/metrics`, the log of an internal failure's
//! cause, `no-store` on admin answers), with the panic guard inside it.
//!
//! One stack applied with one `Router::layer`, and one middleware rather than four: axum wraps
//! each route in every layer it is given, and each wrapping costs every request a boxed service
//! cloned and a boxed future, and a `from_fn` middleware a boxed `Next` besides. A route that
//! reads nothing cost three times what a bare axum route does; these layers were a fifth of its
//! server time in `perf` and the kernel (TCP, wake-ups) two fifths (BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::errors::{self, HttpError};
use super::state::AppState;
use crate::metrics::{Metrics, UNMATCHED_ROUTE};

/// What [`guard`] needs of the process.
#[derive(Debug, Clone)]
struct Limits {
    request_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// `routes` with the envelope for unknown routes and methods, and the whole stack, outermost
/// first: request id, span and log line, the id copied onto the answer, [`guard`], the panic
/// guard (inside the guard, so a panic is counted and its cause logged like any internal failure).
pub fn served(routes: Router<AppState>, state: AppState) -> Router {
    let limits = Limits {
        request_timeout: state.settings.serve.request_timeout,
        metrics: state.metrics.clone(),
    };
    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_request)
                // A failure's cause is logged by `guard`, its status by `log_request`.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(axum::middleware::from_fn_with_state(limits, guard))
        .layer(CatchPanicLayer::custom(errors::panic_response));
    routes
        .fallback(errors::route_not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .layer(stack)
        .with_state(state)
}

/// The request's span: its id, method, path and the route that matched (routing runs before the
/// router's layers, so the route is known). Every log line of the request is inside it.
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
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
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let mut bytes = [0u8; 8];
        rand::fill(&mut bytes);
        HeaderValue::from_str(&hex::encode(bytes))
            .ok()
            .map(RequestId::new)
    }
}

/// The middleware of the stack:
/// - answers `503 request_timeout` when the handler takes longer than `request_timeout_secs`.
///   Dropping the handler is safe: what must outlive a request (a terminal operation, a refund)
///   runs in a task of its own and carries on;
/// - counts the request by its matched route (never the raw path: ids would grow the label set
///   without bound), method and status, timed to its answer's headers;
/// - logs the cause of an internal failure once, in the request's span;
/// - marks every admin answer `Cache-Control: no-store`: they carry customers' data, which no
///   browser or proxy cache should keep.
async fn guard(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let admin = request.uri().path().starts_with("/api/admin");
    let mut response = match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => HttpError::code(byfly_core::ErrorCode::RequestTimeout).into_response(),
    };
    limits.metrics.observe_request(
        route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    if let Some(cause) = errors::internal_cause(&response) {
        tracing::error!(%cause, status = response.status().as_u16(), "internal error");
    }
    if admin {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
