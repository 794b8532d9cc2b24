-- Each server process caches API tokens (a lookup per request saved); `generation` grows with
-- every change to `sources` — through the API, the CLI or by hand — so a process notices a revoke
-- made by another one and drops its cache.
CREATE TABLE sources_generation (generation INTEGER NOT NULL);
INSERT INTO sources_generation (generation) VALUES (0);
CREATE TRIGGER sources_inserted AFTER INSERT ON sources
BEGIN UPDATE sources_generation SET generation = generation + 1; END;
CREATE TRIGGER sources_updated AFTER UPDATE ON sources
BEGIN UPDATE sources_generation SET generation = generation + 1; END;
CREATE TRIGGER sources_deleted AFTER DELETE ON sources
BEGIN UPDATE sources_generation SET generation = generation + 1; END;
