//! Gemini's SSE stream (`streamGenerateContent?alt=sse`) → OpenAI chunks
//! (docs/providers/gemini.md#streaming). Every event is a whole `GenerateContentResponse` holding only
//! what is new; function calls arrive whole; there is no end marker, so the finish
//! chunk and `[DONE]` are written when the body ends after a finish reason.
//!
//! A call without `args` streams as `"{}"`, as a non-streamed answer has it. A client of
//! the deprecated functions interface gets the first call as `delta.function_call` and
//! finish reason `function_call`; Gemini cannot be told to make only one, so any further
//! calls are left out (and logged).

use std::borrow::Cow;

use super::{
    billed, call_id, choice_logprobs, empty_abnormal_answer, finish_reason, is_abnormal_finish, parse_error_body,
    translate_error, usage, NAME,
};
use crate::codec::sse::Event;
use crate::error::GatewayError;
use crate::json::compact;
use crate::providers::stream::{
    error_event, ChunkWriter, Delta, EventHandler, FunctionDelta, SseStream, StreamContext, ToolCallDelta,
};
use crate::schema::gemini::GenerateContentResponse;
use crate::schema::openai::{FinishReason, Usage};

pub(super) struct State {
    ctx: StreamContext,
    writer: Option<ChunkWriter>,
    /// The stream's id: Gemini's `responseId`, or one derived from `created`.
    id: String,
    tool_calls: usize,
    /// Content or a call reached the client.
    answered: bool,
    /// The finish reason, when it was one of Gemini's abnormal ends.
    abnormal: Option<String>,
    finish: Option<FinishReason>,
    usage: Usage,
    /// What Gemini bills, from the same `usageMetadata`.
    billed: crate::usage::Usage,
    ended: bool,
}

pub(super) fn translator(ctx: StreamContext) -> SseStream<State> {
    let id = format!("chatcmpl-gemini-{}", ctx.created);
    SseStream::new(State {
        ctx,
        writer: None,
        id,
        tool_calls: 0,
        answered: false,
        abnormal: None,
        finish: None,
        usage: Usage::default(),
        billed: crate::usage::Usage::default(),
        ended: false,
    })
}

impl EventHandler for State {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn on_end(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        if let (Some(reason), false) = (&self.abnormal, self.answered) {
            let err = empty_abnormal_answer(self.ctx.api_key.as_deref(), reason);
            return self.fail(out, &err);
        }
        match (&self.writer, self.finish) {
            (Some(writer), Some(finish)) => {
                writer.finish(out, finish, &self.usage);
                self.ended = true;
            }
            _ => self.fail(out, &GatewayError::StreamIncomplete { provider: NAME }),
        }
    }

    fn output_estimate(&self) -> u64 {
        self.writer.as_ref().map_or(0, ChunkWriter::output_estimate)
    }

    fn usage(&self) -> Option<crate::usage::Usage> {
        self.writer.as_ref().map(|_| self.billed)
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
        let resp: GenerateContentResponse = match serde_json::from_str(event.data) {
            Ok(r) => r,
            Err(e) => {
                if parse_error_body(event.data.as_bytes()).is_some() {
                    let err = translate_error(self.ctx.api_key.as_deref(), 0, event.data.as_bytes());
                    return self.fail(out, &err);
                }
                let detail = format!("unreadable stream event: {e}");
                return self.fail(out, &GatewayError::ProviderMalformed { provider: NAME, detail });
            }
        };
        // `data: {"error":{…}}`: Google's status error, mid-stream. Only an event that is
        // one ends the stream, not text that mentions `"error":{`.
        if resp.candidates.is_empty()
            && resp.prompt_feedback.is_none()
            && parse_error_body(event.data.as_bytes()).is_some()
        {
            let err = translate_error(self.ctx.api_key.as_deref(), 0, event.data.as_bytes());
            return self.fail(out, &err);
        }
        if self.writer.is_none() {
            if let Some(id) = resp.response_id.as_deref() {
                self.id = id.to_string();
            }
            let model = resp.model_version.as_deref().unwrap_or(&self.ctx.facts.model);
            let writer = ChunkWriter::new(&self.id, self.ctx.created, model, self.ctx.include_usage);
            writer.delta(out, &Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }, None);
            self.writer = Some(writer);
        }
        let Some(writer) = &self.writer else { return };
        if let Some(metadata) = &resp.usage_metadata {
            self.usage = usage(metadata);
            self.billed = billed(metadata);
        }
        if resp.candidates.is_empty() && resp.prompt_feedback.as_ref().and_then(|f| f.block_reason.as_deref()).is_some()
        {
            self.finish = Some(FinishReason::ContentFilter);
        }
        // One choice per stream (n > 1 is not sent for streams).
        let Some(candidate) = resp.candidates.first() else { return };
        // This event's tokens: they go with its first text delta.
        let mut logprobs = candidate.logprobs_result.and_then(|raw| choice_logprobs(raw.get()));
        for part in candidate.content.iter().flat_map(|c| &c.parts) {
            if let Some(call) = &part.function_call {
                let arguments = call.args.map_or(Cow::Borrowed("{}"), |a| compact(a.get()));
                let function = FunctionDelta { name: Some(&call.name), arguments: &arguments };
                if !self.ctx.facts.legacy_functions {
                    let id = call_id(call.id.as_deref(), part.thought_signature.as_deref(), &self.id, self.tool_calls);
                    let delta =
                        ToolCallDelta { index: self.tool_calls, id: Some(&id), kind: Some("function"), function };
                    writer.delta(out, &Delta { tool_calls: Some([delta]), ..Delta::default() }, None);
                } else if self.tool_calls == 0 {
                    writer.delta(out, &Delta { function_call: Some(function), ..Delta::default() }, None);
                } else {
                    log::warn!(
                        "gemini: a further function call for a client of the deprecated functions interface left out"
                    );
                }
                self.tool_calls += 1;
                self.answered = true;
            } else if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                if part.thought == Some(true) {
                    writer.delta(out, &Delta { reasoning_content: Some(text), ..Delta::default() }, None);
                } else {
                    self.answered = true;
                    let delta = Delta { content: Some(text), ..Delta::default() };
                    writer.delta_with_logprobs(out, &delta, logprobs.take().as_ref(), None);
                }
            }
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            self.abnormal = is_abnormal_finish(Some(reason)).then(|| reason.to_string());
            // Gemini says STOP when it calls functions.
            self.finish = Some(match (self.tool_calls, self.ctx.facts.legacy_functions) {
                (0, _) => finish_reason(Some(reason)),
                (_, true) => FinishReason::FunctionCall,
                (_, false) => FinishReason::ToolCalls,
            });
        }
    }
}
