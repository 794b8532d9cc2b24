//! What a receiver gets: an event's body, built at each attempt from the event's stored figures
//! and the payment's own fields (`spec/API.md` §6).

use byfly_core::WebhookPayload;
use byfly_core::time::DisplayOffset;
use byfly_core::webhook::RawJson;

use crate::store::DueEvent;
use crate::store::UnixSeconds;

/// The body of an event: its figures then, the payment's own fields, and this attempt's timestamp.
pub fn payload(due: &DueEvent, offset: DisplayOffset, timestamp: UnixSeconds) -> WebhookPayload {
    let event = &due.event;
    let payment = &due.payment;
    let metadata = payment
        .metadata
        .as_deref()
        .and_then(|text| RawJson::parse(text).ok())
        .unwrap_or_else(RawJson::empty_object);
    WebhookPayload {
        event: event.event,
        transaction_id: payment.transaction_id.clone(),
        amount: event.figures.amount,
        original_amount: payment.original_amount,
        paid_amount: event.figures.paid_amount,
        actual_amount_received: event.actual_amount_received,
        remaining_amount: event.figures.remaining_amount,
        currency: payment.currency.clone(),
        status: event.status,
        description: payment.description.clone(),
        created_at: offset.format(payment.created_at),
        paid_at: event.paid_at.map(|at| offset.format(at)),
        metadata,
        timestamp: timestamp.get(),
        event_id: event.event_id.to_string(),
        refunded_amount: event.figures.refunded_amount,
        overpaid_amount: event.figures.overpaid_amount,
        commission_amount: event.figures.commission_amount,
        payment_method: event.payment_method.clone(),
        sequence: event.sequence,
        event_created_at: offset.format(event.created_at),
    }
}
