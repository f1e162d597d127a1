//! Anthropic's event stream → OpenAI `chat.completion.chunk` events (docs/providers/anthropic.md#streaming).
//!
//! Tool calls are numbered 0, 1, 2… in order of appearance, not by Anthropic's content
//! block index (which also counts text and thinking blocks). Thinking streams as
//! `reasoning_content`; each thinking block, once complete with its signature, also
//! goes out whole in `thinking_blocks`, so the client can send it back. A tool call
//! whose input never streamed gets `"{}"`, as a non-streamed answer has it.

use super::{error_from_detail, finish_reason, usage, JSON_TOOL, NAME};
use crate::codec::sse::Event;
use crate::error::GatewayError;
use crate::providers::stream::{
    error_event, ChunkWriter, Delta, EventHandler, FunctionDelta, SseStream, StreamContext, ThinkingBlockDelta,
    ToolCallDelta,
};
use crate::schema::anthropic::{StreamEvent, Usage as AUsage};
use crate::schema::openai::{FinishReason, Usage};

pub(super) struct State {
    ctx: StreamContext,
    writer: Option<ChunkWriter>,
    /// (content block index, tool call index) for each tool_use block so far.
    tool_blocks: Vec<(usize, usize)>,
    /// Content blocks carrying a call's input that has streamed some of it.
    input_seen: Vec<usize>,
    /// The content block carrying a JSON-mode answer (the gateway's forced tool).
    json_block: Option<usize>,
    /// The thinking block being received: (content block index, text, signature).
    thinking: Option<(usize, String, String)>,
    /// Thinking blocks sent whole so far.
    thinking_blocks: usize,
    usage: AUsage,
    openai_usage: Usage,
    finish: Option<FinishReason>,
    ended: bool,
}

pub(super) fn translator(ctx: StreamContext) -> SseStream<State> {
    SseStream::new(State {
        ctx,
        writer: None,
        tool_blocks: Vec::new(),
        input_seen: Vec::new(),
        json_block: None,
        thinking: None,
        thinking_blocks: 0,
        usage: AUsage::default(),
        openai_usage: Usage::default(),
        finish: None,
        ended: false,
    })
}

impl EventHandler for State {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn on_end(&mut self, out: &mut Vec<u8>) {
        if !self.ended {
            self.fail(out, &GatewayError::StreamIncomplete { provider: NAME });
        }
    }

    fn output_estimate(&self) -> u64 {
        self.writer.as_ref().map_or(0, ChunkWriter::output_estimate)
    }

    fn usage(&self) -> Option<crate::usage::Usage> {
        self.writer.as_ref().map(|_| super::billed(&self.usage))
    }

    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        if !self.ended {
            error_event(out, err);
            self.ended = true;
        }
    }

    fn on_event(&mut self, event: Event<'_>, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let parsed: StreamEvent = match serde_json::from_str(event.data) {
            Ok(e) => e,
            Err(e) => {
                let detail = format!("unreadable {:?} event: {e}", event.event);
                return self.fail(out, &GatewayError::ProviderMalformed { provider: NAME, detail });
            }
        };
        match parsed.kind.as_ref() {
            "message_start" => {
                let Some(message) = parsed.message else {
                    let detail = "message_start without a message".to_string();
                    return self.fail(out, &GatewayError::ProviderMalformed { provider: NAME, detail });
                };
                if let Some(update) = &message.usage {
                    self.update_usage(update);
                }
                let writer = ChunkWriter::new(&message.id, self.ctx.created, &message.model, self.ctx.include_usage);
                writer.delta(out, &Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }, None);
                self.writer = Some(writer);
            }
            "ping" => out.extend_from_slice(b": ping\n\n"),
            "error" => {
                let err = match &parsed.error {
                    Some(detail) => {
                        error_from_detail(self.ctx.api_key.as_deref(), super::status_of(&detail.kind), detail)
                    }
                    None => {
                        GatewayError::ProviderMalformed { provider: NAME, detail: "error event without error".into() }
                    }
                };
                self.fail(out, &err);
            }
            kind => {
                let Some(writer) = &self.writer else {
                    let detail = format!("{kind} before message_start");
                    return self.fail(out, &GatewayError::ProviderMalformed { provider: NAME, detail });
                };
                match kind {
                    "content_block_start" => {
                        let (Some(index), Some(block)) = (parsed.index, &parsed.content_block) else { return };
                        match block.kind.as_ref() {
                            "text" => {
                                if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                                    writer.delta(out, &Delta { content: Some(text), ..Delta::default() }, None);
                                }
                            }
                            "thinking" => {
                                let text = block.thinking.as_deref().unwrap_or_default();
                                if !text.is_empty() {
                                    writer.delta(
                                        out,
                                        &Delta { reasoning_content: Some(text), ..Delta::default() },
                                        None,
                                    );
                                }
                                let signature = block.signature.as_deref().unwrap_or_default();
                                self.thinking = Some((index, text.to_string(), signature.to_string()));
                            }
                            "redacted_thinking" => {
                                if let Some(data) = block.data.as_deref() {
                                    let whole = ThinkingBlockDelta {
                                        index: self.thinking_blocks,
                                        kind: "redacted_thinking",
                                        thinking: None,
                                        signature: None,
                                        data: Some(data),
                                    };
                                    self.thinking_blocks += 1;
                                    let delta = Delta { thinking_blocks: Some([whole]), ..Delta::default() };
                                    writer.delta(out, &delta, None);
                                }
                            }
                            "tool_use" if self.ctx.facts.json_tool && block.name.as_deref() == Some(JSON_TOOL) => {
                                self.json_block = Some(index);
                            }
                            "tool_use" => {
                                let tool = self.tool_blocks.len();
                                self.tool_blocks.push((index, tool));
                                let function = FunctionDelta { name: block.name.as_deref(), arguments: "" };
                                writer.delta(out, &self.call_delta(tool, block.id.as_deref(), function), None);
                            }
                            // Server-tool blocks: nothing to show.
                            _ => {}
                        }
                    }
                    "content_block_delta" => {
                        let Some(delta) = &parsed.delta else { return };
                        match delta.kind.as_deref() {
                            Some("text_delta") => {
                                if let Some(text) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                                    writer.delta(out, &Delta { content: Some(text), ..Delta::default() }, None);
                                }
                            }
                            Some("thinking_delta") => {
                                if let Some(text) = delta.thinking.as_deref().filter(|t| !t.is_empty()) {
                                    writer.delta(
                                        out,
                                        &Delta { reasoning_content: Some(text), ..Delta::default() },
                                        None,
                                    );
                                    if let Some((_, whole, _)) =
                                        self.thinking.as_mut().filter(|t| Some(t.0) == parsed.index)
                                    {
                                        whole.push_str(text);
                                    }
                                }
                            }
                            Some("signature_delta") => {
                                let signature = delta.signature.as_deref().unwrap_or_default();
                                if let Some((_, _, whole)) =
                                    self.thinking.as_mut().filter(|t| Some(t.0) == parsed.index)
                                {
                                    whole.push_str(signature);
                                }
                            }
                            // JSON mode: the forced tool's input is the answer's content.
                            Some("input_json_delta") if parsed.index.is_some() && parsed.index == self.json_block => {
                                if let Some(text) = delta.partial_json.as_deref().filter(|t| !t.is_empty()) {
                                    self.input_seen.extend(parsed.index);
                                    writer.delta(out, &Delta { content: Some(text), ..Delta::default() }, None);
                                }
                            }
                            Some("input_json_delta") => {
                                let tool = self.tool_blocks.iter().find(|(block, _)| Some(*block) == parsed.index);
                                let fragment = delta.partial_json.as_deref().filter(|t| !t.is_empty());
                                if let (Some(&(_, tool)), Some(arguments)) = (tool, fragment) {
                                    self.input_seen.extend(parsed.index);
                                    let function = FunctionDelta { name: None, arguments };
                                    writer.delta(out, &self.call_delta(tool, None, function), None);
                                }
                            }
                            // citations_delta: no OpenAI equivalent.
                            _ => {}
                        }
                    }
                    "content_block_stop" => {
                        let Some(index) = parsed.index else { return };
                        if self.thinking.as_ref().is_some_and(|t| t.0 == index) {
                            if let Some((_, thinking, signature)) = self.thinking.take() {
                                // Without a signature the block cannot go back: only its text was useful.
                                if !signature.is_empty() {
                                    let whole = ThinkingBlockDelta {
                                        index: self.thinking_blocks,
                                        kind: "thinking",
                                        thinking: Some(&thinking),
                                        signature: Some(&signature),
                                        data: None,
                                    };
                                    self.thinking_blocks += 1;
                                    let delta = Delta { thinking_blocks: Some([whole]), ..Delta::default() };
                                    writer.delta(out, &delta, None);
                                }
                            }
                            return;
                        }
                        if self.input_seen.contains(&index) {
                            return;
                        }
                        // A call whose input never streamed takes no arguments: "{}".
                        if self.json_block == Some(index) {
                            writer.delta(out, &Delta { content: Some("{}"), ..Delta::default() }, None);
                        } else if let Some(&(_, tool)) = self.tool_blocks.iter().find(|(block, _)| *block == index) {
                            let function = FunctionDelta { name: None, arguments: "{}" };
                            writer.delta(out, &self.call_delta(tool, None, function), None);
                        }
                    }
                    "message_delta" => {
                        if let Some(reason) = parsed.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                            let reason = finish_reason(Some(reason));
                            // The forced JSON tool is how the answer arrives, not a call to make.
                            let json_only = self.json_block.is_some() && self.tool_blocks.is_empty();
                            self.finish = Some(match reason {
                                FinishReason::ToolCalls if json_only => FinishReason::Stop,
                                FinishReason::ToolCalls if self.ctx.facts.legacy_functions => {
                                    FinishReason::FunctionCall
                                }
                                other => other,
                            });
                        }
                        if let Some(update) = &parsed.usage {
                            self.update_usage(update);
                        }
                    }
                    "message_stop" => {
                        writer.finish(out, self.finish.unwrap_or(FinishReason::Stop), &self.openai_usage);
                        self.ended = true;
                    }
                    // Event types added after this was written.
                    _ => {}
                }
            }
        }
    }
}

impl State {
    /// A piece of tool call `tool`: in `tool_calls`, or for a client of the legacy
    /// interface in `function_call` (its request allowed one call only).
    fn call_delta<'a>(&self, tool: usize, id: Option<&'a str>, function: FunctionDelta<'a>) -> Delta<'a> {
        if self.ctx.facts.legacy_functions {
            return Delta { function_call: Some(function), ..Delta::default() };
        }
        let call = ToolCallDelta { index: tool, id, kind: id.map(|_| "function"), function };
        Delta { tool_calls: Some([call]), ..Delta::default() }
    }

    fn update_usage(&mut self, update: &crate::schema::anthropic::UsageUpdate) {
        self.usage.merge(update);
        self.openai_usage = usage(&self.usage);
    }
}
