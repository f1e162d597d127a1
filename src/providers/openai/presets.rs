//! OpenAI-compatible providers: one adapter, and per provider its defaults and the
//! quirks where it departs from OpenAI (docs/providers/azure.md, docs/providers/openai-compatible.md). Endpoint metadata names a
//! preset with `provider: <name>`; `api_base` overrides the base URL.
//!
//! Every quirk cites where it comes from. Only what a provider documents (or what its
//! published API schema shows) is listed: capabilities that vary per model are left to
//! the provider to refuse.

use super::super::{AuthScheme, Impact};
use crate::schema::openai::FinishReason;

#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub api_base: &'static str,
    pub auth: AuthScheme,
    /// Azure's URL forms: `/openai/deployments/{deployment}/…?api-version=` or `/openai/v1/…`.
    pub azure: bool,
    /// The provider knows only `max_tokens`: `max_completion_tokens` is renamed.
    pub max_tokens_only: bool,
    /// The name of the `seed` field (`random_seed` on Mistral).
    pub seed_field: &'static str,
    /// The `tool_choice` value meaning "must call a tool" (`any` on Fireworks).
    pub required_tool_choice: &'static str,
    /// Accepts `tool_choice: {"type":"function","function":{"name":…}}`.
    pub named_tool_choice: bool,
    /// Accepts `messages[].name` (rejected with a 400 by some).
    pub message_names: bool,
    /// Message fields the provider rejects (extensions of this and other gateways
    /// replayed in the history: `thinking_blocks` from Anthropic answers, `reasoning_content`
    /// and `reasoning` from reasoning models); removed from every message.
    pub foreign_message_fields: &'static [&'static str],
    /// Takes OpenAI's deprecated `functions`/`function_call` (and assistant `function_call`,
    /// `role: "function"` messages) as they are. Elsewhere they are rewritten into `tools`,
    /// `tool_choice`, `tool_calls` and tool messages, and the answer back into the legacy
    /// shape.
    pub native_functions: bool,
    /// Tool-call ids must be exactly 9 alphanumerics (Mistral).
    pub nine_char_tool_ids: bool,
    /// Chat parameters the provider refuses (or silently ignores), and how much their
    /// absence matters. Values that ask for nothing (`n: 1`, `logprobs: false`,
    /// `tool_choice: "auto"`, `null`) are removed without a report.
    pub lacks: &'static [(&'static str, Impact)],
    /// Accepts `stream_options.include_usage` (else the gateway does not add it, and
    /// removes the client's `stream_options`: the provider reports usage unasked).
    pub stream_usage: bool,
    /// Non-standard `finish_reason` values and their OpenAI meaning.
    pub finish_reasons: &'static [(&'static str, FinishReason)],
    pub embeddings: bool,
    pub completions: bool,
}

/// Anthropic's thinking blocks, which the gateway returns (LiteLLM's extension) so they can
/// go back to Anthropic: no OpenAI-compatible provider takes them, so they never leave
/// for one.
const GATEWAY_ONLY: &[&str] = &["thinking_blocks"];

/// OpenAI validates messages against its schema: "Additional properties are not allowed
/// ('id' was unexpected) - 'messages.0'" (transitive-bullshit/agentic#531,
/// openai/openai-node#1161). Thinking replayed from other providers goes.
const OPENAI_SCHEMA_ONLY: &[&str] = &["thinking_blocks", "reasoning_content", "reasoning"];

/// The defaults every preset departs from (OpenAI's request, as a compatible server takes it).
pub(crate) const OPENAI_LIKE: Preset = Preset {
    name: "openai",
    api_base: "https://api.openai.com/v1",
    auth: AuthScheme::Bearer,
    azure: false,
    max_tokens_only: false,
    seed_field: "seed",
    required_tool_choice: "required",
    named_tool_choice: true,
    message_names: true,
    foreign_message_fields: GATEWAY_ONLY,
    // Compatible servers document the tools interface; the deprecated one is OpenAI's own
    // and goes to them as tools (docs/providers/openai.md#request-fields: "translate to the tools form").
    native_functions: false,
    nine_char_tool_ids: false,
    lacks: &[],
    stream_usage: true,
    finish_reasons: &[],
    embeddings: true,
    completions: true,
};

pub static PRESETS: [Preset; 16] = [
    Preset {
        name: "openai",
        foreign_message_fields: OPENAI_SCHEMA_ONLY,
        // platform.openai.com/docs/api-reference/chat/create and openai-python 3.54
        // completion_create_params.py: `functions` "Deprecated in favor of `tools`",
        // `function_call` "Deprecated in favor of `tool_choice`", both still accepted.
        native_functions: true,
        ..OPENAI_LIKE
    },
    Preset {
        name: "azure",
        // No shared host: every resource has its own `https://{resource}.openai.azure.com`,
        // so deployments must set `api_base`.
        api_base: "https://example.openai.azure.com",
        // `api-key: <key>`, not `Authorization` (learn.microsoft.com azure/ai-services/openai/reference).
        auth: AuthScheme::Header("api-key"),
        azure: true,
        // OpenAI's request schema: the same strictness about message fields, and
        // `functions`/`function_call` (deprecated) in the chat completions reference
        // (learn.microsoft.com azure/ai-foundry/openai/reference).
        foreign_message_fields: OPENAI_SCHEMA_ONLY,
        native_functions: true,
        ..OPENAI_LIKE
    },
    Preset {
        name: "mistral",
        api_base: "https://api.mistral.ai/v1",
        // Mistral's ChatCompletionRequest (mistralai/client-python docs/models/chatcompletionrequest.md)
        // has `max_tokens` and `random_seed` only, and rejects unknown fields with a 422
        // `extra_forbidden` (e.g. nomtek/mistralai_client_dart#44).
        max_tokens_only: true,
        seed_field: "random_seed",
        // Mistral accepts `required` too, but `any` is its own spelling (ToolChoiceEnum
        // auto|none|any|required; litellm sends `any`). Named choices are accepted
        // (client-python docs/models/chatcompletionrequesttoolchoice.md).
        required_tool_choice: "any",
        // Only tool messages have `name`; `messages[0].user.name` → 422 extra_forbidden
        // (Gage-Technologies/mistral-go#3).
        message_names: false,
        // Replayed thinking from other providers → 422 extra_forbidden
        // (BerriAI/litellm#30835, charmbracelet/crush#1590).
        foreign_message_fields: &["thinking_blocks", "reasoning_content", "reasoning"],
        // "Tool call id was … but must be a-z, A-Z, 0-9, with a length of 9" (docs/providers/openai-compatible.md#mistral).
        nine_char_tool_ids: true,
        // Not in Mistral's request schema, which forbids extra fields (see above).
        lacks: &[
            ("logprobs", Impact::Semantic),
            ("top_logprobs", Impact::Semantic),
            ("logit_bias", Impact::Sampling),
            ("user", Impact::Sampling),
        ],
        // No `stream_options` in the schema; usage comes on the last chunk unasked (docs/providers/openai-compatible.md#mistral).
        stream_usage: false,
        // ChatCompletionChoiceFinishReason: stop|length|model_length|error|tool_calls.
        finish_reasons: &[("model_length", FinishReason::Length), ("error", FinishReason::Stop)],
        // FIM lives at /v1/fim/completions, not the OpenAI completions shape.
        completions: false,
        ..OPENAI_LIKE
    },
    Preset {
        name: "groq",
        api_base: "https://api.groq.com/openai/v1",
        // console.groq.com/docs/openai: `messages[].name`, `logprobs`, `logit_bias` and
        // `top_logprobs` "will result in a 400 error"; `n` must be 1.
        message_names: false,
        // "'messages.1' : for 'role:assistant' the following must be satisfied[('messages.1'
        // : property 'reasoning_content' is unsupported)]" (janhq/jan#8136,
        // NousResearch/hermes-agent#11089).
        foreign_message_fields: &["thinking_blocks", "reasoning_content"],
        lacks: &[
            ("logprobs", Impact::Semantic),
            ("top_logprobs", Impact::Semantic),
            ("logit_bias", Impact::Sampling),
            ("n", Impact::Semantic),
        ],
        // No embeddings API; "Text Completions" listed as unsupported (same page).
        embeddings: false,
        completions: false,
        ..OPENAI_LIKE
    },
    Preset {
        name: "deepseek",
        // api-docs.deepseek.com: POST https://api.deepseek.com/chat/completions.
        api_base: "https://api.deepseek.com",
        // Create-chat-completion parameters: `max_tokens`; no `n`, no `logit_bias`.
        max_tokens_only: true,
        // `reasoning_content` stays: in thinking mode "For turns that do perform tool calls,
        // the reasoning_content must be fully passed back to the API in all subsequent
        // requests" (400 otherwise); elsewhere "it will be ignored"
        // (api-docs.deepseek.com/guides/thinking_mode).
        lacks: &[("n", Impact::Semantic), ("logit_bias", Impact::Sampling)],
        // Resource exhaustion on DeepSeek's side, reported as a finish reason (docs/providers/openai-compatible.md#deepseek, docs/providers/gateway-rules.md#finish-reason-mapping).
        finish_reasons: &[("insufficient_system_resource", FinishReason::Length)],
        // No embeddings; completions only as beta FIM under https://api.deepseek.com/beta.
        embeddings: false,
        completions: false,
        ..OPENAI_LIKE
    },
    Preset {
        name: "xai",
        // docs.x.ai/docs/api-reference: the chat request takes `max_completion_tokens`,
        // `logit_bias`, `n`, `seed`; restrictions are per reasoning model, not per API.
        api_base: "https://api.x.ai/v1",
        embeddings: false,
        completions: false,
        ..OPENAI_LIKE
    },
    Preset {
        name: "together",
        // docs.together.ai/docs/inference/openai-compatibility: base_url https://api.together.ai/v1;
        // chat, completions and embeddings are all supported.
        api_base: "https://api.together.ai/v1",
        // Together/HF servers report `eos` (docs/providers/openai-compatible.md#together-ai, docs/providers/gateway-rules.md#finish-reason-mapping).
        finish_reasons: &[("eos", FinishReason::Stop), ("eos_token", FinishReason::Stop)],
        ..OPENAI_LIKE
    },
    Preset {
        name: "fireworks",
        // docs.fireworks.ai/tools-sdks/openai-compatibility.
        api_base: "https://api.fireworks.ai/inference/v1",
        // litellm's Fireworks transformation (docs/providers/openai-compatible.md#fireworks-ai).
        max_tokens_only: true,
        required_tool_choice: "any",
        ..OPENAI_LIKE
    },
    Preset {
        name: "openrouter",
        api_base: "https://openrouter.ai/api/v1",
        // OpenRouter normalises finish reasons, except its own "error" for a failure
        // mid-stream (openrouter.ai/docs/api-reference/streaming).
        finish_reasons: &[("error", FinishReason::Stop)],
        embeddings: false,
        ..OPENAI_LIKE
    },
    Preset {
        name: "perplexity",
        api_base: "https://api.perplexity.ai",
        // docs.perplexity.ai API reference: `max_tokens`, sampling, `response_format`
        // and search options; no tools, `n`, logprobs, `logit_bias` or `seed`.
        max_tokens_only: true,
        lacks: &[
            ("tools", Impact::Semantic),
            ("tool_choice", Impact::Semantic),
            ("n", Impact::Semantic),
            ("logprobs", Impact::Semantic),
            ("top_logprobs", Impact::Semantic),
            ("logit_bias", Impact::Sampling),
            ("seed", Impact::Sampling),
        ],
        embeddings: false,
        completions: false,
        ..OPENAI_LIKE
    },
    Preset {
        name: "cerebras",
        // inference-docs.cerebras.ai/resources/openai. Cerebras' current request schema
        // (cerebras-cloud-sdk-python types/chat/completion_create_params.py) accepts the
        // penalties, `logit_bias`, `n` and named tool choices the older docs refused.
        api_base: "https://api.cerebras.ai/v1",
        // "messages.2.assistant.reasoning_content: property
        // 'messages.2.assistant.reasoning_content' is unsupported" (Kilo-Org/kilocode#10375).
        foreign_message_fields: &["thinking_blocks", "reasoning_content"],
        // Chat and /v1/completions only.
        embeddings: false,
        ..OPENAI_LIKE
    },
    Preset {
        name: "deepinfra",
        api_base: "https://api.deepinfra.com/v1/openai",
        // docs.deepinfra.com/chat/overview lists `max_tokens` among its supported parameters.
        max_tokens_only: true,
        ..OPENAI_LIKE
    },
    Preset {
        name: "nvidia",
        api_base: "https://integrate.api.nvidia.com/v1",
        // NIM's chat completions reference documents `max_tokens`.
        max_tokens_only: true,
        ..OPENAI_LIKE
    },
    Preset {
        name: "ollama",
        // docs.ollama.com/api/openai-compatibility (ollama/ollama docs/api/openai-compatibility.mdx).
        api_base: "http://localhost:11434/v1",
        // Supported request fields list `max_tokens` only, and leave `tool_choice`,
        // `logit_bias`, `user` and `n` unchecked.
        max_tokens_only: true,
        lacks: &[
            ("tool_choice", Impact::Semantic),
            ("logit_bias", Impact::Sampling),
            ("n", Impact::Semantic),
            ("user", Impact::Sampling),
        ],
        ..OPENAI_LIKE
    },
    // vLLM's ChatCompletionRequest (vllm/entrypoints/openai/protocol.py) takes
    // `max_completion_tokens` (`max_tokens` is deprecated) and every OpenAI sampling field.
    Preset { name: "vllm", api_base: "http://localhost:8000/v1", ..OPENAI_LIKE },
    Preset {
        name: "lmstudio",
        api_base: "http://localhost:1234/v1",
        // lmstudio.ai/docs/developer/openai-compat: supported payload parameters name `max_tokens`.
        max_tokens_only: true,
        ..OPENAI_LIKE
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

impl Preset {
    pub fn finish_reason(&self, value: &str) -> Option<FinishReason> {
        self.finish_reasons.iter().find(|(v, _)| *v == value).map(|(_, r)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_unique_names_and_absolute_bases() {
        for (i, p) in PRESETS.iter().enumerate() {
            assert!(PRESETS.iter().skip(i + 1).all(|q| q.name != p.name), "{} twice", p.name);
            assert!(p.api_base.starts_with("https://") || p.api_base.starts_with("http://localhost"), "{}", p.name);
            assert!(!p.api_base.ends_with('/'), "{}", p.name);
            assert_eq!(find(p.name), Some(p));
            // A quirk can only name a parameter once.
            for (j, (param, _)) in p.lacks.iter().enumerate() {
                assert!(p.lacks.iter().skip(j + 1).all(|(q, _)| q != param), "{}: {param} twice", p.name);
            }
            assert!(p.finish_reasons.iter().all(|(v, _)| !matches!(*v, "stop" | "length" | "tool_calls")));
        }
        for required in [
            "openai",
            "azure",
            "mistral",
            "groq",
            "deepseek",
            "xai",
            "together",
            "fireworks",
            "openrouter",
            "perplexity",
            "cerebras",
            "deepinfra",
            "nvidia",
            "ollama",
            "vllm",
            "lmstudio",
        ] {
            assert!(find(required).is_some(), "{required}");
        }
    }
}
