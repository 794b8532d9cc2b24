//! Configuration: compiled-in defaults → an optional TOML file → `BYFLY_*` environment variables →
//! validation with errors that name the field. Every setting, its default and its variable are in
//! this one file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use byfly_core::Money;
use byfly_core::ids::Secret;
use byfly_core::time::DisplayOffset;
use byfly_core::wire::{InitLimits, MAX_AMOUNT_CEILING};
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

/// The server's settings. Field docs give the default and the environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`; `BYFLY_BIND`.
    pub bind: SocketAddr,
    /// Database URL: `sqlite://path` (created on first start) or `postgres://user@host/db` (several
    /// processes may share it). Default `sqlite://byfly.db`; `BYFLY_DATABASE_URL`.
    pub database_url: String,
    /// UTC offset of the API's date-times. Default `+00:00` (Kazakhstan: `+05:00`); `BYFLY_UTC_OFFSET`.
    pub utc_offset: String,
    /// How long a payment stays payable, seconds. Default 3600; `BYFLY_PAYMENT_TTL_SECS`.
    pub payment_ttl_secs: u64,
    /// Largest accepted payment, whole tenge. Default 100 000 000, at most 10^12; `BYFLY_MAX_AMOUNT`.
    pub max_amount: i64,
    /// Largest accepted request body, bytes. Default 65 536; `BYFLY_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// Bearer token of `/api/admin/*`; the admin API is closed while unset. `BYFLY_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// Public base URL for links given to customers (`payment_page_url`). Default none; `BYFLY_PUBLIC_BASE_URL`.
    pub public_base_url: Option<String>,
    /// Accept webhook URLs that resolve to loopback/private/link-local addresses. Default false
    /// (true in `demo`); `BYFLY_ALLOW_PRIVATE_WEBHOOK_HOSTS`.
    pub allow_private_webhook_hosts: bool,
    /// `text` or `json`. Default `text`; `BYFLY_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// Seconds between health checks (`deviceinfo`) of each terminal. Default 30;
    /// `BYFLY_HEALTH_CHECK_INTERVAL_SECS`.
    pub health_check_interval_secs: u64,
    /// Milliseconds to connect to a terminal before it counts as unreachable. Default 3 000;
    /// `BYFLY_TERMINAL_CONNECT_TIMEOUT_MS`.
    pub terminal_connect_timeout_ms: u64,
    /// Milliseconds a terminal call may take. A `/v2/payment` that times out may still have started:
    /// its terminal is held, never swapped for another. Default 10 000; `BYFLY_TERMINAL_REQUEST_TIMEOUT_MS`.
    pub terminal_request_timeout_ms: u64,
    /// Seconds an operator's registration waits for the cashier to accept on the terminal's
    /// screen. Default 180; `BYFLY_TERMINAL_REGISTER_TIMEOUT_SECS`.
    pub terminal_register_timeout_secs: u64,
    /// The health checker refreshes a terminal's tokens when less than this many seconds remain
    /// (tokens live about 24 h; their `expirationDate` is read in `utc_offset`). Default 3600;
    /// `BYFLY_TERMINAL_TOKEN_REFRESH_BEFORE_SECS`.
    pub terminal_token_refresh_before_secs: u64,
    /// Milliseconds between camera frames while reading a QR. Default 300; `BYFLY_QR_SCAN_INTERVAL_MS`.
    pub qr_scan_interval_ms: u64,
    /// Milliseconds to try reading the QR before giving up. Default 10 000; `BYFLY_QR_SCAN_DEADLINE_MS`.
    pub qr_scan_deadline_ms: u64,
    /// Seconds between polls of an operation in flight. Default 1; `BYFLY_POLL_INTERVAL_SECS`.
    pub poll_interval_secs: u64,
    /// Seconds a terminal operation may run (QR scan + confirmation). Default 300; `BYFLY_OPERATION_TIMEOUT_SECS`.
    pub operation_timeout_secs: u64,
    /// Seconds of `unknown` before an operation is flagged for review. Default 180; `BYFLY_UNKNOWN_REVIEW_AFTER_SECS`.
    pub unknown_review_after_secs: u64,
    /// Webhook retry delays, seconds. Default 60, 300, 1800, 7200, 21600, 43200, 86400 (±20 % jitter);
    /// `BYFLY_WEBHOOK_BACKOFF_SECS` as a comma-separated list.
    pub webhook_backoff_secs: Vec<u64>,
    /// Webhook request timeout, seconds. Default 10; `BYFLY_WEBHOOK_TIMEOUT_SECS`.
    pub webhook_timeout_secs: u64,
    /// Webhook deliveries in flight at once. Default 8; `BYFLY_WEBHOOK_CONCURRENCY`.
    pub webhook_concurrency: usize,
    /// Webhook deliveries in flight at once to one receiving host, so that one slow receiver never
    /// holds up the others. Default 2; `BYFLY_WEBHOOK_PER_HOST_CONCURRENCY`.
    pub webhook_per_host_concurrency: usize,
    /// Time a webhook host's DNS lookup may take, milliseconds. Default 5000; `BYFLY_WEBHOOK_DNS_TIMEOUT_MS`.
    pub webhook_dns_timeout_ms: u64,
    /// How long a claimed event belongs to its sender: longer than the timeout and the DNS lookup
    /// together (checked), so one event never goes out twice at once. Default 90;
    /// `BYFLY_WEBHOOK_CLAIM_LEASE_SECS`.
    pub webhook_claim_lease_secs: u64,
    /// Days the webhook attempt log is kept (the events themselves are kept). Default 30;
    /// `BYFLY_WEBHOOK_LOG_RETENTION_DAYS`.
    pub webhook_log_retention_days: u64,
    /// `/kaspi` calls one client address may make per minute (each can hold a physical terminal
    /// for minutes). Default 20, 0 = no limit; `BYFLY_KASPI_RATE_PER_IP`.
    pub kaspi_rate_per_ip: u32,
    /// `/kaspi` calls per payment per minute. Default 6, 0 = no limit; `BYFLY_KASPI_RATE_PER_PAYMENT`.
    pub kaspi_rate_per_payment: u32,
    /// Take the client address for rate limits from the last `X-Forwarded-For` entry (set it only
    /// behind a proxy that appends it). Default false; `BYFLY_TRUST_FORWARDED_FOR`.
    pub trust_forwarded_for: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://byfly.db".to_owned(),
            utc_offset: "+00:00".to_owned(),
            payment_ttl_secs: 3600,
            max_amount: 100_000_000,
            max_body_bytes: 64 * 1024,
            admin_token: None,
            public_base_url: None,
            allow_private_webhook_hosts: false,
            log_format: LogFormat::Text,
            health_check_interval_secs: 30,
            terminal_connect_timeout_ms: 3_000,
            terminal_request_timeout_ms: 10_000,
            terminal_register_timeout_secs: 180,
            terminal_token_refresh_before_secs: 3600,
            qr_scan_interval_ms: 300,
            qr_scan_deadline_ms: 10_000,
            poll_interval_secs: 1,
            operation_timeout_secs: 300,
            unknown_review_after_secs: 180,
            webhook_backoff_secs: vec![60, 300, 1800, 7200, 21600, 43200, 86400],
            webhook_timeout_secs: 10,
            webhook_concurrency: 8,
            webhook_per_host_concurrency: 2,
            webhook_dns_timeout_ms: 5_000,
            webhook_claim_lease_secs: 90,
            webhook_log_retention_days: 30,
            kaspi_rate_per_ip: 20,
            kaspi_rate_per_payment: 6,
            trust_forwarded_for: false,
        }
    }
}

/// A setting that cannot be used, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    /// A setting (from the file or the environment) is invalid.
    #[error("setting `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// What a webhook claim's lease must exceed a whole attempt (DNS lookup and request) by.
const LEASE_MARGIN_SECS: u64 = 5;

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Settings checked and converted into the types the server uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Database URL.
    pub database_url: String,
    /// Offset of the API's date-times.
    pub offset: DisplayOffset,
    /// Payment lifetime.
    pub payment_ttl: Duration,
    /// Init limits.
    pub limits: InitLimits,
    /// Body size limit.
    pub max_body_bytes: usize,
    /// Admin bearer token.
    pub admin_token: Option<Secret<String>>,
    /// Base of customer links, without a trailing slash.
    pub public_base_url: Option<String>,
    /// See [`Config::allow_private_webhook_hosts`].
    pub allow_private_webhook_hosts: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Interval of terminal health checks.
    pub health_check_interval: Duration,
    /// Terminal call timeouts, the registration wait and the token refresh margin.
    pub terminals: crate::pool::TerminalTiming,
    /// Timing of terminal operations.
    pub timing: crate::operations::OperationTiming,
    /// Webhook delivery.
    pub delivery: crate::webhooks::DeliverySettings,
    /// `/kaspi` rate limits.
    pub kaspi_rate: crate::http::KaspiRate,
    /// Demo mode (`byfly-server demo`): adds `POST /api/dev/simulate/{id}`, which drives the
    /// simulated terminals. Never set from configuration.
    pub demo_mode: bool,
}

impl Config {
    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| ConfigError::File {
                    path: path.display().to_string(),
                    reason: err.to_string(),
                })?;
                toml::from_str(&text).map_err(|err| ConfigError::File {
                    path: path.display().to_string(),
                    reason: err.to_string(),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parsed<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value
                .trim()
                .parse()
                .map_err(|err: T::Err| invalid(field, format!("{value:?}: {err}")))
        }
        if let Some(v) = env("BYFLY_BIND") {
            self.bind = parsed("bind", &v)?;
        }
        if let Some(v) = env("BYFLY_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = env("BYFLY_UTC_OFFSET") {
            self.utc_offset = v;
        }
        if let Some(v) = env("BYFLY_PAYMENT_TTL_SECS") {
            self.payment_ttl_secs = parsed("payment_ttl_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_MAX_AMOUNT") {
            self.max_amount = parsed("max_amount", &v)?;
        }
        if let Some(v) = env("BYFLY_MAX_BODY_BYTES") {
            self.max_body_bytes = parsed("max_body_bytes", &v)?;
        }
        if let Some(v) = env("BYFLY_ADMIN_TOKEN") {
            self.admin_token = Some(v);
        }
        if let Some(v) = env("BYFLY_PUBLIC_BASE_URL") {
            self.public_base_url = Some(v);
        }
        if let Some(v) = env("BYFLY_ALLOW_PRIVATE_WEBHOOK_HOSTS") {
            self.allow_private_webhook_hosts = parsed("allow_private_webhook_hosts", &v)?;
        }
        if let Some(v) = env("BYFLY_HEALTH_CHECK_INTERVAL_SECS") {
            self.health_check_interval_secs = parsed("health_check_interval_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_TERMINAL_CONNECT_TIMEOUT_MS") {
            self.terminal_connect_timeout_ms = parsed("terminal_connect_timeout_ms", &v)?;
        }
        if let Some(v) = env("BYFLY_TERMINAL_REQUEST_TIMEOUT_MS") {
            self.terminal_request_timeout_ms = parsed("terminal_request_timeout_ms", &v)?;
        }
        if let Some(v) = env("BYFLY_TERMINAL_REGISTER_TIMEOUT_SECS") {
            self.terminal_register_timeout_secs = parsed("terminal_register_timeout_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_TERMINAL_TOKEN_REFRESH_BEFORE_SECS") {
            self.terminal_token_refresh_before_secs = parsed("terminal_token_refresh_before_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_QR_SCAN_INTERVAL_MS") {
            self.qr_scan_interval_ms = parsed("qr_scan_interval_ms", &v)?;
        }
        if let Some(v) = env("BYFLY_QR_SCAN_DEADLINE_MS") {
            self.qr_scan_deadline_ms = parsed("qr_scan_deadline_ms", &v)?;
        }
        if let Some(v) = env("BYFLY_POLL_INTERVAL_SECS") {
            self.poll_interval_secs = parsed("poll_interval_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_OPERATION_TIMEOUT_SECS") {
            self.operation_timeout_secs = parsed("operation_timeout_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_UNKNOWN_REVIEW_AFTER_SECS") {
            self.unknown_review_after_secs = parsed("unknown_review_after_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_WEBHOOK_BACKOFF_SECS") {
            self.webhook_backoff_secs = v
                .split(',')
                .map(|part| parsed("webhook_backoff_secs", part))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = env("BYFLY_WEBHOOK_TIMEOUT_SECS") {
            self.webhook_timeout_secs = parsed("webhook_timeout_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_WEBHOOK_CONCURRENCY") {
            self.webhook_concurrency = parsed("webhook_concurrency", &v)?;
        }
        if let Some(v) = env("BYFLY_WEBHOOK_PER_HOST_CONCURRENCY") {
            self.webhook_per_host_concurrency = parsed("webhook_per_host_concurrency", &v)?;
        }
        if let Some(v) = env("BYFLY_WEBHOOK_DNS_TIMEOUT_MS") {
            self.webhook_dns_timeout_ms = parsed("webhook_dns_timeout_ms", &v)?;
        }
        if let Some(v) = env("BYFLY_WEBHOOK_CLAIM_LEASE_SECS") {
            self.webhook_claim_lease_secs = parsed("webhook_claim_lease_secs", &v)?;
        }
        if let Some(v) = env("BYFLY_WEBHOOK_LOG_RETENTION_DAYS") {
            self.webhook_log_retention_days = parsed("webhook_log_retention_days", &v)?;
        }
        if let Some(v) = env("BYFLY_KASPI_RATE_PER_IP") {
            self.kaspi_rate_per_ip = parsed("kaspi_rate_per_ip", &v)?;
        }
        if let Some(v) = env("BYFLY_KASPI_RATE_PER_PAYMENT") {
            self.kaspi_rate_per_payment = parsed("kaspi_rate_per_payment", &v)?;
        }
        if let Some(v) = env("BYFLY_TRUST_FORWARDED_FOR") {
            self.trust_forwarded_for = parsed("trust_forwarded_for", &v)?;
        }
        if let Some(v) = env("BYFLY_LOG_FORMAT") {
            self.log_format = match v.trim() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => return Err(invalid("log_format", format!("{other:?}: expected text or json"))),
            };
        }
        Ok(())
    }

    /// Checks every setting.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let offset =
            DisplayOffset::parse(&self.utc_offset).map_err(|err| invalid("utc_offset", err.to_string()))?;
        if self.payment_ttl_secs < 60 || self.payment_ttl_secs > 30 * 24 * 3600 {
            return Err(invalid("payment_ttl_secs", "must be between 60 s and 30 days"));
        }
        if self.max_amount < 1 || self.max_amount > MAX_AMOUNT_CEILING {
            return Err(invalid(
                "max_amount",
                format!("must be between 1 and {MAX_AMOUNT_CEILING}"),
            ));
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 16 * 1024 * 1024 {
            return Err(invalid("max_body_bytes", "must be between 1 KiB and 16 MiB"));
        }
        if self.health_check_interval_secs == 0 || self.health_check_interval_secs > 3600 {
            return Err(invalid(
                "health_check_interval_secs",
                "must be between 1 s and 1 h",
            ));
        }
        if self.qr_scan_interval_ms < 10 || self.qr_scan_deadline_ms < self.qr_scan_interval_ms {
            return Err(invalid(
                "qr_scan_deadline_ms",
                "must be at least qr_scan_interval_ms (≥ 10 ms)",
            ));
        }
        if self.terminal_connect_timeout_ms < 50 || self.terminal_connect_timeout_ms > 60_000 {
            return Err(invalid(
                "terminal_connect_timeout_ms",
                "must be between 50 and 60 000",
            ));
        }
        if self.terminal_request_timeout_ms < 100 || self.terminal_request_timeout_ms > 120_000 {
            return Err(invalid(
                "terminal_request_timeout_ms",
                "must be between 100 and 120 000",
            ));
        }
        if self.terminal_register_timeout_secs == 0 || self.terminal_register_timeout_secs > 900 {
            return Err(invalid(
                "terminal_register_timeout_secs",
                "must be between 1 and 900",
            ));
        }
        if self.terminal_token_refresh_before_secs > 23 * 3600 {
            return Err(invalid(
                "terminal_token_refresh_before_secs",
                "must be at most 82 800 (tokens live about 24 h)",
            ));
        }
        if self.poll_interval_secs == 0 || self.poll_interval_secs > 60 {
            return Err(invalid("poll_interval_secs", "must be between 1 and 60"));
        }
        if self.operation_timeout_secs < 30 {
            return Err(invalid("operation_timeout_secs", "must be at least 30"));
        }
        if self.webhook_backoff_secs.is_empty() || self.webhook_backoff_secs.contains(&0) {
            return Err(invalid(
                "webhook_backoff_secs",
                "must be a non-empty list of positive delays",
            ));
        }
        if self.webhook_timeout_secs == 0 || self.webhook_timeout_secs > 60 {
            return Err(invalid("webhook_timeout_secs", "must be between 1 and 60"));
        }
        if self.webhook_concurrency == 0 || self.webhook_concurrency > 256 {
            return Err(invalid("webhook_concurrency", "must be between 1 and 256"));
        }
        if self.webhook_per_host_concurrency == 0
            || self.webhook_per_host_concurrency > self.webhook_concurrency
        {
            return Err(invalid(
                "webhook_per_host_concurrency",
                "must be between 1 and webhook_concurrency",
            ));
        }
        if self.webhook_dns_timeout_ms == 0 || self.webhook_dns_timeout_ms > 30_000 {
            return Err(invalid("webhook_dns_timeout_ms", "must be between 1 and 30000"));
        }
        // The lease must outlast a whole attempt (DNS, then the request) with a margin.
        let attempt_secs =
            self.webhook_timeout_secs + self.webhook_dns_timeout_ms.div_ceil(1000) + LEASE_MARGIN_SECS;
        if self.webhook_claim_lease_secs <= attempt_secs {
            return Err(invalid(
                "webhook_claim_lease_secs",
                format!(
                    "must be more than webhook_timeout_secs + webhook_dns_timeout_ms + {LEASE_MARGIN_SECS} s ({attempt_secs} s)"
                ),
            ));
        }
        if self.webhook_log_retention_days == 0 || self.webhook_log_retention_days > 3650 {
            return Err(invalid(
                "webhook_log_retention_days",
                "must be between 1 and 3650",
            ));
        }
        if crate::store::Dialect::of_url(&self.database_url).is_none() {
            return Err(invalid(
                "database_url",
                "must be sqlite://path or postgres://user@host/database",
            ));
        }
        let admin_token = match self.admin_token {
            Some(token) if token.trim().len() < 16 => {
                return Err(invalid("admin_token", "must be at least 16 characters"));
            }
            other => other.map(Secret::new),
        };
        let public_base_url = match self.public_base_url {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(invalid("public_base_url", "must be an absolute http(s) URL"));
            }
            other => other.map(|url| url.trim_end_matches('/').to_owned()),
        };
        Ok(Settings {
            bind: self.bind,
            database_url: self.database_url,
            offset,
            payment_ttl: Duration::from_secs(self.payment_ttl_secs),
            limits: InitLimits {
                max_amount: Money::from_tenge(self.max_amount),
            },
            max_body_bytes: self.max_body_bytes,
            admin_token,
            public_base_url,
            allow_private_webhook_hosts: self.allow_private_webhook_hosts,
            log_format: self.log_format,
            health_check_interval: Duration::from_secs(self.health_check_interval_secs),
            terminals: crate::pool::TerminalTiming {
                connect_timeout: Duration::from_millis(self.terminal_connect_timeout_ms),
                request_timeout: Duration::from_millis(self.terminal_request_timeout_ms),
                register_timeout: Duration::from_secs(self.terminal_register_timeout_secs),
                refresh_before: secs(self.terminal_token_refresh_before_secs),
                offset,
            },
            timing: crate::operations::OperationTiming {
                qr_scan: byfly_terminal::QrScan {
                    interval: Duration::from_millis(self.qr_scan_interval_ms),
                    deadline: Duration::from_millis(self.qr_scan_deadline_ms),
                },
                poll_interval: secs(self.poll_interval_secs),
                actualize_interval: 10,
                unknown_review_after: secs(self.unknown_review_after_secs),
                operation_deadline: secs(self.operation_timeout_secs),
            },
            delivery: crate::webhooks::DeliverySettings {
                backoff: self.webhook_backoff_secs.iter().map(|d| secs(*d)).collect(),
                timeout: Duration::from_secs(self.webhook_timeout_secs),
                dns_timeout: Duration::from_millis(self.webhook_dns_timeout_ms),
                claim_lease: secs(self.webhook_claim_lease_secs),
                concurrency: self.webhook_concurrency,
                per_host: self.webhook_per_host_concurrency,
                log_retention: secs(self.webhook_log_retention_days.saturating_mul(86_400)),
                allow_private_hosts: self.allow_private_webhook_hosts,
                offset,
            },
            kaspi_rate: crate::http::KaspiRate {
                per_ip_per_minute: self.kaspi_rate_per_ip,
                per_payment_per_minute: self.kaspi_rate_per_payment,
                trust_forwarded_for: self.trust_forwarded_for,
            },
            demo_mode: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn defaults_are_valid() {
        let settings = Config::load(None, env(&[])).unwrap().validate().unwrap();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.payment_ttl, Duration::from_secs(3600));
        assert!(!settings.allow_private_webhook_hosts);
        assert!(settings.admin_token.is_none());
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("byfly-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("byfly.toml");
        std::fs::write(
            &file,
            "utc_offset = \"+05:00\"\nmax_amount = 5000\nbind = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        let settings = Config::load(
            Some(&file),
            env(&[
                ("BYFLY_MAX_AMOUNT", "7000"),
                ("BYFLY_ADMIN_TOKEN", "0123456789abcdef"),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(settings.offset.as_text(), "+05:00");
        assert_eq!(settings.limits.max_amount, Money::from_tenge(7000));
        assert_eq!(settings.bind.port(), 9000);
        assert_eq!(format!("{:?}", settings.admin_token), "Some([redacted])");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn errors_name_the_field() {
        let check = |pairs: &[(&str, &str)], field: &str| {
            let err = Config::load(None, env(pairs))
                .and_then(Config::validate)
                .unwrap_err();
            assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
        };
        check(&[("BYFLY_BIND", "nowhere")], "bind");
        check(&[("BYFLY_UTC_OFFSET", "UTC")], "utc_offset");
        check(&[("BYFLY_PAYMENT_TTL_SECS", "5")], "payment_ttl_secs");
        check(&[("BYFLY_MAX_AMOUNT", "0")], "max_amount");
        check(&[("BYFLY_MAX_AMOUNT", "10000000000000")], "max_amount");
        check(&[("BYFLY_ADMIN_TOKEN", "short")], "admin_token");
        check(&[("BYFLY_DATABASE_URL", "mysql://x")], "database_url");
        check(&[("BYFLY_LOG_FORMAT", "xml")], "log_format");
        check(
            &[("BYFLY_HEALTH_CHECK_INTERVAL_SECS", "0")],
            "health_check_interval_secs",
        );
        check(&[("BYFLY_PUBLIC_BASE_URL", "example.kz")], "public_base_url");
        // A lease shorter than an attempt could run out mid-delivery: refused (10 + 5 + 5 s here).
        check(
            &[("BYFLY_WEBHOOK_CLAIM_LEASE_SECS", "20")],
            "webhook_claim_lease_secs",
        );
        check(
            &[("BYFLY_WEBHOOK_PER_HOST_CONCURRENCY", "9")],
            "webhook_per_host_concurrency",
        );
        check(&[("BYFLY_WEBHOOK_DNS_TIMEOUT_MS", "0")], "webhook_dns_timeout_ms");
        check(
            &[("BYFLY_WEBHOOK_LOG_RETENTION_DAYS", "0")],
            "webhook_log_retention_days",
        );
        check(
            &[("BYFLY_TERMINAL_REQUEST_TIMEOUT_MS", "5")],
            "terminal_request_timeout_ms",
        );
        check(
            &[("BYFLY_TERMINAL_REGISTER_TIMEOUT_SECS", "0")],
            "terminal_register_timeout_secs",
        );
        let unknown = toml::from_str::<Config>("colour = \"blue\"").unwrap_err();
        assert!(unknown.to_string().contains("colour"));
    }
}
