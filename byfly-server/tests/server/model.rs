//! A model-based lifecycle test (`spec/API.md` §5.1): seeded random sequences of merchant actions
//! (init, cancel, refund everything or a part), customer actions (choose or switch a method, pay
//! with any product and amount — also the QR of an operation that was abandoned —, decline, pay
//! slowly, walk away, confirm or decline a refund), terminal behaviour (the bank's answer lost:
//! `unknown`, then given; a reboot that forgets every process), an operator deciding what the
//! terminals forgot, and server restarts — against the real server over HTTP with realistic
//! simulated terminals. After every step, once the server has caught up with the terminals, the
//! ledger's invariants are checked against the simulators' own record of what customers paid and
//! what refunds gave back (money on an operation waiting for an operator's decision is counted
//! once decided).
//!
//! CI runs a few short sequences; `bench/model.sh` runs many (`BYFLY_MODEL_SEQUENCES`,
//! `BYFLY_MODEL_STEPS`, `BYFLY_MODEL_SEED`) and prints "sequences, steps, invariant violations".

use crate::common::{ADMIN, App, admin, eventually, spawn_app_with};
use byfly_core::{Money, PaymentStatus, WebhookEvent};
use byfly_server::store::{OpState, TerminalId};
use byfly_terminal::simulator::{ConfigPatch, Outcome, PayRequest};
use serde_json::{Value, json};

/// xorshift64*: a small deterministic generator, so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    /// Seeds through splitmix64, so neighbouring seeds give unrelated sequences.
    fn seeded(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const METHODS: [&str; 4] = ["kaspi_gold", "kaspi_red", "kaspi_kredit", "kaspi_rassrochka"];
const PRODUCTS: [&str; 4] = ["Gold", "Red", "Loan", "Installment"];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Three realistic terminals (no remote cancel). An unpaid operation ends on its terminal after
/// 6 s instead of about 4 minutes: a walked-away customer must not hold a terminal for the whole
/// sequence. This shortens a clock; it does not make the terminal kinder.
async fn model_app() -> App {
    let app = spawn_app_with(3, false, |config| {
        config.kaspi_rate_per_ip = 0;
        config.kaspi_rate_per_payment = 0;
        config.admin_token = Some(ADMIN.to_owned().into());
    })
    .await;
    for simulator in &app.simulators {
        simulator.configure(&ConfigPatch {
            operation_timeout_ms: Some(6_000),
            ..ConfigPatch::default()
        });
    }
    app
}

fn money(value: &Value) -> Money {
    Money::parse(&value.to_string()).unwrap()
}

/// The simulator of a terminal id (terminals are added in the simulators' order).
fn simulator_of(app: &App, terminal_id: TerminalId) -> &byfly_terminal::simulator::Simulator {
    &app.simulators[usize::try_from(terminal_id.get() - 1).unwrap()]
}

/// Waits until the server has caught up with the terminals: no operation starting, and every
/// operation it follows still running on its terminal (a finished one is settled first).
async fn quiesce(app: &App, payments: &[String]) {
    eventually("the server catches up with the terminals", || async {
        for id in payments {
            // `/status` asks the terminal when the payment is processing.
            app.status(id).await;
            let payment = app.payment_row(id).await;
            for op in app.store.operations(payment.id).await.unwrap() {
                match op.state {
                    OpState::Starting if !op.start_uncertain => return None,
                    // Waiting for an operator: nothing the server can learn from the terminal.
                    OpState::InFlight if op.needs_review => {}
                    OpState::InFlight => {
                        let current = &simulator_of(app, op.terminal_id).state()["current"];
                        let same = current["processId"].as_str() == op.process_id.as_deref();
                        // Still waiting for a customer (not confirming: that lands soon), or
                        // `unknown` on both sides until the bank answers.
                        let running = same
                            && ((current["status"] == json!("wait")
                                && current["subStatus"] != json!("WaitForQrConfirmation"))
                                || (current["status"] == json!("unknown") && op.unknown_since.is_some()));
                        if !running {
                            return None;
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(())
    })
    .await;
}

/// §5.1's invariants, against the simulators' record of the money they moved.
async fn violations(app: &App, payments: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    // Money on an operation waiting for an operator counts once decided. Process ids are each
    // terminal's own: a movement is named by its terminal and process.
    let mut under_review = Vec::new();
    for id in payments {
        let payment = app.payment_row(id).await;
        for op in app.store.operations(payment.id).await.unwrap() {
            if op.needs_review && op.state == OpState::InFlight {
                under_review.extend(op.process_id.map(|process| (op.terminal_id, process)));
            }
        }
    }
    let movements: Vec<_> = app
        .simulators
        .iter()
        .enumerate()
        .flat_map(|(index, s)| {
            let terminal_id = TerminalId(i64::try_from(index).unwrap() + 1);
            s.movements().into_iter().map(move |m| (terminal_id, m))
        })
        .filter(|(terminal_id, m)| !under_review.contains(&(*terminal_id, m.process_id.clone())))
        .map(|(_, m)| m)
        .collect();
    let moved = |kind: &str| -> i64 {
        movements
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.amount)
            .sum()
    };
    let (mut received, mut refunded) = (Money::ZERO, Money::ZERO);
    for id in payments {
        let view = app.status(id).await;
        let payment = app.payment_row(id).await;
        let operations = app.store.operations(payment.id).await.unwrap();
        received = received
            + operations
                .iter()
                .filter(|op| !op.is_refund() && op.state == OpState::Succeeded)
                .map(|op| op.gross.unwrap_or(Money::ZERO))
                .sum::<Money>();
        refunded = refunded + payment.refunded_amount;
        let status = PaymentStatus::parse(view["status"].as_str().unwrap()).unwrap();
        let paid = money(&view["paid_amount"]);
        let held = paid.saturating_sub(money(&view["refunded_amount"]));
        if status == PaymentStatus::Processing
            && !operations
                .iter()
                .any(|op| op.is_current && op.state == OpState::InFlight)
        {
            found.push(format!("{id}: processing with no operation in flight"));
        }
        if matches!(
            status,
            PaymentStatus::Pending | PaymentStatus::Failed | PaymentStatus::Expired
        ) && held.is_positive()
        {
            found.push(format!("{id}: {status} while holding {held}"));
        }
        let events = app.events(id).await;
        if let Some(last) = events.last() {
            let reported_paid = Money::parse(&last.2).unwrap();
            if reported_paid != paid {
                found.push(format!(
                    "{id}: last event shows paid {reported_paid}, the payment {paid}"
                ));
            }
            if status != PaymentStatus::Processing && last.1 != status {
                found.push(format!("{id}: last event shows {}, the payment {status}", last.1));
            }
        } else if paid.is_positive() {
            found.push(format!("{id}: money received and no event"));
        }
        let mut entered_paid = false;
        for event in &events {
            match event.0 {
                WebhookEvent::Paid if entered_paid => {
                    found.push(format!("{id}: two paid events in one entry"))
                }
                WebhookEvent::Paid => entered_paid = true,
                WebhookEvent::Refunded if event.1 == PaymentStatus::Refunded => entered_paid = false,
                _ => {}
            }
        }
    }
    if received != Money::from_tenge(moved("payment")) {
        found.push(format!(
            "terminals took {} ₸, the payments record {received}",
            moved("payment")
        ));
    }
    if refunded != Money::from_tenge(moved("refund")) {
        found.push(format!(
            "terminals refunded {} ₸, the payments record {refunded}",
            moved("refund")
        ));
    }
    let busy: u64 = app.simulators.iter().map(|s| s.counters().busy_answers).sum();
    if busy > 0 {
        found.push(format!("terminals answered 107 {busy} times: double-booked"));
    }
    found
}

/// The terminals whose current operation waits for a customer with its QR on the screen (while
/// the screen still redraws, `Initialize`, there is nothing to scan), with its kind and amount.
fn waiting(app: &App, kind: &str) -> Vec<(usize, i64)> {
    app.simulators
        .iter()
        .enumerate()
        .filter_map(|(index, s)| {
            let current = s.state()["current"].clone();
            (current["status"] == json!("wait")
                && current["kind"] == json!(kind)
                && current["subStatus"] != json!("Initialize"))
            .then(|| (index, current["amount"].as_i64().unwrap_or(0)))
        })
        .collect()
}

/// A customer confirms (or declines) the refund a terminal shows, if one does.
fn answer_refund(app: &App, outcome: Outcome) -> Option<usize> {
    let (index, _) = *waiting(app, "refund").first()?;
    app.simulators[index]
        .pay(PayRequest {
            outcome,
            ..PayRequest::default()
        })
        .ok()?;
    Some(index)
}

/// An operator decides the operations a terminal forgot (after a reboot), from the terminal's own
/// history: paid as it shows, or not paid when it shows nothing. An operation the terminal still
/// runs (`unknown`) is left for the bank's answer.
async fn review(app: &App) -> String {
    let mut decided = Vec::new();
    for op in app.store.operations_needing_review().await.unwrap() {
        let Some(process) = op.process_id.clone() else {
            continue;
        };
        let simulator = simulator_of(app, op.terminal_id);
        if simulator.state()["current"]["processId"].as_str() == Some(process.as_str()) {
            continue;
        }
        let moved = simulator
            .movements()
            .into_iter()
            .find(|m| m.process_id == process);
        let decision = match &moved {
            Some(m) => {
                json!({"outcome": "paid", "amount": m.amount, "transaction_id": m.transaction_id, "method": m.method})
            }
            None => json!({"outcome": "not_paid"}),
        };
        let path = format!("/operations/{}/resolve", op.id);
        let (code, _) = admin(app, reqwest::Method::POST, &path, Some(decision)).await;
        decided.push(format!(
            "{} {}: {code}",
            op.id,
            if moved.is_some() { "paid" } else { "not paid" }
        ));
    }
    format!("operator reviews [{}]", decided.join(", "))
}

/// A customer chooses (or switches to) a method on the payment page: `/kaspi`. Also what an
/// action with nobody to act on does instead, so that sequences keep operations on the terminals.
async fn kaspi(app: &App, rng: &mut Rng, id: &str) -> String {
    let method = *rng.pick(&METHODS);
    let (code, body) = app.kaspi(id, method).await;
    format!(
        "kaspi {id} {method}: {code} {}",
        body["code"].as_str().unwrap_or("ok")
    )
}

/// One step: an action of a merchant, a customer, a terminal, an operator or time. Returns its name.
async fn act(app: &mut App, rng: &mut Rng, payments: &mut Vec<String>) -> String {
    let roll = rng.below(100);
    if payments.is_empty() || roll < 8 {
        let amount = 1_000 + 50 * i64::try_from(rng.below(2_000)).unwrap();
        payments.push(app.init(amount).await);
        return format!("init {amount}");
    }
    let id = rng.pick(payments).clone();
    match roll {
        8..34 => kaspi(app, rng, &id).await,
        34..52 => {
            let waiting = waiting(app, "payment");
            if waiting.is_empty() {
                return kaspi(app, rng, &id).await;
            }
            let (index, asked) = *rng.pick(&waiting);
            let product = (*rng.pick(&PRODUCTS)).to_owned();
            let per_mille = *rng.pick(&[400_i64, 1000, 1000, 1140]);
            let amount = (asked * per_mille / 1000).max(1);
            let slow = *rng.pick(&[0_u64, 0, 0, 700]);
            app.simulators[index]
                .pay(PayRequest {
                    product: product.clone(),
                    amount: Some(amount),
                    after_ms: slow,
                    ..PayRequest::default()
                })
                .ok();
            format!("terminal {index}: pays {amount} with {product} (after {slow} ms)")
        }
        52..55 => {
            let waiting = waiting(app, "payment");
            if waiting.is_empty() {
                return kaspi(app, rng, &id).await;
            }
            let (index, _) = *rng.pick(&waiting);
            app.simulators[index]
                .pay(PayRequest {
                    outcome: Outcome::Fail,
                    ..PayRequest::default()
                })
                .ok();
            format!("terminal {index}: declines")
        }
        55..59 => {
            // The customer pays, and the bank's answer is lost: the terminal says `unknown`.
            let waiting = waiting(app, "payment");
            if waiting.is_empty() {
                return kaspi(app, rng, &id).await;
            }
            let (index, asked) = *rng.pick(&waiting);
            app.simulators[index]
                .pay(PayRequest {
                    amount: Some(asked),
                    outcome: Outcome::Unknown,
                    ..PayRequest::default()
                })
                .ok();
            format!("terminal {index}: unknown after paying {asked}")
        }
        59..64 => {
            let outcome = *rng.pick(&[Outcome::Success, Outcome::Fail]);
            let answered: Vec<usize> = (0..app.simulators.len())
                .filter(|&index| app.simulators[index].resolve_unknown(outcome).is_ok())
                .collect();
            format!("the bank answers {outcome:?} on terminals {answered:?}")
        }
        64..67 => {
            format!("cancel {id}: {}", app.cancel(&id).await.0)
        }
        67..73 => {
            let view = app.status(&id).await;
            let held = money(&view["paid_amount"]).saturating_sub(money(&view["refunded_amount"]));
            let whole = held.as_decimal().trunc().to_string().parse::<i64>().unwrap_or(0);
            let body = if rng.below(2) == 0 || whole < 2 {
                json!({})
            } else {
                json!({"amount": 1 + i64::try_from(rng.below(u64::try_from(whole - 1).unwrap())).unwrap()})
            };
            let (code, answer) = app.refund(&id, body.clone()).await;
            if code == 200 && rng.below(2) == 0 {
                answer_refund(app, Outcome::Success);
            }
            let refused = answer["code"].as_str().unwrap_or("ok");
            // Everything held can be refunded through the API (§5.1): only a running refund, or a
            // terminal that is busy or down, may stand in the way.
            let wrongly = whole > 0
                && matches!(
                    refused,
                    "refund_too_large" | "nothing_to_refund" | "payment_refunded"
                );
            format!(
                "refund {id} {body}: {code} {refused}{}",
                if wrongly {
                    format!(" {VIOLATION} holding {held}")
                } else {
                    String::new()
                }
            )
        }
        73..79 => {
            let outcome = *rng.pick(&[Outcome::Success, Outcome::Success, Outcome::Fail]);
            match answer_refund(app, outcome) {
                Some(index) => format!("terminal {index}: the customer answers the refund {outcome:?}"),
                None => kaspi(app, rng, &id).await,
            }
        }
        79..81 => {
            let index = usize::try_from(rng.below(app.simulators.len() as u64)).unwrap();
            app.simulators[index].reboot();
            format!("terminal {index} reboots")
        }
        81..87 => review(app).await,
        87..89 => {
            app.restart().await;
            "the server restarts".into()
        }
        89..96 => {
            // The terminal moves money and reboots before the server hears of it: only its history
            // (and an operator reading it) knows.
            let kind = *rng.pick(&["payment", "refund"]);
            let waiting = waiting(app, kind);
            if waiting.is_empty() {
                return kaspi(app, rng, &id).await;
            }
            let (index, _) = *rng.pick(&waiting);
            app.simulators[index].pay(PayRequest::default()).ok();
            app.simulators[index].reboot();
            format!("terminal {index}: the {kind} goes through, then the terminal reboots")
        }
        _ => "the customer walks away".into(),
    }
}

/// Sequences that once found a violation, replayed in every run (seed, steps), each with its cause:
/// - 3004, 28 steps: a partial refund asked while a refund of everything was still waiting for the
///   customer answered `refund_too_large` (the running refund's amount was taken off what the
///   operations hold before the running refund was noticed) instead of "a refund is running".
/// - 5006, 17 steps: a customer confirmed a refund part before its QR was on the screen, the
///   terminal rebooted before the server had polled it, and the `101` was read as "never shown,
///   not refunded" — money given back and not in `refunded_amount` (then refundable twice). Fixed
///   twice over: a `101` for a refund always goes to review, and the model's customers scan a QR
///   only once it is drawn (`subStatus` past `Initialize`), as real ones can.
const REGRESSIONS: [(u64, usize); 2] = [(3004, 28), (5006, 17)];

/// Marks a step whose answer itself broke an invariant.
const VIOLATION: &str = "VIOLATION:";

/// Runs `steps` steps of sequence `seed`: the violations found, with the steps that led there.
async fn run_sequence(seed: u64, steps: usize) -> Vec<String> {
    let mut app = model_app().await;
    let mut rng = Rng::seeded(seed);
    let mut payments = Vec::new();
    let mut trail = Vec::new();
    for step in 0..steps {
        trail.push(act(&mut app, &mut rng, &mut payments).await);
        quiesce(&app, &payments).await;
        let mut found = violations(&app, &payments).await;
        if let Some(last) = trail.last().filter(|step| step.contains(VIOLATION)) {
            found.push(last.clone());
        }
        if !found.is_empty() {
            return found
                .into_iter()
                .map(|v| format!("seed {seed}, step {step}: {v}\n  after: {}", trail.join(" → ")))
                .collect();
        }
    }
    if std::env::var_os("BYFLY_MODEL_VERBOSE").is_some() {
        println!("seed {seed}: {}", trail.join(" → "));
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_lifecycles_keep_every_tenge_accounted_for() {
    let sequences = setting("BYFLY_MODEL_SEQUENCES", 3);
    let steps = usize::try_from(setting("BYFLY_MODEL_STEPS", 14)).unwrap();
    let base = setting("BYFLY_MODEL_SEED", 20_261_201);
    let mut violations = Vec::new();
    for n in 0..sequences {
        violations.extend(run_sequence(base + n, steps).await);
    }
    for (seed, steps) in REGRESSIONS {
        violations.extend(run_sequence(seed, steps).await);
    }
    println!(
        "model: {sequences} sequences, {} steps, {} invariant violations (and {} regression sequences)",
        sequences * steps as u64,
        violations.len(),
        REGRESSIONS.len()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
