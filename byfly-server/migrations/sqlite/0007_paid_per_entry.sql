-- A payment may become `paid` again after it was refunded and the customer paid once more
-- (spec/API.md §5.1): one `paid` event per entry into `paid`, not per payment. Each new entry
-- comes after a full refund, so its refunded amount is strictly larger than at the entry before.
DROP INDEX webhook_events_one_paid;
CREATE UNIQUE INDEX webhook_events_one_paid_per_entry ON webhook_events (payment_id, refunded_minor)
    WHERE event = 'paid';
