//! OpenAPI schemas of the types whose JSON form is not what their Rust shape suggests (feature
//! `openapi`): amounts and percents are JSON numbers, ids and codes are strings, metadata is any
//! JSON object.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::ids::TransactionId;
use crate::method::MethodCode;
use crate::money::{Money, Percent};
use crate::webhook::RawJson;

fn schema(kind: Type, description: &str, example: serde_json::Value) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(kind)
        .description(Some(description))
        .examples([example])
        .into()
}

impl utoipa::PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        schema(
            Type::Number,
            "Exact amount, at most 2 decimals, written as JavaScript writes the number (57000, 87719.3)",
            serde_json::json!(57000),
        )
    }
}
impl utoipa::ToSchema for Money {}

/// `amount` of `POST /api/payment/init`: `InitPaymentInput::validate` rounds it to 2 places half
/// away from zero and refuses what is then not above 0, so 0.005 is the least that passes. The
/// upper bound is the server's `max_amount` setting, which a schema built at compile time cannot
/// know.
pub(crate) fn init_amount() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0.005))
        .description(Some(
            "Amount without commission, exact: rounded to 2 decimals half away from zero, it must then be \
             above 0 and at most the server's `max_amount` (default 100000000)",
        ))
        .examples([serde_json::json!(50000)])
        .into()
}

impl utoipa::PartialSchema for Percent {
    fn schema() -> RefOr<Schema> {
        schema(Type::Number, "Percent, 0 to 100", serde_json::json!(14))
    }
}
impl utoipa::ToSchema for Percent {}

impl utoipa::PartialSchema for TransactionId {
    fn schema() -> RefOr<Schema> {
        schema(
            Type::String,
            "12 uppercase hex characters",
            serde_json::json!("A3F5D9E2B1C8"),
        )
    }
}
impl utoipa::ToSchema for TransactionId {}

impl utoipa::PartialSchema for MethodCode {
    fn schema() -> RefOr<Schema> {
        schema(
            Type::String,
            "Payment method code",
            serde_json::json!("kaspi_gold"),
        )
    }
}
impl utoipa::ToSchema for MethodCode {}

impl utoipa::PartialSchema for RawJson {
    fn schema() -> RefOr<Schema> {
        schema(
            Type::Object,
            "The merchant's metadata, verbatim",
            serde_json::json!({"order_id": "12345"}),
        )
    }
}
impl utoipa::ToSchema for RawJson {}
