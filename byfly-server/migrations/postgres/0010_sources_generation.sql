-- Each server process caches API tokens (a lookup per request saved); `generation` grows with
-- every change to `sources` — through the API, the CLI or by hand — so a process notices a revoke
-- made by another one and drops its cache.
CREATE TABLE sources_generation (generation BIGINT NOT NULL);
INSERT INTO sources_generation (generation) VALUES (0);
CREATE FUNCTION sources_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sources_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER sources_changed AFTER INSERT OR UPDATE OR DELETE ON sources
    FOR EACH STATEMENT EXECUTE FUNCTION sources_changed();
