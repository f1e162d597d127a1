//! Anthropic Messages API wire types (https://docs.claude.com/en/api/messages).
//! The request side borrows from the parsed OpenAI request it was built from.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Debug, Serialize)]
pub struct MessagesRequest<'r> {
    pub model: &'r str,
    pub max_tokens: u32,
    pub messages: Vec<Turn<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<TextBlock<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<&'r str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDef<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'r>>,
}

/// `output_config`: the effort of adaptive thinking.
#[derive(Debug, Serialize)]
pub struct OutputConfig<'r> {
    pub effort: &'r str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TurnRole {
    User,
    Assistant,
}

#[derive(Debug, Serialize)]
pub struct Turn<'r> {
    pub role: TurnRole,
    pub content: Vec<Block<'r>>,
}

#[derive(Debug, Serialize)]
pub struct TextBlock<'r> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: &'r str,
}

impl<'r> TextBlock<'r> {
    pub fn new(text: &'r str) -> Self {
        TextBlock { kind: "text", text }
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block<'r> {
    Text {
        text: &'r str,
    },
    /// A thinking block of an earlier answer, replayed unchanged (its signature proves it).
    Thinking {
        thinking: &'r str,
        signature: &'r str,
    },
    RedactedThinking {
        data: &'r str,
    },
    Image {
        source: Source<'r>,
    },
    Document {
        source: Source<'r>,
    },
    ToolUse {
        id: Cow<'r, str>,
        name: &'r str,
        input: &'r RawValue,
    },
    ToolResult {
        tool_use_id: Cow<'r, str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        content: Vec<Block<'r>>,
    },
}

impl Block<'_> {
    pub fn is_tool_result(&self) -> bool {
        matches!(self, Block::ToolResult { .. })
    }

    pub fn is_thinking(&self) -> bool {
        matches!(self, Block::Thinking { .. } | Block::RedactedThinking { .. })
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source<'r> {
    Base64 { media_type: &'r str, data: &'r str },
    Url { url: &'r str },
}

#[derive(Debug, Serialize)]
pub struct Metadata<'r> {
    pub user_id: &'r str,
}

#[derive(Debug, Serialize)]
pub struct ToolDef<'r> {
    pub name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'r str>,
    pub input_schema: InputSchema<'r>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InputSchema<'r> {
    Given(&'r RawValue),
    /// `{"type":"object","properties":{}}`: the API requires a schema even for tools
    /// that take no arguments.
    Empty(EmptyObjectSchema),
    /// Any object: JSON mode without a schema.
    AnyObject(AnyObjectSchema),
}

#[derive(Debug, Serialize)]
pub struct AnyObjectSchema {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(rename = "additionalProperties")]
    pub additional_properties: bool,
}

impl Default for AnyObjectSchema {
    fn default() -> Self {
        AnyObjectSchema { kind: "object", additional_properties: true }
    }
}

#[derive(Debug, Serialize)]
pub struct EmptyObjectSchema {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub properties: Empty,
}

impl Default for EmptyObjectSchema {
    fn default() -> Self {
        EmptyObjectSchema { kind: "object", properties: Empty {} }
    }
}

#[derive(Debug, Serialize)]
pub struct Empty {}

#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToolChoice<'r> {
    Auto {
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
    Tool {
        name: &'r str,
        #[serde(skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Thinking {
    Enabled {
        budget_tokens: u32,
    },
    /// The model decides how much to think; `output_config.effort` guides it.
    Adaptive,
}

// ---------------------------------------------------------------------------------
// Response side.

#[derive(Debug, Deserialize)]
pub struct MessagesResponse<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(borrow)]
    pub content: Vec<ResponseBlock<'a>>,
    #[serde(default, borrow)]
    pub stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Usage,
}

/// One content block of a response. A flat struct rather than a tagged enum: serde's
/// tagged enums buffer their input, which would copy every string and break `RawValue`.
#[derive(Debug, Deserialize)]
pub struct ResponseBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub signature: Option<Cow<'a, str>>,
    /// `redacted_thinking`: the encrypted thinking.
    #[serde(default, borrow)]
    pub data: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    /// The cache writes by lifetime (absent from older answers: all 5 minutes then).
    #[serde(default)]
    pub cache_creation: Option<CacheCreation>,
}

/// `usage.cache_creation`: how many of `cache_creation_input_tokens` were written for
/// each lifetime (`cache_control.ttl`), billed at different rates.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct CacheCreation {
    #[serde(default)]
    pub ephemeral_5m_input_tokens: u64,
    #[serde(default)]
    pub ephemeral_1h_input_tokens: u64,
}

#[derive(Debug, Deserialize)]
pub struct ErrorResponse<'a> {
    #[serde(borrow)]
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub message: Cow<'a, str>,
}

// ---------------------------------------------------------------------------------
// Streaming events (`event: <type>` / `data: {"type": <type>, …}`).

/// One streamed event, flat for the same reason as [`ResponseBlock`].
#[derive(Debug, Deserialize)]
pub struct StreamEvent<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default)]
    pub index: Option<usize>,
    #[serde(default, borrow)]
    pub message: Option<StreamMessage<'a>>,
    #[serde(default, borrow)]
    pub content_block: Option<ResponseBlock<'a>>,
    #[serde(default, borrow)]
    pub delta: Option<StreamDelta<'a>>,
    #[serde(default)]
    pub usage: Option<UsageUpdate>,
    #[serde(default, borrow)]
    pub error: Option<ErrorDetail<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct StreamMessage<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    #[serde(default)]
    pub usage: Option<UsageUpdate>,
}

/// `content_block_delta.delta` and `message_delta.delta`.
#[derive(Debug, Deserialize)]
pub struct StreamDelta<'a> {
    #[serde(rename = "type", default, borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub signature: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub stop_reason: Option<Cow<'a, str>>,
}

/// Usage as streamed: `message_start` sends the input side, `message_delta` the
/// cumulative output (and may refresh the rest). Later values win.
#[derive(Debug, Default, Deserialize)]
pub struct UsageUpdate {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation: Option<CacheCreation>,
}

impl Usage {
    pub fn merge(&mut self, update: &UsageUpdate) {
        if let Some(n) = update.input_tokens {
            self.input_tokens = n;
        }
        if let Some(n) = update.output_tokens {
            self.output_tokens = n;
        }
        if update.cache_creation_input_tokens.is_some() {
            self.cache_creation_input_tokens = update.cache_creation_input_tokens;
        }
        if update.cache_read_input_tokens.is_some() {
            self.cache_read_input_tokens = update.cache_read_input_tokens;
        }
        if update.cache_creation.is_some() {
            self.cache_creation = update.cache_creation;
        }
    }
}
