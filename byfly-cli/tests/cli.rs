//! The `byfly` binary against a real server (demo mode: SQLite, simulated terminals) over real
//! HTTP: each command's human and `--json` output, and the documented exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use assert_cmd::Command;
use byfly_core::webhook::signature::SignedHeaders;
use byfly_server::demo::RunningDemo;
use byfly_terminal::simulator::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

/// A demo server on its own runtime; the CLI runs as a child process against it.
struct Server {
    demo: Option<RunningDemo>,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(terminals: usize) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let demo = runtime.block_on(RunningDemo::start(terminals, |_| {})).unwrap();
        Server {
            demo: Some(demo),
            runtime,
        }
    }

    fn demo(&self) -> &RunningDemo {
        self.demo.as_ref().unwrap()
    }

    /// `byfly` with the server's URL and both tokens in the environment.
    fn byfly(&self) -> Command {
        let demo = self.demo();
        let mut command = Command::new(env!("CARGO_BIN_EXE_byfly"));
        command
            .env("BYFLY_API_URL", &demo.api_url)
            .env("BYFLY_API_TOKEN", &demo.token)
            .env("BYFLY_ADMIN_TOKEN", &demo.admin_token)
            .timeout(std::time::Duration::from_secs(60));
        command
    }

    /// Runs `byfly ARGS`: exit code, stdout, stderr.
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        finish(self.byfly().args(args))
    }

    /// Runs `byfly --json ARGS`: exit code and the one JSON document on stdout.
    fn json(&self, args: &[&str]) -> (i32, Value) {
        let (code, stdout, stderr) = finish(self.byfly().arg("--json").args(args));
        let document = serde_json::from_str(&stdout)
            .unwrap_or_else(|err| panic!("{args:?}: stdout is not JSON ({err}): {stdout}\nstderr: {stderr}"));
        (code, document)
    }

    /// A new payment's id.
    fn init(&self, amount: &str) -> String {
        let (code, created) = self.json(&["init", "--amount", amount]);
        assert_eq!(code, 0, "{created}");
        created["transaction_id"].as_str().unwrap().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _inside = self.runtime.enter();
        self.demo.take();
    }
}

fn finish(command: &mut Command) -> (i32, String, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Reads a QR drawn with half blocks for a dark terminal (drawn = light module) back with rqrr.
fn scan_drawn_qr(text: &str) -> String {
    let rows: Vec<Vec<(bool, bool)>> = text
        .lines()
        .filter(|line| !line.is_empty() && line.chars().all(|c| " ▀▄█".contains(c)))
        .map(|line| {
            line.chars()
                .map(|c| match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    _ => (false, false),
                })
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "no QR drawn in:\n{text}");
    let width = rows.iter().map(Vec::len).max().unwrap();
    let light = |x: usize, y: usize| {
        rows.get(y / 2)
            .and_then(|row| row.get(x))
            .is_some_and(|&(upper, lower)| if y.is_multiple_of(2) { upper } else { lower })
    };
    const SCALE: usize = 4;
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width * SCALE, rows.len() * 2 * SCALE, |x, y| {
            if light(x / SCALE, y / SCALE) { 255 } else { 0 }
        });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR expected");
    grids[0].decode().unwrap().1
}

#[test]
fn a_payment_from_init_to_refund_in_human_output() {
    let server = Server::start(2);
    let (code, out, err) = server.run(&[
        "init",
        "--amount",
        "100000",
        "--description",
        "Тур в Анталью",
        "--meta",
        "order_id=12345",
        "--meta",
        "tour=7 дней",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pending"), "{out}");
    assert!(out.contains("100 000 ₸"), "{out}");
    let id = out.split_whitespace().next().unwrap().to_owned();
    assert_eq!(id.len(), 12);

    let (code, out, err) = server.run(&["kaspi", &id.to_lowercase(), "--method", "kaspi_kredit"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("114 000 ₸ (100 000 ₸ + 14 % commission 14 000 ₸)"),
        "{out}"
    );
    assert!(out.contains("https://pay.kaspi.kz/"), "{out}");
    let (_, shown) = server.json(&["show", &id]);
    assert_eq!(scan_drawn_qr(&out), shown["qr_code"].as_str().unwrap());

    let (code, out, _) = server.run(&["simulate", &id, "--product", "Loan"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, err) = server.run(&["status", &id, "--wait", "--timeout", "30"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("{id}  paid")), "{out}");
    assert!(out.contains("paid       114 000 ₸"), "{out}");

    let (code, out, _) = server.run(&["show", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("Тур в Анталью") && out.contains("paid at"), "{out}");
    let (code, out, _) = server.run(&["list"]);
    assert_eq!(code, 0);
    assert!(out.lines().nth(1).unwrap().starts_with(&id), "{out}");
    let (code, out, _) = server.run(&["methods"]);
    assert_eq!(code, 0);
    assert!(out.contains("kaspi_rassrochka") && out.contains("14 %"), "{out}");

    let (code, out, err) = server.run(&["refund", &id, "--amount", "50000"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("50 000 ₸") && out.contains("waiting_confirmation"),
        "{out}"
    );
    let refund_id = out.split_whitespace().nth(1).unwrap().to_owned();
    let (code, out, _) = server.run(&["refund", &id, "--check", &refund_id]);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("refund {refund_id}")), "{out}");

    let other = server.init("2500.5");
    let (code, out, _) = server.run(&["cancel", &other]);
    assert_eq!((code, out.trim()), (0, format!("{other}  cancelled").as_str()));
    let (code, _, err) = server.run(&["cancel", &other]);
    assert_eq!(code, 3);
    assert!(
        err.contains("Платеж отменен (payment_cancelled); request "),
        "{err}"
    );
    // The request id the server logged the refusal under, for its operator.
    let request = err.trim().rsplit(' ').next().unwrap();
    assert!(
        request.len() == 16 && request.bytes().all(|b| b.is_ascii_hexdigit()),
        "{err}"
    );

    let (code, out, _) = server.run(&["health"]);
    assert_eq!(code, 0);
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(lines.contains(&vec!["terminals", "2"]), "{out}");
    assert!(lines.contains(&vec!["needs", "registration", "0"]), "{out}");
}

#[test]
fn waiting_through_a_partial_payment_and_its_top_up() {
    let server = Server::start(1);
    let id = server.init("100000");
    assert_eq!(server.run(&["kaspi", &id, "--no-qr"]).0, 0);
    assert_eq!(server.run(&["simulate", &id, "--amount", "87719"]).0, 0);
    let (code, out, _) = server.run(&["status", &id, "--wait"]);
    assert_eq!(code, 0);
    assert!(out.contains("partially_paid"), "{out}");
    assert!(out.contains("Top-up needed: 12 281 ₸"), "{out}");

    let (code, top_up) = server.json(&["kaspi", &id]);
    assert_eq!(code, 0);
    assert_eq!(
        (top_up["amount"].clone(), top_up["original_amount"].clone()),
        (12281.into(), 12281.into())
    );
    assert_eq!(server.run(&["simulate", &id]).0, 0);
    let (code, paid) = server.json(&["status", &id, "--wait", "--until", "paid"]);
    assert_eq!(code, 0);
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["paid_amount"], 100000);
}

#[test]
fn json_output_and_exit_codes() {
    let server = Server::start(1);
    let (code, methods) = server.json(&["methods"]);
    assert_eq!(code, 0);
    assert_eq!(methods.as_array().unwrap().len(), 4);

    let (code, missing) = server.json(&["status", "ABCDEF123456"]);
    assert_eq!(code, 4);
    assert_eq!(missing["success"], false);
    assert_eq!(missing["code"], "transaction_not_found");
    assert_eq!(missing["message"], "Транзакция не найдена");
    assert_eq!(missing["error_code"], 404);
    assert_eq!(server.json(&["show", "not-an-id"]).0, 4);

    let (code, refused) = server.json(&["init", "--amount", "0"]);
    assert_eq!((code, refused["code"].as_str()), (3, Some("invalid_amount")));

    let first = server.init("1000");
    assert_eq!(server.json(&["kaspi", &first]).0, 0);
    let second = server.init("2000");
    let (code, busy) = server.json(&["kaspi", &second]);
    assert_eq!(code, 3);
    assert_eq!(busy["code"], "terminals_busy");
    assert_eq!(busy["message"], "Все терминалы заняты, попробуйте позже");

    let (code, deadline) = server.json(&["status", &second, "--wait", "--timeout", "1"]);
    assert_eq!(code, 7);
    assert_eq!(deadline["code"], "wait_deadline");
    assert_eq!(deadline["data"]["status"], "pending");

    let (code, _, err) = finish(
        server
            .byfly()
            .args(["init", "--amount", "5"])
            .env_remove("BYFLY_API_TOKEN"),
    );
    assert_eq!(code, 5, "{err}");
    let (code, _, err) = server.run(&["--token", &"x".repeat(64), "init", "--amount", "5"]);
    assert_eq!(code, 5);
    assert!(err.contains("Invalid API token (invalid_token)"), "{err}");
    let (code, _, _) = server.run(&[
        "--admin-token",
        "wrong-admin-token-1234",
        "admin",
        "sources",
        "list",
    ]);
    assert_eq!(code, 5);

    let (code, _, err) = server.run(&["init"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--amount"), "{err}");
    assert_eq!(server.run(&["init", "--amount", "ten"]).0, 2);
    assert_eq!(
        server
            .run(&["init", "--amount", "1", "--idempotency-key", "ключ"])
            .0,
        2
    );

    let (code, created) = server.json(&["init", "--amount", "777", "--idempotency-key", "order-777"]);
    assert_eq!(code, 0);
    let (_, again) = server.json(&["init", "--amount", "777", "--idempotency-key", "order-777"]);
    assert_eq!(created, again);
    let (code, conflict) = server.json(&["init", "--amount", "778", "--idempotency-key", "order-777"]);
    assert_eq!(
        (code, conflict["code"].as_str()),
        (3, Some("idempotency_conflict"))
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, unreachable) = server.json(&["--api-url", &closed_url, "methods"]);
    assert_eq!(code, 6);
    assert_eq!(unreachable["code"], "transport_error");
}

#[test]
fn every_payment_command_prints_its_answer_as_json() {
    let server = Server::start(1);
    let (code, created) = server.json(&[
        "init",
        "--amount",
        "2500.5",
        "--description",
        "JSON",
        "--meta",
        "k=v",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        (created["status"].clone(), created["amount"].clone()),
        ("pending".into(), 2500.5.into())
    );
    let id = created["transaction_id"].as_str().unwrap().to_owned();
    let (code, quotes) = server.json(&["quotes", &id]);
    assert_eq!(code, 0);
    assert_eq!(
        (quotes[2]["payment_method"].clone(), quotes[2]["amount"].clone()),
        ("kaspi_kredit".into(), 2850.57.into())
    );
    let (code, out, _) = server.run(&["quotes", &id]);
    assert_eq!(code, 0);
    assert!(
        out.contains("kaspi_kredit") && out.contains("2 850.57 ₸"),
        "{out}"
    );
    let (code, started) = server.json(&["kaspi", &id, "--method", "kaspi_red"]);
    assert_eq!(code, 0);
    assert!(
        started["payment_url"]
            .as_str()
            .unwrap()
            .starts_with("https://pay.kaspi.kz/")
    );
    let (code, shown) = server.json(&["show", &id]);
    assert_eq!(code, 0);
    assert_eq!(
        (shown["status"].clone(), shown["merchant_name"].clone()),
        ("processing".into(), "Demo".into())
    );
    assert_eq!(shown["qr_code"], started["qr_code"]);
    let (code, acted) = server.json(&["simulate", &id, "--product", "Red"]);
    assert_eq!(code, 0);
    assert!(acted.is_object(), "{acted}");
    let (code, status) = server.json(&["status", &id, "--wait"]);
    assert_eq!(code, 0);
    // The terminal charges whole tenge: 2 501 received, 0.5 over.
    assert_eq!(
        (
            status["status"].clone(),
            status["paid_amount"].clone(),
            status["overpaid_amount"].clone()
        ),
        ("paid".into(), 2501.into(), 0.5.into())
    );
    let (code, list) = server.json(&["list", "--status", "paid"]);
    assert_eq!(code, 0);
    assert_eq!(list["items"][0]["transaction_id"].as_str(), Some(id.as_str()));
    let (code, refund) = server.json(&["refund", &id]);
    assert_eq!(code, 0);
    assert_eq!(
        (refund["status"].clone(), refund["amount"].clone()),
        ("waiting_confirmation".into(), 2501.into())
    );
    let refund_id = refund["refund_id"].as_str().unwrap();
    let (code, followed) = server.json(&["refund", &id, "--check", refund_id]);
    assert_eq!((code, followed["refund_id"].as_str()), (0, Some(refund_id)));
    let other = server.init("10");
    let (code, cancelled) = server.json(&["cancel", &other]);
    assert_eq!((code, cancelled["status"].as_str()), (0, Some("cancelled")));
    let (code, health) = server.json(&["health"]);
    assert_eq!((code, health["terminals"]["total"].clone()), (0, 1.into()));
    let (code, log) = server.json(&["admin", "webhooks", &id]);
    assert_eq!(code, 0);
    assert_eq!(log[0]["event"], "paid");
    let (code, terminals) = server.json(&["admin", "terminals", "list"]);
    assert_eq!((code, terminals[0]["healthy"].clone()), (0, true.into()));
    let (code, review) = server.json(&["admin", "review"]);
    assert_eq!((code, review), (0, Value::Array(Vec::new())));
}

#[test]
fn webhook_verify_checks_the_exact_body() {
    let server = Server::start(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = format!(
        r#"{{"event":"paid","transaction_id":"A3F5D9E2B1C8","amount":50000,"original_amount":50000,"paid_amount":50000,"actual_amount_received":50000,"remaining_amount":0,"currency":"KZT","status":"paid","description":"\u0422\u0443\u0440","created_at":"2025-01-13 10:00:00","paid_at":"2025-01-13 10:05:00","metadata":[],"timestamp":{now},"event_id":"A3F5D9E2B1C8-1","refunded_amount":0,"overpaid_amount":0,"commission_amount":0,"payment_method":"kaspi_gold"}}"#
    );
    let dir = std::env::temp_dir().join(format!("byfly-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body.json");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let path = file.to_str().unwrap();
    let signed = SignedHeaders::sign(b"s3cret", body.as_bytes(), now);
    let verify = |secret: &str, extra: &[&str]| {
        let mut args = vec![
            "webhook",
            "verify",
            "--secret",
            secret,
            "--signature",
            signed.signature.as_str(),
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };

    let args = verify(
        "s3cret",
        &[
            "--body-file",
            path,
            "--signature-v2",
            signed.signature_v2.as_str(),
        ],
    );
    let (code, out, err) = finish(server.byfly().args(&args));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("valid: paid for A3F5D9E2B1C8 (event id A3F5D9E2B1C8-1"),
        "{out}"
    );
    // From stdin, as JSON.
    let (code, out, _) = finish(
        server
            .byfly()
            .arg("--json")
            .args(verify("s3cret", &[]))
            .write_stdin(body.clone()),
    );
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["valid"].clone(), report["event"].clone()),
        (true.into(), "paid".into())
    );

    let (code, _, err) = finish(server.byfly().args(verify("wrong", &["--body-file", path])));
    assert_eq!(code, 8);
    assert!(err.contains("signature mismatch"), "{err}");
    let tampered = body.replace("50000", "5000");
    assert_eq!(
        finish(server.byfly().args(verify("s3cret", &[])).write_stdin(tampered)).0,
        8
    );

    let old = SignedHeaders::sign(b"s3cret", body.as_bytes(), now - 3_600);
    let stale = [
        "webhook",
        "verify",
        "--secret",
        "s3cret",
        "--body-file",
        path,
        "--signature-v2",
        old.signature_v2.as_str(),
    ];
    let (code, _, err) = server.run(&stale);
    assert_eq!(code, 8);
    assert!(err.contains("tolerance"), "{err}");
    let mut without_freshness = stale.to_vec();
    without_freshness.extend(["--tolerance", "0"]);
    assert_eq!(server.run(&without_freshness).0, 0);
    assert_eq!(
        server
            .run(&["webhook", "verify", "--secret", "s3cret", "--body-file", path])
            .0,
        8,
        "no signature at all"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_token_is_rotated_from_the_command_line() {
    let server = Server::start(0);
    // The demo's source (1) gets a second key; its token works beside the first.
    let (code, created) = server.json(&["admin", "sources", "key-create", "1", "--name", "CRM 2027"]);
    assert_eq!(code, 0, "{created}");
    let new_token = created["api_token"].as_str().unwrap().to_owned();
    assert_eq!(new_token.len(), 64);
    let with_new = |args: &[&str]| finish(server.byfly().env("BYFLY_API_TOKEN", &new_token).args(args)).0;
    assert_eq!(with_new(&["list"]), 0);
    let (code, out, _) = server.run(&["admin", "sources", "keys", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("initial") && out.contains("CRM 2027"), "{out}");
    assert!(
        out.contains(&format!("…{}", &new_token[60..])),
        "the token's hint: {out}"
    );
    // The first key is revoked: its token is refused (5), the new one goes on.
    let (_, keys) = server.json(&["admin", "sources", "keys", "1"]);
    let first = keys[0]["id"].to_string();
    let (code, revoked) = server.json(&["admin", "sources", "key-revoke", "1", &first]);
    assert_eq!((code, revoked["active"].clone()), (0, json!(false)), "{revoked}");
    assert_eq!(server.run(&["list"]).0, 5);
    assert_eq!(with_new(&["list"]), 0);
    // An unknown key: not found (4).
    assert_eq!(server.run(&["admin", "sources", "key-revoke", "1", "999"]).0, 4);
}

#[test]
fn admin_commands() {
    let server = Server::start(1);
    let (code, out, _) = server.run(&[
        "admin",
        "sources",
        "create",
        "--name",
        "Shop",
        "--webhook-json",
        "js",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Shop") && out.contains("API token (shown once"),
        "{out}"
    );
    let (_, sources) = server.json(&["admin", "sources", "list"]);
    assert_eq!(sources.as_array().unwrap().len(), 2);
    let shop = sources[1]["id"].to_string();
    let (code, updated) = server.json(&["admin", "sources", "update", &shop, "--active", "false"]);
    assert_eq!((code, updated["active"].clone()), (0, false.into()));

    let (code, out, _) = server.run(&["admin", "terminals", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("Демо-терминал 1"), "{out}");
    let (code, disabled) = server.json(&["admin", "terminals", "update", "1", "--enabled", "false"]);
    assert_eq!((code, disabled["enabled"].clone()), (0, false.into()));
    let (code, _) = server.json(&["admin", "terminals", "update", "1", "--enabled", "true"]);
    assert_eq!(code, 0);
    // The demo's terminal already allows our name: the registration ends `already_registered`,
    // refused (3) with the remedy on the terminal, and the terminal keeps working.
    let (code, refused) = server.json(&["admin", "terminals", "register", "1"]);
    assert_eq!(
        (code, &refused["code"]),
        (3, &json!("registration_already_registered")),
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("«Запретить»"),
        "{refused}"
    );
    assert_eq!(refused["data"]["registered"], json!(true));
    let (code, _, stderr) = server.run(&["admin", "terminals", "register", "1"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("Панель администратора"), "{stderr}");
    assert_eq!(server.run(&["admin", "terminals", "register", "99"]).0, 4);

    let (code, out, _) = server.run(&["admin", "methods", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("Kaspi Рассрочка"), "{out}");
    let (code, changed) = server.json(&["admin", "methods", "update", "2", "--active", "false"]);
    assert_eq!(code, 0);
    assert_eq!(changed[0]["is_active"], false);
    assert_eq!(server.json(&["methods"]).1.as_array().unwrap().len(), 3);

    let id = server.init("3000");
    assert_eq!(server.run(&["kaspi", &id, "--no-qr"]).0, 0);
    let (code, out, _) = server.run(&["admin", "payment", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("in_flight") || out.contains("processing"), "{out}");
    let (code, page) = server.json(&["admin", "payments", "--status", "processing"]);
    assert_eq!(code, 0);
    assert_eq!(page["items"][0]["transaction_id"].as_str(), Some(id.as_str()));
    let (code, out, _) = server.run(&["admin", "webhooks", &id]);
    assert_eq!((code, out.trim()), (0, "no webhook events"));
    let (code, out, _) = server.run(&["admin", "review"]);
    assert_eq!((code, out.trim()), (0, "nothing to review"));
    let (code, missing) = server.json(&["admin", "retry", "no-such-event"]);
    assert_eq!((code, missing["code"].as_str()), (4, Some("not_found")));

    // A receiver that is down: its event is listed as failed across payments, then recovered.
    let (code, created) = server.json(&[
        "init",
        "--amount",
        "1000",
        "--webhook-url",
        "http://127.0.0.1:9/hook",
    ]);
    assert_eq!(code, 0, "{created}");
    let down = created["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(server.json(&["cancel", &down]).0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listed = loop {
        let (code, page) = server.json(&[
            "admin",
            "webhooks",
            "failed",
            "--source-id",
            "1",
            "--state",
            "failed",
        ]);
        assert_eq!(code, 0, "{page}");
        if let Some(item) = page["items"].as_array().and_then(|items| items.first()).cloned() {
            break item;
        }
        assert!(std::time::Instant::now() < deadline, "never listed: {page}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        (listed["transaction_id"].as_str(), listed["event"].as_str()),
        (Some(down.as_str()), Some("cancelled"))
    );
    let (code, out, _) = server.run(&["admin", "webhooks", "failed"]);
    assert!(
        code == 0 && out.contains(&down) && out.contains("failed"),
        "{out}"
    );
    let (code, out, _) = server.run(&[
        "admin",
        "webhooks",
        "recover",
        "--source-id",
        "1",
        "--since",
        "2000-01-01 00:00:00",
    ]);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            "1 event(s) of source #1 since 2000-01-01 00:00:00 rescheduled, in order"
        )
    );
    let (code, refused) = server.json(&[
        "admin",
        "webhooks",
        "recover",
        "--source-id",
        "1",
        "--since",
        "вчера",
    ]);
    assert_eq!(
        (code, refused["code"].as_str()),
        (3, Some("validation_error")),
        "{refused}"
    );
}

#[test]
fn sim_terminal_serves_the_protocol_until_stopped() {
    let server = Server::start(0);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_byfly"))
        .args(["sim-terminal", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    let base = first_line.trim().rsplit(' ').next().unwrap().to_owned();
    let state: Value = server.runtime.block_on(async {
        reqwest::get(format!("{base}/sim/state"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(state.is_object(), "{state}");
}

#[test]
fn an_operator_registers_a_terminal_while_the_cashier_accepts_on_its_screen() {
    let server = Server::start(0);
    let simulator = server
        .runtime
        .block_on(Simulator::start_local(SimulatorConfig::default()))
        .unwrap();
    let (code, added) = server.json(&[
        "admin",
        "terminals",
        "add",
        "--name",
        "Касса у окна",
        "--url",
        &simulator.base_url(),
        "--camera-url",
        &simulator.camera_url(),
    ]);
    assert_eq!(code, 0, "{added}");
    assert_eq!(added["needs_registration"], json!(true));
    let id = added["id"].to_string();
    let (_, health) = server.json(&["health"]);
    assert_eq!(health["terminals"]["needs_registration"], json!(1), "{health}");

    // The operator runs the command; it waits while the terminal shows the prompt...
    let command = std::thread::spawn({
        let mut byfly = server.byfly();
        byfly.args(["admin", "terminals", "register", &id]);
        move || finish(&mut byfly)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !simulator.registration_pending() {
        assert!(
            std::time::Instant::now() < deadline,
            "the terminal never showed the prompt"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // ...until the cashier accepts a moment later.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    simulator.approve_registration().unwrap();
    let (code, out, _) = command.join().unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("registration: approved"), "{out}");
    let (_, shown) = server.json(&["admin", "terminals", "show", &id]);
    assert_eq!(
        (&shown["healthy"], &shown["needs_registration"]),
        (&json!(true), &json!(false))
    );

    // A cashier who declines: refused, with the terminal's words.
    simulator.clear_registrations();
    let command = std::thread::spawn({
        let mut byfly = server.byfly();
        byfly.args(["--json", "admin", "terminals", "register", &id]);
        move || finish(&mut byfly)
    });
    while !simulator.registration_pending() {
        assert!(
            std::time::Instant::now() < deadline,
            "the terminal never showed the prompt"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    simulator.decline_registration().unwrap();
    let (code, out, _) = command.join().unwrap();
    let refused: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (code, &refused["code"]),
        (3, &json!("registration_declined")),
        "{refused}"
    );
}

#[test]
fn completions_and_manual_pages_come_from_the_cli_itself() {
    let (code, bash, stderr) =
        finish(Command::new(env!("CARGO_BIN_EXE_byfly")).args(["completions", "bash"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        bash.contains("_byfly()") && bash.contains("kaspi") && bash.contains("--api-url"),
        "{bash}"
    );
    let (code, zsh, _) = finish(Command::new(env!("CARGO_BIN_EXE_byfly")).args(["completions", "zsh"]));
    assert_eq!(code, 0);
    assert!(zsh.starts_with("#compdef byfly"), "{zsh}");
    let (code, _, stderr) = finish(Command::new(env!("CARGO_BIN_EXE_byfly")).args(["completions", "tcsh"]));
    assert_eq!(code, 2, "an unknown shell is a usage error: {stderr}");

    let dir = std::env::temp_dir().join(format!("byfly-man-{}", std::process::id()));
    let (code, _, stderr) =
        finish(Command::new(env!("CARGO_BIN_EXE_byfly")).args(["man", "--dir", dir.to_str().unwrap()]));
    assert_eq!(code, 0, "{stderr}");
    let page = std::fs::read_to_string(dir.join("byfly.1")).unwrap();
    assert!(
        page.contains(".TH byfly") && page.contains("Exit codes"),
        "{page}"
    );
    let kaspi = std::fs::read_to_string(dir.join("byfly-kaspi.1")).unwrap();
    assert!(kaspi.contains("kaspi_gold"), "{kaspi}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A running `byfly listen ARGS` (the address it printed), read to its end by [`Listening::finish`].
struct Listening {
    child: std::process::Child,
    url: String,
}

impl Listening {
    fn start(args: &[&str]) -> Listening {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_byfly"))
            .args(["listen", "--bind", "127.0.0.1:0"])
            .args(args)
            .env_remove("BYFLY_WEBHOOK_SECRET")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        // The rest of stderr is drained so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Listening { child, url }
    }

    /// Waits (bounded: 60 s) for the process to end: its exit code and stdout.
    fn finish(mut self) -> (i32, String) {
        use std::io::Read;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                self.child.kill().ok();
                panic!("byfly listen did not end");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (status.code().unwrap_or(-1), out)
    }
}

/// POSTs `body` to `url` with `headers`: the answer's status.
fn deliver(server: &Server, url: &str, body: &str, headers: &[(String, String)]) -> u16 {
    server.runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send().await.unwrap().status().as_u16()
    })
}

#[test]
fn listen_shows_each_delivery_verified_or_not() {
    let server = Server::start(1);
    let listening = Listening::start(&["--secret", "s3cret", "--count", "2", "--json"]);
    // A delivery whose signature is wrong: refused (400), shown as not verified.
    let forged = r#"{"event":"paid","transaction_id":"A3F5D9E2B1C8","timestamp":1}"#;
    let wrong = SignedHeaders::sign(b"not-the-secret", forged.as_bytes(), 1);
    let headers: Vec<(String, String)> = wrong
        .pairs()
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(deliver(&server, &listening.url, forged, &headers), 400);
    // A real one: the server's `paid` webhook of a payment the simulated customer pays.
    let (code, created) = server.json(&[
        "init",
        "--amount",
        "5000",
        "--webhook-url",
        &listening.url,
        "--webhook-secret",
        "s3cret",
    ]);
    assert_eq!(code, 0, "{created}");
    let id = created["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(server.run(&["kaspi", &id, "--no-qr"]).0, 0);
    assert_eq!(server.run(&["simulate", &id]).0, 0);
    let (code, out) = listening.finish();
    assert_eq!(code, 0, "{out}");
    let lines: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        (lines[0]["verified"].clone(), lines[0]["answered"].clone()),
        (json!(false), json!(400))
    );
    assert_eq!(lines[1]["event"], json!("paid"), "{out}");
    assert_eq!(lines[1]["transaction_id"], json!(id));
    assert_eq!(
        (lines[1]["verified"].clone(), lines[1]["answered"].clone()),
        (json!(true), json!(200)),
        "{out}"
    );
    assert_eq!(lines[1]["body"]["status"], json!("paid"));
}

#[test]
fn listen_forwards_each_delivery_byte_for_byte() {
    let server = Server::start(0);
    // The integrator's own receiver (here another `byfly listen`, checking the same secret), and
    // the listener in front of it.
    let theirs = Listening::start(&["--secret", "s3cret", "--count", "1", "--json"]);
    let front = Listening::start(&["--secret", "s3cret", "--count", "1", "--forward-to", &theirs.url]);
    let body =
        r#"{"event":"paid","transaction_id":"A3F5D9E2B1C8","status":"paid","amount":57000,"timestamp":TS}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = body.replace("TS", &now.to_string());
    let signed = SignedHeaders::sign(b"s3cret", body.as_bytes(), now);
    let mut headers: Vec<(String, String)> = signed
        .pairs()
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    headers.push(("X-Webhook-Event".into(), "paid".into()));
    assert_eq!(deliver(&server, &front.url, &body, &headers), 200);
    let (code, out) = front.finish();
    assert_eq!(code, 0);
    assert!(
        out.contains("A3F5D9E2B1C8") && out.contains("✓ verified") && out.contains("→ 200 (forwarded)"),
        "{out}"
    );
    // Their receiver got the same bytes and headers: its signatures verify there too.
    let (code, out) = theirs.finish();
    assert_eq!(code, 0);
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (line["verified"].clone(), line["event"].clone()),
        (json!(true), json!("paid")),
        "{out}"
    );
    // A receiver that cannot be reached: 502, so the server retries later.
    let nowhere = Listening::start(&["--count", "1", "--forward-to", "http://127.0.0.1:9/"]);
    assert_eq!(deliver(&server, &nowhere.url, &body, &headers), 502);
    assert_eq!(nowhere.finish().0, 0);
}

#[test]
fn profiles_fill_in_the_url_and_tokens_and_flags_still_win() {
    let server = Server::start(0);
    let demo = server.demo();
    let home = std::env::temp_dir().join(format!("byfly-profiles-{}", std::process::id()));
    let config_dir = home.join("byfly");
    std::fs::create_dir_all(&config_dir).unwrap();
    let file = config_dir.join("config.toml");
    std::fs::write(
        &file,
        format!(
            "default = \"demo\"\n\n[profiles.demo]\napi_url = \"{}\"\ntoken = \"{}\"\nadmin_token = \"{}\"\n\n\
             [profiles.elsewhere]\napi_url = \"http://127.0.0.1:9/api\"\n",
            demo.api_url, demo.token, demo.admin_token
        ),
    )
    .unwrap();
    // No BYFLY_* variables: everything comes from the file in $XDG_CONFIG_HOME.
    let byfly = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_byfly"));
        for name in [
            "BYFLY_API_URL",
            "BYFLY_API_TOKEN",
            "BYFLY_ADMIN_TOKEN",
            "BYFLY_PROFILE",
            "BYFLY_CLI_CONFIG",
        ] {
            command.env_remove(name);
        }
        command.env("XDG_CONFIG_HOME", &home).args(args);
        finish(&mut command)
    };
    // The default profile, then the same by name.
    let (code, _, err) = byfly(&["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("chmod 600"),
        "a file of tokens others may read is warned about: {err}"
    );
    assert_eq!(byfly(&["--profile", "demo", "admin", "sources", "list"]).0, 0);
    // Another profile points elsewhere (nothing listens there: unavailable, 6).
    assert_eq!(byfly(&["--profile", "elsewhere", "health"]).0, 6);
    // A flag wins over the profile: a wrong token on the command line is refused (5).
    assert_eq!(byfly(&["--token", &"x".repeat(64), "list"]).0, 5);
    // A profile the file does not hold, a file that does not parse: usage errors (2).
    let (code, _, err) = byfly(&["--profile", "prod", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("demo, elsewhere"), "{err}");
    // The list of profiles never shows a token.
    let (code, out, _) = byfly(&["--json", "profiles"]);
    assert_eq!(code, 0);
    assert!(
        !out.contains(&demo.token) && !out.contains(&demo.admin_token),
        "{out}"
    );
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (listed[0]["name"].clone(), listed[0]["default"].clone()),
        (json!("demo"), json!(true))
    );
    assert_eq!(listed[0]["token"], json!(true));
    std::fs::write(&file, "[profiles.demo]\napi-url = \"x\"\n").unwrap();
    let (code, _, err) = byfly(&["list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("api-url"), "{err}");
    std::fs::remove_dir_all(&home).ok();
}
