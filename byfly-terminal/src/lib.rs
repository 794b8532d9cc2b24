//! Kaspi Smart POS terminal client (work in progress).
//!
//! This crate will own everything that speaks to a physical terminal: the v2 HTTP protocol of
//! `spec/KASPI_TERMINAL.md` (register, revoke, deviceinfo, payment, status, actualize, refund,
//! cancel), reading the QR the terminal draws on its screen through a camera snapshot URL, and,
//! behind the `simulator` feature, a terminal simulator that speaks the same protocol over real HTTP.
//!
//! It depends on `byfly-core` for amounts and product types only; it knows nothing of payments.
