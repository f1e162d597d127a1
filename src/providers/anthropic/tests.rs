use super::*;
use crate::config::UpstreamConfig;
use crate::endpoint::Endpoint;
use crate::providers::Provider;
use crate::testing::{arb_chat_request, arb_json, fuzz_config};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::Value;

fn endpoint() -> Endpoint {
    Endpoint {
        provider: Provider::Anthropic,
        model: Some("claude-x".into()),
        api_key_env: None,
        authority: "api.anthropic.com".into(),
        base_path: String::new(),
        max_tokens: None,
        api_version: None,
        param_policy: crate::providers::ParamPolicy::Default,
        base_model: None,
        price_overrides: Default::default(),
    }
}

fn translate(body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    let ep = endpoint();
    let config = UpstreamConfig::default();
    Anthropic.request(
        &RequestContext { endpoint: &ep, config: &config },
        Operation::Chat,
        body,
        &mut RequestFacts::default(),
    )
}

#[test]
fn data_urls() {
    assert_eq!(parse_data_url("data:image/png;base64,AAAA"), Some(("image/png", "AAAA")));
    assert_eq!(parse_data_url("data:image/png;base64,"), None);
    assert_eq!(parse_data_url("data:;base64,AAAA"), None);
    assert_eq!(parse_data_url("data:image/png,AAAA"), None);
    assert_eq!(parse_data_url("https://x/y.png"), None);
}

#[test]
fn tool_use_ids_are_kept_when_valid_and_mapped_stably_otherwise() {
    assert_eq!(tool_use_id("toolu_01-Ab"), "toolu_01-Ab");
    let mapped = tool_use_id("call.123:x");
    assert!(mapped.starts_with("toolu_") && mapped.len() == 17, "{mapped}");
    assert!(mapped.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    assert_eq!(mapped, tool_use_id("call.123:x"), "must be deterministic");
    assert_ne!(mapped, tool_use_id("call.124:x"));
    assert_ne!(tool_use_id(""), "");
}

#[test]
fn tool_arguments_must_be_objects() {
    assert_eq!(tool_arguments("").map(RawValue::get), Some("{}"));
    assert_eq!(tool_arguments("  ").map(RawValue::get), Some("{}"));
    assert_eq!(tool_arguments(r#"{"a":1}"#).map(RawValue::get), Some(r#"{"a":1}"#));
    for bad in ["[1]", "1", "\"s\"", "{", "null"] {
        assert!(tool_arguments(bad).is_none(), "{bad}");
    }
}

#[test]
fn sent_body_is_exactly_what_anthropic_accepts_at_top_level() {
    // Every key the adapter can emit must be a Messages API request field.
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"top_p":0.5,
        "stop":["x"],"user":"u","reasoning_effort":"low","tools":[{"type":"function","function":{"name":"f"}}],
        "tool_choice":"auto","seed":1,"logit_bias":{}}"#;
    let out = translate(body).unwrap();
    let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
    let allowed = [
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "top_k",
        "output_config",
    ];
    for key in sent.as_object().unwrap().keys() {
        assert!(allowed.contains(&key.as_str()), "{key} is not an Anthropic request field");
    }
}

/// The per-model rules (providers::models), checked on what was sent: nothing the
/// provider refuses may leave the gateway.
fn obeys_model_rules(sent: &Value) -> Result<(), String> {
    use crate::providers::models::{rules, Reasoning, Sampling};
    let rules = rules("anthropic", sent["model"].as_str().unwrap_or_default());
    // Asked for; models that always think do so unasked.
    let thinking = sent.get("thinking").is_some();
    let thinks = thinking || rules.reasoning == (Reasoning::AnthropicAdaptive { always_on: true });
    let turns = sent["messages"].as_array().cloned().unwrap_or_default();
    let blocks = |turn: &Value| turn["content"].as_array().cloned().unwrap_or_default();
    let is_thinking = |b: &Value| matches!(b["type"].as_str(), Some("thinking" | "redacted_thinking"));
    if sent["temperature"].as_f64().is_some_and(|t| t > 1.0) {
        return Err("temperature above 1".into());
    }
    match rules.sampling {
        Sampling::DefaultOnly if ["temperature", "top_p", "top_k"].iter().any(|k| sent.get(*k).is_some()) => {
            return Err("sampling parameter on a model without them".into())
        }
        Sampling::TemperatureOrTopP if sent.get("temperature").is_some() && sent.get("top_p").is_some() => {
            return Err("temperature and top_p together".into())
        }
        _ => {}
    }
    if thinking {
        if sent["temperature"].as_f64().is_some_and(|t| t != 1.0) || sent.get("top_k").is_some() {
            return Err("thinking with temperature other than 1 or top_k".into());
        }
        if sent["top_p"].as_f64().is_some_and(|p| p < 0.95) {
            return Err("thinking with top_p below 0.95".into());
        }
        if matches!(sent["tool_choice"]["type"].as_str(), Some("any" | "tool")) {
            return Err("thinking with a forced tool choice".into());
        }
        if let Some(budget) = sent["thinking"]["budget_tokens"].as_u64() {
            if sent["max_tokens"].as_u64().unwrap_or(0) <= budget {
                return Err("max_tokens not above the thinking budget".into());
            }
        }
        let last = turns.last().cloned().unwrap_or_default();
        if last["role"] == "assistant" && blocks(&last).iter().all(|b| b["type"] == "text") {
            return Err("thinking with a prefill".into());
        }
        let answers_tools = blocks(&last).iter().any(|b| b["type"] == "tool_result");
        if answers_tools && turns.len() >= 2 {
            let answered = &turns[turns.len() - 2];
            if answered["role"] == "assistant" && !blocks(answered).first().is_some_and(is_thinking) {
                return Err("tool loop whose assistant turn does not start with thinking".into());
            }
        }
    }
    if !thinks && turns.iter().flat_map(blocks).any(|b| is_thinking(&b)) {
        return Err("thinking blocks without thinking".into());
    }
    if turns.iter().filter(|t| t["role"] == "assistant").any(|t| blocks(t).last().is_some_and(is_thinking)) {
        return Err("an assistant turn ending with thinking".into());
    }
    if !rules.forced_tool_choice && matches!(sent["tool_choice"]["type"].as_str(), Some("any" | "tool")) {
        return Err("forced tool choice on a model that refuses it".into());
    }
    // A final assistant turn of text is a prefill (one with tool calls lacks its results,
    // which the provider reports itself).
    if let Some(last) =
        turns.last().filter(|t| t["role"] == "assistant" && blocks(t).iter().all(|b| b["type"] == "text"))
    {
        if !rules.assistant_prefill {
            return Err("prefill on a model without prefill".into());
        }
        if blocks(last).last().and_then(|b| b["text"].as_str()).is_some_and(|t| t != t.trim_end()) {
            return Err("prefill ending in whitespace".into());
        }
    }
    Ok(())
}

fn assert_openai_error(err: &GatewayError) {
    let v: Value = serde_json::from_slice(&err.body()).unwrap();
    assert!(v["error"]["message"].is_string());
    assert!((400..600).contains(&err.status()));
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn request_translation_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = translate(&body) { assert_openai_error(&e) }
    }

    #[test]
    fn request_translation_never_panics_on_json(value in arb_json()) {
        if let Err(e) = translate(value.to_string().as_bytes()) { assert_openai_error(&e) }
    }

    #[test]
    fn near_valid_requests_translate_to_valid_json_or_a_clean_error(value in arb_chat_request()) {
        // The request's own model decides the per-model rules.
        let mut ep = endpoint();
        ep.model = None;
        let config = UpstreamConfig::default();
        let ctx = RequestContext { endpoint: &ep, config: &config };
        let mut facts = RequestFacts::default();
        match Anthropic.request(&ctx, Operation::Chat, value.to_string().as_bytes(), &mut facts) {
            Ok(out) => {
                let sent: Value = serde_json::from_slice(&out.body.unwrap()).unwrap();
                prop_assert!(sent["max_tokens"].as_u64().is_some_and(|n| n >= 1));
                prop_assert!(sent["messages"].as_array().is_some_and(|m| !m.is_empty()));
                prop_assert_eq!(&sent["messages"][0]["role"], "user");
                if let Err(broken) = obeys_model_rules(&sent) {
                    prop_assert!(false, "{broken}: {sent}");
                }
            }
            Err(e) => assert_openai_error(&e),
        }
    }

    #[test]
    fn response_translation_always_yields_openai_json(status in prop_oneof![Just(200u16), 100u16..600], value in arb_json(), raw in proptest::collection::vec(any::<u8>(), 0..256)) {
        let ep = endpoint();
        let facts = RequestFacts::default();
        let ctx = ResponseContext { created: 1, api_key: Some("sk-secret-key"), endpoint: &ep, request: &facts };
        for body in [value.to_string().into_bytes(), raw.clone()] {
            let out = Anthropic.response(&ctx, Operation::Chat, status, &body);
            let v: Value = serde_json::from_slice(&out.body).unwrap();
            prop_assert!(v.get("error").is_some() || v["object"] == "chat.completion");
            prop_assert!((200..600).contains(&out.status));
        }
    }
}

#[test]
fn billed_usage_splits_cache_writes_by_lifetime() {
    use crate::usage::Usage as Billed;
    let parse = |json: &str| billed(&serde_json::from_str(json).unwrap());
    let cases = [
        (
            r#"{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":30,"cache_creation":{"ephemeral_5m_input_tokens":20,"ephemeral_1h_input_tokens":10}}"#,
            Billed { input: 10, cache_read: 100, cache_write_5m: 20, cache_write_1h: 10, output: 5, reasoning: 0 },
        ),
        // Older answers: every write is for 5 minutes.
        (
            r#"{"input_tokens":1,"output_tokens":2,"cache_creation_input_tokens":7}"#,
            Billed { input: 1, cache_write_5m: 7, output: 2, ..Billed::default() },
        ),
        // A breakdown larger than the total never makes tokens up.
        (
            r#"{"input_tokens":1,"output_tokens":2,"cache_creation_input_tokens":3,"cache_creation":{"ephemeral_1h_input_tokens":9}}"#,
            Billed { input: 1, cache_write_1h: 3, output: 2, ..Billed::default() },
        ),
    ];
    for (json, expected) in cases {
        assert_eq!(parse(json), expected, "{json}");
    }
}

#[test]
fn a_stream_reports_its_final_usage_and_an_estimate_before() {
    let ctx = StreamContext {
        created: 1,
        include_usage: false,
        provider: Provider::Anthropic,
        api_key: None,
        facts: RequestFacts::default(),
    };
    let mut translator = Anthropic.stream(ctx);
    let mut out = Vec::new();
    translator.push(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":12,\"output_tokens\":1,\"cache_read_input_tokens\":4}}}\n\n", &mut out);
    translator.push(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"sixteen bytes!!!\"}}\n\n", &mut out);
    let so_far = translator.usage().unwrap();
    assert_eq!((so_far.input, so_far.cache_read, so_far.output), (12, 4, 1));
    assert_eq!(translator.output_estimate(), 4, "16 bytes of text");
    translator.push(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", &mut out);
    translator.finish(&mut out);
    assert_eq!(translator.usage().unwrap().output, 5);
}
