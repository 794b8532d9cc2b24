//! [`Database`] on SQLite and PostgreSQL.

use std::path::Path;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::{Connection, Row};

use super::dialect::Dialect;

use crate::store::database::{Backup, Database};
use byfly_core::PaymentMethod;

use super::SqlStore;
use crate::store::error::StoreError;

/// SQLite's migrations, embedded from `migrations/sqlite/` (version and description from each
/// file's name, checksummed at build time).
static SQLITE_MIGRATIONS: Migrator = sqlx_macros::migrate!("migrations/sqlite");

/// PostgreSQL's migrations: the same schema in its types, from `migrations/postgres/`.
static POSTGRES_MIGRATIONS: Migrator = sqlx_macros::migrate!("migrations/postgres");

#[async_trait]
impl Database for SqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator().run(&self.pool).await?;
        self.seed_methods().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.q("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn schema_current(&self) -> Result<bool, StoreError> {
        let newest = self.migrator().iter().map(|migration| migration.version).max();
        let applied: Option<i64> = self
            .scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(applied >= newest)
    }

    async fn backup(&self, destination: &Path) -> Result<Backup, StoreError> {
        if self.dialect == Dialect::Postgres {
            return Ok(Backup::ByTheDatabasesTools);
        }
        if destination.exists() {
            return Err(StoreError::Backup(format!(
                "{} already exists: a backup is written to a new file",
                destination.display()
            )));
        }
        let path = destination
            .to_str()
            .ok_or_else(|| StoreError::Backup(format!("{} is not a UTF-8 path", destination.display())))?;
        // One read transaction: the copy is the database as of one moment, writers carry on.
        self.q("VACUUM INTO ?")
            .bind(path.to_owned())
            .execute(&self.pool)
            .await?;
        let mut copy = sqlx::AnyConnection::connect(&format!("sqlite://{path}?mode=ro")).await?;
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut copy)
            .await?;
        if integrity != "ok" {
            return Err(StoreError::Backup(format!(
                "the copy fails its integrity check: {integrity}"
            )));
        }
        let payments: i64 = sqlx::query("SELECT COUNT(*) AS payments FROM payments")
            .fetch_one(&mut copy)
            .await?
            .try_get("payments")?;
        copy.close().await?;
        let bytes = std::fs::metadata(destination)
            .map_err(|err| StoreError::Backup(format!("{}: {err}", destination.display())))?
            .len();
        Ok(Backup::Copied {
            bytes,
            payments: u64::try_from(payments).unwrap_or_default(),
        })
    }
}

impl SqlStore {
    /// This backend's migrations.
    fn migrator(&self) -> &'static Migrator {
        match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    async fn seed_methods(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let count: i64 = self
            .scalar("SELECT COUNT(*) FROM payment_methods")
            .fetch_one(&mut *tx)
            .await?;
        // Two processes starting on a new database both find none: the second's rows are the
        // first's, left as they are.
        if count == 0 {
            for method in PaymentMethod::seeded() {
                self.q(
                    "INSERT INTO payment_methods (id, code, name, type, provider, country_id, payment_currency, \
                     icon_emoji, commission_percent, has_credit, credit_commission_percent, has_installment, \
                     installment_months, installment_commission_percent, add_commission_to_amount, is_active) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT DO NOTHING",
                )
                .bind(method.id)
                .bind(method.code.as_str())
                .bind(&method.name)
                .bind(&method.kind)
                .bind(&method.provider)
                .bind(method.country_id)
                .bind(&method.payment_currency)
                .bind(&method.icon_emoji)
                .bind(method.commission_percent.to_string())
                .bind(i64::from(method.has_credit))
                .bind(method.credit_commission_percent.to_string())
                .bind(i64::from(method.has_installment))
                .bind(&method.installment_months)
                .bind(method.installment_commission_percent.to_string())
                .bind(i64::from(method.add_commission_to_amount))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.cache.clear();
        Ok(())
    }
}
