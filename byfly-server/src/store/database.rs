//! The schema and the connection.

use async_trait::async_trait;

use super::error::StoreError;

/// The schema and the connection.
#[async_trait]
pub trait Database: Send + Sync {
    /// Creates or upgrades the schema and seeds the payment methods of a new installation.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Answers when the database does.
    async fn ping(&self) -> Result<(), StoreError>;
}
