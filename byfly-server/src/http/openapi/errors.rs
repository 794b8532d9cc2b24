//! The error answers of each route in the document: one response per HTTP status, naming the
//! `code` values a client can meet there (API.md §1), each with its message. A route's set is
//! declared beside its handler with [`error_set!`] and named in the handler's
//! `#[utoipa::path(responses(...))]`, so the document says which refusals a generated client must
//! handle — not only "default: ErrorEnvelope".

use std::collections::BTreeMap;

use byfly_core::ErrorCode;
use utoipa::openapi::RefOr;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Ref, Type};

/// What any route can answer: the server's own failure, a dependency down, the request timeout.
pub const SERVER: &[ErrorCode] = &[
    ErrorCode::Internal,
    ErrorCode::Unavailable,
    ErrorCode::RequestTimeout,
];
/// A route that asks for `X-API-Token`.
pub const TOKEN: &[ErrorCode] = &[ErrorCode::InvalidToken];
/// A route that asks for the admin bearer token or a console session (whose changes need its
/// CSRF token).
pub const ADMIN: &[ErrorCode] = &[ErrorCode::InvalidAdminToken, ErrorCode::InvalidCsrfToken];
/// A route that reads a JSON body.
pub const BODY: &[ErrorCode] = &[
    ErrorCode::InvalidJson,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::PayloadTooLarge,
];
/// A route whose `{id}` names a payment by its transaction id.
pub const PAYMENT: &[ErrorCode] = &[ErrorCode::TransactionNotFound];
/// An admin route whose path names a row (source, terminal, method, operation, event).
pub const ROW: &[ErrorCode] = &[ErrorCode::NotFound];
/// A route with query parameters.
pub const QUERY: &[ErrorCode] = &[ErrorCode::ValidationError];

/// The responses for `codes` and [`SERVER`], one per status: `description` lists each code with
/// its message, the schema is [`byfly_core::error::ErrorEnvelope`] with `code` and `error_code`
/// narrowed to what this status carries, and the example is the first code's envelope.
pub fn responses(codes: &[ErrorCode]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for &code in codes.iter().chain(SERVER) {
        let same_status = by_status.entry(code.http_status()).or_default();
        if !same_status.contains(&code) {
            same_status.push(code);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| (status.to_string(), RefOr::T(response(status, &codes))))
        .collect()
}

fn response(status: u16, codes: &[ErrorCode]) -> Response {
    let description = codes
        .iter()
        .map(|code| format!("`{}` — {}", code.as_str(), code.message()))
        .collect::<Vec<_>>()
        .join("; ");
    let narrowed = ObjectBuilder::new()
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes.iter().map(|code| code.as_str()))),
        )
        .property(
            "error_code",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some([status])),
        );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorEnvelope"))
        .item(narrowed);
    let first = codes[0];
    let example = serde_json::json!({
        "success": false,
        "message": first.message(),
        "error_code": status,
        "code": first.as_str(),
    });
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema))
                .example(Some(example))
                .build(),
        )
        .build()
}

/// Declares a unit type whose `utoipa::IntoResponses` are [`responses`] of the groups and codes
/// given: `error_set!(InitErrors: [TOKEN, BODY] InvalidAmount, AmountTooLarge);`.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident: [$($group:ident),* $(,)?] $($code:ident),* $(,)?) => {
        $(#[$doc])*
        /// The refusals of a route, as its OpenAPI description lists them.
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                let mut codes: Vec<byfly_core::ErrorCode> = Vec::new();
                $(codes.extend_from_slice($crate::http::openapi::errors::$group);)*
                codes.extend_from_slice(&[$(byfly_core::ErrorCode::$code),*]);
                $crate::http::openapi::errors::responses(&codes)
            }
        }
    };
}
pub(crate) use error_set;
