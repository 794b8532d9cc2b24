//! `/kaspi` end to end over real TCP: the server, simulated terminals with their cameras, and the
//! guide's four scenarios figure by figure, with the outbox events each one writes.

use crate::common::{pay, spawn_app, spawn_app_with};
use byfly_core::{PaymentStatus, TransactionId, WebhookEvent};
use byfly_terminal::simulator::{FaultMode, Outcome};
use serde_json::{Value, json};

#[tokio::test]
async fn scenario_1_gold_50000() {
    let app = spawn_app(1).await;
    let id = app.init(50_000).await;
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["message"], json!("Платеж инициирован"));
    let data = &body["data"];
    assert_eq!(
        (
            &data["amount"],
            &data["original_amount"],
            &data["commission_amount"],
            &data["commission_percent"]
        ),
        (&json!(50000), &json!(50000), &json!(0), &json!(0))
    );
    let qr = data["qr_code"].as_str().unwrap();
    assert_eq!(
        data["payment_url"],
        json!(qr.replace("https://qr.kaspi.kz/", "https://pay.kaspi.kz/pay/"))
    );
    assert_eq!(data["terminal_id"], json!(1));
    assert_eq!(app.status(&id).await["status"], json!("processing"));
    let shown: Value = app
        .http
        .get(format!("{}/payment/{id}", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["data"]["qr_code"], json!(qr));

    app.simulator_with(qr).pay(pay("Gold", None)).unwrap();
    let status = app.settled(&id).await;
    assert_eq!(
        (
            &status["status"],
            &status["amount"],
            &status["paid_amount"],
            &status["remaining_amount"]
        ),
        (&json!("paid"), &json!(50000), &json!(50000), &json!(0))
    );
    assert!(status["paid_at"].is_string());
    assert_eq!(
        app.events(&id).await,
        [(
            WebhookEvent::Paid,
            PaymentStatus::Paid,
            "50000".into(),
            "0".into(),
            "50000".into()
        )]
    );
    // Paid is final for /kaspi.
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(
        (code, &body["code"], &body["message"]),
        (400, &json!("already_paid"), &json!("Платеж уже оплачен"))
    );
}

#[tokio::test]
async fn scenario_2_kredit_100000() {
    let app = spawn_app(1).await;
    let id = app.init(100_000).await;
    let (code, body) = app.kaspi(&id, "kaspi_kredit").await;
    assert_eq!(code, 200, "{body}");
    let data = &body["data"];
    assert_eq!(
        (
            &data["amount"],
            &data["original_amount"],
            &data["commission_amount"],
            &data["commission_percent"]
        ),
        (&json!(114000), &json!(100000), &json!(14000), &json!(14))
    );
    assert_eq!(
        app.simulators[0].state()["current"]["amount"],
        json!(114000),
        "the terminal is asked for 114 000"
    );
    app.simulator_with(data["qr_code"].as_str().unwrap())
        .pay(pay("Loan", None))
        .unwrap();
    let status = app.settled(&id).await;
    assert_eq!(
        (
            &status["status"],
            &status["amount"],
            &status["paid_amount"],
            &status["remaining_amount"],
            &status["commission_amount"]
        ),
        (
            &json!("paid"),
            &json!(114000),
            &json!(114000),
            &json!(0),
            &json!(14000)
        )
    );
    assert_eq!(
        app.events(&id).await,
        [(
            WebhookEvent::Paid,
            PaymentStatus::Paid,
            "114000".into(),
            "0".into(),
            "114000".into()
        )]
    );
}

#[tokio::test]
async fn scenario_3_gold_priced_paid_by_credit_then_topped_up() {
    let app = spawn_app(1).await;
    let id = app.init(100_000).await;
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Loan", Some(100_000)))
        .unwrap();
    let status = app.settled(&id).await;
    assert_eq!(
        (
            &status["status"],
            &status["amount"],
            &status["paid_amount"],
            &status["remaining_amount"]
        ),
        (
            &json!("partially_paid"),
            &json!(100000),
            &json!(87719),
            &json!(12281)
        )
    );
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (&body["data"]["amount"], &body["data"]["original_amount"]),
        (&json!(12281), &json!(12281))
    );
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    let status = app.settled(&id).await;
    assert_eq!(
        (
            &status["status"],
            &status["amount"],
            &status["paid_amount"],
            &status["remaining_amount"]
        ),
        (&json!("paid"), &json!(100000), &json!(100000), &json!(0))
    );
    assert_eq!(
        app.events(&id).await,
        [
            (
                WebhookEvent::PartiallyPaid,
                PaymentStatus::PartiallyPaid,
                "87719".into(),
                "12281".into(),
                "87719".into()
            ),
            (
                WebhookEvent::Paid,
                PaymentStatus::Paid,
                "100000".into(),
                "0".into(),
                "12281".into()
            ),
        ]
    );
}

#[tokio::test]
async fn scenario_4_kredit_priced_paid_by_gold() {
    let app = spawn_app(1).await;
    let id = app.init(100_000).await;
    let (_, body) = app.kaspi(&id, "kaspi_kredit").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", Some(100_000)))
        .unwrap();
    let status = app.settled(&id).await;
    assert_eq!(
        (
            &status["status"],
            &status["amount"],
            &status["paid_amount"],
            &status["remaining_amount"]
        ),
        (
            &json!("partially_paid"),
            &json!(114000),
            &json!(100000),
            &json!(14000)
        )
    );
    assert_eq!(
        app.events(&id).await,
        [(
            WebhookEvent::PartiallyPaid,
            PaymentStatus::PartiallyPaid,
            "100000".into(),
            "14000".into(),
            "100000".into()
        )]
    );
}

#[tokio::test]
async fn concurrent_and_repeated_kaspi_calls_make_one_operation() {
    let app = spawn_app(2).await;
    let id = app.init(5_000).await;
    let (first, second) = tokio::join!(app.kaspi(&id, "kaspi_gold"), app.kaspi(&id, "kaspi_gold"));
    assert_eq!((first.0, second.0), (200, 200), "{} / {}", first.1, second.1);
    assert_eq!(first.1["data"]["qr_code"], second.1["data"]["qr_code"]);
    let (_, third) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(
        third["data"]["qr_code"], first.1["data"]["qr_code"],
        "the same method again answers the same operation"
    );
    let payment_calls: u64 = app
        .simulators
        .iter()
        .map(|s| s.counters().calls.get("payment").copied().unwrap_or(0))
        .sum();
    assert_eq!(payment_calls, 1);
    let payment = app
        .store
        .payment(&TransactionId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app.store.operations(payment.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn failover_busy_unavailable_and_unreadable_qr() {
    let app = spawn_app(2).await;
    // The least recently used terminal is down: the other one takes the payment.
    app.simulators[0].set_fault(FaultMode::Down, None);
    let id = app.init(1_000).await;
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["terminal_id"], json!(2));
    assert!(
        !app.store.terminals().await.unwrap()[0].healthy,
        "the dead terminal left the pool"
    );

    // The only healthy terminal is busy now.
    let other = app.init(2_000).await;
    let (code, body) = app.kaspi(&other, "kaspi_gold").await;
    assert_eq!((code, &body["code"]), (400, &json!("terminals_busy")), "{body}");
    assert_eq!(body["message"], json!("Все терминалы заняты, попробуйте позже"));

    // A terminal that cannot be asked keeps its operation (the customer may be paying).
    app.simulators[1].set_fault(FaultMode::Down, None);
    assert_eq!(app.status(&id).await["status"], json!("processing"));

    // The camera never shows a QR: the terminal's operation is abandoned, the payment untouched.
    let fresh = spawn_app(1).await;
    fresh.simulators[0].set_fault(FaultMode::NoQr, None);
    let id = fresh.init(3_000).await;
    let (code, body) = fresh.kaspi(&id, "kaspi_gold").await;
    assert_eq!((code, &body["code"]), (400, &json!("qr_not_found")), "{body}");
    assert_eq!(
        fresh.status(&id).await["status"],
        json!("pending"),
        "the payment returns to the status it had"
    );
    assert!(
        fresh.events(&id).await.is_empty(),
        "no webhook for a failed /kaspi"
    );

    let down = spawn_app(1).await;
    down.simulators[0].set_fault(FaultMode::Down, None);
    let id = down.init(3_000).await;
    let (code, body) = down.kaspi(&id, "kaspi_gold").await;
    assert_eq!(
        (code, &body["code"]),
        (400, &json!("terminal_unavailable")),
        "{body}"
    );
    assert_eq!(
        body["message"],
        json!("Терминал недоступен. Проверьте подключение к сети терминалов")
    );
}

#[tokio::test]
async fn a_declined_payment_fails_and_can_be_retried() {
    let app = spawn_app(1).await;
    let id = app.init(7_000).await;
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    let mut declined = pay("Gold", None);
    declined.outcome = Outcome::Fail;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(declined)
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], json!("failed"));
    assert_eq!(
        app.events(&id).await,
        [(
            WebhookEvent::Failed,
            PaymentStatus::Failed,
            "0".into(),
            "7000".into(),
            "0".into()
        )]
    );
    let (code, body) = app.kaspi(&id, "kaspi_red").await;
    assert_eq!(code, 200, "{body}");
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Red", None))
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], json!("paid"));
    let (code, body) = app.kaspi("A3F5D9E2B1C8", "kaspi_gold").await;
    assert_eq!((code, &body["code"]), (404, &json!("transaction_not_found")));
    let fresh = app.init(10).await;
    let (code, body) = app.kaspi(&fresh, "paypal").await;
    assert_eq!(
        (code, &body["code"]),
        (400, &json!("invalid_payment_method")),
        "{body}"
    );
}

#[tokio::test]
async fn demo_mode_plays_the_customer_and_other_modes_do_not_have_the_route() {
    let app = spawn_app_with(1, true, |_| {}).await;
    let id = app
        .init_as(
            &app.token,
            json!({"amount": 100000, "webhook_url": format!("{}/dev/webhooks", app.base),
                      "webhook_secret": byfly_server::http::dev::DEMO_WEBHOOK_SECRET}),
        )
        .await;
    let simulate = |body: Value| {
        app.http
            .post(format!("{}/dev/simulate/{id}", app.base))
            .json(&body)
            .send()
    };
    let before: Value = simulate(json!({"product": "Loan"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        before["code"],
        json!("invalid_status"),
        "nothing to pay before /kaspi: {before}"
    );
    app.kaspi(&id, "kaspi_kredit").await;
    let response = simulate(json!({"product": "Loan"})).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let status = app.settled(&id).await;
    assert_eq!(
        (&status["status"], &status["paid_amount"]),
        (&json!("paid"), &json!(114000))
    );
    // The demo's own receiver got the paid webhook and verified both signatures.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut inbox = Value::Null;
    while std::time::Instant::now() < deadline {
        inbox = app
            .http
            .get(format!("{}/dev/webhooks", app.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if inbox["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        (&inbox["data"][0]["event"], &inbox["data"][0]["verified"]),
        (&json!("paid"), &json!(true)),
        "{inbox}"
    );

    let plain = spawn_app(1).await;
    let id = plain.init(1_000).await;
    let response = plain
        .http
        .post(format!("{}/dev/simulate/{id}", plain.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}
