//! The terminal's answers, parsed leniently (`spec/KASPI_TERMINAL.md` §2–§3).
//!
//! Kaspi publishes no specification of the local API, and integrations in the field have seen
//! several shapes for the same answer. Every parser here accepts what has been seen, keeps the raw
//! JSON for audit, and refuses only what cannot be understood at all.

use byfly_core::{Money, ProductType};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Status codes the terminal is known to answer in `statusCode`.
pub mod codes {
    /// Success.
    pub const OK: i64 = 0;
    /// No such process.
    pub const PROCESS_NOT_FOUND: i64 = 101;
    /// Actualize refused: the process is not in `unknown`.
    pub const CANNOT_ACTUALIZE: i64 = 103;
    /// Revoke (token refresh) refused: wrong name or refresh token.
    pub const REVOKE_FAILED: i64 = 105;
    /// `register` of a name already allowed on the terminal (the same code as a failed revoke);
    /// only the terminal's admin panel clears it.
    pub const ALREADY_REGISTERED: i64 = 105;
    /// Busy: the last operation is not completed.
    pub const BUSY: i64 = 107;
    /// A bad parameter.
    pub const BAD_PARAMETER: i64 = 999;
}

/// One answer of the terminal, before interpretation.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// `statusCode` 0 with its `data` (an empty object when absent).
    Ok(Value),
    /// A non-zero `statusCode` with the terminal's own text (`errorText`, else `data.message`).
    Error { code: i64, text: String },
}

/// Why a body is not a terminal envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a terminal answer: {0}")]
pub struct NotAnEnvelope(pub String);

impl Envelope {
    /// Parses `{"statusCode": N, "data": {...}, "errorText": "..."}`; `statusCode` may be a number
    /// or a numeric string.
    pub fn parse(body: &[u8]) -> Result<Envelope, NotAnEnvelope> {
        let value: Value = serde_json::from_slice(body).map_err(|err| NotAnEnvelope(err.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(NotAnEnvelope("the body is not a JSON object".to_owned()));
        };
        let code = match object.get("statusCode") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| NotAnEnvelope("no numeric statusCode".to_owned()))?;
        let data = object.remove("data").unwrap_or(Value::Null);
        if code == codes::OK {
            let data = if data.is_null() {
                Value::Object(Default::default())
            } else {
                data
            };
            return Ok(Envelope::Ok(data));
        }
        // The useful sentence is often in `data.message`, with `errorText` a generic wrapper: keep both.
        let error_text = object.get("errorText").and_then(Value::as_str).unwrap_or("");
        let message = data.get("message").and_then(Value::as_str).unwrap_or("");
        let text = match (error_text.is_empty(), message.is_empty()) {
            (false, false) if error_text != message => format!("{error_text} — {message}"),
            (false, _) => error_text.to_owned(),
            (true, _) => message.to_owned(),
        };
        Ok(Envelope::Error { code, text })
    }
}

/// A string field that some firmware sends as a number.
fn text_field(data: &Value, key: &str) -> Option<String> {
    match data.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The tokens `register` and `revoke` hand out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Sent as the `accesstoken` header.
    pub access_token: String,
    /// Used once to get new tokens through `revoke`.
    pub refresh_token: String,
    /// When the access token expires, in the terminal's local time (no zone is given), if parseable.
    pub expires_at: Option<NaiveDateTime>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Reads `{accessToken, refreshToken, expirationDate}`.
    pub fn from_data(data: &Value) -> Option<Tokens> {
        Some(Tokens {
            access_token: text_field(data, "accessToken")?,
            refresh_token: text_field(data, "refreshToken").unwrap_or_default(),
            expires_at: text_field(data, "expirationDate").and_then(|text| parse_expiration(&text)),
        })
    }
}

/// Parses `expirationDate` in every format seen: `2026-01-13 15:30:00`, `Jan 13, 2026 15:30:00`
/// (also with `AM`/`PM`), `13.01.26 15:30:00`, and ISO 8601 with a `T`.
pub fn parse_expiration(text: &str) -> Option<NaiveDateTime> {
    const FORMATS: [&str; 7] = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%b %d, %Y %H:%M:%S",
        "%b %d, %Y %I:%M:%S %p",
        "%d.%m.%y %H:%M:%S",
        "%d.%m.%Y %H:%M:%S",
    ];
    let text = text.trim();
    FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
}

/// `deviceinfo`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `posNum`.
    pub pos_num: Option<String>,
    /// `serialNum`.
    pub serial_num: Option<String>,
    /// `terminalId`: sent back as a header on status calls.
    pub terminal_id: Option<String>,
}

impl DeviceInfo {
    /// Reads `{posNum, serialNum, terminalId}`.
    pub fn from_data(data: &Value) -> DeviceInfo {
        DeviceInfo {
            pos_num: text_field(data, "posNum"),
            serial_num: text_field(data, "serialNum"),
            terminal_id: text_field(data, "terminalId"),
        }
    }
}

/// `payment`'s and `refund`'s answer: a process was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStarted {
    /// The id to ask `status` about.
    pub process_id: String,
}

impl ProcessStarted {
    /// Reads `{processId, status: "wait"}`.
    pub fn from_data(data: &Value) -> Option<ProcessStarted> {
        text_field(data, "processId")
            .filter(|id| !id.is_empty())
            .map(|process_id| ProcessStarted { process_id })
    }
}

/// `status` of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessStatus {
    /// Still running.
    Wait,
    /// Final: paid (or refunded).
    Success,
    /// Final: failed or cancelled.
    Fail,
    /// The terminal lost track; the customer may have been charged. Never a failure.
    Unknown,
}

impl ProcessStatus {
    /// Parses the terminal's text, case-insensitively.
    pub fn parse(text: &str) -> Option<ProcessStatus> {
        match text.trim().to_ascii_lowercase().as_str() {
            "wait" => Some(ProcessStatus::Wait),
            "success" => Some(ProcessStatus::Success),
            "fail" | "failed" => Some(ProcessStatus::Fail),
            "unknown" => Some(ProcessStatus::Unknown),
            _ => None,
        }
    }

    /// The terminal's text.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessStatus::Wait => "wait",
            ProcessStatus::Success => "success",
            ProcessStatus::Fail => "fail",
            ProcessStatus::Unknown => "unknown",
        }
    }

    /// True for `success` and `fail`.
    pub fn is_final(self) -> bool {
        matches!(self, ProcessStatus::Success | ProcessStatus::Fail)
    }
}

/// `addInfo` of a successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddInfo {
    /// `ProductType`, when known (`Gold`, `Red`, `Loan`/`Credit`, `Installment`).
    pub product: Option<ProductType>,
    /// `ProductType` as sent, for audit.
    pub product_text: Option<String>,
    /// `LoanTerm` (months), as sent.
    pub loan_term: Option<String>,
    /// `LoanOfferName`.
    pub loan_offer_name: Option<String>,
    /// `IsOffer`.
    pub is_offer: Option<bool>,
}

/// `chequeInfo` of a successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChequeInfo {
    /// `qr`, `card` or `alaqan`: what a refund must name as `method`.
    pub method: Option<String>,
    /// `payment` or `refund`.
    pub kind: Option<String>,
    /// `amount` parsed from its display text (`"114 000 ₸"`, `"- 10 ₸"`).
    pub amount: Option<Money>,
    /// `orderNumber` (QR payments).
    pub order_number: Option<String>,
    /// `rrn` (card payments).
    pub rrn: Option<String>,
    /// `date`, as sent.
    pub date: Option<String>,
}

/// A `status` or `actualize` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationStatus {
    /// Where the process stands.
    pub status: ProcessStatus,
    /// `subStatus` as sent (`WaitUser`, `QrTransactionSuccess`, ...).
    pub sub_status: Option<String>,
    /// `message` on fail/unknown.
    pub message: Option<String>,
    /// `transactionId` on success: what a refund names.
    pub transaction_id: Option<String>,
    /// The amount the customer paid: a numeric top-level `amount` when > 0, else `chequeInfo.amount`.
    pub amount: Option<Money>,
    /// `addInfo`.
    pub add_info: AddInfo,
    /// `chequeInfo`.
    pub cheque: ChequeInfo,
    /// The whole `data` object as received, kept for audit.
    pub raw: Value,
}

/// Why a status answer was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status answer without a known status: {0}")]
pub struct UnknownStatusShape(pub String);

fn bool_field(data: &Value, key: &str) -> Option<bool> {
    match data.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    }
}

impl OperationStatus {
    /// Reads a `status`/`actualize` `data` object.
    pub fn from_data(data: Value) -> Result<OperationStatus, UnknownStatusShape> {
        let status = text_field(&data, "status")
            .and_then(|text| ProcessStatus::parse(&text))
            .ok_or_else(|| UnknownStatusShape(data.to_string()))?;
        let empty = Value::Null;
        let add = data.get("addInfo").unwrap_or(&empty);
        let product_text = text_field(add, "ProductType");
        let add_info = AddInfo {
            product: product_text.as_deref().and_then(ProductType::from_terminal),
            product_text,
            loan_term: text_field(add, "LoanTerm"),
            loan_offer_name: text_field(add, "LoanOfferName"),
            is_offer: bool_field(add, "IsOffer"),
        };
        let cheque_value = data.get("chequeInfo").unwrap_or(&empty);
        let cheque = ChequeInfo {
            method: text_field(cheque_value, "method"),
            kind: text_field(cheque_value, "type"),
            amount: text_field(cheque_value, "amount").and_then(|text| parse_display_amount(&text)),
            order_number: text_field(cheque_value, "orderNumber"),
            rrn: text_field(cheque_value, "rrn"),
            date: text_field(cheque_value, "date"),
        };
        let top_level_amount = match data.get("amount") {
            Some(Value::Number(n)) => Money::parse(&n.to_string()).ok(),
            Some(Value::String(s)) => Money::parse(s).ok(),
            _ => None,
        }
        .filter(|amount| amount.is_positive());
        let transaction_id = text_field(&data, "transactionId")
            .or_else(|| cheque.order_number.clone())
            .or_else(|| cheque.rrn.clone());
        Ok(OperationStatus {
            status,
            sub_status: text_field(&data, "subStatus"),
            message: text_field(&data, "message"),
            transaction_id,
            amount: top_level_amount.or(cheque.amount),
            add_info,
            cheque,
            raw: data,
        })
    }
}

/// Parses `chequeInfo.amount`, which is display text: `"1 ₸"`, `"114 000 ₸"` (with a normal,
/// no-break, narrow no-break or thin space), `"- 10 ₸"` (a refund), `"1 234,50 ₸"`.
pub fn parse_display_amount(text: &str) -> Option<Money> {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '₸' | ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}' | '\u{2007}'))
        .filter(|c| !c.is_whitespace())
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    let cleaned = cleaned
        .strip_suffix("KZT")
        .or_else(|| cleaned.strip_suffix("тг"))
        .unwrap_or(&cleaned);
    if cleaned.is_empty() {
        return None;
    }
    Money::parse(cleaned).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    #[test]
    fn envelopes_in_every_seen_shape() {
        assert_eq!(
            Envelope::parse(br#"{"statusCode":0,"data":{"a":1}}"#).unwrap(),
            Envelope::Ok(json!({"a":1}))
        );
        assert_eq!(
            Envelope::parse(br#"{"statusCode":"0"}"#).unwrap(),
            Envelope::Ok(json!({}))
        );
        assert_eq!(
            Envelope::parse(br#"{"statusCode":107,"errorText":"Terminal is busy"}"#).unwrap(),
            Envelope::Error {
                code: 107,
                text: "Terminal is busy".into()
            }
        );
        assert_eq!(
            Envelope::parse(br#"{"statusCode":101,"data":{"message":"Process not found"}}"#).unwrap(),
            Envelope::Error {
                code: 101,
                text: "Process not found".into()
            }
        );
        assert_eq!(
            Envelope::parse(
                br#"{"statusCode":999,"errorText":"Error","data":{"message":"amount is required"}}"#
            )
            .unwrap(),
            Envelope::Error {
                code: 999,
                text: "Error — amount is required".into()
            },
            "both texts are kept"
        );
        for garbage in [
            &b"<html>500</html>"[..],
            b"[]",
            b"{}",
            b"{\"statusCode\":\"x\"}",
            b"",
        ] {
            assert!(
                Envelope::parse(garbage).is_err(),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn display_amounts() {
        for (text, amount) in [
            ("1 ₸", "1"),
            ("505 ₸", "505"),
            ("114 000 ₸", "114000"),
            ("114\u{a0}000\u{a0}₸", "114000"),
            ("114\u{202f}000 ₸", "114000"),
            ("1\u{2009}234\u{2009}567 ₸", "1234567"),
            ("- 10 ₸", "-10"),
            ("1 234,50 ₸", "1234.5"),
            ("12281", "12281"),
            ("500 KZT", "500"),
        ] {
            assert_eq!(parse_display_amount(text), Some(m(amount)), "{text:?}");
        }
        assert_eq!(parse_display_amount("₸"), None);
        assert_eq!(parse_display_amount("abc ₸"), None);
    }

    #[test]
    fn expiration_dates_in_all_seen_formats() {
        let expected = NaiveDateTime::parse_from_str("2026-01-13 15:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        for text in [
            "2026-01-13 15:30:00",
            "Jan 13, 2026 15:30:00",
            "Jan 13, 2026 03:30:00 PM",
            "13.01.26 15:30:00",
            "13.01.2026 15:30:00",
            "2026-01-13T15:30:00",
            " 2026-01-13T15:30:00.000 ",
        ] {
            assert_eq!(parse_expiration(text), Some(expected), "{text}");
        }
        assert_eq!(parse_expiration("tomorrow"), None);
        let tokens =
            Tokens::from_data(&json!({"accessToken":"a","refreshToken":"r","expirationDate":"nonsense"}))
                .unwrap();
        assert_eq!((tokens.access_token.as_str(), tokens.expires_at), ("a", None));
        assert!(!format!("{tokens:?}").contains("\"a\""), "tokens never print");
    }

    #[test]
    fn a_successful_credit_payment() {
        let data = json!({
            "status": "success", "subStatus": "QrTransactionSuccess", "transactionId": "1234567890",
            "addInfo": {"ProductType": "Loan", "LoanTerm": "12", "LoanOfferName": "Кредит", "IsOffer": "false"},
            "chequeInfo": {"storeName": "ByFly", "method": "qr", "type": "payment", "amount": "114 000 ₸",
                           "orderNumber": "1234567890", "date": "13.01.26 14:35:00", "status": "success"}
        });
        let status = OperationStatus::from_data(data.clone()).unwrap();
        assert_eq!(status.status, ProcessStatus::Success);
        assert_eq!(status.add_info.product, Some(ProductType::Credit));
        assert_eq!(status.add_info.is_offer, Some(false));
        assert_eq!(status.amount, Some(m("114000")));
        assert_eq!(status.transaction_id.as_deref(), Some("1234567890"));
        assert_eq!(status.cheque.method.as_deref(), Some("qr"));
        assert_eq!(status.raw, data);
    }

    #[test]
    fn numeric_top_level_amount_wins_when_positive() {
        let with = |amount: Value| {
            OperationStatus::from_data(
                json!({"status":"success","amount":amount,"chequeInfo":{"amount":"505 ₸"}}),
            )
            .unwrap()
            .amount
        };
        assert_eq!(with(json!(500)), Some(m("500")));
        assert_eq!(with(json!("500")), Some(m("500")));
        assert_eq!(with(json!(0)), Some(m("505")));
        assert_eq!(with(Value::Null), Some(m("505")));
    }

    #[test]
    fn card_payment_uses_rrn_and_unknown_shapes_are_refused() {
        let card = OperationStatus::from_data(
            json!({"status":"SUCCESS","chequeInfo":{"method":"card","rrn":"998877"}}),
        )
        .unwrap();
        assert_eq!(card.transaction_id.as_deref(), Some("998877"));
        assert_eq!(card.add_info.product, None);
        let unknown =
            OperationStatus::from_data(json!({"status":"unknown","message":"Lost connection"})).unwrap();
        assert_eq!(
            (unknown.status, unknown.message.as_deref()),
            (ProcessStatus::Unknown, Some("Lost connection"))
        );
        assert!(OperationStatus::from_data(json!({"status":"maybe"})).is_err());
        assert!(OperationStatus::from_data(json!({})).is_err());
    }
}
