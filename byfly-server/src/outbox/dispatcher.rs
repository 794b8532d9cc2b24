//! The dispatcher: delivery from the outbox (`spec/API.md` §6).
//!
//! - **In order**: the store hands out only the oldest open event of each payment, so a receiver
//!   never sees `paid` before the `partially_paid` that came first (an exhausted event stops
//!   blocking the next one).
//! - **Once at a time**: a claim carries a token and a lease longer than a whole attempt (DNS
//!   lookup and request, checked by the configuration); only the holder records the result, and a
//!   manual retry goes through the same claim.
//! - **Fair**: deliveries are bounded overall and per receiving host, so one slow receiver holds at
//!   most its own slots. A host whose slots are taken keeps as many claimed events waiting in line
//!   as it has slots (each starts the moment a slot frees, well within its lease: it waits at most
//!   one attempt); beyond that its events are handed back and claimed again a second later.
//! - **Safe to connect**: the client's resolver is the check against internal addresses
//!   ([`super::resolver`]); a response body is read through a 64 KiB cap.
//! - **Recoverable**: after the schedule (1 min … 24 h, ±20 % jitter) an event is exhausted, logged
//!   once at warn, listed and recovered in bulk through the admin API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use byfly_core::ids::EventId;
use byfly_core::webhook::signature::{SignedHeaders, headers};
use byfly_core::wire::{WebhookUrl, is_internal_address};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::payload::payload;
use super::resolver::{GuardedResolver, Lookup, SystemLookup};
use super::schedule::next_attempt_at;
use crate::clock::SharedClock;
use crate::config::DeliverySettings;
use crate::metrics::{DeliveryResult, Metrics};
use crate::store::UnixSeconds;
use crate::store::{DeliveryAttempt, DeliveryOutcome, DueEvent, EventClaim, Recorded, Store, StoreError};

/// How much of a receiver's answer is read and kept in the log.
const MAX_LOGGED_RESPONSE: usize = 64 * 1024;
/// How long an event whose receiving host has no free slot (nor room in its line) waits before it
/// is claimed again.
const HOST_FULL_RETRY_SECS: i64 = 1;

/// One receiving host's share: its delivery slots, and how many claimed events wait in line.
#[derive(Debug)]
struct HostSlots {
    slots: Arc<Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
}

/// What a manual retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualRetry {
    /// An attempt was made (delivered or not: the log says).
    Attempted,
    /// A delivery of this event runs right now.
    Busy,
    /// An earlier event of the payment is neither delivered nor exhausted yet.
    Blocked,
    /// No such event.
    NotFound,
}

/// A claim token: random, so that no other sender can hold the same one.
fn claim_token() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// The host a delivery's slots are counted against (the URL's host, lowercased).
fn host_of(due: &DueEvent) -> String {
    due.payment
        .webhook_url
        .as_deref()
        .and_then(|url| WebhookUrl::parse(url).ok())
        .map(|url| url.host().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Sends the outbox.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    http: reqwest::Client,
    settings: Arc<DeliverySettings>,
    slots: Arc<Semaphore>,
    hosts: Arc<Mutex<HashMap<String, Arc<HostSlots>>>>,
    /// Signalled when a delivery ends: its slot is free, and more may be due right away.
    finished: Arc<tokio::sync::Notify>,
    /// Business time (due-ness, leases, retry times, the timestamp of a body).
    clock: SharedClock,
    /// Counts every attempt for `/metrics`.
    metrics: Arc<Metrics>,
}

impl Dispatcher {
    /// A dispatcher over `store`, resolving receivers with the system's resolver.
    pub fn new(
        store: Arc<dyn Store>,
        settings: DeliverySettings,
        clock: SharedClock,
    ) -> Result<Dispatcher, reqwest::Error> {
        Dispatcher::with_lookup(store, settings, Arc::new(SystemLookup), clock)
    }

    /// A dispatcher whose client resolves receivers through `lookup` (guarded all the same).
    pub fn with_lookup(
        store: Arc<dyn Store>,
        settings: DeliverySettings,
        lookup: Arc<dyn Lookup>,
        clock: SharedClock,
    ) -> Result<Dispatcher, reqwest::Error> {
        let resolver = GuardedResolver::new(lookup, settings.dns_timeout, settings.allow_private_hosts);
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(headers::USER_AGENT)
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .build()?;
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Ok(Dispatcher {
            store,
            http,
            settings: Arc::new(settings),
            slots,
            hosts: Arc::default(),
            finished: Arc::default(),
            clock,
            metrics: Arc::default(),
        })
    }

    /// The dispatcher, counting its attempts in `metrics`.
    pub fn counted_by(self, metrics: Arc<Metrics>) -> Dispatcher {
        Dispatcher { metrics, ..self }
    }

    /// The share of one receiving host.
    fn host_slots(&self, host: &str) -> Arc<HostSlots> {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hosts
            .entry(host.to_owned())
            .or_insert_with(|| {
                Arc::new(HostSlots {
                    slots: Arc::new(Semaphore::new(self.settings.per_host.max(1))),
                    waiting: std::sync::atomic::AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Claims due events and starts their deliveries, each in its own task, within the global and
    /// the per-host bounds (an event of a busy host waits in its line, or goes back to be claimed
    /// a second later). Returns how many were started or put in line.
    pub async fn dispatch_due(&self) -> Result<usize, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let token = claim_token();
        let t = self.clock.now();
        // More than the free slots: some may belong to a busy host and go back.
        let limit = u32::try_from(free.saturating_mul(2)).unwrap_or(u32::MAX);
        let due = self
            .store
            .claim_due_events(t, self.settings.claim_lease, limit, &token)
            .await?;
        let mut handed_back = Vec::new();
        let mut taken = 0;
        for event in due {
            let host = self.host_slots(&host_of(&event));
            let start = match host.slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) if host.waiting.load(SeqCst) < self.settings.per_host => None,
                Err(_) => {
                    handed_back.push(event.row_id);
                    continue;
                }
            };
            taken += 1;
            if start.is_none() {
                host.waiting.fetch_add(1, SeqCst);
            }
            let dispatcher = self.clone();
            tokio::spawn(async move {
                let slot = match start {
                    Some(slot) => Ok(slot),
                    None => {
                        let slot = host.slots.clone().acquire_owned().await;
                        host.waiting.fetch_sub(1, SeqCst);
                        slot
                    }
                };
                let Ok(slot) = slot else { return };
                let Ok(global) = dispatcher.slots.clone().acquire_owned().await else {
                    return;
                };
                if let Err(err) = dispatcher.deliver(event, false).await {
                    tracing::error!(%err, "webhook delivery could not be recorded");
                }
                drop((global, slot));
                dispatcher.finished.notify_one();
            });
        }
        self.store
            .release_claims(&handed_back, &token, t + HOST_FULL_RETRY_SECS)
            .await?;
        Ok(taken)
    }

    /// A manual attempt now, through the same claim and bounds as automatic ones (also for an
    /// event already delivered: receivers de-duplicate by `X-Webhook-Id`).
    pub async fn retry(&self, event_id: &EventId) -> Result<ManualRetry, StoreError> {
        let token = claim_token();
        let due = match self
            .store
            .claim_event(event_id, self.clock.now(), self.settings.claim_lease, &token)
            .await?
        {
            EventClaim::Claimed(due) => *due,
            EventClaim::Busy => return Ok(ManualRetry::Busy),
            EventClaim::Blocked => return Ok(ManualRetry::Blocked),
            EventClaim::NotFound => return Ok(ManualRetry::NotFound),
        };
        let permits = self.acquire(&host_of(&due)).await;
        self.deliver(due, true).await?;
        drop(permits);
        Ok(ManualRetry::Attempted)
    }

    async fn acquire(&self, host: &str) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let host = self.host_slots(host).slots.clone().acquire_owned().await.ok()?;
        let global = self.slots.clone().acquire_owned().await.ok()?;
        Some((host, global))
    }

    /// Resolves when a delivery has ended since the last call (its slot is free again): the
    /// sender's loop then looks for due work at once instead of at its next tick.
    pub async fn delivery_finished(&self) {
        self.finished.notified().await;
    }

    /// Waits until every started delivery has finished (for shutdown).
    pub async fn drain(&self) {
        let all = u32::try_from(self.settings.concurrency.max(1)).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(all).await;
    }

    /// Deletes attempt logs older than the retention. Returns how many.
    pub async fn purge_logs(&self) -> Result<u64, StoreError> {
        self.store
            .purge_delivery_logs(self.clock.now() - self.settings.log_retention)
            .await
    }

    /// What a failed automatic attempt leads to when `steps` attempts of the schedule had failed
    /// before it: the schedule's next delay, or exhaustion once it has none left.
    fn after_failure(&self, steps: u32, at: UnixSeconds) -> DeliveryOutcome {
        match next_attempt_at(&self.settings.backoff, steps, at.get(), |spread| {
            rand::random_range(-spread..=spread)
        }) {
            Some(next) => DeliveryOutcome::RetryAt(UnixSeconds(next)),
            None => DeliveryOutcome::Exhausted,
        }
    }

    /// One attempt of a claimed event: build, sign, send, record (as the claim's holder).
    pub async fn deliver(&self, due: DueEvent, manual: bool) -> Result<bool, StoreError> {
        let timestamp = self.clock.now();
        let (url, body, sent) = match due.payment.webhook_url.clone() {
            Some(url) => {
                let body = payload(&due, self.settings.offset, timestamp)
                    .encode(due.encoding)
                    .unwrap_or_default();
                let sent = self.send(&url, &due, &body, timestamp).await;
                (url, body, sent)
            }
            // No receiver: nothing to send, ever (the event stays in the outbox for the admin log).
            None => (
                String::new(),
                String::new(),
                Err("the payment has no webhook_url".to_owned()),
            ),
        };
        let (code, answer, error, duration_ms) = match sent {
            Ok(sent) => (Some(sent.code), Some(sent.body), None, sent.duration_ms),
            Err(error) => (None, None, Some(error), 0),
        };
        let delivered = code.is_some_and(|code| (200..300).contains(&code));
        let outcome = if delivered {
            DeliveryOutcome::Delivered
        } else if manual {
            DeliveryOutcome::ManualFailed
        } else if due.payment.webhook_url.is_none() {
            DeliveryOutcome::NoReceiver
        } else {
            self.after_failure(due.schedule_step, timestamp)
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
        let recorded = self
            .store
            .record_delivery(due.row_id, &due.claim_token, &attempt, outcome)
            .await?;
        // Counted once on disk, so a scrape never shows an attempt its backlog figures do not.
        self.metrics.observe_delivery(match outcome {
            DeliveryOutcome::Delivered => DeliveryResult::Delivered,
            DeliveryOutcome::Exhausted => DeliveryResult::Exhausted,
            DeliveryOutcome::NoReceiver => DeliveryResult::NoReceiver,
            DeliveryOutcome::RetryAt(_) | DeliveryOutcome::ManualFailed => DeliveryResult::Failed,
        });
        match recorded {
            Recorded::Done => {}
            Recorded::NowExhausted => tracing::warn!(
                event_id = %due.event.event_id,
                transaction_id = %due.payment.transaction_id,
                attempts = due.attempts + 1,
                "webhook event exhausted its retry schedule: listed for recovery in the admin API"
            ),
            Recorded::NotHolder => tracing::warn!(
                event_id = %due.event.event_id,
                "webhook attempt finished after its claim had passed to another sender: not recorded"
            ),
        }
        Ok(delivered)
    }

    async fn send(
        &self,
        url: &str,
        due: &DueEvent,
        body: &str,
        timestamp: UnixSeconds,
    ) -> Result<Sent, String> {
        let target = WebhookUrl::parse(url).map_err(|err| err.message)?;
        // A literal address is not looked up, so the resolver cannot check it: done here.
        if !self.settings.allow_private_hosts && target.literal_ip().is_some_and(is_internal_address) {
            return Err("webhook_url is an internal address".to_owned());
        }
        let event_id = &due.event.event_id;
        let mut request = self
            .http
            .post(target.as_str())
            .header("content-type", "application/json")
            .header(headers::EVENT, due.event.event.as_str())
            .header(headers::TIMESTAMP, timestamp.to_string())
            .header(headers::ID, event_id.as_str());
        if let Some(secret) = &due.payment.webhook_secret {
            let secret = secret.expose().as_bytes();
            let signed = SignedHeaders::sign(secret, body.as_bytes(), timestamp.get());
            request = request
                .header(headers::SIGNATURE, signed.signature)
                .header(headers::SIGNATURE_V2, signed.signature_v2);
            for (name, value) in
                SignedHeaders::standard(secret, event_id.as_str(), body.as_bytes(), timestamp.get())
            {
                request = request.header(name, value);
            }
        }
        let started = Instant::now();
        let mut response = request.body(body.to_owned()).send().await.map_err(describe)?;
        let code = response.status().as_u16();
        // Read through a cap: a receiver's endless answer must not fill memory.
        let mut kept = Vec::new();
        while kept.len() < MAX_LOGGED_RESPONSE {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_LOGGED_RESPONSE - kept.len();
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Sent {
            code,
            body: String::from_utf8_lossy(&kept).into_owned(),
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        })
    }
}

/// A receiver's answer.
struct Sent {
    code: u16,
    body: String,
    duration_ms: i64,
}

/// A client error without its URL (the merchant's, which may carry a token of theirs), with its
/// causes — the resolver's refusal, the connection's error — so the log says what happened.
fn describe(err: reqwest::Error) -> String {
    byfly_terminal::client::error_chain(&err.without_url())
}
