//! `GET /api/openapi.json` and `GET /api/docs`: the OpenAPI 3.1 document of the API, and a page
//! that shows it.
//!
//! The document is built from the router itself: every handler carries its `#[utoipa::path]` and
//! the router registers handlers through `utoipa_axum::routes!`, which takes the path and method
//! from that description — a route cannot be served without being described, nor described at a
//! path it is not served on. Schemas come from byfly-core's wire types, the ones the handlers
//! serialize; the error answers of each route from its [`errors::error_set!`]; the deliveries we
//! send from [`webhooks`].

pub mod errors;
mod page;
mod webhooks;

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi as Document};
use utoipa::{Modify, OpenApi};

use byfly_core::error::ErrorEnvelope;
use byfly_core::wire::UndeliveredState;
use byfly_core::{BodyEncoding, PaymentMethod, PaymentStatus, WebhookEvent, WebhookPayload};

/// What the document holds before the routes add theirs: schemas no route names directly, the
/// security schemes and the tags.
#[derive(OpenApi)]
#[openapi(
    components(schemas(
        ErrorEnvelope,
        PaymentMethod,
        PaymentStatus,
        BodyEncoding,
        WebhookEvent,
        WebhookPayload,
        UndeliveredState
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "payments", description = "Create a payment, show it, take it on a Kaspi terminal, cancel it (the guide's routes)"),
        (name = "refunds", description = "Refunds: the customer confirms each part in the Kaspi app"),
        (name = "methods", description = "Payment methods and what each would charge"),
        (name = "health", description = "Liveness, readiness and the terminal pool"),
        (name = "admin: sources", description = "Merchant systems and their API tokens"),
        (name = "admin: terminals", description = "The terminal pool: add, register, enable, disable"),
        (name = "admin: methods", description = "Commissions and which methods are offered"),
        (name = "admin: payments", description = "Every source's payments with their operations"),
        (name = "admin: webhooks", description = "The webhook outbox: attempts, retries, recovery"),
        (name = "admin: review", description = "Operations only a person can settle"),
        (name = "page", description = "The payment page a customer opens"),
        (name = "console", description = "The operator's console: its page and its session (cookie and CSRF token)"),
        (name = "documentation", description = "This document and its page"),
        (name = "operations", description = "Prometheus metrics"),
        (name = "demo", description = "Demo mode only: the simulated customer and the demo's webhook receiver"),
    )
)]
struct Base;

/// `api_token` (the guide's `X-API-Token`) and `admin_token` (a bearer token).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Token",
                "A source's API token: 64 characters, from the administrator",
            ))),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The server's `admin_token` setting"))
                    .build(),
            ),
        );
    }
}

/// The document the routes start from.
pub fn base() -> Document {
    let mut document = Base::openapi();
    document.info = InfoBuilder::new()
        .title("ByFly Payment Center API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Payments on Kaspi Smart POS terminals. Every success is `{\"success\": true, \"data\": …}`; \
             every refusal is an `ErrorEnvelope` whose `code` is stable (each route lists the codes it \
             can answer). The deliveries the server sends to a payment's `webhook_url` are under `webhooks`.",
        ))
        .build();
    document
}

/// The routes' document, completed: the webhooks section.
pub fn finish(mut document: Document) -> Served {
    document.webhooks = Some(webhooks::section());
    Served::new(document)
}

/// The finished document, serialized once: every request answers the same bytes.
#[derive(Clone)]
pub struct Served {
    json: Arc<[u8]>,
    page: Arc<str>,
    policy: Arc<str>,
}

impl Served {
    fn new(document: Document) -> Served {
        let json = serde_json::to_vec(&document).unwrap_or_default();
        let page = page::render(&document);
        Served {
            json: json.into(),
            page: page.into(),
            policy: page::content_security_policy().into(),
        }
    }
}

/// `GET /api/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    operation_id = "openapiDocument",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn document(Extension(served): Extension<Served>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Bytes::copy_from_slice(&served.json),
    )
        .into_response()
}

/// `GET /api/docs`: the document as a page, rendered by the server (no script, no CDN).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "documentation",
    operation_id = "documentationPage",
    summary = "The document as a page to read",
    responses((status = 200, description = "An HTML page", content_type = "text/html"))
)]
pub async fn docs(Extension(served): Extension<Served>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, &*served.policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        served.page.to_string(),
    )
        .into_response()
}
