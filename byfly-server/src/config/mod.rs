//! Configuration: compiled-in defaults → an optional TOML file → `BYFLY_*` environment variables →
//! validation with errors that name the field. Every setting, its default, its variable and its
//! meaning are one row of [`SETTINGS`] (`table.rs`); the checked values are [`Settings`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use byfly_core::Money;
use byfly_core::ids::Secret;
use byfly_core::time::DisplayOffset;
use byfly_core::wire::{InitLimits, MAX_AMOUNT_CEILING};
use serde::Deserialize;

mod settings;
mod table;

pub use settings::{
    ConsoleSessions, DatabaseUrl, DeliverySettings, KaspiRate, LogFormat, OperationTiming, ServeLimits,
    Settings, TerminalTiming,
};
pub use table::{SETTINGS, Setting, defaults, example_file};

/// The server's settings as read: each field is a row of [`SETTINGS`] (its key, default,
/// environment variable and meaning); [`Config::validate`] checks them into [`Settings`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Database URL.
    pub database_url: DatabaseUrl,
    /// UTC offset of the API's date-times.
    pub utc_offset: String,
    /// How long a payment stays payable, seconds.
    pub payment_ttl_secs: u64,
    /// Largest accepted payment, whole tenge.
    pub max_amount: i64,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Seconds a client may take to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take before it is answered `503 request_timeout`.
    pub request_timeout_secs: u64,
    /// Connections served at once.
    pub max_connections: usize,
    /// Seconds requests in flight may take to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Bearer token of `/api/admin/*`.
    pub admin_token: Option<Secret<String>>,
    /// Seconds a console session lasts without a request.
    pub admin_session_idle_secs: u64,
    /// Seconds a console session lasts at most.
    pub admin_session_max_secs: u64,
    /// Public base URL for links given to customers (`payment_page_url`).
    pub public_base_url: Option<String>,
    /// Accept webhook URLs that resolve to loopback/private/link-local addresses.
    pub allow_private_webhook_hosts: bool,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Where `/metrics` is served instead of `bind`.
    pub metrics_bind: Option<SocketAddr>,
    /// Bearer token of `/metrics`.
    pub metrics_token: Option<Secret<String>>,
    /// Seconds between health checks (`deviceinfo`) of each terminal.
    pub health_check_interval_secs: u64,
    /// Milliseconds to connect to a terminal before it counts as unreachable.
    pub terminal_connect_timeout_ms: u64,
    /// Milliseconds a terminal call may take.
    pub terminal_request_timeout_ms: u64,
    /// Seconds an operator's registration waits for the cashier to accept on the terminal's screen.
    pub terminal_register_timeout_secs: u64,
    /// Seconds before its tokens expire at which the health checker refreshes a terminal's tokens.
    pub terminal_token_refresh_before_secs: u64,
    /// Milliseconds between camera frames while reading a QR.
    pub qr_scan_interval_ms: u64,
    /// Milliseconds to try reading the QR before giving up.
    pub qr_scan_deadline_ms: u64,
    /// Seconds between polls of an operation in flight.
    pub poll_interval_secs: u64,
    /// Seconds a terminal operation may run (QR scan + confirmation).
    pub operation_timeout_secs: u64,
    /// Seconds of `unknown` before an operation is flagged for review.
    pub unknown_review_after_secs: u64,
    /// Webhook retry delays, seconds.
    pub webhook_backoff_secs: Vec<u64>,
    /// Webhook request timeout, seconds.
    pub webhook_timeout_secs: u64,
    /// Webhook deliveries in flight at once.
    pub webhook_concurrency: usize,
    /// Webhook deliveries in flight at once to one receiving host, so that one slow receiver never holds up the others.
    pub webhook_per_host_concurrency: usize,
    /// Time a webhook host's DNS lookup may take, milliseconds.
    pub webhook_dns_timeout_ms: u64,
    /// How long a claimed event belongs to its sender.
    pub webhook_claim_lease_secs: u64,
    /// Days the webhook attempt log is kept (the events themselves are kept).
    pub webhook_log_retention_days: u64,
    /// `/kaspi` calls one client address may make per minute (each can hold a physical terminal for minutes).
    pub kaspi_rate_per_ip: u32,
    /// `/kaspi` calls per payment per minute.
    pub kaspi_rate_per_payment: u32,
    /// Take the client address for rate limits from the last `X-Forwarded-For` entry (set it only behind a proxy that appends it).
    pub trust_forwarded_for: bool,
}

impl Default for Config {
    /// Every setting at its default ([`SETTINGS`]).
    fn default() -> Self {
        defaults()
            .map_err(|err| err.to_string())
            .and_then(|table| Config::deserialize(table).map_err(|err| err.to_string()))
            .unwrap_or_else(|err| panic!("the compiled-in defaults of SETTINGS are invalid: {err}"))
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

/// A bearer token setting: unset, or at least 16 characters.
fn long_enough(
    field: &'static str,
    token: Option<Secret<String>>,
) -> Result<Option<Secret<String>>, ConfigError> {
    match token {
        Some(token) if token.expose().trim().len() < 16 => {
            Err(invalid(field, "must be at least 16 characters"))
        }
        other => Ok(other),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl Config {
    /// Defaults, then `file` if given, then the environment — one TOML table, each layer's keys
    /// over the one before — read as a `Config` (an unknown key in the file is refused).
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let file_error = |path: &Path, reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let defaults = defaults().map_err(|err| invalid("defaults", err.to_string()))?;
        let mut table = defaults.clone();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|err| file_error(path, err.to_string()))?;
            let given: toml::Table =
                toml::from_str(&text).map_err(|err| file_error(path, err.to_string()))?;
            table.extend(given);
        }
        for setting in SETTINGS {
            if let Some(text) = env(&setting.env_name()) {
                let value = setting
                    .env_value(&text)
                    .map_err(|reason| invalid(setting.key, reason))?;
                // Read alone over the defaults first, so a value of the wrong kind names its
                // variable's setting (not the file, not the environment as a whole).
                let mut alone = defaults.clone();
                alone.insert(setting.key.to_owned(), value.clone());
                Config::deserialize(alone)
                    .map_err(|err| invalid(setting.key, format!("{text:?}: {}", err.message())))?;
                table.insert(setting.key.to_owned(), value);
            }
        }
        Config::deserialize(table).map_err(|err| match file {
            Some(path) => file_error(path, err.to_string()),
            None => invalid("environment", err.to_string()),
        })
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
        if crate::store::Dialect::of_url(self.database_url.expose()).is_none() {
            return Err(invalid(
                "database_url",
                "must be sqlite://path or postgres://user@host/database",
            ));
        }
        if self.header_read_timeout_secs == 0 || self.header_read_timeout_secs > 300 {
            return Err(invalid("header_read_timeout_secs", "must be between 1 and 300"));
        }
        if self.request_timeout_secs == 0 || self.request_timeout_secs > 3600 {
            return Err(invalid("request_timeout_secs", "must be between 1 and 3600"));
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err(invalid("max_connections", "must be between 1 and 1 000 000"));
        }
        if self.shutdown_grace_secs > 3600 {
            return Err(invalid("shutdown_grace_secs", "must be at most 3600"));
        }
        if self.admin_session_idle_secs < 60 || self.admin_session_idle_secs > 86_400 {
            return Err(invalid("admin_session_idle_secs", "must be between 60 and 86400"));
        }
        if self.admin_session_max_secs < self.admin_session_idle_secs || self.admin_session_max_secs > 604_800
        {
            return Err(invalid(
                "admin_session_max_secs",
                "must be at least admin_session_idle_secs and at most 604800",
            ));
        }
        let admin_token = long_enough("admin_token", self.admin_token)?;
        let metrics_token = long_enough("metrics_token", self.metrics_token)?;
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
            serve: ServeLimits {
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                request_timeout: Duration::from_secs(self.request_timeout_secs),
                max_connections: self.max_connections,
                shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            },
            metrics_bind: self.metrics_bind,
            metrics_token,
            admin_token,
            console: ConsoleSessions {
                idle_secs: i64::try_from(self.admin_session_idle_secs).unwrap_or(i64::MAX),
                max_secs: i64::try_from(self.admin_session_max_secs).unwrap_or(i64::MAX),
            },
            public_base_url,
            allow_private_webhook_hosts: self.allow_private_webhook_hosts,
            log_format: self.log_format,
            health_check_interval: Duration::from_secs(self.health_check_interval_secs),
            terminals: TerminalTiming {
                connect_timeout: Duration::from_millis(self.terminal_connect_timeout_ms),
                request_timeout: Duration::from_millis(self.terminal_request_timeout_ms),
                register_timeout: Duration::from_secs(self.terminal_register_timeout_secs),
                refresh_before: secs(self.terminal_token_refresh_before_secs),
                offset,
            },
            timing: OperationTiming {
                qr_scan: byfly_terminal::QrScan {
                    interval: Duration::from_millis(self.qr_scan_interval_ms),
                    deadline: Duration::from_millis(self.qr_scan_deadline_ms),
                },
                poll_interval: secs(self.poll_interval_secs),
                actualize_interval: 10,
                unknown_review_after: secs(self.unknown_review_after_secs),
                operation_deadline: secs(self.operation_timeout_secs),
            },
            delivery: DeliverySettings {
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
            kaspi_rate: KaspiRate {
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
    fn the_example_file_is_the_table_and_the_table_is_every_field() {
        let committed = include_str!("../../../deploy/byfly.example.toml");
        assert_eq!(
            committed,
            example_file(),
            "deploy/byfly.example.toml is out of date: write example_file() to it"
        );
        // Every row is a field: the example with its commented keys set parses as a Config, and
        // every field has a row (an unknown key would be refused, a missing one reported).
        let all_set = committed.replace("# admin_token = \"\"", "admin_token = \"0123456789abcdef\"");
        let all_set = all_set.replace(
            "# public_base_url = \"\"",
            "public_base_url = \"https://pay.example.kz\"",
        );
        let config: Config = toml::from_str(&all_set).unwrap();
        assert_eq!(config.public_base_url.as_deref(), Some("https://pay.example.kz"));
        let fields = format!("{config:?}");
        for setting in SETTINGS {
            assert!(
                fields.contains(&format!("{}:", setting.key)),
                "no field for {}",
                setting.key
            );
        }
        assert_eq!(
            fields.matches(": ").count(),
            SETTINGS.len(),
            "a field without a row: {fields}"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let config = Config {
            admin_token: Some("0123456789abcdef".to_owned().into()),
            database_url: "postgres://byfly:hunter2@db.internal:5432/byfly".into(),
            ..Config::default()
        };
        let text = format!("{config:?} {:?}", config.clone().validate().unwrap());
        assert!(
            !text.contains("hunter2") && !text.contains("0123456789abcdef"),
            "{text}"
        );
        assert!(
            text.contains("postgres://byfly:[redacted]@db.internal:5432/byfly"),
            "{text}"
        );
        let in_query: DatabaseUrl =
            "postgres://db.internal/byfly?user=byfly&password=hunter2&sslmode=require".into();
        assert_eq!(
            format!("{in_query:?}"),
            "\"postgres://db.internal/byfly?user=byfly&password=[redacted]&sslmode=require\""
        );
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
            assert!(
                err.to_string().starts_with(&format!("setting `{field}`: ")),
                "{err}"
            );
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        };
        check(&[("BYFLY_BIND", "nowhere")], "bind");
        check(&[("BYFLY_KASPI_RATE_PER_IP", "-1")], "kaspi_rate_per_ip");
        check(&[("BYFLY_WEBHOOK_BACKOFF_SECS", "60,-5")], "webhook_backoff_secs");
        // With a file too, a bad variable is blamed on its setting, not on the file.
        let dir = std::env::temp_dir().join(format!("byfly-config-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("byfly.toml");
        std::fs::write(&file, "max_amount = 5000\n").unwrap();
        let err = Config::load(Some(&file), env(&[("BYFLY_LOG_FORMAT", "xml")])).unwrap_err();
        assert!(
            err.to_string().starts_with("setting `log_format`: \"xml\""),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
        check(&[("BYFLY_UTC_OFFSET", "UTC")], "utc_offset");
        check(&[("BYFLY_PAYMENT_TTL_SECS", "5")], "payment_ttl_secs");
        check(&[("BYFLY_MAX_AMOUNT", "0")], "max_amount");
        check(&[("BYFLY_MAX_AMOUNT", "10000000000000")], "max_amount");
        check(&[("BYFLY_ADMIN_TOKEN", "short")], "admin_token");
        check(&[("BYFLY_METRICS_TOKEN", "short")], "metrics_token");
        check(&[("BYFLY_METRICS_BIND", "everywhere")], "metrics_bind");
        check(
            &[("BYFLY_HEADER_READ_TIMEOUT_SECS", "0")],
            "header_read_timeout_secs",
        );
        check(&[("BYFLY_REQUEST_TIMEOUT_SECS", "0")], "request_timeout_secs");
        check(&[("BYFLY_MAX_CONNECTIONS", "0")], "max_connections");
        check(&[("BYFLY_SHUTDOWN_GRACE_SECS", "86400")], "shutdown_grace_secs");
        check(
            &[("BYFLY_ADMIN_SESSION_IDLE_SECS", "5")],
            "admin_session_idle_secs",
        );
        check(
            &[
                ("BYFLY_ADMIN_SESSION_IDLE_SECS", "3600"),
                ("BYFLY_ADMIN_SESSION_MAX_SECS", "600"),
            ],
            "admin_session_max_secs",
        );
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
