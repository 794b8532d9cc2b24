//! [`Database`] on SQLite and PostgreSQL.

use std::path::Path;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::{Connection, Row};

use super::dialect::Dialect;

use crate::store::database::{Backup, Database, Figures, TerminalFigures};
use crate::store::ids::UnixSeconds;
use crate::store::outbox::Outbox;
use byfly_core::PaymentMethod;

use super::SqlStore;
use crate::store::error::StoreError;

/// SQLite's migrations, embedded from `migrations/sqlite/` (version and description from each
/// file's name, checksummed at build time).
static SQLITE_MIGRATIONS: Migrator = sqlx_macros::migrate!("migrations/sqlite");

/// PostgreSQL's migrations: the same schema in its types, from `migrations/postgres/`.
static POSTGRES_MIGRATIONS: Migrator = sqlx_macros::migrate!("migrations/postgres");

/// One column of the pool's partition: how many terminals meet `condition`.
macro_rules! terminal_state {
    ($name:literal, $condition:literal) => {
        concat!(
            "CAST(COALESCE(SUM(CASE WHEN ",
            $condition,
            " THEN 1 ELSE 0 END), 0) AS BIGINT) AS ",
            $name
        )
    };
}

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

    async fn figures(&self, now: UnixSeconds) -> Result<Figures, StoreError> {
        let count = |row: &sqlx::any::AnyRow, column: &str| -> Result<u64, StoreError> {
            u64::try_from(row.try_get::<i64, _>(column)?).map_err(super::corrupt)
        };
        let mut payments_by_status = Vec::new();
        for row in self
            .q("SELECT status, COUNT(*) AS n FROM payments GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await?
        {
            payments_by_status.push((row.try_get("status")?, count(&row, "n")?));
        }
        // Each terminal in one state; the unique index lets at most one operation hold it.
        let pool = self
            .q(concat!(
                "SELECT ",
                terminal_state!("disabled", "t.enabled = 0"),
                ", ",
                terminal_state!("needs_registration", "t.enabled = 1 AND t.access_token IS NULL"),
                ", ",
                terminal_state!(
                    "unhealthy",
                    "t.enabled = 1 AND t.access_token IS NOT NULL AND t.healthy = 0"
                ),
                ", ",
                terminal_state!(
                    "busy",
                    "t.enabled = 1 AND t.access_token IS NOT NULL AND t.healthy = 1 AND h.id IS NOT NULL"
                ),
                ", ",
                terminal_state!(
                    "free",
                    "t.enabled = 1 AND t.access_token IS NOT NULL AND t.healthy = 1 AND h.id IS NULL"
                ),
                " FROM terminals t LEFT JOIN operations h ON h.terminal_id = t.id AND h.holds_terminal = 1"
            ))
            .fetch_one(&self.pool)
            .await?;
        let queues = self
            .q(
                "SELECT (SELECT COUNT(*) FROM operations WHERE holds_terminal = 1) AS in_flight,                  (SELECT COUNT(*) FROM operations WHERE needs_review = 1                   AND (holds_terminal = 1 OR start_uncertain = 1)) AS review,                  (SELECT COUNT(*) FROM webhook_events WHERE delivered_at IS NULL AND exhausted_at IS NULL                   AND next_attempt_at < ?) AS pending,                  (SELECT COUNT(*) FROM webhook_events WHERE delivered_at IS NULL                   AND exhausted_at IS NOT NULL) AS exhausted",
            )
            .bind(super::outbox::NEVER)
            .fetch_one(&self.pool)
            .await?;
        Ok(Figures {
            payments_by_status,
            terminals: TerminalFigures {
                free: count(&pool, "free")?,
                busy: count(&pool, "busy")?,
                unhealthy: count(&pool, "unhealthy")?,
                needs_registration: count(&pool, "needs_registration")?,
                disabled: count(&pool, "disabled")?,
            },
            operations_in_flight: count(&queues, "in_flight")?,
            review_queue: count(&queues, "review")?,
            outbox_pending: count(&queues, "pending")?,
            outbox_exhausted: count(&queues, "exhausted")?,
            oldest_due_at: self.oldest_due_event(now).await?,
        })
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
