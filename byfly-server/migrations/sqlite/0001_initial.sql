-- Sources are the merchant systems; only the SHA-256 of their token is kept.
CREATE TABLE sources (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    token_hash    TEXT    NOT NULL UNIQUE,
    webhook_json  TEXT    NOT NULL DEFAULT 'php' CHECK (webhook_json IN ('php', 'js')),
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
);

-- Payment methods (`spec/API.md` §7); percents are exact decimal text, never floats.
CREATE TABLE payment_methods (
    id                              INTEGER PRIMARY KEY,
    code                            TEXT    NOT NULL UNIQUE,
    name                            TEXT    NOT NULL,
    type                            TEXT    NOT NULL,
    provider                        TEXT    NOT NULL,
    country_id                      INTEGER NOT NULL,
    payment_currency                TEXT    NOT NULL,
    icon_emoji                      TEXT    NOT NULL,
    commission_percent              TEXT    NOT NULL,
    has_credit                      INTEGER NOT NULL,
    credit_commission_percent       TEXT    NOT NULL,
    has_installment                 INTEGER NOT NULL,
    installment_months              TEXT,
    installment_commission_percent  TEXT    NOT NULL,
    add_commission_to_amount        INTEGER NOT NULL,
    is_active                       INTEGER NOT NULL DEFAULT 1
);

-- A payment's figures are derived from its operations; only A0 (in tiyn) is stored here.
CREATE TABLE payments (
    id                     INTEGER PRIMARY KEY,
    transaction_id         TEXT    NOT NULL UNIQUE,
    source_id              INTEGER NOT NULL REFERENCES sources (id),
    status                 TEXT    NOT NULL,
    original_amount_minor  INTEGER NOT NULL CHECK (original_amount_minor > 0),
    refunded_amount_minor  INTEGER NOT NULL DEFAULT 0,
    currency               TEXT    NOT NULL,
    description            TEXT,
    customer_name          TEXT,
    customer_phone         TEXT,
    customer_email         TEXT,
    payment_method_id      INTEGER REFERENCES payment_methods (id),
    webhook_url            TEXT,
    webhook_secret         TEXT,
    metadata               TEXT,
    created_at             INTEGER NOT NULL,
    expires_at             INTEGER NOT NULL,
    paid_at                INTEGER,
    updated_at             INTEGER NOT NULL
);
CREATE INDEX payments_by_source ON payments (source_id, id DESC);
CREATE INDEX payments_by_source_status ON payments (source_id, status, id DESC);

-- Idempotency-Key records of init, per source, kept 24 h. A NULL status is a request in flight.
CREATE TABLE idempotency_keys (
    source_id      INTEGER NOT NULL REFERENCES sources (id),
    key            TEXT    NOT NULL,
    request_hash   TEXT    NOT NULL,
    status_code    INTEGER,
    response_body  TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (source_id, key)
);
