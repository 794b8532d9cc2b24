//! The hosted payment page in a real browser: headless Chromium (the Debian package) driven by
//! `playwright-core` (`tests/browser/payment_page.mjs`) against a demo server with two simulated
//! terminals. The scenarios assert on the page's text; screenshots of every final state go to
//! `target/browser-screenshots/`.
//!
//! Needs `node`, `chromium` and `npm ci --prefix tests/browser` (`.ci/run` does all three); a
//! machine without them fails this test with the command to run rather than skipping it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use byfly_server::demo::RunningDemo;
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn chromium() -> PathBuf {
    let candidates = [
        std::env::var("BYFLY_CHROMIUM").ok(),
        Some("/usr/bin/chromium".into()),
        Some("/usr/bin/chromium-browser".into()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no Chromium: `apt-get install -y chromium` (or set BYFLY_CHROMIUM)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_page_in_headless_chromium() {
    let browser_dir = workspace().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser`"
    );
    let chromium = chromium();
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

    let screenshots = workspace().join("target/browser-screenshots");
    let mut node = std::process::Command::new("node");
    node.arg("payment_page.mjs")
        .current_dir(&browser_dir)
        .env("BYFLY_ORIGIN", &origin)
        .env("BYFLY_API_TOKEN", &demo.token)
        .env("BYFLY_EXPIRED_ID", &expired_id)
        .env("BYFLY_CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", &screenshots);
    // The server runs on this runtime's workers while node drives the browser.
    let output = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("cannot run `node` ({err}): install Node 20"));
    let report = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}\n{errors}");
    assert!(report.contains("10 passed, 0 failed"), "{report}");
}
