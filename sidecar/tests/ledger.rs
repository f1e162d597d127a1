//! The spend ledger's store on SQLite and PostgreSQL: a batch resent (whole and
//! overlapping) moves the aggregates once; concurrent overlapping batches from several
//! tasks and two stores (two sidecars) end exact without an error; admin writes never
//! lose the ledger's additions; regenerated keys take their spend along; retention; the
//! log pages. PostgreSQL runs when Debian's server is installed (as `make test` does),
//! started here on loopback; otherwise those scenarios say so and pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{kh, record, rid, t0, Pg};
use serde_json::{json, Map, Value};
use switchyard_sidecar::ledger::{day_of_ms, Dim, LogQuery, RollupQuery, SpendRecord};
use switchyard_sidecar::schema::{member_id, to_nano, END_USERS, KEYS, TEAMS, TEAM_MEMBERS, USERS};
use switchyard_sidecar::store::{self, spend_change, Op, Store};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// Team t1 and t2, users u1 and u2, memberships t1/u1 and t2/u2, keys k1..k4 and end
/// user e1.
async fn entities(s: &dyn Store) {
    let mut ops = vec![];
    for t in ["t1", "t2"] {
        ops.push(Op::Insert {
            table: &TEAMS,
            record: obj(json!({"team_id": t, "team_alias": format!("alias-{t}"), "spend": 0.0, "created_at": 1, "updated_at": 1})),
        });
    }
    for (u, t) in [("u1", "t1"), ("u2", "t2")] {
        ops.push(Op::Insert {
            table: &USERS,
            record: obj(json!({"user_id": u, "spend": 0.0, "created_at": 1, "updated_at": 1})),
        });
        ops.push(Op::Insert {
            table: &TEAM_MEMBERS,
            record: obj(json!({"member_id": member_id(t, u), "team_id": t, "user_id": u, "spend": 0.0, "created_at": 1, "updated_at": 1})),
        });
    }
    for (k, t, u) in [("k1", "t1", "u1"), ("k2", "t1", "u1"), ("k3", "t2", "u2"), ("k4", "t2", "u2")] {
        ops.push(Op::Insert {
            table: &KEYS,
            record: obj(
                json!({"token": kh(k), "team_id": t, "user_id": u, "spend": 0.0, "created_at": 1, "updated_at": 1}),
            ),
        });
    }
    ops.push(Op::Insert {
        table: &END_USERS,
        record: obj(json!({"user_id": "e1", "spend": 0.0, "created_at": 1, "updated_at": 1})),
    });
    s.commit(ops).await.unwrap();
}

/// `(key, team, user, end user)` of record `n`: spread over the entities.
fn who(n: u64) -> (&'static str, &'static str, &'static str, Option<&'static str>) {
    let (k, t, u) = [("k1", "t1", "u1"), ("k2", "t1", "u1"), ("k3", "t2", "u2"), ("k4", "t2", "u2")][(n % 4) as usize];
    (k, t, u, n.is_multiple_of(3).then_some("e1"))
}

fn rec(n: u64) -> SpendRecord {
    let (k, t, u, e) = who(n);
    record(n, Some(k), Some(t), Some(u), e, 1_000 + n as i64 * 17)
}

async fn spend_nano(s: &dyn Store, table: &'static switchyard_sidecar::schema::Table, id: &str) -> i64 {
    let r = s.get(table, id).await.unwrap().unwrap_or_else(|| panic!("{} {id} missing", table.name));
    to_nano(r.get("spend").and_then(Value::as_f64).unwrap_or(0.0))
}

/// Every aggregate equals the sum over the distinct records `ids`.
async fn assert_aggregates(s: &dyn Store, ids: &BTreeSet<u64>) {
    let mut keys: BTreeMap<&str, i64> = BTreeMap::new();
    let mut teams: BTreeMap<&str, i64> = BTreeMap::new();
    let mut users: BTreeMap<&str, i64> = BTreeMap::new();
    let mut end_user = 0;
    let (mut tokens, mut cost) = (0, 0);
    for n in ids {
        let r = rec(*n);
        let (k, t, u, e) = who(*n);
        *keys.entry(k).or_default() += r.cost_nano;
        *teams.entry(t).or_default() += r.cost_nano;
        *users.entry(u).or_default() += r.cost_nano;
        if e.is_some() {
            end_user += r.cost_nano;
        }
        tokens += r.usage.total();
        cost += r.cost_nano;
    }
    for k in ["k1", "k2", "k3", "k4"] {
        assert_eq!(spend_nano(s, &KEYS, &kh(k)).await, keys.get(k).copied().unwrap_or(0), "key {k}");
    }
    for (t, u) in [("t1", "u1"), ("t2", "u2")] {
        let want = teams.get(t).copied().unwrap_or(0);
        assert_eq!(spend_nano(s, &TEAMS, t).await, want, "team {t}");
        assert_eq!(spend_nano(s, &TEAM_MEMBERS, &member_id(t, u)).await, want, "membership {t}/{u}");
        assert_eq!(spend_nano(s, &USERS, u).await, users.get(u).copied().unwrap_or(0), "user {u}");
    }
    assert_eq!(spend_nano(s, &END_USERS, "e1").await, end_user, "end user");
    let all = s
        .spend_rollup(RollupQuery {
            from_day: "2000-01-01".into(),
            to_day: "2999-12-31".into(),
            group: vec![],
            filters: vec![],
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].requests, all[0].cost_nano, all[0].usage.total()), (ids.len() as i64, cost, tokens));
    let logs = s.spend_logs(LogQuery { limit: 100_000, ..LogQuery::default() }).await.unwrap();
    let found: BTreeSet<String> = logs.iter().map(|l| l.record.id.clone()).collect();
    assert_eq!(found, ids.iter().map(|n| rid(*n)).collect::<BTreeSet<_>>());
}

async fn resend_moves_aggregates_once(s: &dyn Store) {
    entities(s).await;
    let now = t0() + 3_600_000;
    let b1: Vec<SpendRecord> = (0..10).map(rec).collect();
    let o = s.record_spend(b1.clone(), now).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (10, 0));
    assert_aggregates(s, &(0..10).collect()).await;
    // The same batch again (its 200 was lost): nothing moves.
    let o = s.record_spend(b1.clone(), now).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (0, 10));
    assert_aggregates(s, &(0..10).collect()).await;
    // Overlapping: the last five again with five new, in another order.
    let mut b2: Vec<SpendRecord> = (5..15).rev().map(rec).collect();
    // A record repeated inside the batch counts once.
    b2.push(rec(12));
    let o = s.record_spend(b2, now).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (5, 6));
    assert_aggregates(s, &(0..15).collect()).await;
    // A resend with a different cost is still a duplicate: the first one counted stands.
    let mut changed = rec(3);
    changed.cost_nano = 999_999_999;
    let o = s.record_spend(vec![changed], now).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (0, 1));
    assert_aggregates(s, &(0..15).collect()).await;
    // Spend of a key, team and user that no longer (or never) exist is still recorded.
    let ghost = record(900, Some("gone"), Some("no-team"), Some("no-user"), Some("stranger"), 5_000);
    let o = s.record_spend(vec![ghost], now).await.unwrap();
    assert_eq!(o.inserted, 1);
    let rows = s
        .spend_rollup(RollupQuery {
            from_day: "2000-01-01".into(),
            to_day: "2999-12-31".into(),
            group: vec![Dim::KeyHash, Dim::TeamId, Dim::EndUser],
            filters: vec![(Dim::KeyHash, kh("gone"))],
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].dim(Dim::TeamId), rows[0].dim(Dim::EndUser), rows[0].cost_nano),
        ("no-team", "stranger", 5_000)
    );
    assert!(s.get(&END_USERS, "stranger").await.unwrap().is_none(), "traffic never creates end users");
    // An empty batch is fine.
    let o = s.record_spend(vec![], now).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (0, 0));
}

/// Several tasks on each of two stores (two sidecars on one database) send overlapping
/// batches at once; every call succeeds and the aggregates are exact.
async fn concurrent_overlapping_batches(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    entities(a.as_ref()).await;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let s = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for round in 0..12u64 {
                // Windows of 60 ids sliding by 20 with the task's offset: every id is sent
                // by several tasks, in different batch orders.
                let start = (round * 20 + t * 7) % 300;
                let mut batch: Vec<SpendRecord> = (start..start + 60).map(|n| rec(n % 300)).collect();
                if (t + round) % 2 == 1 {
                    batch.reverse();
                }
                s.record_spend(batch, t0() + 3_600_000).await.unwrap_or_else(|e| panic!("task {t} round {round}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let sent: BTreeSet<u64> = (0..8u64)
        .flat_map(|t| {
            (0..12u64).flat_map(move |round| {
                let start = (round * 20 + t * 7) % 300;
                (start..start + 60).map(|n| n % 300)
            })
        })
        .collect();
    assert_aggregates(a.as_ref(), &sent).await;
    assert_aggregates(b.as_ref(), &sent).await;
}

/// An admin update computed from a row read before the ledger added to it keeps the
/// ledger's addition; an explicit spend change is relative; a regenerated key takes its
/// spend along.
async fn admin_writes_keep_ledger_spend(s: &dyn Store) {
    entities(s).await;
    let k1 = kh("k1");
    let stale = s.get(&KEYS, &k1).await.unwrap().unwrap();
    s.record_spend(vec![record(1, Some("k1"), None, None, None, 7_000)], t0()).await.unwrap();
    let mut upd = stale.clone();
    upd.insert("rpm_limit".into(), json!(5));
    let version = stale["version"].as_i64().unwrap();
    s.commit(vec![Op::Update { table: &KEYS, id: k1.clone(), version, record: upd }]).await.unwrap();
    let now = s.get(&KEYS, &k1).await.unwrap().unwrap();
    assert_eq!((now["rpm_limit"].clone(), to_nano(now["spend"].as_f64().unwrap())), (json!(5), 7_000));
    // "spend": 1.0 set on a row read at 7 µ$ while the ledger added 3 more: 1.0 + 3 µ$.
    let read = now.clone();
    s.record_spend(vec![record(2, Some("k1"), None, None, None, 3_000)], t0()).await.unwrap();
    let mut set = read.clone();
    set.insert("spend".into(), json!(1.0));
    let mut ops = vec![Op::Update {
        table: &KEYS,
        id: k1.clone(),
        version: read["version"].as_i64().unwrap(),
        record: set.clone(),
    }];
    ops.extend(spend_change(&KEYS, &k1, &read, &set));
    s.commit(ops).await.unwrap();
    assert_eq!(spend_nano(s, &KEYS, &k1).await, 1_000_000_000 + 3_000);
    // Regenerate (as /key/regenerate writes it): the new row carries the old one's spend.
    let old = s.get(&KEYS, &k1).await.unwrap().unwrap();
    let new_hash = kh("k1-new");
    let mut new_rec = old.clone();
    new_rec.insert("token".into(), json!(new_hash));
    new_rec.insert("spend".into(), json!(0.0));
    let mut old_rec = old.clone();
    old_rec.insert("key_alias".into(), Value::Null);
    s.commit(vec![
        Op::Update { table: &KEYS, id: k1.clone(), version: old["version"].as_i64().unwrap(), record: old_rec },
        Op::Insert { table: &KEYS, record: new_rec },
        Op::CopySpend { table: &KEYS, from: k1.clone(), to: new_hash.clone() },
        Op::Delete { table: &KEYS, id: k1.clone() },
    ])
    .await
    .unwrap();
    assert_eq!(spend_nano(s, &KEYS, &new_hash).await, 1_000_000_000 + 3_000);
}

async fn retention_keeps_rollups_and_spend(s: &dyn Store) {
    entities(s).await;
    let day = 86_400_000;
    let mut old = record(1, Some("k1"), Some("t1"), Some("u1"), None, 1_000);
    old.start_ms = t0() - 100 * day;
    old.end_ms = old.start_ms + 10;
    let fresh = record(2, Some("k1"), Some("t1"), Some("u1"), None, 2_000);
    s.record_spend(vec![old.clone(), fresh.clone()], t0()).await.unwrap();
    // Batches of one: the sweep deletes in small batches until none is left.
    let mut deleted = 0;
    loop {
        let n = s.prune_spend_logs(t0() - 90 * day, 1).await.unwrap();
        if n == 0 {
            break;
        }
        deleted += n;
    }
    assert_eq!(deleted, 1);
    let logs = s.spend_logs(LogQuery { limit: 10, ..LogQuery::default() }).await.unwrap();
    assert_eq!(logs.iter().map(|l| l.record.id.clone()).collect::<Vec<_>>(), vec![fresh.id.clone()]);
    assert_eq!(spend_nano(s, &KEYS, &kh("k1")).await, 3_000);
    let rows = s
        .spend_rollup(RollupQuery {
            from_day: day_of_ms(old.start_ms),
            to_day: day_of_ms(old.start_ms),
            group: vec![Dim::Day],
            filters: vec![],
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!((rows.len(), rows[0].cost_nano), (1, 1_000), "the old day's rollup stays");
}

async fn log_pages_and_lookups(s: &dyn Store) {
    let recs: Vec<SpendRecord> = (0..25).map(|n| record(n, Some("k1"), Some("t1"), Some("u1"), None, 10)).collect();
    s.record_spend(recs, t0()).await.unwrap();
    s.record_spend(vec![record(100, Some("k2"), None, None, Some("e9"), 10)], t0()).await.unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .spend_logs(LogQuery { key_hash: Some(kh("k1")), before: before.clone(), limit: 10, ..LogQuery::default() })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|l| (l.record.start_ms, l.record.id.clone()));
        seen.extend(page.into_iter().map(|l| l.record.id));
    }
    assert_eq!(seen, (0..25).rev().map(rid).collect::<Vec<_>>(), "newest first, every row once");
    for id in [rid(7), "client-7".to_owned()] {
        let hit = s.spend_logs(LogQuery { request_id: Some(id), limit: 10, ..LogQuery::default() }).await.unwrap();
        assert_eq!(hit.len(), 1);
        assert_eq!(hit[0].record, record(7, Some("k1"), Some("t1"), Some("u1"), None, 10), "stored as sent");
    }
    let e = s.spend_logs(LogQuery { end_user: Some("e9".into()), limit: 10, ..LogQuery::default() }).await.unwrap();
    assert_eq!(e.len(), 1);
    let range = s
        .spend_logs(LogQuery {
            from_ms: Some(t0() + 5_000),
            to_ms: Some(t0() + 10_000),
            user_id: Some("u1".into()),
            limit: 100,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(range.len(), 5);
}

/// A real deadlock (PostgreSQL): another connection holds key k1's row; the batch (which
/// locks team t1 before keys) waits on it; that connection then waits on team t1. The
/// batch, which waited first, is the one PostgreSQL aborts (40P01); it is run again and
/// succeeds, counted once. The same for an admin commit (a team update touching its keys).
async fn deadlocks_are_retried(s: Arc<dyn Store>, url: &str) {
    entities(s.as_ref()).await;
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    for round in 0..2 {
        let mut other = pool.begin().await.unwrap();
        sqlx::query("UPDATE keys SET spend = spend WHERE token = $1")
            .bind(kh("k1"))
            .execute(&mut *other)
            .await
            .unwrap();
        let s2 = s.clone();
        let writer = tokio::spawn(async move {
            if round == 0 {
                s2.record_spend(vec![rec(0), rec(4), rec(8)], t0()).await.map(|_| ())
            } else {
                s2.commit(vec![
                    Op::Touch { table: &TEAMS, col: "team_id", value: "t1".into() },
                    Op::Touch { table: &KEYS, col: "team_id", value: "t1".into() },
                ])
                .await
                .map(|_| ())
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // Waits on the writer's lock of t1: a cycle. PostgreSQL's check (after
        // deadlock_timeout, 1 s) runs first in the writer, which waited first: it is aborted,
        // its locks go, this update goes through.
        sqlx::query("UPDATE teams SET spend = spend WHERE team_id = 't1'")
            .execute(&mut *other)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the other side was aborted instead: {e}"));
        other.commit().await.unwrap();
        writer.await.unwrap().unwrap_or_else(|e| panic!("round {round}: not retried: {e}"));
    }
    assert_aggregates(s.as_ref(), &[0, 4, 8].into_iter().collect()).await;
}

async fn sqlite_store(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Store> {
    Arc::from(store::open(&format!("sqlite://{}", dir.path().join(name).display())).await.unwrap())
}

#[tokio::test]
async fn sqlite_resend_moves_aggregates_once() {
    let dir = tempfile::tempdir().unwrap();
    resend_moves_aggregates_once(sqlite_store(&dir, "a.db").await.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_overlapping_batches() {
    let dir = tempfile::tempdir().unwrap();
    let a = sqlite_store(&dir, "c.db").await;
    let b = sqlite_store(&dir, "c.db").await;
    concurrent_overlapping_batches(a, b).await;
}

#[tokio::test]
async fn sqlite_admin_writes_keep_ledger_spend() {
    let dir = tempfile::tempdir().unwrap();
    admin_writes_keep_ledger_spend(sqlite_store(&dir, "w.db").await.as_ref()).await;
}

#[tokio::test]
async fn sqlite_retention_keeps_rollups_and_spend() {
    let dir = tempfile::tempdir().unwrap();
    retention_keeps_rollups_and_spend(sqlite_store(&dir, "r.db").await.as_ref()).await;
}

#[tokio::test]
async fn sqlite_log_pages_and_lookups() {
    let dir = tempfile::tempdir().unwrap();
    log_pages_and_lookups(sqlite_store(&dir, "l.db").await.as_ref()).await;
}

/// Every scenario on one PostgreSQL server started for this test (a database each), and
/// the outage: batches get `Unavailable` (the API's 503) while the server is down and are
/// stored, exactly once, once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_scenarios() {
    let Some(pg) = Pg::start() else {
        eprintln!("PostgreSQL is not installed (apt-get install postgresql): PostgreSQL scenarios skipped");
        return;
    };
    let open = |url: String| async move { Arc::<dyn Store>::from(store::open(&url).await.unwrap()) };
    resend_moves_aggregates_once(open(pg.create_database("resend").await).await.as_ref()).await;
    let url = pg.create_database("concurrent").await;
    concurrent_overlapping_batches(open(url.clone()).await, open(url).await).await;
    admin_writes_keep_ledger_spend(open(pg.create_database("admin").await).await.as_ref()).await;
    retention_keeps_rollups_and_spend(open(pg.create_database("retention").await).await.as_ref()).await;
    log_pages_and_lookups(open(pg.create_database("logs").await).await.as_ref()).await;

    let url = pg.create_database("deadlock").await;
    deadlocks_are_retried(open(url.clone()).await, &url).await;

    let s = open(pg.create_database("outage").await).await;
    entities(s.as_ref()).await;
    s.record_spend((0..5).map(rec).collect(), t0()).await.unwrap();
    assert!(pg.stop_now());
    let e = s.record_spend((3..10).map(rec).collect(), t0()).await.unwrap_err();
    assert!(matches!(e, store::StoreError::Unavailable(_)), "{e:?}");
    assert!(pg.start_again());
    let mut outcome = None;
    for _ in 0..100 {
        match s.record_spend((3..10).map(rec).collect(), t0()).await {
            Ok(o) => {
                outcome = Some(o);
                break;
            }
            Err(store::StoreError::Unavailable(_)) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let o = outcome.expect("the database came back");
    assert_eq!((o.inserted, o.duplicates), (5, 2));
    assert_aggregates(s.as_ref(), &(0..10).collect()).await;
}
