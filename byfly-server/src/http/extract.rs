//! Extractors of our own, so that body, path and auth failures answer in the API's envelope:
//! the raw JSON body ([`JsonBytes`], for idempotency's hash), a typed one ([`JsonBody`],
//! [`JsonBodyOr`]), the calling source ([`Source`]), a payment named by the path ([`PaymentPath`],
//! [`OwnPayment`]), a row id in the path ([`RowId`]) and any path segment as text
//! ([`PathSegments`]) — an id that does not parse or names nothing is a 404, never axum's
//! plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use byfly_core::ids::TokenHash;
use byfly_core::{ErrorCode, TransactionId};

use super::errors::HttpError;
use super::state::AppState;
use crate::store::{OperationRecord, PaymentRecord, SourceRecord, UnixSeconds};

/// A request body that is JSON (or empty), at most `max_body_bytes`, kept as bytes so each handler
/// parses it leniently and idempotency can hash exactly what was sent.
#[derive(Debug)]
pub struct JsonBytes(pub Bytes);

impl FromRequest<AppState> for JsonBytes {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = state.settings.max_body_bytes;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(HttpError::code(ErrorCode::PayloadTooLarge));
        }
        let body = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|err| {
                let too_large = std::error::Error::source(&err)
                    .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
                if too_large {
                    HttpError::code(ErrorCode::PayloadTooLarge)
                } else {
                    HttpError::code(ErrorCode::InvalidJson)
                }
            })?;
        let is_json = content_type.as_deref().is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
        if !body.is_empty() && !is_json {
            return Err(HttpError::code(ErrorCode::UnsupportedMediaType));
        }
        Ok(JsonBytes(body))
    }
}

/// The merchant system calling, from `X-API-Token`.
#[derive(Debug, Clone)]
pub struct Source(pub SourceRecord);

impl FromRequestParts<AppState> for Source {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get("x-api-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or("");
        // Anything that cannot be a token is refused without a lookup.
        if byfly_core::ApiToken::parse(token).is_none() {
            return Err(HttpError::code(ErrorCode::InvalidToken));
        }
        let source = state
            .store
            .source_by_token_hash(&TokenHash::of(token), state.now())
            .await?;
        source
            .map(Source)
            .ok_or_else(|| HttpError::code(ErrorCode::InvalidToken))
    }
}

/// Parses a JSON body, which must be an object, into `T`; a body that does not fit is
/// [`ErrorCode::InvalidJson`] with the parser's reason ([`byfly_core::wire::parse_object`]).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    byfly_core::wire::parse_object(body).map_err(HttpError::from)
}

/// Like [`parse_json`], with an empty body meaning `T::default()` (the guide's clients send no
/// body where every field is optional).
pub fn parse_json_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body)
    }
}

/// A query string that does not fit: [`ErrorCode::ValidationError`] with the reason.
pub fn invalid_query(err: axum::extract::rejection::QueryRejection) -> HttpError {
    HttpError::from(byfly_core::error::ApiError::with_message(
        ErrorCode::ValidationError,
        format!("Некорректные параметры запроса: {err}"),
    ))
}

/// A JSON body read as `T`: [`JsonBytes`]' checks, then [`parse_json`].
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let JsonBytes(body) = JsonBytes::from_request(request, state).await?;
        parse_json(&body).map(JsonBody)
    }
}

/// Like [`JsonBody`], an empty body meaning `T::default()` (the guide's clients send none where
/// every field is optional).
#[derive(Debug)]
pub struct JsonBodyOr<T>(pub T);

impl<T: serde::de::DeserializeOwned + Default> FromRequest<AppState> for JsonBodyOr<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let JsonBytes(body) = JsonBytes::from_request(request, state).await?;
        parse_json_or_default(&body).map(JsonBodyOr)
    }
}

/// The route's path segments as text, never refused: a segment that is not UTF-8 (`%FF`) reads as
/// empty, so it names nothing and the handler answers its own 404 in the envelope — axum's
/// `Path<String>` would answer `400 Invalid URL` in plain text.
#[derive(Debug, Clone, Default)]
pub struct PathSegments(Vec<(String, String)>);

impl PathSegments {
    /// The `{name}` segment, or `""`.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// The `{name}` segment as a row id: a positive integer, else `None` (it names nothing).
    pub fn row_id(&self, name: &str) -> Option<i64> {
        self.get(name).parse::<i64>().ok().filter(|id| *id > 0)
    }
}

impl FromRequestParts<AppState> for PathSegments {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(RawPathParams::from_request_parts(parts, state)
            .await
            .map(|params| {
                PathSegments(
                    params
                        .iter()
                        .map(|(key, value)| (key.to_owned(), value.to_owned()))
                        .collect(),
                )
            })
            .unwrap_or_default())
    }
}

/// The payment the route's `{id}` names; an id that is not one, or names no payment, is
/// `transaction_not_found`.
#[derive(Debug, Clone)]
pub struct PaymentPath(pub PaymentRecord);

impl FromRequestParts<AppState> for PaymentPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let path = PathSegments::from_request_parts(parts, state).await?;
        find_payment(state, path.get("id")).await.map(PaymentPath)
    }
}

/// The payment `id` names; an id that is not one, or names no payment, is
/// `transaction_not_found` (for handlers that check something else first).
pub async fn find_payment(state: &AppState, id: &str) -> Result<PaymentRecord, HttpError> {
    let id = TransactionId::parse(id).map_err(|_| transaction_not_found())?;
    state.store.payment(&id).await?.ok_or_else(transaction_not_found)
}

/// Like [`find_payment`], with the payment's operations (oldest first), in one query.
pub async fn find_payment_and_operations(
    state: &AppState,
    id: &str,
) -> Result<(PaymentRecord, Vec<OperationRecord>), HttpError> {
    let id = TransactionId::parse(id).map_err(|_| transaction_not_found())?;
    state
        .store
        .payment_and_operations(&id)
        .await?
        .ok_or_else(transaction_not_found)
}

fn transaction_not_found() -> HttpError {
    HttpError::code(ErrorCode::TransactionNotFound)
}

/// The calling source's own payment named by `{id}`; another source's is `transaction_not_found`
/// too (its existence is not leaked). The token is checked first.
#[derive(Debug, Clone)]
pub struct OwnPayment(pub PaymentRecord);

impl FromRequestParts<AppState> for OwnPayment {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Source(source) = Source::from_request_parts(parts, state).await?;
        let PaymentPath(payment) = PaymentPath::from_request_parts(parts, state).await?;
        if payment.source_id != source.id {
            return Err(HttpError::code(ErrorCode::TransactionNotFound));
        }
        Ok(OwnPayment(payment))
    }
}

/// A row id in the route's `{id}` (admin routes), as its id type; one that is not a positive
/// integer names nothing: `not_found`.
#[derive(Debug, Clone, Copy)]
pub struct RowId<T>(pub T);

impl<T: From<i64> + Send> FromRequestParts<AppState> for RowId<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        PathSegments::from_request_parts(parts, state)
            .await?
            .row_id("id")
            .map(|id| RowId(T::from(id)))
            .ok_or_else(|| HttpError::code(ErrorCode::NotFound))
    }
}

/// Whether `headers` carry `Authorization: Bearer <expected>` — compared as SHA-256 digests, in
/// constant time (the admin API and `/metrics`).
pub fn bearer_matches(expected: &byfly_core::ids::Secret<String>, headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .is_some_and(|presented| TokenHash::of(expected.expose()).matches(presented))
}

/// A `YYYY-MM-DD HH:MM:SS` in the server's offset, or a 400 naming the field.
pub fn datetime(state: &AppState, field: &str, text: &str) -> Result<UnixSeconds, HttpError> {
    state
        .settings
        .offset
        .parse_datetime(text)
        .map(UnixSeconds)
        .ok_or_else(|| {
            HttpError::from(byfly_core::error::ApiError::with_message(
                ErrorCode::ValidationError,
                format!("{field}: ожидается дата и время в виде YYYY-MM-DD HH:MM:SS"),
            ))
        })
}
