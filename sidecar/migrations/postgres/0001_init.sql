-- Switchyard sidecar schema, version 1 (PostgreSQL).
-- Generated with the column list of sidecar/src/schema.rs (a unit test compares them).
-- Money columns (max_budget, soft_budget, spend, max_budget_in_team) hold integer
-- nano-dollars. Times: unix seconds. Lists and objects: JSON text.
-- Every admin change runs in one transaction that first increments change_seq (one row:
-- its lock serialises writers, so sequence numbers commit in order) and appends one
-- change_feed row per affected record; `version` columns hold that sequence number.

CREATE TABLE change_seq (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO change_seq (id, seq) VALUES (1, 0);

CREATE TABLE change_feed (
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (seq, kind, id)
);

CREATE TABLE keys (
    token TEXT PRIMARY KEY,
    key_name TEXT,
    key_alias TEXT,
    team_id TEXT,
    user_id TEXT,
    organization_id TEXT,
    models TEXT,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at BIGINT,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    tpd_limit BIGINT,
    max_parallel_requests BIGINT,
    model_rpm_limit TEXT,
    model_tpm_limit TEXT,
    max_budget BIGINT,
    soft_budget BIGINT,
    budget_duration TEXT,
    budget_id TEXT,
    model_max_budget TEXT,
    spend BIGINT,
    budget_reset_at BIGINT,
    aliases TEXT,
    metadata TEXT,
    key_type TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version BIGINT NOT NULL,
    extra TEXT
);
CREATE UNIQUE INDEX keys_key_alias_unique ON keys (key_alias);
CREATE INDEX keys_team_id ON keys (team_id);
CREATE INDEX keys_user_id ON keys (user_id);

CREATE TABLE teams (
    team_id TEXT PRIMARY KEY,
    team_alias TEXT,
    organization_id TEXT,
    models TEXT,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    tpd_limit BIGINT,
    max_parallel_requests BIGINT,
    model_rpm_limit TEXT,
    model_tpm_limit TEXT,
    max_budget BIGINT,
    soft_budget BIGINT,
    budget_duration TEXT,
    budget_id TEXT,
    model_max_budget TEXT,
    spend BIGINT,
    budget_reset_at BIGINT,
    metadata TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version BIGINT NOT NULL,
    extra TEXT
);
CREATE UNIQUE INDEX teams_team_alias_unique ON teams (team_alias);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    user_email TEXT,
    user_alias TEXT,
    user_role TEXT,
    models TEXT,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    max_parallel_requests BIGINT,
    model_rpm_limit TEXT,
    model_tpm_limit TEXT,
    max_budget BIGINT,
    soft_budget BIGINT,
    budget_duration TEXT,
    budget_id TEXT,
    model_max_budget TEXT,
    spend BIGINT,
    budget_reset_at BIGINT,
    metadata TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version BIGINT NOT NULL,
    extra TEXT
);
CREATE INDEX users_user_email ON users (user_email);

CREATE TABLE team_members (
    member_id TEXT PRIMARY KEY,
    team_id TEXT,
    user_id TEXT,
    user_email TEXT,
    role TEXT,
    max_budget_in_team BIGINT,
    budget_duration TEXT,
    allowed_models TEXT,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    spend BIGINT,
    budget_reset_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    extra TEXT
);
CREATE INDEX team_members_team_id ON team_members (team_id);
CREATE INDEX team_members_user_id ON team_members (user_id);

CREATE TABLE end_users (
    user_id TEXT PRIMARY KEY,
    alias TEXT,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    models TEXT,
    allowed_model_region TEXT,
    default_model TEXT,
    budget_id TEXT,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    tpd_limit BIGINT,
    max_parallel_requests BIGINT,
    max_budget BIGINT,
    soft_budget BIGINT,
    budget_duration TEXT,
    model_max_budget TEXT,
    spend BIGINT,
    budget_reset_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version BIGINT NOT NULL,
    extra TEXT
);
