//! Kaspi Smart POS terminal client, camera QR reading, and a terminal simulator.
//!
//! Everything that speaks to a physical terminal lives here; nothing here knows about payments.
//!
//! # Layout
//!
//! - [`client`]: [`Terminal`], one device over the v2 HTTP protocol (`spec/KASPI_TERMINAL.md`):
//!   register (waiting for the cashier), revoke (token refresh), deviceinfo, payment, status,
//!   actualize, refund, cancel, with TLS per terminal and one automatic refresh-and-retry when the
//!   token has expired or is not recognised.
//! - [`protocol`]: lenient parsing of the terminal's answers (envelopes, statuses, `addInfo`,
//!   `chequeInfo` with its display-text amounts, the three seen date formats).
//! - [`camera`]: frames from a camera snapshot URL and QR decoding with `image` + `rqrr`, robust to
//!   real camera frames; the `qr.kaspi.kz` → `pay.kaspi.kz/pay` link rewrite.
//! - [`error`]: [`TerminalError`] and [`CameraError`], typed so callers can act (try another
//!   terminal, wait, register again).
//! - `simulator` (feature `simulator`): a real HTTP server speaking the same protocol, with a
//!   camera that photographs its own screen and a `/sim/` control API for tests and demos.

pub mod camera;
pub mod client;
pub mod error;
pub mod protocol;
#[cfg(feature = "simulator")]
pub mod simulator;

pub use camera::{Camera, QrScan, decode_frame, payment_url, qr_on_screen, read_new_qr, read_qr};
pub use client::{CallObserver, CallOutcome, Terminal, TerminalConfig, TlsMode};
pub use error::{CameraError, TerminalError};
pub use protocol::{OperationStatus, ProcessStatus, Tokens};
