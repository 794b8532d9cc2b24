//! Webhook delivery from the outbox (`spec/API.md` §6).
//!
//! Each due event is claimed (leased, so several processes never send one event at once), its body
//! is built from the figures stored with the event and encoded in the source's encoding, signed,
//! and POSTed with a 10 s timeout and no redirects. Every attempt is logged; a failure is retried on
//! the backoff schedule with ±20 % jitter. Deliveries run concurrently up to a bound, so a slow or
//! dead receiver never holds up the others or the API.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use byfly_core::WebhookPayload;
use byfly_core::time::DisplayOffset;
use byfly_core::webhook::RawJson;
use byfly_core::webhook::signature::{SignedHeaders, headers};
use byfly_core::wire::{WebhookUrl, is_internal_address};
use tokio::sync::Semaphore;

use crate::http::now;
use crate::store::{DeliveryAttempt, DueEvent, Store, StoreError};

/// How much of a receiver's answer is kept in the log.
const MAX_LOGGED_RESPONSE: usize = 64 * 1024;
/// How long a claimed event is leased to its sender.
const CLAIM_LEASE_SECS: i64 = 60;

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Seconds to wait before each retry (1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h by default).
    pub backoff: Vec<i64>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Whether receivers on internal addresses are allowed.
    pub allow_private_hosts: bool,
    /// Offset of the date-times in bodies.
    pub offset: DisplayOffset,
}

/// Whether a webhook URL's host resolves to an internal address (loopback, private, link-local...).
/// A host that does not resolve is not internal: delivery to it simply fails and is retried.
pub async fn resolves_to_internal(url: &WebhookUrl) -> bool {
    let addresses: Vec<IpAddr> = match url.literal_ip() {
        Some(ip) => vec![ip],
        None => match tokio::net::lookup_host((url.host(), 443)).await {
            Ok(found) => found.map(|address| address.ip()).collect(),
            Err(_) => Vec::new(),
        },
    };
    addresses.into_iter().any(is_internal_address)
}

/// The body of an event: its figures then, the payment's own fields, and this attempt's timestamp.
pub fn payload(due: &DueEvent, offset: DisplayOffset, timestamp: i64) -> WebhookPayload {
    let event = &due.event;
    let payment = &due.payment;
    let metadata = payment
        .metadata
        .as_deref()
        .and_then(|text| RawJson::parse(text).ok())
        .unwrap_or_else(RawJson::empty_object);
    WebhookPayload {
        event: event.event,
        transaction_id: payment.transaction_id.clone(),
        amount: event.figures.amount,
        original_amount: payment.original_amount,
        paid_amount: event.figures.paid_amount,
        actual_amount_received: event.actual_amount_received,
        remaining_amount: event.figures.remaining_amount,
        currency: payment.currency.clone(),
        status: event.status,
        description: payment.description.clone(),
        created_at: offset.format(payment.created_at),
        paid_at: event.paid_at.map(|at| offset.format(at)),
        metadata,
        timestamp,
        event_id: event.event_id.clone(),
        refunded_amount: event.figures.refunded_amount,
        overpaid_amount: event.figures.overpaid_amount,
        commission_amount: event.figures.commission_amount,
        payment_method: event.payment_method.clone(),
    }
}

/// Sends the outbox.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    http: reqwest::Client,
    settings: Arc<DeliverySettings>,
    slots: Arc<Semaphore>,
}

impl Dispatcher {
    /// A dispatcher over `store`.
    pub fn new(store: Arc<dyn Store>, settings: DeliverySettings) -> Result<Dispatcher, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(headers::USER_AGENT)
            .no_proxy()
            .build()?;
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Ok(Dispatcher {
            store,
            http,
            settings: Arc::new(settings),
            slots,
        })
    }

    /// Claims the due events and starts their deliveries (each in its own task, bounded by the
    /// concurrency). Returns how many were started.
    pub async fn dispatch_due(&self) -> Result<usize, StoreError> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let due = self
            .store
            .claim_due_events(now(), CLAIM_LEASE_SECS, u32::try_from(free).unwrap_or(u32::MAX))
            .await?;
        let started = due.len();
        for event in due {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                break;
            };
            let dispatcher = self.clone();
            tokio::spawn(async move {
                if let Err(err) = dispatcher.deliver(event, false).await {
                    tracing::error!(%err, "webhook delivery could not be recorded");
                }
                drop(permit);
            });
        }
        Ok(started)
    }

    /// Waits until every started delivery has finished (for shutdown).
    pub async fn drain(&self) {
        let all = u32::try_from(self.settings.concurrency.max(1)).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
    }

    /// When to try again after `attempts` failed attempts, or `None` when the schedule is exhausted.
    fn next_attempt(&self, attempts: u32, at: i64) -> Option<i64> {
        let delay = *self
            .settings
            .backoff
            .get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
        let spread = delay / 5;
        let jitter = if spread > 0 {
            rand::random_range(-spread..=spread)
        } else {
            0
        };
        Some(at + delay + jitter)
    }

    /// One attempt: build, sign, send, log.
    pub async fn deliver(&self, due: DueEvent, manual: bool) -> Result<bool, StoreError> {
        let Some(url) = due.payment.webhook_url.clone() else {
            // No receiver: nothing to send, ever (the event stays in the outbox for the admin log).
            let attempt = DeliveryAttempt {
                manual,
                url: String::new(),
                request_body: String::new(),
                response_code: None,
                response_body: None,
                error: Some("the payment has no webhook_url".to_owned()),
                duration_ms: 0,
                at: now(),
            };
            self.store
                .record_delivery(due.row_id, &attempt, false, None)
                .await?;
            return Ok(false);
        };
        let timestamp = now();
        let body = payload(&due, self.settings.offset, timestamp)
            .encode(due.encoding)
            .unwrap_or_default();
        let started = Instant::now();
        let sent = self.send(&url, &due, &body, timestamp).await;
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (code, answer, error) = match sent {
            Ok((code, answer)) => (Some(code), Some(answer), None),
            Err(error) => (None, None, Some(error)),
        };
        let delivered = code.is_some_and(|code| (200..300).contains(&code));
        let attempts = due.attempts + 1;
        let next = if delivered {
            None
        } else {
            self.next_attempt(attempts, timestamp)
        };
        let attempt = DeliveryAttempt {
            manual,
            url,
            request_body: body,
            response_code: code,
            response_body: answer,
            error,
            duration_ms,
            at: timestamp,
        };
        self.store
            .record_delivery(due.row_id, &attempt, delivered, next)
            .await?;
        Ok(delivered)
    }

    async fn send(
        &self,
        url: &str,
        due: &DueEvent,
        body: &str,
        timestamp: i64,
    ) -> Result<(u16, String), String> {
        let target = WebhookUrl::parse(url).map_err(|err| err.message)?;
        if !self.settings.allow_private_hosts && resolves_to_internal(&target).await {
            return Err("webhook_url resolves to an internal address".to_owned());
        }
        let event = due.event.event.as_str();
        let mut request = self
            .http
            .post(target.as_str())
            .header("content-type", "application/json")
            .header(headers::EVENT, event)
            .header(headers::TIMESTAMP, timestamp.to_string())
            .header(headers::ID, &due.event.event_id);
        if let Some(secret) = &due.payment.webhook_secret {
            let signed = SignedHeaders::sign(secret.expose().as_bytes(), body.as_bytes(), timestamp);
            request = request
                .header(headers::SIGNATURE, signed.signature)
                .header(headers::SIGNATURE_V2, signed.signature_v2);
        }
        let response = request
            .body(body.to_owned())
            .send()
            .await
            .map_err(|err| err.to_string())?;
        let code = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        let kept = &bytes[..bytes.len().min(MAX_LOGGED_RESPONSE)];
        Ok((code, String::from_utf8_lossy(kept).into_owned()))
    }
}
