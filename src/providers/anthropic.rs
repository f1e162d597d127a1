//! Anthropic Messages API (docs/providers/anthropic.md).
//!
//! Request: system/developer messages become top-level `system`; tool calls and tool
//! results become `tool_use`/`tool_result` blocks; consecutive turns of one role merge;
//! `max_tokens` is always sent. Response: text blocks join into `content`, `tool_use`
//! blocks become `tool_calls`, thinking becomes `reasoning_content`, usage counts cache
//! reads and writes as prompt tokens.

use std::borrow::Cow;

use super::models::{self, Effort, ModelRules, Reasoning, Sampling};
use super::stream::{StreamContext, StreamTranslator};
use super::{
    handling_for, parse_data_url, provider_error, tool_arguments, unsupported_operation, ErrorDetails, Impact,
    ProviderAdapter, RequestContext, RequestFacts, ResponseContext, ResponseHandling, TranslatedResponse,
    UpstreamRequest,
};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::json::{compact, parse_request};
use crate::legacy;
use crate::operation::Operation;
use crate::schema::anthropic::{
    AnyObjectSchema, Block, EmptyObjectSchema, ErrorDetail, ErrorResponse, InputSchema, MessagesRequest,
    MessagesResponse, Metadata, OutputConfig, Source, TextBlock, Thinking, ToolChoice as AToolChoice, ToolDef, Turn,
    TurnRole, Usage as AUsage,
};
use crate::schema::openai::{
    ChatCompletion, ChatRequest, Choice, CompletionTokensDetails, Content, ContentPart, FinishReason, FunctionOut,
    Message, PartKind, PromptTokensDetails, ResponseFormatKind, ResponseMessage, Role, ThinkingBlockOut, ToolCallOut,
    ToolChoice, Usage,
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
        let mut req: ChatRequest = parse_request(body)?;
        facts.legacy_functions = legacy::normalize(&mut req);
        let mut report = Report::default();
        let out = build_request(&req, ctx, facts.legacy_functions, &mut report)?;
        facts.model = req.model.to_string();
        facts.json_tool = out.tools.iter().any(|t| t.name == JSON_TOOL) && !req_declares(&req, JSON_TOOL);
        let body = serde_json::to_vec(&out).map_err(|e| GatewayError::Misconfigured {
            detail: format!("could not encode the Anthropic request: {e}"),
        })?;
        Ok(UpstreamRequest {
            path: format!("{}/v1/messages", ctx.endpoint.base_path),
            body: Some(body),
            headers: vec![("anthropic-version", ctx.config.anthropic_version.clone())],
            dropped_params: report.dropped,
            adjusted_params: report.adjusted,
            stream: req.stream,
            include_usage: req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
        })
    }

    fn response_handling(
        &self,
        _endpoint: &Endpoint,
        _op: Operation,
        status: u16,
        stream: bool,
        _facts: &RequestFacts,
    ) -> ResponseHandling {
        handling_for(status, stream, ResponseHandling::Translate)
    }

    fn response(&self, ctx: &ResponseContext, _op: Operation, status: u16, body: &[u8]) -> TranslatedResponse {
        if !(200..300).contains(&status) {
            return TranslatedResponse::error(&translate_error(ctx.api_key, status, body));
        }
        match translate_response(ctx, body) {
            Ok((body, billed)) => TranslatedResponse::success(200, body, Some(billed)),
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

/// The parameters a request was sent without, or with other values, for the answer's
/// headers.
#[derive(Default)]
struct Report {
    dropped: Vec<String>,
    adjusted: Vec<String>,
}

/// `reasoning_effort` as Claude takes it: `none` and `minimal` are no thinking.
impl Effort {
    /// Thinking budgets of the budget form, the values LiteLLM uses.
    fn claude_budget(self) -> Option<u32> {
        match self {
            Effort::None | Effort::Minimal => None,
            Effort::Low => Some(1024),
            Effort::Medium => Some(2048),
            Effort::High => Some(4096),
            Effort::XHigh => Some(8192),
        }
    }

    /// `output_config.effort` of the adaptive form (Anthropic's levels are low, medium,
    /// high, xhigh and max).
    fn claude_level(self) -> Option<&'static str> {
        match self {
            Effort::None | Effort::Minimal => None,
            Effort::Low => Some("low"),
            Effort::Medium => Some("medium"),
            Effort::High => Some("high"),
            Effort::XHigh => Some("xhigh"),
        }
    }
}

/// How the request will think.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThinkingPlan {
    Off,
    /// The client's `reasoning_effort`, as a budget.
    Budget(u32),
    /// The client's `reasoning_effort`, as an adaptive effort level.
    Adaptive(&'static str),
    /// The model thinks by itself (it cannot be turned off); nothing is sent.
    Implicit,
}

impl ThinkingPlan {
    /// The client asked for it, so it can be left out when it conflicts.
    fn requested(self) -> bool {
        matches!(self, ThinkingPlan::Budget(_) | ThinkingPlan::Adaptive(_))
    }

    fn active(self) -> bool {
        self != ThinkingPlan::Off
    }
}

/// The thinking the model will do for `effort` (docs/providers/anthropic.md#per-model-rules).
fn plan_thinking(
    rules: &ModelRules,
    effort: Option<Effort>,
    ctx: &RequestContext,
    report: &mut Report,
) -> Result<ThinkingPlan, GatewayError> {
    let asks = effort.is_some_and(|e| e > Effort::Minimal);
    match (rules.reasoning, effort) {
        (Reasoning::AnthropicBudget, Some(effort)) => {
            Ok(effort.claude_budget().map_or(ThinkingPlan::Off, ThinkingPlan::Budget))
        }
        (Reasoning::AnthropicAdaptive { always_on }, Some(effort)) => match effort.claude_level() {
            Some(level) => Ok(ThinkingPlan::Adaptive(level)),
            None if always_on => {
                let detail = format!("{} always think; thinking cannot be turned off.", rules.family);
                ctx.unsupported("reasoning_effort", Impact::Sampling, &detail, &mut report.dropped)?;
                Ok(ThinkingPlan::Implicit)
            }
            None => Ok(ThinkingPlan::Off),
        },
        (Reasoning::AnthropicAdaptive { always_on: true }, None) => Ok(ThinkingPlan::Implicit),
        (_, _) => {
            if asks {
                let detail = format!("{} cannot think.", rules.family);
                ctx.unsupported("reasoning_effort", Impact::Sampling, &detail, &mut report.dropped)?;
            }
            Ok(ThinkingPlan::Off)
        }
    }
}

/// Where a conversation requires thinking blocks: Anthropic refuses thinking unless the
/// assistant turn in final position, or the one answered by the final turn's tool
/// results, starts with a thinking block ("When `thinking` is enabled, a final
/// `assistant` message must start with a thinking block (preceeding the lastmost set of
/// `tool_use` and `tool_result` blocks)."). `Err` says why that turn cannot take thinking.
fn thinking_fits(turns: &[Turn<'_>]) -> Result<(), &'static str> {
    let Some(last) = turns.last() else { return Ok(()) };
    if last.role == TurnRole::Assistant {
        return Err("a conversation ending with an assistant message (a prefill) cannot be continued with thinking.");
    }
    if !last.content.iter().any(Block::is_tool_result) {
        return Ok(());
    }
    let answered = turns.len().checked_sub(2).and_then(|i| turns.get(i)).filter(|t| t.role == TurnRole::Assistant);
    match answered {
        Some(turn) if !turn.content.first().is_some_and(Block::is_thinking) => Err(
            "the assistant message whose tool calls the last tool results answer carries no thinking_blocks; send assistant messages back as the gateway returned them.",
        ),
        _ => Ok(()),
    }
}

fn build_request<'r>(
    req: &'r ChatRequest<'_>,
    ctx: &'r RequestContext,
    legacy_functions: bool,
    report: &mut Report,
) -> Result<MessagesRequest<'r>, GatewayError> {
    let model = ctx.endpoint.model_or(&req.model);
    let rules = models::rules(NAME, model);
    let dropped = &mut report.dropped;
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

    let mut converted = convert_messages(&req.messages)?;
    let effort = req.reasoning_effort.as_deref().map(Effort::parse).transpose()?;
    let mut thinking = plan_thinking(rules, effort, ctx, report)?;
    let forced_choice = matches!(req.tool_choice, Some(ToolChoice::Required | ToolChoice::Function(_)));
    if thinking.requested() {
        let conflict = if forced_choice {
            Err("Anthropic refuses thinking with a forced tool choice (tool_choice \"required\" or a named tool).")
        } else {
            thinking_fits(&converted.turns)
        };
        if let Err(detail) = conflict {
            ctx.unsupported("reasoning_effort", Impact::Sampling, detail, &mut report.dropped)?;
            thinking = ThinkingPlan::Off;
        }
    }
    // Thinking blocks of earlier answers go back only to a request that thinks: with
    // thinking off, Anthropic refuses them in final position, and ignores them elsewhere.
    // A turn may not end with one either ("The final block in an assistant message
    // cannot be `thinking`").
    strip_thinking(&mut converted.turns, !thinking.active());
    prefill_rules(req, ctx, rules, &mut converted.turns, report)?;

    let client_max = req.max_completion_tokens.or(req.max_tokens);
    let default_max = ctx.endpoint.max_tokens.unwrap_or(ctx.config.default_max_tokens);
    let max_tokens = match (client_max, thinking) {
        (Some(max), ThinkingPlan::Budget(budget)) if max <= budget => {
            return Err(GatewayError::invalid(
                if req.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" },
                format!("Invalid value: the token limit ({max}) must exceed the thinking budget ({budget}) that reasoning_effort selects for Anthropic models."),
            ));
        }
        (Some(max), _) => max,
        (None, ThinkingPlan::Budget(budget)) => default_max.saturating_add(budget),
        (None, _) => default_max,
    };
    let (temperature, top_p, top_k) = sampling(req, ctx, rules, thinking.active(), report)?;

    let (mut tools, mut tool_choice) = tools_and_choice(req, &converted.history_tool_names, legacy_functions);
    if forced_choice && !rules.forced_tool_choice {
        let detail = format!("{} cannot be forced to call a tool; tool_choice \"auto\" lets it choose.", rules.family);
        ctx.unsupported("tool_choice", Impact::Semantic, &detail, &mut report.dropped)?;
        tool_choice = Some(AToolChoice::Auto { disable_parallel_tool_use: disable_parallel(req, legacy_functions) });
    }
    // JSON mode: a tool whose input schema is the requested one, forced unless thinking
    // is on (Anthropic refuses forced tools with thinking), the model cannot be forced,
    // or the client's own tools are in play; its call becomes the answer's content.
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
            let forced = tools.is_empty() && !thinking.active() && rules.forced_tool_choice;
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
            report.dropped.push("user".into());
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
        model,
        max_tokens,
        messages: converted.turns,
        system: converted.system,
        temperature,
        top_p,
        top_k,
        stop_sequences,
        stream: req.stream,
        metadata,
        tools,
        tool_choice,
        thinking: match thinking {
            ThinkingPlan::Budget(budget_tokens) => Some(Thinking::Enabled { budget_tokens }),
            ThinkingPlan::Adaptive(_) => Some(Thinking::Adaptive),
            ThinkingPlan::Off | ThinkingPlan::Implicit => None,
        },
        output_config: match thinking {
            ThinkingPlan::Adaptive(effort) => Some(OutputConfig { effort }),
            _ => None,
        },
    })
}

/// `temperature`, `top_p` and `top_k` as the model takes them
/// (docs/providers/anthropic.md#per-model-rules).
fn sampling(
    req: &ChatRequest,
    ctx: &RequestContext,
    rules: &ModelRules,
    thinking: bool,
    report: &mut Report,
) -> Result<(Option<f64>, Option<f64>, Option<u32>), GatewayError> {
    let (mut temperature, mut top_p, mut top_k) = (req.temperature, req.top_p, req.top_k);
    let drop =
        |name: &str, detail: &str, dropped: &mut Vec<String>| ctx.unsupported(name, Impact::Sampling, detail, dropped);
    if temperature.is_some_and(|t| t > rules.temperature_max) {
        let max = rules.temperature_max;
        ctx.adjust(
            "temperature",
            &max.to_string(),
            &format!("Anthropic's temperature range is 0 to {max} (OpenAI's is 0 to 2)."),
            &mut report.adjusted,
        )?;
        temperature = Some(max);
    }
    match rules.sampling {
        Sampling::DefaultOnly => {
            let detail = format!("{} take no sampling parameters (only the default temperature, 1).", rules.family);
            if temperature.is_some_and(|t| t != 1.0) {
                drop("temperature", &detail, &mut report.dropped)?;
            }
            // The default, sent or not, asks for nothing.
            temperature = None;
            if top_p.take().is_some() {
                drop("top_p", &detail, &mut report.dropped)?;
            }
            if top_k.take().is_some() {
                drop("top_k", &detail, &mut report.dropped)?;
            }
        }
        Sampling::TemperatureOrTopP if temperature.is_some() && top_p.is_some() => {
            let detail = format!("{} take temperature or top_p, not both.", rules.family);
            drop("top_p", &detail, &mut report.dropped)?;
            top_p = None;
        }
        Sampling::TemperatureOrTopP | Sampling::Any => {}
    }
    if thinking {
        if temperature.is_some_and(|t| t != 1.0) {
            drop("temperature", "with thinking, Anthropic takes only temperature 1.", &mut report.dropped)?;
            temperature = None;
        }
        if top_k.take().is_some() {
            drop("top_k", "Anthropic refuses top_k with thinking.", &mut report.dropped)?;
        }
        if top_p.is_some_and(|p| p < 0.95) {
            drop("top_p", "with thinking, Anthropic takes top_p between 0.95 and 1 only.", &mut report.dropped)?;
            top_p = None;
        }
    }
    Ok((temperature, top_p, top_k))
}

/// Removes thinking blocks where Anthropic would refuse them: everywhere when `all`,
/// else at the end of an assistant turn. Turns left empty go, and neighbours of one role
/// merge again.
fn strip_thinking(turns: &mut Vec<Turn<'_>>, all: bool) {
    let mut changed = false;
    for turn in turns.iter_mut().filter(|t| t.role == TurnRole::Assistant) {
        let before = turn.content.len();
        if all {
            turn.content.retain(|b| !b.is_thinking());
        } else {
            while turn.content.last().is_some_and(Block::is_thinking) {
                turn.content.pop();
            }
        }
        changed |= turn.content.len() != before;
    }
    if changed {
        let old = std::mem::take(turns);
        for turn in old.into_iter().filter(|t| !t.content.is_empty()) {
            push_turn(turns, turn.role, turn.content);
        }
    }
}

/// A conversation ending with an assistant message asks the model to continue it
/// (a prefill): refused by the newest models, and by every model when the text ends in
/// whitespace ("final assistant content cannot end with trailing whitespace").
fn prefill_rules(
    req: &ChatRequest,
    ctx: &RequestContext,
    rules: &ModelRules,
    turns: &mut Vec<Turn<'_>>,
    report: &mut Report,
) -> Result<(), GatewayError> {
    let Some(last) = turns.last_mut().filter(|t| t.role == TurnRole::Assistant) else { return Ok(()) };
    if !last.content.iter().all(|b| matches!(b, Block::Text { .. })) {
        return Ok(()); // tool calls without results: Anthropic says what is wrong
    }
    let param = format!("messages[{}]", req.messages.len().saturating_sub(1));
    if !rules.assistant_prefill {
        let detail = format!(
            "{} do not support assistant message prefill; the conversation must end with a user message.",
            rules.family
        );
        ctx.unsupported(&param, Impact::Semantic, &detail, &mut report.dropped)?;
        turns.pop();
        return Ok(());
    }
    if let Some(Block::Text { text }) = last.content.last_mut() {
        let trimmed = text.trim_end();
        if trimmed.len() != text.len() {
            let detail = "Anthropic refuses a final assistant message ending in whitespace.";
            ctx.adjust(&format!("{param}.content"), "trailing whitespace removed", detail, &mut report.adjusted)?;
            *text = trimmed;
            if trimmed.is_empty() {
                last.content.pop();
            }
        }
    }
    if last.content.is_empty() {
        turns.pop();
    }
    Ok(())
}

fn disable_parallel(req: &ChatRequest, legacy_functions: bool) -> Option<bool> {
    // The legacy interface answers with one function call per message.
    (legacy_functions || req.parallel_tool_calls == Some(false)).then_some(true)
}

fn tools_and_choice<'r>(
    req: &'r ChatRequest<'_>,
    history_tool_names: &[&'r str],
    legacy_functions: bool,
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
    let disable_parallel = disable_parallel(req, legacy_functions);
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

/// docs/providers/anthropic.md#message-conversion. System and developer messages are all hoisted into `system`
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
                let mut blocks: Vec<Block<'r>> = thinking_blocks(i, message)?;
                blocks.extend(
                    text_of(message.content.as_ref()).filter(|t| !t.is_empty()).map(|text| Block::Text { text }),
                );
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

/// The thinking blocks an assistant message carries back (`thinking_blocks`), first in
/// its turn as Anthropic returned them.
fn thinking_blocks<'r>(i: usize, message: &'r Message<'_>) -> Result<Vec<Block<'r>>, GatewayError> {
    let mut blocks = Vec::new();
    for (j, block) in message.thinking_blocks.iter().flatten().enumerate() {
        blocks.push(match (block.kind.as_ref(), &block.thinking, &block.signature, &block.data) {
            ("thinking", Some(thinking), Some(signature), _) => Block::Thinking { thinking, signature },
            ("redacted_thinking", _, _, Some(data)) => Block::RedactedThinking { data },
            _ => return Err(crate::validate::invalid_thinking_block(i, j)),
        });
    }
    Ok(blocks)
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

/// What Anthropic bills for an answer (docs/providers/anthropic.md#usage): `input_tokens`
/// counts neither cache reads nor cache writes; `cache_creation` splits the writes by
/// lifetime (an answer without it wrote for 5 minutes, the only lifetime then); thinking
/// is part of `output_tokens`, at the output rate, and not reported apart.
pub fn billed(u: &AUsage) -> crate::usage::Usage {
    let written = u.cache_creation_input_tokens.unwrap_or(0);
    let hour = u.cache_creation.map_or(0, |c| c.ephemeral_1h_input_tokens).min(written);
    crate::usage::Usage {
        input: u.input_tokens,
        cache_read: u.cache_read_input_tokens.unwrap_or(0),
        cache_write_5m: written - hour,
        cache_write_1h: hour,
        output: u.output_tokens,
        reasoning: 0,
    }
}

fn translate_response(ctx: &ResponseContext, body: &[u8]) -> Result<(Vec<u8>, crate::usage::Usage), GatewayError> {
    let resp: MessagesResponse = serde_json::from_slice(body)
        .map_err(|e| GatewayError::ProviderMalformed { provider: NAME, detail: e.to_string() })?;
    let mut texts: Vec<Cow<str>> = Vec::new();
    let mut thinking: Vec<Cow<str>> = Vec::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = false;
    for block in &resp.content {
        match block.kind.as_ref() {
            "text" => texts.extend(block.text.as_deref().map(Cow::Borrowed)),
            "thinking" => {
                let text = block.thinking.as_deref().unwrap_or_default();
                thinking.push(Cow::Borrowed(text));
                // With its signature, the block can go back on the next request.
                if let Some(signature) = block.signature.as_deref() {
                    thinking_blocks.push(ThinkingBlockOut::Thinking {
                        thinking: Cow::Borrowed(text),
                        signature: Cow::Borrowed(signature),
                    });
                }
            }
            "redacted_thinking" => {
                if let Some(data) = block.data.as_deref() {
                    thinking_blocks.push(ThinkingBlockOut::RedactedThinking { data: Cow::Borrowed(data) });
                }
            }
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
            // Server-tool blocks: no OpenAI equivalent.
            _ => {}
        }
    }
    let mut finish = match finish_reason(resp.stop_reason.as_deref()) {
        // The forced JSON tool is how the answer arrives, not a call to make.
        FinishReason::ToolCalls if json_answer && tool_calls.is_empty() => FinishReason::Stop,
        other => other,
    };
    // A client of the legacy interface reads one `function_call` (the request allowed
    // no parallel calls, so there is at most one).
    let function_call = if ctx.request.legacy_functions && !tool_calls.is_empty() {
        if finish == FinishReason::ToolCalls {
            finish = FinishReason::FunctionCall;
        }
        Some(tool_calls.swap_remove(0).function)
    } else {
        None
    };
    let completion = ChatCompletion {
        id: &resp.id,
        object: "chat.completion",
        created: ctx.created,
        model: &resp.model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant",
                content: join(texts),
                refusal: None,
                tool_calls: (!tool_calls.is_empty() && function_call.is_none()).then_some(tool_calls),
                reasoning_content: join(thinking).filter(|t| !t.is_empty()),
                thinking_blocks: (!thinking_blocks.is_empty()).then_some(thinking_blocks),
                function_call,
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage: usage(&resp.usage),
        system_fingerprint: None,
    };
    serde_json::to_vec(&completion)
        .map(|body| (body, billed(&resp.usage)))
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
