//! PostgreSQL's row locks (`store/sql/locks.rs`): a transaction deciding about one payment holds
//! up that payment and nothing else. (On SQLite one writer at a time is the design, and the
//! group commit's own tests cover its batches: this module asserts nothing there.)

use sqlx::Connection;

use crate::common::*;

const LOCK_WAITERS: &str =
    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";

/// A writer stalled in the middle of a decision about payment A — here a transaction of the test
/// holding A's row, as a frozen process would — holds up the next decision about A, and nothing
/// else: meanwhile payments are created, another one is sent to a terminal and a third is
/// cancelled. A's cancel completes once the row is let go. With one lock for every writer (the
/// store before row locks) the first of these waits behind A's cancel until `lock_timeout`.
#[tokio::test]
async fn a_payment_held_by_one_writer_holds_up_that_payment_only() {
    if !on_postgres() {
        return;
    }
    let app = spawn_app(1).await;
    let held = app.init(10_000).await;
    let to_pay = app.init(20_000).await;
    let to_cancel = app.init(30_000).await;
    let watcher = sqlx::PgPool::connect(app.database_url()).await.unwrap();
    let mut holder = sqlx::postgres::PgConnection::connect(app.database_url())
        .await
        .unwrap();
    let mut holding = holder.begin().await.unwrap();
    sqlx::query("SELECT id FROM payments WHERE transaction_id = $1 FOR NO KEY UPDATE")
        .bind(&held)
        .fetch_one(&mut *holding)
        .await
        .unwrap();

    let meanwhile = async {
        eventually("the cancel of the held payment waits for its row", || async {
            let waiting: i64 = sqlx::query_scalar(LOCK_WAITERS)
                .fetch_one(&watcher)
                .await
                .unwrap();
            (waiting > 0).then_some(())
        })
        .await;
        let created = app.init(40_000).await;
        let (status, sent) = app.kaspi(&to_pay, "kaspi_gold").await;
        assert_eq!(status, 200, "{sent}");
        let (status, cancelled) = app.cancel(&to_cancel).await;
        assert_eq!(status, 200, "{cancelled}");
        let still_waiting: i64 = sqlx::query_scalar(LOCK_WAITERS)
            .fetch_one(&watcher)
            .await
            .unwrap();
        assert!(
            still_waiting >= 1,
            "the held payment's cancel waits all along (it gave up: what ran meanwhile waited behind it until lock_timeout)"
        );
        holding.commit().await.unwrap();
        created
    };
    let ((status, answer), created) = tokio::join!(app.cancel(&held), meanwhile);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.status(&held).await["status"], "cancelled");
    assert_eq!(app.status(&to_cancel).await["status"], "cancelled");
    assert_eq!(app.status(&to_pay).await["status"], "processing");
    assert_eq!(app.status(&created).await["status"], "pending");
}

/// A refund asked while another transaction is freeing its terminal — a failed start, not yet
/// committed, that goes on to mark the terminal — answers at once that the terminal is busy, and
/// the other transaction goes on: neither waits for the other. (Left to the unique index, the
/// refund's insert waited for the freeing transaction, which waited for the refund's lock on the
/// terminal: a deadlock, or here the refund's answer only after `lock_timeout`, a 500.)
#[tokio::test]
async fn a_refund_while_its_terminal_is_being_freed_answers_busy_and_waits_for_nobody() {
    if !on_postgres() {
        return;
    }
    let app = spawn_app(1).await;
    let paid = app.init(10_000).await;
    let started = app.kaspi_ok(&paid, "kaspi_gold").await;
    app.simulator_with(&started.qr_code)
        .pay(pay("Gold", None))
        .unwrap();
    app.wait_status(&paid, "paid").await;
    let holding = app.init(20_000).await;
    app.kaspi_ok(&holding, "kaspi_gold").await;
    let mut freeing = sqlx::postgres::PgConnection::connect(app.database_url())
        .await
        .unwrap();
    let mut freeing = freeing.begin().await.unwrap();
    let operation: i64 = sqlx::query_scalar(
        "UPDATE operations SET holds_terminal = 0 WHERE holds_terminal = 1 \
         AND payment_id = (SELECT id FROM payments WHERE transaction_id = $1) RETURNING id",
    )
    .bind(&holding)
    .fetch_one(&mut *freeing)
    .await
    .unwrap();

    let (status, refused) = app.refund(&paid, serde_json::json!({})).await;
    assert_eq!(refused["code"], "terminals_busy", "{status} {refused}");
    sqlx::query("UPDATE terminals SET last_error = 'start failed' WHERE id = (SELECT terminal_id FROM operations WHERE id = $1)")
        .bind(operation)
        .execute(&mut *freeing)
        .await
        .unwrap();
    freeing.rollback().await.unwrap();
    assert_eq!(app.status(&paid).await["status"], "paid");
}
