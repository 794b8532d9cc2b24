//! The payment status machine (`spec/API.md` §5) and the webhook event each change sends.
//!
//! Every (status, event) pair is decided here, once: the server never writes a status it did not
//! get from [`PaymentStatus::apply`], so an impossible change (a paid payment expiring, a second
//! `paid` event) is a typed error instead of a silent corruption.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::webhook::WebhookEvent;

/// The status of a payment, with the guide's strings.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Created, no operation yet.
    Pending,
    /// An operation is in flight on a terminal.
    Processing,
    /// Received within tolerance of `amount`. Final, except for refunds.
    Paid,
    /// Something was received, more is needed (a top-up).
    PartiallyPaid,
    /// The last operation failed and nothing was received; a new `/kaspi` may retry.
    Failed,
    /// Cancelled by the merchant. Final, except that money of an abandoned operation is still credited.
    Cancelled,
    /// Not paid before `expires_at`. Final.
    Expired,
    /// Everything received was refunded. Final.
    Refunded,
}

impl PaymentStatus {
    /// Every status, for exhaustive tests and filters.
    pub const ALL: [PaymentStatus; 8] = [
        PaymentStatus::Pending,
        PaymentStatus::Processing,
        PaymentStatus::Paid,
        PaymentStatus::PartiallyPaid,
        PaymentStatus::Failed,
        PaymentStatus::Cancelled,
        PaymentStatus::Expired,
        PaymentStatus::Refunded,
    ];

    /// The statuses an expiry may end (the expiry sweep reads only payments in them; the payment's
    /// own decision is still made from its ledger).
    pub fn expirable() -> Vec<PaymentStatus> {
        PaymentStatus::ALL
            .into_iter()
            .filter(|status| status.apply(&PaymentEvent::Expired).is_ok())
            .collect()
    }

    /// The guide's string (`partially_paid`).
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Paid => "paid",
            PaymentStatus::PartiallyPaid => "partially_paid",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Cancelled => "cancelled",
            PaymentStatus::Expired => "expired",
            PaymentStatus::Refunded => "refunded",
        }
    }

    /// Parses the guide's string.
    pub fn parse(text: &str) -> Option<PaymentStatus> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// True for statuses no customer action leaves: `paid`, `cancelled`, `expired`, `refunded`.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentStatus::Paid | PaymentStatus::Cancelled | PaymentStatus::Expired | PaymentStatus::Refunded
        )
    }

    /// Whether `/kaspi` may start an operation from this status.
    pub fn accepts_operation(self) -> bool {
        self.apply(&PaymentEvent::OperationStarted).is_ok()
    }

    /// Decides the status after a request (a customer's `/kaspi`, a merchant's cancel, the expiry
    /// sweeper), and the webhook event the change sends (if any). Requests may be refused; what a
    /// terminal does with money never is: that is [`PaymentStatus::follow`].
    pub fn apply(self, event: &PaymentEvent) -> Result<Transition, TransitionError> {
        use PaymentStatus::*;
        let to = |to, webhook| Ok(Transition { to, webhook });
        let refuse = || {
            Err(TransitionError {
                from: self,
                event: event.kind(),
            })
        };
        match *event {
            PaymentEvent::OperationStarted => match self {
                Pending | Failed | PartiallyPaid | Processing => to(Processing, None),
                _ => refuse(),
            },
            PaymentEvent::Expired => match self {
                Pending | Failed => to(Expired, Some(WebhookEvent::Expired)),
                _ => refuse(),
            },
            PaymentEvent::Cancelled => match self {
                Pending | Processing | Failed | PartiallyPaid => to(Cancelled, Some(WebhookEvent::Cancelled)),
                _ => refuse(),
            },
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a terminal's answer did to a payment's money: the events no status may refuse, because
/// the terminal — not the server — decides when money moves (`spec/API.md` §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyEvent {
    /// An operation, current or abandoned, took money (already in the standing's figures).
    Credited,
    /// The current operation ended on its terminal without money (failed, or timed out there).
    CurrentEnded,
    /// The current operation was given up before anyone could pay it through us (its QR was never
    /// read, or its start got no answer); the payment goes back to `previous`, the status it had.
    CurrentGivenUp {
        /// The status before the operation started.
        previous: PaymentStatus,
    },
    /// A terminal refund gave money back (already in the standing's figures).
    Refunded,
}

/// Where a payment stands after a [`MoneyEvent`], as its ledger computes it: what the total
/// [`PaymentStatus::follow`] decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// `remaining_amount ≤ tolerance`, the current in-flight operation's commission included.
    pub fully_paid: bool,
    /// The same with the current in-flight operation left out: what is owed without it is paid.
    pub fully_paid_without_current: bool,
    /// A current operation is still in flight on a terminal.
    pub current_in_flight: bool,
    /// Anything was ever received.
    pub received: bool,
    /// What is held (received − refunded) covers what is owed without the current operation.
    pub held_covers_amount: bool,
    /// Something was received and all of it has been refunded.
    pub everything_refunded: bool,
    /// The figures after the event equal those of the last event sent, in the status decided:
    /// nothing changed for the merchant (set by the caller from the outbox; false when unknown).
    pub unchanged_for_merchant: bool,
}

/// What [`PaymentStatus::follow`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// The new status (may equal the old one).
    pub to: PaymentStatus,
    /// The event to append to the outbox in the same transaction.
    pub webhook: Option<WebhookEvent>,
    /// The current in-flight operation stops being current: what is owed without it is paid, so
    /// its money (if the customer pays it anyway) is overpayment. It is still followed.
    pub abandon_current: bool,
}

impl PaymentStatus {
    /// The status after a terminal's money event: defined for every status and every standing,
    /// never a refusal — money the terminal moved is always reflected in the status and reported
    /// (`spec/API.md` §5.1).
    pub fn follow(self, event: MoneyEvent, standing: &Standing) -> Settlement {
        use PaymentStatus::*;
        let settle = |to: PaymentStatus, webhook: Option<WebhookEvent>| Settlement {
            to,
            webhook,
            abandon_current: false,
        };
        match event {
            MoneyEvent::Credited => match self {
                // Late money on a paid payment: still paid, reported as overpayment.
                Paid => settle(Paid, Some(WebhookEvent::Overpaid)),
                // Refunded, then paid again: judged by what is held now.
                Refunded if standing.held_covers_amount => settle(Paid, Some(WebhookEvent::Paid)),
                Refunded => settle(PartiallyPaid, Some(WebhookEvent::PartiallyPaid)),
                _ if standing.fully_paid => settle(Paid, Some(WebhookEvent::Paid)),
                // Money on an abandoned operation covers what is owed without the current one.
                _ if standing.current_in_flight && standing.fully_paid_without_current => Settlement {
                    to: Paid,
                    webhook: Some(WebhookEvent::Paid),
                    abandon_current: true,
                },
                _ if standing.current_in_flight => settle(Processing, Some(WebhookEvent::PartiallyPaid)),
                _ => settle(PartiallyPaid, Some(WebhookEvent::PartiallyPaid)),
            },
            MoneyEvent::CurrentEnded => match self {
                Processing if standing.received && standing.fully_paid_without_current => {
                    settle(Paid, Some(WebhookEvent::Paid))
                }
                Processing if standing.received => {
                    let webhook = (!standing.unchanged_for_merchant).then_some(WebhookEvent::PartiallyPaid);
                    settle(PartiallyPaid, webhook)
                }
                Processing => settle(Failed, Some(WebhookEvent::Failed)),
                // Not deciding the status (a cancel or a payment abandoned it first).
                other => settle(other, None),
            },
            MoneyEvent::CurrentGivenUp { previous } => match self {
                Processing if standing.received && standing.fully_paid_without_current => {
                    settle(Paid, Some(WebhookEvent::Paid))
                }
                Processing if standing.received => {
                    let webhook = (!standing.unchanged_for_merchant).then_some(WebhookEvent::PartiallyPaid);
                    settle(PartiallyPaid, webhook)
                }
                // Nothing received: as before the operation (pending or failed).
                Processing => settle(if previous == Failed { Failed } else { Pending }, None),
                other => settle(other, None),
            },
            MoneyEvent::Refunded => {
                let to = if standing.everything_refunded {
                    Refunded
                } else {
                    self
                };
                settle(to, Some(WebhookEvent::Refunded))
            }
        }
    }
}

/// A request that may change a payment's status (and may be refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    /// `/kaspi` started an operation on a terminal (a first one, a retry, a top-up or a method switch).
    OperationStarted,
    /// `expires_at` passed with nothing received and nothing in flight.
    Expired,
    /// The merchant cancelled.
    Cancelled,
}

impl PaymentEvent {
    /// The event's name, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PaymentEvent::OperationStarted => "operation_started",
            PaymentEvent::Expired => "expired",
            PaymentEvent::Cancelled => "cancelled",
        }
    }
}

/// The outcome of an allowed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The new status (may equal the old one: a partial refund, late money on a paid payment).
    pub to: PaymentStatus,
    /// The webhook event to append to the outbox in the same transaction, if any.
    pub webhook: Option<WebhookEvent>,
}

/// An event that is not allowed in a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not allowed in status {from}")]
pub struct TransitionError {
    /// The status the payment was in.
    pub from: PaymentStatus,
    /// The refused event's name ([`PaymentEvent::kind`]).
    pub event: &'static str,
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;
    use crate::webhook::WebhookEvent as W;

    const REQUESTS: [PaymentEvent; 3] = [
        PaymentEvent::OperationStarted,
        PaymentEvent::Expired,
        PaymentEvent::Cancelled,
    ];

    /// The requests' table of `spec/API.md` §5, written out independently of `apply`.
    fn expected(from: PaymentStatus, event: PaymentEvent) -> Option<(PaymentStatus, Option<W>)> {
        match (from, event) {
            (Pending | Failed | PartiallyPaid | Processing, PaymentEvent::OperationStarted) => {
                Some((Processing, None))
            }
            (Pending | Failed, PaymentEvent::Expired) => Some((Expired, Some(W::Expired))),
            (Pending | Processing | Failed | PartiallyPaid, PaymentEvent::Cancelled) => {
                Some((Cancelled, Some(W::Cancelled)))
            }
            _ => None,
        }
    }

    #[test]
    fn every_status_and_request_pair() {
        let mut allowed = 0;
        for from in PaymentStatus::ALL {
            for event in REQUESTS {
                let got = from.apply(&event);
                match expected(from, event) {
                    Some((to, webhook)) => {
                        allowed += 1;
                        assert_eq!(got, Ok(Transition { to, webhook }), "{from} + {event:?}");
                    }
                    None => {
                        assert_eq!(
                            got,
                            Err(TransitionError {
                                from,
                                event: event.kind()
                            }),
                            "{from} + {event:?}"
                        )
                    }
                }
            }
        }
        assert_eq!(allowed, 10);
    }

    /// Every standing: each of its seven facts true or false.
    fn standings() -> impl Iterator<Item = Standing> {
        (0u8..128).map(|bits| {
            let bit = |n: u8| bits & (1 << n) != 0;
            Standing {
                fully_paid: bit(0),
                fully_paid_without_current: bit(1),
                current_in_flight: bit(2),
                received: bit(3),
                held_covers_amount: bit(4),
                everything_refunded: bit(5),
                unchanged_for_merchant: bit(6),
            }
        })
    }

    fn money_events() -> Vec<MoneyEvent> {
        let mut events = vec![
            MoneyEvent::Credited,
            MoneyEvent::CurrentEnded,
            MoneyEvent::Refunded,
        ];
        for previous in PaymentStatus::ALL {
            events.push(MoneyEvent::CurrentGivenUp { previous });
        }
        events
    }

    /// `follow` is total, and over every status × money event × standing it keeps §5.1's
    /// invariants: money is always reported, a payment is never left `processing` without a
    /// current operation, never `pending`/`failed`/`expired` after money, never two `paid` events
    /// in a row, and `paid` only when something says it is.
    #[test]
    fn following_money_keeps_the_ledger_invariants_everywhere() {
        let mut cases = 0;
        for from in PaymentStatus::ALL {
            for event in money_events() {
                for standing in standings() {
                    cases += 1;
                    let got = from.follow(event, &standing);
                    let case = format!("{from} + {event:?} with {standing:?} → {got:?}");
                    if event == MoneyEvent::Credited {
                        assert!(got.webhook.is_some(), "money unreported: {case}");
                        assert!(
                            matches!(got.to, Paid | PartiallyPaid | Processing),
                            "money left in a status that hides it: {case}"
                        );
                    }
                    if event == MoneyEvent::Refunded {
                        assert_eq!(got.webhook, Some(W::Refunded), "{case}");
                    }
                    if got.to == Processing && event != MoneyEvent::Refunded {
                        assert!(
                            standing.current_in_flight && !got.abandon_current,
                            "processing with nothing in flight: {case}"
                        );
                    }
                    if got.webhook == Some(W::Paid) {
                        assert_ne!(from, Paid, "a second paid event: {case}");
                    }
                    if got.to == Paid && from != Paid {
                        assert!(
                            standing.fully_paid
                                || standing.fully_paid_without_current
                                || standing.held_covers_amount,
                            "paid without being paid: {case}"
                        );
                    }
                    if got.abandon_current {
                        assert!(standing.current_in_flight && got.to == Paid, "{case}");
                    }
                    if matches!(
                        event,
                        MoneyEvent::CurrentEnded | MoneyEvent::CurrentGivenUp { .. }
                    ) && from == Processing
                    {
                        assert_ne!(got.to, Processing, "the current operation is over: {case}");
                    }
                }
            }
        }
        assert_eq!(cases, 8 * 11 * 128);
    }

    fn standing() -> Standing {
        Standing {
            fully_paid: false,
            fully_paid_without_current: false,
            current_in_flight: false,
            received: false,
            held_covers_amount: false,
            everything_refunded: false,
            unchanged_for_merchant: false,
        }
    }

    fn settled(to: PaymentStatus, webhook: Option<W>) -> Settlement {
        Settlement {
            to,
            webhook,
            abandon_current: false,
        }
    }

    /// The rows of `spec/API.md` §5.1's table that the status decides.
    #[test]
    fn the_cases_the_earlier_rules_left_open() {
        let enough_without_current = Standing {
            fully_paid_without_current: true,
            current_in_flight: true,
            received: true,
            ..standing()
        };
        assert_eq!(
            Processing.follow(MoneyEvent::Credited, &enough_without_current),
            Settlement {
                to: Paid,
                webhook: Some(W::Paid),
                abandon_current: true
            },
            "money on an abandoned operation, enough without the current one's commission"
        );
        let not_enough = Standing {
            current_in_flight: true,
            received: true,
            ..standing()
        };
        assert_eq!(
            Processing.follow(MoneyEvent::Credited, &not_enough),
            settled(Processing, Some(W::PartiallyPaid))
        );
        let enough_once_it_ends = Standing {
            fully_paid: true,
            fully_paid_without_current: true,
            received: true,
            ..standing()
        };
        assert_eq!(
            Processing.follow(MoneyEvent::CurrentEnded, &enough_once_it_ends),
            settled(Paid, Some(W::Paid)),
            "the current operation fails and what was received is enough"
        );
        let paid_in_full = Standing {
            fully_paid: true,
            received: true,
            ..standing()
        };
        let partly = Standing {
            received: true,
            ..standing()
        };
        for from in [Pending, Failed, Cancelled, Expired] {
            assert_eq!(
                from.follow(MoneyEvent::Credited, &paid_in_full),
                settled(Paid, Some(W::Paid)),
                "money after {from}"
            );
            assert_eq!(
                from.follow(MoneyEvent::Credited, &partly),
                settled(PartiallyPaid, Some(W::PartiallyPaid)),
                "part of the money after {from}"
            );
        }
        let held_again = Standing {
            fully_paid: true,
            received: true,
            held_covers_amount: true,
            ..standing()
        };
        assert_eq!(
            Refunded.follow(MoneyEvent::Credited, &held_again),
            settled(Paid, Some(W::Paid))
        );
        assert_eq!(
            Refunded.follow(MoneyEvent::Credited, &paid_in_full),
            settled(PartiallyPaid, Some(W::PartiallyPaid)),
            "judged by what is held, not by what was ever received"
        );
        assert_eq!(
            Paid.follow(MoneyEvent::Credited, &paid_in_full),
            settled(Paid, Some(W::Overpaid))
        );
        // A failure after a partial payment changes nothing the merchant was told: no event.
        let told = Standing {
            received: true,
            unchanged_for_merchant: true,
            ..standing()
        };
        assert_eq!(
            Processing.follow(MoneyEvent::CurrentEnded, &told),
            settled(PartiallyPaid, None)
        );
        assert_eq!(
            Processing.follow(MoneyEvent::CurrentEnded, &standing()),
            settled(Failed, Some(W::Failed))
        );
        assert_eq!(
            Processing.follow(MoneyEvent::CurrentGivenUp { previous: Failed }, &standing()),
            settled(Failed, None),
            "an unreadable QR returns the payment to the status it had"
        );
        let all_back = Standing {
            received: true,
            everything_refunded: true,
            ..standing()
        };
        assert_eq!(
            Cancelled.follow(MoneyEvent::Refunded, &all_back),
            settled(Refunded, Some(W::Refunded)),
            "a cancelled payment holding money is refunded"
        );
        assert_eq!(
            Paid.follow(MoneyEvent::Refunded, &partly),
            settled(Paid, Some(W::Refunded))
        );
    }

    #[test]
    fn final_statuses_refuse_new_operations() {
        for status in PaymentStatus::ALL {
            let expect = matches!(status, Pending | Processing | Failed | PartiallyPaid);
            assert_eq!(status.accepts_operation(), expect, "{status}");
            assert_eq!(
                status.is_final(),
                matches!(status, Paid | Cancelled | Expired | Refunded)
            );
        }
    }

    #[test]
    fn strings_are_the_guides() {
        for status in PaymentStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PartiallyPaid.as_str(), "partially_paid");
        assert_eq!(PaymentStatus::parse("PAID"), None);
    }

    #[test]
    fn refusal_names_status_and_event() {
        let err = Paid.apply(&PaymentEvent::Expired).unwrap_err();
        assert_eq!(err.to_string(), "event expired is not allowed in status paid");
    }
}
