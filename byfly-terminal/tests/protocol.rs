//! The terminal client against the simulator, over real TCP: every call, every error class, token
//! refresh, `unknown` → actualize, refunds with their confirmation QR, and each fault mode.

#![cfg(feature = "simulator")]
// Test code: a panic is a failed assertion with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use byfly_core::{Money, ProductType};
use byfly_terminal::simulator::{
    ConfigPatch, FaultMode, Outcome, PayMethod, PayRequest, Simulator, SimulatorConfig,
};
use byfly_terminal::{
    Camera, CameraError, OperationStatus, ProcessStatus, QrScan, Terminal, TerminalConfig, TerminalError,
    TlsMode, payment_url, read_new_qr, read_qr,
};
use serde_json::{Value, json};

async fn start(config: SimulatorConfig) -> (Simulator, Terminal) {
    let simulator = Simulator::start_local(config).await.unwrap();
    let terminal = Terminal::new(&client_config(&simulator), None).unwrap();
    register(&simulator, &terminal).await.unwrap();
    (simulator, terminal)
}

/// Waits (bounded) until `condition` holds.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Registers as on a real terminal: the call waits until the cashier accepts on the screen.
async fn register(
    simulator: &Simulator,
    terminal: &Terminal,
) -> Result<byfly_terminal::Tokens, TerminalError> {
    let (registered, ()) = tokio::join!(terminal.register(), async {
        until("the terminal asks the cashier", || {
            simulator.registration_pending()
        })
        .await;
        simulator.approve_registration().unwrap();
    });
    registered
}

fn client_config(simulator: &Simulator) -> TerminalConfig {
    let mut config = TerminalConfig::new(simulator.base_url());
    config.connect_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_millis(1500);
    config
}

fn camera(simulator: &Simulator) -> Camera {
    Camera::new(simulator.camera_url(), Duration::from_secs(5)).unwrap()
}

fn fast_scan() -> QrScan {
    QrScan {
        interval: Duration::from_millis(50),
        deadline: Duration::from_secs(5),
    }
}

/// The control API over HTTP, as a test or a demo page would use it.
async fn control(simulator: &Simulator, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/sim/{path}", simulator.control_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The process's status and sub-status now.
async fn sub_status(terminal: &Terminal, process_id: &str) -> (ProcessStatus, String) {
    let status = terminal.status(process_id).await.unwrap();
    (status.status, status.sub_status.unwrap_or_default())
}

/// Polls `status` until the process leaves `wait` (bounded: 10 s).
async fn wait_final(terminal: &Terminal, process_id: &str) -> OperationStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let status = terminal.status(process_id).await.unwrap();
        if status.status != ProcessStatus::Wait {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {process_id} never left wait");
}

#[tokio::test]
async fn a_kaspi_kredit_payment_from_start_to_success() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let info = terminal.device_info().await.unwrap();
    assert_eq!(info.terminal_id.as_deref(), Some("30012345"));

    let started = terminal.payment(114_000, false).await.unwrap();
    let qr = read_qr(&camera(&simulator), fast_scan()).await.unwrap();
    assert_eq!(
        simulator.state()["current"]["qr"],
        json!(qr),
        "the camera read the terminal's own QR"
    );
    assert!(qr.starts_with("https://qr.kaspi.kz/"));
    assert_eq!(
        payment_url(&qr),
        qr.replace("https://qr.kaspi.kz/", "https://pay.kaspi.kz/pay/")
    );
    assert_eq!(
        terminal.status(&started.process_id).await.unwrap().status,
        ProcessStatus::Wait
    );

    let (code, _) = control(&simulator, "pay", json!({"product": "Loan"})).await;
    assert_eq!(code, 200);
    let status = terminal.status(&started.process_id).await.unwrap();
    assert_eq!(status.status, ProcessStatus::Success);
    assert_eq!(status.sub_status.as_deref(), Some("QrTransactionSuccess"));
    assert_eq!(status.add_info.product, Some(ProductType::Credit));
    assert_eq!(status.add_info.product_text.as_deref(), Some("Loan"));
    assert_eq!(status.amount, Some(Money::from_tenge(114_000)));
    assert_eq!(status.cheque.method.as_deref(), Some("qr"));
    assert!(status.transaction_id.as_deref().is_some_and(|id| id.len() == 10));
    assert_eq!(
        status.raw["chequeInfo"]["amount"],
        json!("114\u{2009}000\u{2009}₸"),
        "display text as sent"
    );
    assert_eq!(simulator.counters().payments_succeeded, 1);
}

#[tokio::test]
async fn the_customer_may_pay_another_amount_with_another_product() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let started = terminal.payment(100_000, true).await.unwrap();
    simulator
        .pay(PayRequest {
            product: "Gold".into(),
            amount: Some(87_719),
            outcome: Outcome::Success,
            after_ms: 0,
            ..PayRequest::default()
        })
        .unwrap();
    let status = terminal.status(&started.process_id).await.unwrap();
    assert_eq!(
        (status.add_info.product, status.amount),
        (Some(ProductType::Gold), Some(Money::from_tenge(87_719)))
    );
}

#[tokio::test]
async fn one_operation_at_a_time() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let first = terminal.payment(1_000, false).await.unwrap();
    let second = terminal.payment(2_000, false).await;
    assert!(
        matches!(second, Err(TerminalError::Busy(ref text)) if text.contains("busy")),
        "{second:?}"
    );
    assert_eq!(simulator.counters().busy_answers, 1);
    // A slow customer: the operation stays busy until the payment lands.
    simulator
        .pay(PayRequest {
            product: "Red".into(),
            amount: None,
            outcome: Outcome::Success,
            after_ms: 1500,
            ..PayRequest::default()
        })
        .unwrap();
    assert_eq!(
        terminal.status(&first.process_id).await.unwrap().status,
        ProcessStatus::Wait
    );
    assert!(matches!(
        terminal.payment(2_000, false).await,
        Err(TerminalError::Busy(_))
    ));
    assert_eq!(
        wait_final(&terminal, &first.process_id).await.status,
        ProcessStatus::Success
    );
    assert!(
        terminal.payment(2_000, false).await.is_ok(),
        "free again once final"
    );
}

#[tokio::test]
async fn unknown_processes_and_bad_parameters() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    assert!(matches!(
        terminal.status("404404").await,
        Err(TerminalError::ProcessNotFound(_))
    ));
    assert!(matches!(
        terminal.actualize("404404").await,
        Err(TerminalError::ProcessNotFound(_))
    ));
    assert!(
        matches!(
            terminal.cancel("404404").await,
            Err(TerminalError::Other { code: 404, .. })
        ),
        "a realistic terminal has no remote cancel"
    );
    assert!(matches!(
        terminal.payment(0, false).await,
        Err(TerminalError::BadParameter(_))
    ));
    assert!(matches!(
        terminal.refund("qr", 10, "no-such-transaction", false).await,
        Err(TerminalError::BadParameter(_))
    ));
    assert_eq!(simulator.counters().not_found_answers, 2);
}

#[tokio::test]
async fn expired_tokens_are_refreshed_once_and_handed_back() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let original = terminal.tokens().unwrap();
    assert!(original.expires_at.is_some(), "expirationDate parsed");
    simulator.expire_tokens();
    terminal.device_info().await.unwrap();
    let refreshed = terminal.take_refreshed_tokens().expect("new tokens to persist");
    assert_ne!(refreshed.access_token, original.access_token);
    assert_eq!(terminal.take_refreshed_tokens(), None, "handed back once");
    assert_eq!(simulator.counters().auth_rejections, 1);
    assert_eq!(simulator.counters().calls["revoke"], 1);

    assert_eq!(
        simulator.counters().expired_token_answers,
        1,
        "an expired token is a 403"
    );

    // A client holding tokens the refresh replaced: its access token is no longer known (401) and
    // its refresh token was spent, so it needs registering again.
    let stale = Terminal::new(&client_config(&simulator), Some(original)).unwrap();
    let refused = stale.device_info().await;
    assert!(
        matches!(refused, Err(TerminalError::NeedsRegistration(_))),
        "{refused:?}"
    );
    // A client never registered needs registering, without calling the terminal.
    let unregistered = Terminal::new(&client_config(&simulator), None).unwrap();
    let calls = simulator.counters().calls.values().sum::<u64>();
    assert!(matches!(
        unregistered.payment(10, false).await,
        Err(TerminalError::NeedsRegistration(_))
    ));
    assert_eq!(simulator.counters().calls.values().sum::<u64>(), calls);
}

#[tokio::test]
async fn concurrent_calls_refused_together_refresh_once() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    simulator.expire_tokens();
    let (a, b, c) = tokio::join!(
        terminal.device_info(),
        terminal.device_info(),
        terminal.device_info()
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");
    assert_eq!(
        simulator.counters().calls["revoke"],
        1,
        "one refresh for all three"
    );
}

#[tokio::test]
async fn revoke_needs_the_current_access_token() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let tokens = terminal.tokens().unwrap();
    let revoke = |access: Option<&str>| {
        let mut request = reqwest::Client::new()
            .get(format!("{}/v2/revoke", simulator.base_url()))
            .query(&[
                ("name", "ByFly Payment Center"),
                ("refreshToken", tokens.refresh_token.as_str()),
            ]);
        if let Some(access) = access {
            request = request.header("accesstoken", access.to_owned());
        }
        request.send()
    };
    assert_eq!(revoke(None).await.unwrap().status(), 401);
    assert_eq!(revoke(Some("not-a-token")).await.unwrap().status(), 401);
    // The client sends it: a refresh works, with an expired token too.
    simulator.expire_tokens();
    terminal.refresh().await.unwrap();
    assert!(terminal.device_info().await.is_ok());
}

#[tokio::test]
async fn registration_waits_for_the_cashier_and_a_late_approval_leaves_the_name_taken() {
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let mut config = client_config(&simulator);
    config.register_timeout = Duration::from_millis(300);
    let impatient = Terminal::new(&config, None).unwrap();
    let gave_up = impatient.register().await;
    assert!(
        matches!(gave_up, Err(TerminalError::Timeout(ref text)) if text.contains("cashier")),
        "{gave_up:?}"
    );
    assert!(
        simulator.registration_pending(),
        "the prompt is still on the screen"
    );
    // The cashier accepts later: the name is registered, but nobody holds its tokens.
    simulator.approve_registration().unwrap();
    let again = impatient.register().await;
    assert!(
        matches!(again, Err(TerminalError::AlreadyRegistered(_))),
        "{again:?}"
    );
    assert_eq!(simulator.counters().already_registered_answers, 1);
    // Cleared in the terminal's admin panel, it can be registered again (and waits again).
    simulator.clear_registrations();
    let patient = Terminal::new(&client_config(&simulator), None).unwrap();
    register(&simulator, &patient).await.unwrap();
    assert!(patient.device_info().await.is_ok());
}

#[tokio::test]
async fn registration_the_cashier_declines() {
    let simulator = Simulator::start_local(SimulatorConfig::default()).await.unwrap();
    let terminal = Terminal::new(&client_config(&simulator), None).unwrap();
    let (refused, ()) = tokio::join!(terminal.register(), async {
        until("the terminal asks the cashier", || {
            simulator.registration_pending()
        })
        .await;
        let (code, _) = control(&simulator, "decline-registration", json!({})).await;
        assert_eq!(code, 200);
    });
    assert!(
        matches!(refused, Err(TerminalError::RegistrationDeclined(ref text)) if text.contains("declined")),
        "{refused:?}"
    );
    let (code, _) = control(&simulator, "approve-registration", json!({})).await;
    assert_eq!(code, 409, "nothing waits for the cashier any more");
    // The friendlier `auto` knob, turned on here to test the knob itself: the cashier accepts at once.
    let (code, knobs) = control(&simulator, "config", json!({"register": "auto"})).await;
    assert_eq!((code, &knobs["register"]), (200, &json!("auto")));
    assert!(terminal.register().await.is_ok());
}

#[tokio::test]
async fn unknown_is_actualized_until_the_terminal_knows() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let started = terminal.payment(50_000, false).await.unwrap();
    let (code, _) = control(
        &simulator,
        "pay",
        json!({"product": "Gold", "outcome": "unknown"}),
    )
    .await;
    assert_eq!(code, 200);
    let status = terminal.status(&started.process_id).await.unwrap();
    assert_eq!(status.status, ProcessStatus::Unknown);
    assert!(status.message.is_some());
    // Unknown keeps the terminal locked: the customer may have been charged.
    assert!(matches!(
        terminal.payment(1, false).await,
        Err(TerminalError::Busy(_))
    ));
    assert_eq!(
        terminal.actualize(&started.process_id).await.unwrap().status,
        ProcessStatus::Unknown
    );
    let (code, _) = control(&simulator, "resolve-unknown", json!({"outcome": "success"})).await;
    assert_eq!(code, 200);
    let actualized = terminal.actualize(&started.process_id).await.unwrap();
    assert_eq!(actualized.status, ProcessStatus::Success);
    assert_eq!(actualized.amount, Some(Money::from_tenge(50_000)));
    // Once final, actualize is refused with 103.
    assert!(matches!(
        terminal.actualize(&started.process_id).await,
        Err(TerminalError::CannotActualize(_))
    ));
    assert!(terminal.payment(1, false).await.is_ok());
}

#[tokio::test]
async fn refunds_need_the_customers_confirmation_through_a_qr() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let payment = terminal.payment(10_000, false).await.unwrap();
    let payment_qr = read_qr(&camera(&simulator), fast_scan()).await.unwrap();
    simulator
        .pay(PayRequest {
            product: "Gold".into(),
            amount: None,
            outcome: Outcome::Success,
            after_ms: 0,
            ..PayRequest::default()
        })
        .unwrap();
    let paid = terminal.status(&payment.process_id).await.unwrap();
    let transaction_id = paid.transaction_id.unwrap();
    let method = paid.cheque.method.unwrap();

    assert!(matches!(
        terminal.refund(&method, 10_001, &transaction_id, false).await,
        Err(TerminalError::BadParameter(_))
    ));
    let refund = terminal
        .refund(&method, 4_000, &transaction_id, false)
        .await
        .unwrap();
    assert_eq!(
        sub_status(&terminal, &refund.process_id).await,
        (ProcessStatus::Wait, "Initialize".to_owned()),
        "the confirmation QR takes a few seconds to appear"
    );
    let confirmation = read_new_qr(&camera(&simulator), fast_scan(), &[payment_qr.as_str()])
        .await
        .unwrap();
    assert!(confirmation.starts_with("https://qr.kaspi.kz/r"));
    assert_eq!(
        sub_status(&terminal, &refund.process_id).await,
        (ProcessStatus::Wait, "ProcessRefund".to_owned())
    );
    assert_eq!(
        terminal.status(&refund.process_id).await.unwrap().status,
        ProcessStatus::Wait
    );
    let (code, _) = control(&simulator, "pay", json!({})).await;
    assert_eq!(code, 200, "the customer confirms in the Kaspi app");
    let refunded = terminal.status(&refund.process_id).await.unwrap();
    assert_eq!(refunded.status, ProcessStatus::Success);
    assert_eq!(refunded.cheque.kind.as_deref(), Some("refund"));
    assert_eq!(
        refunded.amount,
        Some(Money::from_tenge(-4_000)),
        "`- 4 000 ₸` keeps its sign"
    );
    // What is left can be refunded; more cannot.
    assert!(matches!(
        terminal.refund(&method, 6_001, &transaction_id, false).await,
        Err(TerminalError::BadParameter(_))
    ));
    assert!(
        terminal
            .refund(&method, 6_000, &transaction_id, false)
            .await
            .is_ok()
    );
    assert_eq!(simulator.counters().refunds_succeeded, 1);
}

#[tokio::test]
async fn cancel_exists_only_on_a_friendlier_terminal_and_deadlines_end_unpaid_operations() {
    let config = SimulatorConfig {
        operation_timeout: Duration::from_millis(300),
        ..SimulatorConfig::default()
    };
    let (simulator, terminal) = start(config).await;
    let unpaid = terminal.payment(500, false).await.unwrap();
    assert!(
        terminal.cancel(&unpaid.process_id).await.is_err(),
        "no remote cancel"
    );
    assert_eq!(
        terminal.status(&unpaid.process_id).await.unwrap().status,
        ProcessStatus::Wait,
        "the cancel changed nothing"
    );
    let status = wait_final(&terminal, &unpaid.process_id).await;
    assert_eq!(status.status, ProcessStatus::Fail);
    assert_eq!(status.message.as_deref(), Some("Operation timed out"));

    // The knob: a terminal that honours /v2/cancel.
    simulator.configure(&ConfigPatch {
        remote_cancel: Some(true),
        ..ConfigPatch::default()
    });
    let cancelled = terminal.payment(500, false).await.unwrap();
    terminal.cancel(&cancelled.process_id).await.unwrap();
    let status = terminal.status(&cancelled.process_id).await.unwrap();
    assert_eq!(
        (status.status, status.sub_status.as_deref()),
        (ProcessStatus::Fail, Some("ProcessCancelled"))
    );
}

#[tokio::test]
async fn declined_payment_fails() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let started = terminal.payment(500, false).await.unwrap();
    let (code, _) = control(&simulator, "pay", json!({"outcome": "fail"})).await;
    assert_eq!(code, 200);
    let status = terminal.status(&started.process_id).await.unwrap();
    assert_eq!(
        (status.status, status.sub_status.as_deref()),
        (ProcessStatus::Fail, Some("QrTransactionFailure"))
    );
    // Nothing waits for the customer any more.
    let (code, body) = control(&simulator, "pay", json!({})).await;
    assert_eq!(code, 409, "{body}");
}

#[tokio::test]
async fn every_fault_mode_maps_to_its_error() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;

    let (code, _) = control(&simulator, "fault", json!({"mode": "down"})).await;
    assert_eq!(
        code, 200,
        "the control API stays reachable while the device is down"
    );
    let down = terminal.device_info().await;
    assert!(matches!(down, Err(ref err) if err.is_unreachable()), "{down:?}");

    control(&simulator, "fault", json!({"mode": "timeout"})).await;
    let timeout = terminal.device_info().await;
    assert!(matches!(timeout, Err(TerminalError::Timeout(_))), "{timeout:?}");

    control(&simulator, "fault", json!({"mode": "http500"})).await;
    let http500 = terminal.device_info().await;
    assert!(
        matches!(http500, Err(TerminalError::Protocol { ref detail, ref body }) if detail.contains("HTTP 500") && body.contains("500")),
        "{http500:?}"
    );

    control(&simulator, "fault", json!({"mode": "garbage"})).await;
    assert!(matches!(
        terminal.device_info().await,
        Err(TerminalError::Protocol { .. })
    ));

    control(&simulator, "fault", json!({"mode": "no_qr"})).await;
    terminal.payment(100, false).await.unwrap();
    let scan = QrScan {
        interval: Duration::from_millis(50),
        deadline: Duration::from_millis(400),
    };
    let no_qr = read_qr(&camera(&simulator), scan).await;
    assert!(
        matches!(no_qr, Err(CameraError::QrNotFound { frames, .. }) if frames >= 1),
        "{no_qr:?}"
    );

    // A fault with a duration ends by itself.
    let (code, _) = control(&simulator, "fault", json!({"mode": "garbage", "for_ms": 1000})).await;
    assert_eq!(code, 200);
    assert!(terminal.device_info().await.is_err());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut recovered = false;
    while !recovered && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        recovered = terminal.device_info().await.is_ok();
    }
    assert!(recovered, "the fault ended by itself");
    assert_eq!(
        read_qr(&camera(&simulator), fast_scan()).await.map(|qr| qr.len()),
        Ok(36)
    );
    let (code, state) = control(&simulator, "fault", json!({"mode": "none"})).await;
    assert_eq!((code, &state["fault"]), (200, &json!("none")));

    // The same through the library handle, as the server's demo mode drives it.
    simulator.set_fault(FaultMode::Down, None);
    assert!(
        terminal
            .device_info()
            .await
            .is_err_and(|err| err.is_unreachable())
    );
    simulator.set_fault(FaultMode::None, None);
    assert!(terminal.device_info().await.is_ok());
}

#[tokio::test]
async fn unreachable_terminal_and_bad_control_requests() {
    // Nothing listens on a port we bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let terminal = Terminal::new(&TerminalConfig::new(format!("http://127.0.0.1:{port}")), None).unwrap();
    assert!(matches!(
        terminal.register().await,
        Err(TerminalError::Unreachable(_))
    ));

    let (simulator, _terminal) = start(SimulatorConfig::default()).await;
    let (code, body) = control(&simulator, "fault", json!({"mode": "explode"})).await;
    assert_eq!(code, 400, "{body}");
    let (code, _) = control(&simulator, "resolve-unknown", json!({"outcome": "success"})).await;
    assert_eq!(code, 409, "nothing is unknown");
}

#[tokio::test]
async fn tls_settings_are_checked_up_front() {
    let mut config = TerminalConfig::new("https://terminal.local:8080");
    config.tls = TlsMode::VerifyAs {
        server_name: "pos.kaspipos.kz".into(),
    };
    assert!(
        matches!(Terminal::new(&config, None), Err(TerminalError::Config(_))),
        "VerifyAs needs an IP"
    );
    config.base_url = "https://192.168.1.50:8080".into();
    assert!(Terminal::new(&config, None).is_ok());
    config.tls = TlsMode::Insecure;
    assert!(Terminal::new(&config, None).is_ok());
    assert!(matches!(
        Terminal::new(&TerminalConfig::new("not a url"), None),
        Err(TerminalError::Config(_))
    ));
}

#[tokio::test]
async fn png_snapshots_decode_too() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    terminal.payment(777, false).await.unwrap();
    let png = Camera::new(
        format!("{}?format=png", simulator.camera_url()),
        Duration::from_secs(5),
    )
    .unwrap();
    let qr = read_qr(&png, fast_scan()).await.unwrap();
    assert_eq!(simulator.state()["current"]["qr"], json!(qr));
}

#[tokio::test]
async fn sub_statuses_follow_the_customer_and_cheques_read_like_the_terminals() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let started = terminal.payment(114_000, false).await.unwrap();
    assert_eq!(
        sub_status(&terminal, &started.process_id).await,
        (ProcessStatus::Wait, "Initialize".to_owned())
    );
    read_qr(&camera(&simulator), fast_scan()).await.unwrap();
    assert_eq!(
        sub_status(&terminal, &started.process_id).await,
        (ProcessStatus::Wait, "WaitUser".to_owned())
    );
    simulator
        .pay(PayRequest {
            product: "Loan".into(),
            after_ms: 300,
            ..PayRequest::default()
        })
        .unwrap();
    assert_eq!(
        sub_status(&terminal, &started.process_id).await,
        (ProcessStatus::Wait, "WaitForQrConfirmation".to_owned())
    );
    let paid = wait_final(&terminal, &started.process_id).await;
    assert_eq!(paid.sub_status.as_deref(), Some("QrTransactionSuccess"));
    assert_eq!(
        paid.raw["chequeInfo"]["status"],
        json!("Покупка с Kaspi Кредит. Одобрено")
    );
    assert_eq!(paid.raw["addInfo"]["LoanTerm"], json!(12), "a number");
    assert_eq!(paid.raw["addInfo"]["IsOffer"], json!(false), "a boolean");
    assert_eq!(paid.add_info.loan_term.as_deref(), Some("12"));

    // The refund: its own sub-status, and a transactionId of its own.
    let payment_id = paid.transaction_id.clone().unwrap();
    let refund = terminal.refund("qr", 14_000, &payment_id, false).await.unwrap();
    simulator.pay(PayRequest::default()).unwrap();
    let refunded = terminal.status(&refund.process_id).await.unwrap();
    assert_eq!(refunded.status, ProcessStatus::Success);
    assert_eq!(
        refunded.raw["chequeInfo"]["status"],
        json!("Возврат успешно совершен")
    );
    let refund_id = refunded.transaction_id.unwrap();
    assert_ne!(refund_id, payment_id, "a refund's transactionId is new");
    let movements = simulator.movements();
    assert_eq!(movements.len(), 2);
    assert_eq!(
        (movements[1].amount, movements[1].refund_of.as_deref()),
        (14_000, Some(payment_id.as_str()))
    );
    assert_eq!(simulator.state()["refunded_total"], json!(14_000));
}

#[tokio::test]
async fn a_card_payment_needs_no_qr_and_its_refund_shows_none() {
    let (simulator, terminal) = start(SimulatorConfig {
        stale_qr: Duration::ZERO,
        ..SimulatorConfig::default()
    })
    .await;
    let started = terminal.payment(5_000, false).await.unwrap();
    simulator
        .pay(PayRequest {
            method: PayMethod::Card,
            ..PayRequest::default()
        })
        .unwrap();
    let paid = terminal.status(&started.process_id).await.unwrap();
    assert_eq!(paid.sub_status.as_deref(), Some("CardTransactionSuccess"));
    assert_eq!(paid.cheque.method.as_deref(), Some("card"));
    let rrn = paid.cheque.rrn.clone().unwrap();
    assert_eq!(
        paid.transaction_id.as_deref(),
        Some(rrn.as_str()),
        "a card payment is refunded by its rrn"
    );
    assert!(paid.raw["chequeInfo"]["cardMask"].is_string());
    assert!(paid.raw["chequeInfo"]["authorizationCode"].is_string());

    terminal.refund("card", 5_000, &rrn, false).await.unwrap();
    let scan = QrScan {
        interval: Duration::from_millis(50),
        deadline: Duration::from_millis(400),
    };
    assert!(
        matches!(
            read_qr(&camera(&simulator), scan).await,
            Err(CameraError::QrNotFound { .. })
        ),
        "a card refund shows no QR"
    );
}

#[tokio::test]
async fn the_screen_shows_the_previous_qr_for_a_moment() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    terminal.payment(100, false).await.unwrap();
    let first = read_qr(&camera(&simulator), fast_scan()).await.unwrap();
    simulator.pay(PayRequest::default()).unwrap();
    terminal.payment(200, false).await.unwrap();
    // Read at once, the camera still sees the finished operation's QR...
    assert_eq!(read_qr(&camera(&simulator), fast_scan()).await.unwrap(), first);
    // ...which the reader skips until the new one is drawn.
    let second = read_new_qr(&camera(&simulator), fast_scan(), &[first.as_str()])
        .await
        .unwrap();
    assert_ne!(second, first);
    assert_eq!(simulator.state()["current"]["qr"], json!(second));
}

#[tokio::test]
async fn processes_are_forgotten_after_a_while_and_on_reboot() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    let (code, _) = control(&simulator, "config", json!({"forget_finished_after_ms": 200})).await;
    assert_eq!(code, 200);
    let finished = terminal.payment(100, false).await.unwrap();
    simulator.pay(PayRequest::default()).unwrap();
    assert_eq!(
        terminal.status(&finished.process_id).await.unwrap().status,
        ProcessStatus::Success
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match terminal.status(&finished.process_id).await {
            Err(TerminalError::ProcessNotFound(_)) => break,
            other => assert!(std::time::Instant::now() < deadline, "never forgotten: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let waiting = terminal.payment(100, false).await.unwrap();
    let tokens = terminal.tokens();
    let (code, _) = control(&simulator, "reboot", json!({})).await;
    assert_eq!(code, 200);
    assert!(matches!(
        terminal.status(&waiting.process_id).await,
        Err(TerminalError::ProcessNotFound(_))
    ));
    assert!(
        terminal.payment(100, false).await.is_ok(),
        "free after the reboot"
    );
    assert_eq!(terminal.tokens(), tokens, "tokens survive a reboot");
    let (code, body) = control(&simulator, "config", json!({"no_such_knob": 1})).await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn a_lost_answer_may_have_started_the_payment() {
    let (simulator, terminal) = start(SimulatorConfig::default()).await;
    simulator.set_fault(FaultMode::LostAnswer, Some(Duration::from_secs(3)));
    let lost = terminal.payment(100, false).await;
    assert!(
        matches!(lost, Err(ref err) if err.may_have_acted() && !err.is_unreachable()),
        "{lost:?}"
    );
    assert_eq!(
        simulator.state()["current"]["status"],
        json!("wait"),
        "it did start"
    );
    simulator.set_fault(FaultMode::None, None);
    assert!(matches!(
        terminal.payment(100, false).await,
        Err(TerminalError::Busy(_))
    ));
}

/// A one-connection HTTP server that answers every request with `response` as raw bytes.
async fn raw_server(response: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            // Read the request's head (a GET has no body), then answer.
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            stream.write_all(response).await.ok();
            stream.shutdown().await.ok();
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn unusual_http_statuses_neither_hang_nor_mislead() {
    // One public simulator sets the HTTP status to the statusCode: `107` is a 1xx status.
    let informational = raw_server(
        b"HTTP/1.1 107 Busy\r\nContent-Type: application/json\r\nContent-Length: 46\r\nConnection: close\r\n\r\n{\"statusCode\":107,\"errorText\":\"Terminal busy\"}",
    )
    .await;
    let mut config = TerminalConfig::new(informational);
    config.request_timeout = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let terminal = Terminal::new(&config, None).unwrap();
    let answer = terminal.register().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no hang: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(answer, Err(ref err) if err.may_have_acted() && !err.is_unreachable()),
        "{answer:?}"
    );
    // An odd but final status with an envelope is read as the envelope.
    let teapot = raw_server(
        b"HTTP/1.1 418 Odd\r\nContent-Type: application/json\r\nContent-Length: 46\r\nConnection: close\r\n\r\n{\"statusCode\":107,\"errorText\":\"Terminal busy\"}",
    )
    .await;
    let terminal = Terminal::new(&TerminalConfig::new(teapot), None).unwrap();
    assert!(
        matches!(terminal.register().await, Err(TerminalError::RegistrationDeclined(ref t)) if t.contains("107"))
    );
}
