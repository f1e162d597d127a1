//! The spend ledger over HTTP: `POST /internal/v1/spend` (the filter's usage batches) and
//! LiteLLM's reads, `GET /spend/logs` and `GET /global/spend/report` (master key).
//! Contract and queries: `docs/ledger.md`.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{ok, query_pairs, Shared};
use crate::error::ApiError;
use crate::keys;
use crate::ledger::{
    self, daily_report, key_report, logs_summary, parse_day, parse_record, Dim, LogQuery, RollupQuery, RollupRow,
    DAY_MS, MAX_BATCH_BYTES, MAX_RECORDS,
};
use crate::schema::TEAMS;
use crate::store::{Filter, StoreError};

/// Rows `/spend/logs` answers by default and at most: LiteLLM's cap (10,000, its newest
/// rows, `x-litellm-spend-logs-truncated: true` when cut); `limit` asks for fewer.
pub const DEFAULT_LOG_ROWS: i64 = 10_000;
pub const MAX_LOG_ROWS: i64 = 10_000;
/// Without a date range (or a request id), `/spend/logs` looks this far back.
pub const DEFAULT_LOG_WINDOW_DAYS: i64 = 30;
/// Longest date range of a report (LiteLLM's `_SPEND_REPORT_MAX_RANGE_DAYS`).
pub const MAX_RANGE_DAYS: i64 = 366;
/// Most rollup groups one report reads; a larger one must be narrowed.
pub const MAX_REPORT_ROWS: i64 = 100_000;

/// The earliest start a record may have to be accepted now: records older than the
/// retention window allows could have had their row pruned already, and would then be
/// counted again. The margin (half the window, at most a day) covers the clocks of
/// several sidecars and a sweep running meanwhile.
pub fn min_start_ms(now_ms: i64, retention_days: i64) -> i64 {
    if retention_days <= 0 {
        return 0;
    }
    let window = retention_days.saturating_mul(DAY_MS);
    now_ms.saturating_sub(window).saturating_add((window / 2).min(DAY_MS))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The ledger's errors: the filter keeps a batch and sends it again on any 5xx, so
/// whatever is not the batch's own fault must be one (never a 4xx that would drop it).
fn ledger_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(m) | StoreError::Conflict(m) => {
            ApiError::unavailable(format!("the spend batch was not stored (send it again): {m}"))
        }
        other => ApiError::internal(format!("the spend batch was not stored (send it again): {other}")),
    }
}

/// `POST /internal/v1/spend`: `{"records": [...]}` → `{"inserted", "duplicates",
/// "rejected": [{"index", "message"}], "totals": [{"kind", "id", "period_start_ms",
/// "spent_nano"}]}`, answered after the commit (`totals`: docs/budgets.md).
pub async fn record(State(st): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BATCH_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request_error",
            format!("a spend batch is at most {MAX_BATCH_BYTES} bytes: split it"),
        )
    })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::field("records", format!("the body is not valid JSON: {e}")))?;
    let Some(list) = v.as_object().and_then(|o| o.get("records")).and_then(Value::as_array) else {
        return Err(ApiError::field("records", "the body must be {\"records\": [record, ...]}"));
    };
    if list.len() > MAX_RECORDS {
        return Err(ApiError {
            param: Some("records".into()),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request_error",
                format!("a spend batch holds at most {MAX_RECORDS} records: split it"),
            )
        });
    }
    let now = now_ms();
    let min_start = min_start_ms(now, st.spend_retention_days);
    let mut good = Vec::with_capacity(list.len());
    let mut rejected = Vec::new();
    for (index, item) in list.iter().enumerate() {
        match parse_record(item, now, min_start) {
            Ok(r) => good.push(r),
            Err(message) => rejected.push(json!({"index": index, "message": message})),
        }
    }
    if let Some(first) = rejected.first() {
        // The messages name fields, never values: nothing of a key reaches the log.
        tracing::warn!(
            rejected = rejected.len(),
            first_index = first["index"].as_u64().unwrap_or(0),
            first = first["message"].as_str().unwrap_or_default(),
            "spend records refused"
        );
    }
    let outcome = st.store.record_spend(good, now).await.map_err(ledger_error)?;
    Ok(ok(json!({"inserted": outcome.inserted, "duplicates": outcome.duplicates, "rejected": rejected,
                 "totals": outcome.totals})))
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// `start_date`/`end_date` (`YYYY-MM-DD`, both or neither; at most a year apart).
fn date_range(pairs: &[(String, String)], required: bool) -> Result<Option<(String, String)>, ApiError> {
    let (start, end) = match (param(pairs, "start_date"), param(pairs, "end_date")) {
        (Some(s), Some(e)) => (s, e),
        (None, None) if !required => return Ok(None),
        (None, _) => return Err(ApiError::field("start_date", "pass start_date and end_date (YYYY-MM-DD)")),
        (_, None) => return Err(ApiError::field("end_date", "pass start_date and end_date (YYYY-MM-DD)")),
    };
    let s = parse_day(start).ok_or_else(|| ApiError::field("start_date", "start_date must be YYYY-MM-DD"))?;
    let e = parse_day(end).ok_or_else(|| ApiError::field("end_date", "end_date must be YYYY-MM-DD"))?;
    if e < s {
        return Err(ApiError::field("end_date", "end_date must not be before start_date"));
    }
    if e - s > MAX_RANGE_DAYS * DAY_MS {
        return Err(ApiError::field("end_date", format!("the date range is at most {MAX_RANGE_DAYS} days")));
    }
    Ok(Some((start.to_owned(), end.to_owned())))
}

fn bool_param(pairs: &[(String, String)], name: &str, default: bool) -> Result<bool, ApiError> {
    match param(pairs, name).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(ApiError::field(name, format!("{name} must be true or false"))),
    }
}

/// A key named in a query, as its hash (`sk-…` is hashed).
fn key_param(pairs: &[(String, String)], name: &str) -> Option<String> {
    param(pairs, name).map(keys::to_hash)
}

async fn rollup(st: &Shared, q: RollupQuery) -> Result<Vec<RollupRow>, ApiError> {
    let limit = q.limit;
    let rows = st.store.spend_rollup(RollupQuery { limit: limit + 1, ..q }).await?;
    if i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit {
        return Err(ApiError::field(
            "start_date",
            format!("the report has more than {limit} groups: narrow the date range or filter it"),
        ));
    }
    Ok(rows)
}

/// `GET /spend/logs`: LiteLLM's query (`api_key`, `user_id`, `request_id`, `start_date`,
/// `end_date`, `summarize`), plus `team_id`, `end_user`, `limit` and `before` (the
/// `x-switchyard-next-before` of the previous page).
pub async fn logs(State(st): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref());
    let range = date_range(&pairs, false)?;
    let summarize = bool_param(&pairs, "summarize", true)?;
    let request_id = param(&pairs, "request_id").map(str::to_owned);
    let key_hash = key_param(&pairs, "api_key");
    let user_id = param(&pairs, "user_id").map(str::to_owned);
    let team_id = param(&pairs, "team_id").map(str::to_owned);
    let end_user = param(&pairs, "end_user").map(str::to_owned);
    let limit =
        match param(&pairs, "limit") {
            None => DEFAULT_LOG_ROWS,
            Some(v) => v.parse::<i64>().ok().filter(|n| (1..=MAX_LOG_ROWS).contains(n)).ok_or_else(|| {
                ApiError::field("limit", format!("limit must be an integer from 1 to {MAX_LOG_ROWS}"))
            })?,
        };
    let before = match param(&pairs, "before") {
        None => None,
        Some(c) => {
            Some(c.split_once('-').and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_owned()))).ok_or_else(
                || ApiError::field("before", "before is the x-switchyard-next-before of a previous page"),
            )?)
        }
    };
    if let (Some((start, end)), true) = (&range, summarize) {
        // LiteLLM's daily summary, from the rollups (a request id: from its ledger rows).
        let rows = match &request_id {
            None => {
                let mut filters = Vec::new();
                for (d, v) in [
                    (Dim::KeyHash, &key_hash),
                    (Dim::UserId, &user_id),
                    (Dim::TeamId, &team_id),
                    (Dim::EndUser, &end_user),
                ] {
                    if let Some(v) = v {
                        filters.push((d, v.clone()));
                    }
                }
                let group = vec![Dim::Day, Dim::KeyHash, Dim::UserId, Dim::ModelName];
                rollup(
                    &st,
                    RollupQuery {
                        from_day: start.clone(),
                        to_day: end.clone(),
                        group,
                        filters,
                        limit: MAX_REPORT_ROWS,
                    },
                )
                .await?
            }
            Some(_) => {
                let from = parse_day(start).unwrap_or(0);
                let to = parse_day(end).unwrap_or(0) + DAY_MS;
                let found = st
                    .store
                    .spend_logs(LogQuery {
                        request_id: request_id.clone(),
                        key_hash,
                        user_id,
                        team_id,
                        end_user,
                        from_ms: Some(from),
                        to_ms: Some(to),
                        before: None,
                        limit: MAX_LOG_ROWS,
                    })
                    .await?;
                let mut rows: Vec<RollupRow> = found
                    .iter()
                    .map(|l| {
                        let r = &l.record;
                        let mut row =
                            RollupRow { cost_nano: r.cost_nano, usage: r.usage, requests: 1, ..Default::default() };
                        row.dims.insert(Dim::Day, r.day());
                        row.dims.insert(Dim::KeyHash, r.key_hash.clone().unwrap_or_default());
                        row.dims.insert(Dim::UserId, r.user_id.clone().unwrap_or_default());
                        row.dims.insert(Dim::ModelName, r.model.clone().unwrap_or_else(|| r.model_group.clone()));
                        row
                    })
                    .collect();
                rows.sort_by(|a, b| a.dims.cmp(&b.dims));
                rows
            }
        };
        return Ok(ok(logs_summary(&rows, end)));
    }
    let now = now_ms();
    let (from_ms, to_ms) = match (&range, &request_id) {
        (Some((s, e)), _) => (parse_day(s), parse_day(e).map(|e| e + DAY_MS)),
        // A request id is one or a few rows wherever they are (the primary key, or the
        // client's id's index); anything else without dates: the last 30 days.
        (None, Some(_)) => (None, None),
        (None, None) => (Some(now - DEFAULT_LOG_WINDOW_DAYS * DAY_MS), None),
    };
    let found = st
        .store
        .spend_logs(LogQuery {
            request_id,
            key_hash,
            user_id,
            team_id,
            end_user,
            from_ms,
            to_ms,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = i64::try_from(found.len()).unwrap_or(i64::MAX) > limit;
    let shown: Vec<_> = found.iter().take(usize::try_from(limit).unwrap_or(usize::MAX)).collect();
    let rows: Vec<Value> = shown.iter().map(|r| ledger::spend_log_json(r)).collect();
    let mut resp = ok(Value::Array(rows));
    if more {
        let h = resp.headers_mut();
        h.insert("x-litellm-spend-logs-truncated", HeaderValue::from_static("true"));
        if let Some(last) = shown.last() {
            if let Ok(v) = HeaderValue::from_str(&format!("{}-{}", last.record.start_ms, last.record.id)) {
                h.insert("x-switchyard-next-before", v);
            }
        }
    }
    Ok(resp)
}

/// LiteLLM's `team_name`: the team's alias, else its id, else `Unassigned Team`.
async fn team_names(st: &Shared, rows: &[RollupRow]) -> Result<Map<String, Value>, ApiError> {
    let ids: BTreeSet<String> = rows.iter().map(|r| r.dim(Dim::TeamId).to_owned()).filter(|t| !t.is_empty()).collect();
    let mut names = Map::new();
    if ids.is_empty() {
        return Ok(names);
    }
    let ids: Vec<String> = ids.into_iter().collect();
    // In chunks: a statement takes a bounded number of parameters.
    for chunk in ids.chunks(500) {
        let (teams, _) = st.store.find(&TEAMS, vec![Filter::In("team_id", chunk.to_vec())], None).await?;
        for t in teams {
            if let (Some(id), Some(alias)) =
                (t.get("team_id").and_then(Value::as_str), t.get("team_alias").and_then(Value::as_str))
            {
                names.insert(id.to_owned(), json!(alias));
            }
        }
    }
    Ok(names)
}

fn team_name(names: &Map<String, Value>, team_id: &str) -> Value {
    match names.get(team_id) {
        Some(alias) => alias.clone(),
        None if team_id.is_empty() => json!("Unassigned Team"),
        None => json!(team_id),
    }
}

/// `GET /global/spend/report`: LiteLLM's (`start_date`, `end_date` required;
/// `group_by` = `team` (default) | `customer` | `api_key`; `api_key`, `internal_user_id`,
/// `team_id`, `customer_id`), answered from `daily_spend` only.
pub async fn report(State(st): State<Shared>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref());
    let Some((from_day, to_day)) = date_range(&pairs, true)? else {
        return Err(ApiError::field("start_date", "pass start_date and end_date (YYYY-MM-DD)"));
    };
    let group_by = param(&pairs, "group_by").unwrap_or("team");
    if !["team", "customer", "api_key"].contains(&group_by) {
        return Err(ApiError::field("group_by", "group_by must be team, customer or api_key"));
    }
    let key_hash = key_param(&pairs, "api_key");
    let user = param(&pairs, "internal_user_id").map(str::to_owned);
    let team = param(&pairs, "team_id").map(str::to_owned);
    let customer = param(&pairs, "customer_id").map(str::to_owned);
    let mut filters = Vec::new();
    for (d, v) in [(Dim::KeyHash, &key_hash), (Dim::UserId, &user), (Dim::TeamId, &team), (Dim::EndUser, &customer)] {
        if let Some(v) = v {
            filters.push((d, v.clone()));
        }
    }
    let query = |group: Vec<Dim>| RollupQuery {
        from_day: from_day.clone(),
        to_day: to_day.clone(),
        group,
        filters: filters.clone(),
        limit: MAX_REPORT_ROWS,
    };
    // LiteLLM's branches, in its order: a key or an internal user → per key; a team and a
    // customer → per team and customer; else by `group_by`.
    if key_hash.is_some() || user.is_some() || group_by == "api_key" {
        let rows = rollup(&st, query(vec![Dim::KeyHash, Dim::ModelName])).await?;
        return Ok(ok(key_report(&rows)));
    }
    if team.is_some() && customer.is_some() {
        let rows = rollup(&st, query(vec![Dim::Day, Dim::TeamId, Dim::EndUser, Dim::ModelName, Dim::KeyHash])).await?;
        let names = team_names(&st, &rows).await?;
        let who = |r: &RollupRow| -> Map<String, Value> {
            let mut m = Map::new();
            m.insert("team_name".into(), team_name(&names, r.dim(Dim::TeamId)));
            m.insert("team_id".into(), json!(r.dim(Dim::TeamId)));
            m.insert("customer".into(), json!(r.dim(Dim::EndUser)));
            m
        };
        return Ok(ok(daily_report(&rows, "teams_customers", &who)));
    }
    if group_by == "customer" {
        let rows = rollup(&st, query(vec![Dim::Day, Dim::EndUser, Dim::ModelName, Dim::KeyHash])).await?;
        let who = |r: &RollupRow| -> Map<String, Value> {
            let mut m = Map::new();
            m.insert("customer".into(), json!(r.dim(Dim::EndUser)));
            m
        };
        return Ok(ok(daily_report(&rows, "customers", &who)));
    }
    let rows = rollup(&st, query(vec![Dim::Day, Dim::TeamId, Dim::ModelName, Dim::KeyHash])).await?;
    let names = team_names(&st, &rows).await?;
    let who = |r: &RollupRow| -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("team_name".into(), team_name(&names, r.dim(Dim::TeamId)));
        m.insert("team_id".into(), json!(r.dim(Dim::TeamId)));
        m
    };
    Ok(ok(daily_report(&rows, "teams", &who)))
}

/// Deletes ledger rows that started more than `retention_days` ago, `batch` at a time
/// (a short pause between batches, so other writers get the database in between), until
/// none is left; returns how many. Rollups and entity spend stay.
pub async fn prune(store: &dyn crate::store::Store, retention_days: i64, batch: i64) -> Result<u64, StoreError> {
    if retention_days <= 0 {
        return Ok(0);
    }
    let cutoff = now_ms().saturating_sub(retention_days.saturating_mul(DAY_MS));
    let mut total = 0u64;
    loop {
        let n = store.prune_spend_logs(cutoff, batch).await?;
        total += n;
        if i64::try_from(n).unwrap_or(i64::MAX) < batch {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Budget periods that ended before the window: no record is accepted into them any
    // more (they would start before it), so their rows are never needed again.
    loop {
        let n = store.prune_budget_spend(cutoff, batch).await?;
        if i64::try_from(n).unwrap_or(i64::MAX) < batch {
            return Ok(total);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The retention task: a sweep a few seconds after start, then every hour.
pub async fn retention_task(st: Shared) {
    let days = st.spend_retention_days;
    if days <= 0 {
        tracing::info!("spend log retention off (SPEND_LOG_RETENTION_DAYS=0): ledger rows are kept");
        return;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    loop {
        match prune(st.store.as_ref(), days, 1000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, retention_days = days, "old spend log rows deleted"),
            Err(e) => tracing::warn!(error = %e, "spend log retention sweep failed; trying again later"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_floor() {
        let now = 100 * DAY_MS;
        assert_eq!(min_start_ms(now, 0), 0);
        assert_eq!(min_start_ms(now, 90), now - 89 * DAY_MS);
        assert_eq!(min_start_ms(now, 1), now - DAY_MS / 2);
    }
}
