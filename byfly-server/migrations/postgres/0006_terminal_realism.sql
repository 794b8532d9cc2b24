-- PostgreSQL form of ../sqlite/0006_terminal_realism.sql: the same columns, BIGINT for integers and flags (0/1).
-- Terminals as harsh as real ones (spec/KASPI_TERMINAL.md §7).
-- Registration is an operator's action that waits for a cashier: its progress is stored so every
-- process (and the admin API) sees it. `tokens_obtained_at` lets the health checker refresh
-- tokens before they expire even when the terminal's expirationDate cannot be read.
ALTER TABLE terminals ADD COLUMN registration_state TEXT;
ALTER TABLE terminals ADD COLUMN registration_message TEXT;
ALTER TABLE terminals ADD COLUMN registration_started_at BIGINT;
ALTER TABLE terminals ADD COLUMN registration_finished_at BIGINT;
ALTER TABLE terminals ADD COLUMN tokens_obtained_at BIGINT;
-- 1 once a customer could have seen the operation (its QR was read, or the terminal answered
-- `wait`/`unknown` for it): only an operation never shown may be settled as failed on a `101`.
ALTER TABLE operations ADD COLUMN shown BIGINT NOT NULL DEFAULT 0;
-- Operations from before this column: anything read, answered or unknown counts as shown.
UPDATE operations SET shown = 1 WHERE qr_code IS NOT NULL OR unknown_since IS NOT NULL OR last_answer IS NOT NULL;
-- 1 when `/v2/payment` got no answer we could read: the terminal may run it under a process id we
-- never learnt. It holds its terminal until its deadline, then goes to review.
ALTER TABLE operations ADD COLUMN start_uncertain BIGINT NOT NULL DEFAULT 0;
-- Why an operation waits for an operator.
ALTER TABLE operations ADD COLUMN review_reason TEXT;
-- The QR a terminal showed for its previous operation is looked up by terminal.
CREATE INDEX operations_by_terminal ON operations (terminal_id, id);
