//! Row decoding: stored columns back into records (money from tiyn, flags from 0/1, text
//! enums parsed; a value that no longer parses is [`StoreError::Corrupt`]).

use byfly_core::ids::EventId;
use byfly_core::ids::Secret;
use byfly_core::ledger::OperationQuote;
use byfly_core::{
    BodyEncoding, Figures, MethodCode, Money, PaymentMethod, PaymentStatus, Percent, TransactionId,
    WebhookEvent,
};
use byfly_terminal::Tokens;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::{SqlStore, TOKEN_TIME_FORMAT, corrupt, flag};
use crate::store::error::StoreError;
use crate::store::ids::UnixSeconds;
use crate::store::outbox::{DueEvent, StoredEvent};
use crate::store::records::*;

/// A value either driver reads from a column: integers (and the ids and times wrapping them) and
/// text, each possibly NULL.
pub(super) trait StoredValue:
    for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + rusqlite::types::FromSql
{
}

impl<T> StoredValue for T where T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + rusqlite::types::FromSql {}

/// A row as sqlx or rusqlite hands it over (see [`super::sqlite_reads`]), so that a record read by
/// either driver is decoded by the one function below.
pub(super) trait StoredRow {
    /// The value of the named column.
    fn value<T: StoredValue>(&self, column: &str) -> Result<T, StoreError>;
}

impl StoredRow for AnyRow {
    fn value<T: StoredValue>(&self, column: &str) -> Result<T, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// A row read by rusqlite, with where the next column is expected.
///
/// Why: rusqlite finds a column by name by comparing it with every column's name from the
/// first; the records below are decoded in about the order their columns are selected, so the
/// column after the last one read is tried first and the search runs only when that misses (a
/// joined payment and its operations is some fifty columns: most of a `/status` read's decoding
/// was that search).
pub(super) struct SqliteRow<'row, 'statement> {
    row: &'row rusqlite::Row<'statement>,
    next: std::cell::Cell<usize>,
}

impl<'row, 'statement> SqliteRow<'row, 'statement> {
    pub(super) fn new(row: &'row rusqlite::Row<'statement>) -> Self {
        SqliteRow {
            row,
            next: std::cell::Cell::new(0),
        }
    }
}

impl StoredRow for SqliteRow<'_, '_> {
    fn value<T: StoredValue>(&self, column: &str) -> Result<T, StoreError> {
        let statement = self.row.as_ref();
        let expected = self.next.get();
        let index = match statement.column_name(expected) {
            Ok(name) if name.eq_ignore_ascii_case(column) => expected,
            _ => statement.column_index(column)?,
        };
        self.next.set(index + 1);
        Ok(self.row.get(index)?)
    }
}

impl SqlStore {
    pub(super) fn refund_request_row(row: &AnyRow) -> Result<RefundRequestRecord, StoreError> {
        Ok(RefundRequestRecord {
            id: row.try_get("id")?,
            refund_id: row.try_get("refund_id")?,
            payment_id: row.try_get("payment_id")?,
            amount: Money::from_minor(row.try_get("amount_minor")?),
            created_at: row.try_get("created_at")?,
            open: row.try_get::<i64, _>("open")? == 1,
        })
    }

    /// A payment status column.
    fn status(row: &impl StoredRow, column: &str) -> Result<PaymentStatus, StoreError> {
        let status: String = row.value(column)?;
        PaymentStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status:?}")))
    }

    pub(super) fn percent(row: &impl StoredRow, column: &str) -> Result<Percent, StoreError> {
        let text: String = row.value(column)?;
        Percent::parse(&text).map_err(|err| corrupt(format!("{column}: {err}")))
    }

    pub(super) fn method(row: &AnyRow) -> Result<(PaymentMethod, bool), StoreError> {
        let method = PaymentMethod {
            id: row.try_get("id")?,
            code: byfly_core::MethodCode::new(row.try_get::<String, _>("code")?),
            name: row.try_get("name")?,
            kind: row.try_get("type")?,
            provider: row.try_get("provider")?,
            country_id: row.try_get("country_id")?,
            payment_currency: row.try_get("payment_currency")?,
            icon_emoji: row.try_get("icon_emoji")?,
            commission_percent: Self::percent(row, "commission_percent")?,
            has_credit: flag(row, "has_credit")?,
            credit_commission_percent: Self::percent(row, "credit_commission_percent")?,
            has_installment: flag(row, "has_installment")?,
            installment_months: row.try_get("installment_months")?,
            installment_commission_percent: Self::percent(row, "installment_commission_percent")?,
            add_commission_to_amount: flag(row, "add_commission_to_amount")?,
        };
        Ok((method, flag(row, "is_active")?))
    }

    pub(super) fn source_row(row: &AnyRow) -> Result<SourceRecord, StoreError> {
        let encoding: String = row.try_get("webhook_json")?;
        Ok(SourceRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            webhook_json: BodyEncoding::parse(&encoding)
                .ok_or_else(|| corrupt(format!("webhook_json {encoding:?}")))?,
            active: flag(row, "active")?,
            created_at: row.try_get("created_at")?,
        })
    }

    pub(super) fn api_key_row(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
        Ok(ApiKeyRecord {
            id: row.try_get("id")?,
            source_id: row.try_get("source_id")?,
            name: row.try_get("name")?,
            hint: row.try_get("hint")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            last_used_at: row.try_get("last_used_at")?,
        })
    }

    pub(super) fn payment_row(row: &impl StoredRow) -> Result<PaymentRecord, StoreError> {
        Self::payment_columns(row, false)
    }

    /// A payment from a row of `payment_and_operations`' join (`payments.rs`), whose payment
    /// columns are prefixed `p_` (the operation's keep their names).
    pub(super) fn joined_payment_row(row: &impl StoredRow) -> Result<PaymentRecord, StoreError> {
        Self::payment_columns(row, true)
    }

    fn payment_columns(row: &impl StoredRow, prefixed: bool) -> Result<PaymentRecord, StoreError> {
        macro_rules! column {
            ($name:literal) => {
                if prefixed {
                    concat!("p_", $name)
                } else {
                    $name
                }
            };
        }
        // Fields are read in the order of the columns (`SqliteRow`).
        Ok(PaymentRecord {
            id: row.value(column!("id"))?,
            transaction_id: TransactionId::parse(&row.value::<String>(column!("transaction_id"))?)
                .map_err(corrupt)?,
            source_id: row.value(column!("source_id"))?,
            status: Self::status(row, column!("status"))?,
            original_amount: Money::from_minor(row.value(column!("original_amount_minor"))?),
            refunded_amount: Money::from_minor(row.value(column!("refunded_amount_minor"))?),
            currency: row.value(column!("currency"))?,
            description: row.value(column!("description"))?,
            customer_name: row.value(column!("customer_name"))?,
            customer_phone: row.value(column!("customer_phone"))?,
            customer_email: row.value(column!("customer_email"))?,
            payment_method_id: row.value(column!("payment_method_id"))?,
            webhook_url: row.value(column!("webhook_url"))?,
            webhook_secret: row
                .value::<Option<String>>(column!("webhook_secret"))?
                .map(Secret::new),
            metadata: row.value(column!("metadata"))?,
            created_at: row.value(column!("created_at"))?,
            expires_at: row.value(column!("expires_at"))?,
            paid_at: row.value(column!("paid_at"))?,
        })
    }

    pub(super) fn terminal(row: &AnyRow) -> Result<TerminalRecord, StoreError> {
        let mode: String = row.try_get("tls_mode")?;
        let tls = match mode.as_str() {
            "verify" => TerminalTls::Verify {
                server_name: row.try_get("tls_server_name")?,
            },
            "insecure" => TerminalTls::Insecure,
            other => return Err(corrupt(format!("tls_mode {other:?}"))),
        };
        let access: Option<String> = row.try_get("access_token")?;
        let tokens = match access {
            Some(access_token) => Some(Tokens {
                access_token,
                refresh_token: row
                    .try_get::<Option<String>, _>("refresh_token")?
                    .unwrap_or_default(),
                expires_at: row
                    .try_get::<Option<String>, _>("token_expires_at")?
                    .and_then(|text| chrono::NaiveDateTime::parse_from_str(&text, TOKEN_TIME_FORMAT).ok()),
            }),
            None => None,
        };
        Ok(TerminalRecord {
            id: row.try_get("id")?,
            terminal: NewTerminal {
                name: row.try_get("name")?,
                base_url: row.try_get("base_url")?,
                camera_url: row.try_get("camera_url")?,
                tls,
            },
            enabled: flag(row, "enabled")?,
            healthy: flag(row, "healthy")?,
            last_error: row.try_get("last_error")?,
            tokens,
            device_terminal_id: row.try_get("device_terminal_id")?,
            last_used_at: row.try_get("last_used_at")?,
            last_checked_at: row.try_get("last_checked_at")?,
            tokens_obtained_at: row.try_get("tokens_obtained_at")?,
            registration: Self::registration(row)?,
        })
    }

    pub(super) fn registration(row: &AnyRow) -> Result<Option<RegistrationRecord>, StoreError> {
        let Some(state) = row.try_get::<Option<String>, _>("registration_state")? else {
            return Ok(None);
        };
        Ok(Some(RegistrationRecord {
            state: RegistrationState::parse(&state)
                .ok_or_else(|| corrupt(format!("registration_state {state:?}")))?,
            message: row.try_get("registration_message")?,
            started_at: row
                .try_get::<Option<UnixSeconds>, _>("registration_started_at")?
                .unwrap_or(UnixSeconds(0)),
            finished_at: row.try_get("registration_finished_at")?,
        }))
    }

    pub(super) fn operation(row: &impl StoredRow) -> Result<OperationRecord, StoreError> {
        let money = |column: &str| -> Result<Money, StoreError> { Ok(Money::from_minor(row.value(column)?)) };
        let optional_money = |column: &str| -> Result<Option<Money>, StoreError> {
            Ok(row.value::<Option<i64>>(column)?.map(Money::from_minor))
        };
        // Fields are read in about the order of the columns (`SqliteRow`).
        Ok(OperationRecord {
            id: row.value("id")?,
            payment_id: row.value("payment_id")?,
            terminal_id: row.value("terminal_id")?,
            quote: OperationQuote {
                method: MethodCode::new(row.value::<String>("method_code")?),
                percent: Self::percent(row, "percent")?,
                base: money("base_minor")?,
                commission: money("commission_minor")?,
                charge: money("charge_minor")?,
            },
            terminal_amount: row.value("terminal_amount")?,
            state: {
                let state: String = row.value("state")?;
                OpState::parse(&state).ok_or_else(|| corrupt(format!("operation state {state:?}")))?
            },
            is_current: flag(row, "is_current")?,
            holds_terminal: flag(row, "holds_terminal")?,
            previous_status: Self::status(row, "previous_status")?,
            process_id: row.value("process_id")?,
            qr_code: row.value("qr_code")?,
            payment_url: row.value("payment_url")?,
            credited: optional_money("credited_minor")?,
            gross: optional_money("gross_minor")?,
            product_method: row
                .value::<Option<String>>("product_method")?
                .map(MethodCode::new),
            started_at: row.value("started_at")?,
            deadline_at: row.value("deadline_at")?,
            next_poll_at: row.value("next_poll_at")?,
            unknown_since: row.value("unknown_since")?,
            refund_id: row.value("refund_id")?,
            refund_of: row.value("refund_of_operation_id")?,
            terminal_transaction_id: row.value("terminal_transaction_id")?,
            cheque_method: row.value("cheque_method")?,
            needs_review: flag(row, "needs_review")?,
            review_reason: row.value("review_reason")?,
            shown: flag(row, "shown")?,
            start_uncertain: flag(row, "start_uncertain")?,
        })
    }

    pub(super) fn stored_event(row: &AnyRow) -> Result<StoredEvent, StoreError> {
        let money =
            |column: &str| -> Result<Money, StoreError> { Ok(Money::from_minor(row.try_get(column)?)) };
        let event: String = row.try_get("event")?;
        let status: String = row.try_get("status")?;
        let amount = money("amount_minor")?;
        let commission = money("commission_minor")?;
        Ok(StoredEvent {
            event_id: EventId::from(row.try_get::<String, _>("event_id")?),
            payment_id: row.try_get("payment_id")?,
            event: WebhookEvent::parse(&event).ok_or_else(|| corrupt(format!("event {event:?}")))?,
            status: PaymentStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?,
            figures: Figures {
                original_amount: amount - commission,
                commission_amount: commission,
                amount,
                paid_amount: money("paid_minor")?,
                remaining_amount: money("remaining_minor")?,
                overpaid_amount: money("overpaid_minor")?,
                refunded_amount: money("refunded_minor")?,
                tolerance: byfly_core::ledger::tolerance(amount),
            },
            actual_amount_received: money("actual_received_minor")?,
            payment_method: row.try_get("payment_method")?,
            paid_at: row.try_get("paid_at")?,
            created_at: row.try_get("created_at")?,
            delivered_at: row.try_get("delivered_at")?,
            sequence: u64::try_from(row.try_get::<Option<i64>, _>("sequence")?.unwrap_or(0))
                .map_err(corrupt)?,
            exhausted_at: row.try_get("exhausted_at")?,
        })
    }

    /// The payment and source encoding an event's delivery needs.
    pub(super) async fn due(&self, row: &AnyRow) -> Result<DueEvent, StoreError> {
        let event = Self::stored_event(row)?;
        let payment = self
            .q(select_payments!("id = ?"))
            .bind(event.payment_id)
            .fetch_one(&self.pool)
            .await?;
        let payment = Self::payment_row(&payment)?;
        let encoding: String = self
            .scalar("SELECT webhook_json FROM sources WHERE id = ?")
            .bind(payment.source_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(DueEvent {
            row_id: row.try_get("id")?,
            attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).map_err(corrupt)?,
            schedule_step: u32::try_from(row.try_get::<i64, _>("schedule_step")?).map_err(corrupt)?,
            claim_token: row
                .try_get::<Option<String>, _>("claim_token")?
                .unwrap_or_default(),
            event,
            payment,
            encoding: BodyEncoding::parse(&encoding)
                .ok_or_else(|| corrupt(format!("webhook_json {encoding:?}")))?,
        })
    }
}
