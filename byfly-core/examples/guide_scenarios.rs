//! The four scenarios of the integration guide, computed by the ledger and the status machine,
//! and the webhook each one ends with, in both body encodings with its signature.
//!
//! `cargo run -p byfly-core --example guide_scenarios`

use byfly_core::ledger::{Ledger, TerminalOutcome};
use byfly_core::webhook::{RawJson, SignedHeaders};
use byfly_core::{
    BodyEncoding, Money, PaymentEvent, PaymentMethod, PaymentStatus, TransactionId, WebhookEvent,
    WebhookPayload,
};

/// One operation: the method the customer chose, the product they paid with, and the gross paid.
struct Step {
    method: &'static str,
    product: &'static str,
    gross: i64,
}

fn method(code: &str) -> Result<PaymentMethod, String> {
    PaymentMethod::seeded()
        .into_iter()
        .find(|m| m.code.as_str() == code)
        .ok_or(format!("no method {code}"))
}

fn run(title: &str, original: i64, steps: &[Step]) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== {title}");
    let mut ledger = Ledger::new(Money::from_tenge(original));
    let mut status = PaymentStatus::Pending;
    let mut last_event = None;
    let mut last_received = Money::ZERO;
    for step in steps {
        let priced = method(step.method)?;
        let paid_with = method(step.product)?;
        let quote = ledger.quote_next(&priced)?;
        println!(
            "  /kaspi {:<16} → amount {} (original_amount {}, commission {} = {} %), terminal asked for {} ₸",
            step.method,
            quote.charge,
            quote.base,
            quote.commission,
            quote.charged_percent(),
            quote.terminal_amount()
        );
        status = status.apply(&PaymentEvent::OperationStarted)?.to;
        let index = ledger.start(quote);
        let outcome = TerminalOutcome::Succeeded {
            gross: Money::from_tenge(step.gross),
            product_method: paid_with.code.clone(),
            product_percent: paid_with.effective_percent(),
        };
        let event = ledger
            .settle(index, outcome)?
            .ok_or("a success always moves the payment")?;
        let transition = status.follow(event, &ledger.standing());
        status = transition.to;
        last_event = transition.webhook.or(last_event);
        last_received = ledger.operations[index].credited();
        let f = ledger.figures();
        println!(
            "  customer pays {} ₸ with {:<16} → received {}, amount {}, paid {}, remaining {} → {}",
            step.gross, step.product, last_received, f.amount, f.paid_amount, f.remaining_amount, status
        );
    }
    let f = ledger.figures();
    let payload = WebhookPayload {
        event: last_event.unwrap_or(WebhookEvent::Paid),
        transaction_id: TransactionId::parse("A3F5D9E2B1C8")?,
        amount: f.amount,
        original_amount: f.original_amount,
        paid_amount: f.paid_amount,
        actual_amount_received: last_received,
        remaining_amount: f.remaining_amount,
        currency: "KZT".to_owned(),
        status,
        description: Some(title.to_owned()),
        created_at: "2026-01-13 14:30:00".to_owned(),
        paid_at: (status == PaymentStatus::Paid).then(|| "2026-01-13 14:35:00".to_owned()),
        metadata: RawJson::parse(r#"{"order_id":"12345"}"#)?,
        timestamp: 1_736_775_000,
        event_id: "evt_demo".to_owned(),
        refunded_amount: f.refunded_amount,
        overpaid_amount: f.overpaid_amount,
        commission_amount: f.commission_amount,
        payment_method: steps.last().map(|s| s.method.to_owned()),
        sequence: 1,
        event_created_at: "2026-01-13 14:35:00".to_owned(),
    };
    for encoding in [BodyEncoding::Php, BodyEncoding::Js] {
        let body = payload.encode(encoding)?;
        let headers = SignedHeaders::sign(b"your_secret_key", body.as_bytes(), payload.timestamp);
        println!("  webhook ({}): {body}", encoding.as_str());
        println!("    X-Webhook-Signature: {}", headers.signature);
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let step = |method, product, gross| Step {
        method,
        product,
        gross,
    };
    run(
        "1. Kaspi Gold 50 000",
        50_000,
        &[step("kaspi_gold", "kaspi_gold", 50_000)],
    )?;
    run(
        "2. Kaspi Кредит 100 000",
        100_000,
        &[step("kaspi_kredit", "kaspi_kredit", 114_000)],
    )?;
    run(
        "3. Gold priced, paid by credit, then a Gold top-up",
        100_000,
        &[
            step("kaspi_gold", "kaspi_kredit", 100_000),
            step("kaspi_gold", "kaspi_gold", 12_281),
        ],
    )?;
    run(
        "4. Кредит priced, paid by Gold",
        100_000,
        &[step("kaspi_kredit", "kaspi_gold", 100_000)],
    )?;
    Ok(())
}
