//! A fast mock LLM provider for the benchmark: fixed, realistic answers, no validation.
//! (The strict mocks used by the tests are in tools/mockproviders; Python would be the
//! bottleneck here.)
//!
//! `POST /v1/chat/completions` answers in OpenAI's format, `POST /v1/messages` in
//! Anthropic's; `"stream": true` in the body selects the streamed form. A request header
//! `x-mock-chunk-delay-ms` spaces the stream's events, as a model generating tokens would.
//!
//! Usage: mock-provider [--port N] [--threads N]; prints `listening on 127.0.0.1:PORT`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Words of the answer; each is one streamed chunk (20 of them).
const WORDS: [&str; 20] = [
    "Envoy",
    " is",
    " a",
    " high",
    "-performance",
    " edge",
    " and",
    " service",
    " proxy",
    " designed",
    " for",
    " cloud",
    "-native",
    " applications",
    ",",
    " originally",
    " built",
    " at",
    " Lyft",
    ".",
];

fn answer() -> String {
    WORDS.concat()
}

fn openai_completion() -> Bytes {
    let body = serde_json::json!({
        "id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012",
        "object": "chat.completion",
        "created": 1_741_570_283,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer(), "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 52, "completion_tokens": 20, "total_tokens": 72,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306"
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

fn anthropic_message() -> Bytes {
    let body = serde_json::json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": answer()}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": 52, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 20, "service_tier": "standard"
        }
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

fn openai_stream(include_usage: bool) -> Vec<Bytes> {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let mut c = serde_json::json!({
            "id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012", "object": "chat.completion.chunk", "created": 1_741_570_283,
            "model": "gpt-4o-mini-2024-07-18", "service_tier": "default", "system_fingerprint": "fp_06737a9306",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if include_usage {
            c["usage"] = serde_json::Value::Null;
        }
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut events = vec![chunk(serde_json::json!({"role": "assistant", "content": "", "refusal": null}), None)];
    events.extend(WORDS.iter().map(|w| chunk(serde_json::json!({"content": w}), None)));
    events.push(chunk(serde_json::json!({}), Some("stop")));
    if include_usage {
        let usage = serde_json::json!({
            "id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012", "object": "chat.completion.chunk", "created": 1_741_570_283,
            "model": "gpt-4o-mini-2024-07-18", "choices": [],
            "usage": {"prompt_tokens": 52, "completion_tokens": 20, "total_tokens": 72}
        });
        events.push(Bytes::from(format!("data: {usage}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

fn anthropic_stream() -> Vec<Bytes> {
    let event = |name: &str, data: serde_json::Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut events = vec![
        event(
            "message_start",
            serde_json::json!({"type": "message_start", "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 52, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", serde_json::json!({"type": "ping"})),
    ];
    events.extend(WORDS.iter().map(|w| {
        event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
        )
    }));
    events.push(event("content_block_stop", serde_json::json!({"type": "content_block_stop", "index": 0})));
    events.push(event(
        "message_delta",
        serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 20}}),
    ));
    events.push(event("message_stop", serde_json::json!({"type": "message_stop"})));
    events
}

#[derive(serde::Deserialize, Default)]
struct RequestSummary {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(serde::Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

struct Canned {
    openai: Bytes,
    anthropic: Bytes,
}

async fn handle(req: Request<Incoming>, canned: &'static Canned) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let delay = req
        .headers()
        .get("x-mock-chunk-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let summary: RequestSummary = serde_json::from_slice(&body).unwrap_or_default();
    let stream = summary.stream.unwrap_or(false);
    let include_usage = summary.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
    let (status, content_type, full, events) = match (path.as_str(), stream) {
        ("/v1/chat/completions", false) => (200, "application/json", Some(canned.openai.clone()), None),
        ("/v1/chat/completions", true) => (200, "text/event-stream", None, Some(openai_stream(include_usage))),
        ("/v1/messages", false) => (200, "application/json", Some(canned.anthropic.clone()), None),
        ("/v1/messages", true) => (200, "text/event-stream", None, Some(anthropic_stream())),
        _ => (404, "application/json", Some(Bytes::from_static(br#"{"error":{"message":"not found"}}"#)), None),
    };
    let builder = Response::builder().status(status).header("content-type", content_type);
    let response = match (full, events) {
        (Some(bytes), _) => builder.body(Full::new(bytes).boxed()),
        (None, Some(events)) => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(events.len().max(1));
            tokio::spawn(async move {
                for event in events {
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    if tx.send(Ok(Frame::data(event))).await.is_err() {
                        return;
                    }
                }
            });
            let stream = ReceiverStream::new(rx);
            builder.header("cache-control", "no-cache").body(StreamBody::new(stream).boxed())
        }
        (None, None) => builder.body(Full::new(Bytes::new()).boxed()),
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed())))
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let threads: usize = arg("--threads").and_then(|t| t.parse().ok()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build();
    let Ok(runtime) = runtime else {
        eprintln!("mock-provider: cannot start the runtime");
        std::process::exit(1);
    };
    let canned: &'static Canned =
        Box::leak(Box::new(Canned { openai: openai_completion(), anthropic: anthropic_message() }));
    runtime.block_on(async move {
        let listener = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mock-provider: bind failed: {e}");
                std::process::exit(1);
            }
        };
        let local = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        println!("listening on 127.0.0.1:{local}");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, canned));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}
