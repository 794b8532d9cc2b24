//! Guarantees under stress: an operation in flight survives a server restart (and its webhook is
//! sent once), and many concurrent payments over few terminals never double-book a terminal.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{pay, spawn_app_with};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use byfly_core::{ApiToken, BodyEncoding, TransactionId, WebhookEvent};
use byfly_server::config::Config;
use byfly_server::random::OsRandom;
use byfly_server::store::UnixSeconds;
use byfly_server::store::{NewTerminal, TerminalTls};
use byfly_server::terminals::TerminalPool;
use byfly_terminal::simulator::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn an_operation_in_flight_completes_after_a_restart_and_its_webhook_is_sent_once() {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let receiver = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(log): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap| async move {
                    log.lock()
                        .unwrap()
                        .push(headers["x-webhook-id"].to_str().unwrap().to_owned());
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let dir = common::temp_dir("byfly-restart-op");
    let settings = Config {
        database_url: common::database_url(&dir).into(),
        allow_private_webhook_hosts: true,
        qr_scan_interval_ms: 50,
        ..Config::default()
    }
    .validate()
    .unwrap();
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let token = ApiToken::generate(&mut OsRandom);
    let serve = |settings: byfly_server::config::Settings| async move {
        let store = byfly_server::open_store(&settings).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(byfly_server::run(listener, store.clone(), settings, async {
            stopped.await.ok();
        }));
        (base, store, stop, server)
    };

    // First process: create, start the operation, then stop (gracefully) before the customer pays.
    let (base, store, stop, server) = serve(settings.clone()).await;
    store
        .create_source("CRM", &token.hash(), BodyEncoding::Js, UnixSeconds(0))
        .await
        .unwrap();
    let terminal = NewTerminal {
        name: "Касса".into(),
        base_url: simulator.base_url(),
        camera_url: simulator.camera_url(),
        tls: TerminalTls::Verify { server_name: None },
    };
    let record = store
        .add_terminal(&terminal, UnixSeconds(0))
        .await
        .unwrap()
        .unwrap();
    byfly_server::demo::register_simulated(&store, &TerminalPool::new(store.clone()), &record, &simulator)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/payment/init"))
        .header("X-API-Token", token.expose())
        .json(&json!({"amount": 45000, "webhook_url": hook}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["transaction_id"].as_str().unwrap().to_owned();
    let started: Value = http
        .post(format!("{base}/payment/{id}/kaspi"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(started["data"]["qr_code"].is_string(), "{started}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    // While no server runs, the customer pays.
    simulator.pay(pay("Gold", None)).unwrap();

    // Second process on the same database: its poller resumes from the stored processId.
    let (base, store, stop, server) = serve(settings).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = Value::Null;
    while Instant::now() < deadline {
        status = http
            .get(format!("{base}/payment/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["data"]["status"] == "paid" && !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (&status["data"]["status"], &status["data"]["paid_amount"]),
        (&json!("paid"), &json!(45000))
    );
    let payment = store
        .payment(&TransactionId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let events = store.webhook_events(payment.id).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.event).collect::<Vec<_>>(),
        [WebhookEvent::Paid]
    );
    assert_eq!(
        *received.lock().unwrap(),
        [events[0].event_id.to_string()],
        "delivered once"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn fifty_concurrent_payments_over_three_terminals_never_double_book() {
    // All from 127.0.0.1 and retrying every 50 ms while busy: the /kaspi rate limits are lifted
    // (they are tested in page.rs).
    let app = Arc::new(
        spawn_app_with(3, false, |c| {
            c.kaspi_rate_per_ip = 0;
            c.kaspi_rate_per_payment = 0;
        })
        .await,
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let id = app.init(1_000 + n).await;
            // Retry while every terminal is busy (the guide's "попробуйте позже").
            let deadline = Instant::now() + Duration::from_secs(120);
            let qr = loop {
                let (code, body) = app.kaspi(&id, "kaspi_gold").await;
                if code == 200 {
                    break body["data"]["qr_code"].as_str().unwrap().to_owned();
                }
                assert_eq!(body["code"], json!("terminals_busy"), "{body}");
                assert!(Instant::now() < deadline, "no terminal for {id} in time");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            app.simulator_with(&qr).pay(pay("Gold", None)).unwrap();
            let status = app.settled(&id).await;
            (id, status)
        }));
    }
    for task in tasks {
        let (id, status) = task.await.unwrap();
        assert_eq!(status["status"], json!("paid"), "{id}: {status}");
    }
    let busy: u64 = app.simulators.iter().map(|s| s.counters().busy_answers).sum();
    let payments: u64 = app
        .simulators
        .iter()
        .map(|s| s.counters().payments_succeeded)
        .sum();
    println!(
        "50 payments over 3 terminals in {:?}; 107 answers: {busy}",
        started.elapsed()
    );
    assert_eq!(busy, 0, "a terminal was never asked for a second operation");
    assert_eq!(payments, 50);
}

#[tokio::test]
async fn a_start_left_by_a_dead_process_frees_its_terminal_after_a_while() {
    use byfly_core::ledger::OperationQuote;
    use byfly_core::{Money, PaymentMethod, PaymentStatus};
    use byfly_server::services::expiry::{STALE_START_SECS, sweep};
    use byfly_server::store::{ClaimOutcome, TerminalClaim};

    let app = spawn_app_with(1, false, |_| {}).await;
    let abandoned = app.init(1_000).await;
    let payment = app
        .store
        .payment(&TransactionId::parse(&abandoned).unwrap())
        .await
        .unwrap()
        .unwrap();
    // A process claims the terminal for /kaspi and dies before the terminal answers.
    let now = byfly_server::clock::unix_now();
    let gold = &PaymentMethod::seeded()[0];
    let claim = TerminalClaim {
        payment_id: payment.id,
        expected_status: PaymentStatus::Pending,
        quote: OperationQuote::price(Money::from_tenge(1_000), gold),
        terminal_amount: 1_000,
        excluded_terminals: Vec::new(),
        replace_operation: None,
        now,
        deadline_at: now + 300,
    };
    let ClaimOutcome::Claimed { operation_id, .. } = app.store.claim_terminal(&claim).await.unwrap() else {
        panic!("the terminal was free");
    };
    let other = app.init(2_000).await;
    assert_eq!(app.kaspi(&other, "kaspi_gold").await.1["code"], "terminals_busy");

    // Staleness is judged by the database's clock, which a test cannot move: the age asked for
    // shrinks instead (-1: anything claimed before the database's next second).
    assert!(app.store.stale_starts(STALE_START_SECS).await.unwrap().is_empty());
    assert_eq!(app.store.stale_starts(-1).await.unwrap(), vec![operation_id]);
    sweep(app.store.as_ref(), now, STALE_START_SECS).await.unwrap();
    assert_eq!(
        app.kaspi(&other, "kaspi_gold").await.1["code"],
        "terminals_busy",
        "not yet"
    );
    sweep(app.store.as_ref(), now, -1).await.unwrap();
    assert!(app.store.stale_starts(-1).await.unwrap().is_empty());
    let (code, started) = app.kaspi(&other, "kaspi_gold").await;
    assert_eq!(code, 200, "{started}");
    // The abandoned payment never left `pending` and can still be paid.
    assert_eq!(app.status(&abandoned).await["status"], "pending");
}
