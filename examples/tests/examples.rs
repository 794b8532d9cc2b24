//! The examples, compiled from the same files, run against a real server (demo mode).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../examples/create_and_wait.rs"]
mod create_and_wait;
#[allow(dead_code)]
#[path = "../examples/webhook_receiver.rs"]
mod webhook_receiver;

use std::time::Duration;

use byfly_client::{Client, WaitOptions, WaitUntil};
use byfly_core::wire::InitPaymentRequest;
use byfly_core::{Money, PaymentStatus};
use byfly_server::demo::RunningDemo;

fn client(demo: &RunningDemo) -> Client {
    Client::builder(&demo.api_url)
        .api_token(&demo.token)
        .admin_token(&demo.admin_token)
        .build()
        .unwrap()
}

#[tokio::test]
async fn create_and_wait_ends_paid() {
    let demo = RunningDemo::start(1, |_| {}).await.unwrap();
    let settled = create_and_wait::create_and_wait(&client(&demo), true)
        .await
        .unwrap();
    assert_eq!(settled.status, PaymentStatus::Paid);
    assert_eq!(settled.paid_amount, Money::from_tenge(50_000));
}

#[tokio::test]
async fn the_receiver_handles_each_event_once_however_often_it_is_sent() {
    let demo = RunningDemo::start(1, |_| {}).await.unwrap();
    let client = client(&demo);
    let receiver = webhook_receiver::Receiver::new("receiver-secret");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/payment", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, receiver.router()).into_future());

    let request = InitPaymentRequest {
        amount: Money::from_tenge(10_000),
        webhook_url: Some(url),
        webhook_secret: Some("receiver-secret".into()),
        ..Default::default()
    };
    let id = client
        .create_payment(&request, None)
        .await
        .unwrap()
        .transaction_id;
    client.start_kaspi(&id, None).await.unwrap();
    client
        .demo_simulate(&id, &serde_json::json!({"product": "Red"}))
        .await
        .unwrap();
    let options = WaitOptions {
        until: WaitUntil::Final,
        initial_interval: Duration::from_millis(50),
        ..WaitOptions::default()
    };
    assert_eq!(
        client.wait_for_payment(&id, &options).await.unwrap().status,
        PaymentStatus::Paid
    );

    // Wait for the delivery as the admin API records it, then send it again by hand.
    let event_id = loop {
        let events = client.admin().payment_webhooks(&id).await.unwrap();
        if let Some(event) = events.iter().find(|e| e.delivered) {
            break event.event_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let resent = client.admin().retry_webhook(&event_id).await.unwrap();
    assert_eq!(resent.response_code, Some(200));
    let deliveries = receiver.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries, vec![event_id.clone(), event_id.clone()]);
    assert_eq!(receiver.handled(), vec![event_id]);
}
