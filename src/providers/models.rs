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
