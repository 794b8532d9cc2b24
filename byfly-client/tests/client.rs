//! The SDK against a real server (demo mode: SQLite, simulated terminals) over real HTTP: every
//! endpoint, every error variant, waiting through a partial payment and its top-up, and webhook
//! verification of what the real server sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, post};
use byfly_client::webhook::{VerifiedWebhook, Verifier, WebhookError};
use byfly_client::{Client, Error, IdempotencyKey, RetryPolicy, WaitOptions, WaitUntil};
use byfly_core::webhook::signature::VerifyError;
use byfly_core::wire::{
    CreateSourceRequest, InitPaymentRequest, PaymentListQuery, RefundStatus, UpdateMethodRequest,
    UpdateSourceRequest, UpdateTerminalRequest,
};
use byfly_core::{BodyEncoding, ErrorCode, Money, PaymentStatus, TransactionId, WebhookEvent};
use byfly_server::demo::RunningDemo;
use byfly_terminal::simulator::FaultMode;
use serde_json::json;
use tokio::sync::mpsc;

async fn demo(terminals: usize) -> RunningDemo {
    RunningDemo::start(terminals, |_| {}).await.unwrap()
}

fn client(demo: &RunningDemo) -> Client {
    Client::builder(&demo.api_url)
        .api_token(&demo.token)
        .admin_token(&demo.admin_token)
        .build()
        .unwrap()
}

fn amount(tenge: i64) -> InitPaymentRequest {
    InitPaymentRequest {
        amount: Money::from_tenge(tenge),
        ..Default::default()
    }
}

fn fast_wait() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(20),
        initial_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(200),
        ..WaitOptions::default()
    }
}

async fn create(client: &Client, tenge: i64) -> TransactionId {
    client
        .create_payment(&amount(tenge), None)
        .await
        .unwrap()
        .transaction_id
}

#[tokio::test]
async fn a_gold_payment_from_init_to_refund() {
    let demo = demo(2).await;
    let client = client(&demo);
    let request = InitPaymentRequest {
        amount: Money::from_tenge(50_000),
        description: Some("Оплата тура в Дубай #12345".into()),
        customer_name: Some("Иванов Иван".into()),
        metadata: Some(json!({"order_id": "12345"})),
        ..Default::default()
    };
    let created = client.create_payment(&request, None).await.unwrap();
    assert_eq!(created.status, PaymentStatus::Pending);
    assert_eq!(created.amount.to_string(), "50000");
    let id = created.transaction_id;

    let view = client.payment(&id).await.unwrap();
    assert_eq!(view.description.as_deref(), Some("Оплата тура в Дубай #12345"));
    let methods = client.active_methods().await.unwrap();
    let codes: Vec<&str> = methods.iter().map(|m| m.code.as_str()).collect();
    assert_eq!(
        codes,
        ["kaspi_gold", "kaspi_red", "kaspi_kredit", "kaspi_rassrochka"]
    );

    let started = client.start_kaspi(&id, Some("kaspi_gold")).await.unwrap();
    assert_eq!(started.amount.to_string(), "50000");
    assert!(started.payment_url.starts_with("https://pay.kaspi.kz/"));
    assert_eq!(
        client.status(&id).await.unwrap().status,
        PaymentStatus::Processing
    );
    client
        .demo_simulate(&id, &json!({"product": "Gold"}))
        .await
        .unwrap();
    let paid = client.wait_for_payment(&id, &fast_wait()).await.unwrap();
    assert_eq!(paid.status, PaymentStatus::Paid);
    assert_eq!(
        (paid.paid_amount.to_string(), paid.remaining_amount.to_string()),
        ("50000".into(), "0".into())
    );

    let list = client.payments(&PaymentListQuery::default()).await.unwrap();
    assert_eq!(list.items[0].transaction_id, id);
    let only_pending = PaymentListQuery {
        status: Some(PaymentStatus::Pending),
        ..Default::default()
    };
    assert!(client.payments(&only_pending).await.unwrap().items.is_empty());

    let refund = client.refund(&id, Some(Money::from_tenge(20_000))).await.unwrap();
    assert_eq!(refund.status, RefundStatus::WaitingConfirmation);
    assert!(refund.refund_url.is_some());
    let again = client.refund_status(&id, &refund.refund_id).await.unwrap();
    assert_eq!(again.refund_id, refund.refund_id);
    let missing = client.refund_status(&id, "R-404/../x").await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::RefundNotFound));

    let health = client.health().await.unwrap();
    assert_eq!(health.terminals.total, 2);
    let document = client.openapi_document().await.unwrap();
    assert!(document["paths"]["/api/payment/{id}/kaspi"]["post"].is_object());
    let other = create(&client, 100_000).await;
    let quotes = client.quotes(&other).await.unwrap();
    let kredit = quotes
        .iter()
        .find(|q| q.payment_method == "kaspi_kredit")
        .unwrap();
    assert_eq!(kredit.amount.to_string(), "114000");
}

#[tokio::test]
async fn every_method_is_paid_to_the_tenge() {
    let demo = demo(2).await;
    let client = client(&demo);
    let cases = [
        ("kaspi_gold", "Gold", "100000"),
        ("kaspi_red", "Red", "100000"),
        ("kaspi_kredit", "Loan", "114000"),
        ("kaspi_rassrochka", "Installment", "114000"),
    ];
    for (method, product, total) in cases {
        let id = create(&client, 100_000).await;
        let started = client.start_kaspi(&id, Some(method)).await.unwrap();
        assert_eq!(started.amount.to_string(), total, "{method}");
        client
            .demo_simulate(&id, &json!({"product": product}))
            .await
            .unwrap();
        let paid = client.wait_for_payment(&id, &fast_wait()).await.unwrap();
        assert_eq!(paid.status, PaymentStatus::Paid, "{method}");
        assert_eq!(
            (paid.amount.to_string(), paid.paid_amount.to_string()),
            (total.to_owned(), total.to_owned()),
            "{method}"
        );
    }
}

#[tokio::test]
async fn waiting_follows_a_partial_payment_and_its_top_up() {
    let demo = demo(1).await;
    let client = client(&demo);
    let id = create(&client, 100_000).await;
    client.start_kaspi(&id, None).await.unwrap();
    let mut seen = Vec::new();
    client
        .demo_simulate(&id, &json!({"product": "Gold", "amount": 87_719}))
        .await
        .unwrap();
    let partial = client
        .wait_for_payment_with(&id, &fast_wait(), |view| seen.push(view.status))
        .await
        .unwrap();
    assert_eq!(partial.status, PaymentStatus::PartiallyPaid);
    assert_eq!(partial.remaining_amount.to_string(), "12281");
    assert_eq!(seen.last(), Some(&PaymentStatus::PartiallyPaid));

    let top_up = client.start_kaspi(&id, Some("kaspi_gold")).await.unwrap();
    assert_eq!(
        (top_up.amount.to_string(), top_up.original_amount.to_string()),
        ("12281".into(), "12281".into())
    );
    client
        .demo_simulate(&id, &json!({"product": "Gold"}))
        .await
        .unwrap();
    let until_paid = WaitOptions {
        until: WaitUntil::AnyOf(vec![PaymentStatus::Paid]),
        ..fast_wait()
    };
    let paid = client.wait_for_payment(&id, &until_paid).await.unwrap();
    assert_eq!(paid.status, PaymentStatus::Paid);
    assert_eq!(
        (paid.amount.to_string(), paid.paid_amount.to_string()),
        ("100000".into(), "100000".into())
    );

    // A payment nobody pays: the deadline returns the last status read.
    let idle = create(&client, 1_000).await;
    let short = WaitOptions {
        timeout: Duration::from_millis(300),
        ..fast_wait()
    };
    match client.wait_for_payment(&idle, &short).await {
        Err(Error::WaitDeadline { last }) => assert_eq!(last.status, PaymentStatus::Pending),
        other => panic!("expected the deadline, got {other:?}"),
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_never_makes_two_payments() {
    let demo = demo(0).await;
    let client = client(&demo);
    let key = IdempotencyKey::new("order-12345").unwrap();
    let first = client
        .create_payment(&amount(5_000), Some(key.clone()))
        .await
        .unwrap();
    let second = client
        .create_payment(&amount(5_000), Some(key.clone()))
        .await
        .unwrap();
    assert_eq!(first, second);
    let conflict = client
        .create_payment(&amount(6_000), Some(key))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Some(ErrorCode::IdempotencyConflict));
    assert_eq!(conflict.status(), Some(409));
    assert_eq!(
        client
            .payments(&PaymentListQuery::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn every_refusal_is_a_typed_error() {
    let demo = demo(1).await;
    let client = client(&demo);

    let unknown = TransactionId::parse("000000000000").unwrap();
    let not_found = client.payment(&unknown).await.unwrap_err();
    assert_eq!(not_found.code(), Some(ErrorCode::TransactionNotFound));
    assert_eq!(not_found.status(), Some(404));
    assert!(not_found.to_string().contains("Транзакция не найдена"));

    let zero = client.create_payment(&amount(0), None).await.unwrap_err();
    assert_eq!(zero.code(), Some(ErrorCode::InvalidAmount));

    let id = create(&client, 10_000).await;
    let bad_method = client.start_kaspi(&id, Some("bitcoin")).await.unwrap_err();
    assert_eq!(bad_method.code(), Some(ErrorCode::InvalidPaymentMethod));

    client.start_kaspi(&id, Some("kaspi_gold")).await.unwrap();
    let other = create(&client, 20_000).await;
    let busy = client.start_kaspi(&other, None).await.unwrap_err();
    assert_eq!(busy.code(), Some(ErrorCode::TerminalsBusy));
    assert!(!busy.is_transient());

    client.demo_simulate(&id, &json!({})).await.unwrap();
    client.wait_for_payment(&id, &fast_wait()).await.unwrap();
    let paid = client.start_kaspi(&id, None).await.unwrap_err();
    assert_eq!(paid.code(), Some(ErrorCode::AlreadyPaid));
    let cancelled = client.cancel(&other).await.unwrap();
    assert_eq!(cancelled.status, PaymentStatus::Cancelled);
    let twice = client.cancel(&other).await.unwrap_err();
    assert_eq!(twice.code(), Some(ErrorCode::PaymentCancelled));

    demo.simulators[0].set_fault(FaultMode::Down, None);
    let third = create(&client, 30_000).await;
    let down = client.start_kaspi(&third, None).await.unwrap_err();
    assert_eq!(down.code(), Some(ErrorCode::TerminalUnavailable));

    let wrong_token = Client::builder(&demo.api_url)
        .api_token("x".repeat(64))
        .admin_token("not-the-admin-token")
        .build()
        .unwrap();
    let invalid = wrong_token.create_payment(&amount(1), None).await.unwrap_err();
    assert_eq!(invalid.code(), Some(ErrorCode::InvalidToken));
    assert_eq!(invalid.status(), Some(401));
    let invalid_admin = wrong_token.admin().sources().await.unwrap_err();
    assert_eq!(invalid_admin.code(), Some(ErrorCode::InvalidAdminToken));

    let anonymous = Client::builder(&demo.api_url).build().unwrap();
    assert!(matches!(
        anonymous.cancel(&id).await,
        Err(Error::MissingCredential(_))
    ));
    assert!(matches!(
        anonymous.admin().terminals().await,
        Err(Error::MissingCredential(_))
    ));
    assert!(matches!(
        Client::builder("ftp://example.kz").build(),
        Err(Error::Config(_))
    ));
}

/// A server that answers every request with a proxy's HTML error page, counting requests.
async fn bad_gateway() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(any(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (
                axum::http::StatusCode::BAD_GATEWAY,
                "<html><body>502 Bad Gateway</body></html>",
            )
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn transport_failures_timeouts_and_garbage_are_told_apart_and_only_safe_calls_retry() {
    let quick = RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    };
    let (url, hits) = bad_gateway().await;
    let client = Client::builder(&url)
        .api_token("x".repeat(64))
        .retry(quick)
        .build()
        .unwrap();
    let id = TransactionId::parse("A3F5D9E2B1C8").unwrap();
    match client.status(&id).await {
        Err(Error::Decode {
            status: 502, body, ..
        }) => assert!(body.contains("Bad Gateway")),
        other => panic!("expected an undecodable answer, got {other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3, "a GET is tried 1 + 2 times");
    hits.store(0, Ordering::SeqCst);
    client.start_kaspi(&id, None).await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "/kaspi is never repeated");
    hits.store(0, Ordering::SeqCst);
    client.create_payment(&amount(1), None).await.unwrap_err();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "init carries an idempotency key, so it may be repeated"
    );

    // Nothing listens on this port any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = Client::builder(&closed_url).retry(quick).build().unwrap();
    let err = unreachable.status(&id).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(err.is_transient());

    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let impatient = Client::builder(&silent_url)
        .timeout(Duration::from_millis(200))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(matches!(impatient.status(&id).await, Err(Error::Timeout(_))));
}

#[tokio::test]
async fn the_admin_api() {
    let demo = demo(1).await;
    let client = client(&demo);
    let admin = client.admin();
    let created = admin
        .create_source(&CreateSourceRequest {
            name: "Shop".into(),
            webhook_json: BodyEncoding::Js,
        })
        .await
        .unwrap();
    assert_eq!(created.api_token.len(), 64);
    let sources = admin.sources().await.unwrap();
    assert_eq!(sources.len(), 2);
    let revoked = admin
        .update_source(
            created.source.id,
            &UpdateSourceRequest {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!revoked.active);

    let terminals = admin.terminals().await.unwrap();
    assert_eq!(terminals.len(), 1);
    let disabled = admin
        .update_terminal(
            terminals[0].id,
            &UpdateTerminalRequest {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!disabled.enabled);
    // Registering again: the demo's terminal already allows our name (105), so the registration
    // ends as `already_registered`, with what to do on the terminal.
    let started = admin.register_terminal(terminals[0].id).await.unwrap();
    assert_eq!(started.registration.unwrap().state, "pending");
    let mut waited = 0;
    let decided = admin
        .wait_for_registration(terminals[0].id, std::time::Duration::from_secs(20), |_| {
            waited += 1
        })
        .await
        .unwrap();
    let registration = decided.registration.unwrap();
    assert_eq!(registration.state, "already_registered", "{registration:?}");
    assert!(registration.message.unwrap().contains("«Защита интеграции»"));
    assert!(decided.registered, "its tokens still work");
    assert_eq!(
        admin
            .update_terminal(999, &UpdateTerminalRequest::default())
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::NotFound)
    );

    let methods = admin.methods().await.unwrap();
    let red = methods
        .iter()
        .find(|m| m.method.code.as_str() == "kaspi_red")
        .unwrap();
    let off = admin
        .update_method(
            red.method.id,
            &UpdateMethodRequest {
                is_active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!off.is_active);
    assert_eq!(client.active_methods().await.unwrap().len(), 3);

    let id = create(&client, 7_000).await;
    let page = admin.payments(None, &PaymentListQuery::default()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let detail = admin.payment(&id).await.unwrap();
    assert!(detail.operations.is_empty());
    assert!(admin.payment_webhooks(&id).await.unwrap().is_empty());
    assert_eq!(
        admin.retry_webhook("no-such-event").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    assert!(admin.review().await.unwrap().is_empty());
}

/// A webhook receiver that hands every request (headers and exact body) to the test.
async fn recording_receiver() -> (String, mpsc::UnboundedReceiver<(http::HeaderMap, Vec<u8>)>) {
    let (sender, received) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let sender = sender.clone();
            async move {
                sender.send((headers, body.to_vec())).ok();
                "OK"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn webhooks_from_the_real_server_verify_in_both_encodings() {
    let demo = demo(2).await;
    let php_client = client(&demo);
    let js_source = php_client
        .admin()
        .create_source(&CreateSourceRequest {
            name: "JS".into(),
            webhook_json: BodyEncoding::Js,
        })
        .await
        .unwrap();
    let js_client = Client::builder(&demo.api_url)
        .api_token(&js_source.api_token)
        .build()
        .unwrap();
    let (hook_url, mut received) = recording_receiver().await;
    let verifier = Verifier::new("s3cret/é");

    for (client, encoding) in [(&php_client, "php"), (&js_client, "js")] {
        let request = InitPaymentRequest {
            amount: Money::from_tenge(100_000),
            description: Some("Тур / Анталья".into()),
            webhook_url: Some(hook_url.clone()),
            webhook_secret: Some("s3cret/é".into()),
            ..Default::default()
        };
        let id = client
            .create_payment(&request, None)
            .await
            .unwrap()
            .transaction_id;
        client.start_kaspi(&id, Some("kaspi_kredit")).await.unwrap();
        client
            .demo_simulate(&id, &json!({"product": "Loan"}))
            .await
            .unwrap();
        let (headers, body) = received.recv().await.unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        assert_eq!(text.contains(r"\/"), encoding == "php", "{encoding} body: {text}");

        let webhook = verifier.verify(&headers, &body).unwrap();
        assert_eq!(webhook.event, WebhookEvent::Paid);
        assert_eq!(webhook.payload.transaction_id, id);
        assert_eq!(webhook.payload.amount.to_string(), "114000");
        assert_eq!(
            Some(webhook.id.as_str()),
            headers.get("x-webhook-id").and_then(|v| v.to_str().ok())
        );

        let mut tampered = body.clone();
        let at = text.find("114000").unwrap();
        tampered[at] = b'9';
        assert_eq!(
            verifier.verify(&headers, &tampered),
            Err(WebhookError::Signature(VerifyError::Mismatch(
                "X-Webhook-Signature"
            )))
        );
        assert!(matches!(
            Verifier::new("wrong").verify(&headers, &body),
            Err(WebhookError::Signature(VerifyError::Mismatch(_)))
        ));
        let an_hour_later = webhook.timestamp + 3_600;
        assert!(matches!(
            verifier.verify_at(&headers, &body, an_hour_later),
            Err(WebhookError::Signature(VerifyError::Stale { .. }))
        ));
        // Each style alone verifies: the Standard Webhooks headers without ours, and the reverse.
        let mut standard_only = headers.clone();
        standard_only.remove("x-webhook-signature");
        standard_only.remove("x-webhook-signature-v2");
        assert_eq!(verifier.verify(&standard_only, &body).unwrap().id, webhook.id);
        let mut ours_only = headers.clone();
        ours_only.remove("webhook-signature");
        assert_eq!(verifier.verify(&ours_only, &body).unwrap().id, webhook.id);
        let mut unsigned = standard_only;
        unsigned.remove("webhook-signature");
        assert_eq!(
            verifier.verify(&unsigned, &body),
            Err(WebhookError::Signature(VerifyError::Missing))
        );
    }
}

#[tokio::test]
async fn the_axum_extractor_lets_only_signed_fresh_webhooks_through() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new()
        .route(
            "/hook",
            post(move |webhook: VerifiedWebhook| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push(webhook.id);
                    "OK"
                }
            }),
        )
        .with_state(Verifier::new("secret"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = format!(
        r#"{{"event":"paid","transaction_id":"A3F5D9E2B1C8","amount":50000,"original_amount":50000,"paid_amount":50000,"actual_amount_received":50000,"remaining_amount":0,"currency":"KZT","status":"paid","description":null,"created_at":"2025-01-13 10:00:00","paid_at":"2025-01-13 10:05:00","metadata":[],"timestamp":{now},"event_id":"A3F5D9E2B1C8-1","refunded_amount":0,"overpaid_amount":0,"commission_amount":0,"payment_method":"kaspi_gold"}}"#
    );
    let http = reqwest::Client::new();
    let send = |secret: &'static str, stamp: i64| {
        let signed =
            byfly_core::webhook::signature::SignedHeaders::sign(secret.as_bytes(), body.as_bytes(), stamp);
        let mut request = http.post(&url).body(body.clone());
        for (name, value) in signed.pairs() {
            request = request.header(name, value);
        }
        request.send()
    };
    assert_eq!(send("secret", now).await.unwrap().status(), 200);
    assert_eq!(send("wrong", now).await.unwrap().status(), 401);
    let stale = send("secret", now - 3_600).await.unwrap();
    assert_eq!(stale.status(), 401);
    assert!(stale.text().await.unwrap().contains("tolerance"));
    assert_eq!(
        http.post(&url).body(body.clone()).send().await.unwrap().status(),
        401
    );
    assert_eq!(*seen.lock().unwrap(), vec!["A3F5D9E2B1C8-1".to_owned()]);
}

#[tokio::test]
async fn a_refusal_carries_its_request_id_and_when_to_try_again() {
    let demo = demo(1).await;
    // The caller's own HTTP client, with a header of its own: the server keeps a request id it is
    // given, so the refusal names the CRM's own id.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-request-id",
        reqwest::header::HeaderValue::from_static("crm-order-12345"),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let own = Client::builder(&demo.api_url)
        .api_token(&demo.token)
        .http_client(http)
        .build()
        .unwrap();
    let unknown = TransactionId::parse("000000000000").unwrap();
    let refused = own.payment(&unknown).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::TransactionNotFound));
    assert_eq!(refused.request_id(), Some("crm-order-12345"));
    assert_eq!(refused.retry_after(), None);

    // Without one, the server's own id (16 hex digits), as in its log.
    let client = client(&demo);
    let refused = client.payment(&unknown).await.unwrap_err();
    let id = refused.request_id().unwrap();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    // Every terminal busy: the refusal says when one is expected to be free.
    let first = create(&client, 10_000).await;
    client.start_kaspi(&first, Some("kaspi_gold")).await.unwrap();
    let second = create(&client, 20_000).await;
    let busy = client.start_kaspi(&second, None).await.unwrap_err();
    assert_eq!(busy.code(), Some(ErrorCode::TerminalsBusy));
    let wait = busy.retry_after().expect("terminals_busy says when to try again");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(600),
        "{wait:?}"
    );
}

#[tokio::test]
async fn the_payment_stream_walks_every_page_in_order() {
    use futures_util::TryStreamExt;
    let demo = demo(0).await;
    let client = client(&demo);
    let mut made = Vec::new();
    for tenge in 1..=5 {
        made.push(create(&client, tenge * 1_000).await);
    }
    made.reverse(); // newest first
    let small_pages = PaymentListQuery {
        limit: Some(2),
        ..Default::default()
    };
    let streamed: Vec<TransactionId> = client
        .payments_stream(small_pages)
        .map_ok(|payment| payment.transaction_id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed, made);
    // A failing page ends the stream with its error.
    let anonymous = Client::builder(&demo.api_url).build().unwrap();
    let failed: Vec<Result<_, Error>> =
        futures_util::StreamExt::collect(anonymous.payments_stream(PaymentListQuery::default())).await;
    assert!(
        matches!(failed.as_slice(), [Err(Error::MissingCredential(_))]),
        "{failed:?}"
    );
}
