//! The terminal pool: one client per terminal ([`pool`]), the health check that keeps each
//! terminal's `healthy` flag true to life and its tokens fresh ([`health`]), and the operator's
//! registration ([`registration`]).
//!
//! A terminal is healthy when it answers `deviceinfo` with our token. Registration is never done
//! by a health check or a payment: on a real terminal it puts an approval prompt on the screen and
//! waits for a cashier, and a late approval leaves the name taken (`105`) until someone clears it
//! on the device. So a terminal without tokens waits, as `needs_registration`, for an operator's
//! [`TerminalPool::register`]. Tokens the terminal issues — at register or through a refresh — are
//! stored at once, so every server process shares them; the health checker refreshes them before
//! they expire (`spec/KASPI_TERMINAL.md` §1).

pub mod health;
pub mod pool;
pub mod registration;

pub use pool::{NEEDS_REGISTRATION, TerminalPool};
