//! `byfly listen`: a webhook receiver on this machine for an integrator at work — give its address
//! as a payment's `webhook_url` and see each delivery as it arrives: event, payment, whether its
//! signatures verify with the secret, and, with `--forward-to`, what the integrator's own receiver
//! answered when the delivery was passed on to it byte for byte.
//!
//! It answers as a careful receiver should, so the server's retries can be watched too: 400 to a
//! delivery that does not verify, else the forwarded receiver's status (502 when it cannot be
//! reached), else 200.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use byfly_core::webhook::signature::{ReceivedSignatures, headers, verify};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{Failure, Output, say, unix_now};

/// What `byfly listen` was asked.
#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:4242")]
    pub bind: SocketAddr,
    /// The payments' `webhook_secret`, to verify signatures with (else the profile's
    /// `webhook_secret`; without one, deliveries are shown unverified and answered 200).
    #[arg(long, env = "BYFLY_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Pass each delivery on to this receiver (the same body bytes and webhook headers) and answer
    /// what it answers.
    #[arg(long)]
    pub forward_to: Option<String>,
    /// Stop after this many deliveries (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Accepted clock difference in seconds for the signatures' timestamp.
    #[arg(long, default_value_t = byfly_core::webhook::signature::DEFAULT_TOLERANCE_SECS)]
    pub tolerance: i64,
}

/// The headers a delivery's signatures and de-duplication rest on: passed on by `--forward-to`.
const FORWARDED: &[&str] = &[
    "content-type",
    "user-agent",
    headers::EVENT,
    headers::ID,
    headers::TIMESTAMP,
    headers::SIGNATURE,
    headers::SIGNATURE_V2,
    headers::STANDARD_ID,
    headers::STANDARD_TIMESTAMP,
    headers::STANDARD_SIGNATURE,
];

struct Listener {
    secret: Option<String>,
    tolerance: i64,
    forward: Option<(reqwest::Client, String)>,
    /// Deliveries still to take before stopping (`None`: no limit).
    remaining: Option<AtomicU64>,
    done: Notify,
    output: Output,
}

/// Runs the receiver until Ctrl-C or `--count` deliveries.
pub async fn listen(args: &ListenArgs, secret: Option<String>, output: Output) -> Result<(), Failure> {
    let socket = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|err| Failure::Local(format!("cannot listen on {}: {err}", args.bind)))?;
    let address = socket
        .local_addr()
        .map_err(|err| Failure::Local(err.to_string()))?;
    let forward = match &args.forward_to {
        None => None,
        Some(url) => {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|err| Failure::Local(err.to_string()))?;
            Some((client, url.clone()))
        }
    };
    let listener = Arc::new(Listener {
        secret,
        tolerance: args.tolerance,
        forward,
        remaining: args.count.map(AtomicU64::new),
        done: Notify::new(),
        output,
    });
    // The address goes to stderr: with --json, stdout is one JSON line per delivery.
    eprintln!("Listening on http://{address}/ — use it as a payment's webhook_url; Ctrl-C stops.");
    if listener.secret.is_none() {
        eprintln!("warning: no --secret: signatures are not checked");
    }
    if let Some(target) = &args.forward_to {
        eprintln!("Forwarding each delivery to {target}");
    }
    let routes = axum::Router::new().fallback(receive).with_state(listener.clone());
    let stop = {
        let listener = listener.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = listener.done.notified() => {}
            }
        }
    };
    axum::serve(socket, routes)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|err| Failure::Local(err.to_string()))
}

async fn receive(State(listener): State<Arc<Listener>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = listener.secret.as_ref().map(|secret| {
        let received = ReceivedSignatures::from_headers(header);
        verify(secret.as_bytes(), &body, received, unix_now(), listener.tolerance)
            .map(|_| ())
            .map_err(|err| err.to_string())
    });
    let (status, answer) = match (&verified, &listener.forward) {
        (Some(Err(reason)), _) => (StatusCode::BAD_REQUEST, format!("signature: {reason}")),
        (_, Some((client, url))) => forward(client, url, &headers, &body).await,
        _ => (StatusCode::OK, "OK".to_owned()),
    };
    report(&listener, &headers, &body, verified.as_ref(), status);
    if let Some(remaining) = &listener.remaining
        && remaining.fetch_sub(1, Ordering::SeqCst) <= 1
    {
        listener.done.notify_one();
    }
    (status, answer).into_response()
}

/// Passes the delivery on: its status and body, or 502 with why it could not.
async fn forward(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> (StatusCode, String) {
    let mut request = client.post(url).body(body.clone());
    for name in FORWARDED {
        if let (Ok(name), Some(value)) = (HeaderName::try_from(*name), headers.get(*name)) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, response.text().await.unwrap_or_default())
        }
        Err(err) => (StatusCode::BAD_GATEWAY, format!("forwarding failed: {err}")),
    }
}

fn report(
    listener: &Listener,
    headers: &HeaderMap,
    body: &Bytes,
    verified: Option<&Result<(), String>>,
    answered: StatusCode,
) {
    let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let event = text(headers::EVENT);
    let forwarded = listener.forward.is_some() && !matches!(verified, Some(Err(_)));
    if listener.output.json {
        let line = json!({
            "event": event,
            "event_id": text(headers::ID),
            "transaction_id": payload["transaction_id"],
            "status": payload["status"],
            "verified": verified.map(Result::is_ok),
            "error": verified.and_then(|v| v.as_ref().err()),
            "answered": answered.as_u16(),
            "forwarded": forwarded,
            "body": payload,
        });
        say!("{line}");
    } else {
        let check = match verified {
            Some(Ok(())) => "✓ verified".to_owned(),
            Some(Err(reason)) => format!("✗ {reason}"),
            None => "· not checked".to_owned(),
        };
        let amount = payload["amount"].to_string();
        say!(
            "{event:<15} {}  {:<15} {amount:>12} ₸  {check}  → {}{}",
            payload["transaction_id"].as_str().unwrap_or("?"),
            payload["status"].as_str().unwrap_or("?"),
            answered.as_u16(),
            if forwarded { " (forwarded)" } else { "" },
        );
    }
}
