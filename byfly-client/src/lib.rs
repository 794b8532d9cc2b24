//! The async SDK of the ByFly Payment Center API: one typed method per endpoint, typed errors,
//! safe retries, [`Client::wait_for_payment`], and webhook verification for receivers.
//!
//! Requests and answers are byfly-core's wire types, the very types the server serializes, so
//! the SDK and the server cannot drift apart.
//!
//! ```no_run
//! use byfly_client::{Client, WaitOptions};
//! use byfly_core::wire::InitPaymentRequest;
//! use byfly_core::Money;
//!
//! # async fn run() -> Result<(), byfly_client::Error> {
//! let client = Client::builder("https://pay.example.kz/api")
//!     .api_token("…64 characters…")
//!     .build()?;
//! let payment = client
//!     .create_payment(
//!         &InitPaymentRequest { amount: Money::from_tenge(50_000), ..Default::default() },
//!         None, // a fresh idempotency key: the SDK's own retries never create two payments
//!     )
//!     .await?;
//! let started = client.start_kaspi(&payment.transaction_id, Some("kaspi_gold")).await?;
//! println!("pay at {}", started.payment_url);
//! let settled = client.wait_for_payment(&payment.transaction_id, &WaitOptions::default()).await?;
//! println!("{}: {} of {} received", settled.status, settled.paid_amount, settled.amount);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`Client`] and [`ClientBuilder`]: the public and merchant endpoints; [`Admin`] for `/api/admin`.
//! - [`Error`]: the server's refusals ([`ApiFailure`], matchable by [`byfly_core::ErrorCode`]),
//!   transport failures, timeouts, undecodable answers.
//! - [`RetryPolicy`], [`IdempotencyKey`]: which calls are retried, and how a retried create stays one payment.
//! - [`WaitOptions`]: how [`Client::wait_for_payment`] polls.
//! - [`webhook`]: verifying and parsing the webhooks the server sends (with an axum extractor
//!   behind the `axum` feature).

#![warn(missing_docs)]

mod admin;
mod error;
pub mod webhook;

use std::time::Duration;

use byfly_core::method::PaymentMethod;
use byfly_core::wire::{
    CancelResponse, Envelope, HealthResponse, InitPaymentRequest, InitPaymentResponse, KaspiRequest,
    KaspiResponse, MethodQuoteView, PaymentList, PaymentListQuery, PaymentStatusView, PaymentSummary,
    PaymentView, RefundRequest, RefundView,
};
use byfly_core::{ErrorCode, Money, PaymentStatus, Secret, TransactionId};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use admin::Admin;
pub use error::{ApiFailure, Error};

/// The user agent the SDK sends unless told otherwise.
pub const USER_AGENT: &str = concat!("byfly-client/", env!("CARGO_PKG_VERSION"));

/// How calls that are safe to repeat are retried when the server cannot be reached, does not
/// answer in time, or answers 502/503/504.
///
/// Safe to repeat: every `GET`, and `create_payment` (which always carries an idempotency key).
/// Calls that change state without such a key (`/kaspi`, cancel, refund, admin changes) are sent
/// once: a repeat could act twice, so their failure is returned for the caller to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Wait before the first retry; it doubles after each one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0-based): exponential, capped, with ±20 % jitter so
    /// that many clients failing together do not come back together.
    fn backoff(&self, retry: u32) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff);
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        exponential.mul_f64(jitter)
    }
}

/// An `Idempotency-Key` for `create_payment`: the server answers a repeat of the same key and
/// body with the first answer and creates nothing (kept 24 h per source).
///
/// Keep the key with your order and reuse it when you retry after a crash or a lost answer;
/// [`IdempotencyKey::generate`] makes a fresh one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Accepts 1 to 255 visible ASCII characters (an HTTP header value), e.g. your order number.
    ///
    /// ```
    /// use byfly_client::IdempotencyKey;
    /// assert!(IdempotencyKey::new("order-12345").is_ok());
    /// assert!(IdempotencyKey::new("").is_err());
    /// assert!(IdempotencyKey::new("заказ").is_err());
    /// ```
    pub fn new(key: impl Into<String>) -> Result<IdempotencyKey, Error> {
        let key = key.into();
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(
                "an idempotency key is 1 to 255 visible ASCII characters".into(),
            ));
        }
        Ok(IdempotencyKey(key))
    }

    /// A fresh random key (128 bits from the operating system's generator).
    pub fn generate() -> IdempotencyKey {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        IdempotencyKey(format!("byfly-{}", hex::encode(bytes)))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which statuses end [`Client::wait_for_payment`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WaitUntil {
    /// The customer's attempt is over: anything but `pending` and `processing` — `paid`,
    /// `partially_paid` (a top-up is needed), `failed` (they may try again), or a final status.
    /// The guide's `waitForPayment` stops on the same ones.
    #[default]
    Settled,
    /// Only a final status: `paid`, `cancelled`, `expired`, `refunded`.
    Final,
    /// Any of these (a final status also ends the wait, since nothing follows it but a refund).
    AnyOf(Vec<PaymentStatus>),
}

impl WaitUntil {
    fn reached(&self, status: PaymentStatus) -> bool {
        match self {
            WaitUntil::Settled => !matches!(status, PaymentStatus::Pending | PaymentStatus::Processing),
            WaitUntil::Final => status.is_final(),
            WaitUntil::AnyOf(wanted) => wanted.contains(&status) || status.is_final(),
        }
    }
}

/// How [`Client::wait_for_payment`] polls.
///
/// ```
/// use std::time::Duration;
/// use byfly_client::{WaitOptions, WaitUntil};
/// use byfly_core::PaymentStatus;
///
/// // Up to 5 minutes for `paid` (a final status such as `cancelled` also ends the wait).
/// let options = WaitOptions {
///     until: WaitUntil::AnyOf(vec![PaymentStatus::Paid]),
///     timeout: Duration::from_secs(300),
///     ..WaitOptions::default()
/// };
/// assert_eq!(options.initial_interval, Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOptions {
    /// When to stop.
    pub until: WaitUntil,
    /// Give up after this long (default 10 minutes, the life of a terminal operation and more).
    pub timeout: Duration,
    /// First pause between two reads (default 500 ms); it grows by half each time…
    pub initial_interval: Duration,
    /// …up to this (default 3 s), so a long wait costs the server little.
    pub max_interval: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            until: WaitUntil::Settled,
            timeout: Duration::from_secs(600),
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(3),
        }
    }
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_token: Option<Secret<String>>,
    admin_token: Option<Secret<String>>,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    retry: RetryPolicy,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// Sends through the caller's own HTTP client (its pool, proxy, TLS roots, timeouts, user
    /// agent and default headers), instead of one this builder makes; [`ClientBuilder::timeout`],
    /// [`ClientBuilder::connect_timeout`] and [`ClientBuilder::user_agent`] then do nothing.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The merchant's `X-API-Token` (needed for init, cancel, refund and the payment list).
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.api_token = Some(Secret::new(token.into()));
        self
    }

    /// The operator's admin token (needed for [`Client::admin`]).
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(Secret::new(token.into()));
        self
    }

    /// The longest a whole call may take (default 60 s: `/kaspi` waits for the camera to read the
    /// terminal's QR, which can take several seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest connecting may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header (default `byfly-client/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// How safe calls are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Checks the settings and builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let base_url = api_root(&self.base_url)?;
        for token in [&self.api_token, &self.admin_token].into_iter().flatten() {
            if reqwest::header::HeaderValue::from_str(token.expose()).is_err() {
                return Err(Error::Config("a token must be visible ASCII".into()));
            }
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.connect_timeout)
                .user_agent(self.user_agent)
                .build()
                .map_err(|err| Error::Config(format!("HTTP client: {err}")))?,
        };
        Ok(Client {
            http,
            base_url,
            api_token: self.api_token,
            admin_token: self.admin_token,
            retry: self.retry,
        })
    }
}

/// The API root from what the user gave: `https://host` and `https://host/api/` both mean
/// `https://host/api` (the guide's base path); a root behind a prefix (`https://host/pay/api`) is kept.
fn api_root(given: &str) -> Result<String, Error> {
    let url = reqwest::Url::parse(given.trim())
        .map_err(|err| Error::Config(format!("base URL {given:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Config(format!("base URL {given:?} is not an http(s) URL")));
    }
    let root = url.as_str().trim_end_matches('/');
    Ok(if root.ends_with("/api") {
        root.to_owned()
    } else {
        format!("{root}/api")
    })
}

/// Who a call authenticates as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Public,
    Source,
    Admin,
}

/// One HTTP call, described once so that it can be sent again.
#[derive(Debug)]
struct Call {
    method: Method,
    path: String,
    auth: Auth,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    idempotency_key: Option<IdempotencyKey>,
    /// Whether repeating it cannot act twice.
    repeatable: bool,
}

impl Call {
    fn get(path: String, auth: Auth) -> Call {
        Call {
            method: Method::GET,
            path,
            auth,
            query: Vec::new(),
            body: None,
            idempotency_key: None,
            repeatable: true,
        }
    }

    fn post(path: String, auth: Auth, body: &impl Serialize) -> Result<Call, Error> {
        Call::with_body(Method::POST, path, auth, body)
    }

    fn with_body(method: Method, path: String, auth: Auth, body: &impl Serialize) -> Result<Call, Error> {
        let body = serde_json::to_vec(body).map_err(|err| Error::Config(format!("request body: {err}")))?;
        Ok(Call {
            method,
            path,
            auth,
            query: Vec::new(),
            body: Some(body),
            idempotency_key: None,
            repeatable: false,
        })
    }
}

/// The API client. Cheap to clone (connections are pooled and shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `https://host/api`, without a trailing slash.
    base_url: String,
    api_token: Option<Secret<String>>,
    admin_token: Option<Secret<String>>,
    retry: RetryPolicy,
}

impl Client {
    /// Starts building a client of the server at `base_url` (`https://host` or `https://host/api`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use byfly_client::{Client, RetryPolicy};
    ///
    /// let client = Client::builder("https://pay.example.kz")
    ///     .api_token("the source's 64-character token")
    ///     .timeout(Duration::from_secs(30))
    ///     .retry(RetryPolicy::none())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(client.base_url(), "https://pay.example.kz/api");
    /// ```
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            api_token: None,
            admin_token: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            user_agent: USER_AGENT.to_owned(),
            retry: RetryPolicy::default(),
            http: None,
        }
    }

    /// The API root calls go to (`https://host/api`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /api/payment/init`: creates a payment (`201`).
    ///
    /// The request always carries an `Idempotency-Key`: `key`, or a fresh one when `None`. So the
    /// SDK's own retries after a lost connection never create a second payment; pass your own key
    /// (kept with your order) to make retries after a crash of your program safe too.
    pub async fn create_payment(
        &self,
        request: &InitPaymentRequest,
        key: Option<IdempotencyKey>,
    ) -> Result<InitPaymentResponse, Error> {
        let mut call = Call::post("/payment/init".into(), Auth::Source, request)?;
        call.idempotency_key = Some(key.unwrap_or_else(IdempotencyKey::generate));
        call.repeatable = true;
        self.send(call).await
    }

    /// `GET /api/payment/{id}`: the public view.
    pub async fn payment(&self, id: &TransactionId) -> Result<PaymentView, Error> {
        self.send(Call::get(format!("/payment/{id}"), Auth::Public)).await
    }

    /// `GET /api/payment/{id}/status` (the server asks the terminal first while `processing`).
    pub async fn status(&self, id: &TransactionId) -> Result<PaymentStatusView, Error> {
        self.send(Call::get(format!("/payment/{id}/status"), Auth::Public))
            .await
    }

    /// `POST /api/payment/{id}/kaspi`: starts (or tops up) the payment on a terminal with `method`
    /// (a method code; `None` means `kaspi_gold`). The answer carries `payment_url` and `qr_code`.
    pub async fn start_kaspi(
        &self,
        id: &TransactionId,
        method: Option<&str>,
    ) -> Result<KaspiResponse, Error> {
        let body = KaspiRequest {
            payment_method: method.map(str::to_owned),
        };
        self.send(Call::post(format!("/payment/{id}/kaspi"), Auth::Public, &body)?)
            .await
    }

    /// `GET /api/payment-methods/active`.
    pub async fn active_methods(&self) -> Result<Vec<PaymentMethod>, Error> {
        self.send(Call::get("/payment-methods/active".into(), Auth::Public))
            .await
    }

    /// `POST /api/payment/{id}/cancel`.
    pub async fn cancel(&self, id: &TransactionId) -> Result<CancelResponse, Error> {
        self.send(Call::post(
            format!("/payment/{id}/cancel"),
            Auth::Source,
            &serde_json::json!({}),
        )?)
        .await
    }

    /// `POST /api/payment/{id}/refund`: refunds `amount`, or everything received and not yet
    /// refunded when `None`. The customer confirms it in the Kaspi app (`refund_url`).
    pub async fn refund(&self, id: &TransactionId, amount: Option<Money>) -> Result<RefundView, Error> {
        let body = RefundRequest { amount };
        self.send(Call::post(format!("/payment/{id}/refund"), Auth::Source, &body)?)
            .await
    }

    /// `GET /api/payment/{id}/refund/{refund_id}`.
    pub async fn refund_status(&self, id: &TransactionId, refund_id: &str) -> Result<RefundView, Error> {
        let path = format!("/payment/{id}/refund/{}", path_segment(refund_id));
        self.send(Call::get(path, Auth::Source)).await
    }

    /// `GET /api/payments`: the source's payments, newest first, a page at a time.
    pub async fn payments(&self, query: &PaymentListQuery) -> Result<PaymentList, Error> {
        let mut call = Call::get("/payments".into(), Auth::Source);
        call.query = list_query(query);
        self.send(call).await
    }

    /// Every payment of the source matching `query` (its `cursor` is where to start), newest
    /// first, as a stream that asks for the next page when the last one is used up; a failed page
    /// ends the stream with its error.
    ///
    /// ```no_run
    /// # async fn count(client: &byfly_client::Client) -> Result<usize, byfly_client::Error> {
    /// use byfly_core::wire::PaymentListQuery;
    /// use futures_util::{StreamExt, TryStreamExt};
    /// let paid: Vec<_> = client
    ///     .payments_stream(PaymentListQuery { status: Some(byfly_core::PaymentStatus::Paid), ..Default::default() })
    ///     .try_collect()
    ///     .await?;
    /// # Ok(paid.len()) }
    /// ```
    pub fn payments_stream(
        &self,
        query: PaymentListQuery,
    ) -> impl futures_util::Stream<Item = Result<PaymentSummary, Error>> + '_ {
        // (the page being handed out, the query of the next page; None: no next page)
        let start = (std::collections::VecDeque::new(), Some(query));
        futures_util::stream::unfold(start, move |(mut page, mut next)| async move {
            loop {
                if let Some(item) = page.pop_front() {
                    return Some((Ok(item), (page, next)));
                }
                let query = next.take()?;
                match self.payments(&query).await {
                    Ok(list) => {
                        next = list.next_cursor.map(|cursor| PaymentListQuery {
                            cursor: Some(cursor),
                            ..query.clone()
                        });
                        page.extend(list.items);
                    }
                    Err(err) => return Some((Err(err), (page, None))),
                }
            }
        })
    }

    /// `GET /api/health`. A degraded server answers 503 with the same body; both are returned as
    /// the body, so a monitor sees what is wrong.
    pub async fn health(&self) -> Result<HealthResponse, Error> {
        let mut call = Call::get("/health".into(), Auth::Public);
        call.repeatable = false; // a 503 here is an answer, not a reason to retry
        match self.send_once(&call).await {
            Err(Error::Decode {
                status: 503, body, ..
            }) => decode_envelope(503, body.as_bytes()),
            answer => answer,
        }
    }

    /// `GET /api/payment/{id}/quotes`: what each active method would charge if chosen now (the
    /// figures `/kaspi` answers; on what remains after a partial payment).
    pub async fn quotes(&self, id: &TransactionId) -> Result<Vec<MethodQuoteView>, Error> {
        self.send(Call::get(format!("/payment/{id}/quotes"), Auth::Public))
            .await
    }

    /// `GET /api/openapi.json`: the OpenAPI 3.1 document of the API (not in the envelope).
    pub async fn openapi_document(&self) -> Result<serde_json::Value, Error> {
        let answer = self
            .exchange(&Call::get("/openapi.json".into(), Auth::Public))
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(refusal(&answer));
        }
        serde_json::from_slice(&answer.body).map_err(|err| Error::Decode {
            status: answer.status,
            reason: err.to_string(),
            body: String::from_utf8_lossy(&answer.body).into_owned(),
        })
    }

    /// `POST /api/dev/simulate/{id}` (demo mode only): makes the simulated customer act on the
    /// terminal running the payment, e.g. `{"product": "Loan"}` or `{"outcome": "fail"}`.
    pub async fn demo_simulate(
        &self,
        id: &TransactionId,
        action: &serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        self.send(Call::post(format!("/dev/simulate/{id}"), Auth::Public, action)?)
            .await
    }

    /// Reads `/status` until `options.until` is reached and returns that status; after
    /// `options.timeout`, [`Error::WaitDeadline`] carries the last status read. Pauses grow from
    /// `initial_interval` to `max_interval`. Transient failures are waited out until the deadline;
    /// a refusal (unknown id) ends the wait at once.
    pub async fn wait_for_payment(
        &self,
        id: &TransactionId,
        options: &WaitOptions,
    ) -> Result<PaymentStatusView, Error> {
        self.wait_for_payment_with(id, options, |_| {}).await
    }

    /// [`Client::wait_for_payment`], calling `on_status` with every status read (for progress
    /// displays).
    pub async fn wait_for_payment_with(
        &self,
        id: &TransactionId,
        options: &WaitOptions,
        mut on_status: impl FnMut(&PaymentStatusView),
    ) -> Result<PaymentStatusView, Error> {
        let deadline = tokio::time::Instant::now() + options.timeout;
        let mut interval = options.initial_interval;
        let mut last: Result<PaymentStatusView, Error>;
        loop {
            last = self.status(id).await;
            match &last {
                Ok(view) => {
                    on_status(view);
                    if options.until.reached(view.status) {
                        return last;
                    }
                }
                Err(err) if err.is_transient() => {}
                Err(_) => return last,
            }
            if tokio::time::Instant::now() + interval > deadline {
                return last.and_then(|view| Err(Error::WaitDeadline { last: Box::new(view) }));
            }
            tokio::time::sleep(interval).await;
            interval = interval.mul_f64(1.5).min(options.max_interval);
        }
    }

    /// The operator's API (`/api/admin/*`), with the admin token.
    pub fn admin(&self) -> Admin<'_> {
        Admin::new(self)
    }

    /// Sends `call`, retrying it as [`RetryPolicy`] allows when it is repeatable.
    async fn send<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let mut retry = 0;
        loop {
            match self.send_once(&call).await {
                Err(err) if call.repeatable && err.is_transient() && retry < self.retry.max_retries => {
                    tokio::time::sleep(self.retry.backoff(retry)).await;
                    retry += 1;
                }
                answer => return answer,
            }
        }
    }

    async fn send_once<T: DeserializeOwned>(&self, call: &Call) -> Result<T, Error> {
        let answer = self.exchange(call).await?;
        if (200..300).contains(&answer.status) {
            decode_envelope(answer.status, &answer.body)
        } else {
            Err(refusal(&answer))
        }
    }

    /// Sends `call` once: the answer whatever it is, in a span naming the call (never a token).
    async fn exchange(&self, call: &Call) -> Result<Answer, Error> {
        use tracing::Instrument;
        let span = tracing::debug_span!("byfly_call", method = %call.method, path = %call.path);
        async {
            let answer = self.exchange_unobserved(call).await;
            match &answer {
                Ok(answer) => tracing::debug!(
                    status = answer.status,
                    request_id = answer.request_id.as_deref().unwrap_or("-"),
                    "answered"
                ),
                Err(err) => tracing::debug!(%err, "no answer"),
            }
            answer
        }
        .instrument(span)
        .await
    }

    async fn exchange_unobserved(&self, call: &Call) -> Result<Answer, Error> {
        let mut request = self
            .http
            .request(call.method.clone(), format!("{}{}", self.base_url, call.path));
        request = match call.auth {
            Auth::Public => request,
            Auth::Source => {
                let token = self
                    .api_token
                    .as_ref()
                    .ok_or(Error::MissingCredential("an API token"))?;
                request.header("X-API-Token", token.expose())
            }
            Auth::Admin => {
                let token = self
                    .admin_token
                    .as_ref()
                    .ok_or(Error::MissingCredential("an admin token"))?;
                request.bearer_auth(token.expose())
            }
        };
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(key) = &call.idempotency_key {
            request = request.header("Idempotency-Key", key.as_str());
        }
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header(reqwest::header::HeaderName::from_static("x-request-id"));
        let retry_after = header(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(transport_error)?;
        Ok(Answer {
            status,
            request_id,
            retry_after,
            body: body.to_vec(),
        })
    }
}

/// One answer as received.
struct Answer {
    status: u16,
    /// `X-Request-Id`.
    request_id: Option<String>,
    /// `Retry-After` in delta-seconds (an HTTP-date is not read: the server never sends one).
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

fn transport_error(err: reqwest::Error) -> Error {
    if err.is_timeout() {
        Error::Timeout(err)
    } else {
        Error::Transport(err)
    }
}

fn decode_envelope<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice::<Envelope<T>>(body)
        .map(|envelope| envelope.data)
        .map_err(|err| Error::Decode {
            status,
            reason: err.to_string(),
            body: String::from_utf8_lossy(body).into_owned(),
        })
}

/// The error envelope of a non-2xx answer, or [`Error::Decode`] when the body is not one (a proxy's
/// HTML page, say).
fn refusal(answer: &Answer) -> Error {
    match serde_json::from_slice::<byfly_core::error::ErrorEnvelope>(&answer.body) {
        Ok(envelope) if !envelope.success => Error::Api(ApiFailure {
            status: answer.status,
            code: ErrorCode::parse(&envelope.code),
            code_text: envelope.code,
            message: envelope.message,
            request_id: answer.request_id.clone(),
            retry_after: answer
                .retry_after
                .or(envelope.retry_after.map(Duration::from_secs)),
        }),
        _ => Error::Decode {
            status: answer.status,
            reason: "not an error envelope".into(),
            body: String::from_utf8_lossy(&answer.body).into_owned(),
        },
    }
}

/// A path segment from user input, percent-encoded so it cannot change the path.
fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `status`, `limit`, `cursor` as query pairs.
fn list_query(query: &PaymentListQuery) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(status) = query.status {
        pairs.push(("status", status.as_str().to_owned()));
    }
    if let Some(limit) = query.limit {
        pairs.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &query.cursor {
        pairs.push(("cursor", cursor.clone()));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_root_is_found_from_either_form() {
        for given in [
            "http://h:8080",
            "http://h:8080/",
            "http://h:8080/api",
            "http://h:8080/api/",
        ] {
            assert_eq!(api_root(given).unwrap(), "http://h:8080/api", "{given}");
        }
        assert_eq!(api_root("https://h/pay/api").unwrap(), "https://h/pay/api");
        assert!(matches!(api_root("ftp://h"), Err(Error::Config(_))));
        assert!(matches!(api_root("not a url"), Err(Error::Config(_))));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for (retry, base) in [(0u32, 100u64), (1, 200), (2, 400), (3, 800), (4, 1000), (9, 1000)] {
            let wait = policy.backoff(retry).as_millis() as u64;
            assert!(
                (base * 8 / 10..=base * 12 / 10).contains(&wait),
                "retry {retry}: {wait} ms"
            );
        }
    }

    /// An answer of `status` with `body` and no headers, read as a refusal.
    fn refused(status: u16, body: &[u8]) -> Error {
        refusal(&Answer {
            status,
            request_id: None,
            retry_after: None,
            body: body.to_vec(),
        })
    }

    #[test]
    fn refusals_keep_the_envelope_and_anything_else_its_body() {
        let busy = refused(
            400,
            r#"{"success":false,"message":"Все терминалы заняты, попробуйте позже","error_code":400,"code":"terminals_busy"}"#
                .as_bytes(),
        );
        assert_eq!(busy.code(), Some(ErrorCode::TerminalsBusy));
        assert!(!busy.is_transient());
        let newer = refused(
            400,
            br#"{"success":false,"message":"m","error_code":400,"code":"brand_new"}"#,
        );
        assert!(matches!(&newer, Error::Api(f) if f.code.is_none() && f.code_text == "brand_new"));
        let proxy = refused(502, b"<html>Bad Gateway</html>");
        assert!(matches!(&proxy, Error::Decode { status: 502, body, .. } if body.contains("Bad Gateway")));
        let unavailable = refused(
            503,
            br#"{"success":false,"message":"m","error_code":503,"code":"service_unavailable","retry_after":30}"#,
        );
        assert!(unavailable.is_transient());
        // Without a Retry-After header, the envelope's `retry_after` says when.
        assert_eq!(unavailable.retry_after(), Some(Duration::from_secs(30)));
        let headed = refusal(&Answer {
            status: 429,
            request_id: Some("5f0c2a9e1b7d4c38".into()),
            retry_after: Some(Duration::from_secs(7)),
            body:
                br#"{"success":false,"message":"m","error_code":429,"code":"rate_limited","retry_after":30}"#
                    .to_vec(),
        });
        assert_eq!(
            headed.retry_after(),
            Some(Duration::from_secs(7)),
            "the header wins"
        );
        assert_eq!(headed.request_id(), Some("5f0c2a9e1b7d4c38"));
    }

    #[test]
    fn user_text_cannot_escape_its_path_segment() {
        assert_eq!(path_segment("R-1_a.b~"), "R-1_a.b~");
        assert_eq!(path_segment("../admin?x=1"), "..%2Fadmin%3Fx%3D1");
    }

    #[test]
    fn wait_conditions() {
        use PaymentStatus::*;
        assert!(!WaitUntil::Settled.reached(Processing));
        assert!(WaitUntil::Settled.reached(PartiallyPaid));
        assert!(!WaitUntil::Final.reached(PartiallyPaid));
        assert!(WaitUntil::Final.reached(Paid));
        assert!(WaitUntil::AnyOf(vec![Failed]).reached(Failed));
        assert!(WaitUntil::AnyOf(vec![Paid]).reached(Cancelled));
        assert!(!WaitUntil::AnyOf(vec![Paid]).reached(PartiallyPaid));
    }
}
