//! The webhook outbox over real HTTP (`spec/API.md` §6): events of a payment arrive in order even
//! while the first keeps failing; an exhausted event stops blocking the next and is listed and
//! recovered in bulk; one delivery at a time per event (claims with tokens, manual retries through
//! them); a receiver that never answers does not hold up another; answers are read through a cap;
//! the address connected to is the address checked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::{ADMIN, App, admin, eventually, pay, spawn_app_with};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use byfly_core::WebhookPayload;
use byfly_core::ids::EventId;
use byfly_server::store::{DeliveryAttempt, DeliveryOutcome, EventClaim, EventFilter, Recorded};
use reqwest::Method;
use serde_json::{Value, json};

/// A local receiver: logs every request's payload; fails (500) the events named in `failing`
/// while `down` is set; never answers while `hang` is set; answers `answer_bytes` bytes.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<WebhookPayload>>>,
    failing: Arc<Mutex<Vec<&'static str>>>,
    hang: Arc<AtomicBool>,
    answer_bytes: Arc<AtomicUsize>,
}

async fn hook(State(receiver): State<Receiver>, body: String) -> (StatusCode, String) {
    let payload: WebhookPayload = serde_json::from_str(&body).unwrap();
    let event = payload.event.as_str();
    receiver.got.lock().unwrap().push(payload);
    if receiver.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let answer = "x".repeat(receiver.answer_bytes.load(Ordering::SeqCst));
    if receiver.failing.lock().unwrap().contains(&event) {
        (StatusCode::INTERNAL_SERVER_ERROR, answer)
    } else {
        (StatusCode::OK, answer)
    }
}

/// A receiver on 127.0.0.1; its URL names the host `host` (`127.0.0.1` or `localhost`).
async fn receiver(host: &str) -> (String, Receiver) {
    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{host}:{}/hook", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

impl Receiver {
    fn events(&self) -> Vec<(String, u64)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|p| (p.event.as_str().to_owned(), p.sequence))
            .collect()
    }
}

/// Retries a second apart, eight times: the schedule of these tests.
async fn app_with_fast_retries(tries: usize) -> App {
    spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
        config.webhook_backoff_secs = vec![1; tries];
    })
    .await
}

/// A payment of 100 000 paid in two parts (`partially_paid`, then `paid`), with `url` as its
/// receiver. Waits for each part to settle.
async fn paid_in_two_parts(app: &App, url: &str) -> String {
    let id = app
        .init_as(
            &app.token,
            json!({"amount": 100000, "webhook_url": url, "webhook_secret": "s3cret"}),
        )
        .await;
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", Some(60_000)))
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], json!("partially_paid"));
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], json!("paid"));
    id
}

/// A payment of 1 000 with `url` as its receiver, cancelled at once: one `cancelled` event.
async fn cancelled_payment(app: &App, url: &str) -> String {
    let id = app
        .init_as(&app.token, json!({"amount": 1000, "webhook_url": url}))
        .await;
    assert_eq!(app.cancel(&id).await.0, 200);
    id
}

async fn events_of(app: &App, id: &str) -> Vec<Value> {
    let (code, body) = admin(app, Method::GET, &format!("/payments/{id}/webhooks"), None).await;
    assert_eq!(code, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_payments_events_arrive_in_order_while_the_first_keeps_failing() {
    let app = app_with_fast_retries(20).await;
    let (url, receiver) = receiver("127.0.0.1").await;
    receiver.failing.lock().unwrap().push("partially_paid");
    let id = paid_in_two_parts(&app, &url).await;
    // The first event fails again and again; the second exists and waits behind it.
    eventually("partially_paid is attempted twice", || async {
        (receiver.events().len() >= 2).then_some(())
    })
    .await;
    let events = events_of(&app, &id).await;
    let second = events[1]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(events[1]["state"], json!("pending"));
    // A manual retry may not jump the queue either.
    let (code, refused) = admin(&app, Method::POST, &format!("/webhooks/{second}/retry"), None).await;
    assert_eq!(
        (code, &refused["code"]),
        (400, &json!("invalid_status")),
        "{refused}"
    );

    receiver.failing.lock().unwrap().clear();
    eventually("paid is delivered", || async {
        receiver
            .events()
            .iter()
            .any(|(event, _)| event == "paid")
            .then_some(())
    })
    .await;
    let got = receiver.events();
    let first_paid = got.iter().position(|(event, _)| event == "paid").unwrap();
    assert!(
        got[..first_paid]
            .iter()
            .all(|(event, sequence)| event == "partially_paid" && *sequence == 1),
        "{got:?}"
    );
    assert!(
        first_paid >= 3,
        "the first event failed at least twice before: {got:?}"
    );
    assert_eq!(got[first_paid].1, 2);
    // The receiver logs a request before it answers: the server records the delivery after.
    let states = eventually("both events are recorded delivered", || async {
        let states: Vec<(Value, Value)> = events_of(&app, &id)
            .await
            .iter()
            .map(|e| (e["sequence"].clone(), e["state"].clone()))
            .collect();
        states
            .iter()
            .all(|(_, state)| state == "delivered")
            .then_some(states)
    })
    .await;
    assert_eq!(
        states,
        [(json!(1), json!("delivered")), (json!(2), json!("delivered"))]
    );
}

#[tokio::test]
async fn an_exhausted_event_stops_blocking_and_is_recovered_in_bulk() {
    // Two attempts in all: the first, and one retry.
    let app = app_with_fast_retries(1).await;
    let (url, receiver) = receiver("127.0.0.1").await;
    receiver.failing.lock().unwrap().push("partially_paid");
    let id = paid_in_two_parts(&app, &url).await;
    // The receiver seeing `paid` is not enough: the sender records the delivery only after the
    // answer, so wait until the server's own list holds nothing but the exhausted event.
    eventually("paid goes out once partially_paid is exhausted", || async {
        let received = receiver.events().iter().any(|(event, _)| event == "paid");
        let (_, all) = admin(&app, Method::GET, "/webhooks", None).await;
        let undelivered = all["data"]["items"].as_array().map(Vec::len);
        (received && undelivered == Some(1)).then_some(())
    })
    .await;
    let (code, listed) = admin(&app, Method::GET, "/webhooks?state=exhausted&source_id=1", None).await;
    assert_eq!(code, 200, "{listed}");
    let items = listed["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(
        (
            &items[0]["event"],
            &items[0]["attempts"],
            &items[0]["transaction_id"],
            &items[0]["last_result"]
        ),
        (
            &json!("partially_paid"),
            &json!(2),
            &json!(id),
            &json!("HTTP 500")
        )
    );
    assert_eq!(items[0]["next_attempt_at"], Value::Null);

    // Bad filters are clear errors.
    for query in [
        "state=delivered",
        "limit=0",
        "since=yesterday",
        "cursor=x",
        "state=lost",
    ] {
        let (code, body) = admin(&app, Method::GET, &format!("/webhooks?{query}"), None).await;
        assert_eq!(
            (code, &body["code"]),
            (400, &json!("validation_error")),
            "{query}: {body}"
        );
    }
    let bad = json!({"source_id": 1, "since": "1 января"});
    let (code, body) = admin(&app, Method::POST, "/webhooks/recover", Some(bad)).await;
    assert_eq!((code, &body["code"]), (400, &json!("validation_error")), "{body}");
    let unknown = json!({"source_id": 99, "since": "2000-01-01 00:00:00"});
    let (code, _) = admin(&app, Method::POST, "/webhooks/recover", Some(unknown)).await;
    assert_eq!(code, 404);

    // The receiver is back: everything of the source since then goes out again, in order.
    receiver.failing.lock().unwrap().clear();
    let since = json!({"source_id": 1, "since": "2000-01-01 00:00:00"});
    let (code, recovered) = admin(&app, Method::POST, "/webhooks/recover", Some(since)).await;
    assert_eq!(
        (code, &recovered["data"]["recovered"]),
        (200, &json!(1)),
        "{recovered}"
    );
    eventually("the recovered event is delivered", || async {
        let events = events_of(&app, &id).await;
        (events[0]["state"] == json!("delivered")).then_some(())
    })
    .await;
    let (_, none) = admin(&app, Method::GET, "/webhooks", None).await;
    assert_eq!(none["data"]["items"], json!([]));
}

#[tokio::test]
async fn one_delivery_at_a_time_per_event_and_only_its_holder_records_it() {
    let app = spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
        config.webhook_timeout_secs = 2;
    })
    .await;
    let (url, receiver) = receiver("127.0.0.1").await;
    receiver.hang.store(true, Ordering::SeqCst);
    cancelled_payment(&app, &url).await;
    // The server's sender holds the claim while the receiver hangs.
    eventually("the receiver is called", || async {
        (!receiver.events().is_empty()).then_some(())
    })
    .await;
    let listed = app
        .store
        .undelivered_events(&EventFilter {
            limit: 10,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let event = &listed[0].event;
    let now = byfly_server::clock::unix_now();
    assert_eq!(
        app.store
            .claim_event(&event.event_id, now, 90, "intruder")
            .await
            .unwrap(),
        EventClaim::Busy
    );
    assert!(
        app.store
            .claim_due_events(now + 1, 90, 10, "intruder")
            .await
            .unwrap()
            .is_empty(),
        "claimed already"
    );
    let (code, busy) = admin(
        &app,
        Method::POST,
        &format!("/webhooks/{}/retry", event.event_id),
        None,
    )
    .await;
    assert_eq!((code, &busy["code"]), (400, &json!("invalid_status")), "{busy}");
    let attempt = DeliveryAttempt {
        manual: false,
        url: url.clone(),
        request_body: String::new(),
        response_code: Some(200),
        response_body: None,
        error: None,
        duration_ms: 0,
        at: now,
    };
    let row_id = listed[0].row_id;
    assert_eq!(
        app.store
            .record_delivery(row_id, "intruder", &attempt, DeliveryOutcome::Delivered)
            .await
            .unwrap(),
        Recorded::NotHolder
    );
    assert_eq!(
        app.store
            .release_claims(&[row_id], "intruder", now)
            .await
            .unwrap(),
        0
    );
    // The holder's attempt ends at its timeout and is the one recorded.
    let log = eventually("the holder records its attempt", || async {
        let log = app.store.delivery_log(&event.event_id).await.unwrap();
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert_eq!(log.len(), 1);
    assert!(log[0].details.response_code.is_none(), "{:?}", log[0].details);
    assert!(
        app.store
            .webhook_events(listed[0].event.payment_id)
            .await
            .unwrap()[0]
            .delivered_at
            .is_none()
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_hold_up_another() {
    let app = spawn_app_with(1, false, |config| {
        config.webhook_concurrency = 4;
        config.webhook_per_host_concurrency = 2;
        config.webhook_timeout_secs = 10;
    })
    .await;
    // Two hosts: `localhost` never answers, `127.0.0.1` answers at once.
    let (stuck_url, stuck) = receiver("localhost").await;
    stuck.hang.store(true, Ordering::SeqCst);
    let (healthy_url, healthy) = receiver("127.0.0.1").await;
    for url in [&stuck_url, &healthy_url] {
        for _ in 0..6 {
            cancelled_payment(&app, url).await;
        }
    }
    eventually("all six reach the healthy receiver", || async {
        (healthy.events().len() == 6).then_some(())
    })
    .await;
    // Meanwhile the stuck host holds only its own two slots, and none of its attempts has ended.
    assert!(stuck.events().len() <= 2, "{:?}", stuck.events());
    // Once the healthy receiver's deliveries are recorded, what is left is the stuck receiver's.
    let attempted = eventually("the healthy deliveries are recorded", || async {
        let (attempted, undelivered) = undelivered_summary(&app).await;
        (undelivered == 6).then_some(attempted)
    })
    .await;
    assert!(!attempted, "no attempt to the stuck receiver has ended yet");
    assert!(stuck.events().len() <= 2, "{:?}", stuck.events());
}

/// Whether any undelivered event has an attempt logged, and how many there are.
async fn undelivered_summary(app: &App) -> (bool, usize) {
    let listed = app
        .store
        .undelivered_events(&EventFilter {
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    (listed.iter().any(|l| l.attempts > 0), listed.len())
}

#[tokio::test]
async fn a_huge_answer_is_read_through_a_cap() {
    let app = spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into())
    })
    .await;
    let (url, receiver) = receiver("127.0.0.1").await;
    receiver.answer_bytes.store(5 * 1024 * 1024, Ordering::SeqCst);
    let id = cancelled_payment(&app, &url).await;
    let attempt = eventually("the attempt is logged", || async {
        let events = events_of(&app, &id).await;
        events[0]["attempts"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
    assert_eq!(attempt["response_code"], json!(200));
    assert_eq!(attempt["response_body"].as_str().unwrap().len(), 64 * 1024);
}

#[tokio::test]
async fn attempt_logs_past_their_retention_are_purged_and_the_events_kept() {
    let app = spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into())
    })
    .await;
    let (url, receiver) = receiver("127.0.0.1").await;
    let id = cancelled_payment(&app, &url).await;
    let event_id = eventually("the attempt is logged", || async {
        let events = events_of(&app, &id).await;
        (!events[0]["attempts"].as_array().unwrap().is_empty())
            .then(|| EventId::from(events[0]["event_id"].as_str().unwrap().to_owned()))
    })
    .await;
    assert_eq!(receiver.events().len(), 1);
    let now = byfly_server::clock::unix_now();
    assert_eq!(
        app.store.purge_delivery_logs(now - 86_400).await.unwrap(),
        0,
        "a day old: kept"
    );
    assert_eq!(app.store.purge_delivery_logs(now + 1).await.unwrap(), 1);
    assert!(app.store.delivery_log(&event_id).await.unwrap().is_empty());
    let events = events_of(&app, &id).await;
    assert_eq!(
        (events.len(), &events[0]["state"]),
        (1, &json!("delivered")),
        "the event stays"
    );
}

/// Answers every name with one address: a name that (now) points inside the network.
struct PointsTo(IpAddr);

impl byfly_server::outbox::resolver::Lookup for PointsTo {
    fn lookup(
        &self,
        _: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>>
    {
        let ip = self.0;
        Box::pin(async move { Ok(vec![ip]) })
    }
}

#[tokio::test]
async fn a_name_that_resolves_inside_is_never_connected_to() {
    let app = spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
        config.allow_private_webhook_hosts = false;
        config.webhook_dns_timeout_ms = 1_000;
    })
    .await;
    let (url, receiver) = receiver("rebind.test").await;
    // At init the name does not resolve (so it is accepted); the server's own first attempt fails
    // on DNS and is retried later.
    let id = cancelled_payment(&app, &url).await;
    let events = eventually("the first attempt is logged", || async {
        let events = events_of(&app, &id).await;
        (!events[0]["attempts"].as_array().unwrap().is_empty()).then_some(events)
    })
    .await;
    // Now the name answers 127.0.0.1, where a receiver listens: a sender whose client resolves
    // through that answer refuses on the lookup it would connect with.
    let settings = byfly_server::config::Config {
        allow_private_webhook_hosts: false,
        ..byfly_server::config::Config::default()
    }
    .validate()
    .unwrap();
    let sender = byfly_server::outbox::Dispatcher::with_lookup(
        app.store.clone(),
        settings.delivery,
        Arc::new(PointsTo("127.0.0.1".parse().unwrap())),
        byfly_server::clock::SystemClock::shared(),
    )
    .unwrap();
    let event_id = &EventId::from(events[0]["event_id"].as_str().unwrap().to_owned());
    assert_eq!(
        sender.retry(event_id).await.unwrap(),
        byfly_server::outbox::ManualRetry::Attempted
    );
    let log = app.store.delivery_log(event_id).await.unwrap();
    let error = log.last().unwrap().details.error.clone().unwrap();
    assert!(error.contains("internal address"), "{error}");
    assert!(
        !error.contains("rebind.test:"),
        "the URL stays out of the error: {error}"
    );
    assert!(receiver.events().is_empty(), "nothing reached 127.0.0.1");
}

/// The fairness figure (`bash bench/webhooks.sh`): deliveries per second to a healthy receiver
/// while another receiver holds its host's slots and never answers. The healthy receiver's events
/// are made first (and fail once), then recovered all at once, so the figure is of delivery alone.
/// A figure, not a pass/fail: ignored in the test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/webhooks.sh runs it"]
async fn fairness_figure() {
    let events: usize = std::env::var("BYFLY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let app = spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
        config.webhook_timeout_secs = 60;
    })
    .await;
    let (stuck_url, stuck) = receiver("localhost").await;
    stuck.hang.store(true, Ordering::SeqCst);
    let (healthy_url, healthy) = receiver("127.0.0.1").await;
    healthy.failing.lock().unwrap().push("cancelled");
    for _ in 0..20 {
        cancelled_payment(&app, &stuck_url).await;
    }
    for _ in 0..events {
        cancelled_payment(&app, &healthy_url).await;
    }
    eventually("every healthy event failed once", || async {
        (healthy.events().len() >= events).then_some(())
    })
    .await;
    healthy.failing.lock().unwrap().clear();
    let started = std::time::Instant::now();
    let all = json!({"source_id": 1, "since": "2000-01-01 00:00:00"});
    let (code, recovered) = admin(&app, Method::POST, "/webhooks/recover", Some(all)).await;
    assert_eq!(code, 200, "{recovered}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while healthy.events().len() < 2 * events {
        assert!(std::time::Instant::now() < deadline, "deliveries stalled");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    println!(
        "webhook fairness: {events} deliveries to a healthy receiver in {:.2} s = {:.0}/s, while another \
         receiver held {} requests unanswered (per-host limit 2, concurrency 8)",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64(),
        stuck.events().len()
    );
}
