-- Each server process caches API tokens and the payment methods (a query or two per request
-- saved); `generation` grows with every change to `sources` or `payment_methods` — through the
-- API, the CLI or by hand — so a process notices a change made by another one and drops its cache.
CREATE TABLE cache_generation (generation INTEGER NOT NULL);
INSERT INTO cache_generation (generation) VALUES (0);
CREATE TRIGGER sources_insert_moves_cache AFTER INSERT ON sources
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
CREATE TRIGGER sources_update_moves_cache AFTER UPDATE ON sources
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
CREATE TRIGGER sources_delete_moves_cache AFTER DELETE ON sources
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
CREATE TRIGGER payment_methods_insert_moves_cache AFTER INSERT ON payment_methods
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
CREATE TRIGGER payment_methods_update_moves_cache AFTER UPDATE ON payment_methods
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
CREATE TRIGGER payment_methods_delete_moves_cache AFTER DELETE ON payment_methods
BEGIN UPDATE cache_generation SET generation = generation + 1; END;
