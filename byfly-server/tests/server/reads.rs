//! Many status reads at once, of many payments: each request is answered with its own payment
//! (on PostgreSQL they share queries, `store/sql/status_reads.rs`; on SQLite each reads on its
//! own thread). Payments with and without operations, repeats of one id in one burst, and ids
//! that name nothing.

use crate::common;

use futures_util::future::join_all;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_status_reads_answers_each_request_with_its_own_payment() {
    let app = common::spawn_app(2).await;
    let mut payments = Vec::new();
    for n in 0..24 {
        let amount = 1000 + n * 7;
        payments.push((app.init(amount).await, amount));
    }
    // Two with an operation on a terminal: their reads join rows of two tables.
    for (id, _) in &payments[..2] {
        app.kaspi_ok(id, "kaspi_gold").await;
    }
    let unknown = ["000000000000", "FFFFFFFFFFFF"];
    let reads: Vec<_> = (0..240)
        .map(|n| {
            let app = &app;
            let (id, amount) = match n % 12 {
                11 => (unknown[n % 2].to_owned(), None),
                _ => {
                    let (id, amount) = &payments[(n * 5) % payments.len()];
                    (id.clone(), Some(*amount))
                }
            };
            let path = if n % 3 == 0 {
                format!("/payment/{id}")
            } else {
                format!("/payment/{id}/status")
            };
            async move { (id, amount, app.get_json(&path).await) }
        })
        .collect();
    for (id, amount, answer) in join_all(reads).await {
        match amount {
            None => assert_eq!(answer["code"], "transaction_not_found", "{id}: {answer}"),
            Some(amount) => {
                assert_eq!(
                    answer["data"]["transaction_id"],
                    Value::from(id.clone()),
                    "{answer}"
                );
                assert_eq!(answer["data"]["amount"], Value::from(amount), "{id}: {answer}");
            }
        }
    }
    for (id, _) in &payments[..2] {
        let status = app.status(id).await;
        assert_eq!(status["status"], "processing", "{status}");
    }
}
