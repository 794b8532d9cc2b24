//! The one error type of the SDK.

use byfly_core::ErrorCode;
use byfly_core::wire::PaymentStatusView;

/// A refusal by the server: its error envelope (`spec/API.md` §1) and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// The HTTP status (`400`).
    pub status: u16,
    /// The stable code, when this SDK knows it (`Some(ErrorCode::TerminalsBusy)`); a newer server
    /// may answer codes this version does not know, kept in [`ApiFailure::code_text`].
    pub code: Option<ErrorCode>,
    /// The code as the server wrote it (`terminals_busy`).
    pub code_text: String,
    /// The server's message, in Russian, for people (`Все терминалы заняты, попробуйте позже`).
    pub message: String,
    /// The answer's `X-Request-Id`: the server logs every line of the request under it, so an
    /// operator finds what happened from this alone.
    pub request_id: Option<String>,
    /// When trying again makes sense, from the `Retry-After` header (delta-seconds) or the
    /// envelope's `retry_after` (`terminals_busy`: when a terminal is expected to be free; `429`:
    /// when the rate limit allows the next call).
    pub retry_after: Option<std::time::Duration>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, HTTP {})", self.message, self.code_text, self.status)
    }
}

/// Everything a call can end with other than its answer.
///
/// Programs match on [`Error::Api`] and its code for the server's refusals (new variants may be
/// added, so a `match` on the variants needs a `_` arm):
///
/// ```
/// use byfly_client::{ApiFailure, Error};
/// use byfly_core::ErrorCode;
///
/// fn advice(error: &Error) -> &'static str {
///     match error.code() {
///         Some(ErrorCode::TerminalsBusy) => "all terminals are taking payments: try again in a minute",
///         Some(ErrorCode::TerminalUnavailable) => "no terminal answers: check the terminal network",
///         Some(ErrorCode::TransactionNotFound) => "no such payment",
///         _ if error.is_transient() => "the server could not be reached: try again",
///         _ => "refused",
///     }
/// }
/// let busy = Error::Api(ApiFailure {
///     status: 400,
///     code: Some(ErrorCode::TerminalsBusy),
///     code_text: "terminals_busy".into(),
///     message: "Все терминалы заняты, попробуйте позже".into(),
///     request_id: Some("5f0c2a9e1b7d4c38".into()),
///     retry_after: Some(std::time::Duration::from_secs(90)),
/// });
/// assert_eq!(advice(&busy), "all terminals are taking payments: try again in a minute");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with its error envelope.
    #[error("{0}")]
    Api(ApiFailure),
    /// The request did not reach the server, or the connection broke (after the retries allowed).
    #[error("could not reach the server: {0}")]
    Transport(#[source] reqwest::Error),
    /// The server did not answer within the client's timeout.
    #[error("the server did not answer in time: {0}")]
    Timeout(#[source] reqwest::Error),
    /// The server answered something that is not the expected JSON; the body is kept for the log.
    #[error("unexpected answer (HTTP {status}): {reason}")]
    Decode {
        /// The HTTP status of the answer.
        status: u16,
        /// Why it could not be read.
        reason: String,
        /// The body as received (lossy UTF-8).
        body: String,
    },
    /// The client was built or called with something invalid (base URL, token, idempotency key).
    #[error("invalid client setting: {0}")]
    Config(String),
    /// The call needs a credential the client was built without.
    #[error("this call needs {0}, and the client has none")]
    MissingCredential(&'static str),
    /// [`crate::Client::wait_for_payment`] reached its deadline first; the last status read is kept.
    #[error("the payment is still {} at the deadline", .last.status)]
    WaitDeadline {
        /// The last status the server reported.
        last: Box<PaymentStatusView>,
    },
}

impl Error {
    /// The server's stable code, for a refusal this SDK knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(failure) => failure.code,
            _ => None,
        }
    }

    /// The request id of a refusal (its `X-Request-Id`), to quote to the server's operator.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api(failure) => failure.request_id.as_deref(),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again, when it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Api(failure) => failure.retry_after,
            _ => None,
        }
    }

    /// The HTTP status of a refusal or of an undecodable answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(failure) => Some(failure.status),
            Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when trying again later may succeed: the server could not be reached, did not answer
    /// in time, was unavailable (502/503/504, from the server or a proxy in front of it), or was still processing the same idempotency key.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout(_) => true,
            Error::Api(failure) => {
                matches!(failure.status, 502..=504) || failure.code == Some(ErrorCode::IdempotencyInFlight)
            }
            // A proxy's error page in front of a restarting server.
            Error::Decode { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}
