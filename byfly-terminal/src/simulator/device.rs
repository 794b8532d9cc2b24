//! The simulated device: tokens, the one process a terminal runs at a time, payments and refunds,
//! and the faults tests can switch on. Pure state driven by calls and a clock passed in, so the
//! HTTP layer stays thin.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::protocol::{ProcessStatus, codes};

use super::render::CameraStyle;

/// How the simulated terminal behaves.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// `terminalId` of `deviceinfo`.
    pub terminal_id: String,
    /// `serialNum` of `deviceinfo`.
    pub serial_num: String,
    /// `posNum` of `deviceinfo`.
    pub pos_num: String,
    /// Whether the cashier accepts `register` (true: at once).
    pub auto_accept_register: bool,
    /// How long an access token lives.
    pub token_ttl: Duration,
    /// When an operation nobody pays ends with `fail` (a real terminal: ≈180 s scan + 60 s confirm).
    pub operation_timeout: Duration,
    /// The camera.
    pub camera: CameraStyle,
    /// Store name printed on cheques.
    pub store_name: String,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            terminal_id: "30012345".to_owned(),
            serial_num: "SIM0000000001".to_owned(),
            pos_num: "1".to_owned(),
            auto_accept_register: true,
            token_ttl: Duration::from_secs(24 * 3600),
            operation_timeout: Duration::from_secs(240),
            camera: CameraStyle::default(),
            store_name: "ByFly Travel".to_owned(),
        }
    }
}

/// What the customer (or the terminal) makes of the current operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Paid (or refund confirmed).
    #[default]
    Success,
    /// Declined.
    Fail,
    /// The terminal loses track: the customer may have been charged.
    Unknown,
}

/// `POST /sim/pay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayRequest {
    /// `Gold`, `Red`, `Loan`, `Credit` or `Installment`.
    #[serde(default = "default_product")]
    pub product: String,
    /// Gross amount paid, whole tenge (default: the amount the terminal asked for).
    #[serde(default)]
    pub amount: Option<i64>,
    /// Default `success`.
    #[serde(default)]
    pub outcome: Outcome,
    /// Act this many milliseconds later (the customer is slow).
    #[serde(default)]
    pub after_ms: u64,
}

fn default_product() -> String {
    "Gold".to_owned()
}

/// Ways to make the terminal misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Behave.
    #[default]
    None,
    /// Refuse connections (the device is off the network).
    Down,
    /// Accept requests and never answer in time.
    Timeout,
    /// Answer HTTP 500 with an HTML page.
    Http500,
    /// Answer HTTP 200 with a body that is not JSON.
    Garbage,
    /// The camera sees no QR.
    NoQr,
}

/// `POST /sim/fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRequest {
    /// The mode.
    pub mode: FaultMode,
    /// For how long (forever when absent).
    #[serde(default)]
    pub for_ms: Option<u64>,
}

/// Counters of what the terminal received and refused, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Calls received, by call name (`payment`, `status`, `camera`, ...).
    pub calls: HashMap<String, u64>,
    /// `107` answers: a second operation attempted while one was running.
    pub busy_answers: u64,
    /// `101` answers.
    pub not_found_answers: u64,
    /// 401 answers for a missing, unknown or expired token.
    pub auth_rejections: u64,
    /// Payments that ended in success.
    pub payments_succeeded: u64,
    /// Refunds that ended in success.
    pub refunds_succeeded: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Payment,
    Refund { transaction_id: String, method: String },
}

#[derive(Debug, Clone)]
struct Paid {
    product: String,
    gross: i64,
    transaction_id: String,
}

#[derive(Debug, Clone)]
struct Process {
    id: String,
    kind: Kind,
    amount: i64,
    qr_text: String,
    deadline: Instant,
    status: ProcessStatus,
    sub_status: &'static str,
    message: Option<String>,
    /// A customer action waiting for its time (`after_ms`).
    scheduled: Option<(Instant, PayRequest)>,
    /// What a later actualize answers for an `unknown` process.
    resolution: Option<Outcome>,
    /// The product and gross once the customer paid (kept through `unknown`).
    paid: Option<Paid>,
    /// Date text of the cheque.
    cheque_date: String,
}

/// A successful payment, refundable up to its amount.
#[derive(Debug, Clone)]
struct Transaction {
    amount: i64,
    refunded: i64,
}

/// An answer of the protocol side: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub http: u16,
    /// The JSON body.
    pub body: Value,
}

fn ok(data: Value) -> Answer {
    Answer {
        http: 200,
        body: json!({"statusCode": 0, "data": data}),
    }
}

fn error(code: i64, text: &str) -> Answer {
    Answer {
        http: 200,
        body: json!({"statusCode": code, "errorText": text}),
    }
}

/// The whole device.
#[derive(Debug)]
pub struct Device {
    config: SimulatorConfig,
    integration_name: Option<String>,
    /// access token → expiry.
    access_tokens: HashMap<String, Instant>,
    refresh_tokens: Vec<String>,
    current: Option<String>,
    processes: HashMap<String, Process>,
    transactions: HashMap<String, Transaction>,
    fault: FaultMode,
    fault_until: Option<Instant>,
    counters: Counters,
    frame_seed: u64,
}

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `114 000 ₸` with thin spaces between thousands, as the terminal prints amounts on cheques.
pub fn display_amount(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push('\u{2009}');
        }
        grouped.push(c);
    }
    if amount < 0 {
        format!("-\u{2009}{grouped}\u{2009}₸")
    } else {
        format!("{grouped}\u{2009}₸")
    }
}

impl Device {
    /// A fresh device.
    pub fn new(config: SimulatorConfig) -> Device {
        Device {
            config,
            integration_name: None,
            access_tokens: HashMap::new(),
            refresh_tokens: Vec::new(),
            current: None,
            processes: HashMap::new(),
            transactions: HashMap::new(),
            fault: FaultMode::None,
            fault_until: None,
            counters: Counters::default(),
            frame_seed: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimulatorConfig {
        &self.config
    }

    /// Counts a received call.
    pub fn count(&mut self, call: &str) {
        *self.counters.calls.entry(call.to_owned()).or_default() += 1;
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The fault in force now.
    pub fn fault(&mut self, now: Instant) -> FaultMode {
        if self.fault_until.is_some_and(|until| now >= until) {
            self.fault = FaultMode::None;
            self.fault_until = None;
        }
        self.fault
    }

    /// Switches a fault on (or off with `none`).
    pub fn set_fault(&mut self, request: FaultRequest, now: Instant) {
        self.fault = request.mode;
        self.fault_until = request.for_ms.map(|ms| now + Duration::from_millis(ms));
    }

    fn issue_tokens(&mut self, now: Instant) -> Value {
        let access = random_text(32, ALNUM);
        let refresh = random_text(32, ALNUM);
        self.access_tokens
            .insert(access.clone(), now + self.config.token_ttl);
        self.refresh_tokens.push(refresh.clone());
        let expires =
            chrono::Utc::now() + chrono::Duration::from_std(self.config.token_ttl).unwrap_or_default();
        json!({
            "accessToken": access,
            "refreshToken": refresh,
            "expirationDate": expires.format("%Y-%m-%d %H:%M:%S").to_string(),
        })
    }

    /// `register`.
    pub fn register(&mut self, name: &str, now: Instant) -> Answer {
        if !self.config.auto_accept_register {
            return error(2, "Registration declined on the terminal");
        }
        if name.trim().is_empty() {
            return error(codes::BAD_PARAMETER, "Parameter name is required");
        }
        self.integration_name = Some(name.to_owned());
        ok(self.issue_tokens(now))
    }

    /// `revoke`: new tokens for a known name and refresh token (each refresh token works once).
    pub fn revoke(&mut self, name: &str, refresh: &str, now: Instant) -> Answer {
        let known = self.integration_name.as_deref() == Some(name);
        match self.refresh_tokens.iter().position(|r| r == refresh) {
            Some(index) if known => {
                self.refresh_tokens.remove(index);
                ok(self.issue_tokens(now))
            }
            _ => error(codes::REVOKE_FAILED, "Revoke failed: wrong name or refresh token"),
        }
    }

    /// Whether an access token is valid now; counts a rejection if not.
    pub fn authorize(&mut self, token: Option<&str>, now: Instant) -> bool {
        let valid = token
            .and_then(|t| self.access_tokens.get(t))
            .is_some_and(|expiry| now < *expiry);
        if !valid {
            self.counters.auth_rejections += 1;
        }
        valid
    }

    /// Expires every token at once (as if the terminal was re-provisioned or time passed).
    pub fn expire_tokens(&mut self) {
        let now = Instant::now();
        for expiry in self.access_tokens.values_mut() {
            *expiry = now;
        }
    }

    /// `deviceinfo`.
    pub fn device_info(&self) -> Answer {
        ok(
            json!({"posNum": self.config.pos_num, "serialNum": self.config.serial_num, "terminalId": self.config.terminal_id}),
        )
    }

    /// Applies what is due: a scheduled customer action, the deadline of an unpaid operation.
    fn advance(&mut self, now: Instant) {
        let Some(id) = self.current.clone() else { return };
        let Some(process) = self.processes.get_mut(&id) else {
            return;
        };
        if let Some((at, _)) = &process.scheduled
            && now >= *at
            && let Some((_, request)) = process.scheduled.take()
        {
            self.act(&id, &request);
        }
        let Some(process) = self.processes.get_mut(&id) else {
            return;
        };
        if process.status == ProcessStatus::Wait && now >= process.deadline {
            process.status = ProcessStatus::Fail;
            process.sub_status = "ProcessCancelled";
            process.message = Some("Operation timed out".to_owned());
        }
        if process.status.is_final() {
            self.current = None;
        }
    }

    fn busy(&mut self, now: Instant) -> bool {
        self.advance(now);
        self.current.is_some()
    }

    fn start(&mut self, kind: Kind, amount: i64, now: Instant) -> Answer {
        let id = format!(
            "{}",
            100_000_000 + self.processes.len() as u64 * 7 + rand::rng().random_range(0..7)
        );
        let qr_text = match kind {
            Kind::Payment => format!("https://qr.kaspi.kz/{}", random_text(16, ALNUM)),
            Kind::Refund { .. } => format!("https://qr.kaspi.kz/r{}", random_text(15, ALNUM)),
        };
        let process = Process {
            id: id.clone(),
            kind,
            amount,
            qr_text,
            deadline: now + self.config.operation_timeout,
            status: ProcessStatus::Wait,
            sub_status: "WaitUser",
            message: None,
            scheduled: None,
            resolution: None,
            paid: None,
            cheque_date: chrono::Utc::now().format("%d.%m.%y %H:%M:%S").to_string(),
        };
        self.processes.insert(id.clone(), process);
        self.current = Some(id.clone());
        ok(json!({"processId": id, "status": "wait"}))
    }

    fn parse_amount(text: Option<&str>) -> Option<i64> {
        text.and_then(|t| t.trim().parse::<i64>().ok())
            .filter(|amount| *amount > 0)
    }

    /// `payment`.
    pub fn payment(&mut self, amount: Option<&str>, now: Instant) -> Answer {
        let Some(amount) = Self::parse_amount(amount) else {
            return error(
                codes::BAD_PARAMETER,
                "Parameter amount must be a positive whole number",
            );
        };
        if self.busy(now) {
            self.counters.busy_answers += 1;
            return error(
                codes::BUSY,
                "Terminal is busy: the last operation is not completed",
            );
        }
        self.start(Kind::Payment, amount, now)
    }

    /// `refund`: only of a known successful payment, up to what is left of it.
    pub fn refund(
        &mut self,
        method: Option<&str>,
        amount: Option<&str>,
        transaction_id: Option<&str>,
        now: Instant,
    ) -> Answer {
        let Some(amount) = Self::parse_amount(amount) else {
            return error(
                codes::BAD_PARAMETER,
                "Parameter amount must be a positive whole number",
            );
        };
        let method = method.unwrap_or("").trim().to_owned();
        if !matches!(method.as_str(), "qr" | "card" | "alaqan") {
            return error(
                codes::BAD_PARAMETER,
                "Parameter method must be qr, card or alaqan",
            );
        }
        let transaction_id = transaction_id.unwrap_or("").trim().to_owned();
        let Some(transaction) = self.transactions.get(&transaction_id) else {
            return error(codes::BAD_PARAMETER, "Transaction not found");
        };
        if amount > transaction.amount - transaction.refunded {
            return error(codes::BAD_PARAMETER, "Refund amount exceeds the payment");
        }
        if self.busy(now) {
            self.counters.busy_answers += 1;
            return error(
                codes::BUSY,
                "Terminal is busy: the last operation is not completed",
            );
        }
        self.start(
            Kind::Refund {
                transaction_id,
                method,
            },
            amount,
            now,
        )
    }

    fn process_answer(&self, process: &Process) -> Value {
        let mut data = json!({
            "processId": process.id,
            "status": process.status.as_str(),
            "subStatus": process.sub_status,
        });
        if let Some(message) = &process.message {
            data["message"] = json!(message);
        }
        if let (ProcessStatus::Success, Some(paid)) = (process.status, &process.paid) {
            let (kind, shown) = match &process.kind {
                Kind::Payment => ("payment", paid.gross),
                Kind::Refund { .. } => ("refund", -process.amount),
            };
            data["transactionId"] = json!(paid.transaction_id);
            data["addInfo"] = json!({
                "ProductType": paid.product,
                "LoanTerm": if matches!(paid.product.as_str(), "Loan" | "Credit" | "Installment") { "12" } else { "0" },
                "LoanOfferName": "",
                "IsOffer": false,
            });
            data["chequeInfo"] = json!({
                "storeName": self.config.store_name,
                "city": "Алматы",
                "address": "пр. Абая, 1",
                "bin": "123456789012",
                "terminalId": self.config.terminal_id,
                "date": process.cheque_date,
                "method": match &process.kind { Kind::Refund { method, .. } => method.as_str(), Kind::Payment => "qr" },
                "type": kind,
                "amount": display_amount(shown),
                "orderNumber": paid.transaction_id,
                "status": "success",
            });
        }
        data
    }

    /// `status`.
    pub fn status(&mut self, process_id: Option<&str>, now: Instant) -> Answer {
        self.advance(now);
        match process_id.and_then(|id| self.processes.get(id)) {
            Some(process) => ok(self.process_answer(process)),
            None => {
                self.counters.not_found_answers += 1;
                error(codes::PROCESS_NOT_FOUND, "Process not found")
            }
        }
    }

    /// `actualize`: only for an `unknown` process; answers the resolution set by the test (or
    /// `unknown` again while there is none).
    pub fn actualize(&mut self, process_id: Option<&str>, now: Instant) -> Answer {
        self.advance(now);
        let Some(id) = process_id
            .filter(|id| self.processes.contains_key(*id))
            .map(str::to_owned)
        else {
            self.counters.not_found_answers += 1;
            return error(codes::PROCESS_NOT_FOUND, "Process not found");
        };
        let Some(process) = self.processes.get_mut(&id) else {
            return error(codes::PROCESS_NOT_FOUND, "Process not found");
        };
        if process.status != ProcessStatus::Unknown {
            return error(codes::CANNOT_ACTUALIZE, "Process is not in unknown status");
        }
        if let Some(outcome) = process.resolution.take() {
            let product = process
                .paid
                .as_ref()
                .map_or_else(default_product, |p| p.product.clone());
            let gross = process.paid.as_ref().map(|p| p.gross);
            self.settle(&id, outcome, product, gross);
            if self.current.as_deref() == Some(id.as_str()) {
                self.current = None;
            }
        }
        match self.processes.get(&id) {
            Some(process) => ok(self.process_answer(process)),
            None => error(codes::PROCESS_NOT_FOUND, "Process not found"),
        }
    }

    /// `cancel`: a waiting operation that nobody is paying ends as cancelled; anything else is left alone.
    pub fn cancel(&mut self, process_id: Option<&str>, now: Instant) -> Answer {
        self.advance(now);
        let Some(process) = process_id.and_then(|id| self.processes.get_mut(id)) else {
            self.counters.not_found_answers += 1;
            return error(codes::PROCESS_NOT_FOUND, "Process not found");
        };
        if process.status == ProcessStatus::Wait && process.scheduled.is_none() {
            process.status = ProcessStatus::Fail;
            process.sub_status = "ProcessCancelled";
            process.message = Some("Cancelled".to_owned());
            self.current = None;
        }
        ok(json!({}))
    }

    fn settle(&mut self, id: &str, outcome: Outcome, product: String, gross: Option<i64>) {
        let Some(process) = self.processes.get_mut(id) else {
            return;
        };
        let gross = gross.unwrap_or(process.amount);
        match outcome {
            Outcome::Success => {
                let transaction_id = match &process.kind {
                    Kind::Payment => random_text(10, b"0123456789"),
                    Kind::Refund { transaction_id, .. } => transaction_id.clone(),
                };
                process.status = ProcessStatus::Success;
                process.sub_status = "QrTransactionSuccess";
                process.message = None;
                process.paid = Some(Paid {
                    product,
                    gross,
                    transaction_id: transaction_id.clone(),
                });
                match &process.kind {
                    Kind::Payment => {
                        self.transactions.insert(
                            transaction_id,
                            Transaction {
                                amount: gross,
                                refunded: 0,
                            },
                        );
                        self.counters.payments_succeeded += 1;
                    }
                    Kind::Refund { transaction_id, .. } => {
                        if let Some(transaction) = self.transactions.get_mut(transaction_id) {
                            transaction.refunded += process.amount;
                        }
                        self.counters.refunds_succeeded += 1;
                    }
                }
            }
            Outcome::Fail => {
                process.status = ProcessStatus::Fail;
                process.sub_status = "QrTransactionFailure";
                process.message = Some("Payment declined".to_owned());
            }
            Outcome::Unknown => {
                process.status = ProcessStatus::Unknown;
                process.message = Some("Connection with the bank lost; the result is unknown".to_owned());
                process.paid = Some(Paid {
                    product,
                    gross,
                    transaction_id: String::new(),
                });
            }
        }
    }

    fn act(&mut self, id: &str, request: &PayRequest) {
        self.settle(id, request.outcome, request.product.clone(), request.amount);
        let final_now = self.processes.get(id).is_some_and(|p| p.status.is_final());
        if final_now && self.current.as_deref() == Some(id) {
            self.current = None;
        }
    }

    /// `POST /sim/pay`: the customer acts on the current operation.
    pub fn customer_pays(&mut self, request: PayRequest, now: Instant) -> Result<Value, String> {
        self.advance(now);
        let id = self
            .current
            .clone()
            .ok_or("no operation is waiting for the customer")?;
        let process = self
            .processes
            .get_mut(&id)
            .ok_or("no operation is waiting for the customer")?;
        if process.status != ProcessStatus::Wait {
            return Err(format!(
                "the current operation is {}, not wait",
                process.status.as_str()
            ));
        }
        if let Some(amount) = request.amount
            && amount <= 0
        {
            return Err("amount must be positive".to_owned());
        }
        if request.after_ms > 0 {
            process.scheduled = Some((now + Duration::from_millis(request.after_ms), request));
            process.sub_status = "WaitForQrConfirmation";
        } else {
            self.act(&id, &request);
        }
        Ok(self.state_json(now))
    }

    /// `POST /sim/resolve-unknown`: what a later actualize answers.
    pub fn resolve_unknown(&mut self, outcome: Outcome) -> Result<Value, String> {
        let process = self
            .processes
            .values_mut()
            .find(|p| p.status == ProcessStatus::Unknown)
            .ok_or("no operation is in unknown status")?;
        if outcome == Outcome::Unknown {
            return Err("the resolution must be success or fail".to_owned());
        }
        process.resolution = Some(outcome);
        Ok(json!({"processId": process.id, "resolution": outcome}))
    }

    /// The QR the screen shows now: the current operation's while it waits.
    pub fn screen_qr(&mut self, now: Instant) -> Option<String> {
        self.advance(now);
        let process = self.current.as_ref().and_then(|id| self.processes.get(id))?;
        (process.status == ProcessStatus::Wait).then(|| process.qr_text.clone())
    }

    /// A different seed for every frame, like a live camera.
    pub fn next_frame_seed(&mut self) -> u64 {
        self.frame_seed += 1;
        self.frame_seed
    }

    /// `GET /sim/state`.
    pub fn state_json(&mut self, now: Instant) -> Value {
        self.advance(now);
        let current = self
            .current
            .as_ref()
            .and_then(|id| self.processes.get(id))
            .map(|p| {
                json!({
                    "processId": p.id,
                    "kind": match p.kind { Kind::Payment => "payment", Kind::Refund { .. } => "refund" },
                    "amount": p.amount,
                    "status": p.status.as_str(),
                    "qr": p.qr_text,
                })
            });
        let fault = self.fault(now);
        json!({
            "terminalId": self.config.terminal_id,
            "current": current,
            "operations": self.processes.len(),
            "fault": fault,
            "counters": self.counters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_displayed_with_thin_spaces() {
        assert_eq!(display_amount(1), "1\u{2009}₸");
        assert_eq!(display_amount(114_000), "114\u{2009}000\u{2009}₸");
        assert_eq!(display_amount(1_234_567), "1\u{2009}234\u{2009}567\u{2009}₸");
        assert_eq!(display_amount(-10), "-\u{2009}10\u{2009}₸");
        for amount in [1, 505, 114_000, -10] {
            let parsed = crate::protocol::parse_display_amount(&display_amount(amount)).unwrap();
            assert_eq!(parsed, byfly_core::Money::from_tenge(amount));
        }
    }

    #[test]
    fn unpaid_operations_fail_at_their_deadline() {
        let config = SimulatorConfig {
            operation_timeout: Duration::from_secs(5),
            ..SimulatorConfig::default()
        };
        let mut device = Device::new(config);
        let start = Instant::now();
        let answer = device.payment(Some("100"), start);
        let id = answer.body["data"]["processId"].as_str().unwrap().to_owned();
        assert_eq!(device.payment(Some("100"), start).body["statusCode"], 107);
        let later = device.status(Some(&id), start + Duration::from_secs(6));
        assert_eq!(later.body["data"]["status"], "fail");
        assert_eq!(
            device.payment(Some("100"), start + Duration::from_secs(6)).body["statusCode"],
            0
        );
    }
}
