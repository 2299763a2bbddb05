-- AgentTrace tables. `{db}` and `{retention_days}` are filled in by agenttrace.clickhouse.migrate.
-- Every table is a Replacing engine keyed so that a redelivered or replayed row replaces its twin;
-- readers use FINAL or argMax so that answers never depend on merges having happened.

CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id        UUID,
    type            LowCardinality(String),
    timestamp       DateTime64(3, 'UTC'),
    received_at     DateTime64(3, 'UTC'),
    project_id      LowCardinality(String),
    agent_id        String,
    trace_id        String DEFAULT '',
    span_id         String DEFAULT '',
    parent_span_id  String DEFAULT '',
    session_id      String DEFAULT '',
    user_id         String DEFAULT '',
    release         LowCardinality(String) DEFAULT '',
    version         LowCardinality(String) DEFAULT '',
    name            String DEFAULT '',
    tags            Array(String) DEFAULT [],
    provider        LowCardinality(String) DEFAULT '',
    model           LowCardinality(String) DEFAULT '',
    model_family    LowCardinality(String) DEFAULT '',
    tokens_in       Nullable(UInt64),
    tokens_out      Nullable(UInt64),
    tokens_cached   Nullable(UInt64),
    latency_ms      Nullable(Float64),
    ttft_ms         Nullable(Float64),
    status_code     Nullable(UInt16),
    cost_usd        Nullable(Float64),
    pricing_status  LowCardinality(String) DEFAULT '',
    finish_reason   LowCardinality(String) DEFAULT '',
    error_type      String DEFAULT '',
    message         String DEFAULT '',
    status          LowCardinality(String) DEFAULT '',
    value           Nullable(Float64),
    source          LowCardinality(String) DEFAULT '',
    metadata        String DEFAULT '{}',
    kafka_partition UInt16 DEFAULT 0,
    kafka_offset    UInt64 DEFAULT 0,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_trace trace_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(timestamp)
ORDER BY (project_id, toStartOfHour(timestamp), agent_id, event_id)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.spans
(
    event_id        UUID,
    project_id      LowCardinality(String),
    agent_id        String,
    trace_id        String,
    span_id         String,
    parent_span_id  String DEFAULT '',
    name            String,
    kind            LowCardinality(String) DEFAULT 'internal',
    start_time      DateTime64(3, 'UTC'),
    end_time        Nullable(DateTime64(3, 'UTC')),
    duration_ms     Nullable(Float64),
    status          LowCardinality(String) DEFAULT 'unset',
    status_message  String DEFAULT '',
    attributes      String DEFAULT '{}',
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(start_time)
ORDER BY (project_id, trace_id, span_id, event_id)
TTL toDateTime(start_time) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.scores
(
    event_id        UUID,
    project_id      LowCardinality(String),
    agent_id        String,
    timestamp       DateTime64(3, 'UTC'),
    trace_id        String DEFAULT '',
    name            String,
    value           Nullable(Float64),
    string_value    String DEFAULT '',
    passed          Nullable(Bool),
    evaluator       LowCardinality(String) DEFAULT '',
    comment         String DEFAULT '',
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(timestamp)
ORDER BY (project_id, name, timestamp, event_id)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per minute window and dimensions; a higher `version` (late correction or replay) replaces.
CREATE TABLE IF NOT EXISTS {db}.rollups_1m
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

CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id        String,
    rule_id         String,
    rule_type       LowCardinality(String),
    project_id      LowCardinality(String),
    agent_id        String DEFAULT '',
    subject         String,
    state           LowCardinality(String),
    value           Nullable(Float64),
    threshold       Nullable(Float64),
    window_minutes  Nullable(UInt32),
    message         String,
    timestamp       DateTime64(3, 'UTC'),
    replay          Bool DEFAULT false,
    channel         LowCardinality(String) DEFAULT '',
    target          String DEFAULT '',
    attempt         UInt8 DEFAULT 0,
    outcome         LowCardinality(String),
    error           String DEFAULT '',
    recorded_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, timestamp, alert_id, channel, target, attempt, outcome);

CREATE TABLE IF NOT EXISTS {db}.agents
(
    project_id      LowCardinality(String),
    agent_id        String,
    name            String DEFAULT '',
    registered_at   Nullable(DateTime64(3, 'UTC')),
    last_seen       DateTime64(3, 'UTC'),
    metadata        String DEFAULT '{}'
)
ENGINE = ReplacingMergeTree(last_seen)
ORDER BY (project_id, agent_id);

CREATE TABLE IF NOT EXISTS {db}.alert_rules
(
    project_id      LowCardinality(String),
    id              String,
    type            LowCardinality(String),
    rule            String,
    enabled         Bool,
    deleted         Bool,
    updated_at      DateTime64(3, 'UTC'),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, id);
