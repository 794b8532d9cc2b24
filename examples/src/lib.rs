//! Runnable examples of the SDK, each a file under `examples/examples/`:
//!
//! - `create_and_wait`: create a payment, start it on a Kaspi terminal, wait until it settles.
//! - `webhook_receiver`: an axum receiver that verifies every webhook and handles each event once.
//!
//! Run them against the demo server (`cargo run -p byfly-server -- demo` prints the values):
//!
//! ```text
//! export BYFLY_API_URL=http://127.0.0.1:8080/api BYFLY_API_TOKEN=<the demo's API token>
//! cargo run -p byfly-examples --example create_and_wait -- --simulate
//! BYFLY_WEBHOOK_SECRET=demo-webhook-secret cargo run -p byfly-examples --example webhook_receiver
//! ```
//!
//! Their tests (`tests/examples.rs`) compile the same files and run them against a real server.
