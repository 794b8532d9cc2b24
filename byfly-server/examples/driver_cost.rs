//! What sqlx's `Any` driver costs over the native one, on the query the hot paths run most (a
//! payment by its transaction id, as `/status` reads it): the same statement, the same database,
//! one connection each, `ROUNDS` sequential queries. Prints microseconds per query for each.
//! `cargo run --release -p byfly-server --example driver_cost -- [postgres://…]` (SQLite always; a
//! PostgreSQL URL adds that backend, its `driver_cost` table recreated).

use std::time::Instant;

use sqlx::{AnyConnection, AssertSqlSafe, Connection, PgConnection, SqliteConnection};

const ROUNDS: u32 = 20_000;
const WARM_UP: u32 = 1_000;
const SETUP: &str = "DROP TABLE IF EXISTS driver_cost; \
    CREATE TABLE driver_cost (id BIGINT PRIMARY KEY, transaction_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, \
    original_amount_minor BIGINT NOT NULL, description TEXT, created_at BIGINT NOT NULL); \
    INSERT INTO driver_cost VALUES (1, 'A3F5D9E2B1C8', 'pending', 5000000, 'Тур в Анталью', 1764000000)";

/// Microseconds per query of `ROUNDS` point selects of `$sql` on `$conn` (after a warm-up).
macro_rules! point_select {
    ($conn:expr, $sql:expr) => {{
        let mut started = Instant::now();
        for round in 0..WARM_UP + ROUNDS {
            if round == WARM_UP {
                started = Instant::now();
            }
            let row: (i64, String, String, i64, Option<String>, i64) = sqlx::query_as($sql)
                .bind("A3F5D9E2B1C8")
                .fetch_one(&mut $conn)
                .await?;
            std::hint::black_box(row);
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
    }};
}

/// Prints one backend's line.
fn report(backend: &str, native_us: f64, any_us: f64) {
    println!(
        "{backend:<9} native {native_us:6.1} µs/query   any {any_us:6.1} µs/query   any/native {:.2}",
        any_us / native_us
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join(format!("byfly-driver-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    let sqlite = format!("sqlite://{}?mode=rwc", dir.join("cost.sqlite").display());
    let select = "SELECT id, transaction_id, status, original_amount_minor, description, created_at \
                  FROM driver_cost WHERE transaction_id = ?";
    {
        let mut native = SqliteConnection::connect(&sqlite).await?;
        sqlx::raw_sql(SETUP).execute(&mut native).await?;
        let native_us = point_select!(native, select);
        let mut any = AnyConnection::connect(&sqlite).await?;
        let any_us = point_select!(any, select);
        report("sqlite", native_us, any_us);
    }
    if let Some(postgres) = std::env::args().nth(1) {
        let select = select.replace('?', "$1");
        let mut native = PgConnection::connect(&postgres).await?;
        sqlx::raw_sql(SETUP).execute(&mut native).await?;
        let native_us = point_select!(native, AssertSqlSafe(select.clone()));
        let mut any = AnyConnection::connect(&postgres).await?;
        let any_us = point_select!(any, AssertSqlSafe(select.clone()));
        report("postgres", native_us, any_us);
        sqlx::raw_sql("DROP TABLE driver_cost")
            .execute(&mut native)
            .await?;
    }
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}
