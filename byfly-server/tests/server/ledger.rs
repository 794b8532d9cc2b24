//! The ledger is total (`spec/API.md` §5.1), end to end over real TCP against realistic simulated
//! terminals (no remote cancel): whatever the payment's status when a terminal takes money, the
//! money is credited, the status follows it and an event reports it.

use crate::common;
use byfly_server::store::UnixSeconds;

use crate::common::{App, eventually, pay, spawn_app_with};
use byfly_core::WebhookEvent;
use byfly_terminal::simulator::{FaultMode, Outcome, PayRequest};
use serde_json::json;

async fn app(terminals: usize) -> App {
    spawn_app_with(terminals, false, |_| {}).await
}

fn events(list: &[(WebhookEvent, byfly_core::PaymentStatus, String, String, String)]) -> Vec<WebhookEvent> {
    list.iter().map(|event| event.0).collect()
}

#[tokio::test]
async fn money_on_an_abandoned_operation_decides_the_payment_whatever_is_current() {
    let app = app(2).await;
    // Gold, then the customer switches to Кредит: the Gold operation keeps its terminal.
    let id = app.init(100_000).await;
    let (_, gold) = app.kaspi(&id, "kaspi_gold").await;
    let (code, kredit) = app.kaspi(&id, "kaspi_kredit").await;
    assert_eq!(code, 200, "{kredit}");
    assert_eq!(
        app.status(&id).await["amount"],
        json!(114000),
        "the current Кредит commission counts"
    );
    // The customer pays the Gold QR anyway: 100 000 is what is owed without the Кредит operation.
    app.simulator_with(gold["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    let paid = app.wait_status(&id, "paid").await;
    assert_eq!(
        (&paid["amount"], &paid["paid_amount"], &paid["remaining_amount"]),
        (&json!(100000), &json!(100000), &json!(0))
    );
    assert_eq!(events(&app.events(&id).await), [WebhookEvent::Paid]);

    // The abandoned Кредит operation is still followed: paid too, it is overpayment, reported.
    let kredit_terminal = app.simulator_with(kredit["data"]["qr_code"].as_str().unwrap());
    kredit_terminal.pay(pay("Loan", None)).unwrap();
    let over = eventually("the overpayment is credited", || async {
        let view = app.status(&id).await;
        (view["paid_amount"] == json!(214000)).then_some(view)
    })
    .await;
    // Its commission counts once it succeeded (amount = A₀ + Σ C of successful operations).
    assert_eq!(
        (&over["status"], &over["amount"], &over["overpaid_amount"]),
        (&json!("paid"), &json!(114000), &json!(100000))
    );
    let log = app.events(&id).await;
    assert_eq!(
        events(&log),
        [WebhookEvent::Paid, WebhookEvent::Overpaid],
        "one paid event, ever"
    );
    assert_eq!(log[1].1, byfly_core::PaymentStatus::Paid);
}

#[tokio::test]
async fn money_on_an_abandoned_operation_that_is_not_enough_reports_it_while_processing() {
    let app = app(2).await;
    let id = app.init(100_000).await;
    let (_, gold) = app.kaspi(&id, "kaspi_gold").await;
    let (_, red) = app.kaspi(&id, "kaspi_red").await;
    app.simulator_with(gold["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", Some(60_000)))
        .unwrap();
    let part = eventually("the part is credited", || async {
        let view = app.status(&id).await;
        (view["paid_amount"] == json!(60000)).then_some(view)
    })
    .await;
    assert_eq!(
        (&part["status"], &part["remaining_amount"]),
        (&json!("processing"), &json!(40000))
    );
    let log = app.events(&id).await;
    assert_eq!(events(&log), [WebhookEvent::PartiallyPaid]);
    assert_eq!(
        log[0].1,
        byfly_core::PaymentStatus::Processing,
        "the payload shows it still processing"
    );
    // The current Red operation is declined: what was received stands, the payment waits for a top-up.
    app.simulator_with(red["data"]["qr_code"].as_str().unwrap())
        .pay(PayRequest {
            outcome: Outcome::Fail,
            ..PayRequest::default()
        })
        .unwrap();
    let back = app.wait_status(&id, "partially_paid").await;
    assert_eq!(back["remaining_amount"], json!(40000));
    assert_eq!(
        events(&app.events(&id).await),
        [WebhookEvent::PartiallyPaid, WebhookEvent::PartiallyPaid],
        "the status changed from what the merchant was told: reported"
    );
}

#[tokio::test]
async fn money_after_the_payment_went_back_to_pending_or_failed_is_credited() {
    let app = app(1).await;
    let terminal = &app.simulators[0];
    for failed_first in [false, true] {
        let id = app.init(20_000).await;
        if failed_first {
            let (_, started) = app.kaspi(&id, "kaspi_gold").await;
            assert!(started["data"]["qr_code"].is_string(), "{started}");
            terminal
                .pay(PayRequest {
                    outcome: Outcome::Fail,
                    ..PayRequest::default()
                })
                .unwrap();
            app.wait_status(&id, "failed").await;
        }
        // The camera cannot read the QR: the payment goes back, the operation runs on.
        terminal.set_fault(FaultMode::NoQr, None);
        let (code, body) = app.kaspi(&id, "kaspi_gold").await;
        assert_eq!((code, &body["code"]), (400, &json!("qr_not_found")), "{body}");
        let back = if failed_first { "failed" } else { "pending" };
        assert_eq!(app.status(&id).await["status"], json!(back));
        terminal.set_fault(FaultMode::None, None);
        // The customer at the terminal pays the QR on its screen anyway.
        terminal.pay(pay("Gold", None)).unwrap();
        app.wait_status(&id, "paid").await;
        let log = events(&app.events(&id).await);
        assert_eq!(log.last(), Some(&WebhookEvent::Paid), "{log:?}");
        assert_eq!(log.iter().filter(|e| **e == WebhookEvent::Paid).count(), 1);
    }
}

#[tokio::test]
async fn money_after_a_full_refund_makes_the_payment_paid_again_and_refundable() {
    let app = app(2).await;
    let id = app.init(10_000).await;
    let (_, gold) = app.kaspi(&id, "kaspi_gold").await;
    let (_, red) = app.kaspi(&id, "kaspi_red").await;
    let gold_terminal = app.simulator_with(gold["data"]["qr_code"].as_str().unwrap());
    let red_terminal = app.simulator_with(red["data"]["qr_code"].as_str().unwrap());
    red_terminal.pay(pay("Red", None)).unwrap();
    app.wait_status(&id, "paid").await;
    let (code, refund) = app.refund(&id, json!({})).await;
    assert_eq!(code, 200, "{refund}");
    assert_eq!(refund["data"]["amount"], json!(10000));
    red_terminal.pay(PayRequest::default()).unwrap();
    app.wait_status(&id, "refunded").await;

    // The abandoned Gold operation is still on its terminal, and the customer pays it.
    gold_terminal.pay(pay("Gold", None)).unwrap();
    let again = app.wait_status(&id, "paid").await;
    assert_eq!(
        (&again["paid_amount"], &again["refunded_amount"]),
        (&json!(20000), &json!(10000))
    );
    assert_eq!(
        events(&app.events(&id).await),
        [WebhookEvent::Paid, WebhookEvent::Refunded, WebhookEvent::Paid],
        "one paid event per entry into paid"
    );
    // What is held again can be refunded again.
    let (code, second) = app.refund(&id, json!({})).await;
    assert_eq!(code, 200, "{second}");
    assert_eq!(second["data"]["amount"], json!(10000));
}

#[tokio::test]
async fn a_refund_of_tiyn_is_refused() {
    let app = app(1).await;
    let id = app.init(5_000).await;
    app.kaspi(&id, "kaspi_gold").await;
    app.simulators[0].pay(pay("Gold", None)).unwrap();
    app.wait_status(&id, "paid").await;
    let (code, body) = app.refund(&id, json!({"amount": 100.5})).await;
    assert_eq!(code, 400);
    assert_eq!(body["code"], json!("validation_error"), "{body}");
}

#[tokio::test]
async fn a_stored_row_that_cannot_be_read_never_fails_a_batch() {
    use byfly_server::store::{NewTerminal, TerminalTls};
    let (store, dir, url) = common::fresh_store("byfly-unreadable").await;
    let token = byfly_core::ApiToken::generate(&mut byfly_server::random::OsRandom);
    let source = store
        .create_source(
            "CRM",
            &token.hash(),
            byfly_core::BodyEncoding::Php,
            UnixSeconds(0),
        )
        .await
        .unwrap();
    let now = byfly_server::clock::unix_now();
    let mut operations = Vec::new();
    for n in 1..=2 {
        let terminal = NewTerminal {
            name: format!("Касса {n}"),
            base_url: format!("http://127.0.0.1:{}", 9 + n),
            camera_url: "http://127.0.0.1:9/camera".to_owned(),
            tls: TerminalTls::Verify { server_name: None },
        };
        let added = store
            .add_terminal(&terminal, UnixSeconds(0))
            .await
            .unwrap()
            .unwrap();
        store.record_health(added.id, true, None, None).await.unwrap();
        let id = byfly_core::TransactionId::generate(&mut byfly_server::random::OsRandom);
        let row = common::new_payment_row(id.clone(), source.id, 1_000, now);
        store.insert_payment(&row, None).await.unwrap();
        let payment = store.payment(&id).await.unwrap().unwrap();
        operations.push(common::start_by_hand(&store, &payment, &format!("10000000{n}")).await);
    }
    // A hand edit (or a bug) leaves one operation unreadable.
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&url).await.unwrap();
    let garble = format!(
        "UPDATE operations SET percent = 'a lot' WHERE id = {}",
        operations[0]
    );
    sqlx::query(sqlx::AssertSqlSafe(garble))
        .execute(&raw)
        .await
        .unwrap();
    let due = store.claim_due_operations(now + 10, 15, None, 20).await.unwrap();
    assert_eq!(
        due.iter().map(|op| op.id).collect::<Vec<_>>(),
        [operations[1]],
        "the readable one is polled, the other skipped"
    );
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_client_that_goes_away_mid_kaspi_does_not_stop_the_work() {
    let app = app(1).await;
    let id = app.init(3_000).await;
    // The customer's phone loses the connection while the terminal draws its QR (≈1.5 s).
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let gone = impatient
        .post(format!("{}/payment/{id}/kaspi", app.base))
        .json(&json!({"payment_method": "kaspi_gold"}))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up first");
    // The server carried on: the operation runs with its QR read and stored.
    let view = eventually("the QR is stored", || async {
        let view = app.get_json(&format!("/payment/{id}")).await["data"].clone();
        view["qr_code"].is_string().then_some(view)
    })
    .await;
    assert_eq!(view["status"], json!("processing"));
    assert_eq!(app.simulators[0].state()["current"]["qr"], view["qr_code"]);
}

#[tokio::test]
async fn a_refund_whose_start_got_no_answer_is_never_sent_again_blindly() {
    let app = spawn_app_with(1, false, |config| config.terminal_request_timeout_ms = 700).await;
    let terminal = &app.simulators[0];
    let id = app.init(6_000).await;
    app.kaspi(&id, "kaspi_gold").await;
    terminal.pay(pay("Gold", None)).unwrap();
    app.wait_status(&id, "paid").await;
    // The terminal starts the refund, but its answer is lost.
    terminal.apply_fault(byfly_terminal::simulator::FaultRequest {
        mode: FaultMode::LostAnswer,
        for_ms: Some(2_000),
        for_calls: None,
        call: Some("refund".to_owned()),
    });
    let (code, lost) = app.refund(&id, json!({})).await;
    assert_eq!(
        (code, &lost["code"]),
        (400, &json!("terminal_unavailable")),
        "{lost}"
    );
    assert_eq!(
        terminal.state()["current"]["kind"],
        json!("refund"),
        "it did start there"
    );
    let sent = terminal.counters().calls["refund"];
    assert_eq!(sent, 2, "asked once more on the same terminal, no more");
    // A second request does not send another refund while that one may run.
    let (code, _) = app.refund(&id, json!({})).await;
    assert_eq!(code, 400);
    assert_eq!(terminal.counters().calls["refund"], sent);
}
