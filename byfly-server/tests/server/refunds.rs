//! Refunds over real TCP: through the terminal that took the money, confirmed by the customer with
//! a QR, partial then full, with their events, and every refusal.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{App, pay, spawn_app};
use byfly_core::{ApiToken, BodyEncoding, PaymentStatus, WebhookEvent};
use byfly_server::random::OsRandom;
use byfly_server::store::UnixSeconds;
use serde_json::{Value, json};

async fn refund_status(app: &App, id: &str, refund_id: &str) -> Value {
    let response = app
        .http
        .get(format!("{}/payment/{id}/refund/{refund_id}", app.base))
        .header("X-API-Token", &app.token)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// Polls the refund (which asks the terminal) until it leaves `waiting_confirmation` (bounded).
async fn refund_settled(app: &App, id: &str, refund_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = refund_status(app, id, refund_id).await;
        if body["data"]["status"] != "waiting_confirmation" || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn paid(app: &App, amount: i64) -> String {
    let id = app.init(amount).await;
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], json!("paid"));
    id
}

#[tokio::test]
async fn a_partial_then_a_full_refund_confirmed_by_the_customer() {
    let app = spawn_app(1).await;
    let id = paid(&app, 50_000).await;

    let (code, body) = app.refund(&id, json!({"amount": 20000})).await;
    assert_eq!(code, 200, "{body}");
    let data = &body["data"];
    assert_eq!(
        (&data["status"], &data["amount"]),
        (&json!("waiting_confirmation"), &json!(20000))
    );
    let qr = data["qr_code"].as_str().unwrap();
    assert_eq!(
        data["refund_url"],
        json!(qr.replace("https://qr.kaspi.kz/", "https://pay.kaspi.kz/pay/"))
    );
    let refund_id = data["refund_id"].as_str().unwrap().to_owned();
    assert_eq!(
        refund_status(&app, &id, &refund_id).await["data"]["status"],
        json!("waiting_confirmation")
    );
    // The refund names the payment's transaction on the terminal that took it.
    assert_eq!(app.simulators[0].state()["current"]["kind"], json!("refund"));

    app.simulators[0].pay(pay("Gold", None)).unwrap(); // the customer confirms
    assert_eq!(
        refund_settled(&app, &id, &refund_id).await["data"]["status"],
        json!("completed")
    );
    let status = app.status(&id).await;
    assert_eq!(
        (&status["status"], &status["refunded_amount"]),
        (&json!("paid"), &json!(20000))
    );

    // Too much, then the rest by default.
    let (code, body) = app.refund(&id, json!({"amount": 30001})).await;
    assert_eq!((code, &body["code"]), (400, &json!("refund_too_large")));
    let (code, body) = app.refund(&id, json!({})).await;
    assert_eq!((code, &body["data"]["amount"]), (200, &json!(30000)), "{body}");
    let rest = body["data"]["refund_id"].as_str().unwrap().to_owned();
    app.simulators[0].pay(pay("Gold", None)).unwrap();
    assert_eq!(
        refund_settled(&app, &id, &rest).await["data"]["status"],
        json!("completed")
    );
    let status = app.status(&id).await;
    assert_eq!(
        (&status["status"], &status["refunded_amount"]),
        (&json!("refunded"), &json!(50000))
    );
    let events: Vec<(WebhookEvent, PaymentStatus)> =
        app.events(&id).await.into_iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(
        events,
        [
            (WebhookEvent::Paid, PaymentStatus::Paid),
            (WebhookEvent::Refunded, PaymentStatus::Paid),
            (WebhookEvent::Refunded, PaymentStatus::Refunded),
        ]
    );
    let (code, body) = app.refund(&id, json!({})).await;
    assert_eq!((code, &body["code"]), (400, &json!("payment_refunded")));
}

#[tokio::test]
async fn refusals() {
    let app = spawn_app(1).await;
    let pending = app.init(1_000).await;
    let (code, body) = app.refund(&pending, json!({})).await;
    assert_eq!(
        (code, &body["code"]),
        (400, &json!("invalid_status")),
        "nothing was received"
    );

    let id = paid(&app, 5_000).await;
    let (code, body) = app.refund(&id, json!({"amount": 0})).await;
    assert_eq!((code, &body["code"]), (400, &json!("validation_error")));
    let (code, body) = app.refund(&id, json!({"amount": "много"})).await;
    assert_eq!((code, &body["code"]), (400, &json!("invalid_json")));

    // Another source's payment does not exist for it.
    let stranger = ApiToken::generate(&mut OsRandom);
    app.store
        .create_source("Other", &stranger.hash(), BodyEncoding::Php, UnixSeconds(0))
        .await
        .unwrap();
    let response = app
        .http
        .post(format!("{}/payment/{id}/refund", app.base))
        .header("X-API-Token", stranger.expose())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let unknown = refund_status(&app, &id, "rf_0000000000000000").await;
    assert_eq!(unknown["code"], json!("refund_not_found"));

    // A customer who does not confirm: the refund fails and nothing changes.
    let (_, body) = app.refund(&id, json!({"amount": 1000})).await;
    let refund_id = body["data"]["refund_id"].as_str().unwrap().to_owned();
    let declined = byfly_terminal::simulator::PayRequest {
        outcome: byfly_terminal::simulator::Outcome::Fail,
        ..pay("Gold", None)
    };
    app.simulators[0].pay(declined).unwrap();
    assert_eq!(
        refund_settled(&app, &id, &refund_id).await["data"]["status"],
        json!("failed")
    );
    assert_eq!(app.status(&id).await["refunded_amount"], json!(0));
}

/// Guide scenario 3 (87 719 by credit on a Gold price, then a 12 281 top-up), then the payment's
/// account is settled with `POST /refund {}`. Precondition: a paid payment made of two operations.
async fn scenario_3_paid(app: &App) -> String {
    let id = app.init(100_000).await;
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Loan", Some(100_000)))
        .unwrap();
    assert_eq!(app.settled(&id).await["paid_amount"], json!(87719));
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], json!("paid"));
    id
}

/// A refund view's parts as (amount, status), in the order they run.
fn parts_of(view: &Value) -> Vec<(&Value, &Value)> {
    view["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| (&part["amount"], &part["status"]))
        .collect()
}

/// Waits until the request's part `at` waits for the customer and returns its confirmation QR.
async fn part_waiting(app: &App, id: &str, refund_id: &str, at: usize) -> String {
    common::eventually(
        &format!("part {at} of {refund_id} waits for the customer"),
        || async {
            let view = refund_status(app, id, refund_id).await;
            let part = &view["data"]["parts"][at];
            (part["status"] == json!("waiting_confirmation"))
                .then(|| part["qr_code"].as_str().map(str::to_owned))
                .flatten()
        },
    )
    .await
}

#[tokio::test]
async fn one_refund_spans_operations_largest_first_one_part_after_another() {
    let app = spawn_app(2).await;
    let id = scenario_3_paid(&app).await;

    let (code, body) = app.refund(&id, json!({})).await;
    assert_eq!(code, 200, "{body}");
    let data = &body["data"];
    assert_eq!(
        (&data["amount"], &data["status"], &data["refunded_amount"]),
        (&json!(100000), &json!("waiting_confirmation"), &json!(0))
    );
    assert_eq!(
        parts_of(data),
        [
            (&json!(87719), &json!("waiting_confirmation")),
            (&json!(12281), &json!("queued"))
        ]
    );
    // The answer's confirmation is the running part's.
    assert_eq!(data["qr_code"], data["parts"][0]["qr_code"]);
    let refund_id = data["refund_id"].as_str().unwrap().to_owned();
    let first = data["qr_code"].as_str().unwrap().to_owned();

    app.simulator_with(&first).pay(pay("Gold", None)).unwrap();
    let second = part_waiting(&app, &id, &refund_id, 1).await;
    assert_ne!(second, first);
    let view = refund_status(&app, &id, &refund_id).await;
    assert_eq!(
        (
            &view["data"]["parts"][0]["status"],
            &view["data"]["refunded_amount"]
        ),
        (&json!("completed"), &json!(87719))
    );
    assert_eq!(app.status(&id).await["refunded_amount"], json!(87719));

    app.simulator_with(&second).pay(pay("Gold", None)).unwrap();
    let done = refund_settled(&app, &id, &refund_id).await;
    assert_eq!(
        (&done["data"]["status"], &done["data"]["refunded_amount"]),
        (&json!("completed"), &json!(100000)),
        "{done}"
    );
    let status = app.status(&id).await;
    assert_eq!(
        (&status["status"], &status["refunded_amount"]),
        (&json!("refunded"), &json!(100000))
    );
    // Each part gave back through the terminal that took that money, what that operation received.
    let refunds: Vec<i64> = app
        .simulators
        .iter()
        .flat_map(|simulator| simulator.movements())
        .filter(|movement| movement.kind == "refund")
        .map(|movement| movement.amount)
        .collect();
    let mut refunds = refunds;
    refunds.sort_unstable();
    assert_eq!(refunds, [12281, 87719]);
    // One event per change of the figures: a partial refund, then the full one.
    let events: Vec<(WebhookEvent, PaymentStatus)> =
        app.events(&id).await.into_iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(
        events,
        [
            (WebhookEvent::PartiallyPaid, PaymentStatus::PartiallyPaid),
            (WebhookEvent::Paid, PaymentStatus::Paid),
            (WebhookEvent::Refunded, PaymentStatus::Paid),
            (WebhookEvent::Refunded, PaymentStatus::Refunded),
        ]
    );
}

#[tokio::test]
async fn a_declined_part_stops_the_request_with_what_moved() {
    let app = spawn_app(1).await;
    let id = scenario_3_paid(&app).await;
    let (_, body) = app.refund(&id, json!({"amount": 90000})).await;
    let refund_id = body["data"]["refund_id"].as_str().unwrap().to_owned();
    app.simulators[0].pay(pay("Gold", None)).unwrap();
    part_waiting(&app, &id, &refund_id, 1).await;
    // A second request is refused while this one is open.
    let (code, again) = app.refund(&id, json!({"amount": 1000})).await;
    assert_eq!((code, &again["code"]), (400, &json!("invalid_status")), "{again}");

    let declined = byfly_terminal::simulator::PayRequest {
        outcome: byfly_terminal::simulator::Outcome::Fail,
        ..pay("Gold", None)
    };
    app.simulators[0].pay(declined).unwrap();
    let done = refund_settled(&app, &id, &refund_id).await;
    assert_eq!(
        parts_of(&done["data"]),
        [
            (&json!(87719), &json!("completed")),
            (&json!(2281), &json!("failed"))
        ]
    );
    assert_eq!(
        (&done["data"]["status"], &done["data"]["refunded_amount"]),
        (&json!("partially_completed"), &json!(87719))
    );
    // Closed: what is left can be asked for again.
    let status = app.status(&id).await;
    assert_eq!(status["refunded_amount"], json!(87719));
    let (code, body) = app.refund(&id, json!({})).await;
    assert_eq!((code, &body["data"]["amount"]), (200, &json!(12281)), "{body}");
}

/// Found by the model test (seed 3004): a second request while a refund of everything still waits
/// for the customer is "a refund is running", not "too large".
#[tokio::test]
async fn a_second_refund_waits_for_the_running_one() {
    let app = spawn_app(1).await;
    let id = paid(&app, 40_950).await;
    let (code, body) = app.refund(&id, json!({})).await;
    assert_eq!(code, 200, "{body}");
    let (code, again) = app.refund(&id, json!({"amount": 35429})).await;
    assert_eq!((code, &again["code"]), (400, &json!("invalid_status")), "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("уже выполняется возврат"),
        "{again}"
    );
}
