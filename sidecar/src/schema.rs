//! The tables, as both databases hold them, and how a record's JSON values map to columns.
//!
//! A record is a flat JSON object in API units (money in dollars, times in unix seconds).
//! The columns below are what enforcement, budgets and listings need as real columns;
//! every other accepted LiteLLM field of a record goes into its `extra` JSON column and
//! comes back unchanged, so nothing a client or a LiteLLM import sends is lost.
//!
//! Storage units: money is integer nano-dollars (`BIGINT`; the spend ledger adds and
//! compares without float drift), times are unix seconds (`BIGINT`), lists and
//! objects are JSON text, `version` is the change sequence of the last change affecting
//! the row.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColTy {
    Text,
    Int,
    Bool,
    /// Dollars in the record, nano-dollars in the column.
    Money,
    /// Any JSON value, stored as its text.
    Json,
}

#[derive(Debug)]
pub struct Col {
    pub name: &'static str,
    pub ty: ColTy,
}

#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub pk: &'static str,
    /// The `change_feed` kind a change of a row is reported as (`None`: not reported).
    pub change_kind: Option<&'static str>,
    /// Columns with a unique index besides the primary key (NULLs may repeat).
    pub unique: &'static [&'static str],
    pub cols: &'static [Col],
}

impl Table {
    pub fn col(&self, name: &str) -> Option<&Col> {
        self.cols.iter().find(|c| c.name == name)
    }

    /// Whether the spend ledger adds to this column ([`LEDGER_COLS`]).
    pub fn ledger_owned(&self, name: &str) -> bool {
        LEDGER_COLS.contains(&name) && self.col(name).is_some()
    }
}

/// Columns the spend ledger adds to (`UPDATE … SET spend = spend + $n`) while admin writes
/// run: a row update ([`crate::store::Op::Update`]) never writes them back, since the
/// value it read may be stale by then; an admin change of one is a relative
/// [`crate::store::Op::AddSpend`] in the same transaction, so concurrent ledger additions
/// are never lost (docs/ledger.md).
pub const LEDGER_COLS: &[&str] = &["spend"];

macro_rules! cols {
    ($($name:ident : $ty:ident),* $(,)?) => {
        &[$(Col { name: stringify!($name), ty: ColTy::$ty }),*]
    };
}

/// Virtual keys (LiteLLM_VerificationToken); `token` is the key's SHA-256 hex.
pub static KEYS: Table = Table {
    name: "keys",
    pk: "token",
    change_kind: Some("key"),
    unique: &["key_alias"],
    cols: cols![
        token: Text, key_name: Text, key_alias: Text, team_id: Text, user_id: Text,
        organization_id: Text, models: Json, blocked: Bool, expires_at: Int,
        tpm_limit: Int, rpm_limit: Int, tpd_limit: Int, max_parallel_requests: Int,
        model_rpm_limit: Json, model_tpm_limit: Json,
        max_budget: Money, soft_budget: Money, budget_duration: Text, budget_id: Text,
        model_max_budget: Json, spend: Money, budget_reset_at: Int,
        aliases: Json, metadata: Json, key_type: Text,
        created_at: Int, updated_at: Int, created_by: Text, updated_by: Text,
        version: Int, extra: Json, budget_anchor: Int, model_budget_anchors: Json,
    ],
};

pub static TEAMS: Table = Table {
    name: "teams",
    pk: "team_id",
    change_kind: Some("team"),
    unique: &["team_alias"],
    cols: cols![
        team_id: Text, team_alias: Text, organization_id: Text, models: Json, blocked: Bool,
        tpm_limit: Int, rpm_limit: Int, tpd_limit: Int, max_parallel_requests: Int,
        model_rpm_limit: Json, model_tpm_limit: Json,
        max_budget: Money, soft_budget: Money, budget_duration: Text, budget_id: Text,
        model_max_budget: Json, spend: Money, budget_reset_at: Int, metadata: Json,
        created_at: Int, updated_at: Int, created_by: Text, updated_by: Text,
        version: Int, extra: Json, budget_anchor: Int,
    ],
};

/// Internal users (LiteLLM_UserTable): the people and apps keys belong to.
pub static USERS: Table = Table {
    name: "users",
    pk: "user_id",
    change_kind: Some("user"),
    unique: &[],
    cols: cols![
        user_id: Text, user_email: Text, user_alias: Text, user_role: Text, models: Json,
        tpm_limit: Int, rpm_limit: Int, max_parallel_requests: Int,
        model_rpm_limit: Json, model_tpm_limit: Json,
        max_budget: Money, soft_budget: Money, budget_duration: Text, budget_id: Text,
        model_max_budget: Json, spend: Money, budget_reset_at: Int, metadata: Json,
        created_at: Int, updated_at: Int, created_by: Text, updated_by: Text,
        version: Int, extra: Json, budget_anchor: Int,
    ],
};

/// Team memberships; `member_id` is `team_id` + U+001F + `user_id`.
pub static TEAM_MEMBERS: Table = Table {
    name: "team_members",
    pk: "member_id",
    change_kind: None,
    unique: &[],
    cols: cols![
        member_id: Text, team_id: Text, user_id: Text, user_email: Text, role: Text,
        max_budget_in_team: Money, budget_duration: Text, allowed_models: Json,
        tpm_limit: Int, rpm_limit: Int, spend: Money, budget_reset_at: Int,
        created_at: Int, updated_at: Int, version: Int, extra: Json, budget_anchor: Int,
    ],
};

/// End users (LiteLLM's customers: the `user` field of a request).
pub static END_USERS: Table = Table {
    name: "end_users",
    pk: "user_id",
    change_kind: Some("customer"),
    unique: &[],
    cols: cols![
        user_id: Text, alias: Text, blocked: Bool, models: Json, allowed_model_region: Text,
        default_model: Text, budget_id: Text,
        tpm_limit: Int, rpm_limit: Int, tpd_limit: Int, max_parallel_requests: Int,
        max_budget: Money, soft_budget: Money, budget_duration: Text, model_max_budget: Json,
        spend: Money, budget_reset_at: Int,
        created_at: Int, updated_at: Int, created_by: Text, updated_by: Text,
        version: Int, extra: Json, budget_anchor: Int,
    ],
};

/// LiteLLM's budget table (`/budget/*`): limits and a reset schedule that keys and end
/// users link to with `budget_id` (a template: each linked entity is held to it with its
/// own spend; `crate::budget`).
pub static BUDGETS: Table = Table {
    name: "budgets",
    pk: "budget_id",
    change_kind: Some("budget"),
    unique: &[],
    cols: cols![
        budget_id: Text, max_budget: Money, soft_budget: Money, max_parallel_requests: Int,
        tpm_limit: Int, rpm_limit: Int, tpd_limit: Int, model_max_budget: Json,
        budget_duration: Text, budget_reset_at: Int, budget_anchor: Int, model_budget_anchors: Json,
        created_at: Int, updated_at: Int, created_by: Text, updated_by: Text,
        version: Int, extra: Json,
    ],
};

/// Columns the admin API derives and never shows: when the current `budget_duration`
/// (of the row, and of each model budget) took effect (`crate::period`).
pub const INTERNAL_COLS: &[&str] = &["budget_anchor", "model_budget_anchors"];

pub fn member_id(team_id: &str, user_id: &str) -> String {
    format!("{team_id}\u{1f}{user_id}")
}

/// Nano-dollars per dollar.
pub const NANO: f64 = 1e9;

/// Dollars → nano-dollars, rounded, saturating (the API refuses amounts this large).
pub fn to_nano(dollars: f64) -> i64 {
    let n = (dollars * NANO).round();
    if n.is_nan() {
        0
    } else {
        n.clamp(i64::MIN as f64, i64::MAX as f64) as i64
    }
}

pub fn from_nano(nano: i64) -> f64 {
    nano as f64 / NANO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_through_nano_dollars() {
        for d in [0.0, 0.1, 10.0, 123.456789, 1e-9, 99999.99] {
            assert_eq!(from_nano(to_nano(d)), d, "{d}");
        }
        assert_eq!(to_nano(0.1 + 0.2), 300_000_000);
    }

    #[test]
    fn every_table_has_pk_version_and_extra() {
        for t in [&KEYS, &TEAMS, &USERS, &TEAM_MEMBERS, &END_USERS, &BUDGETS] {
            for c in [t.pk, "version", "extra", "created_at"] {
                assert!(t.col(c).is_some(), "{}.{c}", t.name);
            }
        }
    }
}
