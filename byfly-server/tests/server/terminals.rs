//! The terminal pool against real simulators over TCP: registration (an operator's, with a
//! cashier accepting), token storage, health checks and what `/api/health` reports.

use crate::common;

use std::time::Duration;

use crate::common::{registered, simulated, store};
use byfly_server::config::Config;
use byfly_server::store::UnixSeconds;
use byfly_server::terminals::TerminalPool;
use byfly_terminal::simulator::{FaultMode, Simulator, SimulatorConfig};

#[tokio::test]
async fn terminals_are_registered_once_and_checked_when_due() {
    let (store, dir) = store().await;
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let added = store
        .add_terminal(&simulated("Касса 1", &simulator), UnixSeconds(0))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .add_terminal(&simulated("Касса 1", &simulator), UnixSeconds(0))
            .await
            .unwrap()
            .is_none(),
        "names are unique"
    );
    assert!(!added.healthy && added.tokens.is_none());

    let pool = TerminalPool::with_timeouts(
        store.clone(),
        Duration::from_millis(500),
        Duration::from_millis(1500),
    );
    // A health check never registers: the terminal waits for an operator.
    assert_eq!(pool.check_due(UnixSeconds(900), 30).await.unwrap(), 1);
    let waiting = &store.terminals().await.unwrap()[0];
    assert!(!waiting.healthy && waiting.needs_registration());
    assert_eq!(
        waiting.last_error.as_deref(),
        Some(byfly_server::terminals::NEEDS_REGISTRATION)
    );
    assert!(!simulator.counters().calls.contains_key("register"));
    assert_eq!(store.pool_counts().await.unwrap().needs_registration, 1);
    let registered = byfly_server::demo::register_simulated(&store, &pool, &added, &simulator)
        .await
        .unwrap();
    assert_eq!(registered, byfly_server::store::RegistrationState::Approved);
    assert_eq!(pool.check_due(UnixSeconds(1_000), 30).await.unwrap(), 1);
    let checked = &store.terminals().await.unwrap()[0];
    assert!(checked.healthy, "{:?}", checked.last_error);
    assert!(checked.tokens.is_some(), "the terminal's tokens are stored");
    assert_eq!(checked.device_terminal_id.as_deref(), Some("30012345"));
    assert_eq!(checked.last_checked_at, Some(UnixSeconds(1_000)));

    // Not due again before the interval; due after it, and the stored token is reused.
    assert_eq!(pool.check_due(UnixSeconds(1_010), 30).await.unwrap(), 0);
    assert_eq!(pool.check_due(UnixSeconds(1_030), 30).await.unwrap(), 1);
    assert_eq!(simulator.counters().calls["register"], 1);
    // One check after registering, then the two due rounds.
    assert_eq!(simulator.counters().calls["deviceinfo"], 3);

    // A fresh pool (another process) starts from the stored tokens, and refreshes them when they expire.
    simulator.expire_tokens();
    let other_process = TerminalPool::with_timeouts(
        store.clone(),
        Duration::from_millis(500),
        Duration::from_millis(1500),
    );
    assert_eq!(other_process.check_due(UnixSeconds(2_000), 30).await.unwrap(), 1);
    let refreshed = &store.terminals().await.unwrap()[0];
    assert!(refreshed.healthy);
    assert_ne!(
        refreshed.tokens.as_ref().unwrap().access_token,
        checked.tokens.as_ref().unwrap().access_token
    );
    assert_eq!(
        simulator.counters().calls["register"],
        1,
        "refreshed, not registered again"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_unreachable_terminal_is_marked_unhealthy_and_recovers() {
    let (store, dir) = store().await;
    let (simulator, _, pool) = registered(&store, "Касса 2").await;
    pool.check_due(UnixSeconds(100), 30).await.unwrap();
    assert_eq!(store.pool_counts().await.unwrap().healthy, 1);

    simulator.set_fault(FaultMode::Down, None);
    pool.check_due(UnixSeconds(200), 30).await.unwrap();
    let down = &store.terminals().await.unwrap()[0];
    assert!(!down.healthy);
    assert!(
        down.last_error
            .as_deref()
            .is_some_and(|e| e.contains("unreachable")),
        "{:?}",
        down.last_error
    );
    let counts = store.pool_counts().await.unwrap();
    assert_eq!((counts.enabled, counts.healthy), (1, 0));

    simulator.set_fault(FaultMode::None, None);
    pool.check_due(UnixSeconds(300), 30).await.unwrap();
    assert!(store.terminals().await.unwrap()[0].healthy);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_terminal_that_does_not_answer_does_not_hold_up_the_others_checks() {
    let (store, dir) = store().await;
    let (hanging, _, _) = registered(&store, "Касса зависла").await;
    let (answering, _, _) = registered(&store, "Касса в порядке").await;
    // Requests may take a minute: only the other terminal's check can end the wait below.
    let pool =
        TerminalPool::with_timeouts(store.clone(), Duration::from_millis(500), Duration::from_secs(60));
    hanging.set_fault(FaultMode::Timeout, None);
    let asked_before = answering.counters().calls["deviceinfo"];
    let round = tokio::spawn(async move { pool.check_due(UnixSeconds(10_000), 30).await });
    common::eventually(
        "the answering terminal is checked while the other hangs",
        || async { (answering.counters().calls["deviceinfo"] > asked_before).then_some(()) },
    )
    .await;
    hanging.set_fault(FaultMode::None, None);
    assert_eq!(round.await.unwrap().unwrap(), 2);
    let terminals = store.terminals().await.unwrap();
    let health: Vec<_> = terminals
        .iter()
        .map(|t| (t.terminal.name.as_str(), t.healthy))
        .collect();
    assert_eq!(health, [("Касса зависла", false), ("Касса в порядке", true)]);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn health_endpoint_reports_the_pool_and_the_server_checks_terminals_itself() {
    let (store, dir) = store().await;
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let added = store
        .add_terminal(&simulated("Касса 3", &simulator), UnixSeconds(0))
        .await
        .unwrap()
        .unwrap();
    byfly_server::demo::register_simulated(&store, &TerminalPool::new(store.clone()), &added, &simulator)
        .await
        .unwrap();
    let settings = Config {
        database_url: common::database_url(&dir).into(),
        health_check_interval_secs: 1,
        ..Config::default()
    }
    .validate()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/health", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(byfly_server::run(listener, store.clone(), settings, async {
        stopped.await.ok();
    }));
    // The server's own health checker checks the terminal; wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut body = serde_json::Value::Null;
    while std::time::Instant::now() < deadline {
        body = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if body["data"]["status"] == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body["data"]["status"], "ok", "{body}");
    assert_eq!(
        body["data"]["terminals"],
        serde_json::json!({"total": 1, "healthy": 1, "busy": 0, "needs_registration": 0})
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn tokens_refreshed_by_one_process_are_used_by_the_other() {
    // Two pools over one database: two server processes. A refresh token works once, so the
    // second must take the tokens the first stored rather than refresh with its spent one.
    let (store, dir) = store().await;
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let added = store
        .add_terminal(&simulated("Касса 1", &simulator), UnixSeconds(0))
        .await
        .unwrap()
        .unwrap();
    let id = added.id;
    let first = TerminalPool::new(store.clone());
    let second = TerminalPool::new(store.clone());
    byfly_server::demo::register_simulated(&store, &first, &added, &simulator)
        .await
        .unwrap();
    let registered = store.terminal(id).await.unwrap().unwrap();
    assert!(
        second.check(&registered).await.unwrap(),
        "both use the registered tokens"
    );

    simulator.expire_tokens();
    assert!(
        first.check(&registered).await.unwrap(),
        "the first refreshes (revoke) and stores"
    );
    let refreshed = store.terminal(id).await.unwrap().unwrap();
    assert_ne!(refreshed.tokens, registered.tokens);
    let rejections = simulator.counters().auth_rejections;
    assert!(
        second.check(&refreshed).await.unwrap(),
        "the second adopts the stored tokens"
    );
    assert_eq!(
        simulator.counters().auth_rejections,
        rejections,
        "no 401, so no second revoke"
    );
    assert_eq!(
        store.terminal(id).await.unwrap().unwrap().tokens,
        refreshed.tokens
    );
    std::fs::remove_dir_all(&dir).ok();
}
