//! Every setting as data: its key, its default and what it means — one table that the defaults,
//! the environment variables (`BYFLY_` and the key in capitals) and the commented example file
//! (`deploy/byfly.example.toml`, checked against this table by a test) all come from.

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its key in the TOML file; the environment variable is `BYFLY_` and the key in capitals.
    pub key: &'static str,
    /// Its default, written as TOML; `None`: unset unless given.
    pub default: Option<&'static str>,
    /// What it means, for the example file.
    pub doc: &'static str,
}

impl Setting {
    /// The environment variable that sets it.
    pub fn env_name(&self) -> String {
        format!("BYFLY_{}", self.key.to_ascii_uppercase())
    }

    /// `text` from the environment as a TOML value of the default's kind: a number, a flag, a
    /// comma-separated list of numbers; text otherwise (and for settings without a default).
    pub fn env_value(&self, text: &str) -> Result<toml::Value, String> {
        let text = text.trim();
        let kind = self
            .default
            .and_then(|default| toml::from_str::<toml::Table>(&format!("v = {default}")).ok())
            .and_then(|mut table| table.remove("v"));
        let number = |part: &str| {
            part.trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|err| format!("{part:?}: {err}"))
        };
        match kind {
            Some(toml::Value::Integer(_)) => number(text),
            Some(toml::Value::Boolean(_)) => text
                .parse::<bool>()
                .map(toml::Value::Boolean)
                .map_err(|err| format!("{text:?}: {err}")),
            Some(toml::Value::Array(_)) => text
                .split(',')
                .map(number)
                .collect::<Result<Vec<_>, _>>()
                .map(toml::Value::Array),
            _ => Ok(toml::Value::String(text.to_owned())),
        }
    }
}

/// Every setting of the server, in the order of the example file.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "bind",
        default: Some("\"127.0.0.1:8080\""),
        doc: "Address to listen on.",
    },
    Setting {
        key: "database_url",
        default: Some("\"sqlite://byfly.db\""),
        doc: "Database URL: `sqlite://path` (created on first start) or `postgres://user@host/db` (several processes may share it).",
    },
    Setting {
        key: "utc_offset",
        default: Some("\"+00:00\""),
        doc: "UTC offset of the API's date-times (Kazakhstan: `+05:00`).",
    },
    Setting {
        key: "payment_ttl_secs",
        default: Some("3600"),
        doc: "How long a payment stays payable, seconds.",
    },
    Setting {
        key: "max_amount",
        default: Some("100000000"),
        doc: "Largest accepted payment, whole tenge.",
    },
    Setting {
        key: "max_body_bytes",
        default: Some("65536"),
        doc: "Largest accepted request body, bytes.",
    },
    Setting {
        key: "header_read_timeout_secs",
        default: Some("10"),
        doc: "Seconds a client may take to send a request's headers, counted from when the server starts waiting for them; a connection that takes longer is closed, so neither a slow sender nor an idle keep-alive connection holds a connection slot for ever.",
    },
    Setting {
        key: "request_timeout_secs",
        default: Some("60"),
        doc: "Seconds a request may take before it is answered `503 request_timeout`. What a `/kaspi` or a refund started carries on (its outcome shows in the payment's status), so keep it above `terminal_request_timeout_ms` × 2 + `qr_scan_deadline_ms` for `/kaspi` to answer with its own outcome.",
    },
    Setting {
        key: "max_connections",
        default: Some("1024"),
        doc: "Connections served at once; further ones wait in the listen queue until one closes (keep it under the process's open-file limit, with room for the database and the terminals).",
    },
    Setting {
        key: "shutdown_grace_secs",
        default: Some("30"),
        doc: "On SIGTERM or Ctrl-C: seconds the requests in flight may take to finish (no new connection is accepted); the connections still open then are closed, and the workers finish their round.",
    },
    Setting {
        key: "admin_token",
        default: None,
        doc: "Bearer token of `/api/admin/*`, at least 16 characters; the admin API is closed while unset.",
    },
    Setting {
        key: "admin_session_idle_secs",
        default: Some("1800"),
        doc: "The operator's console (`/admin`): seconds a session lasts without a request before the operator logs in again.",
    },
    Setting {
        key: "admin_session_max_secs",
        default: Some("43200"),
        doc: "The operator's console: seconds a session lasts at most, however busy (a day's shift).",
    },
    Setting {
        key: "public_base_url",
        default: None,
        doc: "Public base URL for links given to customers (`payment_page_url`); none while unset.",
    },
    Setting {
        key: "allow_private_webhook_hosts",
        default: Some("false"),
        doc: "Accept webhook URLs that resolve to loopback, private or link-local addresses (the demo does: its receiver is on 127.0.0.1).",
    },
    Setting {
        key: "log_format",
        default: Some("\"text\""),
        doc: "Log lines as `text` or `json`.",
    },
    Setting {
        key: "metrics_bind",
        default: None,
        doc: "Serve `GET /metrics` (Prometheus) on this address only, e.g. `127.0.0.1:9464` for a scraper on the host; while unset it is served on `bind` beside the API.",
    },
    Setting {
        key: "metrics_token",
        default: None,
        doc: "Bearer token `GET /metrics` asks for (`Authorization: Bearer …`), at least 16 characters; open while unset.",
    },
    Setting {
        key: "health_check_interval_secs",
        default: Some("30"),
        doc: "Seconds between health checks (`deviceinfo`) of each terminal.",
    },
    Setting {
        key: "terminal_connect_timeout_ms",
        default: Some("3000"),
        doc: "Milliseconds to connect to a terminal before it counts as unreachable.",
    },
    Setting {
        key: "terminal_request_timeout_ms",
        default: Some("10000"),
        doc: "Milliseconds a terminal call may take. A `/v2/payment` that times out may still have started: its terminal is held, never swapped for another.",
    },
    Setting {
        key: "terminal_register_timeout_secs",
        default: Some("180"),
        doc: "Seconds an operator's registration waits for the cashier to accept on the terminal's screen.",
    },
    Setting {
        key: "terminal_token_refresh_before_secs",
        default: Some("3600"),
        doc: "The health checker refreshes a terminal's tokens when less than this many seconds remain (tokens live about 24 h; their `expirationDate` is read in `utc_offset`).",
    },
    Setting {
        key: "qr_scan_interval_ms",
        default: Some("300"),
        doc: "Milliseconds between camera frames while reading a QR.",
    },
    Setting {
        key: "qr_scan_deadline_ms",
        default: Some("10000"),
        doc: "Milliseconds to try reading the QR before giving up.",
    },
    Setting {
        key: "poll_interval_secs",
        default: Some("1"),
        doc: "Seconds between polls of an operation in flight.",
    },
    Setting {
        key: "operation_timeout_secs",
        default: Some("300"),
        doc: "Seconds a terminal operation may run (QR scan + confirmation).",
    },
    Setting {
        key: "unknown_review_after_secs",
        default: Some("180"),
        doc: "Seconds of `unknown` before an operation is flagged for review.",
    },
    Setting {
        key: "webhook_backoff_secs",
        default: Some("[60, 300, 1800, 7200, 21600, 43200, 86400]"),
        doc: "Webhook retry delays, seconds, each ±20 % jitter; the event is exhausted after the last (`BYFLY_WEBHOOK_BACKOFF_SECS` as a comma-separated list).",
    },
    Setting {
        key: "webhook_timeout_secs",
        default: Some("10"),
        doc: "Webhook request timeout, seconds.",
    },
    Setting {
        key: "webhook_concurrency",
        default: Some("8"),
        doc: "Webhook deliveries in flight at once.",
    },
    Setting {
        key: "webhook_per_host_concurrency",
        default: Some("2"),
        doc: "Webhook deliveries in flight at once to one receiving host, so that one slow receiver never holds up the others.",
    },
    Setting {
        key: "webhook_dns_timeout_ms",
        default: Some("5000"),
        doc: "Time a webhook host's DNS lookup may take, milliseconds.",
    },
    Setting {
        key: "webhook_claim_lease_secs",
        default: Some("90"),
        doc: "How long a claimed event belongs to its sender: longer than the timeout and the DNS lookup together (checked), so one event never goes out twice at once.",
    },
    Setting {
        key: "webhook_log_retention_days",
        default: Some("30"),
        doc: "Days the webhook attempt log is kept (the events themselves are kept).",
    },
    Setting {
        key: "kaspi_rate_per_ip",
        default: Some("20"),
        doc: "`/kaspi` calls one client address may make per minute (each can hold a physical terminal for minutes); 0 = no limit.",
    },
    Setting {
        key: "kaspi_rate_per_payment",
        default: Some("6"),
        doc: "`/kaspi` calls per payment per minute; 0 = no limit.",
    },
    Setting {
        key: "trust_forwarded_for",
        default: Some("false"),
        doc: "Take the client address for rate limits from the last `X-Forwarded-For` entry (set it only behind a proxy that appends it).",
    },
];

/// The defaults as a TOML table.
pub fn defaults() -> Result<toml::Table, toml::de::Error> {
    let text: String = SETTINGS
        .iter()
        .filter_map(|setting| Some(format!("{} = {}\n", setting.key, setting.default?)))
        .collect();
    toml::from_str(&text)
}

/// The commented example configuration: every setting with what it means, its environment
/// variable and its default (those without one commented out).
pub fn example_file() -> String {
    let mut text = String::from(
        "# byfly-server configuration: every setting at its default. Pass a file with --config;\n\
         # each setting can also come from its environment variable, which wins over the file.\n",
    );
    for setting in SETTINGS {
        text.push('\n');
        for line in wrap(setting.doc, 98) {
            text.push_str("# ");
            text.push_str(&line);
            text.push('\n');
        }
        text.push_str(&format!("# Environment: {}\n", setting.env_name()));
        match setting.default {
            Some(default) => text.push_str(&format!("{} = {default}\n", setting.key)),
            None => text.push_str(&format!("# {} = \"\"\n", setting.key)),
        }
    }
    text
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
