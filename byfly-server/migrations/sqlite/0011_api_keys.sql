-- API keys (issue 18): several per source, each with a name, an optional expiry and a revocation,
-- so a token is rotated without downtime (create the new key, switch, revoke the old) and a leaked
-- one is revoked without a new source and a split payment history. Only the SHA-256 of a token is
-- stored, with its last 4 characters (`hint`) to tell keys apart. Every source's token so far
-- becomes its key "initial"; `sources.token_hash` stays as that first key's hash and is no longer
-- read.
CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY,
    source_id     INTEGER NOT NULL REFERENCES sources (id),
    name          TEXT    NOT NULL,
    token_hash    TEXT    NOT NULL UNIQUE,
    hint          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    last_used_at  INTEGER
);
CREATE INDEX api_keys_by_source ON api_keys (source_id, id);
INSERT INTO api_keys (source_id, name, token_hash, hint, created_at)
    SELECT id, 'initial', token_hash, '', created_at FROM sources;
-- A new or revoked key, or a new expiry, reaches every process's token cache (0010); a key's
-- `last_used_at` does not move the cache.
CREATE TRIGGER api_keys_insert_moves_cache AFTER INSERT ON api_keys
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
CREATE TRIGGER api_keys_update_moves_cache AFTER UPDATE OF source_id, token_hash, expires_at, revoked_at ON api_keys
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
CREATE TRIGGER api_keys_delete_moves_cache AFTER DELETE ON api_keys
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
