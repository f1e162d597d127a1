use super::*;
use crate::config::{self, PluginConfig};
use crate::host::FakeHost;
use crate::testing::{arb_chat_request, arb_json, fuzz_config};
use proptest::prelude::*;
use serde_json::{json, Value};

fn config(master_key: Option<&str>) -> Rc<DownstreamConfig> {
    let mut doc = json!({"stage": "downstream", "models": [{"id": "demo"}, {"id": "org/model"}]});
    if master_key.is_some() {
        doc["master_key_env"] = json!("GW_KEY");
    }
    let key = master_key.map(str::to_string);
    let env = move |name: &str| (name == "GW_KEY").then(|| key.clone()).flatten();
    match config::parse(doc.to_string().as_bytes(), &env, 1_700_000_000).unwrap() {
        PluginConfig::Downstream(c) => Rc::new(c),
        PluginConfig::Upstream(_) => panic!("expected a downstream config"),
    }
}

/// Runs a whole request through the exchange; returns the host afterwards and the
/// flow of the last callback.
fn run(cfg: Rc<DownstreamConfig>, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> (FakeHost, Flow) {
    let mut headers = vec![(":method", method), (":path", path)];
    headers.extend_from_slice(extra);
    let host = FakeHost::with_request(&headers, body);
    let mut ex = DownstreamExchange::new(cfg);
    let mut flow = ex.on_request_headers(&host, body.is_empty());
    if flow == Flow::Pause && host.local_reply.borrow().is_none() {
        flow = ex.on_request_body(&host, body.len() / 2, false);
        assert_eq!(flow, Flow::Pause, "must buffer until end of stream");
        flow = ex.on_request_body(&host, body.len(), true);
    }
    (host, flow)
}

const CHAT: &[u8] = br#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn valid_chat_request_is_routed_by_model_and_loses_client_credentials() {
    let creds = [("authorization", "Bearer sk-client"), ("x-api-key", "k"), ("openai-organization", "org-1")];
    let (host, flow) = run(config(None), "POST", "/v1/chat/completions", &creds, CHAT);
    assert_eq!(flow, Flow::Continue);
    assert!(host.local_reply.borrow().is_none());
    assert_eq!(host.request_header(ROUTE_HEADER).as_deref(), Some("demo"));
    assert_eq!(host.header_reads(), 1, "the request headers are read once");
    for (name, _) in creds {
        assert_eq!(host.request_header(name), None, "{name} must not travel upstream");
    }
}

#[test]
fn paths_without_v1_and_with_query_strings_are_accepted() {
    for path in ["/chat/completions", "/v1/chat/completions?api-version=1", "/v1/chat/completions/"] {
        let (host, flow) = run(config(None), "POST", path, &[], CHAT);
        assert_eq!(flow, Flow::Continue, "{path}");
        assert_eq!(host.request_header(ROUTE_HEADER).as_deref(), Some("demo"), "{path}");
    }
}

#[test]
fn client_supplied_route_header_is_overwritten() {
    let (host, _) = run(config(None), "POST", "/v1/chat/completions", &[(ROUTE_HEADER, "org/model")], CHAT);
    assert_eq!(host.request_header(ROUTE_HEADER).as_deref(), Some("demo"));
}

#[test]
fn local_answers_and_errors() {
    let cases: Vec<(&str, &str, &[u8], u16, Value)> = vec![
        ("GET", "/v1/models", b"", 200, json!("list")),
        ("GET", "/models", b"", 200, json!("list")),
        ("GET", "/v1/models/demo", b"", 200, json!("model")),
        ("GET", "/v1/models/org%2Fmodel", b"", 200, json!("model")),
        ("GET", "/v1/models/org/model", b"", 200, json!("model")),
        ("GET", "/v1/models/nope", b"", 404, json!("model_not_found")),
        ("POST", "/v1/models", b"{}", 405, json!("method_not_allowed")),
        ("GET", "/v1/chat/completions", b"", 405, json!("method_not_allowed")),
        ("POST", "/v1/unknown", b"{}", 404, json!("unknown_url")),
        ("GET", "/", b"", 404, json!("unknown_url")),
        ("POST", "/v1/chat/completions", b"", 400, json!("invalid_json")),
        ("POST", "/v1/chat/completions", b"{oops", 400, json!("invalid_json")),
        (
            "POST",
            "/v1/chat/completions",
            br#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#,
            404,
            json!("model_not_found"),
        ),
        ("POST", "/v1/chat/completions", br#"{"model":"demo","messages":[]}"#, 400, json!("empty_array")),
        ("POST", "/v1/chat/completions", br#"{"model":"demo"}"#, 400, json!("missing_required_parameter")),
    ];
    for (method, path, body, status, marker) in cases {
        let (host, flow) = run(config(None), method, path, &[], body);
        assert_eq!(flow, Flow::Pause, "{method} {path}");
        let (got_status, reply) = host.reply().unwrap_or_else(|| panic!("no reply for {method} {path}"));
        assert_eq!(got_status, status, "{method} {path}: {reply}");
        if status == 200 {
            assert_eq!(reply["object"], marker, "{method} {path}");
        } else {
            assert_eq!(reply["error"]["code"], marker, "{method} {path}: {reply}");
        }
        assert!(host.request_header(ROUTE_HEADER).is_none(), "{method} {path} must not be routed");
    }
}

#[test]
fn model_list_has_openai_shape() {
    let (host, _) = run(config(None), "GET", "/v1/models", &[], b"");
    let (_, list) = host.reply().unwrap();
    assert_eq!(
        list,
        json!({"object": "list", "data": [
            {"id": "demo", "object": "model", "created": 1_700_000_000, "owned_by": "switchyard"},
            {"id": "org/model", "object": "model", "created": 1_700_000_000, "owned_by": "switchyard"},
        ]})
    );
}

#[test]
fn master_key_is_required_when_configured() {
    let cfg = config(Some("sk-gateway"));
    let good: [&[(&str, &str)]; 3] =
        [&[("authorization", "Bearer sk-gateway")], &[("x-api-key", "sk-gateway")], &[("api-key", "sk-gateway")]];
    for headers in good {
        let (host, flow) = run(cfg.clone(), "POST", "/v1/chat/completions", headers, CHAT);
        assert_eq!(flow, Flow::Continue, "{headers:?}");
        assert_eq!(host.request_header("authorization"), None);
    }
    let bad: [&[(&str, &str)]; 4] = [
        &[],
        &[("authorization", "Bearer sk-wrong")],
        &[("authorization", "Basic sk-gateway")],
        &[("authorization", "Bearer sk-gatewayX")],
    ];
    for headers in bad {
        for (method, path) in [("POST", "/v1/chat/completions"), ("GET", "/v1/models")] {
            let (host, _) = run(cfg.clone(), method, path, headers, CHAT);
            let (status, reply) = host.reply().unwrap();
            assert_eq!(status, 401, "{headers:?} {path}");
            assert_eq!(reply["error"]["type"], "authentication_error");
            assert!(!reply.to_string().contains("sk-gateway"), "the expected key must not be echoed");
        }
    }
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
    assert_eq!(percent_decode("bad%zz%2"), "bad%zz%2");
    assert_eq!(percent_decode("%ff"), "\u{fffd}");
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// Whatever the body, the request is either routed to a served model or answered
    /// locally with an OpenAI error; never a panic, never routed unvalidated.
    #[test]
    fn any_body_is_routed_or_answered(value in prop_oneof![arb_json(), arb_chat_request()], raw in proptest::collection::vec(any::<u8>(), 0..256)) {
        for body in [value.to_string().into_bytes(), raw.clone()] {
            let (host, flow) = run(config(None), "POST", "/v1/chat/completions", &[], &body);
            match host.reply() {
                Some((status, reply)) => {
                    prop_assert_eq!(flow, Flow::Pause);
                    prop_assert!((400..500).contains(&status));
                    prop_assert!(reply["error"]["message"].is_string());
                }
                None => {
                    prop_assert_eq!(flow, Flow::Continue);
                    prop_assert_eq!(host.request_header(ROUTE_HEADER), Some("demo".to_string()));
                }
            }
        }
    }
}

fn windowed_config() -> Rc<DownstreamConfig> {
    let doc = json!({"stage": "downstream", "models": [
        {"id": "small", "context_window": 50, "context_window_fallback": "large"},
        {"id": "large", "context_window": 400},
    ]});
    match config::parse(doc.to_string().as_bytes(), &|_: &str| None, 0).unwrap() {
        PluginConfig::Downstream(c) => Rc::new(c),
        PluginConfig::Upstream(_) => panic!("expected a downstream config"),
    }
}

fn chat_of(model: &str, words: usize, stream: bool) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "word ".repeat(words)}], "stream": stream})
        .to_string()
        .into_bytes()
}

#[test]
fn requests_too_large_for_their_model_go_to_its_context_window_fallback() {
    // "word " is 5 ASCII characters: 4 words come to 5 tokens, plus 4 per message.
    let cases: [(usize, &str); 3] = [(4, "small"), (36, "small"), (37, "large")];
    for (words, expected) in cases {
        let cfg = windowed_config();
        let (host, flow) = run(Rc::clone(&cfg), "POST", "/v1/chat/completions", &[], &chat_of("small", words, false));
        assert_eq!(flow, Flow::Continue, "{words}");
        assert_eq!(host.request_header(ROUTE_HEADER).as_deref(), Some(expected), "{words} words");
    }
    // The client learns of the move on the way back.
    let host = FakeHost::with_request(
        &[(":method", "POST"), (":path", "/v1/chat/completions")],
        &chat_of("small", 100, false),
    );
    let mut ex = DownstreamExchange::new(windowed_config());
    ex.on_request_headers(&host, false);
    let size = host.request_body.borrow().len();
    assert_eq!(ex.on_request_body(&host, size, true), Flow::Continue);
    assert_eq!(ex.on_response_headers(&host), Flow::Continue);
    assert_eq!(host.response_header_value(CONTEXT_FALLBACK_HEADER).as_deref(), Some("large"));
}

#[test]
fn requests_too_large_for_every_model_in_the_chain_are_refused_before_any_provider() {
    let (host, _) = run(windowed_config(), "POST", "/v1/chat/completions", &[], &chat_of("small", 1000, false));
    let (status, body) = host.reply().expect("a local reply");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["param"], "messages");
    assert!(body["error"]["message"].as_str().unwrap().contains("400 tokens"), "{body}");
    assert_eq!(host.request_header(ROUTE_HEADER), None);
}

#[test]
fn streams_are_marked_for_their_own_route() {
    let (host, _) = run(windowed_config(), "POST", "/v1/chat/completions", &[], &chat_of("large", 1, true));
    assert_eq!(host.request_header(STREAM_HEADER).as_deref(), Some("true"));
    let (host, _) = run(windowed_config(), "POST", "/v1/chat/completions", &[], &chat_of("large", 1, false));
    assert_eq!(host.request_header(STREAM_HEADER), None);
}

#[test]
fn a_providers_rate_limit_reaches_the_client_as_429() {
    let cases: [(&str, &str); 3] = [("429", "429"), ("nonsense", "503"), ("200", "503")];
    for (marker, expected) in cases {
        let host = FakeHost::default();
        *host.response_headers.borrow_mut() =
            vec![(":status".into(), "503".into()), (crate::upstream::STATUS_HEADER.into(), marker.into())];
        DownstreamExchange::new(config(None)).on_response_headers(&host);
        assert_eq!(host.response_header_value(":status").as_deref(), Some(expected), "{marker}");
        assert_eq!(
            host.response_header_value(crate::upstream::STATUS_HEADER),
            None,
            "the marker never reaches clients"
        );
    }
}

#[test]
fn a_body_must_carry_its_own_operations_field_and_no_other() {
    // The upstream filter tells operations apart by these fields (Operation::of_body).
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("/v1/chat/completions", json!({"model": "demo", "messages": [{"role": "user", "content": "x"}]}), None),
        (
            "/v1/chat/completions",
            json!({"model": "demo", "messages": [{"role": "user", "content": "x"}], "input": "y"}),
            Some("input"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "demo", "messages": [{"role": "user", "content": "x"}], "prompt": "y"}),
            Some("prompt"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "demo", "messages": [{"role": "user", "content": "x"}], "prompt": null}),
            None,
        ),
        ("/v1/embeddings", json!({"model": "demo", "input": "x"}), None),
        ("/v1/embeddings", json!({"model": "demo", "input": "x", "messages": []}), Some("messages")),
        ("/v1/embeddings", json!({"model": "demo", "input": "x", "prompt": "y"}), Some("prompt")),
        ("/v1/completions", json!({"model": "demo", "prompt": "x"}), None),
        ("/v1/completions", json!({"model": "demo", "prompt": "x", "messages": []}), Some("messages")),
        ("/v1/completions", json!({"model": "demo", "prompt": "x", "input": "y"}), Some("input")),
    ];
    for (path, body, stray) in cases {
        let body = body.to_string();
        let (host, flow) = run(config(None), "POST", path, &[], body.as_bytes());
        match stray {
            None => assert_eq!((flow, host.reply()), (Flow::Continue, None), "{path} {body}"),
            Some(field) => {
                let (status, reply) = host.reply().unwrap_or_else(|| panic!("{path} {body} was accepted"));
                assert_eq!((status, reply["error"]["param"].as_str()), (400, Some(field)), "{path} {body}: {reply}");
                assert_eq!(Operation::present(body.as_bytes()).map(|ops| ops.len()), Some(2), "{body}");
            }
        }
    }
}

#[test]
fn error_replies_carry_their_headers() {
    use crate::error::RateLimit;
    let host = FakeHost::default();
    let err =
        GatewayError::RateLimited(RateLimit { entity: "api_key", limit_type: "requests", limit: 3, reset_secs: 12 });
    assert_eq!(reply_error(&host, &err), Flow::Pause);
    let reply = host.local_reply.borrow();
    let (status, headers, body) = reply.as_ref().unwrap();
    assert_eq!(*status, 429);
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("retry-after"), Some("12"));
    assert_eq!(header("x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(header("x-ratelimit-remaining-requests"), Some("0"));
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
}

#[test]
fn routed_requests_hand_their_facts_to_their_attempts_until_they_end() {
    use crate::handoff::HANDOFF;
    let body = json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stream": true}).to_string();
    let host = FakeHost::with_request(
        &[(":method", "POST"), (":path", "/v1/chat/completions"), ("x-request-id", "abc")],
        body.as_bytes(),
    );
    let mut ex = DownstreamExchange::new(config(None));
    assert_eq!(ex.on_request_headers(&host, false), Flow::Pause);
    assert_eq!(ex.on_request_body(&host, body.len(), true), Flow::Continue);
    let crate::handoff::Pending::Only(first) = HANDOFF.with(|h| h.take_pending()) else { panic!("not published") };
    assert_eq!((first.operation, first.stream), (Operation::Chat, true));
    assert_eq!(HANDOFF.with(|h| h.find("abc")), Some(first));
    drop(ex);
    assert_eq!(HANDOFF.with(|h| h.find("abc")), None, "forgotten when the request ends");
    // A request answered before routing hands nothing over.
    let (_, _) = run(config(None), "GET", "/v1/models", &[("x-request-id", "def")], b"");
    assert_eq!(HANDOFF.with(|h| (h.take_pending(), h.in_flight())), (crate::handoff::Pending::Nothing, 0));
}

mod virtual_keys {
    use super::*;
    use crate::host::FakeShared;
    use crate::keys::{self, CachedKey};

    const MASTER: &str = "sk-master-0123456789";
    const SECRET: &str = "internal-secret";

    fn vk_config(when_down: &str) -> Rc<DownstreamConfig> {
        vk_config_with(json!({"when_sidecar_down": when_down}))
    }

    fn vk_config_with(extra: Value) -> Rc<DownstreamConfig> {
        let mut vk = json!({"sidecar_cluster": "switchyard_sidecar", "internal_secret_env": "SY_SECRET",
                             "cache_ttl": 60, "negative_cache_ttl": 5, "stale_ttl": 600});
        vk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let doc = json!({"stage": "downstream", "models": [{"id": "demo"}, {"id": "gpt"}], "master_key_env": "GW_KEY",
            "virtual_keys": vk});
        let env = |name: &str| match name {
            "GW_KEY" => Some(MASTER.to_string()),
            "SY_SECRET" => Some(SECRET.to_string()),
            _ => None,
        };
        match config::parse(doc.to_string().as_bytes(), &env, 1_700_000_000).unwrap() {
            PluginConfig::Downstream(c) => Rc::new(c),
            PluginConfig::Upstream(_) => panic!("expected a downstream config"),
        }
    }

    fn body(model: &str) -> Vec<u8> {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string().into_bytes()
    }

    fn host(shared: &Rc<FakeShared>, key: &str, model: &str, now: u64) -> FakeHost {
        let auth = format!("Bearer {key}");
        let mut h = FakeHost::with_request(
            &[(":method", "POST"), (":path", "/v1/chat/completions"), ("authorization", &auth)],
            &body(model),
        );
        h.shared = Rc::clone(shared);
        h.now = now;
        h
    }

    /// Headers, then the whole body: the flows of both callbacks.
    fn send(ex: &mut DownstreamExchange, h: &FakeHost) -> (Flow, Flow) {
        let size = h.request_body.borrow().len();
        let headers = ex.on_request_headers(h, false);
        if h.local_reply.borrow().is_some() {
            return (headers, Flow::Pause);
        }
        (headers, ex.on_request_body(h, size, true))
    }

    fn answer(ex: &mut DownstreamExchange, h: &FakeHost, status: u16, record: Option<Value>) {
        let body = record.map(|r| r.to_string().into_bytes()).unwrap_or_default();
        *h.call_response.borrow_mut() = (vec![(":status".into(), status.to_string())], body.clone());
        ex.on_http_call_response(h, 1, body.len());
    }

    fn record(extra: Value) -> Value {
        let mut r = json!({"token": keys::hash("sk-user"), "models": [], "blocked": false, "version": 1});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    }

    #[test]
    fn a_forwarded_request_leaves_one_ledger_record_with_its_attempts() {
        use crate::handoff::Attempt;
        use crate::usage::Usage;
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config("deny");
        let mut h = host(&shared, "sk-user", "demo", 1000);
        h.request_headers.borrow_mut().push(("x-request-id".into(), "client-chosen".into()));
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        send(&mut ex, &h);
        answer(&mut ex, &h, 200, Some(record(json!({"team_id": "t1", "user_id": "u1"}))));
        let info = ex.info.clone().unwrap();
        // A first attempt refused with a 529, a fallback that answered.
        for (provider, status, usage, cost) in [
            ("anthropic", 529, Usage::default(), Some(0)),
            ("openai", 200, Usage { input: 5, output: 2, ..Usage::default() }, Some(70)),
        ] {
            let i = info.begin_attempt(Attempt { provider, model: "m".into(), status, ..Attempt::default() });
            info.update_attempt(i, usage, false, cost);
        }
        *h.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
        ex.on_response_headers(&h);
        let call_id = h.response_header_value(CALL_ID_HEADER).unwrap();
        let before = crate::ledger::LEDGER.with(|l| l.borrow().pending());
        ex.on_done(&h);
        h.now_ns = 2_000_000_000;
        assert_eq!(crate::ledger::LEDGER.with(|l| l.borrow().pending()), before + 1);
        // What goes to the sidecar.
        crate::ledger::LEDGER.with(|l| l.borrow_mut().on_tick(&h, cfg.virtual_keys.as_ref().unwrap()));
        let calls = h.http_calls.borrow();
        let batch: Value = serde_json::from_slice(&calls.last().unwrap().2).unwrap();
        let rec = batch["records"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(rec["id"], call_id.as_str());
        assert_eq!(rec["client_request_id"], "client-chosen");
        assert_eq!(
            (rec["key_hash"].as_str(), rec["team_id"].as_str()),
            (Some(keys::hash("sk-user").as_str()), Some("t1"))
        );
        assert_eq!(
            (rec["provider"].as_str(), rec["status"].as_u64(), rec["attempts"].as_u64()),
            (Some("openai"), Some(200), Some(2))
        );
        assert_eq!((rec["usage"]["input"].as_u64(), rec["cost_nano"].as_u64()), (Some(5), Some(70)));
        assert_eq!((rec["model_group"].as_str(), rec["operation"].as_str()), (Some("demo"), Some("chat")));
    }

    #[test]
    fn a_miss_asks_the_sidecar_once_then_every_worker_uses_the_cache() {
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config("deny");
        let h = host(&shared, "sk-user", "demo", 1000);
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        assert_eq!(send(&mut ex, &h), (Flow::Pause, Flow::Pause), "the body waits for the key");
        let calls = h.http_calls.borrow().clone();
        assert_eq!(calls.len(), 1);
        let (cluster, headers, _, timeout) = &calls[0];
        assert_eq!((cluster.as_str(), *timeout), ("switchyard_sidecar", 1000));
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(header(":path"), Some(format!("/internal/v1/keys/{}", keys::hash("sk-user"))));
        assert_eq!(header("x-switchyard-internal").as_deref(), Some(SECRET));
        assert!(!headers.iter().any(|(_, v)| v.contains("sk-user")), "the key itself never leaves");
        answer(&mut ex, &h, 200, Some(record(json!({}))));
        assert_eq!(h.resumed.get(), 1, "the waiting request goes on");
        assert!(h.local_reply.borrow().is_none());
        assert_eq!(h.request_header(ROUTE_HEADER).as_deref(), Some("demo"));
        assert!(h.request_header("authorization").is_none(), "the client's key is not forwarded");
        // Another worker, a minute later: from the cache, one shared-data read.
        let other = host(&shared, "sk-user", "demo", 1059);
        let mut ex = DownstreamExchange::new(cfg);
        assert_eq!(send(&mut ex, &other), (Flow::Pause, Flow::Continue));
        assert_eq!((other.http_calls.borrow().len(), other.shared_calls.get()), (0, 1));
    }

    #[test]
    fn concurrent_misses_of_one_key_share_one_lookup() {
        use crate::callouts::{Event, KeyAnswer, OWNERS};
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config("deny");
        let request = |ctx: u32, key: &str| {
            let h = host(&shared, key, "demo", 1000);
            let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
            ex.set_context_id(ctx);
            (ex, h)
        };
        let (mut leader, lh) = request(101, "sk-user");
        let (mut joined, jh) = request(102, "sk-user");
        let (mut other, oh) = request(103, "sk-other");
        assert_eq!(send(&mut leader, &lh), (Flow::Pause, Flow::Pause));
        assert_eq!(send(&mut joined, &jh), (Flow::Pause, Flow::Pause));
        send(&mut other, &oh);
        assert_eq!(
            (lh.http_calls.borrow().len(), jh.http_calls.borrow().len(), oh.http_calls.borrow().len()),
            (1, 0, 1),
            "one call per key"
        );
        answer(&mut leader, &lh, 200, Some(record(json!({}))));
        let wakes = OWNERS.with(|o| o.borrow_mut().take_wakes());
        assert_eq!(wakes.len(), 1);
        assert_eq!((wakes[0].context_id, matches!(wakes[0].event, Event::Key(KeyAnswer::Found(_)))), (102, true));
        joined.on_wake(&jh, wakes[0].event.clone());
        assert_eq!((jh.resumed.get(), jh.request_header(ROUTE_HEADER).as_deref()), (1, Some("demo")));
        assert_eq!(jh.shared_calls.get(), 1, "the joined request read the cache once, and wrote nothing");
        // An unknown key: the joined request is refused like its leader.
        let (mut leader, lh) = request(104, "sk-nobody");
        let (mut joined, jh) = request(105, "sk-nobody");
        send(&mut leader, &lh);
        send(&mut joined, &jh);
        answer(&mut leader, &lh, 404, None);
        for wake in OWNERS.with(|o| o.borrow_mut().take_wakes()) {
            joined.on_wake(&jh, wake.event);
        }
        assert_eq!(jh.reply().unwrap().0, 401);
        drop(other);
    }

    #[test]
    fn a_lookup_whose_leader_ended_is_asked_again_by_a_joined_request() {
        use crate::callouts::OWNERS;
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config("deny");
        let h1 = host(&shared, "sk-user", "demo", 1000);
        let mut first = DownstreamExchange::new(Rc::clone(&cfg));
        first.set_context_id(201);
        send(&mut first, &h1);
        let h2 = host(&shared, "sk-user", "demo", 1000);
        let mut second = DownstreamExchange::new(Rc::clone(&cfg));
        second.set_context_id(202);
        send(&mut second, &h2);
        assert_eq!(h2.http_calls.borrow().len(), 0);
        drop(first); // the client went away: Envoy cancels its call
        let wakes = OWNERS.with(|o| o.borrow_mut().take_wakes());
        assert_eq!(wakes.len(), 1);
        second.on_wake(&h2, wakes[0].event.clone());
        assert_eq!(h2.http_calls.borrow().len(), 1, "it leads a lookup of its own");
        answer(&mut second, &h2, 200, Some(record(json!({}))));
        assert_eq!(h2.resumed.get(), 1);
    }

    #[test]
    fn a_lost_answer_fails_like_a_sidecar_that_is_down() {
        let shared = Rc::new(FakeShared::default());
        let h = host(&shared, "sk-user", "demo", 1000);
        let mut ex = DownstreamExchange::new(vk_config("deny"));
        ex.set_context_id(301);
        send(&mut ex, &h);
        ex.on_call_lost(&h, 1);
        assert_eq!(h.reply().unwrap().0, 503);
    }

    #[test]
    fn an_answer_before_the_body_lets_the_body_go_on_by_itself() {
        let shared = Rc::new(FakeShared::default());
        let h = host(&shared, "sk-user", "demo", 1000);
        let mut ex = DownstreamExchange::new(vk_config("deny"));
        assert_eq!(ex.on_request_headers(&h, false), Flow::Pause);
        answer(&mut ex, &h, 200, Some(record(json!({}))));
        assert_eq!(h.resumed.get(), 0, "nothing to resume yet");
        let size = h.request_body.borrow().len();
        assert_eq!(ex.on_request_body(&h, size, true), Flow::Continue);
    }

    #[test]
    fn unknown_blocked_expired_and_forbidden_keys() {
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config("deny");
        let cases: [(&str, u16, Option<Value>, &str, u16, &str); 5] = [
            ("sk-unknown", 404, None, "demo", 401, "invalid_api_key"),
            ("sk-blocked", 200, Some(record(json!({"blocked": true}))), "demo", 401, "invalid_api_key"),
            ("sk-expired", 200, Some(record(json!({"expires_at": 999}))), "demo", 401, "invalid_api_key"),
            ("sk-narrow", 200, Some(record(json!({"models": ["gpt"]}))), "demo", 403, "key_model_access_denied"),
            (
                "sk-team",
                200,
                Some(record(json!({"team": {"team_id": "t", "models": ["gpt"], "blocked": false}}))),
                "demo",
                403,
                "team_model_access_denied",
            ),
        ];
        for (key, status, rec, model, want, code) in cases {
            let h = host(&shared, key, model, 1000);
            let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
            send(&mut ex, &h);
            answer(&mut ex, &h, status, rec);
            let (got, body) = h.reply().unwrap();
            assert_eq!((got, body["error"]["code"].as_str()), (want, Some(code)), "{key}");
            assert_eq!(h.resumed.get(), 0);
        }
        // The unknown key is refused from the cache for a while, without asking again.
        let h = host(&shared, "sk-unknown", "demo", 1004);
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        send(&mut ex, &h);
        assert_eq!((h.reply().unwrap().0, h.http_calls.borrow().len()), (401, 0));
        let h = host(&shared, "sk-unknown", "demo", 1005);
        let mut ex = DownstreamExchange::new(cfg);
        send(&mut ex, &h);
        assert_eq!(h.http_calls.borrow().len(), 1, "asked again once the negative entry aged out");
    }

    #[test]
    fn when_the_sidecar_is_down() {
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config("deny");
        // Known a while ago, then the sidecar fails: the stale record still works.
        let h = host(&shared, "sk-user", "demo", 1000);
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        send(&mut ex, &h);
        answer(&mut ex, &h, 200, Some(record(json!({}))));
        let later = host(&shared, "sk-user", "demo", 1300);
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        send(&mut ex, &later);
        answer(&mut ex, &later, 503, None);
        assert!(later.local_reply.borrow().is_none());
        assert_eq!(later.resumed.get(), 1);
        assert_eq!(later.counters.borrow().get("switchyard.keys.stale_used"), Some(&1));
        // Past the stale limit, or never known: 503 with retry-after.
        let unknown = host(&shared, "sk-new", "demo", 1300);
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        send(&mut ex, &unknown);
        answer(&mut ex, &unknown, 0, None);
        let reply = unknown.local_reply.borrow().clone().unwrap();
        assert_eq!(reply.0, 503);
        assert!(reply.1.iter().any(|(k, v)| k == "retry-after" && v == "1"));
        // The allow policy lets it through, counted.
        let open = host(&shared, "sk-new", "demo", 1300);
        let mut ex = DownstreamExchange::new(vk_config("allow"));
        send(&mut ex, &open);
        answer(&mut ex, &open, 504, None);
        assert_eq!(open.resumed.get(), 1);
        assert_eq!(open.counters.borrow().get("switchyard.keys.unverified_allowed"), Some(&1));
    }

    #[test]
    fn a_key_lists_only_the_models_it_may_use() {
        let shared = Rc::new(FakeShared::default());
        cached(&shared, "sk-narrow", record(json!({"models": ["gpt"]})));
        cached(&shared, "sk-open", record(json!({})));
        let list = |key: &str, path: &str| {
            let auth = format!("Bearer {key}");
            let mut h = FakeHost::with_request(&[(":method", "GET"), (":path", path), ("authorization", &auth)], b"");
            h.shared = Rc::clone(&shared);
            h.now = 1010;
            let mut ex = DownstreamExchange::new(vk_config("deny"));
            ex.on_request_headers(&h, true);
            h.reply().unwrap()
        };
        let (status, body) = list("sk-narrow", "/v1/models");
        assert_eq!(status, 200);
        let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["gpt"]);
        assert_eq!(list("sk-open", "/v1/models").1["data"].as_array().unwrap().len(), 2);
        assert_eq!(list("sk-narrow", "/v1/models/demo").0, 404);
        assert_eq!(list("sk-narrow", "/v1/models/gpt").0, 200);
    }

    #[test]
    fn the_master_key_and_the_admin_api() {
        let shared = Rc::new(FakeShared::default());
        let h = host(&shared, MASTER, "demo", 1000);
        let mut ex = DownstreamExchange::new(vk_config("deny"));
        assert_eq!(send(&mut ex, &h), (Flow::Pause, Flow::Continue));
        assert_eq!((h.http_calls.borrow().len(), h.shared_calls.get()), (0, 0), "no lookup for the master key");
        // Admin paths go to the sidecar untouched (it checks the master key itself).
        let auth = format!("Bearer {MASTER}");
        let admin =
            FakeHost::with_request(&[(":method", "POST"), (":path", "/key/generate"), ("authorization", &auth)], b"{}");
        let mut ex = DownstreamExchange::new(vk_config("deny"));
        assert_eq!(ex.on_request_headers(&admin, false), Flow::Continue);
        assert_eq!(admin.request_header("x-litellm-api-key"), Some(auth.clone()), "the key survives the route");
        assert_eq!(ex.on_request_body(&admin, 2, true), Flow::Continue);
        assert!(admin.local_reply.borrow().is_none());
        // No key at all.
        let none = FakeHost::with_request(&[(":method", "GET"), (":path", "/v1/models")], b"");
        let mut ex = DownstreamExchange::new(vk_config("deny"));
        ex.on_request_headers(&none, true);
        assert_eq!(none.reply().unwrap().0, 401);
    }

    /// A key the cache knows (as the sidecar would have answered), on every worker.
    fn cached(shared: &Rc<FakeShared>, key: &str, rec: Value) {
        let entry = CachedKey::encode_answer(1000, Some(rec.to_string().as_bytes()));
        shared.data.borrow_mut().insert(keys::cache_key(&keys::hash(key)), (entry, 1));
    }

    #[test]
    fn rate_limits_of_the_key_and_its_team_hold_and_are_reported() {
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config("deny");
        cached(
            &shared,
            "sk-user",
            record(json!({"rpm_limit": 2, "tpm_limit": 1000, "max_parallel_requests": 5,
            "team": {"team_id": "t1", "rpm_limit": 3}})),
        );
        let mut done = Vec::new();
        for expected in [Flow::Continue, Flow::Continue] {
            let mut h = host(&shared, "sk-user", "demo", 1010);
            h.now_ns = 1_010_000_000_000;
            let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
            assert_eq!(send(&mut ex, &h).1, expected);
            // 1 cache read, then a read and a write for the key and for the team.
            assert_eq!(h.shared_calls.get(), 5, "host calls admission costs");
            *h.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
            ex.on_response_headers(&h);
            assert_eq!(h.response_header_value("x-ratelimit-limit-requests").as_deref(), Some("2"));
            done.push((ex, h));
        }
        assert_eq!(done[1].1.response_header_value("x-ratelimit-remaining-requests").as_deref(), Some("0"));
        let mut h = host(&shared, "sk-user", "demo", 1010);
        h.now_ns = 1_010_000_000_000;
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        send(&mut ex, &h);
        let reply = h.local_reply.borrow().clone().unwrap();
        assert_eq!(reply.0, 429);
        let header = |n: &str| reply.1.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(header("retry-after").as_deref(), Some("10"), "to the end of the minute");
        assert_eq!(header("x-ratelimit-remaining-requests").as_deref(), Some("0"));
        let body: Value = serde_json::from_slice(&reply.2).unwrap();
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["type"].as_str()),
            (Some("rate_limit_exceeded"), Some("requests"))
        );
        // Ending the requests gives back their slots (the window's count stays).
        for (mut ex, h) in done {
            ex.on_done(&h);
        }
        let state =
            crate::limits::State::decode(&shared.data.borrow()[&format!("sy:rl:api_key:{}", keys::hash("sk-user"))].0);
        assert_eq!((state.requests, state.in_flight.len()), (2, 0));
    }

    /// Answers the latest grant callout with `grants` (`None`: the sidecar failed, 503).
    fn grant_answer(ex: &mut DownstreamExchange, h: &FakeHost, grants: Option<Value>) {
        let token = h.http_calls.borrow().len() as u32;
        let (status, body) = match grants {
            Some(g) => ("200", json!({"window": h.now_ns / 60_000_000_000, "grants": g}).to_string().into_bytes()),
            None => ("503", Vec::new()),
        };
        *h.call_response.borrow_mut() = (vec![(":status".into(), status.into())], body.clone());
        ex.on_http_call_response(h, token, body.len());
    }

    #[test]
    fn global_limits_ask_the_sidecar_for_grants_and_hold_them() {
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config_with(json!({"rate_limit_scope": "global"}));
        cached(&shared, "sk-user", record(json!({"rpm_limit": 3})));
        let at = |secs: u64| {
            let mut h = host(&shared, "sk-user", "demo", 1010);
            h.now_ns = secs * 1_000_000_000;
            h
        };
        // No grant yet: the request waits for one callout.
        let h = at(1010);
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        assert_eq!(send(&mut ex, &h), (Flow::Pause, Flow::Pause));
        let (cluster, headers, body, _) = h.http_calls.borrow()[0].clone();
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(
            (cluster.as_str(), header(":method").as_deref(), header(":path").as_deref()),
            ("switchyard_sidecar", Some("POST"), Some("/internal/v1/grants"))
        );
        assert_eq!(header("x-switchyard-internal").as_deref(), Some(SECRET));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"window": 16, "asks": [{"kind": "api_key", "id": keys::hash("sk-user"), "rpm": 3, "tpm": null,
            "need_requests": 1, "want_requests": 1, "need_tokens": 0, "want_tokens": 0}]})
        );
        grant_answer(
            &mut ex,
            &h,
            Some(json!([{"requests": 1, "tokens": 0, "granted_requests": 1, "granted_tokens": 0}])),
        );
        assert_eq!((h.resumed.get(), h.request_header(ROUTE_HEADER).as_deref()), (1, Some("demo")));
        *h.response_headers.borrow_mut() = vec![(":status".into(), "200".into())];
        ex.on_response_headers(&h);
        assert_eq!(h.response_header_value("x-ratelimit-remaining-requests").as_deref(), Some("2"));
        // The second asks again; another process took the rest meanwhile, so the third is
        // refused by the sidecar's answer, and the fourth without asking.
        let h = at(1011);
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        send(&mut ex, &h);
        grant_answer(
            &mut ex,
            &h,
            Some(json!([{"requests": 1, "tokens": 0, "granted_requests": 3, "granted_tokens": 0}])),
        );
        assert_eq!(h.resumed.get(), 1);
        for (secs, calls) in [(1012, 1), (1013, 0)] {
            let h = at(secs);
            let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
            send(&mut ex, &h);
            if calls == 1 {
                grant_answer(
                    &mut ex,
                    &h,
                    Some(json!([{"requests": 0, "tokens": 0, "granted_requests": 3, "granted_tokens": 0}])),
                );
            }
            assert_eq!(h.http_calls.borrow().len(), calls);
            let (status, body) = h.reply().unwrap();
            assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")));
            assert_eq!(h.resumed.get(), 0);
        }
    }

    #[test]
    fn global_limits_fall_back_to_the_process_while_the_sidecar_cannot_grant() {
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config_with(json!({"rate_limit_scope": "global"}));
        cached(&shared, "sk-user", record(json!({"rpm_limit": 2})));
        let mut h = host(&shared, "sk-user", "demo", 1010);
        h.now_ns = 1_010_000_000_000;
        let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
        send(&mut ex, &h);
        grant_answer(&mut ex, &h, None);
        assert_eq!(h.resumed.get(), 1, "admitted on the process's own count");
        assert_eq!(h.counters.borrow().get("switchyard.limits.held_locally"), Some(&1));
        // For the next seconds, no callout: the process holds the limit by itself.
        let mut results = Vec::new();
        for _ in 0..2 {
            let mut h = host(&shared, "sk-user", "demo", 1011);
            h.now_ns = 1_011_000_000_000;
            let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
            results.push((send(&mut ex, &h).1, h.http_calls.borrow().len()));
        }
        assert_eq!(results, [(Flow::Continue, 0), (Flow::Pause, 0)], "the second is the third of the minute: 429");
    }

    fn end_user(shared: &Rc<FakeShared>, rec: Value) {
        let h = FakeHost { shared: Rc::clone(shared), ..FakeHost::default() };
        crate::customers::Load::Done.write(&h);
        let id = rec["user_id"].as_str().unwrap().to_string();
        crate::customers::store(&h, &id, 1, Some(rec.to_string().as_bytes()));
    }

    fn with_user(h: &FakeHost, user: &str) {
        let mut body: Value = serde_json::from_slice(&h.request_body.borrow()).unwrap();
        body["user"] = json!(user);
        *h.request_body.borrow_mut() = body.to_string().into_bytes();
    }

    #[test]
    fn end_users_blocked_model_lists_and_limits() {
        let shared = Rc::new(FakeShared::default());
        let cfg = vk_config("deny");
        cached(&shared, "sk-user", record(json!({})));
        end_user(&shared, json!({"user_id": "blocked-1", "blocked": true}));
        end_user(&shared, json!({"user_id": "narrow-1", "models": ["gpt"]}));
        end_user(&shared, json!({"user_id": "slow-1", "rpm_limit": 1}));
        let run = |user: &str, header: Option<&str>| {
            let h = host(&shared, "sk-user", "demo", 1010);
            with_user(&h, user);
            if let Some(id) = header {
                h.request_headers.borrow_mut().push(("x-litellm-end-user-id".into(), id.into()));
            }
            let mut ex = DownstreamExchange::new(Rc::clone(&cfg));
            let flow = send(&mut ex, &h).1;
            (flow, h.reply())
        };
        let (_, reply) = run("blocked-1", None);
        let (status, body) = reply.unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("end_user_blocked")));
        assert_eq!(body["error"]["message"], "User blocked from making LLM API Calls. User=blocked-1");
        let (status, body) = run("narrow-1", None).1.unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("customer_model_access_denied")));
        assert_eq!(run("slow-1", None).0, Flow::Continue);
        let (status, body) = run("slow-1", None).1.unwrap();
        assert_eq!((status, body["error"]["type"].as_str()), (429, Some("requests")));
        assert!(body["error"]["message"].as_str().unwrap().contains("end_user"));
        // The header names the end user before the body; an unknown one restricts nothing.
        assert_eq!(run("someone-else", Some("blocked-1")).1.unwrap().0, 400);
        assert_eq!(run("blocked-1", Some("nobody-known")).0, Flow::Continue);
    }

    #[test]
    fn requests_naming_an_end_user_wait_until_the_end_users_are_loaded() {
        use crate::callouts::{Event, OWNERS};
        super::END_USERS_LOADED.set(false);
        let shared = Rc::new(FakeShared::default());
        cached(&shared, "sk-user", record(json!({})));
        for (policy, event, expected) in [
            ("deny", Event::EndUsersLoaded, None),
            ("deny", Event::EndUsersLate, Some(503)),
            ("allow", Event::EndUsersLate, None),
        ] {
            super::END_USERS_LOADED.set(false);
            let h = host(&shared, "sk-user", "demo", 1010);
            with_user(&h, "acme");
            let mut ex = DownstreamExchange::new(vk_config(policy));
            ex.set_context_id(401);
            assert_eq!(send(&mut ex, &h).1, Flow::Pause, "waits: the end users are not loaded");
            assert!(OWNERS.with(|o| o.borrow().has_end_user_waiters()));
            OWNERS.with(|o| o.borrow_mut().ended(401));
            ex.on_wake(&h, event.clone());
            match expected {
                Some(status) => assert_eq!(h.reply().unwrap().0, status),
                None => {
                    assert_eq!((h.resumed.get(), h.local_reply.borrow().is_none()), (1, true), "{policy} {event:?}")
                }
            }
        }
        // Requests without an end user never wait.
        let h = host(&shared, "sk-user", "demo", 1010);
        let mut ex = DownstreamExchange::new(vk_config("deny"));
        assert_eq!(send(&mut ex, &h).1, Flow::Continue);
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::fuzz_config())]
        /// Whatever the sidecar answers (status, JSON of any shape, bytes), to a key
        /// lookup or a grant callout, the request gets an answer or goes on: never a panic,
        /// never left paused.
        #[test]
        fn any_sidecar_answer_is_handled(
            status in proptest::sample::select(vec![0u16, 200, 404, 500, 503]),
            json in crate::testing::arb_json(),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            raw in proptest::prelude::any::<bool>(),
            global in proptest::prelude::any::<bool>(),
        ) {
            let body = if raw { bytes } else { json.to_string().into_bytes() };
            let shared = Rc::new(FakeShared::default());
            // A key lookup.
            let h = host(&shared, "sk-fuzz", "demo", 1000);
            let mut ex = DownstreamExchange::new(vk_config("deny"));
            send(&mut ex, &h);
            *h.call_response.borrow_mut() = (vec![(":status".into(), status.to_string())], body.clone());
            ex.on_http_call_response(&h, 1, body.len());
            proptest::prop_assert!(h.resumed.get() == 1 || h.local_reply.borrow().is_some());
            // A grant callout.
            let cfg = vk_config_with(json!({"rate_limit_scope": if global { "global" } else { "process" }}));
            cached(&shared, "sk-limited", record(json!({"rpm_limit": 5, "tpm_limit": 500})));
            let mut h = host(&shared, "sk-limited", "demo", 1010);
            h.now_ns = 1_010_000_000_000;
            let mut ex = DownstreamExchange::new(cfg);
            let flow = send(&mut ex, &h).1;
            if flow == Flow::Pause && h.local_reply.borrow().is_none() {
                *h.call_response.borrow_mut() = (vec![(":status".into(), status.to_string())], body.clone());
                ex.on_http_call_response(&h, 1, body.len());
                let calls = h.http_calls.borrow().len();
                proptest::prop_assert!(h.resumed.get() == 1 || h.local_reply.borrow().is_some() || calls == 2);
            }
        }
    }

    #[test]
    fn unlimited_keys_pay_no_limit_host_calls() {
        let shared = Rc::new(FakeShared::default());
        cached(&shared, "sk-free", record(json!({})));
        let h = host(&shared, "sk-free", "demo", 1010);
        let mut ex = DownstreamExchange::new(vk_config("deny"));
        assert_eq!(send(&mut ex, &h).1, Flow::Continue);
        ex.on_done(&h);
        assert_eq!(h.shared_calls.get(), 1, "the cache read only");
    }

    #[test]
    fn virtual_keys_need_a_master_key_and_their_secret() {
        let doc = json!({"stage": "downstream", "models": [{"id": "demo"}],
            "virtual_keys": {"sidecar_cluster": "s", "internal_secret_env": "MISSING", "when_sidecar_down": "maybe",
                             "rate_limit_scope": "planet"}});
        let errors = config::parse(doc.to_string().as_bytes(), &|_| None, 0).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("rate_limit_scope: must be process or global")), "{errors:?}");
    }
}
