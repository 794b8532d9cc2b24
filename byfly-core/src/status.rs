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

    /// Decides the status after `event`, and the webhook event the change sends (if any).
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
            PaymentEvent::Credited {
                fully_paid,
                current_in_flight,
            } => match self {
                // Late money on a paid payment is credited (overpaid) but never sends a second `paid`.
                Paid => to(Paid, None),
                Processing | PartiallyPaid | Failed | Cancelled => {
                    if fully_paid {
                        to(Paid, Some(WebhookEvent::Paid))
                    } else if current_in_flight {
                        to(Processing, Some(WebhookEvent::PartiallyPaid))
                    } else {
                        to(PartiallyPaid, Some(WebhookEvent::PartiallyPaid))
                    }
                }
                // Nothing is in flight in these: no operation can settle.
                Pending | Expired | Refunded => refuse(),
            },
            PaymentEvent::CurrentOperationFailed { anything_received } => match self {
                Processing if anything_received => to(PartiallyPaid, None),
                Processing => to(Failed, Some(WebhookEvent::Failed)),
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
            PaymentEvent::Refunded { everything_refunded } => match self {
                Paid | PartiallyPaid if everything_refunded => to(Refunded, Some(WebhookEvent::Refunded)),
                Paid | PartiallyPaid => to(self, Some(WebhookEvent::Refunded)),
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

/// Something that happens to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    /// `/kaspi` started an operation on a terminal (a first one, a retry, a top-up or a method switch).
    OperationStarted,
    /// An operation, current or abandoned, succeeded and its money was credited.
    Credited {
        /// `remaining_amount ≤ tolerance` afterwards.
        fully_paid: bool,
        /// A current operation is still in flight (the money came from an abandoned one).
        current_in_flight: bool,
    },
    /// The current operation failed definitively.
    CurrentOperationFailed {
        /// Some earlier operation had received money: the payment goes back to `partially_paid`.
        anything_received: bool,
    },
    /// `expires_at` passed with nothing received and nothing in flight.
    Expired,
    /// The merchant cancelled.
    Cancelled,
    /// A refund was confirmed by the terminal.
    Refunded {
        /// Everything received is now refunded.
        everything_refunded: bool,
    },
}

impl PaymentEvent {
    /// The event's name, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PaymentEvent::OperationStarted => "operation_started",
            PaymentEvent::Credited { .. } => "credited",
            PaymentEvent::CurrentOperationFailed { .. } => "current_operation_failed",
            PaymentEvent::Expired => "expired",
            PaymentEvent::Cancelled => "cancelled",
            PaymentEvent::Refunded { .. } => "refunded",
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

    /// Every event variant, with each boolean combination.
    fn all_events() -> Vec<PaymentEvent> {
        let mut events = vec![
            PaymentEvent::OperationStarted,
            PaymentEvent::Expired,
            PaymentEvent::Cancelled,
        ];
        for a in [false, true] {
            events.push(PaymentEvent::CurrentOperationFailed { anything_received: a });
            events.push(PaymentEvent::Refunded {
                everything_refunded: a,
            });
            for b in [false, true] {
                events.push(PaymentEvent::Credited {
                    fully_paid: a,
                    current_in_flight: b,
                });
            }
        }
        events
    }

    /// The whole table of `spec/API.md` §5, written out independently of `apply`.
    fn expected(from: PaymentStatus, event: PaymentEvent) -> Option<(PaymentStatus, Option<W>)> {
        match (from, event) {
            (Pending | Failed | PartiallyPaid | Processing, PaymentEvent::OperationStarted) => {
                Some((Processing, None))
            }
            (Paid, PaymentEvent::Credited { .. }) => Some((Paid, None)),
            (
                Processing | PartiallyPaid | Failed | Cancelled,
                PaymentEvent::Credited { fully_paid: true, .. },
            ) => Some((Paid, Some(W::Paid))),
            (
                Processing | PartiallyPaid | Failed | Cancelled,
                PaymentEvent::Credited {
                    fully_paid: false,
                    current_in_flight: true,
                },
            ) => Some((Processing, Some(W::PartiallyPaid))),
            (
                Processing | PartiallyPaid | Failed | Cancelled,
                PaymentEvent::Credited {
                    fully_paid: false,
                    current_in_flight: false,
                },
            ) => Some((PartiallyPaid, Some(W::PartiallyPaid))),
            (
                Processing,
                PaymentEvent::CurrentOperationFailed {
                    anything_received: false,
                },
            ) => Some((Failed, Some(W::Failed))),
            (
                Processing,
                PaymentEvent::CurrentOperationFailed {
                    anything_received: true,
                },
            ) => Some((PartiallyPaid, None)),
            (Pending | Failed, PaymentEvent::Expired) => Some((Expired, Some(W::Expired))),
            (Pending | Processing | Failed | PartiallyPaid, PaymentEvent::Cancelled) => {
                Some((Cancelled, Some(W::Cancelled)))
            }
            (
                Paid | PartiallyPaid,
                PaymentEvent::Refunded {
                    everything_refunded: true,
                },
            ) => Some((Refunded, Some(W::Refunded))),
            (
                Paid | PartiallyPaid,
                PaymentEvent::Refunded {
                    everything_refunded: false,
                },
            ) => Some((from, Some(W::Refunded))),
            _ => None,
        }
    }

    #[test]
    fn every_status_and_event_pair() {
        let mut allowed = 0;
        for from in PaymentStatus::ALL {
            for event in all_events() {
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
        // 8 statuses × 11 events; the table allows these many.
        assert_eq!(allowed, 36);
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
