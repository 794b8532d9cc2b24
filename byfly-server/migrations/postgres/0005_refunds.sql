-- PostgreSQL form of ../sqlite/0005_refunds.sql: the same tables, BIGINT for integers and flags (0/1).
-- Refunds run on the terminal that took the money, as operations of kind 'refund': they hold the
-- terminal like payments do (one operation per terminal), but never decide the payment's status
-- as a current operation and never count in its ledger.
ALTER TABLE operations ADD COLUMN kind TEXT NOT NULL DEFAULT 'payment' CHECK (kind IN ('payment', 'refund'));
ALTER TABLE operations ADD COLUMN refund_id TEXT;
ALTER TABLE operations ADD COLUMN refund_of_operation_id BIGINT REFERENCES operations (id);
CREATE UNIQUE INDEX operations_by_refund_id ON operations (refund_id) WHERE refund_id IS NOT NULL;
