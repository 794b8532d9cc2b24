//! The simulated device: integrations and their tokens, the one process a terminal runs at a
//! time, payments and refunds, the screen the camera photographs, and the faults tests can switch
//! on. Pure state driven by calls and a clock passed in, so the HTTP layer stays thin.
//!
//! Its defaults are the realistic ones of `spec/KASPI_TERMINAL.md` §7: no remote cancel, a
//! registration that waits for the cashier, `403` for an expired token, processes forgotten some
//! time after they end (and all of them on a reboot), the previous QR lingering on the screen.
//! Every friendlier behaviour is a knob of [`SimulatorConfig`] (and of `POST /sim/config`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::RngExt;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::protocol::{ProcessStatus, codes};

use super::render::CameraStyle;

/// How `register` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterMode {
    /// The call blocks until the cashier approves or declines on the screen
    /// (`POST /sim/approve-registration` / `POST /sim/decline-registration`): the real terminal.
    #[default]
    Confirm,
    /// Approved at once (a friendlier terminal).
    Auto,
}

/// How the simulated terminal behaves. The defaults are the realistic ones.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// `terminalId` of `deviceinfo`.
    pub terminal_id: String,
    /// `serialNum` of `deviceinfo`.
    pub serial_num: String,
    /// `posNum` of `deviceinfo`.
    pub pos_num: String,
    /// Whether `register` waits for the cashier (default) or is approved at once.
    pub register: RegisterMode,
    /// Whether `/v2/cancel` exists (default false: it answers as a device without that call).
    pub remote_cancel: bool,
    /// How long an access token lives (default 24 h).
    pub token_ttl: Duration,
    /// When an operation nobody pays ends with `fail` (a real terminal: ≈180 s scan + 60 s confirm).
    pub operation_timeout: Duration,
    /// Finished processes are forgotten (`101`) this long after they end (default 30 min).
    pub forget_finished_after: Option<Duration>,
    /// Processes still waiting (or `unknown`) are forgotten this long after they start (default never).
    pub forget_waiting_after: Option<Duration>,
    /// After a new operation starts, the screen keeps showing the previous QR this long (default 1.5 s).
    pub stale_qr: Duration,
    /// A refund's confirmation QR appears this long after `/v2/refund` (default 3 s).
    pub refund_qr_delay: Duration,
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
            register: RegisterMode::Confirm,
            remote_cancel: false,
            token_ttl: Duration::from_secs(24 * 3600),
            operation_timeout: Duration::from_secs(240),
            forget_finished_after: Some(Duration::from_secs(30 * 60)),
            forget_waiting_after: None,
            stale_qr: Duration::from_millis(1500),
            refund_qr_delay: Duration::from_millis(3000),
            camera: CameraStyle::default(),
            store_name: "ByFly Travel".to_owned(),
        }
    }
}

/// Reads a field that may be `null` (`Some(None)`) as distinct from absent (`None`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /sim/config`: any subset of the knobs, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    /// [`SimulatorConfig::remote_cancel`].
    #[serde(default)]
    pub remote_cancel: Option<bool>,
    /// [`SimulatorConfig::register`].
    #[serde(default)]
    pub register: Option<RegisterMode>,
    /// [`SimulatorConfig::forget_finished_after`]; `null` = never.
    #[serde(default, deserialize_with = "nullable")]
    pub forget_finished_after_ms: Option<Option<u64>>,
    /// [`SimulatorConfig::forget_waiting_after`]; `null` = never.
    #[serde(default, deserialize_with = "nullable")]
    pub forget_waiting_after_ms: Option<Option<u64>>,
    /// [`SimulatorConfig::stale_qr`].
    #[serde(default)]
    pub stale_qr_ms: Option<u64>,
    /// [`SimulatorConfig::refund_qr_delay`].
    #[serde(default)]
    pub refund_qr_delay_ms: Option<u64>,
    /// [`SimulatorConfig::token_ttl`].
    #[serde(default)]
    pub token_ttl_ms: Option<u64>,
    /// [`SimulatorConfig::operation_timeout`].
    #[serde(default)]
    pub operation_timeout_ms: Option<u64>,
}

impl SimulatorConfig {
    /// Applies the knobs a patch names.
    pub fn apply(&mut self, patch: &ConfigPatch) {
        let ms = Duration::from_millis;
        if let Some(value) = patch.remote_cancel {
            self.remote_cancel = value;
        }
        if let Some(value) = patch.register {
            self.register = value;
        }
        if let Some(value) = patch.forget_finished_after_ms {
            self.forget_finished_after = value.map(ms);
        }
        if let Some(value) = patch.forget_waiting_after_ms {
            self.forget_waiting_after = value.map(ms);
        }
        if let Some(value) = patch.stale_qr_ms {
            self.stale_qr = ms(value);
        }
        if let Some(value) = patch.refund_qr_delay_ms {
            self.refund_qr_delay = ms(value);
        }
        if let Some(value) = patch.token_ttl_ms {
            self.token_ttl = ms(value);
        }
        if let Some(value) = patch.operation_timeout_ms {
            self.operation_timeout = ms(value);
        }
    }

    /// The knobs as `POST /sim/config` names them.
    pub fn knobs_json(&self) -> Value {
        let ms = |d: Duration| d.as_millis() as u64;
        json!({
            "remote_cancel": self.remote_cancel,
            "register": self.register,
            "forget_finished_after_ms": self.forget_finished_after.map(ms),
            "forget_waiting_after_ms": self.forget_waiting_after.map(ms),
            "stale_qr_ms": ms(self.stale_qr),
            "refund_qr_delay_ms": ms(self.refund_qr_delay),
            "token_ttl_ms": ms(self.token_ttl),
            "operation_timeout_ms": ms(self.operation_timeout),
        })
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

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayMethod {
    /// Scans the QR with the Kaspi app.
    #[default]
    Qr,
    /// Taps a card on the terminal: no QR, an `rrn`, a card mask and an authorization code.
    Card,
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
    /// QR (default) or card.
    #[serde(default)]
    pub method: PayMethod,
}

impl Default for PayRequest {
    fn default() -> Self {
        PayRequest {
            product: default_product(),
            amount: None,
            outcome: Outcome::Success,
            after_ms: 0,
            method: PayMethod::Qr,
        }
    }
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
    /// Accept requests and never answer in time (nothing is done).
    Timeout,
    /// Do what was asked, but lose the answer: it comes only after the client gave up.
    LostAnswer,
    /// Answer HTTP 500 with an HTML page.
    Http500,
    /// Answer HTTP 200 with a body that is not JSON.
    Garbage,
    /// The camera sees no QR.
    NoQr,
}

/// `POST /sim/fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRequest {
    /// The mode.
    pub mode: FaultMode,
    /// For how long (forever when absent).
    #[serde(default)]
    pub for_ms: Option<u64>,
    /// For how many protocol calls (each call met by the fault counts; `down` is not counted).
    #[serde(default)]
    pub for_calls: Option<u32>,
    /// Only this protocol call meets the fault (`payment`, `status`, ...; default: every call).
    #[serde(default)]
    pub call: Option<String>,
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
    /// 401 and 403 answers (a missing, unknown or expired token).
    pub auth_rejections: u64,
    /// 403 answers alone (a known token past its expiry).
    pub expired_token_answers: u64,
    /// `105` answers to `register` (the name is already registered).
    pub already_registered_answers: u64,
    /// Payments that ended in success.
    pub payments_succeeded: u64,
    /// Refunds that ended in success.
    pub refunds_succeeded: u64,
}

/// One movement of money the terminal made: the simulators' ground truth, kept even after the
/// process itself is forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// The process that moved it.
    #[serde(rename = "processId")]
    pub process_id: String,
    /// `payment` or `refund`.
    pub kind: String,
    /// The terminal's `transactionId` of this movement.
    #[serde(rename = "transactionId")]
    pub transaction_id: String,
    /// For a refund: the payment's `transactionId` it gives money back from.
    #[serde(rename = "refundOf", skip_serializing_if = "Option::is_none")]
    pub refund_of: Option<String>,
    /// Whole tenge: what the customer paid, or what was given back.
    pub amount: i64,
    /// The product (payments).
    pub product: String,
    /// `qr` or `card`.
    pub method: String,
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
    method: PayMethod,
    transaction_id: String,
}

#[derive(Debug, Clone)]
struct Process {
    id: String,
    kind: Kind,
    amount: i64,
    /// The QR this process draws on the screen (`None`: a card refund shows none).
    qr_text: Option<String>,
    /// The QR the screen still shows while it redraws (the previous operation's).
    stale_qr: Option<String>,
    started: Instant,
    /// Until then the screen still shows `stale_qr`.
    stale_until: Instant,
    /// From then the screen shows `qr_text`.
    qr_from: Instant,
    deadline: Instant,
    status: ProcessStatus,
    /// The sub-status of a final or `unknown` process (a waiting one's is derived from the clock).
    final_sub_status: &'static str,
    message: Option<String>,
    /// A customer action waiting for its time (`after_ms`).
    scheduled: Option<(Instant, PayRequest)>,
    /// What a later actualize answers for an `unknown` process.
    resolution: Option<Outcome>,
    /// The product and gross once the customer paid (kept through `unknown`).
    paid: Option<Paid>,
    /// When it reached a final status.
    finished_at: Option<Instant>,
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

/// The answer of a device that has no such call.
pub fn no_such_call() -> Answer {
    Answer {
        http: 404,
        body: json!({"statusCode": 404, "errorText": "Unknown call"}),
    }
}

/// The code a declined registration answers (the terminal's own; integrations see a non-zero code).
pub const REGISTRATION_DECLINED: i64 = 2;

/// What `register` gives the HTTP layer: an answer now, or one to wait for (the cashier decides).
#[derive(Debug)]
pub enum Registration {
    /// Answered at once.
    Answered(Answer),
    /// Waiting for the cashier.
    Waiting(oneshot::Receiver<Answer>),
}

/// A `register` call the cashier has not answered yet.
#[derive(Debug)]
struct PendingRegistration {
    name: String,
    waiters: Vec<oneshot::Sender<Answer>>,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Missing, or not issued by this terminal (HTTP 401).
    Unknown,
    /// Issued, but past its expiry (HTTP 403).
    Expired,
}

#[derive(Debug, Clone)]
struct AccessToken {
    name: String,
    expires: Instant,
    refresh: String,
}

/// The whole device.
#[derive(Debug)]
pub struct Device {
    config: SimulatorConfig,
    /// Integration names the cashier approved (a second `register` of one answers `105`).
    registered: HashSet<String>,
    pending_registration: Option<PendingRegistration>,
    /// access token → its integration, expiry and refresh token.
    access_tokens: HashMap<String, AccessToken>,
    current: Option<String>,
    processes: HashMap<String, Process>,
    /// Every process id ever issued, so a forgotten one is never reused.
    issued: u64,
    /// The last QR drawn on the screen: what lingers while the next operation's screen redraws.
    last_qr: Option<String>,
    transactions: HashMap<String, Transaction>,
    movements: Vec<Movement>,
    fault: FaultMode,
    fault_until: Option<Instant>,
    fault_calls: Option<u32>,
    fault_call: Option<String>,
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
const DIGITS: &[u8] = b"0123456789";

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

/// The product's name as the cheque's status line says it.
fn product_title(product: &str) -> &'static str {
    match product {
        "Red" => "Kaspi Red",
        "Loan" | "Credit" => "Kaspi Кредит",
        "Installment" => "Kaspi Рассрочка",
        _ => "Kaspi Gold",
    }
}

fn is_credit(product: &str) -> bool {
    matches!(product, "Loan" | "Credit" | "Installment")
}

impl Device {
    /// A fresh device.
    pub fn new(config: SimulatorConfig) -> Device {
        Device {
            config,
            registered: HashSet::new(),
            pending_registration: None,
            access_tokens: HashMap::new(),
            current: None,
            processes: HashMap::new(),
            issued: 0,
            last_qr: None,
            transactions: HashMap::new(),
            movements: Vec::new(),
            fault: FaultMode::None,
            fault_until: None,
            fault_calls: None,
            fault_call: None,
            counters: Counters::default(),
            frame_seed: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimulatorConfig {
        &self.config
    }

    /// Changes knobs at run time (`POST /sim/config`).
    pub fn configure(&mut self, patch: &ConfigPatch) {
        self.config.apply(patch);
    }

    /// Counts a received call.
    pub fn count(&mut self, call: &str) {
        *self.counters.calls.entry(call.to_owned()).or_default() += 1;
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Every movement of money so far, in order.
    pub fn movements(&self) -> &[Movement] {
        &self.movements
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
        self.fault_calls = request.for_calls;
        self.fault_call = request.call;
    }

    /// The fault protocol call `call` meets now, counted against `for_calls`, and whether it was
    /// counted (a counted fault may already be over when its call is answered).
    pub fn fault_for_call(&mut self, call: &str, now: Instant) -> (FaultMode, bool) {
        let fault = self.fault(now);
        if self.fault_call.as_deref().is_some_and(|only| only != call) {
            return (FaultMode::None, false);
        }
        let counted = fault != FaultMode::None && self.fault_calls.is_some();
        if fault != FaultMode::None
            && let Some(left) = &mut self.fault_calls
        {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.fault = FaultMode::None;
                self.fault_until = None;
                self.fault_calls = None;
                self.fault_call = None;
            }
        }
        (fault, counted)
    }

    fn issue_tokens(&mut self, name: &str, now: Instant) -> Value {
        let access = random_text(32, ALNUM);
        let refresh = random_text(32, ALNUM);
        self.access_tokens.insert(
            access.clone(),
            AccessToken {
                name: name.to_owned(),
                expires: now + self.config.token_ttl,
                refresh: refresh.clone(),
            },
        );
        let expires =
            chrono::Utc::now() + chrono::Duration::from_std(self.config.token_ttl).unwrap_or_default();
        json!({
            "accessToken": access,
            "refreshToken": refresh,
            "expirationDate": expires.format("%Y-%m-%d %H:%M:%S").to_string(),
        })
    }

    /// `register`: answered at once in `auto` mode, for a name already registered (`105`) or a bad
    /// name; otherwise it waits for the cashier.
    pub fn register(&mut self, name: &str, now: Instant) -> Registration {
        let name = name.trim();
        if name.is_empty() {
            return Registration::Answered(error(codes::BAD_PARAMETER, "Parameter name is required"));
        }
        if self.registered.contains(name) {
            self.counters.already_registered_answers += 1;
            return Registration::Answered(error(
                codes::ALREADY_REGISTERED,
                "Integration with this name is already allowed",
            ));
        }
        // The friendlier knob: a terminal whose cashier accepts at once. The realistic default waits;
        // a test that turns this on says why (only byfly-terminal's protocol tests, to test the knob).
        if self.config.register == RegisterMode::Auto {
            self.registered.insert(name.to_owned());
            return Registration::Answered(ok(self.issue_tokens(name, now)));
        }
        let (answer, waiting) = oneshot::channel();
        match &mut self.pending_registration {
            Some(pending) if pending.name == name => pending.waiters.push(answer),
            _ => {
                // A request with another name replaces the prompt on the screen.
                self.pending_registration = Some(PendingRegistration {
                    name: name.to_owned(),
                    waiters: vec![answer],
                });
            }
        }
        Registration::Waiting(waiting)
    }

    /// The cashier accepts the registration on the screen: the name is registered even when the
    /// caller has given up waiting (then nobody holds its tokens, and a new `register` gets `105`).
    pub fn approve_registration(&mut self, now: Instant) -> Result<Value, String> {
        let pending = self
            .pending_registration
            .take()
            .ok_or("no registration is waiting for the cashier")?;
        self.registered.insert(pending.name.clone());
        let tokens = self.issue_tokens(&pending.name, now);
        let delivered = pending
            .waiters
            .into_iter()
            .map(|waiter| waiter.send(ok(tokens.clone())).is_ok())
            .filter(|delivered| *delivered)
            .count();
        Ok(json!({"approved": pending.name, "delivered": delivered}))
    }

    /// The cashier declines the registration.
    pub fn decline_registration(&mut self) -> Result<Value, String> {
        let pending = self
            .pending_registration
            .take()
            .ok_or("no registration is waiting for the cashier")?;
        for waiter in pending.waiters {
            waiter
                .send(error(
                    REGISTRATION_DECLINED,
                    "Registration declined on the terminal",
                ))
                .ok();
        }
        Ok(json!({"declined": pending.name}))
    }

    /// The administrator forbids every integration in the terminal's admin panel: names can be
    /// registered again, and every token stops working.
    pub fn clear_registrations(&mut self) -> Value {
        let cleared = self.registered.len();
        self.registered.clear();
        self.access_tokens.clear();
        json!({"cleared": cleared})
    }

    /// `revoke`: new tokens for the current access token (sent as the `accesstoken` header, even
    /// when expired), its refresh token and name. Each refresh token works once; the old access
    /// token stops working.
    pub fn revoke(
        &mut self,
        name: &str,
        refresh: &str,
        access: Option<&str>,
        now: Instant,
    ) -> Result<Answer, TokenRefusal> {
        let Some((access, entry)) = access.and_then(|a| self.access_tokens.get_key_value(a)) else {
            self.counters.auth_rejections += 1;
            return Err(TokenRefusal::Unknown);
        };
        if entry.name != name || entry.refresh != refresh {
            return Ok(error(
                codes::ALREADY_REGISTERED,
                "Revoke failed: wrong name or refresh token",
            ));
        }
        let access = access.clone();
        self.access_tokens.remove(&access);
        Ok(ok(self.issue_tokens(name, now)))
    }

    /// Whether an access token is valid now; counts a rejection if not.
    pub fn authorize(&mut self, token: Option<&str>, now: Instant) -> Result<(), TokenRefusal> {
        let refusal = match token.and_then(|t| self.access_tokens.get(t)) {
            Some(entry) if now < entry.expires => return Ok(()),
            Some(_) => {
                self.counters.expired_token_answers += 1;
                TokenRefusal::Expired
            }
            None => TokenRefusal::Unknown,
        };
        self.counters.auth_rejections += 1;
        Err(refusal)
    }

    /// Expires every access token now, so the next call must refresh.
    pub fn expire_tokens(&mut self) {
        let now = Instant::now();
        for entry in self.access_tokens.values_mut() {
            entry.expires = now;
        }
    }

    /// The terminal restarts: every process is forgotten (later calls about them answer `101`),
    /// the screen is blank, tokens and registrations stay.
    pub fn reboot(&mut self) -> Value {
        let forgotten = self.processes.len();
        self.processes.clear();
        self.current = None;
        self.last_qr = None;
        json!({"forgotten": forgotten})
    }

    /// `deviceinfo`.
    pub fn device_info(&self) -> Answer {
        ok(
            json!({"posNum": self.config.pos_num, "serialNum": self.config.serial_num, "terminalId": self.config.terminal_id}),
        )
    }

    fn finish(process: &mut Process, status: ProcessStatus, sub_status: &'static str, now: Instant) {
        process.status = status;
        process.final_sub_status = sub_status;
        if status.is_final() {
            process.finished_at = Some(now);
        }
    }

    /// Applies what is due: a scheduled customer action, the deadline of an unpaid operation, and
    /// forgetting processes that ended (or hang) long enough ago.
    fn advance(&mut self, now: Instant) {
        if let Some(id) = self.current.clone() {
            let due = self.processes.get_mut(&id).and_then(|p| match &p.scheduled {
                // Due before the deadline it happens; due after it, it is too late.
                Some((at, _)) if now >= *at && *at < p.deadline => p.scheduled.take(),
                _ => None,
            });
            if let Some((_, request)) = due {
                self.act(&id, &request, now);
            }
            if let Some(process) = self.processes.get_mut(&id) {
                if process.status == ProcessStatus::Wait && now >= process.deadline {
                    process.message = Some("Operation timed out".to_owned());
                    Self::finish(process, ProcessStatus::Fail, "ProcessCancelled", now);
                }
                if process.status.is_final() {
                    self.current = None;
                }
            }
        }
        let (finished_after, waiting_after) = (
            self.config.forget_finished_after,
            self.config.forget_waiting_after,
        );
        self.processes.retain(|_, p| match p.finished_at {
            Some(at) => finished_after.is_none_or(|after| now < at + after),
            None => waiting_after.is_none_or(|after| now < p.started + after),
        });
        if self
            .current
            .as_ref()
            .is_some_and(|id| !self.processes.contains_key(id))
        {
            self.current = None;
        }
    }

    fn busy(&mut self, now: Instant) -> bool {
        self.advance(now);
        self.current.is_some()
    }

    fn start(&mut self, kind: Kind, amount: i64, now: Instant) -> Answer {
        self.issued += 1;
        let id = format!(
            "{}",
            100_000_000 + self.issued * 7 + rand::rng().random_range(0..7)
        );
        let qr_text = match &kind {
            Kind::Payment => Some(format!("https://qr.kaspi.kz/{}", random_text(16, ALNUM))),
            Kind::Refund { method, .. } if method == "card" => None,
            Kind::Refund { .. } => Some(format!("https://qr.kaspi.kz/r{}", random_text(15, ALNUM))),
        };
        let stale_until = now + self.config.stale_qr;
        let qr_from = match kind {
            Kind::Payment => stale_until,
            Kind::Refund { .. } => now + self.config.stale_qr.max(self.config.refund_qr_delay),
        };
        // What the screen showed last lingers while it redraws; a card refund draws nothing new.
        let stale_qr = self.last_qr.clone();
        if qr_text.is_some() {
            self.last_qr = qr_text.clone();
        }
        let process = Process {
            id: id.clone(),
            kind,
            amount,
            qr_text,
            stale_qr,
            started: now,
            stale_until,
            qr_from,
            deadline: now + self.config.operation_timeout,
            status: ProcessStatus::Wait,
            final_sub_status: "",
            message: None,
            scheduled: None,
            resolution: None,
            paid: None,
            finished_at: None,
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

    fn busy_answer(&mut self) -> Answer {
        self.counters.busy_answers += 1;
        error(
            codes::BUSY,
            "Terminal is busy: the last operation is not completed",
        )
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
            return self.busy_answer();
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
            return self.busy_answer();
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

    fn sub_status(process: &Process, now: Instant) -> &'static str {
        if process.status != ProcessStatus::Wait {
            return process.final_sub_status;
        }
        match (&process.kind, &process.scheduled) {
            (_, Some((_, request))) if request.method == PayMethod::Card => "WaitForPinCode",
            (_, Some(_)) => "WaitForQrConfirmation",
            _ if now < process.qr_from && process.qr_text.is_some() => "Initialize",
            (Kind::Refund { .. }, None) => "ProcessRefund",
            (Kind::Payment, None) => "WaitUser",
        }
    }

    fn process_answer(&self, process: &Process, now: Instant) -> Value {
        let mut data = json!({
            "processId": process.id,
            "status": process.status.as_str(),
            "subStatus": Self::sub_status(process, now),
        });
        if let Some(message) = &process.message {
            data["message"] = json!(message);
        }
        let (ProcessStatus::Success, Some(paid)) = (process.status, &process.paid) else {
            return data;
        };
        let (kind, shown, method, status_line) = match &process.kind {
            Kind::Payment => {
                let method = match paid.method {
                    PayMethod::Qr => "qr",
                    PayMethod::Card => "card",
                };
                let line = match paid.method {
                    PayMethod::Qr => format!("Покупка с {}. Одобрено", product_title(&paid.product)),
                    PayMethod::Card => "Оплата картой. Одобрено".to_owned(),
                };
                ("payment", paid.gross, method.to_owned(), line)
            }
            Kind::Refund { method, .. } => (
                "refund",
                -process.amount,
                method.clone(),
                "Возврат успешно совершен".to_owned(),
            ),
        };
        data["transactionId"] = json!(paid.transaction_id);
        data["addInfo"] = json!({
            "ProductType": paid.product,
            "LoanTerm": if is_credit(&paid.product) { 12 } else { 0 },
            "LoanOfferName": if is_credit(&paid.product) { "Кредит на 12 месяцев" } else { "" },
            "IsOffer": false,
        });
        let mut cheque = json!({
            "storeName": self.config.store_name,
            "city": "Алматы",
            "address": "пр. Абая, 1",
            "bin": "123456789012",
            "terminalId": self.config.terminal_id,
            "date": process.cheque_date,
            "method": method,
            "type": kind,
            "amount": display_amount(shown),
            "status": status_line,
        });
        if method == "card" {
            cheque["cardMask"] = json!("440043******1234");
            cheque["rrn"] = json!(paid.transaction_id);
            cheque["authorizationCode"] = json!(random_text(6, DIGITS));
        } else {
            cheque["orderNumber"] = json!(paid.transaction_id);
        }
        data["chequeInfo"] = cheque;
        data
    }

    fn not_found(&mut self) -> Answer {
        self.counters.not_found_answers += 1;
        error(codes::PROCESS_NOT_FOUND, "Process not found")
    }

    /// `status`.
    pub fn status(&mut self, process_id: Option<&str>, now: Instant) -> Answer {
        self.advance(now);
        match process_id.and_then(|id| self.processes.get(id)) {
            Some(process) => ok(self.process_answer(process, now)),
            None => self.not_found(),
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
            return self.not_found();
        };
        let Some(process) = self.processes.get_mut(&id) else {
            return self.not_found();
        };
        if process.status != ProcessStatus::Unknown {
            return error(codes::CANNOT_ACTUALIZE, "Process is not in unknown status");
        }
        if let Some(outcome) = process.resolution.take() {
            let mut request = process
                .paid
                .as_ref()
                .map_or_else(PayRequest::default, |p| PayRequest {
                    product: p.product.clone(),
                    amount: Some(p.gross),
                    method: p.method,
                    ..PayRequest::default()
                });
            request.outcome = outcome;
            self.settle(&id, &request, now);
            if self.current.as_deref() == Some(id.as_str()) {
                self.current = None;
            }
        }
        match self.processes.get(&id) {
            Some(process) => ok(self.process_answer(process, now)),
            None => self.not_found(),
        }
    }

    /// `cancel`: absent on a realistic terminal; with `remote_cancel`, a waiting operation that
    /// nobody is paying ends as cancelled and anything else is left alone.
    pub fn cancel(&mut self, process_id: Option<&str>, now: Instant) -> Answer {
        if !self.config.remote_cancel {
            return no_such_call();
        }
        self.advance(now);
        let Some(process) = process_id.and_then(|id| self.processes.get_mut(id)) else {
            return self.not_found();
        };
        if process.status == ProcessStatus::Wait && process.scheduled.is_none() {
            process.message = Some("Cancelled".to_owned());
            Self::finish(process, ProcessStatus::Fail, "ProcessCancelled", now);
            self.current = None;
        }
        ok(json!({}))
    }

    fn settle(&mut self, id: &str, request: &PayRequest, now: Instant) {
        let Some(process) = self.processes.get_mut(id) else {
            return;
        };
        let gross = request.amount.unwrap_or(process.amount);
        let card = request.method == PayMethod::Card
            || matches!(&process.kind, Kind::Refund { method, .. } if method == "card");
        match request.outcome {
            Outcome::Success => {
                let transaction_id = random_text(if card { 12 } else { 10 }, DIGITS);
                process.message = None;
                let sub_status = if card {
                    "CardTransactionSuccess"
                } else {
                    "QrTransactionSuccess"
                };
                Self::finish(process, ProcessStatus::Success, sub_status, now);
                process.paid = Some(Paid {
                    product: request.product.clone(),
                    gross,
                    method: if card { PayMethod::Card } else { PayMethod::Qr },
                    transaction_id: transaction_id.clone(),
                });
                let (kind, amount, refund_of, method) = match &process.kind {
                    Kind::Payment => {
                        self.transactions.insert(
                            transaction_id.clone(),
                            Transaction {
                                amount: gross,
                                refunded: 0,
                            },
                        );
                        self.counters.payments_succeeded += 1;
                        (
                            "payment",
                            gross,
                            None,
                            if card { "card" } else { "qr" }.to_owned(),
                        )
                    }
                    Kind::Refund {
                        transaction_id: of,
                        method,
                    } => {
                        if let Some(transaction) = self.transactions.get_mut(of) {
                            transaction.refunded += process.amount;
                        }
                        self.counters.refunds_succeeded += 1;
                        ("refund", process.amount, Some(of.clone()), method.clone())
                    }
                };
                self.movements.push(Movement {
                    process_id: id.to_owned(),
                    kind: kind.to_owned(),
                    transaction_id,
                    refund_of,
                    amount,
                    product: request.product.clone(),
                    method,
                });
            }
            Outcome::Fail => {
                process.message = Some("Payment declined".to_owned());
                let sub_status = if card {
                    "CardTransactionFailure"
                } else {
                    "QrTransactionFailure"
                };
                Self::finish(process, ProcessStatus::Fail, sub_status, now);
            }
            Outcome::Unknown => {
                process.message = Some("Connection with the bank lost; the result is unknown".to_owned());
                let sub_status = if card {
                    "ProcessingCard"
                } else {
                    "WaitForQrConfirmation"
                };
                Self::finish(process, ProcessStatus::Unknown, sub_status, now);
                process.paid = Some(Paid {
                    product: request.product.clone(),
                    gross,
                    method: request.method,
                    transaction_id: String::new(),
                });
            }
        }
    }

    fn act(&mut self, id: &str, request: &PayRequest, now: Instant) {
        self.settle(id, request, now);
        let final_now = self.processes.get(id).is_some_and(|p| p.status.is_final());
        if final_now && self.current.as_deref() == Some(id) {
            self.current = None;
        }
    }

    /// `POST /sim/pay`: the customer acts on the current operation (pays it, or confirms a refund).
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
        } else {
            self.act(&id, &request, now);
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

    /// The QR the screen shows now: while a new operation's screen redraws, the previous QR; then
    /// the current operation's, while it waits; nothing when idle.
    pub fn screen_qr(&mut self, now: Instant) -> Option<String> {
        self.advance(now);
        let process = self.current.as_ref().and_then(|id| self.processes.get(id))?;
        if process.status != ProcessStatus::Wait {
            return None;
        }
        if now < process.stale_until {
            process.stale_qr.clone()
        } else if now >= process.qr_from {
            process.qr_text.clone()
        } else {
            None
        }
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
                    "subStatus": Self::sub_status(p, now),
                    "qr": p.qr_text,
                })
            });
        let fault = self.fault(now);
        let paid: i64 = self
            .movements
            .iter()
            .filter(|m| m.kind == "payment")
            .map(|m| m.amount)
            .sum();
        let refunded: i64 = self
            .movements
            .iter()
            .filter(|m| m.kind == "refund")
            .map(|m| m.amount)
            .sum();
        json!({
            "terminalId": self.config.terminal_id,
            "current": current,
            "operations": self.processes.len(),
            "registration": self.pending_registration.as_ref().map(|p| json!({"name": p.name, "state": "pending"})),
            "registered": self.registered.iter().collect::<Vec<_>>(),
            "fault": fault,
            "config": self.config.knobs_json(),
            "counters": self.counters,
            "movements": self.movements,
            "paid_total": paid,
            "refunded_total": refunded,
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

    #[test]
    fn finished_processes_are_forgotten_and_a_reboot_forgets_all() {
        let mut device = Device::new(SimulatorConfig::default());
        let start = Instant::now();
        let first = device.payment(Some("100"), start).body["data"]["processId"]
            .as_str()
            .unwrap()
            .to_owned();
        device.customer_pays(PayRequest::default(), start).unwrap();
        let later = start + Duration::from_secs(29 * 60);
        assert_eq!(
            device.status(Some(&first), later).body["data"]["status"],
            "success"
        );
        let forgotten = start + Duration::from_secs(31 * 60);
        assert_eq!(device.status(Some(&first), forgotten).body["statusCode"], 101);
        assert_eq!(
            device.movements().len(),
            1,
            "the money it moved is still on record"
        );

        let second = device.payment(Some("100"), forgotten).body["data"]["processId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(second, first, "process ids are never reused");
        device.reboot();
        assert_eq!(device.status(Some(&second), forgotten).body["statusCode"], 101);
        assert_eq!(
            device.payment(Some("100"), forgotten).body["statusCode"],
            0,
            "free after the reboot"
        );
    }

    #[test]
    fn the_previous_qr_lingers_while_the_screen_redraws() {
        let mut device = Device::new(SimulatorConfig::default());
        let start = Instant::now();
        device.payment(Some("100"), start);
        assert_eq!(device.screen_qr(start), None, "nothing drawn yet");
        let first_at = start + Duration::from_millis(1600);
        let first = device.screen_qr(first_at).unwrap();
        device.customer_pays(PayRequest::default(), first_at).unwrap();
        device.payment(Some("200"), first_at);
        assert_eq!(
            device.screen_qr(first_at).as_deref(),
            Some(first.as_str()),
            "stale"
        );
        let second = device.screen_qr(first_at + Duration::from_millis(1600)).unwrap();
        assert_ne!(second, first);
    }
}
