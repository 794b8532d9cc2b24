//! `GET /metrics` (Prometheus) and the layer that counts every request for it.

use super::openapi::errors::error_set;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use byfly_core::ErrorCode;

use super::errors::HttpError;
use super::extract::bearer_matches;
use super::state::AppState;
use crate::metrics::{CONTENT_TYPE, Metrics, UNMATCHED_ROUTE};

error_set!(MetricsErrors: []InvalidMetricsToken);

/// `GET /metrics`: this process's counters and the deployment's figures read from the database
/// (a database that does not answer fails the scrape with 503, which the scraper records as down:
/// stale pool figures would look healthy). Asks for `metrics_token` as a bearer token when set.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics", summary = "Prometheus metrics (OpenMetrics text)",
    description = "This process's counters and the deployment's figures read from the database; 503 when the database does not answer. Asks for `metrics_token` as a bearer token when one is set.",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String), MetricsErrors)
)]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, HttpError> {
    if let Some(expected) = &state.settings.metrics_token
        && !bearer_matches(expected, &headers)
    {
        return Err(HttpError::code(ErrorCode::InvalidMetricsToken));
    }
    let now = state.now();
    let figures = state.store.figures(now).await?;
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(&figures, now),
    )
        .into_response())
}

/// Counts the request by its matched route (never the raw path: ids would grow the label set
/// without bound), method and status, and times it to its answer's headers.
pub async fn count_request(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.observe_request(
        route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str),
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
