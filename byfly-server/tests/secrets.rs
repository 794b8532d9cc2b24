//! Secrets stay out of what the server writes: a terminal's refresh token (carried in the URL of
//! the refresh call) never reaches the logs or what the admin API shows. Its own test binary: the
//! log is captured by this process's one global subscriber, which no other test installs first.

// Test code: a panic is a failed assertion with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "server/common/mod.rs"]
mod common;

use std::sync::Arc;

use byfly_terminal::simulator::FaultMode;
use common::{registered, store};

/// Everything the server logs while it runs on this thread, kept for inspection.
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

#[tokio::test]
async fn a_refresh_token_never_reaches_the_logs_or_the_admin_answers() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
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
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(simulator.counters().calls["revoke"] >= 1, "the refresh was tried");
    assert!(
        logged.contains("terminal unhealthy"),
        "the failure was logged: {logged}"
    );
    assert!(!logged.contains(&refresh_token), "{logged}");
    // The admin API's terminal view carries no token field: `last_error` is all it shows of this.
    std::fs::remove_dir_all(dir).ok();
}
