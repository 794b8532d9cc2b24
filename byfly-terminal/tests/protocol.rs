//! The terminal client against the simulator, over real TCP: every call, every error class, token
//! refresh, `unknown` → actualize, refunds with their confirmation QR, and each fault mode.

#![cfg(feature = "simulator")]
// Test code: a panic is a failed assertion with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use byfly_core::{Money, ProductType};
use byfly_terminal::simulator::{FaultMode, Outcome, PayRequest, Simulator, SimulatorConfig};
use byfly_terminal::{
    Camera, CameraError, OperationStatus, ProcessStatus, QrScan, Terminal, TerminalConfig, TerminalError,
    TlsMode, payment_url, read_qr,
};
use serde_json::{Value, json};

async fn start(config: SimulatorConfig) -> (Simulator, Terminal) {
    let simulator = Simulator::start_local(config).await.unwrap();
    let terminal = Terminal::new(&client_config(&simulator), None).unwrap();
    terminal.register().await.unwrap();
    (simulator, terminal)
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
        .post(format!("{}/sim/{path}", simulator.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
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
    assert!(matches!(
        terminal.cancel("404404").await,
        Err(TerminalError::ProcessNotFound(_))
    ));
    assert!(matches!(
        terminal.payment(0, false).await,
        Err(TerminalError::BadParameter(_))
    ));
    assert!(matches!(
        terminal.refund("qr", 10, "no-such-transaction").await,
        Err(TerminalError::BadParameter(_))
    ));
    assert_eq!(simulator.counters().not_found_answers, 3);
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

    // A client holding stale tokens whose refresh token was already used cannot recover: Auth.
    let stale = Terminal::new(&client_config(&simulator), Some(original)).unwrap();
    assert!(matches!(stale.device_info().await, Err(TerminalError::Auth(_))));
    // A client never registered gets Auth without calling the terminal.
    let unregistered = Terminal::new(&client_config(&simulator), None).unwrap();
    assert!(matches!(
        unregistered.payment(10, false).await,
        Err(TerminalError::Auth(_))
    ));
}

#[tokio::test]
async fn registration_the_cashier_declines() {
    let config = SimulatorConfig {
        auto_accept_register: false,
        ..SimulatorConfig::default()
    };
    let simulator = Simulator::start_local(config).await.unwrap();
    let terminal = Terminal::new(&client_config(&simulator), None).unwrap();
    let refused = terminal.register().await;
    assert!(
        matches!(refused, Err(TerminalError::Other { code: 2, ref text }) if text.contains("declined")),
        "{refused:?}"
    );
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
    simulator
        .pay(PayRequest {
            product: "Gold".into(),
            amount: None,
            outcome: Outcome::Success,
            after_ms: 0,
        })
        .unwrap();
    let paid = terminal.status(&payment.process_id).await.unwrap();
    let transaction_id = paid.transaction_id.unwrap();
    let method = paid.cheque.method.unwrap();

    assert!(matches!(
        terminal.refund(&method, 10_001, &transaction_id).await,
        Err(TerminalError::BadParameter(_))
    ));
    let refund = terminal.refund(&method, 4_000, &transaction_id).await.unwrap();
    let confirmation = read_qr(&camera(&simulator), fast_scan()).await.unwrap();
    assert!(confirmation.starts_with("https://qr.kaspi.kz/"));
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
        terminal.refund(&method, 6_001, &transaction_id).await,
        Err(TerminalError::BadParameter(_))
    ));
    assert!(terminal.refund(&method, 6_000, &transaction_id).await.is_ok());
    assert_eq!(simulator.counters().refunds_succeeded, 1);
}

#[tokio::test]
async fn cancel_ends_a_waiting_operation_and_deadlines_end_forgotten_ones() {
    let config = SimulatorConfig {
        operation_timeout: Duration::from_millis(300),
        ..SimulatorConfig::default()
    };
    let (_simulator, terminal) = start(config).await;
    let cancelled = terminal.payment(500, false).await.unwrap();
    terminal.cancel(&cancelled.process_id).await.unwrap();
    let status = terminal.status(&cancelled.process_id).await.unwrap();
    assert_eq!(
        (status.status, status.sub_status.as_deref()),
        (ProcessStatus::Fail, Some("ProcessCancelled"))
    );

    let forgotten = terminal.payment(500, false).await.unwrap();
    let status = wait_final(&terminal, &forgotten.process_id).await;
    assert_eq!(status.status, ProcessStatus::Fail);
    assert_eq!(status.message.as_deref(), Some("Operation timed out"));
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
