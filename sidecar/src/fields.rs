//! What each admin request accepts, field by field, and the checks every value passes
//! before anything is stored: the field lists are LiteLLM 1.106.2's request models
//! (`litellm/proxy/_types.py`), so a LiteLLM client's body is accepted as sent, and
//! anything else is refused with a 400 naming the field — an unknown field, a wrong
//! type, a negative limit, a bad duration — never a 500.

use serde_json::{Map, Number, Value};

use crate::duration;
use crate::error::ApiError;

#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Str,
    Bool,
    /// A limit: a non-negative integer (an integral float such as `10.0` is taken, as
    /// pydantic takes it).
    Count,
    /// A positive integer.
    PosInt,
    /// Dollars: a non-negative finite number (up to 10⁹).
    Money,
    StrList,
    List,
    Object,
    /// `{"<model>": <limit>}`.
    CountMap,
    /// A key lifetime or rotation interval in LiteLLM's duration syntax (`"-1"` = never).
    Duration,
    /// A budget period: a duration LiteLLM can reset on, or `""`/`"none"`/`"null"`.
    BudgetDuration,
    /// An ISO 8601 time (or unix seconds).
    Time,
    Enum(&'static [&'static str]),
    /// A team member (`{"user_id"|"user_email", "role": "admin"|"user"}`) or a list of them.
    Members,
    /// `model_max_budget`: `{"<model>": {"max_budget", "budget_duration", "tpm_limit",
    /// "rpm_limit"}}` (LiteLLM's `BudgetConfig`, with its aliases `budget_limit` and
    /// `time_period`; an amount may be a numeric string, as LiteLLM's own example has it).
    ModelBudgets,
}

pub type Spec = (&'static str, Ty);

const LIMIT_TYPES: &[&str] = &["guaranteed_throughput", "best_effort_throughput", "dynamic"];
const TEAM_LIMIT_TYPES: &[&str] = &["guaranteed_throughput", "best_effort_throughput"];
const KEY_TYPES: &[&str] = &["llm_api", "management", "read_only", "default"];
pub const USER_ROLES: &[&str] = &["proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer"];

/// `GenerateRequestBase`: shared by keys and users.
const GENERATE_BASE: &[Spec] = &[
    ("key_alias", Ty::Str),
    ("duration", Ty::Duration),
    ("models", Ty::StrList),
    ("spend", Ty::Money),
    ("max_budget", Ty::Money),
    ("user_id", Ty::Str),
    ("team_id", Ty::Str),
    ("agent_id", Ty::Str),
    ("max_parallel_requests", Ty::Count),
    ("metadata", Ty::Object),
    ("tpm_limit", Ty::Count),
    ("rpm_limit", Ty::Count),
    ("budget_duration", Ty::BudgetDuration),
    ("budget_limits", Ty::List),
    ("allowed_cache_controls", Ty::List),
    ("config", Ty::Object),
    ("permissions", Ty::Object),
    ("model_max_budget", Ty::ModelBudgets),
    ("budget_fallbacks", Ty::Object),
    ("model_rpm_limit", Ty::CountMap),
    ("model_tpm_limit", Ty::CountMap),
    ("mcp_rpm_limit", Ty::CountMap),
    ("tag_rpm_limit", Ty::CountMap),
    ("guardrails", Ty::StrList),
    ("policies", Ty::StrList),
    ("prompts", Ty::StrList),
    ("blocked", Ty::Bool),
    ("aliases", Ty::Object),
    ("object_permission", Ty::Object),
];

/// `KeyRequestBase` (besides `GenerateRequestBase`) and `GenerateKeyRequest`.
const KEY_EXTRA: &[Spec] = &[
    ("key", Ty::Str),
    ("tpd_limit", Ty::Count),
    ("default_estimated_output_tokens", Ty::PosInt),
    ("default_estimated_output_tokens_per_model", Ty::Object),
    ("budget_id", Ty::Str),
    ("end_user_budget_id", Ty::Str),
    ("tags", Ty::StrList),
    ("disable_global_guardrails", Ty::Bool),
    ("enable_prompt_caching", Ty::Bool),
    ("throttle_on_budget_exceeded", Ty::Bool),
    ("enforced_params", Ty::StrList),
    ("allowed_routes", Ty::List),
    ("allowed_passthrough_routes", Ty::List),
    ("denied_passthrough_routes", Ty::StrList),
    ("allowed_vector_store_indexes", Ty::List),
    ("rpm_limit_type", Ty::Enum(LIMIT_TYPES)),
    ("tpm_limit_type", Ty::Enum(LIMIT_TYPES)),
    ("router_settings", Ty::Object),
    ("access_group_ids", Ty::StrList),
    ("soft_budget", Ty::Money),
    ("send_invite_email", Ty::Bool),
    ("key_type", Ty::Enum(KEY_TYPES)),
    ("auto_rotate", Ty::Bool),
    ("rotation_interval", Ty::Duration),
    ("organization_id", Ty::Str),
    ("project_id", Ty::Str),
];

/// `UpdateKeyRequest` only.
const KEY_UPDATE_EXTRA: &[Spec] = &[("temp_budget_increase", Ty::Money), ("temp_budget_expiry", Ty::Time)];
/// `RegenerateKeyRequest` only.
const KEY_REGENERATE_EXTRA: &[Spec] =
    &[("new_key", Ty::Str), ("new_master_key", Ty::Str), ("grace_period", Ty::Duration)];

const USER_EXTRA: &[Spec] = &[
    ("user_email", Ty::Str),
    ("user_alias", Ty::Str),
    ("user_role", Ty::Enum(USER_ROLES)),
    ("teams", Ty::List),
    ("auto_create_key", Ty::Bool),
    ("send_invite_email", Ty::Bool),
    ("sso_user_id", Ty::Str),
    ("organizations", Ty::StrList),
    ("password", Ty::Str),
    ("soft_budget", Ty::Money),
];

const TEAM: &[Spec] = &[
    ("team_alias", Ty::Str),
    ("team_id", Ty::Str),
    ("organization_id", Ty::Str),
    ("admins", Ty::List),
    ("members", Ty::List),
    ("members_with_roles", Ty::Members),
    ("team_member_permissions", Ty::StrList),
    ("metadata", Ty::Object),
    ("tpm_limit", Ty::Count),
    ("rpm_limit", Ty::Count),
    ("tpd_limit", Ty::Count),
    // Not in LiteLLM's NewTeamRequest, but a column of its team table: Switchyard enforces it.
    ("max_parallel_requests", Ty::Count),
    ("max_budget", Ty::Money),
    ("soft_budget", Ty::Money),
    ("budget_duration", Ty::BudgetDuration),
    ("budget_id", Ty::Str),
    ("budget_limits", Ty::List),
    ("models", Ty::StrList),
    ("blocked", Ty::Bool),
    ("router_settings", Ty::Object),
    ("access_group_ids", Ty::StrList),
    ("default_team_member_models", Ty::StrList),
    ("model_aliases", Ty::Object),
    ("model_max_budget", Ty::ModelBudgets),
    ("tags", Ty::List),
    ("guardrails", Ty::StrList),
    ("policies", Ty::StrList),
    ("prompts", Ty::StrList),
    ("object_permission", Ty::Object),
    ("allowed_passthrough_routes", Ty::List),
    ("denied_passthrough_routes", Ty::StrList),
    ("disable_global_guardrails", Ty::Bool),
    ("secret_manager_settings", Ty::Object),
    ("model_rpm_limit", Ty::CountMap),
    ("model_tpm_limit", Ty::CountMap),
    ("rpm_limit_type", Ty::Enum(TEAM_LIMIT_TYPES)),
    ("tpm_limit_type", Ty::Enum(TEAM_LIMIT_TYPES)),
    ("default_estimated_output_tokens", Ty::PosInt),
    ("default_estimated_output_tokens_per_model", Ty::Object),
    ("mcp_rpm_limit", Ty::CountMap),
    ("team_member_budget", Ty::Money),
    ("team_member_rpm_limit", Ty::Count),
    ("team_member_tpm_limit", Ty::Count),
    ("team_member_key_duration", Ty::Duration),
    ("team_member_budget_duration", Ty::BudgetDuration),
    ("allowed_vector_store_indexes", Ty::List),
    ("enforced_batch_output_expires_after", Ty::Object),
    ("enforced_file_expires_after", Ty::Object),
];

/// `NewCustomerRequest`'s own fields, beside `BudgetNewRequest`'s ([`BUDGET`]), which it
/// extends; updates take the same ([`Request::Customer`]).
const CUSTOMER_EXTRA: &[Spec] = &[
    ("user_id", Ty::Str),
    ("alias", Ty::Str),
    ("blocked", Ty::Bool),
    ("spend", Ty::Money),
    ("allowed_model_region", Ty::Enum(&["eu", "us"])),
    ("default_model", Ty::Str),
    ("models", Ty::StrList),
    ("object_permission", Ty::Object),
];

/// `BudgetNewRequest` (`/budget/new`, `/budget/update`).
pub const BUDGET: &[Spec] = &[
    ("budget_id", Ty::Str),
    ("max_budget", Ty::Money),
    ("soft_budget", Ty::Money),
    ("max_parallel_requests", Ty::Count),
    ("tpm_limit", Ty::Count),
    ("rpm_limit", Ty::Count),
    ("tpd_limit", Ty::Count),
    ("budget_duration", Ty::BudgetDuration),
    ("model_max_budget", Ty::ModelBudgets),
    ("budget_reset_at", Ty::Time),
];
/// `BudgetRequest` (`/budget/info`).
pub const BUDGET_INFO: &[Spec] = &[("budgets", Ty::StrList)];
/// `BudgetDeleteRequest` (`/budget/delete`).
pub const BUDGET_DELETE: &[Spec] = &[("id", Ty::Str)];

pub const MEMBER_ADD: &[Spec] = &[
    ("team_id", Ty::Str),
    ("member", Ty::Members),
    ("max_budget_in_team", Ty::Money),
    ("budget_duration", Ty::BudgetDuration),
    ("allowed_models", Ty::StrList),
];
pub const MEMBER_DELETE: &[Spec] = &[("team_id", Ty::Str), ("user_id", Ty::Str), ("user_email", Ty::Str)];
pub const KEY_DELETE: &[Spec] = &[("keys", Ty::StrList), ("key_aliases", Ty::StrList)];
pub const KEY_BLOCK: &[Spec] = &[("key", Ty::Str)];
pub const TEAM_ID: &[Spec] = &[("team_id", Ty::Str)];
pub const TEAM_IDS: &[Spec] = &[("team_ids", Ty::StrList)];
pub const USER_IDS: &[Spec] = &[("user_ids", Ty::StrList)];

/// Which request a body is for; each has its own field list.
#[derive(Clone, Copy, Debug)]
pub enum Request {
    KeyGenerate,
    KeyUpdate,
    KeyRegenerate,
    TeamNew,
    TeamUpdate,
    UserNew,
    UserUpdate,
    /// `/customer/new` and `/customer/update`.
    Customer,
}

impl Request {
    fn lists(self) -> &'static [&'static [Spec]] {
        match self {
            Request::KeyGenerate => &[GENERATE_BASE, KEY_EXTRA],
            Request::KeyUpdate => &[GENERATE_BASE, KEY_EXTRA, KEY_UPDATE_EXTRA],
            Request::KeyRegenerate => &[GENERATE_BASE, KEY_EXTRA, KEY_REGENERATE_EXTRA],
            Request::TeamNew | Request::TeamUpdate => &[TEAM],
            Request::UserNew | Request::UserUpdate => &[GENERATE_BASE, USER_EXTRA],
            Request::Customer => &[BUDGET, CUSTOMER_EXTRA],
        }
    }

    pub fn check(self, body: &mut Map<String, Value>) -> Result<(), ApiError> {
        check_lists(body, self.lists())
    }
}

pub fn check(body: &mut Map<String, Value>, specs: &'static [Spec]) -> Result<(), ApiError> {
    check_lists(body, &[specs])
}

fn check_lists(body: &mut Map<String, Value>, lists: &[&'static [Spec]]) -> Result<(), ApiError> {
    let names: Vec<String> = body.keys().cloned().collect();
    for name in names {
        let ty = lists.iter().flat_map(|l| l.iter()).find(|(n, _)| *n == name).map(|(_, t)| *t);
        let Some(ty) = ty else {
            return Err(ApiError::field(&name, format!("unknown field {name:?}")));
        };
        if let Some(v) = body.get_mut(&name) {
            check_value(&name, ty, v)?;
        }
    }
    Ok(())
}

/// Checks one value (`null` always passes: it means "unset"); normalises numbers.
pub fn check_value(name: &str, ty: Ty, v: &mut Value) -> Result<(), ApiError> {
    if v.is_null() {
        return Ok(());
    }
    let wrong = |what: &str| Err(ApiError::field(name, format!("{name} must be {what}")));
    match ty {
        Ty::Str if !v.is_string() => wrong("a string"),
        // PostgreSQL text cannot hold NUL; refuse it on both databases alike.
        Ty::Str if v.as_str().is_some_and(|s| s.contains('\0')) => wrong("a string without NUL characters"),
        Ty::Bool if !v.is_boolean() => wrong("true or false"),
        Ty::Count | Ty::PosInt => {
            let min = if matches!(ty, Ty::PosInt) { 1 } else { 0 };
            match as_count(v) {
                Some(n) if n >= min => {
                    *v = Value::from(n);
                    Ok(())
                }
                _ if min == 1 => wrong("a positive integer"),
                _ => wrong("a non-negative integer"),
            }
        }
        Ty::Money => match v.as_f64() {
            Some(x) if x.is_finite() && (0.0..=1e9).contains(&x) => {
                *v = Value::Number(Number::from_f64(x).unwrap_or_else(|| Number::from(0)));
                Ok(())
            }
            _ => wrong("a non-negative number of dollars (at most 1e9)"),
        },
        Ty::StrList => match v.as_array() {
            Some(a) => match a.iter().position(|x| !x.is_string()) {
                Some(i) => Err(ApiError::field(format!("{name}[{i}]"), format!("{name}[{i}] must be a string"))),
                None => Ok(()),
            },
            None => wrong("a list of strings"),
        },
        Ty::List if !v.is_array() => wrong("a list"),
        Ty::Object if !v.is_object() => wrong("an object"),
        Ty::CountMap => {
            let Some(map) = v.as_object_mut() else {
                return wrong("an object of model names to non-negative integers");
            };
            for (model, limit) in map.iter_mut() {
                match as_count(limit) {
                    Some(n) if n >= 0 => *limit = Value::from(n),
                    _ => {
                        let param = format!("{name}.{model}");
                        return Err(ApiError::field(&param, format!("{param} must be a non-negative integer")));
                    }
                }
            }
            Ok(())
        }
        Ty::Duration => match v.as_str() {
            Some("-1") => Ok(()),
            Some(s) => duration::parse(s).map(|_| ()).map_err(|m| ApiError::field(name, format!("{name}: {m}"))),
            None => wrong("a duration string such as \"30d\""),
        },
        Ty::BudgetDuration => match v.as_str() {
            Some(s) if duration::is_no_reset(s) => Ok(()),
            // LiteLLM 1.106.2 refuses a zero period too (`budget_duration_error`: it would
            // leave the row permanently due).
            Some(s) => duration::parse(s)
                .and_then(
                    |d| if d.value == 0 { Err("a budget period must be longer than zero".to_owned()) } else { Ok(d) },
                )
                .and_then(|d| d.next_reset(0).map(|_| ()))
                .map_err(|m| ApiError::field(name, format!("{name}: {m}"))),
            None => wrong("a duration string such as \"30d\""),
        },
        Ty::ModelBudgets => {
            let Some(map) = v.as_object_mut() else {
                return wrong(
                    "an object of model names to {\"max_budget\", \"budget_duration\", \"tpm_limit\", \"rpm_limit\"}",
                );
            };
            for (model, cfg) in map.iter_mut() {
                let param = format!("{name}.{model}");
                let Some(cfg) = cfg.as_object_mut() else {
                    return Err(ApiError::field(
                        &param,
                        format!("{param} must be an object with max_budget, budget_duration, tpm_limit, rpm_limit"),
                    ));
                };
                for (k, x) in cfg.iter_mut() {
                    let ty = match k.as_str() {
                        "max_budget" | "budget_limit" => {
                            // A numeric string is an amount (pydantic's float), kept as a number.
                            if let Some(n) =
                                x.as_str().and_then(|s| s.trim().parse::<f64>().ok()).and_then(Number::from_f64)
                            {
                                *x = Value::Number(n);
                            }
                            Ty::Money
                        }
                        "budget_duration" | "time_period" => Ty::BudgetDuration,
                        "tpm_limit" | "rpm_limit" => Ty::Count,
                        _ => {
                            return Err(ApiError::field(
                                format!("{param}.{k}"),
                                format!("unknown field {k:?} in a model budget"),
                            ))
                        }
                    };
                    check_value(&format!("{param}.{k}"), ty, x)?;
                }
            }
            Ok(())
        }
        Ty::Time => match v {
            Value::String(s) if crate::time::parse_timestamp(s).is_some() => Ok(()),
            Value::Number(n) if n.as_i64().is_some() => Ok(()),
            _ => wrong("an ISO 8601 date-time"),
        },
        Ty::Enum(allowed) => match v.as_str() {
            Some(s) if allowed.contains(&s) => Ok(()),
            _ => wrong(&format!("one of {}", allowed.join(", "))),
        },
        Ty::Members => {
            let list: Vec<&mut Value> = match v {
                Value::Array(a) => a.iter_mut().collect(),
                Value::Object(_) => vec![v],
                _ => return wrong("a member object or a list of them"),
            };
            for (i, m) in list.into_iter().enumerate() {
                check_member(&format!("{name}[{i}]"), m)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_member(param: &str, m: &mut Value) -> Result<(), ApiError> {
    let Some(obj) = m.as_object() else {
        return Err(ApiError::field(param, format!("{param} must be an object with user_id or user_email and role")));
    };
    for (k, v) in obj {
        let ok = match k.as_str() {
            "user_id" | "user_email" => v.is_null() || v.is_string(),
            "role" => matches!(v.as_str(), Some("admin" | "user")),
            _ => return Err(ApiError::field(format!("{param}.{k}"), format!("unknown field {k:?} in a team member"))),
        };
        if !ok {
            return Err(ApiError::field(
                format!("{param}.{k}"),
                format!("{param}.{k} has a wrong value (role is \"admin\" or \"user\", ids are strings)"),
            ));
        }
    }
    let has = |k: &str| obj.get(k).is_some_and(Value::is_string);
    if !has("user_id") && !has("user_email") {
        return Err(ApiError::field(param, format!("{param} needs user_id or user_email")));
    }
    if !obj.contains_key("role") {
        return Err(ApiError::field(
            format!("{param}.role"),
            format!("{param}.role is required (\"admin\" or \"user\")"),
        ));
    }
    Ok(())
}

fn as_count(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// The body's `name` as a non-empty string, or the 400 for it.
pub fn required_str(body: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(ApiError::field(name, format!("{name} must not be empty"))),
        _ => Err(ApiError::field(name, format!("missing required field {name:?}"))),
    }
}

/// The body's `name` as a list of strings (already type-checked), or the 400 for it.
pub fn required_list(body: &Map<String, Value>, name: &str) -> Result<Vec<String>, ApiError> {
    match body.get(name).and_then(Value::as_array) {
        Some(a) => Ok(a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()),
        None => Err(ApiError::field(name, format!("missing required field {name:?} (a list of strings)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(req: Request, body: Value) -> Result<Map<String, Value>, ApiError> {
        let mut map = body.as_object().cloned().unwrap_or_default();
        req.check(&mut map).map(|_| map)
    }

    fn param(r: Result<Map<String, Value>, ApiError>) -> Option<String> {
        r.err().and_then(|e| e.param)
    }

    #[test]
    fn accepts_litellm_bodies() {
        let body = json!({"models": ["gpt-4o"], "duration": "30d", "key_alias": "a", "rpm_limit": 10,
            "tpm_limit": 10.0, "model_rpm_limit": {"gpt-4o": 5}, "metadata": {"k": 1}, "max_budget": 10,
            "budget_duration": "1mo", "team_id": null, "rpm_limit_type": "dynamic", "tags": ["x"]});
        let out = run(Request::KeyGenerate, body);
        assert!(out.is_ok(), "{out:?}");
        assert_eq!(out.ok().and_then(|m| m.get("tpm_limit").cloned()), Some(json!(10)));
        assert!(run(
            Request::TeamNew,
            json!({"team_alias": "t", "members_with_roles": [{"role": "admin", "user_id": "u"}]})
        )
        .is_ok());
        assert!(run(
            Request::UserNew,
            json!({"user_email": "a@b.c", "user_role": "internal_user", "auto_create_key": false})
        )
        .is_ok());
        assert!(run(Request::KeyUpdate, json!({"key": "sk-1", "duration": "-1", "temp_budget_increase": 1, "temp_budget_expiry": "2026-01-01T00:00:00Z"})).is_ok());
        assert!(run(Request::KeyUpdate, json!({"budget_duration": "none"})).is_ok());
    }

    #[test]
    fn refuses_bad_input_naming_the_field() {
        assert_eq!(param(run(Request::KeyGenerate, json!({"nope": 1}))), Some("nope".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"rpm_limit": -1}))), Some("rpm_limit".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"rpm_limit": 1.5}))), Some("rpm_limit".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"rpm_limit": "10"}))), Some("rpm_limit".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"models": "gpt-4o"}))), Some("models".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"models": ["a", 1]}))), Some("models[1]".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"duration": "30x"}))), Some("duration".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"budget_duration": "2mo"}))), Some("budget_duration".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"max_budget": -0.5}))), Some("max_budget".into()));
        assert_eq!(
            param(run(Request::KeyGenerate, json!({"model_tpm_limit": {"m": -2}}))),
            Some("model_tpm_limit.m".into())
        );
        assert_eq!(param(run(Request::KeyGenerate, json!({"blocked": "yes"}))), Some("blocked".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"key_type": "root"}))), Some("key_type".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"new_key": "sk-x"}))), Some("new_key".into()));
        assert_eq!(
            param(run(Request::TeamNew, json!({"members_with_roles": [{"role": "owner", "user_id": "u"}]}))),
            Some("members_with_roles[0].role".into())
        );
        assert_eq!(
            param(run(Request::TeamNew, json!({"members_with_roles": [{"role": "user"}]}))),
            Some("members_with_roles[0]".into())
        );
        assert_eq!(param(run(Request::UserNew, json!({"user_role": "god"}))), Some("user_role".into()));
        assert_eq!(param(run(Request::KeyGenerate, json!({"budget_duration": "0d"}))), Some("budget_duration".into()));
        assert_eq!(
            param(run(Request::KeyGenerate, json!({"model_max_budget": {"m": {"max_budget": -1}}}))),
            Some("model_max_budget.m.max_budget".into())
        );
        assert_eq!(
            param(run(Request::KeyGenerate, json!({"model_max_budget": {"m": {"budget_duration": "3x"}}}))),
            Some("model_max_budget.m.budget_duration".into())
        );
        assert_eq!(
            param(run(Request::KeyGenerate, json!({"model_max_budget": {"m": {"colour": 1}}}))),
            Some("model_max_budget.m.colour".into())
        );
        assert_eq!(
            param(run(Request::KeyGenerate, json!({"model_max_budget": {"m": 5}}))),
            Some("model_max_budget.m".into())
        );
        let ok =
            run(Request::KeyGenerate, json!({"model_max_budget": {"m": {"budget_limit": "0.5", "time_period": "1d"}}}));
        assert_eq!(
            ok.ok().and_then(|m| m.get("model_max_budget").cloned()),
            Some(json!({"m": {"budget_limit": 0.5, "time_period": "1d"}}))
        );
        let e = run(Request::KeyGenerate, json!({"rpm_limit": -1})).err();
        assert_eq!(e.map(|e| e.status.as_u16()), Some(400));
    }
}
