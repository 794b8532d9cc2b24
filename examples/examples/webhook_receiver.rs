//! A webhook receiver on axum: the `VerifiedWebhook` extractor checks the signatures on the exact
//! body and the timestamp's freshness before the handler runs (401 otherwise), and the handler
//! acts on each event once, however many times it is delivered (retries, manual resends).
//!
//! `BYFLY_WEBHOOK_SECRET=… cargo run -p byfly-examples --example webhook_receiver` listens on
//! `BYFLY_RECEIVER_BIND` (default `127.0.0.1:9000`) at `/webhooks/payment`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::post;
use byfly_client::webhook::{VerifiedWebhook, Verifier};
use byfly_core::WebhookEvent;

/// What the receiver keeps. A real one keeps the handled event ids in its database, in the same
/// transaction as the order update, so a crash cannot handle an event twice or lose it.
#[derive(Debug, Clone)]
pub struct Receiver {
    verifier: Verifier,
    handled: Arc<Mutex<HashSet<String>>>,
    /// Every verified delivery, repeats included (to show the de-duplication).
    pub deliveries: Arc<Mutex<Vec<String>>>,
}

impl FromRef<Receiver> for Verifier {
    fn from_ref(receiver: &Receiver) -> Verifier {
        receiver.verifier.clone()
    }
}

impl Receiver {
    pub fn new(secret: &str) -> Receiver {
        Receiver {
            verifier: Verifier::new(secret),
            handled: Arc::default(),
            deliveries: Arc::default(),
        }
    }

    /// The ids of the events acted on.
    pub fn handled(&self) -> Vec<String> {
        let handled = self
            .handled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        handled.iter().cloned().collect()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/webhooks/payment", post(on_webhook))
            .with_state(self.clone())
    }
}

async fn on_webhook(State(receiver): State<Receiver>, webhook: VerifiedWebhook) -> &'static str {
    receiver
        .deliveries
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(webhook.id.clone());
    let first_time = receiver
        .handled
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(webhook.id.clone());
    if !first_time {
        return "OK"; // already handled: answer 2xx so the sender stops
    }
    let payment = &webhook.payload;
    match webhook.event {
        WebhookEvent::Paid => println!(
            "order paid: {} ₸ for {}",
            payment.paid_amount, payment.transaction_id
        ),
        WebhookEvent::PartiallyPaid => println!(
            "{}: {} ₸ received, {} ₸ still to pay",
            payment.transaction_id, payment.actual_amount_received, payment.remaining_amount
        ),
        other => println!("{}: {other}, status {}", payment.transaction_id, payment.status),
    }
    "OK"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("BYFLY_WEBHOOK_SECRET")
        .map_err(|_| "set BYFLY_WEBHOOK_SECRET (the webhook_secret given at init)")?;
    let bind = std::env::var("BYFLY_RECEIVER_BIND").unwrap_or_else(|_| "127.0.0.1:9000".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("receiving webhooks at http://{bind}/webhooks/payment");
    axum::serve(listener, Receiver::new(&secret).router()).await?;
    Ok(())
}
