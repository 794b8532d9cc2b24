-- The expiry sweep's narrowing, by an index instead of a scan (issue 15).
--
-- Every few seconds the sweep asks for the payments of an expirable status whose `expires_at`
-- has passed. Without an index that read every payment ever made, inside a write transaction:
-- on SQLite the group commit's only writer, so the scan stalled every write for as long as it
-- took, longer as the table grew. With `(status, expires_at)` the sweep reads, per expirable
-- status, only the rows already due.
CREATE INDEX payments_by_status_expiry ON payments (status, expires_at);
