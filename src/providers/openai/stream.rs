//! OpenAI-compatible streams: already in the client's format, so events are forwarded
//! as they come. The gateway reads them only to take the usage (which it always asks
//! for), to drop the usage chunk when the client did not ask for it, to rewrite
//! non-standard finish reasons, and to turn a mid-stream error body into OpenAI's
//! error event.
//!
//! Some providers (Mistral, Fireworks, DeepInfra) attach the usage to their last
//! chunk instead of sending OpenAI's separate `choices: []` chunk: it is taken off that
//! chunk, and sent as a usage chunk of its own just before `[DONE]` when the client asked.
//!
//! Azure opens its streams with a choice-less chunk of `prompt_filter_results` whose
//! `id`, `created` and `model` are empty. It is passed on, but stamped with the
//! stream's identity (held until the first regular chunk names it), so that every chunk
//! of a stream carries the same `id`/`created`/`model`.
//!
//! A tool call whose arguments never stream (vLLM and Ollama may send only the call's
//! name for a function without parameters) gets an `"{}"` fragment just before its
//! choice's finish chunk, so the client assembles the `"{}"` a complete answer has.
//! For a client that asked with the deprecated `functions` (on a provider without them,
//! which got `tools`), the chunks carrying call 0 and the `tool_calls` finish reason are
//! rewritten into `delta.function_call` and `function_call`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::presets::Preset;
use super::{
    json_string, legacy_choice, normalise_error, normalise_finish_reasons, preset_of_provider, rewrite_choices,
    stream_error_status, TopLevel,
};
use crate::codec::sse::{write_data, Event};
use crate::error::GatewayError;
use crate::providers::stream::{done, error_event, EventHandler, SseStream, StreamContext};
use crate::schema::openai::{CompletionTokensDetails, PromptTokensDetails, Usage};

/// Tool calls whose arguments are tracked per stream (far more than any answer has).
const MAX_TRACKED_CALLS: usize = 256;

pub(super) struct State {
    ctx: StreamContext,
    preset: &'static Preset,
    usage: Option<Usage>,
    ended: bool,
    /// The stream's `id`, `object`, `created` and `model`, as raw JSON, once a chunk
    /// named them.
    identity: Option<[String; 4]>,
    /// Annotation chunks that came before the identity was known.
    held: Vec<String>,
    /// The usage taken off a provider's last chunk, as a chunk of its own, for a
    /// client that asked for it: written just before `[DONE]`.
    usage_chunk: Option<Vec<u8>>,
    /// Tool calls so far: (choice index, call index, some argument text arrived).
    calls: Vec<(u64, u64, bool)>,
    /// The client expects the legacy `function_call` shape.
    legacy: bool,
    /// Choice chunks forwarded so far.
    choice_events: u64,
}

/// Just what the gateway needs from a chunk; the rest is skipped, not built. Fields are
/// read raw: a chunk the gateway does not understand is still forwarded.
#[derive(Deserialize)]
struct ChunkSummary<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceSummary<'a>>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    created: Option<&'a RawValue>,
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    /// Groq's older streams put the usage here (docs/providers/openai-compatible.md#groq).
    #[serde(default, borrow)]
    x_groq: Option<GroqExtras<'a>>,
}

#[derive(Deserialize)]
struct ChoiceSummary<'a> {
    #[serde(default, borrow)]
    index: Option<&'a RawValue>,
    #[serde(default, borrow)]
    finish_reason: Option<&'a RawValue>,
    /// Read further only when it carries tool calls.
    #[serde(default, borrow)]
    delta: Option<&'a RawValue>,
}

impl ChoiceSummary<'_> {
    fn index(&self) -> u64 {
        self.index.and_then(|i| i.get().parse().ok()).unwrap_or(0)
    }

    fn finished(&self) -> bool {
        self.finish_reason.is_some_and(|r| r.get() != "null")
    }
}

#[derive(Deserialize)]
struct DeltaSummary<'a> {
    #[serde(default, borrow)]
    tool_calls: Option<Vec<CallSummary<'a>>>,
}

#[derive(Deserialize)]
struct CallSummary<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    function: Option<FunctionSummary<'a>>,
}

#[derive(Deserialize)]
struct FunctionSummary<'a> {
    #[serde(default, borrow)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct GroqExtras<'a> {
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

/// Usage as OpenAI-compatible servers actually send it: details may be `null` (vLLM,
/// Ollama) or missing, and DeepSeek reports cache hits in its own field.
#[derive(Deserialize)]
struct LooseUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<LoosePromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<LooseCompletionDetails>,
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct LoosePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    audio_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct LooseCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
    #[serde(default)]
    audio_tokens: Option<u64>,
    #[serde(default)]
    accepted_prediction_tokens: Option<u64>,
    #[serde(default)]
    rejected_prediction_tokens: Option<u64>,
}

pub(crate) fn parse_usage(raw: &RawValue) -> Option<Usage> {
    let u: LooseUsage = serde_json::from_str(raw.get()).ok()?;
    let prompt = u.prompt_tokens.unwrap_or(0);
    let completion = u.completion_tokens.unwrap_or(0);
    let prompt_details = u.prompt_tokens_details;
    let completion_details = u.completion_tokens_details;
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: u.total_tokens.unwrap_or(prompt.saturating_add(completion)),
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: prompt_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .or(u.prompt_cache_hit_tokens)
                .unwrap_or(0),
            audio_tokens: prompt_details.as_ref().and_then(|d| d.audio_tokens).unwrap_or(0),
        },
        completion_tokens_details: CompletionTokensDetails {
            reasoning_tokens: completion_details.as_ref().and_then(|d| d.reasoning_tokens).unwrap_or(0),
            audio_tokens: completion_details.as_ref().and_then(|d| d.audio_tokens).unwrap_or(0),
            accepted_prediction_tokens: completion_details
                .as_ref()
                .and_then(|d| d.accepted_prediction_tokens)
                .unwrap_or(0),
            rejected_prediction_tokens: completion_details
                .as_ref()
                .and_then(|d| d.rejected_prediction_tokens)
                .unwrap_or(0),
        },
        cache_creation_input_tokens: None,
    })
}

/// A raw JSON string's value, if it is one.
fn raw_str(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
}

pub(super) fn translator(ctx: StreamContext) -> SseStream<State> {
    let preset = preset_of_provider(ctx.provider);
    let ctx_legacy = ctx.facts.legacy_functions && !preset.native_functions;
    SseStream::new(State {
        ctx,
        preset,
        usage: None,
        ended: false,
        identity: None,
        held: Vec::new(),
        usage_chunk: None,
        calls: Vec::new(),
        legacy: ctx_legacy,
        choice_events: 0,
    })
}

impl EventHandler for State {
    fn provider(&self) -> &'static str {
        self.preset.name
    }

    fn on_end(&mut self, out: &mut Vec<u8>) {
        self.flush_held(out);
        if !self.ended {
            self.fail(out, &GatewayError::StreamIncomplete { provider: self.preset.name });
        }
    }

    fn usage(&self) -> Option<crate::usage::Usage> {
        self.usage.as_ref().map(super::billed)
    }

    /// OpenAI-compatible servers stream about a token an event.
    fn output_estimate(&self) -> u64 {
        self.choice_events
    }

    fn fail(&mut self, out: &mut Vec<u8>, err: &GatewayError) {
        self.flush_held(out);
        if !self.ended {
            error_event(out, err);
            self.ended = true;
        }
    }

    fn on_event(&mut self, event: Event<'_>, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            self.flush_held(out);
            // Calls still without arguments in a stream that never said it finished.
            let open: Vec<(u64, u64)> = self.calls.iter().filter(|c| !c.2).map(|c| (c.0, c.1)).collect();
            for (choice, call) in open {
                self.empty_arguments(out, choice, call, None, false);
            }
            if let Some(usage_chunk) = self.usage_chunk.take() {
                write_data(out, &usage_chunk);
            }
            done(out);
            self.ended = true;
            return;
        }
        if data.is_empty() {
            // A keep-alive written as an empty data line.
            return;
        }
        let summary: ChunkSummary = match serde_json::from_str(data) {
            Ok(s) => s,
            Err(e) => {
                let mut detail = format!("unreadable stream event: {e}");
                if let Some(key) = self.ctx.api_key.as_deref() {
                    detail = crate::error::redact(&detail, key);
                }
                return self.fail(out, &GatewayError::ProviderMalformed { provider: self.preset.name, detail });
            }
        };
        if summary.error.is_some() || event.event == "error" {
            // OpenRouter and others report failures mid-stream as an error body.
            let status = stream_error_status(data.as_bytes());
            let err = normalise_error(self.ctx.api_key.as_deref(), status, data.as_bytes());
            return self.fail(out, &err);
        }
        let groq_usage = summary.x_groq.as_ref().and_then(|x| x.usage).filter(|u| u.get() != "null");
        let usage = summary.usage.filter(|u| u.get() != "null").or(groq_usage);
        if let Some(parsed) = usage.and_then(parse_usage) {
            self.usage = Some(parsed);
        }
        if let (None, Some(groq_usage)) = (summary.usage, groq_usage) {
            // Left in place (clients ignore `x_groq`), and copied to a usage chunk of
            // its own for a client that asked.
            self.hold_usage_chunk(&summary, groq_usage);
        }
        if self.identity.is_none() {
            if let Some(id) = raw_str(summary.id).filter(|id| !id.is_empty()) {
                let raw = |v: Option<&RawValue>| v.map_or_else(|| "null".to_string(), |v| v.get().to_string());
                let object =
                    summary.object.map_or_else(|| "\"chat.completion.chunk\"".to_string(), |o| o.get().to_string());
                self.identity = Some([json_string(&id), object, raw(summary.created), raw(summary.model)]);
                self.flush_held(out);
            }
        }
        let has_usage = summary.usage.is_some_and(|u| u.get() != "null");
        if has_usage && summary.choices.as_ref().is_none_or(Vec::is_empty) {
            // The usage chunk: the gateway asked for it on the client's behalf.
            if self.ctx.include_usage {
                self.usage_chunk = None;
                write_data(out, data.as_bytes());
            }
            return;
        }
        if summary.choices.as_ref().is_some_and(Vec::is_empty) {
            // Azure's prompt annotations.
            match self.identity.is_some() {
                true => self.write_stamped(out, data),
                false => self.held.push(data.to_string()),
            }
            return;
        }
        // Non-standard finish reasons (Mistral, Together, DeepSeek, …) are rewritten;
        // every other chunk is forwarded as the provider wrote it.
        let nonstandard = summary
            .choices
            .iter()
            .flatten()
            .any(|c| raw_str(c.finish_reason).is_some_and(|r| self.preset.finish_reason(&r).is_some()));
        let rewritten = nonstandard.then(|| normalise_finish_reasons(self.preset, data.as_bytes())).flatten();
        let chunk: &[u8] = rewritten.as_deref().unwrap_or(data.as_bytes());
        let completed = self.complete_calls(out, &summary, chunk);
        let chunk: &[u8] = completed.as_deref().unwrap_or(chunk);
        match summary.usage.filter(|u| u.get() != "null") {
            Some(usage) => self.split_usage(out, chunk, &summary, usage),
            None => self.emit(out, chunk),
        }
    }
}

impl State {
    /// A choice chunk that carries the usage: forwarded without it, the usage kept as a
    /// chunk of its own for a client that asked.
    fn split_usage(&mut self, out: &mut Vec<u8>, chunk: &[u8], summary: &ChunkSummary, usage: &RawValue) {
        let Ok(fields) = serde_json::from_slice::<TopLevel>(chunk) else {
            return write_data(out, chunk);
        };
        let without = if self.ctx.include_usage { Some("null".to_string()) } else { None };
        self.emit(out, &fields.rewrite(&[("usage", without)]));
        self.hold_usage_chunk(summary, usage);
    }

    /// Writes a choice chunk, in the legacy shape for a client that asked with `functions`.
    fn emit(&mut self, out: &mut Vec<u8>, chunk: &[u8]) {
        self.choice_events += 1;
        let legacy = self.legacy.then(|| legacy_chunk(chunk)).flatten();
        write_data(out, legacy.as_deref().unwrap_or(chunk));
    }

    /// Keeps track of the chunk's tool calls; when a choice finishes, each of its calls
    /// whose arguments never came gets `"{}"`: as a fragment of its own before the
    /// finish chunk, or, for a call that this chunk opens, in the chunk itself (the
    /// rewritten chunk is returned).
    fn complete_calls(&mut self, out: &mut Vec<u8>, summary: &ChunkSummary, chunk: &[u8]) -> Option<Vec<u8>> {
        let mut before = Vec::new();
        let mut in_place = Vec::new();
        for choice in summary.choices.iter().flatten() {
            let index = choice.index();
            let mut opened = Vec::new();
            let delta = choice.delta.filter(|d| d.get().contains("tool_calls"));
            let calls =
                delta.and_then(|d| serde_json::from_str::<DeltaSummary>(d.get()).ok()).and_then(|d| d.tool_calls);
            for call in calls.into_iter().flatten() {
                let at = call.index.unwrap_or(0);
                let arguments =
                    call.function.and_then(|f| f.arguments).is_some_and(|a| !matches!(a.get(), "\"\"" | "null"));
                let room = self.calls.len() < MAX_TRACKED_CALLS;
                match self.calls.iter_mut().find(|c| c.0 == index && c.1 == at) {
                    Some(known) => known.2 |= arguments,
                    // A bound on what a provider can make the gateway remember.
                    None if room => {
                        self.calls.push((index, at, arguments));
                        opened.push(at);
                    }
                    None => {}
                }
            }
            if choice.finished() {
                for call in self.calls.iter_mut().filter(|c| c.0 == index && !c.2) {
                    call.2 = true;
                    match opened.contains(&call.1) {
                        true => in_place.push((index, call.1)),
                        false => before.push((index, call.1)),
                    }
                }
            }
        }
        let usage_null = chunk.windows(12).any(|w| w == br#""usage":null"#);
        for (choice, call) in before {
            self.empty_arguments(out, choice, call, Some(summary), usage_null);
        }
        if in_place.is_empty() {
            return None;
        }
        rewrite_choices(chunk, |choice| {
            let index = choice.get("index").and_then(serde_json::Value::as_u64).unwrap_or(0);
            let calls = choice.pointer_mut("/delta/tool_calls").and_then(serde_json::Value::as_array_mut);
            let mut changed = false;
            for call in calls.into_iter().flatten() {
                let at = call.get("index").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let function = call.get_mut("function").and_then(serde_json::Value::as_object_mut);
                if let Some(function) = function.filter(|_| in_place.contains(&(index, at))) {
                    function.insert("arguments".into(), serde_json::Value::from("{}"));
                    changed = true;
                }
            }
            changed
        })
    }

    /// The `"{}"` fragment of a call whose arguments never came, with the stream's identity.
    fn empty_arguments(
        &mut self,
        out: &mut Vec<u8>,
        choice: u64,
        call: u64,
        summary: Option<&ChunkSummary>,
        usage_null: bool,
    ) {
        if let Some(known) = self.calls.iter_mut().find(|c| c.0 == choice && c.1 == call) {
            known.2 = true;
        }
        if self.legacy && call != 0 {
            // The legacy shape has one call; the others are not shown.
            return;
        }
        let raw = |v: Option<&RawValue>, default: &str| v.map_or_else(|| default.to_string(), |v| v.get().to_string());
        let [id, object, created, model] = match (&self.identity, summary) {
            (Some(identity), _) => identity.clone(),
            (None, summary) => [
                raw(summary.and_then(|s| s.id), "null"),
                raw(summary.and_then(|s| s.object), "\"chat.completion.chunk\""),
                raw(summary.and_then(|s| s.created), "null"),
                raw(summary.and_then(|s| s.model), "null"),
            ],
        };
        // `"usage": null` as the provider's own (finish) chunk has it.
        let usage = if usage_null { r#","usage":null"# } else { "" };
        let chunk = format!(
            r#"{{"id":{id},"object":{object},"created":{created},"model":{model},"choices":[{{"index":{choice},"delta":{{"tool_calls":[{{"index":{call},"function":{{"arguments":"{{}}"}}}}]}},"logprobs":null,"finish_reason":null}}]{usage}}}"#
        );
        self.emit(out, chunk.as_bytes());
    }

    /// Keeps `usage` as a chunk of its own, with the chunk's identity, to be written
    /// before `[DONE]` (unless the provider sends OpenAI's usage chunk after all).
    fn hold_usage_chunk(&mut self, summary: &ChunkSummary, usage: &RawValue) {
        if !self.ctx.include_usage {
            return;
        }
        let raw = |v: Option<&RawValue>, default: &str| v.map_or_else(|| default.to_string(), |v| v.get().to_string());
        let usage_chunk = format!(
            r#"{{"id":{},"object":{},"created":{},"model":{},"choices":[],"usage":{}}}"#,
            raw(summary.id, "null"),
            raw(summary.object, "\"chat.completion.chunk\""),
            raw(summary.created, "null"),
            raw(summary.model, "null"),
            usage.get()
        );
        self.usage_chunk = Some(usage_chunk.into_bytes());
    }

    /// Writes held annotation chunks: stamped when the identity is known, as they came
    /// when the stream ends without one.
    fn flush_held(&mut self, out: &mut Vec<u8>) {
        for data in std::mem::take(&mut self.held) {
            self.write_stamped(out, &data);
        }
    }

    fn write_stamped(&self, out: &mut Vec<u8>, data: &str) {
        let stamped = self.identity.as_ref().and_then(|[id, object, created, model]| {
            let fields: TopLevel = serde_json::from_str(data).ok()?;
            Some(fields.rewrite(&[
                ("id", Some(id.clone())),
                ("object", Some(object.clone())),
                ("created", Some(created.clone())),
                ("model", Some(model.clone())),
            ]))
        });
        match stamped {
            Some(bytes) => write_data(out, &bytes),
            None => write_data(out, data.as_bytes()),
        }
    }
}

/// A chunk in the legacy shape (see [`legacy_choice`]); `None` when unchanged.
fn legacy_chunk(chunk: &[u8]) -> Option<Vec<u8>> {
    if !chunk.windows(10).any(|w| w == b"tool_calls") {
        return None;
    }
    rewrite_choices(chunk, |choice| legacy_choice(choice, "delta"))
}
