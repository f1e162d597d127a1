//! The SQL behind [`Store`], written once and instantiated for SQLite and PostgreSQL by
//! `sql_store!` (sqlx's query functions only: nothing here needs a database to build).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr};

use super::grants::{Grant, GrantAsk};
use super::ledger::{self, bind_args, budget_fields, ledger_store};
use super::{
    build_record, record_values, to_sql, BoxFut, Change, ChangePage, Filter, Op, Page, Record, SpentQuery, SqlVal,
    Store, StoreError,
};
use crate::ledger::{
    BudgetTotal, LogQuery, Operation, RollupQuery, RollupRow, SpendLogRow, SpendOutcome, SpendRecord, Usage,
};
use crate::schema::{ColTy, Table};

const SQLITE_INIT: &str = include_str!("../../migrations/sqlite/0001_init.sql");
const POSTGRES_INIT: &str = include_str!("../../migrations/postgres/0001_init.sql");
const SQLITE_WINDOWS: &str = include_str!("../../migrations/sqlite/0002_rate_windows.sql");
const POSTGRES_WINDOWS: &str = include_str!("../../migrations/postgres/0002_rate_windows.sql");
const SQLITE_LEDGER: &str = include_str!("../../migrations/sqlite/0003_spend_ledger.sql");
const POSTGRES_LEDGER: &str = include_str!("../../migrations/postgres/0003_spend_ledger.sql");
const SQLITE_BUDGETS: &str = include_str!("../../migrations/sqlite/0004_budgets.sql");
const POSTGRES_BUDGETS: &str = include_str!("../../migrations/postgres/0004_budgets.sql");

fn migrator(steps: [&'static str; 4]) -> Migrator {
    let [init, windows, ledger, budgets] = steps;
    Migrator::with_migrations(vec![
        Migration::new(1, "init".into(), MigrationType::Simple, init.into_sql_str(), false),
        Migration::new(2, "rate windows".into(), MigrationType::Simple, windows.into_sql_str(), false),
        Migration::new(3, "spend ledger".into(), MigrationType::Simple, ledger.into_sql_str(), false),
        Migration::new(4, "budgets".into(), MigrationType::Simple, budgets.into_sql_str(), false),
    ])
}

/// How many times a commit is run on a deadlock or serialization failure.
const COMMIT_ATTEMPTS: u32 = 4;

/// sqlx's error → ours: connection-level failures are "unavailable" (the API's 503).
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(d) => {
            let msg = d.message().to_owned();
            // SQLITE_BUSY / SQLITE_LOCKED after busy_timeout; PostgreSQL: admin shutdown,
            // cannot connect now, too many connections.
            let code = d.code().map(|c| c.into_owned()).unwrap_or_default();
            if msg.contains("database is locked") || ["57P01", "57P03", "53300", "5", "6"].contains(&code.as_str()) {
                StoreError::Unavailable(msg)
            } else if code == "40P01" || code == "40001" {
                StoreError::Conflict(msg)
            } else if code.len() == 5 && code.starts_with("22") {
                StoreError::Invalid(msg)
            } else {
                StoreError::Db(msg)
            }
        }
        _ => StoreError::Db(e.to_string()),
    }
}

/// A unique violation → which field of `record` it was about.
fn duplicate(e: &sqlx::Error, table: &Table, record: &Record) -> Option<StoreError> {
    let d = e.as_database_error()?;
    if !d.is_unique_violation() {
        return None;
    }
    let text = format!("{} {}", d.message(), d.constraint().unwrap_or_default());
    let field = table
        .unique
        .iter()
        .copied()
        .find(|u| text.contains(&format!("{}_{u}", table.name)) || text.contains(&format!("{}.{u}", table.name)))
        .unwrap_or(table.pk);
    let value = match record.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Some(StoreError::Duplicate { field: field.to_owned(), value })
}

fn column_list(table: &Table) -> String {
    table.cols.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

fn where_clause(filters: &[Filter], first: usize) -> (String, Vec<SqlVal>) {
    let mut parts = Vec::new();
    let mut args = Vec::new();
    for f in filters {
        match f {
            Filter::Eq(col, v) => {
                if v.is_null() {
                    parts.push(format!("{col} IS NULL"));
                } else {
                    args.push(match v {
                        Value::Bool(b) => SqlVal::Bool(*b),
                        Value::Number(n) => SqlVal::Int(n.as_i64()),
                        _ => to_sql(ColTy::Text, Some(v)),
                    });
                    parts.push(format!("{col} = ${}", first + args.len()));
                }
            }
            Filter::In(col, values) => {
                if values.is_empty() {
                    parts.push("1 = 0".to_owned());
                }
                let mut marks = Vec::new();
                for v in values {
                    args.push(SqlVal::Text(Some(v.clone())));
                    marks.push(format!("${}", first + args.len()));
                }
                if !marks.is_empty() {
                    parts.push(format!("{col} IN ({})", marks.join(", ")));
                }
            }
        }
    }
    if parts.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", parts.join(" AND ")), args)
    }
}

macro_rules! bind_all {
    ($q:expr, $vals:expr) => {{
        let mut q = $q;
        for v in $vals {
            q = match v {
                SqlVal::Text(t) => q.bind(t),
                SqlVal::Int(i) => q.bind(i),
                SqlVal::Bool(b) => q.bind(b),
            };
        }
        q
    }};
}

macro_rules! read_row {
    ($row:expr, $table:expr) => {{
        let row = $row;
        let mut values = Vec::with_capacity($table.cols.len());
        for c in $table.cols {
            let v = match c.ty {
                ColTy::Text | ColTy::Json => SqlVal::Text(row.try_get::<Option<String>, _>(c.name).map_err(classify)?),
                ColTy::Int | ColTy::Money => SqlVal::Int(row.try_get::<Option<i64>, _>(c.name).map_err(classify)?),
                ColTy::Bool => SqlVal::Bool(row.try_get::<Option<bool>, _>(c.name).map_err(classify)?.unwrap_or(false)),
            };
            values.push(v);
        }
        build_record($table, values)
    }};
}

macro_rules! sql_store {
    ($store:ident, $pool:ty, $begin:expr, $lock_row:expr, $name:expr) => {
        impl $store {
            async fn get_impl(&self, table: &'static Table, id: &str) -> Result<Option<Record>, StoreError> {
                let sql = format!("SELECT {} FROM {} WHERE {} = $1", column_list(table), table.name, table.pk);
                let row = sqlx::query(AssertSqlSafe(sql))
                    .bind(id.to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                match row {
                    Some(row) => Ok(Some(read_row!(row, table))),
                    None => Ok(None),
                }
            }

            async fn find_impl(
                &self,
                table: &'static Table,
                filters: Vec<Filter>,
                page: Option<Page>,
            ) -> Result<(Vec<Record>, i64), StoreError> {
                let (clause, args) = where_clause(&filters, 0);
                let mut sql = format!(
                    "SELECT {} FROM {}{} ORDER BY created_at, {}",
                    column_list(table),
                    table.name,
                    clause,
                    table.pk
                );
                if let Some(p) = page {
                    sql.push_str(&format!(" LIMIT {} OFFSET {}", p.limit.max(0), p.offset.max(0)));
                }
                let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), args.clone())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(read_row!(row, table));
                }
                let total = if page.is_some() {
                    let sql = format!("SELECT COUNT(*) AS n FROM {}{}", table.name, clause);
                    let row = bind_all!(sqlx::query(AssertSqlSafe(sql)), args)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(classify)?;
                    row.try_get::<i64, _>("n").map_err(classify)?
                } else {
                    i64::try_from(out.len()).unwrap_or(i64::MAX)
                };
                Ok((out, total))
            }

            /// Runs the ops; a deadlock or serialization failure runs them again (the
            /// transaction rolled back whole), a few times.
            async fn commit_impl(&self, ops: Vec<Op>) -> Result<i64, StoreError> {
                let mut attempt = 1;
                loop {
                    match self.commit_once(ops.clone()).await {
                        Err(StoreError::Conflict(m)) if attempt < COMMIT_ATTEMPTS => {
                            tracing::debug!(attempt, error = %m, "commit rolled back; trying again");
                            tokio::time::sleep(ledger::backoff(attempt)).await;
                            attempt += 1;
                        }
                        other => return other,
                    }
                }
            }

            async fn commit_once(&self, ops: Vec<Op>) -> Result<i64, StoreError> {
                let mut tx = self.pool.begin_with($begin).await.map_err(classify)?;
                let seq: i64 = sqlx::query("UPDATE change_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?
                    .try_get("seq")
                    .map_err(classify)?;
                let mut changed: BTreeSet<(&'static str, String)> = BTreeSet::new();
                for op in ops {
                    let clears = matches!(op, Op::ClearWhere { .. });
                    match op {
                        Op::Insert { table, mut record } => {
                            record.insert("version".to_owned(), Value::from(seq));
                            let names = column_list(table);
                            let marks: Vec<String> = (1..=table.cols.len()).map(|i| format!("${i}")).collect();
                            let sql = format!("INSERT INTO {} ({names}) VALUES ({})", table.name, marks.join(", "));
                            let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), record_values(table, &record));
                            if let Err(e) = q.execute(&mut *tx).await {
                                return Err(duplicate(&e, table, &record).unwrap_or_else(|| classify(e)));
                            }
                            if let (Some(kind), Some(id)) =
                                (table.change_kind, record.get(table.pk).and_then(Value::as_str))
                            {
                                changed.insert((kind, id.to_owned()));
                            }
                        }
                        Op::Update { table, id, version, mut record } => {
                            record.insert("version".to_owned(), Value::from(seq));
                            // Ledger-owned columns are never written back (Op::AddSpend).
                            let (cols, values): (Vec<_>, Vec<_>) = table
                                .cols
                                .iter()
                                .zip(record_values(table, &record))
                                .filter(|(c, _)| !table.ledger_owned(c.name))
                                .unzip();
                            let n = cols.len();
                            let sets: Vec<String> =
                                cols.iter().enumerate().map(|(i, c)| format!("{} = ${}", c.name, i + 1)).collect();
                            let sql = format!(
                                "UPDATE {} SET {} WHERE {} = ${} AND version = ${}",
                                table.name,
                                sets.join(", "),
                                table.pk,
                                n + 1,
                                n + 2
                            );
                            let q = bind_all!(sqlx::query(AssertSqlSafe(sql)), values)
                                .bind(id.clone())
                                .bind(version);
                            match q.execute(&mut *tx).await {
                                Ok(r) if r.rows_affected() == 1 => {}
                                Ok(_) => return Err(StoreError::Stale),
                                Err(e) => return Err(duplicate(&e, table, &record).unwrap_or_else(|| classify(e))),
                            }
                            if let Some(kind) = table.change_kind {
                                changed.insert((kind, id));
                            }
                        }
                        Op::Delete { table, id } => {
                            let sql = format!("DELETE FROM {} WHERE {} = $1", table.name, table.pk);
                            let r = sqlx::query(AssertSqlSafe(sql))
                                .bind(id.clone())
                                .execute(&mut *tx)
                                .await
                                .map_err(classify)?;
                            if let (Some(kind), true) = (table.change_kind, r.rows_affected() > 0) {
                                changed.insert((kind, id));
                            }
                        }
                        Op::DeleteWhere { table, col, value } => {
                            let sql = format!("DELETE FROM {} WHERE {col} = $1 RETURNING {}", table.name, table.pk);
                            let rows = sqlx::query(AssertSqlSafe(sql))
                                .bind(value)
                                .fetch_all(&mut *tx)
                                .await
                                .map_err(classify)?;
                            if let Some(kind) = table.change_kind {
                                for row in rows {
                                    changed.insert((kind, row.try_get::<String, _>(0).map_err(classify)?));
                                }
                            }
                        }
                        Op::AddSpend { table, id, nano } => {
                            let sql = format!(
                                "UPDATE {} SET spend = COALESCE(spend, 0) + $1 WHERE {} = $2",
                                table.name, table.pk
                            );
                            sqlx::query(AssertSqlSafe(sql))
                                .bind(nano)
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                                .map_err(classify)?;
                        }
                        Op::CopySpend { table, from, to } => {
                            let sql = format!("SELECT spend FROM {} WHERE {} = $1", table.name, table.pk);
                            let spend: Option<i64> = sqlx::query(AssertSqlSafe(sql))
                                .bind(from)
                                .fetch_optional(&mut *tx)
                                .await
                                .map_err(classify)?
                                .map(|r| r.try_get::<Option<i64>, _>(0))
                                .transpose()
                                .map_err(classify)?
                                .flatten();
                            let sql = format!("UPDATE {} SET spend = $1 WHERE {} = $2", table.name, table.pk);
                            sqlx::query(AssertSqlSafe(sql))
                                .bind(spend)
                                .bind(to)
                                .execute(&mut *tx)
                                .await
                                .map_err(classify)?;
                        }
                        Op::ClearWhere { table, col, value } | Op::Touch { table, col, value } => {
                            // Both publish every row they reach as changed; a clear also
                            // unlinks it.
                            let unlink = if clears { format!("{col} = NULL, ") } else { String::new() };
                            let sql = format!(
                                "UPDATE {} SET {unlink}version = $1 WHERE {col} = $2 RETURNING {}",
                                table.name, table.pk
                            );
                            let rows = sqlx::query(AssertSqlSafe(sql))
                                .bind(seq)
                                .bind(value)
                                .fetch_all(&mut *tx)
                                .await
                                .map_err(classify)?;
                            if let Some(kind) = table.change_kind {
                                for row in rows {
                                    changed.insert((kind, row.try_get::<String, _>(0).map_err(classify)?));
                                }
                            }
                        }
                        Op::CopyBudgetSpend { from, to } => {
                            for sql in ledger::COPY_BUDGET_SPEND {
                                sqlx::query(sql)
                                    .bind(from.clone())
                                    .bind(to.clone())
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(classify)?;
                            }
                        }
                    }
                }
                let at = crate::time::now();
                for (kind, id) in changed {
                    sqlx::query("INSERT INTO change_feed (seq, kind, id, at) VALUES ($1, $2, $3, $4)")
                        .bind(seq)
                        .bind(kind)
                        .bind(id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                }
                tx.commit().await.map_err(classify)?;
                Ok(seq)
            }

            async fn changes_impl(&self, since: i64, limit: i64) -> Result<ChangePage, StoreError> {
                let latest: i64 = sqlx::query("SELECT seq FROM change_seq WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(classify)?
                    .try_get("seq")
                    .map_err(classify)?;
                // The sequence number of the `limit`-th change after `since`; a sequence
                // number's changes are returned whole, so the page ends at one.
                let limit = limit.max(1);
                let last: Option<i64> =
                    sqlx::query("SELECT seq FROM change_feed WHERE seq > $1 ORDER BY seq LIMIT 1 OFFSET $2")
                        .bind(since)
                        .bind(limit - 1)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(classify)?
                        .map(|r| r.try_get::<i64, _>("seq"))
                        .transpose()
                        .map_err(classify)?;
                let upto = last.unwrap_or(latest);
                let rows = sqlx::query(
                    "SELECT seq, kind, id FROM change_feed WHERE seq > $1 AND seq <= $2 ORDER BY seq, kind, id",
                )
                .bind(since)
                .bind(upto)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
                let mut changes = Vec::with_capacity(rows.len());
                for row in rows {
                    changes.push(Change {
                        seq: row.try_get("seq").map_err(classify)?,
                        kind: row.try_get("kind").map_err(classify)?,
                        id: row.try_get("id").map_err(classify)?,
                    });
                }
                Ok(ChangePage { changes, latest })
            }

            async fn seq_before_impl(&self, at: i64) -> Result<i64, StoreError> {
                sqlx::query(
                    "SELECT COALESCE((SELECT MIN(seq) - 1 FROM change_feed WHERE at >= $1), \
                     (SELECT seq FROM change_seq WHERE id = 1)) AS s",
                )
                .bind(at)
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?
                .try_get("s")
                .map_err(classify)
            }

            async fn grant_impl(&self, window: i64, asks: Vec<GrantAsk>) -> Result<Vec<Grant>, StoreError> {
                // Rows are locked in one order (kind, id), so two grant transactions over
                // the same entities cannot deadlock.
                let mut order: Vec<(usize, &GrantAsk)> = asks.iter().enumerate().collect();
                order.sort_by(|(_, a), (_, b)| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
                let mut grants = vec![None; asks.len()];
                let mut tx = self.pool.begin_with($begin).await.map_err(classify)?;
                for (i, ask) in order {
                    sqlx::query(
                        "INSERT INTO rate_windows (kind, id, window_id, requests, tokens) VALUES ($1, $2, $3, 0, 0) \
                         ON CONFLICT (kind, id, window_id) DO NOTHING",
                    )
                    .bind(&ask.kind)
                    .bind(&ask.id)
                    .bind(window)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "SELECT requests, tokens FROM rate_windows WHERE kind = $1 AND id = $2 AND window_id = $3{}",
                        $lock_row
                    )))
                    .bind(&ask.kind)
                    .bind(&ask.id)
                    .bind(window)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                    let out: (i64, i64) =
                        (row.try_get("requests").map_err(classify)?, row.try_get("tokens").map_err(classify)?);
                    let grant = ask.grant(out);
                    if grant.requests > 0 || grant.tokens > 0 {
                        sqlx::query(
                            "UPDATE rate_windows SET requests = $4, tokens = $5 \
                             WHERE kind = $1 AND id = $2 AND window_id = $3",
                        )
                        .bind(&ask.kind)
                        .bind(&ask.id)
                        .bind(window)
                        .bind(grant.granted_requests)
                        .bind(grant.granted_tokens)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    }
                    if let Some(slot) = grants.get_mut(i) {
                        *slot = Some(grant);
                    }
                }
                tx.commit().await.map_err(classify)?;
                Ok(grants.into_iter().flatten().collect())
            }

            async fn sweep_windows_impl(&self, before: i64) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM rate_windows WHERE window_id < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(r.rows_affected())
            }
        }

        impl Store for $store {
            fn backend(&self) -> &'static str {
                $name
            }
            fn ping(&self) -> BoxFut<'_, ()> {
                Box::pin(async move {
                    sqlx::query("SELECT 1").execute(&self.pool).await.map_err(classify)?;
                    Ok(())
                })
            }
            fn get<'a>(&'a self, table: &'static Table, id: &'a str) -> BoxFut<'a, Option<Record>> {
                Box::pin(self.get_impl(table, id))
            }
            fn find(
                &self,
                table: &'static Table,
                filters: Vec<Filter>,
                page: Option<Page>,
            ) -> BoxFut<'_, (Vec<Record>, i64)> {
                Box::pin(self.find_impl(table, filters, page))
            }
            fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, i64> {
                Box::pin(self.commit_impl(ops))
            }
            fn changes(&self, since: i64, limit: i64) -> BoxFut<'_, ChangePage> {
                Box::pin(self.changes_impl(since, limit))
            }
            fn seq_before(&self, at: i64) -> BoxFut<'_, i64> {
                Box::pin(self.seq_before_impl(at))
            }
            fn grant(&self, window: i64, asks: Vec<GrantAsk>) -> BoxFut<'_, Vec<Grant>> {
                Box::pin(self.grant_impl(window, asks))
            }
            fn sweep_windows(&self, before: i64) -> BoxFut<'_, u64> {
                Box::pin(self.sweep_windows_impl(before))
            }
            fn record_spend(&self, records: Vec<SpendRecord>, now_ms: i64) -> BoxFut<'_, SpendOutcome> {
                Box::pin(self.record_spend_impl(records, now_ms))
            }
            fn spend_logs(&self, query: LogQuery) -> BoxFut<'_, Vec<SpendLogRow>> {
                Box::pin(self.spend_logs_impl(query))
            }
            fn spend_rollup(&self, query: RollupQuery) -> BoxFut<'_, Vec<RollupRow>> {
                Box::pin(self.spend_rollup_impl(query))
            }
            fn prune_spend_logs(&self, before_ms: i64, batch: i64) -> BoxFut<'_, u64> {
                Box::pin(self.prune_spend_logs_impl(before_ms, batch))
            }
            fn budget_spent(&self, queries: Vec<SpentQuery>) -> BoxFut<'_, Vec<i64>> {
                Box::pin(self.budget_spent_impl(queries))
            }
            fn prune_budget_spend(&self, before_ms: i64, batch: i64) -> BoxFut<'_, u64> {
                Box::pin(self.prune_budget_spend_impl(before_ms, batch))
            }
            fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
                Box::pin(self.pool.close())
            }
        }
    };
}

/// A SQLite file: WAL (readers never block the writer), `synchronous=NORMAL` (a commit
/// survives a kill -9 of the sidecar; `FULL` would also survive power loss), 5 s
/// `busy_timeout`, writers start with `BEGIN IMMEDIATE`.
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Db(format!("bad sqlite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(classify)?;
        migrator([SQLITE_INIT, SQLITE_WINDOWS, SQLITE_LEDGER, SQLITE_BUDGETS])
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(format!("migration failed: {e}")))?;
        Ok(SqliteStore { pool })
    }
}

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(classify)?;
        // sqlx takes an advisory lock around migrations: sidecars starting together are safe.
        migrator([POSTGRES_INIT, POSTGRES_WINDOWS, POSTGRES_LEDGER, POSTGRES_BUDGETS])
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(format!("migration failed: {e}")))?;
        Ok(PgStore { pool })
    }
}

// SQLite's `BEGIN IMMEDIATE` already serialises writers; PostgreSQL locks the row.
sql_store!(SqliteStore, SqlitePool, "BEGIN IMMEDIATE", "", "sqlite");
sql_store!(PgStore, PgPool, "BEGIN", " FOR UPDATE", "postgres");
ledger_store!(SqliteStore, "BEGIN IMMEDIATE", "sqlite");
ledger_store!(PgStore, "BEGIN", "postgres");
