//! The spend ledger's SQL, the same text on SQLite and PostgreSQL (`ledger_store!` makes
//! the methods for both stores), and the plan of what one batch adds where.
//!
//! One batch is one transaction:
//! 1. the records, sorted by id and de-duplicated, are inserted with
//!    `INSERT … ON CONFLICT (id) DO NOTHING RETURNING id` (a few hundred per statement);
//!    the ids returned are the records this transaction inserted;
//! 2. only those are summed ([`plan`]) into `daily_spend` upserts and `spend` additions on
//!    end users, team memberships, teams, users and keys;
//! 3. every row is touched in one global order — ledger ids ascending, then
//!    `daily_spend` by its key, then the entity tables in [`ENTITY_TABLES`] order, each by
//!    primary key, then `budget_spend` by `(kind, id, period_start_ms)` — so two batches
//!    can never wait on each other in a cycle; the entity order is also the order the
//!    admin API's writes lock them in (a team before its keys, a user before its keys, a
//!    membership before its team; a regenerated key's row before its `budget_spend`);
//!    the entity updates return the rows' budget fields (`RETURNING`, under the row's
//!    lock: the configuration as committed), from which each inserted record's cost is
//!    added to the period of each budget it falls in ([`budget_moves`], `docs/budgets.md`);
//! 4. a deadlock or serialization failure (PostgreSQL 40P01/40001) or a busy SQLite file
//!    rolls the whole transaction back and it is run again, a few times, with backoff.
//!
//! A record inserted by a transaction that then rolls back is not inserted: the retry (or
//! the filter's resend) inserts it and counts it then. A record whose insert found the id
//! already there was counted by the transaction that inserted it. Hence every record is
//! counted exactly once however often it is sent (docs/ledger.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::budget::{self, member_budget_id, Budget, Fields};
use crate::ledger::{BudgetTotal, Dim, LogQuery, RollupQuery, SpendRecord};
use crate::schema::member_id;

/// The ledger row's columns, in insert order.
pub const LOG_COLS: &[&str] = &[
    "id",
    "client_request_id",
    "key_hash",
    "team_id",
    "user_id",
    "end_user",
    "model_group",
    "provider",
    "model",
    "operation",
    "status",
    "stream",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nano",
    "estimated",
    "attempts",
    "start_ms",
    "end_ms",
    "recorded_ms",
];

/// Records per `INSERT` statement (24 parameters each: well inside both databases' limits).
pub const INSERT_CHUNK: usize = 100;

/// Times a batch transaction is tried on a deadlock/serialization failure (PostgreSQL).
pub const PG_TX_ATTEMPTS: u32 = 5;
/// Times it is tried on a busy SQLite file (each try already waited `busy_timeout`).
pub const SQLITE_TX_ATTEMPTS: u32 = 3;

/// The entity tables a record's cost is added to, in lock order, with their primary key.
pub const ENTITY_TABLES: &[(&str, &str)] = &[
    ("end_users", "user_id"),
    ("team_members", "member_id"),
    ("teams", "team_id"),
    ("users", "user_id"),
    ("keys", "token"),
];

/// `INSERT INTO spend_logs … VALUES (…), (…) ON CONFLICT (id) DO NOTHING RETURNING id` for
/// `rows` records.
pub fn insert_sql(rows: usize) -> String {
    let n = LOG_COLS.len();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=n).map(|c| format!("${}", r * n + c)).collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO spend_logs ({}) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
        LOG_COLS.join(", "),
        values.join(", ")
    )
}

pub const DAILY_UPSERT: &str =
    "INSERT INTO daily_spend (day, key_hash, team_id, user_id, end_user, model_group, provider, model, \
     requests, failed_requests, estimated_requests, input_tokens, cache_read_tokens, cache_write_5m_tokens, \
     cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_nano) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
     ON CONFLICT (day, key_hash, team_id, user_id, end_user, model_group, provider, model) DO UPDATE SET \
     requests = daily_spend.requests + excluded.requests, \
     failed_requests = daily_spend.failed_requests + excluded.failed_requests, \
     estimated_requests = daily_spend.estimated_requests + excluded.estimated_requests, \
     input_tokens = daily_spend.input_tokens + excluded.input_tokens, \
     cache_read_tokens = daily_spend.cache_read_tokens + excluded.cache_read_tokens, \
     cache_write_5m_tokens = daily_spend.cache_write_5m_tokens + excluded.cache_write_5m_tokens, \
     cache_write_1h_tokens = daily_spend.cache_write_1h_tokens + excluded.cache_write_1h_tokens, \
     output_tokens = daily_spend.output_tokens + excluded.output_tokens, \
     reasoning_tokens = daily_spend.reasoning_tokens + excluded.reasoning_tokens, \
     cost_nano = daily_spend.cost_nano + excluded.cost_nano";

/// `UPDATE <table> SET spend = spend + $1 WHERE <pk> = $2` (0 rows when the entity no
/// longer exists: the spend stays in the ledger and the rollups).
pub fn entity_sql(table: &str, pk: &str) -> String {
    format!("UPDATE {table} SET spend = COALESCE(spend, 0) + $1 WHERE {pk} = $2")
}

/// The budget columns each entity update returns, per [`ENTITY_TABLES`] entry.
pub const ENTITY_RETURNING: &[&[&str]] = &[
    &[
        "spend",
        "max_budget",
        "soft_budget",
        "budget_duration",
        "budget_reset_at",
        "budget_anchor",
        "created_at",
        "budget_id",
    ],
    &["spend", "max_budget_in_team", "budget_duration", "budget_reset_at", "budget_anchor", "created_at"],
    &["spend", "max_budget", "soft_budget", "budget_duration", "budget_reset_at", "budget_anchor", "created_at"],
    &["spend", "max_budget", "soft_budget", "budget_duration", "budget_reset_at", "budget_anchor", "created_at"],
    &[
        "spend",
        "max_budget",
        "soft_budget",
        "budget_duration",
        "budget_reset_at",
        "budget_anchor",
        "created_at",
        "budget_id",
        "model_max_budget",
        "model_budget_anchors",
    ],
];

/// [`entity_sql`] returning the row's spend and budget fields ([`ENTITY_RETURNING`]).
pub fn entity_returning_sql(table: usize) -> Option<String> {
    let (t, pk) = ENTITY_TABLES.get(table)?;
    let cols = ENTITY_RETURNING.get(table)?;
    Some(format!("{} RETURNING {}", entity_sql(t, pk), cols.join(", ")))
}

/// The budget columns of a `/budget/*` row the ledger reads.
pub const BUDGET_ROW_COLS: &[&str] = &[
    "budget_id",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "budget_reset_at",
    "budget_anchor",
    "created_at",
    "model_max_budget",
    "model_budget_anchors",
];

/// `SELECT <BUDGET_ROW_COLS> FROM budgets WHERE budget_id IN ($1, …)` for `n` ids.
pub fn budget_rows_sql(n: usize) -> String {
    let marks: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!("SELECT {} FROM budgets WHERE budget_id IN ({})", BUDGET_ROW_COLS.join(", "), marks.join(", "))
}

/// Adds a record's cost to its budget period (the row is created by the period's first
/// record; `period_end_ms` is the period's, for the retention sweep).
pub const BUDGET_UPSERT: &str =
    "INSERT INTO budget_spend (kind, id, period_start_ms, period_end_ms, spent_nano) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (kind, id, period_start_ms) DO UPDATE SET spent_nano = budget_spend.spent_nano + excluded.spent_nano \
     RETURNING spent_nano";

/// A regenerated key (`$1` the old hash, `$2` the new) takes its periods' spend along:
/// its own budget's, then its model budgets' (`<hash>:<model>`).
pub const COPY_BUDGET_SPEND: [&str; 2] = [
    "INSERT INTO budget_spend (kind, id, period_start_ms, period_end_ms, spent_nano) \
     SELECT kind, $2, period_start_ms, period_end_ms, spent_nano FROM budget_spend WHERE kind = 'key' AND id = $1 \
     ON CONFLICT (kind, id, period_start_ms) DO NOTHING",
    "INSERT INTO budget_spend (kind, id, period_start_ms, period_end_ms, spent_nano) \
     SELECT kind, $2 || substr(id, length($1) + 1), period_start_ms, period_end_ms, spent_nano FROM budget_spend \
     WHERE kind = 'key_model' AND substr(id, 1, length($1) + 1) = $1 || ':' \
     ON CONFLICT (kind, id, period_start_ms) DO NOTHING",
];

/// Deletes up to `$2` period rows of periods that ended before `$1`.
pub const PRUNE_BUDGET_SQL: &str = "DELETE FROM budget_spend WHERE (kind, id, period_start_ms) IN \
     (SELECT kind, id, period_start_ms FROM budget_spend WHERE period_end_ms < $1 ORDER BY period_end_ms LIMIT $2)";

/// An entity's `(kind, id)` as budgets name it, from its [`ENTITY_TABLES`] index and key.
pub fn budget_ref(table: usize, pk: &str) -> (&'static str, String) {
    match table {
        0 => ("end_user", pk.to_owned()),
        1 => {
            let (t, u) = pk.split_once('\u{1f}').unwrap_or((pk, ""));
            ("team_member", member_budget_id(t, u))
        }
        2 => ("team", pk.to_owned()),
        3 => ("user", pk.to_owned()),
        _ => ("key", pk.to_owned()),
    }
}

/// An updated entity: its spend after the update and its budget fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityState {
    pub spend: i64,
    pub fields: Fields,
}

/// An entity's budgets, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityBudgets {
    pub own: Budget,
    /// A key's model budgets.
    pub models: Vec<Budget>,
    pub spend: i64,
}

/// The budgets of the updated entities, linked `/budget/*` rows applied.
pub fn resolve(
    states: BTreeMap<(usize, String), EntityState>,
    rows: &BTreeMap<String, Fields>,
) -> BTreeMap<(usize, String), EntityBudgets> {
    states
        .into_iter()
        .map(|((table, pk), st)| {
            let (kind, id) = budget_ref(table, &pk);
            let linked = st.fields.budget_id.as_ref().and_then(|b| rows.get(b));
            let own = budget::own(kind, &id, &st.fields, linked);
            let models = if table == 4 { budget::models(&pk, &st.fields, linked) } else { Vec::new() };
            ((table, pk), EntityBudgets { own, models, spend: st.spend })
        })
        .collect()
}

/// What the inserted records add to budget periods.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BudgetMoves {
    /// `(kind, id, period_start_ms) → (period_end_ms, nano-dollars)`, in lock order.
    pub periods: BTreeMap<(&'static str, String, i64), (i64, i64)>,
    /// The budgets (a limit is set) among them: their totals are answered.
    pub budgeted: BTreeSet<(&'static str, String)>,
    /// Totals of the budgets that never reset: the entity's lifetime spend.
    pub lifetime: Vec<BudgetTotal>,
}

/// Each inserted record's cost, to the period containing its `end_ms` of each tracked
/// budget of each of its entities (under the budget's configuration now); a record that
/// ended before its budget's duration took effect is in no period of it.
pub fn budget_moves<'a>(
    inserted: impl IntoIterator<Item = &'a SpendRecord>,
    ents: &BTreeMap<(usize, String), EntityBudgets>,
) -> BudgetMoves {
    let mut m = BudgetMoves::default();
    for e in ents.values() {
        if e.own.budgeted() {
            m.budgeted.insert((e.own.kind, e.own.id.clone()));
            if e.own.schedule.is_none() {
                m.lifetime.push(BudgetTotal {
                    kind: e.own.kind.to_owned(),
                    id: e.own.id.clone(),
                    period_start_ms: None,
                    spent_nano: e.spend,
                });
            }
        }
        for b in &e.models {
            m.budgeted.insert((b.kind, b.id.clone()));
        }
    }
    let mut add = |b: &Budget, end_ms: i64, cost: i64| {
        if let Some((start, end)) = b.schedule.and_then(|s| s.period_ms(end_ms)) {
            let slot = m.periods.entry((b.kind, b.id.clone(), start)).or_insert((end, 0));
            slot.1 = slot.1.saturating_add(cost);
        }
    };
    for r in inserted {
        if r.cost_nano == 0 {
            continue;
        }
        for key in entities_of(r) {
            let Some(e) = ents.get(&key) else { continue };
            if e.own.tracked() {
                add(&e.own, r.end_ms, r.cost_nano);
            }
            if let Some(b) = budget::model_for(&e.models, &r.model_group) {
                add(b, r.end_ms, r.cost_nano);
            }
        }
    }
    m
}

/// The entities a record's cost is added to: `(index into ENTITY_TABLES, primary key)`.
pub fn entities_of(r: &SpendRecord) -> Vec<(usize, String)> {
    let mut out = Vec::with_capacity(5);
    if let Some(e) = &r.end_user {
        out.push((0, e.clone()));
    }
    if let (Some(t), Some(u)) = (&r.team_id, &r.user_id) {
        out.push((1, member_id(t, u)));
    }
    if let Some(t) = &r.team_id {
        out.push((2, t.clone()));
    }
    if let Some(u) = &r.user_id {
        out.push((3, u.clone()));
    }
    if let Some(k) = &r.key_hash {
        out.push((4, k.clone()));
    }
    out
}

/// A JSON column's text as a value.
pub fn json_col(text: Option<String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(&t).ok()).filter(|v: &Value| !v.is_null())
}

/// Deletes up to `$2` ledger rows that started before `$1` (oldest first, by the time index).
pub const PRUNE_SQL: &str =
    "DELETE FROM spend_logs WHERE id IN (SELECT id FROM spend_logs WHERE start_ms < $1 ORDER BY start_ms LIMIT $2)";

/// `daily_spend`'s key: day and the seven dimensions, `""` for "none".
pub type DailyKey = [String; 8];

/// The sums one batch adds to one `daily_spend` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailySums {
    pub requests: i64,
    pub failed_requests: i64,
    pub estimated_requests: i64,
    pub input: i64,
    pub cache_read: i64,
    pub cache_write_5m: i64,
    pub cache_write_1h: i64,
    pub output: i64,
    pub reasoning: i64,
    pub cost_nano: i64,
}

/// What a batch's inserted records add: rollup rows and entity spend, each in lock order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub daily: BTreeMap<DailyKey, DailySums>,
    /// `(index into ENTITY_TABLES, primary key) → nano-dollars`, zero sums left out.
    pub entities: BTreeMap<(usize, String), i64>,
}

/// Sums the inserted records into what each aggregate row gets.
pub fn plan<'a>(inserted: impl IntoIterator<Item = &'a SpendRecord>) -> Plan {
    let mut p = Plan::default();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    for r in inserted {
        let key: DailyKey = [
            r.day(),
            text(&r.key_hash),
            text(&r.team_id),
            text(&r.user_id),
            text(&r.end_user),
            r.model_group.clone(),
            text(&r.provider),
            text(&r.model),
        ];
        let d = p.daily.entry(key).or_default();
        d.requests += 1;
        d.failed_requests += i64::from(r.failed());
        d.estimated_requests += i64::from(r.estimated);
        d.input = d.input.saturating_add(r.usage.input);
        d.cache_read = d.cache_read.saturating_add(r.usage.cache_read);
        d.cache_write_5m = d.cache_write_5m.saturating_add(r.usage.cache_write_5m);
        d.cache_write_1h = d.cache_write_1h.saturating_add(r.usage.cache_write_1h);
        d.output = d.output.saturating_add(r.usage.output);
        d.reasoning = d.reasoning.saturating_add(r.usage.reasoning);
        d.cost_nano = d.cost_nano.saturating_add(r.cost_nano);
        if r.cost_nano == 0 {
            continue;
        }
        for key in entities_of(r) {
            let e = p.entities.entry(key).or_default();
            *e = e.saturating_add(r.cost_nano);
        }
    }
    p
}

/// A bound value of a built query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Text(String),
    Int(i64),
}

/// The `/spend/logs` query: `WHERE` from the filters, newest first, `LIMIT`. Every filter
/// has an index leading with it and `start_ms` (or is the primary key), so a page reads
/// at most `limit` rows of an index range, never the table.
pub fn logs_sql(q: &LogQuery) -> (String, Vec<Arg>) {
    let mut parts: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let arg = |args: &mut Vec<Arg>, a: Arg| {
        args.push(a);
        format!("${}", args.len())
    };
    if let Some(id) = &q.request_id {
        let m = arg(&mut args, Arg::Text(id.clone()));
        parts.push(format!("(id = {m} OR client_request_id = {m})"));
    }
    for (col, v) in
        [("key_hash", &q.key_hash), ("user_id", &q.user_id), ("team_id", &q.team_id), ("end_user", &q.end_user)]
    {
        if let Some(v) = v {
            let m = arg(&mut args, Arg::Text(v.clone()));
            parts.push(format!("{col} = {m}"));
        }
    }
    if let Some(from) = q.from_ms {
        let m = arg(&mut args, Arg::Int(from));
        parts.push(format!("start_ms >= {m}"));
    }
    if let Some(to) = q.to_ms {
        let m = arg(&mut args, Arg::Int(to));
        parts.push(format!("start_ms < {m}"));
    }
    if let Some((ms, id)) = &q.before {
        let a = arg(&mut args, Arg::Int(*ms));
        let b = arg(&mut args, Arg::Text(id.clone()));
        parts.push(format!("start_ms <= {a} AND (start_ms < {a} OR id < {b})"));
    }
    let lim = arg(&mut args, Arg::Int(q.limit.max(0)));
    let clause = if parts.is_empty() { String::new() } else { format!(" WHERE {}", parts.join(" AND ")) };
    (
        format!("SELECT {} FROM spend_logs{clause} ORDER BY start_ms DESC, id DESC LIMIT {lim}", LOG_COLS.join(", ")),
        args,
    )
}

/// The summed columns of a rollup query, in [`crate::ledger::RollupRow`] order.
pub const ROLLUP_SUMS: &[&str] = &[
    "requests",
    "failed_requests",
    "estimated_requests",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nano",
];

/// A report over `daily_spend`: a day range (the primary key leads with `day`) or an
/// entity and a day range (`(<entity>, day)` indexes), grouped and ordered by the
/// requested dimensions. Only the rollups are read, never the ledger rows.
pub fn rollup_sql(q: &RollupQuery) -> (String, Vec<Arg>) {
    let mut args = vec![Arg::Text(q.from_day.clone()), Arg::Text(q.to_day.clone())];
    let mut parts = vec!["day >= $1".to_owned(), "day <= $2".to_owned()];
    for (d, v) in &q.filters {
        args.push(Arg::Text(v.clone()));
        parts.push(format!("{} = ${}", d.sql(), args.len()));
    }
    let select: Vec<String> = q.group.iter().map(|d| format!("{} AS {}", d.sql(), d.alias())).collect();
    // PostgreSQL's SUM of a BIGINT is a NUMERIC: cast back (the sums fit, see MAX_COST_NANO).
    let sums: Vec<String> = ROLLUP_SUMS.iter().map(|c| format!("CAST(SUM({c}) AS BIGINT) AS s_{c}")).collect();
    let group: Vec<&str> = q.group.iter().map(|d| d.alias()).collect();
    args.push(Arg::Int(q.limit.max(0)));
    let mut sql = format!(
        "SELECT {} FROM daily_spend WHERE {}",
        select.into_iter().chain(sums).collect::<Vec<_>>().join(", "),
        parts.join(" AND ")
    );
    if !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {} ORDER BY {}", group.join(", "), group.join(", ")));
    }
    sql.push_str(&format!(" LIMIT ${}", args.len()));
    (sql, args)
}

/// How long to wait before try `attempt` (1, 2, …): 20 ms doubling, with jitter, so
/// transactions that collided do not collide again in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = 20u64 << attempt.min(6);
    let jitter =
        u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()))
            % base.max(1);
    Duration::from_millis(base + jitter)
}

/// Which dimensions a `daily_spend` index leads with (for the plan test).
pub fn indexed_filter(d: Dim) -> bool {
    matches!(d, Dim::Day | Dim::KeyHash | Dim::TeamId | Dim::UserId | Dim::EndUser)
}

/// Binds a query's [`Arg`]s in order.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                ledger::Arg::Text(t) => q.bind(t),
                ledger::Arg::Int(i) => q.bind(i),
            };
        }
        q
    }};
}

/// Reads the named budget columns of a row into `(spend, Fields)` (`spend` 0 when absent).
macro_rules! budget_fields {
    ($row:expr, $cols:expr) => {{
        let row = &$row;
        let mut spend = 0i64;
        let mut f = crate::budget::Fields::default();
        for col in $cols {
            let col: &str = col;
            let int = || row.try_get::<Option<i64>, _>(col);
            let text = || row.try_get::<Option<String>, _>(col);
            match col {
                "spend" => spend = int()?.unwrap_or(0),
                "max_budget" | "max_budget_in_team" => f.max_nano = int()?,
                "soft_budget" => f.soft_nano = int()?,
                "budget_duration" => f.duration = text()?,
                "budget_reset_at" => f.reset_at = int()?,
                "budget_anchor" => f.anchor = int()?,
                "created_at" => f.created_at = int()?,
                "budget_id" => f.budget_id = text()?.filter(|s| !s.is_empty()),
                "model_max_budget" => f.model_max_budget = ledger::json_col(text()?),
                "model_budget_anchors" => f.model_anchors = ledger::json_col(text()?),
                _ => {}
            }
        }
        (spend, f)
    }};
}

pub(crate) use {bind_args, budget_fields};

/// The methods of both stores; `$begin` starts a write transaction.
macro_rules! ledger_store {
    ($store:ident, $begin:expr, $backend:expr) => {
        impl $store {
            async fn spend_tx(
                &self,
                recs: &[SpendRecord],
                now_ms: i64,
            ) -> Result<(u64, Vec<BudgetTotal>), sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                let mut inserted: HashSet<String> = HashSet::new();
                for chunk in recs.chunks(ledger::INSERT_CHUNK) {
                    let mut q = sqlx::query(AssertSqlSafe(ledger::insert_sql(chunk.len())));
                    for r in chunk {
                        q = q
                            .bind(r.id.clone())
                            .bind(r.client_request_id.clone())
                            .bind(r.key_hash.clone())
                            .bind(r.team_id.clone())
                            .bind(r.user_id.clone())
                            .bind(r.end_user.clone())
                            .bind(r.model_group.clone())
                            .bind(r.provider.clone())
                            .bind(r.model.clone())
                            .bind(r.operation.as_str())
                            .bind(r.status)
                            .bind(r.stream)
                            .bind(r.usage.input)
                            .bind(r.usage.cache_read)
                            .bind(r.usage.cache_write_5m)
                            .bind(r.usage.cache_write_1h)
                            .bind(r.usage.output)
                            .bind(r.usage.reasoning)
                            .bind(r.cost_nano)
                            .bind(r.estimated)
                            .bind(r.attempts)
                            .bind(r.start_ms)
                            .bind(r.end_ms)
                            .bind(now_ms);
                    }
                    for row in q.fetch_all(&mut *tx).await? {
                        inserted.insert(row.try_get::<String, _>(0)?);
                    }
                }
                let plan = ledger::plan(recs.iter().filter(|r| inserted.contains(&r.id)));
                for (k, d) in &plan.daily {
                    let mut q = sqlx::query(ledger::DAILY_UPSERT);
                    for part in k {
                        q = q.bind(part.clone());
                    }
                    q.bind(d.requests)
                        .bind(d.failed_requests)
                        .bind(d.estimated_requests)
                        .bind(d.input)
                        .bind(d.cache_read)
                        .bind(d.cache_write_5m)
                        .bind(d.cache_write_1h)
                        .bind(d.output)
                        .bind(d.reasoning)
                        .bind(d.cost_nano)
                        .execute(&mut *tx)
                        .await?;
                }
                // Each entity's update returns its budget fields as committed (the row is
                // locked from here to the commit).
                let mut states: BTreeMap<(usize, String), ledger::EntityState> = BTreeMap::new();
                for ((table, id), nano) in &plan.entities {
                    let (Some(sql), Some(cols)) =
                        (ledger::entity_returning_sql(*table), ledger::ENTITY_RETURNING.get(*table))
                    else {
                        continue;
                    };
                    let row = sqlx::query(AssertSqlSafe(sql))
                        .bind(*nano)
                        .bind(id.clone())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(row) = row {
                        let (spend, fields) = budget_fields!(row, cols.iter());
                        states.insert((*table, id.clone()), ledger::EntityState { spend, fields });
                    }
                }
                // The `/budget/*` rows linked from keys and end users (read, not locked:
                // only admin writes change them).
                let wanted: BTreeSet<String> =
                    states.values().filter_map(|s| s.fields.budget_id.clone()).collect();
                let wanted: Vec<String> = wanted.into_iter().collect();
                let mut rows: BTreeMap<String, crate::budget::Fields> = BTreeMap::new();
                for chunk in wanted.chunks(ledger::INSERT_CHUNK) {
                    let mut q = sqlx::query(AssertSqlSafe(ledger::budget_rows_sql(chunk.len())));
                    for id in chunk {
                        q = q.bind(id.clone());
                    }
                    for row in q.fetch_all(&mut *tx).await? {
                        let id: String = row.try_get("budget_id")?;
                        let (_, fields) = budget_fields!(row, ledger::BUDGET_ROW_COLS.iter().filter(|c| **c != "budget_id"));
                        rows.insert(id, fields);
                    }
                }
                let ents = ledger::resolve(states, &rows);
                let moves = ledger::budget_moves(recs.iter().filter(|r| inserted.contains(&r.id)), &ents);
                let mut totals = moves.lifetime;
                for ((kind, id, start), (end, nano)) in &moves.periods {
                    let spent: i64 = sqlx::query(ledger::BUDGET_UPSERT)
                        .bind(*kind)
                        .bind(id.clone())
                        .bind(*start)
                        .bind(*end)
                        .bind(*nano)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get(0)?;
                    if moves.budgeted.contains(&(*kind, id.clone())) {
                        totals.push(BudgetTotal {
                            kind: (*kind).to_owned(),
                            id: id.clone(),
                            period_start_ms: Some(*start),
                            spent_nano: spent,
                        });
                    }
                }
                tx.commit().await?;
                totals.sort();
                Ok((u64::try_from(inserted.len()).unwrap_or(u64::MAX), totals))
            }

            async fn record_spend_impl(
                &self,
                mut recs: Vec<SpendRecord>,
                now_ms: i64,
            ) -> Result<SpendOutcome, StoreError> {
                // Sorted by id: the lock order of the inserts. A repeated id is a duplicate;
                // the first of them (in batch order: the sort is stable) is the one kept.
                recs.sort_by(|a, b| a.id.cmp(&b.id));
                let sent = recs.len();
                recs.dedup_by(|a, b| a.id == b.id);
                let repeated = u64::try_from(sent - recs.len()).unwrap_or(0);
                let tries = if $backend == "sqlite" { ledger::SQLITE_TX_ATTEMPTS } else { ledger::PG_TX_ATTEMPTS };
                let mut attempt = 1;
                loop {
                    let err = match self.spend_tx(&recs, now_ms).await {
                        Ok((inserted, totals)) => {
                            let total = u64::try_from(recs.len()).unwrap_or(0);
                            return Ok(SpendOutcome {
                                inserted,
                                duplicates: total.saturating_sub(inserted) + repeated,
                                totals,
                            });
                        }
                        Err(e) => classify(e),
                    };
                    let transient = match &err {
                        StoreError::Conflict(_) => true,
                        // SQLite: busy or locked after busy_timeout, or the pool was busy.
                        StoreError::Unavailable(_) => $backend == "sqlite",
                        _ => false,
                    };
                    if !transient {
                        return Err(err);
                    }
                    if attempt >= tries {
                        return Err(StoreError::Unavailable(format!(
                            "the spend batch failed {tries} times on transient errors, the last: {err}"
                        )));
                    }
                    tracing::debug!(attempt, error = %err, "spend batch rolled back; trying again");
                    tokio::time::sleep(ledger::backoff(attempt)).await;
                    attempt += 1;
                }
            }

            async fn spend_logs_impl(&self, q: LogQuery) -> Result<Vec<SpendLogRow>, StoreError> {
                let (sql, args) = ledger::logs_sql(&q);
                let query = bind_args!(sqlx::query(AssertSqlSafe(sql)), args);
                let rows = query.fetch_all(&self.pool).await.map_err(classify)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let text = |c: &str| row.try_get::<Option<String>, _>(c);
                    let int = |c: &str| row.try_get::<i64, _>(c);
                    let op: String = row.try_get("operation").map_err(classify)?;
                    out.push(SpendLogRow {
                        record: SpendRecord {
                            id: row.try_get("id").map_err(classify)?,
                            client_request_id: text("client_request_id").map_err(classify)?,
                            key_hash: text("key_hash").map_err(classify)?,
                            team_id: text("team_id").map_err(classify)?,
                            user_id: text("user_id").map_err(classify)?,
                            end_user: text("end_user").map_err(classify)?,
                            model_group: row.try_get("model_group").map_err(classify)?,
                            provider: text("provider").map_err(classify)?,
                            model: text("model").map_err(classify)?,
                            operation: Operation::parse(&op).unwrap_or(Operation::Chat),
                            status: int("status").map_err(classify)?,
                            stream: row.try_get("stream").map_err(classify)?,
                            usage: Usage {
                                input: int("input_tokens").map_err(classify)?,
                                cache_read: int("cache_read_tokens").map_err(classify)?,
                                cache_write_5m: int("cache_write_5m_tokens").map_err(classify)?,
                                cache_write_1h: int("cache_write_1h_tokens").map_err(classify)?,
                                output: int("output_tokens").map_err(classify)?,
                                reasoning: int("reasoning_tokens").map_err(classify)?,
                            },
                            cost_nano: int("cost_nano").map_err(classify)?,
                            estimated: row.try_get("estimated").map_err(classify)?,
                            attempts: int("attempts").map_err(classify)?,
                            start_ms: int("start_ms").map_err(classify)?,
                            end_ms: int("end_ms").map_err(classify)?,
                        },
                        recorded_ms: int("recorded_ms").map_err(classify)?,
                    });
                }
                Ok(out)
            }

            async fn spend_rollup_impl(&self, q: RollupQuery) -> Result<Vec<RollupRow>, StoreError> {
                let (sql, args) = ledger::rollup_sql(&q);
                let query = bind_args!(sqlx::query(AssertSqlSafe(sql)), args);
                let rows = query.fetch_all(&self.pool).await.map_err(classify)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let mut r = RollupRow::default();
                    for d in &q.group {
                        r.dims.insert(*d, row.try_get::<String, _>(d.alias()).map_err(classify)?);
                    }
                    let mut sums = [0i64; 10];
                    for (slot, c) in sums.iter_mut().zip(ledger::ROLLUP_SUMS) {
                        *slot = row.try_get::<Option<i64>, _>(format!("s_{c}").as_str()).map_err(classify)?.unwrap_or(0);
                    }
                    let [requests, failed, estimated, input, cache_read, cw5, cw1, output, reasoning, cost] = sums;
                    r.requests = requests;
                    r.failed_requests = failed;
                    r.estimated_requests = estimated;
                    r.usage = Usage {
                        input,
                        cache_read,
                        cache_write_5m: cw5,
                        cache_write_1h: cw1,
                        output,
                        reasoning,
                    };
                    r.cost_nano = cost;
                    out.push(r);
                }
                Ok(out)
            }

            async fn budget_spent_impl(&self, queries: Vec<SpentQuery>) -> Result<Vec<i64>, StoreError> {
                let mut out = Vec::with_capacity(queries.len());
                for q in queries {
                    let v: Option<i64> = match q {
                        SpentQuery::Lifetime { table, id } => {
                            let sql = format!("SELECT spend FROM {} WHERE {} = $1", table.name, table.pk);
                            sqlx::query(AssertSqlSafe(sql))
                                .bind(id)
                                .fetch_optional(&self.pool)
                                .await
                                .map_err(classify)?
                                .map(|r| r.try_get::<Option<i64>, _>(0))
                                .transpose()
                                .map_err(classify)?
                                .flatten()
                        }
                        SpentQuery::Period { kind, id, start_ms } => sqlx::query(
                            "SELECT spent_nano FROM budget_spend WHERE kind = $1 AND id = $2 AND period_start_ms = $3",
                        )
                        .bind(kind)
                        .bind(id)
                        .bind(start_ms)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(classify)?
                        .map(|r| r.try_get::<i64, _>(0))
                        .transpose()
                        .map_err(classify)?,
                    };
                    out.push(v.unwrap_or(0));
                }
                Ok(out)
            }

            async fn prune_budget_spend_impl(&self, before_ms: i64, batch: i64) -> Result<u64, StoreError> {
                let r = sqlx::query(ledger::PRUNE_BUDGET_SQL)
                    .bind(before_ms)
                    .bind(batch)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(r.rows_affected())
            }

            async fn prune_spend_logs_impl(&self, before_ms: i64, batch: i64) -> Result<u64, StoreError> {
                let r = sqlx::query(ledger::PRUNE_SQL)
                    .bind(before_ms)
                    .bind(batch)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(r.rows_affected())
            }
        }
    };
}

pub(crate) use ledger_store;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::ledger::{Operation, Usage};

    fn rec(id: &str, key: Option<&str>, team: Option<&str>, user: Option<&str>, cost: i64) -> SpendRecord {
        SpendRecord {
            id: id.to_owned(),
            client_request_id: None,
            key_hash: key.map(str::to_owned),
            team_id: team.map(str::to_owned),
            user_id: user.map(str::to_owned),
            end_user: None,
            model_group: "g".into(),
            provider: None,
            model: None,
            operation: Operation::Chat,
            status: 200,
            stream: false,
            usage: Usage { input: 1, output: 2, ..Usage::default() },
            cost_nano: cost,
            estimated: false,
            attempts: 1,
            start_ms: 1_795_620_600_000,
            end_ms: 1_795_620_600_000,
        }
    }

    #[test]
    fn plan_sums_per_row_and_entity_in_lock_order() {
        let a = rec("a", Some("k2"), Some("t"), Some("u"), 10);
        let b = rec("b", Some("k1"), Some("t"), None, 5);
        let c = rec("c", Some("k1"), None, None, 0);
        let p = plan([&a, &b, &c]);
        let ents: Vec<((usize, String), i64)> = p.entities.into_iter().collect();
        assert_eq!(
            ents,
            vec![
                ((1, member_id("t", "u")), 10),
                ((2, "t".into()), 15),
                ((3, "u".into()), 10),
                ((4, "k1".into()), 5),
                ((4, "k2".into()), 10),
            ]
        );
        assert_eq!(p.daily.len(), 3);
        let total: i64 = p.daily.values().map(|d| d.requests).sum();
        assert_eq!(total, 3);
        assert_eq!(ENTITY_TABLES[2], ("teams", "team_id"));
    }

    #[test]
    fn built_sql() {
        assert!(insert_sql(2).ends_with("($25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45, $46, $47, $48) ON CONFLICT (id) DO NOTHING RETURNING id"));
        let (sql, args) = logs_sql(&LogQuery {
            key_hash: Some("h".into()),
            before: Some((5, "x".into())),
            limit: 10,
            ..LogQuery::default()
        });
        assert_eq!(
            sql,
            format!(
                "SELECT {} FROM spend_logs WHERE key_hash = $1 AND start_ms <= $2 AND (start_ms < $2 OR id < $3) \
                 ORDER BY start_ms DESC, id DESC LIMIT $4",
                LOG_COLS.join(", ")
            )
        );
        assert_eq!(args, vec![Arg::Text("h".into()), Arg::Int(5), Arg::Text("x".into()), Arg::Int(10)]);
        let (sql, args) = rollup_sql(&RollupQuery {
            from_day: "2026-01-01".into(),
            to_day: "2026-01-31".into(),
            group: vec![Dim::Day, Dim::TeamId],
            filters: vec![(Dim::TeamId, "t".into())],
            limit: 7,
        });
        assert!(
            sql.starts_with("SELECT day AS d_day, team_id AS d_team_id, CAST(SUM(requests) AS BIGINT) AS s_requests"),
            "{sql}"
        );
        assert!(sql.ends_with("WHERE day >= $1 AND day <= $2 AND team_id = $3 GROUP BY d_day, d_team_id ORDER BY d_day, d_team_id LIMIT $4"), "{sql}");
        assert_eq!(args.len(), 4);
        assert!(backoff(1) >= Duration::from_millis(40) && backoff(1) < Duration::from_millis(80));
    }
}
