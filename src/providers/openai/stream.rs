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

use serde::Deserialize;
use serde_json::value::RawValue;

use super::presets::Preset;
use super::{
    json_string, normalise_error, normalise_finish_reasons, preset_of_provider, stream_error_status, TopLevel,
};
use crate::codec::sse::{write_data, Event};
use crate::error::GatewayError;
use crate::providers::stream::{done, error_event, EventHandler, SseStream, StreamContext};
use crate::schema::openai::{CompletionTokensDetails, PromptTokensDetails, Usage};

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
    /// Groq's older streams put the usage here (PROVIDERS.md §7.2).
    #[serde(default, borrow)]
    x_groq: Option<GroqExtras<'a>>,
}

#[derive(Deserialize)]
struct ChoiceSummary<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<&'a RawValue>,
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

fn parse_usage(raw: &RawValue) -> Option<Usage> {
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
    SseStream::new(State {
        ctx,
        preset,
        usage: None,
        ended: false,
        identity: None,
        held: Vec::new(),
        usage_chunk: None,
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

    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
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
        match summary.usage.filter(|u| u.get() != "null") {
            Some(usage) => self.split_usage(out, chunk, &summary, usage),
            None => write_data(out, chunk),
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
        write_data(out, &fields.rewrite(&[("usage", without)]));
        self.hold_usage_chunk(summary, usage);
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
