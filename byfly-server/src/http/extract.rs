//! Extractors of our own, so that body and auth failures answer in the API's envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use byfly_core::ErrorCode;
use byfly_core::ids::TokenHash;

use super::{AppState, HttpError};
use crate::store::SourceRecord;

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
        let source = state.store.source_by_token_hash(&TokenHash::of(token)).await?;
        source
            .map(Source)
            .ok_or_else(|| HttpError::code(ErrorCode::InvalidToken))
    }
}

/// Parses a JSON body into `T`; a body that does not fit is [`ErrorCode::InvalidJson`] with the
/// parser's reason.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|err| {
        HttpError(byfly_core::error::ApiError::with_message(
            ErrorCode::InvalidJson,
            format!("Некорректный JSON в теле запроса: {err}"),
        ))
    })
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
    HttpError(byfly_core::error::ApiError::with_message(
        ErrorCode::ValidationError,
        format!("Некорректные параметры запроса: {err}"),
    ))
}
