//! The spend ledger through the router (SQLite file): `POST /internal/v1/spend`'s contract
//! (per-record refusals that never block the batch, 400/413 for what is not a batch, the
//! internal secret), and the LiteLLM reads: `spend` on keys, teams, memberships, users and
//! end users, `/spend/logs` (rows, filters, pages, the daily summary) and
//! `/global/spend/report` (team, customer, api_key).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::{kh, record, record_json, rid, t0};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use switchyard_sidecar::api::{router, AppState};
use switchyard_sidecar::ledger::day_of_ms;
use switchyard_sidecar::store;
use tower::ServiceExt;

const MASTER: &str = "sk-test-master";
const SECRET: &str = "s3cret";

async fn app(dir: &tempfile::TempDir) -> Router {
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    let store = store::open(&url).await.unwrap();
    router(AppState::new(store, Some(MASTER.into()), Some(SECRET.into())))
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))))
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, headers, v)
}

async fn spend(app: &Router, body: Vec<u8>) -> (StatusCode, Value) {
    let req =
        Request::post("/internal/v1/spend").header("x-switchyard-internal", SECRET).body(Body::from(body)).unwrap();
    let (s, _, v) = send(app, req).await;
    (s, v)
}

async fn batch(app: &Router, records: Vec<Value>) -> Value {
    let (s, v) = spend(app, json!({"records": records}).to_string().into_bytes()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn admin(app: &Router, method: &str, path: &str, body: Value) -> (StatusCode, axum::http::HeaderMap, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {MASTER}"))
        .body(if method == "GET" { Body::empty() } else { Body::from(body.to_string()) })
        .unwrap();
    send(app, req).await
}

async fn get(app: &Router, path: &str) -> Value {
    let (s, _, v) = admin(app, "GET", path, Value::Null).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v
}

fn nano(v: &Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 1e9).round() as i64
}

#[tokio::test]
async fn a_rejected_record_never_blocks_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let good = |n| record_json(&record(n, Some("k"), None, None, None, 100));
    let mut bad = good(2);
    bad["cost_nano"] = json!(-5);
    let mut bad_key = good(3);
    bad_key["key_hash"] = json!(format!("sk-{}", "0".repeat(61)));
    let v = batch(&app, vec![good(1), bad, json!("not a record"), bad_key, good(4)]).await;
    assert_eq!(v["inserted"], json!(2));
    assert_eq!(v["duplicates"], json!(0));
    let rejected: Vec<(u64, String)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["message"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(rejected[0].1.contains("cost_nano") && rejected[2].1.contains("key_hash"), "{rejected:?}");
    assert!(!v.to_string().contains(&"0".repeat(61)), "no key material echoed: {v}");
    // The same batch again: the good two are duplicates, the bad ones refused again.
    let v = batch(&app, vec![good(1), json!(1), good(4)]).await;
    assert_eq!((v["inserted"].clone(), v["duplicates"].clone()), (json!(0), json!(2)));
}

#[tokio::test]
async fn what_is_not_a_batch_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    for body in [&b"{not json"[..], b"[]", b"{}", b"{\"records\": {}}", b"{\"records\": null}", b""] {
        let (s, v) = spend(&app, body.to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{}: {v}", String::from_utf8_lossy(body));
        assert_eq!(v["error"]["param"], json!("records"));
    }
    let many: Vec<Value> = (0..1001).map(|n| record_json(&record(n, None, None, None, None, 1))).collect();
    let (s, v) = spend(&app, json!({"records": many}).to_string().into_bytes()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (s, _) = spend(&app, vec![b' '; 5 << 20]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // The internal secret, exactly as the other internal endpoints.
    let req = Request::post("/internal/v1/spend").body(Body::from("{\"records\":[]}")).unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNAUTHORIZED);
    let req = Request::post("/internal/v1/spend")
        .header("x-switchyard-internal", "wrong")
        .body(Body::from("{\"records\":[]}"))
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNAUTHORIZED);
    let (s, _, _) = admin(&app, "POST", "/internal/v1/spend", json!({"records": []})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the master key is not the internal secret");
    // And the reads need the master key.
    let req = Request::get("/spend/logs").body(Body::empty()).unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn entities_show_their_spend_in_litellm_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    admin(
        &app,
        "POST",
        "/team/new",
        json!({"team_id": "t1", "team_alias": "eng", "members_with_roles": [{"user_id": "u1", "role": "user"}]}),
    )
    .await;
    let (_, _, k) =
        admin(&app, "POST", "/key/generate", json!({"team_id": "t1", "user_id": "u1", "key_alias": "ci"})).await;
    let key = k["key"].as_str().unwrap().to_owned();
    let hash = k["token"].as_str().unwrap().to_owned();
    admin(&app, "POST", "/customer/new", json!({"user_id": "acme"})).await;
    let mk = |n: u64, cost: i64| {
        let mut r = record_json(&record(n, None, Some("t1"), Some("u1"), Some("acme"), cost));
        r["key_hash"] = json!(hash);
        r
    };
    batch(&app, vec![mk(1, 1_500_000_000), mk(2, 250_000_000)]).await;
    batch(&app, vec![mk(2, 250_000_000), mk(3, 250_000_000)]).await;
    let want = 2_000_000_000;
    let info = get(&app, &format!("/key/info?key={key}")).await;
    assert_eq!(nano(&info["info"]["spend"]), want);
    let list = get(&app, "/key/list?return_full_object=true").await;
    assert_eq!(nano(&list["keys"][0]["spend"]), want);
    let team = get(&app, "/team/info?team_id=t1").await;
    assert_eq!(nano(&team["team_info"]["spend"]), want);
    assert_eq!(nano(&team["team_memberships"][0]["spend"]), want);
    assert_eq!(nano(&team["keys"][0]["spend"]), want);
    let user = get(&app, "/user/info?user_id=u1").await;
    assert_eq!(nano(&user["user_info"]["spend"]), want);
    let cust = get(&app, "/customer/info?end_user_id=acme").await;
    assert_eq!(nano(&cust["spend"]), want);
    // An admin update after the ledger moved keeps it; spend set explicitly is set.
    admin(&app, "POST", "/key/update", json!({"key": key, "rpm_limit": 9})).await;
    assert_eq!(nano(&get(&app, &format!("/key/info?key={key}")).await["info"]["spend"]), want);
    let (s, _, _) = admin(&app, "POST", "/key/update", json!({"key": key, "spend": 0.5})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(nano(&get(&app, &format!("/key/info?key={key}")).await["info"]["spend"]), 500_000_000);
    // A regenerated key keeps its spend; spend recorded under the old hash afterwards
    // stays in the ledger (and the old key's rollups), not on the new key.
    let (s, _, r) = admin(&app, "POST", "/key/regenerate", json!({"key": key})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let new_key = r["key"].as_str().unwrap().to_owned();
    assert_eq!(nano(&get(&app, &format!("/key/info?key={new_key}")).await["info"]["spend"]), 500_000_000);
    let (_, _, r) = admin(&app, "POST", "/key/regenerate", json!({"key": new_key, "grace_period": "1h"})).await;
    let newer = r["key"].as_str().unwrap().to_owned();
    assert_eq!(nano(&get(&app, &format!("/key/info?key={newer}")).await["info"]["spend"]), 500_000_000);
}

#[tokio::test]
async fn spend_logs_rows_filters_pages_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let recs: Vec<Value> = (0..30)
        .map(|n| {
            record_json(&record(
                n,
                Some(if n % 2 == 0 { "ka" } else { "kb" }),
                Some("t1"),
                Some(if n < 10 { "u1" } else { "u2" }),
                None,
                1_000_000,
            ))
        })
        .collect();
    batch(&app, recs).await;
    let rows = get(&app, "/spend/logs").await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 30);
    let first = &rows[0];
    assert_eq!(first["request_id"], json!(rid(29)), "newest first");
    for f in [
        "request_id",
        "call_type",
        "api_key",
        "spend",
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "startTime",
        "endTime",
        "model",
        "model_group",
        "custom_llm_provider",
        "user",
        "team_id",
        "end_user",
        "metadata",
        "cache_hit",
        "status",
        "messages",
        "response",
    ] {
        assert!(first.get(f).is_some(), "{f} missing: {first}");
    }
    let r = record(29, Some("kb"), Some("t1"), Some("u2"), None, 1_000_000);
    assert_eq!(first["call_type"], json!("acompletion"));
    assert_eq!(first["api_key"], json!(kh("kb")));
    assert_eq!(first["prompt_tokens"], json!(r.usage.prompt()));
    assert_eq!(first["completion_tokens"], json!(r.usage.output));
    assert_eq!(first["total_tokens"], json!(r.usage.total()));
    assert_eq!(first["spend"], json!(0.001));
    assert_eq!(
        (first["user"].clone(), first["end_user"].clone(), first["status"].clone()),
        (json!("u2"), json!(""), json!("success"))
    );
    assert_eq!(first["metadata"]["usage"]["cache_read"], json!(3));
    assert_eq!(first["metadata"]["client_request_id"], json!("client-29"));
    assert_eq!(first["metadata"]["estimated"], json!(false));
    assert_eq!(first["metadata"]["attempts"], json!(1));
    // Filters: a key or its hash, user, request id (gateway id or the client's).
    assert_eq!(get(&app, "/spend/logs?api_key=sk-not-this-one").await, json!([]));
    assert_eq!(get(&app, &format!("/spend/logs?api_key={}", kh("ka"))).await.as_array().unwrap().len(), 15);
    assert_eq!(get(&app, "/spend/logs?api_key=ka").await, json!([]), "not sk-: taken as a hash");
    assert_eq!(get(&app, "/spend/logs?user_id=u1").await.as_array().unwrap().len(), 10);
    assert_eq!(get(&app, &format!("/spend/logs?request_id={}", rid(4))).await[0]["request_id"], json!(rid(4)));
    assert_eq!(get(&app, "/spend/logs?request_id=client-4").await[0]["request_id"], json!(rid(4)));
    // Pages: limit and the cursor header.
    let mut seen = Vec::new();
    let mut path = "/spend/logs?limit=7&user_id=u2".to_owned();
    loop {
        let (s, h, v) = admin(&app, "GET", &path, Value::Null).await;
        assert_eq!(s, StatusCode::OK);
        seen.extend(v.as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_owned()));
        match h.get("x-switchyard-next-before") {
            Some(c) => {
                assert_eq!(h.get("x-litellm-spend-logs-truncated").unwrap(), "true");
                path = format!("/spend/logs?limit=7&user_id=u2&before={}", c.to_str().unwrap());
            }
            None => break,
        }
    }
    assert_eq!(seen, (10..30).rev().map(rid).collect::<Vec<_>>());
    // Dates: summarize=false → rows of those days; the default → LiteLLM's daily summary
    // from the rollups, padded to end_date.
    let today = day_of_ms(t0() + 86_400_000);
    let yday = day_of_ms(t0());
    let rows = get(&app, &format!("/spend/logs?start_date={yday}&end_date={yday}&summarize=false&user_id=u1")).await;
    assert_eq!(rows.as_array().unwrap().len(), 10);
    let sum = get(&app, &format!("/spend/logs?start_date={yday}&end_date={today}")).await;
    assert_eq!(sum.as_array().unwrap().len(), 2, "{sum}");
    assert_eq!(sum[0]["startTime"], json!(yday));
    assert_eq!(nano(&sum[0]["spend"]), 30_000_000);
    assert_eq!(nano(&sum[0][kh("ka")]), 15_000_000);
    assert_eq!(nano(&sum[0]["users"]["u1"]), 10_000_000);
    assert_eq!(nano(&sum[0]["models"]["gpt-4o-2024-08-06"]), 30_000_000);
    assert_eq!(sum[1], json!({"startTime": today, "spend": 0, "users": {}, "models": {}}));
    let one = get(&app, &format!("/spend/logs?start_date={yday}&end_date={yday}&request_id=client-3")).await;
    assert_eq!(nano(&one[0]["spend"]), 1_000_000);
    // Refusals name the parameter.
    for (q, param) in [
        ("start_date=2026-01-01", "end_date"),
        (&format!("start_date={today}&end_date={yday}") as &str, "end_date"),
        ("start_date=2020-01-01&end_date=2026-01-01", "end_date"),
        ("start_date=yesterday&end_date=2026-01-01", "start_date"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("before=x", "before"),
        ("summarize=maybe", "summarize"),
    ] {
        let (s, _, v) = admin(&app, "GET", &format!("/spend/logs?{q}"), Value::Null).await;
        assert_eq!((s, v["error"]["param"].clone()), (StatusCode::BAD_REQUEST, json!(param)), "{q}: {v}");
    }
}

#[tokio::test]
async fn global_spend_report_in_litellm_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    admin(&app, "POST", "/team/new", json!({"team_id": "t1", "team_alias": "eng"})).await;
    let mut recs = Vec::new();
    for n in 0..12u64 {
        let team = ["t1", "t2", ""][n as usize % 3];
        let mut r = record(
            n,
            Some(if n < 6 { "ka" } else { "kb" }),
            Some(team).filter(|t| !t.is_empty()),
            None,
            Some(if n % 2 == 0 { "c1" } else { "c2" }),
            1_000_000 * (n as i64 + 1),
        );
        if n == 11 {
            r.model = None;
        }
        recs.push(record_json(&r));
    }
    batch(&app, recs).await;
    let yday = day_of_ms(t0());
    let q = format!("start_date={yday}&end_date={yday}");
    let teams = get(&app, &format!("/global/spend/report?{q}")).await;
    assert_eq!(teams.as_array().unwrap().len(), 1);
    assert_eq!(teams[0]["group_by_day"], json!(format!("{yday}T00:00:00+00:00")));
    let names: Vec<&str> =
        teams[0]["teams"].as_array().unwrap().iter().map(|t| t["team_name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Unassigned Team", "eng", "t2"]);
    let eng = &teams[0]["teams"][1];
    assert_eq!(nano(&eng["total_spend"]), 1_000_000 * (1 + 4 + 7 + 10));
    let m = &eng["metadata"][0];
    assert_eq!(m.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["api_key", "model", "spend", "total_tokens"]);
    let unassigned = &teams[0]["teams"][0]["metadata"];
    assert!(
        unassigned.as_array().unwrap().iter().any(|m| m["model"] == json!("gpt-4o")),
        "no provider model: the group: {unassigned}"
    );
    let t1 = get(&app, &format!("/global/spend/report?{q}&team_id=t1")).await;
    assert_eq!(t1[0]["teams"].as_array().unwrap().len(), 1);
    let cust = get(&app, &format!("/global/spend/report?{q}&group_by=customer")).await;
    let c: Vec<(&str, i64)> = cust[0]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["customer"].as_str().unwrap(), nano(&c["total_spend"])))
        .collect();
    assert_eq!(c, vec![("c1", 1_000_000 * (1 + 3 + 5 + 7 + 9 + 11)), ("c2", 1_000_000 * (2 + 4 + 6 + 8 + 10 + 12))]);
    let keys = get(&app, &format!("/global/spend/report?{q}&group_by=api_key")).await;
    let k: Vec<(&str, i64)> =
        keys.as_array().unwrap().iter().map(|k| (k["api_key"].as_str().unwrap(), nano(&k["total_cost"]))).collect();
    let (ka, kb) = (kh("ka"), kh("kb"));
    assert_eq!(
        k,
        vec![(kb.as_str(), 1_000_000 * (7 + 8 + 9 + 10 + 11 + 12)), (ka.as_str(), 1_000_000 * (1 + 2 + 3 + 4 + 5 + 6))],
        "costliest first"
    );
    let prompt: i64 = (0..6).map(|n| record(n, None, None, None, None, 0).usage.prompt()).sum();
    assert_eq!(
        (keys[1]["total_input_tokens"].as_i64(), keys[1]["total_output_tokens"].as_i64()),
        (Some(prompt), Some(30))
    );
    let d = &keys[0]["model_details"];
    assert_eq!(d.as_array().unwrap().len(), 2, "{d}");
    let one = get(&app, &format!("/global/spend/report?{q}&api_key={ka}")).await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    let tc = get(&app, &format!("/global/spend/report?{q}&team_id=t1&customer_id=c2")).await;
    assert_eq!(tc[0]["teams_customers"][0]["customer"], json!("c2"));
    assert_eq!(nano(&tc[0]["teams_customers"][0]["total_spend"]), 1_000_000 * (4 + 10));
    for (q, param) in [
        ("", "start_date"),
        ("start_date=2026-01-01", "end_date"),
        (&format!("{q}&group_by=model") as &str, "group_by"),
    ] {
        let (s, _, v) = admin(&app, "GET", &format!("/global/spend/report?{q}"), Value::Null).await;
        assert_eq!((s, v["error"]["param"].clone()), (StatusCode::BAD_REQUEST, json!(param)), "{q}: {v}");
    }
}
