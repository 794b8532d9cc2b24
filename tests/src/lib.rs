//! End-to-end tests of the whole system, under `tests/tests/`:
//!
//! - `payment_page.rs`: the hosted payment page in headless Chromium (Debian's `chromium`, driven
//!   by `playwright-core` from `tests/browser/`), against a demo server.
