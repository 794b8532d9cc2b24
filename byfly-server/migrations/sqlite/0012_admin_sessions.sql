-- Sessions of the operator's console (issue 16): the admin token typed into the login form is
-- exchanged for a random session token in an HttpOnly cookie; only the SHA-256 of that token is
-- stored. A session ends at `expires_at` (its absolute limit), when it was not seen for the idle
-- limit, or at logout (its row is deleted). In the database, so that every server process of a
-- deployment knows every session. `client` is the address it was opened from, for the log;
-- `issued_for` a fingerprint of the admin token it was opened with (SHA-256 of
-- "byfly-session:" + token): a new admin token ends every session opened with the old one.
CREATE TABLE admin_sessions (
    id            INTEGER PRIMARY KEY,
    token_hash    TEXT   NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    client        TEXT,
    issued_for    TEXT   NOT NULL
);
CREATE INDEX admin_sessions_by_expiry ON admin_sessions (expires_at);
