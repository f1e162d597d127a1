//! Input generators shared by the property tests (the "fuzzers" that run in `cargo test`).

use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// 512 cases per property by default; `PROPTEST_CASES=100000 cargo test` digs deeper.
pub fn fuzz_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Any JSON value, a few levels deep.
pub fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys biased towards the ones the gateway interprets, so generated objects reach
/// deep into the parsers instead of being rejected at the first field.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "model", "messages", "role", "content", "type", "text", "image_url", "url", "tool_calls", "id",
            "function", "name", "arguments", "tool_call_id", "tools", "tool_choice", "parameters", "stop",
            "max_tokens", "temperature", "stream", "n", "user", "file", "file_data", "reasoning_effort",
            "thinking_blocks", "thinking", "signature", "data", "functions", "function_call", "top_k", "top_p",
            // The sidecar's answers (keys, end users, grants, the change feed).
            "token", "models", "blocked", "rpm_limit", "tpm_limit", "max_parallel_requests", "model_rpm_limit",
            "model_tpm_limit", "team", "team_id", "user_id", "version", "expires_at", "aliases", "window", "grants",
            "requests", "tokens", "granted_requests", "customers", "next", "missing", "changes", "seq", "latest",
            "kind", "reset", "more",
        ]).prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
    ]
}

fn arb_content() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        ".{0,10}".prop_map(|t| json!({"type": "text", "text": t})),
        prop::sample::select(vec![
            "data:image/png;base64,iVBORw0KGgo=",
            "data:image/bmp;base64,Qk0=",
            "data:image/png,raw",
            "https://example.com/a.png",
            "ftp://x",
            "",
        ])
        .prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
        Just(json!({"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}})),
        Just(json!({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}})),
        Just(json!({"type": "file", "file": {"file_id": "file-1"}})),
        arb_json(),
    ];
    prop_oneof![
        ".{0,12}".prop_map(Value::String),
        proptest::collection::vec(part, 0..4).prop_map(Value::Array),
        Just(Value::Null),
    ]
}

fn arb_message() -> impl Strategy<Value = Value> {
    let role = prop::sample::select(vec!["system", "developer", "user", "assistant", "tool", "function", "robot"]);
    let tool_call = (
        "[a-zA-Z0-9_.:-]{0,12}",
        "[a-z_]{1,8}",
        prop_oneof![
            Just("{}".to_string()),
            Just(String::new()),
            Just("[1]".to_string()),
            Just("{\"a\": 1}".to_string()),
            ".{0,8}",
        ],
    )
        .prop_map(
            |(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}),
        );
    (
        role,
        arb_content(),
        proptest::option::of(proptest::collection::vec(tool_call, 0..3)),
        proptest::option::of("[a-z0-9_]{0,8}"),
        proptest::option::of(arb_thinking_blocks()),
        proptest::option::of(prop_oneof![
            Just(json!({"name": "f", "arguments": "{}"})),
            Just(json!({"name": "f", "arguments": "[]"})),
            arb_json(),
        ]),
        proptest::option::of(prop::sample::select(vec!["f", "", "g"])),
    )
        .prop_map(|(role, content, calls, call_id, thinking, function_call, name)| {
            let mut m = Map::new();
            m.insert("role".into(), json!(role));
            m.insert("content".into(), content);
            if let Some(calls) = calls {
                m.insert("tool_calls".into(), Value::Array(calls));
            }
            if let Some(id) = call_id {
                m.insert("tool_call_id".into(), json!(id));
            }
            if let Some(blocks) = thinking {
                m.insert("thinking_blocks".into(), blocks);
            }
            if let Some(call) = function_call {
                m.insert("function_call".into(), call);
            }
            if let Some(name) = name {
                m.insert("name".into(), json!(name));
            }
            Value::Object(m)
        })
}

fn arb_thinking_blocks() -> impl Strategy<Value = Value> {
    let block = prop_oneof![
        ".{0,8}".prop_map(|t| json!({"type": "thinking", "thinking": t, "signature": "EqQB"})),
        Just(json!({"type": "thinking", "thinking": "x"})),
        Just(json!({"type": "redacted_thinking", "data": "EmwK", "index": 1})),
        Just(json!({"type": "other"})),
        arb_json(),
    ];
    prop_oneof![proptest::collection::vec(block, 0..3).prop_map(Value::Array), arb_json()]
}

/// Models whose per-model rules differ (providers::models), and others.
const MODELS: [&str; 9] = [
    "m",
    "claude-opus-4-7",
    "claude-sonnet-4-6",
    "claude-sonnet-4-5",
    "claude-3-5-haiku-latest",
    "claude-fable-5-1",
    "gemini-2.5-pro",
    "gemini-3-pro-preview",
    "o3-mini",
];

/// Chat requests close to valid: the right skeleton with arbitrary variations.
pub fn arb_chat_request() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(arb_message(), 0..6),
        proptest::option::of(0u32..5000),
        proptest::option::of(prop_oneof![
            Just(json!("auto")),
            Just(json!("required")),
            Just(json!("none")),
            Just(json!({"type": "function", "function": {"name": "f"}}))
        ]),
        proptest::option::of(prop::sample::select(vec!["low", "medium", "high", "none", "weird"])),
        proptest::option::of(prop_oneof![Just(json!("x")), Just(json!(["\n", "y"])), Just(json!([]))]),
        any::<bool>(),
        (
            prop::sample::select(MODELS.to_vec()),
            proptest::option::of(0.0f64..2.5),
            proptest::option::of(0.0f64..1.0),
            proptest::option::of(0u32..100),
            proptest::option::of(prop_oneof![Just(json!("auto")), Just(json!("none")), Just(json!({"name": "f"}))]),
            any::<bool>(),
        ),
    )
        .prop_map(|(messages, max_tokens, tool_choice, effort, stop, tools, extra)| {
            let (model, temperature, top_p, top_k, function_call, functions) = extra;
            let mut req = json!({"model": model, "messages": messages});
            for (name, value) in [("temperature", temperature), ("top_p", top_p)] {
                if let Some(v) = value {
                    req[name] = json!(v);
                }
            }
            if let Some(k) = top_k {
                req["top_k"] = json!(k);
            }
            if let Some(choice) = function_call {
                req["function_call"] = choice;
            }
            if functions {
                req["functions"] = json!([{"name": "f", "parameters": {"type": "object"}}]);
            }
            if let Some(n) = max_tokens {
                req["max_tokens"] = json!(n);
            }
            if let Some(c) = tool_choice {
                req["tool_choice"] = c;
            }
            if let Some(e) = effort {
                req["reasoning_effort"] = json!(e);
            }
            if let Some(s) = stop {
                req["stop"] = s;
            }
            if tools {
                req["tools"] =
                    json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
            }
            req
        })
}
