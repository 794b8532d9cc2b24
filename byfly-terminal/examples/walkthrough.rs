//! A payment on a simulated terminal, start to end, as the server will run it: start a simulator,
//! register (the simulated cashier accepts), start a payment, read the QR from the camera, let the customer pay with Kaspi Кредит,
//! and read the terminal's answer.
//!
//! `cargo run -p byfly-terminal --features simulator --example walkthrough`

use std::time::Duration;

use byfly_terminal::simulator::{PayRequest, Simulator, SimulatorConfig};
use byfly_terminal::{Camera, QrScan, Terminal, TerminalConfig, payment_url, read_qr};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let simulator = Simulator::start_local(SimulatorConfig::default()).await?;
    println!(
        "simulated terminal at {} (camera {})",
        simulator.base_url(),
        simulator.camera_url()
    );

    let terminal = Terminal::new(&TerminalConfig::new(simulator.base_url()), None)?;
    // `register` waits for a cashier to accept on the screen; here the simulated cashier does.
    let (registered, _) = tokio::join!(terminal.register(), async {
        while !simulator.registration_pending() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        simulator.approve_registration()
    });
    registered?;
    let info = terminal.device_info().await?;
    println!("registered; terminalId {}", info.terminal_id.unwrap_or_default());

    let started = terminal.payment(114_000, false).await?;
    println!("payment of 114 000 ₸ started: processId {}", started.process_id);
    let camera = Camera::new(simulator.camera_url(), Duration::from_secs(5))?;
    let qr = read_qr(&camera, QrScan::default()).await?;
    println!("QR read from the camera: {qr}");
    println!("payment link for the customer: {}", payment_url(&qr));

    simulator.pay(PayRequest {
        product: "Loan".into(),
        ..PayRequest::default()
    })?;
    let status = terminal.status(&started.process_id).await?;
    println!(
        "terminal says: {} ({}), product {}, paid {}, transactionId {}",
        status.status.as_str(),
        status.sub_status.unwrap_or_default(),
        status.add_info.product_text.unwrap_or_default(),
        status.amount.map(|a| a.to_string()).unwrap_or_default(),
        status.transaction_id.unwrap_or_default()
    );
    Ok(())
}
