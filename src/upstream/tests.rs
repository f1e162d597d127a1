use super::*;
use crate::config::ROUTE_HEADER;
use crate::host::FakeHost;
use crate::pairs;
use serde_json::{json, Value};

const METADATA_PATH: &str = "xds.upstream_host_metadata.filter_metadata.switchyard";

/// The request as the first attempt's filter sees it. The route has already removed the
/// client's credentials (`request_headers_to_remove`, which the config lint enforces and
/// tests/integration/test_secrets.py proves end to end); a few headers it also removes
/// are left in to show that the filter spends no host call on them.
fn host_for(metadata: &[(&str, &str)], env: &[(&str, &str)], body: &Value) -> FakeHost {
    let mut host = FakeHost::with_request(
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gateway.local"),
            ("content-length", "999"),
            (ROUTE_HEADER, "claude"),
            ("accept-encoding", "gzip"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
        body.to_string().as_bytes(),
    );
    if !metadata.is_empty() {
        host.properties.insert(METADATA_PATH.into(), pairs::encode(metadata));
    }
    host.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    host.now = 1_700_000_000;
    host
}

fn anthropic_meta() -> Vec<(&'static str, &'static str)> {
    vec![
        ("provider", "anthropic"),
        ("model", "claude-sonnet-4-5"),
        ("api_key_env", "ANTHROPIC_API_KEY"),
        ("api_base", "https://api.anthropic.com"),
    ]
}

fn chat() -> Value {
    json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "seed": 1})
}

fn send_request(host: &FakeHost) -> (UpstreamExchange, Flow) {
    let mut ex = UpstreamExchange::new(Rc::new(UpstreamConfig::default()), Rc::default());
    let flow = ex.on_request_headers(host, false);
    if host.local_reply.borrow().is_some() {
        return (ex, flow);
    }
    assert_eq!(flow, Flow::Pause);
    let size = host.request_body.borrow().len();
    assert_eq!(ex.on_request_body(host, size / 2, false), Flow::Pause);
    let flow = ex.on_request_body(host, size, true);
    (ex, flow)
}

#[test]
fn request_is_translated_for_the_endpoint_provider() {
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "sk-ant-test")], &chat());
    let (_, flow) = send_request(&host);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(host.request_header(":path").as_deref(), Some("/v1/messages"));
    assert_eq!(host.request_header(":authority").as_deref(), Some("api.anthropic.com"));
    assert_eq!(host.request_header("x-api-key").as_deref(), Some("sk-ant-test"));
    assert_eq!(host.request_header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(host.request_header("authorization"), None, "Anthropic takes its key in x-api-key only");
    // Left to the route's request_headers_to_remove (enforced by the config lint).
    for kept in [ROUTE_HEADER, "accept-encoding", "x-forwarded-for"] {
        assert!(host.request_header(kept).is_some(), "{kept}");
    }
    assert_eq!(host.request_header_removals.get(), 0, "a first attempt removes nothing");
    let body: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["max_tokens"], 4096);
    assert_eq!(
        host.request_header("content-length").unwrap(),
        host.request_body.borrow().len().to_string(),
        "content-length must match the rewritten body"
    );
}

#[test]
fn adjusted_params_are_reported_with_their_values() {
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "temperature": 1.5});
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "sk-ant-test")], &body);
    let (mut ex, _) = send_request(&host);
    let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(sent["temperature"], 1.0);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "503".into())];
    assert_eq!(ex.on_response_headers(&host, true), Flow::Continue);
    assert_eq!(host.response_header_value(ADJUSTED_PARAMS_HEADER).as_deref(), Some("temperature=1"));
    assert_eq!(host.response_header_value(DROPPED_PARAMS_HEADER), None);
}

#[test]
fn response_is_translated_and_dropped_params_reported() {
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "sk-ant-test")], &chat());
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() =
        vec![(":status".into(), "200".into()), ("content-length".into(), "10".into())];
    let anthropic = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 1}
    });
    *host.response_body.borrow_mut() = anthropic.to_string().into_bytes();
    assert_eq!(ex.on_response_headers(&host, false), Flow::Pause);
    assert_eq!(ex.on_response_body(&host, 5, false), Flow::Pause);
    let size = host.response_body.borrow().len();
    assert_eq!(ex.on_response_body(&host, size, true), Flow::Continue);
    let out: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["choices"][0]["message"]["content"], "Hello");
    assert_eq!(out["created"], 1_700_000_000);
    assert_eq!(host.response_header_value("content-length").unwrap(), host.response_body.borrow().len().to_string());
    assert_eq!(host.response_header_value("content-type").as_deref(), Some("application/json"));
    assert_eq!(host.response_header_value(DROPPED_PARAMS_HEADER).as_deref(), Some("seed"));
    assert_eq!(host.header_reads(), 2, "only the attempt count and the response status are read");
    assert_eq!(host.response_header_value(PROVIDER_HEADER).as_deref(), Some("anthropic"));
    assert_eq!(host.response_header_value(DEPLOYMENT_MODEL_HEADER).as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(host.response_header_value(ATTEMPTS_HEADER).as_deref(), Some("1"));
    assert!(host.counters.borrow().is_empty(), "a first attempt that succeeds counts nothing");
}

#[test]
fn overloaded_provider_becomes_503_with_openai_body() {
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "sk-ant-test")], &chat());
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "529".into())];
    *host.response_body.borrow_mut() =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_vec();
    assert_eq!(ex.on_response_headers(&host, false), Flow::Pause);
    let size = host.response_body.borrow().len();
    ex.on_response_body(&host, size, true);
    assert_eq!(host.response_header_value(":status").as_deref(), Some("503"));
    let out: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
    assert_eq!(out["error"]["code"], "overloaded");
}

#[test]
fn body_less_error_still_gets_a_status_clients_understand() {
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "k")], &chat());
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "529".into())];
    assert_eq!(ex.on_response_headers(&host, true), Flow::Continue);
    assert_eq!(host.response_header_value(":status").as_deref(), Some("503"));
}

#[test]
fn openai_success_passes_through_untouched() {
    let meta = [("provider", "openai"), ("model", "gpt-4o-mini"), ("api_key_env", "OPENAI_API_KEY")];
    let host = host_for(&meta, &[("OPENAI_API_KEY", "sk-openai")], &chat());
    let (mut ex, flow) = send_request(&host);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(host.request_header("authorization").as_deref(), Some("Bearer sk-openai"));
    assert_eq!(host.request_header(":path").as_deref(), Some("/v1/chat/completions"));
    assert_eq!(host.request_header(":authority").as_deref(), Some("api.openai.com"));
    *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    *host.response_body.borrow_mut() = b"{\"untouched\":true}".to_vec();
    // Held until complete (one pass through the filter chains); read once, for its usage.
    assert_eq!(ex.on_response_headers(&host, false), Flow::Pause);
    assert_eq!(ex.on_response_body(&host, 9, false), Flow::Pause);
    assert_eq!(ex.on_response_body(&host, 18, true), Flow::Continue);
    assert_eq!(&*host.response_body.borrow(), b"{\"untouched\":true}");
    assert_eq!(host.header_reads(), 2, "only the attempt count and the status");
    assert_eq!(host.response_header_value(PROVIDER_HEADER).as_deref(), Some("openai"));
    assert_eq!(host.response_header_value(DEPLOYMENT_MODEL_HEADER).as_deref(), Some("gpt-4o-mini"));
}

#[test]
fn misconfigured_deployments_fail_cleanly_without_leaking() {
    let cases: Vec<(Vec<(&str, &str)>, Vec<(&str, &str)>, &str)> = vec![
        (vec![], vec![], "no switchyard metadata"),
        (vec![("provider", "pigeon")], vec![], "unknown provider"),
        (anthropic_meta(), vec![], "ANTHROPIC_API_KEY is not set"),
        (anthropic_meta(), vec![("ANTHROPIC_API_KEY", "")], "ANTHROPIC_API_KEY is not set"),
    ];
    for (meta, env, expected) in cases {
        let host = host_for(&meta, &env, &chat());
        let (_, flow) = send_request(&host);
        assert_eq!(flow, Flow::Pause);
        let (status, reply) = host.reply().unwrap();
        assert_eq!(status, 500);
        assert_eq!(reply["error"]["code"], "gateway_misconfigured");
        assert!(reply["error"]["message"].as_str().unwrap().contains(expected), "{reply}");
    }
}

#[test]
fn translation_errors_are_local_replies() {
    let host = host_for(
        &anthropic_meta(),
        &[("ANTHROPIC_API_KEY", "k")],
        &json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "n": 3}),
    );
    let (_, flow) = send_request(&host);
    assert_eq!(flow, Flow::Pause);
    let (status, reply) = host.reply().unwrap();
    assert_eq!((status, reply["error"]["param"].as_str()), (400, Some("n")));
}

#[test]
fn a_retry_to_another_provider_does_not_inherit_the_previous_attempts_headers() {
    // Envoy hands each attempt the header map the previous attempt edited, and counts
    // the attempts in x-envoy-attempt-count.
    let host =
        host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "sk-ant-test"), ("OPENAI_API_KEY", "sk-openai")], &chat());
    send_request(&host);
    assert_eq!(host.request_header("x-api-key").as_deref(), Some("sk-ant-test"));
    let mut retry = host;
    retry.request_headers.borrow_mut().push((ATTEMPT_COUNT_HEADER.into(), "2".into()));
    retry.properties.insert(
        METADATA_PATH.into(),
        pairs::encode(&[("provider", "openai"), ("model", "gpt-4o-mini"), ("api_key_env", "OPENAI_API_KEY")]),
    );
    *retry.request_body.borrow_mut() = chat().to_string().into_bytes();
    let (_, flow) = send_request(&retry);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(retry.request_header("authorization").as_deref(), Some("Bearer sk-openai"));
    assert_eq!(retry.request_header("x-api-key"), None, "the Anthropic key must not go to OpenAI");
    assert_eq!(retry.request_header("anthropic-version"), None);
    assert_eq!(retry.request_header(":path").as_deref(), Some("/v1/chat/completions"));
}

#[test]
fn each_provider_gets_its_own_path_and_auth_header() {
    let chat_body = chat();
    let embed_body = json!({"model": "emb", "input": ["a", "b"]});
    let stream_body = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let cases: Vec<(Vec<(&str, &str)>, &Value, &str, (&str, &str))> = vec![
        (
            vec![("provider", "gemini"), ("model", "gemini-2.5-flash"), ("api_key_env", "KEY")],
            &chat_body,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            ("x-goog-api-key", "sk-test"),
        ),
        (
            vec![("provider", "gemini"), ("model", "gemini-2.5-flash"), ("api_key_env", "KEY")],
            &stream_body,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            ("x-goog-api-key", "sk-test"),
        ),
        (
            vec![("provider", "gemini"), ("model", "text-embedding-004"), ("api_key_env", "KEY")],
            &embed_body,
            "/v1beta/models/text-embedding-004:batchEmbedContents",
            ("x-goog-api-key", "sk-test"),
        ),
        (
            vec![
                ("provider", "azure"),
                ("model", "gpt-4o-prod"),
                ("api_key_env", "KEY"),
                ("api_base", "https://contoso.openai.azure.com"),
                ("api_version", "2024-10-21"),
            ],
            &chat_body,
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
            ("api-key", "sk-test"),
        ),
        (
            vec![("provider", "azure"), ("api_key_env", "KEY"), ("api_base", "https://contoso.openai.azure.com")],
            &embed_body,
            "/openai/v1/embeddings",
            ("api-key", "sk-test"),
        ),
        (
            vec![("provider", "mistral"), ("api_key_env", "KEY")],
            &embed_body,
            "/v1/embeddings",
            ("authorization", "Bearer sk-test"),
        ),
    ];
    for (meta, body, path, (auth_name, auth_value)) in cases {
        let host = host_for(&meta, &[("KEY", "sk-test")], body);
        let (_, flow) = send_request(&host);
        assert_eq!(flow, Flow::Continue, "{meta:?}: {:?}", host.reply());
        assert_eq!(host.request_header(":path").as_deref(), Some(path), "{meta:?}");
        assert_eq!(host.request_header(auth_name).as_deref(), Some(auth_value), "{meta:?}");
        for other in ["authorization", "x-api-key", "api-key", "x-goog-api-key"].into_iter().filter(|h| *h != auth_name)
        {
            assert_eq!(host.request_header(other), None, "{meta:?}: {other} must not travel");
        }
    }
}

#[test]
fn gemini_embeddings_come_back_in_openai_shape() {
    let meta = [("provider", "gemini"), ("model", "text-embedding-004"), ("api_key_env", "KEY")];
    let host = host_for(&meta, &[("KEY", "sk-test")], &json!({"model": "emb", "input": "hello there"}));
    let (mut ex, _) = send_request(&host);
    let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(sent["content"]["parts"][0]["text"], "hello there");
    *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    *host.response_body.borrow_mut() = br#"{"embedding":{"values":[0.6,-0.8]}}"#.to_vec();
    assert_eq!(ex.on_response_headers(&host, false), Flow::Pause);
    let size = host.response_body.borrow().len();
    assert_eq!(ex.on_response_body(&host, size, true), Flow::Continue);
    let out: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
    assert_eq!(out["object"], "list");
    assert_eq!(out["model"], "emb");
    assert_eq!(out["data"][0]["embedding"], json!([0.6, -0.8]), "unit vectors pass through as they came");
    assert!(out["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn gemini_streams_are_translated_as_they_arrive() {
    let meta = [("provider", "gemini"), ("model", "gemini-2.5-flash"), ("api_key_env", "KEY")];
    let body = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let host = host_for(&meta, &[("KEY", "sk-test")], &body);
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() =
        vec![(":status".into(), "200".into()), ("content-type".into(), "text/event-stream".into())];
    // Held until the first piece of body: a stall before it stays retryable.
    assert_eq!(ex.on_response_headers(&host, false), Flow::Pause);
    let first = br#"data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}],"responseId":"r1","modelVersion":"gemini-2.5-flash"}"#;
    *host.response_body.borrow_mut() = [&first[..], b"\r\n\r\n"].concat();
    let size = host.response_body.borrow().len();
    assert_eq!(ex.on_response_body(&host, size, false), Flow::Continue);
    let out = String::from_utf8(host.response_body.borrow().clone()).unwrap();
    assert!(out.contains(r#""content":"Hel""#) && !out.contains("[DONE]"), "{out}");
    let last = br#"data: {"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":2,"totalTokenCount":4}}"#;
    *host.response_body.borrow_mut() = [&last[..], b"\r\n\r\n"].concat();
    let size = host.response_body.borrow().len();
    assert_eq!(ex.on_response_body(&host, size, true), Flow::Continue);
    let out = String::from_utf8(host.response_body.borrow().clone()).unwrap();
    assert!(out.contains(r#""finish_reason":"stop""#) && out.ends_with("data: [DONE]\n\n"), "{out}");
}

#[test]
fn later_attempts_are_labelled_and_counted_for_their_group_and_provider() {
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "k")], &chat());
    host.request_headers.borrow_mut().push(("x-envoy-attempt-count".into(), "3".into()));
    let mut host = host;
    host.properties.insert("xds.cluster_name".into(), b"model.gpt-4.1".to_vec());
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    assert_eq!(ex.on_response_headers(&host, true), Flow::Continue);
    assert_eq!(host.response_header_value(ATTEMPTS_HEADER).as_deref(), Some("3"));
    assert_eq!(host.counters.borrow().get("switchyard.fallbacks.anthropic.gpt-4.1"), Some(&1));
}

#[test]
fn rate_limits_cross_the_router_as_503_and_keep_their_429_for_the_client() {
    let openai = [("provider", "openai"), ("model", "gpt-4o-mini"), ("api_key_env", "KEY")];
    let anthropic_429 = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}"#;
    let openai_429 =
        br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let cases: [(&[(&str, &str)], &[u8], &str); 2] =
        [(&anthropic_meta(), anthropic_429, "anthropic"), (&openai, openai_429, "openai")];
    for (meta, body, provider) in cases {
        let mut host = host_for(meta, &[("ANTHROPIC_API_KEY", "k"), ("KEY", "k")], &chat());
        host.properties.insert("xds.cluster_name".into(), b"model.claude".to_vec());
        let (mut ex, _) = send_request(&host);
        *host.response_headers.borrow_mut() =
            vec![(":status".into(), "429".into()), ("retry-after".into(), "7".into())];
        *host.response_body.borrow_mut() = body.to_vec();
        assert_eq!(ex.on_response_headers(&host, false), Flow::Pause);
        let size = body.len();
        assert_eq!(ex.on_response_body(&host, size, true), Flow::Continue);
        assert_eq!(host.response_header_value(":status").as_deref(), Some("503"), "{provider}");
        assert_eq!(host.response_header_value(STATUS_HEADER).as_deref(), Some("429"), "{provider}");
        assert_eq!(host.response_header_value("retry-after").as_deref(), Some("7"), "{provider}");
        let out: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
        assert_eq!(out["error"]["type"], "rate_limit_error", "{provider}: {out}");
        let counted = format!("switchyard.attempt_errors.{provider}.429.claude");
        assert_eq!(host.counters.borrow().get(&counted), Some(&1), "{provider}: {:?}", host.counters.borrow());
    }
}

#[test]
fn group_names_are_made_safe_for_stat_names() {
    let mut host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "k")], &chat());
    host.properties.insert("xds.cluster_name".into(), b"model.org/llama:70b".to_vec());
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "500".into())];
    ex.on_response_headers(&host, true);
    assert_eq!(host.counters.borrow().get("switchyard.attempt_errors.anthropic.500.org_llama_70b"), Some(&1));
}

#[test]
fn each_endpoint_is_parsed_once_and_new_metadata_is_a_new_entry() {
    let cache = DeploymentCache::default();
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "sk-ant-test")], &chat());
    let first = cache.get(&host).unwrap();
    assert!(Rc::ptr_eq(&first, &cache.get(&host).unwrap()), "the second attempt reuses the parsed deployment");
    assert_eq!(first.api_key.as_deref(), Some("sk-ant-test"));

    // Same address, another model: an endpoint of its own.
    let mut other_model = anthropic_meta();
    other_model[1] = ("model", "claude-haiku-4-5");
    let other = host_for(&other_model, &[("ANTHROPIC_API_KEY", "sk-ant-test")], &chat());
    let second = cache.get(&other).unwrap();
    assert!(!Rc::ptr_eq(&first, &second));
    assert_eq!(second.endpoint.model.as_deref(), Some("claude-haiku-4-5"));
    assert!(Rc::ptr_eq(&first, &cache.get(&host).unwrap()));
}

#[test]
fn a_misconfigured_endpoint_is_not_cached() {
    let cache = DeploymentCache::default();
    let mut host = host_for(&anthropic_meta(), &[], &chat());
    let err = cache.get(&host).err().unwrap();
    assert!(err.contains("ANTHROPIC_API_KEY is not set"), "{err}");
    host.env.insert("ANTHROPIC_API_KEY".into(), "sk-ant-test".into());
    assert_eq!(cache.get(&host).unwrap().api_key.as_deref(), Some("sk-ant-test"));
}

#[test]
fn endpoint_churn_does_not_grow_the_cache_without_bound() {
    let cache = DeploymentCache::default();
    for n in 0..DEPLOYMENT_CACHE_LIMIT + 10 {
        let model = format!("model-{n}");
        let host = host_for(&[("provider", "openai"), ("model", &model)], &[], &chat());
        assert_eq!(cache.get(&host).unwrap().endpoint.model.as_deref(), Some(model.as_str()));
        assert!(cache.0.borrow().len() <= DEPLOYMENT_CACHE_LIMIT);
    }
}

#[test]
fn attempts_take_the_operation_from_the_hand_off_not_the_body() {
    use crate::handoff::{RequestInfo, HANDOFF};
    let meta = [("provider", "openai"), ("api_base", "https://api.openai.com/v1")];
    // A body whose shape would say chat: the hand-off says embeddings, and wins.
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let host = host_for(&meta, &[], &body);
    let published = HANDOFF
        .with(|h| h.publish(Some("req-7"), RequestInfo { operation: Operation::Embeddings, ..RequestInfo::default() }));
    let _ = send_request(&host);
    assert_eq!(host.request_header(":path").as_deref(), Some("/v1/embeddings"));
    assert_eq!(host.header_reads(), 1, "the first attempt reads only its attempt count");
    // A retry finds the request by its id: one more header read.
    let retry = host_for(&meta, &[], &body);
    retry.request_headers.borrow_mut().push(("x-envoy-attempt-count".into(), "2".into()));
    retry.request_headers.borrow_mut().push(("x-request-id".into(), "req-7".into()));
    let _ = send_request(&retry);
    assert_eq!(retry.request_header(":path").as_deref(), Some("/v1/embeddings"));
    assert_eq!(retry.header_reads(), 2);
    // Without a hand-off (nothing published), the body's shape decides.
    HANDOFF.with(|h| h.forget(Some("req-7"), &published));
    let orphan = host_for(&meta, &[], &body);
    let _ = send_request(&orphan);
    assert_eq!(orphan.request_header(":path").as_deref(), Some("/v1/chat/completions"));
}

fn published(stream: bool) -> Rc<crate::handoff::RequestInfo> {
    use crate::handoff::{RequestInfo, HANDOFF};
    HANDOFF.with(|h| h.publish(None, RequestInfo { stream, input_estimate: 40, ..RequestInfo::default() }))
}

#[test]
fn every_answer_is_metered_in_the_hand_off_passed_through_translated_or_streamed() {
    use crate::usage::Usage;
    // Passed through: the usage read off the body's end.
    let meta = [("provider", "openai"), ("model", "gpt-4o-mini")];
    let host = host_for(&meta, &[], &chat());
    let info = published(false);
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    let body = br#"{"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}"#;
    *host.response_body.borrow_mut() = body.to_vec();
    ex.on_response_headers(&host, false);
    assert_eq!(info.attempts.borrow()[0].usage, Usage { input: 40, ..Usage::default() }, "estimated until read");
    assert!(info.attempts.borrow()[0].estimated);
    ex.on_response_body(&host, body.len(), true);
    let attempt = info.attempts.borrow()[0].clone();
    assert_eq!((attempt.provider, attempt.model.as_str(), attempt.status), ("openai", "gpt-4o-mini", 200));
    assert_eq!(
        (attempt.usage, attempt.estimated),
        (Usage { input: 5, cache_read: 4, output: 2, ..Usage::default() }, false)
    );

    // Translated: the adapter's own reading.
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "k")], &chat());
    let info = published(false);
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    let body = json!({"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 1, "cache_creation_input_tokens": 8}});
    *host.response_body.borrow_mut() = body.to_string().into_bytes();
    ex.on_response_headers(&host, false);
    let size = host.response_body.borrow().len();
    ex.on_response_body(&host, size, true);
    let attempt = info.attempts.borrow()[0].clone();
    assert_eq!(attempt.usage, Usage { input: 3, cache_write_5m: 8, output: 1, ..Usage::default() });
    assert!(!attempt.estimated);

    // An error: recorded, nothing billed; then the retry's answer adds to it.
    let host = host_for(&anthropic_meta(), &[("ANTHROPIC_API_KEY", "k")], &chat());
    let info = published(true);
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "529".into())];
    ex.on_response_headers(&host, true);
    assert_eq!((info.attempts.borrow()[0].status, info.attempts.borrow()[0].usage), (529, Usage::default()));

    // Streamed: an estimate while it flows (the client may leave), the provider's count at its end.
    let host = host_for(
        &anthropic_meta(),
        &[("ANTHROPIC_API_KEY", "k")],
        &json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    let info = published(true);
    let (mut ex, _) = send_request(&host);
    *host.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
    ex.on_response_headers(&host, false);
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"twelve bytes\"}}\n\n";
    *host.response_body.borrow_mut() = start.as_bytes().to_vec();
    ex.on_response_body(&host, start.len(), false);
    let attempt = info.attempts.borrow()[0].clone();
    assert_eq!((attempt.usage.input, attempt.usage.output, attempt.estimated), (7, 3, true));
    let end = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":6}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    *host.response_body.borrow_mut() = end.as_bytes().to_vec();
    ex.on_response_body(&host, end.len(), true);
    let attempt = info.attempts.borrow()[0].clone();
    assert_eq!((attempt.usage.input, attempt.usage.output, attempt.estimated), (7, 6, false));
    assert_eq!(info.usage().map(|u| u.total_tokens()), Some(13));
}
