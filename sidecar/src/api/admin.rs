//! The LiteLLM-compatible admin API: keys, teams, users, end users ("customers").
//!
//! Every handler: parse the body (a JSON object) or the query, check each field against
//! LiteLLM's request model ([`crate::fields`]), read what it needs, and write in one
//! [`Store::commit`]. Updates are LiteLLM's `exclude_unset` merge: fields present in the
//! body (an explicit `null` included) replace the stored ones, others stay.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{ok, query_pairs, read_json, render, Shared};
use crate::budget::normalized_duration;
use crate::duration;
use crate::error::ApiError;
use crate::fields::{self, required_list, required_str, Request};
use crate::keys;
use crate::period::Schedule;
use crate::schema::{member_id, BUDGETS, END_USERS, KEYS, TEAMS, TEAM_MEMBERS, USERS};
use crate::store::{spend_change, Filter, Op, Page, Record, StoreError};
use crate::time::now;

type Res = Result<Response, ApiError>;

/// Who LiteLLM records as the author of master-key changes.
const ADMIN_ID: &str = "default_user_id";

pub(super) fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

pub(super) fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn version_of(r: &Record) -> i64 {
    r.get("version").and_then(Value::as_i64).unwrap_or(0)
}

/// Fields present in `patch` replace those of `rec`.
pub(super) fn merge(rec: &mut Record, patch: &Map<String, Value>) {
    for (k, v) in patch {
        rec.insert(k.clone(), v.clone());
    }
}

pub(super) fn random_id() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| ApiError::internal("the OS random source failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

/// `duration` → `expires_at` (unix seconds), `None` for never (`null`, `"-1"`).
fn expires_at(d: Option<&Value>, at: i64) -> Result<Option<i64>, ApiError> {
    match d.and_then(Value::as_str) {
        None | Some("-1") => Ok(None),
        Some(text) => {
            let d = duration::parse(text).map_err(|m| ApiError::field("duration", m))?;
            Ok(Some(at + d.seconds_from(at)))
        }
    }
}

/// A reset time given by the caller (`budget_reset_at`: ISO 8601 or unix seconds).
fn pinned_reset(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(t) => crate::time::parse_timestamp(t),
        other => other.as_i64(),
    }
}

/// Sets a row's budget schedule when its `budget_duration` takes effect: on a new row, and
/// when an update changes the duration (or pins a reset time with `budget_reset_at`) —
/// then the period starts now (`budget_anchor`, one second after the previous anchor at
/// the earliest) and its first reset is the pinned time or LiteLLM's next one
/// (`budget_reset_at`). Spend before that moment is in no period of the
/// new duration: setting or changing a duration re-baselines (LiteLLM #22013 does not).
/// Sending the same duration again changes nothing. `old`: the row before an update.
pub(super) fn apply_schedule(rec: &mut Record, old: Option<&Record>, body: &Map<String, Value>, at: i64) {
    let pinned = pinned_reset(body.get("budget_reset_at"));
    let new = normalized_duration(rec.get("budget_duration"));
    let changed = match old {
        None => true,
        Some(o) => {
            pinned.is_some()
                || (body.contains_key("budget_duration") && new != normalized_duration(o.get("budget_duration")))
        }
    };
    if !changed {
        // Neither changed: keep the schedule (an explicit `budget_reset_at: null` included).
        for f in ["budget_anchor", "budget_reset_at"] {
            rec.insert(f.into(), old.and_then(|o| o.get(f)).cloned().unwrap_or(Value::Null));
        }
        return;
    }
    // Each change starts a period of its own: two changes within one second (or a
    // sidecar's clock behind another's) still get distinct period starts.
    let anchor = old.and_then(|o| o.get("budget_anchor")).and_then(Value::as_i64).map_or(at, |a| at.max(a + 1));
    rec.insert("budget_anchor".into(), json!(anchor));
    let reset = new.and_then(|d| Schedule::new(d, anchor, pinned)).map(|sched| sched.current(anchor).1).or(pinned);
    rec.insert("budget_reset_at".into(), reset.map_or(Value::Null, Value::from));
}

/// The duration of one `model_max_budget` entry (LiteLLM's `budget_duration` or its alias
/// `time_period`).
fn model_duration(cfg: Option<&Value>) -> Option<crate::duration::Duration> {
    let cfg = cfg?;
    normalized_duration(cfg.get("budget_duration").or_else(|| cfg.get("time_period")))
}

/// Keeps `model_budget_anchors` in step with `model_max_budget` on an update: a model
/// budget whose duration is new or changed starts its period now; the others keep theirs
/// (a model budget's first period otherwise starts when the row was created).
pub(super) fn apply_model_anchors(rec: &mut Record, old: &Record, body: &Map<String, Value>, at: i64) {
    if !body.contains_key("model_max_budget") {
        return;
    }
    let old_map = old.get("model_max_budget").and_then(Value::as_object);
    let old_anchors = old.get("model_budget_anchors").and_then(Value::as_object);
    let mut anchors = Map::new();
    if let Some(new_map) = rec.get("model_max_budget").and_then(Value::as_object) {
        for (model, cfg) in new_map {
            let before = old_map.and_then(|m| m.get(model));
            let same = before.is_some() && model_duration(before) == model_duration(Some(cfg));
            match (same, old_anchors.and_then(|a| a.get(model))) {
                (true, Some(a)) => {
                    anchors.insert(model.clone(), a.clone());
                }
                (true, None) => {}
                (false, prev) => {
                    let a = prev.and_then(Value::as_i64).map_or(at, |p| at.max(p + 1));
                    anchors.insert(model.clone(), json!(a));
                }
            }
        }
    }
    rec.insert("model_budget_anchors".into(), if anchors.is_empty() { Value::Null } else { Value::Object(anchors) });
}

/// A `budget_id` in the body must name a `/budget/*` row (LiteLLM's foreign key).
pub(super) async fn require_budget(st: &Shared, body: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(id) = str_of(body, "budget_id") else { return Ok(()) };
    match st.store.get(&BUDGETS, id).await? {
        Some(_) => Ok(()),
        None => {
            Err(ApiError::field("budget_id", format!("unknown budget_id {id:?}: create it with /budget/new first")))
        }
    }
}

/// Stamps a record written now: times, author, recomputed derived fields.
pub(super) fn stamp(rec: &mut Record, created: bool, at: i64) {
    if created {
        rec.insert("created_at".into(), json!(at));
        rec.insert("created_by".into(), s(ADMIN_ID));
    }
    rec.insert("updated_at".into(), json!(at));
    rec.insert("updated_by".into(), s(ADMIN_ID));
}

/// Reads `id`, lets `f` compute the new row (and further ops), writes it if the row did
/// not change meanwhile; on a concurrent change, reads again (up to 8 times).
pub(super) async fn update_record<F>(
    st: &Shared,
    table: &'static crate::schema::Table,
    id: &str,
    missing: ApiError,
    mut f: F,
) -> Result<Record, ApiError>
where
    F: FnMut(Record) -> Result<(Record, Vec<Op>), ApiError>,
{
    for _ in 0..8 {
        let Some(rec) = st.store.get(table, id).await? else {
            return Err(missing);
        };
        let version = version_of(&rec);
        let old = rec.clone();
        let (mut new, more) = f(rec)?;
        let mut ops = vec![Op::Update { table, id: id.to_owned(), version, record: new.clone() }];
        // `spend` is the ledger's: a change of it is relative to what was read, so spend
        // recorded meanwhile is kept.
        ops.extend(spend_change(table, id, &old, &new));
        ops.extend(more);
        match st.store.commit(ops).await {
            Ok(seq) => {
                new.insert("version".into(), json!(seq));
                return Ok(new);
            }
            Err(StoreError::Stale) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Stale.into())
}

async fn require_team(st: &Shared, team_id: Option<&str>, param: &str) -> Result<Option<Record>, ApiError> {
    let Some(id) = team_id else { return Ok(None) };
    match st.store.get(&TEAMS, id).await? {
        Some(t) => Ok(Some(t)),
        None => Err(ApiError::field(param, format!("unknown team_id {id:?}: create it with /team/new first"))),
    }
}

// ---------------------------------------------------------------- keys

/// Fields of a key request that are never stored on the key row.
const KEY_TRANSIENT: &[&str] = &["key", "send_invite_email", "new_key", "new_master_key", "grace_period"];

/// A new key row from a checked `/key/generate` body; returns the plaintext too.
fn new_key_record(mut body: Map<String, Value>, at: i64) -> Result<(String, Record), ApiError> {
    let plaintext = match str_of(&body, "key") {
        Some(k) if k.starts_with("sk-") && k.len() > 3 => k.to_owned(),
        Some(_) => return Err(ApiError::field("key", "a custom key must start with \"sk-\"")),
        None => keys::generate().map_err(|_| ApiError::internal("the OS random source failed"))?,
    };
    let expires = expires_at(body.get("duration"), at)?;
    for f in KEY_TRANSIENT {
        body.remove(*f);
    }
    let mut rec = body;
    rec.insert("token".into(), s(&keys::hash_token(&plaintext)));
    rec.insert("key_name".into(), s(&keys::key_name(&plaintext)));
    rec.insert("expires_at".into(), expires.map_or(Value::Null, Value::from));
    if rec.get("spend").is_none_or(Value::is_null) {
        rec.insert("spend".into(), json!(0.0));
    }
    apply_schedule(&mut rec, None, &Map::new(), at);
    stamp(&mut rec, true, at);
    Ok((plaintext, rec))
}

pub async fn key_generate(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    Request::KeyGenerate.check(&mut body)?;
    require_team(&st, str_of(&body, "team_id"), "team_id").await?;
    require_budget(&st, &body).await?;
    let (plaintext, mut rec) = new_key_record(body, now())?;
    let seq = st.store.commit(vec![Op::Insert { table: &KEYS, record: rec.clone() }]).await?;
    rec.insert("version".into(), json!(seq));
    Ok(ok(Value::Object(render::generated_key(&rec, &plaintext))))
}

fn key_missing(param: &str) -> ApiError {
    ApiError::not_found(param, "key not found")
}

pub async fn key_update(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    Request::KeyUpdate.check(&mut body)?;
    let key = required_str(&body, "key")?;
    if body.contains_key("temp_budget_increase") != body.contains_key("temp_budget_expiry") {
        return Err(ApiError::field(
            "temp_budget_expiry",
            "temp_budget_increase and temp_budget_expiry must be set together",
        ));
    }
    require_team(&st, str_of(&body, "team_id"), "team_id").await?;
    require_budget(&st, &body).await?;
    for f in KEY_TRANSIENT {
        body.remove(*f);
    }
    let hash = keys::to_hash(&key);
    let rec = update_record(&st, &KEYS, &hash, key_missing("key"), |mut rec| {
        let at = now();
        let old = rec.clone();
        merge(&mut rec, &body);
        if body.contains_key("duration") {
            rec.insert("expires_at".into(), expires_at(body.get("duration"), at)?.map_or(Value::Null, Value::from));
        }
        apply_schedule(&mut rec, Some(&old), &body, at);
        apply_model_anchors(&mut rec, &old, &body, at);
        stamp(&mut rec, false, at);
        Ok((rec, vec![]))
    })
    .await?;
    let mut out = render::key(&rec);
    out.insert("key".into(), s(&key));
    Ok(ok(Value::Object(out)))
}

async fn set_key_blocked(st: Shared, body: Body, blocked: bool) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::KEY_BLOCK)?;
    let key = required_str(&body, "key")?;
    let rec = update_record(&st, &KEYS, &keys::to_hash(&key), key_missing("key"), |mut rec| {
        rec.insert("blocked".into(), json!(blocked));
        stamp(&mut rec, false, now());
        Ok((rec, vec![]))
    })
    .await?;
    Ok(ok(Value::Object(render::key(&rec))))
}

pub async fn key_block(State(st): State<Shared>, body: Body) -> Res {
    set_key_blocked(st, body, true).await
}

pub async fn key_unblock(State(st): State<Shared>, body: Body) -> Res {
    set_key_blocked(st, body, false).await
}

pub async fn key_delete(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::KEY_DELETE)?;
    let named: Vec<String> = body
        .get("keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let aliases: Vec<String> = body
        .get("key_aliases")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if named.is_empty() && aliases.is_empty() {
        return Err(ApiError::field("keys", "pass keys (keys or their hashes) or key_aliases to delete"));
    }
    let mut hashes = Vec::new();
    for k in &named {
        let h = keys::to_hash(k);
        if st.store.get(&KEYS, &h).await?.is_none() {
            return Err(ApiError::not_found(
                "keys",
                format!("key not found: {}", if k.starts_with("sk-") { keys::key_name(k) } else { k.clone() }),
            ));
        }
        hashes.push(h);
    }
    for a in &aliases {
        let (found, _) = st.store.find(&KEYS, vec![Filter::Eq("key_alias", s(a))], None).await?;
        if found.is_empty() {
            return Err(ApiError::not_found("key_aliases", format!("no key has the alias {a:?}")));
        }
        hashes.extend(found.iter().filter_map(|r| str_of(r, "token").map(str::to_owned)));
    }
    let ops = hashes.into_iter().map(|id| Op::Delete { table: &KEYS, id }).collect();
    st.store.commit(ops).await?;
    let deleted: Vec<String> = named.into_iter().chain(aliases).collect();
    Ok(ok(json!({"deleted_keys": deleted})))
}

pub async fn key_info(State(st): State<Shared>, RawQuery(q): RawQuery) -> Res {
    let pairs = query_pairs(q.as_deref());
    let Some((_, key)) = pairs.iter().find(|(k, _)| k == "key") else {
        return Err(ApiError::field("key", "pass ?key=<key or its hash> (the master key has no key info of its own)"));
    };
    let Some(rec) = st.store.get(&KEYS, &keys::to_hash(key)).await? else {
        return Err(key_missing("key"));
    };
    let mut info = render::key(&rec);
    info.remove("token");
    Ok(ok(json!({"key": key, "info": info})))
}

fn int_param(pairs: &[(String, String)], name: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    match pairs.iter().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) => match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::field(name, format!("{name} must be an integer from {min} to {max}"))),
        },
    }
}

fn bool_param(pairs: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" || v.is_empty() => Ok(false),
        Some(_) => Err(ApiError::field(name, format!("{name} must be true or false"))),
    }
}

fn eq_filters(pairs: &[(String, String)], map: &[(&str, &'static str)]) -> Vec<Filter> {
    let mut out = Vec::new();
    for (param, col) in map {
        if let Some((_, v)) = pairs.iter().find(|(k, _)| k == param) {
            out.push(Filter::Eq(col, s(v)));
        }
    }
    out
}

pub async fn key_list(State(st): State<Shared>, RawQuery(q): RawQuery) -> Res {
    let pairs = query_pairs(q.as_deref());
    let page = int_param(&pairs, "page", 1, 1, 1_000_000)?;
    let size = int_param(&pairs, "size", 10, 1, 100)?;
    let full = bool_param(&pairs, "return_full_object")?;
    let mut filters = eq_filters(
        &pairs,
        &[
            ("user_id", "user_id"),
            ("team_id", "team_id"),
            ("organization_id", "organization_id"),
            ("key_alias", "key_alias"),
        ],
    );
    if let Some((_, h)) = pairs.iter().find(|(k, _)| k == "key_hash") {
        filters.push(Filter::Eq("token", s(&keys::to_hash(h))));
    }
    let (rows, total) = st.store.find(&KEYS, filters, Some(Page { limit: size, offset: (page - 1) * size })).await?;
    let keys: Vec<Value> = rows
        .iter()
        .map(|r| if full { Value::Object(render::key(r)) } else { r.get("token").cloned().unwrap_or(Value::Null) })
        .collect();
    Ok(ok(json!({"keys": keys, "total_count": total, "current_page": page, "total_pages": (total + size - 1) / size})))
}

async fn regenerate(st: Shared, key: Option<String>, mut body: Map<String, Value>) -> Res {
    Request::KeyRegenerate.check(&mut body)?;
    let key = match key.or_else(|| str_of(&body, "key").map(str::to_owned)) {
        Some(k) => k,
        None => return Err(ApiError::field("key", "missing required field \"key\"")),
    };
    if body.get("new_master_key").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::field(
            "new_master_key",
            "rotating the master key is done by changing SWITCHYARD_MASTER_KEY and restarting the sidecar",
        ));
    }
    let new_key = match str_of(&body, "new_key") {
        Some(k) if k.starts_with("sk-") && k.len() > 3 => k.to_owned(),
        Some(_) => return Err(ApiError::field("new_key", "new_key must start with \"sk-\"")),
        None => keys::generate().map_err(|_| ApiError::internal("the OS random source failed"))?,
    };
    let grace = match str_of(&body, "grace_period") {
        Some(g) => Some(duration::parse(g).map_err(|m| ApiError::field("grace_period", m))?),
        None => None,
    };
    require_team(&st, str_of(&body, "team_id"), "team_id").await?;
    require_budget(&st, &body).await?;
    let old_hash = keys::to_hash(&key);
    let new_hash = keys::hash_token(&new_key);
    for f in KEY_TRANSIENT {
        body.remove(*f);
    }
    for _ in 0..8 {
        let Some(old) = st.store.get(&KEYS, &old_hash).await? else {
            return Err(key_missing("key"));
        };
        let at = now();
        let mut rec = old.clone();
        merge(&mut rec, &body);
        if body.contains_key("duration") {
            rec.insert("expires_at".into(), expires_at(body.get("duration"), at)?.map_or(Value::Null, Value::from));
        }
        apply_schedule(&mut rec, Some(&old), &body, at);
        apply_model_anchors(&mut rec, &old, &body, at);
        rec.insert("token".into(), s(&new_hash));
        rec.insert("key_name".into(), s(&keys::key_name(&new_key)));
        let count = rec.get("rotation_count").and_then(Value::as_i64).unwrap_or(0) + 1;
        rec.insert("rotation_count".into(), json!(count));
        rec.insert("last_rotation_at".into(), s(&crate::time::iso8601(at)));
        stamp(&mut rec, false, at);
        // The old row gives up its alias (unique) first, which also locks it: the new row
        // then takes over its spend as it is at commit, so spend recorded meanwhile moves
        // along. Without a grace period the old row goes; with one, the old key keeps
        // working until it ends.
        let mut old_rec = old.clone();
        old_rec.insert("key_alias".into(), Value::Null);
        old_rec.insert("rotated_to".into(), s(&new_hash));
        if let Some(g) = grace {
            let until = at + g.seconds_from(at);
            let exp = old_rec.get("expires_at").and_then(Value::as_i64).map_or(until, |e| e.min(until));
            old_rec.insert("expires_at".into(), json!(exp));
        }
        stamp(&mut old_rec, false, at);
        let mut ops = vec![
            Op::Update { table: &KEYS, id: old_hash.clone(), version: version_of(&old), record: old_rec },
            Op::Insert { table: &KEYS, record: rec.clone() },
            Op::CopySpend { table: &KEYS, from: old_hash.clone(), to: new_hash.clone() },
            Op::CopyBudgetSpend { from: old_hash.clone(), to: new_hash.clone() },
        ];
        if grace.is_none() {
            ops.push(Op::Delete { table: &KEYS, id: old_hash.clone() });
        }
        match st.store.commit(ops).await {
            Ok(seq) => {
                rec.insert("version".into(), json!(seq));
                return Ok(ok(Value::Object(render::generated_key(&rec, &new_key))));
            }
            Err(StoreError::Stale) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Stale.into())
}

pub async fn key_regenerate(State(st): State<Shared>, body: Body) -> Res {
    let body = read_json(body).await?;
    regenerate(st, None, body).await
}

pub async fn key_regenerate_path(State(st): State<Shared>, Path(key): Path<String>, body: Body) -> Res {
    let body = read_json(body).await?;
    regenerate(st, Some(key), body).await
}

// ---------------------------------------------------------------- teams

async fn team_members(st: &Shared, team_id: &str) -> Result<Vec<Record>, ApiError> {
    Ok(st.store.find(&TEAM_MEMBERS, vec![Filter::Eq("team_id", s(team_id))], None).await?.0)
}

async fn team_keys(st: &Shared, team_id: &str) -> Result<Vec<Value>, ApiError> {
    let (rows, _) = st.store.find(&KEYS, vec![Filter::Eq("team_id", s(team_id))], None).await?;
    Ok(rows.iter().map(|r| Value::Object(render::key(r))).collect())
}

/// A team member named by `user_id` or `user_email` → (user row to insert if new, user id).
async fn resolve_member(
    st: &Shared,
    m: &Map<String, Value>,
    at: i64,
) -> Result<(Option<Record>, String, Option<String>), ApiError> {
    let email = str_of(m, "user_email").map(str::to_owned);
    if let Some(id) = str_of(m, "user_id") {
        let existing = st.store.get(&USERS, id).await?;
        let email = email.or_else(|| existing.as_ref().and_then(|u| str_of(u, "user_email").map(str::to_owned)));
        return Ok((
            if existing.is_some() { None } else { Some(new_user_row(id, email.as_deref(), at)) },
            id.to_owned(),
            email,
        ));
    }
    let email = email.unwrap_or_default();
    let (found, _) =
        st.store.find(&USERS, vec![Filter::Eq("user_email", s(&email))], Some(Page { limit: 1, offset: 0 })).await?;
    if let Some(u) = found.first() {
        return Ok((None, str_of(u, "user_id").unwrap_or_default().to_owned(), Some(email)));
    }
    let id = random_id()?;
    Ok((Some(new_user_row(&id, Some(&email), at)), id, Some(email)))
}

fn new_user_row(id: &str, email: Option<&str>, at: i64) -> Record {
    let mut u = Map::new();
    u.insert("user_id".into(), s(id));
    u.insert("user_email".into(), email.map_or(Value::Null, s));
    u.insert("user_role".into(), s("internal_user"));
    u.insert("spend".into(), json!(0.0));
    stamp(&mut u, true, at);
    u
}

fn member_row(
    team_id: &str,
    user_id: &str,
    email: Option<&str>,
    role: &str,
    extra: &Map<String, Value>,
    at: i64,
) -> Record {
    let mut m = Map::new();
    m.insert("member_id".into(), s(&member_id(team_id, user_id)));
    m.insert("team_id".into(), s(team_id));
    m.insert("user_id".into(), s(user_id));
    m.insert("user_email".into(), email.map_or(Value::Null, s));
    m.insert("role".into(), s(role));
    for f in ["max_budget_in_team", "budget_duration", "allowed_models"] {
        if let Some(v) = extra.get(f) {
            m.insert(f.into(), v.clone());
        }
    }
    apply_schedule(&mut m, None, &Map::new(), at);
    m.insert("spend".into(), json!(0.0));
    m.insert("created_at".into(), json!(at));
    m.insert("updated_at".into(), json!(at));
    m
}

fn member_list(v: Option<&Value>) -> Vec<Map<String, Value>> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|m| m.as_object().cloned()).collect(),
        Some(Value::Object(o)) => vec![o.clone()],
        _ => vec![],
    }
}

pub async fn team_new(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    Request::TeamNew.check(&mut body)?;
    let at = now();
    let team_id = match str_of(&body, "team_id") {
        Some("") => return Err(ApiError::field("team_id", "team_id must not be empty")),
        Some(id) => id.to_owned(),
        None => random_id()?,
    };
    let members = member_list(body.remove("members_with_roles").as_ref());
    let mut rec = body;
    rec.insert("team_id".into(), s(&team_id));
    for (f, d) in [("models", json!([])), ("blocked", json!(false)), ("spend", json!(0.0)), ("metadata", json!({}))] {
        if rec.get(f).is_none_or(Value::is_null) {
            rec.insert(f.into(), d);
        }
    }
    apply_schedule(&mut rec, None, &Map::new(), at);
    stamp(&mut rec, true, at);
    let mut ops = vec![Op::Insert { table: &TEAMS, record: rec.clone() }];
    let mut rows = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for m in &members {
        let (new_user, user_id, email) = resolve_member(&st, m, at).await?;
        if !seen.insert(user_id.clone()) {
            continue;
        }
        if let Some(u) = new_user {
            ops.push(Op::Insert { table: &USERS, record: u });
        }
        let row =
            member_row(&team_id, &user_id, email.as_deref(), str_of(m, "role").unwrap_or("user"), &Map::new(), at);
        rows.push(row.clone());
        ops.push(Op::Insert { table: &TEAM_MEMBERS, record: row });
    }
    let seq = st.store.commit(ops).await?;
    rec.insert("version".into(), json!(seq));
    Ok(ok(Value::Object(render::team(&rec, &rows))))
}

fn team_missing() -> ApiError {
    ApiError::not_found("team_id", "team not found")
}

/// Every key of the team is reported changed with the team: its record embeds the team's.
fn touch_team_keys(team_id: &str) -> Op {
    Op::Touch { table: &KEYS, col: "team_id", value: team_id.to_owned() }
}

pub async fn team_update(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    Request::TeamUpdate.check(&mut body)?;
    let team_id = required_str(&body, "team_id")?;
    if body.contains_key("members_with_roles") {
        return Err(ApiError::field(
            "members_with_roles",
            "change members with /team/member_add and /team/member_delete",
        ));
    }
    body.remove("team_id");
    let rec = update_record(&st, &TEAMS, &team_id, team_missing(), |mut rec| {
        let at = now();
        let old = rec.clone();
        merge(&mut rec, &body);
        apply_schedule(&mut rec, Some(&old), &body, at);
        stamp(&mut rec, false, at);
        Ok((rec, vec![touch_team_keys(&team_id)]))
    })
    .await?;
    let members = team_members(&st, &team_id).await?;
    Ok(ok(json!({"team_id": team_id, "data": render::team(&rec, &members)})))
}

async fn set_team_blocked(st: Shared, body: Body, blocked: bool) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::TEAM_ID)?;
    let team_id = required_str(&body, "team_id")?;
    let rec = update_record(&st, &TEAMS, &team_id, team_missing(), |mut rec| {
        rec.insert("blocked".into(), json!(blocked));
        stamp(&mut rec, false, now());
        Ok((rec, vec![touch_team_keys(&team_id)]))
    })
    .await?;
    let members = team_members(&st, &team_id).await?;
    Ok(ok(Value::Object(render::team(&rec, &members))))
}

pub async fn team_block(State(st): State<Shared>, body: Body) -> Res {
    set_team_blocked(st, body, true).await
}

pub async fn team_unblock(State(st): State<Shared>, body: Body) -> Res {
    set_team_blocked(st, body, false).await
}

pub async fn team_delete(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::TEAM_IDS)?;
    let ids = required_list(&body, "team_ids")?;
    if ids.is_empty() {
        return Err(ApiError::field("team_ids", "team_ids must not be empty"));
    }
    let mut ops = Vec::new();
    for id in &ids {
        if st.store.get(&TEAMS, id).await?.is_none() {
            return Err(ApiError::not_found("team_ids", format!("team not found: {id:?}")));
        }
        // LiteLLM deletes a team's keys with it.
        ops.push(Op::DeleteWhere { table: &KEYS, col: "team_id", value: id.clone() });
        ops.push(Op::DeleteWhere { table: &TEAM_MEMBERS, col: "team_id", value: id.clone() });
        ops.push(Op::Delete { table: &TEAMS, id: id.clone() });
    }
    st.store.commit(ops).await?;
    Ok(ok(json!({"deleted_teams": ids})))
}

async fn team_view(st: &Shared, rec: &Record) -> Result<Map<String, Value>, ApiError> {
    let id = str_of(rec, "team_id").unwrap_or_default().to_owned();
    let members = team_members(st, &id).await?;
    let mut t = render::team(rec, &members);
    t.insert("team_memberships".into(), Value::Array(members.iter().map(|m| render::membership(m, false)).collect()));
    t.insert("keys".into(), Value::Array(team_keys(st, &id).await?));
    Ok(t)
}

pub async fn team_info(State(st): State<Shared>, RawQuery(q): RawQuery) -> Res {
    let pairs = query_pairs(q.as_deref());
    let Some((_, team_id)) = pairs.iter().find(|(k, _)| k == "team_id") else {
        return Err(ApiError::field("team_id", "pass ?team_id="));
    };
    let Some(rec) = st.store.get(&TEAMS, team_id).await? else {
        return Err(team_missing());
    };
    let members = team_members(&st, team_id).await?;
    let mut info = render::team(&rec, &members);
    info.insert("team_member_budget_table".into(), Value::Null);
    Ok(ok(json!({
        "team_id": team_id,
        "team_info": info,
        "keys": team_keys(&st, team_id).await?,
        "team_memberships": members.iter().map(|m| render::membership(m, true)).collect::<Vec<_>>(),
    })))
}

pub async fn team_list(State(st): State<Shared>, RawQuery(q): RawQuery) -> Res {
    let pairs = query_pairs(q.as_deref());
    let mut filters = eq_filters(&pairs, &[("organization_id", "organization_id")]);
    if let Some((_, user)) = pairs.iter().find(|(k, _)| k == "user_id") {
        let (ms, _) = st.store.find(&TEAM_MEMBERS, vec![Filter::Eq("user_id", s(user))], None).await?;
        filters
            .push(Filter::In("team_id", ms.iter().filter_map(|m| str_of(m, "team_id").map(str::to_owned)).collect()));
    }
    let (rows, _) = st.store.find(&TEAMS, filters, None).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(Value::Object(team_view(&st, r).await?));
    }
    Ok(ok(Value::Array(out)))
}

pub async fn team_member_add(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::MEMBER_ADD)?;
    let team_id = required_str(&body, "team_id")?;
    let members = member_list(body.get("member"));
    if members.is_empty() {
        return Err(ApiError::field("member", "missing required field \"member\""));
    }
    let Some(team) = st.store.get(&TEAMS, &team_id).await? else {
        return Err(team_missing());
    };
    let at = now();
    let existing = team_members(&st, &team_id).await?;
    let mut ops = Vec::new();
    let mut added = Vec::new();
    let mut users = Vec::new();
    for m in &members {
        let (new_user, user_id, email) = resolve_member(&st, m, at).await?;
        if existing.iter().chain(added.iter()).any(|r| str_of(r, "user_id") == Some(user_id.as_str())) {
            return Err(ApiError::field("member", format!("user {user_id:?} is already a member of team {team_id:?}")));
        }
        match new_user {
            Some(u) => {
                users.push(u.clone());
                ops.push(Op::Insert { table: &USERS, record: u });
            }
            None => {
                if let Some(u) = st.store.get(&USERS, &user_id).await? {
                    users.push(u);
                }
            }
        }
        let row = member_row(&team_id, &user_id, email.as_deref(), str_of(m, "role").unwrap_or("user"), &body, at);
        added.push(row.clone());
        ops.push(Op::Insert { table: &TEAM_MEMBERS, record: row });
    }
    ops.push(Op::Touch { table: &TEAMS, col: "team_id", value: team_id.clone() });
    st.store.commit(ops).await?;
    let all: Vec<Record> = existing.into_iter().chain(added.iter().cloned()).collect();
    let mut out = render::team(&team, &all);
    let mut users_out = Vec::new();
    for u in &users {
        let teams = user_teams(&st, str_of(u, "user_id").unwrap_or_default()).await?;
        users_out.push(Value::Object(render::user(u, &teams)));
    }
    out.insert("updated_users".into(), Value::Array(users_out));
    out.insert(
        "updated_team_memberships".into(),
        Value::Array(added.iter().map(|m| render::membership(m, false)).collect()),
    );
    Ok(ok(Value::Object(out)))
}

pub async fn team_member_delete(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::MEMBER_DELETE)?;
    let team_id = required_str(&body, "team_id")?;
    let Some(team) = st.store.get(&TEAMS, &team_id).await? else {
        return Err(team_missing());
    };
    let members = team_members(&st, &team_id).await?;
    let found = match (str_of(&body, "user_id"), str_of(&body, "user_email")) {
        (Some(id), _) => members.iter().find(|m| str_of(m, "user_id") == Some(id)),
        (None, Some(email)) => members.iter().find(|m| str_of(m, "user_email") == Some(email)),
        (None, None) => return Err(ApiError::field("user_id", "pass user_id or user_email")),
    };
    let Some(found) = found else {
        return Err(ApiError::not_found("user_id", format!("no such member in team {team_id:?}")));
    };
    let mid = str_of(found, "member_id").unwrap_or_default().to_owned();
    st.store
        .commit(vec![
            Op::Delete { table: &TEAM_MEMBERS, id: mid.clone() },
            Op::Touch { table: &TEAMS, col: "team_id", value: team_id.clone() },
        ])
        .await?;
    let rest: Vec<Record> = members.into_iter().filter(|m| str_of(m, "member_id") != Some(mid.as_str())).collect();
    Ok(ok(Value::Object(render::team(&team, &rest))))
}

// ---------------------------------------------------------------- users

async fn user_teams(st: &Shared, user_id: &str) -> Result<Vec<String>, ApiError> {
    let (ms, _) = st.store.find(&TEAM_MEMBERS, vec![Filter::Eq("user_id", s(user_id))], None).await?;
    Ok(ms.iter().filter_map(|m| str_of(m, "team_id").map(str::to_owned)).collect())
}

/// `/user/new` fields that belong to the key it mints, not to the user row.
const USER_KEY_ONLY: &[&str] = &[
    "key_alias",
    "duration",
    "aliases",
    "config",
    "permissions",
    "auto_create_key",
    "send_invite_email",
    "teams",
    "password",
    "team_id",
];

fn team_ids_of(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for (i, t) in v.and_then(Value::as_array).into_iter().flatten().enumerate() {
        match t {
            Value::String(id) => out.push(id.clone()),
            Value::Object(o) if o.get("team_id").is_some_and(Value::is_string) => {
                out.push(o.get("team_id").and_then(Value::as_str).unwrap_or_default().to_owned())
            }
            _ => return Err(ApiError::field(format!("teams[{i}]"), "teams are team ids or {\"team_id\": …} objects")),
        }
    }
    Ok(out)
}

pub async fn user_new(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    Request::UserNew.check(&mut body)?;
    if body.get("password").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::field("password", "UI passwords are not supported by Switchyard; leave password unset"));
    }
    let at = now();
    let user_id = match str_of(&body, "user_id") {
        Some("") => return Err(ApiError::field("user_id", "user_id must not be empty")),
        Some(id) => id.to_owned(),
        None => random_id()?,
    };
    let mut teams = team_ids_of(body.get("teams"))?;
    if let Some(t) = str_of(&body, "team_id") {
        if !teams.iter().any(|x| x == t) {
            teams.push(t.to_owned());
        }
    }
    for (i, t) in teams.iter().enumerate() {
        if st.store.get(&TEAMS, t).await?.is_none() {
            return Err(ApiError::field(format!("teams[{i}]"), format!("unknown team {t:?}")));
        }
    }
    let auto_key = body.get("auto_create_key").and_then(Value::as_bool).unwrap_or(true);
    let mut user = body.clone();
    for f in USER_KEY_ONLY {
        user.remove(*f);
    }
    user.insert("user_id".into(), s(&user_id));
    if user.get("user_role").is_none_or(Value::is_null) {
        user.insert("user_role".into(), s("internal_user"));
    }
    for (f, d) in [("models", json!([])), ("spend", json!(0.0))] {
        if user.get(f).is_none_or(Value::is_null) {
            user.insert(f.into(), d);
        }
    }
    apply_schedule(&mut user, None, &Map::new(), at);
    stamp(&mut user, true, at);
    let mut ops = vec![Op::Insert { table: &USERS, record: user.clone() }];
    let email = str_of(&user, "user_email").map(str::to_owned);
    for t in &teams {
        ops.push(Op::Insert {
            table: &TEAM_MEMBERS,
            record: member_row(t, &user_id, email.as_deref(), "user", &Map::new(), at),
        });
    }
    // The key LiteLLM mints with the user: the user's id, team, models and key fields; the
    // user's own limits and budget stay on the user (they apply to all its keys).
    let mut minted = None;
    if auto_key {
        let mut kb = Map::new();
        for f in ["key_alias", "duration", "models", "aliases", "config", "permissions", "metadata", "team_id"] {
            if let Some(v) = body.get(f) {
                kb.insert(f.into(), v.clone());
            }
        }
        kb.insert("user_id".into(), s(&user_id));
        let (plaintext, rec) = new_key_record(kb, at)?;
        ops.push(Op::Insert { table: &KEYS, record: rec.clone() });
        minted = Some((plaintext, rec));
    }
    st.store.commit(ops).await?;
    let mut out = match &minted {
        Some((plaintext, rec)) => render::generated_key(rec, plaintext),
        None => {
            let mut m = Map::new();
            m.insert("key".into(), s(""));
            m
        }
    };
    let rendered = render::user(&user, &teams);
    for f in [
        "user_id",
        "user_email",
        "user_role",
        "user_alias",
        "teams",
        "models",
        "max_budget",
        "spend",
        "tpm_limit",
        "rpm_limit",
        "max_parallel_requests",
        "budget_duration",
        "metadata",
    ] {
        if let Some(v) = rendered.get(f) {
            out.insert(f.into(), v.clone());
        }
    }
    Ok(ok(Value::Object(out)))
}

fn user_missing() -> ApiError {
    ApiError::not_found("user_id", "user not found")
}

async fn find_user_id(st: &Shared, body: &Map<String, Value>) -> Result<String, ApiError> {
    if let Some(id) = str_of(body, "user_id") {
        return Ok(id.to_owned());
    }
    let Some(email) = str_of(body, "user_email") else {
        return Err(ApiError::field("user_id", "pass user_id or user_email"));
    };
    let (found, _) =
        st.store.find(&USERS, vec![Filter::Eq("user_email", s(email))], Some(Page { limit: 1, offset: 0 })).await?;
    found.first().and_then(|u| str_of(u, "user_id").map(str::to_owned)).ok_or_else(user_missing)
}

pub async fn user_update(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    Request::UserUpdate.check(&mut body)?;
    for f in ["auto_create_key", "teams", "password"] {
        if body.get(f).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::field(f, format!("{f} cannot be changed with /user/update")));
        }
    }
    let user_id = find_user_id(&st, &body).await?;
    body.remove("user_id");
    let rec = update_record(&st, &USERS, &user_id, user_missing(), |mut rec| {
        let at = now();
        let old = rec.clone();
        merge(&mut rec, &body);
        apply_schedule(&mut rec, Some(&old), &body, at);
        stamp(&mut rec, false, at);
        Ok((rec, vec![Op::Touch { table: &KEYS, col: "user_id", value: user_id.clone() }]))
    })
    .await?;
    let teams = user_teams(&st, &user_id).await?;
    Ok(ok(json!({"user_id": user_id, "data": render::user(&rec, &teams)})))
}

pub async fn user_delete(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::USER_IDS)?;
    let ids = required_list(&body, "user_ids")?;
    if ids.is_empty() {
        return Err(ApiError::field("user_ids", "user_ids must not be empty"));
    }
    let mut ops = Vec::new();
    for id in &ids {
        if st.store.get(&USERS, id).await?.is_none() {
            return Err(ApiError::not_found("user_ids", format!("user not found: {id:?}")));
        }
        // LiteLLM deletes a user's keys and memberships with it.
        ops.push(Op::DeleteWhere { table: &KEYS, col: "user_id", value: id.clone() });
        ops.push(Op::DeleteWhere { table: &TEAM_MEMBERS, col: "user_id", value: id.clone() });
        ops.push(Op::Delete { table: &USERS, id: id.clone() });
    }
    st.store.commit(ops).await?;
    Ok(ok(json!({"deleted_users": ids})))
}

pub async fn user_info(State(st): State<Shared>, RawQuery(q): RawQuery) -> Res {
    let pairs = query_pairs(q.as_deref());
    let Some((_, user_id)) = pairs.iter().find(|(k, _)| k == "user_id") else {
        return Err(ApiError::field("user_id", "pass ?user_id="));
    };
    let Some(rec) = st.store.get(&USERS, user_id).await? else {
        return Err(user_missing());
    };
    let teams = user_teams(&st, user_id).await?;
    let (keys, _) = st.store.find(&KEYS, vec![Filter::Eq("user_id", s(user_id))], None).await?;
    let mut team_rows = Vec::new();
    for t in &teams {
        if let Some(tr) = st.store.get(&TEAMS, t).await? {
            let members = team_members(&st, t).await?;
            team_rows.push(Value::Object(render::team(&tr, &members)));
        }
    }
    Ok(ok(json!({
        "user_id": user_id,
        "user_info": render::user(&rec, &teams),
        "keys": keys.iter().map(|k| Value::Object(render::key(k))).collect::<Vec<_>>(),
        "teams": team_rows,
    })))
}

pub async fn user_list(State(st): State<Shared>, RawQuery(q): RawQuery) -> Res {
    let pairs = query_pairs(q.as_deref());
    let page = int_param(&pairs, "page", 1, 1, 1_000_000)?;
    let size = int_param(&pairs, "page_size", 25, 1, 100)?;
    let mut filters = eq_filters(&pairs, &[("role", "user_role"), ("user_email", "user_email")]);
    if let Some((_, ids)) = pairs.iter().find(|(k, _)| k == "user_ids") {
        filters.push(Filter::In(
            "user_id",
            ids.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect(),
        ));
    }
    if let Some((_, team)) = pairs.iter().find(|(k, _)| k == "team") {
        let ms = team_members(&st, team).await?;
        filters
            .push(Filter::In("user_id", ms.iter().filter_map(|m| str_of(m, "user_id").map(str::to_owned)).collect()));
    }
    let (rows, total) = st.store.find(&USERS, filters, Some(Page { limit: size, offset: (page - 1) * size })).await?;
    let mut users = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = str_of(r, "user_id").unwrap_or_default().to_owned();
        let teams = user_teams(&st, &id).await?;
        let (_, key_count) =
            st.store.find(&KEYS, vec![Filter::Eq("user_id", s(&id))], Some(Page { limit: 0, offset: 0 })).await?;
        let mut u = render::user(r, &teams);
        u.insert("key_count".into(), json!(key_count));
        users.push(Value::Object(u));
    }
    Ok(ok(
        json!({"users": users, "total": total, "page": page, "page_size": size, "total_pages": (total + size - 1) / size}),
    ))
}

// ---------------------------------------------------------------- customers (end users)

fn customer_missing(param: &str) -> ApiError {
    ApiError::not_found(param, "end user not found")
}

fn customer_budget_rules(body: &Map<String, Value>) -> Result<(), ApiError> {
    let set = |f: &str| body.get(f).is_some_and(|v| !v.is_null());
    if set("budget_id") && set("max_budget") {
        return Err(ApiError::field("max_budget", "pass budget_id or max_budget, not both"));
    }
    Ok(())
}

pub async fn customer_new(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::Request::Customer.check(&mut body)?;
    let user_id = required_str(&body, "user_id")?;
    customer_budget_rules(&body)?;
    require_budget(&st, &body).await?;
    let at = now();
    let mut rec = body.clone();
    for (f, d) in [("blocked", json!(false)), ("spend", json!(0.0)), ("models", json!([]))] {
        if rec.get(f).is_none_or(Value::is_null) {
            rec.insert(f.into(), d);
        }
    }
    apply_schedule(&mut rec, None, &body, at);
    stamp(&mut rec, true, at);
    match st.store.commit(vec![Op::Insert { table: &END_USERS, record: rec.clone() }]).await {
        Ok(_) => Ok(ok(render::customer(&rec, linked_budget(&st, &rec).await?.as_ref()))),
        Err(StoreError::Duplicate { .. }) => {
            Err(ApiError::field("user_id", format!("end user {user_id:?} already exists")))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn customer_update(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::Request::Customer.check(&mut body)?;
    let user_id = required_str(&body, "user_id")?;
    body.remove("user_id");
    require_budget(&st, &body).await?;
    let rec = update_record(&st, &END_USERS, &user_id, customer_missing("user_id"), |mut rec| {
        let at = now();
        let old = rec.clone();
        merge(&mut rec, &body);
        customer_budget_rules(&rec)?;
        apply_schedule(&mut rec, Some(&old), &body, at);
        stamp(&mut rec, false, at);
        Ok((rec, vec![]))
    })
    .await?;
    Ok(ok(render::customer(&rec, linked_budget(&st, &rec).await?.as_ref())))
}

pub async fn customer_delete(State(st): State<Shared>, body: Body) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::USER_IDS)?;
    let ids = required_list(&body, "user_ids")?;
    if ids.is_empty() {
        return Err(ApiError::field("user_ids", "user_ids must not be empty"));
    }
    for id in &ids {
        if st.store.get(&END_USERS, id).await?.is_none() {
            return Err(ApiError::not_found("user_ids", format!("end user not found: {id:?}")));
        }
    }
    st.store.commit(ids.iter().map(|id| Op::Delete { table: &END_USERS, id: id.clone() }).collect()).await?;
    Ok(ok(
        json!({"deleted_customers": ids.len(), "message": format!("Successfully deleted customers with ids: {ids:?}")}),
    ))
}

pub async fn customer_info(State(st): State<Shared>, RawQuery(q): RawQuery) -> Res {
    let pairs = query_pairs(q.as_deref());
    let Some((_, id)) = pairs.iter().find(|(k, _)| k == "end_user_id") else {
        return Err(ApiError::field("end_user_id", "pass ?end_user_id="));
    };
    match st.store.get(&END_USERS, id).await? {
        Some(rec) => Ok(ok(render::customer(&rec, linked_budget(&st, &rec).await?.as_ref()))),
        None => Err(customer_missing("end_user_id")),
    }
}

/// The `/budget/*` row an end user links to, if it exists.
async fn linked_budget(st: &Shared, rec: &Record) -> Result<Option<Record>, ApiError> {
    match str_of(rec, "budget_id") {
        Some(id) => Ok(st.store.get(&BUDGETS, id).await?),
        None => Ok(None),
    }
}

/// Every `/budget/*` row by id (end user lists render their linked rows).
pub(super) async fn budgets_by_id(st: &Shared) -> Result<std::collections::BTreeMap<String, Record>, ApiError> {
    let (rows, _) = st.store.find(&BUDGETS, vec![], None).await?;
    Ok(rows.into_iter().filter_map(|r| Some((str_of(&r, "budget_id")?.to_owned(), r))).collect())
}

fn customers_view(rows: &[Record], budgets: &std::collections::BTreeMap<String, Record>) -> Vec<Value> {
    rows.iter().map(|r| render::customer(r, str_of(r, "budget_id").and_then(|b| budgets.get(b)))).collect()
}

pub async fn customer_list(State(st): State<Shared>) -> Res {
    let (rows, _) = st.store.find(&END_USERS, vec![], None).await?;
    let budgets = budgets_by_id(&st).await?;
    Ok(ok(Value::Array(customers_view(&rows, &budgets))))
}

/// LiteLLM's block creates the end users it does not know yet (blocked), unblock only
/// changes those it knows.
async fn set_customers_blocked(st: Shared, body: Body, blocked: bool) -> Res {
    let mut body = read_json(body).await?;
    fields::check(&mut body, fields::USER_IDS)?;
    let ids = required_list(&body, "user_ids")?;
    let mut rows = Vec::new();
    for id in &ids {
        let rec = if blocked {
            update_record(&st, &END_USERS, id, customer_missing("user_ids"), |mut rec| {
                rec.insert("blocked".into(), json!(true));
                stamp(&mut rec, false, now());
                Ok((rec, vec![]))
            })
            .await
        } else {
            update_record(&st, &END_USERS, id, customer_missing("user_ids"), |mut rec| {
                rec.insert("blocked".into(), json!(false));
                stamp(&mut rec, false, now());
                Ok((rec, vec![]))
            })
            .await
        };
        match rec {
            Ok(r) => rows.push(r),
            Err(e) if e.status.as_u16() == 404 && blocked => {
                let mut r = Map::new();
                r.insert("user_id".into(), s(id));
                r.insert("blocked".into(), json!(true));
                r.insert("spend".into(), json!(0.0));
                r.insert("models".into(), json!([]));
                stamp(&mut r, true, now());
                match st.store.commit(vec![Op::Insert { table: &END_USERS, record: r.clone() }]).await {
                    Ok(_) => rows.push(r),
                    // Created concurrently: block that one.
                    Err(StoreError::Duplicate { .. }) => {
                        return Err(ApiError::new(
                            axum::http::StatusCode::CONFLICT,
                            "conflict_error",
                            "the end user was created concurrently; retry",
                        ))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) if e.status.as_u16() == 404 => {}
            Err(e) => return Err(e),
        }
    }
    if blocked {
        let budgets = budgets_by_id(&st).await?;
        Ok(ok(json!({"blocked_users": customers_view(&rows, &budgets)})))
    } else {
        let (still, _) = st.store.find(&END_USERS, vec![Filter::Eq("blocked", json!(true))], None).await?;
        Ok(ok(json!({"blocked_users": still.iter().filter_map(|r| r.get("user_id").cloned()).collect::<Vec<_>>()})))
    }
}

pub async fn customer_block(State(st): State<Shared>, body: Body) -> Res {
    set_customers_blocked(st, body, true).await
}

pub async fn customer_unblock(State(st): State<Shared>, body: Body) -> Res {
    set_customers_blocked(st, body, false).await
}
