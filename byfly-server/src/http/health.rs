//! The health routes: `/api/health` (the guide's: database and terminal pool), and for load
//! balancers and container runtimes `/api/health/live` (the process answers) and
//! `/api/health/ready` (it should be sent traffic).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use byfly_core::wire::{
    Envelope, HealthResponse, LivenessResponse, PoolHealth, ReadinessCheck, ReadinessResponse,
};

use super::state::AppState;
use crate::heartbeats::WORKER_STALL;
use crate::store::UnixSeconds;

/// How long the longest-waiting webhook event that could be sent may wait before readiness fails:
/// the sender of this deployment is stuck or far behind (a receiver that is down does not count,
/// its events wait on their retry time).
pub const OUTBOX_LAG_LIMIT: Duration = Duration::from_secs(300);

/// `GET /api/health` (public): 200 when the database answers (`degraded` while no terminal is
/// healthy), 503 otherwise.
#[utoipa::path(
    get, path = "/health", tag = "health", operation_id = "health", summary = "Database and terminal pool",
    description = "200 while the database answers (`status` is `degraded` while no terminal is healthy); 503 with the same body when it does not.",
    responses((status = 200, description = "ok or degraded", body = Envelope<HealthResponse>), (status = 503, description = "The database does not answer", body = Envelope<HealthResponse>))
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let counts = state.store.pool_counts().await;
    let database_ok = counts.is_ok();
    let counts = counts.unwrap_or_default();
    let status = match (database_ok, counts.healthy) {
        (false, _) => "unavailable",
        (true, 0) => "degraded",
        (true, _) => "ok",
    };
    let body = HealthResponse {
        status: status.to_owned(),
        database: if database_ok { "ok" } else { "unavailable" }.to_owned(),
        terminals: PoolHealth {
            total: counts.enabled,
            healthy: counts.healthy,
            busy: counts.busy,
            needs_registration: counts.needs_registration,
        },
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let code = if database_ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Envelope::data(body))).into_response()
}

/// `GET /api/health/live` (public): 200 while the process serves requests; nothing else is asked,
/// so a slow database never gets a healthy process restarted.
#[utoipa::path(
    get, path = "/health/live", tag = "health", operation_id = "liveness", summary = "The process answers",
    description = "For a container runtime's liveness probe: nothing else is asked.",
    responses((status = 200, description = "live", body = Envelope<LivenessResponse>))
)]
pub async fn live() -> Json<Envelope<LivenessResponse>> {
    Json(Envelope::data(LivenessResponse {
        status: "live".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }))
}

/// What readiness is judged from, read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessFacts {
    /// The database answered (`Err`: how it failed).
    pub database: Result<(), String>,
    /// Every migration of this build applied (`None`: not known, the database failed).
    pub schema_current: Option<bool>,
    /// The workers stalled longer than [`WORKER_STALL`] (`None`: no worker runs in this process).
    pub stalled_workers: Option<Vec<&'static str>>,
    /// How long the longest-waiting sendable webhook event has waited (`None`: none waits).
    pub outbox_lag: Option<Duration>,
}

/// `GET /api/health/ready` (public): 200 when the database answers, its schema is this build's,
/// the workers are alive and the webhook sender keeps up; else 503, the same body naming what failed.
#[utoipa::path(
    get, path = "/health/ready", tag = "health", operation_id = "readiness", summary = "Whether to send this process traffic",
    description = "Database, schema, workers and webhook sender; 503 with the same body naming what failed.",
    responses((status = 200, description = "ready", body = Envelope<ReadinessResponse>), (status = 503, description = "Not ready", body = Envelope<ReadinessResponse>))
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let now = state.now();
    let database = state.store.ping().await.map_err(|err| err.to_string());
    let (schema_current, oldest_due) = if database.is_ok() {
        (
            state.store.schema_current().await.ok(),
            state.store.oldest_due_event(now).await.ok().flatten(),
        )
    } else {
        (None, None)
    };
    let facts = ReadinessFacts {
        database,
        schema_current,
        stalled_workers: state.heartbeats.stalled(WORKER_STALL),
        outbox_lag: oldest_due.map(|due: UnixSeconds| {
            Duration::from_secs(u64::try_from(now.get() - due.get()).unwrap_or_default())
        }),
    };
    let readiness = judge(&facts);
    let code = if readiness.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Envelope::data(readiness))).into_response()
}

/// The checks of [`ready`], from what was read.
pub fn judge(facts: &ReadinessFacts) -> ReadinessResponse {
    let check = |name: &str, failed: Option<String>| ReadinessCheck {
        name: name.to_owned(),
        ok: failed.is_none(),
        detail: failed,
    };
    let checks = vec![
        check("database", facts.database.clone().err()),
        check(
            "schema",
            match facts.schema_current {
                Some(true) => None,
                Some(false) => {
                    Some("migrations of this build are not applied: run byfly-server migrate".to_owned())
                }
                None => Some("unknown: the database did not answer".to_owned()),
            },
        ),
        check(
            "workers",
            match &facts.stalled_workers {
                None => Some("no background worker runs in this process".to_owned()),
                Some(stalled) if stalled.is_empty() => None,
                Some(stalled) => Some(format!(
                    "no round finished for over {} s: {}",
                    WORKER_STALL.as_secs(),
                    stalled.join(", ")
                )),
            },
        ),
        check(
            "outbox",
            facts.outbox_lag.filter(|lag| *lag > OUTBOX_LAG_LIMIT).map(|lag| {
                format!(
                    "a webhook event ready to send has waited {} s (limit {} s)",
                    lag.as_secs(),
                    OUTBOX_LAG_LIMIT.as_secs()
                )
            }),
        ),
    ];
    let status = if checks.iter().all(|check| check.ok) {
        "ready"
    } else {
        "not_ready"
    };
    ReadinessResponse {
        status: status.to_owned(),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> ReadinessFacts {
        ReadinessFacts {
            database: Ok(()),
            schema_current: Some(true),
            stalled_workers: Some(Vec::new()),
            outbox_lag: Some(Duration::from_secs(2)),
        }
    }

    fn failed(facts: &ReadinessFacts) -> Vec<String> {
        let readiness = judge(facts);
        assert_eq!(
            readiness.status == "ready",
            readiness.checks.iter().all(|check| check.ok)
        );
        readiness
            .checks
            .iter()
            .filter(|check| !check.ok)
            .map(|check| check.name.clone())
            .collect()
    }

    #[test]
    fn each_check_fails_on_its_own_fact() {
        assert_eq!(judge(&healthy()).status, "ready");
        assert!(
            failed(&ReadinessFacts {
                outbox_lag: None,
                ..healthy()
            })
            .is_empty()
        );
        let cases: [(ReadinessFacts, &[&str]); 6] = [
            (
                ReadinessFacts {
                    database: Err("connection refused".to_owned()),
                    schema_current: None,
                    outbox_lag: None,
                    ..healthy()
                },
                &["database", "schema"],
            ),
            (
                ReadinessFacts {
                    schema_current: Some(false),
                    ..healthy()
                },
                &["schema"],
            ),
            (
                ReadinessFacts {
                    stalled_workers: None,
                    ..healthy()
                },
                &["workers"],
            ),
            (
                ReadinessFacts {
                    stalled_workers: Some(vec!["operation_poller"]),
                    ..healthy()
                },
                &["workers"],
            ),
            (
                ReadinessFacts {
                    outbox_lag: Some(OUTBOX_LAG_LIMIT + Duration::from_secs(1)),
                    ..healthy()
                },
                &["outbox"],
            ),
            (
                ReadinessFacts {
                    outbox_lag: Some(OUTBOX_LAG_LIMIT),
                    ..healthy()
                },
                &[],
            ),
        ];
        for (facts, expected) in cases {
            assert_eq!(failed(&facts), expected, "{facts:?}");
        }
        let stalled = judge(&ReadinessFacts {
            stalled_workers: Some(vec!["operation_poller"]),
            ..healthy()
        });
        assert!(
            stalled.checks[2]
                .detail
                .as_deref()
                .unwrap()
                .contains("operation_poller")
        );
    }
}
