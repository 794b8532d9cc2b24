//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the API.
//!
//! The schemas are derived from byfly-core's wire types (the same types the handlers serialize, so
//! the document cannot drift from the answers); the paths come from the table below, which names
//! for each route its request and answer types.

use std::sync::OnceLock;

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, InfoBuilder, Paths, RefOr, Required};

use byfly_core::error::ErrorEnvelope;
use byfly_core::wire::{
    AddTerminalRequest, AdminMethodView, AdminPaymentView, CancelResponse, CreateSourceRequest,
    CreatedSource, HealthResponse, InitPaymentRequest, InitPaymentResponse, KaspiRequest, KaspiResponse,
    LivenessResponse, MethodQuoteView, OperationView, PaymentList, PaymentStatusView, PaymentSummary,
    PaymentView, PoolHealth, ReadinessCheck, ReadinessResponse, RecoverWebhooksRequest, RecoveredWebhooks,
    RefundPart, RefundRequest, RefundStatus, RefundView, RegistrationView, ResolveOperationRequest,
    SourceView, TerminalView, UndeliveredEventList, UndeliveredEventView, UndeliveredState,
    UpdateMethodRequest, UpdateSourceRequest, UpdateTerminalRequest, WebhookAttemptView, WebhookEventView,
};
use byfly_core::{BodyEncoding, PaymentMethod, PaymentStatus, WebhookEvent, WebhookPayload};

#[derive(OpenApi)]
#[openapi(components(schemas(
    InitPaymentRequest,
    InitPaymentResponse,
    PaymentView,
    MethodQuoteView,
    PaymentStatusView,
    KaspiRequest,
    KaspiResponse,
    CancelResponse,
    RefundRequest,
    RefundStatus,
    RefundPart,
    RefundView,
    UndeliveredEventList,
    UndeliveredEventView,
    UndeliveredState,
    RecoverWebhooksRequest,
    RecoveredWebhooks,
    PaymentSummary,
    PaymentList,
    PoolHealth,
    HealthResponse,
    LivenessResponse,
    ReadinessResponse,
    ReadinessCheck,
    CreateSourceRequest,
    SourceView,
    CreatedSource,
    UpdateSourceRequest,
    TerminalView,
    RegistrationView,
    ResolveOperationRequest,
    AddTerminalRequest,
    UpdateTerminalRequest,
    AdminMethodView,
    UpdateMethodRequest,
    OperationView,
    AdminPaymentView,
    WebhookAttemptView,
    WebhookEventView,
    ErrorEnvelope,
    PaymentMethod,
    PaymentStatus,
    BodyEncoding,
    WebhookEvent,
    WebhookPayload
)))]
struct Schemas;

/// Who may call a route.
#[derive(Clone, Copy)]
enum Auth {
    Public,
    Token,
    Admin,
}

/// One route: method, path, summary, who may call it, request body type, answer `data` type
/// (`[T]` for a list), success status.
type Route = (
    HttpMethod,
    &'static str,
    &'static str,
    Auth,
    Option<&'static str>,
    &'static str,
    &'static str,
);

const ROUTES: &[Route] = &[
    (
        HttpMethod::Post,
        "/api/payment/init",
        "Create a payment",
        Auth::Token,
        Some("InitPaymentRequest"),
        "InitPaymentResponse",
        "201",
    ),
    (
        HttpMethod::Get,
        "/api/payment/{id}",
        "The public view of a payment",
        Auth::Public,
        None,
        "PaymentView",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/payment/{id}/status",
        "Status (asks the terminal while processing)",
        Auth::Public,
        None,
        "PaymentStatusView",
        "200",
    ),
    (
        HttpMethod::Post,
        "/api/payment/{id}/kaspi",
        "Start (or top up) the payment on a Kaspi terminal",
        Auth::Public,
        Some("KaspiRequest"),
        "KaspiResponse",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/payment/{id}/quotes",
        "What each active method would charge now (the /kaspi figures)",
        Auth::Public,
        None,
        "[MethodQuoteView]",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/payment/{id}/qr.svg",
        "The current operation's QR code as an SVG image",
        Auth::Public,
        None,
        "",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/payment-methods/active",
        "Active payment methods",
        Auth::Public,
        None,
        "[PaymentMethod]",
        "200",
    ),
    (
        HttpMethod::Post,
        "/api/payment/{id}/cancel",
        "Cancel a payment",
        Auth::Token,
        None,
        "CancelResponse",
        "200",
    ),
    (
        HttpMethod::Post,
        "/api/payment/{id}/refund",
        "Refund all or part of what was received",
        Auth::Token,
        Some("RefundRequest"),
        "RefundView",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/payment/{id}/refund/{refund_id}",
        "Where a refund stands",
        Auth::Token,
        None,
        "RefundView",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/payments",
        "The source's payments, newest first (status, limit, cursor)",
        Auth::Token,
        None,
        "PaymentList",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/health",
        "Liveness, database and terminal pool",
        Auth::Public,
        None,
        "HealthResponse",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/health/live",
        "The process answers (for a container runtime's liveness probe)",
        Auth::Public,
        None,
        "LivenessResponse",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/health/ready",
        "Whether to send this process traffic: database, schema, workers, webhook sender (503 with the same body when not)",
        Auth::Public,
        None,
        "ReadinessResponse",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/admin/sources",
        "Sources",
        Auth::Admin,
        None,
        "[SourceView]",
        "200",
    ),
    (
        HttpMethod::Post,
        "/api/admin/sources",
        "Create a source (its token is shown once)",
        Auth::Admin,
        Some("CreateSourceRequest"),
        "CreatedSource",
        "201",
    ),
    (
        HttpMethod::Patch,
        "/api/admin/sources/{id}",
        "Change a source's encoding or revoke it",
        Auth::Admin,
        Some("UpdateSourceRequest"),
        "SourceView",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/admin/terminals",
        "Terminals with their health",
        Auth::Admin,
        None,
        "[TerminalView]",
        "200",
    ),
    (
        HttpMethod::Post,
        "/api/admin/terminals",
        "Add a terminal",
        Auth::Admin,
        Some("AddTerminalRequest"),
        "TerminalView",
        "201",
    ),
    (
        HttpMethod::Get,
        "/api/admin/terminals/{id}",
        "One terminal, with its registration's progress",
        Auth::Admin,
        None,
        "TerminalView",
        "200",
    ),
    (
        HttpMethod::Post,
        "/api/admin/terminals/{id}/register",
        "Start registering a terminal: a cashier accepts on its screen (answers at once, registration pending)",
        Auth::Admin,
        None,
        "TerminalView",
        "202",
    ),
    (
        HttpMethod::Post,
        "/api/admin/operations/{id}/resolve",
        "An operator's decision about an operation under review: paid (amount) or not paid",
        Auth::Admin,
        Some("ResolveOperationRequest"),
        "OperationView",
        "200",
    ),
    (
        HttpMethod::Patch,
        "/api/admin/terminals/{id}",
        "Enable or disable a terminal",
        Auth::Admin,
        Some("UpdateTerminalRequest"),
        "TerminalView",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/admin/payment-methods",
        "All payment methods",
        Auth::Admin,
        None,
        "[AdminMethodView]",
        "200",
    ),
    (
        HttpMethod::Patch,
        "/api/admin/payment-methods/{id}",
        "Edit a method's percents or active flag",
        Auth::Admin,
        Some("UpdateMethodRequest"),
        "AdminMethodView",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/admin/payments/{id}",
        "A payment with its operations",
        Auth::Admin,
        None,
        "AdminPaymentView",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/admin/payments/{id}/webhooks",
        "A payment's webhook events and attempts",
        Auth::Admin,
        None,
        "[WebhookEventView]",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/admin/webhooks",
        "Undelivered webhook events across payments (pending, failed, exhausted), oldest first",
        Auth::Admin,
        None,
        "UndeliveredEventList",
        "200",
    ),
    (
        HttpMethod::Post,
        "/api/admin/webhooks/recover",
        "Reschedule every failed or exhausted event of a source since a time, in order",
        Auth::Admin,
        Some("RecoverWebhooksRequest"),
        "RecoveredWebhooks",
        "200",
    ),
    (
        HttpMethod::Post,
        "/api/admin/webhooks/{event_id}/retry",
        "Send a webhook event again now",
        Auth::Admin,
        None,
        "WebhookAttemptView",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/admin/operations/review",
        "Operations waiting for an operator: long unknown, forgotten by the terminal, or started without an answer",
        Auth::Admin,
        None,
        "[OperationView]",
        "200",
    ),
    (
        HttpMethod::Get,
        "/api/openapi.json",
        "This document",
        Auth::Public,
        None,
        "",
        "200",
    ),
];

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// `{"success": true, "message"?: string, "data": <data>}`.
fn envelope(data: &str) -> RefOr<Schema> {
    let data = match data.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')) {
        Some(item) => ArrayBuilder::new().items(reference(item)).into(),
        None => reference(data),
    };
    ObjectBuilder::new()
        .property("success", ObjectBuilder::new().schema_type(Type::Boolean))
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .property("data", data)
        .required("success")
        .required("data")
        .into()
}

fn build() -> utoipa::openapi::OpenApi {
    let mut document = Schemas::openapi();
    document.info = InfoBuilder::new()
        .title("ByFly Payment Center API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Payments on Kaspi Smart POS terminals. Every error answers with ErrorEnvelope.",
        ))
        .build();
    let mut paths = Paths::new();
    for (method, path, summary, auth, request, data, status) in ROUTES.iter().cloned() {
        let success = if data.is_empty() {
            // Not JSON in the envelope (the OpenAPI document itself, the QR image).
            ResponseBuilder::new().description(summary).build()
        } else {
            ResponseBuilder::new()
                .description("Success")
                .content("application/json", Content::new(Some(envelope(data))))
                .build()
        };
        let error = ResponseBuilder::new()
            .description("Error (the `code` field is stable)")
            .content("application/json", Content::new(Some(reference("ErrorEnvelope"))))
            .build();
        let mut operation = OperationBuilder::new()
            .summary(Some(summary))
            .response(status, success)
            .response("default", error);
        for name in path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        {
            let parameter = ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build();
            operation = operation.parameter(parameter);
        }
        if let Some(request) = request {
            let body = RequestBodyBuilder::new()
                .content("application/json", Content::new(Some(reference(request))))
                .required(Some(Required::True))
                .build();
            operation = operation.request_body(Some(body));
        }
        operation = match auth {
            Auth::Public => operation,
            Auth::Token => operation.security(SecurityRequirement::new("api_token", Vec::<String>::new())),
            Auth::Admin => operation.security(SecurityRequirement::new("admin_token", Vec::<String>::new())),
        };
        paths.add_path_operation(path, vec![method], operation.build());
    }
    document.paths = paths;
    if let Some(components) = document.components.as_mut() {
        components.add_security_scheme(
            "api_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Token"))),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    document
}

/// The document, built once.
pub async fn document() -> Json<&'static utoipa::openapi::OpenApi> {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    Json(DOCUMENT.get_or_init(build))
}
