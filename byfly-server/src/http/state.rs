//! What every handler can reach: the services' [`App`] and what only requests need — the rate
//! limits of `/kaspi`.

use std::sync::Arc;

use super::limits::{KaspiLimiter, LoginLimiter};
use crate::app::App;

/// The router's state.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The services' state (handlers reach its fields directly through `Deref`). Behind one
    /// `Arc`: every request's extractors clone the state, and one count is cheaper than one per
    /// field.
    pub app: Arc<App>,
    /// Rate limits of `/kaspi`.
    pub kaspi_limiter: Arc<KaspiLimiter>,
    /// Rate limit of the console's login.
    pub login_limiter: Arc<LoginLimiter>,
}

impl AppState {
    /// The router's state over `app`, with `/kaspi` limits as configured.
    pub fn new(app: App) -> AppState {
        let kaspi_limiter = Arc::new(KaspiLimiter::new(app.settings.kaspi_rate));
        AppState {
            app: Arc::new(app),
            kaspi_limiter,
            login_limiter: Arc::new(LoginLimiter::new()),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}
