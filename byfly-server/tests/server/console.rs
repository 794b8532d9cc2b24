//! The console's session (issue 16): the admin token exchanged for an HttpOnly, SameSite=Strict
//! cookie; every change through it needs its CSRF token; idle and absolute expiry on the server's
//! clock; logout; failed logins limited per address. (The pages themselves: tests/tests/console.rs.)

use std::sync::Arc;

use byfly_server::clock::{Clock, ManualClock};
use serde_json::{Value, json};

use crate::common::{ADMIN, App, spawn_app_on};

async fn console_app(clock: Arc<ManualClock>) -> App {
    spawn_app_on(0, false, clock, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
        config.admin_session_idle_secs = 600;
        config.admin_session_max_secs = 3600;
    })
    .await
}

/// A logged-in session: its cookie (`byfly_admin=…`) and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn login(app: &App, token: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/admin/session", app.base))
        .json(&json!({"token": token}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn logged_in(app: &App) -> Session {
    let response = login(app, ADMIN, &[]).await;
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    Session {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: body["data"]["csrf_token"].as_str().unwrap().to_owned(),
    }
}

/// `METHOD {base}{path}` with the session's cookie, and its CSRF token when `csrf` says so.
async fn with_session(
    app: &App,
    session: &Session,
    method: reqwest::Method,
    path: &str,
    csrf: Option<&str>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.base))
        .header("cookie", &session.cookie);
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    if path.starts_with("/admin/sources/") {
        request = request.json(&json!({"webhook_json": "js"}));
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_admin_token_becomes_a_cookie_and_changes_need_the_csrf_token() {
    let clock = Arc::new(ManualClock::default());
    let app = console_app(clock.clone()).await;
    // A wrong token: refused, no cookie.
    let refused = login(&app, "wrong-token-0123456789", &[]).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("set-cookie").is_none());
    // The right one: a cookie the page's script cannot read, sent only to this site.
    let response = login(&app, ADMIN, &[]).await;
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "byfly_admin=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http here: {set_cookie}");
    assert!(!set_cookie.contains(ADMIN), "the cookie is not the admin token");
    let session = logged_in(&app).await;
    // Reads need only the cookie.
    let (status, _) = with_session(&app, &session, reqwest::Method::GET, "/admin/payments", None).await;
    assert_eq!(status, 200);
    let (status, current) = with_session(&app, &session, reqwest::Method::GET, "/admin/session", None).await;
    assert_eq!(
        (status, current["data"]["csrf_token"].as_str()),
        (200, Some(session.csrf.as_str()))
    );
    // A change without the CSRF token, or with another's, is refused; with it, done.
    for csrf in [None, Some("0".repeat(64).as_str())] {
        let (status, body) =
            with_session(&app, &session, reqwest::Method::PATCH, "/admin/sources/1", csrf).await;
        assert_eq!(
            (status, body["code"].clone()),
            (403, json!("invalid_csrf_token")),
            "{body}"
        );
    }
    let (status, changed) = with_session(
        &app,
        &session,
        reqwest::Method::PATCH,
        "/admin/sources/1",
        Some(&session.csrf),
    )
    .await;
    assert_eq!(
        (status, changed["data"]["webhook_json"].clone()),
        (200, json!("js")),
        "{changed}"
    );
    // The bearer token still works for scripts, without any CSRF token.
    let (status, _) = crate::common::admin(&app, reqwest::Method::GET, "/sources", None).await;
    assert_eq!(status, 200);
    // Behind https (as a proxy says), the cookie is Secure.
    let behind = login(&app, ADMIN, &[("x-forwarded-proto", "https")]).await;
    assert!(
        behind.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
}

#[tokio::test]
async fn a_session_ends_when_idle_at_its_limit_or_at_logout() {
    let clock = Arc::new(ManualClock::default());
    let app = console_app(clock.clone()).await;
    let read = |session: &Session| {
        let session = Session {
            cookie: session.cookie.clone(),
            csrf: session.csrf.clone(),
        };
        let app = &app;
        async move {
            with_session(app, &session, reqwest::Method::GET, "/admin/payments", None)
                .await
                .0
        }
    };
    // Idle: 600 s without a request.
    let idle = logged_in(&app).await;
    clock.advance(599);
    assert_eq!(read(&idle).await, 200);
    clock.advance(599);
    assert_eq!(read(&idle).await, 200, "each request keeps it alive");
    clock.advance(601);
    assert_eq!(read(&idle).await, 401);
    // Busy, but past its 3600 s.
    let busy = logged_in(&app).await;
    for _ in 0..6 {
        clock.advance(500);
        assert_eq!(read(&busy).await, 200);
    }
    clock.advance(601);
    assert_eq!(read(&busy).await, 401, "3601 s after login");
    // Logout needs the CSRF token, then the session is gone.
    let ending = logged_in(&app).await;
    let (status, body) = with_session(&app, &ending, reqwest::Method::DELETE, "/admin/session", None).await;
    assert_eq!((status, body["code"].clone()), (403, json!("invalid_csrf_token")));
    let (status, _) = with_session(
        &app,
        &ending,
        reqwest::Method::DELETE,
        "/admin/session",
        Some(&ending.csrf),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(read(&ending).await, 401);
}

#[tokio::test]
async fn failed_logins_are_limited_per_address() {
    let app = console_app(Arc::new(ManualClock::default())).await;
    // Right logins never count: a desk's operators behind one address log in as often as they need.
    for _ in 0..2 * byfly_server::http::LOGINS_PER_MINUTE {
        assert_eq!(login(&app, ADMIN, &[]).await.status(), 200);
    }
    for _ in 0..byfly_server::http::LOGINS_PER_MINUTE {
        assert_eq!(login(&app, "wrong-token-0123456789", &[]).await.status(), 401);
    }
    // The failures used up, even the right token is refused (a guess that happens to be right
    // learns nothing).
    let limited = login(&app, ADMIN, &[]).await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["code"], json!("rate_limited"));
}

#[tokio::test]
async fn the_console_finds_a_payment_the_way_an_operator_looks_it_up() {
    let clock = Arc::new(ManualClock::default());
    let app = console_app(clock.clone()).await;
    let aigerim = app
        .init_as(
            &app.token,
            json!({"amount": 57000, "description": "Тур в Анталью", "customer_name": "Айгерим Садыкова",
                   "customer_phone": "+7 (701) 123-45-67", "customer_email": "Aigerim@Example.kz",
                   "metadata": {"order_id": "A-4471", "note": "50%_off"}}),
        )
        .await;
    clock.advance(86_400);
    let numeric = app
        .init_as(
            &app.token,
            json!({"amount": 1000, "customer_name": "Ivan", "metadata": {"order_id": 90210}}),
        )
        .await;
    // Metadata PostgreSQL's jsonb refuses (a NUL escape): kept verbatim, and no search fails on it.
    let odd = app
        .init_as(
            &app.token,
            json!({"amount": 2000, "metadata": {"order_id": "X\u{0}Y"}}),
        )
        .await;
    let found = |query: &str| {
        let query = query.to_owned();
        let app = &app;
        async move {
            let (status, page) =
                crate::common::admin(app, reqwest::Method::GET, &format!("/payments?{query}"), None).await;
            assert_eq!(status, 200, "{query}: {page}");
            page["data"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["transaction_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let only = |id: &str| vec![id.to_owned()];
    for q in [
        "%2B77011234567",
        "8%20701%20123%2045%2067",
        "7011234567",
        "Айгерим",
        "айгерим",
        "садыкова",
        "aigerim%40example",
        "AIGERIM",
        "A-4471",
        "Анталью",
    ] {
        assert_eq!(found(&format!("q={q}")).await, only(&aigerim), "q={q}");
    }
    assert_eq!(found("q=90210").await, only(&numeric), "a numeric order_id");
    assert_eq!(
        found(&format!("q={}", aigerim.to_lowercase())).await,
        only(&aigerim),
        "the id in any case"
    );
    // LIKE's wildcards in the text match only themselves.
    assert!(found("q=%25").await.is_empty());
    assert!(
        found("q=50%25_").await.is_empty(),
        "metadata other than order_id is not searched"
    );
    // Dates: from inclusive, to inclusive (a whole day is `… 00:00:00` to `… 23:59:59`).
    let offset = byfly_core::time::DisplayOffset::utc();
    let day_two = offset.format(clock.now() - 10);
    let all = found("").await;
    assert_eq!(all.len(), 3);
    assert!(all.contains(&odd));
    let from = day_two.replace(' ', "%20");
    assert_eq!(
        found(&format!("from={from}")).await.len(),
        2,
        "created on the second day"
    );
    let to = offset.format(clock.now() - 86_400).replace(' ', "%20");
    assert_eq!(
        found(&format!("to={to}")).await,
        only(&aigerim),
        "created at that second counts"
    );
    // The admin list shows the customer; the source's own list does not change shape.
    let (_, page) = crate::common::admin(&app, reqwest::Method::GET, "/payments?q=Айгерим", None).await;
    assert_eq!(
        page["data"]["items"][0]["customer"]["phone"],
        json!("+7 (701) 123-45-67")
    );
    assert_eq!(page["data"]["items"][0]["source_id"], json!(1));
    let own = app.get_json_as("/payments").await;
    assert!(own["data"]["items"][0].get("customer").is_none(), "{own}");
}

#[tokio::test]
async fn a_new_admin_token_ends_the_sessions_of_the_old_one() {
    let clock = Arc::new(ManualClock::default());
    let mut app = console_app(clock).await;
    let session = logged_in(&app).await;
    let (status, _) = with_session(&app, &session, reqwest::Method::GET, "/admin/payments", None).await;
    assert_eq!(status, 200);
    // The operator replaces a leaked admin token and restarts the server.
    app.reconfigure(|settings| settings.admin_token = Some("a-brand-new-admin-token".to_owned().into()))
        .await;
    let (status, _) = with_session(&app, &session, reqwest::Method::GET, "/admin/payments", None).await;
    assert_eq!(status, 401, "the old token's session ended");
}

#[tokio::test]
async fn the_operator_names_themselves_at_login_and_a_bad_name_is_refused() {
    let app = console_app(Arc::new(ManualClock::default())).await;
    let sign_in = |operator: Value| {
        app.http
            .post(format!("{}/admin/session", app.base))
            .json(&json!({"token": ADMIN, "operator": operator}))
            .send()
    };
    let response = sign_in(json!("  Дана Касымова  ")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["data"]["operator"],
        json!("Дана Касымова"),
        "trimmed: {body}"
    );
    for bad in [json!("д".repeat(101)), json!("Дана\u{7}")] {
        let response = sign_in(bad.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert!(response.headers().get("set-cookie").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (body["success"].clone(), body["code"].clone()),
            (json!(false), json!("validation_error")),
            "{body}"
        );
    }
}
