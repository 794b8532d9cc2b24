//! Webhook delivery over real HTTP to a real local receiver: the exact body bytes, the three
//! signatures, the headers, one `paid` per payment, retries on the backoff schedule while the
//! receiver fails, and the attempt log. Order, claims, fairness, exhaustion and the standard
//! libraries are in `outbox.rs`.

use crate::common;
use byfly_server::store::UnixSeconds;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{pay, spawn_app_with};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use byfly_core::webhook::signature::{ReceivedSignatures, verify};
use byfly_core::{BodyEncoding, TransactionId, WebhookPayload};
use serde_json::{Value, json};

/// What the receiver got, in order.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    failures_left: Arc<Mutex<u32>>,
}

async fn hook(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    receiver.received.lock().unwrap().push(Received { headers, body });
    let mut left = receiver.failures_left.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn start_receiver(failures: u32) -> (String, Receiver) {
    let receiver = Receiver {
        failures_left: Arc::new(Mutex::new(failures)),
        ..Receiver::default()
    };
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

impl Receiver {
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let received = self.received.lock().unwrap().clone();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the receiver got {} of {count} requests",
            self.received.lock().unwrap().len()
        );
    }
}

/// The delivery log of an event once it has `count` attempts (bounded wait): the receiver may
/// answer before the server has logged the attempt.
async fn wait_for_log(
    app: &common::App,
    event_id: &byfly_core::ids::EventId,
    count: usize,
) -> Vec<byfly_server::store::DeliveryLog> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = app.store.delivery_log(event_id).await.unwrap();
        if log.len() >= count || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn paid_payment(app: &common::App, webhook_url: &str) -> String {
    let id = app
        .init_as(
            &app.token,
            json!({
                "amount": 100000, "description": "Тур в Турцию / Анталья", "webhook_url": webhook_url,
                "webhook_secret": "your_secret_key", "metadata": {"order_id": "12345", "tour": "Анталья"}
            }),
        )
        .await;
    let (_, body) = app.kaspi(&id, "kaspi_kredit").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Loan", None))
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], json!("paid"));
    id
}

#[tokio::test]
async fn a_paid_webhook_is_delivered_once_signed_and_byte_exact() {
    let (url, receiver) = start_receiver(0).await;
    let app = spawn_app_with(1, false, |_| {}).await;
    let id = paid_payment(&app, &url).await;
    let received = receiver.wait_for(1).await;
    let request = &received[0];
    let event_id = request.headers["x-webhook-id"].to_str().unwrap().to_owned();
    wait_for_log(&app, &event_id.clone().into(), 1).await;
    let header = |name: &str| request.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("user-agent").as_deref(), Some("ByFly-Payment-Center/1.0"));
    assert_eq!(header("x-webhook-event").as_deref(), Some("paid"));

    // The three signatures (the guide's, V2, Standard Webhooks) verify over the exact bytes, and
    // are fresh.
    let payload: WebhookPayload = serde_json::from_str(&request.body).unwrap();
    let signatures =
        ReceivedSignatures::from_headers(|name| request.headers.get(name).and_then(|v| v.to_str().ok()));
    assert!(
        signatures.signature.is_some() && signatures.signature_v2.is_some() && signatures.standard.is_some(),
        "{:?}",
        request.headers
    );
    assert_eq!(header("webhook-id"), Some(payload.event_id.clone()));
    assert_eq!(header("webhook-timestamp"), Some(payload.timestamp.to_string()));
    assert!(header("webhook-signature").unwrap().starts_with("v1,"));
    // The additions: its place among the payment's events, and when it happened.
    assert_eq!(payload.sequence, 1);
    assert_eq!(payload.event_created_at.len(), "2026-01-13 14:35:00".len());
    let signed_at = verify(
        b"your_secret_key",
        request.body.as_bytes(),
        signatures,
        payload.timestamp,
        300,
    )
    .unwrap();
    assert_eq!(header("x-webhook-timestamp"), Some(signed_at.to_string()));
    assert_eq!(header("x-webhook-id"), Some(payload.event_id.clone()));
    assert!(
        verify(
            b"wrong",
            request.body.as_bytes(),
            signatures,
            payload.timestamp,
            300
        )
        .is_err()
    );

    // The guide's figures, and the PHP encoding (the source's setting) as a fixed point.
    assert_eq!(payload.transaction_id, TransactionId::parse(&id).unwrap());
    assert_eq!(
        (
            payload.amount.to_string(),
            payload.original_amount.to_string(),
            payload.paid_amount.to_string()
        ),
        ("114000".into(), "100000".into(), "114000".into())
    );
    assert_eq!(
        (
            payload.actual_amount_received.to_string(),
            payload.remaining_amount.to_string()
        ),
        ("114000".into(), "0".into())
    );
    assert!(payload.paid_at.is_some());
    assert!(
        request
            .body
            .contains(r#""description":"\u0422\u0443\u0440 \u0432 \u0422\u0443\u0440\u0446\u0438\u044e \/ "#),
        "{}",
        request.body
    );
    assert_eq!(
        payload.encode(BodyEncoding::Php).unwrap(),
        request.body,
        "the body is PHP's re-serialization of itself"
    );
    assert!(request.body.starts_with(r#"{"event":"paid","transaction_id":"#));

    // Delivered once: the successful attempt is logged in the same transaction that marks the event
    // delivered, and delivered events are never claimed again.
    let log = app
        .store
        .delivery_log(&payload.event_id.clone().into())
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            log[0].attempt,
            log[0].details.response_code,
            log[0].details.manual
        ),
        (1, Some(200), false)
    );
    assert_eq!(log[0].details.request_body, request.body);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_again_on_the_schedule() {
    let (url, receiver) = start_receiver(2).await;
    let app = spawn_app_with(1, false, |config| config.webhook_backoff_secs = vec![1, 1, 1]).await;
    paid_payment(&app, &url).await;
    let received = receiver.wait_for(3).await;
    let ids: Vec<_> = received
        .iter()
        .map(|r| r.headers["x-webhook-id"].to_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same event id on every retry: {ids:?}"
    );
    // The receiver answers before the server logs the attempt: wait for the third log entry.
    let log = wait_for_log(&app, &ids[0].clone().into(), 3).await;
    let codes: Vec<_> = log.iter().map(|entry| entry.details.response_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(200)]);
    assert!(
        log.windows(2).all(|pair| pair[1].details.at > pair[0].details.at),
        "retries wait for the backoff"
    );
}

#[tokio::test]
async fn an_unreachable_receiver_is_logged_and_retried_without_blocking_the_api() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    let app = spawn_app_with(1, false, |config| config.webhook_backoff_secs = vec![1, 1]).await;
    let id = paid_payment(&app, &dead).await;
    let payment = app
        .store
        .payment(&TransactionId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let event = app.store.webhook_events(payment.id).await.unwrap().remove(0);
    let log = wait_for_log(&app, &event.event_id, 3).await;
    assert_eq!(
        log.len(),
        3,
        "first attempt + the two scheduled retries, then no more"
    );
    assert!(
        log.iter()
            .all(|entry| entry.details.response_code.is_none() && entry.details.error.is_some())
    );
    // Meanwhile the API answers as usual.
    assert_eq!(app.status(&id).await["status"], json!("paid"));
}

/// Runs one of the guide's receivers (real Node or PHP, as in byfly-core's conformance tests) on a
/// delivered body and its `X-Webhook-Signature`; true when the guide's `verifyWebhook` accepts it.
fn guide_receiver_accepts(program: &str, script: &str, secret: &str, signature: &str, body: &str) -> bool {
    use std::io::Write;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../byfly-core/tests/receivers")
        .join(script);
    let mut child = std::process::Command::new(program)
        .arg(script)
        .arg(secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {program} ({err}): install node 20 and Debian php-cli"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{signature} {body}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    answer["valid"] == json!(true)
}

#[tokio::test]
async fn both_encodings_pass_the_guides_own_receivers() {
    for (encoding, program, script) in [
        (BodyEncoding::Php, "php", "guide_receiver.php"),
        (BodyEncoding::Js, "node", "guide_receiver.js"),
    ] {
        let (url, receiver) = start_receiver(0).await;
        let app = spawn_app_with(1, false, |_| {}).await;
        // The app's source uses PHP; a second source chooses this encoding.
        let token = byfly_core::ApiToken::generate(&mut byfly_server::random::OsRandom);
        app.store
            .create_source("Receiver", &token.hash(), encoding, UnixSeconds(0))
            .await
            .unwrap();
        let id = app.init_as(token.expose(), json!({"amount": 57000, "description": "Оплата тура в Дубай #12345 / 7 дней 😀",
                           "webhook_url": url, "webhook_secret": "your_secret_key",
                           "metadata": {"order_id": "12345", "path": "/a/b", "empty": {}, "2": "two", "1": "one"}})).await;
        let (_, body) = app.kaspi(&id, "kaspi_gold").await;
        app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
            .pay(pay("Gold", None))
            .unwrap();
        let request = receiver.wait_for(1).await.remove(0);
        let signature = request.headers["x-webhook-signature"].to_str().unwrap();
        assert!(
            guide_receiver_accepts(program, script, "your_secret_key", signature, &request.body),
            "{program} rejected {}",
            request.body
        );
    }
}

/// Runs an official Standard Webhooks library (`tests/receivers`: Python's from PyPI, JavaScript's
/// from npm, both unmodified) on a delivery; true when it verifies.
fn standard_library_accepts(program: &str, script: &str, secret: &str, request: &Received) -> bool {
    use std::io::Write;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receivers");
    let headers: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap())))
        .collect();
    let mut child = std::process::Command::new(program)
        .arg(dir.join(script))
        .arg(secret)
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {program} ({err}): see .ci/run for the installs"));
    let delivery = json!({"headers": headers, "body": request.body});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(delivery.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        output.status.success() || said.starts_with("invalid"),
        "{program} {script} failed to run: {said} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    said == "valid"
}

#[tokio::test]
async fn the_official_standard_webhooks_libraries_verify_our_deliveries() {
    // A Standard Webhooks secret: `whsec_` + base64 of the key bytes.
    let secret = "whsec_c2VjcmV0LWtleS1ieWZseS1wYXltZW50LWNlbnRlcg==";
    let (url, receiver) = start_receiver(0).await;
    let app = spawn_app_with(1, false, |_| {}).await;
    let id = app
        .init_as(
            &app.token,
            json!({"amount": 57000, "description": "Тур / 😀", "webhook_url": url, "webhook_secret": secret}),
        )
        .await;
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    let request = receiver.wait_for(1).await.remove(0);
    for (program, script) in [
        ("python3", "standard_webhooks.py"),
        ("node", "standard_webhooks.mjs"),
    ] {
        assert!(
            standard_library_accepts(program, script, secret, &request),
            "{script} rejected it"
        );
        let mut tampered = request.clone();
        tampered.body = tampered.body.replace("57000", "57001");
        assert!(
            !standard_library_accepts(program, script, secret, &tampered),
            "{script} took a tampered body"
        );
        let other = "whsec_b3RoZXIta2V5LWJ5Zmx5LXBheW1lbnQtY2VudGVy";
        assert!(
            !standard_library_accepts(program, script, other, &request),
            "{script} took another key"
        );
    }
    // One secret serves both kinds of receiver: the guide's verifies with its text as it is.
    let signature = request.headers["x-webhook-signature"].to_str().unwrap();
    assert!(guide_receiver_accepts(
        "php",
        "guide_receiver.php",
        secret,
        signature,
        &request.body
    ));
}
