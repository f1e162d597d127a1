use super::presets::{find, PRESETS};
use super::*;
use crate::config::UpstreamConfig;
use crate::endpoint::Endpoint;
use crate::providers::stream::StreamContext;
use crate::providers::{models, ParamPolicy, Provider};
use crate::testing::{arb_chat_request, arb_json, fuzz_config};
use proptest::prelude::*;
use serde_json::{json, Value};

const KEY: &str = "sk-test-secret-0123456789";

fn endpoint_for(
    preset: &'static Preset,
    model: Option<&str>,
    api_version: Option<&str>,
    policy: ParamPolicy,
) -> Endpoint {
    Endpoint {
        provider: Provider::OpenAi(preset),
        model: model.map(str::to_string),
        api_key_env: None,
        authority: "provider.example".into(),
        base_path: "/v1".into(),
        max_tokens: None,
        api_version: api_version.map(str::to_string),
        param_policy: policy,
        base_model: None,
        price_overrides: Default::default(),
    }
}

fn endpoint(model: Option<&str>) -> Endpoint {
    endpoint_for(&PRESETS[0], model, None, ParamPolicy::Default)
}

fn param_of(err: &GatewayError) -> Value {
    serde_json::from_slice::<Value>(&err.body()).unwrap()["error"]["param"].clone()
}

fn preset(name: &str) -> &'static Preset {
    find(name).unwrap()
}

fn request_on(ep: &Endpoint, op: Operation, body: &str) -> Result<UpstreamRequest, GatewayError> {
    let config = UpstreamConfig::default();
    OpenAi.request(&RequestContext { endpoint: ep, config: &config }, op, body.as_bytes(), &mut RequestFacts::default())
}

fn translate(model: Option<&str>, body: &str) -> Result<UpstreamRequest, GatewayError> {
    request_on(&endpoint(model), Operation::Chat, body)
}

/// The body a preset sends for a chat request (the client's when unchanged).
fn sent_by(name: &str, policy: ParamPolicy, body: &str) -> Result<(Value, Vec<String>), GatewayError> {
    let ep = endpoint_for(preset(name), None, None, policy);
    let out = request_on(&ep, Operation::Chat, body)?;
    let bytes = out.body.unwrap_or_else(|| body.as_bytes().to_vec());
    Ok((serde_json::from_slice(&bytes).unwrap(), out.dropped_params))
}

#[test]
fn rewrites_only_the_model_and_keeps_everything_else_byte_for_byte() {
    let body =
        r#"{"model":"alias","messages":[{"role":"user","content":"h\u00e9"}],"logit_bias":{"1": -100},"x":[1,2]}"#;
    let out = translate(Some("gpt-4o-mini"), body).unwrap();
    assert_eq!(out.path, "/v1/chat/completions");
    assert_eq!(
        String::from_utf8(out.body.unwrap()).unwrap(),
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\u00e9"}],"logit_bias":{"1": -100},"x":[1,2]}"#
    );
}

#[test]
fn leaves_the_body_alone_when_the_model_already_matches_or_is_not_set() {
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    assert_eq!(translate(Some("gpt-4o"), body).unwrap().body, None);
    assert_eq!(translate(None, body).unwrap().body, None);
}

#[test]
fn successful_responses_pass_through_unbuffered_and_streams_are_read() {
    let ep = endpoint(None);
    let plain = RequestFacts::default();
    let handling = |status, stream| OpenAi.response_handling(&ep, Operation::Chat, status, stream, &plain);
    assert_eq!(handling(200, false), ResponseHandling::PassThrough);
    assert_eq!(handling(200, true), ResponseHandling::Stream);
    assert_eq!(handling(429, false), ResponseHandling::Translate);
    assert_eq!(handling(429, true), ResponseHandling::Translate);
    // Presets with their own finish reasons are read, except for embeddings.
    let mistral = endpoint_for(preset("mistral"), None, None, ParamPolicy::Default);
    assert_eq!(OpenAi.response_handling(&mistral, Operation::Chat, 200, false, &plain), ResponseHandling::Translate);
    assert_eq!(
        OpenAi.response_handling(&mistral, Operation::Embeddings, 200, false, &plain),
        ResponseHandling::PassThrough
    );
}

#[test]
fn streams_always_ask_for_usage_and_remember_whether_the_client_did() {
    let cases = [
        (r#"{"model":"m","messages":[],"stream":true}"#, r#"{"include_usage":true}"#, false),
        (
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_obfuscation":false}}"#,
            r#"{"include_obfuscation":false,"include_usage":true}"#,
            false,
        ),
        (r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#, "", true),
    ];
    for (body, options, client_asked) in cases {
        let out = translate(None, body).unwrap();
        assert!(out.stream);
        assert_eq!(out.include_usage, client_asked, "{body}");
        match out.body {
            Some(b) => {
                let sent: Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(sent["stream_options"], serde_json::from_str::<Value>(options).unwrap(), "{body}");
            }
            None => assert!(options.is_empty(), "{body}"),
        }
    }
    let plain = translate(None, r#"{"model":"m","messages":[],"stream":false}"#).unwrap();
    assert!(!plain.stream && plain.body.is_none());
}

#[test]
fn stream_options_without_a_stream_are_removed() {
    for body in [
        r#"{"model":"m","messages":[],"stream_options":{"include_usage":true}}"#,
        r#"{"model":"m","messages":[],"stream":false,"stream_options":{"include_usage":true}}"#,
    ] {
        let out = translate(None, body).unwrap();
        let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
        assert!(sent.get("stream_options").is_none(), "{body}");
        assert!(!out.stream && !out.include_usage);
    }
    // Embeddings never stream, whatever the body says.
    let ep = endpoint(None);
    let out = request_on(&ep, Operation::Embeddings, r#"{"model":"m","input":"x","stream":true}"#).unwrap();
    assert!(!out.stream && out.body.is_none());
}

#[test]
fn providers_that_report_usage_unasked_get_no_stream_options() {
    let body = r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
    let ep = endpoint_for(preset("mistral"), None, None, ParamPolicy::Default);
    let out = request_on(&ep, Operation::Chat, body).unwrap();
    let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
    assert!(sent.get("stream_options").is_none());
    // The client still gets its usage chunk: the stream translator builds it.
    assert!(out.stream && out.include_usage);
}

#[test]
fn azure_paths_and_stream_options_by_api_version() {
    let azure = preset("azure");
    let stream = r#"{"model":"gpt-4o","messages":[],"stream":true}"#;
    // Deployment URLs: the model names the deployment, the body is left alone.
    let ep = endpoint_for(azure, Some("prod-4o"), Some("2024-10-21"), ParamPolicy::Default);
    let out = request_on(&ep, Operation::Chat, stream).unwrap();
    assert_eq!(out.path, "/v1/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21");
    let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
    assert_eq!(sent["model"], "gpt-4o");
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    // Older dated versions refuse stream_options: not added.
    for old in ["2024-06-01", "2024-08-01-preview", "2023-05-15"] {
        let ep = endpoint_for(azure, Some("prod-4o"), Some(old), ParamPolicy::Default);
        assert_eq!(request_on(&ep, Operation::Chat, stream).unwrap().body, None, "{old}");
    }
    for new in ["2024-09-01-preview", "2025-04-01-preview"] {
        let ep = endpoint_for(azure, Some("prod-4o"), Some(new), ParamPolicy::Default);
        assert!(request_on(&ep, Operation::Chat, stream).unwrap().body.is_some(), "{new}");
    }
    // Undated versions belong to the v1 URLs.
    for v1 in ["preview", "v1", "2024-10-21-beta", "2024-1-21"] {
        let ep = endpoint_for(azure, Some("prod-4o"), Some(v1), ParamPolicy::Default);
        let out = request_on(&ep, Operation::Chat, stream).unwrap();
        assert_eq!(out.path, format!("/v1/openai/v1/chat/completions?api-version={v1}"));
        let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
        assert_eq!((&sent["model"], &sent["stream_options"]), (&json!("prod-4o"), &json!({"include_usage": true})));
    }
    // v1 URLs: the deployment goes in the body.
    let ep = endpoint_for(azure, Some("prod-4o"), None, ParamPolicy::Default);
    let out = request_on(&ep, Operation::Embeddings, r#"{"model":"emb","input":"x"}"#).unwrap();
    assert_eq!(out.path, "/v1/openai/v1/embeddings");
    assert_eq!(serde_json::from_slice::<Value>(&out.body.unwrap()).unwrap()["model"], "prod-4o");
    // A client alias used as the deployment cannot add path or query parts.
    let ep = endpoint_for(azure, None, Some("2024-10-21"), ParamPolicy::Default);
    let out = request_on(&ep, Operation::Chat, r#"{"model":"a/../b?x=1#y z","messages":[]}"#).unwrap();
    assert_eq!(out.path, "/v1/openai/deployments/a%2F..%2Fb%3Fx%3D1%23y%20z/chat/completions?api-version=2024-10-21");
    // api_version means nothing to other presets.
    let ep = endpoint_for(&PRESETS[0], None, Some("2024-10-21"), ParamPolicy::Default);
    assert_eq!(request_on(&ep, Operation::Chat, stream).unwrap().path, "/v1/chat/completions");
}

#[test]
fn n_counts_only_above_one_however_it_is_written() {
    for n in ["1", "1.0", "1e0", "null"] {
        let (body, dropped) =
            sent_by("groq", ParamPolicy::Default, &format!(r#"{{"model":"m","messages":[],"n":{n}}}"#))
                .unwrap_or_else(|e| panic!("n={n}: {e:?}"));
        assert!(body.get("n").is_none() && dropped.is_empty(), "n={n}");
    }
    for n in ["2", "2.0", "1.5"] {
        let err =
            sent_by("groq", ParamPolicy::Default, &format!(r#"{{"model":"m","messages":[],"n":{n}}}"#)).unwrap_err();
        assert_eq!(err.status(), 400, "n={n}");
        assert_eq!(param_of(&err), "n");
    }
    let (body, dropped) = sent_by("groq", ParamPolicy::Drop, r#"{"model":"m","messages":[],"n":3}"#).unwrap();
    assert!(body.get("n").is_none());
    assert_eq!(dropped, ["n"]);
}

#[test]
fn tool_choice_is_read_as_json_not_as_bytes() {
    for raw in [r#""required""#, r#""requ\u0069red""#, r#" "required" "#] {
        let body = format!(r#"{{"model":"m","messages":[],"tool_choice":{raw}}}"#);
        let (sent, _) = sent_by("fireworks", ParamPolicy::Default, &body).unwrap();
        assert_eq!(sent["tool_choice"], "any", "{raw}");
    }
    // Only the exact value: anything else is the provider's to judge.
    let (sent, _) =
        sent_by("fireworks", ParamPolicy::Default, r#"{"model":"m","messages":[],"tool_choice":"Required"}"#).unwrap();
    assert_eq!(sent["tool_choice"], "Required");
}

#[test]
fn named_tool_choice_follows_the_policy_where_unsupported() {
    static NO_NAMED: Preset = Preset { name: "no-named", named_tool_choice: false, ..presets::OPENAI_LIKE };
    let body = r#"{"model":"m","messages":[],"tool_choice":{"type":"function","function":{"name":"f"}}}"#;
    let run = |policy| {
        let ep = endpoint_for(&NO_NAMED, None, None, policy);
        request_on(&ep, Operation::Chat, body)
    };
    assert_eq!(param_of(&run(ParamPolicy::Default).unwrap_err()), "tool_choice");
    assert_eq!(param_of(&run(ParamPolicy::Reject).unwrap_err()), "tool_choice");
    let out = run(ParamPolicy::Drop).unwrap();
    assert_eq!(out.dropped_params, ["tool_choice"]);
    assert!(serde_json::from_slice::<Value>(&out.body.unwrap()).unwrap().get("tool_choice").is_none());
}

#[test]
fn values_that_ask_for_nothing_are_removed_silently() {
    let body = r#"{"model":"m","messages":[],"logprobs":false,"top_logprobs":null,"n":1,"logit_bias":null}"#;
    let (sent, dropped) = sent_by("groq", ParamPolicy::Reject, body).unwrap();
    assert_eq!(sent, json!({"model": "m", "messages": []}));
    assert!(dropped.is_empty());
    let (sent, _) = sent_ok("ollama", r#"{"model":"m","messages":[],"tool_choice":"auto","tools":[]}"#);
    assert_eq!(sent, json!({"model": "m", "messages": [], "tools": []}));
    let (sent, _) = sent_ok("perplexity", r#"{"model":"m","messages":[],"tools":[ ],"tool_choice":null}"#);
    assert_eq!(sent, json!({"model": "m", "messages": []}));
}

fn sent_ok(name: &str, body: &str) -> (Value, Vec<String>) {
    sent_by(name, ParamPolicy::Reject, body).unwrap()
}

#[test]
fn renamed_fields_never_leave_nulls_or_duplicates_behind() {
    let (sent, _) = sent_ok("mistral", r#"{"model":"m","messages":[],"max_completion_tokens":null,"seed":null}"#);
    assert_eq!(sent, json!({"model": "m", "messages": []}));
    let (sent, _) = sent_ok(
        "mistral",
        r#"{"model":"m","messages":[],"max_completion_tokens":9,"max_tokens":5,"seed":1,"random_seed":2}"#,
    );
    assert_eq!(sent, json!({"model": "m", "messages": [], "max_tokens": 5, "random_seed": 2}));
    let (sent, _) = sent_ok("mistral", r#"{"model":"m","messages":[],"max_tokens":null,"max_completion_tokens":9}"#);
    assert_eq!(sent, json!({"model": "m", "messages": [], "max_tokens": 9}));
}

#[test]
fn mistral_tool_ids_pair_up_and_foreign_fields_go() {
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "assistant", "content": null, "reasoning_content": "hmm",
         "tool_calls": [{"id": "call_abc-123", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                        {"id": "AbCdE1234", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_abc-123", "content": "1"},
        {"role": "tool", "tool_call_id": "AbCdE1234", "content": "2"},
        {"r\u{006f}le": "user", "n\u{0061}me": "escaped", "content": "x"}
    ]});
    // The last message spells its keys with escapes.
    let raw = body.to_string().replace(r#""name":"escaped""#, r#""na\u006de":"escaped""#);
    let (sent, _) = sent_ok("mistral", &raw);
    let messages = sent["messages"].as_array().unwrap();
    let mapped = messages[1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(mapped.len(), 9);
    assert!(mapped.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(messages[2]["tool_call_id"], mapped);
    // Already valid ids are kept.
    assert_eq!(messages[1]["tool_calls"][1]["id"], "AbCdE1234");
    assert_eq!(messages[3]["tool_call_id"], "AbCdE1234");
    assert!(messages.iter().all(|m| m.get("name").is_none() && m.get("reasoning_content").is_none()));
}

#[test]
fn unsupported_operations_are_refused() {
    for (name, op) in
        [("groq", Operation::Embeddings), ("groq", Operation::Completions), ("mistral", Operation::Completions)]
    {
        let ep = endpoint_for(preset(name), None, None, ParamPolicy::Default);
        let err = request_on(&ep, op, r#"{"model":"m","input":"x","prompt":"y"}"#).unwrap_err();
        let v: Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(v["error"]["code"], "unsupported_operation", "{name}");
    }
}

#[test]
fn normalises_every_error_shape() {
    let ep = endpoint(None);
    let facts = RequestFacts::default();
    let ctx = ResponseContext { created: 0, api_key: Some("sk-test-secret"), endpoint: &ep, request: &facts };
    let cases: Vec<(u16, &[u8], u16, &str, Value, Value)> = vec![
        (
            401,
            br#"{"error":{"message":"Incorrect API key provided: sk-test-secret","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            401, "Incorrect API key provided: [REDACTED]", json!("invalid_api_key"), json!(null),
        ),
        (
            400,
            br#"{"error":{"message":"bad temp","type":"invalid_request_error","param":"temperature","code":null}}"#,
            400, "bad temp", json!(null), json!("temperature"),
        ),
        // A code that only repeats an HTTP status gives way to the canonical one.
        (429, br#"{"error":{"message":"slow down","code":429}}"#, 429, "slow down", json!("rate_limit_exceeded"), json!(null)),
        (429, br#"{"error":{"message":"slow down","code":"429"}}"#, 429, "slow down", json!("rate_limit_exceeded"), json!(null)),
        (422, br#"{"object":"error","message":"vllm says no","type":"BadRequestError","code":400}"#, 400, "vllm says no", json!(null), json!(null)),
        // Mistral's own codes are kept, and its validation details become the message.
        (
            422,
            br#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","messages",0,"user","name"],"msg":"Extra inputs are not permitted"}]},"type":"invalid_request_error","param":null,"code":3051}"#,
            400, "messages.0.user.name: Extra inputs are not permitted", json!("3051"), json!(null),
        ),
        (422, br#"{"detail":[{"loc":["body"],"msg":"a"},{"loc":["query","q"],"msg":"b"}]}"#, 400, "a; query.q: b", json!(null), json!(null)),
        (422, br#"{"detail":[{"loc":["body"]}]}"#, 400, r#"[{"loc":["body"]}]"#, json!(null), json!(null)),
        // Generic type names are not codes (DeepSeek); a type contradicting the status
        // gives way to it (Ollama's 404 `api_error`).
        (402, br#"{"error":{"message":"Insufficient Balance","type":"unknown_error","code":"invalid_request_error"}}"#, 402, "Insufficient Balance", json!("insufficient_quota"), json!(null)),
        (404, br#"{"detail":"Not Found"}"#, 404, "Not Found", json!(null), json!(null)),
        (500, br#"{"error":"boom"}"#, 500, "boom", json!(null), json!(null)),
        (502, b"<html>bad gateway</html>", 502, "The provider returned HTTP 502: <html>bad gateway</html>", json!("bad_gateway"), json!(null)),
        (503, b"", 503, "The provider returned HTTP 503 with no error message.", json!("overloaded"), json!(null)),
        (400, br#"{"error":{"message":"","code":"x"}}"#, 400, r#"The provider returned HTTP 400: {"error":{"message":"","code":"x"}}"#, json!("x"), json!(null)),
        // The key is scrubbed from every field, not only the message.
        (400, br#"{"error":{"message":"m","param":"sk-test-secret","code":"sk-test-secret"}}"#, 400, "m", json!("[REDACTED]"), json!("[REDACTED]")),
    ];
    for (status, body, want_status, want_message, want_code, want_param) in cases {
        let out = OpenAi.response(&ctx, Operation::Chat, status, body);
        assert_eq!(out.status, want_status, "{}", String::from_utf8_lossy(body));
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["error"]["message"], json!(want_message), "{}", String::from_utf8_lossy(body));
        assert_eq!(v["error"]["code"], want_code, "{}", String::from_utf8_lossy(body));
        assert_eq!(v["error"]["param"], want_param);
    }
    let kind = |status, body: &[u8]| {
        let v: Value = serde_json::from_slice(&OpenAi.response(&ctx, Operation::Chat, status, body).body).unwrap();
        v["error"]["type"].clone()
    };
    assert_eq!(kind(404, br#"{"error":{"message":"m","type":"api_error"}}"#), "invalid_request_error");
    assert_eq!(kind(500, br#"{"error":{"message":"m","type":"api_error"}}"#), "server_error");
    assert_eq!(kind(503, br#"{"error":{"message":"m","type":"invalid_request_error"}}"#), "service_unavailable");
    assert_eq!(kind(429, br#"{"error":{"message":"m","type":"tokens"}}"#), "rate_limit_error");
}

#[test]
fn mid_stream_error_status_comes_from_a_numeric_code() {
    assert_eq!(stream_error_status(br#"{"error":{"code":502,"message":"x"}}"#), 502);
    assert_eq!(stream_error_status(br#"{"error":{"code":"429"}}"#), 429);
    assert_eq!(stream_error_status(br#"{"error":{"code":"server_error"}}"#), 500);
    assert_eq!(stream_error_status(br#"{"error":{"code":200}}"#), 500);
    assert_eq!(stream_error_status(b"garbage"), 500);
}

// ---------------------------------------------------------------------------------
// Streams.

fn run_stream(provider: &str, include_usage: bool, pieces: &[&[u8]]) -> (String, Option<crate::usage::Usage>) {
    let ctx = StreamContext {
        created: 1,
        include_usage,
        provider: Provider::from_name(provider).unwrap(),
        api_key: Some(KEY.into()),
        facts: RequestFacts::default(),
    };
    let mut translator = OpenAi.stream(ctx);
    let mut out = Vec::new();
    for piece in pieces {
        translator.push(piece, &mut out);
    }
    translator.finish(&mut out);
    let usage = translator.usage();
    (String::from_utf8(out).unwrap(), usage)
}

fn data_events(out: &str) -> Vec<&str> {
    out.split("\n\n").filter(|e| !e.is_empty()).map(|e| e.strip_prefix("data: ").unwrap()).collect()
}

#[test]
fn usage_on_a_last_chunk_becomes_a_chunk_of_its_own() {
    let input = concat!(
        "data: {\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"model_length\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    );
    let (out, usage) = run_stream("mistral", false, &[input.as_bytes()]);
    let events = data_events(&out);
    assert_eq!(events.len(), 3);
    let last: Value = serde_json::from_str(events[1]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert!(last.get("usage").is_none());
    assert_eq!(usage.unwrap().total_tokens(), 5);

    let (out, _) = run_stream("mistral", true, &[input.as_bytes()]);
    let events = data_events(&out);
    assert_eq!(events.len(), 4);
    let last: Value = serde_json::from_str(events[1]).unwrap();
    assert_eq!(last["usage"], Value::Null);
    let usage_chunk: Value = serde_json::from_str(events[2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["id"], "a");
    assert_eq!(usage_chunk["usage"]["total_tokens"], 5);
    assert_eq!(events[3], "[DONE]");
}

#[test]
fn loose_usage_shapes_are_still_metered() {
    let chunk = |usage: &str| format!("data: {{\"id\":\"a\",\"choices\":[],\"usage\":{usage}}}\n\ndata: [DONE]\n\n");
    // vLLM and Ollama send null details; DeepSeek its own cache field.
    let (_, usage) = run_stream("vllm", true, &[chunk(r#"{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5,"prompt_tokens_details":null,"completion_tokens_details":null}"#).as_bytes()]);
    assert_eq!(usage.unwrap().total_tokens(), 5);
    let (_, usage) = run_stream("deepseek", true, &[chunk(r#"{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5,"prompt_cache_hit_tokens":3,"prompt_cache_miss_tokens":1}"#).as_bytes()]);
    assert_eq!((usage.unwrap().cache_read, usage.unwrap().input), (3, 1));
    // Groq's older streams.
    let groq = "data: {\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_1\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}}}\n\ndata: [DONE]\n\n";
    let (out, usage) = run_stream("groq", false, &[groq.as_bytes()]);
    assert_eq!(usage.unwrap().total_tokens(), 4);
    assert!(out.contains("x_groq"), "forwarded untouched");
}

#[test]
fn named_error_events_and_empty_keepalives() {
    let input = "data: \n\nevent: error\ndata: {\"message\":\"overloaded sk-test-secret-0123456789\",\"code\":503}\n\n";
    let (out, _) = run_stream("vllm", false, &[input.as_bytes()]);
    let events = data_events(&out);
    assert_eq!(events.len(), 1);
    let v: Value = serde_json::from_str(events[0]).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("[REDACTED]"));
    assert!(!out.contains(KEY));
}

#[test]
fn unreadable_events_never_echo_the_key() {
    let input = format!("data: {{\"choices\":\"{KEY}\"}}\n\n");
    let (out, _) = run_stream("openai", false, &[input.as_bytes()]);
    assert!(!out.contains(KEY), "{out}");
    assert!(out.contains("bad_upstream_response"));
}

// ---------------------------------------------------------------------------------
// Per-model rules (providers::models, OpenAI-compatible section).

/// What a deployment of `preset` serving `model` sends for `body`: the body, the request
/// (headers, reports) and the facts kept for the answer.
fn on_model(
    preset_name: &str,
    model: &str,
    policy: ParamPolicy,
    body: &Value,
) -> Result<(Value, UpstreamRequest, RequestFacts), GatewayError> {
    let ep = endpoint_for(preset(preset_name), Some(model), None, policy);
    let config = UpstreamConfig::default();
    let mut facts = RequestFacts::default();
    let bytes = body.to_string().into_bytes();
    let out =
        OpenAi.request(&RequestContext { endpoint: &ep, config: &config }, Operation::Chat, &bytes, &mut facts)?;
    let sent = serde_json::from_slice(out.body.as_deref().unwrap_or(&bytes)).unwrap();
    Ok((sent, out, facts))
}

fn question(extra: Value) -> Value {
    let mut body = json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

enum Want {
    /// Sent with these fields (`null`: absent), these dropped and these adjusted.
    Sent(Value, &'static [&'static str], &'static [&'static str]),
    /// Refused with a 400 naming the parameter.
    Refused(&'static str),
}

#[test]
fn reasoning_models_get_their_rules_as_edits() {
    use ParamPolicy::{Default as Def, Drop, Reject};
    use Want::{Refused, Sent};
    let renamed: &[&str] = &["max_tokens=max_completion_tokens"];
    let cases: Vec<(&str, &str, ParamPolicy, Value, Want)> = vec![
        // OpenAI o-series: max_tokens becomes max_completion_tokens; sampling only the default.
        (
            "openai",
            "o3-mini",
            Def,
            json!({"max_tokens": 100, "temperature": 0.2}),
            Sent(
                json!({"max_completion_tokens": 100, "max_tokens": null, "temperature": null}),
                &["temperature"],
                renamed,
            ),
        ),
        ("openai", "o3-mini", Reject, json!({"max_tokens": 100}), Refused("max_tokens")),
        (
            "openai",
            "o3-mini",
            Def,
            json!({"max_tokens": null}),
            Sent(json!({"max_tokens": null, "max_completion_tokens": null}), &[], &[]),
        ),
        (
            "openai",
            "o3-mini",
            Reject,
            json!({"temperature": 1, "top_p": 1.0, "presence_penalty": 0, "logprobs": false}),
            Sent(json!({"temperature": null, "top_p": null, "presence_penalty": null, "logprobs": null}), &[], &[]),
        ),
        ("openai", "o3-mini", Def, json!({"logprobs": true, "top_logprobs": 2}), Refused("logprobs")),
        (
            "openai",
            "o3-mini",
            Drop,
            json!({"logprobs": true, "top_logprobs": 2, "logit_bias": {"50256": -100}}),
            Sent(
                json!({"logprobs": null, "top_logprobs": null, "logit_bias": null}),
                &["logprobs", "top_logprobs", "logit_bias"],
                &[],
            ),
        ),
        // o3-mini keeps stop; o3 and o4-mini refuse it.
        ("openai", "o3-mini-2025-01-31", Def, json!({"stop": ["END"]}), Sent(json!({"stop": ["END"]}), &[], &[])),
        ("openai", "o4-mini", Def, json!({"stop": ["END"]}), Refused("stop")),
        (
            "openai",
            "o3",
            Drop,
            json!({"stop": "END", "frequency_penalty": 0.5}),
            Sent(json!({"stop": null, "frequency_penalty": null}), &["frequency_penalty", "stop"], &[]),
        ),
        ("openai", "o3", Reject, json!({"stop": []}), Sent(json!({"stop": null}), &[], &[])),
        (
            "openai",
            "o1",
            Def,
            json!({"reasoning_effort": "high", "presence_penalty": 0.4}),
            Sent(json!({"reasoning_effort": "high", "presence_penalty": null}), &["presence_penalty"], &[]),
        ),
        (
            "openai",
            "o1-mini",
            Def,
            json!({"reasoning_effort": "low"}),
            Sent(json!({"reasoning_effort": null}), &["reasoning_effort"], &[]),
        ),
        // GPT-5: the same, and stop; max_completion_tokens given too makes max_tokens redundant.
        (
            "openai",
            "gpt-5",
            Def,
            json!({"top_p": 0.9, "max_tokens": 5, "max_completion_tokens": 9}),
            Sent(json!({"top_p": null, "max_tokens": null, "max_completion_tokens": 9}), &["top_p", "max_tokens"], &[]),
        ),
        ("openai", "gpt-5-mini", Def, json!({"temperature": 0.5, "stop": "x"}), Refused("stop")),
        // GPT-5.1/5.2 take sampling and logprobs when they do not reason (their default).
        (
            "openai",
            "gpt-5.1",
            Reject,
            json!({"temperature": 0.3, "top_p": 0.5, "logprobs": true, "top_logprobs": 2}),
            Sent(json!({"temperature": 0.3, "top_p": 0.5, "logprobs": true, "top_logprobs": 2}), &[], &[]),
        ),
        (
            "openai",
            "gpt-5.2-2025-12-11",
            Def,
            json!({"reasoning_effort": "none", "temperature": 0.3, "presence_penalty": 1}),
            Sent(json!({"temperature": 0.3, "presence_penalty": null}), &["presence_penalty"], &[]),
        ),
        (
            "openai",
            "gpt-5.1",
            Def,
            json!({"reasoning_effort": "low", "temperature": 0.3}),
            Sent(json!({"reasoning_effort": "low", "temperature": null}), &["temperature"], &[]),
        ),
        ("openai", "gpt-5.1", Def, json!({"reasoning_effort": "medium", "logprobs": true}), Refused("logprobs")),
        (
            "openai",
            "gpt-5.1-codex",
            Def,
            json!({"temperature": 0.3}),
            Sent(json!({"temperature": null}), &["temperature"], &[]),
        ),
        // Not reasoning models: nothing changes.
        (
            "openai",
            "gpt-5-chat-latest",
            Reject,
            json!({"temperature": 0.3, "max_tokens": 5, "stop": "x"}),
            Sent(json!({"temperature": 0.3, "max_tokens": 5, "stop": "x"}), &[], &[]),
        ),
        (
            "openai",
            "gpt-4o-mini",
            Reject,
            json!({"temperature": 1.7, "max_tokens": 5, "logprobs": true}),
            Sent(json!({"temperature": 1.7, "max_tokens": 5, "logprobs": true}), &[], &[]),
        ),
        // Azure: the same models, the same rules.
        (
            "azure",
            "o4-mini",
            Def,
            json!({"max_tokens": 64, "top_p": 0.2}),
            Sent(json!({"max_completion_tokens": 64, "top_p": null}), &["top_p"], renamed),
        ),
        // Other presets' rows are their own: OpenRouter's o3-mini is OpenRouter's business.
        (
            "openrouter",
            "o3-mini",
            Reject,
            json!({"max_tokens": 5, "temperature": 0.2}),
            Sent(json!({"max_tokens": 5, "temperature": 0.2}), &[], &[]),
        ),
        // xAI: reasoning models refuse penalties and stop; only some take reasoning_effort.
        (
            "xai",
            "grok-3-mini",
            Def,
            json!({"reasoning_effort": "high", "presence_penalty": 0.1}),
            Sent(json!({"reasoning_effort": "high", "presence_penalty": null}), &["presence_penalty"], &[]),
        ),
        ("xai", "grok-3-mini-fast", Def, json!({"stop": ["\n"]}), Refused("stop")),
        (
            "xai",
            "grok-4",
            Def,
            json!({"reasoning_effort": "low", "frequency_penalty": -1}),
            Sent(
                json!({"reasoning_effort": null, "frequency_penalty": null}),
                &["reasoning_effort", "frequency_penalty"],
                &[],
            ),
        ),
        ("xai", "grok-4-0709", Reject, json!({"reasoning_effort": "low"}), Refused("reasoning_effort")),
        ("xai", "grok-4-fast-reasoning", Drop, json!({"stop": "x"}), Sent(json!({"stop": null}), &["stop"], &[])),
        (
            "xai",
            "grok-4-fast-non-reasoning",
            Reject,
            json!({"presence_penalty": 0.5, "stop": "x"}),
            Sent(json!({"presence_penalty": 0.5, "stop": "x"}), &[], &[]),
        ),
        (
            "xai",
            "grok-4.3",
            Def,
            json!({"reasoning_effort": "none", "presence_penalty": 0.5}),
            Sent(json!({"reasoning_effort": "none", "presence_penalty": null}), &["presence_penalty"], &[]),
        ),
        (
            "xai",
            "grok-3",
            Def,
            json!({"reasoning_effort": "low", "presence_penalty": 0.5}),
            Sent(json!({"reasoning_effort": null, "presence_penalty": 0.5}), &["reasoning_effort"], &[]),
        ),
        (
            "xai",
            "grok-code-fast-1",
            Def,
            json!({"frequency_penalty": 0.5, "temperature": 0.2}),
            Sent(json!({"frequency_penalty": null, "temperature": 0.2}), &["frequency_penalty"], &[]),
        ),
        // DeepSeek's reasoner: logprobs refused; the sampling it ignores is passed on.
        ("deepseek", "deepseek-reasoner", Def, json!({"logprobs": true}), Refused("logprobs")),
        (
            "deepseek",
            "deepseek-reasoner",
            Reject,
            json!({"temperature": 0.2, "top_p": 0.3, "max_completion_tokens": 9}),
            Sent(json!({"temperature": 0.2, "top_p": 0.3, "max_tokens": 9, "max_completion_tokens": null}), &[], &[]),
        ),
        ("deepseek", "deepseek-chat", Reject, json!({"logprobs": true}), Sent(json!({"logprobs": true}), &[], &[])),
    ];
    for (preset_name, model, policy, extra, want) in cases {
        let label = format!("{preset_name} {model} {policy:?} {extra}");
        let result = on_model(preset_name, model, policy, &question(extra));
        match want {
            Refused(param) => {
                let err = result.err().unwrap_or_else(|| panic!("{label}: not refused"));
                assert_eq!(err.status(), 400, "{label}");
                assert_eq!(param_of(&err), param, "{label}");
                let v: Value = serde_json::from_slice(&err.body()).unwrap();
                assert_eq!(v["error"]["code"], "unsupported_parameter", "{label}");
            }
            Sent(fields, dropped, adjusted) => {
                let (sent, out, _) = result.unwrap_or_else(|e| panic!("{label}: {e:?}"));
                for (k, v) in fields.as_object().unwrap() {
                    assert_eq!(sent.get(k).unwrap_or(&Value::Null), v, "{label}: {k}");
                }
                assert_eq!(out.dropped_params, dropped, "{label}");
                assert_eq!(out.adjusted_params, adjusted, "{label}");
                assert_eq!(sent["messages"], json!([{"role": "user", "content": "hi"}]), "{label}");
            }
        }
    }
}

#[test]
fn models_without_rules_keep_the_client_bytes() {
    // The common path: no rules, nothing to change, the client's body goes as it came.
    for (name, model) in [("openai", "gpt-4o-mini"), ("groq", "llama-3.3-70b-versatile"), ("xai", "grok-2")] {
        let ep = endpoint_for(preset(name), None, None, ParamPolicy::Reject);
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"reasoning about \"reasoning\""}}],"temperature":0.5}}"#
        );
        let out = request_on(&ep, Operation::Chat, &body).unwrap();
        assert_eq!(out.body, None, "{name}");
        assert!(out.dropped_params.is_empty() && out.adjusted_params.is_empty());
    }
}

#[test]
fn each_openai_compatible_model_gets_its_family() {
    let cases = [
        ("openai", "gpt-5-chat-latest", "GPT-5 Chat"),
        ("azure", "gpt-5-chat", "GPT-5 Chat"),
        ("openai", "o1-mini-2024-09-12", "OpenAI o1-mini and o1-preview"),
        ("openai", "o1-preview", "OpenAI o1-mini and o1-preview"),
        ("openai", "o1-2024-12-17", "OpenAI o1 and o3-mini"),
        ("openai", "o3-mini", "OpenAI o1 and o3-mini"),
        ("azure", "o3-mini", "OpenAI o1 and o3-mini"),
        ("openai", "o3", "OpenAI o3 and o4-mini"),
        ("openai", "o3-pro", "OpenAI o3 and o4-mini"),
        ("openai", "o4-mini-2025-04-16", "OpenAI o3 and o4-mini"),
        ("openai", "gpt-5", "OpenAI GPT-5 models"),
        ("openai", "gpt-5-nano", "OpenAI GPT-5 models"),
        ("azure", "gpt-5.2", "OpenAI GPT-5 models"),
        ("xai", "grok-3-mini-fast", "Grok 3 Mini"),
        ("xai", "grok-3", "Grok 3"),
        ("xai", "grok-4-fast-non-reasoning", "Grok 4 Fast with reasoning disabled"),
        ("xai", "grok-4-1-fast-non-reasoning", "Grok 4 Fast with reasoning disabled"),
        ("xai", "grok-4.3", "Grok 4.3"),
        ("xai", "grok-4-latest", "Grok 4"),
        ("xai", "grok-4-1-fast-reasoning", "Grok 4"),
        ("xai", "grok-code-fast-1", "Grok Code Fast"),
        ("deepseek", "deepseek-reasoner", "DeepSeek's thinking mode, deepseek-reasoner"),
        ("deepseek", "deepseek-chat", "OpenAI-compatible models"),
        ("openai", "gpt-4o", "OpenAI-compatible models"),
        ("openrouter", "o3-mini", "OpenAI-compatible models"),
        ("groq", "openai/gpt-oss-120b", "OpenAI-compatible models"),
    ];
    for (provider, model, family) in cases {
        assert_eq!(models::rules(provider, model).family, family, "{provider} {model}");
    }
    // Every row of the section is about presets that exist, and cites its source.
    for row in models::RULES.iter().filter(|r| r.providers.iter().any(|p| find(p).is_some())) {
        assert!(row.providers.iter().all(|p| find(p).is_some()), "{:?}", row.providers);
        assert!(!row.rules.source.is_empty() && !row.rules.family.is_empty());
        for (param, _) in row.rules.refuses {
            assert!(
                [
                    "max_tokens",
                    "presence_penalty",
                    "frequency_penalty",
                    "logprobs",
                    "top_logprobs",
                    "logit_bias",
                    "stop"
                ]
                .contains(param),
                "{param}: the adapter must know how to leave it out"
            );
        }
    }
}

#[test]
fn gpt_5_1_and_5_2_sample_only_without_reasoning() {
    for model in ["gpt-5.1", "gpt-5.2", "gpt-5.1-2025-11-13", "gpt-5.2-2025-12-11"] {
        assert!(samples_without_reasoning(model), "{model}");
    }
    for model in ["gpt-5", "gpt-5.1-codex", "gpt-5.2-pro", "gpt-5.1-chat-latest", "gpt-5.10", "gpt-5.2-20"] {
        assert!(!samples_without_reasoning(model), "{model}");
    }
}

// ---------------------------------------------------------------------------------
// Deprecated `functions`.

const WEATHER: &str = r#"{"name":"get_weather","description":"Weather.","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}"#;

fn legacy_body(extra: &str) -> String {
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"weather?"}}],"functions":[{WEATHER}]{extra}}}"#)
}

#[test]
fn functions_become_tools_where_the_provider_has_none() {
    let cases = [
        (
            r#","function_call":{"name":"get_weather"}"#,
            json!({"type": "function", "function": {"name": "get_weather"}}),
        ),
        (r#","function_call":"none""#, json!("none")),
        (r#","function_call":"auto""#, json!("auto")),
        ("", Value::Null),
    ];
    for (extra, choice) in cases {
        let body: Value = serde_json::from_str(&legacy_body(extra)).unwrap();
        let (sent, _, facts) = on_model("groq", "llama-3.3-70b-versatile", ParamPolicy::Reject, &body).unwrap();
        assert!(facts.legacy_functions, "{extra}");
        assert!(sent.get("functions").is_none() && sent.get("function_call").is_none(), "{extra}");
        let function: Value = serde_json::from_str(WEATHER).unwrap();
        assert_eq!(sent["tools"], json!([{"type": "function", "function": function}]), "{extra}");
        assert_eq!(sent.get("tool_choice").unwrap_or(&Value::Null), &choice, "{extra}");
        assert_eq!(sent["parallel_tool_calls"], false, "one call at a time, as the legacy answer has it");
    }
    // OpenAI and Azure take them as they are: the client's bytes.
    for name in ["openai", "azure"] {
        let ep = endpoint_for(preset(name), None, None, ParamPolicy::Reject);
        let out = request_on(&ep, Operation::Chat, &legacy_body(r#","function_call":"auto""#)).unwrap();
        assert_eq!(out.body, None, "{name}");
    }
    assert!(PRESETS.iter().all(|p| p.native_functions == matches!(p.name, "openai" | "azure")));
}

#[test]
fn legacy_history_pairs_calls_and_results_like_the_typed_normaliser() {
    let body = json!({"model": "m", "functions": [serde_json::from_str::<Value>(WEATHER).unwrap()], "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "function_call": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny. And Rome?"},
        {"role": "assistant", "content": null, "function_call": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
        {"role": "function", "name": "get_weather", "content": "rain"}
    ]});
    // The ids the typed normaliser (used by the Anthropic and Gemini adapters) derives.
    let bytes = body.to_string().into_bytes();
    let mut typed: crate::schema::openai::ChatRequest = crate::json::parse_request(&bytes).unwrap();
    crate::legacy::normalize(&mut typed);
    let ids: Vec<String> =
        typed.messages.iter().filter_map(|m| m.tool_call_id.as_deref().map(str::to_string)).collect();
    for name in ["groq", "deepseek", "xai", "vllm"] {
        let (sent, _, facts) = on_model(name, "m", ParamPolicy::Default, &body).unwrap();
        assert!(facts.legacy_functions);
        let m = sent["messages"].as_array().unwrap();
        assert_eq!(m[1]["tool_calls"][0]["id"], ids[0].as_str(), "{name}");
        assert_eq!(
            m[1]["tool_calls"][0]["function"],
            json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
        );
        assert_eq!((&m[2]["role"], &m[2]["tool_call_id"]), (&json!("tool"), &json!(ids[0])), "{name}");
        assert!(m[2].get("name").is_none() && m[1].get("function_call").is_none());
        assert_eq!(m[4]["tool_calls"][0]["id"], ids[1].as_str());
        assert_eq!(m[5]["tool_call_id"], ids[1].as_str());
        assert_ne!(ids[0], ids[1]);
    }
    // Mistral's 9-character ids: rewritten after the conversion, still paired.
    let (sent, _, _) = on_model("mistral", "m", ParamPolicy::Default, &body).unwrap();
    let m = sent["messages"].as_array().unwrap();
    let id = m[1]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 9);
    assert_eq!(m[2]["tool_call_id"], id);
}

#[test]
fn legacy_shapes_mixed_with_tools() {
    // `tools` declared too: the answer uses tool_calls, functions join the tools once.
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "functions": [{"name": "get_weather"}, {"name": "get_time"}, {"name": "get_time"}], "function_call": "none",
        "tool_choice": "required"});
    let (sent, _, facts) = on_model("groq", "m", ParamPolicy::Default, &body).unwrap();
    assert!(!facts.legacy_functions);
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {"name": "get_weather"}},
                                     {"type": "function", "function": {"name": "get_time"}}])
    );
    assert_eq!(sent["tool_choice"], "required");
    assert!(sent.get("parallel_tool_calls").is_none());
    // History only (a client that moved to tools): converted, the answer is the new shape.
    let body = json!({"model": "m", "tools": [{"type": "function", "function": {"name": "f"}}], "messages": [
        {"role": "user", "content": "x"}, {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "r"}]});
    let (sent, _, facts) = on_model("together", "m", ParamPolicy::Default, &body).unwrap();
    assert!(!facts.legacy_functions);
    assert_eq!(sent["messages"][2]["tool_call_id"], sent["messages"][1]["tool_calls"][0]["id"]);
    // A key spelled with escapes is still found.
    let raw = r#"{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"function_c\u0061ll":{"name":"f","arguments":"{}"}},{"r\u006fle":"function","name":"f","content":"r"}]}"#;
    let ep = endpoint_for(preset("groq"), None, None, ParamPolicy::Default);
    let sent: Value = serde_json::from_slice(&request_on(&ep, Operation::Chat, raw).unwrap().body.unwrap()).unwrap();
    assert_eq!(sent["messages"][2]["role"], "tool");
    assert!(sent["messages"][1]["tool_calls"][0]["id"].is_string());
    // Perplexity has no tools: they follow the policy, and no parallel_tool_calls is added.
    let body: Value = serde_json::from_str(&legacy_body("")).unwrap();
    assert_eq!(param_of(&on_model("perplexity", "sonar", ParamPolicy::Default, &body).unwrap_err()), "tools");
    let (sent, out, _) = on_model("perplexity", "sonar", ParamPolicy::Drop, &body).unwrap();
    assert!(sent.get("tools").is_none() && sent.get("parallel_tool_calls").is_none());
    assert_eq!(out.dropped_params, ["tools"]);
}

#[test]
fn mentions_of_the_legacy_interface_are_found_by_a_scan() {
    assert!(mentions_legacy_messages(r#"[{"role" : "function","name":"f","content":"x"}]"#));
    assert!(mentions_legacy_messages(r#"[{"role":"assistant","function_call":{}}]"#));
    assert!(mentions_legacy_messages(r#"[{"r\u006fle":"x"}]"#));
    // Tool calls name "function" too, and texts may say anything.
    assert!(!mentions_legacy_messages(
        r#"[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"user","content":"the \"function\" role, caf\u00e9"}]"#
    ));
    assert!(escapes_ascii(r#""\u0041""#) && !escapes_ascii(r#""\u00e9\u4e2d\n\u001f""#));
}

#[test]
fn answers_to_legacy_requests_come_back_in_the_legacy_shape() {
    let groq = endpoint_for(preset("groq"), None, None, ParamPolicy::Default);
    let legacy = RequestFacts { legacy_functions: true, ..RequestFacts::default() };
    let plain = RequestFacts::default();
    // Answers to legacy requests are read where the provider got tools instead; others
    // pass through, and OpenAI's (which takes `functions`) always do.
    let handling = |ep: &Endpoint, op, stream, facts| OpenAi.response_handling(ep, op, 200, stream, facts);
    assert_eq!(handling(&groq, Operation::Chat, false, &legacy), ResponseHandling::Translate);
    assert_eq!(handling(&groq, Operation::Chat, false, &plain), ResponseHandling::PassThrough);
    assert_eq!(handling(&groq, Operation::Chat, true, &legacy), ResponseHandling::Stream);
    assert_eq!(handling(&groq, Operation::Completions, false, &legacy), ResponseHandling::PassThrough);
    for native in ["openai", "azure"] {
        let ep = endpoint_for(preset(native), None, None, ParamPolicy::Default);
        assert_eq!(handling(&ep, Operation::Chat, false, &legacy), ResponseHandling::PassThrough);
    }
    let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_2","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let legacy = RequestFacts { legacy_functions: true, ..RequestFacts::default() };
    let ctx = ResponseContext { created: 0, api_key: None, endpoint: &groq, request: &legacy };
    let out: Value = serde_json::from_slice(&OpenAi.response(&ctx, Operation::Chat, 200, body).body).unwrap();
    assert_eq!(out["choices"][0]["finish_reason"], "function_call");
    assert_eq!(
        out["choices"][0]["message"],
        json!({"role": "assistant", "content": null,
               "function_call": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}})
    );
    assert_eq!(out["usage"]["total_tokens"], 2);
    // A call without arguments has "{}", as a complete answer has.
    let no_args = br#"{"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":"tool_calls"}]}"#;
    let out: Value = serde_json::from_slice(&OpenAi.response(&ctx, Operation::Chat, 200, no_args).body).unwrap();
    assert_eq!(out["choices"][0]["message"]["function_call"], json!({"name": "now", "arguments": "{}"}));
    // Not a legacy request: the provider's bytes.
    let plain = RequestFacts::default();
    let ctx = ResponseContext { created: 0, api_key: None, endpoint: &groq, request: &plain };
    assert_eq!(OpenAi.response(&ctx, Operation::Chat, 200, body).body, body.to_vec());
    // A text answer to a legacy request is unchanged too.
    let text = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
    let ctx = ResponseContext { created: 0, api_key: None, endpoint: &groq, request: &legacy };
    assert_eq!(OpenAi.response(&ctx, Operation::Chat, 200, text).body, text.to_vec());
}

// ---------------------------------------------------------------------------------
// Message fields of other providers' answers.

#[test]
fn replayed_thinking_goes_where_the_provider_refuses_it() {
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "reasoning_content": "thought",
         "thinking_blocks": [{"type": "thinking", "thinking": "thought", "signature": "EqQB"}]},
        {"role": "user", "content": "again"}]});
    // (preset, fields that must go, fields that must stay)
    let cases: [(&str, &[&str], &[&str]); 8] = [
        ("openai", &["thinking_blocks", "reasoning_content"], &[]),
        ("azure", &["thinking_blocks", "reasoning_content"], &[]),
        ("mistral", &["thinking_blocks", "reasoning_content"], &[]),
        ("groq", &["thinking_blocks", "reasoning_content"], &[]),
        ("cerebras", &["thinking_blocks", "reasoning_content"], &[]),
        // DeepSeek requires reasoning_content back in thinking-mode tool loops.
        ("deepseek", &["thinking_blocks"], &["reasoning_content"]),
        ("vllm", &["thinking_blocks"], &["reasoning_content"]),
        ("openrouter", &["thinking_blocks"], &["reasoning_content"]),
    ];
    for (name, gone, kept) in cases {
        let (sent, _, _) = on_model(name, "m", ParamPolicy::Reject, &body).unwrap();
        let assistant = &sent["messages"][1];
        for field in gone {
            assert!(assistant.get(field).is_none(), "{name}: {field}");
        }
        for field in kept {
            assert!(assistant.get(field).is_some(), "{name}: {field}");
        }
        assert_eq!(assistant["content"], "hello");
    }
    assert!(PRESETS.iter().all(|p| p.foreign_message_fields.contains(&"thinking_blocks")));
}

// ---------------------------------------------------------------------------------
// Streamed tool calls.

fn run_legacy_stream(provider: &str, include_usage: bool, input: &str) -> String {
    let ctx = StreamContext {
        created: 1,
        include_usage,
        provider: Provider::from_name(provider).unwrap(),
        api_key: None,
        facts: RequestFacts { legacy_functions: true, ..RequestFacts::default() },
    };
    let mut translator = OpenAi.stream(ctx);
    let mut out = Vec::new();
    translator.push(input.as_bytes(), &mut out);
    translator.finish(&mut out);
    String::from_utf8(out).unwrap()
}

fn chunk(choice: &str) -> String {
    format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\",\"choices\":[{choice}]}}\n\n")
}

fn assembled_arguments(out: &str, call: u64) -> String {
    data_events(out)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .flat_map(|v| v["choices"][0]["delta"]["tool_calls"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["index"].as_u64() == Some(call))
        .filter_map(|c| c["function"]["arguments"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn streamed_calls_without_arguments_get_empty_objects() {
    // vLLM-style: the name, then nothing; a second call with arguments.
    let input = [
        chunk(r#"{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"now"}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"city\":\"Oslo\"}"}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{},"finish_reason":"tool_calls"}"#),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    for include_usage in [false, true] {
        let (out, _) = run_stream("vllm", include_usage, &[input.as_bytes()]);
        assert_eq!(assembled_arguments(&out, 0), "{}");
        assert_eq!(assembled_arguments(&out, 1), r#"{"city":"Oslo"}"#);
        let events = data_events(&out);
        // The fragment comes before the finish chunk, with the stream's identity.
        let fragment: Value = serde_json::from_str(events[4]).unwrap();
        assert_eq!((&fragment["id"], &fragment["created"], &fragment["model"]), (&json!("c1"), &json!(7), &json!("m")));
        // `"usage": null` only where the provider's chunks have it.
        assert!(fragment.get("usage").is_none());
        assert_eq!(serde_json::from_str::<Value>(events[5]).unwrap()["choices"][0]["finish_reason"], "tool_calls");
    }
    // Ollama-style: the whole call and the finish reason in one chunk.
    let input = [
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":"tool_calls"}"#),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let (out, _) = run_stream("ollama", false, &[input.as_bytes()]);
    assert_eq!(data_events(&out).len(), 2);
    assert_eq!(assembled_arguments(&out, 0), "{}");
    // Chunks with `"usage": null` (OpenAI's with include_usage): the fragment has it too.
    let input = [
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"now"}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{},"finish_reason":"tool_calls"}"#).replace("}]}", "}],\"usage\":null}"),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let (out, _) = run_stream("openai", true, &[input.as_bytes()]);
    let fragment: Value = serde_json::from_str(data_events(&out)[1]).unwrap();
    assert_eq!(fragment["usage"], Value::Null);
    assert!(fragment.as_object().unwrap().contains_key("usage"));
    assert_eq!(assembled_arguments(&out, 0), "{}");
    // A stream that ends without a finish reason still completes its calls.
    let input = [
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"now"}}]},"finish_reason":null}"#),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let (out, _) = run_stream("vllm", false, &[input.as_bytes()]);
    assert_eq!(assembled_arguments(&out, 0), "{}");
    // Calls that stream their arguments pass through as the provider wrote them.
    let input = [
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{},"finish_reason":"tool_calls"}"#),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let (out, _) = run_stream("openai", false, &[input.as_bytes()]);
    assert_eq!(out, input);
}

#[test]
fn legacy_streams_carry_function_call_deltas() {
    let input = [
        chunk(r#"{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{},"finish_reason":"tool_calls"}"#),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let out = run_legacy_stream("groq", false, &input);
    let events: Vec<Value> = data_events(&out).iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
    let calls: Vec<&Value> = events.iter().filter_map(|e| e["choices"][0]["delta"].get("function_call")).collect();
    assert_eq!(calls[0], &json!({"name": "get_weather", "arguments": ""}));
    assert_eq!(calls.iter().filter_map(|c| c["arguments"].as_str()).collect::<String>(), r#"{"city":"Oslo"}"#);
    assert!(events.iter().all(|e| e["choices"][0]["delta"].get("tool_calls").is_none()));
    assert_eq!(events.last().unwrap()["choices"][0]["finish_reason"], "function_call");
    // Without arguments: "{}" in function_call.
    let input = [
        chunk(r#"{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"now"}}]},"finish_reason":null}"#),
        chunk(r#"{"index":0,"delta":{},"finish_reason":"tool_calls"}"#),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let out = run_legacy_stream("vllm", true, &input);
    let events: Vec<Value> = data_events(&out).iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
    assert_eq!(events[1]["choices"][0]["delta"], json!({"function_call": {"arguments": "{}"}}));
    // OpenAI's own legacy streams are OpenAI's: untouched.
    let native = run_legacy_stream("openai", false, &input);
    assert!(native.contains("tool_calls") && !native.contains("function_call"));
}

// ---------------------------------------------------------------------------------
// Properties.

fn assert_openai_error(err: &GatewayError) {
    let v: Value = serde_json::from_slice(&err.body()).unwrap();
    assert!(v["error"]["message"].is_string());
    assert!((400..600).contains(&err.status()));
}

const OPS: [Operation; 3] = [Operation::Chat, Operation::Embeddings, Operation::Completions];
const POLICIES: [ParamPolicy; 3] = [ParamPolicy::Default, ParamPolicy::Drop, ParamPolicy::Reject];

/// Translates `body` for every preset, operation and policy (and both Azure URL
/// forms); every answer must be valid JSON or a clean OpenAI error.
fn translate_everywhere(body: &[u8]) -> Vec<(&'static Preset, Operation, Value)> {
    let config = UpstreamConfig::default();
    let mut sent = Vec::new();
    for preset in PRESETS.iter() {
        for op in OPS {
            for (i, policy) in POLICIES.into_iter().enumerate() {
                let version = (preset.azure && i == 1).then_some("2024-10-21");
                let model = (i == 2).then_some("deploy-1");
                let ep = endpoint_for(preset, model, version, policy);
                let ctx = RequestContext { endpoint: &ep, config: &config };
                match OpenAi.request(&ctx, op, body, &mut RequestFacts::default()) {
                    Ok(out) => {
                        assert!(
                            out.path.starts_with("/v1/") && out.path.ends_with(op.path())
                                || out.path.contains("?api-version=")
                        );
                        assert!(!out.path[1..].contains(['#', ' ']), "{}", out.path);
                        let bytes = out.body.as_deref().unwrap_or(body);
                        let v: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
                            panic!("{}: invalid JSON sent ({e}): {}", preset.name, String::from_utf8_lossy(bytes))
                        });
                        assert!(v.is_object());
                        if policy == ParamPolicy::Reject {
                            sent.push((preset, op, v));
                        }
                    }
                    Err(e) => assert_openai_error(&e),
                }
            }
        }
    }
    sent
}

/// What each preset promises about the body it sends.
fn assert_quirks_applied(preset: &Preset, op: Operation, sent: &Value) {
    if op != Operation::Chat {
        return;
    }
    for (param, _) in preset.lacks {
        assert!(sent.get(*param).is_none(), "{}: {param} sent", preset.name);
    }
    if preset.max_tokens_only {
        assert!(sent.get("max_completion_tokens").is_none(), "{}", preset.name);
    }
    if preset.seed_field != "seed" {
        assert!(sent.get("seed").is_none(), "{}", preset.name);
    }
    if !preset.stream_usage {
        assert!(sent.get("stream_options").is_none(), "{}", preset.name);
    }
    if preset.required_tool_choice != "required" {
        assert_ne!(sent.get("tool_choice"), Some(&json!("required")), "{}", preset.name);
    }
    if !preset.native_functions {
        assert!(sent.get("functions").is_none() && sent.get("function_call").is_none(), "{}", preset.name);
    }
    // The model's rules: what it refuses is not sent.
    let model = sent.get("model").and_then(Value::as_str).unwrap_or_default();
    let rules = models::rules(preset.name, model);
    for (param, _) in rules.refuses {
        let sampled = samples_without_reasoning(model) && matches!(*param, "logprobs" | "top_logprobs");
        assert!(sampled || sent.get(*param).is_none(), "{} {model}: {param} sent", preset.name);
    }
    if rules.sampling == models::Sampling::DefaultOnly && !samples_without_reasoning(model) {
        assert!(sent.get("temperature").is_none() && sent.get("top_p").is_none(), "{} {model}", preset.name);
    }
    for message in sent["messages"].as_array().into_iter().flatten().filter_map(Value::as_object) {
        // (Validation refuses `function_call` on other roles before a request gets here.)
        if !preset.native_functions {
            assert!(message.get("role") != Some(&json!("function")), "{}: {message:?}", preset.name);
            let assistant = message.get("role") == Some(&json!("assistant"));
            assert!(!assistant || !message.contains_key("function_call"), "{}: {message:?}", preset.name);
        }
        if !preset.message_names && message.get("role") != Some(&json!("function")) {
            assert!(!message.contains_key("name"), "{}", preset.name);
        }
        for field in preset.foreign_message_fields {
            assert!(!message.contains_key(*field), "{}", preset.name);
        }
        if preset.nine_char_tool_ids {
            let ok =
                |id: &Value| id.as_str().is_none_or(|s| s.len() == 9 && s.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(message.get("tool_call_id").is_none_or(ok), "{message:?}");
            for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                assert!(call.get("id").is_none_or(ok), "{call}");
            }
        }
    }
}

/// Chat requests with the parameters presets care about, in valid and odd spellings.
fn arb_quirky_request() -> impl Strategy<Value = Value> {
    let odd = prop_oneof![
        Just(json!(null)),
        Just(json!(1)),
        Just(json!(1.0)),
        Just(json!(2)),
        Just(json!(false)),
        Just(json!(true)),
        Just(json!("required")),
        Just(json!("auto")),
        Just(json!({"type": "function", "function": {"name": "f"}})),
        Just(json!({"include_usage": true})),
        Just(json!([])),
        arb_json(),
    ];
    let param = prop::sample::select(vec![
        "n",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "seed",
        "random_seed",
        "max_tokens",
        "max_completion_tokens",
        "tool_choice",
        "tools",
        "user",
        "stream",
        "stream_options",
        "model",
        "temperature",
        "top_p",
        "presence_penalty",
        "stop",
        "reasoning_effort",
    ]);
    (arb_chat_request(), proptest::collection::vec((param, odd), 0..6), any::<bool>()).prop_map(
        |(mut req, extra, name)| {
            for (k, v) in extra {
                req[k] = v;
            }
            if name {
                if let Some(first) = req["messages"].as_array_mut().and_then(|m| m.first_mut()) {
                    first["name"] = json!("n");
                    first["reasoning_content"] = json!("r");
                }
            }
            req
        },
    )
}

fn sse(events: &[String], crlf: bool) -> Vec<u8> {
    let nl = if crlf { "\r\n" } else { "\n" };
    events.iter().map(|e| format!("data: {e}{nl}{nl}")).collect::<String>().into_bytes()
}

/// Stream events: realistic chunks with odd details, error bodies carrying the key,
/// garbage, and the end marker.
fn arb_event() -> impl Strategy<Value = String> {
    let finish = prop::sample::select(vec!["null", "\"stop\"", "\"model_length\"", "\"eos\"", "\"error\"", "5"]);
    let usage = prop::sample::select(vec![
        "",
        ",\"usage\":null",
        ",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}",
        ",\"usage\":{\"prompt_tokens_details\":null}",
        ",\"usage\":\"x\"",
    ]);
    let id = prop::sample::select(vec!["\"id\":\"a\",", "\"id\":\"\",", "\"id\":7,", ""]);
    prop_oneof![
        4 => (id, finish, usage, any::<bool>()).prop_map(|(id, finish, usage, empty)| {
            let choices = if empty { "[]".to_string() } else { format!("[{{\"index\":0,\"delta\":{{\"content\":\"x\"}},\"finish_reason\":{finish}}}]") };
            format!("{{{id}\"created\":1,\"model\":\"m\",\"choices\":{choices}{usage}}}")
        }),
        1 => Just(format!("{{\"error\":{{\"message\":\"bad {KEY}\",\"code\":502,\"param\":\"{KEY}\"}}}}")),
        1 => Just(format!("{{\"error\":\"{KEY}\"}}")),
        1 => Just(format!("{{\"choices\":\"{KEY}\"}}")),
        1 => Just("[DONE]".to_string()),
        1 => arb_json().prop_map(|v| v.to_string()),
        1 => ".{0,12}",
    ]
}

/// After `finish()`, a stream has ended exactly once: with `[DONE]` or an error event,
/// and nothing after it.
fn assert_well_terminated(out: &str) {
    let events = data_events(out);
    let is_error = |e: &str| {
        serde_json::from_str::<Value>(e)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .is_some_and(|o| o.len() == 1 && o.get("error").is_some_and(|err| err.get("message").is_some()))
    };
    let terminal = |e: &&str| *e == "[DONE]" || is_error(e);
    let ends: Vec<usize> = events.iter().enumerate().filter(|(_, e)| terminal(e)).map(|(i, _)| i).collect();
    assert_eq!(ends.len(), 1, "{out}");
    assert_eq!(ends[0], events.len() - 1, "{out}");
    for e in events.iter().filter(|e| is_error(e)) {
        assert!(!e.contains(KEY), "key leaked: {e}");
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(v["error"]["message"].is_string());
    }
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn request_translation_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        translate_everywhere(&body);
    }

    #[test]
    fn request_translation_never_panics_on_json(value in arb_json()) {
        translate_everywhere(value.to_string().as_bytes());
    }

    #[test]
    fn near_valid_requests_get_every_quirk(value in arb_quirky_request()) {
        for (preset, op, sent) in translate_everywhere(value.to_string().as_bytes()) {
            assert_quirks_applied(preset, op, &sent);
        }
    }

    #[test]
    fn response_translation_always_yields_openai_json(
        status in prop_oneof![Just(200u16), 100u16..600],
        value in arb_json(),
        raw in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        // The key anywhere in an error body must not reach the client.
        let keyed = value.to_string().replace('a', KEY);
        for preset in PRESETS.iter() {
            let ep = endpoint_for(preset, None, None, ParamPolicy::Default);
            let facts = RequestFacts::default();
            let ctx = ResponseContext { created: 1, api_key: Some(KEY), endpoint: &ep, request: &facts };
            for op in OPS {
                for body in [value.to_string().into_bytes(), keyed.clone().into_bytes(), raw.clone()] {
                    let out = OpenAi.response(&ctx, op, status, &body);
                    prop_assert!((100..600).contains(&out.status));
                    if (200..300).contains(&status) {
                        // Successes are the provider's own bytes, rewritten at most.
                        prop_assert_eq!(out.status, status);
                        if out.body != body {
                            serde_json::from_slice::<Value>(&out.body).unwrap();
                        }
                    } else {
                        let v: Value = serde_json::from_slice(&out.body).unwrap();
                        prop_assert!(v["error"]["message"].is_string());
                        prop_assert!(!String::from_utf8_lossy(&out.body).contains(KEY));
                    }
                }
            }
        }
    }

    #[test]
    fn streams_end_once_whatever_arrives(
        events in proptest::collection::vec(arb_event(), 0..8),
        crlf in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        include_usage in any::<bool>(),
        preset_index in 0..PRESETS.len(),
    ) {
        let bytes = sse(&events, crlf);
        let at = cut.index(bytes.len() + 1);
        let preset = &PRESETS[preset_index];
        let (whole, usage) = run_stream(preset.name, include_usage, &[&bytes]);
        assert_well_terminated(&whole);
        let (split, split_usage) = run_stream(preset.name, include_usage, &[&bytes[..at], &bytes[at..]]);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(usage, split_usage);
        // A truncated body still ends properly.
        let (truncated, _) = run_stream(preset.name, include_usage, &[&bytes[..at]]);
        assert_well_terminated(&truncated);
    }

    #[test]
    fn streams_survive_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512), preset_index in 0..PRESETS.len()) {
        let (out, _) = run_stream(PRESETS[preset_index].name, true, &[&body]);
        assert_well_terminated(&out);
    }
}

#[test]
fn a_passed_through_answer_is_metered_from_its_top_level_usage() {
    use crate::usage::Usage as Billed;
    let billed =
        |input, cache_read, output, reasoning| Billed { input, cache_read, output, reasoning, ..Billed::default() };
    let cases: &[(&str, Option<Billed>)] = &[
        (r#"{"id":"x","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}"#, Some(billed(10, 0, 3, 0))),
        // Python's separators, cached and reasoning tokens.
        (
            "{\"id\": \"x\", \"usage\": {\"prompt_tokens\": 10, \"completion_tokens\": 9, \"prompt_tokens_details\": {\"cached_tokens\": 4}, \"completion_tokens_details\": {\"reasoning_tokens\": 6}}}\n",
            Some(billed(6, 4, 9, 6)),
        ),
        // DeepSeek's cache field.
        (r#"{"usage":{"prompt_tokens":8,"completion_tokens":1,"prompt_cache_hit_tokens":5}}"#, Some(billed(3, 5, 1, 0))),
        // Embeddings.
        (r#"{"object":"list","data":[],"model":"m","usage":{"prompt_tokens":7,"total_tokens":7}}"#, Some(billed(7, 0, 0, 0))),
        // A "usage" string value after the key, and one inside content, are not keys.
        (r#"{"usage":{"prompt_tokens":2,"completion_tokens":2},"object":"usage"}"#, None),
        (r#"{"choices":[{"message":{"content":"say \"usage\": {}"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#, Some(billed(1, 0, 1, 0))),
        // Not at the top level, or absent, or broken.
        (r#"{"choices":[{"x":{"usage":{"prompt_tokens":5}}}]}"#, None),
        (r#"{"id":"x","choices":[]}"#, None),
        (r#"{"usage":{"prompt_tokens":"#, None),
        ("", None),
    ];
    for (body, expected) in cases {
        assert_eq!(super::usage_in_body(body.as_bytes()), *expected, "{body}");
    }
}
