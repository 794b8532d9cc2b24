//! The admin API over real TCP: its bearer token, sources (token shown once, revocation),
//! terminals, payment methods, and the webhook log with a manual retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::common::{App, pay, spawn_app, spawn_app_with};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use byfly_core::{ApiToken, BodyEncoding};
use byfly_server::random::OsRandom;
use byfly_server::store::UnixSeconds;
use serde_json::{Value, json};

use crate::common::{ADMIN, admin};

async fn admin_app() -> App {
    spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
        config.webhook_backoff_secs = vec![3600];
    })
    .await
}

#[tokio::test]
async fn the_admin_token_guards_everything() {
    let app = admin_app().await;
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        let mut request = app.http.get(format!("{}/admin/sources", app.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], json!("invalid_admin_token"));
    }
    // Without a configured admin token the admin API is closed.
    let closed = spawn_app(0).await;
    let response = closed
        .http
        .get(format!("{}/admin/sources", closed.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn sources_are_created_with_a_token_shown_once_and_can_be_revoked() {
    let app = admin_app().await;
    let (code, created) = admin(
        &app,
        reqwest::Method::POST,
        "/sources",
        Some(json!({"name": "Shop", "webhook_json": "js"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let token = created["data"]["api_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(created["data"]["source"]["webhook_json"], json!("js"));
    let id = created["data"]["source"]["id"].as_i64().unwrap();
    let (_, list) = admin(&app, reqwest::Method::GET, "/sources", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&token), "tokens are never listed");

    let init = |token: String| {
        app.http
            .post(format!("{}/payment/init", app.base))
            .header("X-API-Token", token)
            .json(&json!({"amount": 100}))
            .send()
    };
    assert_eq!(init(token.clone()).await.unwrap().status().as_u16(), 201);
    let (code, updated) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/sources/{id}"),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!((code, &updated["data"]["active"]), (200, &json!(false)));
    assert_eq!(
        init(token).await.unwrap().status().as_u16(),
        401,
        "a revoked token stops working at once"
    );
    let (code, body) = admin(
        &app,
        reqwest::Method::PATCH,
        "/sources/999",
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!((code, &body["code"]), (404, &json!("not_found")));
    // An id that cannot be a row names nothing either: the envelope, never a plain-text 400.
    for (method, path) in [
        (reqwest::Method::PATCH, "/sources/abc"),
        (reqwest::Method::GET, "/terminals/-1"),
        (reqwest::Method::POST, "/terminals/1x/register"),
        (reqwest::Method::POST, "/operations/0/resolve"),
    ] {
        let (code, body) = admin(&app, method, path, Some(json!({}))).await;
        assert_eq!(
            (code, &body["code"]),
            (404, &json!("not_found")),
            "{path}: {body}"
        );
    }
    let (code, body) = admin(
        &app,
        reqwest::Method::POST,
        "/sources",
        Some(json!({"name": " "})),
    )
    .await;
    assert_eq!((code, &body["code"]), (400, &json!("validation_error")));
}

#[tokio::test]
async fn terminals_are_listed_added_and_taken_out_of_the_pool() {
    let app = admin_app().await;
    let (_, list) = admin(&app, reqwest::Method::GET, "/terminals", None).await;
    let first = &list["data"][0];
    assert_eq!(
        (&first["healthy"], &first["registered"], &first["enabled"]),
        (&json!(true), &json!(true), &json!(true))
    );
    assert!(!list.to_string().contains("accessToken") && !list.to_string().contains("access_token"));

    let bad = json!({"name": "X", "base_url": "ftp://x", "camera_url": "http://x/cam"});
    assert_eq!(
        admin(&app, reqwest::Method::POST, "/terminals", Some(bad))
            .await
            .1["code"],
        json!("validation_error")
    );
    let new = json!({"name": "Касса 9", "base_url": "https://192.168.1.50:8080", "camera_url": "http://192.168.1.51/snap",
                     "tls": "verify", "tls_server_name": "pos.kaspipos.kz"});
    let (code, added) = admin(&app, reqwest::Method::POST, "/terminals", Some(new.clone())).await;
    assert_eq!(code, 201, "{added}");
    assert_eq!(
        (&added["data"]["tls_server_name"], &added["data"]["healthy"]),
        (&json!("pos.kaspipos.kz"), &json!(false))
    );
    assert_eq!(
        admin(&app, reqwest::Method::POST, "/terminals", Some(new))
            .await
            .0,
        400,
        "names are unique"
    );
    let edited_id = added["data"]["id"].as_i64().unwrap();
    let edit = json!({"base_url": "https://192.168.1.60:8080", "tls": "insecure"});
    let (code, edited) = admin(
        &app,
        reqwest::Method::PATCH,
        &format!("/terminals/{edited_id}"),
        Some(edit),
    )
    .await;
    assert_eq!(code, 200, "{edited}");
    assert_eq!(
        (
            &edited["data"]["base_url"],
            &edited["data"]["tls"],
            &edited["data"]["tls_server_name"]
        ),
        (
            &json!("https://192.168.1.60:8080"),
            &json!("insecure"),
            &Value::Null
        )
    );
    let bad = json!({"tls": "maybe"});
    assert_eq!(
        admin(
            &app,
            reqwest::Method::PATCH,
            &format!("/terminals/{edited_id}"),
            Some(bad)
        )
        .await
        .0,
        400
    );

    let (code, _) = admin(
        &app,
        reqwest::Method::PATCH,
        "/terminals/1",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(code, 200);
    let id = app.init(1_000).await;
    let (code, body) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(
        (code, &body["code"]),
        (400, &json!("terminal_unavailable")),
        "no enabled healthy terminal left"
    );
    admin(
        &app,
        reqwest::Method::PATCH,
        "/terminals/1",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(app.kaspi(&id, "kaspi_gold").await.0, 200);
}

#[tokio::test]
async fn methods_are_edited_and_new_operations_use_the_new_percent() {
    let app = admin_app().await;
    let (_, all) = admin(&app, reqwest::Method::GET, "/payment-methods", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 4);
    let (code, edited) = admin(
        &app,
        reqwest::Method::PATCH,
        "/payment-methods/3",
        Some(json!({"credit_commission_percent": 10})),
    )
    .await;
    assert_eq!(
        (code, &edited["data"]["method"]["credit_commission_percent"]),
        (200, &json!(10))
    );
    let (_, red) = admin(
        &app,
        reqwest::Method::PATCH,
        "/payment-methods/2",
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(red["data"]["is_active"], json!(false));
    let active: Value = app
        .http
        .get(format!("{}/payment-methods/active", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes: Vec<&str> = active["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["kaspi_gold", "kaspi_kredit", "kaspi_rassrochka"]);
    let id = app.init(100_000).await;
    let (_, body) = app.kaspi(&id, "kaspi_kredit").await;
    assert_eq!(
        (&body["data"]["amount"], &body["data"]["commission_percent"]),
        (&json!(110000), &json!(10))
    );
    assert_eq!(
        app.kaspi(&app.init(10).await, "kaspi_red").await.1["code"],
        json!("invalid_payment_method")
    );
    let (code, body) = admin(
        &app,
        reqwest::Method::PATCH,
        "/payment-methods/9",
        Some(json!({"is_active": true})),
    )
    .await;
    assert_eq!((code, &body["code"]), (404, &json!("not_found")));
    let (code, body) = admin(
        &app,
        reqwest::Method::PATCH,
        "/payment-methods/1",
        Some(json!({"commission_percent": 150})),
    )
    .await;
    assert_eq!(
        (code, &body["code"]),
        (400, &json!("invalid_json")),
        "percents stay within 0..100"
    );
    // Кредит: 0 + 90 credit would be 90 %, fine; with a 20 % base it would be 110 %: refused.
    let (code, _) = admin(
        &app,
        reqwest::Method::PATCH,
        "/payment-methods/3",
        Some(json!({"credit_commission_percent": 90})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = admin(
        &app,
        reqwest::Method::PATCH,
        "/payment-methods/3",
        Some(json!({"commission_percent": 20})),
    )
    .await;
    assert_eq!((code, &body["code"]), (400, &json!("validation_error")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("110"), "{body}");
    let (_, methods) = admin(&app, reqwest::Method::GET, "/payment-methods", None).await;
    assert_eq!(
        methods["data"][2]["method"]["commission_percent"],
        json!(0),
        "nothing stored"
    );
}

async fn answer_with(State(code): State<Arc<AtomicU16>>) -> StatusCode {
    StatusCode::from_u16(code.load(Ordering::SeqCst)).unwrap()
}

#[tokio::test]
async fn the_webhook_log_shows_every_attempt_and_a_manual_retry_delivers() {
    let answer = Arc::new(AtomicU16::new(503));
    let receiver = axum::Router::new()
        .route("/hook", post(answer_with))
        .with_state(answer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let app = admin_app().await;
    let id = app
        .init_as(
            &app.token,
            json!({"amount": 900, "webhook_url": url, "webhook_secret": "s"}),
        )
        .await;
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(pay("Gold", None))
        .unwrap();
    assert_eq!(app.settled(&id).await["status"], json!("paid"));

    // The automatic attempt fails (503) and the next one is an hour away.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut log = Value::Null;
    while std::time::Instant::now() < deadline {
        log = admin(
            &app,
            reqwest::Method::GET,
            &format!("/payments/{id}/webhooks"),
            None,
        )
        .await
        .1;
        if log["data"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let event = &log["data"][0];
    assert_eq!(
        (&event["event"], &event["delivered"]),
        (&json!("paid"), &json!(false))
    );
    assert_eq!(
        (
            &event["attempts"][0]["response_code"],
            &event["attempts"][0]["trigger"]
        ),
        (&json!(503), &json!("automatic"))
    );

    answer.store(200, Ordering::SeqCst);
    let event_id = event["event_id"].as_str().unwrap();
    let (code, attempt) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/webhooks/{event_id}/retry"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{attempt}");
    assert_eq!(
        (
            &attempt["data"]["trigger"],
            &attempt["data"]["response_code"],
            &attempt["data"]["attempt"]
        ),
        (&json!("manual"), &json!(200), &json!(2))
    );
    let (_, log) = admin(
        &app,
        reqwest::Method::GET,
        &format!("/payments/{id}/webhooks"),
        None,
    )
    .await;
    assert_eq!(log["data"][0]["delivered"], json!(true));
    let (code, body) = admin(&app, reqwest::Method::POST, "/webhooks/evt_nope/retry", None).await;
    assert_eq!((code, &body["code"]), (404, &json!("not_found")));
}

#[tokio::test]
async fn unknown_operations_wait_for_review_with_their_terminal_locked() {
    let app = spawn_app_with(1, false, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
        config.unknown_review_after_secs = 0;
    })
    .await;
    let id = app.init(70_000).await;
    let (_, body) = app.kaspi(&id, "kaspi_gold").await;
    let unknown = byfly_terminal::simulator::PayRequest {
        outcome: byfly_terminal::simulator::Outcome::Unknown,
        ..pay("Gold", None)
    };
    app.simulator_with(body["data"]["qr_code"].as_str().unwrap())
        .pay(unknown)
        .unwrap();
    // `unknown` is never a failure: the payment stays processing and the terminal stays locked.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut review = Value::Null;
    while std::time::Instant::now() < deadline {
        assert_eq!(app.status(&id).await["status"], json!("processing"));
        review = admin(&app, reqwest::Method::GET, "/operations/review", None)
            .await
            .1;
        if review["data"].as_array().is_some_and(|ops| !ops.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let op = &review["data"][0];
    assert_eq!(
        (&op["transaction_id"], &op["needs_review"], &op["state"]),
        (&json!(id), &json!(true), &json!("in_flight"))
    );
    assert!(op["unknown_since"].is_string());
    let other = app.init(100).await;
    assert_eq!(
        app.kaspi(&other, "kaspi_gold").await.1["code"],
        json!("terminals_busy")
    );

    let (code, detail) = admin(&app, reqwest::Method::GET, &format!("/payments/{id}"), None).await;
    assert_eq!(code, 200, "{detail}");
    assert_eq!(detail["data"]["payment"]["status"], json!("processing"));
    assert_eq!(detail["data"]["operations"][0]["kind"], json!("payment"));
    assert_eq!(detail["data"]["operations"][0]["amount"], json!(70000));
}

#[tokio::test]
async fn payments_of_every_source_and_registering_a_terminal_now() {
    let app = admin_app().await;
    let mine = app.init(100).await;
    let other = ApiToken::generate(&mut OsRandom);
    app.store
        .create_source("Other", &other.hash(), BodyEncoding::Php, UnixSeconds(0))
        .await
        .unwrap();
    let theirs = app.init_as(other.expose(), json!({"amount": 200})).await;
    let (code, all) = admin(&app, reqwest::Method::GET, "/payments?limit=10", None).await;
    assert_eq!(code, 200, "{all}");
    let ids: Vec<&str> = all["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["transaction_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [theirs.as_str(), mine.as_str()]);
    let (_, first_source) = admin(
        &app,
        reqwest::Method::GET,
        "/payments?source_id=1&status=pending",
        None,
    )
    .await;
    assert_eq!(first_source["data"]["items"].as_array().unwrap().len(), 1);
    let (code, body) = admin(&app, reqwest::Method::GET, "/payments?limit=500", None).await;
    assert_eq!((code, &body["code"]), (400, &json!("validation_error")));

    let simulator = byfly_terminal::simulator::Simulator::start_local(Default::default())
        .await
        .unwrap();
    let new =
        json!({"name": "Касса 2", "base_url": simulator.base_url(), "camera_url": simulator.camera_url()});
    let (_, added) = admin(&app, reqwest::Method::POST, "/terminals", Some(new)).await;
    let id = added["data"]["id"].as_i64().unwrap();
    assert_eq!(added["data"]["registered"], json!(false));
    let (code, registered) = admin(
        &app,
        reqwest::Method::POST,
        &format!("/terminals/{id}/register"),
        None,
    )
    .await;
    // Registration waits for a cashier at the terminal: answered at once, pending.
    assert_eq!(code, 202, "{registered}");
    assert_eq!(registered["data"]["registration"]["state"], json!("pending"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !simulator.registration_pending() {
        assert!(
            std::time::Instant::now() < deadline,
            "the terminal never asked the cashier"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    simulator.approve_registration().unwrap();
    let terminal = loop {
        let (_, terminal) = admin(&app, reqwest::Method::GET, &format!("/terminals/{id}"), None).await;
        if terminal["data"]["registration"]["state"] != json!("pending") {
            break terminal;
        }
        assert!(std::time::Instant::now() < deadline, "never decided: {terminal}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        terminal["data"]["registration"]["state"],
        json!("approved"),
        "{terminal}"
    );
    assert_eq!(
        (&terminal["data"]["registered"], &terminal["data"]["healthy"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(simulator.counters().calls["register"], 1);
}
