-- The terminal pool. Tokens are the device's own (issued by the terminal at register/revoke).
CREATE TABLE terminals (
    id                 INTEGER PRIMARY KEY,
    name               TEXT    NOT NULL UNIQUE,
    base_url           TEXT    NOT NULL,
    camera_url         TEXT    NOT NULL,
    tls_mode           TEXT    NOT NULL DEFAULT 'verify' CHECK (tls_mode IN ('verify', 'insecure')),
    tls_server_name    TEXT,
    enabled            INTEGER NOT NULL DEFAULT 1,
    healthy            INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    access_token       TEXT,
    refresh_token      TEXT,
    token_expires_at   TEXT,
    device_terminal_id TEXT,
    last_used_at       INTEGER NOT NULL DEFAULT 0,
    last_checked_at    INTEGER,
    created_at         INTEGER NOT NULL
);
