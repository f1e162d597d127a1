-- Switchyard sidecar schema, version 1 (SQLite).
-- Generated with the column list of sidecar/src/schema.rs (a unit test compares them).
-- Money columns (max_budget, soft_budget, spend, max_budget_in_team) hold integer
-- nano-dollars. Times: unix seconds. Lists and objects: JSON text.
-- Every admin change runs in one transaction that first increments change_seq (one row:
-- its lock serialises writers, so sequence numbers commit in order) and appends one
-- change_feed row per affected record; `version` columns hold that sequence number.

CREATE TABLE change_seq (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO change_seq (id, seq) VALUES (1, 0);

CREATE TABLE change_feed (
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    at INTEGER NOT NULL,
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
    expires_at INTEGER,
    tpm_limit INTEGER,
    rpm_limit INTEGER,
    tpd_limit INTEGER,
    max_parallel_requests INTEGER,
    model_rpm_limit TEXT,
    model_tpm_limit TEXT,
    max_budget INTEGER,
    soft_budget INTEGER,
    budget_duration TEXT,
    budget_id TEXT,
    model_max_budget TEXT,
    spend INTEGER,
    budget_reset_at INTEGER,
    aliases TEXT,
    metadata TEXT,
    key_type TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version INTEGER NOT NULL,
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
    tpm_limit INTEGER,
    rpm_limit INTEGER,
    tpd_limit INTEGER,
    max_parallel_requests INTEGER,
    model_rpm_limit TEXT,
    model_tpm_limit TEXT,
    max_budget INTEGER,
    soft_budget INTEGER,
    budget_duration TEXT,
    budget_id TEXT,
    model_max_budget TEXT,
    spend INTEGER,
    budget_reset_at INTEGER,
    metadata TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version INTEGER NOT NULL,
    extra TEXT
);
CREATE UNIQUE INDEX teams_team_alias_unique ON teams (team_alias);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    user_email TEXT,
    user_alias TEXT,
    user_role TEXT,
    models TEXT,
    tpm_limit INTEGER,
    rpm_limit INTEGER,
    max_parallel_requests INTEGER,
    model_rpm_limit TEXT,
    model_tpm_limit TEXT,
    max_budget INTEGER,
    soft_budget INTEGER,
    budget_duration TEXT,
    budget_id TEXT,
    model_max_budget TEXT,
    spend INTEGER,
    budget_reset_at INTEGER,
    metadata TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version INTEGER NOT NULL,
    extra TEXT
);
CREATE INDEX users_user_email ON users (user_email);

CREATE TABLE team_members (
    member_id TEXT PRIMARY KEY,
    team_id TEXT,
    user_id TEXT,
    user_email TEXT,
    role TEXT,
    max_budget_in_team INTEGER,
    budget_duration TEXT,
    allowed_models TEXT,
    tpm_limit INTEGER,
    rpm_limit INTEGER,
    spend INTEGER,
    budget_reset_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
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
    tpm_limit INTEGER,
    rpm_limit INTEGER,
    tpd_limit INTEGER,
    max_parallel_requests INTEGER,
    max_budget INTEGER,
    soft_budget INTEGER,
    budget_duration TEXT,
    model_max_budget TEXT,
    spend INTEGER,
    budget_reset_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version INTEGER NOT NULL,
    extra TEXT
);
