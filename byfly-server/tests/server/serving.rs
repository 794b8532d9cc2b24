//! The HTTP server's limits on a real server over raw TCP: a client slow to send its headers is
//! cut off, a request slower than `request_timeout_secs` is answered `503 request_timeout`, no
//! more than `max_connections` are served at once, and a shutdown waits for requests in flight
//! only `shutdown_grace_secs`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// The bound of every wait of these tests: what the limit under test must beat by far.
const BOUND: Duration = Duration::from_secs(10);

fn address(app: &App) -> String {
    app.base
        .trim_start_matches("http://")
        .trim_end_matches("/api")
        .to_owned()
}

/// A request for `/api/health/live` on a kept-alive connection.
const LIVE: &[u8] = b"GET /api/health/live HTTP/1.1\r\nHost: byfly\r\n\r\n";

/// Reads one whole answer (headers and a `Content-Length` body) from `stream`.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
        let read = tokio::time::timeout(BOUND, stream.read(&mut chunk))
            .await
            .expect("an answer within the bound")
            .unwrap();
        assert!(read > 0, "closed before a whole answer: {text:?}");
        bytes.extend_from_slice(&chunk[..read]);
    }
}

/// Reads until the server closes the connection (bounded): what it wrote before closing.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection within the bound")
        .ok();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = spawn_app_with(0, false, |config| config.header_read_timeout_secs = 1).await;
    let mut slow = TcpStream::connect(address(&app)).await.unwrap();
    slow.write_all(b"GET /api/health/live HTTP/1.1\r\nHost: byfly\r\n")
        .await
        .unwrap();
    // hyper's own default (30 s) is beyond the bound: only the setting closes it in time.
    let written = read_until_closed(&mut slow).await;
    assert!(!written.contains("200 OK"), "{written:?}");
    // A client that sends its headers at once is served.
    let mut prompt = TcpStream::connect(address(&app)).await.unwrap();
    prompt.write_all(LIVE).await.unwrap();
    assert!(read_answer(&mut prompt).await.starts_with("HTTP/1.1 200"));
}

/// Holds the database's write lock (SQLite: a write transaction; PostgreSQL: a lock on the
/// payments table that stops inserts) until the returned sender is dropped.
async fn hold_write_lock(app: &App) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(app.database_url()).await.unwrap();
    let statements: &[&str] = if on_postgres() {
        &["BEGIN", "LOCK TABLE payments IN EXCLUSIVE MODE"]
    } else {
        &["BEGIN IMMEDIATE"]
    };
    for statement in statements {
        sqlx::Executor::execute(&mut connection, *statement)
            .await
            .unwrap();
    }
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        released.await.ok();
        sqlx::Executor::execute(&mut connection, "ROLLBACK")
            .await
            .unwrap();
        connection.close().await.ok();
    });
    (release, holder)
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_answered_503_request_timeout() {
    let app = spawn_app_with(0, false, |config| config.request_timeout_secs = 1).await;
    let (release, holder) = hold_write_lock(&app).await;
    // The database waits (busy_timeout / lock_timeout: 10 s) longer than the request may.
    let init = app
        .http
        .post(format!("{}/payment/init", app.base))
        .header("X-API-Token", &app.token)
        .json(&json!({"amount": 1000, "description": "Тур"}))
        .timeout(BOUND)
        .send()
        .await
        .unwrap();
    let status = init.status().as_u16();
    let body: Value = init.json().await.unwrap();
    assert_eq!(
        (status, &body["code"], &body["success"], &body["error_code"]),
        (503, &json!("request_timeout"), &json!(false), &json!(503)),
        "{body}"
    );
    drop(release);
    holder.await.unwrap();
    // With the database free again requests go through.
    app.init(1000).await;
}

#[tokio::test]
async fn no_more_than_max_connections_are_served_at_once() {
    let app = spawn_app_with(0, false, |config| {
        config.max_connections = 2;
        // Idle connections are not closed within the test's bound: only a client's close frees a slot.
        config.header_read_timeout_secs = 300;
    })
    .await;
    let mut first = TcpStream::connect(address(&app)).await.unwrap();
    let mut second = TcpStream::connect(address(&app)).await.unwrap();
    for connection in [&mut first, &mut second] {
        connection.write_all(LIVE).await.unwrap();
        assert!(read_answer(connection).await.starts_with("HTTP/1.1 200"));
    }
    // Both stay open (kept alive). A third connects — the kernel queues it — but is not served.
    let mut third = TcpStream::connect(address(&app)).await.unwrap();
    third.write_all(LIVE).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "a third connection was served while two were open"
    );
    // One closes: the third is served.
    drop(first);
    assert!(read_answer(&mut third).await.starts_with("HTTP/1.1 200"));
}

/// Sends `POST /api/payment/init`'s headers with `Expect: 100-continue` and waits for the server's
/// `100 Continue`: its handler is then reading the body, the request is in flight.
async fn init_in_flight(stream: &mut TcpStream, token: &str, body_length: usize) {
    let request = format!(
        "POST /api/payment/init HTTP/1.1\r\nHost: byfly\r\nX-API-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {body_length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut continued = [0u8; 25];
    tokio::time::timeout(BOUND, stream.read_exact(&mut continued))
        .await
        .expect("the handler reads the body within the bound")
        .unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue"), "{continued:?}");
}

#[tokio::test]
async fn a_shutdown_lets_a_request_in_flight_finish_and_waits_only_the_grace_period() {
    let mut app = spawn_app_with(0, false, |config| config.shutdown_grace_secs = 3).await;
    let address = address(&app);
    let token = app.token.clone();
    let body = r#"{"amount": 1000, "description": "Тур"}"#.as_bytes();
    // Two requests in flight: one whose body comes during the shutdown, one whose body never
    // comes. Each is the second request of its connection, so both connections are the server's
    // (answered once) before their requests start.
    let mut finishing = TcpStream::connect(&address).await.unwrap();
    let mut stuck = TcpStream::connect(&address).await.unwrap();
    for connection in [&mut finishing, &mut stuck] {
        connection.write_all(LIVE).await.unwrap();
        assert!(read_answer(connection).await.starts_with("HTTP/1.1 200"));
    }
    init_in_flight(&mut finishing, &token, body.len()).await;
    init_in_flight(&mut stuck, &token, 100).await;
    stuck.write_all(br#"{"amount":"#).await.unwrap();
    let stopping = tokio::spawn(async move {
        app.stop().await;
        app
    });
    // The shutdown has begun once the listener is gone: new connections are refused.
    eventually("the server stops accepting", || {
        let address = address.clone();
        async move { TcpStream::connect(&address).await.err() }
    })
    .await;
    finishing.write_all(body).await.unwrap();
    let answer = read_answer(&mut finishing).await;
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "finished during the shutdown: {answer}"
    );
    // Without a deadline the shutdown would wait for the stuck request for ever.
    let app = tokio::time::timeout(BOUND, stopping)
        .await
        .expect("the server stops within the bound")
        .unwrap();
    read_until_closed(&mut stuck).await;
    drop(app);
}
