//! Provider-independent rules for an OpenAI chat request. The downstream filter applies
//! them once, before routing, so a malformed request never costs a provider call and
//! every client gets the same 400 whichever provider would have served it.

use crate::error::GatewayError;
use crate::schema::openai::{
    ChatRequest, CompletionsRequest, Content, EmbeddingInput, EmbeddingsRequest, PartKind, Role,
};

pub fn chat_request(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.model.is_empty() {
        return Err(GatewayError::invalid("model", "Invalid 'model': must be a non-empty string."));
    }
    if req.messages.is_empty() {
        return Err(GatewayError::InvalidRequest {
            message: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".into(),
            param: Some("messages".into()),
            code: "empty_array",
        });
    }
    for (i, message) in req.messages.iter().enumerate() {
        message_rules(i, message)?;
    }
    range("temperature", req.temperature, 0.0, 2.0)?;
    range("top_p", req.top_p, 0.0, 1.0)?;
    range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
    range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
    range("n", req.n, 1, 128)?;
    range("max_tokens", req.max_tokens, 1, u32::MAX)?;
    range("max_completion_tokens", req.max_completion_tokens, 1, u32::MAX)?;
    range("top_logprobs", req.top_logprobs, 0, 20)?;
    if req.stream_options.is_some() && !req.stream {
        return Err(GatewayError::invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    for (i, function) in req.functions.iter().flatten().enumerate() {
        if !valid_function_name(&function.name) {
            return Err(GatewayError::invalid(
                format!("functions[{i}].name"),
                format!(
                    "Invalid 'functions[{i}].name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
                ),
            ));
        }
    }
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        if tool.kind != "function" {
            return Err(GatewayError::invalid(
                format!("tools[{i}].type"),
                format!(
                    "Invalid value for 'tools[{i}].type': only \"function\" tools are supported, got {:?}.",
                    tool.kind
                ),
            ));
        }
        let Some(function) = &tool.function else {
            return Err(missing(format!("tools[{i}].function")));
        };
        if !valid_function_name(&function.name) {
            return Err(GatewayError::invalid(
                format!("tools[{i}].function.name"),
                format!(
                    "Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
                ),
            ));
        }
    }
    Ok(())
}

pub fn embeddings_request(req: &EmbeddingsRequest) -> Result<(), GatewayError> {
    if req.model.is_empty() {
        return Err(GatewayError::invalid("model", "Invalid 'model': must be a non-empty string."));
    }
    if req.input.is_empty() {
        return Err(GatewayError::InvalidRequest {
            message:
                "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead."
                    .into(),
            param: Some("input".into()),
            code: "empty_array",
        });
    }
    let empty_text = match &req.input {
        EmbeddingInput::Text(t) => t.is_empty(),
        EmbeddingInput::Texts(ts) => ts.iter().any(|t| t.is_empty()),
        EmbeddingInput::Tokens(_) => false,
        EmbeddingInput::TokenLists(ls) => ls.iter().any(Vec::is_empty),
    };
    if empty_text {
        return Err(GatewayError::invalid(
            "input",
            "Invalid 'input': input cannot be an empty string or an empty token list.",
        ));
    }
    range("dimensions", req.dimensions, 1, u32::MAX)
}

pub fn completions_request(req: &CompletionsRequest) -> Result<(), GatewayError> {
    if req.model.is_empty() {
        return Err(GatewayError::invalid("model", "Invalid 'model': must be a non-empty string."));
    }
    let prompt = req.prompt.get().trim_start();
    if !(prompt.starts_with('"') || prompt.starts_with('[')) {
        return Err(GatewayError::InvalidRequest {
            message: "Invalid type for 'prompt': expected a string or an array, but got another type instead.".into(),
            param: Some("prompt".into()),
            code: "invalid_type",
        });
    }
    range("max_tokens", req.max_tokens, 1, u32::MAX)
}

fn message_rules(i: usize, message: &crate::schema::openai::Message) -> Result<(), GatewayError> {
    let allowed: &[PartKind] = match message.role {
        Role::System | Role::Developer | Role::Tool | Role::Function => &[PartKind::Text],
        Role::User => &[PartKind::Text, PartKind::ImageUrl, PartKind::InputAudio, PartKind::File],
        Role::Assistant => &[PartKind::Text, PartKind::Refusal],
    };
    let has_tool_calls = message.tool_calls.as_ref().is_some_and(|c| !c.is_empty()) || message.function_call.is_some();
    match (&message.content, message.role) {
        (None, Role::Assistant) if has_tool_calls => {}
        (None, _) => return Err(missing(format!("messages[{i}].content"))),
        (Some(Content::Text(_)), _) => {}
        (Some(Content::Parts(parts)), _) => {
            for (j, part) in parts.iter().enumerate() {
                let param = format!("messages[{i}].content[{j}]");
                if !allowed.contains(&part.kind) {
                    return Err(GatewayError::invalid(
                        format!("{param}.type"),
                        format!(
                            "Invalid value for '{param}.type': {:?} content is not allowed in a {:?} message.",
                            part.kind, message.role
                        ),
                    ));
                }
                let present = match part.kind {
                    PartKind::Text => part.text.is_some(),
                    PartKind::ImageUrl => part.image_url.as_ref().is_some_and(|u| !u.url.is_empty()),
                    PartKind::File => part.file.is_some(),
                    PartKind::Refusal => part.refusal.is_some(),
                    PartKind::InputAudio => true,
                };
                if !present {
                    let field = match part.kind {
                        PartKind::Text => "text",
                        PartKind::ImageUrl => "image_url.url",
                        PartKind::File => "file",
                        PartKind::Refusal => "refusal",
                        PartKind::InputAudio => "input_audio",
                    };
                    return Err(missing(format!("{param}.{field}")));
                }
            }
        }
    }
    if message.role == Role::Tool && message.tool_call_id.as_deref().is_none_or(str::is_empty) {
        return Err(missing(format!("messages[{i}].tool_call_id")));
    }
    if message.role == Role::Function && message.name.as_deref().is_none_or(str::is_empty) {
        return Err(missing(format!("messages[{i}].name")));
    }
    for field in ["function_call", "thinking_blocks"] {
        let present = match field {
            "function_call" => message.function_call.is_some(),
            _ => message.thinking_blocks.is_some(),
        };
        if present && message.role != Role::Assistant {
            return Err(GatewayError::invalid(
                format!("messages[{i}].{field}"),
                format!(
                    "Invalid parameter: '{field}' is only allowed in messages with role 'assistant', not {:?}.",
                    message.role
                ),
            ));
        }
    }
    for (j, block) in message.thinking_blocks.iter().flatten().enumerate() {
        let complete = match block.kind.as_ref() {
            "thinking" => block.thinking.is_some() && block.signature.is_some(),
            "redacted_thinking" => block.data.is_some(),
            _ => false,
        };
        if !complete {
            return Err(invalid_thinking_block(i, j));
        }
    }
    if message.role != Role::Assistant && message.tool_calls.is_some() {
        return Err(GatewayError::invalid(
            format!("messages[{i}].tool_calls"),
            format!(
                "Invalid parameter: 'tool_calls' is only allowed in messages with role 'assistant', not {:?}.",
                message.role
            ),
        ));
    }
    for (j, call) in message.tool_calls.iter().flatten().enumerate() {
        if call.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(GatewayError::invalid(
                format!("messages[{i}].tool_calls[{j}].type"),
                "Invalid value: only \"function\" tool calls are supported.",
            ));
        }
        if call.id.is_empty() {
            return Err(missing(format!("messages[{i}].tool_calls[{j}].id")));
        }
    }
    Ok(())
}

/// A `thinking_blocks` entry that is not one the gateway returned.
pub fn invalid_thinking_block(i: usize, j: usize) -> GatewayError {
    GatewayError::invalid(
        format!("messages[{i}].thinking_blocks[{j}]"),
        format!("Invalid 'messages[{i}].thinking_blocks[{j}]': expected {{\"type\": \"thinking\", \"thinking\": …, \"signature\": …}} or {{\"type\": \"redacted_thinking\", \"data\": …}}, as the gateway returned it."),
    )
}

fn missing(param: String) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!("Missing required parameter: '{param}'."),
        param: Some(param),
        code: "missing_required_parameter",
    }
}

fn range<T: PartialOrd + std::fmt::Display>(param: &str, value: Option<T>, min: T, max: T) -> Result<(), GatewayError> {
    match value {
        Some(v) if v < min || v > max => Err(GatewayError::invalid(
            param,
            format!("Invalid '{param}': {v} is out of range. Expected a value between {min} and {max}."),
        )),
        _ => Ok(()),
    }
}

pub fn valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_request;
    use serde_json::{json, Value};

    /// Parses then validates, returning (status, param, code) of the error if any.
    fn check(body: Value) -> Option<(u16, Option<String>, String)> {
        let bytes = body.to_string().into_bytes();
        let result = parse_request::<ChatRequest>(&bytes).and_then(|req| chat_request(&req));
        result.err().map(|e| {
            let v: Value = serde_json::from_slice(&e.body()).unwrap();
            (
                e.status(),
                v["error"]["param"].as_str().map(str::to_string),
                v["error"]["code"].as_str().unwrap_or_default().to_string(),
            )
        })
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn accepts_valid_requests() {
        let ok = [
            json!({"model": "m", "messages": [user("hi")]}),
            json!({"model": "m", "messages": [{"role": "developer", "content": "x"}, user("hi")], "temperature": 2, "top_p": 0}),
            json!({"model": "m", "messages": [user("hi"), {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c", "content": "r"}]}),
            json!({"model": "m", "messages": [user("hi")], "stream": true, "stream_options": {"include_usage": true}}),
            json!({"model": "m", "messages": [user("hi")], "temperature": null, "max_tokens": null, "stream": null}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}),
        ];
        for body in ok {
            assert_eq!(check(body.clone()), None, "{body}");
        }
    }

    #[test]
    fn rejects_bad_requests_naming_the_param() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"messages": [user("hi")]}), "model", "missing_required_parameter"),
            (json!({"model": "m"}), "messages", "missing_required_parameter"),
            (json!({"model": 5, "messages": [user("hi")]}), "model", "invalid_type"),
            (json!({"model": "", "messages": [user("hi")]}), "model", "invalid_value"),
            (json!({"model": "m", "messages": []}), "messages", "empty_array"),
            (json!({"model": "m", "messages": "hi"}), "messages", "invalid_type"),
            (
                json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                "messages[0].role",
                "invalid_value",
            ),
            (json!({"model": "m", "messages": [{"content": "x"}]}), "messages[0].role", "missing_required_parameter"),
            (
                json!({"model": "m", "messages": [{"role": "user"}]}),
                "messages[0].content",
                "missing_required_parameter",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 3}]}),
                "messages[0].content",
                "invalid_type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}),
                "messages[0].content[0].type",
                "invalid_value",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "messages[0].content[0].text",
                "missing_required_parameter",
            ),
            (
                json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages[0].content[0].type",
                "invalid_value",
            ),
            (
                json!({"model": "m", "messages": [user("a"), {"role": "assistant"}]}),
                "messages[1].content",
                "missing_required_parameter",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "r"}]}),
                "messages[0].tool_call_id",
                "missing_required_parameter",
            ),
            (json!({"model": "m", "messages": [user("hi")], "temperature": 2.5}), "temperature", "invalid_value"),
            (json!({"model": "m", "messages": [user("hi")], "temperature": "hot"}), "temperature", "invalid_type"),
            (json!({"model": "m", "messages": [user("hi")], "top_p": 1.5}), "top_p", "invalid_value"),
            (json!({"model": "m", "messages": [user("hi")], "n": 0}), "n", "invalid_value"),
            (json!({"model": "m", "messages": [user("hi")], "max_tokens": 0}), "max_tokens", "invalid_value"),
            (json!({"model": "m", "messages": [user("hi")], "max_tokens": -5}), "max_tokens", "invalid_value"),
            (
                json!({"model": "m", "messages": [user("hi")], "stream_options": {"include_usage": true}}),
                "stream_options",
                "invalid_value",
            ),
            (
                json!({"model": "m", "messages": [user("hi")], "tools": [{"type": "custom"}]}),
                "tools[0].type",
                "invalid_value",
            ),
            (
                json!({"model": "m", "messages": [user("hi")], "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
                "tools[0].function.name",
                "invalid_value",
            ),
            (
                json!({"model": "m", "messages": [user("hi")], "tool_choice": "sometimes"}),
                "tool_choice",
                "invalid_value",
            ),
            (json!({"model": "m", "messages": [user("hi")], "stop": [1]}), "stop[0]", "invalid_type"),
        ];
        for (body, param, code) in cases {
            let got = check(body.clone()).unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(got, (400, Some(param.to_string()), code.to_string()), "{body}");
        }
    }

    #[test]
    fn invalid_json_and_non_objects() {
        for body in [&b"{"[..], b"not json", b"{\"model\":\"m\",}", b"{\"model\":\"m\",\"messages\":[]} trailing", b""]
        {
            let err = parse_request::<ChatRequest>(body).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(matches!(err, GatewayError::InvalidJson { .. }), "{:?}: {err:?}", String::from_utf8_lossy(body));
        }
        for body in [&b"[1]"[..], b"\"hi\"", b"42", b"null"] {
            let err = parse_request::<ChatRequest>(body).unwrap_err();
            assert_eq!(err.status(), 400, "{:?}", String::from_utf8_lossy(body));
        }
        let dup = parse_request::<ChatRequest>(br#"{"model":"a","model":"b","messages":[]}"#).unwrap_err();
        assert_eq!(dup.status(), 400);
    }

    #[test]
    fn embeddings_and_completions_rules() {
        let ok: [&[u8]; 6] = [
            br#"{"model":"e","input":"hello"}"#,
            br#"{"model":"e","input":["a","b"],"dimensions":256,"encoding_format":"base64"}"#,
            br#"{"model":"e","input":[1,2,3]}"#,
            br#"{"model":"e","input":[[1,2],[3]]}"#,
            br#"{"model":"c","prompt":"Say this is a test","max_tokens":7}"#,
            br#"{"model":"c","prompt":["a","b"]}"#,
        ];
        for body in ok {
            let text = String::from_utf8_lossy(body);
            let result = if text.contains("input") {
                parse_request::<EmbeddingsRequest>(body).and_then(|r| embeddings_request(&r))
            } else {
                parse_request::<CompletionsRequest>(body).and_then(|r| completions_request(&r))
            };
            assert!(result.is_ok(), "{text}: {result:?}");
        }
        let bad: [(&[u8], &str, &str); 8] = [
            (br#"{"model":"e"}"#, "input", "missing_required_parameter"),
            (br#"{"input":"x"}"#, "model", "missing_required_parameter"),
            (br#"{"model":"e","input":[]}"#, "input", "empty_array"),
            (br#"{"model":"e","input":""}"#, "input", "invalid_value"),
            (br#"{"model":"e","input":{"a":1}}"#, "input", "invalid_type"),
            (br#"{"model":"e","input":"x","dimensions":0}"#, "dimensions", "invalid_value"),
            (br#"{"model":"e","input":"x","encoding_format":"hex"}"#, "encoding_format", "invalid_value"),
            (br#"{"model":"e","input":[1,"a"]}"#, "input", "invalid_type"),
        ];
        for (body, param, code) in bad {
            let err = parse_request::<EmbeddingsRequest>(body).and_then(|r| embeddings_request(&r)).unwrap_err();
            let v: Value = serde_json::from_slice(&err.body()).unwrap();
            assert_eq!(
                (v["error"]["param"].as_str(), v["error"]["code"].as_str()),
                (Some(param), Some(code)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for body in
            [&br#"{"model":"c","prompt":5}"#[..], br#"{"model":"c"}"#, br#"{"model":"c","prompt":"x","max_tokens":0}"#]
        {
            assert!(parse_request::<CompletionsRequest>(body).and_then(|r| completions_request(&r)).is_err());
        }
    }

    #[test]
    fn deep_nesting_never_overflows_the_stack() {
        // In the VM a stack overflow is a trap. Interpreted fields hit serde_json's depth
        // limit (a 400); fields kept raw are skipped iteratively and forwarded as sent.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        for body in [
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":[{deep}]}}]}}"#),
            format!(r#"{{"model":"m","messages":{deep}}}"#),
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"stop":{deep}}}"#),
        ] {
            let err = parse_request::<ChatRequest>(body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), 400);
        }
        let raw = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"extra":{deep}}}"#);
        let req = parse_request::<ChatRequest>(raw.as_bytes()).unwrap();
        assert_eq!(req.other[0].1.get().len(), deep.len());
    }
}
