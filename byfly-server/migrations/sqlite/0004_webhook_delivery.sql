-- Delivery of the outbox: a claim lease per event (several processes never send one event at
-- the same time) and the log of every attempt.
ALTER TABLE webhook_events ADD COLUMN claimed_until INTEGER;
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE webhook_logs (
    id              INTEGER PRIMARY KEY,
    event_row_id    INTEGER NOT NULL REFERENCES webhook_events (id),
    attempt         INTEGER NOT NULL,
    trigger         TEXT    NOT NULL CHECK (trigger IN ('automatic', 'manual')),
    url             TEXT    NOT NULL,
    request_body    TEXT    NOT NULL,
    response_code   INTEGER,
    response_body   TEXT,
    error           TEXT,
    duration_ms     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_logs_by_event ON webhook_logs (event_row_id, id);
