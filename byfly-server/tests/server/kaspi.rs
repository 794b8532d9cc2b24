//! `/kaspi` end to end over real TCP: the server, simulated terminals with their cameras, and the
//! guide's four scenarios as a table played figure by figure, with the outbox events each one
//! writes.

use crate::common::{pay, spawn_app, spawn_app_with};
use byfly_core::{Money, PaymentStatus, TransactionId, WebhookEvent};
use byfly_terminal::simulator::{FaultMode, Outcome};
use serde_json::{Value, json};

/// One customer turn of a guide scenario: `/kaspi` with `method` quotes `quote` (`amount`,
/// `original_amount`, `commission_amount` in tenge, `commission_percent`) and asks the terminal
/// for that amount; the customer pays with `product` (`paid`: what they pay, `None`: what is
/// asked); then the payment stands at `after` (`status`, `amount`, `paid_amount`,
/// `remaining_amount`).
struct Turn {
    method: &'static str,
    quote: ([i64; 3], &'static str),
    product: &'static str,
    paid: Option<i64>,
    after: (PaymentStatus, [i64; 3]),
}

/// An event a scenario writes: event, status, `amount`, `remaining_amount`,
/// `actual_amount_received`.
type Written = (
    WebhookEvent,
    PaymentStatus,
    &'static str,
    &'static str,
    &'static str,
);

/// A scenario of the guide: a payment of `amount` tenge, its turns, and the events it writes.
struct Scenario {
    name: &'static str,
    amount: i64,
    turns: &'static [Turn],
    events: &'static [Written],
}

/// The guide's four scenarios, to the tenge.
const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "1: Gold, 50 000",
        amount: 50_000,
        turns: &[Turn {
            method: "kaspi_gold",
            quote: ([50_000, 50_000, 0], "0"),
            product: "Gold",
            paid: None,
            after: (PaymentStatus::Paid, [50_000, 50_000, 0]),
        }],
        events: &[(WebhookEvent::Paid, PaymentStatus::Paid, "50000", "0", "50000")],
    },
    Scenario {
        name: "2: Кредит, 100 000 + 14 %",
        amount: 100_000,
        turns: &[Turn {
            method: "kaspi_kredit",
            quote: ([114_000, 100_000, 14_000], "14"),
            product: "Loan",
            paid: None,
            after: (PaymentStatus::Paid, [114_000, 114_000, 0]),
        }],
        events: &[(WebhookEvent::Paid, PaymentStatus::Paid, "114000", "0", "114000")],
    },
    Scenario {
        name: "3: priced for Gold, paid 100 000 by credit, topped up with Gold",
        amount: 100_000,
        turns: &[
            Turn {
                method: "kaspi_gold",
                quote: ([100_000, 100_000, 0], "0"),
                product: "Loan",
                paid: Some(100_000),
                after: (PaymentStatus::PartiallyPaid, [100_000, 87_719, 12_281]),
            },
            Turn {
                method: "kaspi_gold",
                quote: ([12_281, 12_281, 0], "0"),
                product: "Gold",
                paid: None,
                after: (PaymentStatus::Paid, [100_000, 100_000, 0]),
            },
        ],
        events: &[
            (
                WebhookEvent::PartiallyPaid,
                PaymentStatus::PartiallyPaid,
                "87719",
                "12281",
                "87719",
            ),
            (WebhookEvent::Paid, PaymentStatus::Paid, "100000", "0", "12281"),
        ],
    },
    Scenario {
        name: "4: priced for Кредит, paid 100 000 by Gold",
        amount: 100_000,
        turns: &[Turn {
            method: "kaspi_kredit",
            quote: ([114_000, 100_000, 14_000], "14"),
            product: "Gold",
            paid: Some(100_000),
            after: (PaymentStatus::PartiallyPaid, [114_000, 100_000, 14_000]),
        }],
        events: &[(
            WebhookEvent::PartiallyPaid,
            PaymentStatus::PartiallyPaid,
            "100000",
            "14000",
            "100000",
        )],
    },
];

/// Plays `scenario` on a fresh server with one realistic terminal: every `/kaspi` answer, what the
/// terminal is asked for, the QR the payment shows, every status after the customer pays, and the
/// events written; a paid payment refuses `/kaspi` afterwards.
async fn play(scenario: &Scenario) {
    let name = scenario.name;
    let app = spawn_app(1).await;
    let id = app.init(scenario.amount).await;
    for turn in scenario.turns {
        let answer = app.kaspi_ok(&id, turn.method).await;
        let ([amount, original, commission], percent) = turn.quote;
        assert_eq!(
            (answer.amount, answer.original_amount, answer.commission_amount),
            (tenge(amount), tenge(original), tenge(commission)),
            "{name}"
        );
        assert_eq!(answer.commission_percent.to_string(), percent, "{name}");
        assert_eq!(
            answer.payment_url,
            answer
                .qr_code
                .replace("https://qr.kaspi.kz/", "https://pay.kaspi.kz/pay/")
        );
        assert_eq!(answer.terminal_id, 1);
        assert_eq!(
            app.simulators[0].state()["current"]["amount"],
            json!(amount),
            "{name}: the terminal is asked for what /kaspi quoted"
        );
        assert_eq!(app.status(&id).await["status"], json!("processing"));
        let shown = app.get_json(&format!("/payment/{id}")).await;
        assert_eq!(shown["data"]["qr_code"], json!(answer.qr_code));

        app.simulator_with(&answer.qr_code)
            .pay(pay(turn.product, turn.paid))
            .unwrap();
        let status = app.settled_view(&id).await;
        let (after, [amount, paid, remaining]) = turn.after;
        assert_eq!(
            (
                status.status,
                status.amount,
                status.paid_amount,
                status.remaining_amount
            ),
            (after, tenge(amount), tenge(paid), tenge(remaining)),
            "{name}"
        );
        assert_eq!(status.paid_at.is_some(), after == PaymentStatus::Paid, "{name}");
    }
    let written: Vec<_> = scenario
        .events
        .iter()
        .map(|&(event, status, amount, remaining, received)| {
            (event, status, amount.into(), remaining.into(), received.into())
        })
        .collect();
    assert_eq!(app.events(&id).await, written, "{name}");
    if scenario
        .turns
        .last()
        .is_some_and(|turn| turn.after.0 == PaymentStatus::Paid)
    {
        // Paid is final for /kaspi.
        let (code, body) = app.kaspi(&id, "kaspi_gold").await;
        assert_eq!(
            (code, &body["code"], &body["message"]),
            (400, &json!("already_paid"), &json!("Платеж уже оплачен"))
        );
    }
}

fn tenge(amount: i64) -> Money {
    Money::from_tenge(amount)
}

#[tokio::test]
async fn the_guides_four_scenarios_to_the_tenge() {
    for scenario in &SCENARIOS {
        play(scenario).await;
    }
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
