//! Cancel and expiry over real TCP: who may cancel, what a cancel does to a terminal operation,
//! money that arrives after a cancel, and expiry with its event.

use std::sync::Arc;

use crate::common::{App, pay, spawn_app, spawn_app_on};
use byfly_core::{ApiToken, BodyEncoding, PaymentStatus, TransactionId, WebhookEvent};
use byfly_server::clock::{Clock, ManualClock};
use byfly_server::random::OsRandom;
use byfly_server::store::UnixSeconds;
use byfly_terminal::simulator::PayRequest;
use serde_json::{Value, json};

async fn cancel(app: &App, id: &str, token: &str) -> (u16, Value) {
    app.cancel_as(token, id).await
}

#[tokio::test]
async fn only_the_owner_cancels_and_only_what_can_be_cancelled() {
    let app = spawn_app(1).await;
    let id = app.init(10_000).await;
    let stranger = ApiToken::generate(&mut OsRandom);
    app.store
        .create_source("Other shop", &stranger.hash(), BodyEncoding::Js, UnixSeconds(0))
        .await
        .unwrap();
    let (code, body) = cancel(&app, &id, stranger.expose()).await;
    assert_eq!(
        (code, &body["code"]),
        (404, &json!("transaction_not_found")),
        "another source's payment does not exist for it"
    );
    let (code, body) = cancel(&app, &id, &"X".repeat(64)).await;
    assert_eq!((code, &body["code"]), (401, &json!("invalid_token")));

    let (code, body) = cancel(&app, &id, &app.token).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (&body["message"], &body["data"]["status"]),
        (&json!("Платеж отменен"), &json!("cancelled"))
    );
    assert_eq!(
        app.events(&id).await,
        [(
            WebhookEvent::Cancelled,
            PaymentStatus::Cancelled,
            "0".into(),
            "10000".into(),
            "0".into()
        )]
    );
    let (code, body) = cancel(&app, &id, &app.token).await;
    assert_eq!((code, &body["code"]), (400, &json!("payment_cancelled")));
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!((code, &body["code"]), (400, &json!("payment_cancelled")));

    let paid = app.init(500).await;
    let (_, started) = app.kaspi(&paid, "kaspi_gold").await;
    app.simulator_with(started["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    assert_eq!(app.settled(&paid).await["status"], json!("paid"));
    let (code, body) = cancel(&app, &paid, &app.token).await;
    assert_eq!(
        (code, &body["code"], &body["message"]),
        (400, &json!("already_paid"), &json!("Платеж уже оплачен"))
    );
}

#[tokio::test]
async fn cancelling_a_running_operation_ends_it_on_the_terminal_and_frees_the_terminal() {
    let app = spawn_app(1).await;
    // A friendlier terminal that honours /v2/cancel: this test is about the server using the call
    // where a terminal has it. Without it (the realistic default) the operation keeps its
    // terminal until it ends: realism.rs.
    app.simulators[0].configure(&byfly_terminal::simulator::ConfigPatch {
        remote_cancel: Some(true),
        ..Default::default()
    });
    let id = app.init(20_000).await;
    let (_, started) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(started["data"]["terminal_id"], json!(1));
    let (code, _) = cancel(&app, &id, &app.token).await;
    assert_eq!(code, 200);
    assert_eq!(app.simulators[0].counters().calls["cancel"], 1);
    // The poller hears the terminal's final answer and frees the terminal for the next payment.
    let next = app.init(1_000).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut answer = (0, Value::Null);
    while std::time::Instant::now() < deadline {
        answer = app.kaspi(&next, "kaspi_gold").await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(
        app.status(&id).await["status"],
        json!("cancelled"),
        "a failed abandoned operation changes nothing"
    );
}

#[tokio::test]
async fn money_paid_after_a_cancel_is_credited() {
    let app = spawn_app(1).await;
    let id = app.init(30_000).await;
    let (_, started) = app.kaspi(&id, "kaspi_gold").await;
    // The customer is already confirming in the Kaspi app: the terminal will not cancel.
    let slow = PayRequest {
        after_ms: 300,
        ..pay("Gold", None)
    };
    app.simulator_with(started["data"]["qr_code"].as_str().unwrap())
        .pay(slow)
        .unwrap();
    let (code, _) = cancel(&app, &id, &app.token).await;
    assert_eq!(code, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut status = app.status(&id).await;
    while status["status"] == "cancelled" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = app.status(&id).await;
    }
    assert_eq!(
        (&status["status"], &status["paid_amount"]),
        (&json!("paid"), &json!(30000))
    );
    let events: Vec<WebhookEvent> = app.events(&id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(
        events,
        [WebhookEvent::Cancelled, WebhookEvent::Paid],
        "the merchant hears about the money"
    );
}

#[tokio::test]
async fn expiry_ends_unpaid_payments_but_never_one_in_flight() {
    let app = spawn_app(1).await;
    let idle = app.init(1_000).await;
    let running = app.init(2_000).await;
    app.kaspi(&running, "kaspi_gold").await;
    let later = byfly_server::clock::unix_now() + 2 * 3600;
    let expired = app
        .store
        .expire_due(
            later,
            100,
            &byfly_server::random::event_id,
            &byfly_server::services::settle::on_expiry,
        )
        .await
        .unwrap();
    assert_eq!(expired, 1);
    assert_eq!(app.status(&idle).await["status"], json!("expired"));
    assert_eq!(
        app.events(&idle).await,
        [(
            WebhookEvent::Expired,
            PaymentStatus::Expired,
            "0".into(),
            "1000".into(),
            "0".into()
        )]
    );
    assert_eq!(app.status(&running).await["status"], json!("processing"));
    let (code, body) = app.kaspi(&idle, "kaspi_gold").await;
    assert_eq!((code, &body["code"]), (400, &json!("payment_expired")));
    // Rows are never deleted.
    assert!(
        app.store
            .payment(&TransactionId::parse(&idle).unwrap())
            .await
            .unwrap()
            .is_some()
    );
}

/// Business time is the server's clock, not the wall clock: a payment's lifetime is counted on it,
/// and the sweeper expires the payment once that clock has passed it.
#[tokio::test]
async fn a_payment_expires_when_the_servers_clock_passes_its_lifetime() {
    let clock = Arc::new(ManualClock::default());
    let app = spawn_app_on(0, false, clock.clone(), |_| {}).await;
    let created = clock.now();
    let id = app.init(10_000).await;
    let shown = app.get_json(&format!("/payment/{id}")).await;
    assert_eq!(
        shown["data"]["expires_at"],
        json!(byfly_core::time::DisplayOffset::utc().format(created + 3_600)),
        "the lifetime runs from the server's now"
    );
    assert_eq!(app.status(&id).await["status"], json!("pending"));
    clock.advance(3_600);
    app.wait_status(&id, "expired").await;
    let events: Vec<WebhookEvent> = app.events(&id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(events, [WebhookEvent::Expired]);
}
