-- Cheaper inserts into `events`, the table every event lands in (issue 6, landing throughput).
--
-- Parsing JSON into a LowCardinality column costs a dictionary lookup per value: with eleven of
-- them it was about a quarter of the insert's CPU. LowCardinality stays where queries filter and
-- group on it (project_id, type, provider, model); the other columns are plain String, which
-- compresses as well for values this repetitive. Same values, same query results. Re-running is
-- a no-op (the type is already String). On a table with rows this is a background mutation.

ALTER TABLE {db}.events
    MODIFY COLUMN IF EXISTS release String DEFAULT '',
    MODIFY COLUMN IF EXISTS version String DEFAULT '',
    MODIFY COLUMN IF EXISTS model_family String DEFAULT '',
    MODIFY COLUMN IF EXISTS pricing_status String DEFAULT '',
    MODIFY COLUMN IF EXISTS finish_reason String DEFAULT '',
    MODIFY COLUMN IF EXISTS status String DEFAULT '',
    MODIFY COLUMN IF EXISTS source String DEFAULT '';
