//! `/api/health/live` and `/api/health/ready`, and `byfly-server healthcheck` against them, on a
//! real server: ready while everything is, not ready (503, the same body naming the failed check)
//! when the database's schema is behind this build. Each check's rule on its own is a unit test
//! of `http/health.rs`.

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::common::*;

async fn get(app: &App, path: &str) -> (u16, Value) {
    let response = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn healthcheck(url: String) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_byfly-server"))
            .args(["healthcheck", "--url", &url])
            .env_remove("BYFLY_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn failed_checks(body: &Value) -> Vec<&str> {
    body["data"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["ok"] == json!(false))
        .map(|check| check["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn ready_while_everything_is_and_not_when_the_schema_is_behind_the_build() {
    let app = spawn_app(0).await;
    let (status, live) = get(&app, "/health/live").await;
    assert_eq!((status, &live["data"]["status"]), (200, &json!("live")), "{live}");

    let (status, ready) = get(&app, "/health/ready").await;
    assert_eq!(
        (status, &ready["data"]["status"]),
        (200, &json!("ready")),
        "{ready}"
    );
    let names: Vec<&str> = ready["data"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["database", "schema", "workers", "outbox"]);
    assert!(failed_checks(&ready).is_empty(), "{ready}");
    let url = format!("{}/health/ready", app.base);
    let asked = healthcheck(url.clone()).await;
    assert!(
        asked.status.success(),
        "{}",
        String::from_utf8_lossy(&asked.stderr)
    );

    // A process of this build on a database whose newest migration is not applied.
    app.execute_sql(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .await;
    let (status, ready) = get(&app, "/health/ready").await;
    assert_eq!(
        (status, &ready["data"]["status"]),
        (503, &json!("not_ready")),
        "{ready}"
    );
    assert_eq!(failed_checks(&ready), ["schema"], "{ready}");
    let (status, live) = get(&app, "/health/live").await;
    assert_eq!(status, 200, "liveness asks nothing of the database: {live}");
    let asked = healthcheck(url).await;
    assert!(!asked.status.success());
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(
        stderr.contains("not ready") && stderr.contains("migrate"),
        "{stderr}"
    );

    // Nothing answers at all.
    let asked = healthcheck("http://127.0.0.1:9/api/health/ready".to_owned()).await;
    assert!(!asked.status.success());
}
