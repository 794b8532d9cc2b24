//! The catalogue of API errors.
//!
//! Every failure the API can answer is one [`ErrorCode`]: a stable snake_case `code` that programs
//! match on, the HTTP status, and the Russian message a person reads — the guide's text, verbatim,
//! wherever the guide quotes one. [`ApiError`] carries a code with its message (which may name a
//! field) and becomes the envelope of `spec/API.md` §1.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 401 — missing, unknown or revoked `X-API-Token` (the guide's message, in English).
    InvalidToken,
    /// 401 — missing or wrong admin bearer token.
    InvalidAdminToken,
    /// 401 — `/metrics` asks for its bearer token and it is missing or wrong.
    InvalidMetricsToken,
    /// 403 — a change made through the console's session without its `X-CSRF-Token`.
    InvalidCsrfToken,
    /// 404 — no such transaction (or another source's, or a malformed id).
    TransactionNotFound,
    /// 404 — no such refund of this payment.
    RefundNotFound,
    /// 404 — no such admin resource (source, terminal, method, webhook event).
    NotFound,
    /// 404 — no such route.
    RouteNotFound,
    /// 405 — the route exists, not with this method.
    MethodNotAllowed,
    /// 413 — body over the limit.
    PayloadTooLarge,
    /// 415 — a body that is not `application/json`.
    UnsupportedMediaType,
    /// 400 — the body is not JSON, or a field has the wrong type.
    InvalidJson,
    /// 400 — the guide's "Сумма должна быть больше 0": missing, zero, negative or not a number.
    InvalidAmount,
    /// 400 — above the configured maximum.
    AmountTooLarge,
    /// 400 — no active method charges in this currency.
    InvalidCurrency,
    /// 400 — unknown or inactive method (by id at init, by code at `/kaspi`).
    InvalidPaymentMethod,
    /// 400 — `webhook_url` is not an absolute http(s) URL of at most 2048 characters.
    InvalidWebhookUrl,
    /// 400 — `webhook_url` points at a loopback, private or link-local address.
    WebhookHostNotAllowed,
    /// 400 — a text field is longer than allowed.
    FieldTooLong,
    /// 400 — `metadata` is not a JSON object of at most 16 KiB and 32 levels.
    InvalidMetadata,
    /// 400 — any other invalid field or query parameter.
    ValidationError,
    /// 400 — `Idempotency-Key` longer than 255 characters or empty.
    InvalidIdempotencyKey,
    /// 409 — the same `Idempotency-Key` with a different body.
    IdempotencyConflict,
    /// 409 — the first request with this key is still being processed.
    IdempotencyInFlight,
    /// 400 — the payment is already paid.
    AlreadyPaid,
    /// 400 — the payment was cancelled.
    PaymentCancelled,
    /// 400 — the payment expired.
    PaymentExpired,
    /// 400 — the payment was refunded.
    PaymentRefunded,
    /// 400 — the action is not possible in the payment's current status.
    InvalidStatus,
    /// 400 — every terminal is busy.
    TerminalsBusy,
    /// 400 — every free terminal was tried and none answered.
    TerminalUnavailable,
    /// 400 — the camera did not read the terminal's QR in time.
    QrNotFound,
    /// 400 — refund above what was received and not yet refunded.
    RefundTooLarge,
    /// 400 — nothing to refund.
    NothingToRefund,
    /// 429 — too many requests.
    RateLimited,
    /// 500 — an internal error (details are logged, never answered).
    Internal,
    /// 503 — the database or another dependency is unavailable.
    Unavailable,
    /// 503 — the answer took longer than the server's request timeout; what the request started
    /// (an operation on a terminal, a refund) carries on and shows in the payment's status.
    RequestTimeout,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 38] = [
        ErrorCode::InvalidToken,
        ErrorCode::InvalidAdminToken,
        ErrorCode::InvalidMetricsToken,
        ErrorCode::InvalidCsrfToken,
        ErrorCode::TransactionNotFound,
        ErrorCode::RefundNotFound,
        ErrorCode::NotFound,
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidAmount,
        ErrorCode::AmountTooLarge,
        ErrorCode::InvalidCurrency,
        ErrorCode::InvalidPaymentMethod,
        ErrorCode::InvalidWebhookUrl,
        ErrorCode::WebhookHostNotAllowed,
        ErrorCode::FieldTooLong,
        ErrorCode::InvalidMetadata,
        ErrorCode::ValidationError,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::IdempotencyConflict,
        ErrorCode::IdempotencyInFlight,
        ErrorCode::AlreadyPaid,
        ErrorCode::PaymentCancelled,
        ErrorCode::PaymentExpired,
        ErrorCode::PaymentRefunded,
        ErrorCode::InvalidStatus,
        ErrorCode::TerminalsBusy,
        ErrorCode::TerminalUnavailable,
        ErrorCode::QrNotFound,
        ErrorCode::RefundTooLarge,
        ErrorCode::NothingToRefund,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::RequestTimeout,
    ];

    /// The stable machine code (`terminals_busy`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidAdminToken => "invalid_admin_token",
            ErrorCode::InvalidMetricsToken => "invalid_metrics_token",
            ErrorCode::InvalidCsrfToken => "invalid_csrf_token",
            ErrorCode::TransactionNotFound => "transaction_not_found",
            ErrorCode::RefundNotFound => "refund_not_found",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidAmount => "invalid_amount",
            ErrorCode::AmountTooLarge => "amount_too_large",
            ErrorCode::InvalidCurrency => "invalid_currency",
            ErrorCode::InvalidPaymentMethod => "invalid_payment_method",
            ErrorCode::InvalidWebhookUrl => "invalid_webhook_url",
            ErrorCode::WebhookHostNotAllowed => "webhook_host_not_allowed",
            ErrorCode::FieldTooLong => "field_too_long",
            ErrorCode::InvalidMetadata => "invalid_metadata",
            ErrorCode::ValidationError => "validation_error",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::IdempotencyInFlight => "idempotency_in_flight",
            ErrorCode::AlreadyPaid => "already_paid",
            ErrorCode::PaymentCancelled => "payment_cancelled",
            ErrorCode::PaymentExpired => "payment_expired",
            ErrorCode::PaymentRefunded => "payment_refunded",
            ErrorCode::InvalidStatus => "invalid_status",
            ErrorCode::TerminalsBusy => "terminals_busy",
            ErrorCode::TerminalUnavailable => "terminal_unavailable",
            ErrorCode::QrNotFound => "qr_not_found",
            ErrorCode::RefundTooLarge => "refund_too_large",
            ErrorCode::NothingToRefund => "nothing_to_refund",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal_error",
            ErrorCode::Unavailable => "service_unavailable",
            ErrorCode::RequestTimeout => "request_timeout",
        }
    }

    /// Parses a machine code.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|code| code.as_str() == text)
    }

    /// The HTTP status of the answer.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidToken | ErrorCode::InvalidAdminToken | ErrorCode::InvalidMetricsToken => 401,
            ErrorCode::InvalidCsrfToken => 403,
            ErrorCode::TransactionNotFound
            | ErrorCode::RefundNotFound
            | ErrorCode::NotFound
            | ErrorCode::RouteNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::IdempotencyConflict | ErrorCode::IdempotencyInFlight => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable | ErrorCode::RequestTimeout => 503,
            _ => 400,
        }
    }

    /// The default Russian message (the guide's wording where it quotes one).
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::InvalidToken => "Invalid API token",
            ErrorCode::InvalidAdminToken => "Invalid admin token",
            ErrorCode::InvalidMetricsToken => "Invalid metrics token",
            ErrorCode::InvalidCsrfToken => "Нет или неверный CSRF-токен: обновите страницу и войдите снова",
            ErrorCode::TransactionNotFound => "Транзакция не найдена",
            ErrorCode::RefundNotFound => "Возврат не найден",
            ErrorCode::NotFound => "Не найдено",
            ErrorCode::RouteNotFound => "Маршрут не найден",
            ErrorCode::MethodNotAllowed => "Метод не поддерживается для этого адреса",
            ErrorCode::PayloadTooLarge => "Слишком большой запрос",
            ErrorCode::UnsupportedMediaType => {
                "Ожидается тело запроса в формате JSON (Content-Type: application/json)"
            }
            ErrorCode::InvalidJson => "Некорректный JSON в теле запроса",
            ErrorCode::InvalidAmount => "Сумма должна быть больше 0",
            ErrorCode::AmountTooLarge => "Сумма превышает максимально допустимую",
            ErrorCode::InvalidCurrency => "Валюта не поддерживается",
            ErrorCode::InvalidPaymentMethod => "Способ оплаты не найден или неактивен",
            ErrorCode::InvalidWebhookUrl => {
                "Некорректный webhook_url: нужен абсолютный http(s) адрес не длиннее 2048 символов"
            }
            ErrorCode::WebhookHostNotAllowed => "webhook_url указывает на внутренний адрес",
            ErrorCode::FieldTooLong => "Поле слишком длинное",
            ErrorCode::InvalidMetadata => {
                "metadata должно быть JSON-объектом не больше 16 КБ и не глубже 32 уровней"
            }
            ErrorCode::ValidationError => "Некорректные данные запроса",
            ErrorCode::InvalidIdempotencyKey => "Некорректный Idempotency-Key: от 1 до 255 символов",
            ErrorCode::IdempotencyConflict => "Idempotency-Key уже использован с другим телом запроса",
            ErrorCode::IdempotencyInFlight => "Запрос с этим Idempotency-Key ещё выполняется",
            ErrorCode::AlreadyPaid => "Платеж уже оплачен",
            ErrorCode::PaymentCancelled => "Платеж отменен",
            ErrorCode::PaymentExpired => "Срок действия платежа истек",
            ErrorCode::PaymentRefunded => "Платеж возвращен",
            ErrorCode::InvalidStatus => "Действие недоступно в текущем статусе платежа",
            ErrorCode::TerminalsBusy => "Все терминалы заняты, попробуйте позже",
            ErrorCode::TerminalUnavailable => "Терминал недоступен. Проверьте подключение к сети терминалов",
            ErrorCode::QrNotFound => "Не удалось считать QR-код с терминала, попробуйте еще раз",
            ErrorCode::RefundTooLarge => "Сумма возврата превышает полученную сумму",
            ErrorCode::NothingToRefund => "Нет средств для возврата",
            ErrorCode::RateLimited => "Слишком много запросов, попробуйте позже",
            ErrorCode::Internal => "Внутренняя ошибка сервера",
            ErrorCode::Unavailable => "Сервис временно недоступен, попробуйте позже",
            ErrorCode::RequestTimeout => {
                "Запрос выполнялся слишком долго; начатое продолжается — проверьте статус платежа"
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API failure: a code and the message to show (the code's default, or one naming a field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people (Russian).
    pub message: String,
    /// When trying again makes sense (busy terminals: when the first is expected to be free).
    pub retry: Option<RetryHint>,
}

/// When a refused request is worth trying again (an addition to the envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryHint {
    /// Seconds from now (also sent as the `Retry-After` header).
    pub after_secs: u64,
    /// The same moment as a date-time of the API (`YYYY-MM-DD HH:MM:SS`).
    pub at: String,
}

impl ApiError {
    /// The code with its default message.
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            message: code.message().to_owned(),
            retry: None,
        }
    }

    /// The code with a specific message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry: None,
        }
    }

    /// The same failure, telling when to try again.
    pub fn with_retry(mut self, retry: RetryHint) -> ApiError {
        self.retry = Some(retry);
        self
    }

    /// The envelope of `spec/API.md` §1.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            success: false,
            message: self.message.clone(),
            error_code: self.code.http_status(),
            code: self.code.as_str().to_owned(),
            retry_after: self.retry.as_ref().map(|retry| retry.after_secs),
            retry_at: self.retry.as_ref().map(|retry| retry.at.clone()),
        }
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> ApiError {
        ApiError::new(code)
    }
}

/// `{"success": false, "message": "...", "error_code": 400, "code": "..."}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    /// Russian text.
    pub message: String,
    /// The HTTP status, repeated (the guide's clients read it).
    pub error_code: u16,
    /// The stable machine code (our addition). Absent only in answers of older servers.
    #[serde(default)]
    pub code: String,
    /// Seconds after which trying again makes sense (addition; `terminals_busy`: when the first
    /// busy terminal is expected to be free — an abandoned operation keeps its terminal until the
    /// terminal ends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The same moment as a date-time (addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

impl ErrorEnvelope {
    /// The typed code, when the server sent one this version knows.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert!(!code.message().is_empty());
            assert!(code.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn the_guides_messages_are_verbatim() {
        let quoted = [
            (ErrorCode::InvalidAmount, 400, "Сумма должна быть больше 0"),
            (ErrorCode::InvalidToken, 401, "Invalid API token"),
            (ErrorCode::TransactionNotFound, 404, "Транзакция не найдена"),
            (
                ErrorCode::TerminalsBusy,
                400,
                "Все терминалы заняты, попробуйте позже",
            ),
            (
                ErrorCode::TerminalUnavailable,
                400,
                "Терминал недоступен. Проверьте подключение к сети терминалов",
            ),
            (ErrorCode::AlreadyPaid, 400, "Платеж уже оплачен"),
        ];
        for (code, status, message) in quoted {
            assert_eq!((code.http_status(), code.message()), (status, message), "{code}");
        }
    }

    #[test]
    fn envelope_has_the_guides_shape_plus_code() {
        let json = serde_json::to_string(&ApiError::new(ErrorCode::InvalidAmount).envelope()).unwrap();
        assert_eq!(
            json,
            r#"{"success":false,"message":"Сумма должна быть больше 0","error_code":400,"code":"invalid_amount"}"#
        );
        let guide_only: ErrorEnvelope =
            serde_json::from_str(r#"{"success":false,"message":"Invalid API token","error_code":401}"#)
                .unwrap();
        assert_eq!(guide_only.error_code(), None);
    }
}
