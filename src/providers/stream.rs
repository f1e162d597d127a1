//! Streaming responses: what every provider's stream translator implements, and the
//! writer of the OpenAI side (`chat.completion.chunk` events, docs/providers/gateway-rules.md#sse-writer).

use serde::Serialize;

use super::{Provider, RequestFacts};
use crate::codec::sse::{write_data, Event, SseDecoder};
use crate::error::GatewayError;
use crate::schema::openai::{ChoiceLogprobs, FinishReason, Usage};

/// Turns a provider's streamed body into OpenAI SSE, chunk by chunk, as it arrives.
pub trait StreamTranslator {
    /// Translates the next piece of the provider's body, appending to `out`.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// The provider's body ended: flush, and end the client's stream properly (with
    /// `[DONE]`, or an error event if the provider's stream was cut short).
    fn finish(&mut self, out: &mut Vec<u8>);
    /// What the provider bills for the stream, as reported so far (final once the
    /// stream ended properly).
    fn usage(&self) -> Option<crate::usage::Usage>;
    /// Output tokens the client received so far, estimated from the stream itself: what
    /// a stream cut before its usage arrived is metered by.
    fn output_estimate(&self) -> u64;
}

pub struct StreamContext {
    /// Unix seconds when the provider's response began; the same on every chunk.
    pub created: u64,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    pub provider: Provider,
    /// The provider key, scrubbed from any error the stream carries.
    pub api_key: Option<String>,
    pub facts: RequestFacts,
}

/// Writes the OpenAI chunks of one stream. The fields shared by every chunk are
/// rendered once, when the stream's identity is known.
pub struct ChunkWriter {
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"system_fingerprint":null,"choices":[`
    prefix: Vec<u8>,
    include_usage: bool,
    /// Bytes of text (content, reasoning, tool arguments) written so far.
    text_bytes: std::cell::Cell<u64>,
}

#[derive(Serialize)]
struct Identity<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: Option<&'a str>,
}

/// The `delta` of one chunk; absent fields are omitted, as OpenAI does.
#[derive(Debug, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    /// One whole thinking block, once it is complete (see [`ThinkingBlockDelta`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<[ThinkingBlockDelta<'a>; 1]>,
    /// The deprecated single function call, for clients that asked with `functions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionDelta<'a>>,
}

/// A thinking block in a stream, sent whole when the provider finished it (its text also
/// streamed as `reasoning_content`). The `index` counts the answer's thinking blocks, so
/// the OpenAI SDK's delta accumulator (which merges list entries by `index`) assembles
/// `message.thinking_blocks` as a non-streamed answer carries them.
#[derive(Debug, Serialize)]
pub struct ThinkingBlockDelta<'a> {
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct ToolCallDelta<'a> {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Debug, Serialize)]
pub struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: &'a Delta<'a>,
    logprobs: Option<&'a ChoiceLogprobs>,
    finish_reason: Option<FinishReason>,
}

impl ChunkWriter {
    pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        let identity = Identity { id, object: "chat.completion.chunk", created, model, system_fingerprint: None };
        let mut prefix = b"data: ".to_vec();
        // Serialising borrowed strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut prefix, &identity);
        prefix.pop(); // the closing brace: the chunk continues
        prefix.extend_from_slice(b",\"choices\":[");
        ChunkWriter { prefix, include_usage, text_bytes: std::cell::Cell::new(0) }
    }

    /// One chunk with a single choice.
    pub fn delta(&self, out: &mut Vec<u8>, delta: &Delta<'_>, finish_reason: Option<FinishReason>) {
        self.delta_with_logprobs(out, delta, None, finish_reason);
    }

    /// One chunk with a single choice and the log probabilities of its tokens.
    pub fn delta_with_logprobs(
        &self,
        out: &mut Vec<u8>,
        delta: &Delta<'_>,
        logprobs: Option<&ChoiceLogprobs>,
        finish_reason: Option<FinishReason>,
    ) {
        let text = [delta.content, delta.reasoning_content].iter().flatten().map(|t| t.len()).sum::<usize>()
            + delta.tool_calls.as_ref().map_or(0, |[call]| call.function.arguments.len());
        self.text_bytes.set(self.text_bytes.get().saturating_add(text as u64));
        out.extend_from_slice(&self.prefix);
        let _ = serde_json::to_writer(&mut *out, &Choice { index: 0, delta, logprobs, finish_reason });
        // Chunks carry `"usage": null` only in streams that end with a usage chunk.
        out.extend_from_slice(if self.include_usage { b"],\"usage\":null}\n\n" } else { b"]}\n\n" });
    }

    /// Output tokens written so far, at about four bytes of text a token (the estimate
    /// the gateway's token counts use everywhere, `crate::tokens`).
    pub fn output_estimate(&self) -> u64 {
        self.text_bytes.get().div_ceil(4)
    }

    /// The closing chunk: empty delta, the finish reason, then the usage chunk if the
    /// client asked for it.
    pub fn finish(&self, out: &mut Vec<u8>, finish_reason: FinishReason, usage: &Usage) {
        self.delta(out, &Delta::default(), Some(finish_reason));
        if self.include_usage {
            out.extend_from_slice(&self.prefix);
            out.extend_from_slice(b"],\"usage\":");
            let _ = serde_json::to_writer(&mut *out, usage);
            out.extend_from_slice(b"}\n\n");
        }
        done(out);
    }
}

/// What each adapter's stream implements: the translation of one provider event, and
/// how the stream ends. [`SseStream`] does the framing for all of them.
pub trait EventHandler {
    /// The provider's name, for errors about its stream.
    fn provider(&self) -> &'static str;
    /// Translates one event, appending to `out`.
    fn on_event(&mut self, event: Event<'_>, out: &mut Vec<u8>);
    /// The body ended and every event was handled: end the client's stream properly,
    /// unless it already ended.
    fn on_end(&mut self, out: &mut Vec<u8>);
    /// Ends the client's stream with an error event, unless it already ended.
    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError);
    fn usage(&self) -> Option<crate::usage::Usage>;
    fn output_estimate(&self) -> u64;
}

/// A provider stream framed as server-sent events, translated by `H` event by event.
pub struct SseStream<H> {
    sse: SseDecoder,
    handler: H,
}

impl<H: EventHandler> SseStream<H> {
    pub fn new(handler: H) -> Self {
        SseStream { sse: SseDecoder::default(), handler }
    }
}

impl<H: EventHandler> StreamTranslator for SseStream<H> {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let SseStream { sse, handler } = self;
        if let Err(e) = sse.push(chunk, &mut |event| handler.on_event(event, out)) {
            let err = GatewayError::ProviderMalformed { provider: handler.provider(), detail: format!("{e:?}") };
            handler.fail(out, &err);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let SseStream { sse, handler } = self;
        // An unterminated last event is still an event; a malformed tail ends in
        // `on_end`'s incomplete-stream error.
        let _ = sse.finish(&mut |event| handler.on_event(event, out));
        handler.on_end(out);
    }

    fn usage(&self) -> Option<crate::usage::Usage> {
        self.handler.usage()
    }

    fn output_estimate(&self) -> u64 {
        self.handler.output_estimate()
    }
}

pub fn done(out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: [DONE]\n\n");
}

/// An error after the stream started: one `data: {"error":…}` event, and no `[DONE]`
/// (the OpenAI SDK raises `APIError` on it).
pub fn error_event(out: &mut Vec<u8>, err: &GatewayError) {
    write_data(out, &err.body());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn events(out: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(out).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e.strip_prefix("data: ").unwrap();
                if data == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str(data).unwrap()
                }
            })
            .collect()
    }

    #[test]
    fn chunks_share_identity_and_follow_openai_shape() {
        let writer = ChunkWriter::new("msg_1", 42, "claude-\"q\"", true);
        let mut out = Vec::new();
        writer.delta(&mut out, &Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }, None);
        let call = ToolCallDelta {
            index: 0,
            id: Some("toolu_1"),
            kind: Some("function"),
            function: FunctionDelta { name: Some("f"), arguments: "" },
        };
        writer.delta(&mut out, &Delta { tool_calls: Some([call]), ..Delta::default() }, None);
        let usage = Usage { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5, ..Usage::default() };
        writer.finish(&mut out, FinishReason::ToolCalls, &usage);
        let got = events(&out);
        assert_eq!(got.len(), 5);
        for chunk in &got[..4] {
            assert_eq!(
                (&chunk["id"], &chunk["created"], &chunk["model"]),
                (&json!("msg_1"), &json!(42), &json!("claude-\"q\""))
            );
            assert_eq!(chunk["object"], "chat.completion.chunk");
        }
        assert_eq!(got[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(got[0]["usage"], Value::Null);
        assert_eq!(
            got[1]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}})
        );
        assert_eq!(
            got[2]["choices"][0],
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "tool_calls"})
        );
        assert_eq!(got[3]["choices"], json!([]));
        assert_eq!(got[3]["usage"]["total_tokens"], 5);
        assert_eq!(got[4], json!("[DONE]"));
    }

    #[test]
    fn without_include_usage_there_is_no_usage_field_or_chunk() {
        let writer = ChunkWriter::new("id", 1, "m", false);
        let mut out = Vec::new();
        writer.delta(&mut out, &Delta { content: Some("hi"), ..Delta::default() }, None);
        writer.finish(&mut out, FinishReason::Stop, &Usage::default());
        let got = events(&out);
        assert_eq!(got.len(), 3);
        assert!(got[0].get("usage").is_none() && got[1].get("usage").is_none());
    }
}
