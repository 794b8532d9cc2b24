//! Runnable examples of the SDK will live here (`cargo run --example ...`).
