//! The customer's side over HTTP: the payment page and its assets with their security headers,
//! the quotes it shows, the QR image, and the rate limits of `/kaspi`.

use crate::common::{pay, spawn_app_with};
use serde_json::{Value, json};

#[tokio::test]
async fn the_page_is_a_self_contained_shell_under_a_strict_policy() {
    let app = spawn_app_with(1, false, |c| {
        c.public_base_url = Some("https://pay.example.kz/".into())
    })
    .await;
    let created: Value = app
        .http
        .post(format!("{}/payment/init", app.base))
        .header("X-API-Token", &app.token)
        .json(&json!({"amount": 100000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["transaction_id"].as_str().unwrap();
    assert_eq!(
        created["data"]["payment_page_url"],
        json!(format!("https://pay.example.kz/pay/{id}"))
    );

    let origin = app.base.trim_end_matches("/api");
    let page = app.http.get(format!("{origin}/pay/{id}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!(r#"data-transaction-id="{id}""#)), "{html}");
    assert!(html.contains(r#"data-demo="false""#));
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline code"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing external"
    );

    let missing = app
        .http
        .get(format!("{origin}/pay/FFFFFFFFFFFF"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("<main id=\"app\""));

    for (asset, kind) in [("pay.js", "text/javascript"), ("pay.css", "text/css")] {
        let answer = app
            .http
            .get(format!("{origin}/pay/assets/{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let body = answer.text().await.unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{asset} loads nothing external"
        );
    }

    // The public view names the merchant (the source) and nothing about the customer.
    let view = app.get_json(&format!("/payment/{id}")).await;
    assert_eq!(view["data"]["merchant_name"], "CRM");
    assert!(view["data"].get("customer_name").is_none());
}

#[tokio::test]
async fn quotes_are_the_figures_kaspi_answers_and_the_qr_is_an_svg() {
    let app = spawn_app_with(1, false, |_| {}).await;
    let id = app.init(100_000).await;
    let quotes = app.get_json(&format!("/payment/{id}/quotes")).await;
    let totals: Vec<(String, Value)> = quotes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["payment_method"].as_str().unwrap().to_owned(),
                q["amount"].clone(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        vec![
            ("kaspi_gold".to_owned(), json!(100000)),
            ("kaspi_red".to_owned(), json!(100000)),
            ("kaspi_kredit".to_owned(), json!(114000)),
            ("kaspi_rassrochka".to_owned(), json!(114000)),
        ]
    );

    let qr_url = format!("{}/payment/{id}/qr.svg", app.base);
    let none_yet = app.http.get(&qr_url).send().await.unwrap();
    assert_eq!(none_yet.status(), 404);
    assert_eq!(none_yet.json::<Value>().await.unwrap()["code"], "not_found");

    let (status, started) = app.kaspi(&id, "kaspi_gold").await;
    assert_eq!(status, 200, "{started}");
    let svg = app.http.get(&qr_url).send().await.unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));

    // After a partial payment the quotes price what remains, as the top-up's /kaspi does.
    let qr = started["data"]["qr_code"].as_str().unwrap();
    app.simulator_with(qr).pay(pay("Gold", Some(87_719))).unwrap();
    assert_eq!(app.settled(&id).await["status"], "partially_paid");
    let quotes = app.get_json(&format!("/payment/{id}/quotes")).await;
    assert_eq!(quotes["data"][0]["amount"], json!(12281));
    assert_eq!(quotes["data"][2]["amount"], json!(14000.34));
    let (_, top_up) = app.kaspi(&id, "kaspi_kredit").await;
    assert_eq!(top_up["data"]["amount"], quotes["data"][2]["amount"]);
}

#[tokio::test]
async fn kaspi_is_rate_limited_per_payment_and_per_client() {
    let app = spawn_app_with(2, false, |c| {
        c.kaspi_rate_per_payment = 2;
        c.kaspi_rate_per_ip = 4;
    })
    .await;
    let first = app.init(1_000).await;
    assert_eq!(app.kaspi(&first, "kaspi_gold").await.0, 200);
    assert_eq!(app.kaspi(&first, "kaspi_gold").await.0, 200); // same method: the same operation
    let response = app
        .http
        .post(format!("{}/payment/{first}/kaspi", app.base))
        .json(&json!({"payment_method": "kaspi_gold"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (
            body["success"].clone(),
            body["error_code"].clone(),
            body["code"].clone()
        ),
        (json!(false), json!(429), json!("rate_limited"))
    );
    assert_eq!(body["message"], "Слишком много запросов, попробуйте позже");

    // The client has used 3 of its 4; another payment gets one more, then the client is refused.
    let second = app.init(2_000).await;
    assert_eq!(app.kaspi(&second, "kaspi_gold").await.0, 200);
    let (status, refused) = app.kaspi(&second, "kaspi_red").await;
    assert_eq!((status, refused["code"].clone()), (429, json!("rate_limited")));
}
