//! The document's `webhooks` section (OpenAPI 3.1): what the server sends to a payment's
//! `webhook_url` — the payload and the headers a receiver verifies (API.md §6), so a generated
//! client can type its receiver too.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::{Content, Paths, Required};

/// Each header a delivery carries: name, whether every delivery has it, what it holds.
const HEADERS: &[(&str, bool, &str)] = &[
    (
        "X-Webhook-Event",
        true,
        "The event: paid, partially_paid, failed, cancelled, refunded, expired, overpaid",
    ),
    (
        "X-Webhook-Timestamp",
        true,
        "Unix seconds, equal to the payload's `timestamp`",
    ),
    (
        "X-Webhook-Signature",
        false,
        "Lowercase hex HMAC-SHA256(webhook_secret, exact body bytes); sent when the payment has a webhook_secret",
    ),
    (
        "X-Webhook-Signature-V2",
        false,
        "`t=<timestamp>,v1=<hex HMAC-SHA256(secret, \"<timestamp>.<body>\")>` (replay-safe)",
    ),
    (
        "X-Webhook-Id",
        true,
        "The event's id (= payload `event_id`), the same on every retry: de-duplicate by it",
    ),
    ("webhook-id", true, "Standard Webhooks: the event's id"),
    ("webhook-timestamp", true, "Standard Webhooks: Unix seconds"),
    (
        "webhook-signature",
        false,
        "Standard Webhooks: `v1,<base64 HMAC-SHA256(key, \"<id>.<timestamp>.<body>\")>`; the key is the secret's bytes, or the decoded base64 of a `whsec_` secret",
    ),
    ("User-Agent", true, "ByFly-Payment-Center/1.0"),
];

/// `webhooks.paymentEvent`: one POST per event, in order per payment, retried until a 2xx.
pub fn section() -> Paths {
    let mut operation = OperationBuilder::new()
        .operation_id(Some("paymentEvent"))
        .tag("payments")
        .summary(Some("A payment's event, delivered to its webhook_url"))
        .description(Some(
            "Sent after each change of a payment (in the order they happened; `sequence` counts \
             them per payment). A 2xx within 10 s is success; anything else, a redirect or no \
             answer is retried (1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h) and can be resent by an \
             operator. The body's bytes are what the signatures cover: verify before parsing.",
        ))
        .request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("WebhookPayload"))),
                )
                .required(Some(Required::True))
                .build(),
        ))
        .response(
            "2XX",
            ResponseBuilder::new().description("Received: the event is not sent again"),
        );
    for &(name, always, description) in HEADERS {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(if always { Required::True } else { Required::False })
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    let mut section = Paths::new();
    section.paths.insert(
        "paymentEvent".to_owned(),
        PathItem::new(HttpMethod::Post, operation.build()),
    );
    section
}
