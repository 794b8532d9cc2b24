//! The operation ledger: every figure of a payment, derived from its terminal operations.
//!
//! The deployed system stored `amount`, `paid_amount` and `remaining_amount` as mutable columns and
//! updated them in three places with three rounding rules; they drifted. Here a payment is its
//! immutable original amount A₀ plus the list of operations started by `/kaspi`, and every figure
//! is a pure function of that list (`spec/API.md` §4). The server stores the operations and rebuilds
//! a [`Ledger`] whenever it needs a figure or a decision.

use rust_decimal::Decimal;

use crate::method::{MethodCode, PaymentMethod};
use crate::money::{Money, Percent, round_half_away};
use crate::status::{MoneyEvent, Standing};

/// The price of one terminal operation, fixed when `/kaspi` starts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationQuote {
    /// The method the customer chose (after alias resolution).
    pub method: MethodCode,
    /// The method's effective percent `p` at the time of the quote; kept so that later edits of the
    /// method do not change the meaning of an operation already started.
    pub percent: Percent,
    /// `B`: what was left to pay when the operation started (A₀ for the first one).
    pub base: Money,
    /// `C`: `round2(B × p / 100)` when the method adds its commission, else 0.
    pub commission: Money,
    /// `B + C`: the operation's `amount` in the `/kaspi` answer.
    pub charge: Money,
}

impl OperationQuote {
    /// Prices an operation of `method` on `base`.
    pub fn price(base: Money, method: &PaymentMethod) -> OperationQuote {
        let commission = base.percent_of(method.charged_percent());
        OperationQuote {
            method: method.code.clone(),
            percent: method.effective_percent(),
            base,
            commission,
            charge: base + commission,
        }
    }

    /// What the terminal is asked for: the charge rounded up to whole tenge, since the terminal takes
    /// only whole tenge and rounding down would leave the merchant short.
    pub fn terminal_amount(&self) -> i64 {
        self.charge.ceil_tenge()
    }

    /// The commission percent to show for this operation: the percent actually added to the charge.
    pub fn charged_percent(&self) -> Percent {
        if self.commission.is_zero() {
            Percent::ZERO
        } else {
            self.percent
        }
    }
}

/// Where an operation stands on its terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationState {
    /// Started on a terminal and not final yet (including `unknown` answers, which are never failures).
    InFlight,
    /// The terminal reported success.
    Succeeded {
        /// `G`: the gross amount the customer paid, as the terminal reported it.
        gross: Money,
        /// The method matching the product actually used (`addInfo.ProductType`); the operation's
        /// own method when the terminal did not say.
        product_method: MethodCode,
        /// `R`: what this operation adds to `paid_amount` (see [`credited_amount`]).
        credited: Money,
    },
    /// The terminal reported a definitive failure; nothing was received.
    Failed,
}

/// One terminal operation of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The price fixed at start.
    pub quote: OperationQuote,
    /// False once the operation was abandoned (method switched, payment cancelled): it is still
    /// followed to its end and its money is still credited, but it no longer decides the status.
    pub current: bool,
    /// Progress on the terminal.
    pub state: OperationState,
}

impl Operation {
    /// A freshly started, current operation.
    pub fn started(quote: OperationQuote) -> Operation {
        Operation {
            quote,
            current: true,
            state: OperationState::InFlight,
        }
    }

    /// True while the terminal has not given a final answer.
    pub fn in_flight(&self) -> bool {
        self.state == OperationState::InFlight
    }

    /// R of a successful operation, else zero.
    pub fn credited(&self) -> Money {
        match &self.state {
            OperationState::Succeeded { credited, .. } => *credited,
            _ => Money::ZERO,
        }
    }
}

/// `R`: what a successful operation adds to the payment.
///
/// `R = G` when the product's effective percent `f` is at most the operation's `p`; otherwise the
/// customer paid by a dearer product than priced (credit for a Gold price) and Kaspi kept its fee,
/// so `R = round0(G / (1 + (f − p)/100))`, whole tenge, half away from zero.
pub fn credited_amount(gross: Money, operation_percent: Percent, product_percent: Percent) -> Money {
    let extra = product_percent.minus(operation_percent);
    if extra <= Decimal::ZERO {
        return gross;
    }
    let divisor = Decimal::ONE + extra / Decimal::ONE_HUNDRED;
    let exact = gross.as_decimal() / divisor;
    // |exact| ≤ |gross|, so it is within Money's range.
    Money::from_decimal(round_half_away(exact, 0)).unwrap_or(gross)
}

/// What the terminal finally said about an operation, as the ledger needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalOutcome {
    /// The customer paid `gross` with the product matching `product_method`, whose effective
    /// percent is `product_percent` (the operation's own method and percent when the terminal did
    /// not name a product).
    Succeeded {
        gross: Money,
        product_method: MethodCode,
        product_percent: Percent,
    },
    /// Definitive failure.
    Failed,
}

/// Why the ledger refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// No operation at that index.
    #[error("no operation #{0}")]
    NoSuchOperation(usize),
    /// The operation already has a final answer; a second one is ignored, never double-counted.
    #[error("operation #{0} is already final")]
    AlreadyFinal(usize),
    /// Nothing is left to pay, so no new operation can be priced.
    #[error("nothing is left to pay")]
    NothingToPay,
    /// A refund larger than what was received and not yet refunded.
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    RefundTooLarge { requested: Money, refundable: Money },
    /// A refund of zero or less.
    #[error("refund amount must be positive")]
    RefundNotPositive,
}

/// The figures of a payment (`spec/API.md` §4), all derived from its operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// A₀, immutable.
    pub original_amount: Money,
    /// Σ C of successful operations + C of the current operation in flight.
    pub commission_amount: Money,
    /// A₀ + `commission_amount`.
    pub amount: Money,
    /// Σ R of successful operations.
    pub paid_amount: Money,
    /// max(0, amount − paid).
    pub remaining_amount: Money,
    /// max(0, paid − amount).
    pub overpaid_amount: Money,
    /// What was refunded so far.
    pub refunded_amount: Money,
    /// max(500, amount × 0.5 %), exact.
    pub tolerance: Decimal,
}

impl Figures {
    /// `remaining_amount ≤ tolerance`: what "paid" means after a successful operation.
    pub fn is_fully_paid(&self) -> bool {
        self.remaining_amount.as_decimal() <= self.tolerance
    }
}

/// The tolerance of the guide: `max(500, amount × 0.005)`.
pub fn tolerance(amount: Money) -> Decimal {
    let half_percent = amount.as_decimal() * Decimal::new(5, 3);
    half_percent.max(Decimal::from(500))
}

/// A payment's original amount, its operations in start order, and its refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// A₀ from init.
    pub original_amount: Money,
    /// Every operation ever started, in order.
    pub operations: Vec<Operation>,
    /// Σ of confirmed refunds.
    pub refunded_amount: Money,
}

impl Ledger {
    /// A payment with no operation yet.
    pub fn new(original_amount: Money) -> Ledger {
        Ledger {
            original_amount,
            operations: Vec::new(),
            refunded_amount: Money::ZERO,
        }
    }

    fn succeeded(&self) -> impl Iterator<Item = &Operation> {
        self.operations
            .iter()
            .filter(|op| matches!(op.state, OperationState::Succeeded { .. }))
    }

    /// The current operation, if it is still in flight.
    pub fn current_in_flight(&self) -> Option<&Operation> {
        self.operations.iter().find(|op| op.current && op.in_flight())
    }

    /// True while any operation, current or abandoned, awaits its terminal's final answer.
    pub fn any_in_flight(&self) -> bool {
        self.operations.iter().any(Operation::in_flight)
    }

    /// Every figure of the payment.
    pub fn figures(&self) -> Figures {
        let settled_commission: Money = self.succeeded().map(|op| op.quote.commission).sum();
        let in_flight_commission = self
            .current_in_flight()
            .map_or(Money::ZERO, |op| op.quote.commission);
        let commission_amount = settled_commission + in_flight_commission;
        let amount = self.original_amount + commission_amount;
        let paid_amount: Money = self.succeeded().map(Operation::credited).sum();
        Figures {
            original_amount: self.original_amount,
            commission_amount,
            amount,
            paid_amount,
            remaining_amount: amount.saturating_sub(paid_amount),
            overpaid_amount: paid_amount.saturating_sub(amount),
            refunded_amount: self.refunded_amount,
            tolerance: tolerance(amount),
        }
    }

    /// `amount` with the current in-flight operation left out: A₀ + Σ C of successful operations.
    fn amount_without_current(&self) -> Money {
        let settled_commission: Money = self.succeeded().map(|op| op.quote.commission).sum();
        self.original_amount + settled_commission
    }

    /// What the status machine decides on ([`crate::PaymentStatus::follow`]); the caller sets
    /// `unchanged_for_merchant` from what it last reported.
    pub fn standing(&self) -> Standing {
        let figures = self.figures();
        let owed = self.amount_without_current();
        let covered = |have: Money| owed.saturating_sub(have).as_decimal() <= tolerance(owed);
        let paid = figures.paid_amount;
        Standing {
            fully_paid: figures.is_fully_paid(),
            fully_paid_without_current: covered(paid),
            current_in_flight: self.current_in_flight().is_some(),
            received: paid.is_positive(),
            held_covers_amount: covered(paid.saturating_sub(self.refunded_amount)),
            everything_refunded: paid.is_positive() && self.refunded_amount >= paid,
            unchanged_for_merchant: false,
        }
    }

    /// `B` of the next operation: what remains once the current in-flight operation (which a new
    /// one replaces) is left out.
    pub fn next_base(&self) -> Money {
        let settled_commission: Money = self.succeeded().map(|op| op.quote.commission).sum();
        let paid: Money = self.succeeded().map(Operation::credited).sum();
        (self.original_amount + settled_commission).saturating_sub(paid)
    }

    /// Prices the next operation of `method` (a top-up after a partial payment is priced on what
    /// remains: scenario 3 of the guide answers `amount = original_amount = 12281`).
    pub fn quote_next(&self, method: &PaymentMethod) -> Result<OperationQuote, LedgerError> {
        let base = self.next_base();
        if !base.is_positive() {
            return Err(LedgerError::NothingToPay);
        }
        Ok(OperationQuote::price(base, method))
    }

    /// Starts an operation: the previous current one, if any, is abandoned (still followed, still
    /// credited). Returns the new operation's index.
    pub fn start(&mut self, quote: OperationQuote) -> usize {
        for op in &mut self.operations {
            op.current = false;
        }
        self.operations.push(Operation::started(quote));
        self.operations.len() - 1
    }

    /// Abandons the current operation (cancel): it keeps being followed, but no longer counts
    /// towards `amount` until it succeeds.
    pub fn abandon_current(&mut self) {
        for op in &mut self.operations {
            op.current = false;
        }
    }

    /// Records the terminal's final answer for operation `index` and says what it means for the
    /// payment: the [`MoneyEvent`] for its status to follow (none when an abandoned operation
    /// ended without money: nothing changed).
    pub fn settle(
        &mut self,
        index: usize,
        outcome: TerminalOutcome,
    ) -> Result<Option<MoneyEvent>, LedgerError> {
        let op = self
            .operations
            .get_mut(index)
            .ok_or(LedgerError::NoSuchOperation(index))?;
        if !op.in_flight() {
            return Err(LedgerError::AlreadyFinal(index));
        }
        let was_current = op.current;
        match outcome {
            TerminalOutcome::Succeeded {
                gross,
                product_method,
                product_percent,
            } => {
                let credited = credited_amount(gross, op.quote.percent, product_percent);
                op.state = OperationState::Succeeded {
                    gross,
                    product_method,
                    credited,
                };
                Ok(Some(MoneyEvent::Credited))
            }
            TerminalOutcome::Failed => {
                op.state = OperationState::Failed;
                Ok(was_current.then_some(MoneyEvent::CurrentEnded))
            }
        }
    }

    /// What can still be refunded: received minus already refunded.
    pub fn refundable(&self) -> Money {
        self.figures().paid_amount.saturating_sub(self.refunded_amount)
    }

    /// Checks a refund request (`None` = everything refundable) and returns the amount to refund.
    pub fn plan_refund(&self, requested: Option<Money>) -> Result<Money, LedgerError> {
        let refundable = self.refundable();
        let amount = requested.unwrap_or(refundable);
        if !amount.is_positive() {
            return Err(LedgerError::RefundNotPositive);
        }
        if amount > refundable {
            return Err(LedgerError::RefundTooLarge {
                requested: amount,
                refundable,
            });
        }
        Ok(amount)
    }

    /// Records money a terminal refund gave back; the status follows [`MoneyEvent::Refunded`].
    pub fn record_refund(&mut self, amount: Money) -> MoneyEvent {
        self.refunded_amount = self.refunded_amount + amount;
        MoneyEvent::Refunded
    }
}

/// Splits one refund request over the operations that received the money (`spec/API.md` §3.4):
/// each terminal refund goes back through the operation that took it, so a request larger than
/// any one operation becomes several parts, the largest source first (fewest confirmations for the
/// customer). `sources` pairs each operation with what it still holds; a terminal gives back whole
/// tenge only, so tiyn left on a source are not counted. Ties keep the order given.
pub fn split_refund<K: Copy>(amount: Money, sources: &[(K, Money)]) -> Result<Vec<(K, Money)>, LedgerError> {
    if !amount.is_positive() {
        return Err(LedgerError::RefundNotPositive);
    }
    let mut by_size: Vec<(K, Money)> = sources
        .iter()
        .map(|&(source, held)| (source, held.floor_tenge()))
        .filter(|(_, held)| held.is_positive())
        .collect();
    by_size.sort_by_key(|&(_, held)| std::cmp::Reverse(held));
    let mut left = amount;
    let mut parts = Vec::new();
    for (source, held) in by_size {
        if left.is_zero() {
            break;
        }
        let part = held.min(left);
        parts.push((source, part));
        left = left.saturating_sub(part);
    }
    if left.is_positive() {
        return Err(LedgerError::RefundTooLarge {
            requested: amount,
            refundable: amount.saturating_sub(left),
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PaymentEvent, PaymentStatus};

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn method(code: &str) -> PaymentMethod {
        PaymentMethod::seeded()
            .into_iter()
            .find(|m| m.code.as_str() == code)
            .unwrap()
    }

    fn paid_with(code: &str, gross: &str) -> TerminalOutcome {
        let product = method(code);
        TerminalOutcome::Succeeded {
            gross: m(gross),
            product_method: product.code.clone(),
            product_percent: product.effective_percent(),
        }
    }

    /// Runs one operation through the ledger and the status machine, as the server does.
    fn run(
        ledger: &mut Ledger,
        status: PaymentStatus,
        code: &str,
        outcome: TerminalOutcome,
    ) -> (
        OperationQuote,
        PaymentStatus,
        Option<crate::webhook::WebhookEvent>,
    ) {
        let quote = ledger.quote_next(&method(code)).unwrap();
        let status = status.apply(&PaymentEvent::OperationStarted).unwrap().to;
        let index = ledger.start(quote.clone());
        let event = ledger.settle(index, outcome).unwrap().unwrap();
        let settlement = status.follow(event, &ledger.standing());
        (quote, settlement.to, settlement.webhook)
    }

    #[test]
    fn scenario_1_gold_50000_is_paid_in_full() {
        let mut ledger = Ledger::new(m("50000"));
        let (quote, status, webhook) = run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_gold",
            paid_with("kaspi_gold", "50000"),
        );
        assert_eq!(
            (quote.charge, quote.commission, quote.base),
            (m("50000"), m("0"), m("50000"))
        );
        assert_eq!(quote.terminal_amount(), 50_000);
        let f = ledger.figures();
        assert_eq!(
            (f.amount, f.paid_amount, f.remaining_amount),
            (m("50000"), m("50000"), m("0"))
        );
        assert_eq!(status, PaymentStatus::Paid);
        assert_eq!(webhook, Some(crate::webhook::WebhookEvent::Paid));
    }

    #[test]
    fn scenario_2_kredit_100000_adds_14000_and_is_paid() {
        let mut ledger = Ledger::new(m("100000"));
        let (quote, status, webhook) = run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_kredit",
            paid_with("kaspi_kredit", "114000"),
        );
        assert_eq!(
            (quote.charge, quote.commission, quote.base),
            (m("114000"), m("14000"), m("100000"))
        );
        assert_eq!(quote.charged_percent(), Percent::whole(14));
        let f = ledger.figures();
        assert_eq!(f.amount, m("114000"));
        assert_eq!(f.commission_amount, m("14000"));
        assert_eq!(f.paid_amount, m("114000"));
        assert_eq!(f.remaining_amount, m("0"));
        assert_eq!(status, PaymentStatus::Paid);
        assert_eq!(webhook, Some(crate::webhook::WebhookEvent::Paid));
    }

    #[test]
    fn scenario_3_gold_priced_but_paid_by_credit_then_topped_up() {
        let mut ledger = Ledger::new(m("100000"));
        // Priced Gold, the customer used credit: Kaspi keeps 14 %, 87 719 arrives.
        let (quote, status, webhook) = run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_gold",
            paid_with("kaspi_kredit", "100000"),
        );
        assert_eq!((quote.charge, quote.commission), (m("100000"), m("0")));
        let f = ledger.figures();
        assert_eq!(f.amount, m("100000"));
        assert_eq!(f.paid_amount, m("87719"));
        assert_eq!(f.remaining_amount, m("12281"));
        assert_eq!(status, PaymentStatus::PartiallyPaid);
        assert_eq!(webhook, Some(crate::webhook::WebhookEvent::PartiallyPaid));

        // The top-up is priced on what remains.
        let (quote, status, webhook) = run(
            &mut ledger,
            status,
            "kaspi_gold",
            paid_with("kaspi_gold", "12281"),
        );
        assert_eq!(quote.charge, m("12281"), "the /kaspi answer's amount");
        assert_eq!(quote.base, m("12281"), "the /kaspi answer's original_amount");
        assert_eq!(quote.commission, m("0"));
        let f = ledger.figures();
        assert_eq!(
            (f.amount, f.paid_amount, f.remaining_amount),
            (m("100000"), m("100000"), m("0"))
        );
        assert_eq!(status, PaymentStatus::Paid);
        assert_eq!(webhook, Some(crate::webhook::WebhookEvent::Paid));
    }

    #[test]
    fn scenario_4_kredit_priced_but_paid_by_gold_stays_short_by_the_fee() {
        let mut ledger = Ledger::new(m("100000"));
        let (quote, status, webhook) = run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_kredit",
            paid_with("kaspi_gold", "100000"),
        );
        assert_eq!((quote.charge, quote.commission), (m("114000"), m("14000")));
        let f = ledger.figures();
        assert_eq!(f.amount, m("114000"));
        assert_eq!(f.paid_amount, m("100000"));
        assert_eq!(f.remaining_amount, m("14000"));
        assert_eq!(status, PaymentStatus::PartiallyPaid);
        assert_eq!(webhook, Some(crate::webhook::WebhookEvent::PartiallyPaid));
        // Option A of the guide: the 14 000 top-up, priced Gold.
        assert_eq!(
            ledger.quote_next(&method("kaspi_gold")).unwrap().charge,
            m("14000")
        );
    }

    #[test]
    fn tolerance_is_the_guides() {
        assert_eq!(tolerance(m("10000")), Decimal::from(500));
        assert_eq!(tolerance(m("100000")), Decimal::from(500));
        assert_eq!(tolerance(m("200000")), Decimal::from(1000));
        assert_eq!(tolerance(m("200001")), Decimal::new(1_000_005, 3));
    }

    #[test]
    fn within_tolerance_is_paid_and_remaining_is_still_truthful() {
        let mut ledger = Ledger::new(m("100000"));
        let (_, status, _) = run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_gold",
            paid_with("kaspi_gold", "99500"),
        );
        assert_eq!(status, PaymentStatus::Paid);
        assert_eq!(ledger.figures().remaining_amount, m("500"));

        let mut ledger = Ledger::new(m("100000"));
        let (_, status, _) = run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_gold",
            paid_with("kaspi_gold", "99499.99"),
        );
        assert_eq!(status, PaymentStatus::PartiallyPaid);
    }

    #[test]
    fn in_flight_commission_counts_and_failure_removes_it() {
        let mut ledger = Ledger::new(m("100000"));
        let quote = ledger.quote_next(&method("kaspi_kredit")).unwrap();
        let index = ledger.start(quote);
        assert_eq!(ledger.figures().amount, m("114000"));
        let event = ledger.settle(index, TerminalOutcome::Failed).unwrap();
        assert_eq!(event, Some(MoneyEvent::CurrentEnded));
        assert!(!ledger.standing().received);
        assert_eq!(ledger.figures().amount, m("100000"));
        assert_eq!(
            ledger.settle(index, TerminalOutcome::Failed),
            Err(LedgerError::AlreadyFinal(index))
        );
        assert_eq!(
            ledger.settle(9, TerminalOutcome::Failed),
            Err(LedgerError::NoSuchOperation(9))
        );
    }

    #[test]
    fn abandoned_operation_still_credits_its_money() {
        let mut ledger = Ledger::new(m("100000"));
        let first = ledger.start(ledger.quote_next(&method("kaspi_kredit")).unwrap());
        // The customer switches to Gold: the Kredit operation is abandoned, the new one priced on A₀.
        let gold = ledger.quote_next(&method("kaspi_gold")).unwrap();
        assert_eq!(gold.charge, m("100000"));
        let second = ledger.start(gold);
        assert_eq!(
            ledger.figures().amount,
            m("100000"),
            "abandoned commission no longer counts"
        );
        // The abandoned one failing changes nothing.
        assert_eq!(ledger.settle(first, TerminalOutcome::Failed).unwrap(), None);
        // Paying the current one settles it.
        let event = ledger.settle(second, paid_with("kaspi_gold", "100000")).unwrap();
        assert_eq!(event, Some(MoneyEvent::Credited));
        let standing = ledger.standing();
        assert!(standing.fully_paid && !standing.current_in_flight);
    }

    #[test]
    fn abandoned_operation_paid_late_shows_as_overpaid() {
        let mut ledger = Ledger::new(m("50000"));
        let first = ledger.start(ledger.quote_next(&method("kaspi_gold")).unwrap());
        let second = ledger.start(ledger.quote_next(&method("kaspi_red")).unwrap());
        ledger.settle(second, paid_with("kaspi_red", "50000")).unwrap();
        let event = ledger.settle(first, paid_with("kaspi_gold", "50000")).unwrap();
        assert_eq!(event, Some(MoneyEvent::Credited));
        let f = ledger.figures();
        assert_eq!(
            (f.paid_amount, f.overpaid_amount, f.remaining_amount),
            (m("100000"), m("50000"), m("0"))
        );
        assert_eq!(
            PaymentStatus::Paid
                .follow(event.unwrap(), &ledger.standing())
                .webhook,
            Some(crate::webhook::WebhookEvent::Overpaid),
            "never a second paid event: reported as overpayment"
        );
    }

    #[test]
    fn credited_amount_rule() {
        let p0 = Percent::ZERO;
        let p14 = Percent::whole(14);
        assert_eq!(credited_amount(m("100000"), p0, p14), m("87719"));
        assert_eq!(credited_amount(m("100000"), p14, p0), m("100000"));
        assert_eq!(credited_amount(m("114000"), p14, p14), m("114000"));
        // Half away from zero at whole tenge: 57 / 1.14 = 50 exactly; 1 / 1.14 = 0.877… → 1.
        assert_eq!(credited_amount(m("57"), p0, p14), m("50"));
        assert_eq!(credited_amount(m("1"), p0, p14), m("1"));
    }

    #[test]
    fn refunds_accumulate_up_to_what_was_received() {
        let mut ledger = Ledger::new(m("50000"));
        run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_gold",
            paid_with("kaspi_gold", "50000"),
        );
        assert_eq!(
            ledger.plan_refund(Some(m("60000"))),
            Err(LedgerError::RefundTooLarge {
                requested: m("60000"),
                refundable: m("50000")
            })
        );
        assert_eq!(
            ledger.plan_refund(Some(m("0"))),
            Err(LedgerError::RefundNotPositive)
        );
        assert_eq!(ledger.plan_refund(Some(m("20000"))), Ok(m("20000")));
        assert_eq!(ledger.record_refund(m("20000")), MoneyEvent::Refunded);
        assert!(!ledger.standing().everything_refunded);
        assert_eq!(ledger.plan_refund(None), Ok(m("30000")));
        ledger.record_refund(m("30000"));
        assert!(ledger.standing().everything_refunded);
        assert_eq!(ledger.plan_refund(None), Err(LedgerError::RefundNotPositive));
    }

    #[test]
    fn nothing_to_pay_refuses_a_new_operation() {
        let mut ledger = Ledger::new(m("1000"));
        run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_gold",
            paid_with("kaspi_gold", "1000"),
        );
        assert_eq!(
            ledger.quote_next(&method("kaspi_gold")),
            Err(LedgerError::NothingToPay)
        );
    }

    /// `spec/API.md` §5.1, the method switch the old rules got wrong: Gold → Кредит, and the
    /// customer pays the Gold QR anyway. 100 000 of 100 000 is paid; the Кредит operation is
    /// abandoned (its money, if any, is overpayment).
    #[test]
    fn money_on_an_abandoned_operation_that_covers_what_is_owed_pays_the_payment() {
        let mut ledger = Ledger::new(m("100000"));
        let status = PaymentStatus::Processing;
        let gold = ledger.start(ledger.quote_next(&method("kaspi_gold")).unwrap());
        ledger.start(ledger.quote_next(&method("kaspi_kredit")).unwrap());
        assert_eq!(
            ledger.figures().amount,
            m("114000"),
            "the in-flight Кредит commission counts"
        );
        let event = ledger
            .settle(gold, paid_with("kaspi_gold", "100000"))
            .unwrap()
            .unwrap();
        let standing = ledger.standing();
        assert!(!standing.fully_paid && standing.fully_paid_without_current);
        let settlement = status.follow(event, &standing);
        assert_eq!(
            (settlement.to, settlement.webhook, settlement.abandon_current),
            (
                PaymentStatus::Paid,
                Some(crate::webhook::WebhookEvent::Paid),
                true
            )
        );
        ledger.abandon_current();
        let figures = ledger.figures();
        assert_eq!((figures.amount, figures.remaining_amount), (m("100000"), m("0")));
    }

    /// Refunded, then the customer pays again: judged by what is held.
    #[test]
    fn money_after_a_full_refund_is_held_again_and_refundable() {
        let mut ledger = Ledger::new(m("50000"));
        run(
            &mut ledger,
            PaymentStatus::Pending,
            "kaspi_gold",
            paid_with("kaspi_gold", "50000"),
        );
        ledger.record_refund(m("50000"));
        assert_eq!(ledger.refundable(), m("0"));
        let late = ledger.start(
            ledger
                .quote_next(&method("kaspi_gold"))
                .unwrap_or(OperationQuote {
                    method: MethodCode::new("kaspi_gold"),
                    percent: Percent::ZERO,
                    base: m("50000"),
                    commission: m("0"),
                    charge: m("50000"),
                }),
        );
        ledger.settle(late, paid_with("kaspi_gold", "50000")).unwrap();
        let standing = ledger.standing();
        assert!(standing.held_covers_amount && !standing.everything_refunded);
        assert_eq!(ledger.refundable(), m("50000"));
        assert_eq!(
            PaymentStatus::Refunded.follow(MoneyEvent::Credited, &standing).to,
            PaymentStatus::Paid
        );
    }

    #[test]
    fn a_refund_spans_operations_largest_first() {
        // Guide scenario 3: 87 719 then a top-up of 12 281, refunded as one request.
        let sources = [(1, m("87719")), (2, m("12281"))];
        assert_eq!(
            split_refund(m("100000"), &[sources[1], sources[0]]).unwrap(),
            vec![(1, m("87719")), (2, m("12281"))]
        );
        assert_eq!(
            split_refund(m("90000"), &sources).unwrap(),
            vec![(1, m("87719")), (2, m("2281"))]
        );
        assert_eq!(split_refund(m("500"), &sources).unwrap(), vec![(1, m("500"))]);
    }

    #[test]
    fn a_refund_split_never_exceeds_what_each_source_holds() {
        let sources = [(1, m("100.50")), (2, m("0")), (3, m("0.99"))];
        assert_eq!(
            split_refund(m("101"), &sources),
            Err(LedgerError::RefundTooLarge {
                requested: m("101"),
                refundable: m("100"),
            })
        );
        assert_eq!(
            split_refund(m("0"), &sources),
            Err(LedgerError::RefundNotPositive)
        );
        assert_eq!(split_refund(m("100"), &sources).unwrap(), vec![(1, m("100"))]);
        // Every split sums to the request and takes from each source no more than it holds.
        for amount in 1..=300 {
            let sources = [(1, m("120")), (2, m("120")), (3, m("60"))];
            let parts = split_refund(Money::from_tenge(amount), &sources).unwrap();
            let total: Money = parts.iter().map(|(_, part)| *part).sum();
            assert_eq!(total, Money::from_tenge(amount));
            for (source, part) in parts {
                let held = sources.iter().find(|(id, _)| *id == source).unwrap().1;
                assert!(part.is_positive() && part <= held);
            }
        }
    }
}
