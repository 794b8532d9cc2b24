//! A merchant's TypeScript client generated from the server's own OpenAPI document creates a
//! payment against the demo (issue 18): `openapi-typescript` turns `/api/openapi.json` into
//! types, `tsc` (strict) checks `tests/generated-client/create_payment.ts` against them — an
//! operation, parameter, body or answer the document got wrong fails here — and the compiled
//! script, on `openapi-fetch`, creates a payment, starts it on a Kaspi terminal, has the demo's
//! simulated customer pay, waits for `paid`, and reads a refusal's typed `code`.
//!
//! Needs `node` and `npm ci --prefix tests/generated-client` (`scripts/setup-test-machine.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use byfly_server::demo::RunningDemo;
use serde_json::{Value, json};

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("generated-client")
}

/// Runs `node ARGS` in the client's folder: its stdout, or a panic with what it printed.
fn node(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("node")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(client_dir())
        .output()
        .unwrap_or_else(|err| panic!("cannot run `node` ({err}): install Node 20"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "node {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_client_generated_from_the_document_creates_a_payment() {
    let dir = client_dir();
    assert!(
        dir.join("node_modules/openapi-typescript").exists(),
        "openapi-typescript is not installed: run `npm ci --prefix tests/generated-client`"
    );
    let demo = RunningDemo::start(1, |_| {}).await.unwrap();
    let origin = demo.api_url.trim_end_matches("/api").to_owned();
    let document = reqwest::get(format!("{}/openapi.json", demo.api_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let generated = dir.join("generated");
    std::fs::create_dir_all(&generated).unwrap();
    std::fs::write(generated.join("openapi.json"), &document).unwrap();
    let token = demo.token.clone();
    let summary = tokio::task::spawn_blocking(move || {
        node(
            &[
                "node_modules/openapi-typescript/bin/cli.js",
                "generated/openapi.json",
                "-o",
                "generated/schema.d.ts",
            ],
            &[],
        );
        node(&["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"], &[]);
        node(
            &["generated/out/create_payment.js"],
            &[("BYFLY_ORIGIN", &origin), ("BYFLY_API_TOKEN", &token)],
        )
    })
    .await
    .unwrap();
    let line = summary.lines().last().unwrap_or_default();
    let result: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {summary}"));
    assert_eq!(result["status"], json!("paid"), "{result}");
    assert_eq!(result["paid"], json!("57000"), "{result}");
    assert!(
        result["qr"].as_str().unwrap().starts_with("https://qr.kaspi.kz/"),
        "{result}"
    );
    assert_eq!(
        (result["refused"].clone(), result["http"].clone()),
        (json!("invalid_amount"), json!(400))
    );
    // The payment the generated client made is the server's, with the guide's figures.
    let id = result["transaction_id"].as_str().unwrap();
    let status: Value = reqwest::get(format!("{}/payment/{id}/status", demo.api_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["data"]["status"], json!("paid"));
    assert_eq!(status["data"]["paid_amount"], json!(57000));
    println!("generated client: {line}");
}
