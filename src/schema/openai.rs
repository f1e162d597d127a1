//! OpenAI Chat Completions wire types: the request the gateway accepts and the
//! response it returns. Strings borrow from the request body where they can;
//! fields the gateway does not interpret are kept as raw JSON.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::json::Str;

#[derive(Debug, Default)]
pub struct ChatRequest<'a> {
    pub model: Cow<'a, str>,
    pub messages: Vec<Message<'a>>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Option<Stop<'a>>,
    pub n: Option<u32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub user: Option<Cow<'a, str>>,
    pub tools: Option<Vec<Tool<'a>>>,
    pub tool_choice: Option<ToolChoice<'a>>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat<'a>>,
    pub reasoning_effort: Option<Cow<'a, str>>,
    /// `top_k`: not OpenAI's, but a common extension (LiteLLM, vLLM) that Anthropic and
    /// Gemini have.
    pub top_k: Option<u32>,
    /// Deprecated `functions` (still accepted by OpenAI); [`crate::legacy`] turns them
    /// into `tools` before any adapter reads the request.
    pub functions: Option<Vec<FunctionDef<'a>>>,
    /// Deprecated `function_call`: `"none"`, `"auto"` or `{"name": …}`.
    pub function_call: Option<ToolChoice<'a>>,
    /// Every other top-level field, untouched, in arrival order.
    pub other: Vec<(Cow<'a, str>, &'a RawValue)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    pub role: Role,
    #[serde(default, borrow)]
    pub content: Option<Content<'a>>,
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(default, borrow)]
    pub tool_call_id: Option<Cow<'a, str>>,
    /// Deprecated single function call of an assistant message.
    #[serde(default, borrow)]
    pub function_call: Option<FunctionCall<'a>>,
    /// Anthropic thinking blocks an assistant message carried, sent back as the gateway
    /// returned them (LiteLLM's extension; see [`ThinkingBlock`]).
    #[serde(default, borrow)]
    pub thinking_blocks: Option<Vec<ThinkingBlock<'a>>>,
}

/// A thinking block as the gateway returns it on an assistant message and takes it back:
/// `{"type":"thinking","thinking":…,"signature":…}` or
/// `{"type":"redacted_thinking","data":…}`. Streams add an `index` (so the OpenAI SDK's
/// delta accumulator can assemble them), which is ignored here.
#[derive(Debug, Deserialize)]
pub struct ThinkingBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub signature: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub data: Option<Cow<'a, str>>,
}

/// `content`: a string or an array of typed parts (`null` is `None` on the message).
#[derive(Debug)]
pub enum Content<'a> {
    Text(Cow<'a, str>),
    Parts(Vec<ContentPart<'a>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    Text,
    ImageUrl,
    InputAudio,
    File,
    Refusal,
}

#[derive(Debug, Deserialize)]
pub struct ContentPart<'a> {
    #[serde(rename = "type")]
    pub kind: PartKind,
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub image_url: Option<ImageUrl<'a>>,
    #[serde(default, borrow)]
    pub file: Option<FilePart<'a>>,
    #[serde(default, borrow)]
    pub refusal: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct ImageUrl<'a> {
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    #[serde(default, borrow)]
    pub detail: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub struct FilePart<'a> {
    #[serde(default, borrow)]
    pub file_data: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub file_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub filename: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ToolCall<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(rename = "type", default, borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub function: FunctionCall<'a>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCall<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub arguments: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct Tool<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub function: Option<FunctionDef<'a>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionDef<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub parameters: Option<&'a RawValue>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice<'a> {
    None,
    Auto,
    Required,
    Function(Cow<'a, str>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Stop<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Stop<'_> {
    pub fn sequences(&self) -> Vec<&str> {
        match self {
            Stop::One(s) => vec![s.as_ref()],
            Stop::Many(v) => v.iter().map(AsRef::as_ref).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormatKind {
    Text,
    JsonObject,
    JsonSchema,
}

#[derive(Debug, Deserialize)]
pub struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    pub kind: ResponseFormatKind,
    #[serde(default, borrow)]
    pub json_schema: Option<JsonSchemaFormat<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct JsonSchemaFormat<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub description: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub schema: Option<&'a RawValue>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

// ---------------------------------------------------------------------------------
// Hand-written deserialisers: the top-level request (keeps unknown fields raw, borrowed)
// and the string-or-array unions.

impl<'de> Deserialize<'de> for ChatRequest<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ChatRequestVisitor)
    }
}

struct ChatRequestVisitor;

impl<'de> Visitor<'de> for ChatRequestVisitor {
    type Value = ChatRequest<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a chat completion request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut req = ChatRequest::default();
        let mut model: Option<Cow<'de, str>> = None;
        let mut messages: Option<Vec<Message<'de>>> = None;
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            match key.as_ref() {
                "model" => model = Some(map.next_value::<Str<'de>>()?.0),
                "messages" => messages = Some(map.next_value()?),
                "stream" => req.stream = map.next_value::<Option<bool>>()?.unwrap_or(false),
                "stream_options" => req.stream_options = map.next_value()?,
                "max_tokens" => req.max_tokens = map.next_value()?,
                "max_completion_tokens" => req.max_completion_tokens = map.next_value()?,
                "temperature" => req.temperature = map.next_value()?,
                "top_p" => req.top_p = map.next_value()?,
                "stop" => req.stop = map.next_value()?,
                "n" => req.n = map.next_value()?,
                "seed" => req.seed = map.next_value()?,
                "presence_penalty" => req.presence_penalty = map.next_value()?,
                "frequency_penalty" => req.frequency_penalty = map.next_value()?,
                "logprobs" => req.logprobs = map.next_value()?,
                "top_logprobs" => req.top_logprobs = map.next_value()?,
                "user" => req.user = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0),
                "tools" => req.tools = map.next_value()?,
                "tool_choice" => req.tool_choice = map.next_value()?,
                "parallel_tool_calls" => req.parallel_tool_calls = map.next_value()?,
                "response_format" => req.response_format = map.next_value()?,
                "reasoning_effort" => req.reasoning_effort = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0),
                "top_k" => req.top_k = map.next_value()?,
                "functions" => req.functions = map.next_value()?,
                "function_call" => req.function_call = map.next_value::<Option<LegacyFunctionChoice>>()?.map(|c| c.0),
                _ => {
                    let raw = map.next_value::<&'de RawValue>()?;
                    req.other.push((key.clone(), raw));
                }
            }
            seen.push(key);
        }
        req.model = model.ok_or_else(|| de::Error::missing_field("model"))?;
        req.messages = messages.ok_or_else(|| de::Error::missing_field("messages"))?;
        Ok(req)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ContentVisitor<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }
        deserializer.deserialize_any(ContentVisitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Stop<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StopVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for StopVisitor<'a> {
            type Value = Stop<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Stop::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Stop::One(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(Str(s)) = seq.next_element::<Str<'de>>()? {
                    all.push(s);
                }
                Ok(Stop::Many(all))
            }
        }
        deserializer.deserialize_any(StopVisitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ToolChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Named<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
            #[serde(borrow)]
            function: NamedFunction<'a>,
        }
        #[derive(Deserialize)]
        struct NamedFunction<'a> {
            #[serde(borrow)]
            name: Cow<'a, str>,
        }
        struct ChoiceVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ChoiceVisitor<'a> {
            type Value = ToolChoice<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""none", "auto", "required" or {"type":"function","function":{"name":...}}"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "none" => Ok(ToolChoice::None),
                    "auto" => Ok(ToolChoice::Auto),
                    "required" => Ok(ToolChoice::Required),
                    other => Err(E::unknown_variant(other, &["none", "auto", "required"])),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let named = Named::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if named.kind != "function" {
                    return Err(de::Error::unknown_variant(&named.kind, &["function"]));
                }
                Ok(ToolChoice::Function(named.function.name))
            }
        }
        deserializer.deserialize_any(ChoiceVisitor(std::marker::PhantomData))
    }
}

/// The deprecated `function_call` request field: `"none"`, `"auto"` or `{"name": …}`,
/// read as the tool choice it stands for.
struct LegacyFunctionChoice<'a>(ToolChoice<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for LegacyFunctionChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Named<'a> {
            #[serde(borrow)]
            name: Cow<'a, str>,
        }
        struct ChoiceVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ChoiceVisitor<'a> {
            type Value = LegacyFunctionChoice<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""none", "auto" or {"name":...}"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "none" => Ok(LegacyFunctionChoice(ToolChoice::None)),
                    "auto" => Ok(LegacyFunctionChoice(ToolChoice::Auto)),
                    other => Err(E::unknown_variant(other, &["none", "auto"])),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let named = Named::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(LegacyFunctionChoice(ToolChoice::Function(named.name)))
            }
        }
        deserializer.deserialize_any(ChoiceVisitor(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------------
// Response side.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
}

#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<Choice<'a>>,
    pub usage: Usage,
    pub system_fingerprint: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct Choice<'a> {
    pub index: u32,
    pub message: ResponseMessage<'a>,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: FinishReason,
}

/// `choices[].logprobs`: `{"content": [...], "refusal": null}`.
#[derive(Debug, Serialize, PartialEq)]
pub struct ChoiceLogprobs {
    pub content: Vec<TokenLogprob>,
    pub refusal: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    /// The token's UTF-8 bytes, as integers.
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Serialize)]
pub struct ResponseMessage<'a> {
    pub role: &'static str,
    pub content: Option<Cow<'a, str>>,
    pub refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut<'a>>>,
    /// Thinking text (an extension several gateways and providers use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// The provider's thinking blocks with their signatures, to be sent back on the
    /// assistant message (LiteLLM's name and shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<ThinkingBlockOut<'a>>>,
    /// The deprecated single function call, for clients that asked with `functions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionOut<'a>>,
}

/// A thinking block returned to the client (see [`ThinkingBlock`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingBlockOut<'a> {
    Thinking { thinking: Cow<'a, str>, signature: Cow<'a, str> },
    RedactedThinking { data: Cow<'a, str> },
}

#[derive(Debug, Serialize)]
pub struct ToolCallOut<'a> {
    pub id: Cow<'a, str>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionOut<'a>,
}

#[derive(Debug, Serialize)]
pub struct FunctionOut<'a> {
    pub name: Cow<'a, str>,
    pub arguments: Cow<'a, str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
    /// Cache-write tokens have no OpenAI field; LiteLLM's name for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
    pub audio_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u64,
    pub audio_tokens: u64,
    pub accepted_prediction_tokens: u64,
    pub rejected_prediction_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_request;

    #[test]
    fn parses_a_full_request_and_keeps_unknown_fields_raw() {
        let body = br#"{
            "model": "claude", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"}
            ],
            "stream": false, "max_tokens": 10, "temperature": 0.5, "stop": ["a", "b"], "seed": 7,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "logit_bias": {"50256": -100}, "metadata": {"k": "v"}
        }"#;
        let req: ChatRequest = parse_request(body).unwrap();
        assert_eq!(req.model, "claude");
        assert!(matches!(req.model, Cow::Borrowed(_)));
        assert_eq!(req.messages.len(), 4);
        assert_eq!(req.messages[3].role, Role::Tool);
        assert_eq!(req.stop, Some(Stop::Many(vec!["a".into(), "b".into()])));
        assert_eq!(req.tool_choice, Some(ToolChoice::Function("f".into())));
        let other: Vec<(&str, &str)> = req.other.iter().map(|(k, v)| (k.as_ref(), v.get())).collect();
        assert_eq!(other, vec![("logit_bias", r#"{"50256": -100}"#), ("metadata", r#"{"k": "v"}"#)]);
    }

    #[test]
    fn tool_choice_strings() {
        for (text, expected) in
            [(r#""none""#, ToolChoice::None), (r#""auto""#, ToolChoice::Auto), (r#""required""#, ToolChoice::Required)]
        {
            assert_eq!(serde_json::from_str::<ToolChoice>(text).unwrap(), expected);
        }
        assert!(serde_json::from_str::<ToolChoice>(r#""sometimes""#).is_err());
        assert!(serde_json::from_str::<ToolChoice>(r#"{"type":"custom","function":{"name":"x"}}"#).is_err());
    }
}

// ---------------------------------------------------------------------------------
// Embeddings and legacy completions: validated downstream; forwarded raw to
// OpenAI-compatible servers, read by adapters that translate them.

/// `input` of an embeddings request.
#[derive(Debug, PartialEq)]
pub enum EmbeddingInput<'a> {
    Text(Cow<'a, str>),
    Texts(Vec<Cow<'a, str>>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

impl EmbeddingInput<'_> {
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(_) => 1,
            EmbeddingInput::Texts(t) => t.len(),
            EmbeddingInput::Tokens(t) => usize::from(!t.is_empty()),
            EmbeddingInput::TokenLists(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for EmbeddingInput<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Untagged by hand: buffering through serde's Content would copy every string.
        let raw: &'de RawValue = Deserialize::deserialize(deserializer)?;
        let text = raw.get().trim_start();
        let err = |e: serde_json::Error| de::Error::custom(e);
        if text.starts_with('"') {
            return serde_json::from_str::<Str<'de>>(raw.get()).map(|s| EmbeddingInput::Text(s.0)).map_err(err);
        }
        if !text.starts_with('[') {
            return Err(de::Error::invalid_type(
                de::Unexpected::Other("a non-array, non-string value"),
                &"a string or an array",
            ));
        }
        let items: Vec<&'de RawValue> = serde_json::from_str(raw.get()).map_err(err)?;
        match items.first().map(|i| i.get().trim_start().as_bytes().first().copied()) {
            None => Ok(EmbeddingInput::Texts(Vec::new())),
            Some(Some(b'"')) => items
                .iter()
                .map(|i| serde_json::from_str::<Str<'de>>(i.get()).map(|s| s.0))
                .collect::<Result<_, _>>()
                .map(EmbeddingInput::Texts)
                .map_err(err),
            Some(Some(b'[')) => items
                .iter()
                .map(|i| serde_json::from_str::<Vec<i64>>(i.get()))
                .collect::<Result<_, _>>()
                .map(EmbeddingInput::TokenLists)
                .map_err(err),
            _ => items
                .iter()
                .map(|i| serde_json::from_str::<i64>(i.get()))
                .collect::<Result<_, _>>()
                .map(EmbeddingInput::Tokens)
                .map_err(err),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest<'a> {
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub input: EmbeddingInput<'a>,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default, borrow)]
    pub user: Option<Cow<'a, str>>,
    /// Fields that define other operations; a body must not carry them.
    #[serde(default)]
    pub messages: Option<IgnoredAny>,
    #[serde(default)]
    pub prompt: Option<IgnoredAny>,
}

/// `/v1/completions` (legacy): only what the gateway checks; the rest is forwarded.
#[derive(Debug, Deserialize)]
pub struct CompletionsRequest<'a> {
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub prompt: &'a RawValue,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default, borrow)]
    pub user: Option<Cow<'a, str>>,
    /// Fields that define other operations; a body must not carry them.
    #[serde(default)]
    pub messages: Option<IgnoredAny>,
    #[serde(default)]
    pub input: Option<IgnoredAny>,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingList<'a> {
    pub object: &'static str,
    pub data: Vec<EmbeddingOut<'a>>,
    pub model: &'a str,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingOut<'a> {
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingValues<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingValues<'a> {
    /// The provider's array of numbers, forwarded as written.
    Floats(&'a RawValue),
    /// Little-endian float32s, base64-encoded (`encoding_format: "base64"`).
    Base64(String),
}

#[derive(Debug, Default, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}
