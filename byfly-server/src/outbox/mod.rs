//! Webhook delivery from the outbox (`spec/API.md` §6): the [`Dispatcher`] (`dispatcher.rs`), an
//! event's body (`payload.rs`), the retry schedule as data (`schedule.rs`) and the resolver that
//! refuses internal addresses (`resolver.rs`).

pub mod dispatcher;
pub mod payload;
pub mod resolver;
pub mod schedule;

pub use dispatcher::{Dispatcher, ManualRetry};
pub use payload::payload;
pub use resolver::resolves_to_internal;
