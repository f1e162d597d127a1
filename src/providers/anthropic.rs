//! Anthropic Messages API (PROVIDERS.md §3).
//!
//! Request: system/developer messages become top-level `system`; tool calls and tool
//! results become `tool_use`/`tool_result` blocks; consecutive turns of one role merge;
//! `max_tokens` is always sent. Response: text blocks join into `content`, `tool_use`
//! blocks become `tool_calls`, thinking becomes `reasoning_content`, usage counts cache
//! reads and writes as prompt tokens.

use std::borrow::Cow;

use super::stream::{StreamContext, StreamTranslator};
use super::{
    handling_for, parse_data_url, provider_error, tool_arguments, unsupported_operation, ErrorDetails, Impact,
    ProviderAdapter, RequestContext, RequestFacts, ResponseContext, ResponseHandling, TranslatedResponse,
    UpstreamRequest,
};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::json::{compact, parse_request};
use crate::operation::Operation;
use crate::schema::anthropic::{
    AnyObjectSchema, Block, EmptyObjectSchema, ErrorDetail, ErrorResponse, InputSchema, MessagesRequest,
    MessagesResponse, Metadata, Source, TextBlock, Thinking, ToolChoice as AToolChoice, ToolDef, Turn, TurnRole,
    Usage as AUsage,
};
use crate::schema::openai::{
    ChatCompletion, ChatRequest, Choice, CompletionTokensDetails, Content, ContentPart, FinishReason, FunctionOut,
    Message, PartKind, PromptTokensDetails, ResponseFormatKind, ResponseMessage, Role, ToolCallOut, ToolChoice, Usage,
};

pub struct Anthropic;

pub const NAME: &str = "anthropic";

/// The tool that carries a JSON-mode answer (the name LiteLLM uses too).
pub const JSON_TOOL: &str = "json_tool_call";

impl ProviderAdapter for Anthropic {
    fn request(
        &self,
        ctx: &RequestContext,
        op: Operation,
        body: &[u8],
        facts: &mut RequestFacts,
    ) -> Result<UpstreamRequest, GatewayError> {
        if op != Operation::Chat {
            return Err(unsupported_operation(NAME, op));
        }
        let req: ChatRequest = parse_request(body)?;
        let mut dropped = Vec::new();
        let out = build_request(&req, ctx, &mut dropped)?;
        facts.model = req.model.to_string();
        facts.json_tool = out.tools.iter().any(|t| t.name == JSON_TOOL) && !req_declares(&req, JSON_TOOL);
        let body = serde_json::to_vec(&out).map_err(|e| GatewayError::Misconfigured {
            detail: format!("could not encode the Anthropic request: {e}"),
        })?;
        Ok(UpstreamRequest {
            path: format!("{}/v1/messages", ctx.endpoint.base_path),
            body: Some(body),
            headers: vec![("anthropic-version", ctx.config.anthropic_version.clone())],
            dropped_params: dropped,
            stream: req.stream,
            include_usage: req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
        })
    }

    fn response_handling(&self, _endpoint: &Endpoint, _op: Operation, status: u16, stream: bool) -> ResponseHandling {
        handling_for(status, stream, ResponseHandling::Translate)
    }

    fn response(&self, ctx: &ResponseContext, _op: Operation, status: u16, body: &[u8]) -> TranslatedResponse {
        if !(200..300).contains(&status) {
            return TranslatedResponse::error(&translate_error(ctx.api_key, status, body));
        }
        match translate_response(ctx, body) {
            Ok(body) => TranslatedResponse { status: 200, body },
            Err(err) => TranslatedResponse::error(&err),
        }
    }

    fn stream(&self, ctx: StreamContext) -> Box<dyn StreamTranslator> {
        Box::new(stream::translator(ctx))
    }
}

/// A content part Anthropic cannot take at all (no policy makes it acceptable).
fn unsupported(param: &str, detail: &str) -> GatewayError {
    GatewayError::UnsupportedParameter { param: param.into(), provider: NAME, detail: Some(detail.into()) }
}

fn req_declares(req: &ChatRequest, name: &str) -> bool {
    req.tools.iter().flatten().filter_map(|t| t.function.as_ref()).any(|f| f.name == name)
}

/// Thinking budgets per `reasoning_effort`, the values LiteLLM uses.
fn thinking_budget(effort: &str) -> Result<Option<u32>, GatewayError> {
    match effort {
        "none" | "minimal" => Ok(None),
        "low" => Ok(Some(1024)),
        "medium" => Ok(Some(2048)),
        "high" => Ok(Some(4096)),
        "xhigh" => Ok(Some(8192)),
        other => Err(GatewayError::invalid(
            "reasoning_effort",
            format!("Invalid value for 'reasoning_effort': {other:?}. Supported values are: 'none', 'minimal', 'low', 'medium', 'high' and 'xhigh'."),
        )),
    }
}

fn build_request<'r>(
    req: &'r ChatRequest<'_>,
    ctx: &'r RequestContext,
    dropped: &mut Vec<String>,
) -> Result<MessagesRequest<'r>, GatewayError> {
    if req.n.is_some_and(|n| n > 1) {
        ctx.unsupported("n", Impact::Semantic, "Anthropic returns one choice per request.", dropped)?;
    }
    if req.logprobs == Some(true) {
        ctx.unsupported("logprobs", Impact::Semantic, "Anthropic does not return token log probabilities.", dropped)?;
    }
    if req.top_logprobs.is_some() {
        ctx.unsupported(
            "top_logprobs",
            Impact::Semantic,
            "Anthropic does not return token log probabilities.",
            dropped,
        )?;
    }
    for (name, present) in [
        ("seed", req.seed.is_some()),
        ("presence_penalty", req.presence_penalty.is_some()),
        ("frequency_penalty", req.frequency_penalty.is_some()),
    ] {
        if present {
            ctx.unsupported(name, Impact::Sampling, "Anthropic has no such setting.", dropped)?;
        }
    }
    for (name, _) in &req.other {
        ctx.unsupported(name, Impact::Sampling, "Anthropic has no such setting.", dropped)?;
    }

    let converted = convert_messages(&req.messages)?;
    let budget = req.reasoning_effort.as_deref().map(thinking_budget).transpose()?.flatten();
    let client_max = req.max_completion_tokens.or(req.max_tokens);
    let default_max = ctx.endpoint.max_tokens.unwrap_or(ctx.config.default_max_tokens);
    let max_tokens = match (client_max, budget) {
        (Some(max), Some(budget)) if max <= budget => {
            return Err(GatewayError::invalid(
                if req.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" },
                format!("Invalid value: the token limit ({max}) must exceed the thinking budget ({budget}) that reasoning_effort selects for Anthropic models."),
            ));
        }
        (Some(max), _) => max,
        (None, Some(budget)) => default_max.saturating_add(budget),
        (None, None) => default_max,
    };

    let (mut tools, mut tool_choice) = tools_and_choice(req, &converted.history_tool_names);
    // JSON mode: a tool whose input schema is the requested one, forced unless thinking
    // is on (Anthropic refuses forced tools with thinking) or the client's own tools
    // are in play; its call becomes the answer's content.
    if let Some(format) = &req.response_format {
        let schema = match format.kind {
            ResponseFormatKind::Text => None,
            ResponseFormatKind::JsonObject => Some(InputSchema::AnyObject(AnyObjectSchema::default())),
            ResponseFormatKind::JsonSchema => {
                let schema =
                    format.json_schema.as_ref().and_then(|s| s.schema).ok_or_else(|| GatewayError::InvalidRequest {
                        message: "Missing required parameter: 'response_format.json_schema.schema'.".into(),
                        param: Some("response_format.json_schema.schema".into()),
                        code: "missing_required_parameter",
                    })?;
                Some(InputSchema::Given(schema))
            }
        };
        if let Some(input_schema) = schema {
            let forced = tools.is_empty() && budget.is_none();
            tools.push(ToolDef {
                name: JSON_TOOL,
                description: Some("Respond with a JSON value that follows this schema."),
                input_schema,
            });
            if forced {
                tool_choice = Some(AToolChoice::Tool { name: JSON_TOOL, disable_parallel_tool_use: None });
            }
        }
    }
    let metadata = match req.user.as_deref() {
        // Anthropic asks for an opaque id, never personal data such as an email.
        Some(user) if !user.is_empty() && !user.contains('@') => Some(Metadata { user_id: user }),
        Some(_) => {
            dropped.push("user".into());
            None
        }
        None => None,
    };
    let stop_sequences = req
        .stop
        .as_ref()
        .map(|s| s.sequences().into_iter().filter(|seq| !seq.trim().is_empty()).collect())
        .unwrap_or_default();

    Ok(MessagesRequest {
        model: ctx.endpoint.model_or(&req.model),
        max_tokens,
        messages: converted.turns,
        system: converted.system,
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences,
        stream: req.stream,
        metadata,
        tools,
        tool_choice,
        thinking: budget.map(|budget_tokens| Thinking::Enabled { budget_tokens }),
    })
}

fn tools_and_choice<'r>(
    req: &'r ChatRequest<'_>,
    history_tool_names: &[&'r str],
) -> (Vec<ToolDef<'r>>, Option<AToolChoice<'r>>) {
    let declared: Vec<ToolDef<'r>> = req
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.function.as_ref())
        .map(|f| ToolDef {
            name: &f.name,
            description: f.description.as_deref(),
            input_schema: f
                .parameters
                .map_or_else(|| InputSchema::Empty(EmptyObjectSchema::default()), InputSchema::Given),
        })
        .collect();
    if declared.is_empty() {
        if history_tool_names.is_empty() {
            return (Vec::new(), None);
        }
        // Anthropic rejects tool blocks in the history unless tools are declared;
        // declare the ones the history used, and forbid new calls, as the client asked
        // for no tools.
        let synthesized = history_tool_names
            .iter()
            .map(|name| ToolDef {
                name,
                description: None,
                input_schema: InputSchema::Empty(EmptyObjectSchema::default()),
            })
            .collect();
        return (synthesized, Some(AToolChoice::None));
    }
    let disable_parallel = (req.parallel_tool_calls == Some(false)).then_some(true);
    let choice = match &req.tool_choice {
        None if disable_parallel.is_some() => Some(AToolChoice::Auto { disable_parallel_tool_use: disable_parallel }),
        None => None,
        Some(ToolChoice::Auto) => Some(AToolChoice::Auto { disable_parallel_tool_use: disable_parallel }),
        Some(ToolChoice::Required) => Some(AToolChoice::Any { disable_parallel_tool_use: disable_parallel }),
        Some(ToolChoice::None) => Some(AToolChoice::None),
        Some(ToolChoice::Function(name)) => {
            Some(AToolChoice::Tool { name: name.as_ref(), disable_parallel_tool_use: disable_parallel })
        }
    };
    (declared, choice)
}

struct Converted<'r> {
    system: Vec<TextBlock<'r>>,
    turns: Vec<Turn<'r>>,
    /// Tool names used by assistant turns in the history, first use first.
    history_tool_names: Vec<&'r str>,
}

/// PROVIDERS.md §3.3. System and developer messages are all hoisted into `system`
/// (Anthropic has no other slot for them), in order.
fn convert_messages<'r>(messages: &'r [Message<'_>]) -> Result<Converted<'r>, GatewayError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn<'r>> = Vec::with_capacity(messages.len());
    let mut history_tool_names: Vec<&'r str> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match message.role {
            Role::System | Role::Developer => {
                for text in text_of(message.content.as_ref()) {
                    if !text.is_empty() {
                        system.push(TextBlock::new(text));
                    }
                }
            }
            Role::User => {
                let blocks = user_blocks(i, message.content.as_ref())?;
                if blocks.is_empty() {
                    return Err(GatewayError::invalid(
                        format!("messages[{i}].content"),
                        format!("Invalid 'messages[{i}].content': Anthropic models reject empty user messages."),
                    ));
                }
                push_turn(&mut turns, TurnRole::User, blocks);
            }
            Role::Assistant => {
                let mut blocks: Vec<Block<'r>> = text_of(message.content.as_ref())
                    .filter(|t| !t.is_empty())
                    .map(|text| Block::Text { text })
                    .collect();
                for (j, call) in message.tool_calls.iter().flatten().enumerate() {
                    let input = tool_arguments(&call.function.arguments)
                        .ok_or_else(|| GatewayError::invalid(
                            format!("messages[{i}].tool_calls[{j}].function.arguments"),
                            format!("Invalid 'messages[{i}].tool_calls[{j}].function.arguments': must be a JSON object encoded as a string."),
                        ))?;
                    if !history_tool_names.contains(&call.function.name.as_ref()) {
                        history_tool_names.push(&call.function.name);
                    }
                    blocks.push(Block::ToolUse { id: tool_use_id(&call.id), name: &call.function.name, input });
                }
                // An assistant message with nothing in it carries no information, and
                // Anthropic rejects empty turns.
                if !blocks.is_empty() {
                    push_turn(&mut turns, TurnRole::Assistant, blocks);
                }
            }
            Role::Tool => {
                let content = text_of(message.content.as_ref())
                    .filter(|t| !t.is_empty())
                    .map(|text| Block::Text { text })
                    .collect();
                let id = message.tool_call_id.as_deref().unwrap_or_default();
                push_turn(
                    &mut turns,
                    TurnRole::User,
                    vec![Block::ToolResult { tool_use_id: tool_use_id(id), content }],
                );
            }
            Role::Function => {
                return Err(GatewayError::invalid(
                    format!("messages[{i}].role"),
                    "Invalid value for 'role': legacy 'function' messages are not supported; use 'tool' messages.",
                ));
            }
        }
    }
    // Tool results must open the user turn that answers a tool call.
    for turn in turns.iter_mut().filter(|t| t.role == TurnRole::User) {
        if turn.content.iter().skip_while(|b| b.is_tool_result()).any(Block::is_tool_result) {
            let (mut results, rest): (Vec<_>, Vec<_>) =
                std::mem::take(&mut turn.content).into_iter().partition(Block::is_tool_result);
            results.extend(rest);
            turn.content = results;
        }
    }
    match turns.first() {
        None => return Err(GatewayError::invalid(
            "messages",
            "Invalid 'messages': Anthropic models need at least one user or assistant message besides system messages.",
        )),
        // The conversation must open with a user turn.
        Some(first) if first.role == TurnRole::Assistant => {
            turns.insert(0, Turn { role: TurnRole::User, content: vec![Block::Text { text: "." }] });
        }
        Some(_) => {}
    }
    Ok(Converted { system, turns, history_tool_names })
}

fn push_turn<'r>(turns: &mut Vec<Turn<'r>>, role: TurnRole, blocks: Vec<Block<'r>>) {
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(Turn { role, content: blocks }),
    }
}

/// The text of a string content or of its text parts.
fn text_of<'r>(content: Option<&'r Content<'_>>) -> Box<dyn Iterator<Item = &'r str> + 'r> {
    match content {
        None => Box::new(std::iter::empty()),
        Some(Content::Text(text)) => Box::new(std::iter::once(text.as_ref())),
        Some(Content::Parts(parts)) => {
            Box::new(parts.iter().filter(|p| p.kind == PartKind::Text).filter_map(|p| p.text.as_deref()))
        }
    }
}

fn user_blocks<'r>(i: usize, content: Option<&'r Content<'_>>) -> Result<Vec<Block<'r>>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(vec![Block::Text { text }]),
        Some(Content::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                if let Some(block) = user_part(&format!("messages[{i}].content[{j}]"), part)? {
                    blocks.push(block);
                }
            }
            Ok(blocks)
        }
    }
}

const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
const DOCUMENT_TYPES: [&str; 2] = ["application/pdf", "text/plain"];

fn user_part<'r>(param: &str, part: &'r ContentPart<'_>) -> Result<Option<Block<'r>>, GatewayError> {
    match part.kind {
        PartKind::Text => Ok(part.text.as_deref().filter(|t| !t.is_empty()).map(|text| Block::Text { text })),
        PartKind::ImageUrl => {
            let url = part.image_url.as_ref().map(|u| u.url.as_ref()).unwrap_or_default();
            let param = format!("{param}.image_url.url");
            if url.starts_with("https://") || url.starts_with("http://") {
                return Ok(Some(Block::Image { source: Source::Url { url } }));
            }
            let (media_type, data) = parse_data_url(url).ok_or_else(|| {
                GatewayError::invalid(
                    &param,
                    format!("Invalid '{param}': expected an http(s) URL or a base64 data: URL."),
                )
            })?;
            if !IMAGE_TYPES.contains(&media_type) {
                return Err(GatewayError::invalid(
                    &param,
                    format!(
                        "Invalid '{param}': image type {media_type:?} is not supported; use one of {IMAGE_TYPES:?}."
                    ),
                ));
            }
            Ok(Some(Block::Image { source: Source::Base64 { media_type, data } }))
        }
        PartKind::File => {
            let file = part.file.as_ref();
            if file.is_some_and(|f| f.file_id.is_some()) {
                return Err(unsupported(
                    &format!("{param}.file.file_id"),
                    "uploaded file ids cannot be sent to Anthropic; send file_data instead.",
                ));
            }
            let param = format!("{param}.file.file_data");
            let data_url = file.and_then(|f| f.file_data.as_deref()).unwrap_or_default();
            let (media_type, data) = parse_data_url(data_url).ok_or_else(|| {
                GatewayError::invalid(&param, format!("Invalid '{param}': expected a base64 data: URL."))
            })?;
            if !DOCUMENT_TYPES.contains(&media_type) {
                return Err(unsupported(
                    &param,
                    &format!("document type {media_type:?} is not supported; use one of {DOCUMENT_TYPES:?}."),
                ));
            }
            Ok(Some(Block::Document { source: Source::Base64 { media_type, data } }))
        }
        PartKind::InputAudio => Err(unsupported(param, "Anthropic models do not accept audio input.")),
        // A refusal part is only valid in assistant messages; validation keeps it there.
        PartKind::Refusal => Ok(None),
    }
}

/// Anthropic accepts tool-use ids matching `^[a-zA-Z0-9_-]+$`. Ids minted elsewhere are
/// mapped deterministically, so a call and its result still pair up.
fn tool_use_id(id: &str) -> Cow<'_, str> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Cow::Borrowed(id);
    }
    // FNV-1a: deterministic across requests and VMs, unlike a seeded hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::from("toolu_");
    for _ in 0..11 {
        out.push(char::from(ALPHABET.get((hash % 62) as usize).copied().unwrap_or(b'0')));
        hash /= 62;
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------
// Response side.

fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("end_turn" | "stop_sequence" | "pause_turn") | None => FinishReason::Stop,
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => {
            log::warn!("anthropic: unknown stop_reason {other:?}, reporting finish_reason \"stop\"");
            FinishReason::Stop
        }
    }
}

pub fn usage(u: &AUsage) -> Usage {
    let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
    // Anthropic's input_tokens excludes cached tokens; OpenAI's prompt_tokens includes them.
    let prompt = u.input_tokens.saturating_add(cache_write).saturating_add(cache_read);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: prompt.saturating_add(u.output_tokens),
        prompt_tokens_details: PromptTokensDetails { cached_tokens: cache_read, audio_tokens: 0 },
        completion_tokens_details: CompletionTokensDetails::default(),
        cache_creation_input_tokens: u.cache_creation_input_tokens,
    }
}

fn translate_response(ctx: &ResponseContext, body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let resp: MessagesResponse = serde_json::from_slice(body)
        .map_err(|e| GatewayError::ProviderMalformed { provider: NAME, detail: e.to_string() })?;
    let mut texts: Vec<Cow<str>> = Vec::new();
    let mut thinking: Vec<Cow<str>> = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = false;
    for block in &resp.content {
        match block.kind.as_ref() {
            "text" => texts.extend(block.text.as_deref().map(Cow::Borrowed)),
            "thinking" => thinking.extend(block.thinking.as_deref().map(Cow::Borrowed)),
            // JSON mode: the gateway's own tool carries the answer.
            "tool_use" if ctx.request.json_tool && block.name.as_deref() == Some(JSON_TOOL) => {
                texts.push(block.input.map_or(Cow::Borrowed("{}"), |raw| compact(raw.get())));
                json_answer = true;
            }
            "tool_use" => {
                let (Some(id), Some(name)) = (&block.id, &block.name) else {
                    return Err(GatewayError::ProviderMalformed {
                        provider: NAME,
                        detail: "tool_use block without id or name".into(),
                    });
                };
                let arguments = block.input.map_or(Cow::Borrowed("{}"), |raw| compact(raw.get()));
                tool_calls.push(ToolCallOut {
                    id: Cow::Borrowed(id.as_ref()),
                    kind: "function",
                    function: FunctionOut { name: Cow::Borrowed(name.as_ref()), arguments },
                });
            }
            // redacted_thinking, server-tool blocks: no OpenAI equivalent.
            _ => {}
        }
    }
    let tool_calls_empty = tool_calls.is_empty();
    let content = join(texts);
    let completion = ChatCompletion {
        id: &resp.id,
        object: "chat.completion",
        created: ctx.created,
        model: &resp.model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant",
                content,
                refusal: None,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                reasoning_content: join(thinking),
            },
            logprobs: None,
            finish_reason: match finish_reason(resp.stop_reason.as_deref()) {
                // The forced JSON tool is how the answer arrives, not a call to make.
                FinishReason::ToolCalls if json_answer && tool_calls_empty => FinishReason::Stop,
                other => other,
            },
        }],
        usage: usage(&resp.usage),
        system_fingerprint: None,
    };
    serde_json::to_vec(&completion)
        .map_err(|e| GatewayError::ProviderMalformed { provider: NAME, detail: e.to_string() })
}

fn join(mut parts: Vec<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Cow::Owned(parts.concat())),
    }
}

fn translate_error(api_key: Option<&str>, status: u16, body: &[u8]) -> GatewayError {
    let parsed: Option<ErrorResponse> = serde_json::from_slice(body).ok();
    let Some(ErrorResponse { error }) = parsed else {
        let excerpt = super::body_excerpt(body);
        let message = if excerpt.is_empty() {
            format!("Anthropic returned HTTP {status} with no error message.")
        } else {
            format!("Anthropic returned HTTP {status}: {excerpt}")
        };
        return provider_error(api_key, status, &message, ErrorDetails::default());
    };
    error_from_detail(api_key, status, &error)
}

fn error_from_detail(api_key: Option<&str>, status: u16, error: &ErrorDetail) -> GatewayError {
    let code = match (status, error.kind.as_ref()) {
        (400, _) if error.message.contains("prompt is too long") => Some("context_length_exceeded".to_string()),
        (404, _) | (_, "not_found_error") if error.message.contains("model") => Some("model_not_found".to_string()),
        (_, "overloaded_error") => Some("overloaded".to_string()),
        _ => None,
    };
    provider_error(api_key, status, &error.message, ErrorDetails { code, ..ErrorDetails::default() })
}

/// The HTTP status each Anthropic error type comes with; an error event in a stream
/// carries only the type.
fn status_of(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "conflict_error" => 409,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

mod stream;

#[cfg(test)]
mod tests;
