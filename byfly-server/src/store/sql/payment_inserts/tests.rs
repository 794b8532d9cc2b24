//! The rounds of new payments against a real SQLite file, rows inserted concurrently as requests
//! would: what each is told, and what is stored.

use super::super::SqlStore;
use crate::store::ids::{SourceId, UnixSeconds};
use crate::store::records::NewPaymentRow;
use crate::store::{Database, Idempotency, Inserted, Payments, Sources};
use crate::store::{IdempotencyClaim, IdempotencyStart, StoredResponse};
use byfly_core::ids::TokenHash;
use byfly_core::{BodyEncoding, Money, TransactionId};

async fn store(test: &str) -> (SqlStore, SourceId) {
    let store = SqlStore::open(&super::super::temp_sqlite_url(test))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let source = store
        .create_source(
            "CRM",
            &TokenHash::of("bf_inserts_token"),
            BodyEncoding::Php,
            UnixSeconds(0),
        )
        .await
        .unwrap();
    (store, source.id)
}

fn row(id: &str, source_id: SourceId, tenge: i64) -> NewPaymentRow {
    NewPaymentRow {
        transaction_id: TransactionId::parse(id).unwrap(),
        source_id,
        payment: byfly_core::wire::NewPayment {
            amount: Money::from_tenge(tenge),
            currency: "KZT".to_owned(),
            description: Some(format!("payment {id}")),
            customer_name: None,
            customer_phone: None,
            customer_email: None,
            payment_method_id: None,
            webhook_url: None,
            webhook_secret: None,
            metadata: None,
        },
        created_at: UnixSeconds(100),
        expires_at: UnixSeconds(3700),
    }
}

/// `key` claimed by `source_id` with an answer naming `row`.
fn claim(source_id: SourceId, key: &str, row: &NewPaymentRow) -> IdempotencyClaim {
    IdempotencyClaim {
        source_id,
        key: key.to_owned(),
        request_hash: "hash".to_owned(),
        claimed_at: row.created_at,
        response: StoredResponse {
            status: 201,
            body: format!("created {}", row.transaction_id),
        },
    }
}

/// What `key` holds now, for a request with the claims' hash.
async fn held(store: &SqlStore, source_id: SourceId, key: &str) -> IdempotencyStart {
    store
        .idempotent_answer(source_id, key, "hash", UnixSeconds(100))
        .await
        .unwrap()
}

/// Inserts every row at once, each from a task of its own, as concurrent requests would.
async fn insert_together(store: &SqlStore, rows: Vec<NewPaymentRow>) -> Vec<Result<Inserted, String>> {
    insert_keyed_together(store, rows.into_iter().map(|row| (row, None)).collect()).await
}

/// [`insert_together`] with each row's key claim, if any.
async fn insert_keyed_together(
    store: &SqlStore,
    rows: Vec<(NewPaymentRow, Option<IdempotencyClaim>)>,
) -> Vec<Result<Inserted, String>> {
    let tasks: Vec<_> = rows
        .into_iter()
        .map(|(row, claim)| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_payment(&row, claim.as_ref())
                    .await
                    .map_err(|err| err.to_string())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_new_payments_are_each_stored_and_readable_once_answered() {
    let (store, source) = store("inserts-concurrent").await;
    let rows: Vec<_> = (0..150)
        .map(|n| row(&format!("{n:012X}"), source, 1000 + n))
        .collect();
    let answers = insert_together(&store, rows.clone()).await;
    assert!(
        answers.iter().all(|answer| matches!(answer, Ok(Inserted::Yes))),
        "{answers:?}"
    );
    for row in &rows {
        let stored = store
            .payment(&row.transaction_id)
            .await
            .unwrap()
            .expect("answered Yes, so stored");
        assert_eq!(stored.original_amount, row.payment.amount);
        assert_eq!(stored.description, row.payment.description);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_id_collides_whether_stored_before_or_earlier_in_the_same_round() {
    let (store, source) = store("inserts-collisions").await;
    assert!(matches!(
        store
            .insert_payment(&row("00000000000A", source, 500), None)
            .await,
        Ok(Inserted::Yes)
    ));
    let answers = insert_together(
        &store,
        vec![
            row("00000000000A", source, 600),
            row("00000000000B", source, 700),
            row("00000000000B", source, 800),
            row("00000000000C", source, 900),
        ],
    )
    .await;
    assert!(matches!(answers[0], Ok(Inserted::IdCollision)), "{answers:?}");
    let b: Vec<_> = answers[1..3]
        .iter()
        .filter(|answer| matches!(answer, Ok(Inserted::Yes)))
        .collect();
    assert_eq!(
        b.len(),
        1,
        "one of the two B rows is stored, the other collides: {answers:?}"
    );
    assert!(
        answers[1..3]
            .iter()
            .any(|answer| matches!(answer, Ok(Inserted::IdCollision)))
    );
    assert!(matches!(answers[3], Ok(Inserted::Yes)), "{answers:?}");
    let first = store
        .payment(&TransactionId::parse("00000000000A").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.original_amount,
        Money::from_tenge(500),
        "a collision changes nothing stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_fails_its_own_request_and_no_other() {
    let (store, source) = store("inserts-refused").await;
    let mut rows: Vec<_> = (0..20).map(|n| row(&format!("{n:012X}"), source, 1000)).collect();
    // No such source: the foreign key refuses the row.
    rows[7].source_id = SourceId(999);
    let answers = insert_together(&store, rows.clone()).await;
    for (n, answer) in answers.iter().enumerate() {
        if n == 7 {
            assert!(answer.is_err(), "the refused row: {answer:?}");
            assert!(store.payment(&rows[n].transaction_id).await.unwrap().is_none());
        } else {
            assert!(matches!(answer, Ok(Inserted::Yes)), "row {n}: {answer:?}");
            assert!(store.payment(&rows[n].transaction_id).await.unwrap().is_some());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_claimed_with_their_payments_and_a_key_used_twice_stores_once() {
    let (store, source) = store("inserts-keys").await;
    let mut rows = Vec::new();
    for n in 0..12 {
        let row = row(&format!("{n:012X}"), source, 1000 + n);
        let claim = match n {
            0..8 => Some(claim(source, &format!("order-{n}"), &row)),
            // Two requests with one key.
            8 | 9 => Some(claim(source, "order-twice", &row)),
            _ => None,
        };
        rows.push((row, claim));
    }
    let answers = insert_keyed_together(&store, rows.clone()).await;
    for (n, answer) in answers.iter().enumerate() {
        if n != 8 && n != 9 {
            assert!(matches!(answer, Ok(Inserted::Yes)), "row {n}: {answer:?}");
        }
    }
    for (n, (row, _)) in rows.iter().enumerate().take(8) {
        assert!(store.payment(&row.transaction_id).await.unwrap().is_some());
        assert_eq!(
            held(&store, source, &format!("order-{n}")).await,
            IdempotencyStart::Replay(StoredResponse {
                status: 201,
                body: format!("created {}", row.transaction_id)
            }),
            "the key holds its own payment's answer"
        );
    }
    let twice = [&answers[8], &answers[9]];
    let stored = twice
        .iter()
        .position(|answer| matches!(answer, Ok(Inserted::Yes)));
    let Some(stored) = stored else {
        panic!("one of the two is stored: {twice:?}")
    };
    let other = 1 - stored;
    assert!(matches!(twice[other], Ok(Inserted::KeyTaken)), "{twice:?}");
    assert!(
        store
            .payment(&rows[8 + stored].0.transaction_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .payment(&rows[8 + other].0.transaction_id)
            .await
            .unwrap()
            .is_none(),
        "the key's second request stores nothing"
    );
    assert_eq!(
        held(&store, source, "order-twice").await,
        IdempotencyStart::Replay(StoredResponse {
            status: 201,
            body: format!("created {}", rows[8 + stored].0.transaction_id)
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_key_stores_nothing_and_a_payment_not_stored_leaves_no_claim() {
    let (store, source) = store("inserts-keys-undone").await;
    let first = row("00000000000A", source, 500);
    let first_claim = claim(source, "order-live", &first);
    assert!(matches!(
        store.insert_payment(&first, Some(&first_claim)).await,
        Ok(Inserted::Yes)
    ));
    let live = row("00000000000B", source, 600);
    let collides = row("00000000000A", source, 700);
    let refused = NewPaymentRow {
        // No such source for the payment (the claim's exists): the row is refused.
        source_id: SourceId(999),
        ..row("00000000000C", source, 800)
    };
    let fine = row("00000000000D", source, 900);
    let claim_refused = row("00000000000E", source, 1000);
    let rows = vec![
        (live.clone(), Some(claim(source, "order-live", &live))),
        (collides.clone(), Some(claim(source, "order-collides", &collides))),
        (refused.clone(), Some(claim(source, "order-refused", &refused))),
        (fine.clone(), Some(claim(source, "order-fine", &fine))),
        // No such source for the claim: the claim is refused, and the row with it.
        (
            claim_refused.clone(),
            Some(claim(SourceId(999), "order-claim-refused", &claim_refused)),
        ),
    ];
    let answers = insert_keyed_together(&store, rows).await;
    assert!(matches!(answers[0], Ok(Inserted::KeyTaken)), "{answers:?}");
    assert!(store.payment(&live.transaction_id).await.unwrap().is_none());
    assert!(matches!(
        held(&store, source, "order-live").await,
        IdempotencyStart::Replay(ref stored) if stored.body == format!("created {}", first.transaction_id)
    ));
    assert!(matches!(answers[1], Ok(Inserted::IdCollision)), "{answers:?}");
    assert_eq!(
        held(&store, source, "order-collides").await,
        IdempotencyStart::Fresh,
        "a collision undoes its key's claim: the retry with a new id claims it"
    );
    assert!(answers[2].is_err(), "{answers:?}");
    assert_eq!(
        held(&store, source, "order-refused").await,
        IdempotencyStart::Fresh
    );
    assert!(matches!(answers[3], Ok(Inserted::Yes)), "{answers:?}");
    assert!(matches!(
        held(&store, source, "order-fine").await,
        IdempotencyStart::Replay(_)
    ));
}
