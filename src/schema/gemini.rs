//! Google Gemini API (generativelanguage v1beta) wire types:
//! https://ai.google.dev/api/generate-content , https://ai.google.dev/api/embeddings .

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'r> {
    pub contents: Vec<Content<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<SystemInstruction<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig<'r>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    pub generation_config: GenerationConfig<'r>,
}

#[derive(Debug, Serialize)]
pub struct SystemInstruction<'r> {
    pub parts: Vec<Part<'r>>,
}

#[derive(Debug, Serialize)]
pub struct Content<'r> {
    pub role: &'static str,
    pub parts: Vec<Part<'r>>,
}

/// One part: exactly one of the data fields is set.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse<'r>>,
    /// Gemini 3 requires the signature it attached to a call to come back on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<&'r str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'r> {
    pub mime_type: &'r str,
    pub data: &'r str,
}

#[derive(Debug, Serialize)]
pub struct FunctionCall<'r> {
    pub name: &'r str,
    pub args: &'r RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'r str>,
}

#[derive(Debug, Serialize)]
pub struct FunctionResponse<'r> {
    pub name: &'r str,
    pub response: FunctionOutput<'r>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'r str>,
}

/// `functionResponse.response` must be an object: the tool's JSON object as is, or
/// its text under `output` (the key Google documents).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum FunctionOutput<'r> {
    Object(&'r RawValue),
    Text { output: Cow<'r, str> },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool<'r> {
    pub function_declarations: Vec<FunctionDeclaration<'r>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration<'r> {
    pub name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'r str>,
    /// Full JSON Schema (the OpenAPI-subset `parameters` would need rewriting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_json_schema: Option<&'r RawValue>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig<'r> {
    pub function_calling_config: FunctionCallingConfig<'r>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig<'r> {
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_function_names: Vec<&'r str>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<&'r RawValue>,
    /// `logprobsResult` on every candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_logprobs: Option<bool>,
    /// How many alternatives per token (`0..=20`); only with `responseLogprobs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig<'_> {
    pub fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.candidate_count.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.response_json_schema.is_none()
            && self.response_logprobs.is_none()
            && self.logprobs.is_none()
            && self.thinking_config.is_none()
    }
}

/// One of `thinkingBudget` (Gemini 2.5) and `thinkingLevel` (Gemini 3): Gemini refuses
/// both together ("You can only set only one of thinking budget and thinking level.").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u32>,
    /// `MINIMAL`, `LOW`, `MEDIUM` or `HIGH` (the proto enum's names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<&'static str>,
    pub include_thoughts: bool,
}

// ---------------------------------------------------------------------------------
// Responses.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse<'a> {
    #[serde(default, borrow)]
    pub candidates: Vec<Candidate<'a>>,
    #[serde(default, borrow)]
    pub prompt_feedback: Option<PromptFeedback<'a>>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default, borrow)]
    pub model_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub response_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate<'a> {
    #[serde(default, borrow)]
    pub content: Option<CandidateContent<'a>>,
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub index: Option<u32>,
    /// Kept raw and read with [`LogprobsResult`] on its own: a surprise in this optional
    /// block must not cost the whole answer.
    #[serde(default, borrow)]
    pub logprobs_result: Option<&'a RawValue>,
}

/// `candidates[].logprobsResult`: per decoding step, the chosen token and the top
/// alternatives. Proto3 JSON omits zero values (a certain token has no
/// `logProbability`) and writes infinities as strings.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogprobsResult<'a> {
    #[serde(borrow)]
    pub top_candidates: Vec<TopCandidates<'a>>,
    #[serde(borrow)]
    pub chosen_candidates: Vec<LogprobsCandidate<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TopCandidates<'a> {
    #[serde(borrow)]
    pub candidates: Vec<LogprobsCandidate<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogprobsCandidate<'a> {
    #[serde(borrow)]
    pub token: Cow<'a, str>,
    pub log_probability: LogProbability,
}

/// A log probability as proto3 JSON writes a float: a number, or `"NaN"`,
/// `"Infinity"`, `"-Infinity"` (and any number as a string).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LogProbability(pub f64);

impl<'de> Deserialize<'de> for LogProbability {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LogProbability;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(LogProbability(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LogProbability(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LogProbability(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "Infinity" => Ok(LogProbability(f64::INFINITY)),
                    "-Infinity" => Ok(LogProbability(f64::NEG_INFINITY)),
                    "NaN" => Ok(LogProbability(f64::NAN)),
                    other => other.parse().map(LogProbability).map_err(E::custom),
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(LogProbability(0.0))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
pub struct CandidateContent<'a> {
    #[serde(default, borrow)]
    pub parts: Vec<ResponsePart<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponsePart<'a> {
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(default, borrow)]
    pub function_call: Option<ResponseFunctionCall<'a>>,
    #[serde(default, borrow)]
    pub thought_signature: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct ResponseFunctionCall<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub args: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback<'a> {
    #[serde(default, borrow)]
    pub block_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UsageMetadata {
    pub prompt_token_count: u64,
    pub candidates_token_count: u64,
    pub thoughts_token_count: u64,
    pub cached_content_token_count: u64,
    pub tool_use_prompt_token_count: u64,
    pub total_token_count: u64,
}

#[derive(Debug, Deserialize)]
pub struct ErrorResponse<'a> {
    #[serde(borrow)]
    pub error: ErrorStatus<'a>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorStatus<'a> {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub details: Vec<ErrorInfo<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorInfo<'a> {
    #[serde(default, borrow)]
    pub reason: Option<Cow<'a, str>>,
}

// ---------------------------------------------------------------------------------
// Embeddings.

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbedContentRequest<'r> {
    /// Only in `batchEmbedContents` requests: `models/{model}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'r str>,
    pub content: EmbedContent<'r>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimensionality: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct EmbedContent<'r> {
    pub parts: [EmbedText<'r>; 1],
}

#[derive(Debug, Serialize)]
pub struct EmbedText<'r> {
    pub text: &'r str,
}

#[derive(Debug, Serialize)]
pub struct BatchEmbedContentsRequest<'r> {
    pub requests: Vec<EmbedContentRequest<'r>>,
}

#[derive(Debug, Deserialize)]
pub struct EmbedContentResponse<'a> {
    #[serde(borrow)]
    pub embedding: ContentEmbedding<'a>,
}

#[derive(Debug, Deserialize)]
pub struct BatchEmbedContentsResponse<'a> {
    #[serde(borrow)]
    pub embeddings: Vec<ContentEmbedding<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct ContentEmbedding<'a> {
    #[serde(borrow)]
    pub values: &'a RawValue,
}
