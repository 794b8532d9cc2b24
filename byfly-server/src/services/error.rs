//! How a service says no: refused as the API describes (status, code and message of
//! `spec/API.md` §1), or broken inside. The HTTP layer turns either into the envelope; a broken
//! one is logged there once, with the request it belonged to.

use byfly_core::ErrorCode;
use byfly_core::error::ApiError;

use crate::store::StoreError;

/// A service's failure.
#[derive(Debug)]
pub enum ServiceError {
    /// Refused: the client gets exactly this error.
    Refused(ApiError),
    /// Something broke (a database failure, a bug): the client gets an opaque 500.
    Internal(String),
}

impl ServiceError {
    /// A refusal with the code's default message.
    pub fn code(code: ErrorCode) -> ServiceError {
        ServiceError::Refused(ApiError::new(code))
    }

    /// An internal failure with its cause (for the log, never the client).
    pub fn internal(cause: impl std::fmt::Display) -> ServiceError {
        ServiceError::Internal(cause.to_string())
    }
}

impl From<ApiError> for ServiceError {
    fn from(error: ApiError) -> ServiceError {
        ServiceError::Refused(error)
    }
}

impl From<ErrorCode> for ServiceError {
    fn from(code: ErrorCode) -> ServiceError {
        ServiceError::code(code)
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        ServiceError::internal(error)
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Refused(error) => write!(f, "{}: {}", error.code.as_str(), error.message),
            ServiceError::Internal(cause) => write!(f, "internal: {cause}"),
        }
    }
}
