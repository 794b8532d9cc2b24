//! The ceiling for `bench/load.sh`: the server's HTTP stack (axum on tokio, the same versions and
//! features) answering a JSON body the size of a status view, with no storage behind it.
//! `cargo run --release -p byfly-server --example bare -- 127.0.0.1:8090`

use axum::Router;
use axum::routing::get;

/// What `/api/payment/{id}/status` answers for a pending payment, as bytes.
const STATUS_BODY: &str = r#"{"success":true,"data":{"transaction_id":"A3F5D9E2B1C8","status":"pending","amount":50000,"paid_amount":0,"remaining_amount":50000,"original_amount":50000,"commission_amount":0,"overpaid_amount":0,"refunded_amount":0,"paid_at":null}}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let app = Router::new().route(
        "/bare",
        get(|| async { ([("content-type", "application/json; charset=utf-8")], STATUS_BODY) }),
    );
    let listener = tokio::net::TcpListener::bind(&address).await?;
    axum::serve(listener, app).await
}
