-- Budgets (PostgreSQL): LiteLLM's budget table (/budget/*), when each entity's budget_duration
-- took effect, and the spend of each budget period. Money is integer nano-dollars (1e-9
-- USD), times in the entity tables unix seconds, period bounds unix milliseconds.
-- Periods are derived from budget_duration and budget_anchor (docs/budgets.md): a new
-- period is a new budget_spend row, never a reset of an old one.

CREATE TABLE budgets (
    budget_id TEXT PRIMARY KEY,
    max_budget BIGINT,
    soft_budget BIGINT,
    max_parallel_requests BIGINT,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    tpd_limit BIGINT,
    model_max_budget TEXT,
    budget_duration TEXT,
    budget_reset_at BIGINT,
    budget_anchor BIGINT,
    model_budget_anchors TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    created_by TEXT,
    updated_by TEXT,
    version BIGINT NOT NULL,
    extra TEXT
);

-- When the row's current budget_duration took effect (NULL: before this migration, or
-- imported; its created_at is used), and per model budget of model_max_budget.
ALTER TABLE keys ADD COLUMN budget_anchor BIGINT;
ALTER TABLE keys ADD COLUMN model_budget_anchors TEXT;
ALTER TABLE teams ADD COLUMN budget_anchor BIGINT;
ALTER TABLE users ADD COLUMN budget_anchor BIGINT;
ALTER TABLE team_members ADD COLUMN budget_anchor BIGINT;
ALTER TABLE end_users ADD COLUMN budget_anchor BIGINT;
-- A budget's change is reported as a change of each key and end user linked to it.
CREATE INDEX keys_budget_id ON keys (budget_id);
CREATE INDEX end_users_budget_id ON end_users (budget_id);

-- Spend per budget period, moved by the ledger in the transaction that inserts the
-- records (inserted records only). kind: key, team, user, team_member (id
-- '<team>:<user>'), end_user, key_model (id '<key hash>:<model>'). period_end_ms is
-- where the period ends (the retention sweep deletes periods that ended long ago).
CREATE TABLE budget_spend (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    period_end_ms BIGINT NOT NULL,
    spent_nano BIGINT NOT NULL,
    PRIMARY KEY (kind, id, period_start_ms)
);
CREATE INDEX budget_spend_period_end ON budget_spend (period_end_ms);
