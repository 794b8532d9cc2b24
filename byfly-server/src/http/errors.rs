//! One error type for every failure, answered as `{"success": false, "message", "error_code", "code"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byfly_core::ErrorCode;
use byfly_core::error::ApiError;

use crate::store::StoreError;

/// An API failure on its way to the client.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl HttpError {
    /// A failure with the code's default message.
    pub fn code(code: ErrorCode) -> HttpError {
        HttpError(ApiError::new(code))
    }

    /// An internal failure: logged with its cause, answered as an opaque 500.
    pub fn internal(cause: impl std::fmt::Display) -> HttpError {
        tracing::error!(%cause, "internal error");
        HttpError::code(ErrorCode::Internal)
    }
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> HttpError {
        HttpError(error)
    }
}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> HttpError {
        HttpError::code(code)
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> HttpError {
        HttpError::internal(error)
    }
}

/// A JSON answer with its status, as bytes already encoded.
pub fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let envelope = self.0.envelope();
        let body = serde_json::to_string(&envelope).unwrap_or_else(|_| {
            r#"{"success":false,"message":"Внутренняя ошибка сервера","error_code":500,"code":"internal_error"}"#.to_owned()
        });
        let mut response = json_response(envelope.error_code, body);
        if let Some(seconds) = envelope.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Any path outside the API.
pub async fn route_not_found() -> HttpError {
    HttpError::code(ErrorCode::RouteNotFound)
}

/// A known path with another method.
pub async fn method_not_allowed() -> HttpError {
    HttpError::code(ErrorCode::MethodNotAllowed)
}

/// A handler panicked: the panic is logged, the client gets the envelope.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    HttpError::internal(format!("handler panicked: {detail}")).into_response()
}
