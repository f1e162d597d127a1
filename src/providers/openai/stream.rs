//! OpenAI-compatible streams: already in the client's format, so events are forwarded
//! as they come. The gateway reads them only to take the usage (which it always asks
//! for), to drop the usage chunk when the client did not ask for it, and to turn a
//! mid-stream error body into OpenAI's error event.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::normalise_error;
use crate::codec::sse::{write_data, Event, SseDecoder};
use crate::error::GatewayError;
use crate::providers::stream::{done, error_event, StreamContext, StreamTranslator};
use crate::providers::ResponseContext;
use crate::schema::openai::Usage;

const NAME: &str = "openai";

pub struct OpenAiStream {
    sse: SseDecoder,
    state: State,
}

struct State {
    ctx: StreamContext,
    api_key: Option<String>,
    usage: Option<Usage>,
    ended: bool,
}

/// Just what the gateway needs from a chunk; the rest is skipped, not built.
#[derive(Deserialize)]
struct ChunkSummary<'a> {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

impl OpenAiStream {
    pub fn new(ctx: StreamContext, api_key: Option<String>) -> Self {
        OpenAiStream { sse: SseDecoder::default(), state: State { ctx, api_key, usage: None, ended: false } }
    }
}

impl StreamTranslator for OpenAiStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let OpenAiStream { sse, state } = self;
        if let Err(e) = sse.push(chunk, &mut |event| state.on_event(event, out)) {
            state.fail(out, &GatewayError::ProviderMalformed { provider: NAME, detail: format!("{e:?}") });
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let OpenAiStream { sse, state } = self;
        let _ = sse.finish(&mut |event| state.on_event(event, out));
        if !state.ended {
            state.fail(out, &GatewayError::StreamIncomplete { provider: NAME });
        }
    }

    fn usage(&self) -> Option<&Usage> {
        self.state.usage.as_ref()
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
        if event.data == "[DONE]" {
            done(out);
            self.ended = true;
            return;
        }
        let summary: ChunkSummary = match serde_json::from_str(event.data) {
            Ok(s) => s,
            Err(e) => {
                let detail = format!("unreadable stream event: {e}");
                return self.fail(out, &GatewayError::ProviderMalformed { provider: NAME, detail });
            }
        };
        if summary.error.is_some() {
            // OpenRouter and others report failures mid-stream as an error body.
            let ctx = ResponseContext { created: self.ctx.created, api_key: self.api_key.as_deref() };
            let err = normalise_error(&ctx, 500, event.data.as_bytes());
            return self.fail(out, &err);
        }
        let has_usage = summary.usage.is_some();
        if has_usage {
            self.usage = summary.usage;
        }
        if summary.choices.as_ref().is_some_and(Vec::is_empty) {
            // A choice-less chunk is the usage chunk, or Azure's content-filter
            // annotations, which strict clients choke on.
            if !(has_usage && self.ctx.include_usage) {
                return;
            }
        }
        write_data(out, event.data.as_bytes());
    }
}
