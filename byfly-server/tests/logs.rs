//! What the server writes to its log: one line per request at info, with its route, status and
//! request id; no secret — API token, admin token, webhook secret, a terminal's tokens, the
//! database password — ever; a
//! terminal's refresh token (carried in the URL of the refresh call) never reaches it, nor what
//! the admin API shows; an internal failure is logged exactly once,
//! with the request it belonged to (its request id), and its cause never reaches the client. Its
//! own test binary: the log is captured by this process's one global subscriber, which no other
//! test binary shares.

// Test code: a panic is a failed assertion with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "server/common/mod.rs"]
mod common;

use std::sync::{Arc, OnceLock};

use byfly_terminal::simulator::FaultMode;
use common::{ADMIN, pay, registered, spawn_app, spawn_app_with, store};
use serde_json::{Value, json};

/// Everything the server logs in this process, kept for inspection.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// The process's log, captured from the first call on (every test calls it before it starts
/// anything that logs).
fn captured() -> &'static CapturedLog {
    static LOG: OnceLock<CapturedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = CapturedLog::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
}

#[tokio::test]
async fn a_refresh_token_never_reaches_the_logs_or_the_admin_answers() {
    let log = captured();
    let (store, dir) = store().await;
    let (simulator, added, pool) = registered(&store, "Касса 5").await;
    let refresh_token = store
        .terminal(added.id)
        .await
        .unwrap()
        .unwrap()
        .tokens
        .unwrap()
        .refresh_token;
    // The access token runs out and the refresh (`/v2/revoke?…&refreshToken=…`) hangs: the
    // client's error would name the URL, refresh token included.
    simulator.expire_tokens();
    simulator.apply_fault(byfly_terminal::simulator::FaultRequest {
        mode: FaultMode::Timeout,
        for_ms: None,
        for_calls: Some(1),
        call: Some("revoke".to_owned()),
    });
    pool.check_due(byfly_server::store::UnixSeconds(i64::MAX / 2), 30)
        .await
        .unwrap();
    let checked = store.terminal(added.id).await.unwrap().unwrap();
    let error = checked.last_error.clone().unwrap_or_default();
    assert!(!checked.healthy && !error.is_empty(), "{checked:?}");
    assert!(!error.contains(&refresh_token), "{error}");
    let logged = log.text();
    assert!(simulator.counters().calls["revoke"] >= 1, "the refresh was tried");
    assert!(
        logged.contains("terminal unhealthy"),
        "the failure was logged: {logged}"
    );
    assert!(!logged.contains(&refresh_token), "{logged}");
    // The admin API's terminal view carries no token field: `last_error` is all it shows of this.
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_internal_failure_is_logged_once_with_its_request_and_never_shown() {
    let log = captured();
    let app = spawn_app(0).await;
    let id = app.init(1_000).await;
    // The database breaks under the running server: the payments table is gone.
    app.execute_sql("ALTER TABLE payments RENAME TO payments_gone")
        .await;
    let response = app
        .http
        .get(format!("{}/payment/{id}", app.base))
        .header("x-request-id", "failing-request-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    assert_eq!(response.headers()["x-request-id"], "failing-request-7f3a");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (&body["code"], &body["message"]),
        (&json!("internal_error"), &json!("Внутренняя ошибка сервера"))
    );
    assert!(
        !body.to_string().contains("payments"),
        "no cause in the answer: {body}"
    );
    let logged = log.text();
    let lines: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("internal error"))
        .filter(|line| line.contains("failing-request-7f3a"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once, in the request's span: {logged}");
    assert!(
        lines[0].contains("ERROR") && lines[0].contains("payments"),
        "{}",
        lines[0]
    );
    app.execute_sql("ALTER TABLE payments_gone RENAME TO payments")
        .await;
}

#[tokio::test]
async fn every_request_is_one_line_with_its_route_and_no_secret_is_ever_logged() {
    let log = captured();
    const WEBHOOK_SECRET: &str = "whsec_receiver-secret-6d1f0a9c3b";
    let app = spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
    })
    .await;
    let id = app
        .init_as(
            &app.token,
            json!({"amount": 5_000, "webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": WEBHOOK_SECRET}),
        )
        .await;
    let started = app.kaspi_ok(&id, "kaspi_gold").await;
    app.simulator_with(&started.qr_code)
        .pay(pay("Gold", None))
        .unwrap();
    app.settled(&id).await;
    let (status, _) = common::admin(&app, reqwest::Method::GET, &format!("/payments/{id}"), None).await;
    assert_eq!(status, 200);
    // A refused attempt at the admin API with a token that is not the admin token.
    let response = app
        .http
        .get(format!("{}/admin/sources", app.base))
        .bearer_auth("a-wrong-admin-token-9f8e7d")
        .header("x-request-id", "refused-admin-call-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let logged = log.text();
    let requests: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains(" request status="))
        .collect();
    assert!(
        requests
            .iter()
            .any(|line| line.contains("route=/api/payment/init")
                && line.contains("status=201")
                && line.contains("INFO")),
        "{logged}"
    );
    assert!(
        requests
            .iter()
            .any(|line| line.contains("route=/api/payment/{id}/kaspi")
                && line.contains(&format!("path=/api/payment/{id}/kaspi"))
                && line.contains("duration_us=")),
        "{logged}"
    );
    let refused: Vec<&&str> = requests
        .iter()
        .filter(|line| line.contains("refused-admin-call-1"))
        .collect();
    assert_eq!(refused.len(), 1, "one line for the refused call: {logged}");
    assert!(refused[0].contains("status=401"), "{}", refused[0]);

    let tokens = app.store.terminals().await.unwrap()[0].tokens.clone().unwrap();
    for (what, secret) in [
        ("API token", app.token.as_str()),
        ("admin token", ADMIN),
        ("wrong admin token", "a-wrong-admin-token-9f8e7d"),
        ("webhook secret", WEBHOOK_SECRET),
        ("terminal access token", tokens.access_token.as_str()),
        ("terminal refresh token", tokens.refresh_token.as_str()),
    ] {
        assert!(!logged.contains(secret), "the {what} is in the log");
    }
}

#[tokio::test]
async fn a_database_password_never_reaches_the_log_or_the_output() {
    // `migrate` on a PostgreSQL URL with a password, logging everything (sqlx's connection and
    // statement lines included); the machine's PostgreSQL trusts local connections, so the
    // password is carried and never checked.
    let dir = common::temp_dir("byfly-logs-password");
    let mut url = reqwest::Url::parse(&common::postgres_url(&dir)).unwrap();
    let password = "db-password-5c8e1f0a7b";
    url.set_password(Some(password)).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_byfly-server"))
            .arg("migrate")
            .env("BYFLY_DATABASE_URL", url.as_str())
            .env("BYFLY_LOG", "trace")
            .env_remove("BYFLY_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    common::drop_postgres_database(&dir);
    std::fs::remove_dir_all(&dir).ok();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("database is up to date"), "{text}");
    assert!(text.contains(":[redacted]@"), "the URL is shown redacted: {text}");
    assert!(
        !text.contains(password),
        "the database password is in the output: {text}"
    );
}
