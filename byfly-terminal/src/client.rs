//! The terminal client: every call of the v2 protocol over HTTP(S) GET.
//!
//! A [`Terminal`] is one physical device. It holds the device's tokens; when the device answers
//! 403 (expired) or 401 (not recognised) it refreshes them once through `revoke` and repeats the
//! call once, and hands the new tokens back through [`Terminal::take_refreshed_tokens`] so the
//! caller can persist them. A refusal after that is [`TerminalError::NeedsRegistration`]: only an
//! operator, with a cashier at the terminal, can register again.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::TerminalError;
use crate::protocol::{DeviceInfo, Envelope, OperationStatus, ProcessStarted, Tokens, codes};

/// How to check the terminal's TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Verify against the system's roots and the URL's host (the default).
    #[default]
    Verify,
    /// Verify, but as if connecting to `server_name` (e.g. `pos.kaspipos.kz`): the terminals
    /// present a wildcard `*.kaspipos.kz` certificate, which an IP address never matches.
    VerifyAs {
        /// The name to verify the certificate against.
        server_name: String,
    },
    /// Accept any certificate (for terminals whose certificate cannot be verified at all).
    Insecure,
}

/// How one HTTP call to a terminal ended, for a [`CallObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The terminal answered with its envelope (a business error included).
    Answered,
    /// The terminal refused the tokens (401/403).
    Refused,
    /// No usable answer: connect, timeout, transport or an unreadable body.
    Failed,
}

impl CallOutcome {
    /// The outcome as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Answered => "answered",
            CallOutcome::Refused => "refused",
            CallOutcome::Failed => "failed",
        }
    }
}

/// Told of every HTTP call the client makes (a repeat after a refresh is a second call): the
/// server's metrics hang here, so the client stays free of any metrics library.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// `call` is the protocol's name (`payment`, `status`, `revoke`, ...).
    fn observe(&self, call: &'static str, duration: Duration, outcome: CallOutcome);
}

/// Everything needed to reach one terminal.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// `https://192.168.1.50:8080` or `http://127.0.0.1:PORT` (the simulator); without `/v2`.
    pub base_url: String,
    /// Certificate checking.
    pub tls: TlsMode,
    /// PEM certificates of the authorities to trust for this terminal *instead of* the system's
    /// roots (for terminals whose certificates come from a private CA). `None`: the system's roots.
    pub ca_certificates_pem: Option<String>,
    /// The integration name given to `register` and `revoke`.
    pub integration_name: String,
    /// TCP connect timeout (default 3 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout (default 10 s).
    pub request_timeout: Duration,
    /// How long `register` waits for the cashier to accept on the screen (default 180 s).
    pub register_timeout: Duration,
    /// Told of every call's duration and outcome (`None`: nobody listens).
    pub observer: Option<Arc<dyn CallObserver>>,
}

impl TerminalConfig {
    /// Defaults for a base URL: verify TLS, 3 s to connect, 10 s per request.
    pub fn new(base_url: impl Into<String>) -> TerminalConfig {
        TerminalConfig {
            base_url: base_url.into(),
            tls: TlsMode::Verify,
            ca_certificates_pem: None,
            integration_name: "ByFly Payment Center".to_owned(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            register_timeout: Duration::from_secs(180),
            observer: None,
        }
    }
}

/// A client of one terminal.
#[derive(Debug)]
pub struct Terminal {
    http: reqwest::Client,
    /// Base URL as requests are addressed (with the TLS server name as host under `VerifyAs`).
    base: reqwest::Url,
    integration_name: String,
    /// Current tokens; `None` until registered.
    tokens: Mutex<Option<Tokens>>,
    /// Tokens obtained by an automatic refresh and not yet collected by the caller.
    refreshed: Mutex<Option<Tokens>>,
    /// `terminalId` from `deviceinfo`, sent as a header on status calls.
    terminal_id: Mutex<Option<String>>,
    /// How long `register` waits for the cashier.
    register_timeout: Duration,
    /// Held while refreshing, so concurrent calls that were all refused refresh once (a refresh
    /// token works once: a second refresh with it would fail).
    refreshing: tokio::sync::Mutex<()>,
    /// Told of every call.
    observer: Option<Arc<dyn CallObserver>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding plain data; the data is fine.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Terminal {
    /// A client for `config`, with the device's stored tokens if it was registered before.
    pub fn new(config: &TerminalConfig, tokens: Option<Tokens>) -> Result<Terminal, TerminalError> {
        let mut base = reqwest::Url::parse(config.base_url.trim_end_matches('/'))
            .map_err(|err| TerminalError::Config(format!("base URL {:?}: {err}", config.base_url)))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(pem) = &config.ca_certificates_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|err| TerminalError::Config(format!("CA certificates: {err}")))?;
            if roots.is_empty() {
                return Err(TerminalError::Config(
                    "CA certificates: no certificate in the PEM text".to_owned(),
                ));
            }
            builder = builder.tls_certs_only(roots);
        }
        match &config.tls {
            TlsMode::Verify => {}
            TlsMode::Insecure => builder = builder.tls_danger_accept_invalid_certs(true),
            TlsMode::VerifyAs { server_name } => {
                // Address the request to the certificate's name and pin that name to the real IP,
                // so the name is verified while the connection goes where it must.
                let ip: IpAddr = base
                    .host_str()
                    .and_then(|host| host.trim_matches(['[', ']']).parse().ok())
                    .ok_or_else(|| {
                        TerminalError::Config("VerifyAs needs an IP address in the base URL".to_owned())
                    })?;
                let port = base.port_or_known_default().unwrap_or(8080);
                builder = builder.resolve(server_name, SocketAddr::new(ip, port));
                base.set_host(Some(server_name))
                    .map_err(|err| TerminalError::Config(format!("server name {server_name:?}: {err}")))?;
            }
        }
        let http = builder
            .build()
            .map_err(|err| TerminalError::Config(err.to_string()))?;
        Ok(Terminal {
            http,
            base,
            integration_name: config.integration_name.clone(),
            tokens: Mutex::new(tokens),
            refreshed: Mutex::new(None),
            terminal_id: Mutex::new(None),
            register_timeout: config.register_timeout,
            refreshing: tokio::sync::Mutex::new(()),
            observer: config.observer.clone(),
        })
    }

    /// The tokens a refresh produced since the last call of this method, to persist.
    pub fn take_refreshed_tokens(&self) -> Option<Tokens> {
        lock(&self.refreshed).take()
    }

    /// The current tokens.
    pub fn tokens(&self) -> Option<Tokens> {
        lock(&self.tokens).clone()
    }

    /// Replaces the tokens with ones obtained elsewhere — by another server process sharing the
    /// database, which refreshed them first (a refresh token works once, so this client's own
    /// refresh would fail).
    pub fn adopt_tokens(&self, tokens: Tokens) {
        *lock(&self.tokens) = Some(tokens);
    }

    /// Drops the tokens (the terminal refused them for good): calls fail with
    /// [`TerminalError::NeedsRegistration`] until new ones are adopted or registered.
    pub fn forget_tokens(&self) {
        *lock(&self.tokens) = None;
    }

    /// Sets the `terminalId` header value (normally learnt from [`Terminal::device_info`]).
    pub fn set_terminal_id(&self, terminal_id: Option<String>) {
        *lock(&self.terminal_id) = terminal_id;
    }

    fn url(&self, call: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/v2/{call}"));
        url
    }

    fn access_token(&self) -> Option<String> {
        lock(&self.tokens).as_ref().map(|t| t.access_token.clone())
    }

    /// One GET, with the envelope read whatever the HTTP status (the terminal sends business errors
    /// with 200 and with non-2xx alike). `with_token` sends the `accesstoken` header (and
    /// `terminalId`); `timeout` overrides the client's request timeout.
    async fn get_once(
        &self,
        call: &'static str,
        query: &[(&str, String)],
        with_token: bool,
        timeout: Option<Duration>,
    ) -> Result<Envelope, Failure> {
        let token = match with_token.then(|| self.access_token()) {
            Some(None) => {
                return Err(Failure::Final(TerminalError::NeedsRegistration(
                    "no tokens: the terminal was never registered".to_owned(),
                )));
            }
            Some(Some(token)) => Some(token),
            None => None,
        };
        let started = Instant::now();
        let result = self.get_unobserved(call, query, token, timeout).await;
        if let Some(observer) = &self.observer {
            let outcome = match &result {
                Ok(_) => CallOutcome::Answered,
                Err(Failure::Rejected(_)) => CallOutcome::Refused,
                Err(_) => CallOutcome::Failed,
            };
            observer.observe(call, started.elapsed(), outcome);
        }
        result
    }

    /// [`Terminal::get_once`] without telling the observer, with the access token to send.
    async fn get_unobserved(
        &self,
        call: &'static str,
        query: &[(&str, String)],
        token: Option<String>,
        timeout: Option<Duration>,
    ) -> Result<Envelope, Failure> {
        let mut request = self.http.get(self.url(call)).query(query);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(token) = token {
            request = request.header("accesstoken", token);
            if let Some(id) = lock(&self.terminal_id).clone() {
                request = request.header("terminalId", id);
            }
        }
        let response = request.send().await.map_err(classify_transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(classify_transport)?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Failure::Rejected(format!(
                "HTTP {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )));
        }
        Envelope::parse(&body).map_err(|err| {
            Failure::Final(TerminalError::Protocol {
                detail: format!("HTTP {}: {}", status.as_u16(), err.0),
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            })
        })
    }

    /// A call that needs the access token: on 401/403 refresh once and repeat once; refused again,
    /// the terminal needs registering.
    async fn call(&self, call: &'static str, query: &[(&str, String)]) -> Result<Value, TerminalError> {
        let used = self.access_token();
        let envelope = match self.get_once(call, query, true, None).await {
            Err(Failure::Rejected(_)) => {
                self.refresh_after_rejection(used.as_deref()).await?;
                match self.get_once(call, query, true, None).await {
                    Err(Failure::Rejected(text)) => {
                        return Err(TerminalError::NeedsRegistration(format!(
                            "tokens refused after a refresh: {text}"
                        )));
                    }
                    other => other.map_err(Failure::into_error)?,
                }
            }
            other => other.map_err(Failure::into_error)?,
        };
        envelope_data(envelope)
    }

    /// Refreshes after the terminal refused `used`, unless another call refreshed meanwhile.
    async fn refresh_after_rejection(&self, used: Option<&str>) -> Result<(), TerminalError> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.access_token().as_deref() != used {
            return Ok(());
        }
        self.refresh().await.map(|_| ())
    }

    /// `GET /v2/register?name=…`: blocks until a cashier accepts on the terminal's screen (at most
    /// the configured register timeout). `105`: the name is already allowed on this terminal and
    /// must be cleared there first; another refusal: the cashier declined.
    pub async fn register(&self) -> Result<Tokens, TerminalError> {
        let query = [("name", self.integration_name.clone())];
        let answer = self
            .get_once("register", &query, false, Some(self.register_timeout))
            .await;
        let envelope = match answer {
            Ok(envelope) => envelope,
            Err(Failure::Final(TerminalError::Timeout(text))) => {
                return Err(TerminalError::Timeout(format!(
                    "the cashier did not accept within {} s: {text}",
                    self.register_timeout.as_secs()
                )));
            }
            Err(failure) => return Err(failure.into_error()),
        };
        let data = match envelope {
            Envelope::Ok(data) => data,
            Envelope::Error {
                code: codes::ALREADY_REGISTERED,
                text,
            } => return Err(TerminalError::AlreadyRegistered(text)),
            Envelope::Error {
                code: codes::BAD_PARAMETER,
                text,
            } => return Err(TerminalError::BadParameter(text)),
            Envelope::Error { code, text } => {
                return Err(TerminalError::RegistrationDeclined(format!("{code}: {text}")));
            }
        };
        let tokens =
            Tokens::from_data(&data).ok_or_else(|| protocol("register answer without accessToken", &data))?;
        *lock(&self.tokens) = Some(tokens.clone());
        Ok(tokens)
    }

    /// `GET /v2/revoke?name=…&refreshToken=…` with the current `accesstoken` header: new tokens
    /// for the refresh token. The new tokens are also queued for [`Terminal::take_refreshed_tokens`].
    /// A refused refresh means the terminal needs registering again.
    pub async fn refresh(&self) -> Result<Tokens, TerminalError> {
        let refresh = lock(&self.tokens).as_ref().map(|t| t.refresh_token.clone());
        let Some(refresh) = refresh else {
            return Err(TerminalError::NeedsRegistration(
                "no tokens: the terminal was never registered".to_owned(),
            ));
        };
        let query = [("name", self.integration_name.clone()), ("refreshToken", refresh)];
        let envelope = match self.get_once("revoke", &query, true, None).await {
            Err(Failure::Rejected(text)) => {
                return Err(TerminalError::NeedsRegistration(format!(
                    "refresh refused: {text}"
                )));
            }
            other => other.map_err(Failure::into_error)?,
        };
        let data = match envelope_data(envelope) {
            Err(TerminalError::Other {
                code: codes::REVOKE_FAILED,
                text,
            }) => {
                return Err(TerminalError::NeedsRegistration(format!(
                    "refresh refused: {text}"
                )));
            }
            other => other?,
        };
        let tokens =
            Tokens::from_data(&data).ok_or_else(|| protocol("revoke answer without accessToken", &data))?;
        *lock(&self.tokens) = Some(tokens.clone());
        *lock(&self.refreshed) = Some(tokens.clone());
        Ok(tokens)
    }

    /// `GET /v2/deviceinfo`: the health check; remembers `terminalId` for status calls.
    pub async fn device_info(&self) -> Result<DeviceInfo, TerminalError> {
        let info = DeviceInfo::from_data(&self.call("deviceinfo", &[]).await?);
        if info.terminal_id.is_some() {
            self.set_terminal_id(info.terminal_id.clone());
        }
        Ok(info)
    }

    /// `GET /v2/payment?amount=…&owncheque=…`: starts a payment of whole tenge.
    pub async fn payment(
        &self,
        amount_tenge: i64,
        own_cheque: bool,
    ) -> Result<ProcessStarted, TerminalError> {
        let query = [
            ("amount", amount_tenge.to_string()),
            ("owncheque", own_cheque.to_string()),
        ];
        let data = self.call("payment", &query).await?;
        ProcessStarted::from_data(&data).ok_or_else(|| protocol("payment answer without processId", &data))
    }

    /// `GET /v2/status?processId=…`.
    pub async fn status(&self, process_id: &str) -> Result<OperationStatus, TerminalError> {
        let data = self
            .call("status", &[("processId", process_id.to_owned())])
            .await?;
        OperationStatus::from_data(data).map_err(|err| TerminalError::Protocol {
            detail: err.to_string(),
            body: String::new(),
        })
    }

    /// `GET /v2/actualize?processId=…`: asks again about a process left `unknown`.
    pub async fn actualize(&self, process_id: &str) -> Result<OperationStatus, TerminalError> {
        let data = self
            .call("actualize", &[("processId", process_id.to_owned())])
            .await?;
        OperationStatus::from_data(data).map_err(|err| TerminalError::Protocol {
            detail: err.to_string(),
            body: String::new(),
        })
    }

    /// `GET /v2/refund?method=…&amount=…&transactionId=…&owncheque=…`: refunds (part of) a
    /// payment, naming the payment's `chequeInfo.method` and `transactionId`.
    pub async fn refund(
        &self,
        method: &str,
        amount_tenge: i64,
        transaction_id: &str,
        own_cheque: bool,
    ) -> Result<ProcessStarted, TerminalError> {
        let query = [
            ("method", method.to_owned()),
            ("amount", amount_tenge.to_string()),
            ("transactionId", transaction_id.to_owned()),
            ("owncheque", own_cheque.to_string()),
        ];
        let data = self.call("refund", &query).await?;
        ProcessStarted::from_data(&data).ok_or_else(|| protocol("refund answer without processId", &data))
    }

    /// `GET /v2/cancel?processId=…`: asks the terminal to end a process early. The protocol does
    /// not promise this call exists; never treat its success as the process being over.
    pub async fn cancel(&self, process_id: &str) -> Result<(), TerminalError> {
        self.call("cancel", &[("processId", process_id.to_owned())])
            .await
            .map(|_| ())
    }
}

/// An attempt's failure: a token refusal (401/403) may be retried after a refresh, the rest are final.
enum Failure {
    Rejected(String),
    Final(TerminalError),
}

impl Failure {
    fn into_error(self) -> TerminalError {
        match self {
            Failure::Rejected(text) => TerminalError::NeedsRegistration(text),
            Failure::Final(err) => err,
        }
    }
}

/// Sorts a transport failure by what it says about the terminal: a connection never made (the
/// request did not reach it) versus one that timed out or broke after sending (it may have acted).
/// The URL, which holds the refresh token on `revoke`, never enters the text.
fn classify_transport(err: reqwest::Error) -> Failure {
    let err = err.without_url();
    let text = error_chain(&err);
    Failure::Final(if err.is_connect() {
        TerminalError::Unreachable(text)
    } else if err.is_timeout() {
        TerminalError::Timeout(text)
    } else if err.is_builder() {
        TerminalError::Config(text)
    } else {
        TerminalError::Interrupted(text)
    })
}

/// The error with its causes, which is where reqwest keeps the useful part (the server's webhook
/// client describes its errors with it too).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn protocol(detail: &str, data: &Value) -> TerminalError {
    TerminalError::Protocol {
        detail: detail.to_owned(),
        body: data.to_string(),
    }
}

/// The data of a success, or the typed error of a non-zero `statusCode`.
fn envelope_data(envelope: Envelope) -> Result<Value, TerminalError> {
    match envelope {
        Envelope::Ok(data) => Ok(data),
        Envelope::Error { code, text } => Err(match code {
            codes::BUSY => TerminalError::Busy(text),
            codes::PROCESS_NOT_FOUND => TerminalError::ProcessNotFound(text),
            codes::CANNOT_ACTUALIZE => TerminalError::CannotActualize(text),
            codes::BAD_PARAMETER => TerminalError::BadParameter(text),
            code => TerminalError::Other { code, text },
        }),
    }
}
