-- Hour and day rollups, and the delivery intents that keep alert delivery at most once.
--
-- rollups_1h / rollups_1d have the columns of rollups_1m. They are recomputed by the rollups sink
-- inside ClickHouse (INSERT ... SELECT ... FROM rollups_1m FINAL / rollups_1h FINAL) for the hours
-- and days a batch touched, so a replaced minute row is never counted twice (a materialized view
-- would see the old and the new version). `version` is the recompute time in microseconds: the
-- newest recompute read the newest data and wins. Read them with FINAL. Percentile sketches are
-- merged with sumMap and read with schemas.sketch.clickhouse_quantile_sql.

CREATE TABLE IF NOT EXISTS {db}.rollups_1h
(
    window_start    DateTime('UTC'),
    window_end      DateTime('UTC'),
    project_id      LowCardinality(String),
    agent_id        String,
    provider        LowCardinality(String),
    model           LowCardinality(String),
    calls           UInt64,
    errors          UInt64,
    error_events    UInt64,
    tokens_in       UInt64,
    tokens_out      UInt64,
    tokens_cached   UInt64,
    cost_usd        Float64,
    latency_ms_sum  Float64,
    latency_ms_max  Float64,
    latency_sketch  Map(Int32, UInt64),
    ttft_sketch     Map(Int32, UInt64),
    version         UInt64,
    replay          Bool DEFAULT false,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (project_id, window_start, agent_id, provider, model)
TTL window_start + INTERVAL {retention_days} DAY;

CREATE TABLE IF NOT EXISTS {db}.rollups_1d
(
    window_start    DateTime('UTC'),
    window_end      DateTime('UTC'),
    project_id      LowCardinality(String),
    agent_id        String,
    provider        LowCardinality(String),
    model           LowCardinality(String),
    calls           UInt64,
    errors          UInt64,
    error_events    UInt64,
    tokens_in       UInt64,
    tokens_out      UInt64,
    tokens_cached   UInt64,
    cost_usd        Float64,
    latency_ms_sum  Float64,
    latency_ms_max  Float64,
    latency_sketch  Map(Int32, UInt64),
    ttft_sketch     Map(Int32, UInt64),
    version         UInt64,
    replay          Bool DEFAULT false,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(window_start)
ORDER BY (project_id, window_start, agent_id, provider, model)
TTL window_start + INTERVAL {retention_days} DAY;

-- Written just before each delivery attempt. An intent without an outcome row in `alerts` means
-- the process died mid-send: the receiver may have it, so it is not sent again (at most once).
CREATE TABLE IF NOT EXISTS {db}.alert_delivery_intents
(
    alert_id        String,
    channel         LowCardinality(String),
    target          String,
    attempt         UInt8,
    started_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (alert_id, channel, target, attempt)
TTL toDateTime(started_at) + INTERVAL {retention_days} DAY;
