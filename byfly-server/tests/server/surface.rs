//! The integration surface (issue 18): the OpenAPI document describes every route the server
//! serves, completely (operation ids, tags, parameters, error codes), and every rejection on every
//! route — a malformed path parameter, a wrong method, a body that is not JSON, a query that does
//! not parse — answers the envelope of API.md §1 with a status the document lists for that route.

use std::collections::BTreeSet;

use byfly_core::ErrorCode;
use serde_json::{Value, json};

use crate::common::{ADMIN, App, read_answer, spawn_app_with};

async fn documented_app() -> (App, Value) {
    let app = spawn_app_with(1, true, |config| {
        config.admin_token = Some(ADMIN.to_owned().into());
    })
    .await;
    let document = app.get_json("/openapi.json").await;
    (app, document)
}

/// `(method, path, operation)` of every operation in the document.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            found.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    found
}

fn site_of(app: &App) -> String {
    app.base.trim_end_matches("/api").to_owned()
}

/// A request as a client of that route would send it: the route's token, a JSON body where it
/// takes one.
fn request(app: &App, method: &str, url: &str, operation: &Value) -> reqwest::RequestBuilder {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut builder = app.http.request(method, url);
    let security = operation["security"].to_string();
    if security.contains("admin_token") {
        builder = builder.bearer_auth(ADMIN);
    }
    if security.contains("api_token") {
        builder = builder.header("X-API-Token", &app.token);
    }
    builder
}

/// Asserts `response` is the error envelope with a status `operation` documents: its `code` is one
/// of ours and matches the status.
async fn assert_envelope(what: &str, operation: &Value, response: reqwest::Response) -> (u16, String) {
    let (status, content_type, text) = read_answer(response).await;
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {status} {content_type} {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
    assert_eq!(body["success"], json!(false), "{what}: {text}");
    assert_eq!(body["error_code"], json!(status), "{what}: {text}");
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    let known = ErrorCode::parse(&code).unwrap_or_else(|| panic!("{what}: unknown code {code}"));
    assert_eq!(known.http_status(), status, "{what}: {text}");
    assert!(
        !body["message"].as_str().unwrap_or_default().is_empty(),
        "{what}: no message: {text}"
    );
    // 405 belongs to the path, not to an operation; everything else must be documented.
    if status != 405 {
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{what}: status {status} ({code}) not documented"
        );
        assert!(
            documented.to_string().contains(&format!("\"{code}\"")),
            "{what}: code {code} not among the documented ones of {status}"
        );
    }
    (status, code)
}

#[tokio::test]
async fn the_document_describes_every_operation_completely() {
    let (_app, document) = documented_app().await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let tags: BTreeSet<&str> = document["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["name"].as_str().unwrap())
        .collect();
    let mut ids = BTreeSet::new();
    let operations = operations(&document);
    // Every route of API.md, the demo's, the page's and /metrics: 52 operations on 45 paths.
    assert_eq!(
        operations.len(),
        52,
        "{:?}",
        operations.iter().map(|o| (&o.0, &o.1)).collect::<Vec<_>>()
    );
    for (method, path, operation) in &operations {
        let what = format!("{method} {path}");
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id.to_owned()), "{what}: operationId {id} twice");
        let tag = operation["tags"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no tag"));
        assert!(tags.contains(tag), "{what}: tag {tag} not declared");
        assert!(
            !operation["summary"].as_str().unwrap_or_default().is_empty(),
            "{what}: no summary"
        );
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{what}: no success"
        );
        // Every path parameter is described.
        for name in path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}'))
            .map(|(n, _)| n)
        {
            let described = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == json!(name) && p["in"] == json!("path"));
            assert!(described, "{what}: path parameter {name} not described");
        }
        // A route behind a token documents the refusal of a missing one.
        let security = operation["security"].to_string();
        if security.contains("api_token") {
            assert!(responses["401"].to_string().contains("invalid_token"), "{what}");
        }
        if security.contains("admin_token") {
            assert!(
                responses["401"].to_string().contains("invalid_admin_token"),
                "{what}"
            );
        }
        // A route that reads a body documents the body's refusals.
        if operation.get("requestBody").is_some() && !path.starts_with("/api/dev/webhooks") {
            for code in ["invalid_json", "unsupported_media_type", "payload_too_large"] {
                assert!(
                    operation["responses"].to_string().contains(code),
                    "{what}: {code}"
                );
            }
        }
    }
    // The guide's routes, by the ids a generated client names them.
    for id in [
        "initPayment",
        "getPaymentStatus",
        "startKaspiPayment",
        "cancelPayment",
        "refundPayment",
    ] {
        assert!(ids.contains(id), "{id}");
    }
    // The constraints the server enforces are in the document.
    let list = &document["paths"]["/api/payments"]["get"]["parameters"];
    let limit = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == json!("limit"))
        .unwrap();
    assert_eq!(
        (
            limit["schema"]["minimum"].clone(),
            limit["schema"]["maximum"].clone()
        ),
        (json!(1), json!(100))
    );
    let init = &document["paths"]["/api/payment/init"]["post"];
    let key = init["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == json!("Idempotency-Key"));
    assert_eq!(key.unwrap()["schema"]["maxLength"], json!(255));
    // The guide's examples: the init request and its 201 answer.
    let example = &init["requestBody"]["content"]["application/json"]["example"];
    assert_eq!(
        example["description"],
        json!("Оплата тура в Дубай #12345"),
        "{init}"
    );
    let answer = &init["responses"]["201"]["content"]["application/json"]["example"];
    assert_eq!(answer["message"], json!("Платеж создан"));
    // The webhooks we send: payload and the headers a receiver verifies.
    let webhook = &document["webhooks"]["paymentEvent"]["post"];
    assert_eq!(
        webhook["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        json!("#/components/schemas/WebhookPayload")
    );
    let headers: BTreeSet<&str> = webhook["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for header in [
        "X-Webhook-Signature",
        "X-Webhook-Id",
        "webhook-id",
        "webhook-signature",
        "webhook-timestamp",
    ] {
        assert!(headers.contains(header), "{header}");
    }
    // Every reference resolves.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    // Money is a number (exact, as the guide writes it), never a string; ids are strings.
    assert_eq!(
        schemas["KaspiResponse"]["properties"]["amount"]["$ref"],
        json!("#/components/schemas/Money")
    );
    assert_eq!(schemas["Money"]["type"], json!("number"), "{}", schemas["Money"]);
    assert_eq!(schemas["TransactionId"]["type"], json!("string"));
    assert_eq!(
        document["components"]["securitySchemes"]["api_token"]["name"],
        json!("X-API-Token")
    );
    let text = document.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "unresolved reference {name}");
    }
}

#[tokio::test]
async fn the_document_page_shows_every_operation_under_a_strict_policy() {
    let (app, document) = documented_app().await;
    let response = app.http.get(format!("{}/docs", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'; style-src 'sha256-"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");
    let page = response.text().await.unwrap();
    assert!(!page.contains("<script"), "the page runs no script");
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import"] {
        assert!(!page.contains(external), "nothing from elsewhere: {external}");
    }
    for (_, _, operation) in operations(&document) {
        let id = operation["operationId"].as_str().unwrap();
        assert!(page.contains(&format!("id=\"{id}\"")), "{id} not on the page");
    }
    assert!(
        page.contains("invalid_idempotency_key"),
        "error codes are on the page"
    );
    assert!(
        page.contains("X-Webhook-Signature"),
        "the webhooks are on the page"
    );
}

/// Values a path parameter must not accept: not an id of ours, or not a number, too large, or
/// not even valid UTF-8.
const MALFORMED_PATH_VALUES: &[&str] = &[
    "%FF%FE",
    "-1",
    "0",
    "abc",
    "99999999999999999999999",
    "%20",
    "1.5",
];

#[tokio::test]
async fn every_rejection_on_every_route_answers_the_envelope() {
    let (app, document) = documented_app().await;
    let site = site_of(&app);
    let mut checked = 0;
    for (method, path, operation) in operations(&document) {
        if path == "/pay/{id}" {
            // The payment page answers an unknown id with the page itself (status 404), by design:
            // the customer's browser shows «Платёж не найден».
            continue;
        }
        // Malformed path parameters.
        if path.contains('{') {
            for value in MALFORMED_PATH_VALUES {
                let mut concrete = path.clone();
                while let Some(start) = concrete.find('{') {
                    let end = concrete[start..].find('}').unwrap() + start;
                    concrete.replace_range(start..=end, value);
                }
                let url = format!("{site}{concrete}");
                let mut builder = request(&app, &method, &url, &operation);
                if operation.get("requestBody").is_some() {
                    builder = builder.json(&json!({}));
                }
                let what = format!("{method} {concrete}");
                let (status, _) = assert_envelope(&what, &operation, builder.send().await.unwrap()).await;
                assert!((400..500).contains(&status), "{what}: {status}");
                checked += 1;
            }
        }
        let concrete = path
            .replace("{id}", "A3F5D9E2B1C8")
            .replace("{refund_id}", "r1")
            .replace("{event_id}", "e1");
        let url = format!("{site}{concrete}");
        // A body that is not JSON, and JSON that is broken.
        if operation.get("requestBody").is_some() && path != "/api/dev/webhooks" {
            let what = format!("{method} {concrete} text/plain");
            let builder = request(&app, &method, &url, &operation)
                .header("content-type", "text/plain")
                .body("amount=1");
            let (status, code) = assert_envelope(&what, &operation, builder.send().await.unwrap()).await;
            // An unknown payment may be refused before its body is read.
            assert!(
                code == "unsupported_media_type" || status == 404,
                "{what}: {code}"
            );
            let what = format!("{method} {concrete} broken JSON");
            let builder = request(&app, &method, &url, &operation)
                .header("content-type", "application/json")
                .body("{\"amount\": ");
            let (status, code) = assert_envelope(&what, &operation, builder.send().await.unwrap()).await;
            assert!(code == "invalid_json" || status == 404, "{what}: {code}");
            // An array is not an object, though serde would read a struct from it field by field.
            let what = format!("{method} {concrete} array");
            let builder = request(&app, &method, &url, &operation).json(&json!([1000, null]));
            let (status, code) = assert_envelope(&what, &operation, builder.send().await.unwrap()).await;
            assert!(code == "invalid_json" || status == 404, "{what}: {code}");
            checked += 3;
        }
        // Query parameters that do not parse.
        let queries: Vec<(&str, bool)> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == json!("query"))
            .map(|p| {
                // Free text (the console's search) takes anything (undecodable bytes read as U+FFFD,
                // which finds nothing); a number, a status or a date does not.
                let free_text = p["name"] == json!("q");
                (p["name"].as_str().unwrap(), free_text)
            })
            .collect();
        for (name, free_text) in queries {
            // Not of the parameter's type, not UTF-8, out of range.
            for value in ["abc", "%FF", "99999999999999999999999"] {
                if (name == "cursor" && value == "abc") || free_text {
                    continue; // a hex cursor: `abc` is one; free text: any text is
                }
                let what = format!("{method} {concrete}?{name}={value}");
                let builder = request(&app, &method, &format!("{url}?{name}={value}"), &operation);
                let (status, _) = assert_envelope(&what, &operation, builder.send().await.unwrap()).await;
                assert_eq!(status, 400, "{what}");
                checked += 1;
            }
        }
        // A method the path does not have.
        let item = &document["paths"][&path];
        let other = ["get", "post", "patch", "put", "delete"]
            .into_iter()
            .find(|m| item.get(*m).is_none())
            .unwrap();
        let what = format!("{other} {concrete}");
        let response = request(&app, other, &url, &operation).send().await.unwrap();
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, code) = assert_envelope(&what, &operation, response).await;
        assert_eq!((status, code.as_str()), (405, "method_not_allowed"), "{what}");
        assert!(
            allow.is_some_and(|allow| allow.to_lowercase().contains(&method)),
            "{what}: Allow"
        );
        checked += 1;
    }
    // Unknown routes under /api, /admin and elsewhere.
    for path in [
        "/api/nothing",
        "/api/admin/nothing",
        "/admin/nothing",
        "/api/payment/A3F5D9E2B1C8/nothing",
        "/nothing",
    ] {
        let response = app.http.get(format!("{site}{path}")).send().await.unwrap();
        let (status, code) = assert_envelope(
            path,
            &json!({"responses": {"404": {"codes": ["route_not_found"]}}}),
            response,
        )
        .await;
        assert_eq!((status, code.as_str()), (404, "route_not_found"), "{path}");
    }
    assert!(checked > 200, "{checked}");
}

#[tokio::test]
async fn routes_are_registered_only_through_their_descriptions() {
    // `routes!` takes a handler's path and method from its `#[utoipa::path]`: a route added with
    // axum's own `.route(...)` would be served without being in the document.
    let router = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/router.rs")).unwrap();
    let code: String = router
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let raw: Vec<&str> = code.lines().filter(|line| line.contains(".route(")).collect();
    // `/metrics` alone on its own address (`metrics_bind`) is the one route outside the API's document.
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert!(raw[0].contains("\"/metrics\""), "{raw:?}");
}
