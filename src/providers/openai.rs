//! The OpenAI-compatible family: OpenAI itself, Azure OpenAI, and every server that
//! speaks its API (presets in `presets.rs`).
//!
//! Requests pass through with targeted edits (model name, the provider's quirks, the
//! model's own rules from [`super::models`], usage for streams) that leave every other
//! byte as the client sent it. Providers without OpenAI's deprecated `functions` get them
//! as `tools` (the only request path that parses the messages as OpenAI's types), and the
//! answer back in the legacy shape. Successful responses are forwarded unread unless the
//! provider has non-standard finish reasons or may have to answer a legacy request; error
//! bodies are normalised to OpenAI's envelope, since "compatible" servers disagree.

pub mod presets;

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::models::{self, ModelRules, Reasoning, Sampling};
use super::stream::{StreamContext, StreamTranslator};
use super::{
    base62, body_excerpt, handling_for, provider_error, unsupported_operation, ErrorDetails, Impact, Provider,
    ProviderAdapter, RequestContext, RequestFacts, ResponseContext, ResponseHandling, TranslatedResponse,
    UpstreamRequest,
};
use crate::endpoint::Endpoint;
use crate::error::{ErrorType, GatewayError};
use crate::json::{parse_request, Str};
use crate::legacy;
use crate::operation::Operation;
use crate::schema::openai::{ChatRequest, ToolChoice};
use presets::{Preset, PRESETS};

pub struct OpenAi;

/// The deployment's preset (plain OpenAI for anything else).
pub fn preset_of(endpoint: &Endpoint) -> &'static Preset {
    preset_of_provider(endpoint.provider)
}

pub fn preset_of_provider(provider: Provider) -> &'static Preset {
    match provider {
        Provider::OpenAi(preset) => preset,
        _ => &PRESETS[0],
    }
}

impl ProviderAdapter for OpenAi {
    fn request(
        &self,
        ctx: &RequestContext,
        op: Operation,
        body: &[u8],
        facts: &mut RequestFacts,
    ) -> Result<UpstreamRequest, GatewayError> {
        let preset = preset_of(ctx.endpoint);
        if (op == Operation::Embeddings && !preset.embeddings) || (op == Operation::Completions && !preset.completions)
        {
            return Err(unsupported_operation(preset.name, op));
        }
        // The deprecated `functions` interface becomes the tools interface first, so that
        // every quirk below sees the request as the provider will.
        let legacy_body: Vec<u8>;
        let mut fields: TopLevel = parse_request(body)?;
        let mut converted = false;
        if op == Operation::Chat && !preset.native_functions {
            if let Some(rewritten) = legacy_rewrite(preset, body, &fields, facts)? {
                legacy_body = rewritten;
                fields = parse_request(&legacy_body)?;
                converted = true;
            }
        }
        let alias: String = fields.get("model").and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
        let mut edits: Vec<(&str, Option<String>)> = Vec::new();
        let mut dropped = Vec::new();
        let mut adjusted = Vec::new();

        // Azure's dated API versions go with deployment URLs, which name the deployment
        // (the body's `model` is ignored); its v1 URLs (no version, or `preview`/`v1`)
        // and everyone else take the model in the body.
        let api_version = ctx.endpoint.api_version.as_deref().filter(|_| preset.azure);
        let deployment_version = api_version.filter(|v| is_dated_version(v));
        let model = ctx.endpoint.model_or(&alias).to_string();
        let base = &ctx.endpoint.base_path;
        let path = match (preset.azure, api_version) {
            (true, Some(version)) if deployment_version.is_some() => {
                format!("{base}/openai/deployments/{}{}?api-version={version}", path_segment(&model), op.path())
            }
            (true, Some(version)) => format!("{base}/openai/v1{}?api-version={version}", op.path()),
            (true, None) => format!("{base}/openai/v1{}", op.path()),
            (false, _) => format!("{base}{}", op.path()),
        };
        if deployment_version.is_none() && model != alias {
            edits.push(("model", Some(json_string(&model))));
        }

        let stream = op != Operation::Embeddings && fields.get("stream") == Some("true");
        let client_options = fields.get("stream_options");
        let mut options: Map<String, Value> =
            client_options.and_then(|raw| serde_json::from_str(raw).ok()).unwrap_or_default();
        let include_usage = stream && options.get("include_usage").and_then(Value::as_bool).unwrap_or(false);
        if !stream || !preset.stream_usage {
            // Meaningless without a stream (OpenAI answers it with a 400); and providers
            // that report stream usage unasked reject the field.
            if client_options.is_some() {
                edits.push(("stream_options", None));
            }
        } else if !include_usage && azure_accepts_stream_options(deployment_version) {
            // Usage is always requested, so the gateway can meter every stream; the
            // usage chunk is dropped again for clients that did not ask for it.
            options.insert("include_usage".into(), Value::Bool(true));
            edits.push(("stream_options", Some(Value::Object(options).to_string())));
        }
        if op == Operation::Chat {
            chat_quirks(ctx, preset, &model, &fields, &mut edits, &mut dropped, &mut adjusted)?;
        }
        facts.model = alias;
        Ok(UpstreamRequest {
            path,
            body: (!edits.is_empty() || converted).then(|| fields.rewrite(&edits)),
            headers: Vec::new(),
            dropped_params: dropped,
            adjusted_params: adjusted,
            stream,
            include_usage,
        })
    }

    fn response_handling(
        &self,
        endpoint: &Endpoint,
        op: Operation,
        status: u16,
        stream: bool,
        facts: &RequestFacts,
    ) -> ResponseHandling {
        let preset = preset_of(endpoint);
        let read = match op {
            Operation::Embeddings => false,
            Operation::Completions => !preset.finish_reasons.is_empty(),
            // The answer to a legacy `functions` request goes back in the legacy shape,
            // unless the provider took the request as sent.
            Operation::Chat => {
                !preset.finish_reasons.is_empty() || (facts.legacy_functions && !preset.native_functions)
            }
        };
        handling_for(status, stream, if read { ResponseHandling::Translate } else { ResponseHandling::PassThrough })
    }

    fn response(&self, ctx: &ResponseContext, op: Operation, status: u16, body: &[u8]) -> TranslatedResponse {
        if !(200..300).contains(&status) {
            return TranslatedResponse::error(&normalise_error(ctx.api_key, status, body));
        }
        let preset = preset_of(ctx.endpoint);
        let rewritten = match op {
            Operation::Embeddings => None,
            Operation::Completions => normalise_finish_reasons(preset, body),
            Operation::Chat => {
                let normalised = normalise_finish_reasons(preset, body);
                match ctx.request.legacy_functions && !preset.native_functions {
                    true => legacy_response(normalised.as_deref().unwrap_or(body)).or(normalised),
                    false => normalised,
                }
            }
        };
        TranslatedResponse::success(status, rewritten.unwrap_or_else(|| body.to_vec()), usage_in_body(body))
    }

    fn pass_through_usage(&self, status: u16, body: &[u8]) -> Option<crate::usage::Usage> {
        (200..300).contains(&status).then(|| usage_in_body(body)).flatten()
    }

    fn stream(&self, ctx: StreamContext) -> Box<dyn StreamTranslator> {
        Box::new(stream::translator(ctx))
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// `s` as one URL path segment: unreserved characters kept, everything else
/// percent-encoded (the client's model alias must not add path or query parts).
fn path_segment(s: &str) -> Cow<'_, str> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if s.bytes().all(unreserved) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// `YYYY-MM-DD` or `YYYY-MM-DD-preview`: an Azure data-plane version of the deployment
/// URLs (learn.microsoft.com azure/ai-foundry/openai/api-version-lifecycle).
fn is_dated_version(version: &str) -> bool {
    let date = version.get(..10).unwrap_or_default().as_bytes();
    let shape = date.len() == 10
        && date.iter().enumerate().all(|(i, b)| if i == 4 || i == 7 { *b == b'-' } else { b.is_ascii_digit() });
    shape && matches!(version.get(10..), Some("" | "-preview"))
}

/// Azure's dated API versions before 2024-09-01(-preview) refuse `stream_options`
/// ("Unrecognized request argument supplied: stream_options", openai/openai-python#1469);
/// the v1 API takes it.
fn azure_accepts_stream_options(deployment_version: Option<&str>) -> bool {
    deployment_version.and_then(|v| v.get(..10)).is_none_or(|date| date >= "2024-09-01")
}

/// Where a chat request departs from what the preset's provider, and the model it serves,
/// accept.
fn chat_quirks<'f>(
    ctx: &RequestContext,
    preset: &Preset,
    model: &str,
    fields: &'f TopLevel<'f>,
    edits: &mut Vec<(&'f str, Option<String>)>,
    dropped: &mut Vec<String>,
    adjusted: &mut Vec<String>,
) -> Result<(), GatewayError> {
    // Parameters the provider lacks go first: nothing below may re-add them.
    for &(param, impact) in preset.lacks {
        let Some(value) = fields.get(param) else { continue };
        if edits.iter().any(|(k, _)| *k == param) {
            continue;
        }
        if asks_for_something(param, value) {
            ctx.unsupported(param, impact, "the provider does not accept it.", dropped)?;
        }
        edits.push((param, None));
    }
    model_rules(ctx, preset, model, fields, edits, dropped, adjusted)?;
    // A null counts as absent, but is still removed: strict providers refuse the field.
    if preset.max_tokens_only && !edited(edits, "max_completion_tokens") {
        if let Some(value) = fields.get("max_completion_tokens") {
            if value != "null" && !fields.has("max_tokens") {
                edits.push(("max_tokens", Some(value.to_string())));
            }
            edits.push(("max_completion_tokens", None));
        }
    }
    if preset.seed_field != "seed" && !edited(edits, "seed") {
        if let Some(value) = fields.get("seed") {
            if value != "null" && !fields.has(preset.seed_field) {
                edits.push((preset.seed_field, Some(value.to_string())));
            }
            edits.push(("seed", None));
        }
    }
    if let Some(raw) = fields.get("tool_choice").filter(|_| !edited(edits, "tool_choice")) {
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::String(choice)) if choice == "required" && preset.required_tool_choice != "required" => {
                edits.push(("tool_choice", Some(json_string(preset.required_tool_choice))));
            }
            Ok(Value::Object(_)) if !preset.named_tool_choice => {
                ctx.unsupported("tool_choice", Impact::Semantic, "it cannot force one named function.", dropped)?;
                edits.push(("tool_choice", None));
            }
            _ => {}
        }
    }
    if let Some(messages) = fields.get("messages") {
        if let Some(rewritten) = rewrite_messages(preset, messages) {
            edits.push(("messages", Some(rewritten)));
        }
    }
    Ok(())
}

fn edited(edits: &[(&str, Option<String>)], key: &str) -> bool {
    edits.iter().any(|(k, _)| *k == key)
}

/// Whether a parameter's value asks for anything beyond the default: `n: 1`,
/// `logprobs: false`, `tool_choice: "auto"`, zero penalties, no stop sequences or `null`
/// can be left out unreported.
fn asks_for_something(param: &str, raw: &str) -> bool {
    if raw == "null" {
        return false;
    }
    let empty = |open: char, close: char| raw.trim_start_matches(open).trim_start() == close.to_string();
    match param {
        // Also `1.0` and `1e0`: JSON does not distinguish them.
        "n" => raw.parse::<f64>().map_or(true, |n| n > 1.0),
        "presence_penalty" | "frequency_penalty" | "top_logprobs" => raw.parse::<f64>() != Ok(0.0),
        "logprobs" => raw != "false",
        "tool_choice" => serde_json::from_str::<String>(raw).map_or(true, |c| c != "auto"),
        "tools" | "stop" if raw.starts_with('[') => !empty('[', ']'),
        "stop" => raw != "\"\"",
        "logit_bias" => !empty('{', '}'),
        _ => true,
    }
}

/// What the model itself accepts ([`models::rules`], docs/providers/openai-compatible.md#reasoning-models),
/// applied as edits: `max_tokens` is sent as `max_completion_tokens` where the model takes
/// only that (an adjustment, refused under `reject`); sampling the model ignores or
/// refuses is removed (reported unless it asked for the default); every other refused
/// parameter follows the deployment's policy. A model without rules of its own costs a
/// table lookup.
fn model_rules<'f>(
    ctx: &RequestContext,
    preset: &Preset,
    model: &str,
    fields: &'f TopLevel<'f>,
    edits: &mut Vec<(&'f str, Option<String>)>,
    dropped: &mut Vec<String>,
    adjusted: &mut Vec<String>,
) -> Result<(), GatewayError> {
    let rules = models::rules(preset.name, model);
    if unrestricted(rules) {
        return Ok(());
    }
    let family = rules.family;
    let without_reasoning = samples_without_reasoning(model)
        && fields.get("reasoning_effort").is_none_or(|e| e == "null" || raw_string(e).as_deref() == Some("none"));
    let sampling = if without_reasoning { Sampling::Any } else { rules.sampling };

    if rules.reasoning == Reasoning::Unsupported && !edited(edits, "reasoning_effort") {
        if let Some(raw) = fields.get("reasoning_effort") {
            if raw != "null" {
                let detail = format!("the model cannot be told how hard to reason ({family}).");
                ctx.unsupported("reasoning_effort", Impact::Sampling, &detail, dropped)?;
            }
            edits.push(("reasoning_effort", None));
        }
    }
    for (param, default) in [("temperature", 1.0), ("top_p", 1.0)] {
        let Some(raw) = fields.get(param).filter(|_| !edited(edits, param)) else { continue };
        let value = raw.parse::<f64>().ok();
        match sampling {
            Sampling::DefaultOnly => {
                if value.is_some_and(|v| v != default) {
                    let detail = format!("the model takes only the default {param}, {default} ({family}).");
                    ctx.unsupported(param, Impact::Sampling, &detail, dropped)?;
                }
                // The default, sent or not, asks for nothing.
                edits.push((param, None));
            }
            Sampling::TemperatureOrTopP if param == "top_p" && fields.has("temperature") && raw != "null" => {
                let detail = format!("the model takes temperature or top_p, not both ({family}).");
                ctx.unsupported(param, Impact::Sampling, &detail, dropped)?;
                edits.push((param, None));
            }
            Sampling::TemperatureOrTopP | Sampling::Any => {}
        }
        let max = rules.temperature_max;
        if param == "temperature" && sampling != Sampling::DefaultOnly && value.is_some_and(|t| t > max) {
            let detail = format!("the model takes a temperature from 0 to {max} ({family}).");
            ctx.adjust(param, &max.to_string(), &detail, adjusted)?;
            edits.push((param, Some(max.to_string())));
        }
    }
    for &(param, impact) in rules.refuses {
        if without_reasoning && matches!(param, "logprobs" | "top_logprobs") {
            continue;
        }
        let Some(raw) = fields.get(param).filter(|_| !edited(edits, param)) else { continue };
        edits.push((param, None));
        if param == "max_tokens" && !preset.max_tokens_only && raw != "null" {
            if !fields.has("max_completion_tokens") && !edited(edits, "max_completion_tokens") {
                let detail = format!("the model takes max_completion_tokens instead ({family}).");
                ctx.adjust(param, "max_completion_tokens", &detail, adjusted)?;
                edits.push(("max_completion_tokens", Some(raw.to_string())));
            } else {
                let detail =
                    format!("the model takes max_completion_tokens only, which the request sets too ({family}).");
                ctx.unsupported(param, Impact::Sampling, &detail, dropped)?;
            }
            continue;
        }
        if asks_for_something(param, raw) {
            ctx.unsupported(param, impact, &format!("the model refuses it ({family})."), dropped)?;
        }
    }
    Ok(())
}

/// Rules that ask nothing of a request (OpenAI's own, and rows that only keep a model out
/// of a broader row).
fn unrestricted(rules: &ModelRules) -> bool {
    rules.sampling == Sampling::Any
        && rules.reasoning != Reasoning::Unsupported
        && rules.refuses.is_empty()
        && rules.temperature_max >= 2.0
}

/// GPT-5.1 and GPT-5.2 (and their dated snapshots) take `temperature`, `top_p` and
/// `logprobs` when they do not reason: "The following parameters are only supported when
/// using GPT-5.2 with reasoning effort set to none: temperature, top_p, logprobs. Requests
/// to GPT-5.2 or GPT-5.1 with any other reasoning effort setting, or to older GPT-5
/// models [...] will raise an error." (platform.openai.com/docs/guides/latest-model);
/// `none` is the default of both (same page; learn.microsoft.com
/// azure/foundry/openai/how-to/reasoning: "gpt-5.1 reasoning_effort defaults to none").
/// Variants (`-codex`, `-chat-latest`, `-pro`) are not named there and keep the rules.
fn samples_without_reasoning(model: &str) -> bool {
    ["gpt-5.1", "gpt-5.2"].iter().any(|base| {
        model.strip_prefix(base).is_some_and(|rest| {
            rest.is_empty() || rest.strip_prefix('-').is_some_and(|date| date.starts_with("20") && date.len() == 10)
        })
    })
}

fn raw_string(raw: &str) -> Option<String> {
    serde_json::from_str(raw).ok()
}

/// Whether `raw` JSON text escapes a printable ASCII character (`\u0041`): no encoder
/// does that for text, but a key spelled so would slip past the byte scans.
fn escapes_ascii(raw: &str) -> bool {
    raw.match_indices("\\u00").any(|(at, _)| matches!(raw.as_bytes().get(at + 4), Some(b'2'..=b'7')))
}

/// Whether the messages use the deprecated interface (an assistant `function_call`, a
/// `role: "function"` message), by a scan.
fn mentions_legacy_messages(raw: &str) -> bool {
    let function_role = raw.match_indices("\"function\"").any(|(at, _)| {
        let before = raw.get(..at).unwrap_or_default().trim_end();
        before.strip_suffix(':').is_some_and(|b| b.trim_end().ends_with("\"role\""))
    });
    function_role || raw.contains("function_call") || escapes_ascii(raw)
}

/// The deprecated `functions` interface rewritten into the tools interface, for a provider
/// without it (docs/providers/openai.md#request-fields): `functions` → `tools` (each definition kept as sent),
/// `function_call` → `tool_choice`, assistant `function_call` → a `tool_calls` entry and
/// `role: "function"` → a tool message, paired by the ids [`legacy::normalize`] derives.
/// A client that declared `functions` gets the answer in the legacy shape
/// (`facts.legacy_functions`), so its request allows one call at a time
/// (`parallel_tool_calls: false`). `None` when the body uses none of it (a scan).
fn legacy_rewrite(
    preset: &Preset,
    body: &[u8],
    fields: &TopLevel,
    facts: &mut RequestFacts,
) -> Result<Option<Vec<u8>>, GatewayError> {
    let top_level = fields.get("functions").is_some() || fields.get("function_call").is_some();
    if !top_level && !fields.get("messages").is_some_and(mentions_legacy_messages) {
        return Ok(None);
    }
    let mut req: ChatRequest = parse_request(body)?;
    let legacy_answer = legacy::normalize(&mut req);
    let mut edits: Vec<(&str, Option<String>)> = Vec::new();
    if let Some(raw) = fields.get("functions") {
        edits.push(("functions", None));
        let functions: Vec<&RawValue> = serde_json::from_str(raw).unwrap_or_default();
        if !functions.is_empty() {
            let declared: Vec<&RawValue> =
                fields.get("tools").and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
            let mut names: Vec<String> = declared.iter().filter_map(|t| declared_name(t.get())).collect();
            let mut tools: Vec<String> = declared.iter().map(|t| t.get().to_string()).collect();
            for function in functions {
                let name = serde_json::from_str::<Named>(function.get()).ok().map(|n| n.name);
                if name.as_ref().is_some_and(|n| names.contains(n)) {
                    continue;
                }
                names.extend(name);
                tools.push(format!(r#"{{"type":"function","function":{}}}"#, function.get()));
            }
            edits.push(("tools", Some(format!("[{}]", tools.join(",")))));
        }
    }
    if fields.get("function_call").is_some() {
        edits.push(("function_call", None));
        if !fields.has("tool_choice") {
            if let Some(choice) = &req.tool_choice {
                edits.push(("tool_choice", Some(tool_choice_json(choice))));
            }
        }
    }
    let has_tools = req.tools.as_ref().is_some_and(|t| !t.is_empty());
    let lacks_tools = preset.lacks.iter().any(|(p, _)| *p == "tools");
    if legacy_answer && has_tools && !lacks_tools && !fields.has("parallel_tool_calls") {
        edits.push(("parallel_tool_calls", Some("false".to_string())));
    }
    if let Some(rewritten) = fields.get("messages").and_then(|raw| legacy_messages(raw, &req)) {
        edits.push(("messages", Some(rewritten)));
    }
    facts.legacy_functions = legacy_answer;
    Ok((!edits.is_empty()).then(|| fields.rewrite(&edits)))
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// The function name of a `tools` entry.
fn declared_name(raw: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Declared {
        #[serde(default)]
        function: Option<Named>,
    }
    serde_json::from_str::<Declared>(raw).ok()?.function.map(|f| f.name)
}

fn tool_choice_json(choice: &ToolChoice) -> String {
    match choice {
        ToolChoice::None => r#""none""#.to_string(),
        ToolChoice::Auto => r#""auto""#.to_string(),
        ToolChoice::Required => r#""required""#.to_string(),
        ToolChoice::Function(name) => format!(r#"{{"type":"function","function":{{"name":{}}}}}"#, json_string(name)),
    }
}

/// The history of a legacy conversation in the tools interface, with the ids of the
/// normalised request (`req`, the same messages in the same order); `None` if unchanged.
fn legacy_messages(raw: &str, req: &ChatRequest) -> Option<String> {
    let mut messages: Vec<Map<String, Value>> = serde_json::from_str(raw).ok()?;
    let mut changed = false;
    for (message, normalised) in messages.iter_mut().zip(&req.messages) {
        match message.get("role").and_then(Value::as_str) {
            Some("assistant") => {
                let Some(call) = message.remove("function_call") else { continue };
                changed = true;
                let id = normalised.tool_calls.as_ref().and_then(|calls| calls.last()).map(|c| c.id.to_string());
                let (Some(id), false) = (id, call.is_null()) else { continue };
                let entry = serde_json::json!({"id": id, "type": "function", "function": call});
                match message.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(entry),
                    _ => {
                        message.insert("tool_calls".into(), Value::Array(vec![entry]));
                    }
                }
            }
            Some("function") => {
                changed = true;
                message.insert("role".into(), Value::from("tool"));
                message.remove("name");
                if let Some(id) = normalised.tool_call_id.as_deref() {
                    message.insert("tool_call_id".into(), Value::from(id));
                }
            }
            _ => {}
        }
    }
    changed.then(|| Value::Array(messages.into_iter().map(Value::Object).collect()).to_string())
}

/// A complete answer to a legacy request in the legacy shape: each choice's (single) tool
/// call as `message.function_call`, finish reason `function_call` for `tool_calls`;
/// `None` when there is nothing to change.
pub(crate) fn legacy_response(body: &[u8]) -> Option<Vec<u8>> {
    if !body.windows(10).any(|w| w == b"tool_calls") {
        return None;
    }
    rewrite_choices(body, |choice| legacy_choice(choice, "message"))
}

/// Rewrites each of a body's `choices` with `edit` (true if it changed one), every other
/// field kept byte for byte; `None` when nothing changed.
pub(crate) fn rewrite_choices(body: &[u8], mut edit: impl FnMut(&mut Value) -> bool) -> Option<Vec<u8>> {
    let fields: TopLevel = serde_json::from_slice(body).ok()?;
    let mut choices: Vec<Value> = serde_json::from_str(fields.get("choices")?).ok()?;
    let mut changed = false;
    for choice in &mut choices {
        changed |= edit(choice);
    }
    changed.then(|| fields.rewrite(&[("choices", Some(Value::Array(choices).to_string()))]))
}

/// One choice in the legacy shape: `part` (`message`, or a stream chunk's `delta`) gets
/// its first call (a stream: the pieces of call 0) as `function_call`, without
/// `tool_calls`; a complete call without arguments gets `"{}"`. True if it changed.
pub(crate) fn legacy_choice(choice: &mut Value, part: &str) -> bool {
    let mut changed = false;
    if let Some(message) = choice.get_mut(part).and_then(Value::as_object_mut) {
        if let Some(calls) = message.remove("tool_calls") {
            changed = true;
            let streamed = part == "delta";
            let first = calls.as_array().and_then(|calls| {
                calls.iter().find(|c| !streamed || c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            });
            if let Some(function) = first.and_then(|c| c.get("function")).and_then(Value::as_object) {
                let mut legacy = Map::new();
                if let Some(name) = function.get("name").filter(|n| !n.is_null()) {
                    legacy.insert("name".into(), name.clone());
                }
                let arguments = function.get("arguments").and_then(Value::as_str).unwrap_or_default();
                let arguments = if !streamed && arguments.trim().is_empty() { "{}" } else { arguments };
                legacy.insert("arguments".into(), Value::from(arguments));
                message.insert("function_call".into(), Value::Object(legacy));
            }
        }
    }
    if let Some(reason) = choice.get_mut("finish_reason").filter(|r| r.as_str() == Some("tool_calls")) {
        *reason = Value::from("function_call");
        changed = true;
    }
    changed
}

/// Removes `messages[].name` and fields the provider rejects, and rewrites tool-call
/// ids to 9 alphanumerics where the preset requires; `None` when nothing needs changing
/// (the common case costs a scan).
fn rewrite_messages(preset: &Preset, raw: &str) -> Option<String> {
    // A key spelled with escapes would slip past the scans. Keys are looked for quoted:
    // a prompt that talks about reasoning costs no parse.
    let escaped = escapes_ascii(raw);
    let quoted = |key: &str| {
        raw.match_indices(key).any(|(at, _)| {
            raw.get(..at).is_some_and(|b| b.ends_with('"'))
                && raw.get(at + key.len()..).is_some_and(|a| a.starts_with('"'))
        })
    };
    let strip_names = !preset.message_names && (escaped || quoted("name"));
    let strip_fields = preset.foreign_message_fields.iter().any(|f| escaped || quoted(f));
    let fix_ids = preset.nine_char_tool_ids && (escaped || raw.contains("tool_call"));
    if !strip_names && !strip_fields && !fix_ids {
        return None;
    }
    let mut messages: Vec<Map<String, Value>> = serde_json::from_str(raw).ok()?;
    let mut changed = false;
    for message in &mut messages {
        // The deprecated `function` role needs its name: it names the function.
        if strip_names && message.get("role").and_then(Value::as_str) != Some("function") {
            changed |= message.remove("name").is_some();
        }
        if strip_fields {
            for field in preset.foreign_message_fields {
                changed |= message.remove(*field).is_some();
            }
        }
        if fix_ids {
            if let Some(Value::String(id)) = message.get_mut("tool_call_id") {
                changed |= nine_char_id(id);
            }
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(id)) = call.get_mut("id") {
                        changed |= nine_char_id(id);
                    }
                }
            }
        }
    }
    changed.then(|| Value::Array(messages.into_iter().map(Value::Object).collect()).to_string())
}

/// Mistral accepts only ids of exactly 9 alphanumerics; others are mapped the same way
/// wherever they appear, so calls and results still pair up. True if `id` changed.
fn nine_char_id(id: &mut String) -> bool {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    *id = base62(hash, 9);
    true
}

/// Rewrites non-standard `finish_reason`s in a complete response (or one stream chunk);
/// `None` when there is nothing to change.
pub(crate) fn normalise_finish_reasons(preset: &Preset, body: &[u8]) -> Option<Vec<u8>> {
    // Most responses name none of them: skip the parse.
    let mentions = |v: &str| body.windows(v.len()).any(|w| w == v.as_bytes());
    if !preset.finish_reasons.iter().any(|(v, _)| mentions(v)) {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for choice in value.get_mut("choices")?.as_array_mut()? {
        let Some(reason) = choice.get_mut("finish_reason") else { continue };
        if let Some(mapped) = reason.as_str().and_then(|r| preset.finish_reason(r)) {
            *reason = serde_json::to_value(mapped).ok()?;
            changed = true;
        }
    }
    changed.then(|| serde_json::to_vec(&value).ok()).flatten()
}

/// The top-level fields of a JSON object, values untouched, in arrival order.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl TopLevel<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.get())
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v != "null")
    }

    /// Re-encodes the object with each edit applied — `Some(raw JSON)` replaces (or
    /// appends) the field, `None` removes it; everything else is copied byte for byte.
    fn rewrite(&self, edits: &[(&str, Option<String>)]) -> Vec<u8> {
        let size: usize = self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>()
            + edits.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len) + 4).sum::<usize>();
        let mut out = Vec::with_capacity(size + 2);
        let field = |out: &mut Vec<u8>, key: &str, value: &str| {
            out.push(if out.is_empty() { b'{' } else { b',' });
            // Writing a string to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        for (key, value) in &self.0 {
            match edits.iter().find(|(k, _)| k == key) {
                Some((_, Some(edited))) => field(&mut out, key, edited),
                Some((_, None)) => {}
                None => field(&mut out, key, value.get()),
            }
        }
        for (key, value) in edits {
            if let (None, Some(value)) = (self.get(key), value) {
                field(&mut out, key, value);
            }
        }
        if out.is_empty() {
            out.push(b'{');
        }
        out.push(b'}');
        out
    }
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(TopLevel(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// Normalises the error bodies seen from OpenAI-compatible servers: OpenAI's envelope
/// (`error` an object, with Azure's `innererror` beside it), a bare string under
/// `error` (Ollama), or flat bodies with `message`/`detail` (Mistral, older vLLM,
/// FastAPI defaults) whose `message` may itself be an object or a list.
pub(crate) fn normalise_error(api_key: Option<&str>, status: u16, body: &[u8]) -> GatewayError {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let mut message = None;
    let mut details = ErrorDetails::default();
    if let Some(top) = &parsed {
        let fields = match top.get("error") {
            Some(Value::Object(error)) => Some(error),
            Some(Value::String(text)) => {
                message = Some(text.clone());
                None
            }
            _ => Some(top),
        };
        if let Some(fields) = fields {
            message = fields.get("message").and_then(as_text).or_else(|| fields.get("detail").and_then(as_text));
            // The provider's type, unless it contradicts the status (Ollama calls a 404
            // an `api_error`): clients branch on the status first.
            let server_class = |k: &ErrorType| matches!(k, ErrorType::Server | ErrorType::ServiceUnavailable);
            details.kind = fields
                .get("type")
                .and_then(Value::as_str)
                .and_then(ErrorType::from_openai)
                .filter(|k| server_class(k) == (status >= 500));
            details.code = fields.get("code").and_then(error_code);
            details.param = fields.get("param").and_then(Value::as_str).map(str::to_string);
            // Azure says here which content filter fired; clients that handle Azure read it.
            details.innererror = fields.get("innererror").filter(|v| v.is_object()).map(Value::to_string);
        }
    }
    let message = message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| {
        let excerpt = body_excerpt(body);
        if excerpt.is_empty() {
            format!("The provider returned HTTP {status} with no error message.")
        } else {
            format!("The provider returned HTTP {status}: {excerpt}")
        }
    });
    if let Some(key) = api_key {
        details.code = details.code.map(|c| crate::error::redact(&c, key));
        details.param = details.param.map(|p| crate::error::redact(&p, key));
        // The replacement has no JSON metacharacters, so the text stays valid JSON (were
        // it not, the error body would leave it out).
        details.innererror = details.innererror.map(|i| crate::error::redact(&i, key));
    }
    provider_error(api_key, status, &message, details)
}

/// A message field as text: strings as they are, pydantic/FastAPI validation details
/// (Mistral, vLLM) as `loc: msg` lines, anything else as compact JSON.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(o) if o.len() == 1 && o.contains_key("detail") => o.get("detail").and_then(as_text),
        Value::Array(items) => Some(validation_details(items).unwrap_or_else(|| value.to_string())),
        other => Some(other.to_string()),
    }
}

/// `[{"loc":["body","n"],"msg":"Extra inputs are not permitted",…}]` →
/// `n: Extra inputs are not permitted`; `None` unless every item has that shape.
fn validation_details(items: &[Value]) -> Option<String> {
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        let msg = item.get("msg")?.as_str()?;
        let loc: Vec<String> = item
            .get("loc")
            .and_then(Value::as_array)
            .map(|parts| {
                let text = |p: &Value| p.as_str().map_or_else(|| p.to_string(), str::to_string);
                parts.iter().skip_while(|p| p.as_str() == Some("body")).map(text).collect()
            })
            .unwrap_or_default();
        lines.push(if loc.is_empty() { msg.to_string() } else { format!("{}: {msg}", loc.join(".")) });
    }
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// The provider's own code, unless it only repeats an HTTP status (OpenRouter's numeric
/// codes, Azure's `"429"`, vLLM's `400`) or a generic error type (DeepSeek sends
/// `invalid_request_error` as the code of every error): the canonical code says more.
fn error_code(code: &Value) -> Option<String> {
    let text = match code {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let http_status = text.parse::<u16>().is_ok_and(|n| (100..600).contains(&n));
    let generic =
        matches!(text.as_str(), "" | "invalid_request_error" | "server_error" | "api_error" | "unknown_error");
    (!http_status && !generic).then_some(text)
}

/// The HTTP status an error body met mid-stream stands for: its numeric `code` when
/// that is one (OpenRouter), else 500.
pub(crate) fn stream_error_status(body: &[u8]) -> u16 {
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        error: Option<Value>,
    }
    let code = serde_json::from_slice::<Outer>(body).ok().and_then(|o| o.error).and_then(|e| e.get("code").cloned());
    let status = match code {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    status.and_then(|s| u16::try_from(s).ok()).filter(|s| (400..600).contains(s)).unwrap_or(500)
}

mod stream;

#[cfg(test)]
mod tests;

/// What an OpenAI-compatible provider bills for an answer (docs/providers/openai.md#usage):
/// `prompt_tokens` includes the cached tokens (`prompt_tokens_details.cached_tokens`, or
/// DeepSeek's `prompt_cache_hit_tokens`), and `completion_tokens` the reasoning tokens.
pub fn billed(u: &crate::schema::openai::Usage) -> crate::usage::Usage {
    let cached = u.prompt_tokens_details.cached_tokens.min(u.prompt_tokens);
    let written = u.cache_creation_input_tokens.unwrap_or(0).min(u.prompt_tokens - cached);
    crate::usage::Usage {
        input: u.prompt_tokens - cached - written,
        cache_read: cached,
        cache_write_5m: written,
        cache_write_1h: 0,
        output: u.completion_tokens,
        reasoning: u.completion_tokens_details.reasoning_tokens.min(u.completion_tokens),
    }
}

/// The billed usage of a complete OpenAI-shaped answer, read without parsing the rest of
/// it: OpenAI and the compatible servers put `usage` last in the object. The bytes
/// `"usage"` followed by a colon occur only as a key (inside a JSON string the quotes
/// would be escaped), and the key's value must be followed by nothing but the object's
/// end, so only a top-level `usage` is read.
pub fn usage_in_body(body: &[u8]) -> Option<crate::usage::Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let mut end = body.len();
    // A few tries: the last `"usage"` may be a string value (`"object":"usage"`).
    for _ in 0..4 {
        let at = body.get(..end)?.windows(KEY.len()).rposition(|w| w == KEY)?;
        end = at;
        let after = body.get(at + KEY.len()..)?;
        let colon = after.iter().position(|b| !b.is_ascii_whitespace())?;
        if after.get(colon) != Some(&b':') {
            continue;
        }
        let value = after.get(colon + 1..)?;
        let mut values = serde_json::Deserializer::from_slice(value).into_iter::<&serde_json::value::RawValue>();
        let raw = values.next()?.ok()?;
        let mut rest = value.get(values.byte_offset()..)?.iter().filter(|b| !b.is_ascii_whitespace());
        if rest.next() != Some(&b'}') || rest.next().is_some() {
            return None;
        }
        return stream::parse_usage(raw).as_ref().map(billed);
    }
    None
}
