//! The admin API in process (axum router + SQLite file): a few flows with exact statuses,
//! and property tests: arbitrary JSON (and arbitrary bytes) to every admin endpoint never
//! gets a 5xx or a panic, and every refusal is the OpenAI error shape naming its status;
//! arbitrary spend records (valid ones with fields replaced or dropped) are each stored
//! or refused, never a 5xx, and batches resent in any mix move a key's spend exactly once.

// Test helpers may unwrap, panic and index: a failing test should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard_sidecar::api::{router, AppState};
use switchyard_sidecar::store;
use tower::ServiceExt;

const MASTER: &str = "sk-test-master";

async fn app(dir: &tempfile::TempDir) -> Router {
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    let store = store::open(&url).await.unwrap();
    let state = AppState::new(store, Some(MASTER.into()), Some("s3cret".into()));
    router(state).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))))
}

async fn call(app: &Router, method: &str, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {MASTER}"))
        .header("x-switchyard-internal", "s3cret")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{path}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

async fn post(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    call(app, "POST", path, body.to_string().into_bytes()).await
}

#[tokio::test]
async fn key_lifecycle_through_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    let (st, team) = post(&app, "/team/new", json!({"team_id": "t1", "models": ["gpt-4o"], "rpm_limit": 60})).await;
    assert_eq!(st, StatusCode::OK, "{team}");
    let (st, k) =
        post(&app, "/key/generate", json!({"team_id": "t1", "models": ["gpt-4o"], "rpm_limit": 5, "duration": "1h"}))
            .await;
    assert_eq!(st, StatusCode::OK);
    let key = k["key"].as_str().unwrap().to_owned();
    let hash = k["token"].as_str().unwrap().to_owned();
    assert_eq!(hash, switchyard_sidecar::keys::hash_token(&key));
    let (st, rec) = call(&app, "GET", &format!("/internal/v1/keys/{hash}"), vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (rec["rpm_limit"].clone(), rec["team"]["rpm_limit"].clone(), rec["blocked"].clone()),
        (json!(5), json!(60), json!(false))
    );
    let (st, _) = post(&app, "/key/block", json!({"key": key})).await;
    assert_eq!(st, StatusCode::OK);
    let (_, rec2) = call(&app, "GET", &format!("/internal/v1/keys/{hash}"), vec![]).await;
    assert_eq!(rec2["blocked"], json!(true));
    assert!(rec2["version"].as_i64() > rec["version"].as_i64());
    let (st, changes) = call(&app, "GET", &format!("/internal/v1/changes?since={}", rec["version"]), vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(changes["changes"], json!([{"seq": rec2["version"], "kind": "key", "id": hash}]));
    let (st, del) = post(&app, "/key/delete", json!({"keys": [hash]})).await;
    assert_eq!((st, del), (StatusCode::OK, json!({"deleted_keys": [hash]})));
    let (st, e) = call(&app, "GET", &format!("/internal/v1/keys/{hash}"), vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], json!("404"));
}

#[tokio::test]
async fn refusals_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir).await;
    for (body, param) in [
        (json!({"rpm_limit": -1}), "rpm_limit"),
        (json!({"team_id": "nope"}), "team_id"),
        (json!({"duration": "10ms"}), "duration"),
        (json!({"models": [1]}), "models[0]"),
        (json!({"unknown_thing": 1}), "unknown_thing"),
        (json!({"key": "not-sk"}), "key"),
        (json!({"key_alias": "a\u{0}b"}), "key_alias"),
    ] {
        let (st, e) = post(&app, "/key/generate", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(e["error"]["param"], json!(param), "{body}");
        assert_eq!(e["error"]["code"], json!("400"));
    }
    let (st, e) = call(&app, "POST", "/key/generate", b"{not json".to_vec()).await;
    assert_eq!((st, e["error"]["type"].clone()), (StatusCode::BAD_REQUEST, json!("bad_request_error")));
    let (st, _) = call(&app, "POST", "/key/generate", vec![b' '; 2 << 20]).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    let (st, _) = call(&app, "GET", "/key/generate", vec![]).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    let (st, _) = call(&app, "GET", "/internal/v1/keys/zz", vec![]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

const ENDPOINTS: &[&str] = &[
    "/key/generate",
    "/key/update",
    "/key/delete",
    "/key/block",
    "/key/unblock",
    "/key/regenerate",
    "/team/new",
    "/team/update",
    "/team/delete",
    "/team/member_add",
    "/team/member_delete",
    "/team/block",
    "/team/unblock",
    "/user/new",
    "/user/update",
    "/user/delete",
    "/customer/new",
    "/customer/update",
    "/customer/delete",
    "/customer/block",
    "/customer/unblock",
    "/budget/new",
    "/budget/update",
    "/budget/delete",
    "/budget/info",
];

const NAMES: &[&str] = &[
    "key",
    "keys",
    "key_alias",
    "key_aliases",
    "team_id",
    "team_ids",
    "user_id",
    "user_ids",
    "user_email",
    "models",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "model_rpm_limit",
    "model_tpm_limit",
    "duration",
    "budget_duration",
    "max_budget",
    "soft_budget",
    "spend",
    "metadata",
    "blocked",
    "member",
    "members_with_roles",
    "role",
    "teams",
    "auto_create_key",
    "new_key",
    "grace_period",
    "budget_id",
    "alias",
    "allowed_model_region",
    "temp_budget_increase",
    "temp_budget_expiry",
    "user_role",
    "aliases",
    "tags",
    "budget_reset_at",
    "budgets",
    "id",
    "model_max_budget",
    "max_budget_in_team",
    "tpd_limit",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        prop_oneof![
            Just("sk-x".to_owned()),
            Just("30d".to_owned()),
            Just("admin".to_owned()),
            Just("t1".to_owned()),
            ".{0,12}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (prop_oneof![prop::sample::select(NAMES).prop_map(str::to_owned), "[a-z_]{1,8}"], inner),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(NAMES), json_value()), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn check_response(path: &str, st: StatusCode, v: &Value) -> Result<(), TestCaseError> {
    prop_assert!(st.as_u16() < 500, "{path}: {st} {v}");
    if !st.is_success() {
        prop_assert_eq!(&v["error"]["code"], &json!(st.as_u16().to_string()), "{}: {}", path, v);
        prop_assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string(), "{}: {}", path, v);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_admin_json_never_fails_the_server(path in prop::sample::select(ENDPOINTS), body in body()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let app = app(&dir).await;
            // Something to find: a team, a budget and a key the random bodies may name.
            let _ = post(&app, "/team/new", json!({"team_id": "t1"})).await;
            let _ = post(&app, "/budget/new", json!({"budget_id": "t1", "max_budget": 1, "budget_duration": "1d"})).await;
            let _ = post(&app, "/key/generate", json!({"key": "sk-x", "team_id": "t1", "budget_id": "t1"})).await;
            let (st, v) = post(&app, path, body.clone()).await;
            check_response(path, st, &v)?;
            // Whatever it stored, the filter's reads of it still answer.
            let hash = switchyard_sidecar::keys::hash_token("sk-x");
            for read in [format!("/internal/v1/keys/{hash}"), "/internal/v1/customers".to_owned()] {
                let (st, v) = call(&app, "GET", &read, vec![]).await;
                check_response(&read, st, &v)?;
            }
            // And the same endpoint with the body as it might arrive mangled.
            let (st, v) = call(&app, "POST", path, body.to_string().into_bytes().into_iter().rev().collect()).await;
            check_response(path, st, &v)
        })?;
    }

    #[test]
    fn arbitrary_bytes_and_queries_never_fail_the_server(bytes in prop::collection::vec(any::<u8>(), 0..64), q in "[a-z_=&%0-9]{0,24}") {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let app = app(&dir).await;
            for path in ["/key/generate", "/team/new", "/user/new", "/customer/new", "/budget/new", "/budget/info"] {
                let (st, v) = call(&app, "POST", path, bytes.clone()).await;
                check_response(path, st, &v)?;
            }
            for path in ["/key/info", "/key/list", "/team/info", "/team/list", "/user/info", "/user/list", "/customer/info", "/internal/v1/changes", "/spend/logs", "/global/spend/report", "/budget/list", "/budget/settings"] {
                let (st, v) = call(&app, "GET", &format!("{path}?{q}"), vec![]).await;
                check_response(path, st, &v)?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}

/// The fields of a spend record, for mutations.
const RECORD_FIELDS: &[&str] = &[
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
    "usage",
    "cost_nano",
    "estimated",
    "attempts",
    "start_ms",
    "end_ms",
    "extra_field",
];

fn spend_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(1e300)),
        Just(json!("0123456789abcdef0123456789abcdef")),
        Just(json!({"input": -1, "output": 18446744073709551615u64})),
        Just(json!({"input": 1.5})),
        Just(json!("a\u{0}b")),
        "[0-9a-f]{64}".prop_map(Value::String),
        ".{0,600}".prop_map(Value::String),
    ]
}

/// A valid record (key `sk-x`, which the fuzz app has) with some fields replaced or dropped.
fn spend_record() -> impl Strategy<Value = Value> {
    (0u64..24, prop::collection::vec((prop::sample::select(RECORD_FIELDS), spend_value(), any::<bool>()), 0..4))
        .prop_map(|(n, changes)| {
            let mut r =
                common::record_json(&common::record(n, Some("sk-x"), Some("t1"), None, Some("e"), 1000 + n as i64));
            let o = r.as_object_mut().unwrap();
            for (field, v, drop) in changes {
                if drop {
                    o.remove(field);
                } else {
                    o.insert(field.to_owned(), v);
                }
            }
            r
        })
}

async fn internal(app: &Router, body: Vec<u8>) -> (StatusCode, Value) {
    let req =
        Request::post("/internal/v1/spend").header("x-switchyard-internal", "s3cret").body(Body::from(body)).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_spend_records_are_stored_or_refused_never_a_5xx(
        records in prop::collection::vec(spend_record(), 0..10),
        garbage in json_value(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let app = app(&dir).await;
            let _ = post(&app, "/team/new", json!({"team_id": "t1"})).await;
            let _ = post(&app, "/key/generate", json!({"key": "sk-x", "team_id": "t1"})).await;
            let body = json!({"records": records}).to_string().into_bytes();
            let (st, v) = internal(&app, body.clone()).await;
            prop_assert_eq!(st, StatusCode::OK, "{}", v);
            let rejected = v["rejected"].as_array().map_or(0, Vec::len) as u64;
            let (ins, dup) = (v["inserted"].as_u64().unwrap(), v["duplicates"].as_u64().unwrap());
            prop_assert_eq!(ins + dup + rejected, records.len() as u64, "{}", v);
            prop_assert!(!v.to_string().contains(&switchyard_sidecar::keys::hash_token("sk-x")), "no key hash in {}", v);
            // Resent: nothing new, the same refusals.
            let (st, again) = internal(&app, body).await;
            prop_assert_eq!(st, StatusCode::OK);
            prop_assert_eq!(again["inserted"].as_u64(), Some(0));
            prop_assert_eq!(again["duplicates"].as_u64(), Some(ins + dup));
            // The reads still answer.
            for path in ["/spend/logs", "/global/spend/report?start_date=2000-01-01&end_date=2000-12-31", "/key/info?key=sk-x"] {
                let (st, v) = call(&app, "GET", path, vec![]).await;
                prop_assert_eq!(st, StatusCode::OK, "{}: {}", path, v);
            }
            // Not a batch: a 4xx in the error shape, never a 5xx.
            for body in [garbage.to_string().into_bytes(), json!({"records": garbage}).to_string().into_bytes()] {
                let (st, v) = internal(&app, body).await;
                prop_assert!(st.as_u16() < 500, "{} {}", st, v);
            }
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn resent_batches_in_any_mix_count_each_record_once(
        batches in prop::collection::vec(prop::collection::vec((0u64..40, 1i64..5_000_000), 0..15), 1..8),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let app = app(&dir).await;
            let _ = post(&app, "/key/generate", json!({"key": "sk-x"})).await;
            // The first cost sent for an id is the one counted (later sends are duplicates).
            let mut first: std::collections::BTreeMap<u64, i64> = std::collections::BTreeMap::new();
            for b in &batches {
                let records: Vec<Value> = b
                    .iter()
                    .map(|(n, cost)| common::record_json(&common::record(*n, Some("sk-x"), None, None, None, *cost)))
                    .collect();
                let (st, v) = internal(&app, json!({"records": records}).to_string().into_bytes()).await;
                prop_assert_eq!(st, StatusCode::OK, "{}", v);
                let fresh = b.iter().filter(|(n, _)| !first.contains_key(n)).map(|(n, _)| *n).collect::<std::collections::BTreeSet<_>>();
                prop_assert_eq!(v["inserted"].as_u64(), Some(fresh.len() as u64));
                for (n, cost) in b {
                    first.entry(*n).or_insert(*cost);
                }
            }
            let (_, info) = call(&app, "GET", "/key/info?key=sk-x", vec![]).await;
            let spend = (info["info"]["spend"].as_f64().unwrap() * 1e9).round() as i64;
            prop_assert_eq!(spend, first.values().sum::<i64>());
            Ok::<(), TestCaseError>(())
        })?;
    }
}
