-- One refund request may span several operations (spec/API.md §3.4): the request is a row of its
-- own, and each of its terminal refunds is an operation of kind 'refund' carrying the request's
-- refund_id, started one after another. `open` = more parts may still be started; it is cleared
-- when the parts have given back the whole amount, or one of them failed.
CREATE TABLE refund_requests (
    id INTEGER PRIMARY KEY,
    refund_id TEXT NOT NULL UNIQUE,
    payment_id INTEGER NOT NULL REFERENCES payments (id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    created_at INTEGER NOT NULL,
    open INTEGER NOT NULL DEFAULT 1 CHECK (open IN (0, 1))
);
CREATE INDEX refund_requests_open ON refund_requests (open) WHERE open = 1;
-- Every refund before this migration was one operation: its request is closed.
INSERT INTO refund_requests (refund_id, payment_id, amount_minor, created_at, open)
    SELECT refund_id, payment_id, base_minor, started_at, 0 FROM operations WHERE refund_id IS NOT NULL;
DROP INDEX operations_by_refund_id;
CREATE INDEX operations_by_refund_id ON operations (refund_id) WHERE refund_id IS NOT NULL;
-- When a claim was made, by the database's clock (unixepoch()): a start left by a dead process is
-- judged stale by one clock, not by comparing the clocks of the hosts that claimed and swept.
ALTER TABLE operations ADD COLUMN claimed_db_at INTEGER;
