-- What the console shows of an operation (issue 16).
--
-- `terminal_answers`: every distinct answer a terminal gave about an operation, as received
-- (the poller's `status`/`actualize` answers, errors reaching it, and the final answer), so an
-- operator settling a dispute sees what the terminal said and when, not only its last word
-- (`operations.last_answer`). A poll that gets the same answer as the one before only moves that
-- row's `last_at` and `times`: an operation polled every second for three minutes keeps a few
-- rows, not two hundred.
CREATE TABLE terminal_answers (
    id            INTEGER PRIMARY KEY,
    operation_id  INTEGER NOT NULL REFERENCES operations (id),
    first_at      INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    times         INTEGER NOT NULL DEFAULT 1,
    answer        TEXT NOT NULL
);
CREATE INDEX terminal_answers_by_operation ON terminal_answers (operation_id, id);

-- An operator's decision about an operation waiting for review: who (the console session's
-- operator, or the admin token), when, what, and the note. Written in the transaction that
-- applies the decision, so no decision is applied unrecorded nor recorded unapplied.
CREATE TABLE review_decisions (
    id                       INTEGER PRIMARY KEY,
    operation_id             INTEGER NOT NULL UNIQUE REFERENCES operations (id),
    outcome                  TEXT NOT NULL CHECK (outcome IN ('paid', 'not_paid')),
    amount_minor             INTEGER,
    terminal_transaction_id  TEXT,
    decided_by               TEXT NOT NULL,
    decided_at               INTEGER NOT NULL,
    note                     TEXT
);

-- The name an operator gave at the console's login: what their decisions are recorded under.
ALTER TABLE admin_sessions ADD COLUMN operator TEXT;
