//! The server's integration tests, one binary (one link on two cores instead of twenty): each
//! module is an area of the API, all on the backend `BYFLY_TEST_BACKEND` names — `sqlite` (the
//! default: a fresh SQLite file per test) or `postgres` (a fresh database per test on
//! `BYFLY_TEST_DATABASE_URL`'s server, else 127.0.0.1:5432; unreachable fails, never skips). CI
//! runs the binary once on each.
//!
//! `tests/logs.rs` stays a binary of its own: it captures the log of its whole process.

// Test code: a panic is a failed assertion with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod admin;
mod api;
mod backup;
mod console;
mod durability;
mod health;
mod idempotency;
mod kaspi;
mod keys;
mod layout;
mod ledger;
mod lifecycle;
mod metrics;
mod model;
mod multiprocess;
mod outbox;
mod page;
mod reads;
mod realism;
mod refunds;
mod row_locks;
mod serving;
mod surface;
mod terminals;
mod webhooks;
