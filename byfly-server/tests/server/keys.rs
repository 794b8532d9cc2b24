//! API keys (issue 18): several per source, rotated without downtime — create the new key, switch,
//! revoke the old — with one payment history; expiry on the server's clock; each refusal in the
//! envelope.

use std::sync::Arc;

use byfly_server::clock::{Clock, ManualClock};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{ADMIN, App, admin, spawn_app_on};

async fn app_on(clock: Arc<ManualClock>) -> App {
    spawn_app_on(0, false, clock, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
    })
    .await
}

/// `GET /api/payments` with `token`: the status and how many payments it lists.
async fn list_with(app: &App, token: &str) -> (u16, Value) {
    let response = app
        .http
        .get(format!("{}/payments", app.base))
        .header("X-API-Token", token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_token_is_rotated_without_downtime_and_the_history_stays_one() {
    let clock = Arc::new(ManualClock::default());
    let app = app_on(clock.clone()).await;
    let (status, created) = admin(
        &app,
        Method::POST,
        "/sources",
        Some(json!({"name": "Agency CRM"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let source_id = created["data"]["source"]["id"].as_i64().unwrap();
    let old_token = created["data"]["api_token"].as_str().unwrap().to_owned();
    let (_, keys) = admin(&app, Method::GET, &format!("/sources/{source_id}/keys"), None).await;
    let keys = keys["data"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0]["name"].clone(), keys[0]["active"].clone()),
        (json!("initial"), json!(true))
    );
    let old_key = keys[0]["id"].as_i64().unwrap();
    let before = app.init_as(&old_token, json!({"amount": 1000})).await;

    // 1. A new key: its token works at once, beside the old one.
    let (status, made) = admin(
        &app,
        Method::POST,
        &format!("/sources/{source_id}/keys"),
        Some(json!({"name": "  CRM 2027  "})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let new_token = made["data"]["api_token"].as_str().unwrap().to_owned();
    assert_eq!(new_token.len(), 64, "the guide's clients expect 64 characters");
    assert!(new_token.bytes().all(|b| b.is_ascii_alphanumeric()));
    let key = &made["data"]["key"];
    assert_eq!(key["name"], json!("CRM 2027"));
    assert_eq!(key["hint"], json!(new_token[60..]));
    assert_eq!(key["last_used_at"], Value::Null);
    assert_ne!(new_token, old_token);
    // 2. The merchant switches; both work in between, into one history.
    let after = app.init_as(&new_token, json!({"amount": 2000})).await;
    assert_eq!(
        list_with(&app, &old_token).await.1["data"]["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, listed) = list_with(&app, &new_token).await;
    let ids: Vec<&str> = listed["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["transaction_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![after.as_str(), before.as_str()]);
    // 3. The old key is revoked: refused at once, the new one goes on.
    let path = format!("/sources/{source_id}/keys/{old_key}/revoke");
    let (status, revoked) = admin(&app, Method::POST, &path, None).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["data"]["active"], json!(false));
    assert!(revoked["data"]["revoked_at"].is_string());
    let (status, refused) = list_with(&app, &old_token).await;
    assert_eq!(
        (status, refused["code"].clone()),
        (401, json!("invalid_token")),
        "{refused}"
    );
    assert_eq!(list_with(&app, &new_token).await.0, 200);
    let (_, keys) = admin(&app, Method::GET, &format!("/sources/{source_id}/keys"), None).await;
    let shown: Vec<(Value, Value)> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].clone(), k["active"].clone()))
        .collect();
    assert_eq!(
        shown,
        vec![(json!("initial"), json!(false)), (json!("CRM 2027"), json!(true))]
    );
    let offset = byfly_core::time::DisplayOffset::utc();
    assert_eq!(keys["data"][1]["last_used_at"], json!(offset.format(clock.now())));
    // Revoking again keeps it revoked, with its first time.
    let (status, again) = admin(&app, Method::POST, &path, None).await;
    assert_eq!(
        (status, again["data"]["revoked_at"].clone()),
        (200, revoked["data"]["revoked_at"].clone())
    );
}

#[tokio::test]
async fn a_key_stops_working_when_the_servers_clock_passes_its_expiry() {
    let clock = Arc::new(ManualClock::default());
    let app = app_on(clock.clone()).await;
    let offset = byfly_core::time::DisplayOffset::utc();
    let expires_at = offset.format(clock.now() + 3_600);
    let (status, made) = admin(
        &app,
        Method::POST,
        "/sources/1/keys",
        Some(json!({"name": "temporary", "expires_at": expires_at})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["data"]["key"]["expires_at"], json!(expires_at));
    let token = made["data"]["api_token"].as_str().unwrap().to_owned();
    assert_eq!(list_with(&app, &token).await.0, 200);
    clock.advance(3_599);
    assert_eq!(list_with(&app, &token).await.0, 200);
    clock.advance(1);
    let (status, refused) = list_with(&app, &token).await;
    assert_eq!((status, refused["code"].clone()), (401, json!("invalid_token")));
    // The source's first key, without an expiry, still works.
    assert_eq!(list_with(&app, &app.token).await.0, 200);
}

#[tokio::test]
async fn each_refusal_of_the_key_routes_is_the_envelope() {
    let app = app_on(Arc::new(ManualClock::default())).await;
    let cases = [
        (
            Method::POST,
            "/sources/1/keys",
            json!({"name": " "}),
            400,
            "validation_error",
        ),
        (
            Method::POST,
            "/sources/1/keys",
            json!({"name": "x".repeat(256)}),
            400,
            "validation_error",
        ),
        (
            Method::POST,
            "/sources/1/keys",
            json!({"name": "k", "expires_at": "tomorrow"}),
            400,
            "validation_error",
        ),
        (
            Method::POST,
            "/sources/1/keys",
            json!({"name": "k", "expires_at": "2020-01-01 00:00:00"}),
            400,
            "validation_error",
        ),
        (
            Method::POST,
            "/sources/1/keys",
            json!({"expires_at": null}),
            400,
            "invalid_json",
        ),
        (
            Method::POST,
            "/sources/999/keys",
            json!({"name": "k"}),
            404,
            "not_found",
        ),
        (Method::GET, "/sources/999/keys", Value::Null, 404, "not_found"),
        (
            Method::POST,
            "/sources/1/keys/999/revoke",
            Value::Null,
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/sources/1/keys/abc/revoke",
            Value::Null,
            404,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let body = (!body.is_null()).then_some(body);
        let (answered, envelope) = admin(&app, method.clone(), path, body).await;
        assert_eq!(
            (answered, envelope["code"].clone()),
            (status, json!(code)),
            "{method} {path}: {envelope}"
        );
        assert_eq!(envelope["success"], json!(false));
    }
    // Another source's key is not this source's to revoke.
    let (_, other) = admin(&app, Method::POST, "/sources", Some(json!({"name": "Shop"}))).await;
    let other_id = other["data"]["source"]["id"].as_i64().unwrap();
    let (_, keys) = admin(&app, Method::GET, &format!("/sources/{other_id}/keys"), None).await;
    let other_key = keys["data"][0]["id"].as_i64().unwrap();
    let (status, _) = admin(
        &app,
        Method::POST,
        &format!("/sources/1/keys/{other_key}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    // Without the admin token: refused.
    let response = app
        .http
        .get(format!("{}/admin/sources/1/keys", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
