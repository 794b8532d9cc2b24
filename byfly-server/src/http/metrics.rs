//! `GET /metrics` (Prometheus); `guard.rs` counts every request for it.

use super::openapi::errors::error_set;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use byfly_core::ErrorCode;

use super::errors::HttpError;
use super::extract::bearer_matches;
use super::state::AppState;
use crate::metrics::CONTENT_TYPE;

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
