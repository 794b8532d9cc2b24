//! The request and response bodies of the HTTP API (`spec/API.md` §3), shared by server and client
//! so the two cannot drift. Field names and order follow the guide; our additions come after the
//! guide's fields and are skipped when they have nothing to say only where the guide has no such field.
//!
//! Requests arrive from clients written in any language, so [`InitPaymentInput`] reads them
//! leniently (amounts as numbers or numeric strings, ids as numbers or strings) and
//! [`InitPaymentInput::validate`] turns them into a checked [`NewPayment`] or the exact
//! [`ApiError`] of the contract.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{Secret, TransactionId};
use crate::method::PaymentMethod;
use crate::money::{Money, MoneyError, Percent, decimal_from_json_token};
use crate::status::PaymentStatus;
use crate::webhook::BodyEncoding;

/// `{"success": true, "message"?: "...", "data": ...}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Always true.
    pub success: bool,
    /// A human message, where the guide shows one (`Платеж создан`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The answer.
    pub data: T,
}

impl<T> Envelope<T> {
    /// A success without a message.
    pub fn data(data: T) -> Envelope<T> {
        Envelope {
            success: true,
            message: None,
            data,
        }
    }

    /// A success with the guide's message.
    pub fn with_message(message: &str, data: T) -> Envelope<T> {
        Envelope {
            success: true,
            message: Some(message.to_owned()),
            data,
        }
    }
}

/// Parses a request body that must be a JSON object into `T`; anything else is
/// [`ErrorCode::InvalidJson`] with the reason. The object is checked first because serde reads a
/// struct from an array too, field by field in order: `[1000]` would otherwise be an init of
/// 1000 ₸ and `[null, null]` an empty update.
pub fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid = |reason: &dyn std::fmt::Display| {
        ApiError::with_message(
            ErrorCode::InvalidJson,
            format!("Некорректный JSON в теле запроса: {reason}"),
        )
    };
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first.is_some_and(|byte| *byte != b'{') {
        return Err(invalid(&"ожидается JSON-объект"));
    }
    serde_json::from_slice(body).map_err(|err| invalid(&err))
}

/// Limits of the init request that come from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitLimits {
    /// `max_amount` (default 100 000 000).
    pub max_amount: Money,
}

impl Default for InitLimits {
    fn default() -> Self {
        InitLimits {
            max_amount: Money::from_tenge(100_000_000),
        }
    }
}

/// Largest configurable `max_amount`: with commissions, every amount then keeps at most 15
/// significant digits, which a receiver's double (JavaScript, PHP floats) holds exactly.
pub const MAX_AMOUNT_CEILING: i64 = 1_000_000_000_000;
/// Longest `webhook_url`.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// Longest `webhook_secret`.
pub const MAX_WEBHOOK_SECRET_LEN: usize = 256;
/// Longest `description`.
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// Longest customer field.
pub const MAX_CUSTOMER_FIELD_LEN: usize = 255;
/// Largest `metadata`, in bytes of its JSON text.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Deepest `metadata` nesting: PHP's `json_decode` gives up at 512, and nothing real needs more than a few.
pub const MAX_METADATA_DEPTH: usize = 32;

/// `POST /api/payment/init` as a client sends it (the guide's fields).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct InitPaymentRequest {
    /// Amount without commission.
    // Its schema states the lower bound `validate` enforces: a `$ref` to `Money` could carry none.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::init_amount))]
    pub amount: Money,
    /// Default `KZT`; otherwise the currency of an active method (case and surrounding spaces do
    /// not matter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Shown to the customer and sent in webhooks.
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))] // MAX_DESCRIPTION_LEN, in characters
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Customer's name (never shown on public endpoints).
    #[cfg_attr(feature = "openapi", schema(max_length = 255))] // MAX_CUSTOMER_FIELD_LEN, in characters
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    /// Customer's phone.
    #[cfg_attr(feature = "openapi", schema(max_length = 255))] // MAX_CUSTOMER_FIELD_LEN, in characters
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_phone: Option<String>,
    /// Customer's e-mail (its form is not checked).
    #[cfg_attr(feature = "openapi", schema(max_length = 255))] // MAX_CUSTOMER_FIELD_LEN, in characters
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    /// Preferred method: the id of an active one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_method_id: Option<i64>,
    /// Where webhooks go: an absolute `http` or `https` URL with a host and no user name, at most
    /// 2048 bytes of UTF-8 (a byte limit, so no `maxLength`); empty means none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// HMAC key of the webhooks; empty means none.
    #[cfg_attr(feature = "openapi", schema(max_length = 256))] // MAX_WEBHOOK_SECRET_LEN, in characters
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Any JSON object, returned verbatim in webhooks: at most 16384 bytes of JSON text as sent
    /// (`MAX_METADATA_BYTES`) and nested at most 32 deep (`MAX_METADATA_DEPTH`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// `POST /api/payment/init` as the server reads it: every field optional and loosely typed, so
/// that each problem gets its own error instead of a generic parse failure.
#[derive(Debug, Default, Deserialize)]
pub struct InitPaymentInput {
    amount: Option<Box<RawValue>>,
    currency: Option<String>,
    description: Option<String>,
    customer_name: Option<String>,
    customer_phone: Option<String>,
    customer_email: Option<String>,
    #[serde(default, deserialize_with = "lenient_id")]
    payment_method_id: Option<i64>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    metadata: Option<Box<RawValue>>,
}

/// A checked init request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    /// A₀, > 0 and ≤ `max_amount`.
    pub amount: Money,
    /// An active method's currency.
    pub currency: String,
    /// ≤ 1000 characters.
    pub description: Option<String>,
    /// ≤ 255 characters.
    pub customer_name: Option<String>,
    /// ≤ 255 characters.
    pub customer_phone: Option<String>,
    /// ≤ 255 characters.
    pub customer_email: Option<String>,
    /// An active method.
    pub payment_method_id: Option<i64>,
    /// Absolute http(s), ≤ 2048 characters; its host still has to be resolved and checked.
    pub webhook_url: Option<WebhookUrl>,
    /// ≤ 256 characters.
    pub webhook_secret: Option<Secret<String>>,
    /// The merchant's JSON object text, exactly as sent.
    pub metadata: Option<String>,
}

/// Reads an id given as a JSON integer or a string of digits (PHP forms often send `"1"`).
fn lenient_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let Some(raw) = Option::<Box<RawValue>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let token = raw.get().trim();
    let text = if token.starts_with('"') {
        serde_json::from_str::<String>(token).map_err(serde::de::Error::custom)?
    } else {
        token.to_owned()
    };
    if text == "null" {
        return Ok(None);
    }
    text.trim()
        .parse::<i64>()
        .map(Some)
        .map_err(|_| serde::de::Error::custom("payment_method_id must be an integer"))
}

fn check_len(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(text) if text.chars().count() > max => Err(ApiError::with_message(
            ErrorCode::FieldTooLong,
            format!("Поле {field} слишком длинное: не больше {max} символов"),
        )),
        other => Ok(other),
    }
}

impl InitPaymentInput {
    /// Parses the body; a body that is not a JSON object with fields of the right types is
    /// [`ErrorCode::InvalidJson`] with the parser's reason.
    pub fn from_json(body: &[u8]) -> Result<InitPaymentInput, ApiError> {
        parse_object(body)
    }

    /// Applies every rule of `spec/API.md` §3.1 that needs no IO: the amount, the currency and
    /// method against the active methods, field lengths, the webhook URL's form, and metadata.
    pub fn validate(
        self,
        limits: &InitLimits,
        active_methods: &[PaymentMethod],
    ) -> Result<NewPayment, ApiError> {
        let amount = match &self.amount {
            None => return Err(ErrorCode::InvalidAmount.into()),
            Some(raw) => match decimal_from_json_token(raw.get()).and_then(Money::from_decimal) {
                Ok(amount) => amount,
                Err(MoneyError::OutOfRange(_)) => return Err(ErrorCode::AmountTooLarge.into()),
                Err(_) => return Err(ErrorCode::InvalidAmount.into()),
            },
        };
        if !amount.is_positive() {
            return Err(ErrorCode::InvalidAmount.into());
        }
        if amount > limits.max_amount {
            return Err(ApiError::with_message(
                ErrorCode::AmountTooLarge,
                format!("Сумма превышает максимально допустимую ({})", limits.max_amount),
            ));
        }
        let currency = self
            .currency
            .map(|c| c.trim().to_uppercase())
            .filter(|c| !c.is_empty());
        let currency = currency.unwrap_or_else(|| "KZT".to_owned());
        if !active_methods.iter().any(|m| m.payment_currency == currency) {
            return Err(ErrorCode::InvalidCurrency.into());
        }
        if let Some(id) = self.payment_method_id
            && !active_methods.iter().any(|m| m.id == id)
        {
            return Err(ErrorCode::InvalidPaymentMethod.into());
        }
        let webhook_url = match self.webhook_url.filter(|url| !url.trim().is_empty()) {
            Some(url) => Some(WebhookUrl::parse(&url)?),
            None => None,
        };
        let webhook_secret = check_len("webhook_secret", self.webhook_secret, MAX_WEBHOOK_SECRET_LEN)?;
        let metadata = match self.metadata {
            Some(raw) => check_metadata(raw.get())?,
            None => None,
        };
        Ok(NewPayment {
            amount,
            currency,
            description: check_len("description", self.description, MAX_DESCRIPTION_LEN)?,
            customer_name: check_len("customer_name", self.customer_name, MAX_CUSTOMER_FIELD_LEN)?,
            customer_phone: check_len("customer_phone", self.customer_phone, MAX_CUSTOMER_FIELD_LEN)?,
            customer_email: check_len("customer_email", self.customer_email, MAX_CUSTOMER_FIELD_LEN)?,
            payment_method_id: self.payment_method_id,
            webhook_url,
            webhook_secret: webhook_secret.filter(|s| !s.is_empty()).map(Secret::new),
            metadata,
        })
    }
}

/// `null` is no metadata; otherwise an object within the size and depth limits, kept as sent.
fn check_metadata(text: &str) -> Result<Option<String>, ApiError> {
    let text = text.trim();
    if text == "null" {
        return Ok(None);
    }
    if !text.starts_with('{') || text.len() > MAX_METADATA_BYTES || json_depth(text) > MAX_METADATA_DEPTH {
        return Err(ErrorCode::InvalidMetadata.into());
    }
    Ok(Some(text.to_owned()))
}

/// Nesting depth of a JSON text (brackets outside strings).
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A syntactically valid webhook URL: absolute `http` or `https`, at most 2048 characters, with a
/// host. Whether the host is allowed is decided with [`is_internal_address`] once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: String,
    host: String,
}

impl WebhookUrl {
    /// Checks the form of a webhook URL.
    pub fn parse(text: &str) -> Result<WebhookUrl, ApiError> {
        let text = text.trim();
        if text.len() > MAX_WEBHOOK_URL_LEN {
            return Err(ErrorCode::InvalidWebhookUrl.into());
        }
        let parsed = url::Url::parse(text).map_err(|_| ApiError::new(ErrorCode::InvalidWebhookUrl))?;
        let host = match parsed.host() {
            Some(url::Host::Domain(domain)) => domain.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(ErrorCode::InvalidWebhookUrl.into()),
        };
        if !matches!(parsed.scheme(), "http" | "https") || host.is_empty() || !parsed.username().is_empty() {
            return Err(ErrorCode::InvalidWebhookUrl.into());
        }
        Ok(WebhookUrl {
            url: text.to_owned(),
            host,
        })
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host to resolve (a domain, or an IP literal without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host as an IP address, when it is a literal.
    pub fn literal_ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// Addresses a webhook must not reach in production: loopback, private, link-local, carrier-grade
/// NAT, unspecified, multicast, broadcast, documentation and unique-local ranges (and their
/// IPv4-mapped IPv6 forms). Sending webhooks there would let a merchant probe our own network.
pub fn is_internal_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_address(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let first = segments[0];
            let embedded = |high: u16, low: u16| {
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                is_internal_address(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
            };
            // IPv6 forms that reach an IPv4 address: IPv4-compatible `::a.b.c.d`, NAT64
            // `64:ff9b::/96` (and the local-use `64:ff9b:1::/48`), 6to4 `2002::/16`.
            let compatible = segments[..6].iter().all(|&s| s == 0) && embedded(segments[6], segments[7]);
            let nat64 = first == 0x0064
                && segments[1] == 0xff9b
                && (segments[2] == 1
                    || (segments[2..6].iter().all(|&s| s == 0) && embedded(segments[6], segments[7])));
            let six_to_four = first == 0x2002 && embedded(segments[1], segments[2]);
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || compatible
                || nat64
                || six_to_four
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || first == 0x2001 && segments[1] == 0x0db8
        }
    }
}

/// `201` answer of init.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitPaymentResponse {
    /// The new payment's id.
    pub transaction_id: TransactionId,
    /// A₀.
    pub amount: Money,
    /// `KZT`.
    pub currency: String,
    /// `pending`.
    pub status: PaymentStatus,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub expires_at: String,
    /// Addition: the hosted payment page for the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_page_url: Option<String>,
}

/// `GET /api/payment/{id}`: the public view (never customer data, webhook settings or metadata).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentView {
    /// The id.
    pub transaction_id: TransactionId,
    /// A₀ + commissions.
    pub amount: Money,
    /// `KZT`.
    pub currency: String,
    /// Current status.
    pub status: PaymentStatus,
    /// The merchant's description.
    pub description: Option<String>,
    /// Kaspi payment link of the current operation.
    pub payment_url: Option<String>,
    /// QR text of the current operation.
    pub qr_code: Option<String>,
    /// Σ R.
    pub paid_amount: Money,
    /// max(0, amount − paid).
    pub remaining_amount: Money,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
    /// When it became paid.
    pub paid_at: Option<String>,
    /// Addition: A₀.
    pub original_amount: Money,
    /// Addition: commissions included in `amount`.
    pub commission_amount: Money,
    /// Addition: max(0, paid − amount).
    pub overpaid_amount: Money,
    /// Addition: Σ confirmed refunds.
    pub refunded_amount: Money,
    /// Addition: when the payment expires if unpaid.
    pub expires_at: String,
    /// Addition: the current operation's method.
    pub payment_method: Option<String>,
    /// Addition: when the current terminal operation ends if nobody pays.
    pub operation_expires_at: Option<String>,
    /// Addition: seconds until then (for a countdown that needs no clock agreement).
    #[serde(default)]
    pub operation_expires_in: Option<i64>,
    /// Addition: the merchant's name (the source's), shown to the customer.
    #[serde(default)]
    pub merchant_name: Option<String>,
}

/// `GET /api/payment/{id}/quotes` (addition): what each active method would charge if chosen now —
/// the very figures `/kaspi` answers, so a payment page shows the total before the customer picks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodQuoteView {
    /// The method's code, to send to `/kaspi`.
    pub payment_method: String,
    /// Display name (`Kaspi Кредит`).
    pub name: String,
    /// Shown beside the name.
    pub icon_emoji: String,
    /// The percent added to the charge.
    pub commission_percent: Percent,
    /// The operation's base: what remains to pay.
    pub original_amount: Money,
    /// The commission added.
    pub commission_amount: Money,
    /// What the terminal charges: `original_amount + commission_amount`.
    pub amount: Money,
}

/// `GET /api/payment/{id}/status`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentStatusView {
    /// The id.
    pub transaction_id: TransactionId,
    /// Current status (after asking the terminal when `processing`).
    pub status: PaymentStatus,
    /// A₀ + commissions.
    pub amount: Money,
    /// Σ R.
    pub paid_amount: Money,
    /// max(0, amount − paid).
    pub remaining_amount: Money,
    /// Addition: A₀.
    pub original_amount: Money,
    /// Addition: commissions included in `amount`.
    pub commission_amount: Money,
    /// Addition: max(0, paid − amount).
    pub overpaid_amount: Money,
    /// Addition: Σ confirmed refunds.
    pub refunded_amount: Money,
    /// Addition: when it became paid.
    pub paid_at: Option<String>,
}

/// `POST /api/payment/{id}/kaspi` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KaspiRequest {
    /// The code of an active method (aliases accepted); absent or blank means `kaspi_gold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
}

/// `POST /api/payment/{id}/kaspi` answer: the operation's figures, exactly as the guide shows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KaspiResponse {
    /// The payment.
    pub transaction_id: TransactionId,
    /// The operation's charge `B + C`.
    pub amount: Money,
    /// The operation's base `B` (A₀ for the first one; what remained for a top-up).
    pub original_amount: Money,
    /// The operation's commission `C`.
    pub commission_amount: Money,
    /// The percent added to the charge.
    pub commission_percent: Percent,
    /// `https://pay.kaspi.kz/pay/...`.
    pub payment_url: String,
    /// `https://qr.kaspi.kz/...`, as read from the terminal's screen.
    pub qr_code: String,
    /// The terminal running the operation.
    pub terminal_id: i64,
    /// Addition: when the terminal operation ends if nobody pays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `POST /api/payment/{id}/cancel` answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResponse {
    /// The payment.
    pub transaction_id: TransactionId,
    /// `cancelled`.
    pub status: PaymentStatus,
}

/// `POST /api/payment/{id}/refund` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RefundRequest {
    /// Default: everything received and not yet refunded, in whole tenge. Otherwise whole tenge
    /// once rounded to 2 decimals, above 0 and at most what is refundable (terminals give back
    /// whole tenge only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

/// Where a refund stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// The terminal shows a QR the customer must confirm in the Kaspi app.
    WaitingConfirmation,
    /// The terminal confirmed the refund.
    Completed,
    /// The terminal refused it, or the customer did not confirm in time.
    Failed,
    /// A request spanning operations stopped after some of its parts gave money back: one part
    /// failed, so the rest were not started (`refunded_amount` says how much moved).
    PartiallyCompleted,
    /// A part not started yet: it runs once the parts before it have completed.
    Queued,
}

/// One terminal refund of a request: a request larger than any one operation received is given
/// back through each of them in turn, largest first (`spec/API.md` §3.4).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundPart {
    /// What this part gives back.
    pub amount: Money,
    /// Progress of this part (`queued` until it starts).
    pub status: RefundStatus,
    /// The confirmation link while this part waits for the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_url: Option<String>,
    /// The confirmation QR text while this part waits for the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_code: Option<String>,
}

/// A refund (answer of `POST /refund` and `GET /refund/{refund_id}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundView {
    /// The refund's id.
    pub refund_id: String,
    /// The payment.
    pub transaction_id: TransactionId,
    /// Amount refunded.
    pub amount: Money,
    /// Progress.
    pub status: RefundStatus,
    /// The confirmation link for the customer while waiting.
    pub refund_url: Option<String>,
    /// The confirmation QR text while waiting.
    pub qr_code: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
    /// What the completed parts have given back so far.
    #[serde(default)]
    pub refunded_amount: Money,
    /// The terminal refunds this request is made of, in the order they run.
    #[serde(default)]
    pub parts: Vec<RefundPart>,
}

/// `GET /api/payments` query.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaymentListQuery {
    /// Only payments in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PaymentStatus>,
    /// Page size, 1..=100 (default 20).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    // What the server reads (`i64::from_str_radix(_, 16)`, then > 0): hex of 1..=i64::MAX.
    #[cfg_attr(
        feature = "openapi",
        param(pattern = r"^\+?0*([1-9A-Fa-f][0-9A-Fa-f]{0,14}|[1-7][0-9A-Fa-f]{15})$")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One row of `GET /api/payments`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentSummary {
    /// The id.
    pub transaction_id: TransactionId,
    /// Current status.
    pub status: PaymentStatus,
    /// A₀ + commissions.
    pub amount: Money,
    /// A₀.
    pub original_amount: Money,
    /// Σ R.
    pub paid_amount: Money,
    /// max(0, amount − paid).
    pub remaining_amount: Money,
    /// `KZT`.
    pub currency: String,
    /// The merchant's description.
    pub description: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
    /// When it became paid.
    pub paid_at: Option<String>,
    /// The customer (admin list only: the console finds a payment by its customer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerView>,
    /// Its source (admin list only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<i64>,
}

/// A page of `GET /api/payments`, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentList {
    /// The payments.
    pub items: Vec<PaymentSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Terminal pool summary of `/api/health`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolHealth {
    /// Enabled terminals.
    pub total: u32,
    /// Enabled and answering.
    pub healthy: u32,
    /// Running an operation.
    pub busy: u32,
    /// Enabled, but without tokens: waiting for an operator to register them (a cashier accepts
    /// on the terminal's screen). Addition.
    #[serde(default)]
    pub needs_registration: u32,
}

/// `GET /api/health`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ok`, or `degraded` when no terminal is healthy.
    pub status: String,
    /// `ok` when the database answered.
    pub database: String,
    /// The pool.
    pub terminals: PoolHealth,
    /// The server's version.
    pub version: String,
}

/// `GET /api/health/live`: the process serves requests. Addition.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessResponse {
    /// Always `live`.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// `GET /api/health/ready`: whether this process should be sent traffic (200) or not (503, the
/// same body). Addition.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessResponse {
    /// `ready`, or `not_ready` when any check failed.
    pub status: String,
    /// Each check: `database`, `schema`, `workers`, `outbox`.
    pub checks: Vec<ReadinessCheck>,
}

/// One check of [`ReadinessResponse`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessCheck {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What failed, in words; absent when it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST /api/admin/sources` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSourceRequest {
    /// A name for people: 1 to 255 characters once surrounding whitespace is trimmed.
    // `pattern`: some character other than what `str::trim` strips (Unicode White_Space).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 255,
            pattern = r"[^\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )
    )]
    pub name: String,
    /// Body encoding of this source's webhooks (default `php`).
    #[serde(default)]
    pub webhook_json: BodyEncoding,
}

/// A source as the admin API shows it (never its token).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Body encoding of its webhooks.
    pub webhook_json: BodyEncoding,
    /// False once revoked.
    pub active: bool,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
}

/// The answer that shows a new source's token, once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedSource {
    /// The source.
    pub source: SourceView,
    /// The API token in clear; it is not stored and cannot be shown again.
    pub api_token: String,
}

/// One API key of a source, as the admin API shows it (never its token). A source has one or more:
/// its token is rotated by creating a new key, switching the merchant system to it and revoking
/// the old one, with no moment where neither works.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    /// Id.
    pub id: i64,
    /// The source it belongs to.
    pub source_id: i64,
    /// A name for people ("CRM production", "initial" for a source's first key).
    pub name: String,
    /// The token's last 4 characters, to tell keys apart (empty for keys made before keys had one).
    pub hint: String,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
    /// When it stops working by itself, if it does.
    pub expires_at: Option<String>,
    /// When an operator revoked it.
    pub revoked_at: Option<String>,
    /// When a request last used it (kept to the minute: a key used within the last minute may
    /// show the time of an earlier use).
    pub last_used_at: Option<String>,
    /// Whether its token works now: not revoked, not expired (its source's own `active` also counts).
    pub active: bool,
}

/// `POST /api/admin/sources/{id}/keys` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CreateApiKeyRequest {
    /// A name for people: 1 to 255 characters once surrounding whitespace is trimmed.
    pub name: String,
    /// `YYYY-MM-DD HH:MM:SS` in the server's offset, in the future: the key stops working then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// The answer that shows a new key's token, once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedApiKey {
    /// The key.
    pub key: ApiKeyView,
    /// The API token in clear (64 characters, as the guide's clients expect); it is not stored and
    /// cannot be shown again.
    pub api_token: String,
}

/// `PATCH /api/admin/sources/{id}` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateSourceRequest {
    /// New body encoding of its webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_json: Option<BodyEncoding>,
    /// `false` revokes the source: its token stops working at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// A terminal as the admin API shows it (never its tokens).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalView {
    /// Id (the `terminal_id` of `/kaspi` answers).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Base URL.
    pub base_url: String,
    /// Camera snapshot URL.
    pub camera_url: String,
    /// `verify` or `insecure`.
    pub tls: String,
    /// Name the certificate is verified as, if not the URL's host.
    pub tls_server_name: Option<String>,
    /// In the pool.
    pub enabled: bool,
    /// Answered its last health check.
    pub healthy: bool,
    /// Why the last check failed.
    pub last_error: Option<String>,
    /// Registered with the terminal (holds tokens).
    pub registered: bool,
    /// Holds no tokens: out of the pool until an operator registers it. Health checks and payments
    /// never register by themselves (on a real terminal each attempt puts a prompt on the screen).
    #[serde(default)]
    pub needs_registration: bool,
    /// The last registration an operator started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationView>,
    /// The operation holding the terminal (no other can run there until it has a final answer
    /// or an operator's decision); absent while the terminal is free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_with: Option<TerminalHoldView>,
}

/// The operation a terminal is busy with (admin API).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalHoldView {
    /// The operation's id.
    pub operation_id: i64,
    /// Its payment.
    pub transaction_id: TransactionId,
    /// `payment` or `refund`.
    pub kind: String,
    /// `starting` or `in_flight`.
    pub state: String,
    /// `YYYY-MM-DD HH:MM:SS`: since when.
    pub started_at: String,
    /// It waits for an operator's decision (the review queue).
    pub needs_review: bool,
}

/// An operator's registration of a terminal (admin API).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationView {
    /// `pending` (waiting for the cashier to accept on the terminal's screen), `approved`,
    /// `declined`, `already_registered` (`105`: clear the name on the terminal first), `timed_out`
    /// or `failed`.
    pub state: String,
    /// What the terminal said, and what to do about it (Russian).
    pub message: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub started_at: String,
    /// `YYYY-MM-DD HH:MM:SS`, once decided.
    pub finished_at: Option<String>,
}

impl RegistrationView {
    /// True once the registration is decided (anything but `pending`).
    pub fn is_final(&self) -> bool {
        self.state != "pending"
    }
}

/// `POST /api/admin/operations/{id}/resolve` body: an operator's decision about an operation the
/// terminal cannot answer for (a long `unknown`, a forgotten process), after checking the
/// terminal's own history or calling Kaspi.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveOperationRequest {
    /// `paid` or `not_paid`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(paid|not_paid)$"))]
    pub outcome: String,
    /// What the customer paid (gross, as the terminal's cheque shows it): required for `paid`,
    /// and then above 0 once rounded to 2 decimals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The terminal's `transactionId` of the payment (`chequeInfo.orderNumber`, or the `rrn` of a
    /// card payment): required for `paid`, and not empty, since a refund must name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// `qr` (default), `card` or `alaqan`: how it was paid, as a refund must say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Why, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `POST /api/admin/terminals` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddTerminalRequest {
    /// Unique name, not blank (surrounding whitespace is trimmed).
    // `pattern`: some character other than what `str::trim` strips (Unicode White_Space).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            pattern = r"[^\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
        )
    )]
    pub name: String,
    /// `https://IP:8080`.
    // The server checks the prefix only (`add_terminal`), so no `format = Uri`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^https?://"))]
    pub base_url: String,
    /// Camera snapshot URL.
    #[cfg_attr(feature = "openapi", schema(pattern = "^https?://"))]
    pub camera_url: String,
    /// `verify` (default) or `insecure`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(verify|insecure)$"))]
    #[serde(default)]
    pub tls: Option<String>,
    /// Verify the certificate as this name.
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

/// `PATCH /api/admin/terminals/{id}` body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateTerminalRequest {
    /// Take the terminal out of the pool (`false`) or back in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// New base URL (a different device: its tokens are dropped and it registers again).
    #[cfg_attr(feature = "openapi", schema(pattern = "^https?://"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// New camera snapshot URL.
    #[cfg_attr(feature = "openapi", schema(pattern = "^https?://"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_url: Option<String>,
    /// `verify` or `insecure`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(verify|insecure)$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// Verify the certificate as this name (empty text: as the URL's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

/// A payment method with its active flag (admin API).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminMethodView {
    /// The method, as `/payment-methods/active` shows it.
    pub method: PaymentMethod,
    /// Offered to customers.
    pub is_active: bool,
}

/// `PATCH /api/admin/payment-methods/{id}` body: only the fields given change. Each percent is 0 to
/// 100; the method's effective percent (base, plus credit and installment where it has them) may
/// not exceed 100 either.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateMethodRequest {
    /// Base commission percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission_percent: Option<Percent>,
    /// Credit percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_commission_percent: Option<Percent>,
    /// Installment percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installment_commission_percent: Option<Percent>,
    /// Whether the commission is added to the customer's charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_commission_to_amount: Option<bool>,
    /// Offered to customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

/// A terminal operation (admin API): what the terminal was asked and what it answered.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationView {
    /// Id.
    pub id: i64,
    /// The payment.
    pub transaction_id: TransactionId,
    /// `payment` or `refund`.
    pub kind: String,
    /// The terminal running it.
    pub terminal_id: i64,
    /// Method priced.
    pub method: String,
    /// Charge `B + C` (for a refund: the refunded amount).
    pub amount: Money,
    /// `B`.
    pub base_amount: Money,
    /// `C`.
    pub commission_amount: Money,
    /// `starting`, `in_flight`, `succeeded`, `failed`, `start_failed`.
    pub state: String,
    /// Decides the payment's status.
    pub current: bool,
    /// The terminal's process id.
    pub process_id: Option<String>,
    /// G, once succeeded.
    pub gross_amount: Option<Money>,
    /// R, once succeeded.
    pub credited_amount: Option<Money>,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub started_at: String,
    /// Since when the terminal says `unknown` (the customer may have been charged).
    pub unknown_since: Option<String>,
    /// An operator must look at it (see `review_reason`).
    pub needs_review: bool,
    /// Why it waits for an operator: a long `unknown`, a process the terminal forgot after a
    /// customer could have paid, or a `/v2/payment` without an answer. Addition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_reason: Option<String>,
    /// Still holds its terminal (no other operation can run there). Addition.
    #[serde(default)]
    pub holds_terminal: bool,
    /// What the terminal answered about it, oldest first: each distinct answer once, with how
    /// often and until when it repeated. Admin payment page and review queue only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<TerminalAnswerView>,
    /// The operator's decision, when one settled it or took it off the review queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ReviewDecisionView>,
}

/// One answer of a terminal about an operation (admin API).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalAnswerView {
    /// `YYYY-MM-DD HH:MM:SS`: when it first came.
    pub first_at: String,
    /// When it came last.
    pub last_at: String,
    /// How many times in a row.
    pub times: i64,
    /// As received: the terminal's JSON text, or a JSON description of why there was none
    /// (`{"error": …}`), cut at 8 KiB.
    pub answer: String,
}

/// An operator's decision about an operation (admin API).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewDecisionView {
    /// `paid` or `not_paid`.
    pub outcome: String,
    /// What the operator found paid.
    pub amount: Option<Money>,
    /// The terminal's `transactionId` they found.
    pub transaction_id: Option<String>,
    /// Who: the console operator's name with their session and address, or `admin token`.
    pub decided_by: String,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub decided_at: String,
    /// Their note.
    pub note: Option<String>,
}

/// A payment with its operations (admin API).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminPaymentView {
    /// The public view of the payment.
    pub payment: PaymentView,
    /// Its source.
    pub source_id: i64,
    /// Every operation, in start order.
    pub operations: Vec<OperationView>,
    /// The customer, as the merchant gave them.
    pub customer: CustomerView,
    /// The merchant's metadata, as sent.
    pub metadata: Option<serde_json::Value>,
}

/// Who pays, as the merchant's system gave it at init (never on public endpoints).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerView {
    /// Name.
    pub name: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

/// One delivery attempt of a webhook (admin API).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttemptView {
    /// 1-based.
    pub attempt: u32,
    /// `automatic` or `manual`.
    pub trigger: String,
    /// Receiver's HTTP status, when it answered.
    pub response_code: Option<u16>,
    /// First 64 KiB of the answer.
    pub response_body: Option<String>,
    /// Transport error or refusal.
    pub error: Option<String>,
    /// Milliseconds.
    pub duration_ms: i64,
    /// The exact body sent.
    pub request_body: String,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub at: String,
}

/// A webhook event with its attempts (admin API).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEventView {
    /// `X-Webhook-Id`.
    pub event_id: String,
    /// The event.
    pub event: String,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
    /// Delivered (a 2xx answer).
    pub delivered: bool,
    /// 1, 2, … per payment: the order of delivery.
    #[serde(default)]
    pub sequence: u64,
    /// `pending`, `failed` (retrying), `exhausted` or `delivered`.
    #[serde(default)]
    pub state: String,
    /// Every attempt, oldest first.
    pub attempts: Vec<WebhookAttemptView>,
}

/// An undelivered webhook event across payments (`GET /api/admin/webhooks`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeliveredEventView {
    /// `X-Webhook-Id`.
    pub event_id: String,
    /// The payment.
    pub transaction_id: TransactionId,
    /// The payment's source.
    pub source_id: i64,
    /// The event.
    pub event: String,
    /// Its place among the payment's events.
    pub sequence: u64,
    /// `pending`, `failed` (retrying) or `exhausted`.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub created_at: String,
    /// When the next automatic attempt is due (none once exhausted).
    pub next_attempt_at: Option<String>,
    /// What the last attempt got (`HTTP 503`, or the error).
    pub last_result: Option<String>,
}

/// A page of undelivered events, oldest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeliveredEventList {
    /// This page.
    pub items: Vec<UndeliveredEventView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Which undelivered events `GET /api/admin/webhooks` lists.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndeliveredState {
    /// Not attempted yet (or waiting behind an earlier event of its payment).
    Pending,
    /// Attempted without success; retried on the schedule.
    Failed,
    /// The schedule ran out: waits for a recovery.
    Exhausted,
}

/// `GET /api/admin/webhooks` query.
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UndeliveredEventsQuery {
    /// Only this source's payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<i64>,
    /// Only events in this state (default: all three).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<UndeliveredState>,
    /// `YYYY-MM-DD HH:MM:SS`: only events created at or after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Page size, 1..=100 (default 50).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `POST /api/admin/webhooks/recover` body: every failed or exhausted event of a source's payments
/// since a time gets a fresh schedule, and goes out in order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverWebhooksRequest {
    /// The source.
    pub source_id: i64,
    /// `YYYY-MM-DD HH:MM:SS` (the server's offset): events created at or after it.
    pub since: String,
}

/// `POST /api/admin/webhooks/recover` answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveredWebhooks {
    /// How many events were rescheduled.
    pub recovered: u64,
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_body_must_be_an_object_not_an_array_read_field_by_field() {
        let refused = parse_object::<RefundRequest>(b"[1000]").unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidJson);
        assert!(InitPaymentInput::from_json(b" [1000]").is_err());
        assert!(parse_object::<RefundRequest>(b"null").is_err());
        assert!(parse_object::<RefundRequest>(b"\"x\"").is_err());
        let read: RefundRequest = parse_object(b" \n{\"amount\": 5}").unwrap();
        assert_eq!(read.amount, Some(Money::from_tenge(5)));
    }
    use super::*;

    fn validate(json: &str) -> Result<NewPayment, ApiError> {
        InitPaymentInput::from_json(json.as_bytes())?
            .validate(&InitLimits::default(), &PaymentMethod::seeded())
    }

    fn code_of(json: &str) -> ErrorCode {
        validate(json).unwrap_err().code
    }

    #[test]
    fn the_guides_init_example_is_accepted_as_is() {
        let body = r#"{
          "amount": 50000, "currency": "KZT", "description": "Оплата тура в Дубай #12345",
          "customer_name": "Иванов Иван Иванович", "customer_phone": "+77001234567",
          "customer_email": "ivan@example.com", "payment_method_id": 1,
          "webhook_url": "https://your-system.com/webhooks/payment", "webhook_secret": "your_secret_key_for_hmac",
          "metadata": {"order_id": "12345", "tour_name": "Дубай 7 дней", "customer_id": "CU-456", "any_custom_field": "custom_value"}
        }"#;
        let payment = validate(body).unwrap();
        assert_eq!(payment.amount, Money::from_tenge(50_000));
        assert_eq!(payment.currency, "KZT");
        assert_eq!(payment.payment_method_id, Some(1));
        assert_eq!(payment.webhook_url.as_ref().unwrap().host(), "your-system.com");
        assert_eq!(
            payment.webhook_secret.as_ref().unwrap().expose(),
            "your_secret_key_for_hmac"
        );
        assert!(
            payment
                .metadata
                .as_ref()
                .unwrap()
                .starts_with(r#"{"order_id": "12345", "tour_name""#)
        );
    }

    #[test]
    fn lenient_forms_are_accepted() {
        let payment =
            validate(r#"{"amount": "12281.255", "payment_method_id": "3", "currency": "kzt", "extra": 1}"#)
                .unwrap();
        assert_eq!(payment.amount.to_string(), "12281.26");
        assert_eq!(payment.payment_method_id, Some(3));
        assert_eq!(payment.currency, "KZT");
        let payment =
            validate(r#"{"amount": 1, "metadata": null, "webhook_url": "", "webhook_secret": ""}"#).unwrap();
        assert_eq!(
            (payment.metadata, payment.webhook_url, payment.webhook_secret),
            (None, None, None)
        );
    }

    #[test]
    fn every_rule_has_its_error() {
        let long = |n: usize| "x".repeat(n);
        let cases: Vec<(String, ErrorCode)> = vec![
            ("{}".into(), ErrorCode::InvalidAmount),
            (r#"{"amount": 0}"#.into(), ErrorCode::InvalidAmount),
            (r#"{"amount": -5}"#.into(), ErrorCode::InvalidAmount),
            (r#"{"amount": 0.004}"#.into(), ErrorCode::InvalidAmount),
            (r#"{"amount": "abc"}"#.into(), ErrorCode::InvalidAmount),
            (r#"{"amount": true}"#.into(), ErrorCode::InvalidAmount),
            (r#"{"amount": null}"#.into(), ErrorCode::InvalidAmount),
            (r#"{"amount": 100000000.01}"#.into(), ErrorCode::AmountTooLarge),
            (r#"{"amount": 1e300}"#.into(), ErrorCode::AmountTooLarge),
            (
                r#"{"amount": 1, "currency": "USD"}"#.into(),
                ErrorCode::InvalidCurrency,
            ),
            (
                r#"{"amount": 1, "payment_method_id": 99}"#.into(),
                ErrorCode::InvalidPaymentMethod,
            ),
            (
                r#"{"amount": 1, "payment_method_id": "x"}"#.into(),
                ErrorCode::InvalidJson,
            ),
            (
                r#"{"amount": 1, "webhook_url": "ftp://a.kz/x"}"#.into(),
                ErrorCode::InvalidWebhookUrl,
            ),
            (
                r#"{"amount": 1, "webhook_url": "/relative"}"#.into(),
                ErrorCode::InvalidWebhookUrl,
            ),
            (
                r#"{"amount": 1, "webhook_url": "https://user:pw@a.kz/"}"#.into(),
                ErrorCode::InvalidWebhookUrl,
            ),
            (
                format!(r#"{{"amount": 1, "webhook_url": "https://a.kz/{}"}}"#, long(2040)),
                ErrorCode::InvalidWebhookUrl,
            ),
            (
                format!(r#"{{"amount": 1, "webhook_secret": "{}"}}"#, long(257)),
                ErrorCode::FieldTooLong,
            ),
            (
                format!(r#"{{"amount": 1, "description": "{}"}}"#, long(1001)),
                ErrorCode::FieldTooLong,
            ),
            (
                format!(r#"{{"amount": 1, "customer_name": "{}"}}"#, long(256)),
                ErrorCode::FieldTooLong,
            ),
            (
                format!(r#"{{"amount": 1, "customer_phone": "{}"}}"#, long(256)),
                ErrorCode::FieldTooLong,
            ),
            (
                format!(r#"{{"amount": 1, "customer_email": "{}"}}"#, long(256)),
                ErrorCode::FieldTooLong,
            ),
            (
                r#"{"amount": 1, "metadata": [1, 2]}"#.into(),
                ErrorCode::InvalidMetadata,
            ),
            (
                r#"{"amount": 1, "metadata": "text"}"#.into(),
                ErrorCode::InvalidMetadata,
            ),
            (
                format!(r#"{{"amount": 1, "metadata": {{"a": "{}"}}}}"#, long(16 * 1024)),
                ErrorCode::InvalidMetadata,
            ),
            (
                format!(
                    r#"{{"amount": 1, "metadata": {}1{}}}"#,
                    r#"{"a":"#.repeat(33),
                    "}".repeat(33)
                ),
                ErrorCode::InvalidMetadata,
            ),
            ("not json".into(), ErrorCode::InvalidJson),
            ("[1]".into(), ErrorCode::InvalidJson),
            (
                r#"{"amount": 1, "description": 5}"#.into(),
                ErrorCode::InvalidJson,
            ),
        ];
        for (body, code) in cases {
            assert_eq!(code_of(&body), code, "{}", &body[..body.len().min(80)]);
        }
        assert_eq!(
            validate(r#"{"amount": 0}"#).unwrap_err().message,
            "Сумма должна быть больше 0"
        );
        // Exactly at the limits is fine.
        assert!(
            validate(&format!(
                r#"{{"amount": 100000000, "description": "{}"}}"#,
                "я".repeat(1000)
            ))
            .is_ok()
        );
        let deepest_allowed = format!(
            r#"{{"amount": 1, "metadata": {}1{}}}"#,
            r#"{"a":"#.repeat(32),
            "}".repeat(32)
        );
        assert!(validate(&deepest_allowed).is_ok());
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::",
            "224.0.0.1",
            "198.18.0.1",
            "::127.0.0.1",
            "::169.254.169.254",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "fec0::1",
        ] {
            assert!(is_internal_address(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "95.56.1.1",
            "2a00:1450::1",
            "100.128.0.1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_internal_address(public.parse().unwrap()), "{public}");
        }
        let url = WebhookUrl::parse("http://[::1]:8080/hook").unwrap();
        assert_eq!(url.literal_ip(), Some("::1".parse().unwrap()));
    }

    #[test]
    fn answers_serialize_with_the_guides_fields() {
        let answer = KaspiResponse {
            transaction_id: TransactionId::parse("A3F5D9E2B1C8").unwrap(),
            amount: Money::from_tenge(57_000),
            original_amount: Money::from_tenge(50_000),
            commission_amount: Money::from_tenge(7_000),
            commission_percent: Percent::whole(14),
            payment_url: "https://pay.kaspi.kz/pay/abc123".into(),
            qr_code: "https://qr.kaspi.kz/abc123".into(),
            terminal_id: 1,
            expires_at: None,
        };
        let json =
            serde_json::to_string(&Envelope::with_message("Платеж инициирован", answer.clone())).unwrap();
        assert_eq!(
            json,
            r#"{"success":true,"message":"Платеж инициирован","data":{"transaction_id":"A3F5D9E2B1C8","amount":57000,"original_amount":50000,"commission_amount":7000,"commission_percent":14,"payment_url":"https://pay.kaspi.kz/pay/abc123","qr_code":"https://qr.kaspi.kz/abc123","terminal_id":1}}"#
        );
        let back: Envelope<KaspiResponse> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.data, answer);
        let request = InitPaymentRequest {
            amount: Money::from_tenge(50_000),
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&request).unwrap(), r#"{"amount":50000}"#);
    }

    /// Schema attributes take literals only: these keep them equal to the limits `validate` applies.
    #[cfg(feature = "openapi")]
    #[test]
    fn the_schema_states_the_limits_validate_enforces() {
        let schema = serde_json::to_value(<InitPaymentRequest as utoipa::PartialSchema>::schema()).unwrap();
        let max_length = |field: &str| schema["properties"][field]["maxLength"].as_u64();
        assert_eq!(max_length("description"), Some(MAX_DESCRIPTION_LEN as u64));
        for field in ["customer_name", "customer_phone", "customer_email"] {
            assert_eq!(max_length(field), Some(MAX_CUSTOMER_FIELD_LEN as u64), "{field}");
        }
        assert_eq!(max_length("webhook_secret"), Some(MAX_WEBHOOK_SECRET_LEN as u64));
        // A byte limit has no JSON Schema form: it is in the description only.
        assert_eq!(max_length("webhook_url"), None);
        assert_eq!(
            schema["properties"]["amount"]["minimum"],
            serde_json::json!(0.005)
        );
        assert_eq!(schema["required"], serde_json::json!(["amount"]));
    }
}
