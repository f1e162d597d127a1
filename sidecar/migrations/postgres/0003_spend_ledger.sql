-- The spend ledger (PostgreSQL): one row per request the gateway served, daily rollups for the
-- reports, lifetime spend on the entities (the `spend` columns of 0001). Money is integer
-- nano-dollars (1e-9 USD), times are unix milliseconds (UTC), days are 'YYYY-MM-DD' (UTC).
-- A record is inserted once (its primary key is the gateway-generated id); only when the
-- insert happened are its cost and tokens added to daily_spend and to the entities, in the
-- same transaction (docs/ledger.md).

CREATE TABLE spend_logs (
    id TEXT PRIMARY KEY,
    client_request_id TEXT,
    key_hash TEXT,
    team_id TEXT,
    user_id TEXT,
    end_user TEXT,
    model_group TEXT NOT NULL,
    provider TEXT,
    model TEXT,
    operation TEXT NOT NULL,
    status BIGINT NOT NULL,
    stream BOOLEAN NOT NULL,
    input_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_5m_tokens BIGINT NOT NULL,
    cache_write_1h_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_nano BIGINT NOT NULL,
    estimated BOOLEAN NOT NULL,
    attempts BIGINT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    recorded_ms BIGINT NOT NULL
);
-- /spend/logs by key, team, user, end user (newest first, keyset-paged by (start_ms, id)),
-- unfiltered and by time (also the retention sweep), and LiteLLM's request_id lookup, which
-- matches the gateway id (the primary key) or the client's x-request-id.
CREATE INDEX spend_logs_key_time ON spend_logs (key_hash, start_ms, id);
CREATE INDEX spend_logs_team_time ON spend_logs (team_id, start_ms, id);
CREATE INDEX spend_logs_user_time ON spend_logs (user_id, start_ms, id);
CREATE INDEX spend_logs_end_user_time ON spend_logs (end_user, start_ms, id);
CREATE INDEX spend_logs_time ON spend_logs (start_ms, id);
CREATE INDEX spend_logs_client_request_id ON spend_logs (client_request_id);

-- One row per UTC day and combination of who and what; '' stands for "none" so that the
-- primary key (the upsert's conflict target) never holds a NULL.
CREATE TABLE daily_spend (
    day TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    end_user TEXT NOT NULL,
    model_group TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    requests BIGINT NOT NULL,
    failed_requests BIGINT NOT NULL,
    estimated_requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_5m_tokens BIGINT NOT NULL,
    cache_write_1h_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_nano BIGINT NOT NULL,
    PRIMARY KEY (day, key_hash, team_id, user_id, end_user, model_group, provider, model)
);
CREATE INDEX daily_spend_key_day ON daily_spend (key_hash, day);
CREATE INDEX daily_spend_team_day ON daily_spend (team_id, day);
CREATE INDEX daily_spend_user_day ON daily_spend (user_id, day);
CREATE INDEX daily_spend_end_user_day ON daily_spend (end_user, day);
