//! What the server does, apart from how it is asked: each service takes the [`App`] and answers
//! with a value or a [`ServiceError`] — never an HTTP type. The HTTP layer, the workers and the
//! demo call them.
//!
//! - [`kaspi`]: `/kaspi` — claim a terminal, start the payment, read its QR.
//! - [`process`]: what payments and refunds share on a terminal (start, QR, hold, release, cancel).
//! - [`poll`]: following operations to their final answer.
//! - [`settle`]: from stored operations to byfly-core's ledger and its decisions.
//! - [`refund`]: refunds through the terminals that took the money, split over operations.
//! - [`cancel`]: a source cancels its payment.
//! - [`expiry`]: the sweeper's round (expiry, stale and uncertain starts).
//!
//! [`App`]: crate::app::App

pub mod cancel;
mod error;
pub mod expiry;
pub mod kaspi;
pub mod poll;
pub mod process;
pub mod refund;
pub mod settle;

pub use error::ServiceError;
