//! What each model accepts beyond its provider's wire format: the per-model rules, in one
//! table for every provider ([`RULES`]; README "Per-model rules";
//! docs/providers/anthropic.md#per-model-rules and the other provider pages).
//!
//! A provider refuses with a 400 a request its model cannot take, and a 400 is never
//! retried, so a fallback chain would stop at the first such deployment. Adapters look
//! up the rules of the model they are about to call and resolve every conflict by the
//! deployment's `unsupported_params` policy before the request leaves: adjust or drop
//! (reported in `x-switchyard-adjusted-params` / `x-switchyard-dropped-params`), or
//! refuse with a 400 naming the parameter.
//!
//! Rows are matched in order; the first that matches the provider and the model wins, and
//! every provider ends with a catch-all row. Each row says where its facts come from.

use super::Impact;
use crate::error::GatewayError;

/// Which sampling parameters a model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// `temperature`, `top_p` and `top_k` (where the provider has it), in any combination.
    Any,
    /// `temperature` or `top_p`, not both ("`temperature` and `top_p` cannot both be
    /// specified for this model. Please use only one.").
    TemperatureOrTopP,
    /// None of them: only the default temperature (1) is accepted.
    DefaultOnly,
}

/// How a model is asked to reason, i.e. what `reasoning_effort` becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// The model cannot be asked to think; `reasoning_effort` is left out.
    Unsupported,
    /// Anthropic `thinking: {"type": "enabled", "budget_tokens": N}`.
    AnthropicBudget,
    /// Anthropic `thinking: {"type": "adaptive"}` with `output_config.effort`; the
    /// budget form is refused. `always_on`: the model thinks even when not asked and
    /// refuses `thinking: {"type": "disabled"}`.
    AnthropicAdaptive { always_on: bool },
    /// Gemini `thinkingConfig.thinkingBudget` within `min..=max`; `0` turns thinking off
    /// where `can_disable`.
    GeminiBudget { min: u32, max: u32, can_disable: bool },
    /// Gemini 3 `thinkingConfig.thinkingLevel`, one of `levels` (lowest first); thinking
    /// cannot be turned off.
    GeminiLevel { levels: &'static [&'static str] },
    /// OpenAI's `reasoning_effort`, passed on as sent.
    Effort,
}

/// What `reasoning_effort` asks for, least thinking first (OpenAI's values); each adapter
/// maps it onto its provider's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
}

impl Effort {
    pub fn parse(effort: &str) -> Result<Effort, GatewayError> {
        match effort {
            "none" => Ok(Effort::None),
            "minimal" => Ok(Effort::Minimal),
            "low" => Ok(Effort::Low),
            "medium" => Ok(Effort::Medium),
            "high" => Ok(Effort::High),
            "xhigh" => Ok(Effort::XHigh),
            other => Err(GatewayError::invalid(
                "reasoning_effort",
                format!("Invalid value for 'reasoning_effort': {other:?}. Supported values are: 'none', 'minimal', 'low', 'medium', 'high' and 'xhigh'."),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Effort::None => "none",
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::XHigh => "xhigh",
        }
    }
}

/// The rules of one model family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelRules {
    /// Who the row is about, for messages ("Claude Opus 4.7 and later").
    pub family: &'static str,
    pub sampling: Sampling,
    /// The largest `temperature` the provider takes (OpenAI's range is 0–2).
    pub temperature_max: f64,
    pub reasoning: Reasoning,
    /// Accepts a forced tool choice (`required` or a named tool).
    pub forced_tool_choice: bool,
    /// Accepts a conversation ending with an assistant message to continue (prefill).
    pub assistant_prefill: bool,
    /// Further request parameters the models refuse, and how much their absence matters.
    pub refuses: &'static [(&'static str, Impact)],
    /// Where the facts come from.
    pub source: &'static str,
}

/// Which models a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Claude models of these families (`opus`, `sonnet`, `haiku`, …) whose version is in
    /// `since..until` (both `(major, minor)`), in either naming scheme:
    /// `claude-opus-4-6`, `claude-sonnet-4-5-20250929`, `claude-3-7-sonnet-latest`,
    /// `claude-opus-4.6`. An empty family list means any family.
    Claude { families: &'static [&'static str], since: (u32, u32), until: (u32, u32) },
    /// Models whose id starts with one of these.
    Prefixes(&'static [&'static str]),
    /// Every model (a provider's catch-all row).
    Any,
}

#[derive(Debug)]
pub struct Row {
    /// Provider or preset names (`anthropic`, `gemini`, `openai`, `azure`, `xai`, …).
    pub providers: &'static [&'static str],
    pub pattern: Pattern,
    pub rules: ModelRules,
}

const NEWEST: (u32, u32) = (u32::MAX, u32::MAX);
const CLAUDE_FAMILIES: &[&str] = &["opus", "sonnet", "haiku"];
const LITELLM_MAP: &str = "LiteLLM 1.106.2 model map (model_prices_and_context_window_backup.json): \
supports_sampling_params, supports_forced_tool_use, supports_assistant_prefill, thinking_always_on, \
supports_legacy_thinking";

/// Anthropic's rules, newest models first. Shared by the rows below.
const CLAUDE_NEWEST: ModelRules = ModelRules {
    family: "Claude Opus 4.7 and later",
    sampling: Sampling::DefaultOnly,
    temperature_max: 1.0,
    reasoning: Reasoning::AnthropicAdaptive { always_on: false },
    forced_tool_choice: true,
    assistant_prefill: false,
    refuses: &[],
    source: LITELLM_MAP,
};

const CLAUDE_4_1: ModelRules = ModelRules {
    family: "Claude Opus 4.1, Opus 4.5, Sonnet 4.5 and Haiku 4.5",
    sampling: Sampling::TemperatureOrTopP,
    temperature_max: 1.0,
    reasoning: Reasoning::AnthropicBudget,
    forced_tool_choice: true,
    assistant_prefill: true,
    refuses: &[],
    source: "Anthropic's 400 \"`temperature` and `top_p` cannot both be specified for this model. Please use only \
one.\" (Sonnet 4.5: langfuse/langfuse#9882; Sonnet 4.6: skydiscover-ai/skydiscover#15); docs \
build-with-claude/extended-thinking (budget_tokens)",
};

/// What OpenAI's reasoning models refuse (learn.microsoft.com/azure/foundry/openai/how-to/reasoning,
/// "Not supported"); the newer ones refuse `stop` too.
const O_SERIES_REFUSES: &[(&str, Impact)] = &[
    ("max_tokens", Impact::Semantic),
    ("presence_penalty", Impact::Sampling),
    ("frequency_penalty", Impact::Sampling),
    ("logprobs", Impact::Semantic),
    ("top_logprobs", Impact::Semantic),
    ("logit_bias", Impact::Sampling),
];
const O_SERIES_REFUSES_WITH_STOP: &[(&str, Impact)] = &[
    ("max_tokens", Impact::Semantic),
    ("presence_penalty", Impact::Sampling),
    ("frequency_penalty", Impact::Sampling),
    ("logprobs", Impact::Semantic),
    ("top_logprobs", Impact::Semantic),
    ("logit_bias", Impact::Sampling),
    ("stop", Impact::Semantic),
];
/// xAI's reasoning models: "presencePenalty, frequencyPenalty and stop parameters are not
/// supported by reasoning models" (docs.x.ai/docs/guides/reasoning).
const XAI_REASONING_REFUSES: &[(&str, Impact)] =
    &[("presence_penalty", Impact::Sampling), ("frequency_penalty", Impact::Sampling), ("stop", Impact::Semantic)];

/// Every row. Order matters: the first match wins.
pub static RULES: &[Row] = &[
    // --- Anthropic (docs/providers/anthropic.md#per-model-rules) ---------------------
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Claude { families: &["fable", "mythos"], since: (5, 1), until: NEWEST },
        rules: ModelRules {
            family: "Claude Fable and Mythos 5.1 and later",
            reasoning: Reasoning::AnthropicAdaptive { always_on: true },
            forced_tool_choice: false,
            ..CLAUDE_NEWEST
        },
    },
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Prefixes(&["claude-fable", "claude-mythos"]),
        rules: ModelRules {
            family: "Claude Fable 5 and Mythos 5",
            reasoning: Reasoning::AnthropicAdaptive { always_on: true },
            ..CLAUDE_NEWEST
        },
    },
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Claude { families: &["opus", "sonnet"], since: (5, 5), until: NEWEST },
        rules: ModelRules {
            family: "Claude Opus and Sonnet 5.5 and later",
            reasoning: Reasoning::AnthropicAdaptive { always_on: true },
            forced_tool_choice: false,
            ..CLAUDE_NEWEST
        },
    },
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Claude { families: CLAUDE_FAMILIES, since: (4, 7), until: NEWEST },
        rules: CLAUDE_NEWEST,
    },
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Claude { families: CLAUDE_FAMILIES, since: (4, 6), until: (4, 7) },
        rules: ModelRules {
            family: "Claude Opus 4.6 and Sonnet 4.6",
            assistant_prefill: false,
            source: "Anthropic's 400 \"This model does not support assistant message prefill. The conversation must \
end with a user message.\" (release notes 2026-02-05; anomalyco/opencode#13768); budget thinking still accepted \
(LiteLLM map: supports_legacy_thinking); temperature or top_p as for 4.1-4.5",
            ..CLAUDE_4_1
        },
    },
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Claude { families: CLAUDE_FAMILIES, since: (4, 1), until: (4, 6) },
        rules: CLAUDE_4_1,
    },
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Claude { families: &[], since: (3, 7), until: (4, 1) },
        rules: ModelRules {
            family: "Claude 3.7 Sonnet, Opus 4 and Sonnet 4",
            sampling: Sampling::Any,
            source: "docs build-with-claude/extended-thinking (supported models, budget_tokens)",
            ..CLAUDE_4_1
        },
    },
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Claude { families: &[], since: (0, 0), until: (3, 7) },
        rules: ModelRules {
            family: "Claude 3 and 3.5",
            sampling: Sampling::Any,
            reasoning: Reasoning::Unsupported,
            source: "docs build-with-claude/extended-thinking: thinking starts with Claude 3.7 Sonnet",
            ..CLAUDE_4_1
        },
    },
    // Any other model behind the Messages API (the demo provider, compatible servers):
    // what the API itself documents for every model.
    Row {
        providers: &["anthropic"],
        pattern: Pattern::Any,
        rules: ModelRules {
            family: "models behind the Anthropic Messages API",
            sampling: Sampling::Any,
            source: "docs api/messages: temperature 0-1, top_p, top_k, thinking.budget_tokens",
            ..CLAUDE_4_1
        },
    },
    // --- OpenAI-compatible (docs/providers/openai-compatible.md#reasoning-models) ---
    // Applied by the OpenAI adapter as edits of the client's body (src/providers/openai.rs,
    // `model_rules`): a refused `max_tokens` is sent as `max_completion_tokens` (an
    // adjustment); other refused parameters are dropped or refused by the policy;
    // `Sampling::DefaultOnly` removes `temperature`/`top_p` (reported unless 1). GPT-5.1
    // and GPT-5.2 also take `temperature`, `top_p` and `logprobs` when they do not reason
    // (`reasoning_effort: "none"`, their default): see `samples_without_reasoning` there.
    //
    // OpenAI's reasoning models, on OpenAI and on Azure OpenAI (the same models, and the
    // same list of unsupported parameters on both).
    Row {
        providers: &["openai", "azure"],
        pattern: Pattern::Prefixes(&["gpt-5-chat"]),
        rules: ModelRules {
            family: "GPT-5 Chat",
            source: "not a reasoning model: takes temperature like GPT-4o (BerriAI/litellm#13781, \
learnku.com/articles/90544); kept out of the GPT-5 row below",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["openai", "azure"],
        pattern: Pattern::Prefixes(&["o1-mini", "o1-preview"]),
        rules: ModelRules {
            family: "OpenAI o1-mini and o1-preview",
            sampling: Sampling::DefaultOnly,
            reasoning: Reasoning::Unsupported,
            refuses: O_SERIES_REFUSES,
            source: "learn.microsoft.com/azure/foundry/openai/how-to/reasoning (\"Not supported\": temperature, \
top_p, presence_penalty, frequency_penalty, logprobs, top_logprobs, logit_bias, max_tokens; reasoning_effort for all \
reasoning models except o1-mini; o1-preview has no reasoning effort); OpenAI's 400 \"Unsupported parameter: \
'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.\"",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["openai", "azure"],
        // o3-mini takes `stop` (openai-python 3.54 names only o3 and o4-mini; huggingface/smolagents#2366).
        pattern: Pattern::Prefixes(&["o3-mini", "o1"]),
        rules: ModelRules {
            family: "OpenAI o1 and o3-mini",
            sampling: Sampling::DefaultOnly,
            refuses: O_SERIES_REFUSES,
            source: "learn.microsoft.com/azure/foundry/openai/how-to/reasoning (\"Not supported\" list; \"Reasoning \
models will only work with the max_completion_tokens parameter\"); openai-python 3.54 completion_create_params.py \
(max_tokens \"not compatible with o-series models\"); OpenAI's 400s \"Unsupported parameter: 'temperature' is not \
supported with this model.\" (openai/openai-python#2104, o3-mini) and \"Unsupported parameter: 'max_tokens' is not \
supported with this model. Use 'max_completion_tokens' instead.\" (Microsoft Q&A 2014879, o3-mini)",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["openai", "azure"],
        pattern: Pattern::Prefixes(&["o3", "o4"]),
        rules: ModelRules {
            family: "OpenAI o3 and o4-mini",
            sampling: Sampling::DefaultOnly,
            refuses: O_SERIES_REFUSES_WITH_STOP,
            source: "learn.microsoft.com/azure/foundry/openai/how-to/reasoning (\"Not supported\" list); \
openai-python 3.54 completion_create_params.py (stop: \"Not supported with latest reasoning models o3 and \
o4-mini\"); OpenAI's 400 \"Unsupported parameter: 'stop' is not supported with this model.\" (langgenius/dify#18971 \
o4-mini, crewAIInc/crewAI#2738 o3) and \"Unsupported parameter: 'top_p' is not supported with this model.\" \
(lobehub/lobehub#7747, o4-mini)",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["openai", "azure"],
        pattern: Pattern::Prefixes(&["gpt-5"]),
        rules: ModelRules {
            family: "OpenAI GPT-5 models",
            sampling: Sampling::DefaultOnly,
            refuses: O_SERIES_REFUSES_WITH_STOP,
            source: "learn.microsoft.com/azure/foundry/openai/how-to/reasoning (GPT-5 series are reasoning models; \
\"Not supported\" list; max_completion_tokens only); platform.openai.com/docs/guides/latest-model (\"GPT-5.2 \
parameter compatibility\": temperature, top_p and logprobs only with reasoning effort none, on GPT-5.2 and GPT-5.1; \
errors on older GPT-5 models); OpenAI's 400s \"Unsupported value: 'temperature' does not support 0.9 with this \
model. Only the default (1) value is supported.\" (zenn.dev/headwaters/articles/a5468c45ec2e52), \"Unsupported \
parameter: 'stop' is not supported with this model.\" (huggingface/smolagents#1662 gpt-5, -mini, -nano; #1893 \
gpt-5.2), \"Unsupported parameter: 'presence_penalty' is not supported with this model.\" \
(nextai-translator/nextai-translator#1781, gpt-5-mini)",
            ..OPENAI_DEFAULT
        },
    },
    // xAI (docs.x.ai/docs/guides/reasoning): "presencePenalty, frequencyPenalty and stop
    // parameters are not supported by reasoning models. Adding them in the request would
    // result in an error."; "reasoning_effort is not supported by grok-3, grok-4 and
    // grok-4-fast-reasoning. [...] Only grok-3-mini supports reasoning_effort."
    Row {
        providers: &["xai"],
        pattern: Pattern::Prefixes(&["grok-3-mini"]),
        rules: ModelRules {
            family: "Grok 3 Mini",
            refuses: XAI_REASONING_REFUSES,
            source: "docs.x.ai/docs/guides/reasoning (reasoning model; reasoning_effort low or high); xAI's 400 \
\"Argument not supported on this model: presencePenalty\" (lobehub/lobehub#7370)",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["xai"],
        pattern: Pattern::Prefixes(&["grok-3"]),
        rules: ModelRules {
            family: "Grok 3",
            reasoning: Reasoning::Unsupported,
            source: "docs.x.ai/docs/guides/reasoning (\"reasoning_effort is not supported by grok-3\")",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["xai"],
        pattern: Pattern::Prefixes(&["grok-4-fast-non-reasoning", "grok-4-1-fast-non-reasoning"]),
        rules: ModelRules {
            family: "Grok 4 Fast with reasoning disabled",
            source: "docs.x.ai/docs/guides/reasoning (\"grok-4-fast-non-reasoning variant is based on \
grok-4-fast-reasoning with reasoning disabled\"; the restrictions are the reasoning models')",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["xai"],
        pattern: Pattern::Prefixes(&["grok-4.3"]),
        rules: ModelRules {
            family: "Grok 4.3",
            refuses: XAI_REASONING_REFUSES,
            source: "docs.x.ai/developers/model-capabilities/text/reasoning (2026: grok-4.3 supports \
reasoning_effort none, low, medium, high; \"presencePenalty, frequencyPenalty, and stop cannot be used with \
reasoning models\")",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["xai"],
        pattern: Pattern::Prefixes(&["grok-4"]),
        rules: ModelRules {
            family: "Grok 4",
            reasoning: Reasoning::Unsupported,
            refuses: XAI_REASONING_REFUSES,
            source: "docs.x.ai/docs/guides/reasoning (grok-4 and grok-4-fast-reasoning: reasoning models, no \
reasoning_effort)",
            ..OPENAI_DEFAULT
        },
    },
    Row {
        providers: &["xai"],
        pattern: Pattern::Prefixes(&["grok-code-fast"]),
        rules: ModelRules {
            family: "Grok Code Fast",
            refuses: XAI_REASONING_REFUSES,
            source: "docs.x.ai/docs/guides/reasoning (reasoning models' restrictions); LiteLLM 1.106.2 \
llms/xai/chat/transformation.py removes stop and frequency_penalty for grok-code-fast (docs/providers/openai-compatible.md#xai)",
            ..OPENAI_DEFAULT
        },
    },
    // DeepSeek's thinking mode (api-docs.deepseek.com/guides/thinking_mode): "Not Supported
    // Parameters: temperature, top_p, presence_penalty, frequency_penalty, logprobs,
    // top_logprobs. [...] setting temperature, top_p, presence_penalty, frequency_penalty
    // will not trigger an error but will also have no effect. Setting logprobs,
    // top_logprobs will trigger an error." The ignored ones are passed on (refusing them
    // under `reject` would fail requests DeepSeek serves).
    Row {
        providers: &["deepseek"],
        pattern: Pattern::Prefixes(&["deepseek-reasoner"]),
        rules: ModelRules {
            family: "DeepSeek's thinking mode, deepseek-reasoner",
            refuses: &[("logprobs", Impact::Semantic), ("top_logprobs", Impact::Semantic)],
            source: "api-docs.deepseek.com/guides/thinking_mode (\"Not Supported Parameters\")",
            ..OPENAI_DEFAULT
        },
    },
    // --- Gemini (docs/providers/gemini.md#reasoning-models) ---
    // Applied by the Gemini adapter (src/providers/gemini.rs, `plan_thinking`):
    // `reasoning_effort` becomes a `thinkingBudget` within the model's range or a
    // `thinkingLevel` the model takes; a value the model cannot take is adjusted to the
    // nearest one it can (reported), or refused under `reject`. Every Gemini model takes
    // temperature 0-2, top_p and top_k ("temperature ... Values can range from [0.0, 2.0]",
    // ai.google.dev/api/generate-content#generationconfig). Prefixes go longest first.
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-2.5-flash-image"]),
        rules: ModelRules {
            family: "Gemini 2.5 Flash Image",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::Unsupported,
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/gemini-api/docs/image-generation (image models without thinking; \
epam/ai-dial-adapter-vertexai#407: \"Gemini 2.5 Flash Image doesn't support thinking configuration\"); Gemini's 400 \
\"Thinking is not enabled for models/gemini-2.0-flash-preview-image-generation\" for the image model before it \
(lobehub/lobehub#7985)",
        },
    },
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-2.5-flash-lite"]),
        rules: ModelRules {
            family: "Gemini 2.5 Flash-Lite",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::GeminiBudget { min: 512, max: 24576, can_disable: true },
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/gemini-api/docs/thinking#set-budget (2.5 Flash-Lite: \"Model does not think\" by \
default, range 512 to 24576, thinkingBudget = 0 disables, -1 dynamic)",
        },
    },
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-2.5-flash"]),
        rules: ModelRules {
            family: "Gemini 2.5 Flash",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::GeminiBudget { min: 1, max: 24576, can_disable: true },
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/gemini-api/docs/thinking#set-budget (2.5 Flash: range 0 to 24576, \
thinkingBudget = 0 disables, -1 dynamic; quoted in lobehub/lobehub#8122)",
        },
    },
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-2.5-pro"]),
        rules: ModelRules {
            family: "Gemini 2.5 Pro",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::GeminiBudget { min: 128, max: 32768, can_disable: false },
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/gemini-api/docs/thinking#set-budget (2.5 Pro: \"The thinkingBudget must be an \
integer in the range 128 to 32768\", \"You cannot turn thinking off when using Gemini 2.5 Pro\"; quoted in \
lobehub/lobehub#8122); Gemini's 400s \"Budget 0 is invalid. This model only works in thinking mode.\" \
(snailyp/gemini-balance#206) and \"The thinking budget (52428) is invalid.\" (RooCodeInc/Roo-Code#4399)",
        },
    },
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-3-pro"]),
        rules: ModelRules {
            family: "Gemini 3 Pro",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::GeminiLevel { levels: &["low", "high"] },
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/gemini-api/docs/thinking#thinking-levels and docs/gemini-3 (Gemini 3 Pro: low and \
high, default high; \"You cannot disable thinking for Gemini 3 Pro\", quoted in spring-projects/spring-ai#4983 and \
enricoros/big-AGI#893); thinkingBudget and thinkingLevel together refused: \"You can only set only one of thinking \
budget and thinking level.\" (sterlp/eclipse-peon-ai#115)",
        },
    },
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-3.1-pro"]),
        rules: ModelRules {
            family: "Gemini 3.1 Pro",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::GeminiLevel { levels: &["low", "medium", "high"] },
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/gemini-api/docs/thinking#thinking-levels (Gemini 3.1 Pro: low, medium, high; \
minimal not supported; thinking cannot be disabled; table reproduced in \
vercel.com/docs/ai-gateway/capabilities/reasoning/google); Gemini's 400 \"Thinking level MINIMAL is not supported for \
this model.\" on gemini-3.1-pro-preview (vellum-ai/vellum-assistant#32687)",
        },
    },
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-3-flash", "gemini-3.1-flash-lite"]),
        rules: ModelRules {
            family: "Gemini 3 Flash and 3.1 Flash-Lite",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::GeminiLevel { levels: &["minimal", "low", "medium", "high"] },
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/gemini-api/docs/thinking#thinking-levels (Gemini 3 Flash and 3.1 Flash-Lite: \
minimal, low, medium, high; minimal \"matches no thinking for most queries\", thinking cannot be fully turned off; \
table reproduced in vercel.com/docs/ai-gateway/capabilities/reasoning/google)",
        },
    },
    // Other Gemini 3.x models: the levels every Gemini 3 model documented so far takes.
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-3"]),
        rules: ModelRules {
            family: "Gemini 3 models",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::GeminiLevel { levels: &["low", "high"] },
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/gemini-api/docs/thinking#thinking-levels (\"Use the thinkingLevel parameter with \
Gemini 3 models\"; low and high are the levels every Gemini 3 model in the table takes); Gemini's 400 \"Thinking \
level MINIMAL is not supported for this model. Please retry with other thinking level.\" (earendil-works/pi#9455)",
        },
    },
    Row {
        providers: &["gemini"],
        pattern: Pattern::Prefixes(&["gemini-2.0", "gemini-1.5", "gemini-1.0", "gemini-pro-vision"]),
        rules: ModelRules {
            family: "Gemini 2.0 and earlier",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::Unsupported,
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "firebase.google.com/docs/ai-logic/thinking (\"Only Gemini 3 and Gemini 2.5 models support this \
capability\"); Gemini's 400 \"thinking_config is not supported.\" on Gemini 2.0 \
(immersive-translate/immersive-translate#2976)",
        },
    },
    // Any other model behind the Gemini API (aliases such as gemini-flash-latest, Gemma,
    // tuned models): the budget form Gemini 2.5 takes and Gemini 3 accepts for backwards
    // compatibility, up to the smallest documented maximum.
    Row {
        providers: &["gemini"],
        pattern: Pattern::Any,
        rules: ModelRules {
            family: "models behind the Gemini API",
            sampling: Sampling::Any,
            temperature_max: 2.0,
            reasoning: Reasoning::GeminiBudget { min: 1, max: 24576, can_disable: true },
            forced_tool_choice: true,
            assistant_prefill: true,
            refuses: &[],
            source: "ai.google.dev/api/generate-content#ThinkingConfig (thinkingBudget: 0 disables, -1 dynamic, \
ranges model dependent); docs/thinking (\"thinkingBudget is accepted for backwards compatibility\" on Gemini 3)",
        },
    },
    // --- every other provider: OpenAI's own ranges ------------------------------------
    Row { providers: &[], pattern: Pattern::Any, rules: OPENAI_DEFAULT },
];

/// OpenAI's request as documented (docs/providers/openai.md): what a provider without a
/// row of its own is assumed to take.
pub const OPENAI_DEFAULT: ModelRules = ModelRules {
    family: "OpenAI-compatible models",
    sampling: Sampling::Any,
    temperature_max: 2.0,
    reasoning: Reasoning::Effort,
    forced_tool_choice: true,
    assistant_prefill: true,
    refuses: &[],
    source: "platform.openai.com/docs/api-reference/chat/create",
};

/// The rules for `model` served by `provider` (a provider or preset name).
pub fn rules(provider: &str, model: &str) -> &'static ModelRules {
    RULES
        .iter()
        .find(|row| (row.providers.is_empty() || row.providers.contains(&provider)) && row.pattern.matches(model))
        .map_or(&OPENAI_DEFAULT, |row| &row.rules)
}

impl Pattern {
    pub fn matches(&self, model: &str) -> bool {
        match *self {
            Pattern::Any => true,
            Pattern::Prefixes(prefixes) => prefixes.iter().any(|p| model.starts_with(p)),
            Pattern::Claude { families, since, until } => claude_version(model).is_some_and(|(family, version)| {
                (families.is_empty() || families.contains(&family)) && version >= since && version < until
            }),
        }
    }
}

/// `(family, (major, minor))` of a Claude model id in either naming scheme:
/// `claude-<family>-<major>[-<minor>][-<date>]` or `claude-<major>[-<minor>]-<family>…`
/// (minor versions are one or two digits; dates are eight); `.` may separate the
/// version's parts.
pub fn claude_version(model: &str) -> Option<(&str, (u32, u32))> {
    let rest = model.strip_prefix("claude-")?;
    let parts: Vec<&str> = rest.split(['-', '.']).collect();
    let number = |s: Option<&&str>| {
        s.filter(|s| (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse().ok())
    };
    fn word<'m>(s: Option<&&'m str>) -> Option<&'m str> {
        s.copied().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase()))
    }
    if let (Some(family), Some(major)) = (word(parts.first()), number(parts.get(1))) {
        return Some((family, (major, number(parts.get(2)).unwrap_or(0))));
    }
    let major = number(parts.first())?;
    match number(parts.get(1)) {
        Some(minor) => Some((word(parts.get(2))?, (major, minor))),
        None => Some((word(parts.get(1))?, (major, 0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_ids_parse_in_both_naming_schemes() {
        let cases = [
            ("claude-opus-4-6", Some(("opus", (4, 6)))),
            ("claude-sonnet-4-5-20250929", Some(("sonnet", (4, 5)))),
            ("claude-sonnet-4-20250514", Some(("sonnet", (4, 0)))),
            ("claude-opus-4-0", Some(("opus", (4, 0)))),
            ("claude-3-7-sonnet-latest", Some(("sonnet", (3, 7)))),
            ("claude-3-haiku-20240307", Some(("haiku", (3, 0)))),
            ("claude-3-5-haiku-20241022", Some(("haiku", (3, 5)))),
            ("claude-opus-4.6", Some(("opus", (4, 6)))),
            ("claude-sonnet-5", Some(("sonnet", (5, 0)))),
            ("claude-fable-5-1", Some(("fable", (5, 1)))),
            ("claude-mythos-preview", None),
            ("claude-", None),
            ("gpt-4o", None),
            ("switchyard-demo-1", None),
        ];
        for (model, expected) in cases {
            assert_eq!(claude_version(model), expected, "{model}");
        }
    }

    /// One row per family the table distinguishes: (model, family label).
    #[test]
    fn each_claude_model_gets_its_family() {
        let cases = [
            ("claude-mythos-5-1", "Claude Fable and Mythos 5.1 and later"),
            ("claude-fable-5", "Claude Fable 5 and Mythos 5"),
            ("claude-mythos-preview", "Claude Fable 5 and Mythos 5"),
            ("claude-sonnet-5-5", "Claude Opus and Sonnet 5.5 and later"),
            ("claude-haiku-5-5", "Claude Opus 4.7 and later"),
            ("claude-opus-4-7-20260416", "Claude Opus 4.7 and later"),
            ("claude-opus-5", "Claude Opus 4.7 and later"),
            ("claude-sonnet-4-6", "Claude Opus 4.6 and Sonnet 4.6"),
            ("claude-opus-4-6-20260205", "Claude Opus 4.6 and Sonnet 4.6"),
            ("claude-sonnet-4-5", "Claude Opus 4.1, Opus 4.5, Sonnet 4.5 and Haiku 4.5"),
            ("claude-haiku-4-5-20251001", "Claude Opus 4.1, Opus 4.5, Sonnet 4.5 and Haiku 4.5"),
            ("claude-opus-4-1", "Claude Opus 4.1, Opus 4.5, Sonnet 4.5 and Haiku 4.5"),
            ("claude-sonnet-4-20250514", "Claude 3.7 Sonnet, Opus 4 and Sonnet 4"),
            ("claude-3-7-sonnet-20250219", "Claude 3.7 Sonnet, Opus 4 and Sonnet 4"),
            ("claude-3-5-sonnet-20241022", "Claude 3 and 3.5"),
            ("switchyard-demo-1", "models behind the Anthropic Messages API"),
        ];
        for (model, family) in cases {
            assert_eq!(rules("anthropic", model).family, family, "{model}");
        }
    }

    #[test]
    fn claude_rules_by_family() {
        let newest = rules("anthropic", "claude-opus-4-8");
        assert_eq!(newest.sampling, Sampling::DefaultOnly);
        assert_eq!(newest.reasoning, Reasoning::AnthropicAdaptive { always_on: false });
        assert!(!newest.assistant_prefill && newest.forced_tool_choice);
        let no_forcing = rules("anthropic", "claude-fable-5-1");
        assert!(!no_forcing.forced_tool_choice);
        assert_eq!(no_forcing.reasoning, Reasoning::AnthropicAdaptive { always_on: true });
        let four_six = rules("anthropic", "claude-sonnet-4-6");
        assert_eq!((four_six.sampling, four_six.reasoning), (Sampling::TemperatureOrTopP, Reasoning::AnthropicBudget));
        assert!(!four_six.assistant_prefill);
        let four_five = rules("anthropic", "claude-sonnet-4-5");
        assert!(four_five.assistant_prefill);
        assert_eq!(rules("anthropic", "claude-3-5-haiku-latest").reasoning, Reasoning::Unsupported);
        for model in ["claude-sonnet-4-6", "switchyard-demo-1", "claude-3-haiku-20240307"] {
            assert_eq!(rules("anthropic", model).temperature_max, 1.0, "{model}");
        }
    }

    #[test]
    fn other_providers_fall_back_to_openai_defaults() {
        assert_eq!(rules("openrouter", "anything").family, OPENAI_DEFAULT.family);
        // A Claude name behind an OpenAI-compatible server is that server's business.
        assert_eq!(rules("openrouter", "claude-opus-4-8").temperature_max, 2.0);
    }

    #[test]
    fn every_provider_has_a_catch_all() {
        assert!(RULES.last().is_some_and(|row| row.providers.is_empty() && row.pattern == Pattern::Any));
        assert!(RULES.iter().any(|row| row.providers == ["anthropic"] && row.pattern == Pattern::Any));
    }
}
