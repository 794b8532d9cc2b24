//! `Idempotency-Key` under concurrency and across server builds: the key is claimed with its
//! answer in the payment's own transaction, so repeats racing the first request get its answer,
//! and a claim without an answer (what servers built before that stored first) still means «in
//! flight» until it is a minute old. Replays, conflicts, refusals and the 24 h are in `api.rs`.

use crate::common;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `POST /payment/init` with `key` and the body `raw`, as the test's source: status and body.
async fn init_keyed(app: &common::App, key: &str, raw: &'static str) -> (u16, String) {
    let response = app
        .http
        .post(format!("{}/payment/init", app.base))
        .header("X-API-Token", &app.token)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(raw)
        .send()
        .await
        .unwrap();
    let (status, _, body) = common::read_answer(response).await;
    (status, body)
}

/// How many payments the test's source has.
async fn payments(app: &common::App) -> usize {
    let listed = app.get_json_as("/payments?limit=100").await;
    listed["data"]["items"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_racing_the_first_request_all_get_its_answer_and_one_payment_is_made() {
    let app = common::spawn_app(0).await;
    const BODY: &str = r#"{"amount": 25000, "description": "Тур в Анталью"}"#;
    let racing: Vec<_> = (0..16)
        .map(|_| {
            let app = &app;
            async move { init_keyed(app, "order-race", BODY).await }
        })
        .collect();
    let answers = futures_util::future::join_all(racing).await;
    let (status, first) = &answers[0];
    assert_eq!(*status, 201, "{first}");
    for (status, body) in &answers {
        assert_eq!(
            (*status, body),
            (201, first),
            "every repeat answers the first one's bytes"
        );
    }
    assert_eq!(payments(&app).await, 1, "one payment, whatever the race");

    // Keys that race with different bodies: one is stored, the others are conflicts.
    let bodies = [
        r#"{"amount": 1000}"#,
        r#"{"amount": 2000}"#,
        r#"{"amount": 3000}"#,
    ];
    let racing: Vec<_> = bodies
        .iter()
        .map(|raw| {
            let app = &app;
            async move { init_keyed(app, "order-other-bodies", raw).await }
        })
        .collect();
    let answers = futures_util::future::join_all(racing).await;
    let created: Vec<_> = answers.iter().filter(|(status, _)| *status == 201).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 409, "{body}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], json!("idempotency_conflict"), "{body}");
    }
    assert_eq!(payments(&app).await, 2);
}

#[tokio::test]
async fn a_claim_without_its_answer_is_in_flight_for_a_minute_then_taken_over() {
    let app = common::spawn_app(0).await;
    const BODY: &str = r#"{"amount": 7000}"#;
    let hash = hex::encode(Sha256::digest(BODY.as_bytes()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // What a server of an earlier build leaves while its request runs.
    app.execute_sql(&format!(
        "INSERT INTO idempotency_keys (source_id, key, request_hash, created_at) \
         VALUES (1, 'order-legacy', '{hash}', {now})"
    ))
    .await;
    let (status, body) = init_keyed(&app, "order-legacy", BODY).await;
    assert_eq!(status, 409, "{body}");
    let refused: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["code"], json!("idempotency_in_flight"), "{refused}");
    let (status, body) = init_keyed(&app, "order-legacy", r#"{"amount": 1}"#).await;
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["code"].clone()
        ),
        (409, json!("idempotency_conflict")),
        "another body is a conflict, in flight or not"
    );
    assert_eq!(payments(&app).await, 0);

    // Its process died: after a minute the claim is taken over, and kept with its answer.
    app.execute_sql("UPDATE idempotency_keys SET created_at = created_at - 61 WHERE key = 'order-legacy'")
        .await;
    let (status, created) = init_keyed(&app, "order-legacy", BODY).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(init_keyed(&app, "order-legacy", BODY).await, (201, created));
    assert_eq!(payments(&app).await, 1);
}

#[tokio::test]
async fn a_payment_and_its_key_are_stored_together_or_not_at_all() {
    use byfly_core::ids::TokenHash;
    use byfly_core::{BodyEncoding, Money, TransactionId};
    use byfly_server::store::{IdempotencyClaim, IdempotencyStart, Inserted, StoredResponse, UnixSeconds};

    let (store, dir, _) = common::fresh_store("byfly-keys-together").await;
    let source = store
        .create_source(
            "CRM",
            &TokenHash::of("bf_keys_together"),
            BodyEncoding::Php,
            UnixSeconds(0),
        )
        .await
        .unwrap()
        .id;
    let now = UnixSeconds(1_000_000);
    let row = |id: &str| common::new_payment_row(TransactionId::parse(id).unwrap(), source, 5000, now);
    let claim = |key: &str, id: &str| IdempotencyClaim {
        source_id: source,
        key: key.to_owned(),
        request_hash: "hash".to_owned(),
        claimed_at: now,
        response: StoredResponse {
            status: 201,
            body: format!("created {id}"),
        },
    };
    let held = |key: &'static str| {
        let store = store.clone();
        async move { store.idempotent_answer(source, key, "hash", now).await.unwrap() }
    };

    let first = row("0000000000A1");
    assert_eq!(
        store
            .insert_payment(&first, Some(&claim("k1", "A1")))
            .await
            .unwrap(),
        Inserted::Yes
    );
    assert_eq!(
        held("k1").await,
        IdempotencyStart::Replay(StoredResponse {
            status: 201,
            body: "created A1".to_owned()
        })
    );
    // The key is live: nothing is stored for the second request.
    let second = row("0000000000B2");
    assert_eq!(
        store
            .insert_payment(&second, Some(&claim("k1", "B2")))
            .await
            .unwrap(),
        Inserted::KeyTaken
    );
    assert!(store.payment(&second.transaction_id).await.unwrap().is_none());
    // The transaction id is taken: the key's claim is not kept (its answer named that id).
    assert_eq!(
        store
            .insert_payment(&first, Some(&claim("k2", "A1")))
            .await
            .unwrap(),
        Inserted::IdCollision
    );
    assert_eq!(held("k2").await, IdempotencyStart::Fresh);
    assert_eq!(
        store.insert_payment(&first, None).await.unwrap(),
        Inserted::IdCollision
    );
    assert_eq!(
        store
            .payment(&first.transaction_id)
            .await
            .unwrap()
            .unwrap()
            .original_amount,
        Money::from_tenge(5000)
    );
    // The request's retry, with a new transaction id, claims the key.
    let third = row("0000000000C3");
    assert_eq!(
        store
            .insert_payment(&third, Some(&claim("k2", "C3")))
            .await
            .unwrap(),
        Inserted::Yes
    );
    assert!(matches!(held("k2").await, IdempotencyStart::Replay(_)));
    drop(store);
    common::drop_database(&dir);
    std::fs::remove_dir_all(&dir).ok();
}

/// A write is acknowledged only once it committed: here PostgreSQL refuses the commit itself (a
/// deferred constraint trigger, which runs as the transaction ends, after the statement returned
/// its row). The request is answered with an error, and nothing of it — payment or key — is kept:
/// the same request succeeds once the database accepts it. (A driver call that answers at the
/// first returned row would have said 201 for a payment that never existed.)
#[tokio::test]
async fn an_init_whose_commit_fails_is_not_acknowledged() {
    if !common::on_postgres() {
        return;
    }
    let app = common::spawn_app(0).await;
    app.execute_sql(
        "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.original_amount_minor = 424200 THEN RAISE EXCEPTION 'refused at commit'; END IF; \
         RETURN NULL; END $$",
    )
    .await;
    app.execute_sql(
        "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON payments \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()",
    )
    .await;
    const BODY: &str = r#"{"amount": 4242}"#;
    let (status, body) = init_keyed(&app, "order-refused-at-commit", BODY).await;
    assert_eq!(status, 500, "{body}");
    let plain = app
        .http
        .post(format!("{}/payment/init", app.base))
        .header("X-API-Token", &app.token)
        .header("Content-Type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 500);
    assert_eq!(payments(&app).await, 0, "nothing acknowledged, nothing stored");

    app.execute_sql("DROP TRIGGER refuse_at_commit ON payments").await;
    let (status, body) = init_keyed(&app, "order-refused-at-commit", BODY).await;
    assert_eq!(status, 201, "the key was not kept either: {body}");
    assert_eq!(payments(&app).await, 1);
}
