//! The HTTP layer: the router of `spec/API.md` (`router.rs`), its state (`state.rs`), the error
//! envelope for every failure (`errors.rs`), the layers every request passes (`guard.rs`), our extractors
//! (`extract.rs`), `/kaspi`'s rate limits (`limits.rs`), the accept loop with its limits
//! (`serve.rs`), `/metrics` (`metrics.rs`), the OpenAPI document (`openapi.rs`), and
//! the handlers of each area: payments, health, the payment page, admin, the outbox's admin, review, and
//! the demo's routes (`dev.rs`, with the `demo` feature).

mod admin;
mod admin_payments;
mod console;
#[cfg(feature = "demo")]
pub mod dev;
mod errors;
mod extract;
mod guard;
mod health;
mod init;
mod keys;
mod limits;
mod metrics;
mod openapi;
mod outbox;
mod page;
mod payments;
mod review;
mod router;
mod serve;
mod state;

pub use errors::HttpError;
pub use limits::{KaspiLimiter, LOGINS_PER_MINUTE};
pub use router::{metrics_router, router};
pub use serve::serve;
pub use state::AppState;
