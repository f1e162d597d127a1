//! Golden fixtures for every provider adapter.
//!
//! `tests/fixtures/<provider>/requests/<case>.json` holds an OpenAI request (and
//! optionally endpoint settings); `<case>.expected.json` is the provider request the
//! adapter must produce (path, headers, body, dropped parameters) or the error it must
//! return. `tests/fixtures/<provider>/responses/<case>.json` holds a provider response
//! (status and body); `<case>.expected.json` is what the client must receive.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the expected files, then review the diff.

// Test code: a broken fixture should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchyard::config::UpstreamConfig;
use switchyard::endpoint::Endpoint;
use switchyard::pairs;
use switchyard::providers::{Provider, RequestContext, ResponseContext};

const CREATED: u64 = 1_700_000_000;
const API_KEY: &str = "sk-golden-test-key-0123456789";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> =
        fs::read_dir(dir).map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    found.retain(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        name.ends_with(".json") && !name.ends_with(".expected.json")
    });
    found.sort();
    found
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares with the expected file, or writes it when UPDATE_GOLDEN is set.
/// Returns a failure description instead of panicking so every case is reported.
fn check(case: &Path, actual: Value) -> Option<String> {
    let expected_path = case.with_extension("expected.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        fs::write(&expected_path, text).unwrap();
        return None;
    }
    if !expected_path.exists() {
        return Some(format!("{}: no expected file (run with UPDATE_GOLDEN=1)", case.display()));
    }
    let expected = read_json(&expected_path);
    (expected != actual).then(|| {
        format!(
            "{}:\n--- expected\n{}\n--- actual\n{}",
            case.display(),
            serde_json::to_string_pretty(&expected).unwrap(),
            serde_json::to_string_pretty(&actual).unwrap()
        )
    })
}

/// Builds the endpoint the way Envoy would present its metadata.
fn endpoint(provider: &str, settings: Option<&Value>) -> Endpoint {
    let mut meta: Vec<(String, Vec<u8>)> = vec![("provider".into(), provider.as_bytes().to_vec())];
    if let Some(Value::Object(settings)) = settings {
        for (k, v) in settings {
            let bytes = match v {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Number(n) => n.as_f64().unwrap().to_le_bytes().to_vec(),
                other => panic!("unsupported endpoint setting {other}"),
            };
            meta.push((k.clone(), bytes));
        }
    }
    Endpoint::from_metadata(&pairs::encode(&meta)).unwrap()
}

fn run_requests(provider: &str) -> (usize, Vec<String>) {
    let dir = fixtures().join(provider).join("requests");
    let config = UpstreamConfig::default();
    let mut failures = Vec::new();
    let all = cases(&dir);
    for case in &all {
        let input = read_json(case);
        let ep = endpoint(provider, input.get("endpoint"));
        let body = serde_json::to_vec(&input["openai"]).unwrap();
        let adapter = Provider::from_name(provider).unwrap().adapter();
        let actual = match adapter.chat_request(&RequestContext { endpoint: &ep, config: &config }, &body) {
            Ok(req) => {
                let body = match &req.body {
                    Some(b) => serde_json::from_slice::<Value>(b).expect("adapter produced invalid JSON"),
                    None => json!("<client body unchanged>"),
                };
                json!({
                    "path": req.path,
                    "headers": req.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                    "dropped_params": req.dropped_params,
                    "body": body,
                })
            }
            Err(err) => json!({
                "error": {"status": err.status(), "body": serde_json::from_slice::<Value>(&err.body()).unwrap()}
            }),
        };
        failures.extend(check(case, actual));
    }
    (all.len(), failures)
}

fn run_responses(provider: &str) -> (usize, Vec<String>) {
    let dir = fixtures().join(provider).join("responses");
    let mut failures = Vec::new();
    let all = cases(&dir);
    for case in &all {
        let input = read_json(case);
        let status = input["status"].as_u64().unwrap() as u16;
        let body = match (&input.get("body"), input.get("body_text")) {
            (_, Some(Value::String(text))) => text.clone().into_bytes(),
            (Some(body), _) => serde_json::to_vec(body).unwrap(),
            _ => Vec::new(),
        };
        let ctx = ResponseContext { created: CREATED, api_key: Some(API_KEY) };
        let adapter = Provider::from_name(provider).unwrap().adapter();
        let out = adapter.chat_response(&ctx, status, &body);
        let text = String::from_utf8(out.body.clone()).unwrap();
        assert!(!text.contains(API_KEY), "{}: the provider key leaked into the response", case.display());
        let actual = json!({
            "status": out.status,
            "body": serde_json::from_slice::<Value>(&out.body).expect("adapter produced invalid JSON"),
        });
        failures.extend(check(case, actual));
    }
    (all.len(), failures)
}

fn assert_golden(provider: &str, min_requests: usize, min_responses: usize) {
    let (requests, mut failures) = run_requests(provider);
    let (responses, response_failures) = run_responses(provider);
    failures.extend(response_failures);
    assert!(failures.is_empty(), "{} golden mismatches:\n{}", failures.len(), failures.join("\n\n"));
    // Guards against a fixture directory silently going missing.
    assert!(requests >= min_requests, "{provider}: only {requests} request fixtures found");
    assert!(responses >= min_responses, "{provider}: only {responses} response fixtures found");
}

#[test]
fn anthropic_golden() {
    assert_golden("anthropic", 20, 20);
}

#[test]
fn openai_golden() {
    assert_golden("openai", 3, 6);
}
