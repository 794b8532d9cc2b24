//! End-to-end tests of the whole system, under `tests/tests/`:
//!
//! - `payment_page.rs`: the hosted payment page in headless Chromium (Debian's `chromium`, driven
//!   by `playwright-core` from `tests/browser/`), against a demo server.
//! - `console.rs`: the operator's console (`/admin`) the same way.
//! - `generated_client.rs`: a TypeScript client generated from the OpenAPI document.
//!
//! This library holds what they share: where the workspace and Chromium are, and running a
//! browser script with its report.

use std::path::{Path, PathBuf};

/// The workspace's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Debian's Chromium (or `BYFLY_CHROMIUM`); a machine without it fails with the command to run.
pub fn chromium() -> PathBuf {
    let candidates = [
        std::env::var("BYFLY_CHROMIUM").ok(),
        Some("/usr/bin/chromium".into()),
        Some("/usr/bin/chromium-browser".into()),
    ];
    #[allow(clippy::panic)]
    candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no Chromium: `apt-get install -y chromium` (or set BYFLY_CHROMIUM)"))
}

/// Runs `tests/browser/SCRIPT` with node, Chromium and the screenshot folder
/// (`target/browser-screenshots/`) set, plus `env`: whether it passed, and what it printed.
#[allow(clippy::panic)]
pub async fn run_browser_script(script: &str, env: Vec<(&'static str, String)>) -> (bool, String, String) {
    let browser_dir = workspace().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser`"
    );
    let mut node = std::process::Command::new("node");
    node.arg(script)
        .current_dir(&browser_dir)
        .env("BYFLY_CHROMIUM", chromium())
        .env("SCREENSHOT_DIR", workspace().join("target/browser-screenshots"))
        .envs(env);
    // The server runs on the caller's runtime while node drives the browser.
    let output = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap_or_else(|err| panic!("the node task failed: {err}"))
        .unwrap_or_else(|err| panic!("cannot run `node` ({err}): install Node 20"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
