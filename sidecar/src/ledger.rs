//! The spend ledger: the usage records the Envoy filter sends (`POST /internal/v1/spend`),
//! how each is checked, and how stored rows are shown in LiteLLM's shapes (`/spend/logs`,
//! `/global/spend/report`). The SQL is in [`crate::store::ledger`]; the contract with the
//! filter, the idempotency argument and the report queries are in `docs/ledger.md`.
//!
//! A record is one request the gateway answered (or the client left), identified by a
//! 128-bit id the gateway generated — never the client's `x-request-id`, which is kept as
//! `client_request_id`. The filter resends a batch until it gets a 200; the sidecar inserts
//! each record at most once and moves the aggregates (entity `spend`, `daily_spend`) only
//! for the records it inserted, in the same transaction, so a resend never counts twice.
//!
//! A record that fails its checks is refused alone (the filter does not resend it); the
//! rest of its batch is stored. Fields a client controls (`client_request_id`, `end_user`)
//! and the provider's `model`/`provider` names are cut to size instead of refused, since
//! refusing would lose real spend.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::schema::from_nano;

/// Most records in one batch.
pub const MAX_RECORDS: usize = 1000;
/// Largest batch body.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Most tokens of one kind in one record (far above any model's window).
pub const MAX_TOKENS: u64 = 10_000_000_000;
/// Largest cost of one record: $10,000 in nano-dollars. Sums of a batch (at most 1000
/// records) stay far inside a 64-bit column however long the ledger runs.
pub const MAX_COST_NANO: u64 = 10_000_000_000_000;
/// Most upstream attempts of one request.
pub const MAX_ATTEMPTS: u64 = 1000;
/// Longest id of a team or user (they are the admin API's; no real one is this long).
pub const MAX_ID_BYTES: usize = 4096;
/// `client_request_id` and `end_user` (client-controlled) are cut to this many bytes.
pub const MAX_CLIENT_TEXT_BYTES: usize = 256;
/// `model_group`, and the provider's `model`/`provider` names (cut, not refused).
pub const MAX_NAME_BYTES: usize = 512;
/// The earliest start a record may have: 2000-01-01T00:00:00Z.
pub const MIN_START_MS: i64 = 946_684_800_000;
/// How far in the future (by the sidecar's clock) a record may start or end: clock skew.
pub const MAX_FUTURE_MS: i64 = 86_400_000;
pub const DAY_MS: i64 = 86_400_000;

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Embeddings,
    Completions,
}

impl Operation {
    pub fn parse(s: &str) -> Option<Operation> {
        match s {
            "chat" => Some(Operation::Chat),
            "embeddings" => Some(Operation::Embeddings),
            "completions" => Some(Operation::Completions),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
            Operation::Completions => "completions",
        }
    }

    /// LiteLLM's `call_type` for it (its `CallTypes` of the async proxy path).
    pub fn call_type(s: &str) -> &'static str {
        match s {
            "embeddings" => "aembedding",
            "completions" => "atext_completion",
            _ => "acompletion",
        }
    }
}

/// Tokens, provider-native: `input` is uncached input; `output` includes `reasoning`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: i64,
    pub cache_read: i64,
    pub cache_write_5m: i64,
    pub cache_write_1h: i64,
    pub output: i64,
    pub reasoning: i64,
}

impl Usage {
    /// OpenAI's `prompt_tokens` (cached input included), LiteLLM's `prompt_tokens`.
    pub fn prompt(&self) -> i64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write_5m)
            .saturating_add(self.cache_write_1h)
    }

    pub fn total(&self) -> i64 {
        self.prompt().saturating_add(self.output)
    }
}

/// One checked usage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRecord {
    pub id: String,
    pub client_request_id: Option<String>,
    pub key_hash: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub end_user: Option<String>,
    pub model_group: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub operation: Operation,
    /// The HTTP status the client got; 0: it went away before an answer.
    pub status: i64,
    pub stream: bool,
    pub usage: Usage,
    pub cost_nano: i64,
    pub estimated: bool,
    pub attempts: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl SpendRecord {
    /// The UTC day it is counted on (its start), `YYYY-MM-DD`.
    pub fn day(&self) -> String {
        day_of_ms(self.start_ms)
    }

    pub fn failed(&self) -> bool {
        !(200..300).contains(&self.status)
    }
}

/// Unix milliseconds → its UTC day, `YYYY-MM-DD`.
pub fn day_of_ms(ms: i64) -> String {
    let (y, m, d) = crate::time::civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD` → unix milliseconds of that day's start (UTC).
pub fn parse_day(text: &str) -> Option<i64> {
    if text.len() != 10 {
        return None;
    }
    let secs = crate::time::parse_timestamp(text)?;
    Some(secs.saturating_mul(1000))
}

/// Unix milliseconds → `2026-11-25T15:30:00.123Z`.
pub fn iso_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let base = crate::time::iso8601(secs);
    match base.strip_suffix('Z') {
        Some(b) => format!("{b}.{frac:03}Z"),
        None => base,
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The longest prefix of `s` of at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// Text a client or provider controls: NULs dropped (PostgreSQL text cannot hold them),
/// cut to `max` bytes; empty → none.
fn sanitized(v: Option<&Value>, name: &str, max: usize) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let clean: String = s.chars().filter(|c| *c != '\0').collect();
            let clean = cut(&clean, max);
            Ok((!clean.is_empty()).then_some(clean))
        }
        Some(_) => Err(format!("{name} must be a string or null")),
    }
}

/// An id the admin API made (team, user): refused if impossible, empty → none.
fn admin_id(v: Option<&Value>, name: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_ID_BYTES || s.contains('\0') => {
            Err(format!("{name} must be at most {MAX_ID_BYTES} bytes without NUL characters"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} must be a string or null")),
    }
}

fn uint(v: Option<&Value>, name: &str, max: u64) -> Result<i64, String> {
    match v.and_then(Value::as_u64) {
        Some(n) if n <= max => i64::try_from(n).map_err(|_| format!("{name} is too large")),
        Some(_) => Err(format!("{name} must be at most {max}")),
        None => Err(format!("{name} must be a non-negative integer")),
    }
}

fn boolean(v: Option<&Value>, name: &str) -> Result<bool, String> {
    v.and_then(Value::as_bool).ok_or_else(|| format!("{name} must be true or false"))
}

/// Checks one record of a batch. `now_ms` is the sidecar's clock; `min_start_ms` the
/// earliest start accepted (records older than the retention window could no longer be
/// recognised as duplicates once their row is pruned, so they are refused). Messages name
/// the field and never repeat a value (a key hash is key material).
pub fn parse_record(v: &Value, now_ms: i64, min_start_ms: i64) -> Result<SpendRecord, String> {
    let Some(o) = v.as_object() else {
        return Err("a record must be a JSON object".to_owned());
    };
    let id = match o.get("id").and_then(Value::as_str) {
        Some(s) if is_hex(s, 32) => s.to_owned(),
        _ => return Err("id must be 32 lowercase hex digits (the gateway's request id)".to_owned()),
    };
    let key_hash = match o.get("key_hash") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_hex(s, 64) => Some(s.clone()),
        Some(_) => return Err("key_hash must be 64 lowercase hex digits or null".to_owned()),
    };
    let model_group = match o.get("model_group").and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= MAX_NAME_BYTES && !s.contains('\0') => s.to_owned(),
        _ => return Err(format!("model_group must be a non-empty string of at most {MAX_NAME_BYTES} bytes")),
    };
    let operation = o
        .get("operation")
        .and_then(Value::as_str)
        .and_then(Operation::parse)
        .ok_or_else(|| "operation must be \"chat\", \"embeddings\" or \"completions\"".to_owned())?;
    let usage_obj = match o.get("usage") {
        Some(Value::Object(u)) => u,
        _ => return Err("usage must be an object of token counts".to_owned()),
    };
    let tok = |name: &str| -> Result<i64, String> {
        match usage_obj.get(name) {
            None | Some(Value::Null) => Ok(0),
            v => uint(v, &format!("usage.{name}"), MAX_TOKENS),
        }
    };
    let usage = Usage {
        input: tok("input")?,
        cache_read: tok("cache_read")?,
        cache_write_5m: tok("cache_write_5m")?,
        cache_write_1h: tok("cache_write_1h")?,
        output: tok("output")?,
        reasoning: tok("reasoning")?,
    };
    let start_ms = uint(o.get("start_ms"), "start_ms", i64::MAX as u64)?;
    let end_ms = uint(o.get("end_ms"), "end_ms", i64::MAX as u64)?;
    let latest = now_ms.saturating_add(MAX_FUTURE_MS);
    if start_ms < MIN_START_MS.max(min_start_ms) {
        return Err(if start_ms >= MIN_START_MS {
            "start_ms is older than the ledger's retention window allows (it could not be de-duplicated)".to_owned()
        } else {
            "start_ms is before 2000-01-01 (milliseconds since the Unix epoch expected)".to_owned()
        });
    }
    if start_ms > latest || end_ms > latest {
        return Err("start_ms/end_ms are more than a day ahead of the sidecar's clock".to_owned());
    }
    if end_ms < start_ms {
        return Err("end_ms must not be before start_ms".to_owned());
    }
    Ok(SpendRecord {
        id,
        client_request_id: sanitized(o.get("client_request_id"), "client_request_id", MAX_CLIENT_TEXT_BYTES)?,
        key_hash,
        team_id: admin_id(o.get("team_id"), "team_id")?,
        user_id: admin_id(o.get("user_id"), "user_id")?,
        end_user: sanitized(o.get("end_user"), "end_user", MAX_CLIENT_TEXT_BYTES)?,
        model_group,
        provider: sanitized(o.get("provider"), "provider", MAX_NAME_BYTES)?,
        model: sanitized(o.get("model"), "model", MAX_NAME_BYTES)?,
        operation,
        status: uint(o.get("status"), "status", 999)?,
        stream: boolean(o.get("stream"), "stream")?,
        usage,
        cost_nano: uint(o.get("cost_nano"), "cost_nano", MAX_COST_NANO)?,
        estimated: boolean(o.get("estimated"), "estimated")?,
        attempts: uint(o.get("attempts"), "attempts", MAX_ATTEMPTS)?,
        start_ms,
        end_ms,
    })
}

/// What a batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpendOutcome {
    /// Records inserted by this call (their cost and tokens moved the aggregates).
    pub inserted: u64,
    /// Records already in the ledger (or repeated within the batch): nothing moved.
    pub duplicates: u64,
    /// The spend, as committed, of every budget the inserted records moved
    /// (`docs/budgets.md`), ordered by kind, id and period.
    pub totals: Vec<BudgetTotal>,
}

/// One budget's spend after a batch: of the period starting at `period_start_ms`, or, for
/// a budget that never resets (`period_start_ms` null), the entity's lifetime `spend`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct BudgetTotal {
    pub kind: String,
    pub id: String,
    pub period_start_ms: Option<i64>,
    pub spent_nano: i64,
}

/// A stored ledger row, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendLogRow {
    pub record: SpendRecord,
    pub recorded_ms: i64,
}

/// `/spend/logs` rows: which, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// LiteLLM's `request_id`: the gateway id or the client's `x-request-id`.
    pub request_id: Option<String>,
    pub key_hash: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub end_user: Option<String>,
    /// Start times in `[from_ms, to_ms)`.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Keyset page: rows strictly older than this `(start_ms, id)`.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// A dimension of `daily_spend` a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dim {
    Day,
    KeyHash,
    TeamId,
    UserId,
    EndUser,
    ModelGroup,
    Provider,
    /// The provider's model name, or the model group when none was recorded (LiteLLM's
    /// `model` column).
    ModelName,
}

impl Dim {
    /// The column (or expression) of `daily_spend`; fixed text, never from a request.
    pub fn sql(self) -> &'static str {
        match self {
            Dim::Day => "day",
            Dim::KeyHash => "key_hash",
            Dim::TeamId => "team_id",
            Dim::UserId => "user_id",
            Dim::EndUser => "end_user",
            Dim::ModelGroup => "model_group",
            Dim::Provider => "provider",
            Dim::ModelName => "CASE WHEN model = '' THEN model_group ELSE model END",
        }
    }

    pub fn alias(self) -> &'static str {
        match self {
            Dim::Day => "d_day",
            Dim::KeyHash => "d_key_hash",
            Dim::TeamId => "d_team_id",
            Dim::UserId => "d_user_id",
            Dim::EndUser => "d_end_user",
            Dim::ModelGroup => "d_model_group",
            Dim::Provider => "d_provider",
            Dim::ModelName => "d_model",
        }
    }
}

/// A report over `daily_spend`: days `[from_day, to_day]` (inclusive, `YYYY-MM-DD`),
/// grouped by `group`, filtered by equality (`""` matches "none").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupQuery {
    pub from_day: String,
    pub to_day: String,
    pub group: Vec<Dim>,
    pub filters: Vec<(Dim, String)>,
    pub limit: i64,
}

/// One group's sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupRow {
    pub dims: BTreeMap<Dim, String>,
    pub requests: i64,
    pub failed_requests: i64,
    pub estimated_requests: i64,
    pub usage: Usage,
    pub cost_nano: i64,
}

impl RollupRow {
    pub fn dim(&self, d: Dim) -> &str {
        self.dims.get(&d).map(String::as_str).unwrap_or_default()
    }

    pub fn spend(&self) -> f64 {
        from_nano(self.cost_nano)
    }
}

/// A stored row in LiteLLM's `LiteLLM_SpendLogs` shape. `metadata` and `request_tags` are
/// JSON values, as LiteLLM's endpoint returns its Prisma rows (its pydantic model declares
/// them `Json`, i.e. encoded strings; docs/ledger.md).
pub fn spend_log_json(row: &SpendLogRow) -> Value {
    let r = &row.record;
    let success = (200..300).contains(&r.status);
    let text = |v: &Option<String>| Value::String(v.clone().unwrap_or_default());
    let status = if success { "success" } else { "failure" };
    json!({
        "request_id": r.id,
        "call_type": Operation::call_type(r.operation.as_str()),
        "api_key": text(&r.key_hash),
        "spend": from_nano(r.cost_nano),
        "total_tokens": r.usage.total(),
        "prompt_tokens": r.usage.prompt(),
        "completion_tokens": r.usage.output,
        "startTime": iso_ms(r.start_ms),
        "endTime": iso_ms(r.end_ms),
        "completionStartTime": null,
        "request_duration_ms": r.end_ms.saturating_sub(r.start_ms),
        "model": r.model.clone().unwrap_or_else(|| r.model_group.clone()),
        "model_id": "",
        "model_group": r.model_group,
        "custom_llm_provider": text(&r.provider),
        "api_base": "",
        "user": text(&r.user_id),
        "team_id": text(&r.team_id),
        "organization_id": null,
        "end_user": text(&r.end_user),
        "metadata": {
            "status": status,
            "http_status": r.status,
            "operation": r.operation.as_str(),
            "stream": r.stream,
            "estimated": r.estimated,
            "attempts": r.attempts,
            "attempted_retries": r.attempts.saturating_sub(1),
            "client_request_id": r.client_request_id,
            "cost_nano": r.cost_nano,
            "usage": {
                "input": r.usage.input,
                "cache_read": r.usage.cache_read,
                "cache_write_5m": r.usage.cache_write_5m,
                "cache_write_1h": r.usage.cache_write_1h,
                "output": r.usage.output,
                "reasoning": r.usage.reasoning,
            },
            "usage_object": {
                "prompt_tokens": r.usage.prompt(),
                "completion_tokens": r.usage.output,
                "total_tokens": r.usage.total(),
                "prompt_tokens_details": {"cached_tokens": r.usage.cache_read,
                                          "cache_creation_tokens": r.usage.cache_write_5m.saturating_add(r.usage.cache_write_1h)},
                "completion_tokens_details": {"reasoning_tokens": r.usage.reasoning},
            },
            "user_api_key": r.key_hash,
            "user_api_key_team_id": r.team_id,
            "user_api_key_user_id": r.user_id,
            "user_api_key_end_user_id": r.end_user,
        },
        "cache_hit": "False",
        "cache_key": "",
        "request_tags": [],
        "requester_ip_address": null,
        "messages": {},
        "response": {},
        "session_id": null,
        "status": status,
        "created_at": iso_ms(row.recorded_ms),
        "updated_at": iso_ms(row.recorded_ms),
    })
}

/// `2026-11-25` → LiteLLM's `group_by_day` text (`date_trunc('day', …)` of a timestamp).
pub fn group_by_day(day: &str) -> String {
    format!("{day}T00:00:00+00:00")
}

/// Rows grouped by `(day, <who>, model, key)` → LiteLLM's per-day report:
/// `[{"group_by_day", <list>: [{<who fields>, "total_spend", "metadata": [{"model",
/// "api_key", "spend", "total_tokens"}]}]}]`. `who` turns a row into the fields naming its
/// group (`team_name`, `customer`, …); rows must come ordered by day, then group.
pub fn daily_report(rows: &[RollupRow], list: &str, who: &dyn Fn(&RollupRow) -> Map<String, Value>) -> Value {
    let mut days: Vec<Value> = Vec::new();
    let mut i = 0;
    while let Some(first) = rows.get(i) {
        let day = first.dim(Dim::Day).to_owned();
        let mut groups: Vec<Value> = Vec::new();
        while let Some(g0) = rows.get(i).filter(|r| r.dim(Dim::Day) == day) {
            let name = who(g0);
            let mut total = 0i64;
            let mut meta = Vec::new();
            while let Some(r) = rows.get(i).filter(|r| r.dim(Dim::Day) == day && who(r) == name) {
                total = total.saturating_add(r.cost_nano);
                meta.push(json!({
                    "model": r.dim(Dim::ModelName),
                    "api_key": r.dim(Dim::KeyHash),
                    "spend": r.spend(),
                    "total_tokens": r.usage.total(),
                }));
                i += 1;
            }
            let mut g = name;
            g.insert("total_spend".into(), json!(from_nano(total)));
            g.insert("metadata".into(), Value::Array(meta));
            groups.push(Value::Object(g));
        }
        days.push(json!({"group_by_day": group_by_day(&day), list: groups}));
    }
    Value::Array(days)
}

/// Rows grouped by `(key, model)`, ordered by key → LiteLLM's per-key report:
/// `[{"api_key", "total_cost", "total_input_tokens", "total_output_tokens",
/// "model_details": [{"model", "total_cost", "total_input_tokens", "total_output_tokens"}]}]`,
/// the costliest key first.
pub fn key_report(rows: &[RollupRow]) -> Value {
    let mut keys: Vec<(i64, Value)> = Vec::new();
    let mut i = 0;
    while let Some(first) = rows.get(i) {
        let key = first.dim(Dim::KeyHash).to_owned();
        let (mut cost, mut input, mut output) = (0i64, 0i64, 0i64);
        let mut details = Vec::new();
        while let Some(r) = rows.get(i).filter(|r| r.dim(Dim::KeyHash) == key) {
            cost = cost.saturating_add(r.cost_nano);
            input = input.saturating_add(r.usage.prompt());
            output = output.saturating_add(r.usage.output);
            details.push(json!({
                "model": r.dim(Dim::ModelName),
                "total_cost": r.spend(),
                "total_input_tokens": r.usage.prompt(),
                "total_output_tokens": r.usage.output,
            }));
            i += 1;
        }
        keys.push((
            cost,
            json!({
                "api_key": key,
                "total_cost": from_nano(cost),
                "total_input_tokens": input,
                "total_output_tokens": output,
                "model_details": details,
            }),
        ));
    }
    keys.sort_by_key(|k| std::cmp::Reverse(k.0));
    Value::Array(keys.into_iter().map(|(_, v)| v).collect())
}

/// Rows grouped by `(day, key, user, model)`, ordered by day → LiteLLM's `/spend/logs`
/// summary (`summarize=true` with dates): per day `{"startTime": "YYYY-MM-DD", "spend",
/// "users": {user: spend}, "models": {model: spend}, <key hash>: spend, …}`, then the days
/// up to `to_day` after the last one with spend, at zero (LiteLLM pads the same way).
pub fn logs_summary(rows: &[RollupRow], to_day: &str) -> Value {
    let mut out: Vec<Value> = Vec::new();
    let mut i = 0;
    let mut last_day: Option<String> = None;
    while let Some(first) = rows.get(i) {
        let day = first.dim(Dim::Day).to_owned();
        let mut total = 0i64;
        let mut keys: BTreeMap<String, i64> = BTreeMap::new();
        let mut users: BTreeMap<String, i64> = BTreeMap::new();
        let mut models: BTreeMap<String, i64> = BTreeMap::new();
        while let Some(r) = rows.get(i).filter(|r| r.dim(Dim::Day) == day) {
            total = total.saturating_add(r.cost_nano);
            if !r.dim(Dim::KeyHash).is_empty() {
                *keys.entry(r.dim(Dim::KeyHash).to_owned()).or_default() += r.cost_nano;
            }
            *users.entry(r.dim(Dim::UserId).to_owned()).or_default() += r.cost_nano;
            *models.entry(r.dim(Dim::ModelName).to_owned()).or_default() += r.cost_nano;
            i += 1;
        }
        let mut item: Map<String, Value> = keys.into_iter().map(|(k, v)| (k, json!(from_nano(v)))).collect();
        item.insert("startTime".into(), json!(day));
        item.insert("spend".into(), json!(from_nano(total)));
        item.insert("users".into(), Value::Object(users.into_iter().map(|(k, v)| (k, json!(from_nano(v)))).collect()));
        item.insert(
            "models".into(),
            Value::Object(models.into_iter().map(|(k, v)| (k, json!(from_nano(v)))).collect()),
        );
        out.push(Value::Object(item));
        last_day = Some(day);
    }
    if let (Some(last), Some(end)) = (last_day.as_deref().and_then(parse_day), parse_day(to_day)) {
        let mut ms = last + DAY_MS;
        while ms <= end {
            out.push(json!({"startTime": day_of_ms(ms), "spend": 0, "users": {}, "models": {}}));
            ms += DAY_MS;
        }
    }
    Value::Array(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_620_600_000; // 2026-11-25T15:30:00Z

    fn good() -> Value {
        json!({"id": "0123456789abcdef0123456789abcdef", "client_request_id": "req-1",
               "key_hash": "a".repeat(64), "team_id": "t1", "user_id": "u1", "end_user": "acme",
               "model_group": "gpt-4o", "provider": "openai", "model": "gpt-4o-2024-08-06",
               "operation": "chat", "status": 200, "stream": true,
               "usage": {"input": 100, "cache_read": 50, "cache_write_5m": 10, "cache_write_1h": 5, "output": 40, "reasoning": 8},
               "cost_nano": 1234, "estimated": false, "attempts": 2, "start_ms": NOW - 1000, "end_ms": NOW})
    }

    fn with(field: &str, v: Value) -> Value {
        let mut r = good();
        r.as_object_mut().unwrap().insert(field.to_owned(), v);
        r
    }

    #[test]
    fn a_good_record_parses() {
        let r = parse_record(&good(), NOW, 0).unwrap();
        assert_eq!(r.usage.prompt(), 165);
        assert_eq!(r.usage.total(), 205);
        assert_eq!(r.day(), "2026-11-25");
        assert_eq!(r.operation, Operation::Chat);
        assert_eq!(r.attempts, 2);
        assert!(!r.failed());
    }

    #[test]
    fn bad_fields_are_refused_naming_the_field_and_no_value() {
        let key = "b".repeat(64);
        for (field, v, part) in [
            ("id", json!("ABC"), "id"),
            ("id", json!("0123456789abcdef0123456789abcdeF"), "id"),
            ("key_hash", json!(key.to_uppercase()), "key_hash"),
            ("key_hash", json!(format!("sk-{key}")), "key_hash"),
            ("operation", json!("images"), "operation"),
            ("status", json!(-1), "status"),
            ("status", json!(1000), "status"),
            ("usage", json!({"input": -5}), "usage.input"),
            ("usage", json!({"output": 1.5}), "usage.output"),
            ("usage", json!({"output": MAX_TOKENS + 1}), "usage.output"),
            ("usage", json!([1]), "usage"),
            ("cost_nano", json!(-1), "cost_nano"),
            ("cost_nano", json!(MAX_COST_NANO + 1), "cost_nano"),
            ("cost_nano", json!("12"), "cost_nano"),
            ("attempts", json!(1e9), "attempts"),
            ("stream", json!("yes"), "stream"),
            ("estimated", json!(null), "estimated"),
            ("start_ms", json!(1_795_620_600), "start_ms"),
            ("start_ms", json!(NOW + 2 * DAY_MS), "start_ms"),
            ("end_ms", json!(NOW - 5000), "end_ms"),
            ("team_id", json!(5), "team_id"),
            ("team_id", json!("a\u{0}b"), "team_id"),
            ("model_group", json!(""), "model_group"),
        ] {
            let msg = parse_record(&with(field, v.clone()), NOW, 0).unwrap_err();
            assert!(msg.contains(part), "{field}={v}: {msg}");
            assert!(!msg.contains(&key) && !msg.contains(&"a".repeat(64)), "{msg}");
        }
        assert!(parse_record(&json!([1]), NOW, 0).is_err());
        // Older than the retention window allows.
        let r = parse_record(&good(), NOW, NOW);
        assert!(r.is_err_and(|m| m.contains("retention")));
    }

    #[test]
    fn client_text_is_cut_not_refused() {
        let long = "é".repeat(400);
        let r = parse_record(&with("end_user", json!(long)), NOW, 0).unwrap();
        let e = r.end_user.unwrap_or_default();
        assert!(e.len() <= MAX_CLIENT_TEXT_BYTES && e.len() >= MAX_CLIENT_TEXT_BYTES - 1 && e.starts_with('é'));
        let r = parse_record(&with("client_request_id", json!("a\u{0}b")), NOW, 0);
        assert_eq!(r.ok().and_then(|r| r.client_request_id), Some("ab".to_owned()));
        // Optional fields may be absent or empty, usage counts default to 0, unknown fields
        // are ignored (a newer filter's record still counts).
        let mut minimal = good();
        if let Some(o) = minimal.as_object_mut() {
            for f in ["client_request_id", "key_hash", "team_id", "user_id", "end_user", "provider", "model"] {
                o.remove(f);
            }
            o.insert("usage".into(), json!({"input": 3}));
            o.insert("new_field".into(), json!({"x": 1}));
            o.insert("team_id".into(), json!(""));
        }
        let r = parse_record(&minimal, NOW, 0).unwrap();
        assert_eq!((r.team_id, r.key_hash, r.usage.total()), (None, None, 3));
    }

    #[test]
    fn days_and_times() {
        assert_eq!(day_of_ms(0), "1970-01-01");
        assert_eq!(day_of_ms(NOW), "2026-11-25");
        assert_eq!(parse_day("2026-11-25"), Some(1_795_564_800_000));
        assert_eq!(parse_day("2026-11-25T00:00:00Z"), None);
        assert_eq!(iso_ms(NOW + 7), "2026-11-25T15:30:00.007Z");
        assert_eq!(Operation::call_type("embeddings"), "aembedding");
    }

    #[test]
    fn summary_pads_to_the_end_day() {
        let mut r = RollupRow { cost_nano: 1_500_000_000, ..RollupRow::default() };
        r.dims.insert(Dim::Day, "2026-11-24".into());
        r.dims.insert(Dim::KeyHash, "k".into());
        r.dims.insert(Dim::UserId, "".into());
        r.dims.insert(Dim::ModelName, "m".into());
        let v = logs_summary(&[r], "2026-11-26");
        assert_eq!(
            v,
            json!([{"startTime": "2026-11-24", "spend": 1.5, "k": 1.5, "users": {"": 1.5}, "models": {"m": 1.5}},
                   {"startTime": "2026-11-25", "spend": 0, "users": {}, "models": {}},
                   {"startTime": "2026-11-26", "spend": 0, "users": {}, "models": {}}])
        );
    }
}
