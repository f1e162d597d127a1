//! Stored records → LiteLLM's response shapes (`GenerateKeyResponse`, `LiteLLM_TeamTable`,
//! `LiteLLM_UserTable`, `LiteLLM_EndUserTable`, …): times as ISO 8601, LiteLLM's defaults
//! for absent lists and objects, internal columns (`version`, `expires_at`) replaced by
//! their LiteLLM fields.

use serde_json::{json, Map, Value};

use crate::budget::Fields;
use crate::keys;
use crate::schema::INTERNAL_COLS;
use crate::store::Record;
use crate::time::iso8601;

pub fn iso(v: Option<&Value>) -> Value {
    v.and_then(Value::as_i64).map_or(Value::Null, |s| Value::String(iso8601(s)))
}

/// LiteLLM's `budget_reset_at`: when the current period of the row's `budget_duration`
/// ends (derived from the duration and when it took effect, not stored by a job), `null`
/// for a budget that never resets. Unix seconds.
pub fn reset_at(rec: &Record) -> Value {
    Fields::from_record(rec, "max_budget")
        .schedule()
        .map_or(Value::Null, |s| Value::from(s.current(crate::time::now()).1))
}

/// Drops the columns only the sidecar reads and derives `budget_reset_at`.
fn budget_view(out: &mut Map<String, Value>, rec: &Record) {
    for c in INTERNAL_COLS {
        out.remove(*c);
    }
    out.insert("budget_reset_at".to_owned(), reset_at(rec));
}

fn times(out: &mut Map<String, Value>) {
    for f in ["created_at", "updated_at", "budget_reset_at"] {
        if out.contains_key(f) {
            let v = iso(out.get(f));
            out.insert(f.to_owned(), v);
        }
    }
}

fn defaults(out: &mut Map<String, Value>, fields: &[(&str, Value)]) {
    for (f, d) in fields {
        if out.get(*f).is_none_or(Value::is_null) {
            out.insert((*f).to_owned(), d.clone());
        }
    }
}

/// A key row as `/key/info`, `/key/list`, `/key/update` show it (with `token`, the hash).
pub fn key(rec: &Record) -> Map<String, Value> {
    let mut out = rec.clone();
    out.remove("version");
    budget_view(&mut out, rec);
    let expires = iso(out.remove("expires_at").as_ref());
    out.insert("expires".to_owned(), expires);
    times(&mut out);
    defaults(
        &mut out,
        &[
            ("models", json!([])),
            ("aliases", json!({})),
            ("config", json!({})),
            ("permissions", json!({})),
            ("metadata", json!({})),
            ("spend", json!(0.0)),
            ("blocked", json!(false)),
            ("model_spend", json!({})),
            ("model_max_budget", json!({})),
            ("allowed_cache_controls", json!([])),
            ("allowed_routes", json!([])),
        ],
    );
    out
}

/// `GenerateKeyResponse`: the key row plus the plaintext key, shown this once.
pub fn generated_key(rec: &Record, plaintext: &str) -> Map<String, Value> {
    let mut out = key(rec);
    out.insert("key".to_owned(), Value::String(plaintext.to_owned()));
    out.insert("key_name".to_owned(), Value::String(keys::key_name(plaintext)));
    let token = out.get("token").cloned().unwrap_or(Value::Null);
    out.insert("token_id".to_owned(), token);
    out.insert("litellm_budget_table".to_owned(), Value::Null);
    out
}

pub fn member(m: &Record) -> Value {
    json!({"user_id": m.get("user_id"), "user_email": m.get("user_email"), "role": m.get("role").cloned().unwrap_or(json!("user"))})
}

/// `LiteLLM_TeamTable`, members from the membership table.
pub fn team(rec: &Record, members: &[Record]) -> Map<String, Value> {
    let mut out = rec.clone();
    out.remove("version");
    budget_view(&mut out, rec);
    times(&mut out);
    out.insert("members_with_roles".to_owned(), Value::Array(members.iter().map(member).collect()));
    let admins: Vec<Value> = members
        .iter()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("admin"))
        .filter_map(|m| m.get("user_id").cloned())
        .collect();
    out.insert("admins".to_owned(), Value::Array(admins));
    let ids: Vec<Value> = members.iter().filter_map(|m| m.get("user_id").cloned()).collect();
    out.insert("members".to_owned(), Value::Array(ids));
    defaults(
        &mut out,
        &[
            ("models", json!([])),
            ("blocked", json!(false)),
            ("spend", json!(0.0)),
            ("metadata", json!({})),
            ("model_spend", json!({})),
            ("model_max_budget", json!({})),
        ],
    );
    out
}

/// `LiteLLM_TeamMembership` (`with_source`: `TeamInfoMembership`, which adds `budget_source`).
pub fn membership(m: &Record, with_source: bool) -> Value {
    let budget = m.get("max_budget_in_team").filter(|v| !v.is_null()).map(|b| {
        json!({"max_budget": b, "budget_duration": m.get("budget_duration"), "allowed_models": m.get("allowed_models"),
               "tpm_limit": m.get("tpm_limit"), "rpm_limit": m.get("rpm_limit"),
               "budget_reset_at": iso(Some(&reset_at(m))), "created_at": iso(m.get("created_at"))})
    });
    let mut out = json!({
        "user_id": m.get("user_id"), "team_id": m.get("team_id"), "budget_id": null,
        "spend": m.get("spend").cloned().unwrap_or(json!(0.0)), "total_spend": m.get("spend").cloned().unwrap_or(json!(0.0)),
        "litellm_budget_table": budget.clone().unwrap_or(Value::Null),
    });
    if let (true, Some(o)) = (with_source, out.as_object_mut()) {
        o.insert("budget_source".into(), json!(if budget.is_some() { "custom" } else { "none" }));
    }
    out
}

/// `LiteLLM_UserTable`, `teams` from the membership table.
pub fn user(rec: &Record, teams: &[String]) -> Map<String, Value> {
    let mut out = rec.clone();
    out.remove("version");
    budget_view(&mut out, rec);
    times(&mut out);
    out.insert("teams".to_owned(), json!(teams));
    defaults(
        &mut out,
        &[
            ("models", json!([])),
            ("spend", json!(0.0)),
            ("metadata", json!({})),
            ("model_spend", json!({})),
            ("model_max_budget", json!({})),
            ("allowed_cache_controls", json!([])),
            ("policies", json!([])),
        ],
    );
    out
}

/// `LiteLLM_BudgetTable` as LiteLLM returns its rows (`/budget/*`, and an end user's
/// linked `litellm_budget_table`): every column, `budget_reset_at` derived.
pub fn budget(rec: &Record) -> Value {
    let mut out = Map::new();
    for f in ["budget_id", "max_budget", "soft_budget", "max_parallel_requests", "tpm_limit", "rpm_limit", "tpd_limit"]
    {
        out.insert(f.to_owned(), rec.get(f).cloned().unwrap_or(Value::Null));
    }
    out.insert("model_max_budget".to_owned(), rec.get("model_max_budget").cloned().unwrap_or(Value::Null));
    out.insert("budget_duration".to_owned(), rec.get("budget_duration").cloned().unwrap_or(Value::Null));
    out.insert("budget_reset_at".to_owned(), iso(Some(&reset_at(rec))));
    out.insert("allowed_models".to_owned(), json!([]));
    out.insert("temp_budget_increase".to_owned(), Value::Null);
    out.insert("temp_budget_expiry".to_owned(), Value::Null);
    for f in ["created_at", "updated_at"] {
        out.insert(f.to_owned(), iso(rec.get(f)));
    }
    for f in ["created_by", "updated_by"] {
        out.insert(f.to_owned(), rec.get(f).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

const BUDGET_FIELDS: &[&str] = &[
    "max_budget",
    "soft_budget",
    "tpm_limit",
    "rpm_limit",
    "tpd_limit",
    "max_parallel_requests",
    "budget_duration",
    "model_max_budget",
];

/// `CustomerResponse` / `LiteLLM_EndUserTable`: limits and budget in
/// `litellm_budget_table` — the linked `/budget/*` row's when `budget_id` names one
/// (`linked`), else the end user's own.
pub fn customer(rec: &Record, linked: Option<&Record>) -> Value {
    let has_budget = BUDGET_FIELDS.iter().any(|f| rec.get(*f).is_some_and(|v| !v.is_null()));
    let budget = if let Some(row) = linked {
        budget(row)
    } else if has_budget {
        let mut b = Map::new();
        b.insert("budget_id".to_owned(), rec.get("budget_id").cloned().unwrap_or(Value::Null));
        for f in BUDGET_FIELDS {
            b.insert((*f).to_owned(), rec.get(*f).cloned().unwrap_or(Value::Null));
        }
        b.insert("budget_reset_at".to_owned(), iso(Some(&reset_at(rec))));
        b.insert("created_at".to_owned(), iso(rec.get("created_at")));
        Value::Object(b)
    } else {
        Value::Null
    };
    json!({
        "user_id": rec.get("user_id"),
        "blocked": rec.get("blocked").cloned().unwrap_or(json!(false)),
        "alias": rec.get("alias"),
        "spend": rec.get("spend").cloned().unwrap_or(json!(0.0)),
        "allowed_model_region": rec.get("allowed_model_region"),
        "default_model": rec.get("default_model"),
        "models": rec.get("models").filter(|v| v.is_array()).cloned().unwrap_or(json!([])),
        "budget_id": rec.get("budget_id"),
        "litellm_budget_table": budget,
        "object_permission": rec.get("object_permission"),
        "created_at": iso(rec.get("created_at")),
        "updated_at": iso(rec.get("updated_at")),
    })
}
