//! The operator's console (`/admin`) in a real browser: headless Chromium driven by
//! `playwright-core` (`tests/browser/console.mjs`) against a demo server. This side prepares what
//! an operator meets at a payment desk — a paid payment found by the customer's phone, with its
//! webhook delivered; an operation the terminal left `unknown`, waiting for a decision; a new
//! terminal whose cashier must accept the registration on its screen; a payment to refund part
//! of and one to cancel — and the script works
//! through them as a person would. Screenshots: `target/browser-screenshots/console_*.png`.
//!
//! Needs `node`, `chromium` and `npm ci --prefix tests/browser` (the setup script does all three).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use byfly_e2e::run_browser_script;
use byfly_server::demo::RunningDemo;
use byfly_terminal::simulator::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

/// `METHOD {api}{path}` with `body`, as the admin (bearer) or as the demo source (`X-API-Token`).
async fn call(
    demo: &RunningDemo,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    admin: bool,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", demo.api_url));
    request = if admin {
        request.bearer_auth(&demo.admin_token)
    } else {
        request.header("X-API-Token", &demo.token)
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// `GET {api}{path}`, as the admin or as the demo source: status and JSON answer.
async fn get(demo: &RunningDemo, path: &str, admin: bool) -> (u16, Value) {
    call(demo, reqwest::Method::GET, path, None, admin).await
}

/// Polls `probe` (bounded: 20 s) until it gives something.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook receiver that is down (503) until `POST /up`, then accepts: a merchant's outage.
struct OutageReceiver {
    url: String,
    up_url: String,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl OutageReceiver {
    async fn start() -> OutageReceiver {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let up = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let (up_for_hook, counted) = (up.clone(), received.clone());
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(move || {
                    let (up, counted) = (up_for_hook.clone(), counted.clone());
                    async move {
                        if up.load(Ordering::SeqCst) {
                            counted.fetch_add(1, Ordering::SeqCst);
                            axum::http::StatusCode::OK
                        } else {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE
                        }
                    }
                }),
            )
            .route(
                "/up",
                axum::routing::post(move || {
                    up.store(true, Ordering::SeqCst);
                    async { "up" }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        OutageReceiver {
            url: format!("{origin}/hook"),
            up_url: origin,
            received,
        }
    }

    fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A payment started on the demo's terminal and acted on by the simulated customer.
async fn started(demo: &RunningDemo, body: Value, customer: Value) -> String {
    let (status, created) = call(demo, reqwest::Method::POST, "/payment/init", Some(body), false).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["transaction_id"].as_str().unwrap().to_owned();
    let (status, started) = call(
        demo,
        reqwest::Method::POST,
        &format!("/payment/{id}/kaspi"),
        Some(json!({})),
        false,
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let (status, acted) = call(
        demo,
        reqwest::Method::POST,
        &format!("/dev/simulate/{id}"),
        Some(customer),
        false,
    )
    .await;
    assert_eq!(status, 200, "{acted}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_console_in_headless_chromium() {
    // Two terminals: the `unknown` operation below holds one (as a real terminal would, until it
    // ends), the refund needs the other, which took that payment (the pool takes the least
    // recently used).
    // A failed webhook is retried an hour later: within the test only the operator's bulk
    // recovery sends it again.
    let demo = RunningDemo::start(2, |config| {
        config.unknown_review_after_secs = 1;
        config.webhook_backoff_secs = vec![3600];
    })
    .await
    .unwrap();
    let origin = demo.api_url.trim_end_matches("/api").to_owned();

    // 1. A paid payment of a customer the operator will look up by phone; its webhook delivered.
    let paid = started(
        &demo,
        json!({"amount": 57000, "description": "Тур в Анталью #4471", "customer_name": "Айгерим Садыкова",
               "customer_phone": "+77011234567", "metadata": {"order_id": "4471"},
               "webhook_url": format!("{}/dev/webhooks", demo.api_url),
               "webhook_secret": byfly_server::http::dev::DEMO_WEBHOOK_SECRET}),
        json!({"product": "Gold"}),
    )
    .await;
    eventually("the paid webhook is delivered", || async {
        let (_, events) = get(&demo, &format!("/admin/payments/{paid}/webhooks"), true).await;
        (events["data"][0]["state"] == json!("delivered")).then_some(())
    })
    .await;
    // Another customer's payment, so that the phone search has something to leave out.
    let (status, _) = call(
        &demo,
        reqwest::Method::POST,
        "/payment/init",
        Some(json!({"amount": 1000, "customer_phone": "+77770000000"})),
        false,
    )
    .await;
    assert_eq!(status, 201);

    // 2. A paid payment to refund part of, and a pending one to cancel.
    let refund_me = started(&demo, json!({"amount": 30000}), json!({"product": "Gold"})).await;
    eventually("the payment to refund is paid", || async {
        let (_, status) = get(&demo, &format!("/payment/{refund_me}/status"), false).await;
        (status["data"]["status"] == json!("paid")).then_some(())
    })
    .await;
    let (_, pending) = call(
        &demo,
        reqwest::Method::POST,
        "/payment/init",
        Some(json!({"amount": 7000})),
        false,
    )
    .await;
    let pending = pending["data"]["transaction_id"].as_str().unwrap().to_owned();

    // 3. An operation the terminal leaves `unknown`: it waits for an operator after a second.
    let unsure = started(&demo, json!({"amount": 20000}), json!({"outcome": "unknown"})).await;
    let review_id = eventually("the unknown operation is in the review queue", || async {
        let (_, queue) = get(&demo, "/admin/operations/review", true).await;
        queue["data"]
            .as_array()?
            .iter()
            .find(|op| op["transaction_id"] == json!(unsure))
            .map(|op| op["id"].as_i64().unwrap())
    })
    .await;

    // 4. A new terminal whose cashier must accept the registration on its screen.
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let (status, added) = call(
        &demo,
        reqwest::Method::POST,
        "/admin/terminals",
        Some(json!({"name": "Касса у окна", "base_url": simulator.base_url(), "camera_url": simulator.camera_url()})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{added}");

    // 5. A paid payment whose receiver is down: its webhook failed, waiting for a retry.
    let receiver = OutageReceiver::start().await;
    let outage = started(
        &demo,
        json!({"amount": 12000, "webhook_url": receiver.url.clone(), "webhook_secret": "outage-secret"}),
        json!({"product": "Gold"}),
    )
    .await;
    eventually("the outage payment's webhook failed", || async {
        let (_, events) = get(&demo, &format!("/admin/payments/{outage}/webhooks"), true).await;
        let events = events["data"].as_array()?.clone();
        events
            .iter()
            .any(|event| event["state"] == json!("failed"))
            .then_some(())
    })
    .await;
    let (_, sources) = get(&demo, "/admin/sources", true).await;
    let source_id = sources["data"][0]["id"].to_string();

    let (passed, report, errors) = run_browser_script(
        "console.mjs",
        vec![
            ("BYFLY_ORIGIN", origin),
            ("BYFLY_ADMIN_TOKEN", demo.admin_token.clone()),
            ("BYFLY_PHONE", "+7 701 123-45-67".to_owned()),
            ("BYFLY_PAID_ID", paid.clone()),
            ("BYFLY_REVIEW_ID", review_id.to_string()),
            ("BYFLY_REFUND_ID", refund_me.clone()),
            ("BYFLY_PENDING_ID", pending.clone()),
            ("BYFLY_SIM_URL", simulator.base_url()),
            ("BYFLY_SIM_TERMINAL", added["data"]["id"].to_string()),
            ("BYFLY_REVIEW_TX", unsure.clone()),
            ("BYFLY_OUTAGE_ID", outage.clone()),
            ("BYFLY_RECEIVER", receiver.up_url.clone()),
            ("BYFLY_SOURCE_ID", source_id),
        ],
    )
    .await;
    assert!(passed, "{report}\n{errors}");
    assert!(report.contains("14 passed, 0 failed"), "{report}");
    // What the browser did is what the server now holds.
    let (_, events) = get(&demo, &format!("/admin/payments/{paid}/webhooks"), true).await;
    assert_eq!(
        events["data"][0]["attempts"].as_array().unwrap().len(),
        2,
        "one automatic, one resent"
    );
    let (_, decided) = get(&demo, &format!("/payment/{unsure}/status"), false).await;
    assert_eq!(decided["data"]["status"], json!("failed"), "{decided}");
    let (_, refunded) = get(&demo, &format!("/admin/payments/{refund_me}"), true).await;
    let kinds: Vec<&str> = refunded["data"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["payment", "refund"], "{refunded}");
    let (_, cancelled) = get(&demo, &format!("/payment/{pending}/status"), false).await;
    assert_eq!(cancelled["data"]["status"], json!("cancelled"));
    let (_, terminal) = get(&demo, &format!("/admin/terminals/{}", added["data"]["id"]), true).await;
    assert_eq!(terminal["data"]["registered"], json!(true), "{terminal}");
    // The decision is recorded under the operator who logged in, with the note.
    let (_, decided) = get(&demo, &format!("/admin/payments/{unsure}"), true).await;
    let decision = &decided["data"]["operations"][0]["decision"];
    assert_eq!(decision["outcome"], json!("not_paid"), "{decided}");
    assert!(
        decision["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("Дана Касымова (сессия #"),
        "{decision}"
    );
    assert_eq!(
        decision["note"],
        json!("Сверено с историей терминала: операции нет")
    );
    // The recovered webhooks reach the receiver, now up: every event of that payment delivered.
    eventually("the recovered webhooks are delivered", || async {
        let (_, events) = get(&demo, &format!("/admin/payments/{outage}/webhooks"), true).await;
        events["data"]
            .as_array()?
            .iter()
            .all(|event| event["state"] == json!("delivered"))
            .then_some(())
    })
    .await;
    assert!(receiver.received() >= 1);
    println!("{report}");
}
