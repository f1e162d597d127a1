//! Golden fixtures for every provider adapter.
//!
//! `<provider>` is a provider or preset name (`anthropic`, `gemini`, `openai`,
//! `mistral`, …). `tests/fixtures/<provider>/requests/<case>.json` holds an OpenAI
//! request (`openai`, for any operation) and optional `endpoint` metadata;
//! `<case>.expected.json` is the provider request the adapter must produce (path,
//! headers, body, dropped parameters) or the error it must return.
//! `tests/fixtures/<provider>/responses/<case>.json` holds a provider response (`status`
//! and `body` or `body_text`), optional `operation`, `endpoint` and `facts` (what the
//! gateway kept from the request); `<case>.expected.json` is what the client receives.
//!
//! `tests/fixtures/<provider>/streams/<case>.sse` is a provider stream exactly as sent;
//! `<case>.openai.sse` and `<case>.openai+usage.sse` are the client's stream without and
//! with `stream_options.include_usage`, and `<case>.usage.json` what the gateway meters:
//! the provider's billed usage in its own breakdown (`crate::usage::Usage`, what cost and
//! the ledger price). Every stream is also replayed byte by byte and at random split points: the
//! output must not depend on how the network cut it.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the expected files, then review the diff.

// Test code: a broken fixture should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchyard::config::UpstreamConfig;
use switchyard::endpoint::Endpoint;
use switchyard::operation::Operation;
use switchyard::pairs;
use switchyard::providers::stream::StreamContext;
use switchyard::providers::{Provider, RequestContext, RequestFacts, ResponseContext};

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

/// Compares with `<case>.expected.json`, or writes it when UPDATE_GOLDEN is set.
/// Returns a failure description instead of panicking so every case is reported.
fn check(case: &Path, actual: Value) -> Option<String> {
    check_json(&case.with_extension("expected.json"), case, actual)
}

fn check_json(expected_path: &Path, case: &Path, actual: Value) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        fs::write(expected_path, text).unwrap();
        return None;
    }
    if !expected_path.exists() {
        return Some(format!("{}: no {} (run with UPDATE_GOLDEN=1)", case.display(), expected_path.display()));
    }
    let expected = read_json(expected_path);
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
        let op = Operation::of_body(&body).unwrap_or(Operation::Chat);
        let mut facts = RequestFacts::default();
        let ctx = RequestContext { endpoint: &ep, config: &config };
        let actual = match adapter.request(&ctx, op, &body, &mut facts) {
            Ok(req) => {
                let body = match &req.body {
                    Some(b) => serde_json::from_slice::<Value>(b).expect("adapter produced invalid JSON"),
                    None => json!("<client body unchanged>"),
                };
                let mut out = json!({
                    "path": req.path,
                    "headers": req.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                    "dropped_params": req.dropped_params,
                    "body": body,
                });
                if !req.adjusted_params.is_empty() {
                    out["adjusted_params"] = json!(req.adjusted_params);
                }
                out
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
        let ep = endpoint(provider, input.get("endpoint"));
        let request = facts(input.get("facts"));
        let ctx = ResponseContext { created: CREATED, api_key: Some(API_KEY), endpoint: &ep, request: &request };
        let op = match input.get("operation").and_then(Value::as_str) {
            Some("embeddings") => Operation::Embeddings,
            Some("completions") => Operation::Completions,
            _ => Operation::Chat,
        };
        let adapter = Provider::from_name(provider).unwrap().adapter();
        let out = adapter.response(&ctx, op, status, &body);
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

/// Translates a provider stream delivered in the given pieces; returns the client's
/// bytes and the usage the translator read.
fn facts(settings: Option<&Value>) -> RequestFacts {
    let get = |key: &str| settings.and_then(|s| s.get(key));
    RequestFacts {
        model: get("model").and_then(Value::as_str).unwrap_or("client-model").to_string(),
        base64_embeddings: get("base64_embeddings").and_then(Value::as_bool).unwrap_or(false),
        input_chars: get("input_chars").and_then(Value::as_u64).unwrap_or(0) as usize,
        json_tool: get("json_tool").and_then(Value::as_bool).unwrap_or(false),
        legacy_functions: get("legacy_functions").and_then(Value::as_bool).unwrap_or(false),
    }
}

fn translate_stream(
    provider: &str,
    pieces: &[&[u8]],
    include_usage: bool,
    settings: Option<&Value>,
) -> (Vec<u8>, Value) {
    let provider = Provider::from_name(provider).unwrap();
    let ctx = StreamContext {
        created: CREATED,
        include_usage,
        provider,
        api_key: Some(API_KEY.into()),
        facts: facts(settings),
    };
    let mut translator = provider.adapter().stream(ctx);
    let mut out = Vec::new();
    for piece in pieces {
        translator.push(piece, &mut out);
    }
    translator.finish(&mut out);
    let usage = serde_json::to_value(translator.usage()).unwrap();
    (out, usage)
}

/// Deterministic split points (no RNG dependency, same on every machine).
fn random_splits(len: usize, seed: u64) -> Vec<usize> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut points: Vec<usize> = (0..(len / 16).clamp(1, 12))
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % (len + 1)
        })
        .collect();
    points.sort_unstable();
    points
}

fn pieces_at(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut last = 0;
    for &p in points {
        pieces.push(bytes[last..p].to_vec());
        last = p;
    }
    pieces.push(bytes[last..].to_vec());
    pieces
}

fn check_text(expected_path: &Path, actual: &[u8], case: &Path) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(expected_path, actual).unwrap();
        return None;
    }
    let expected = fs::read(expected_path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{} ({}):\n--- expected\n{}\n--- actual\n{}",
            case.display(),
            expected_path.display(),
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual)
        )
    })
}

fn run_streams(provider: &str) -> (usize, Vec<String>) {
    let dir = fixtures().join(provider).join("streams");
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        name.ends_with(".sse") && !name.contains(".openai")
    });
    found.sort();
    let mut failures = Vec::new();
    for case in &found {
        let input = fs::read(case).unwrap();
        let stem = case.with_extension("");
        let settings_path = stem.with_extension("facts.json");
        let settings = settings_path.exists().then(|| read_json(&settings_path));
        let settings = settings.as_ref();
        for (include_usage, suffix) in [(false, "openai.sse"), (true, "openai+usage.sse")] {
            let (whole, usage) = translate_stream(provider, &[&input], include_usage, settings);
            let expected_path = stem.with_extension(suffix);
            failures.extend(check_text(&expected_path, &whole, case));
            if include_usage {
                failures.extend(check_json(&stem.with_extension("usage.json"), case, usage.clone()));
            }
            // Chunking invariance.
            let bytewise: Vec<&[u8]> = input.chunks(1).collect();
            let mut variants =
                vec![("byte by byte".to_string(), translate_stream(provider, &bytewise, include_usage, settings))];
            for seed in 0..20 {
                let pieces = pieces_at(&input, &random_splits(input.len(), seed));
                let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
                variants
                    .push((format!("split seed {seed}"), translate_stream(provider, &refs, include_usage, settings)));
            }
            for (how, (out, split_usage)) in variants {
                if out != whole || split_usage != usage {
                    failures.push(format!(
                        "{} ({how}, include_usage={include_usage}): output differs from the whole-body translation:\n{}",
                        case.display(),
                        String::from_utf8_lossy(&out)
                    ));
                }
            }
        }
    }
    (found.len(), failures)
}

fn assert_golden(provider: &str, min_requests: usize, min_responses: usize, min_streams: usize) {
    let (requests, mut failures) = run_requests(provider);
    let (responses, response_failures) = run_responses(provider);
    let (streams, stream_failures) = run_streams(provider);
    failures.extend(response_failures);
    failures.extend(stream_failures);
    assert!(failures.is_empty(), "{} golden mismatches:\n{}", failures.len(), failures.join("\n\n"));
    // Guards against a fixture directory silently going missing.
    assert!(requests >= min_requests, "{provider}: only {requests} request fixtures found");
    assert!(responses >= min_responses, "{provider}: only {responses} response fixtures found");
    assert!(streams >= min_streams, "{provider}: only {streams} stream fixtures found");
}

#[test]
fn anthropic_golden() {
    assert_golden("anthropic", 20, 20, 12);
}

#[test]
fn openai_golden() {
    assert_golden("openai", 3, 6, 5);
}

#[test]
fn gemini_golden() {
    assert_golden("gemini", 15, 12, 6);
}

/// OpenAI-compatible presets: only where they depart from OpenAI.
#[test]
fn preset_golden() {
    for preset in [
        "azure",
        "mistral",
        "groq",
        "deepseek",
        "together",
        "fireworks",
        "perplexity",
        "ollama",
        "openrouter",
        "vllm",
        "xai",
    ] {
        let dir = fixtures().join(preset);
        assert!(dir.is_dir(), "no fixtures for {preset}");
        assert_golden(preset, 1, 0, 0);
    }
}
