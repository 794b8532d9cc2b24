//! Property tests of the money rules: random amounts, methods and payment sequences, run through
//! the ledger and the status machine the way the server runs them.

// Test code: a panic is a failed assertion with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use byfly_core::ledger::{Ledger, TerminalOutcome};
use byfly_core::{Money, PaymentEvent, PaymentMethod, PaymentStatus, Percent};
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};

/// What the simulated customer does with one operation.
#[derive(Debug, Clone)]
enum Customer {
    /// Pays with product `product` (index into the seeded methods) this many per-mille of the charge.
    Pays { product: usize, per_mille: u32 },
    /// Pays exactly the charge with the priced product.
    PaysExactly,
    /// The terminal reports failure.
    Fails,
}

fn customer() -> impl Strategy<Value = Customer> {
    prop_oneof![
        (0usize..4, 1u32..=1200).prop_map(|(product, per_mille)| Customer::Pays { product, per_mille }),
        Just(Customer::PaysExactly),
        Just(Customer::Fails),
    ]
}

/// Amounts from 0.01 to 100 000 000 tenge, in tiyn, with small and tolerance-sized ones as
/// likely as large ones (below 100 000 ₸ the tolerance is the fixed 500 ₸).
fn amount() -> impl Strategy<Value = Money> {
    prop_oneof![1i64..=100_000, 100_000i64..=20_000_000, 1i64..=10_000_000_000].prop_map(Money::from_minor)
}

fn round2(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn money_round_trips_through_json_and_minor_units(minor in -99_999_999_999_999_999i64..=99_999_999_999_999_999) {
        let money = Money::from_minor(minor);
        prop_assert_eq!(money.to_minor(), minor);
        let json = serde_json::to_string(&money).unwrap();
        prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
        prop_assert_eq!(serde_json::from_str::<Money>(&format!("\"{json}\"")).unwrap(), money);
        // JavaScript's shortest form: no exponent, no trailing zero in a fraction, no `-0`.
        prop_assert!(!json.contains(['e', 'E']));
        prop_assert!(!(json.contains('.') && json.ends_with('0')));
        prop_assert!(!json.ends_with('.'));
        prop_assert!(json != "-0");
    }

    #[test]
    fn payment_sequences_keep_the_books(
        original in amount(),
        steps in prop::collection::vec((0usize..4, customer()), 1..8),
    ) {
        let methods = PaymentMethod::seeded();
        let mut ledger = Ledger::new(original);
        let mut status = PaymentStatus::Pending;
        let mut previous_paid = Money::ZERO;
        for (method_index, customer) in steps {
            if !status.accepts_operation() {
                break;
            }
            let method = &methods[method_index];
            let quote = ledger.quote_next(method).unwrap();
            // Commission is round2(B × p / 100) exactly, and the charge is B + C.
            let expected_commission = if method.add_commission_to_amount {
                round2(quote.base.as_decimal() * method.effective_percent().as_decimal() / Decimal::ONE_HUNDRED)
            } else {
                Decimal::ZERO
            };
            prop_assert_eq!(quote.commission.as_decimal(), expected_commission);
            prop_assert_eq!(quote.charge, quote.base + quote.commission);
            prop_assert!(quote.terminal_amount() >= 1);
            prop_assert!(Decimal::from(quote.terminal_amount()) >= quote.charge.as_decimal());

            status = status.apply(&PaymentEvent::OperationStarted).unwrap().to;
            let index = ledger.start(quote.clone());
            let outcome = match customer {
                Customer::Fails => TerminalOutcome::Failed,
                Customer::PaysExactly => TerminalOutcome::Succeeded {
                    gross: quote.charge,
                    product_method: method.code.clone(),
                    product_percent: method.effective_percent(),
                },
                Customer::Pays { product, per_mille } => {
                    let gross = Money::from_decimal(quote.charge.as_decimal() * Decimal::from(per_mille) / Decimal::from(1000)).unwrap();
                    let gross = if gross.is_positive() { gross } else { Money::from_minor(1) };
                    TerminalOutcome::Succeeded {
                        gross,
                        product_method: methods[product].code.clone(),
                        product_percent: methods[product].effective_percent(),
                    }
                }
            };
            let succeeded = matches!(outcome, TerminalOutcome::Succeeded { .. });
            let event = ledger.settle(index, outcome).unwrap().unwrap();
            let settlement = status.follow(event, &ledger.standing());
            prop_assert!(!settlement.abandon_current, "one operation at a time here");
            status = settlement.to;

            let f = ledger.figures();
            // The books balance and nothing is negative.
            prop_assert_eq!(f.remaining_amount.as_decimal() - f.overpaid_amount.as_decimal(),
                f.amount.as_decimal() - f.paid_amount.as_decimal());
            for figure in [f.amount, f.paid_amount, f.remaining_amount, f.overpaid_amount, f.commission_amount] {
                prop_assert!(figure >= Money::ZERO);
            }
            prop_assert!(f.remaining_amount.is_zero() || f.overpaid_amount.is_zero());
            prop_assert_eq!(f.amount, original + f.commission_amount);
            // Money received never goes away.
            prop_assert!(f.paid_amount >= previous_paid);
            previous_paid = f.paid_amount;
            // After a settlement: paid ⇔ remaining ≤ tolerance.
            if succeeded {
                prop_assert_eq!(status == PaymentStatus::Paid, f.remaining_amount.as_decimal() <= f.tolerance);
                prop_assert_eq!(f.tolerance, (f.amount.as_decimal() * Decimal::new(5, 3)).max(Decimal::from(500)));
            } else {
                let expect = if f.paid_amount.is_positive() { PaymentStatus::PartiallyPaid } else { PaymentStatus::Failed };
                prop_assert_eq!(status, expect);
            }
        }
    }

    #[test]
    fn credited_never_exceeds_gross_and_is_whole_when_reduced(
        gross_minor in 1i64..=20_000_000_000,
        operation in 0u8..=30,
        product in 0u8..=30,
    ) {
        let gross = Money::from_minor(gross_minor);
        let credited = byfly_core::ledger::credited_amount(gross, Percent::whole(operation), Percent::whole(product));
        prop_assert!(credited <= gross);
        if product <= operation {
            prop_assert_eq!(credited, gross);
        } else {
            prop_assert_eq!(credited, credited.round_tenge());
        }
    }
}
