//! Anthropic's event stream → OpenAI `chat.completion.chunk` events (PROVIDERS.md §3.8).
//!
//! Tool calls are numbered 0, 1, 2… in order of appearance, not by Anthropic's content
//! block index (which also counts text and thinking blocks).

use super::{error_from_detail, finish_reason, usage, NAME};
use crate::codec::sse::{Event, SseDecoder};
use crate::error::GatewayError;
use crate::providers::stream::{
    error_event, ChunkWriter, Delta, FunctionDelta, StreamContext, StreamTranslator, ToolCallDelta,
};
use crate::providers::ResponseContext;
use crate::schema::anthropic::{StreamEvent, Usage as AUsage};
use crate::schema::openai::{FinishReason, Usage};

pub struct AnthropicStream {
    sse: SseDecoder,
    state: State,
}

struct State {
    ctx: StreamContext,
    api_key: Option<String>,
    writer: Option<ChunkWriter>,
    /// (content block index, tool call index) for each tool_use block so far.
    tool_blocks: Vec<(usize, usize)>,
    usage: AUsage,
    openai_usage: Usage,
    finish: Option<FinishReason>,
    ended: bool,
}

impl AnthropicStream {
    pub fn new(ctx: StreamContext, api_key: Option<String>) -> Self {
        AnthropicStream {
            sse: SseDecoder::default(),
            state: State {
                ctx,
                api_key,
                writer: None,
                tool_blocks: Vec::new(),
                usage: AUsage::default(),
                openai_usage: Usage::default(),
                finish: None,
                ended: false,
            },
        }
    }
}

impl StreamTranslator for AnthropicStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let AnthropicStream { sse, state } = self;
        if let Err(e) = sse.push(chunk, &mut |event| state.on_event(event, out)) {
            state.fail(out, &GatewayError::ProviderMalformed { provider: NAME, detail: format!("{e:?}") });
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let AnthropicStream { sse, state } = self;
        let _ = sse.finish(&mut |event| state.on_event(event, out));
        if !state.ended {
            state.fail(out, &GatewayError::StreamIncomplete { provider: NAME });
        }
    }

    fn usage(&self) -> Option<&Usage> {
        self.state.writer.as_ref().map(|_| &self.state.openai_usage)
    }
}

impl State {
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
                        let ctx = ResponseContext { created: self.ctx.created, api_key: self.api_key.as_deref() };
                        error_from_detail(&ctx, super::status_of(&detail.kind), detail)
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
                                if let Some(text) = block.thinking.as_deref().filter(|t| !t.is_empty()) {
                                    writer.delta(
                                        out,
                                        &Delta { reasoning_content: Some(text), ..Delta::default() },
                                        None,
                                    );
                                }
                            }
                            "tool_use" => {
                                let tool = self.tool_blocks.len();
                                self.tool_blocks.push((index, tool));
                                let call = ToolCallDelta {
                                    index: tool,
                                    id: block.id.as_deref(),
                                    kind: Some("function"),
                                    function: FunctionDelta { name: block.name.as_deref(), arguments: "" },
                                };
                                writer.delta(out, &Delta { tool_calls: Some([call]), ..Delta::default() }, None);
                            }
                            // redacted_thinking, server-tool blocks: nothing to show.
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
                                }
                            }
                            Some("input_json_delta") => {
                                let tool = self.tool_blocks.iter().find(|(block, _)| Some(*block) == parsed.index);
                                let fragment = delta.partial_json.as_deref().filter(|t| !t.is_empty());
                                if let (Some(&(_, tool)), Some(arguments)) = (tool, fragment) {
                                    let call = ToolCallDelta {
                                        index: tool,
                                        id: None,
                                        kind: None,
                                        function: FunctionDelta { name: None, arguments },
                                    };
                                    writer.delta(out, &Delta { tool_calls: Some([call]), ..Delta::default() }, None);
                                }
                            }
                            // signature_delta, citations_delta: no OpenAI equivalent.
                            _ => {}
                        }
                    }
                    "message_delta" => {
                        if let Some(reason) = parsed.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                            self.finish = Some(finish_reason(Some(reason)));
                        }
                        if let Some(update) = &parsed.usage {
                            self.update_usage(update);
                        }
                    }
                    "message_stop" => {
                        writer.finish(out, self.finish.unwrap_or(FinishReason::Stop), &self.openai_usage);
                        self.ended = true;
                    }
                    // content_block_stop, and event types added after this was written.
                    _ => {}
                }
            }
        }
    }

    fn update_usage(&mut self, update: &crate::schema::anthropic::UsageUpdate) {
        self.usage.merge(update);
        self.openai_usage = usage(&self.usage);
    }
}
