//! The internal API the Envoy filter reads on a cache miss and once a second: one compact
//! record per key with everything needed to admit a request (the key's own fields, its
//! team's, its user's), end users, and the change feed. Contract: `sidecar/README.md`.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::{ok, query_pairs, Shared};
use crate::error::ApiError;
use crate::keys::is_hash;
use crate::schema::{END_USERS, KEYS, TEAMS, USERS};
use crate::store::grants::GrantAsk;
use crate::store::Record;
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
    let v = version(Some(&k)).max(version(team.as_ref())).max(version(user.as_ref()));
    out.insert("version".into(), json!(v));
    Ok(ok(Value::Object(out)))
}

/// The end user's fields the filter enforces.
fn customer_record(c: &Record) -> Value {
    let mut out = pick(c, &["user_id", "alias", "default_model", "allowed_model_region"]);
    out.insert("models".into(), models(c));
    out.insert("blocked".into(), json!(c.get("blocked").and_then(Value::as_bool).unwrap_or(false)));
    out.extend(pick(c, &["rpm_limit", "tpm_limit", "max_parallel_requests"]));
    out.insert("version".into(), json!(version(Some(c))));
    Value::Object(out)
}

/// Whether an end user restricts anything the filter enforces (blocked, a model list, a
/// limit): only those are loaded into Envoy's shared data.
fn restricts(c: &Record) -> bool {
    c.get("blocked").and_then(Value::as_bool).unwrap_or(false)
        || c.get("models").and_then(Value::as_array).is_some_and(|m| !m.is_empty())
        || ["rpm_limit", "tpm_limit", "max_parallel_requests"].iter().any(|f| c.get(*f).is_some_and(|v| !v.is_null()))
}

pub async fn customer(State(st): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Some(c) = st.store.get(&END_USERS, &id).await? else {
        return Err(ApiError::not_found("id", "no such end user"));
    };
    Ok(ok(customer_record(&c)))
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
        let customers: Vec<Value> = found.iter().map(customer_record).collect();
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
    let mut page: Vec<&Record> = all
        .iter()
        .filter(|c| restricts(c))
        .filter(|c| c.get("user_id").and_then(Value::as_str).is_some_and(|id| after.is_none_or(|a| id > a)))
        .collect();
    page.sort_by(|a, b| a.get("user_id").and_then(Value::as_str).cmp(&b.get("user_id").and_then(Value::as_str)));
    let more = page.len() > limit;
    page.truncate(limit);
    let next = if more { page.last().and_then(|c| c.get("user_id")).cloned() } else { None };
    let customers: Vec<Value> = page.into_iter().map(customer_record).collect();
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
