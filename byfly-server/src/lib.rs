//! ByFly Payment Center reference server (work in progress).
//!
//! This crate will own configuration, storage (SQLite by default, PostgreSQL for several
//! processes), the HTTP routes of `spec/API.md`, the services behind them, the background workers
//! (operation poller, expiry sweeper, webhook dispatcher, terminal health checker), the hosted
//! payment page, metrics and the OpenAPI document. Its binary is `byfly-server`.
