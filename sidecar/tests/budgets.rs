//! Budgets through the router, on SQLite and on PostgreSQL (started here when Debian's
//! server is installed, as `make test` does; otherwise those runs say so and pass):
//! period spend moved once per inserted record however often a batch is sent; the key
//! lookup's `budgets` in LiteLLM's precedence (key, team, membership, user without a
//! team, model budgets; a linked `/budget/*` row filling the key's unset fields); end
//! users' budgets in their records; the batch answer's `totals`; a `budget_duration` set
//! or changed later re-baselining from that moment (not LiteLLM #22013); a regenerated key
//! keeping its periods; concurrent overlapping batches exact; the retention sweep.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::{kh, record_json, rid, Pg};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use switchyard_sidecar::api::{router, AppState, Shared};
use switchyard_sidecar::ledger::{Operation, SpendRecord, Usage};
use switchyard_sidecar::store::{self, SpentQuery};
use tower::ServiceExt;

const MASTER: &str = "sk-test-master";
const SECRET: &str = "s3cret";

struct App {
    router: Router,
    state: Shared,
}

async fn app(url: &str) -> App {
    let store = store::open(url).await.unwrap();
    let state = AppState::new(store, Some(MASTER.into()), Some(SECRET.into()));
    let router = router(state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))));
    App { router, state }
}

async fn send(app: &App, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

async fn admin(app: &App, path: &str, body: Value) -> Value {
    let req = Request::post(path)
        .header("authorization", format!("Bearer {MASTER}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, v) = send(app, req).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v
}

async fn admin_err(app: &App, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(path)
        .header("authorization", format!("Bearer {MASTER}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, req).await
}

async fn internal(app: &App, path: &str) -> Value {
    let req = Request::get(path).header("x-switchyard-internal", SECRET).body(Body::empty()).unwrap();
    let (s, v) = send(app, req).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v
}

async fn batch(app: &App, records: &[SpendRecord]) -> Value {
    let body = json!({"records": records.iter().map(record_json).collect::<Vec<_>>()});
    let req = Request::post("/internal/v1/spend")
        .header("x-switchyard-internal", SECRET)
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, v) = send(app, req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A record of `cost` that ended at `end_ms`.
#[allow(clippy::too_many_arguments)]
fn rec(
    n: u64,
    key: &str,
    team: Option<&str>,
    user: Option<&str>,
    end_user: Option<&str>,
    model: &str,
    cost: i64,
    end_ms: i64,
) -> SpendRecord {
    SpendRecord {
        id: rid(n),
        client_request_id: None,
        key_hash: Some(kh(key)),
        team_id: team.map(str::to_owned),
        user_id: user.map(str::to_owned),
        end_user: end_user.map(str::to_owned),
        model_group: model.to_owned(),
        provider: Some("openai".into()),
        model: None,
        operation: Operation::Chat,
        status: 200,
        stream: false,
        usage: Usage { input: 10, output: 5, ..Usage::default() },
        cost_nano: cost,
        estimated: false,
        attempts: 1,
        start_ms: end_ms - 500,
        end_ms,
    }
}

/// `budgets` of a lookup by kind and id.
fn by_id(budgets: &Value) -> BTreeMap<(String, String), Value> {
    budgets
        .as_array()
        .unwrap()
        .iter()
        .map(|b| ((b["kind"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned()), b.clone()))
        .collect()
}

/// A lookup's `spent_nano` when the records ended at `end_ms`: `want` while their period is
/// still the current one (a reset between the records and the lookup makes it 0).
fn spent(b: &Value, want: i64, end_ms: i64) -> i64 {
    let (start, end) = (b["period_start_ms"].as_i64(), b["period_end_ms"].as_i64());
    match (start, end) {
        (Some(s), Some(e)) if !(s <= end_ms && end_ms < e) => {
            eprintln!("a period ended between the records and the lookup: {b}");
            0
        }
        _ => want,
    }
}

/// Every period's spend of a budget, summed (raw SQL on either database).
async fn period_sum(url: &str, kind: &str, id: &str) -> i64 {
    let sql = "SELECT CAST(COALESCE(SUM(spent_nano), 0) AS BIGINT) FROM budget_spend WHERE kind = $1 AND id = $2";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sql).bind(kind).bind(id).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sql).bind(kind).bind(id).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

fn kinds(budgets: &Value) -> Vec<String> {
    budgets.as_array().unwrap().iter().map(|b| b["kind"].as_str().unwrap().to_owned()).collect()
}

/// Runs `scenario` on a SQLite file and, when it is installed, on PostgreSQL.
async fn on_both<F, Fut>(name: &str, scenario: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    scenario(format!("sqlite://{}", dir.path().join("b.db").display())).await;
    let Some(pg) = Pg::start() else {
        eprintln!("PostgreSQL is not installed (apt-get install postgresql): {name} on PostgreSQL skipped");
        return;
    };
    scenario(pg.create_database(name).await).await;
}

#[tokio::test]
async fn period_spend_moves_once_and_lookups_carry_the_budgets() {
    on_both("budgets_once", |url| async move {
        let app = app(&url).await;
        admin(
            &app,
            "/budget/new",
            json!({"budget_id": "tier", "max_budget": 5, "soft_budget": 4, "budget_duration": "1d",
                   "model_max_budget": {"gpt-4o": {"max_budget": 1, "budget_duration": "1h"}}}),
        )
        .await;
        admin(&app, "/user/new", json!({"user_id": "u1", "max_budget": 50, "auto_create_key": false})).await;
        admin(&app, "/team/new", json!({"team_id": "t1", "max_budget": 100, "budget_duration": "7d"})).await;
        admin(
            &app,
            "/team/member_add",
            json!({"team_id": "t1", "member": {"user_id": "u1", "role": "user"}, "max_budget_in_team": 3, "budget_duration": "1mo"}),
        )
        .await;
        admin(
            &app,
            "/key/generate",
            json!({"key": "sk-k1", "team_id": "t1", "user_id": "u1", "max_budget": 10, "budget_duration": "1d",
                   "model_max_budget": {"gpt-4o": {"max_budget": 2, "budget_duration": "1d"}, "claude": {"max_budget": 1}}}),
        )
        .await;
        admin(&app, "/key/generate", json!({"key": "sk-k2", "user_id": "u1", "budget_id": "tier"})).await;
        admin(&app, "/customer/new", json!({"user_id": "e1", "budget_id": "tier"})).await;
        admin(&app, "/customer/new", json!({"user_id": "e2", "max_budget": 7, "budget_duration": "30d"})).await;
        admin(&app, "/customer/new", json!({"user_id": "e3", "rpm_limit": 9})).await;
        // Everything was set up at most a second before: records end after it.
        let end = now_ms() + 1500;
        let records: Vec<SpendRecord> = (0..40u64)
            .map(|n| {
                let cost = 1_000 + n as i64 * 13;
                match n % 4 {
                    0 => rec(n, "sk-k1", Some("t1"), Some("u1"), Some("e1"), "gpt-4o", cost, end + n as i64),
                    1 => rec(n, "sk-k1", Some("t1"), Some("u1"), None, "claude", cost, end + n as i64),
                    2 => rec(n, "sk-k2", None, Some("u1"), Some("e2"), "openai/gpt-4o", cost, end + n as i64),
                    _ => rec(n, "sk-k2", None, Some("u1"), Some("e3"), "mistral", cost, end + n as i64),
                }
            })
            .collect();
        let sum = |f: &dyn Fn(&SpendRecord) -> bool| records.iter().filter(|r| f(r)).map(|r| r.cost_nano).sum::<i64>();
        let k1 = sum(&|r| r.key_hash.as_deref() == Some(&kh("sk-k1")));
        let k1_gpt = sum(&|r| r.key_hash.as_deref() == Some(&kh("sk-k1")) && r.model_group == "gpt-4o");
        let k2 = sum(&|r| r.key_hash.as_deref() == Some(&kh("sk-k2")));
        let k2_gpt = sum(&|r| r.key_hash.as_deref() == Some(&kh("sk-k2")) && r.model_group == "openai/gpt-4o");
        let e1 = sum(&|r| r.end_user.as_deref() == Some("e1"));
        let e2 = sum(&|r| r.end_user.as_deref() == Some("e2"));
        let all = sum(&|_| true);

        // Sent whole, then again, then overlapping: the totals move once.
        let first = batch(&app, &records[..30]).await;
        assert_eq!(first["inserted"], 30);
        let again = batch(&app, &records[..30]).await;
        assert_eq!((again["inserted"].as_i64(), again["totals"].clone()), (Some(0), json!([])), "{again}");
        let last = batch(&app, &records[20..]).await;
        assert_eq!((last["inserted"].as_i64(), last["duplicates"].as_i64()), (Some(10), Some(10)));
        let totals: BTreeMap<(String, String), Value> = last["totals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| ((t["kind"].as_str().unwrap().to_owned(), t["id"].as_str().unwrap().to_owned()), t.clone()))
            .collect();
        let member = "t1:u1".to_owned();
        for (kind, id, want, lifetime) in [
            ("key", kh("sk-k1"), k1, false),
            ("key_model", format!("{}:gpt-4o", kh("sk-k1")), k1_gpt, false),
            ("team", "t1".to_owned(), k1, false),
            ("team_member", member.clone(), k1, false),
            ("user", "u1".to_owned(), all, true),
            ("key", kh("sk-k2"), k2, false),
            ("key_model", format!("{}:gpt-4o", kh("sk-k2")), k2_gpt, false),
            ("end_user", "e1".to_owned(), e1, false),
            ("end_user", "e2".to_owned(), e2, false),
        ] {
            let t = totals.get(&(kind.to_owned(), id.clone())).unwrap_or_else(|| panic!("no total for {kind} {id}: {last}"));
            assert_eq!(t["spent_nano"].as_i64(), Some(want), "{kind} {id}: {t}");
            assert_eq!(t["period_start_ms"].is_null(), lifetime, "{kind} {id}: {t}");
        }
        // No budget, no total: the claude model budget has no duration (LiteLLM ignores it),
        // e3 only has a rate limit.
        assert!(!totals.contains_key(&("key_model".to_owned(), format!("{}:claude", kh("sk-k1")))));
        assert!(!totals.contains_key(&("end_user".to_owned(), "e3".to_owned())));
        let ordered: Vec<Value> = last["totals"].as_array().unwrap().clone();
        let mut sorted = ordered.clone();
        sorted.sort_by_key(|t| (t["kind"].as_str().unwrap().to_owned(), t["id"].as_str().unwrap().to_owned()));
        assert_eq!(ordered, sorted, "totals are ordered by kind and id");

        // The team key: key, team, membership, model budgets; not the user (LiteLLM: a team
        // key is held to the team's budget, not the user's).
        let l1 = internal(&app, &format!("/internal/v1/keys/{}", kh("sk-k1"))).await;
        assert_eq!(kinds(&l1["budgets"]), vec!["key", "team", "team_member", "key_model"], "{l1}");
        let b = by_id(&l1["budgets"]);
        let kb = &b[&("key".to_owned(), kh("sk-k1"))];
        assert_eq!((kb["max_budget_nano"].as_i64(), kb["soft_budget_nano"].clone()), (Some(10_000_000_000), Value::Null));
        assert_eq!(kb["spent_nano"].as_i64(), Some(spent(kb, k1, end)));
        let (start, end_p) = (kb["period_start_ms"].as_i64().unwrap(), kb["period_end_ms"].as_i64().unwrap());
        assert!(start <= now_ms() + 2000 && now_ms() < end_p && end_p % 86_400_000 == 0, "{kb}");
        let tb = &b[&("team".to_owned(), "t1".to_owned())];
        assert_eq!((tb["max_budget_nano"].as_i64(), tb["spent_nano"].as_i64()), (Some(100_000_000_000), Some(spent(tb, k1, end))));
        // 7d: the period ends on a Monday (1970-01-05 was one).
        assert_eq!((tb["period_end_ms"].as_i64().unwrap() / 86_400_000 - 4) % 7, 0, "{tb}");
        let mb = &b[&("team_member".to_owned(), member.clone())];
        assert_eq!((mb["max_budget_nano"].as_i64(), mb["spent_nano"].as_i64()), (Some(3_000_000_000), Some(spent(mb, k1, end))));
        let km = &b[&("key_model".to_owned(), format!("{}:gpt-4o", kh("sk-k1")))];
        assert_eq!((km["model"].as_str(), km["spent_nano"].as_i64(), km["max_budget_nano"].as_i64()), (Some("gpt-4o"), Some(spent(km, k1_gpt, end)), Some(2_000_000_000)));

        // The personal key linked to the tier: its budget from the tier (limits and 1d
        // schedule), the user's (lifetime: its spend), the tier's model budget (1h).
        let l2 = internal(&app, &format!("/internal/v1/keys/{}", kh("sk-k2"))).await;
        assert_eq!(kinds(&l2["budgets"]), vec!["key", "user", "key_model"], "{l2}");
        let b = by_id(&l2["budgets"]);
        let kb = &b[&("key".to_owned(), kh("sk-k2"))];
        assert_eq!(
            (kb["max_budget_nano"].as_i64(), kb["soft_budget_nano"].as_i64(), kb["budget_id"].as_str(), kb["spent_nano"].as_i64()),
            (Some(5_000_000_000), Some(4_000_000_000), Some("tier"), Some(spent(kb, k2, end)))
        );
        let ub = &b[&("user".to_owned(), "u1".to_owned())];
        assert_eq!((ub["spent_nano"].as_i64(), ub["period_start_ms"].clone(), ub["period_end_ms"].clone()), (Some(all), Value::Null, Value::Null));
        let km = &b[&("key_model".to_owned(), format!("{}:gpt-4o", kh("sk-k2")))];
        assert_eq!((km["spent_nano"].as_i64(), km["budget_id"].as_str()), (Some(spent(km, k2_gpt, end)), Some("tier")));
        assert_eq!(km["period_end_ms"].as_i64().unwrap() % 3_600_000, 0, "1h: on the hour");

        // End users: the tier's budget with e1's own spend; e2's own; e3 none (and its
        // record otherwise unchanged).
        let c = internal(&app, "/internal/v1/customers?id=e1&id=e2&id=e3").await;
        let cs: BTreeMap<String, Value> =
            c["customers"].as_array().unwrap().iter().map(|c| (c["user_id"].as_str().unwrap().to_owned(), c.clone())).collect();
        let eb = &cs["e1"]["budgets"][0];
        assert_eq!((eb["kind"].as_str(), eb["max_budget_nano"].as_i64(), eb["spent_nano"].as_i64(), eb["budget_id"].as_str()), (Some("end_user"), Some(5_000_000_000), Some(spent(eb, e1, end)), Some("tier")));
        let eb = &cs["e2"]["budgets"][0];
        assert_eq!((eb["max_budget_nano"].as_i64(), eb["spent_nano"].as_i64()), (Some(7_000_000_000), Some(spent(eb, e2, end))));
        assert_eq!(cs["e3"]["budgets"], json!([]));
        // The paged load includes end users with a budget only (e1 via its tier).
        let page = internal(&app, "/internal/v1/customers").await;
        let ids: BTreeSet<&str> = page["customers"].as_array().unwrap().iter().map(|c| c["user_id"].as_str().unwrap()).collect();
        assert_eq!(ids, BTreeSet::from(["e1", "e2", "e3"]));

        // The rows themselves, read back exactly.
        let rows = app
            .state
            .store
            .budget_spent(vec![SpentQuery::Period {
                kind: "key".into(),
                id: kh("sk-k1"),
                start_ms: l1["budgets"][0]["period_start_ms"].as_i64().unwrap(),
            }])
            .await
            .unwrap();
        assert_eq!(rows, vec![spent(&l1["budgets"][0], k1, end)]);
        for (kind, id, want) in [
            ("key", kh("sk-k1"), k1),
            ("team", "t1".to_owned(), k1),
            ("team_member", member.clone(), k1),
            ("key_model", format!("{}:gpt-4o", kh("sk-k1")), k1_gpt),
            ("key", kh("sk-k2"), k2),
            ("end_user", "e1".to_owned(), e1),
            ("end_user", "e2".to_owned(), e2),
            // Not budgeted, never resets: its lifetime spend is the period.
            ("user", "u1".to_owned(), 0),
            ("end_user", "e3".to_owned(), 0),
        ] {
            assert_eq!(period_sum(&url, kind, &id).await, want, "{kind} {id}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_duration_set_later_rebaselines_and_the_same_duration_again_does_not() {
    on_both("budgets_rebaseline", |url| async move {
        let app = app(&url).await;
        admin(&app, "/key/generate", json!({"key": "sk-r", "max_budget": 10})).await;
        let hash = kh("sk-r");
        let lookup = || async { internal(&app, &format!("/internal/v1/keys/{hash}")).await["budgets"][0].clone() };
        // Lifetime: the key's spend, no period.
        let t = now_ms();
        batch(&app, &[rec(1, "sk-r", None, None, None, "m", 3_000, t)]).await;
        let b = lookup().await;
        assert_eq!((b["spent_nano"].as_i64(), b["period_start_ms"].clone()), (Some(3_000), Value::Null), "{b}");
        // A duration set now starts a period now: what was spent before is not in it.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let info = admin(&app, "/key/update", json!({"key": "sk-r", "budget_duration": "1d"})).await;
        assert!(info["budget_reset_at"].as_str().is_some_and(|s| s.ends_with("T00:00:00Z")), "{info}");
        let b = lookup().await;
        let start = b["period_start_ms"].as_i64().unwrap();
        assert!(start > t && start % 1000 == 0 && b["spent_nano"] == 0, "{b}");
        // A record that ended before the change is in no period of it; one after is.
        let after = now_ms().max(start) + 10;
        let out = batch(
            &app,
            &[rec(2, "sk-r", None, None, None, "m", 500, start - 200), rec(3, "sk-r", None, None, None, "m", 700, after)],
        )
        .await;
        assert_eq!(out["totals"], json!([{"kind": "key", "id": hash, "period_start_ms": start, "spent_nano": 700}]));
        assert_eq!(lookup().await["spent_nano"], 700);
        // Lifetime spend (LiteLLM's `spend` in /key/info) has all of it.
        let (s, info) = send(
            &app,
            Request::get(format!("/key/info?key={hash}"))
                .header("authorization", format!("Bearer {MASTER}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!((info["info"]["spend"].as_f64().unwrap() * 1e9).round() as i64, 4_200);
        // The same duration again, or other fields: nothing moves.
        admin(&app, "/key/update", json!({"key": "sk-r", "budget_duration": "1d", "max_budget": 20})).await;
        let b = lookup().await;
        assert_eq!((b["period_start_ms"].as_i64(), b["spent_nano"].as_i64(), b["max_budget_nano"].as_i64()), (Some(start), Some(700), Some(20_000_000_000)));
        // Another duration (even within the same second): a new period.
        admin(&app, "/key/update", json!({"key": "sk-r", "budget_duration": "7d"})).await;
        admin(&app, "/key/update", json!({"key": "sk-r", "budget_duration": "1d"})).await;
        let b = lookup().await;
        assert!(b["period_start_ms"].as_i64().unwrap() > start && b["spent_nano"] == 0, "{b}");
        // A model budget's duration changed: only that model re-baselines.
        admin(
            &app,
            "/key/update",
            json!({"key": "sk-r", "model_max_budget": {"a": {"max_budget": 1, "budget_duration": "1d"}, "b": {"max_budget": 1, "budget_duration": "1d"}}}),
        )
        .await;
        let t2 = now_ms();
        batch(&app, &[rec(4, "sk-r", None, None, None, "a", 11, t2), rec(5, "sk-r", None, None, None, "b", 13, t2)]).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        admin(
            &app,
            "/key/update",
            json!({"key": "sk-r", "model_max_budget": {"a": {"max_budget": 5, "budget_duration": "1d"}, "b": {"max_budget": 1, "budget_duration": "1h"}}}),
        )
        .await;
        let l = internal(&app, &format!("/internal/v1/keys/{hash}")).await;
        let b = by_id(&l["budgets"]);
        let ma = &b[&("key_model".to_owned(), format!("{hash}:a"))];
        assert_eq!(ma["spent_nano"].as_i64(), Some(spent(ma, 11, t2)));
        assert_eq!(b[&("key_model".to_owned(), format!("{hash}:b"))]["spent_nano"], 0);
    })
    .await;
}

#[tokio::test]
async fn a_regenerated_key_keeps_its_periods_and_budget_changes_reach_the_feed() {
    on_both("budgets_regen", |url| async move {
        let app = app(&url).await;
        admin(&app, "/budget/new", json!({"budget_id": "b1", "max_budget": 2})).await;
        admin(
            &app,
            "/key/generate",
            json!({"key": "sk-old", "max_budget": 10, "budget_duration": "1d", "budget_id": "b1",
                   "model_max_budget": {"m": {"max_budget": 1, "budget_duration": "1d"}}}),
        )
        .await;
        batch(&app, &[rec(1, "sk-old", None, None, None, "m", 900, now_ms() + 1000)]).await;
        let new = admin(&app, "/key/regenerate", json!({"key": "sk-old", "new_key": "sk-new"})).await;
        assert_eq!(new["token"], kh("sk-new"));
        let l = internal(&app, &format!("/internal/v1/keys/{}", kh("sk-new"))).await;
        let b = by_id(&l["budgets"]);
        assert_eq!(b[&("key".to_owned(), kh("sk-new"))]["spent_nano"], 900);
        assert_eq!(b[&("key_model".to_owned(), format!("{}:m", kh("sk-new")))]["spent_nano"], 900);
        // A budget's change is a change of each key and end user linked to it.
        admin(&app, "/customer/new", json!({"user_id": "c1", "budget_id": "b1"})).await;
        let since = internal(&app, "/internal/v1/changes").await["seq"].as_i64().unwrap();
        admin(&app, "/budget/update", json!({"budget_id": "b1", "max_budget": 3})).await;
        let feed = internal(&app, &format!("/internal/v1/changes?since={since}")).await;
        let got: BTreeSet<(String, String)> = feed["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["kind"].as_str().unwrap().to_owned(), c["id"].as_str().unwrap().to_owned()))
            .collect();
        let want: BTreeSet<(String, String)> =
            [("budget", "b1".to_owned()), ("key", kh("sk-new")), ("customer", "c1".to_owned())]
                .into_iter()
                .map(|(k, i)| (k.to_owned(), i))
                .collect();
        assert_eq!(got, want);
        // Deleting it unlinks them (LiteLLM's SetNull), reported the same way.
        let since = feed["seq"].as_i64().unwrap();
        admin(&app, "/budget/delete", json!({"id": "b1"})).await;
        let feed = internal(&app, &format!("/internal/v1/changes?since={since}")).await;
        assert_eq!(feed["changes"].as_array().unwrap().len(), 3, "{feed}");
        let c = internal(&app, "/internal/v1/customers/c1").await;
        assert_eq!(c["budgets"], json!([]));
        let (s, e) = admin_err(&app, "/key/update", json!({"key": "sk-new", "budget_id": "b1"})).await;
        assert_eq!((s, e["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("budget_id")), "{e}");
    })
    .await;
}

#[tokio::test]
async fn concurrent_overlapping_batches_move_each_period_once() {
    on_both("budgets_concurrent", |url| async move {
        let app = Arc::new(app(&url).await);
        admin(&app, "/team/new", json!({"team_id": "t", "max_budget": 1000, "budget_duration": "1d"})).await;
        admin(&app, "/team/member_add", json!({"team_id": "t", "member": {"user_id": "u", "role": "user"}, "max_budget_in_team": 10, "budget_duration": "1h"})).await;
        for k in ["sk-a", "sk-b", "sk-c"] {
            admin(&app, "/key/generate", json!({"key": k, "team_id": "t", "user_id": "u", "max_budget": 5, "budget_duration": "30m"})).await;
        }
        admin(&app, "/customer/new", json!({"user_id": "e", "max_budget": 5, "budget_duration": "1d"})).await;
        let end = now_ms() + 1000;
        let keys = ["sk-a", "sk-b", "sk-c"];
        let all: Vec<SpendRecord> = (0..300u64)
            .map(|n| rec(n, keys[(n % 3) as usize], Some("t"), Some("u"), (n % 2 == 0).then_some("e"), "m", 100 + n as i64, end))
            .collect();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let app = app.clone();
            let all = all.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..6u64 {
                    let from = ((t * 37 + round * 53) % 250) as usize;
                    batch(&app, &all[from..from + 50]).await;
                }
                // And everything, once per task.
                batch(&app, &all).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let out = batch(&app, &all).await;
        assert_eq!(out["inserted"], 0);
        let sum = |f: &dyn Fn(&SpendRecord) -> bool| all.iter().filter(|r| f(r)).map(|r| r.cost_nano).sum::<i64>();
        for k in keys {
            assert_eq!(period_sum(&url, "key", &kh(k)).await, sum(&|r| r.key_hash == Some(kh(k))), "{k}");
        }
        assert_eq!(period_sum(&url, "team", "t").await, sum(&|_| true));
        assert_eq!(period_sum(&url, "team_member", "t:u").await, sum(&|_| true));
        assert_eq!(period_sum(&url, "end_user", "e").await, sum(&|r| r.end_user.is_some()));
        let c = internal(&app, "/internal/v1/customers/e").await;
        let want = sum(&|r| r.end_user.is_some());
        assert_eq!(c["budgets"][0]["spent_nano"].as_i64(), Some(spent(&c["budgets"][0], want, end)));
    })
    .await;
}

#[tokio::test]
async fn ended_periods_are_swept_and_budget_input_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
    admin(&app, "/key/generate", json!({"key": "sk-s", "max_budget": 1, "budget_duration": "1d"})).await;
    batch(&app, &[rec(1, "sk-s", None, None, None, "m", 5, now_ms() + 1000)]).await;
    let store = &app.state.store;
    assert_eq!(store.prune_budget_spend(now_ms(), 100).await.unwrap(), 0, "the current period stays");
    assert_eq!(store.prune_budget_spend(now_ms() + 3 * 86_400_000, 100).await.unwrap(), 1);
    for (body, param) in [
        (json!({"budget_id": "x", "max_budget": -1}), "max_budget"),
        (json!({"budget_id": "x", "soft_budget": "a"}), "soft_budget"),
        (json!({"budget_id": "x", "budget_duration": "0h"}), "budget_duration"),
        (json!({"budget_id": "x", "budget_duration": "3mo"}), "budget_duration"),
        (json!({"budget_id": "x", "tpm_limit": 1.5}), "tpm_limit"),
        (json!({"budget_id": "x", "model_max_budget": {"m": {"max_budget": -2}}}), "model_max_budget.m.max_budget"),
        (json!({"budget_id": "x", "allowed_models": []}), "allowed_models"),
        (json!({"budget_id": 7}), "budget_id"),
    ] {
        let (s, e) = admin_err(&app, "/budget/new", body.clone()).await;
        assert_eq!((s, e["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some(param)), "{body}: {e}");
    }
    admin(&app, "/budget/new", json!({"budget_id": "x"})).await;
    let (s, e) = admin_err(&app, "/budget/new", json!({"budget_id": "x"})).await;
    assert_eq!(
        (s, e["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Budget with id 'x' already exists."))
    );
    let (s, _) = admin_err(&app, "/budget/update", json!({"budget_id": "nope", "max_budget": 1})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = admin_err(&app, "/budget/update", json!({"max_budget": 1})).await;
    assert_eq!((s, e["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("budget_id")));
    let (s, _) = admin_err(&app, "/budget/delete", json!({"id": "nope"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = admin_err(&app, "/customer/new", json!({"user_id": "c", "budget_id": "nope"})).await;
    assert_eq!((s, e["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("budget_id")));
    // Without the master key: 401.
    let (s, _) = send(&app, Request::get("/budget/list").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
