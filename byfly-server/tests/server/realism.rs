//! The server against terminals as harsh as real ones (`spec/KASPI_TERMINAL.md` §7), over real
//! TCP with the realistic simulator: one test per row of that table — no remote cancel, forgotten
//! processes, registration that waits for a cashier, token expiry, a stale screen, refund
//! confirmation, a refund's own transactionId, double starts, and a lost answer.

use crate::common;

use std::time::Duration;

use crate::common::{ADMIN, App, admin, eventually, pay, spawn_app_with};
use byfly_core::WebhookEvent;
use byfly_server::store::UnixSeconds;
use byfly_server::store::{NewTerminal, RegistrationState, TerminalId, TerminalTls};
use byfly_server::terminals::TerminalPool;
use byfly_terminal::simulator::{FaultMode, FaultRequest, PayMethod, PayRequest, Simulator, SimulatorConfig};
use reqwest::Method;
use serde_json::{Value, json};

/// An app with an admin token and terminals checked every second.
async fn app(terminals: usize) -> App {
    spawn_app_with(terminals, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
        config.health_check_interval_secs = 1;
        config.terminal_request_timeout_ms = 700;
    })
    .await
}

async fn kaspi_raw(app: &App, id: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/payment/{id}/kaspi", app.base))
        .json(&json!({"payment_method": "kaspi_gold"}))
        .send()
        .await
        .unwrap()
}

async fn terminal_view(app: &App, id: i64) -> Value {
    admin(app, Method::GET, &format!("/terminals/{id}"), None).await.1["data"].clone()
}

/// Starts an operator's registration and waits until the terminal shows the cashier its prompt.
async fn start_registration(app: &App, id: i64, simulator: &Simulator) {
    let (code, started) = admin(app, Method::POST, &format!("/terminals/{id}/register"), None).await;
    assert_eq!(code, 202, "{started}");
    assert_eq!(started["data"]["registration"]["state"], json!("pending"));
    eventually("the terminal asks the cashier", || async {
        simulator.registration_pending().then_some(())
    })
    .await;
}

async fn registration_outcome(app: &App, id: i64) -> Value {
    eventually("the registration is decided", || async {
        let view = terminal_view(app, id).await;
        (view["registration"]["state"] != json!("pending")).then_some(view)
    })
    .await
}

#[tokio::test]
async fn registration_is_an_operators_action_that_waits_for_the_cashier() {
    let app = app(0).await;
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let new =
        json!({"name": "Касса 1", "base_url": simulator.base_url(), "camera_url": simulator.camera_url()});
    let (code, added) = admin(&app, Method::POST, "/terminals", Some(new)).await;
    assert_eq!(code, 201, "{added}");
    let id = added["data"]["id"].as_i64().unwrap();
    assert_eq!(added["data"]["needs_registration"], json!(true));

    // Health checks run, and never register by themselves.
    eventually("a health check of the new terminal", || async {
        let record = app.store.terminal(TerminalId(id)).await.unwrap().unwrap();
        record.last_checked_at.is_some().then_some(())
    })
    .await;
    let health = app.get_json("/health").await;
    assert_eq!(
        health["data"]["terminals"]["needs_registration"],
        json!(1),
        "{health}"
    );
    assert_eq!(health["data"]["terminals"]["healthy"], json!(0));
    let payment = app.init(1_000).await;
    let refused: Value = kaspi_raw(&app, &payment).await.json().await.unwrap();
    assert_eq!(refused["code"], json!("terminal_unavailable"), "nor do payments");
    assert!(!simulator.counters().calls.contains_key("register"));

    // The operator registers; the cashier accepts a little later.
    start_registration(&app, id, &simulator).await;
    assert_eq!(
        terminal_view(&app, id).await["registration"]["state"],
        json!("pending")
    );
    simulator.approve_registration().unwrap();
    let approved = registration_outcome(&app, id).await;
    assert_eq!(approved["registration"]["state"], json!("approved"), "{approved}");
    assert_eq!(
        (&approved["healthy"], &approved["needs_registration"]),
        (&json!(true), &json!(false))
    );

    // Registering again: the name is taken on the terminal (105), with the on-terminal remedy.
    let (code, _) = admin(&app, Method::POST, &format!("/terminals/{id}/register"), None).await;
    assert_eq!(code, 202);
    let taken = registration_outcome(&app, id).await;
    assert_eq!(
        taken["registration"]["state"],
        json!("already_registered"),
        "{taken}"
    );
    assert!(
        taken["registration"]["message"]
            .as_str()
            .unwrap()
            .contains("«Запретить»")
    );
    assert_eq!(taken["healthy"], json!(true), "its tokens still work");

    // The terminal's administrator forbids the integration: our tokens are refused (401, and the
    // refresh is refused too), so the terminal needs registering again.
    simulator.clear_registrations();
    let dropped = eventually("the refused tokens are dropped", || async {
        let view = terminal_view(&app, id).await;
        (view["needs_registration"] == json!(true)).then_some(view)
    })
    .await;
    assert_eq!(dropped["healthy"], json!(false));

    // A cashier who declines, then one who accepts.
    start_registration(&app, id, &simulator).await;
    simulator.decline_registration().unwrap();
    let declined = registration_outcome(&app, id).await;
    assert_eq!(declined["registration"]["state"], json!("declined"), "{declined}");
    start_registration(&app, id, &simulator).await;
    simulator.approve_registration().unwrap();
    assert_eq!(
        registration_outcome(&app, id).await["registration"]["state"],
        json!("approved")
    );
    let (code, body) = admin(&app, Method::POST, "/terminals/999/register", None).await;
    assert_eq!((code, &body["code"]), (404, &json!("not_found")));
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let (store, dir, _) = common::fresh_store("byfly-refresh").await;
    // Tokens that live 30 minutes: less than the hour before expiry at which the checker refreshes.
    let simulator = Simulator::start_local(SimulatorConfig {
        token_ttl: Duration::from_secs(30 * 60),
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let terminal = NewTerminal {
        name: "Касса 1".to_owned(),
        base_url: simulator.base_url(),
        camera_url: simulator.camera_url(),
        tls: TerminalTls::Verify { server_name: None },
    };
    let record = store
        .add_terminal(&terminal, UnixSeconds(0))
        .await
        .unwrap()
        .unwrap();
    let pool = TerminalPool::new(store.clone());
    let state = byfly_server::demo::register_simulated(&store, &pool, &record, &simulator)
        .await
        .unwrap();
    assert_eq!(state, RegistrationState::Approved);
    let registered = store.terminal(record.id).await.unwrap().unwrap();
    assert_eq!(
        simulator.counters().calls["revoke"],
        1,
        "refreshed right after registering"
    );
    let before = registered.tokens.clone().unwrap();
    assert!(pool.check(&registered).await.unwrap());
    let after = store.terminal(record.id).await.unwrap().unwrap();
    assert_ne!(after.tokens.unwrap().access_token, before.access_token);
    assert_eq!(simulator.counters().calls["revoke"], 2);
    assert_eq!(
        simulator.counters().auth_rejections,
        0,
        "never a call with an expired token"
    );
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn without_remote_cancel_a_cancelled_operation_keeps_its_terminal_and_its_money_counts() {
    let app = app(1).await;
    let first = app.init(20_000).await;
    let (code, started) = app.kaspi(&first, "kaspi_gold").await;
    assert_eq!(code, 200, "{started}");
    assert_eq!(app.cancel(&first).await.0, 200);
    assert_eq!(
        app.simulators[0].state()["current"]["status"],
        json!("wait"),
        "the terminal has no remote cancel: its operation runs on"
    );

    // The terminal is still taken: a customer is told when it should be free.
    let second = app.init(5_000).await;
    let busy = kaspi_raw(&app, &second).await;
    let retry_header: u64 = busy.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let busy: Value = busy.json().await.unwrap();
    assert_eq!(busy["code"], json!("terminals_busy"), "{busy}");
    assert_eq!(busy["message"], json!("Все терминалы заняты, попробуйте позже"));
    let retry_after = busy["retry_after"].as_u64().unwrap();
    assert!((1..=300).contains(&retry_after), "{busy}");
    assert_eq!(retry_header, retry_after);
    assert!(busy["retry_at"].is_string());

    // The customer pays the cancelled operation anyway: the money is credited and reported.
    app.simulator_with(started["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    app.wait_status(&first, "paid").await;
    let events = app.events(&first).await;
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        [WebhookEvent::Cancelled, WebhookEvent::Paid]
    );
    // And the terminal is free again.
    let (code, body) = app.kaspi(&second, "kaspi_gold").await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn a_terminal_that_forgot_an_operation_a_customer_saw_holds_it_for_review() {
    let app = app(1).await;
    let simulator = &app.simulators[0];
    let mut resolved = Vec::new();
    for (outcome, expected) in [("not_paid", "failed"), ("paid", "paid")] {
        let id = app.init(50_000).await;
        let (code, body) = app.kaspi(&id, "kaspi_gold").await;
        assert_eq!(code, 200, "{body}");
        // The terminal restarts before the customer's answer is known: `101` from now on.
        simulator.reboot();
        let op = eventually("the forgotten operation is flagged for review", || async {
            let (_, review) = admin(&app, Method::GET, "/operations/review", None).await;
            review["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|op| op["transaction_id"] == json!(id))
                .cloned()
        })
        .await;
        assert!(op["review_reason"].as_str().unwrap().starts_with("101"), "{op}");
        assert_eq!(op["holds_terminal"], json!(true));
        // What the terminal said is in front of the operator: the `101`.
        let answers = op["answers"].as_array().unwrap();
        assert!(
            answers.last().unwrap()["answer"]
                .as_str()
                .unwrap()
                .contains("process not found"),
            "{op}"
        );
        assert_eq!(
            app.status(&id).await["status"],
            json!("processing"),
            "never failed on a 101"
        );
        let other = app.init(1_000).await;
        let busy: Value = kaspi_raw(&app, &other).await.json().await.unwrap();
        assert_eq!(busy["code"], json!("terminals_busy"), "the terminal stays held");

        let decision = if outcome == "paid" {
            json!({"outcome": "paid", "amount": 50000, "transaction_id": "1234567890", "note": "виден в истории терминала"})
        } else {
            json!({"outcome": "not_paid", "note": "нет в истории терминала"})
        };
        let path = format!("/operations/{}/resolve", op["id"]);
        let (code, body) = admin(&app, Method::POST, &path, Some(decision.clone())).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["data"]["holds_terminal"], json!(false));
        assert_eq!(app.status(&id).await["status"], json!(expected));
        // Recorded: what, by whom (the bearer token names nobody), when, and why.
        let recorded = &body["data"]["decision"];
        assert_eq!(recorded["outcome"], json!(outcome), "{body}");
        assert_eq!(recorded["decided_by"], json!("admin token"));
        assert_eq!(recorded["note"], decision["note"]);
        assert!(recorded["decided_at"].as_str().unwrap().len() == 19, "{recorded}");
        if outcome == "paid" {
            assert_eq!(recorded["amount"], json!(50000));
            assert_eq!(recorded["transaction_id"], json!("1234567890"));
        }
        let (code, again) = admin(&app, Method::POST, &path, Some(json!({"outcome": "not_paid"}))).await;
        assert_eq!(
            (code, &again["code"]),
            (400, &json!("invalid_status")),
            "decided once"
        );
        resolved.push(id);
    }
    assert_eq!(
        app.events(&resolved[0])
            .await
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        [WebhookEvent::Failed]
    );
    assert_eq!(
        app.events(&resolved[1])
            .await
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        [WebhookEvent::Paid]
    );
    let (code, body) = admin(
        &app,
        Method::POST,
        "/operations/1/resolve",
        Some(json!({"outcome": "maybe"})),
    )
    .await;
    assert_eq!((code, &body["code"]), (400, &json!("validation_error")));
}

#[tokio::test]
async fn a_101_for_an_operation_never_shown_settles_it_failed() {
    let app = app(1).await;
    let id = app.init(7_000).await;
    let payment = app.payment_row(&id).await;
    // An operation the terminal started but nobody ever saw (no QR read, no answer polled), whose
    // process the terminal no longer knows.
    common::start_by_hand(&app.store, &payment, "100000001").await;
    app.wait_status(&id, "failed").await;
    assert!(app.simulators[0].counters().not_found_answers >= 1);
    assert_eq!(
        app.events(&id).await.iter().map(|e| e.0).collect::<Vec<_>>(),
        [WebhookEvent::Failed]
    );
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(code, 200, "the terminal is free again: {body}");
}

#[tokio::test]
async fn the_qr_still_on_screen_from_the_previous_operation_is_never_handed_out() {
    let app = app(1).await;
    let simulator = &app.simulators[0];
    let mut handed_out = Vec::new();
    for amount in [3_000, 4_000, 5_000] {
        let id = app.init(amount).await;
        let (code, body) = app.kaspi(&id, "kaspi_gold").await;
        assert_eq!(code, 200, "{body}");
        let qr = body["data"]["qr_code"].as_str().unwrap().to_owned();
        assert_eq!(
            simulator.state()["current"]["qr"],
            json!(qr),
            "the terminal's own, current QR"
        );
        simulator.pay(pay("Gold", None)).unwrap();
        app.wait_status(&id, "paid").await;
        handed_out.push(qr);
    }
    handed_out.dedup();
    assert_eq!(handed_out.len(), 3, "{handed_out:?}");
}

#[tokio::test]
async fn after_a_qr_nobody_read_the_next_operation_still_gets_its_own() {
    let app = app(1).await;
    let simulator = &app.simulators[0];
    // The camera cannot read the first operation's QR; the customer pays it off the screen.
    let first = app.init(3_000).await;
    simulator.set_fault(FaultMode::NoQr, None);
    let (code, body) = app.kaspi(&first, "kaspi_gold").await;
    assert_eq!((code, &body["code"]), (400, &json!("qr_not_found")), "{body}");
    let unread = simulator.state()["current"]["qr"].as_str().unwrap().to_owned();
    simulator.set_fault(FaultMode::None, None);
    simulator.pay(pay("Gold", None)).unwrap();
    app.wait_status(&first, "paid").await;
    // The next operation's screen redraws from that QR, whose text the server never saw.
    let second = app.init(4_000).await;
    let (code, body) = app.kaspi(&second, "kaspi_gold").await;
    assert_eq!(code, 200, "{body}");
    let handed_out = body["data"]["qr_code"].as_str().unwrap();
    assert_ne!(handed_out, unread, "the previous operation's QR was handed out");
    assert_eq!(simulator.state()["current"]["qr"], json!(handed_out));
}

#[tokio::test]
async fn refunds_wait_for_their_own_confirmation_qr_and_card_refunds_show_none() {
    let app = app(1).await;
    let simulator = &app.simulators[0];

    // A QR payment's refund: its confirmation QR appears a few seconds later, while the screen
    // still shows the payment's.
    let id = app.init(10_000).await;
    let (_, started) = app.kaspi(&id, "kaspi_gold").await;
    let payment_qr = started["data"]["qr_code"].as_str().unwrap().to_owned();
    simulator.pay(pay("Gold", None)).unwrap();
    app.wait_status(&id, "paid").await;
    let (code, waiting) = app.refund(&id, json!({})).await;
    assert_eq!(code, 200, "{waiting}");
    assert_eq!(
        waiting["data"]["status"],
        json!("waiting_confirmation"),
        "{waiting}"
    );
    let confirmation = waiting["data"]["qr_code"].as_str().unwrap();
    assert_ne!(confirmation, payment_qr);
    assert_eq!(simulator.state()["current"]["qr"], json!(confirmation));
    // The console sees the terminal busy with the refund.
    let (code, terminal) = admin(&app, Method::GET, "/terminals/1", None).await;
    assert_eq!(code, 200, "{terminal}");
    assert_eq!(
        terminal["data"]["busy_with"]["kind"],
        json!("refund"),
        "{terminal}"
    );
    assert_eq!(terminal["data"]["busy_with"]["transaction_id"], json!(id));
    simulator.pay(PayRequest::default()).unwrap();
    app.wait_status(&id, "refunded").await;

    // A card payment's refund: no QR at all, the card is presented at the terminal.
    let card = app.init(8_000).await;
    app.kaspi(&card, "kaspi_gold").await;
    simulator
        .pay(PayRequest {
            method: PayMethod::Card,
            ..PayRequest::default()
        })
        .unwrap();
    app.wait_status(&card, "paid").await;
    let (code, waiting) = app.refund(&card, json!({})).await;
    assert_eq!(code, 200, "{waiting}");
    assert_eq!(
        waiting["data"]["status"],
        json!("waiting_confirmation"),
        "{waiting}"
    );
    assert!(waiting["data"]["qr_code"].is_null(), "{waiting}");
    assert_eq!(simulator.state()["current"]["kind"], json!("refund"));
    simulator.pay(PayRequest::default()).unwrap();
    app.wait_status(&card, "refunded").await;

    // Each refund is stored with the terminal's new transactionId, never confused with the payment's.
    for id in [&id, &card] {
        let operations = app.store.operations(app.payment_row(id).await.id).await.unwrap();
        let (refunds, payments): (Vec<_>, Vec<_>) = operations.iter().partition(|op| op.is_refund());
        let paid_with = payments[0].terminal_transaction_id.clone().unwrap();
        let refunded_with = refunds[0].terminal_transaction_id.clone().unwrap();
        assert_ne!(refunded_with, paid_with);
        let movements = simulator.movements();
        let movement = movements
            .iter()
            .find(|m| m.transaction_id == refunded_with)
            .unwrap();
        assert_eq!(movement.refund_of.as_deref(), Some(paid_with.as_str()));
    }
}

#[tokio::test]
async fn a_lost_answer_to_a_payment_start_holds_that_terminal_and_never_tries_the_next() {
    let app = app(2).await;
    let (first, second) = (&app.simulators[0], &app.simulators[1]);
    // The least recently used terminal is the first: it starts the payment, the answer is lost.
    first.set_fault(FaultMode::LostAnswer, Some(Duration::from_secs(2)));
    let id = app.init(9_000).await;
    let refused: Value = kaspi_raw(&app, &id).await.json().await.unwrap();
    assert_eq!(refused["code"], json!("terminal_unavailable"), "{refused}");
    assert_eq!(
        first.state()["current"]["status"],
        json!("wait"),
        "it did start there"
    );
    assert_eq!(
        first.counters().calls["payment"],
        2,
        "asked once more, on the same terminal"
    );
    assert!(
        !second.counters().calls.contains_key("payment"),
        "the next terminal was not tried"
    );
    assert_eq!(app.status(&id).await["status"], json!("pending"));

    // The first terminal stays held; the customer's next try goes to the other one.
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(second.counters().calls["payment"], 1);
    second.pay(pay("Gold", None)).unwrap();
    app.wait_status(&id, "paid").await;
    let uncertain = app
        .store
        .operations(app.payment_row(&id).await.id)
        .await
        .unwrap()
        .into_iter()
        .find(|op| op.start_uncertain)
        .unwrap();
    assert!(uncertain.holds_terminal);

    // After its deadline (the terminal ends an unpaid operation by itself) it is freed for review.
    byfly_server::services::expiry::sweep(
        app.store.as_ref(),
        uncertain.deadline_at + 1,
        byfly_server::services::expiry::STALE_START_SECS,
    )
    .await
    .unwrap();
    let (_, review) = admin(&app, Method::GET, "/operations/review", None).await;
    let listed = review["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["id"] == json!(uncertain.id))
        .cloned()
        .unwrap();
    assert_eq!(listed["holds_terminal"], json!(false), "{listed}");
    assert!(listed["review_reason"].as_str().unwrap().contains("/v2/payment"));
    // The operator checks the terminal's history: nothing was paid; it leaves the queue.
    let path = format!("/operations/{}/resolve", uncertain.id);
    let (code, body) = admin(&app, Method::POST, &path, Some(json!({"outcome": "not_paid"}))).await;
    assert_eq!(code, 200, "{body}");
    let (_, review) = admin(&app, Method::GET, "/operations/review", None).await;
    assert!(
        review["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|op| op["id"] != json!(uncertain.id))
    );
}

#[tokio::test]
async fn an_unreadable_answer_that_had_not_started_anything_is_proved_so_by_asking_again() {
    let app = app(2).await;
    let (first, second) = (&app.simulators[0], &app.simulators[1]);
    // One garbled answer: asked again, the terminal starts the payment (it was not running one).
    first.apply_fault(FaultRequest {
        mode: FaultMode::Garbage,
        for_ms: None,
        for_calls: Some(1),
        call: Some("payment".to_owned()),
    });
    let id = app.init(9_000).await;
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(first.counters().calls["payment"], 2);
    assert_eq!(first.state()["current"]["qr"], body["data"]["qr_code"]);
    assert!(!second.counters().calls.contains_key("payment"));
}

#[tokio::test]
async fn a_terminals_answers_are_logged_each_once_with_how_often_it_repeated() {
    let app = app(1).await;
    let id = app.init(9_000).await;
    let (code, started) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(code, 200, "{started}");
    // Nobody has paid yet: the terminal answers `wait` to every poll, one row counting them.
    let answers = eventually("a repeated answer is counted", || async {
        let (_, payment) = admin(&app, Method::GET, &format!("/payments/{id}"), None).await;
        let answers = payment["data"]["operations"][0]["answers"].as_array()?.clone();
        answers
            .iter()
            .any(|answer| answer["times"].as_i64() >= Some(2))
            .then_some(answers)
    })
    .await;
    for pair in answers.windows(2) {
        assert_ne!(
            pair[0]["answer"], pair[1]["answer"],
            "one row per change: {answers:?}"
        );
    }
    assert!(
        answers
            .iter()
            .any(|answer| answer["answer"].as_str().unwrap().contains("wait")),
        "{answers:?}"
    );
    // The terminal is busy with it, and the console says with what.
    let (_, terminals) = admin(&app, Method::GET, "/terminals", None).await;
    let busy = &terminals["data"][0]["busy_with"];
    assert_eq!(busy["transaction_id"], json!(id), "{terminals}");
    assert_eq!(busy["kind"], json!("payment"));
    assert_eq!(busy["needs_review"], json!(false));

    app.simulator_with(started["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    app.wait_status(&id, "paid").await;
    let (_, payment) = admin(&app, Method::GET, &format!("/payments/{id}"), None).await;
    let answers = payment["data"]["operations"][0]["answers"].as_array().unwrap();
    assert!(
        answers.last().unwrap()["answer"]
            .as_str()
            .unwrap()
            .contains("success"),
        "the final answer closes the log: {answers:?}"
    );
    let (_, terminals) = admin(&app, Method::GET, "/terminals", None).await;
    assert!(
        terminals["data"][0].get("busy_with").is_none(),
        "free again: {terminals}"
    );
}
