//! [`Database`] on SQLite and PostgreSQL.

use async_trait::async_trait;
use sqlx::migrate::Migrator;

use super::dialect::Dialect;

use crate::store::database::Database;
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
        let migrations = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrations.run(&self.pool).await?;
        self.seed_methods().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.q("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

impl SqlStore {
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
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO NOTHING",
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
