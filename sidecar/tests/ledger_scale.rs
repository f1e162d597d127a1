//! The ledger's queries stay index-bound with a million ledger rows: the rows are loaded
//! straight into a SQLite file (one `INSERT … SELECT` over a recursive CTE, and the
//! rollups built from them), then every query the API runs — `/spend/logs` with each
//! filter, dates, pages, request ids; every `/global/spend/report` and summary grouping;
//! the retention sweep — is checked with `EXPLAIN QUERY PLAN`: each step that reads
//! `spend_logs` or `daily_spend` must be an index SEARCH, never a SCAN. Plans are checked
//! with and without `ANALYZE` statistics. Timings are printed, never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Instant;

use sqlx::{AssertSqlSafe, Row, SqlitePool};
use switchyard_sidecar::ledger::{day_of_ms, Dim, LogQuery, RollupQuery};
use switchyard_sidecar::store::ledger::{logs_sql, rollup_sql, Arg, PRUNE_SQL};
use switchyard_sidecar::store::{self, Store};

const ROWS: i64 = 1_000_000;
const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn bulk_load(pool: &SqlitePool, first_ms: i64, step_ms: i64) {
    sqlx::query("PRAGMA synchronous = OFF").execute(pool).await.unwrap();
    // The migration's secondary indexes are built after the load (same definitions,
    // from sqlite_master): much faster than maintaining them row by row.
    let indexes: Vec<(String, String)> = sqlx::query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
         AND tbl_name IN ('spend_logs', 'daily_spend')",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(indexes.len(), 10, "{indexes:?}");
    for (name, _) in &indexes {
        sqlx::query(AssertSqlSafe(format!("DROP INDEX {name}"))).execute(pool).await.unwrap();
    }
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
         INSERT INTO spend_logs (id, client_request_id, key_hash, team_id, user_id, end_user, model_group, provider,
             model, operation, status, stream, input_tokens, cache_read_tokens, cache_write_5m_tokens,
             cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_nano, estimated, attempts, start_ms, end_ms,
             recorded_ms)
         SELECT printf('%032x', i), 'client-' || i, printf('%064x', i % 1000), 't' || (i % 50), 'u' || (i % 200),
             CASE WHEN i % 3 = 0 THEN NULL ELSE 'e' || (i % 5000) END, 'g' || (i % 5), 'openai', 'm' || (i % 5),
             'chat', CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END, i % 2, 100 + i % 17, i % 7, 0, 0, 40 + i % 9,
             i % 3, 1000 + i % 997, 0, 1, {first_ms} + i * {step_ms}, {first_ms} + i * {step_ms} + 800,
             {first_ms} + i * {step_ms} + 900
         FROM n",
        last = ROWS - 1
    );
    sqlx::query(AssertSqlSafe(sql)).execute(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO daily_spend
         SELECT strftime('%Y-%m-%d', start_ms / 1000, 'unixepoch'), COALESCE(key_hash, ''), COALESCE(team_id, ''),
             COALESCE(user_id, ''), COALESCE(end_user, ''), model_group, COALESCE(provider, ''), COALESCE(model, ''),
             COUNT(*), SUM(status NOT BETWEEN 200 AND 299), SUM(estimated), SUM(input_tokens), SUM(cache_read_tokens),
             SUM(cache_write_5m_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens),
             SUM(cost_nano)
         FROM spend_logs GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
    )
    .execute(pool)
    .await
    .unwrap();
    for (_, sql) in &indexes {
        sqlx::query(AssertSqlSafe(sql.clone())).execute(pool).await.unwrap();
    }
}

/// The plan's steps; panics naming the query if one reads a ledger table by a scan.
async fn assert_indexed(pool: &SqlitePool, name: &str, sql: &str, args: &[Arg]) -> Vec<String> {
    let mut q = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
    for a in args {
        q = match a {
            Arg::Text(t) => q.bind(t.clone()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    let steps: Vec<String> = q.fetch_all(pool).await.unwrap().iter().map(|r| r.get::<String, _>("detail")).collect();
    for s in &steps {
        let reads = s.contains("spend_logs") || s.contains("daily_spend");
        assert!(!reads || s.starts_with("SEARCH"), "{name}: a scan of a ledger table: {s:?}\n{sql}\n{steps:?}");
    }
    steps
}

fn log_queries(now: i64) -> Vec<(&'static str, LogQuery)> {
    let key = format!("{:064x}", 7);
    let window = Some(now - 30 * DAY);
    let q = |l: LogQuery| LogQuery { limit: 1001, ..l };
    vec![
        ("logs: last 30 days", q(LogQuery { from_ms: window, ..LogQuery::default() })),
        ("logs: by key", q(LogQuery { key_hash: Some(key.clone()), from_ms: window, ..LogQuery::default() })),
        ("logs: by user", q(LogQuery { user_id: Some("u7".into()), from_ms: window, ..LogQuery::default() })),
        ("logs: by team", q(LogQuery { team_id: Some("t7".into()), from_ms: window, ..LogQuery::default() })),
        ("logs: by end user", q(LogQuery { end_user: Some("e7".into()), from_ms: window, ..LogQuery::default() })),
        ("logs: request id", q(LogQuery { request_id: Some("client-77".into()), ..LogQuery::default() })),
        (
            "logs: dates",
            q(LogQuery { from_ms: Some(now - 10 * DAY), to_ms: Some(now - 9 * DAY), ..LogQuery::default() }),
        ),
        (
            "logs: key and dates",
            q(LogQuery {
                key_hash: Some(key.clone()),
                from_ms: Some(now - 10 * DAY),
                to_ms: Some(now - 9 * DAY),
                ..LogQuery::default()
            }),
        ),
        (
            "logs: key and user, next page",
            q(LogQuery {
                key_hash: Some(key.clone()),
                user_id: Some("u7".into()),
                from_ms: window,
                before: Some((now - 5 * DAY, format!("{:032x}", 5))),
                ..LogQuery::default()
            }),
        ),
        (
            "logs: request id and dates",
            q(LogQuery {
                request_id: Some(format!("{:032x}", 77)),
                from_ms: Some(0),
                to_ms: Some(now),
                ..LogQuery::default()
            }),
        ),
    ]
}

fn rollup_queries(now: i64) -> Vec<(&'static str, RollupQuery)> {
    let (from, to) = (day_of_ms(now - 30 * DAY), day_of_ms(now));
    let key = format!("{:064x}", 7);
    let r = |group: Vec<Dim>, filters: Vec<(Dim, String)>| RollupQuery {
        from_day: from.clone(),
        to_day: to.clone(),
        group,
        filters,
        limit: 100_001,
    };
    vec![
        ("report: by team", r(vec![Dim::Day, Dim::TeamId, Dim::ModelName, Dim::KeyHash], vec![])),
        (
            "report: one team",
            r(vec![Dim::Day, Dim::TeamId, Dim::ModelName, Dim::KeyHash], vec![(Dim::TeamId, "t3".into())]),
        ),
        ("report: by customer", r(vec![Dim::Day, Dim::EndUser, Dim::ModelName, Dim::KeyHash], vec![])),
        ("report: by api_key", r(vec![Dim::KeyHash, Dim::ModelName], vec![])),
        ("report: one api_key", r(vec![Dim::KeyHash, Dim::ModelName], vec![(Dim::KeyHash, key.clone())])),
        ("report: internal user", r(vec![Dim::KeyHash, Dim::ModelName], vec![(Dim::UserId, "u3".into())])),
        (
            "report: team and customer",
            r(
                vec![Dim::Day, Dim::TeamId, Dim::EndUser, Dim::ModelName, Dim::KeyHash],
                vec![(Dim::TeamId, "t3".into()), (Dim::EndUser, "e3".into())],
            ),
        ),
        ("summary: all", r(vec![Dim::Day, Dim::KeyHash, Dim::UserId, Dim::ModelName], vec![])),
        ("summary: by key", r(vec![Dim::Day, Dim::KeyHash, Dim::UserId, Dim::ModelName], vec![(Dim::KeyHash, key)])),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_ledger_rows_reports_stay_index_bound() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("scale.db").display());
    let s: Box<dyn Store> = store::open(&url).await.unwrap();
    let pool = SqlitePool::connect(&url).await.unwrap();
    let now = now_ms();
    // A million requests over the last 60 days (one every ~5.2 s), 1000 keys, 50 teams,
    // 200 users, 5000 end users, 5 models.
    let step = 60 * DAY / ROWS;
    let t = Instant::now();
    bulk_load(&pool, now - 60 * DAY, step).await;
    let rollups: i64 = sqlx::query("SELECT COUNT(*) FROM daily_spend").fetch_one(&pool).await.unwrap().get(0);
    println!("loaded {ROWS} ledger rows and {rollups} rollup rows in {:.1} s", t.elapsed().as_secs_f64());

    for stats in ["without ANALYZE", "with ANALYZE"] {
        if stats == "with ANALYZE" {
            sqlx::query("ANALYZE").execute(&pool).await.unwrap();
        }
        for (name, q) in log_queries(now) {
            let (sql, args) = logs_sql(&q);
            let plan = assert_indexed(&pool, name, &sql, &args).await;
            println!("[{stats}] {name}: {}", plan.join(" | "));
        }
        for (name, q) in rollup_queries(now) {
            let (sql, args) = rollup_sql(&q);
            let plan = assert_indexed(&pool, name, &sql, &args).await;
            println!("[{stats}] {name}: {}", plan.join(" | "));
        }
        let prune = [Arg::Int(now - 59 * DAY), Arg::Int(1000)];
        let plan = assert_indexed(&pool, "retention sweep", PRUNE_SQL, &prune).await;
        println!("[{stats}] retention sweep: {}", plan.join(" | "));
    }

    // Timings through the store (printed only).
    for (name, q) in log_queries(now) {
        let t = Instant::now();
        let rows = s.spend_logs(q).await.unwrap();
        println!("{name}: {} rows in {:.1} ms", rows.len(), t.elapsed().as_secs_f64() * 1000.0);
    }
    for (name, q) in rollup_queries(now) {
        let t = Instant::now();
        let rows = s.spend_rollup(q).await.unwrap();
        println!("{name}: {} groups in {:.1} ms", rows.len(), t.elapsed().as_secs_f64() * 1000.0);
    }
    let batch: Vec<_> = (0..1000u64)
        .map(|n| common::record(10_000_000 + n, Some("k"), Some("t1"), Some("u1"), Some("e1"), 1000))
        .collect();
    let t = Instant::now();
    let o = s.record_spend(batch.clone(), now).await.unwrap();
    println!(
        "a batch of 1000 new records on top: {} inserted in {:.1} ms",
        o.inserted,
        t.elapsed().as_secs_f64() * 1000.0
    );
    let t = Instant::now();
    let o = s.record_spend(batch, now).await.unwrap();
    println!("the same batch again: {} duplicates in {:.1} ms", o.duplicates, t.elapsed().as_secs_f64() * 1000.0);
    let t = Instant::now();
    let mut deleted = 0;
    loop {
        let n = s.prune_spend_logs(now - 59 * DAY, 1000).await.unwrap();
        deleted += n;
        if n < 1000 {
            break;
        }
    }
    println!(
        "retention: {deleted} rows of the oldest day deleted, 1000 at a time, in {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    assert!(deleted > 10_000);
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM spend_logs").fetch_one(&pool).await.unwrap().get(0);
    assert_eq!(left, ROWS + 1000 - deleted as i64);
}

/// The same million rows on PostgreSQL (`generate_series`, then `ANALYZE`): no plan reads
/// `spend_logs` by a sequential scan. (`daily_spend` may be: for a range covering most of
/// the rollups the planner rightly reads them whole; they are the rollups.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_ledger_rows_on_postgres_never_scan_the_ledger() {
    let Some(pg) = common::Pg::start() else {
        eprintln!("PostgreSQL is not installed: skipped");
        return;
    };
    let url = pg.create_database("scale").await;
    let s: Box<dyn Store> = store::open(&url).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let now = now_ms();
    let step = 60 * DAY / ROWS;
    let t = Instant::now();
    // Secondary indexes built after the load, from their own definitions.
    let indexes: Vec<(String, String)> = sqlx::query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('spend_logs', 'daily_spend') \
         AND indexname NOT LIKE '%_pkey'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(indexes.len(), 10, "{indexes:?}");
    for (name, _) in &indexes {
        sqlx::query(AssertSqlSafe(format!("DROP INDEX {name}"))).execute(&pool).await.unwrap();
    }
    let sql = format!(
        "INSERT INTO spend_logs (id, client_request_id, key_hash, team_id, user_id, end_user, model_group, provider,
             model, operation, status, stream, input_tokens, cache_read_tokens, cache_write_5m_tokens,
             cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_nano, estimated, attempts, start_ms, end_ms,
             recorded_ms)
         SELECT lpad(to_hex(i), 32, '0'), 'client-' || i, lpad(to_hex(i % 1000), 64, '0'), 't' || (i % 50),
             'u' || (i % 200), CASE WHEN i % 3 = 0 THEN NULL ELSE 'e' || (i % 5000) END, 'g' || (i % 5), 'openai',
             'm' || (i % 5), 'chat', CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END, i % 2 = 0, 100 + i % 17, i % 7, 0, 0,
             40 + i % 9, i % 3, 1000 + i % 997, false, 1, {first} + i * {step}, {first} + i * {step} + 800,
             {first} + i * {step} + 900
         FROM generate_series(0::bigint, {last}::bigint) AS i",
        first = now - 60 * DAY,
        last = ROWS - 1
    );
    sqlx::query(AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    println!("  ledger rows inserted: {:.1} s", t.elapsed().as_secs_f64());
    sqlx::query("SET work_mem = '256MB'").execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO daily_spend
         SELECT to_char(to_timestamp(start_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), COALESCE(key_hash, ''),
             COALESCE(team_id, ''), COALESCE(user_id, ''), COALESCE(end_user, ''), model_group, COALESCE(provider, ''),
             COALESCE(model, ''), COUNT(*), COUNT(*) FILTER (WHERE status NOT BETWEEN 200 AND 299),
             COUNT(*) FILTER (WHERE estimated), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_5m_tokens),
             SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_nano)
         FROM spend_logs GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
    )
    .execute(&pool)
    .await
    .unwrap();
    println!("  rollups built: {:.1} s", t.elapsed().as_secs_f64());
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET maintenance_work_mem = '256MB'").execute(&mut *conn).await.unwrap();
    for (_, def) in &indexes {
        sqlx::query(AssertSqlSafe(def.clone())).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    println!("  indexes built: {:.1} s", t.elapsed().as_secs_f64());
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    println!("loaded {ROWS} ledger rows into PostgreSQL in {:.1} s", t.elapsed().as_secs_f64());
    let explain = |sql: String, args: Vec<Arg>| {
        let pool = pool.clone();
        async move {
            let mut q = sqlx::query(AssertSqlSafe(format!("EXPLAIN {sql}")));
            for a in args {
                q = match a {
                    Arg::Text(t) => q.bind(t),
                    Arg::Int(i) => q.bind(i),
                };
            }
            q.fetch_all(&pool).await.unwrap().iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>().join("\n")
        }
    };
    for (name, q) in log_queries(now) {
        let (sql, args) = logs_sql(&q);
        let plan = explain(sql, args).await;
        assert!(!plan.contains("Seq Scan on spend_logs"), "{name}:\n{plan}");
        println!("{name}:\n{plan}");
        let t = Instant::now();
        let rows = s.spend_logs(q).await.unwrap();
        println!("  {} rows in {:.1} ms", rows.len(), t.elapsed().as_secs_f64() * 1000.0);
    }
    for (name, q) in rollup_queries(now) {
        let (sql, args) = rollup_sql(&q);
        let plan = explain(sql, args).await;
        assert!(!plan.contains("spend_logs"), "{name}: reports read the rollups only:\n{plan}");
        println!("{name}:\n{plan}");
        let t = Instant::now();
        let rows = s.spend_rollup(q).await.unwrap();
        println!("  {} groups in {:.1} ms", rows.len(), t.elapsed().as_secs_f64() * 1000.0);
    }
    let plan = explain(PRUNE_SQL.to_owned(), vec![Arg::Int(now - 59 * DAY), Arg::Int(1000)]).await;
    assert!(!plan.contains("Seq Scan on spend_logs"), "retention:\n{plan}");
    println!("retention sweep:\n{plan}");
}
