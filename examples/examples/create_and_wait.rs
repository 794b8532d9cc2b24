//! Create a payment, start it on a Kaspi terminal, and wait until the customer's attempt is over.
//!
//! `BYFLY_API_URL=… BYFLY_API_TOKEN=… cargo run -p byfly-examples --example create_and_wait`
//! (add `-- --simulate` against the demo server to let its simulated customer pay).

use byfly_client::{Client, Error, WaitOptions};
use byfly_core::Money;
use byfly_core::wire::{InitPaymentRequest, PaymentStatusView};

pub async fn create_and_wait(client: &Client, simulate: bool) -> Result<PaymentStatusView, Error> {
    let order = InitPaymentRequest {
        amount: Money::from_tenge(50_000),
        description: Some("Оплата тура в Дубай #12345".into()),
        metadata: Some(serde_json::json!({"order_id": "12345"})),
        ..Default::default()
    };
    let payment = client.create_payment(&order, None).await?;
    let id = payment.transaction_id;
    let started = client.start_kaspi(&id, Some("kaspi_gold")).await?;
    println!(
        "{id}: {} ₸, open in Kaspi: {}",
        started.amount, started.payment_url
    );
    if simulate {
        client
            .demo_simulate(&id, &serde_json::json!({"product": "Gold"}))
            .await?;
    }
    let settled = client.wait_for_payment(&id, &WaitOptions::default()).await?;
    println!(
        "{id}: {}, received {} of {} ₸",
        settled.status, settled.paid_amount, settled.amount
    );
    Ok(settled)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setting =
        |name: &str| std::env::var(name).map_err(|_| format!("set {name} (the demo server prints it)"));
    let client = Client::builder(setting("BYFLY_API_URL")?)
        .api_token(setting("BYFLY_API_TOKEN")?)
        .build()?;
    create_and_wait(&client, std::env::args().any(|arg| arg == "--simulate")).await?;
    Ok(())
}
