//! The hosted payment page in a real browser: headless Chromium (the Debian package) driven by
//! `playwright-core` (`tests/browser/payment_page.mjs`) against a demo server with two simulated
//! terminals. The scenarios assert on the page's text; screenshots of every final state go to
//! `target/browser-screenshots/`.
//!
//! Needs `node`, `chromium` and `npm ci --prefix tests/browser` (`.ci/run` does all three); a
//! machine without them fails this test with the command to run rather than skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use byfly_e2e::run_browser_script;
use byfly_server::demo::RunningDemo;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_page_in_headless_chromium() {
    let demo = RunningDemo::start(2, |config| {
        // Every scenario comes from 127.0.0.1: the per-client limit is not what is tested here.
        config.kaspi_rate_per_ip = 1_000;
    })
    .await
    .unwrap();
    let origin = demo.api_url.trim_end_matches("/api").to_owned();

    // A payment whose link has expired: created, then the sweeper's query run as if two hours had passed.
    let created: Value = reqwest::Client::new()
        .post(format!("{}/payment/init", demo.api_url))
        .header("X-API-Token", &demo.token)
        .json(&json!({"amount": 15000, "description": "Просроченная ссылка"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expired_id = created["data"]["transaction_id"].as_str().unwrap().to_owned();
    let two_hours_later = byfly_server::clock::unix_now() + 7_200;
    let expired = demo
        .store
        .expire_due(
            two_hours_later,
            100,
            &byfly_server::random::event_id,
            &byfly_server::services::settle::on_expiry,
        )
        .await
        .unwrap();
    assert_eq!(expired, 1);

    let (passed, report, errors) = run_browser_script(
        "payment_page.mjs",
        vec![
            ("BYFLY_ORIGIN", origin),
            ("BYFLY_API_TOKEN", demo.token.clone()),
            ("BYFLY_EXPIRED_ID", expired_id),
        ],
    )
    .await;
    assert!(passed, "{report}\n{errors}");
    assert!(report.contains("10 passed, 0 failed"), "{report}");
}
