-- Terminal operations: the only source of a payment's figures (see byfly-core's ledger).
CREATE TABLE operations (
    id                       INTEGER PRIMARY KEY,
    payment_id               INTEGER NOT NULL REFERENCES payments (id),
    terminal_id              INTEGER NOT NULL REFERENCES terminals (id),
    method_code              TEXT    NOT NULL,
    percent                  TEXT    NOT NULL,
    base_minor               INTEGER NOT NULL,
    commission_minor         INTEGER NOT NULL,
    charge_minor             INTEGER NOT NULL,
    terminal_amount          INTEGER NOT NULL,
    state                    TEXT    NOT NULL
        CHECK (state IN ('starting', 'in_flight', 'succeeded', 'failed', 'start_failed')),
    -- 1 while it decides the payment's status; 0 once abandoned (method switched, cancelled).
    is_current               INTEGER NOT NULL DEFAULT 1,
    -- 1 until the terminal gave a final answer: the terminal is this operation's alone.
    holds_terminal           INTEGER NOT NULL DEFAULT 1,
    replaces_operation_id    INTEGER REFERENCES operations (id),
    previous_status          TEXT    NOT NULL,
    process_id               TEXT,
    qr_code                  TEXT,
    payment_url              TEXT,
    gross_minor              INTEGER,
    product_method           TEXT,
    credited_minor           INTEGER,
    terminal_transaction_id  TEXT,
    cheque_method            TEXT,
    last_answer              TEXT,
    started_at               INTEGER NOT NULL,
    deadline_at              INTEGER NOT NULL,
    finished_at              INTEGER,
    next_poll_at             INTEGER NOT NULL DEFAULT 0,
    unknown_since            INTEGER,
    needs_review             INTEGER NOT NULL DEFAULT 0
);
-- At most one open current operation per payment, and one operation per terminal, enforced by
-- the database so that no interleaving of requests or processes can break either rule.
CREATE UNIQUE INDEX operations_one_open_per_payment ON operations (payment_id)
    WHERE is_current = 1 AND state IN ('starting', 'in_flight');
CREATE UNIQUE INDEX operations_one_per_terminal ON operations (terminal_id) WHERE holds_terminal = 1;
CREATE INDEX operations_by_payment ON operations (payment_id, id);
CREATE INDEX operations_due ON operations (next_poll_at) WHERE holds_terminal = 1;

-- The webhook outbox: written in the same transaction as the change it reports, with the
-- payment's figures at that moment, so a late delivery still tells what happened then.
CREATE TABLE webhook_events (
    id                      INTEGER PRIMARY KEY,
    event_id                TEXT    NOT NULL UNIQUE,
    payment_id              INTEGER NOT NULL REFERENCES payments (id),
    event                   TEXT    NOT NULL,
    status                  TEXT    NOT NULL,
    amount_minor            INTEGER NOT NULL,
    paid_minor              INTEGER NOT NULL,
    actual_received_minor   INTEGER NOT NULL,
    remaining_minor         INTEGER NOT NULL,
    overpaid_minor          INTEGER NOT NULL,
    commission_minor        INTEGER NOT NULL,
    refunded_minor          INTEGER NOT NULL,
    payment_method          TEXT,
    paid_at                 INTEGER,
    created_at              INTEGER NOT NULL,
    next_attempt_at         INTEGER NOT NULL,
    attempts                INTEGER NOT NULL DEFAULT 0,
    delivered_at            INTEGER
);
-- Never two `paid` events for one payment.
CREATE UNIQUE INDEX webhook_events_one_paid ON webhook_events (payment_id) WHERE event = 'paid';
