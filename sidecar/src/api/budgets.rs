//! LiteLLM's `/budget/*` endpoints (`budget_management_endpoints.py`, 1.106.2): budget
//! rows that keys (`/key/generate|update`) and end users (`/customer/new|update`) link to
//! with `budget_id`. A row is a template of limits and a reset schedule; each linked
//! entity is held to it with its own spend (`crate::budget`). Master key only, like the
//! rest of the admin API; every change is one commit that also reports the linked keys
//! and end users as changed, so the filter re-reads them.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::admin::{apply_model_anchors, apply_schedule, merge, random_id, s, stamp, str_of, update_record};
use super::{ok, query_pairs, read_json, render, Shared};
use crate::error::ApiError;
use crate::fields::{self, required_list, required_str};
use crate::schema::{BUDGETS, END_USERS, KEYS};
use crate::store::{Filter, Op, StoreError};
use crate::time::now;

type Res = Result<Response, ApiError>;

/// The checks LiteLLM's `new_budget`/`update_budget` make besides the model's types
/// (negative and non-finite amounts, bad durations: `fields::BUDGET` already refuses
/// them, naming the field).
fn check_body(body: &mut Map<String, Value>) -> Result<(), ApiError> {
    fields::check(body, fields::BUDGET)
}

/// Every key and end user linked to `budget_id` is reported changed with it (end users
/// first: the ledger's lock order, docs/ledger.md).
fn touch_linked(budget_id: &str) -> Vec<Op> {
    vec![
        Op::Touch { table: &END_USERS, col: "budget_id", value: budget_id.to_owned() },
        Op::Touch { table: &KEYS, col: "budget_id", value: budget_id.to_owned() },
    ]
}

fn budget_missing(param: &str, id: &str) -> ApiError {
    ApiError::not_found(param, format!("budget not found: {id:?}"))
}

/// `POST /budget/new`: `BudgetNewRequest` → the row. `budget_id` defaults to a UUID; a
/// `budget_reset_at` pins the first reset ("Datetime when the initial budget is reset").
pub async fn budget_new(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    check_body(&mut body)?;
    let budget_id = match str_of(&body, "budget_id") {
        Some("") => return Err(ApiError::field("budget_id", "budget_id must not be empty")),
        Some(id) => id.to_owned(),
        None => random_id()?,
    };
    let at = now();
    let mut rec = body.clone();
    rec.insert("budget_id".into(), s(&budget_id));
    apply_schedule(&mut rec, None, &body, at);
    stamp(&mut rec, true, at);
    match st.store.commit(vec![Op::Insert { table: &BUDGETS, record: rec.clone() }]).await {
        Ok(_) => Ok(ok(render::budget(&rec))),
        Err(StoreError::Duplicate { .. }) => {
            Err(ApiError::field("budget_id", format!("Budget with id '{budget_id}' already exists.")))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /budget/update`: `budget_id` + the fields to change (LiteLLM's `exclude_unset`
/// merge) → the row. A changed `budget_duration` starts a new period now; a
/// `budget_reset_at` pins the next reset.
pub async fn budget_update(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    check_body(&mut body)?;
    let budget_id = match body.get("budget_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(ApiError::field("budget_id", "budget_id is required")),
    };
    body.remove("budget_id");
    let rec = update_record(&st, &BUDGETS, &budget_id, budget_missing("budget_id", &budget_id), |mut rec| {
        let at = now();
        let old = rec.clone();
        merge(&mut rec, &body);
        apply_schedule(&mut rec, Some(&old), &body, at);
        apply_model_anchors(&mut rec, &old, &body, at);
        stamp(&mut rec, false, at);
        Ok((rec, touch_linked(&budget_id)))
    })
    .await?;
    Ok(ok(render::budget(&rec)))
}

/// `POST /budget/info`: `{"budgets": [ids]}` → the rows found (LiteLLM's `find_many`).
pub async fn budget_info(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::BUDGET_INFO)?;
    let ids = required_list(&body, "budgets")?;
    if ids.is_empty() {
        return Err(ApiError::field("budgets", "Specify list of budget id's to query. Passed in=[]"));
    }
    let (rows, _) = st.store.find(&BUDGETS, vec![Filter::In("budget_id", ids)], None).await?;
    Ok(ok(Value::Array(rows.iter().map(render::budget).collect())))
}

/// `GET /budget/list`: every row.
pub async fn budget_list(State(st): State<Shared>) -> Res {
    let (rows, _) = st.store.find(&BUDGETS, vec![], None).await?;
    Ok(ok(Value::Array(rows.iter().map(render::budget).collect())))
}

/// `POST /budget/delete`: `{"id"}` → the deleted row. Keys and end users linked to it lose
/// the link (LiteLLM's relation: `budget_id` set to NULL) and are reported changed.
pub async fn budget_delete(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::BUDGET_DELETE)?;
    let id = required_str(&body, "id")?;
    let Some(rec) = st.store.get(&BUDGETS, &id).await? else {
        return Err(budget_missing("id", &id));
    };
    st.store
        .commit(vec![
            Op::ClearWhere { table: &END_USERS, col: "budget_id", value: id.clone() },
            Op::ClearWhere { table: &KEYS, col: "budget_id", value: id.clone() },
            Op::Delete { table: &BUDGETS, id: id.clone() },
        ])
        .await?;
    Ok(ok(render::budget(&rec)))
}

/// `BudgetNewRequest`'s fields `/budget/settings` lists, in the model's order, with their
/// `ConfigList` type and pydantic description (LiteLLM's `allowed_args`).
const SETTINGS: &[(&str, &str, &str)] = &[
    ("max_budget", "Float", "Requests will fail if this budget (in USD) is exceeded."),
    ("soft_budget", "Float", "Requests will NOT fail if this is exceeded. Will fire alerting though."),
    ("max_parallel_requests", "Integer", "Max concurrent requests allowed for this budget id."),
    ("tpm_limit", "Integer", "Max tokens per minute, allowed for this budget id."),
    ("rpm_limit", "Integer", "Max requests per minute, allowed for this budget id."),
    ("tpd_limit", "Integer", "Max tokens per day, charged by batch submissions, allowed for this budget id."),
    ("budget_duration", "String", "Max duration budget should be set for (e.g. '1hr', '1d', '28d')"),
    (
        "model_max_budget",
        "Object",
        "Max budget for each model (e.g. {'gpt-4o': {'max_budget': '0.0000001', 'budget_duration': '1d', 'tpm_limit': 1000, 'rpm_limit': 1000}})",
    ),
];

/// `GET /budget/settings?budget_id=`: LiteLLM's `ConfigList` of the configurable fields
/// and their values (`null` for an unknown budget, as LiteLLM answers).
pub async fn budget_settings(State(st): State<Shared>, RawQuery(q): RawQuery) -> Res {
    let pairs = query_pairs(q.as_deref());
    let Some((_, id)) = pairs.iter().find(|(k, _)| k == "budget_id") else {
        return Err(ApiError::field("budget_id", "pass ?budget_id="));
    };
    let row = st.store.get(&BUDGETS, id).await?;
    let out: Vec<Value> = SETTINGS
        .iter()
        .map(|(name, ty, description)| {
            json!({
                "field_name": name,
                "field_type": ty,
                "field_description": description,
                "field_value": row.as_ref().and_then(|r| r.get(*name)).cloned().unwrap_or(Value::Null),
                "stored_in_db": true,
                "field_default_value": null,
                "premium_field": false,
                "nested_fields": null,
                "field_options": null,
                "field_tab": null,
                "source": "unset",
                "editable": true,
            })
        })
        .collect();
    Ok(ok(Value::Array(out)))
}
