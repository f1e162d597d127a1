//! The internal API the Envoy filter reads on a cache miss and once a second: one compact
//! record per key with everything needed to admit a request (the key's own fields, its
//! team's, its user's, and every budget that applies, with what was spent in its current
//! period), end users (with their budgets), and the change feed. Contract:
//! `sidecar/README.md`, budgets `docs/budgets.md`.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::{ok, query_pairs, Shared};
use crate::budget::{self, member_budget_id, Budget, Fields};
use crate::error::ApiError;
use crate::keys::is_hash;
use crate::schema::{member_id, Table, BUDGETS, END_USERS, KEYS, TEAMS, TEAM_MEMBERS, USERS};
use crate::store::grants::GrantAsk;
use crate::store::{Record, SpentQuery};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// The fields of the key, team and user records the filter enforces.
const LIMITS: &[&str] = &["rpm_limit", "tpm_limit", "max_parallel_requests", "model_rpm_limit", "model_tpm_limit"];

fn pick(rec: &Record, fields: &[&str]) -> serde_json::Map<String, Value> {
    fields.iter().map(|f| ((*f).to_owned(), rec.get(*f).cloned().unwrap_or(Value::Null))).collect()
}

fn models(rec: &Record) -> Value {
    rec.get("models").filter(|v| v.is_array()).cloned().unwrap_or(json!([]))
}

fn version(rec: Option<&Record>) -> i64 {
    rec.and_then(|r| r.get("version")).and_then(Value::as_i64).unwrap_or(0)
}

pub async fn key(State(st): State<Shared>, Path(hash): Path<String>) -> Result<Response, ApiError> {
    if !is_hash(&hash) {
        return Err(ApiError::field("hash", "the path takes a key's SHA-256, 64 lowercase hex digits"));
    }
    let Some(k) = st.store.get(&KEYS, &hash).await? else {
        return Err(ApiError::not_found("hash", "no such key"));
    };
    let team = match k.get("team_id").and_then(Value::as_str) {
        Some(id) => st.store.get(&TEAMS, id).await?,
        None => None,
    };
    let user = match k.get("user_id").and_then(Value::as_str) {
        Some(id) => st.store.get(&USERS, id).await?,
        None => None,
    };
    let mut out = pick(&k, &["token", "key_alias", "key_name", "team_id", "user_id"]);
    // Unix seconds, never negative (an imported pre-1970 expiry is simply expired).
    let expires = k.get("expires_at").and_then(Value::as_i64).map(|t| t.max(0));
    out.insert("expires_at".into(), expires.map_or(Value::Null, Value::from));
    out.insert("models".into(), models(&k));
    out.insert("blocked".into(), json!(k.get("blocked").and_then(Value::as_bool).unwrap_or(false)));
    out.insert("aliases".into(), k.get("aliases").filter(|v| v.is_object()).cloned().unwrap_or(json!({})));
    out.extend(pick(&k, LIMITS));
    out.insert(
        "team".into(),
        team.as_ref().map_or(Value::Null, |t| {
            let mut m = pick(t, &["team_id", "team_alias"]);
            m.insert("models".into(), models(t));
            m.insert("blocked".into(), json!(t.get("blocked").and_then(Value::as_bool).unwrap_or(false)));
            m.extend(pick(t, LIMITS));
            Value::Object(m)
        }),
    );
    out.insert(
        "user".into(),
        user.as_ref().map_or(Value::Null, |u| {
            let mut m = pick(u, &["user_id"]);
            m.insert("models".into(), models(u));
            m.extend(pick(u, LIMITS));
            Value::Object(m)
        }),
    );
    let team_id = k.get("team_id").and_then(Value::as_str);
    let user_id = k.get("user_id").and_then(Value::as_str);
    let member = match (team_id, user_id, &team) {
        (Some(t), Some(u), Some(_)) => st.store.get(&TEAM_MEMBERS, &member_id(t, u)).await?,
        _ => None,
    };
    let linked = match k.get("budget_id").and_then(Value::as_str) {
        Some(b) => st.store.get(&BUDGETS, b).await?,
        None => None,
    };
    // LiteLLM's precedence: the key; its team (a team key is held to the team's budget,
    // not the user's); the membership; the user when the key has no team; the key's
    // per-model budgets. A linked `/budget/*` row supplies the key's unset fields.
    let key_fields = Fields::from_record(&k, "max_budget");
    let linked_fields = linked.as_ref().map(|r| Fields::from_record(r, "max_budget"));
    let mut list = vec![(budget::own("key", &hash, &key_fields, linked_fields.as_ref()), lifetime(&KEYS, &hash))];
    if let (Some(t), Some(id)) = (&team, team_id) {
        list.push((budget::own("team", id, &Fields::from_record(t, "max_budget"), None), lifetime(&TEAMS, id)));
    }
    if let (Some(m), Some(t), Some(u)) = (&member, team_id, user_id) {
        let b =
            budget::own("team_member", &member_budget_id(t, u), &Fields::from_record(m, "max_budget_in_team"), None);
        list.push((b, lifetime(&TEAM_MEMBERS, &member_id(t, u))));
    }
    if let (None, Some(u), Some(id)) = (team_id, &user, user_id) {
        list.push((budget::own("user", id, &Fields::from_record(u, "max_budget"), None), lifetime(&USERS, id)));
    }
    for b in budget::models(&hash, &key_fields, linked_fields.as_ref()) {
        list.push((b, lifetime(&KEYS, &hash)));
    }
    out.insert("budgets".into(), Value::Array(budgets_json(&st, list).await?));
    let v = version(Some(&k))
        .max(version(team.as_ref()))
        .max(version(user.as_ref()))
        .max(version(member.as_ref()))
        .max(version(linked.as_ref()));
    out.insert("version".into(), json!(v));
    Ok(ok(Value::Object(out)))
}

/// Where a budget that never resets reads its spend: the entity's lifetime `spend`.
fn lifetime(table: &'static Table, id: &str) -> SpentQuery {
    SpentQuery::Lifetime { table, id: id.to_owned() }
}

/// The budgets with a limit, as the filter reads them (docs/budgets.md): limits, the
/// current period (now, by the sidecar's clock) and what was spent in it.
async fn budgets_json(st: &Shared, list: Vec<(Budget, SpentQuery)>) -> Result<Vec<Value>, ApiError> {
    let now = crate::time::now();
    /// A budget, its current period (seconds) and where its spend is read.
    type Item = (Budget, Option<(i64, i64)>, SpentQuery);
    let list: Vec<Item> = list
        .into_iter()
        .filter(|(b, _)| b.budgeted())
        .map(|(b, whole)| {
            let period = b.schedule.map(|s| s.current(now));
            let q = match period {
                Some((start, _)) => {
                    SpentQuery::Period { kind: b.kind.to_owned(), id: b.id.clone(), start_ms: start * 1000 }
                }
                None => whole,
            };
            (b, period, q)
        })
        .collect();
    let spent = st.store.budget_spent(list.iter().map(|(_, _, q)| q.clone()).collect()).await?;
    Ok(list
        .into_iter()
        .zip(spent)
        .map(|((b, period, _), spent)| {
            json!({
                "kind": b.kind,
                "id": b.id,
                "max_budget_nano": b.max_nano,
                "soft_budget_nano": b.soft_nano,
                "spent_nano": spent,
                "period_start_ms": period.map(|p| p.0 * 1000),
                "period_end_ms": period.map(|p| p.1 * 1000),
                "model": b.model,
                "budget_id": b.budget_id,
            })
        })
        .collect())
}

/// The end user's limits: its own, or its linked `/budget/*` row's where its own are
/// unset (LiteLLM keeps an end user's limits in its budget row).
fn customer_limit(c: &Record, linked: Option<&Record>, f: &str) -> Value {
    c.get(f).filter(|v| !v.is_null()).or_else(|| linked.and_then(|r| r.get(f))).cloned().unwrap_or(Value::Null)
}

/// The end user's budget (its own fields, or its linked row's).
fn customer_budget(c: &Record, linked: Option<&Record>) -> Option<Budget> {
    let id = c.get("user_id").and_then(Value::as_str)?;
    let b = budget::own(
        "end_user",
        id,
        &Fields::from_record(c, "max_budget"),
        linked.map(|r| Fields::from_record(r, "max_budget")).as_ref(),
    );
    b.budgeted().then_some(b)
}

/// The end user's fields the filter enforces, `budgets` with what it spent.
async fn customer_record(st: &Shared, c: &Record, linked: Option<&Record>) -> Result<Value, ApiError> {
    let mut out = pick(c, &["user_id", "alias", "default_model", "allowed_model_region"]);
    out.insert("models".into(), models(c));
    out.insert("blocked".into(), json!(c.get("blocked").and_then(Value::as_bool).unwrap_or(false)));
    for f in ["rpm_limit", "tpm_limit", "max_parallel_requests"] {
        out.insert(f.into(), customer_limit(c, linked, f));
    }
    let list: Vec<(Budget, SpentQuery)> = customer_budget(c, linked)
        .map(|b| {
            let q = lifetime(&END_USERS, &b.id);
            (b, q)
        })
        .into_iter()
        .collect();
    out.insert("budgets".into(), Value::Array(budgets_json(st, list).await?));
    out.insert("version".into(), json!(version(Some(c)).max(version(linked))));
    Ok(Value::Object(out))
}

/// Whether an end user restricts anything the filter enforces (blocked, a model list, a
/// limit, a budget): only those are loaded into Envoy's shared data.
fn restricts(c: &Record, linked: Option<&Record>) -> bool {
    c.get("blocked").and_then(Value::as_bool).unwrap_or(false)
        || c.get("models").and_then(Value::as_array).is_some_and(|m| !m.is_empty())
        || ["rpm_limit", "tpm_limit", "max_parallel_requests"].iter().any(|f| !customer_limit(c, linked, f).is_null())
        || customer_budget(c, linked).is_some()
}

/// The `/budget/*` row an end user links to.
fn linked_of<'a>(c: &Record, budgets: &'a BTreeMap<String, Record>) -> Option<&'a Record> {
    c.get("budget_id").and_then(Value::as_str).and_then(|b| budgets.get(b))
}

/// Every `/budget/*` row by id.
async fn all_budgets(st: &Shared) -> Result<BTreeMap<String, Record>, ApiError> {
    let (rows, _) = st.store.find(&BUDGETS, Vec::new(), None).await?;
    Ok(rows.into_iter().filter_map(|r| Some((r.get("budget_id")?.as_str()?.to_owned(), r))).collect())
}

pub async fn customer(State(st): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Some(c) = st.store.get(&END_USERS, &id).await? else {
        return Err(ApiError::not_found("id", "no such end user"));
    };
    let linked = match c.get("budget_id").and_then(Value::as_str) {
        Some(b) => st.store.get(&BUDGETS, b).await?,
        None => None,
    };
    Ok(ok(customer_record(&st, &c, linked.as_ref()).await?))
}

/// Most end users per page, and per batch of ids.
const MAX_CUSTOMERS: usize = 1000;

/// `GET /internal/v1/customers?id=a&id=b`: those end users (`missing`: the ids that are
/// not end users); or, without `id`, `?after=<id>&limit=<n>`: the end users that restrict
/// anything, ordered by id, after `after` (`next`: where the next page starts, `null` at
/// the end).
pub async fn customers(State(st): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref());
    let ids: Vec<String> = pairs.iter().filter(|(k, _)| k == "id").map(|(_, v)| v.clone()).collect();
    if !ids.is_empty() {
        if ids.len() > MAX_CUSTOMERS {
            return Err(ApiError::field("id", format!("at most {MAX_CUSTOMERS} ids per call")));
        }
        let (found, _) =
            st.store.find(&END_USERS, vec![crate::store::Filter::In("user_id", ids.clone())], None).await?;
        let known: std::collections::HashSet<&str> =
            found.iter().filter_map(|c| c.get("user_id").and_then(Value::as_str)).collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !known.contains(id.as_str())).collect();
        let budgets = all_budgets(&st).await?;
        let mut customers: Vec<Value> = Vec::with_capacity(found.len());
        for c in &found {
            customers.push(customer_record(&st, c, linked_of(c, &budgets)).await?);
        }
        return Ok(ok(json!({"customers": customers, "missing": missing})));
    }
    let after = pairs.iter().find(|(k, _)| k == "after").map(|(_, v)| v.as_str());
    let limit =
        match pairs.iter().find(|(k, _)| k == "limit") {
            None => MAX_CUSTOMERS,
            Some((_, v)) => v.parse::<usize>().ok().filter(|n| (1..=MAX_CUSTOMERS).contains(n)).ok_or_else(|| {
                ApiError::field("limit", format!("limit must be an integer from 1 to {MAX_CUSTOMERS}"))
            })?,
        };
    // Every end user is read and filtered here (no index on "restricts"): a page costs a
    // scan of the table, done once per Envoy process at start.
    let (all, _) = st.store.find(&END_USERS, Vec::new(), None).await?;
    let budgets = all_budgets(&st).await?;
    let mut page: Vec<&Record> = all
        .iter()
        .filter(|c| restricts(c, linked_of(c, &budgets)))
        .filter(|c| c.get("user_id").and_then(Value::as_str).is_some_and(|id| after.is_none_or(|a| id > a)))
        .collect();
    page.sort_by(|a, b| a.get("user_id").and_then(Value::as_str).cmp(&b.get("user_id").and_then(Value::as_str)));
    let more = page.len() > limit;
    page.truncate(limit);
    let next = if more { page.last().and_then(|c| c.get("user_id")).cloned() } else { None };
    let mut customers: Vec<Value> = Vec::with_capacity(page.len());
    for c in page {
        customers.push(customer_record(&st, c, linked_of(c, &budgets)).await?);
    }
    Ok(ok(json!({"customers": customers, "next": next})))
}

pub async fn changes(State(st): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref());
    let num = |name: &str, default: i64, min: i64, max: i64| -> Result<i64, ApiError> {
        match pairs.iter().find(|(k, _)| k == name) {
            None => Ok(default),
            Some((_, v)) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| ApiError::field(name, format!("{name} must be an integer from {min} to {max}"))),
        }
    };
    let since = match pairs.iter().any(|(k, _)| k == "since_time") {
        // A follower starting afresh: from the changes made since it started.
        true if pairs.iter().any(|(k, _)| k == "since") => {
            return Err(ApiError::field("since_time", "give since or since_time, not both"));
        }
        true => st.store.seq_before(num("since_time", 0, 0, i64::MAX)?).await?,
        false => num("since", 0, 0, i64::MAX)?,
    };
    let limit = num("limit", 1000, 1, 10_000)?;
    let page = st.store.changes(since, limit).await?;
    // A `since` ahead of the store means the database was replaced: the caller must drop
    // everything it cached and start again from `seq`.
    let reset = since > page.latest;
    let upto = page.changes.last().map_or(page.latest, |c| c.seq);
    let more = upto < page.latest && !page.changes.is_empty();
    let seq = if more { upto } else { page.latest };
    Ok(ok(json!({"seq": seq, "latest": page.latest, "more": more, "reset": reset, "changes": page.changes})))
}

/// Entities a grant may be asked for.
const GRANT_KINDS: &[&str] = &["api_key", "team", "user", "end_user", "model_per_key"];
/// Most asks in one call (a request has at most five limited entities).
const MAX_ASKS: usize = 16;
/// How far (in minutes) an asked window may be from the sidecar's clock.
const MAX_SKEW_WINDOWS: i64 = 5;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    window: i64,
    asks: Vec<GrantAsk>,
}

/// `POST /internal/v1/grants`: hands out parts of rate limits for one minute to an Envoy
/// process ([`crate::store::grants`]); answers `{"window", "grants": [...]}` in ask order.
pub async fn grants(State(st): State<Shared>, body: axum::body::Body) -> Result<Response, ApiError> {
    let body = super::read_json(body).await?;
    let req: GrantRequest = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::bad_request(format!("the grant request is malformed: {e}")))?;
    let minute = crate::time::now() / 60;
    if (req.window - minute).abs() > MAX_SKEW_WINDOWS {
        return Err(ApiError::field(
            "window",
            format!(
                "window {} is more than {MAX_SKEW_WINDOWS} minutes from the sidecar's clock ({minute}): clock skew?",
                req.window
            ),
        ));
    }
    if req.asks.len() > MAX_ASKS {
        return Err(ApiError::field("asks", format!("at most {MAX_ASKS} asks per call")));
    }
    for ask in &req.asks {
        if !GRANT_KINDS.contains(&ask.kind.as_str()) {
            return Err(ApiError::field("kind", format!("kind must be one of {GRANT_KINDS:?}")));
        }
        if ask.id.is_empty() || ask.id.len() > 512 {
            return Err(ApiError::field("id", "id must be 1 to 512 bytes"));
        }
        let counts = [
            ask.rpm.unwrap_or(0),
            ask.tpm.unwrap_or(0),
            ask.need_requests,
            ask.want_requests,
            ask.need_tokens,
            ask.want_tokens,
        ];
        if counts.iter().any(|n| *n < 0) {
            return Err(ApiError::field("asks", "limits and amounts must not be negative"));
        }
    }
    if st.swept_window.swap(minute, Ordering::Relaxed) != minute {
        if let Err(e) = st.store.sweep_windows(minute - MAX_SKEW_WINDOWS).await {
            tracing::warn!(error = %e, "could not sweep old rate windows");
        }
    }
    let grants = st.store.grant(req.window, req.asks).await?;
    Ok(ok(json!({"window": req.window, "grants": grants})))
}
