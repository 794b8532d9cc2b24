-- Each server process caches API tokens and the payment methods (a query or two per request
-- saved); `generation` grows with every change to `sources` or `payment_methods` — through the
-- API, the CLI or by hand — so a process notices a change made by another one and drops its cache.
CREATE TABLE cache_generation (generation BIGINT NOT NULL);
INSERT INTO cache_generation (generation) VALUES (0);
CREATE FUNCTION cache_generation_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE cache_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER sources_move_cache AFTER INSERT OR UPDATE OR DELETE ON sources
    FOR EACH STATEMENT EXECUTE FUNCTION cache_generation_moves();
CREATE TRIGGER payment_methods_move_cache AFTER INSERT OR UPDATE OR DELETE ON payment_methods
    FOR EACH STATEMENT EXECUTE FUNCTION cache_generation_moves();
