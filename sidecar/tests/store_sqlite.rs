//! The store on a real SQLite file: commits, versions, the change feed, unique columns,
//! the schema matching `schema.rs`, and reopening (migrations run once).

// Test helpers may unwrap, panic and index: a failing test should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::{json, Map, Value};
use switchyard_sidecar::schema::{END_USERS, KEYS, TEAMS, TEAM_MEMBERS, USERS};
use switchyard_sidecar::store::{self, Filter, Op, Page, Store, StoreError};

fn rec(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

async fn open(dir: &tempfile::TempDir) -> Box<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    store::open(&url).await.unwrap()
}

fn key(token: &str, team: Option<&str>, alias: Option<&str>) -> Map<String, Value> {
    rec(json!({"token": token, "team_id": team, "key_alias": alias, "models": ["gpt-4o"], "blocked": false,
               "rpm_limit": 10, "max_budget": 12.5, "spend": 0.1, "metadata": {"a": [1, 2]}, "created_at": 1, "updated_at": 1,
               "some_litellm_field": {"kept": true}}))
}

#[tokio::test]
async fn round_trip_keeps_types_and_extra_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    assert_eq!(s.backend(), "sqlite");
    s.ping().await.unwrap();
    let seq = s.commit(vec![Op::Insert { table: &KEYS, record: key("h1", None, Some("a")) }]).await.unwrap();
    assert_eq!(seq, 1);
    let got = s.get(&KEYS, "h1").await.unwrap().unwrap();
    assert_eq!(got["models"], json!(["gpt-4o"]));
    assert_eq!(got["rpm_limit"], json!(10));
    assert_eq!(got["max_budget"], json!(12.5));
    assert_eq!(got["spend"], json!(0.1));
    assert_eq!(got["blocked"], json!(false));
    assert_eq!(got["metadata"], json!({"a": [1, 2]}));
    assert_eq!(got["some_litellm_field"], json!({"kept": true}));
    assert_eq!(got["version"], json!(1));
    assert_eq!(got["tpm_limit"], Value::Null);
    assert!(s.get(&KEYS, "nope").await.unwrap().is_none());
}

#[tokio::test]
async fn updates_check_the_version_they_were_computed_from() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    s.commit(vec![Op::Insert { table: &KEYS, record: key("h1", None, None) }]).await.unwrap();
    let mut r = s.get(&KEYS, "h1").await.unwrap().unwrap();
    r.insert("rpm_limit".into(), json!(20));
    let seq =
        s.commit(vec![Op::Update { table: &KEYS, id: "h1".into(), version: 1, record: r.clone() }]).await.unwrap();
    assert_eq!(seq, 2);
    // Computed from version 1, which is gone: refused, nothing written, no sequence used.
    assert_eq!(
        s.commit(vec![Op::Update { table: &KEYS, id: "h1".into(), version: 1, record: r }]).await,
        Err(StoreError::Stale)
    );
    let got = s.get(&KEYS, "h1").await.unwrap().unwrap();
    assert_eq!((got["rpm_limit"].clone(), got["version"].clone()), (json!(20), json!(2)));
    assert_eq!(s.changes(0, 100).await.unwrap().latest, 2);
}

#[tokio::test]
async fn unique_alias_and_primary_key_are_reported_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    s.commit(vec![Op::Insert { table: &KEYS, record: key("h1", None, Some("same")) }]).await.unwrap();
    let e = s.commit(vec![Op::Insert { table: &KEYS, record: key("h2", None, Some("same")) }]).await;
    assert_eq!(e, Err(StoreError::Duplicate { field: "key_alias".into(), value: "same".into() }));
    let e = s.commit(vec![Op::Insert { table: &KEYS, record: key("h1", None, None) }]).await;
    assert_eq!(e, Err(StoreError::Duplicate { field: "token".into(), value: "h1".into() }));
    // NULL aliases may repeat.
    s.commit(vec![
        Op::Insert { table: &KEYS, record: key("h3", None, None) },
        Op::Insert { table: &KEYS, record: key("h4", None, None) },
    ])
    .await
    .unwrap();
    // The failed commits rolled back whole, their sequence numbers with them.
    assert_eq!(s.changes(0, 100).await.unwrap().latest, 2);
}

#[tokio::test]
async fn change_feed_touch_delete_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let team = rec(json!({"team_id": "t", "models": [], "blocked": false, "created_at": 1, "updated_at": 1}));
    s.commit(vec![Op::Insert { table: &TEAMS, record: team }]).await.unwrap();
    s.commit(vec![
        Op::Insert { table: &KEYS, record: key("k1", Some("t"), None) },
        Op::Insert { table: &KEYS, record: key("k2", Some("t"), None) },
    ])
    .await
    .unwrap();
    s.commit(vec![Op::Insert { table: &KEYS, record: key("k3", None, None) }]).await.unwrap();
    // A team change reports the team's keys as changed and bumps their versions.
    let seq = s
        .commit(vec![
            Op::Touch { table: &KEYS, col: "team_id", value: "t".into() },
            Op::Touch { table: &TEAMS, col: "team_id", value: "t".into() },
        ])
        .await
        .unwrap();
    assert_eq!(seq, 4);
    assert_eq!(s.get(&KEYS, "k1").await.unwrap().unwrap()["version"], json!(4));
    assert_eq!(s.get(&KEYS, "k3").await.unwrap().unwrap()["version"], json!(3));
    let page = s.changes(3, 100).await.unwrap();
    let ids: Vec<(i64, String, String)> = page.changes.iter().map(|c| (c.seq, c.kind.clone(), c.id.clone())).collect();
    assert_eq!(
        ids,
        vec![(4, "key".into(), "k1".into()), (4, "key".into(), "k2".into()), (4, "team".into(), "t".into())]
    );
    // A page never splits one sequence number's changes: limit 1 still returns all of seq 2.
    let page = s.changes(1, 1).await.unwrap();
    assert_eq!(page.changes.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2, 2]);
    assert_eq!(page.latest, 4);
    // Deleting a team's keys reports each.
    let seq = s
        .commit(vec![
            Op::DeleteWhere { table: &KEYS, col: "team_id", value: "t".into() },
            Op::Delete { table: &TEAMS, id: "t".into() },
        ])
        .await
        .unwrap();
    let page = s.changes(seq - 1, 100).await.unwrap();
    assert_eq!(page.changes.len(), 3);
    assert!(s.get(&KEYS, "k1").await.unwrap().is_none());
    // Deleting what is not there reports nothing.
    let seq = s.commit(vec![Op::Delete { table: &TEAMS, id: "t".into() }]).await.unwrap();
    assert!(s.changes(seq - 1, 100).await.unwrap().changes.is_empty());
}

#[tokio::test]
async fn find_filters_pages_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    for i in 0..25 {
        let mut k = key(&format!("k{i:02}"), if i % 2 == 0 { Some("even") } else { None }, None);
        k.insert("created_at".into(), json!(i));
        s.commit(vec![Op::Insert { table: &KEYS, record: k }]).await.unwrap();
    }
    let (rows, total) =
        s.find(&KEYS, vec![Filter::Eq("team_id", json!("even"))], Some(Page { limit: 5, offset: 10 })).await.unwrap();
    assert_eq!(total, 13);
    assert_eq!(
        rows.iter().map(|r| r["token"].as_str().unwrap().to_owned()).collect::<Vec<_>>(),
        vec!["k20", "k22", "k24"]
    );
    let (rows, _) =
        s.find(&KEYS, vec![Filter::In("token", vec!["k01".into(), "k03".into(), "zz".into()])], None).await.unwrap();
    assert_eq!(rows.len(), 2);
    let (rows, _) = s.find(&KEYS, vec![Filter::In("token", vec![])], None).await.unwrap();
    assert!(rows.is_empty());
    let (_, n) =
        s.find(&KEYS, vec![Filter::Eq("team_id", Value::Null)], Some(Page { limit: 0, offset: 0 })).await.unwrap();
    assert_eq!(n, 12);
}

#[tokio::test]
async fn schema_columns_match_the_migration_and_reopening_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir).await;
        s.commit(vec![Op::Insert { table: &KEYS, record: key("h1", None, None) }]).await.unwrap();
        s.close().await;
    }
    let s = open(&dir).await;
    assert!(s.get(&KEYS, "h1").await.unwrap().is_some());
    assert_eq!(s.changes(0, 10).await.unwrap().latest, 1);
    s.close().await;
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for t in [&KEYS, &TEAMS, &USERS, &TEAM_MEMBERS, &END_USERS] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{}')", t.name)))
            .fetch_all(&pool)
            .await
            .unwrap();
        let cols: Vec<String> = rows.iter().map(|r| sqlx::Row::get::<String, _>(r, 0)).collect();
        let want: Vec<String> = t.cols.iter().map(|c| c.name.to_owned()).collect();
        assert_eq!(cols, want, "{}", t.name);
    }
    let mode: String = sqlx::Row::get(&sqlx::query("PRAGMA journal_mode").fetch_one(&pool).await.unwrap(), 0);
    assert_eq!(mode, "wal");
}
