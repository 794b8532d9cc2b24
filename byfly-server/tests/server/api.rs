//! The server over real TCP on a fresh SQLite file: the guide's init and views, idempotency, source
//! isolation, paging, and a bad-input table where every row checks status, `code` and message.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;

use byfly_core::{ApiToken, BodyEncoding};
use byfly_server::config::Config;
use byfly_server::random::OsRandom;
use byfly_server::store::Store;
use byfly_server::store::UnixSeconds;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A running server with a fresh database and two sources.
struct App {
    base: String,
    token: String,
    other_token: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    dir: PathBuf,
    database_url: String,
}

impl Drop for App {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn spawn_app() -> App {
    let dir = common::temp_dir("byfly-api");
    let settings = Config {
        database_url: common::database_url(&dir).into(),
        ..Config::default()
    }
    .validate()
    .unwrap();
    let database_url = settings.database_url.expose().to_owned();
    let store: Arc<dyn Store> = byfly_server::open_store(&settings).await.unwrap();
    let mut tokens = Vec::new();
    for name in ["Travel CRM", "Shop"] {
        let token = ApiToken::generate(&mut OsRandom);
        store
            .create_source(name, &token.hash(), BodyEncoding::Php, UnixSeconds(0))
            .await
            .unwrap();
        tokens.push(token.expose().to_owned());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(byfly_server::run(listener, store, settings, async {
        stopped.await.ok();
    }));
    App {
        base,
        database_url,
        other_token: tokens.pop().unwrap(),
        token: tokens.pop().unwrap(),
        http: reqwest::Client::new(),
        _stop: stop,
        dir,
    }
}

/// Status, content type and parsed body of one answer.
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
    raw: String,
}

impl App {
    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let (status, content_type, raw) = crate::common::read_answer(request.send().await.unwrap()).await;
        let body = serde_json::from_str(&raw).unwrap_or_else(|err| panic!("not JSON ({err}): {raw:?}"));
        Answer {
            status,
            content_type,
            body,
            raw,
        }
    }

    async fn init(&self, body: &Value) -> Answer {
        self.send(
            self.http
                .post(format!("{}/payment/init", self.base))
                .header("X-API-Token", &self.token)
                .json(body),
        )
        .await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }
}

fn assert_error(answer: &Answer, status: u16, code: &str, message: Option<&str>) {
    assert_eq!(answer.status, status, "{}", answer.raw);
    assert!(
        answer.content_type.starts_with("application/json"),
        "{}",
        answer.content_type
    );
    assert_eq!(answer.body["success"], json!(false), "{}", answer.raw);
    assert_eq!(answer.body["error_code"], json!(status), "{}", answer.raw);
    assert_eq!(answer.body["code"], json!(code), "{}", answer.raw);
    assert!(answer.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    if let Some(message) = message {
        assert_eq!(answer.body["message"], json!(message), "{}", answer.raw);
    }
}

fn guide_init_body() -> Value {
    json!({
        "amount": 50000,
        "currency": "KZT",
        "description": "Оплата тура в Дубай #12345",
        "customer_name": "Иванов Иван Иванович",
        "customer_phone": "+77001234567",
        "customer_email": "ivan@example.com",
        "payment_method_id": 1,
        "webhook_url": "https://your-system.com/webhooks/payment",
        "webhook_secret": "your_secret_key_for_hmac",
        "metadata": {"order_id": "12345", "tour_name": "Дубай 7 дней", "customer_id": "CU-456"}
    })
}

#[tokio::test]
async fn the_guides_init_and_views() {
    let app = spawn_app().await;
    // The guide's example, with a public IP literal as webhook host: tests make no DNS queries.
    let mut body = guide_init_body();
    body["webhook_url"] = json!("https://95.56.10.20/webhooks/payment");
    let created = app.init(&body).await;
    assert_eq!(created.status, 201, "{}", created.raw);
    assert_eq!(created.body["success"], json!(true));
    assert_eq!(created.body["message"], json!("Платеж создан"));
    let data = &created.body["data"];
    let keys: Vec<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["transaction_id", "amount", "currency", "status", "expires_at"]
    );
    assert_eq!(
        (&data["amount"], &data["currency"], &data["status"]),
        (&json!(50000), &json!("KZT"), &json!("pending"))
    );
    let id = data["transaction_id"].as_str().unwrap();
    assert!(
        id.len() == 12
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    );
    assert_eq!(
        data["expires_at"].as_str().unwrap().len(),
        "2026-01-13 15:30:00".len()
    );

    let shown = app.get(&format!("/payment/{id}")).await;
    assert_eq!(shown.status, 200);
    let view = &shown.body["data"];
    for (field, value) in [
        ("transaction_id", json!(id)),
        ("amount", json!(50000)),
        ("currency", json!("KZT")),
        ("status", json!("pending")),
        ("description", json!("Оплата тура в Дубай #12345")),
        ("payment_url", Value::Null),
        ("qr_code", Value::Null),
        ("paid_amount", json!(0)),
        ("remaining_amount", json!(50000)),
        ("paid_at", Value::Null),
    ] {
        assert_eq!(view[field], value, "{field}");
    }
    // Public endpoints never show customer data, webhook settings or metadata.
    for hidden in [
        "customer_name",
        "customer_phone",
        "customer_email",
        "webhook_url",
        "webhook_secret",
        "metadata",
    ] {
        assert!(view.get(hidden).is_none(), "{hidden} leaked");
        assert!(!shown.raw.contains("Иванов") && !shown.raw.contains("your_secret"));
    }

    let status = app.get(&format!("/payment/{id}/status")).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["data"]["status"], json!("pending"));
    assert_eq!(status.body["data"]["remaining_amount"], json!(50000));
    assert_eq!(status.body["data"]["original_amount"], json!(50000));
}

#[tokio::test]
async fn active_methods_are_the_guides() {
    let app = spawn_app().await;
    let methods = app.get("/payment-methods/active").await;
    assert_eq!(methods.status, 200);
    let list = methods.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(
        list[2],
        json!({"id": 3, "code": "kaspi_kredit", "name": "Kaspi Кредит", "type": "credit", "provider": "kaspi",
               "country_id": 1, "payment_currency": "KZT", "icon_emoji": "💰", "commission_percent": 0,
               "has_credit": true, "credit_commission_percent": 14, "has_installment": false,
               "installment_months": null, "installment_commission_percent": 0, "add_commission_to_amount": true})
    );
    assert_eq!(list[3]["installment_months"], json!("3,6,12"));
    assert!(
        methods.raw.contains(r#""commission_percent":0,"#),
        "numbers, not strings: {}",
        methods.raw
    );
}

#[tokio::test]
async fn idempotency_key_replays_conflicts_and_limits() {
    let app = spawn_app().await;
    let post = |key: &str, body: Value| {
        app.http
            .post(format!("{}/payment/init", app.base))
            .header("X-API-Token", &app.token)
            .header("Idempotency-Key", key)
            .json(&body)
    };
    let first = app.send(post("order-1", json!({"amount": 1000}))).await;
    let again = app.send(post("order-1", json!({"amount": 1000}))).await;
    assert_eq!(first.status, 201);
    assert_eq!(
        (again.status, &again.raw),
        (201, &first.raw),
        "a repeat answers the same bytes"
    );
    let listed = app
        .send(
            app.http
                .get(format!("{}/payments", app.base))
                .header("X-API-Token", &app.token),
        )
        .await;
    assert_eq!(
        listed.body["data"]["items"].as_array().unwrap().len(),
        1,
        "one payment, not two"
    );

    assert_error(
        &app.send(post("order-1", json!({"amount": 2000}))).await,
        409,
        "idempotency_conflict",
        None,
    );
    // A refused request is remembered as refused.
    let refused = app.send(post("order-2", json!({"amount": 0}))).await;
    assert_error(
        &refused,
        400,
        "invalid_amount",
        Some("Сумма должна быть больше 0"),
    );
    assert_eq!(
        app.send(post("order-2", json!({"amount": 0}))).await.raw,
        refused.raw
    );
    assert_error(
        &app.send(post(&"k".repeat(256), json!({"amount": 1}))).await,
        400,
        "invalid_idempotency_key",
        None,
    );
    // Keys are per source: the other source may use the same key.
    let other = app
        .send(
            app.http
                .post(format!("{}/payment/init", app.base))
                .header("X-API-Token", &app.other_token)
                .header("Idempotency-Key", "order-1")
                .json(&json!({"amount": 1000})),
        )
        .await;
    assert_eq!(other.status, 201);
    assert_ne!(
        other.body["data"]["transaction_id"],
        first.body["data"]["transaction_id"]
    );

    // A key is remembered for 24 hours; after that it is a new key, whatever it held.
    common::execute_sql(
        &app.database_url,
        "UPDATE idempotency_keys SET created_at = created_at - 86401 WHERE key = 'order-1'",
    )
    .await;
    let reused = app.send(post("order-1", json!({"amount": 2000}))).await;
    assert_eq!(reused.status, 201, "{}", reused.raw);
    assert_ne!(
        reused.body["data"]["transaction_id"],
        first.body["data"]["transaction_id"]
    );
    assert_eq!(
        app.send(post("order-1", json!({"amount": 2000}))).await.raw,
        reused.raw,
        "and is remembered again"
    );
}

#[tokio::test]
async fn list_is_per_source_newest_first_with_cursor_paging() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for amount in 1..=5 {
        ids.push(app.init(&json!({"amount": amount})).await.body["data"]["transaction_id"].clone());
    }
    let other = app
        .send(
            app.http
                .post(format!("{}/payment/init", app.base))
                .header("X-API-Token", &app.other_token)
                .json(&json!({"amount": 99})),
        )
        .await;
    assert_eq!(other.status, 201);
    let page = |query: String| {
        app.send(
            app.http
                .get(format!("{}/payments{query}", app.base))
                .header("X-API-Token", &app.token),
        )
    };
    let first = page("?limit=2".into()).await;
    let items = first.body["data"]["items"].as_array().unwrap();
    assert_eq!(
        items
            .iter()
            .map(|p| p["transaction_id"].clone())
            .collect::<Vec<_>>(),
        [ids[4].clone(), ids[3].clone()]
    );
    let cursor = first.body["data"]["next_cursor"].as_str().unwrap().to_owned();
    let second = page(format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(second.body["data"]["items"][0]["transaction_id"], ids[2]);
    let all = page("?limit=100&status=pending".into()).await;
    assert_eq!(
        all.body["data"]["items"].as_array().unwrap().len(),
        5,
        "the other source's payment is not listed"
    );
    assert_eq!(all.body["data"]["next_cursor"], Value::Null);
    assert_eq!(page("?status=paid".into()).await.body["data"]["items"], json!([]));
    assert_error(&page("?limit=0".into()).await, 400, "validation_error", None);
    assert_error(
        &page("?status=nonsense".into()).await,
        400,
        "validation_error",
        None,
    );
    assert_error(&page("?cursor=zz".into()).await, 400, "validation_error", None);
}

#[tokio::test]
async fn bad_input_table() {
    let app = spawn_app().await;
    let init_url = format!("{}/payment/init", app.base);
    let with_token = |body: &str, content_type: &str| {
        app.http
            .post(&init_url)
            .header("X-API-Token", &app.token)
            .header("content-type", content_type)
            .body(body.to_owned())
    };
    let rows: Vec<(&str, reqwest::RequestBuilder, u16, &str, Option<&str>)> = vec![
        (
            "no token",
            app.http.post(&init_url).json(&json!({"amount": 1})),
            401,
            "invalid_token",
            Some("Invalid API token"),
        ),
        (
            "malformed token",
            app.http
                .post(&init_url)
                .header("X-API-Token", "short")
                .json(&json!({"amount": 1})),
            401,
            "invalid_token",
            Some("Invalid API token"),
        ),
        (
            "unknown token",
            app.http
                .post(&init_url)
                .header("X-API-Token", "A".repeat(64))
                .json(&json!({"amount": 1})),
            401,
            "invalid_token",
            Some("Invalid API token"),
        ),
        (
            "malformed JSON",
            with_token("{\"amount\": ", "application/json"),
            400,
            "invalid_json",
            None,
        ),
        (
            "JSON array",
            with_token("[1]", "application/json"),
            400,
            "invalid_json",
            None,
        ),
        (
            "wrong field type",
            with_token(r#"{"amount": 1, "description": 5}"#, "application/json"),
            400,
            "invalid_json",
            None,
        ),
        (
            "text/plain body",
            with_token(r#"{"amount": 1}"#, "text/plain"),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "form body",
            with_token("amount=1", "application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "body over 64 KiB",
            with_token(
                &format!(r#"{{"amount": 1, "description": "{}"}}"#, "x".repeat(70_000)),
                "application/json",
            ),
            413,
            "payload_too_large",
            None,
        ),
        (
            "missing amount",
            with_token("{}", "application/json"),
            400,
            "invalid_amount",
            Some("Сумма должна быть больше 0"),
        ),
        (
            "zero amount",
            with_token(r#"{"amount": 0}"#, "application/json"),
            400,
            "invalid_amount",
            Some("Сумма должна быть больше 0"),
        ),
        (
            "negative amount",
            with_token(r#"{"amount": -1}"#, "application/json"),
            400,
            "invalid_amount",
            Some("Сумма должна быть больше 0"),
        ),
        (
            "text amount",
            with_token(r#"{"amount": "много"}"#, "application/json"),
            400,
            "invalid_amount",
            None,
        ),
        (
            "amount too large",
            with_token(r#"{"amount": 100000001}"#, "application/json"),
            400,
            "amount_too_large",
            None,
        ),
        (
            "unknown currency",
            with_token(r#"{"amount": 1, "currency": "USD"}"#, "application/json"),
            400,
            "invalid_currency",
            None,
        ),
        (
            "inactive method",
            with_token(r#"{"amount": 1, "payment_method_id": 42}"#, "application/json"),
            400,
            "invalid_payment_method",
            None,
        ),
        (
            "ftp webhook",
            with_token(
                r#"{"amount": 1, "webhook_url": "ftp://a.kz/"}"#,
                "application/json",
            ),
            400,
            "invalid_webhook_url",
            None,
        ),
        (
            "loopback webhook",
            with_token(
                r#"{"amount": 1, "webhook_url": "http://127.0.0.1:9/hook"}"#,
                "application/json",
            ),
            400,
            "webhook_host_not_allowed",
            None,
        ),
        (
            "localhost webhook",
            with_token(
                r#"{"amount": 1, "webhook_url": "http://localhost/hook"}"#,
                "application/json",
            ),
            400,
            "webhook_host_not_allowed",
            None,
        ),
        (
            "metadata not an object",
            with_token(r#"{"amount": 1, "metadata": [1]}"#, "application/json"),
            400,
            "invalid_metadata",
            None,
        ),
        (
            "description too long",
            with_token(
                &format!(r#"{{"amount": 1, "description": "{}"}}"#, "я".repeat(1001)),
                "application/json",
            ),
            400,
            "field_too_long",
            None,
        ),
        (
            "unknown route",
            app.http.get(format!("{}/nothing/here", app.base)),
            404,
            "route_not_found",
            None,
        ),
        (
            "outside the API",
            app.http.get(format!("{}/../index.html", app.base)),
            404,
            "route_not_found",
            None,
        ),
        (
            "wrong method",
            app.http.delete(&init_url),
            405,
            "method_not_allowed",
            None,
        ),
        (
            "malformed id",
            app.http.get(format!("{}/payment/a3f5d9e2b1c8", app.base)),
            404,
            "transaction_not_found",
            Some("Транзакция не найдена"),
        ),
        (
            "unknown id",
            app.http.get(format!("{}/payment/A3F5D9E2B1C8/status", app.base)),
            404,
            "transaction_not_found",
            Some("Транзакция не найдена"),
        ),
        (
            "list without token",
            app.http.get(format!("{}/payments", app.base)),
            401,
            "invalid_token",
            None,
        ),
    ];
    for (name, request, status, code, message) in rows {
        let answer = app.send(request).await;
        assert_error(&answer, status, code, message);
        println!("ok: {name} → {status} {code}");
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.http.get(format!("{}/health", app.base)).send().await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let response = app
        .http
        .get(format!("{}/nothing", app.base))
        .header("X-Request-Id", "crm-42")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        "crm-42",
        "a caller's id is kept"
    );
}

#[tokio::test]
async fn health_reports_the_database() {
    let app = spawn_app().await;
    let health = app.get("/health").await;
    assert_eq!(health.status, 200);
    // The database answers; with no terminal in the pool the service is degraded.
    assert_eq!(health.body["data"]["database"], json!("ok"));
    assert_eq!(health.body["data"]["status"], json!("degraded"));
    assert_eq!(
        health.body["data"]["terminals"],
        json!({"total": 0, "healthy": 0, "busy": 0, "needs_registration": 0})
    );
}

#[tokio::test]
async fn payments_survive_a_restart_of_the_server() {
    let dir = common::temp_dir("byfly-restart");
    let settings = Config {
        database_url: common::database_url(&dir).into(),
        ..Config::default()
    }
    .validate()
    .unwrap();
    let token = ApiToken::generate(&mut OsRandom);
    let id = {
        let store = byfly_server::open_store(&settings).await.unwrap();
        store
            .create_source("CRM", &token.hash(), BodyEncoding::Js, UnixSeconds(0))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(byfly_server::run(listener, store, settings.clone(), async {
            stopped.await.ok();
        }));
        let created: Value = reqwest::Client::new()
            .post(format!("{base}/payment/init"))
            .header("X-API-Token", token.expose())
            .json(&json!({"amount": "12281.25"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        created["data"]["transaction_id"].as_str().unwrap().to_owned()
    };
    // A new process on the same file: migrations are idempotent and the payment is there, exact.
    let store = byfly_server::open_store(&settings).await.unwrap();
    let found = store
        .payment(&byfly_core::TransactionId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.original_amount.to_string(), "12281.25");
    assert_eq!(found.original_amount.to_minor(), 1_228_125);
    std::fs::remove_dir_all(dir).ok();
}
