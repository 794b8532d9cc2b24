//! The server's figures for Prometheus (`GET /metrics`, the OpenMetrics text format).
//!
//! Two kinds: what this process saw — requests, webhook attempts, terminal calls — counted as it
//! happens, and what every process sharing the database must agree on — payments by status, the
//! pool, operations in flight, the review queue, the webhook backlog — read from the database at
//! each scrape ([`crate::store::Figures`]), so two servers behind one balancer report the same pool
//! and one scraper's sum over processes is not needed for them.
//!
//! One registry per [`crate::app::App`], never a global recorder: several servers run in one test
//! process and each must count only its own.

use std::time::Duration;

use byfly_core::PaymentStatus;
use byfly_terminal::{CallObserver, CallOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::{Figures, UnixSeconds};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of a request no route matched: unknown paths must not grow the label set.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// How a webhook attempt ended, as `byfly_webhook_deliveries_total{result}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The receiver answered 2xx.
    Delivered,
    /// It did not; another attempt is scheduled (or an operator's retry failed).
    Failed,
    /// It did not, and that was the schedule's last attempt: the event waits for recovery.
    Exhausted,
    /// The payment has no `webhook_url`: nothing was sent.
    NoReceiver,
}

impl DeliveryResult {
    fn label(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Failed => "failed",
            DeliveryResult::Exhausted => "exhausted",
            DeliveryResult::NoReceiver => "no_receiver",
        }
    }
}

/// Every metric of one server process.
#[derive(Debug)]
pub struct Metrics {
    /// Held from setting the shared figures to encoding them, so two scrapes at once never
    /// encode each other's.
    registry: std::sync::Mutex<Registry>,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Histograms<RouteLabels>,
    webhook_deliveries: Family<ResultLabels, Counter>,
    terminal_calls: Histograms<CallLabels>,
    payments: Family<StatusLabels, Gauge>,
    terminals: Family<StateLabels, Gauge>,
    operations_in_flight: Gauge,
    review_queue: Gauge,
    outbox_pending: Gauge,
    outbox_exhausted: Gauge,
    outbox_oldest_due_age: Gauge,
}

/// Request durations: 1 ms to about 33 s, doubling.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Terminal calls: 5 ms to about 82 s, doubling (a registration waits for a cashier).
fn terminal_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "byfly_http_requests",
            "HTTP requests answered, by matched route, method and status",
            http_requests.clone(),
        );
        let http_duration: Histograms<RouteLabels> = Family::new_with_constructor(request_buckets);
        registry.register(
            "byfly_http_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by matched route and method",
            http_duration.clone(),
        );
        let webhook_deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "byfly_webhook_deliveries",
            "Webhook attempts made by this process, by result (delivered, failed, exhausted, no_receiver)",
            webhook_deliveries.clone(),
        );
        let terminal_calls: Histograms<CallLabels> = Family::new_with_constructor(terminal_buckets);
        registry.register(
            "byfly_terminal_request_duration_seconds",
            "HTTP calls to terminals made by this process, by protocol call and outcome (answered, refused, failed)",
            terminal_calls.clone(),
        );
        let payments = Family::<StatusLabels, Gauge>::default();
        // A gauge (payments leave a status), so no `_total`: that suffix is for counters.
        registry.register(
            "byfly_payments",
            "Payments in the database, by status",
            payments.clone(),
        );
        let terminals = Family::<StateLabels, Gauge>::default();
        registry.register(
            "byfly_terminals",
            "Terminals of the pool, each in one state (free, busy, unhealthy, needs_registration, disabled)",
            terminals.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let operations_in_flight = gauge(
            &mut registry,
            "byfly_operations_in_flight",
            "Terminal operations holding a terminal (started or starting, not finished)",
        );
        let review_queue = gauge(
            &mut registry,
            "byfly_review_queue",
            "Operations waiting for a person's review",
        );
        let outbox_pending = gauge(
            &mut registry,
            "byfly_outbox_pending",
            "Webhook events not yet delivered that will be sent, now or at a retry's time",
        );
        let outbox_exhausted = gauge(
            &mut registry,
            "byfly_outbox_exhausted",
            "Webhook events that exhausted their retry schedule and wait for an operator's recovery",
        );
        let outbox_oldest_due_age = gauge(
            &mut registry,
            "byfly_outbox_oldest_due_age_seconds",
            "How long the longest-waiting sendable webhook event has been due (0: none waits)",
        );
        Metrics {
            registry: std::sync::Mutex::new(registry),
            http_requests,
            http_duration,
            webhook_deliveries,
            terminal_calls,
            payments,
            terminals,
            operations_in_flight,
            review_queue,
            outbox_pending,
            outbox_exhausted,
            outbox_oldest_due_age,
        }
    }

    /// Counts one answered request (`route`: the matched route, or [`UNMATCHED_ROUTE`]).
    pub fn observe_request(&self, route: &str, method: &axum::http::Method, status: u16, took: Duration) {
        let method = method_label(method);
        self.http_requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method,
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one webhook attempt.
    pub fn observe_delivery(&self, result: DeliveryResult) {
        self.webhook_deliveries
            .get_or_create(&ResultLabels {
                result: result.label(),
            })
            .inc();
    }

    /// The text a scrape answers: this process's counters and the shared `figures` read at `now`.
    pub fn render(&self, figures: &Figures, now: UnixSeconds) -> String {
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for status in PaymentStatus::ALL {
            let name = status.as_str();
            let count = figures
                .payments_by_status
                .iter()
                .find(|(stored, _)| stored == name)
                .map_or(0, |(_, count)| *count);
            self.payments
                .get_or_create(&StatusLabels { status: name })
                .set(gauge_value(count));
        }
        let pool = &figures.terminals;
        for (state, count) in [
            ("free", pool.free),
            ("busy", pool.busy),
            ("unhealthy", pool.unhealthy),
            ("needs_registration", pool.needs_registration),
            ("disabled", pool.disabled),
        ] {
            self.terminals
                .get_or_create(&StateLabels { state })
                .set(gauge_value(count));
        }
        self.operations_in_flight
            .set(gauge_value(figures.operations_in_flight));
        self.review_queue.set(gauge_value(figures.review_queue));
        self.outbox_pending.set(gauge_value(figures.outbox_pending));
        self.outbox_exhausted.set(gauge_value(figures.outbox_exhausted));
        self.outbox_oldest_due_age.set(
            figures
                .oldest_due_at
                .map_or(0, |due| (now.get() - due.get()).max(0)),
        );
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a label.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(%err, "metrics could not be encoded");
        }
        text
    }
}

impl CallObserver for Metrics {
    fn observe(&self, call: &'static str, duration: Duration, outcome: CallOutcome) {
        self.terminal_calls
            .get_or_create(&CallLabels {
                call,
                outcome: outcome.as_str(),
            })
            .observe(duration.as_secs_f64());
    }
}

fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The method as a label: the standard ones by name, anything else as `other` (the label set
/// stays bounded whatever clients send).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TerminalFigures;

    #[test]
    fn a_scrape_names_every_figure_with_its_labels() {
        let metrics = Metrics::new();
        metrics.observe_request(
            "/api/payment/{id}/status",
            &axum::http::Method::GET,
            200,
            Duration::from_millis(3),
        );
        metrics.observe_delivery(DeliveryResult::Delivered);
        metrics.observe("payment", Duration::from_millis(40), CallOutcome::Answered);
        let figures = Figures {
            payments_by_status: vec![("paid".to_owned(), 2)],
            terminals: TerminalFigures {
                free: 1,
                busy: 1,
                ..TerminalFigures::default()
            },
            operations_in_flight: 1,
            review_queue: 0,
            outbox_pending: 3,
            outbox_exhausted: 1,
            oldest_due_at: Some(UnixSeconds(100)),
        };
        let text = metrics.render(&figures, UnixSeconds(130));
        for line in [
            "byfly_http_requests_total{route=\"/api/payment/{id}/status\",method=\"GET\",status=\"200\"} 1",
            "byfly_http_request_duration_seconds_count{route=\"/api/payment/{id}/status\",method=\"GET\"} 1",
            "byfly_webhook_deliveries_total{result=\"delivered\"} 1",
            "byfly_terminal_request_duration_seconds_count{call=\"payment\",outcome=\"answered\"} 1",
            "byfly_payments{status=\"paid\"} 2",
            "byfly_payments{status=\"pending\"} 0",
            "byfly_terminals{state=\"free\"} 1",
            "byfly_terminals{state=\"needs_registration\"} 0",
            "byfly_operations_in_flight 1",
            "byfly_review_queue 0",
            "byfly_outbox_pending 3",
            "byfly_outbox_exhausted 1",
            "byfly_outbox_oldest_due_age_seconds 30",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
