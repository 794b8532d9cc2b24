//! The pure domain of ByFly Payment Center.
//!
//! Everything here is a function of its inputs: no IO, no clock, no async and no randomness of its
//! own. Callers pass `now` and a source of secure random bytes, which is what lets the rules below be
//! tested exhaustively and shared, unchanged, by the server and the client SDK.
//!
//! # Layout
//!
//! - [`money`]: [`Money`], an exact amount in tenge with 2 places, and [`Percent`]; their JSON form
//!   (a number in JavaScript's shortest form, read from a number or a numeric string, never through a float).
//! - [`method`]: payment methods (the records of `/payment-methods/active`), their effective percent,
//!   the alias codes of the deployed system, the four seeded methods, and Kaspi product types.
//! - [`ledger`]: a payment's original amount and its terminal operations, from which every figure of
//!   a payment (amount, paid, remaining, overpaid, tolerance) is derived — `spec/API.md` §4.
//! - [`status`]: the payment status machine of `spec/API.md` §5 and the webhook event each change sends.
//! - [`ids`]: transaction ids, API tokens, their hashes, and [`ids::Secret`], which never prints itself.
//! - [`webhook`]: the payload in the guide's field order, its two body encodings (PHP's and
//!   JavaScript's re-serialization), and the HMAC signatures with their verification.
//! - [`time`]: the API's `YYYY-MM-DD HH:MM:SS` date-times in a configured UTC offset.
//! - [`wire`]: the request and response bodies of the HTTP API, shared by server and client.
//! - [`error`]: the catalogue of API errors: stable `code`, HTTP status and Russian message.
//!
//! # Example: scenario 2 of the guide
//!
//! ```
//! use byfly_core::ledger::{Ledger, TerminalOutcome};
//! use byfly_core::{Money, PaymentEvent, PaymentMethod, PaymentStatus};
//!
//! let kredit = PaymentMethod::seeded().remove(2);
//! let mut ledger = Ledger::new(Money::from_tenge(100_000));
//! let quote = ledger.quote_next(&kredit).unwrap();
//! assert_eq!(quote.charge.to_string(), "114000"); // +14 %
//!
//! let status = PaymentStatus::Pending.apply(&PaymentEvent::OperationStarted).unwrap().to;
//! let op = ledger.start(quote);
//! let paid = TerminalOutcome::Succeeded {
//!     gross: Money::from_tenge(114_000),
//!     product_method: kredit.code.clone(),
//!     product_percent: kredit.effective_percent(),
//! };
//! let event = ledger.settle(op, paid).unwrap().unwrap();
//! assert_eq!(status.follow(event, &ledger.standing()).to, PaymentStatus::Paid);
//! assert_eq!(ledger.figures().remaining_amount, Money::ZERO);
//! ```

pub mod error;
pub mod ids;
pub mod ledger;
pub mod method;
pub mod money;
#[cfg(feature = "openapi")]
mod openapi;
pub mod status;
pub mod time;
pub mod webhook;
pub mod wire;

pub use error::ErrorCode;
pub use ids::{ApiToken, Secret, SecureRandom, TokenHash, TransactionId};
pub use ledger::{Figures, Ledger, Operation, OperationQuote, OperationState};
pub use method::{MethodCode, PaymentMethod, ProductType};
pub use money::{Money, MoneyError, Percent};
pub use status::{MoneyEvent, PaymentEvent, PaymentStatus, Settlement, Standing, TransitionError};
pub use webhook::{BodyEncoding, WebhookEvent, WebhookPayload};
