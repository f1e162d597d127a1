//! Micro-benchmarks of the translation core, natively: what one typical request,
//! response and stream chunk cost, and how many allocations they make. Regressions show
//! here without Envoy in the way.
//!
//! `cargo bench --bench core` prints a table; with `BENCH_JSON=<path>` it also writes
//! the numbers as JSON (make bench folds them into its report).

// A benchmark binary: a broken fixture should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use switchyard::config::UpstreamConfig;
use switchyard::endpoint::Endpoint;
use switchyard::json::parse_request;
use switchyard::operation::Operation;
use switchyard::pairs;
use switchyard::providers::stream::StreamContext;
use switchyard::providers::{Provider, RequestContext, RequestFacts, ResponseContext};
use switchyard::schema::openai::ChatRequest;
use switchyard::validate;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A typical chat request: a system prompt, a few turns, sampling settings (~1 KB).
const REQUEST: &str = r#"{"model":"bench","messages":[
{"role":"system","content":"You are a concise assistant for an infrastructure team. Answer in at most three sentences, cite the relevant configuration field when there is one, and say so plainly when you are not sure."},
{"role":"user","content":"What does Envoy's per_connection_buffer_limit_bytes control on a listener, and what happens when a request body exceeds it?"},
{"role":"assistant","content":"It bounds how much data Envoy buffers for one connection in each direction. A filter that buffers a request body larger than the limit gets a 413 Payload Too Large."},
{"role":"user","content":"And on a cluster? Does the same limit apply to upstream responses that a filter buffers completely, for example to rewrite them?"}],
"temperature":0.7,"top_p":0.95,"max_tokens":512,"user":"team-infra-42"}"#;

const ANTHROPIC_RESPONSE: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Yes. On a cluster, per_connection_buffer_limit_bytes bounds what Envoy buffers per upstream connection, which includes a response body that an upstream filter holds whole before rewriting it; past the limit the stream is reset and the client sees a 5xx."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":182,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":56,"service_tier":"standard"}}"#;

fn anthropic_stream() -> (Vec<u8>, usize) {
    let words = [
        "Yes",
        ".",
        " On",
        " a",
        " cluster",
        ",",
        " the",
        " limit",
        " bounds",
        " what",
        " Envoy",
        " buffers",
        " per",
        " upstream",
        " connection",
        ",",
        " including",
        " whole",
        " response",
        " bodies",
        ".",
    ];
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":182,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for w in words {
        s.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{w}\"}}}}\n\n"
        ));
    }
    s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
    s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":56}}\n\n");
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    (s.into_bytes(), words.len() + 5)
}

const GEMINI_RESPONSE: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Yes. On a cluster, per_connection_buffer_limit_bytes bounds what Envoy buffers per upstream connection, which includes a response body that an upstream filter holds whole before rewriting it; past the limit the stream is reset and the client sees a 5xx."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":182,"candidatesTokenCount":56,"totalTokenCount":238,"promptTokensDetails":[{"modality":"TEXT","tokenCount":182}]},"modelVersion":"gemini-2.5-flash","responseId":"mFfJaOeBLqnzxN8P0NWWwAY"}"#;

fn gemini_stream() -> (Vec<u8>, usize) {
    let pieces = [
        "Yes. On a",
        " cluster, the limit",
        " bounds what Envoy",
        " buffers per upstream",
        " connection, including",
        " whole response bodies.",
    ];
    let mut s = String::new();
    for (i, p) in pieces.iter().enumerate() {
        let finish = if i + 1 == pieces.len() { r#","finishReason": "STOP""# } else { "" };
        s.push_str(&format!(
            "data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"{p}\"}}],\"role\": \"model\"}}{finish},\"index\": 0}}],\"usageMetadata\": {{\"promptTokenCount\": 182,\"candidatesTokenCount\": {},\"totalTokenCount\": {}}},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"mFfJaOeBLqnzxN8P0NWWwAY\"}}\r\n\r\n",
            (i + 1) * 4,
            182 + (i + 1) * 4
        ));
    }
    (s.into_bytes(), pieces.len())
}

fn openai_stream() -> (Vec<u8>, usize) {
    let mut s = String::new();
    let words = ["Yes", ".", " On", " a", " cluster", ",", " the", " limit", " bounds", " what", " Envoy", " buffers"];
    for w in words {
        s.push_str(&format!("data: {{\"id\":\"chatcmpl-AbC\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"));
    }
    s.push_str("data: {\"id\":\"chatcmpl-AbC\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":182,\"completion_tokens\":12,\"total_tokens\":194}}\n\n");
    s.push_str("data: [DONE]\n\n");
    (s.into_bytes(), words.len() + 2)
}

fn endpoint(provider: &str, model: &str) -> Endpoint {
    Endpoint::from_metadata(&pairs::encode(&[("provider", provider), ("model", model)])).unwrap()
}

struct Measurement {
    name: &'static str,
    ns: f64,
    allocations: usize,
    per: &'static str,
}

/// Median over rounds of the mean time per call, and the allocations of one call.
fn measure(name: &'static str, per: &'static str, divisor: usize, mut f: impl FnMut()) -> Measurement {
    for _ in 0..2_000 {
        f();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    let allocations = (ALLOCATIONS.load(Ordering::Relaxed) - before).div_ceil(divisor);
    let iterations = 2_000;
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / iterations as f64 / divisor as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    Measurement { name, ns: rounds[rounds.len() / 2], allocations, per }
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent; only benchmark
    // when asked to.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let config = UpstreamConfig::default();
    let anthropic = endpoint("anthropic", "claude-sonnet-4-5");
    let openai = endpoint("openai", "gpt-4o-mini");
    let gemini = endpoint("gemini", "gemini-2.5-flash");
    let facts = RequestFacts { model: "claude".into(), ..RequestFacts::default() };
    let response_ctx =
        ResponseContext { created: 1_700_000_000, api_key: Some("sk-bench"), endpoint: &anthropic, request: &facts };
    let stream_ctx = |provider: Provider, include_usage| StreamContext {
        created: 1,
        include_usage,
        provider,
        api_key: Some("sk-bench".into()),
        facts: facts.clone(),
    };
    let request = |endpoint: &Endpoint| {
        let ctx = RequestContext { endpoint, config: &config };
        endpoint
            .provider
            .adapter()
            .request(&ctx, Operation::Chat, black_box(REQUEST.as_bytes()), &mut RequestFacts::default())
            .unwrap()
    };
    let (a_stream, a_events) = anthropic_stream();
    let (o_stream, o_events) = openai_stream();
    let (g_stream, g_events) = gemini_stream();
    let gemini_ctx =
        ResponseContext { created: 1_700_000_000, api_key: Some("sk-bench"), endpoint: &gemini, request: &facts };

    // A broken fixture would measure an error path: every stream must translate whole.
    for (provider, bytes) in
        [(Provider::Anthropic, &a_stream), (gemini.provider, &g_stream), (openai.provider, &o_stream)]
    {
        let mut translator = provider.adapter().stream(stream_ctx(provider, true));
        let mut out = Vec::new();
        translator.push(bytes, &mut out);
        translator.finish(&mut out);
        assert!(out.ends_with(b"data: [DONE]\n\n"), "{}: {}", provider.name(), String::from_utf8_lossy(&out));
    }

    let results = vec![
        measure("downstream: parse + validate request", "request", 1, || {
            let req: ChatRequest = parse_request(black_box(REQUEST.as_bytes())).unwrap();
            validate::chat_request(&req).unwrap();
            black_box(&req);
        }),
        measure("anthropic: request", "request", 1, || {
            black_box(request(&anthropic));
        }),
        measure("anthropic: response", "response", 1, || {
            black_box(Provider::Anthropic.adapter().response(
                &response_ctx,
                Operation::Chat,
                200,
                black_box(ANTHROPIC_RESPONSE.as_bytes()),
            ));
        }),
        measure("anthropic: request + response", "exchange", 1, || {
            black_box(request(&anthropic));
            black_box(Provider::Anthropic.adapter().response(
                &response_ctx,
                Operation::Chat,
                200,
                black_box(ANTHROPIC_RESPONSE.as_bytes()),
            ));
        }),
        measure("anthropic: stream, per event", "event", a_events, || {
            let mut translator = Provider::Anthropic.adapter().stream(stream_ctx(Provider::Anthropic, true));
            let mut out = Vec::with_capacity(a_stream.len() * 2);
            translator.push(black_box(&a_stream), &mut out);
            translator.finish(&mut out);
            black_box(out);
        }),
        measure("gemini: request", "request", 1, || {
            black_box(request(&gemini));
        }),
        measure("gemini: request + response", "exchange", 1, || {
            black_box(request(&gemini));
            black_box(gemini.provider.adapter().response(
                &gemini_ctx,
                Operation::Chat,
                200,
                black_box(GEMINI_RESPONSE.as_bytes()),
            ));
        }),
        measure("gemini: stream, per event", "event", g_events, || {
            let mut translator = gemini.provider.adapter().stream(stream_ctx(gemini.provider, true));
            let mut out = Vec::with_capacity(g_stream.len() * 2);
            translator.push(black_box(&g_stream), &mut out);
            translator.finish(&mut out);
            black_box(out);
        }),
        measure("openai: request (model rewrite)", "request", 1, || {
            black_box(request(&openai));
        }),
        measure("openai: stream, per event", "event", o_events, || {
            let mut translator = openai.provider.adapter().stream(stream_ctx(openai.provider, false));
            let mut out = Vec::with_capacity(o_stream.len());
            translator.push(black_box(&o_stream), &mut out);
            translator.finish(&mut out);
            black_box(out);
        }),
    ];

    println!("{:<42} {:>10} {:>14}", "translation core (native)", "µs", "allocations");
    for m in &results {
        println!("{:<42} {:>10.2} {:>10} /{}", m.name, m.ns / 1000.0, m.allocations, m.per);
    }
    if let Ok(path) = std::env::var("BENCH_JSON") {
        let json: Vec<serde_json::Value> = results
            .iter()
            .map(|m| serde_json::json!({"name": m.name, "us": m.ns / 1000.0, "allocations": m.allocations, "per": m.per}))
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
}
