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
    let demo = RunningDemo::start(2, |config| {
        config.unknown_review_after_secs = 1;
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
        ],
    )
    .await;
    assert!(passed, "{report}\n{errors}");
    assert!(report.contains("9 passed, 0 failed"), "{report}");
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
    println!("{report}");
}
