//! Google Gemini API (AI Studio keys; docs/providers/gemini.md): `generateContent`,
//! `streamGenerateContent?alt=sse`, `embedContent` and `batchEmbedContents`.
//!
//! Gemini keys function results by name, not id: names are recovered from the history's
//! tool calls. It may return calls without ids: ids are minted deterministically. It
//! may attach a thought signature to a call that must come back with it (Gemini 3):
//! the signature travels inside the OpenAI tool-call id (`<id>__thought__<signature>`),
//! which clients echo unchanged.
//!
//! What each model takes (thinking budgets or levels, sampling ranges) comes from the
//! rules table ([`super::models`]), resolved by the deployment's `unsupported_params`
//! policy. Clients of the deprecated `functions` interface ([`crate::legacy`]) get their
//! answer in its shape: one `function_call`, finish reason `function_call`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::models::{self, Effort, ModelRules, Reasoning};
use super::stream::{StreamContext, StreamTranslator};
use super::{
    handling_for, minted_call_id, parse_data_url, provider_error, tool_arguments, ErrorDetails, Impact,
    ProviderAdapter, RequestContext, RequestFacts, ResponseContext, ResponseHandling, TranslatedResponse,
    UpstreamRequest,
};
use crate::codec::base64;
use crate::endpoint::Endpoint;
use crate::error::{ErrorType, GatewayError};
use crate::json::{compact, parse_request};
use crate::legacy;
use crate::operation::Operation;
use crate::schema::gemini::{
    BatchEmbedContentsRequest, BatchEmbedContentsResponse, Blob, Content as GContent, EmbedContent,
    EmbedContentRequest, EmbedContentResponse, EmbedText, ErrorResponse, FunctionCall, FunctionCallingConfig,
    FunctionDeclaration, FunctionOutput, FunctionResponse, GenerateContentRequest, GenerateContentResponse,
    GenerationConfig, LogprobsResult, Part, SystemInstruction, ThinkingConfig, Tool, ToolConfig, UsageMetadata,
};
use crate::schema::openai::{
    ChatCompletion, ChatRequest, Choice, ChoiceLogprobs, CompletionTokensDetails, Content, ContentPart, EmbeddingInput,
    EmbeddingList, EmbeddingOut, EmbeddingUsage, EmbeddingValues, EmbeddingsRequest, EncodingFormat, FinishReason,
    FunctionOut, Message, PartKind, PromptTokensDetails, ResponseFormatKind, ResponseMessage, Role, TokenLogprob,
    ToolCallOut, ToolChoice, TopLogprob, Usage,
};

pub struct Gemini;

pub const NAME: &str = "gemini";

/// Separates a minted or provider id from Gemini's thought signature in a tool-call id.
const SIGNATURE_MARK: &str = "__thought__";

/// Gemini accepts at most five stop sequences.
const MAX_STOP_SEQUENCES: usize = 5;

impl ProviderAdapter for Gemini {
    fn request(
        &self,
        ctx: &RequestContext,
        op: Operation,
        body: &[u8],
        facts: &mut RequestFacts,
    ) -> Result<UpstreamRequest, GatewayError> {
        match op {
            Operation::Chat => chat_request(ctx, body, facts),
            Operation::Embeddings => embeddings_request(ctx, body, facts),
            Operation::Completions => Err(super::unsupported_operation(NAME, op)),
        }
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

    fn response(&self, ctx: &ResponseContext, op: Operation, status: u16, body: &[u8]) -> TranslatedResponse {
        if !(200..300).contains(&status) {
            return TranslatedResponse::error(&translate_error(ctx.api_key, status, body));
        }
        let result = match op {
            Operation::Embeddings => embeddings_response(ctx, body),
            _ => chat_response(ctx, body),
        };
        match result {
            // Gemini reports no tokens for embeddings: the count is the gateway's estimate.
            Ok((body, billed)) => TranslatedResponse {
                usage_estimated: op == Operation::Embeddings,
                ..TranslatedResponse::success(200, body, Some(billed))
            },
            Err(err) => TranslatedResponse::error(&err),
        }
    }

    fn stream(&self, ctx: StreamContext) -> Box<dyn StreamTranslator> {
        Box::new(stream::translator(ctx))
    }
}

// ---------------------------------------------------------------------------------
// Chat requests.

impl Effort {
    /// Thinking budgets of the budget form (the values LiteLLM uses, except `minimal`).
    /// Unlike Claude, Gemini 2.5 models think by default, so `minimal` needs a small budget
    /// rather than none; `none` is budget 0, which turns thinking off where the model
    /// allows it.
    fn gemini_budget(self) -> u32 {
        match self {
            Effort::None => 0,
            Effort::Minimal => 512,
            Effort::Low => 1024,
            Effort::Medium => 2048,
            Effort::High => 4096,
            Effort::XHigh => 8192,
        }
    }

    /// `thinkingLevel` as the API spells it (`ThinkingConfig.ThinkingLevel`).
    fn gemini_level(self) -> Option<&'static str> {
        match self {
            Effort::None => None,
            Effort::Minimal => Some("MINIMAL"),
            Effort::Low => Some("LOW"),
            Effort::Medium => Some("MEDIUM"),
            Effort::High => Some("HIGH"),
            Effort::XHigh => Some("XHIGH"),
        }
    }
}

/// `thinkingConfig` for `reasoning_effort` on a model with `rules`
/// (docs/providers/gemini.md#reasoning-models): a budget within the model's range or a
/// level it takes. What the model cannot take as asked is adjusted to the nearest value
/// it can (`reasoning_effort=<sent>` in the adjusted parameters), or refused under the
/// `reject` policy; on a model that cannot think, a request to think is dropped.
fn plan_thinking(
    ctx: &RequestContext,
    rules: &ModelRules,
    effort: Option<&str>,
    report: &mut Report,
) -> Result<Option<ThinkingConfig>, GatewayError> {
    let Some(effort) = effort.map(Effort::parse).transpose()? else { return Ok(None) };
    let family = rules.family;
    match rules.reasoning {
        Reasoning::GeminiBudget { min, max, can_disable } => {
            let asked = effort.gemini_budget();
            let budget = match asked {
                0 if can_disable => 0,
                0 => min,
                b => b.max(min).min(max),
            };
            if budget != asked {
                let detail = if asked == 0 {
                    format!("{family} cannot turn thinking off; the smallest thinking budget is {min} tokens.")
                } else {
                    format!("the thinking budgets of {family} range from {min} to {max} tokens.")
                };
                ctx.adjust("reasoning_effort", &format!("thinkingBudget {budget}"), &detail, &mut report.adjusted)?;
            }
            Ok(Some(ThinkingConfig {
                thinking_budget: Some(budget),
                thinking_level: None,
                include_thoughts: budget > 0,
            }))
        }
        Reasoning::GeminiLevel { levels } => {
            let levels: Vec<Effort> =
                levels.iter().filter_map(|l| Effort::parse(l).ok()).filter(|l| *l != Effort::None).collect();
            // The lowest level when thinking cannot be turned off; else the level asked, or
            // the next higher one the model has, or its highest.
            let level = match effort {
                Effort::None => levels.first(),
                asked => levels.iter().find(|l| **l >= asked).or(levels.last()),
            };
            let Some(&level) = level else { return Ok(None) };
            if level != effort {
                let detail = if effort == Effort::None {
                    format!("{family} cannot turn thinking off; the lowest thinking level is {}.", level.name())
                } else {
                    let names: Vec<&str> = levels.iter().map(|l| l.name()).collect();
                    format!("the thinking levels of {family} are {}.", names.join(", "))
                };
                ctx.adjust("reasoning_effort", level.name(), &detail, &mut report.adjusted)?;
            }
            Ok(Some(ThinkingConfig {
                thinking_budget: None,
                thinking_level: level.gemini_level(),
                include_thoughts: true,
            }))
        }
        // Unsupported, or another provider's form (a misplaced row): nothing to send.
        _ => {
            if effort != Effort::None {
                let detail = format!("{family} cannot think.");
                ctx.unsupported("reasoning_effort", Impact::Sampling, &detail, &mut report.dropped)?;
            }
            Ok(None)
        }
    }
}

/// The parameters a request was sent without, or with other values, for the answer's
/// headers.
#[derive(Default)]
struct Report {
    dropped: Vec<String>,
    adjusted: Vec<String>,
}

/// Google's documented stand-in for a thought signature Gemini never issued
/// (ai.google.dev/gemini-api/docs/thought-signatures, FAQ): sent on function calls whose
/// signature could not come back, i.e. the deprecated `function_call`, which has no id to
/// carry it.
const DUMMY_SIGNATURE: &str = "skip_thought_signature_validator";

/// Gemini's documented range for `generationConfig.logprobs`.
const MAX_TOP_LOGPROBS: u32 = 20;

/// Gemini's integer fields are int32.
const INT32_MAX: u32 = i32::MAX as u32;

/// The model id as it goes into the URL path (`models/{model}:method`): Gemini ids are
/// `[a-zA-Z0-9._-]`; anything else would change the path.
fn model_path_segment(model: &str) -> Result<&str, GatewayError> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if model.is_empty() || !model.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(GatewayError::invalid(
            "model",
            format!("Invalid 'model': {model:?} is not a Gemini model id (letters, digits, '.', '_' and '-' only)."),
        ));
    }
    Ok(model)
}

/// `responseLogprobs` and `logprobs` (docs/providers/gemini.md#request-mapping): OpenAI's `top_logprobs`
/// needs `logprobs: true`, and Gemini takes at most 20 alternatives.
fn logprob_settings(req: &ChatRequest) -> Result<(Option<bool>, Option<u32>), GatewayError> {
    match (req.logprobs, req.top_logprobs) {
        (Some(true), top) => {
            if let Some(n) = top.filter(|n| *n > MAX_TOP_LOGPROBS) {
                return Err(GatewayError::invalid(
                    "top_logprobs",
                    format!("Invalid 'top_logprobs': {n} is greater than {MAX_TOP_LOGPROBS}, the most Gemini returns. Expected a value between 0 and {MAX_TOP_LOGPROBS}."),
                ));
            }
            Ok((Some(true), top))
        }
        (_, Some(_)) => Err(GatewayError::invalid(
            "top_logprobs",
            "Invalid value for 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is given.",
        )),
        (_, None) => Ok((None, None)),
    }
}

/// An object schema without properties describes a function without parameters:
/// Gemini rejects an `OBJECT` with empty `properties`, so such schemas are left out.
fn parameters_schema(schema: Option<&RawValue>) -> Option<&RawValue> {
    let schema = schema?;
    let Ok(map) = serde_json::from_str::<BTreeMap<&str, &RawValue>>(schema.get()) else {
        return Some(schema); // not an object: Gemini will say what it thinks of it
    };
    let is_empty = |raw: &RawValue| {
        matches!(raw.get().trim(), "{}" | "[]" | "null" | "false" | "true")
            || serde_json::from_str::<BTreeMap<&str, &RawValue>>(raw.get()).is_ok_and(|m| m.is_empty())
            || serde_json::from_str::<Vec<&RawValue>>(raw.get()).is_ok_and(|v| v.is_empty())
    };
    let trivial = map.iter().all(|(key, value)| match *key {
        "type" => value.get().trim() == "\"object\"",
        "properties" | "required" | "additionalProperties" => is_empty(value),
        "$schema" | "title" | "description" | "strict" => true,
        _ => false,
    });
    (!trivial).then_some(schema)
}

fn chat_request(ctx: &RequestContext, body: &[u8], facts: &mut RequestFacts) -> Result<UpstreamRequest, GatewayError> {
    let mut req: ChatRequest = parse_request(body)?;
    let mut legacy_history = LegacyHistory::of(&req.messages);
    facts.legacy_functions = legacy::normalize(&mut req);
    let model = model_path_segment(ctx.endpoint.model_or(&req.model))?;
    let rules = models::rules(NAME, model);
    let mut report = Report::default();
    let dropped = &mut report.dropped;
    let mut n = req.n.filter(|n| *n > 1);
    if n.is_some() && req.stream {
        ctx.unsupported("n", Impact::Semantic, "several choices cannot be streamed from Gemini.", dropped)?;
        n = None;
    }
    let (response_logprobs, top_logprobs) = logprob_settings(&req)?;
    for (name, present) in [("user", req.user.is_some()), ("parallel_tool_calls", req.parallel_tool_calls.is_some())] {
        if present {
            ctx.unsupported(name, Impact::Sampling, "Gemini has no such setting.", dropped)?;
        }
    }
    let mut seed = req.seed;
    if seed.is_some_and(|s| i32::try_from(s).is_err()) {
        ctx.unsupported("seed", Impact::Sampling, "Gemini seeds are 32-bit integers.", dropped)?;
        seed = None;
    }
    // `top_k` is a common extension (LiteLLM, vLLM) that Gemini has.
    let top_k = req.top_k.map(|k| k.min(INT32_MAX));
    for (name, _) in &req.other {
        ctx.unsupported(name, Impact::Sampling, "Gemini has no such setting.", dropped)?;
    }
    // OpenAI's range too, so only a client that skipped validation exceeds it.
    let mut temperature = req.temperature;
    if temperature.is_some_and(|t| t > rules.temperature_max) {
        let max = rules.temperature_max;
        let detail = format!("the temperature range of {} is 0 to {max}.", rules.family);
        ctx.adjust("temperature", &max.to_string(), &detail, &mut report.adjusted)?;
        temperature = Some(max);
    }
    // Gemini refuses empty stop sequences; they stop nothing anyway.
    let stop: Vec<&str> =
        req.stop.as_ref().map(|s| s.sequences()).unwrap_or_default().into_iter().filter(|s| !s.is_empty()).collect();
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(GatewayError::invalid("stop", "Invalid 'stop': Gemini accepts at most 5 stop sequences."));
    }

    // Gemini 3 (the models taking thinking levels) checks thought signatures.
    if !matches!(rules.reasoning, Reasoning::GeminiLevel { .. }) {
        legacy_history.calls.clear();
    }
    let converted = convert_messages(&req.messages, &legacy_history)?;
    let thinking_config = plan_thinking(ctx, rules, req.reasoning_effort.as_deref(), &mut report)?;
    let declarations: Vec<FunctionDeclaration> = req
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.function.as_ref())
        .map(|f| FunctionDeclaration {
            name: &f.name,
            description: f.description.as_deref(),
            parameters_json_schema: parameters_schema(f.parameters),
        })
        .collect();
    let tool_config = match (&req.tool_choice, declarations.is_empty()) {
        (_, true) | (None, false) => None,
        (Some(choice), false) => {
            let (mode, allowed) = match choice {
                ToolChoice::Auto => ("AUTO", Vec::new()),
                ToolChoice::Required => ("ANY", Vec::new()),
                ToolChoice::None => ("NONE", Vec::new()),
                ToolChoice::Function(name) => {
                    if !declarations.iter().any(|d| d.name == name.as_ref()) {
                        return Err(GatewayError::invalid(
                            "tool_choice",
                            format!("Invalid 'tool_choice': no function named {name:?} is declared in 'tools'."),
                        ));
                    }
                    ("ANY", vec![name.as_ref()])
                }
            };
            Some(ToolConfig {
                function_calling_config: FunctionCallingConfig { mode, allowed_function_names: allowed },
            })
        }
    };
    let (response_mime_type, response_json_schema) = match &req.response_format {
        Some(f) if f.kind == ResponseFormatKind::JsonObject => (Some("application/json"), None),
        Some(f) if f.kind == ResponseFormatKind::JsonSchema => {
            let schema = f.json_schema.as_ref().and_then(|s| s.schema).ok_or_else(|| GatewayError::InvalidRequest {
                message: "Missing required parameter: 'response_format.json_schema.schema'.".into(),
                param: Some("response_format.json_schema.schema".into()),
                code: "missing_required_parameter",
            })?;
            (Some("application/json"), Some(schema))
        }
        _ => (None, None),
    };
    let request = GenerateContentRequest {
        contents: converted.contents,
        system_instruction: (!converted.system.is_empty()).then_some(SystemInstruction { parts: converted.system }),
        tools: if declarations.is_empty() { Vec::new() } else { vec![Tool { function_declarations: declarations }] },
        tool_config,
        generation_config: GenerationConfig {
            temperature,
            top_p: req.top_p,
            top_k,
            // An upper bound: clamping to Gemini's int32 changes nothing.
            max_output_tokens: req.max_completion_tokens.or(req.max_tokens).map(|m| m.min(INT32_MAX)),
            stop_sequences: stop,
            candidate_count: n,
            seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            response_mime_type,
            response_json_schema,
            response_logprobs,
            logprobs: top_logprobs,
            thinking_config,
        },
    };
    let body = serde_json::to_vec(&request)
        .map_err(|e| GatewayError::Misconfigured { detail: format!("could not encode the Gemini request: {e}") })?;
    let method = if req.stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
    facts.model = req.model.to_string();
    Ok(UpstreamRequest {
        path: format!("{}/v1beta/models/{model}:{method}", ctx.endpoint.base_path),
        body: Some(body),
        headers: Vec::new(),
        dropped_params: report.dropped,
        adjusted_params: report.adjusted,
        stream: req.stream,
        include_usage: req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
    })
}

struct Converted<'r> {
    system: Vec<Part<'r>>,
    contents: Vec<GContent<'r>>,
}

/// Which messages (by index) used the deprecated interface, before [`legacy::normalize`]
/// rewrote them into tool calls and results.
#[derive(Debug, Default)]
struct LegacyHistory {
    /// Assistant messages with a `function_call`: it has no id, so no thought signature
    /// can have come back with it.
    calls: Vec<usize>,
    /// `role: "function"` results, which name their function instead of a call id.
    results: Vec<usize>,
}

impl LegacyHistory {
    fn of(messages: &[Message<'_>]) -> LegacyHistory {
        let indexes = |keep: &dyn Fn(&Message) -> bool| {
            messages.iter().enumerate().filter(|(_, m)| keep(m)).map(|(i, _)| i).collect::<Vec<usize>>()
        };
        LegacyHistory {
            calls: indexes(&|m| m.role == Role::Assistant && m.function_call.is_some()),
            results: indexes(&|m| m.role == Role::Function),
        }
    }
}

/// docs/providers/gemini.md#request-mapping: all system/developer text into `systemInstruction`; assistant
/// turns as `model`; tool results as `functionResponse` parts (named from the call they
/// answer) in a `user` turn; consecutive turns of one role merged. Calls of the messages
/// in `legacy.calls` that carry no thought signature get Google's dummy.
fn convert_messages<'r>(messages: &'r [Message<'_>], legacy: &LegacyHistory) -> Result<Converted<'r>, GatewayError> {
    let mut system = Vec::new();
    let mut contents: Vec<GContent<'r>> = Vec::with_capacity(messages.len());
    let mut call_names: BTreeMap<&'r str, &'r str> = BTreeMap::new();
    for (i, message) in messages.iter().enumerate() {
        match message.role {
            Role::System | Role::Developer => {
                system.extend(
                    text_parts(message.content.as_ref()).map(|text| Part { text: Some(text), ..Part::default() }),
                );
            }
            Role::User => {
                let parts = user_parts(i, message.content.as_ref())?;
                if parts.is_empty() {
                    return Err(GatewayError::invalid(
                        format!("messages[{i}].content"),
                        format!("Invalid 'messages[{i}].content': Gemini models reject empty user messages."),
                    ));
                }
                push(&mut contents, "user", parts);
            }
            Role::Assistant => {
                let mut parts: Vec<Part<'r>> = text_parts(message.content.as_ref())
                    .map(|text| Part { text: Some(text), ..Part::default() })
                    .collect();
                for (j, call) in message.tool_calls.iter().flatten().enumerate() {
                    let args = tool_arguments(&call.function.arguments).ok_or_else(|| {
                        GatewayError::invalid(
                            format!("messages[{i}].tool_calls[{j}].function.arguments"),
                            format!("Invalid 'messages[{i}].tool_calls[{j}].function.arguments': must be a JSON object encoded as a string."),
                        )
                    })?;
                    call_names.insert(&call.id, &call.function.name);
                    let (id, mut signature) = split_call_id(&call.id);
                    if signature.is_none() && legacy.calls.contains(&i) {
                        signature = Some(DUMMY_SIGNATURE);
                    }
                    parts.push(Part {
                        function_call: Some(FunctionCall { name: &call.function.name, args, id }),
                        thought_signature: signature,
                        ..Part::default()
                    });
                }
                if !parts.is_empty() {
                    push(&mut contents, "model", parts);
                }
            }
            // `function` messages are `tool` messages by now (legacy::normalize).
            Role::Tool | Role::Function => {
                let call_id = message.tool_call_id.as_deref().unwrap_or_default();
                let name = call_names.get(call_id).copied().ok_or_else(|| match message.name.as_deref() {
                    // A deprecated `function` message: its id is the gateway's, its name the client's.
                    Some(name) if legacy.results.contains(&i) => GatewayError::invalid(
                        format!("messages[{i}].name"),
                        format!("Invalid 'messages[{i}]': no earlier assistant message has a function_call to {name:?} that this function result answers; Gemini needs the call before its result."),
                    ),
                    _ => GatewayError::invalid(
                        format!("messages[{i}].tool_call_id"),
                        format!("Invalid 'messages[{i}].tool_call_id': no earlier assistant message has a tool call with id {call_id:?}; Gemini needs the function's name."),
                    ),
                })?;
                let (id, _) = split_call_id(call_id);
                let response = function_output(message.content.as_ref());
                push(
                    &mut contents,
                    "user",
                    vec![Part { function_response: Some(FunctionResponse { name, response, id }), ..Part::default() }],
                );
            }
        }
    }
    match contents.first() {
        None => return Err(GatewayError::invalid(
            "messages",
            "Invalid 'messages': Gemini models need at least one user or assistant message besides system messages.",
        )),
        // A conversation opens with a user turn.
        Some(first) if first.role == "model" => {
            contents.insert(0, GContent { role: "user", parts: vec![Part { text: Some("."), ..Part::default() }] });
        }
        Some(_) => {}
    }
    Ok(Converted { system, contents })
}

fn push<'r>(contents: &mut Vec<GContent<'r>>, role: &'static str, parts: Vec<Part<'r>>) {
    match contents.last_mut() {
        Some(last) if last.role == role => last.parts.extend(parts),
        _ => contents.push(GContent { role, parts }),
    }
}

fn text_parts<'r>(content: Option<&'r Content<'_>>) -> Box<dyn Iterator<Item = &'r str> + 'r> {
    match content {
        None => Box::new(std::iter::empty()),
        Some(Content::Text(text)) => Box::new(std::iter::once(text.as_ref()).filter(|t| !t.is_empty())),
        Some(Content::Parts(parts)) => Box::new(
            parts
                .iter()
                .filter(|p| p.kind == PartKind::Text)
                .filter_map(|p| p.text.as_deref())
                .filter(|t| !t.is_empty()),
        ),
    }
}

fn user_parts<'r>(i: usize, content: Option<&'r Content<'_>>) -> Result<Vec<Part<'r>>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(vec![Part { text: Some(text), ..Part::default() }]),
        Some(Content::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                if let Some(p) = user_part(&format!("messages[{i}].content[{j}]"), part)? {
                    out.push(p);
                }
            }
            Ok(out)
        }
    }
}

fn user_part<'r>(param: &str, part: &'r ContentPart<'_>) -> Result<Option<Part<'r>>, GatewayError> {
    let inline = |mime_type, data| Some(Part { inline_data: Some(Blob { mime_type, data }), ..Part::default() });
    match part.kind {
        PartKind::Text => {
            Ok(part.text.as_deref().filter(|t| !t.is_empty()).map(|text| Part { text: Some(text), ..Part::default() }))
        }
        PartKind::ImageUrl => {
            let url = part.image_url.as_ref().map(|u| u.url.as_ref()).unwrap_or_default();
            let param = format!("{param}.image_url.url");
            match parse_data_url(url) {
                Some((mime, data)) => Ok(inline(mime, data)),
                None if url.starts_with("http://") || url.starts_with("https://") => {
                    Err(GatewayError::UnsupportedParameter {
                        param,
                        provider: NAME,
                        detail: Some(
                            "Gemini needs images inline: send a base64 data: URL (the gateway does not fetch URLs)."
                                .into(),
                        ),
                    })
                }
                None => Err(GatewayError::invalid(&param, format!("Invalid '{param}': expected a base64 data: URL."))),
            }
        }
        PartKind::File => {
            if part.file.as_ref().is_some_and(|f| f.file_id.is_some() && f.file_data.is_none()) {
                return Err(GatewayError::UnsupportedParameter {
                    param: format!("{param}.file.file_id"),
                    provider: NAME,
                    detail: Some("OpenAI file ids mean nothing to Gemini: send the file inline as a base64 data: URL in 'file_data'.".into()),
                });
            }
            let param = format!("{param}.file.file_data");
            let data_url = part.file.as_ref().and_then(|f| f.file_data.as_deref()).unwrap_or_default();
            let (mime, data) = parse_data_url(data_url).ok_or_else(|| {
                GatewayError::invalid(&param, format!("Invalid '{param}': expected a base64 data: URL."))
            })?;
            Ok(inline(mime, data))
        }
        PartKind::InputAudio => Err(GatewayError::UnsupportedParameter {
            param: param.into(),
            provider: NAME,
            detail: Some("audio input is not translated for Gemini yet.".into()),
        }),
        PartKind::Refusal => Ok(None),
    }
}

/// A tool result as Gemini's `response` object: the tool's JSON object as is, else
/// its text under `output`.
fn function_output<'r>(content: Option<&'r Content<'_>>) -> FunctionOutput<'r> {
    let texts: Vec<&'r str> = text_parts(content).collect();
    match texts.as_slice() {
        [only] => match serde_json::from_str::<&RawValue>(only) {
            Ok(raw) if raw.get().trim_start().starts_with('{') => FunctionOutput::Object(raw),
            _ => FunctionOutput::Text { output: Cow::Borrowed(only) },
        },
        _ => FunctionOutput::Text { output: Cow::Owned(texts.concat()) },
    }
}

/// `<id>__thought__<signature>` → (the id Gemini gave, if any, and the signature).
/// Only a base64 signature is one Gemini can have sent (it rejects others with "Base64
/// decoding failed"); anything else after the mark is left out.
fn split_call_id(id: &str) -> (Option<&str>, Option<&str>) {
    match id.split_once(SIGNATURE_MARK) {
        Some((base, signature)) => (gemini_id(base), Some(signature).filter(|s| is_base64(s))),
        None => (gemini_id(id), None),
    }
}

/// Standard or URL-safe base64, as proto3 JSON accepts for `bytes`.
fn is_base64(text: &str) -> bool {
    let data = text.trim_end_matches('=');
    !data.is_empty()
        && text.len() - data.len() <= 2
        && data.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/-_".contains(&b))
}

/// Ids the gateway minted are not Gemini's to see.
fn gemini_id(id: &str) -> Option<&str> {
    (!id.is_empty() && !id.starts_with("call_")).then_some(id)
}

/// The OpenAI tool-call id for a Gemini call: its id (or a minted one), carrying the
/// thought signature when there is one.
pub(crate) fn call_id(gemini_id: Option<&str>, signature: Option<&str>, seed: &str, index: usize) -> String {
    let base = gemini_id.filter(|id| !id.is_empty()).map_or_else(|| minted_call_id(seed, index), str::to_string);
    match signature.filter(|s| !s.is_empty()) {
        Some(signature) => format!("{base}{SIGNATURE_MARK}{signature}"),
        None => base,
    }
}

// ---------------------------------------------------------------------------------
// Chat responses.

pub(crate) fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("STOP") | Some("FINISH_REASON_UNSPECIFIED") | None => FinishReason::Stop,
        Some("MAX_TOKENS") => FinishReason::Length,
        Some(
            "SAFETY"
            | "RECITATION"
            | "LANGUAGE"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
            | "IMAGE_OTHER"
            | "NO_IMAGE"
            | "OTHER",
        ) => FinishReason::ContentFilter,
        Some(other) => {
            log::warn!("gemini: finishReason {other:?} reported as \"stop\"");
            FinishReason::Stop
        }
    }
}

/// Gemini's abnormal ends (docs/providers/gemini.md#finish-reasons, docs/providers/gateway-rules.md#abnormal-terminations): reported as `stop` when
/// the candidate still carries content or calls, as an error when it carries nothing.
pub(crate) fn is_abnormal_finish(reason: Option<&str>) -> bool {
    matches!(
        reason,
        Some(
            "MALFORMED_FUNCTION_CALL"
                | "UNEXPECTED_TOOL_CALL"
                | "TOO_MANY_TOOL_CALLS"
                | "MALFORMED_RESPONSE"
                | "MISSING_THOUGHT_SIGNATURE"
        )
    )
}

/// The error for an answer that ended abnormally with nothing in it: a 502 the client
/// may retry (the model erred), except a missing thought signature, which is the
/// request's fault: the client must send tool-call ids back exactly as it got them.
pub(crate) fn empty_abnormal_answer(api_key: Option<&str>, reason: &str) -> GatewayError {
    if reason == "MISSING_THOUGHT_SIGNATURE" {
        let message = "Gemini refused the conversation (MISSING_THOUGHT_SIGNATURE): a function call in the history lacks the thought signature Gemini attached to it. Send assistant tool-call ids back exactly as the gateway returned them.";
        return provider_error(
            api_key,
            400,
            message,
            ErrorDetails { code: Some("missing_thought_signature".into()), ..ErrorDetails::default() },
        );
    }
    let message = format!("Gemini ended its answer with {reason} and returned no content; retrying may help.");
    provider_error(
        api_key,
        502,
        &message,
        ErrorDetails { code: Some("upstream_error".into()), ..ErrorDetails::default() },
    )
}

/// docs/providers/gemini.md#usage: thoughts are not in `candidatesTokenCount`, cached tokens are in
/// `promptTokenCount`.
pub(crate) fn usage(u: &UsageMetadata) -> Usage {
    let prompt = u.prompt_token_count.saturating_add(u.tool_use_prompt_token_count);
    let completion = u.candidates_token_count.saturating_add(u.thoughts_token_count);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: if u.total_token_count > 0 { u.total_token_count } else { prompt.saturating_add(completion) },
        prompt_tokens_details: PromptTokensDetails { cached_tokens: u.cached_content_token_count, audio_tokens: 0 },
        completion_tokens_details: CompletionTokensDetails {
            reasoning_tokens: u.thoughts_token_count,
            ..Default::default()
        },
        cache_creation_input_tokens: None,
    }
}

/// What Gemini bills for an answer (docs/providers/gemini.md#usage): `promptTokenCount`
/// includes the cached tokens (billed at the cache rate) and tool-use prompt tokens are
/// input too; thoughts are output, billed at the output rate, reported apart.
pub(crate) fn billed(u: &UsageMetadata) -> crate::usage::Usage {
    let prompt = u.prompt_token_count.saturating_add(u.tool_use_prompt_token_count);
    let cached = u.cached_content_token_count.min(prompt);
    crate::usage::Usage {
        input: prompt - cached,
        cache_read: cached,
        cache_write_5m: 0,
        cache_write_1h: 0,
        output: u.candidates_token_count.saturating_add(u.thoughts_token_count),
        reasoning: u.thoughts_token_count,
    }
}

fn chat_response(ctx: &ResponseContext, body: &[u8]) -> Result<(Vec<u8>, crate::usage::Usage), GatewayError> {
    let resp: GenerateContentResponse = match serde_json::from_slice(body) {
        Ok(resp) => resp,
        Err(e) => {
            // A Google status error under a 2xx (a proxy, or the array form): report it as one.
            if parse_error_body(body).is_some() {
                return Err(translate_error(ctx.api_key, 200, body));
            }
            return Err(GatewayError::ProviderMalformed { provider: NAME, detail: e.to_string() });
        }
    };
    if resp.candidates.is_empty() && resp.prompt_feedback.is_none() && parse_error_body(body).is_some() {
        return Err(translate_error(ctx.api_key, 200, body));
    }
    let fallback_id = format!("chatcmpl-gemini-{}", ctx.created);
    let id = resp.response_id.as_deref().unwrap_or(&fallback_id);
    let mut calls_so_far = 0;
    let mut choices = Vec::with_capacity(resp.candidates.len().max(1));
    // The first candidate that ended abnormally with nothing in it, while no other had anything.
    let mut empty_abnormal: Option<&str> = None;
    let mut usable = false;
    for (i, candidate) in resp.candidates.iter().enumerate() {
        let mut texts: Vec<&str> = Vec::new();
        let mut thoughts: Vec<&str> = Vec::new();
        let mut tool_calls = Vec::new();
        for part in candidate.content.iter().flat_map(|c| &c.parts) {
            if let Some(call) = &part.function_call {
                tool_calls.push(ToolCallOut {
                    id: Cow::Owned(call_id(call.id.as_deref(), part.thought_signature.as_deref(), id, calls_so_far)),
                    kind: "function",
                    function: FunctionOut {
                        name: Cow::Borrowed(call.name.as_ref()),
                        arguments: call.args.map_or(Cow::Borrowed("{}"), |a| compact(a.get())),
                    },
                });
                calls_so_far += 1;
            } else if let Some(text) = part.text.as_deref() {
                if part.thought == Some(true) {
                    thoughts.push(text);
                } else {
                    texts.push(text);
                }
            }
        }
        // Gemini says STOP when it calls functions.
        let mut finish = if tool_calls.is_empty() {
            finish_reason(candidate.finish_reason.as_deref())
        } else {
            FinishReason::ToolCalls
        };
        let empty = texts.is_empty() && tool_calls.is_empty();
        // A client of the legacy interface reads one `function_call`; Gemini has no switch
        // against parallel calls, so any others are left out.
        let function_call = if ctx.request.legacy_functions && !tool_calls.is_empty() {
            if tool_calls.len() > 1 {
                log::warn!(
                    "gemini: {} function calls for a client of the deprecated functions interface; it gets the first",
                    tool_calls.len()
                );
            }
            finish = FinishReason::FunctionCall;
            Some(tool_calls.remove(0).function)
        } else {
            None
        };
        match candidate.finish_reason.as_deref() {
            Some(reason) if empty && is_abnormal_finish(Some(reason)) => {
                empty_abnormal = empty_abnormal.or(Some(reason));
            }
            _ => usable = true,
        }
        choices.push(Choice {
            index: candidate.index.unwrap_or(i as u32),
            message: ResponseMessage {
                role: "assistant",
                content: join(texts),
                refusal: None,
                tool_calls: (!tool_calls.is_empty() && function_call.is_none()).then_some(tool_calls),
                thinking_blocks: None,
                function_call,
                reasoning_content: join(thoughts),
            },
            logprobs: candidate.logprobs_result.and_then(|raw| choice_logprobs(raw.get())),
            finish_reason: finish,
        });
    }
    if let (Some(reason), false) = (empty_abnormal, usable) {
        return Err(empty_abnormal_answer(ctx.api_key, reason));
    }
    if choices.is_empty() {
        // A prompt blocked before any candidate: an empty, filtered answer.
        let blocked = resp.prompt_feedback.as_ref().and_then(|f| f.block_reason.as_deref()).is_some();
        if !blocked {
            return Err(GatewayError::ProviderMalformed {
                provider: NAME,
                detail: "a response without candidates".into(),
            });
        }
        choices.push(Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant",
                content: None,
                refusal: None,
                tool_calls: None,
                thinking_blocks: None,
                function_call: None,
                reasoning_content: None,
            },
            logprobs: None,
            finish_reason: FinishReason::ContentFilter,
        });
    }
    let completion = ChatCompletion {
        id,
        object: "chat.completion",
        created: ctx.created,
        model: resp.model_version.as_deref().unwrap_or(&ctx.request.model),
        choices,
        usage: resp.usage_metadata.as_ref().map(usage).unwrap_or_default(),
        system_fingerprint: None,
    };
    let billed = resp.usage_metadata.as_ref().map(billed).unwrap_or_default();
    serde_json::to_vec(&completion)
        .map(|body| (body, billed))
        .map_err(|e| GatewayError::ProviderMalformed { provider: NAME, detail: e.to_string() })
}

// ---------------------------------------------------------------------------------
// Log probabilities (docs/providers/gemini.md#log-probabilities).

/// OpenAI's stand-in for a token too unlikely to have a finite log probability.
const UNLIKELY_LOGPROB: f64 = -9999.0;

fn finite_logprob(value: f64) -> f64 {
    if value.is_finite() {
        value.min(0.0)
    } else {
        UNLIKELY_LOGPROB
    }
}

/// Gemini's `logprobsResult` (raw JSON) → OpenAI's `logprobs`: step `k`'s chosen
/// token with `topCandidates[k]` as its alternatives. `None` when the block is
/// unreadable: log probabilities are never worth failing an answer for.
pub(crate) fn choice_logprobs(raw: &str) -> Option<ChoiceLogprobs> {
    // An object only: serde would read an array as the struct's fields in order.
    if !raw.trim_start().starts_with('{') {
        log::warn!("gemini: a logprobsResult that is not an object left out");
        return None;
    }
    let result: LogprobsResult = match serde_json::from_str(raw) {
        Ok(result) => result,
        Err(e) => {
            log::warn!("gemini: unreadable logprobsResult left out: {e}");
            return None;
        }
    };
    let mut tops = result.top_candidates.into_iter();
    let content = result
        .chosen_candidates
        .into_iter()
        .map(|chosen| {
            let top_logprobs = tops
                .next()
                .map(|top| top.candidates)
                .unwrap_or_default()
                .into_iter()
                .map(|c| TopLogprob {
                    bytes: c.token.as_bytes().to_vec(),
                    logprob: finite_logprob(c.log_probability.0),
                    token: c.token.into_owned(),
                })
                .collect();
            TokenLogprob {
                bytes: chosen.token.as_bytes().to_vec(),
                logprob: finite_logprob(chosen.log_probability.0),
                token: chosen.token.into_owned(),
                top_logprobs,
            }
        })
        .collect();
    Some(ChoiceLogprobs { content, refusal: None })
}

fn join<'a>(parts: Vec<&'a str>) -> Option<Cow<'a, str>> {
    match parts.as_slice() {
        [] => None,
        [one] => Some(Cow::Borrowed(one)),
        _ => Some(Cow::Owned(parts.concat())),
    }
}

/// A Google status error body: `{"error":{…}}`, or that wrapped in an array (what
/// `streamGenerateContent` without `alt=sse` sends). The shape is checked first: serde
/// would happily read an array as a struct's fields in order.
pub(crate) fn parse_error_body(body: &[u8]) -> Option<ErrorResponse<'_>> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<ErrorResponse>(body).ok(),
        Some(b'[') => {
            let mut all = serde_json::from_slice::<Vec<&RawValue>>(body).ok()?.into_iter();
            let first = all.next()?;
            // Borrowing from `body`: the element is a slice of it.
            let text: &str = first.get();
            text.trim_start().starts_with('{').then(|| serde_json::from_str::<ErrorResponse>(text).ok()).flatten()
        }
        _ => None,
    }
}

/// The HTTP status Google pairs with an RPC status name (google.rpc.Code), for errors
/// that carry no `code` (mid-stream).
fn rpc_http_status(status: &str) -> Option<u16> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNKNOWN" | "INTERNAL" | "DATA_LOSS" => 500,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => return None,
    })
}

/// Google's RPC status errors (docs/providers/gemini.md#errors). An invalid key is a 400 with reason
/// `API_KEY_INVALID` at Google; clients should see a 401. `status` 0 (mid-stream) or
/// 200 (an error under a success status) defers to the body's `code`/`status`.
pub(crate) fn translate_error(api_key: Option<&str>, status: u16, body: &[u8]) -> GatewayError {
    let Some(ErrorResponse { error }) = parse_error_body(body) else {
        let excerpt = super::body_excerpt(body);
        let message = if excerpt.is_empty() {
            format!("Gemini returned HTTP {status} with no error message.")
        } else {
            format!("Gemini returned HTTP {status}: {excerpt}")
        };
        return provider_error(api_key, status, &message, ErrorDetails::default());
    };
    let status = if status == 0 || status == 200 {
        error.code.filter(|c| *c >= 400).or_else(|| error.status.as_deref().and_then(rpc_http_status)).unwrap_or(500)
    } else {
        status
    };
    let message = error.message.as_deref().unwrap_or("Gemini reported an error without a message.");
    let key_invalid = error.details.iter().any(|d| d.reason.as_deref() == Some("API_KEY_INVALID"));
    let code = |code: &str| ErrorDetails { code: Some(code.into()), ..ErrorDetails::default() };
    let (status, details) = match (status, error.status.as_deref()) {
        _ if key_invalid => (401, ErrorDetails::default()),
        (404, _) | (_, Some("NOT_FOUND")) => (404, code("model_not_found")),
        (_, Some("FAILED_PRECONDITION")) => {
            (status, ErrorDetails { kind: Some(ErrorType::Permission), ..code("failed_precondition") })
        }
        // "The input token count (…) exceeds the maximum number of tokens allowed (…)."
        (400, _) if message.contains("exceeds the maximum number of tokens") => (400, code("context_length_exceeded")),
        _ => (status, ErrorDetails::default()),
    };
    provider_error(api_key, status, message, details)
}

// ---------------------------------------------------------------------------------
// Embeddings.

fn embeddings_request(
    ctx: &RequestContext,
    body: &[u8],
    facts: &mut RequestFacts,
) -> Result<UpstreamRequest, GatewayError> {
    let req: EmbeddingsRequest = parse_request(body)?;
    let model = model_path_segment(ctx.endpoint.model_or(&req.model))?;
    let mut dropped = Vec::new();
    if req.user.is_some() {
        ctx.unsupported("user", Impact::Sampling, "Gemini has no such setting.", &mut dropped)?;
    }
    let texts: Vec<&str> = match &req.input {
        EmbeddingInput::Text(t) => vec![t.as_ref()],
        EmbeddingInput::Texts(ts) => ts.iter().map(AsRef::as_ref).collect(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenLists(_) => {
            return Err(GatewayError::UnsupportedParameter {
                param: "input".into(),
                provider: NAME,
                detail: Some("Gemini embeds text, not token ids.".into()),
            })
        }
    };
    facts.model = req.model.to_string();
    facts.base64_embeddings = req.encoding_format == Some(EncodingFormat::Base64);
    facts.input_chars = texts.iter().map(|t| t.chars().count()).sum();
    let content = |text| EmbedContent { parts: [EmbedText { text }] };
    let (method, body) = if let (EmbeddingInput::Text(_), [text]) = (&req.input, texts.as_slice()) {
        let single = EmbedContentRequest { model: None, content: content(text), output_dimensionality: req.dimensions };
        ("embedContent", serde_json::to_vec(&single))
    } else {
        let qualified = format!("models/{model}");
        let batch = BatchEmbedContentsRequest {
            requests: texts
                .iter()
                .map(|text| EmbedContentRequest {
                    model: Some(&qualified),
                    content: content(text),
                    output_dimensionality: req.dimensions,
                })
                .collect(),
        };
        ("batchEmbedContents", serde_json::to_vec(&batch))
    };
    let body =
        body.map_err(|e| GatewayError::Misconfigured { detail: format!("could not encode the Gemini request: {e}") })?;
    Ok(UpstreamRequest {
        path: format!("{}/v1beta/models/{model}:{method}", ctx.endpoint.base_path),
        body: Some(body),
        headers: Vec::new(),
        dropped_params: dropped,
        adjusted_params: Vec::new(),
        stream: false,
        include_usage: false,
    })
}

/// OpenAI's embeddings have unit length. Gemini's have it only at full size:
/// `gemini-embedding-001` vectors reduced with `outputDimensionality` must be
/// normalised by the caller (Google's embeddings guide). `None`: already unit length
/// (forwarded as written), zero, or not finite (left alone).
fn unit_length(values: &[f64]) -> Option<Vec<f64>> {
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if !norm.is_finite() || norm == 0.0 || (norm - 1.0).abs() <= 1e-3 {
        return None;
    }
    Some(values.iter().map(|v| v / norm).collect())
}

fn embeddings_response(ctx: &ResponseContext, body: &[u8]) -> Result<(Vec<u8>, crate::usage::Usage), GatewayError> {
    let malformed = |detail: String| GatewayError::ProviderMalformed { provider: NAME, detail };
    if parse_error_body(body).is_some() {
        return Err(translate_error(ctx.api_key, 200, body));
    }
    // An object only: serde would read an array as the struct's fields in order.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(malformed("the embeddings response is not a JSON object".into()));
    }
    let vectors: Vec<&RawValue> = match serde_json::from_slice::<BatchEmbedContentsResponse>(body) {
        Ok(batch) => batch.embeddings.into_iter().map(|e| e.values).collect(),
        Err(_) => vec![
            serde_json::from_slice::<EmbedContentResponse>(body)
                .map_err(|e| malformed(e.to_string()))?
                .embedding
                .values,
        ],
    };
    // Rescaled copies of the vectors that were not unit length (kept here: `data` borrows them).
    let mut rescaled: Vec<Option<Box<RawValue>>> = Vec::with_capacity(vectors.len());
    let mut floats: Vec<Vec<f64>> = Vec::with_capacity(vectors.len());
    for (index, values) in vectors.iter().enumerate() {
        let parsed: Vec<f64> = serde_json::from_str(values.get())
            .map_err(|e| malformed(format!("embedding {index} is not an array of numbers: {e}")))?;
        let unit = unit_length(&parsed);
        rescaled.push(match &unit {
            Some(unit) => Some(
                serde_json::to_string(unit).and_then(RawValue::from_string).map_err(|e| malformed(e.to_string()))?,
            ),
            None => None,
        });
        floats.push(unit.unwrap_or(parsed));
    }
    let mut data = Vec::with_capacity(vectors.len());
    for (index, ((values, rescaled), floats)) in vectors.iter().zip(&rescaled).zip(&floats).enumerate() {
        let embedding = if ctx.request.base64_embeddings {
            let bytes: Vec<u8> = floats.iter().flat_map(|f| (*f as f32).to_le_bytes()).collect();
            EmbeddingValues::Base64(base64::encode(&bytes))
        } else {
            EmbeddingValues::Floats(rescaled.as_deref().unwrap_or(values))
        };
        data.push(EmbeddingOut { object: "embedding", index, embedding });
    }
    // Gemini reports no token counts for embeddings: about four characters a token.
    let tokens = ctx.request.input_chars.div_ceil(4) as u64;
    let list = EmbeddingList {
        object: "list",
        data,
        model: &ctx.request.model,
        usage: EmbeddingUsage { prompt_tokens: tokens, total_tokens: tokens },
    };
    let billed = crate::usage::Usage { input: tokens, ..crate::usage::Usage::default() };
    serde_json::to_vec(&list).map(|body| (body, billed)).map_err(|e| malformed(e.to_string()))
}

mod stream;

#[cfg(test)]
mod tests;
