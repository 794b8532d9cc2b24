-- Webhooks in order, once, and recoverable (spec/API.md §6).
-- `sequence`: 1, 2, … per payment, in the order the events happened; only the oldest event of a
-- payment that is neither delivered nor exhausted may be claimed.
ALTER TABLE webhook_events ADD COLUMN sequence INTEGER;
UPDATE webhook_events SET sequence = (
    SELECT COUNT(*) FROM webhook_events earlier
    WHERE earlier.payment_id = webhook_events.payment_id AND earlier.id <= webhook_events.id);
CREATE UNIQUE INDEX webhook_events_in_order ON webhook_events (payment_id, sequence);
-- A claim carries a token: only its holder records the attempt's result.
ALTER TABLE webhook_events ADD COLUMN claim_token TEXT;
-- After the last scheduled attempt an event is exhausted: it stops blocking the payment's next
-- event and waits for an operator's recovery, which restarts its schedule (`schedule_step`:
-- failed attempts since the schedule last started).
ALTER TABLE webhook_events ADD COLUMN exhausted_at INTEGER;
ALTER TABLE webhook_events ADD COLUMN schedule_step INTEGER NOT NULL DEFAULT 0;
UPDATE webhook_events SET schedule_step = attempts;
CREATE INDEX webhook_events_undelivered ON webhook_events (payment_id, id) WHERE delivered_at IS NULL;
CREATE INDEX webhook_logs_by_time ON webhook_logs (created_at);
