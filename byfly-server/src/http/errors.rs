//! One error type for every failure, answered as `{"success": false, "message", "error_code", "code"}`.
//! An internal failure's cause rides on the response (never in its body) to `guard.rs`,
//! which logs it once, inside the request's span — so with its request id, method and path.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byfly_core::ErrorCode;
use byfly_core::error::ApiError;

use crate::services::ServiceError;
use crate::store::StoreError;

/// An API failure on its way to the client.
#[derive(Debug)]
pub struct HttpError {
    /// What the client is told.
    error: ApiError,
    /// Why it failed inside, for the log (internal failures only).
    cause: Option<String>,
}

/// The cause of an internal failure, carried on its response to `guard.rs`.
#[derive(Debug, Clone)]
struct InternalCause(String);

impl HttpError {
    /// A failure with the code's default message.
    pub fn code(code: ErrorCode) -> HttpError {
        HttpError::from(ApiError::new(code))
    }

    /// An internal failure: answered as an opaque 500, its cause logged once with the request.
    pub fn internal(cause: impl std::fmt::Display) -> HttpError {
        HttpError {
            error: ApiError::new(ErrorCode::Internal),
            cause: Some(cause.to_string()),
        }
    }

    /// What the client is told.
    pub fn error(&self) -> &ApiError {
        &self.error
    }

    /// Whether it failed inside (answered as an opaque 500).
    pub fn is_internal(&self) -> bool {
        self.cause.is_some()
    }
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> HttpError {
        HttpError { error, cause: None }
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

impl From<ServiceError> for HttpError {
    fn from(error: ServiceError) -> HttpError {
        match error {
            ServiceError::Refused(error) => HttpError::from(error),
            ServiceError::Internal(cause) => HttpError::internal(cause),
        }
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
        let envelope = self.error.envelope();
        let body = serde_json::to_string(&envelope).unwrap_or_else(|_| {
            r#"{"success":false,"message":"Внутренняя ошибка сервера","error_code":500,"code":"internal_error"}"#.to_owned()
        });
        let mut response = json_response(envelope.error_code, body);
        if let Some(seconds) = envelope.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(InternalCause(cause));
        }
        response
    }
}

/// The cause of the internal failure `response` answers, for the log (`guard.rs` logs it once,
/// in the request's span).
pub fn internal_cause(response: &Response) -> Option<&str> {
    response
        .extensions()
        .get::<InternalCause>()
        .map(|InternalCause(cause)| cause.as_str())
}

/// Any path outside the API.
pub async fn route_not_found() -> HttpError {
    HttpError::code(ErrorCode::RouteNotFound)
}

/// A known path with another method.
pub async fn method_not_allowed() -> HttpError {
    HttpError::code(ErrorCode::MethodNotAllowed)
}

/// A handler panicked: the client gets the envelope; the panic is logged by `guard.rs`
/// (the panic layer sits inside its middleware).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    HttpError::internal(format!("handler panicked: {detail}")).into_response()
}
