//! The settings the server runs with: [`super::Config`] checked and converted into the types each
//! room uses (durations, money, offsets, secrets), grouped by who reads them.

use std::net::SocketAddr;
use std::time::Duration;

use byfly_core::ids::Secret;
use byfly_core::time::DisplayOffset;
use byfly_core::wire::InitLimits;
use byfly_terminal::QrScan;

use serde::Deserialize;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A database URL whose password never shows in `Debug` (settings are printed and logged).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> DatabaseUrl {
        DatabaseUrl(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> DatabaseUrl {
        DatabaseUrl(url.to_owned())
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `scheme://user:password@host/...?password=...`: passwords are replaced, the rest kept
        // for diagnosis.
        let (base, query) = self
            .0
            .split_once('?')
            .map_or((self.0.as_str(), None), |(base, query)| (base, Some(query)));
        let base = base
            .split_once("://")
            .and_then(|(scheme, rest)| {
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let (userinfo, host) = authority.rsplit_once('@')?;
                let (user, _password) = userinfo.split_once(':')?;
                Some(format!("{scheme}://{user}:[redacted]@{host}{path}"))
            })
            .unwrap_or_else(|| base.to_owned());
        let shown = match query {
            None => base,
            Some(query) => {
                let pairs: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=[redacted]"),
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{base}?{}", pairs.join("&"))
            }
        };
        write!(f, "{shown:?}")
    }
}

/// Settings checked and converted into the types the server uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Database URL.
    pub database_url: DatabaseUrl,
    /// Offset of the API's date-times.
    pub offset: DisplayOffset,
    /// Payment lifetime.
    pub payment_ttl: Duration,
    /// Init limits.
    pub limits: InitLimits,
    /// Body size limit.
    pub max_body_bytes: usize,
    /// Timeouts and the connection cap of the HTTP server.
    pub serve: ServeLimits,
    /// Where `/metrics` is served (`None`: beside the API on `bind`).
    pub metrics_bind: Option<SocketAddr>,
    /// Bearer token of `/metrics` (`None`: open).
    pub metrics_token: Option<Secret<String>>,
    /// Admin bearer token.
    pub admin_token: Option<Secret<String>>,
    /// How long the console's sessions last.
    pub console: ConsoleSessions,
    /// Base of customer links, without a trailing slash.
    pub public_base_url: Option<String>,
    /// See [`super::Config::allow_private_webhook_hosts`].
    pub allow_private_webhook_hosts: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Interval of terminal health checks.
    pub health_check_interval: Duration,
    /// Terminal call timeouts, the registration wait and the token refresh margin.
    pub terminals: TerminalTiming,
    /// Timing of terminal operations.
    pub timing: OperationTiming,
    /// Webhook delivery.
    pub delivery: DeliverySettings,
    /// `/kaspi` rate limits.
    pub kaspi_rate: KaspiRate,
    /// Demo mode (`byfly-server demo`): adds `POST /api/dev/simulate/{id}`, which drives the
    /// simulated terminals. Never set from configuration.
    pub demo_mode: bool,
}

/// What bounds the HTTP server: a client slow to send its headers, a request slow to be
/// answered, too many connections, a shutdown that waits for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// From a request's first byte to the end of its headers.
    pub header_read_timeout: Duration,
    /// From a request's arrival to its answer.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long requests in flight may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

/// How long a session of the operator's console lasts (see `http/console.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleSessions {
    /// Seconds without a request.
    pub idle_secs: i64,
    /// Seconds at most.
    pub max_secs: i64,
}

/// Timeouts of terminal calls, the registration wait and the token refresh margin.
#[derive(Debug, Clone, Copy)]
pub struct TerminalTiming {
    /// To connect (beyond it the terminal is unreachable).
    pub connect_timeout: Duration,
    /// For a whole call (beyond it the terminal may still have acted).
    pub request_timeout: Duration,
    /// For a cashier to accept a registration on the screen.
    pub register_timeout: Duration,
    /// Seconds before expiry at which the health checker refreshes tokens.
    pub refresh_before: i64,
    /// The terminals' clock: `expirationDate` has no zone and is read in this offset.
    pub offset: DisplayOffset,
}

impl Default for TerminalTiming {
    fn default() -> Self {
        TerminalTiming {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            register_timeout: Duration::from_secs(180),
            refresh_before: 3600,
            offset: DisplayOffset::utc(),
        }
    }
}

/// Timing of operations (`spec/KASPI_TERMINAL.md` §4–§5).
#[derive(Debug, Clone, Copy)]
pub struct OperationTiming {
    /// Camera frames: interval and deadline.
    pub qr_scan: QrScan,
    /// Seconds between polls of an operation in flight.
    pub poll_interval: i64,
    /// Seconds between `actualize` calls while the terminal says `unknown`.
    pub actualize_interval: i64,
    /// Seconds of `unknown` after which an operation is flagged for manual review.
    pub unknown_review_after: i64,
    /// Seconds the terminal gives a customer (QR scan + confirmation).
    pub operation_deadline: i64,
}

impl Default for OperationTiming {
    fn default() -> Self {
        OperationTiming {
            qr_scan: QrScan::default(),
            poll_interval: 1,
            actualize_interval: 10,
            unknown_review_after: 180,
            operation_deadline: 300,
        }
    }
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Seconds to wait before each retry (1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h by default).
    pub backoff: Vec<i64>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Timeout of the receiving host's DNS lookup.
    pub dns_timeout: Duration,
    /// Seconds a claim belongs to its sender (more than a whole attempt).
    pub claim_lease: i64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries in flight at once to one receiving host.
    pub per_host: usize,
    /// Seconds the attempt log is kept.
    pub log_retention: i64,
    /// Whether receivers on internal addresses are allowed.
    pub allow_private_hosts: bool,
    /// Offset of the date-times in bodies.
    pub offset: DisplayOffset,
}

/// The configured limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KaspiRate {
    /// Calls per client address per minute (0: unlimited).
    pub per_ip_per_minute: u32,
    /// Calls per payment per minute (0: unlimited).
    pub per_payment_per_minute: u32,
    /// Whether the last `X-Forwarded-For` entry names the client.
    pub trust_forwarded_for: bool,
}
