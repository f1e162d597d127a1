use super::*;
use crate::config::UpstreamConfig;
use crate::providers::stream::{ChunkWriter, Delta, StreamContext};
use crate::providers::{ParamPolicy, Provider};
use crate::testing::{arb_chat_request, arb_json, fuzz_config};
use proptest::prelude::*;
use serde_json::{json, Value};

const KEY: &str = "AIzaSy-secret-test-key-0123456789";

fn endpoint(policy: ParamPolicy) -> Endpoint {
    Endpoint {
        provider: Provider::Gemini,
        model: None,
        api_key_env: None,
        authority: "generativelanguage.googleapis.com".into(),
        base_path: String::new(),
        max_tokens: None,
        api_version: None,
        param_policy: policy,
        base_model: None,
        price_overrides: Default::default(),
    }
}

fn translate_op(op: Operation, body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    let ep = endpoint(ParamPolicy::Default);
    let config = UpstreamConfig::default();
    Gemini.request(&RequestContext { endpoint: &ep, config: &config }, op, body, &mut RequestFacts::default())
}

fn translate(body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    translate_op(Operation::Chat, body)
}

fn sent(body: Value) -> Value {
    let out = translate(body.to_string().as_bytes()).unwrap();
    serde_json::from_slice(&out.body.unwrap()).unwrap()
}

fn respond(op: Operation, status: u16, body: &[u8]) -> TranslatedResponse {
    let ep = endpoint(ParamPolicy::Default);
    let facts = RequestFacts { model: "client-model".into(), ..RequestFacts::default() };
    let ctx = ResponseContext { created: 7, api_key: Some(KEY), endpoint: &ep, request: &facts };
    Gemini.response(&ctx, op, status, body)
}

fn stream_of(pieces: &[&[u8]]) -> Vec<u8> {
    let ctx = StreamContext {
        created: 7,
        include_usage: true,
        provider: Provider::Gemini,
        api_key: Some(KEY.into()),
        facts: RequestFacts { model: "client-model".into(), ..RequestFacts::default() },
    };
    let mut translator = Gemini.stream(ctx);
    let mut out = Vec::new();
    for piece in pieces {
        translator.push(piece, &mut out);
    }
    translator.finish(&mut out);
    out
}

/// The `data:` payloads of an OpenAI SSE body.
fn events(out: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(out).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {e:?}")).to_string())
        .collect()
}

// ---------------------------------------------------------------------------------
// Helpers, table-driven.

#[test]
fn data_urls() {
    let cases: [(&str, Option<(&str, &str)>); 8] = [
        ("data:image/png;base64,AAAA", Some(("image/png", "AAAA"))),
        ("data:application/pdf;base64,JVBE", Some(("application/pdf", "JVBE"))),
        ("data:image/png;base64,", None),
        ("data:;base64,AAAA", None),
        ("data:image/png,AAAA", None),
        ("data:image/png;charset=utf-8,AAAA", None),
        ("https://x/y.png", None),
        ("", None),
    ];
    for (url, expected) in cases {
        assert_eq!(parse_data_url(url), expected, "{url}");
    }
}

#[test]
fn call_ids_carry_gemini_ids_and_signatures() {
    // (Gemini id, signature) → OpenAI id → what goes back to Gemini.
    let minted = call_id(None, None, "resp-1", 0);
    assert!(minted.starts_with("call_") && minted.len() == 29, "{minted}");
    assert_eq!(split_call_id(&minted), (None, None), "minted ids are the gateway's, not Gemini's");
    assert_eq!(call_id(Some("fc_9"), None, "resp-1", 0), "fc_9");
    assert_eq!(call_id(Some(""), Some(""), "resp-1", 0), minted, "empty values count as absent");
    assert_eq!(call_id(Some("fc_9"), Some("c2ln"), "r", 0), "fc_9__thought__c2ln");
    let cases: [(&str, (Option<&str>, Option<&str>)); 9] = [
        ("fc_9", (Some("fc_9"), None)),
        ("fc_9__thought__c2ln", (Some("fc_9"), Some("c2ln"))),
        ("call_abc__thought__c2lnbmF0dXJl", (None, Some("c2lnbmF0dXJl"))),
        ("call_abc__thought__", (None, None)),
        ("__thought__c2ln", (None, Some("c2ln"))),
        ("toolu_01__thought__not base64!", (Some("toolu_01"), None)),
        ("x__thought__AB-_cd==", (Some("x"), Some("AB-_cd=="))),
        ("x__thought__AB===", (Some("x"), None)),
        ("", (None, None)),
    ];
    for (id, expected) in cases {
        assert_eq!(split_call_id(id), expected, "{id}");
    }
}

#[test]
fn finish_reasons() {
    let cases = [
        (None, FinishReason::Stop),
        (Some("STOP"), FinishReason::Stop),
        (Some("FINISH_REASON_UNSPECIFIED"), FinishReason::Stop),
        (Some("MAX_TOKENS"), FinishReason::Length),
        (Some("SAFETY"), FinishReason::ContentFilter),
        (Some("RECITATION"), FinishReason::ContentFilter),
        (Some("LANGUAGE"), FinishReason::ContentFilter),
        (Some("BLOCKLIST"), FinishReason::ContentFilter),
        (Some("PROHIBITED_CONTENT"), FinishReason::ContentFilter),
        (Some("SPII"), FinishReason::ContentFilter),
        (Some("IMAGE_SAFETY"), FinishReason::ContentFilter),
        (Some("IMAGE_PROHIBITED_CONTENT"), FinishReason::ContentFilter),
        (Some("IMAGE_RECITATION"), FinishReason::ContentFilter),
        (Some("IMAGE_OTHER"), FinishReason::ContentFilter),
        (Some("NO_IMAGE"), FinishReason::ContentFilter),
        (Some("OTHER"), FinishReason::ContentFilter),
        (Some("MALFORMED_FUNCTION_CALL"), FinishReason::Stop),
        (Some("UNEXPECTED_TOOL_CALL"), FinishReason::Stop),
        (Some("TOO_MANY_TOOL_CALLS"), FinishReason::Stop),
        (Some("MALFORMED_RESPONSE"), FinishReason::Stop),
        (Some("MISSING_THOUGHT_SIGNATURE"), FinishReason::Stop),
        (Some("A_REASON_FROM_THE_FUTURE"), FinishReason::Stop),
    ];
    for (reason, expected) in cases {
        assert_eq!(finish_reason(reason), expected, "{reason:?}");
    }
    for abnormal in [
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
        "MALFORMED_RESPONSE",
        "MISSING_THOUGHT_SIGNATURE",
    ] {
        assert!(is_abnormal_finish(Some(abnormal)), "{abnormal}");
    }
    for normal in [None, Some("STOP"), Some("MAX_TOKENS"), Some("SAFETY"), Some("OTHER")] {
        assert!(!is_abnormal_finish(normal), "{normal:?}");
    }
    assert_eq!(empty_abnormal_answer(None, "MALFORMED_FUNCTION_CALL").status(), 502);
    assert_eq!(empty_abnormal_answer(None, "MISSING_THOUGHT_SIGNATURE").status(), 400);
}

#[test]
fn usage_mapping() {
    // (prompt, candidates, thoughts, cached, tool use, total) → (prompt, completion, total, cached, reasoning)
    let cases = [
        ((10, 5, 0, 0, 0, 15), (10, 5, 15, 0, 0)),
        ((10, 5, 20, 0, 0, 35), (10, 25, 35, 0, 20)),
        ((4120, 11, 302, 4096, 233, 4666), (4353, 313, 4666, 4096, 302)),
        // No total reported: the sum.
        ((3, 4, 5, 0, 1, 0), (4, 9, 13, 0, 5)),
        ((0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0)),
        ((u64::MAX, 1, 1, 0, 1, 0), (u64::MAX, 2, u64::MAX, 0, 1)),
    ];
    for ((p, c, t, cached, tool, total), (ep, ec, et, ecached, er)) in cases {
        let u = usage(&UsageMetadata {
            prompt_token_count: p,
            candidates_token_count: c,
            thoughts_token_count: t,
            cached_content_token_count: cached,
            tool_use_prompt_token_count: tool,
            total_token_count: total,
        });
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                u.prompt_tokens_details.cached_tokens,
                u.completion_tokens_details.reasoning_tokens
            ),
            (ep, ec, et, ecached, er),
            "{p} {c} {t} {cached} {tool} {total}"
        );
    }
}

#[test]
fn empty_object_schemas_are_left_out() {
    let omitted = [
        r#"{}"#,
        r#"{"type":"object"}"#,
        r#"{"type":"object","properties":{}}"#,
        r#"{"type": "object", "properties": {}, "required": [], "additionalProperties": false}"#,
        r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{},"title":"none"}"#,
    ];
    for schema in omitted {
        let raw: &RawValue = serde_json::from_str(schema).unwrap();
        assert!(parameters_schema(Some(raw)).is_none(), "{schema}");
    }
    let kept = [
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","additionalProperties":{"type":"string"}}"#,
        r#"{"type":"object","properties":{},"anyOf":[{"required":["a"]}]}"#,
        r#"{"type":"string"}"#,
        r#"[1]"#,
        r#""text""#,
    ];
    for schema in kept {
        let raw: &RawValue = serde_json::from_str(schema).unwrap();
        assert_eq!(parameters_schema(Some(raw)).map(RawValue::get), Some(schema), "{schema}");
    }
    assert!(parameters_schema(None).is_none());
}

#[test]
fn model_ids_in_the_path() {
    for (model, expected) in [
        ("gemini-2.5-flash", Some("gemini-2.5-flash")),
        ("models/gemini-2.0-flash-001", Some("gemini-2.0-flash-001")),
        ("gemma-3_27b.it", Some("gemma-3_27b.it")),
        ("", None),
        ("models/", None),
        ("a/b", None),
        ("gemini:streamGenerateContent?alt=sse", None),
        ("../v1/files", None),
        ("gemini 2", None),
        ("gémini", None),
    ] {
        assert_eq!(model_path_segment(model).ok(), expected, "{model}");
    }
}

#[test]
fn logprob_settings_follow_openai_rules() {
    let ask = |extra: Value| {
        let mut req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        translate(req.to_string().as_bytes())
            .map(|out| serde_json::from_slice::<Value>(&out.body.unwrap()).unwrap()["generationConfig"].clone())
            .map_err(|e| (e.status(), serde_json::from_slice::<Value>(&e.body()).unwrap()["error"]["param"].clone()))
    };
    assert_eq!(ask(json!({"logprobs": true})), Ok(json!({"responseLogprobs": true})));
    assert_eq!(ask(json!({"logprobs": true, "top_logprobs": 0})), Ok(json!({"responseLogprobs": true, "logprobs": 0})));
    assert_eq!(
        ask(json!({"logprobs": true, "top_logprobs": 20})),
        Ok(json!({"responseLogprobs": true, "logprobs": 20}))
    );
    assert_eq!(ask(json!({"logprobs": false})), Ok(Value::Null));
    assert_eq!(ask(json!({"logprobs": true, "top_logprobs": 21})), Err((400, json!("top_logprobs"))));
    assert_eq!(ask(json!({"top_logprobs": 3})), Err((400, json!("top_logprobs"))));
    assert_eq!(ask(json!({"logprobs": false, "top_logprobs": 3})), Err((400, json!("top_logprobs"))));
}

#[test]
fn logprobs_results_become_openai_logprobs() {
    let raw = r#"{
        "topCandidates": [
            {"candidates": [{"token": "é", "tokenId": 1, "logProbability": -0.25}, {"token": "e", "logProbability": "-Infinity"}]},
            {}
        ],
        "chosenCandidates": [{"token": "é", "logProbability": -0.25}, {"token": "!"}, {"logProbability": "NaN"}],
        "logProbabilitySum": -0.25
    }"#;
    let got = serde_json::to_value(choice_logprobs(raw).unwrap()).unwrap();
    assert_eq!(
        got,
        json!({"content": [
            {"token": "é", "logprob": -0.25, "bytes": [195, 169], "top_logprobs": [
                {"token": "é", "logprob": -0.25, "bytes": [195, 169]},
                {"token": "e", "logprob": -9999.0, "bytes": [101]}]},
            {"token": "!", "logprob": 0.0, "bytes": [33], "top_logprobs": []},
            {"token": "", "logprob": -9999.0, "bytes": [], "top_logprobs": []}],
         "refusal": null})
    );
    for unreadable in
        [r#"{"chosenCandidates": 1}"#, "[]", "null", r#"{"chosenCandidates": [{"logProbability": true}]}"#]
    {
        assert!(choice_logprobs(unreadable).is_none(), "{unreadable}");
    }
    assert_eq!(choice_logprobs("{}").unwrap().content, Vec::new());
}

#[test]
fn stream_chunks_can_carry_logprobs() {
    let writer = ChunkWriter::new("id-\"logprobs\":null", 1, "m", true);
    let logprobs =
        choice_logprobs(r#"{"chosenCandidates": [{"token": "\"logprobs\":null", "logProbability": -1}]}"#).unwrap();
    let mut out = b"earlier bytes".to_vec();
    writer.delta_with_logprobs(
        &mut out,
        &Delta { content: Some("\"logprobs\":null"), ..Delta::default() },
        Some(&logprobs),
        None,
    );
    let chunk: Value =
        serde_json::from_slice(out.strip_prefix(b"earlier bytesdata: ").unwrap().trim_ascii_end()).unwrap();
    assert_eq!(chunk["id"], "id-\"logprobs\":null");
    assert_eq!(chunk["choices"][0]["delta"], json!({"content": "\"logprobs\":null"}));
    assert_eq!(chunk["choices"][0]["logprobs"]["content"][0]["token"], "\"logprobs\":null");
    assert_eq!(chunk["choices"][0]["logprobs"]["content"][0]["logprob"], -1.0);
    assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(chunk["usage"], Value::Null);
}

#[test]
fn error_bodies() {
    let parsed = |body: &str| parse_error_body(body.as_bytes()).map(|e| e.error.message.map(|m| m.into_owned()));
    assert_eq!(parsed(r#"{"error":{"code":429,"message":"slow down"}}"#), Some(Some("slow down".into())));
    assert_eq!(parsed(r#" [{"error":{"code":429,"message":"wrapped"}}]"#), Some(Some("wrapped".into())));
    // An array must not be read as the struct's fields in order.
    assert_eq!(parsed(r#"[{"code":429,"message":"not wrapped"}]"#), None);
    for not_an_error in ["", "{}", "[]", "[1]", r#"{"candidates":[]}"#, "<html>", r#""error""#] {
        assert_eq!(parsed(not_an_error), None, "{not_an_error}");
    }
    // Mid-stream (status 0) and under a 2xx: the body's code, else its status name.
    let status = |http: u16, body: &str| translate_error(None, http, body.as_bytes()).status();
    let cases = [
        (0, r#"{"error":{"code":503,"status":"UNAVAILABLE"}}"#, 503),
        (0, r#"{"error":{"status":"RESOURCE_EXHAUSTED"}}"#, 429),
        (0, r#"{"error":{"status":"DEADLINE_EXCEEDED"}}"#, 504),
        (0, r#"{"error":{"status":"PERMISSION_DENIED"}}"#, 403),
        (0, r#"{"error":{"status":"NOT_FOUND"}}"#, 404),
        (0, r#"{"error":{"status":"INVALID_ARGUMENT"}}"#, 400),
        (0, r#"{"error":{"code":200,"status":"SOMETHING"}}"#, 500),
        (0, r#"{"error":{}}"#, 500),
        (0, "garbage", 502),
        (200, r#"{"error":{"code":429}}"#, 429),
        (400, r#"{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#, 401),
        (400, r#"{"error":{"code":404,"status":"NOT_FOUND"}}"#, 404),
        (400, r#"{"error":{"code":400,"status":"FAILED_PRECONDITION"}}"#, 400),
        (503, "", 503),
        (302, "<html>moved</html>", 502),
    ];
    for (http, body, expected) in cases {
        assert_eq!(status(http, body), expected, "{http} {body}");
    }
}

#[test]
fn embeddings_get_unit_length() {
    assert_eq!(unit_length(&[3.0, 4.0]), Some(vec![0.6, 0.8]));
    assert_eq!(unit_length(&[0.0, -2.0]), Some(vec![0.0, -1.0]));
    // Already unit length (within float noise), zero, empty or not finite: left as sent.
    for values in [&[0.6, 0.8][..], &[1.0000001], &[0.0, 0.0], &[], &[f64::MAX, f64::MAX]] {
        assert_eq!(unit_length(values), None, "{values:?}");
    }
    let body = br#"{"embedding": {"values": [0.6, 0.8000]}}"#;
    let out = respond(Operation::Embeddings, 200, body);
    assert!(String::from_utf8(out.body).unwrap().contains("[0.6, 0.8000]"), "unit vectors go out as written");
}

#[test]
fn base64_signatures() {
    for good in ["c2ln", "c2lnbg==", "c2lnbmE=", "AB-_", "a+/="] {
        assert!(is_base64(good), "{good}");
    }
    for bad in ["", "===", "ab c", "ab!", "abc===", "é"] {
        assert!(!is_base64(bad), "{bad}");
    }
}

#[test]
fn sent_body_has_only_gemini_request_fields() {
    // Every key the adapter can emit must be a GenerateContentRequest / GenerationConfig field.
    let body = sent(
        json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
        "temperature": 0.5, "top_p": 0.5, "top_k": 3, "stop": ["x"], "user": "u", "reasoning_effort": "low", "n": 2,
        "seed": 1, "presence_penalty": 0.1, "frequency_penalty": 0.1, "max_tokens": 9, "logprobs": true, "top_logprobs": 2,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {}}}}}],
        "tool_choice": "auto", "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
        "logit_bias": {}}),
    );
    let top = ["contents", "systemInstruction", "tools", "toolConfig", "generationConfig"];
    for key in body.as_object().unwrap().keys() {
        assert!(top.contains(&key.as_str()), "{key} is not a GenerateContentRequest field");
    }
    let config = [
        "temperature",
        "topP",
        "topK",
        "maxOutputTokens",
        "stopSequences",
        "candidateCount",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseMimeType",
        "responseJsonSchema",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
    ];
    let generation = body["generationConfig"].as_object().unwrap();
    assert_eq!(generation.len(), config.len(), "{generation:?}");
    for key in generation.keys() {
        assert!(config.contains(&key.as_str()), "{key} is not a GenerationConfig field");
    }
}

#[test]
fn tool_results_follow_their_call_turn_in_one_user_turn() {
    let body = sent(json!({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{\"x\":1}"}}]},
        {"role": "tool", "tool_call_id": "call_b", "content": "{\"ok\":true}"},
        {"role": "tool", "tool_call_id": "a", "content": "plain"}]}));
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "f", "args": {}, "id": "a"}},
                {"functionCall": {"name": "g", "args": {"x": 1}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "g", "response": {"ok": true}}},
                {"functionResponse": {"name": "f", "response": {"output": "plain"}, "id": "a"}}]}])
    );
}

#[test]
fn dropped_n_is_not_sent() {
    let ep = endpoint(ParamPolicy::Drop);
    let config = UpstreamConfig::default();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2, "stream": true});
    let out = Gemini
        .request(
            &RequestContext { endpoint: &ep, config: &config },
            Operation::Chat,
            body.to_string().as_bytes(),
            &mut RequestFacts::default(),
        )
        .unwrap();
    assert_eq!(out.dropped_params, vec!["n".to_string()]);
    let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
    assert_eq!(sent.get("generationConfig"), None);
}

#[test]
fn stream_text_mentioning_an_error_is_not_an_error() {
    let out = stream_of(&[
        b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"say {\\\"error\\\":{\\\"code\\\":1}}\"}]},\"finishReason\":\"STOP\"}]}\r\n\r\n",
    ]);
    let all = events(&out);
    assert_eq!(all.last().map(String::as_str), Some("[DONE]"), "{all:?}");
}

#[test]
fn stream_errors_never_leak_the_key() {
    let body = format!(
        "data: {{\"error\":{{\"code\":400,\"message\":\"bad key {KEY}\",\"status\":\"INVALID_ARGUMENT\"}}}}\n\n"
    );
    let out = stream_of(&[body.as_bytes()]);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains(KEY) && text.contains("[REDACTED]"), "{text}");
}

// ---------------------------------------------------------------------------------
// Properties.

// ---------------------------------------------------------------------------------
// Per-model rules (providers::models, the Gemini rows), table-driven.

/// The adapter's request under `policy`, with the facts it kept.
fn translate_with(policy: ParamPolicy, body: &Value) -> (Result<UpstreamRequest, GatewayError>, RequestFacts) {
    let ep = endpoint(policy);
    let config = UpstreamConfig::default();
    let mut facts = RequestFacts::default();
    let out = Gemini.request(
        &RequestContext { endpoint: &ep, config: &config },
        Operation::Chat,
        body.to_string().as_bytes(),
        &mut facts,
    );
    (out, facts)
}

/// One model of each family the Gemini rows distinguish, and one no row names.
const GEMINI_MODELS: [&str; 11] = [
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-flash-image",
    "gemini-3-pro-preview",
    "gemini-3.1-pro-preview",
    "gemini-3-flash-preview",
    "gemini-3.5-flash",
    "gemini-2.0-flash",
    "gemini-flash-latest",
    "m",
];

fn param_of(err: &GatewayError) -> Value {
    serde_json::from_slice::<Value>(&err.body()).unwrap()["error"]["param"].clone()
}

fn ask(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn each_gemini_model_gets_its_rules() {
    use crate::providers::models::rules;
    let budget = |min, max, can_disable| Reasoning::GeminiBudget { min, max, can_disable };
    let cases = [
        ("gemini-2.5-pro", "Gemini 2.5 Pro", budget(128, 32768, false)),
        ("gemini-2.5-pro-preview-06-05", "Gemini 2.5 Pro", budget(128, 32768, false)),
        ("gemini-2.5-flash", "Gemini 2.5 Flash", budget(1, 24576, true)),
        ("gemini-2.5-flash-preview-09-2025", "Gemini 2.5 Flash", budget(1, 24576, true)),
        ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", budget(512, 24576, true)),
        ("gemini-2.5-flash-image", "Gemini 2.5 Flash Image", Reasoning::Unsupported),
        ("gemini-3-pro-preview", "Gemini 3 Pro", Reasoning::GeminiLevel { levels: &["low", "high"] }),
        ("gemini-3.1-pro-preview", "Gemini 3.1 Pro", Reasoning::GeminiLevel { levels: &["low", "medium", "high"] }),
        (
            "gemini-3-flash-preview",
            "Gemini 3 Flash and 3.1 Flash-Lite",
            Reasoning::GeminiLevel { levels: &["minimal", "low", "medium", "high"] },
        ),
        (
            "gemini-3.1-flash-lite-preview",
            "Gemini 3 Flash and 3.1 Flash-Lite",
            Reasoning::GeminiLevel { levels: &["minimal", "low", "medium", "high"] },
        ),
        ("gemini-3.5-flash", "Gemini 3 models", Reasoning::GeminiLevel { levels: &["low", "high"] }),
        ("gemini-2.0-flash", "Gemini 2.0 and earlier", Reasoning::Unsupported),
        ("gemini-1.5-pro-002", "Gemini 2.0 and earlier", Reasoning::Unsupported),
        ("gemini-flash-latest", "models behind the Gemini API", budget(1, 24576, true)),
        ("m", "models behind the Gemini API", budget(1, 24576, true)),
    ];
    for (model, family, reasoning) in cases {
        let rules = rules(NAME, model);
        assert_eq!((rules.family, rules.reasoning), (family, reasoning), "{model}");
        // Gemini's documented temperature range, for every model.
        assert_eq!(rules.temperature_max, 2.0, "{model}");
        assert!(!rules.source.is_empty(), "{model}");
    }
    // The Gemini rows are Gemini's: another provider serving a Gemini name is that provider's business.
    assert_eq!(rules("openrouter", "gemini-2.5-pro").reasoning, Reasoning::Effort);
}

#[test]
fn reasoning_effort_follows_each_models_rules() {
    // (model, reasoning_effort) → (thinkingConfig sent, adjusted, dropped) under the default policy.
    let budget = |b: u32| json!({"thinkingBudget": b, "includeThoughts": b > 0});
    let level = |l: &str| json!({"thinkingLevel": l, "includeThoughts": true});
    let cases: Vec<(&str, &str, Option<Value>, Vec<&str>, Vec<&str>)> = vec![
        // Gemini 2.5: LiteLLM's budgets, inside every 2.5 model's range.
        ("gemini-2.5-flash", "minimal", Some(budget(512)), vec![], vec![]),
        ("gemini-2.5-flash", "low", Some(budget(1024)), vec![], vec![]),
        ("gemini-2.5-flash", "medium", Some(budget(2048)), vec![], vec![]),
        ("gemini-2.5-flash", "high", Some(budget(4096)), vec![], vec![]),
        ("gemini-2.5-flash", "xhigh", Some(budget(8192)), vec![], vec![]),
        ("gemini-2.5-flash", "none", Some(budget(0)), vec![], vec![]),
        ("gemini-2.5-flash-lite", "none", Some(budget(0)), vec![], vec![]),
        ("gemini-2.5-flash-lite", "minimal", Some(budget(512)), vec![], vec![]),
        ("gemini-2.5-pro", "high", Some(budget(4096)), vec![], vec![]),
        // 2.5 Pro cannot stop thinking: its smallest budget.
        ("gemini-2.5-pro", "none", Some(budget(128)), vec!["reasoning_effort=thinkingBudget 128"], vec![]),
        // Gemini 3: levels; one the model lacks becomes the next higher (or its highest).
        ("gemini-3-pro-preview", "low", Some(level("LOW")), vec![], vec![]),
        ("gemini-3-pro-preview", "high", Some(level("HIGH")), vec![], vec![]),
        ("gemini-3-pro-preview", "medium", Some(level("HIGH")), vec!["reasoning_effort=high"], vec![]),
        ("gemini-3-pro-preview", "minimal", Some(level("LOW")), vec!["reasoning_effort=low"], vec![]),
        ("gemini-3-pro-preview", "xhigh", Some(level("HIGH")), vec!["reasoning_effort=high"], vec![]),
        ("gemini-3-pro-preview", "none", Some(level("LOW")), vec!["reasoning_effort=low"], vec![]),
        ("gemini-3.1-pro-preview", "medium", Some(level("MEDIUM")), vec![], vec![]),
        ("gemini-3.1-pro-preview", "minimal", Some(level("LOW")), vec!["reasoning_effort=low"], vec![]),
        ("gemini-3-flash-preview", "minimal", Some(level("MINIMAL")), vec![], vec![]),
        ("gemini-3-flash-preview", "medium", Some(level("MEDIUM")), vec![], vec![]),
        ("gemini-3-flash-preview", "none", Some(level("MINIMAL")), vec!["reasoning_effort=minimal"], vec![]),
        // Models that cannot think: a request to think is dropped; not thinking is what they do.
        ("gemini-2.0-flash", "high", None, vec![], vec!["reasoning_effort"]),
        ("gemini-2.0-flash", "none", None, vec![], vec![]),
        ("gemini-2.5-flash-image", "low", None, vec![], vec!["reasoning_effort"]),
    ];
    for (model, effort, config, adjusted, dropped) in cases {
        let (out, _) = translate_with(ParamPolicy::Default, &ask(model, json!({"reasoning_effort": effort})));
        let out = out.unwrap_or_else(|e| panic!("{model} {effort}: {}", e.message()));
        let body: Value = serde_json::from_slice(out.body.as_ref().unwrap()).unwrap();
        let sent = body.get("generationConfig").and_then(|g| g.get("thinkingConfig")).cloned();
        assert_eq!(sent, config, "{model} {effort}");
        assert_eq!(out.adjusted_params, adjusted, "{model} {effort}");
        assert_eq!(out.dropped_params, dropped, "{model} {effort}");
        if let Some(config) = &sent {
            // Gemini refuses both forms together.
            assert!(config.get("thinkingBudget").is_none() || config.get("thinkingLevel").is_none());
        }
    }
    // No reasoning_effort: nothing, whatever the model.
    for model in ["gemini-2.5-pro", "gemini-3-pro-preview", "gemini-2.0-flash"] {
        assert_eq!(sent(ask(model, json!({}))).get("generationConfig"), None, "{model}");
    }
}

#[test]
fn reject_policy_refuses_what_the_default_adjusts_or_drops() {
    // (model, fields) → the parameter the 400 names, under `reject`.
    let cases = [
        ("gemini-2.5-pro", json!({"reasoning_effort": "none"}), "reasoning_effort", "smallest thinking budget is 128"),
        ("gemini-3-pro-preview", json!({"reasoning_effort": "medium"}), "reasoning_effort", "are low, high."),
        ("gemini-3-pro-preview", json!({"reasoning_effort": "none"}), "reasoning_effort", "cannot turn thinking off"),
        ("gemini-2.0-flash", json!({"reasoning_effort": "low"}), "reasoning_effort", "cannot think"),
        ("gemini-2.5-flash", json!({"temperature": 2.4}), "temperature", "0 to 2"),
    ];
    for (model, fields, param, detail) in cases {
        let (out, _) = translate_with(ParamPolicy::Reject, &ask(model, fields.clone()));
        let err = out.expect_err(model);
        assert_eq!((err.status(), param_of(&err)), (400, json!(param)), "{model} {fields}");
        assert!(err.message().contains(detail), "{model}: {}", err.message());
    }
    // What each model takes as asked passes under `reject` too.
    for (model, effort) in [("gemini-2.5-pro", "low"), ("gemini-3-pro-preview", "high"), ("gemini-2.5-flash", "none")] {
        let (out, _) = translate_with(ParamPolicy::Reject, &ask(model, json!({"reasoning_effort": effort})));
        assert!(out.is_ok(), "{model} {effort}");
    }
    // An effort nobody knows is the client's mistake, whatever the policy.
    for bad in ["", "max", "HIGH", "extreme"] {
        let (out, _) = translate_with(ParamPolicy::Drop, &ask("gemini-2.5-flash", json!({"reasoning_effort": bad})));
        let err = out.expect_err(bad);
        assert_eq!((err.status(), param_of(&err)), (400, json!("reasoning_effort")), "{bad}");
    }
}

#[test]
fn temperature_above_the_range_is_clamped_and_reported() {
    let (out, _) = translate_with(ParamPolicy::Default, &ask("gemini-2.5-flash", json!({"temperature": 2.4})));
    let out = out.unwrap();
    assert_eq!(out.adjusted_params, vec!["temperature=2".to_string()]);
    let body: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
    assert_eq!(body["generationConfig"]["temperature"], json!(2.0));
}

// ---------------------------------------------------------------------------------
// The deprecated functions interface (crate::legacy).

const WEATHER: &str =
    r#"{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}"#;

#[test]
fn legacy_functions_become_declarations_and_history_pairs_up() {
    let functions: Value = serde_json::from_str(&format!("[{WEATHER}]")).unwrap();
    let body = json!({"model": "gemini-2.5-flash", "functions": functions, "function_call": {"name": "get_weather"},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "function_call": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"role": "function", "name": "get_weather", "content": "18C"}]});
    let (out, facts) = translate_with(ParamPolicy::Default, &body);
    assert!(facts.legacy_functions);
    let sent: Value = serde_json::from_slice(&out.unwrap().body.unwrap()).unwrap();
    assert_eq!(sent["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_eq!(
        sent["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            // Gemini 2.5 checks no signatures: none is invented.
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}}]}])
    );
    // `function_call: "none"` / `"auto"` are the tool choices they stand for.
    for (choice, mode) in [("none", "NONE"), ("auto", "AUTO")] {
        let body = ask("gemini-2.5-flash", json!({"functions": functions, "function_call": choice}));
        assert_eq!(sent_of(&body)["toolConfig"]["functionCallingConfig"]["mode"], mode, "{choice}");
    }
    // With tools too, the answer uses tool_calls.
    let tools = json!([{"type": "function", "function": {"name": "other"}}]);
    let (_, facts) =
        translate_with(ParamPolicy::Default, &ask("gemini-2.5-flash", json!({"functions": functions, "tools": tools})));
    assert!(!facts.legacy_functions);
}

fn sent_of(body: &Value) -> Value {
    let (out, _) = translate_with(ParamPolicy::Default, body);
    serde_json::from_slice(&out.unwrap().body.unwrap()).unwrap()
}

#[test]
fn legacy_calls_in_a_gemini_3_history_carry_googles_dummy_signature() {
    // A legacy `function_call` has no id to carry the signature back: Gemini 3 would refuse it.
    let history = |model: &str| {
        json!({"model": model, "functions": [{"name": "f"}], "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "function", "name": "f", "content": "done"},
            {"role": "assistant", "tool_calls": [{"id": "fc_1__thought__c2ln", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "fc_1__thought__c2ln", "content": "again"}]})
    };
    let signatures = |model: &str| -> Vec<Value> {
        sent_of(&history(model))["contents"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["parts"].as_array().unwrap().clone())
            .filter(|p| p.get("functionCall").is_some())
            .map(|p| p.get("thoughtSignature").cloned().unwrap_or(Value::Null))
            .collect()
    };
    assert_eq!(signatures("gemini-3-pro-preview"), vec![json!(DUMMY_SIGNATURE), json!("c2ln")]);
    assert_eq!(signatures("gemini-2.5-flash"), vec![Value::Null, json!("c2ln")]);
}

#[test]
fn a_legacy_function_result_without_its_call_is_refused_by_name() {
    let body = json!({"model": "gemini-2.5-flash", "messages": [
        {"role": "user", "content": "go"}, {"role": "function", "name": "get_weather", "content": "18C"}]});
    let (out, _) = translate_with(ParamPolicy::Default, &body);
    let err = out.unwrap_err();
    assert_eq!((err.status(), param_of(&err)), (400, json!("messages[1].name")));
    assert!(err.message().contains("\"get_weather\""), "{}", err.message());
}

fn respond_legacy(body: &Value) -> Value {
    let ep = endpoint(ParamPolicy::Default);
    let facts = RequestFacts { model: "client-model".into(), legacy_functions: true, ..RequestFacts::default() };
    let ctx = ResponseContext { created: 7, api_key: Some(KEY), endpoint: &ep, request: &facts };
    let out = Gemini.response(&ctx, Operation::Chat, 200, body.to_string().as_bytes());
    serde_json::from_slice(&out.body).unwrap()
}

#[test]
fn legacy_clients_get_one_function_call() {
    let call = |name: &str, args: Value| json!({"functionCall": {"name": name, "args": args}});
    // (parts) → (function_call, finish_reason)
    let cases = [
        (vec![call("f", json!({"a": 1}))], json!({"name": "f", "arguments": "{\"a\":1}"}), "function_call"),
        // Several calls: the first (Gemini cannot be asked for one only).
        (
            vec![json!({"text": "Checking."}), call("f", json!({})), call("g", json!({"b": 2}))],
            json!({"name": "f", "arguments": "{}"}),
            "function_call",
        ),
        (vec![json!({"text": "No call."})], Value::Null, "stop"),
    ];
    for (parts, function_call, finish) in cases {
        let out = respond_legacy(
            &json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]}),
        );
        let choice = &out["choices"][0];
        assert_eq!(choice["message"]["function_call"], function_call, "{out}");
        assert_eq!(choice["message"].get("tool_calls"), None, "{out}");
        assert_eq!(choice["finish_reason"], finish, "{out}");
    }
}

fn stream_with(facts: RequestFacts, pieces: &[&[u8]]) -> Vec<u8> {
    let ctx = StreamContext {
        created: 7,
        include_usage: false,
        provider: Provider::Gemini,
        api_key: Some(KEY.into()),
        facts,
    };
    let mut translator = Gemini.stream(ctx);
    let mut out = Vec::new();
    for piece in pieces {
        translator.push(piece, &mut out);
    }
    translator.finish(&mut out);
    out
}

#[test]
fn legacy_clients_get_one_streamed_function_call() {
    let event = br#"data: {"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}, {"functionCall": {"name": "g"}}]}, "finishReason": "STOP"}]}

"#;
    let facts = RequestFacts { model: "m".into(), legacy_functions: true, ..RequestFacts::default() };
    let out = events(&stream_with(facts, &[event]));
    let chunks: Vec<Value> = out.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("function_call")).collect();
    assert_eq!(calls, vec![&json!({"name": "f", "arguments": "{\"a\":1}"})]);
    assert!(chunks.iter().all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "function_call");
}

#[test]
fn calls_without_arguments_are_empty_objects_streamed_or_not() {
    for args in ["", r#", "args": null"#, r#", "args": {}"#, r#", "args": { }"#] {
        let candidate = format!(
            r#"{{"candidates": [{{"content": {{"role": "model", "parts": [{{"functionCall": {{"name": "f"{args}}}}}]}}, "finishReason": "STOP"}}]}}"#
        );
        let whole: Value = serde_json::from_slice(&respond(Operation::Chat, 200, candidate.as_bytes()).body).unwrap();
        assert_eq!(whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}", "{args}");
        let streamed = stream_of(&[format!("data: {candidate}\n\n").as_bytes()]);
        let chunks: Vec<Value> =
            events(&streamed).iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
        let arguments: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(arguments, "{}", "{args}: {chunks:?}");
    }
}

fn assert_openai_error(err: &GatewayError) {
    let v: Value = serde_json::from_slice(&err.body()).unwrap();
    assert!(v["error"]["message"].is_string());
    assert!((400..600).contains(&err.status()));
}

/// Gemini's request invariants: contents open with a user turn, roles alternate, every
/// part has exactly one datum, calls and responses never share a turn, and a response
/// turn directly follows the call turn with as many responses as calls.
fn check_gemini_request(sent: &Value) -> Result<(), TestCaseError> {
    let contents = sent["contents"].as_array().filter(|c| !c.is_empty());
    prop_assert!(contents.is_some(), "no contents: {sent}");
    let contents = contents.unwrap();
    prop_assert_eq!(&contents[0]["role"], "user");
    let count = |content: &Value, kind: &str| {
        content["parts"].as_array().map_or(0, |parts| parts.iter().filter(|p| p.get(kind).is_some()).count())
    };
    for (i, content) in contents.iter().enumerate() {
        let role = content["role"].as_str().unwrap_or_default();
        prop_assert!(role == "user" || role == "model", "{role}");
        if i > 0 {
            prop_assert_ne!(&contents[i - 1]["role"], &content["role"], "roles must alternate: {}", sent);
        }
        let parts = content["parts"].as_array();
        prop_assert!(parts.is_some_and(|p| !p.is_empty()), "empty parts: {}", sent);
        for part in parts.unwrap() {
            let data = ["text", "inlineData", "functionCall", "functionResponse"];
            prop_assert_eq!(data.iter().filter(|k| part.get(**k).is_some()).count(), 1, "{}", part);
            if let Some(text) = part.get("text") {
                prop_assert!(text.as_str().is_some_and(|t| !t.is_empty()), "{}", part);
            }
            if let Some(call) = part.get("functionCall") {
                prop_assert!(call["args"].is_object(), "{}", part);
            }
            if let Some(response) = part.get("functionResponse") {
                prop_assert!(response["response"].is_object(), "{}", part);
            }
        }
        let (calls, responses) = (count(content, "functionCall"), count(content, "functionResponse"));
        prop_assert!(calls == 0 || responses == 0);
        if responses > 0 {
            prop_assert!(
                i > 0 && count(&contents[i - 1], "functionCall") > 0,
                "a response turn without calls: {}",
                sent
            );
        }
    }
    if let Some(system) = sent.get("systemInstruction") {
        prop_assert!(system["parts"]
            .as_array()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["text"].is_string())));
    }
    Ok(())
}

/// What the model's rules (providers::models) allow, checked on the request sent: a
/// temperature in range, and thinking in the one form the model takes, within its range.
fn obeys_model_rules(model: &str, sent: &Value) -> Result<(), String> {
    use crate::providers::models::rules;
    let rules = rules(NAME, model);
    let config = &sent["generationConfig"];
    if config["temperature"].as_f64().is_some_and(|t| t > rules.temperature_max) {
        return Err(format!("temperature above {}", rules.temperature_max));
    }
    let thinking = config.get("thinkingConfig");
    let budget = thinking.and_then(|t| t.get("thinkingBudget"));
    let level = thinking.and_then(|t| t.get("thinkingLevel"));
    if budget.is_some() && level.is_some() {
        return Err("thinkingBudget and thinkingLevel together".into());
    }
    match rules.reasoning {
        Reasoning::GeminiBudget { min, max, can_disable } => {
            if level.is_some() {
                return Err("thinkingLevel on a budget model".into());
            }
            if let Some(b) = budget.map(|b| b.as_u64().unwrap_or(u64::MAX)) {
                if !((b == 0 && can_disable) || (u64::from(min)..=u64::from(max)).contains(&b)) {
                    return Err(format!("thinking budget {b} outside the model's range"));
                }
            }
        }
        Reasoning::GeminiLevel { levels } => {
            if budget.is_some() {
                return Err("thinkingBudget on a level model".into());
            }
            if let Some(level) = level {
                let name = level.as_str().unwrap_or_default().to_ascii_lowercase();
                if !levels.contains(&name.as_str()) {
                    return Err(format!("thinking level {name} the model lacks"));
                }
            }
        }
        _ if thinking.is_some() => return Err("thinkingConfig on a model that cannot think".into()),
        _ => {}
    }
    if thinking.is_some_and(|t| t["includeThoughts"] == true) && budget.is_some_and(|b| b == 0) {
        return Err("thoughts asked for with thinking off".into());
    }
    Ok(())
}

fn arb_embeddings_request() -> impl Strategy<Value = Value> {
    let input = prop_oneof![
        ".{0,12}".prop_map(Value::String),
        proptest::collection::vec(".{0,8}".prop_map(Value::String), 0..4).prop_map(Value::Array),
        proptest::collection::vec(any::<i64>().prop_map(|n| json!(n)), 0..4).prop_map(Value::Array),
        Just(json!([[1, 2], [3]])),
        arb_json(),
    ];
    (
        input,
        proptest::option::of(prop_oneof![Just(json!("float")), Just(json!("base64")), Just(json!("hex")), arb_json()]),
        proptest::option::of(prop_oneof![(0u32..5000).prop_map(|d| json!(d)), arb_json()]),
        proptest::option::of(prop_oneof![Just("gemini-embedding-001"), Just("a/b"), Just(""), Just("models/x")]),
        any::<bool>(),
    )
        .prop_map(|(input, format, dimensions, model, user)| {
            let mut req = json!({"model": model.unwrap_or("gemini-embedding-001"), "input": input});
            if let Some(f) = format {
                req["encoding_format"] = f;
            }
            if let Some(d) = dimensions {
                req["dimensions"] = d;
            }
            if user {
                req["user"] = json!("u");
            }
            req
        })
}

/// Response bodies close to Gemini's: the right skeleton with arbitrary parts.
fn arb_gemini_response() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        ".{0,10}".prop_map(|t| json!({"text": t})),
        ".{0,10}".prop_map(|t| json!({"text": t, "thought": true})),
        Just(json!({"functionCall": {"name": "f", "args": {"a": [1, {"b": null}]}}})),
        Just(json!({"functionCall": {"name": "g", "id": "fc1"}, "thoughtSignature": "c2ln"})),
        Just(json!({"functionCall": {"name": "h", "args": "not an object"}})),
        arb_json(),
    ];
    let finish = prop::sample::select(vec![
        Value::Null,
        json!("STOP"),
        json!("MAX_TOKENS"),
        json!("SAFETY"),
        json!("MALFORMED_FUNCTION_CALL"),
        json!("MISSING_THOUGHT_SIGNATURE"),
        json!("NEW"),
        json!(7),
    ]);
    let logprobs = prop_oneof![
        Just(Value::Null),
        Just(
            json!({"chosenCandidates": [{"token": "a", "logProbability": -0.5}], "topCandidates": [{"candidates": [{"token": "a"}]}]})
        ),
        arb_json(),
    ];
    let candidate = (proptest::collection::vec(part, 0..4), finish, logprobs, proptest::option::of(0u32..3)).prop_map(
        |(parts, finish, logprobs, index)| {
            let mut c = json!({"content": {"role": "model", "parts": parts}});
            if !finish.is_null() {
                c["finishReason"] = finish;
            }
            if !logprobs.is_null() {
                c["logprobsResult"] = logprobs;
            }
            if let Some(i) = index {
                c["index"] = json!(i);
            }
            c
        },
    );
    (
        proptest::collection::vec(candidate, 0..3),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just(json!({"promptTokenCount": 3, "thoughtsTokenCount": 9})), arb_json()]),
    )
        .prop_map(|(candidates, blocked, usage)| {
            let mut r = json!({"candidates": candidates, "modelVersion": "gemini-x", "responseId": "r1"});
            if blocked {
                r["promptFeedback"] = json!({"blockReason": "SAFETY"});
            }
            if let Some(u) = usage {
                r["usageMetadata"] = u;
            }
            r
        })
}

/// Streams close to Gemini's: realistic events, some arbitrary ones, various framings.
fn arb_gemini_stream() -> impl Strategy<Value = Vec<u8>> {
    let event = prop_oneof![
        3 => arb_gemini_response().prop_map(|v| v.to_string()),
        1 => Just(format!(r#"{{"error":{{"code":429,"message":"quota for {KEY}","status":"RESOURCE_EXHAUSTED"}}}}"#)),
        1 => arb_json().prop_map(|v| v.to_string()),
        1 => ".{0,20}",
    ];
    let separator = prop::sample::select(vec!["\n\n", "\r\n\r\n", "\r\r", "\n", ""]);
    proptest::collection::vec((event, separator), 0..6).prop_map(|events| {
        let mut body = Vec::new();
        for (data, sep) in events {
            body.extend_from_slice(b"data: ");
            body.extend_from_slice(data.as_bytes());
            body.extend_from_slice(sep.as_bytes());
        }
        body
    })
}

/// Splits `bytes` at the given fractions of its length.
fn split_at_fractions(bytes: &[u8], cuts: &[f64]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| ((bytes.len() as f64) * c) as usize).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in points {
        let p = p.clamp(last, bytes.len());
        pieces.push(bytes[last..p].to_vec());
        last = p;
    }
    pieces.push(bytes[last..].to_vec());
    pieces
}

/// A finished OpenAI stream: every event is JSON (or the final `[DONE]`), the key
/// never appears, and it ends with `[DONE]` or with an error event.
fn check_openai_stream(out: &[u8]) -> Result<(), TestCaseError> {
    let text = std::str::from_utf8(out);
    prop_assert!(text.is_ok(), "output is not UTF-8");
    prop_assert!(!text.unwrap().contains(KEY), "the key leaked");
    let all = events(out);
    prop_assert!(!all.is_empty(), "nothing written");
    for (i, data) in all.iter().enumerate() {
        if data == "[DONE]" {
            prop_assert_eq!(i, all.len() - 1, "[DONE] before the end");
            continue;
        }
        let v: Result<Value, _> = serde_json::from_str(data);
        prop_assert!(v.is_ok(), "not JSON: {}", data);
        let v = v.unwrap();
        if v.get("error").is_some() {
            prop_assert_eq!(i, all.len() - 1, "an error event before the end");
        } else {
            prop_assert_eq!(&v["object"], "chat.completion.chunk");
        }
    }
    let last = all.last().unwrap();
    let ends_well =
        last == "[DONE]" || serde_json::from_str::<Value>(last).is_ok_and(|v| v["error"]["message"].is_string());
    prop_assert!(ends_well, "bad ending: {}", last);
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn request_translation_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for op in [Operation::Chat, Operation::Embeddings, Operation::Completions] {
            if let Err(e) = translate_op(op, &body) { assert_openai_error(&e) }
        }
    }

    #[test]
    fn request_translation_never_panics_on_json(value in arb_json()) {
        for op in [Operation::Chat, Operation::Embeddings] {
            if let Err(e) = translate_op(op, value.to_string().as_bytes()) { assert_openai_error(&e) }
        }
    }

    #[test]
    fn near_valid_requests_translate_to_valid_gemini_json_or_a_clean_error(value in arb_chat_request()) {
        match translate(value.to_string().as_bytes()) {
            Ok(out) => {
                let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
                check_gemini_request(&sent)?;
                let model = value["model"].as_str().unwrap_or_default();
                prop_assert!(out.path.starts_with(&format!("/v1beta/models/{model}:")), "{}", out.path);
                if let Err(broken) = obeys_model_rules(model, &sent) {
                    prop_assert!(false, "{broken}: {sent}");
                }
            }
            Err(e) => assert_openai_error(&e),
        }
    }

    /// Valid requests to every Gemini family the table distinguishes, under every policy:
    /// what is sent obeys the model's rules, or the request is refused naming the parameter.
    #[test]
    fn every_gemini_model_is_sent_only_what_it_takes(
        model in prop::sample::select(GEMINI_MODELS.to_vec()),
        effort in proptest::option::of(prop::sample::select(vec!["none", "minimal", "low", "medium", "high", "xhigh"])),
        temperature in proptest::option::of(0.0f64..2.5),
        policy in prop::sample::select(vec![ParamPolicy::Default, ParamPolicy::Drop, ParamPolicy::Reject]),
        legacy in any::<bool>(),
    ) {
        let mut body = ask(model, json!({}));
        if let Some(e) = effort {
            body["reasoning_effort"] = json!(e);
        }
        if let Some(t) = temperature {
            body["temperature"] = json!(t);
        }
        if legacy {
            body["functions"] = json!([{"name": "f"}]);
        }
        let (out, facts) = translate_with(policy, &body);
        match out {
            Ok(out) => {
                prop_assert_eq!(facts.legacy_functions, legacy);
                let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
                check_gemini_request(&sent)?;
                if let Err(broken) = obeys_model_rules(model, &sent) {
                    prop_assert!(false, "{broken}: {sent}");
                }
                if policy == ParamPolicy::Reject {
                    prop_assert!(out.adjusted_params.is_empty() && out.dropped_params.is_empty());
                }
            }
            Err(e) => {
                prop_assert_eq!(policy, ParamPolicy::Reject, "{}", e.message());
                prop_assert!(matches!(param_of(&e).as_str(), Some("reasoning_effort" | "temperature")), "{}", e.message());
            }
        }
    }

    #[test]
    fn embeddings_requests_translate_or_fail_cleanly(value in arb_embeddings_request()) {
        match translate_op(Operation::Embeddings, value.to_string().as_bytes()) {
            Ok(out) => {
                let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
                if out.path.ends_with(":embedContent") {
                    prop_assert!(sent["content"]["parts"][0]["text"].is_string());
                    prop_assert!(sent.get("model").is_none());
                } else {
                    prop_assert!(out.path.ends_with(":batchEmbedContents"), "{}", out.path);
                    let model = out.path.rsplit_once("/models/").map(|(_, m)| m.trim_end_matches(":batchEmbedContents"));
                    let requests = sent["requests"].as_array().unwrap();
                    for request in requests {
                        let expected = model.map(|m| format!("models/{m}"));
                        prop_assert_eq!(request["model"].as_str(), expected.as_deref());
                    }
                }
            }
            Err(e) => assert_openai_error(&e),
        }
    }

    #[test]
    fn response_translation_always_yields_openai_json(
        status in prop_oneof![Just(200u16), 100u16..600],
        value in arb_json(),
        near in arb_gemini_response(),
        raw in proptest::collection::vec(any::<u8>(), 0..256),
        prefix in ".{0,8}",
    ) {
        let keyed = json!({"error": {"code": status, "message": format!("{prefix}{KEY}{prefix}"), "status": "INVALID_ARGUMENT"}});
        for body in [value.to_string().into_bytes(), near.to_string().into_bytes(), raw.clone(), keyed.to_string().into_bytes()] {
            for op in [Operation::Chat, Operation::Embeddings] {
                let out = respond(op, status, &body);
                let text = String::from_utf8(out.body.clone());
                prop_assert!(text.as_ref().is_ok_and(|t| !t.contains(KEY)), "the key leaked or not UTF-8");
                let v: Value = serde_json::from_slice(&out.body).unwrap();
                let expected = if op == Operation::Chat { "chat.completion" } else { "list" };
                prop_assert!(v.get("error").is_some() || v["object"] == expected, "{}", v);
                prop_assert!((200..600).contains(&out.status));
                if v.get("error").is_some() {
                    prop_assert!(out.status >= 400 && v["error"]["message"].is_string(), "{}", v);
                } else {
                    prop_assert_eq!(out.status, 200);
                }
            }
        }
    }

    #[test]
    fn near_valid_responses_translate_faithfully(near in arb_gemini_response()) {
        let out = respond(Operation::Chat, 200, near.to_string().as_bytes());
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        if out.status == 200 {
            for choice in v["choices"].as_array().unwrap() {
                let reason = choice["finish_reason"].as_str().unwrap_or_default();
                prop_assert!(["stop", "length", "tool_calls", "content_filter"].contains(&reason), "{}", reason);
                if let Some(calls) = choice["message"]["tool_calls"].as_array() {
                    prop_assert_eq!(reason, "tool_calls");
                    for call in calls {
                        let args: Result<Value, _> = serde_json::from_str(call["function"]["arguments"].as_str().unwrap());
                        prop_assert!(args.is_ok(), "{}", call);
                        prop_assert!(!call["id"].as_str().unwrap().is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn stream_translation_never_panics_on_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..8),
    ) {
        let pieces = split_at_fractions(&body, &cuts);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        check_openai_stream(&stream_of(&refs))?;
    }

    #[test]
    fn near_valid_streams_end_properly_however_they_are_cut(
        body in arb_gemini_stream(),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..8),
    ) {
        let whole = stream_of(&[&body]);
        check_openai_stream(&whole)?;
        let pieces = split_at_fractions(&body, &cuts);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let split = stream_of(&refs);
        prop_assert_eq!(String::from_utf8_lossy(&split), String::from_utf8_lossy(&whole));
    }

    #[test]
    fn call_ids_round_trip(
        gemini_id in proptest::option::of("[a-zA-Z0-9_-]{1,16}"),
        signature in proptest::option::of("[A-Za-z0-9+/]{1,40}={0,2}"),
        seed in ".{0,12}",
        index in 0usize..100,
    ) {
        let id = call_id(gemini_id.as_deref(), signature.as_deref(), &seed, index);
        let expected_id = gemini_id.as_deref().filter(|g| !g.starts_with("call_") && !g.contains(SIGNATURE_MARK));
        let (back_id, back_signature) = split_call_id(&id);
        if gemini_id.as_deref().is_none_or(|g| !g.contains(SIGNATURE_MARK)) {
            prop_assert_eq!(back_id, expected_id);
            prop_assert_eq!(back_signature, signature.as_deref());
        }
    }
}

#[test]
fn billed_usage_takes_cached_tokens_out_of_the_prompt_and_counts_thoughts_as_output() {
    let metadata: crate::schema::gemini::UsageMetadata = serde_json::from_value(json!({
        "promptTokenCount": 100, "cachedContentTokenCount": 60, "toolUsePromptTokenCount": 5,
        "candidatesTokenCount": 20, "thoughtsTokenCount": 30, "totalTokenCount": 155
    }))
    .unwrap();
    let b = billed(&metadata);
    assert_eq!((b.input, b.cache_read, b.output, b.reasoning), (45, 60, 50, 30));
    assert_eq!(b.total_tokens(), 155);
}
